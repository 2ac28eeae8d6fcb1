// A real OpenID provider (panva's oidc-provider) for mtx-auth's JWT and portal sign-in tests.
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
// A second client, for the viewer portal's "Sign in with …" (authorization code flow):
//   client_id     mtx-portal
//   client_secret mtx-portal-test-secret   (client_secret_basic or _post; OIDC_PORTAL_AUTH_METHOD=
//                                           client_secret_post refuses Basic for it: invalid_client)
//   redirect_uris OIDC_PORTAL_REDIRECT_URIS (comma-separated; e.g. http://127.0.0.1:PORT/login/oidc/callback)
// PKCE (S256) is required. Its ID tokens are signed RS256; the claims of the scopes it asks for
// (email: email, email_verified; profile: preferred_username, name; groups: groups) come from
// userinfo, as oidc-provider conforms ID tokens by default, unless OIDC_PORTAL_ID_TOKEN_CLAIMS=1:
// then there is no userinfo endpoint and the ID token carries them.
// Its accounts (ACCOUNTS below, or OIDC_PORTAL_ACCOUNTS=<JSON object: login name -> claims>) sign in
// through a tiny interaction anyone can drive over plain HTTP, keeping the provider's cookies:
//   GET  /interaction/:uid          login prompt: an HTML form (field `account`); consent prompt:
//                                   everything asked for is granted at once, 303 onwards
//   POST /interaction/:uid/login    form `account=<login name>`: signs that account in (303 onwards);
//                                   `account=deny` ends the request with error=access_denied;
//                                   an unknown name: 400
//
// Stops on SIGTERM/SIGINT or when stdin closes (so it does not outlive a test runner that died).

import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import process from 'node:process';

import Provider, { errors } from 'oidc-provider';

export const CLIENT_ID = 'mtx-auth';
export const CLIENT_SECRET = 'mtx-auth-test-secret';
export const RESOURCE = 'urn:mediamtx';

export const PORTAL_CLIENT_ID = 'mtx-portal';
export const PORTAL_CLIENT_SECRET = 'mtx-portal-test-secret';

// Login name -> the account's claims (sub is its id).
const ACCOUNTS = {
  jane: {
    sub: '5f0c9a7e-jane',
    preferred_username: 'jane',
    name: 'Jane Doe',
    email: 'jane@example.com',
    email_verified: true,
    groups: ['viewers', 'streamers'],
  },
  // Claims the administrators' address, unverified.
  mallory: {
    sub: '8d1e2b3c-mallory',
    preferred_username: 'mallory',
    email: 'jane@example.com',
    email_verified: false,
    groups: ['viewers'],
  },
  // A bare account: no name, no e-mail, no groups.
  anon: { sub: 'c0ffee00-anon' },
};

const DEFAULT_PERMISSIONS = [
  { action: 'read', path: 'cam' },
  { action: 'publish', path: '~^live/' },
];

const permissions = process.env.OIDC_MEDIAMTX_PERMISSIONS
  ? JSON.parse(process.env.OIDC_MEDIAMTX_PERMISSIONS)
  : DEFAULT_PERMISSIONS;
const accounts = process.env.OIDC_PORTAL_ACCOUNTS
  ? JSON.parse(process.env.OIDC_PORTAL_ACCOUNTS)
  : ACCOUNTS;
const portalRedirects = (process.env.OIDC_PORTAL_REDIRECT_URIS || '')
  .split(',')
  .map((u) => u.trim())
  .filter(Boolean);
