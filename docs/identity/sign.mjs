// Signs a Footpath identity token (docs/identity.md) with Node's standard library only.
// Run as a script, it prints the token of the docs' worked example; a site's server
// imports identityToken() and passes exp: Math.floor(Date.now() / 1000) + 3600.
import { createHmac } from 'node:crypto';
import { pathToFileURL } from 'node:url';

const b64url = (data) => Buffer.from(data).toString('base64url');

export function identityToken(secret, claims) {
  const header = b64url('{"alg":"HS256","typ":"JWT"}');
  const payload = b64url(JSON.stringify(claims));
  const signingInput = `${header}.${payload}`;
  const signature = createHmac('sha256', secret).update(signingInput).digest('base64url');
  return `${signingInput}.${signature}`;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(identityToken('change-me-to-32-random-bytes-hex',
    { aud: 'shop', email: 'ann@example.com', exp: 1795504514, sub: 'user-42' }));
}
