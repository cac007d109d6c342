// Reading the token: from the URL fragment (#jwt=..., never sent to a server)
// or the paste box. The claims are decoded only to show who one is and
// whether one is an owner; the bridge checks the signature and every rule.

/** The token in the page's fragment (`#jwt=...`), or "". */
export function tokenFromFragment(hash) {
  const params = new URLSearchParams(String(hash || '').replace(/^#/, ''));
  return (params.get('jwt') || '').trim();
}

function base64urlDecode(part) {
  const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
  const padded = b64 + '='.repeat((4 - (b64.length % 4)) % 4);
  const bin = atob(padded);
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

/**
 * What the page shows about a token: `{name, owner, room, exp, screenSharing}`,
 * or null when it is not a JWT.
 */
export function describeToken(token) {
  const parts = String(token || '').split('.');
  if (parts.length !== 3) return null;
  let claims;
  try {
    claims = JSON.parse(base64urlDecode(parts[1]));
  } catch {
    return null;
  }
  if (!claims || typeof claims !== 'object') return null;
  const user = (claims.context && claims.context.user) || {};
  const affiliation = String(user.affiliation || '').toLowerCase();
  const owner = claims.moderator === true || claims.moderator === 'true' ||
    ['owner', 'moderator', 'teacher'].includes(affiliation);
  const features = claims.context && claims.context.features;
  let screenSharing = null; // unknown: the bridge's auth.features_default decides
  if (features && typeof features === 'object') {
    const f = features['screen-sharing'];
    screenSharing = f === true || f === 'true';
  }
  return {
    name: typeof user.name === 'string' ? user.name : '',
    owner,
    room: typeof claims.room === 'string' ? claims.room : '',
    exp: Number(claims.exp) || 0,
    screenSharing,
  };
}