const portalAuthMethod = process.env.OIDC_PORTAL_AUTH_METHOD || 'client_secret_basic';
const claimsInIdToken = process.env.OIDC_PORTAL_ID_TOKEN_CLAIMS === '1';
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
      {
        client_id: PORTAL_CLIENT_ID,
        client_secret: PORTAL_CLIENT_SECRET,
        grant_types: ['authorization_code'],
        response_types: ['code'],
        redirect_uris: portalRedirects.length
          ? portalRedirects
          : ['http://127.0.0.1/login/oidc/callback'],
        token_endpoint_auth_method: portalAuthMethod,
      },
    ],
    pkce: { required: () => true },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['preferred_username', 'name'],
      groups: ['groups'],
    },
    conformIdTokenClaims: !claimsInIdToken,
    findAccount: (_ctx, sub) => {
      const claims = Object.values(accounts).find((a) => a.sub === sub);
      if (!claims) return undefined;
      return { accountId: sub, claims: async () => ({ ...claims }) };
    },
    clientAuthMethods: ['client_secret_post', 'client_secret_basic'],
    jwks,
    cookies: { keys: ['mtx-auth-oidc-fixture-cookie-key'] },
    routes: { jwks: '/jwks', token: '/token' },
    features: {
      devInteractions: { enabled: false },
      userinfo: { enabled: !claimsInIdToken },
      clientCredentials: { enabled: true },
      introspection: { enabled: false },
      revocation: { enabled: false },
      resourceIndicators: {
        enabled: true,
        // The portal's client asks for no resource: its access token is for userinfo.
        defaultResource: (_ctx, client, oneOf) =>
          client?.clientId === PORTAL_CLIENT_ID ? oneOf : RESOURCE,
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
  const callback = provider.callback();
  server.on('request', (req, res) => {
    const path = new URL(req.url, issuer).pathname;
    if (path === '/token' && refusesBasic(req)) {
      res.statusCode = 401;
      res.setHeader('Content-Type', 'application/json');
      res.setHeader('WWW-Authenticate', 'Basic realm="token"');
      res.end(JSON.stringify({
        error: 'invalid_client',
        error_description: 'this client authenticates with client_secret_post',
      }));
      return;
    }
    const m = path.match(/^\/interaction\/([^/]+)(\/login)?$/);
    if (!m) {
      callback(req, res);
      return;
    }
    interaction(provider, req, res, m[2] ? 'login' : 'show').catch((err) => {
      console.error('interaction', err);
      if (!res.headersSent) {
        res.statusCode = 400;
        res.setHeader('Content-Type', 'text/plain; charset=utf-8');
      }
      res.end(`interaction failed: ${err.message}\n`);
    });
  });
  console.log(`READY ${issuer}`);
});

// oidc-provider takes client_secret_basic and client_secret_post alike whichever is registered;
// with OIDC_PORTAL_AUTH_METHOD=client_secret_post the portal client is held to it, as stricter
// providers do: Basic credentials for it get invalid_client (before the code is looked at).
function refusesBasic(req) {
  if (portalAuthMethod !== 'client_secret_post') return false;
  const header = req.headers.authorization || '';
  if (!/^basic /i.test(header)) return false;
  const user = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8').split(':')[0];
  try {
    return decodeURIComponent(user) === PORTAL_CLIENT_ID;
  } catch {
    return false;
  }
}

function readForm(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      body += chunk;
      if (body.length > 10000) reject(new Error('body too large'));
    });
    req.on('end', () => resolve(new URLSearchParams(body)));
    req.on('error', reject);
  });
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// The portal client's login and consent (see the top of this file).
async function interaction(provider, req, res, step) {
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt, params } = details;
  if (step === 'login') {
    if (req.method !== 'POST') throw new Error('POST the login form');
    const account = (await readForm(req)).get('account') || '';
    if (account === 'deny') {
      await provider.interactionFinished(req, res, {
        error: 'access_denied',
        error_description: 'the person did not sign in',
      }, { mergeWithLastSubmission: false });
      return;
    }
    const claims = accounts[account];
    if (!claims) throw new Error(`no account ${JSON.stringify(account)}`);
    await provider.interactionFinished(req, res, {
      login: { accountId: claims.sub },
    }, { mergeWithLastSubmission: false });
    return;
  }
  if (prompt.name === 'login') {
    res.statusCode = 200;
    res.setHeader('Content-Type', 'text/html; charset=utf-8');
    const names = Object.keys(accounts).map(escapeHtml).join(', ');
    res.end(`<!doctype html><title>Sign in</title><p>Client ${escapeHtml(params.client_id)}.
Accounts: ${names}, or deny.</p>
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
<input name="account" autofocus><button type="submit">Sign in</button></form>\n`);
    return;
  }
  if (prompt.name === 'consent') {
    const { accountId } = details.session;
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    const consent = details.grantId ? {} : { grantId };
    await provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
    return;
  }
  throw new Error(`unknown prompt ${prompt.name}`);
}

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
