// The colibri websocket (the bridge channel): JSON messages with a
// `colibriClass`. The URL comes from the join answer's `Link` header.

/**
 * The colibri websocket URL for a `Link` header value, resolved against the
 * page's base: the bridge writes `</colibri-ws/...>`; the leading slash is
 * dropped so that a path prefix in front of the bridge (a reverse proxy) is
 * kept, and the scheme follows the page's (https -> wss).
 */
export function colibriUrl(link, base) {
  if (!link) return null;
  for (const part of link.split(',')) {
    const m = /^\s*<([^>]+)>\s*;\s*rel="?colibri-ws"?/i.exec(part);
    if (!m) continue;
    const url = new URL(m[1].replace(/^\/+/, ''), base);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    return url.href;
  }
  return null;
}

/** One colibri websocket; `onMessage(msg)` gets every parsed message. */
export class Colibri {
  constructor(url, onMessage, onClose) {
    this.ws = new WebSocket(url);
    this.open = new Promise((resolve, reject) => {
      this.ws.addEventListener('open', () => resolve(), { once: true });
      this.ws.addEventListener('error', () => reject(new Error('colibri websocket failed')), { once: true });
    });
    this.ws.addEventListener('message', (ev) => {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (msg && typeof msg.colibriClass === 'string') onMessage(msg);
    });
    this.ws.addEventListener('close', () => onClose && onClose());
  }

  /** Sends one message (dropped when the socket is not open). */
  send(msg) {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  /** An `EndpointMessage` to one endpoint, or to everyone when `to` is "". */
  endpointMessage(to, payload) {
    this.send({ colibriClass: 'EndpointMessage', to: to || '', msgPayload: payload });
  }

  close() {
    try {
      this.ws.close();
    } catch {
      // already closed
    }
  }
}
