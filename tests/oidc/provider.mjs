// A real OpenID provider (panva's oidc-provider) for mtx-auth's JWT interop tests.
//
// Usage: node tests/oidc/provider.mjs [PORT]      (or PORT=... in the environment; 0 = any free port)
//
// Listens on 127.0.0.1 only, with issuer http://127.0.0.1:PORT, and prints one line
// `READY http://127.0.0.1:PORT` on stdout once it accepts connections.
//
// One confidential client, allowed only the client_credentials grant:
//   client_id     mtx-auth
//   client_secret mtx-auth-test-secret   (client_secret_post or client_secret_basic)
// The resource indicators feature is on with one resource server, urn:mediamtx (also the default
// resource, so `resource=` may be left out): its access tokens are JWTs (typ at+jwt) with
// aud urn:mediamtx, signed RS256 (OIDC_ALG=ES256 for ES256), carrying a mediamtx_permissions
// claim (OIDC_MEDIAMTX_PERMISSIONS=<JSON array> to replace the default below).
// The key set holds an RSA and a P-256 key, generated at start; the discovery document's
// jwks_uri (/jwks) serves their public halves.
//
// Stops on SIGTERM/SIGINT or when stdin closes (so it does not outlive a test runner that died).

import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import process from 'node:process';

import Provider, { errors } from 'oidc-provider';

export const CLIENT_ID = 'mtx-auth';
export const CLIENT_SECRET = 'mtx-auth-test-secret';
export const RESOURCE = 'urn:mediamtx';

const DEFAULT_PERMISSIONS = [
  { action: 'read', path: 'cam' },
  { action: 'publish', path: '~^live/' },
];

const permissions = process.env.OIDC_MEDIAMTX_PERMISSIONS
  ? JSON.parse(process.env.OIDC_MEDIAMTX_PERMISSIONS)
  : DEFAULT_PERMISSIONS;
const alg = process.env.OIDC_ALG || 'RS256';
if (alg !== 'RS256' && alg !== 'ES256') {
  throw new Error(`OIDC_ALG must be RS256 or ES256, not ${alg}`);
}

function privateJwk(type, options, jwkAlg) {
  const { privateKey } = generateKeyPairSync(type, options);
  // No kid: oidc-provider derives one (the RFC 7638 thumbprint), as most real providers do.
  return { ...privateKey.export({ format: 'jwk' }), alg: jwkAlg, use: 'sig' };
}

const jwks = {
  keys: [
    privateJwk('rsa', { modulusLength: 2048 }, 'RS256'),
    privateJwk('ec', { namedCurve: 'P-256' }, 'ES256'),
  ],
};

const port = Number(process.argv[2] ?? process.env.PORT ?? 0);
const server = http.createServer();

server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_post',
      },
    ],
    clientAuthMethods: ['client_secret_post', 'client_secret_basic'],
    jwks,
    cookies: { keys: ['mtx-auth-oidc-fixture-cookie-key'] },
    routes: { jwks: '/jwks', token: '/token' },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: false },
      revocation: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resourceIndicator) => {
          if (resourceIndicator !== RESOURCE) {
            throw new errors.InvalidTarget();
          }
          return {
            audience: RESOURCE,
            scope: 'read publish',
            accessTokenTTL: 5 * 60,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg } },
          };
        },
      },
    },
    extraTokenClaims: () => ({ mediamtx_permissions: permissions }),
  });
  provider.on('server_error', (_ctx, err) => console.error('server_error', err));
  server.on('request', provider.callback());
  console.log(`READY ${issuer}`);
});

function stop() {
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.resume();
