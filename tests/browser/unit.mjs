// Unit checks of the page's pure functions (control/web/*.js) under node:
// relative URLs behind a path prefix, the screen marking of the offer, token
// reading. Prints one JSON line; tests/tests/browser_page.rs runs it.

import assert from 'node:assert/strict';
import { colibriUrl } from '../../control/web/colibri.js';
import { markScreen } from '../../control/web/call.js';
import { describeToken, tokenFromFragment } from '../../control/web/token.js';

const checks = [];
function check(name, fn) {
  try {
    fn();
    checks.push({ name, ok: true });
  } catch (e) {
    checks.push({ name, ok: false, error: String(e.message || e) });
  }
}

const link = '</colibri-ws/default-id/demo/abcd1234?pwd=x_y-z>; rel="colibri-ws"';

check('colibri URL at the root, http -> ws', () => {
  assert.equal(colibriUrl(link, 'http://127.0.0.1:9090/demo'),
    'ws://127.0.0.1:9090/colibri-ws/default-id/demo/abcd1234?pwd=x_y-z');
});
check('colibri URL keeps a path prefix, https -> wss', () => {
  assert.equal(colibriUrl(link, 'https://meet.example.com/video/demo'),
    'wss://meet.example.com/video/colibri-ws/default-id/demo/abcd1234?pwd=x_y-z');
});
check('colibri URL among other links, and none', () => {
  assert.equal(colibriUrl(`<https://x/y>; rel="other", ${link}`, 'http://h/r'),
    'ws://h/colibri-ws/default-id/demo/abcd1234?pwd=x_y-z');
  assert.equal(colibriUrl('<https://x/y>; rel="other"', 'http://h/r'), null);
  assert.equal(colibriUrl(null, 'http://h/r'), null);
});
check('signalling URLs resolve next to the page', () => {
  assert.equal(new URL('conferences/demo/endpoints', 'https://meet.example.com/video/demo').href,
    'https://meet.example.com/video/conferences/demo/endpoints');
  assert.equal(new URL('_app/app.js', 'https://meet.example.com/video/demo').href,
    'https://meet.example.com/video/_app/app.js');
});
check('the screen m-line gets a=content:slides, and only it', () => {
  const sdp = 'v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=sendonly\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:20\r\n';
  const out = markScreen(sdp, '2');
  assert.equal(out.split('a=content:slides').length, 2);
  assert.ok(out.includes('a=mid:2\r\na=content:slides\r\na=sendonly'));
  assert.ok(out.endsWith('a=mid:20\r\n'));
});
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
const jwt = (claims) => `${b64({ alg: 'HS256' })}.${b64(claims)}.sig`;
check('token from the fragment', () => {
  assert.equal(tokenFromFragment('#jwt=a.b.c'), 'a.b.c');
  assert.equal(tokenFromFragment('#x=1&jwt=a.b.c'), 'a.b.c');
  assert.equal(tokenFromFragment(''), '');
});
check('owners, names and features from the claims', () => {
  const o = describeToken(jwt({ room: 'demo', exp: 5, context: { user: { name: 'Zoë', affiliation: 'owner' } } }));
  assert.deepEqual(o, { name: 'Zoë', owner: true, room: 'demo', exp: 5, screenSharing: null });
  const m = describeToken(jwt({ moderator: false, context: { user: { affiliation: 'member' }, features: { 'screen-sharing': 'false' } } }));
  assert.equal(m.owner, false);
  assert.equal(m.screenSharing, false);
  assert.equal(describeToken(jwt({ moderator: true })).owner, true);
  assert.equal(describeToken('not a token'), null);
  assert.equal(describeToken('a.!!!.c'), null);
});

const ok = checks.every((c) => c.ok);
process.stdout.write(`${JSON.stringify({ ok, checks })}\n`);
process.exitCode = ok ? 0 : 1;
