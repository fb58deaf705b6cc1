// A real OpenID provider (npm oidc-provider 9.x) shaped like EGI Check-in, for the
// egi-checkin integration tests. Started by tests/src/oidc.rs; all state in memory.
//
// - Issuer http://127.0.0.1:PORT/auth/realms/egi with Keycloak's routes.
// - EGI claims (voperson_id, eduperson_entitlement, entitlements) in userinfo and
//   introspection, never in the ID token.
// - Refresh-token rotation switchable (ROTATE=1), access tokens living ACCESS_TTL seconds,
//   clockTolerance 0, a refresh token whenever the client may refresh.
// - Interactions approve themselves: the user is the login_hint.
// - Test-only endpoints under /test: approve or deny a device user_code, read counters of
//   token-endpoint requests by grant type, arm faults of the token endpoint.
//   ID-token faults process the request for real (rotating the refresh token if rotation is
//   on) and swap in a crafted ID token; `slow_processed` processes the request for real and
//   answers only after delay_ms; `slow` waits, then answers 503 without processing.
//
// Environment: PORT (0 = any), STATE_DIR (signing keys kept there across restarts),
// ROTATE (0/1), ACCESS_TTL (seconds). Prints "READY <issuer>" on stdout when listening;
// everything else goes to stderr.
//
// Quirks of other providers, off by default (tests of interoperability):
// - AUTH_METHOD=client_secret_basic|client_secret_post: the only secret-based client
//   authentication advertised in discovery and accepted (oidc-provider itself accepts both).
// - RAW_BASIC=1: HTTP Basic credentials are taken as they are, not form-urldecoded as
//   RFC 6749 section 2.3.1 says (django-oidc-provider and others).
// - NO_SCOPE=1: token answers carry no `scope` (RFC 6749 section 5.1 makes it optional).
// - TOKEN_DELAY_MS=n: every token request is processed at once (a refresh token used up and
//   rotated) and answered n ms later (a slow provider).

import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';

import * as jose from 'jose';
import Provider, { errors } from 'oidc-provider';

// oidc-provider prints NOTICEs with console.info/warn: keep stdout for the ready line.
console.info = console.error;
console.log = console.error;
console.warn = console.error;

const PREFIX = '/auth/realms/egi';
const OIDC = '/protocol/openid-connect';
const port = Number(process.env.PORT ?? 0);
const stateDir = process.env.STATE_DIR ?? '.';
const rotate = process.env.ROTATE === '1';
const accessTtl = Number(process.env.ACCESS_TTL ?? 2);
const authMethod = process.env.AUTH_METHOD || null;
const rawBasic = process.env.RAW_BASIC === '1';
const noScope = process.env.NO_SCOPE === '1';
const tokenDelayMs = Number(process.env.TOKEN_DELAY_MS ?? 0);
const quirky = Boolean(authMethod || rawBasic || noScope || tokenDelayMs > 0);
const AT_URN = 'urn:ietf:params:oauth:token-type:access_token';
const RT_URN = 'urn:ietf:params:oauth:token-type:refresh_token';
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const DEVICE = 'urn:ietf:params:oauth:grant-type:device_code';

// Signing keys: the provider's, a "rotated-in" key published on demand, and a key never
// published. Kept in STATE_DIR so a restarted provider signs with the same key.
async function keys() {
  const file = join(stateDir, 'keys.json');
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8'));
  const make = async (kid) => {
    const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
    return { ...(await jose.exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
  };
  const k = { main: await make('main'), rotated: await make('rotated'), unpublished: await make('unpublished') };
  writeFileSync(file, JSON.stringify(k), { mode: 0o600 });
  return k;
}
const jwk = await keys();
const publicJwk = ({ kty, n, e, kid, alg, use }) => ({ kty, n, e, kid, alg, use });

const subOf = (login) => `${createHash('sha256').update(login).digest('hex')}@egi.eu`;
const group = (vo, role = 'member') => `urn:mace:egi.eu:group:${vo}:role=${role}#aai.egi.eu`;
// What Check-in would know of a user: "outsider" is in no VO.
function egiClaims(login) {
  const inVos = login !== 'outsider';
  return {
    sub: subOf(login),
    voperson_id: subOf(login),
    preferred_username: login,
    name: `Test ${login}`,
    given_name: 'Test',
    family_name: login,
    email: `${login}@example.org`,
    email_verified: true,
    eduperson_entitlement: inVos
      ? [group('vo.notebooks.egi.eu'), 'urn:mace:egi.eu:res:rcauth#aai.egi.eu']
      : [],
    entitlements: inVos
      ? [group('vo.access.egi.eu'), group('vo.notebooks.egi.eu'), group('vo.notebooks.egi.eu:admins', 'manager')]
      : [],
  };
}
// Account ids are Check-in subjects (voperson_id); this maps them back to the login name.
const logins = new Map();
const account = (login) => { const sub = subOf(login); logins.set(sub, login); return sub; };
const loginOf = (sub) => logins.get(sub) ?? sub;

const configuration = {
  clients: [
    {
      client_id: 'notebooks',
      client_secret: 'notebooks-secret',
      token_endpoint_auth_method: authMethod ?? 'client_secret_basic',
      grant_types: ['authorization_code', 'refresh_token', DEVICE, 'client_credentials', EXCHANGE],
      response_types: ['code'],
      // EXTRA_REDIRECT_URIS: a gateway under test registers its own callback (comma-separated).
      redirect_uris: ['http://127.0.0.1/callback', ...(process.env.EXTRA_REDIRECT_URIS ?? '').split(',').filter(Boolean)],
      scope: 'openid offline_access profile email eduperson_entitlement voperson_id',
    },
    {
      // A secret with the characters that Basic encoding changes (+ / =), like a random
      // Base64 secret.
      client_id: 'notebooks-b64',
      client_secret: 'c2Vj+cmV0/w==',
      token_endpoint_auth_method: authMethod ?? 'client_secret_basic',
      grant_types: ['refresh_token', DEVICE, 'client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: 'openid offline_access profile email eduperson_entitlement voperson_id',
    },
    {
      client_id: 'cli',
      token_endpoint_auth_method: 'none',
      grant_types: ['refresh_token', DEVICE],
      response_types: [],
      redirect_uris: [],
    },
    {
      client_id: 'other-service',
      client_secret: 'other-secret',
      token_endpoint_auth_method: authMethod ?? 'client_secret_basic',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
    },
  ],
  jwks: { keys: [jwk.main] },
  ...(authMethod ? { clientAuthMethods: [authMethod, 'none'] } : {}),
  clockTolerance: 0,
  scopes: ['openid', 'offline_access', 'profile', 'email', 'eduperson_entitlement', 'voperson_id'],
  claims: {
    openid: ['sub'],
    profile: ['name', 'given_name', 'family_name', 'preferred_username'],
    email: ['email', 'email_verified'],
    eduperson_entitlement: ['eduperson_entitlement', 'entitlements'],
    voperson_id: ['voperson_id'],
  },
  async findAccount(_ctx, id) {
    return { accountId: id, async claims() { return egiClaims(loginOf(id)); } };
  },
  // Check-in puts EGI claims in introspection answers.
  async extraTokenClaims(_ctx, token) {
    if (!token.accountId) return undefined;
    const { voperson_id, preferred_username, eduperson_entitlement, entitlements } = egiClaims(loginOf(token.accountId));
    return { voperson_id, preferred_username, eduperson_entitlement, entitlements };
  },
  // Keycloak issues a refresh token whenever the client may refresh (no consent prompt).
  async issueRefreshToken(_ctx, client) {
    return client.grantTypeAllowed('refresh_token');
  },
  rotateRefreshToken: () => rotate,
  pkce: { required: () => true },
  ttl: {
    AccessToken: accessTtl,
    ClientCredentials: accessTtl,
    IdToken: 3600,
    RefreshToken: 86400,
    DeviceCode: 600,
    Grant: 86400,
    Interaction: 600,
    Session: 86400,
  },
  features: {
    devInteractions: { enabled: false },
    deviceFlow: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    clientCredentials: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  interactions: { url: (_ctx, interaction) => `${PREFIX}/interaction/${interaction.uid}` },
  routes: {
    authorization: `${OIDC}/auth`,
    token: `${OIDC}/token`,
    device_authorization: `${OIDC}/auth/device`,
    code_verification: `${OIDC}/device`,
    jwks: `${OIDC}/certs`,
    userinfo: `${OIDC}/userinfo`,
    introspection: `${OIDC}/token/introspect`,
    revocation: `${OIDC}/revoke`,
    end_session: `${OIDC}/logout`,
  },
  cookies: { keys: [randomBytes(16).toString('hex')] },
  renderError(ctx, out) {
    ctx.type = 'json';
    ctx.body = out;
  },
};

// Counters read by tests: token-endpoint requests by grant type, and requests by path.
const counters = { grants: {}, paths: {} };
const bump = (table, key) => { table[key] = (table[key] ?? 0) + 1; };
// Armed faults of the token endpoint: { kind, remaining, delayMs }.
let fault = null;
let publishRotatedKey = false;

let server;
let issuer;

function start() {
  server = createServer(handle);
  server.listen(port, '127.0.0.1', async () => {
    issuer = `http://127.0.0.1:${server.address().port}${PREFIX}`;
    const provider = new Provider(issuer, configuration);
    provider.proxy = false;
    provider.registerGrantType(EXCHANGE, tokenExchange(provider),
      ['subject_token', 'subject_token_type', 'requested_token_type', 'audience', 'scope']);
    provider.use(async (ctx, next) => {
      await next();
      if (ctx.oidc?.route === 'token') bump(counters.grants, ctx.oidc.params?.grant_type ?? 'none');
    });
    server.provider = provider;
    server.callback = provider.callback();
    process.stdout.write(`READY ${issuer}\n`);
  });
}

// RFC 8693: an access token of this provider for a refresh token of the caller, or an
// access token for another registered client (audience).
function tokenExchange(provider) {
  return async (ctx) => {
    const { subject_token: subject, subject_token_type: type, requested_token_type: wanted, audience } = ctx.oidc.params;
    if (!subject || type !== AT_URN) throw new errors.InvalidRequest('subject_token must be an access token');
    const at = await provider.AccessToken.find(subject);
    if (!at) throw new errors.InvalidGrant('subject token is invalid or expired');
    let client = ctx.oidc.client;
    if (audience && audience !== client.clientId) {
      client = await provider.Client.find(audience);
      if (!client) throw new errors.InvalidTarget('audience is not a registered client');
    }
    const scope = ctx.oidc.params.scope ?? at.scope;
    const grant = new provider.Grant({ accountId: at.accountId, clientId: client.clientId });
    grant.addOIDCScope(scope);
    const grantId = await grant.save();
    const common = { accountId: at.accountId, client, grantId, scope, gty: 'token_exchange' };
    const newAt = new provider.AccessToken(common);
    const body = { access_token: await newAt.save(), token_type: 'Bearer', expires_in: newAt.expiration, scope };
    if (wanted === RT_URN && client.clientId === ctx.oidc.client.clientId) {
      const rt = new provider.RefreshToken({ ...common, rotations: 0, expiresWithSession: false });
      body.refresh_token = await rt.save();
      body.issued_token_type = RT_URN;
    } else {
      body.issued_token_type = AT_URN;
    }
    ctx.body = body;
  };
}

const readBody = (req) => new Promise((resolve) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => resolve(Buffer.concat(chunks).toString()));
});
const json = (res, status, body, headers = {}) => {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(typeof body === 'string' ? body : JSON.stringify(body));
};
const sleep = (ms) => new Promise((r) => { setTimeout(r, ms); });

// Sends a token request on to the provider itself, past the fault: the real answer (a
// refresh token is really used up, and rotated if rotation is on).
async function realAnswer(req, raw) {
  const headers = {
    'content-type': req.headers['content-type'] ?? 'application/x-www-form-urlencoded',
    'x-test-no-fault': '1',
  };
  if (req.headers.authorization) headers.authorization = req.headers.authorization;
  const r = await fetch(`http://127.0.0.1:${server.address().port}${PREFIX}${OIDC}/token`, { method: 'POST', headers, body: raw });
  return { status: r.status, body: await r.text() };
}

// Applies the quirks to a POST to an endpoint of the provider, then forwards it to the
// provider itself (past the quirks) and answers with the provider's answer.
async function quirks(req, res, url) {
  const raw = await readBody(req);
  const form = new URLSearchParams(raw);
  let auth = req.headers.authorization;
  const refuse = (why) => json(res, 401, { error: 'invalid_client', error_description: why });
  if (authMethod === 'client_secret_post' && auth) return refuse('client_secret_basic is not supported');
  if (authMethod === 'client_secret_basic' && form.has('client_secret')) return refuse('client_secret_post is not supported');
  if (rawBasic && auth?.toLowerCase().startsWith('basic ')) {
    // Encoded again so that oidc-provider's decoding gives back the bytes as sent.
    const basic = Buffer.from(auth.slice(6).trim(), 'base64').toString('utf8');
    const i = basic.indexOf(':');
    if (i !== -1) {
      const enc = (s) => encodeURIComponent(s);
      auth = `Basic ${Buffer.from(`${enc(basic.slice(0, i))}:${enc(basic.slice(i + 1))}`).toString('base64')}`;
    }
  }
  const headers = {
    'content-type': req.headers['content-type'] ?? 'application/x-www-form-urlencoded',
    'x-test-no-fault': '1',
  };
  if (auth) headers.authorization = auth;
  if (req.headers.accept) headers.accept = req.headers.accept;
  const r = await fetch(`http://127.0.0.1:${server.address().port}${url.pathname}${url.search}`, { method: 'POST', headers, body: raw });
  let body = await r.text();
  if (url.pathname === `${PREFIX}${OIDC}/token`) {
    if (tokenDelayMs > 0) await sleep(tokenDelayMs);
    if (noScope && r.status === 200) {
      const parsed = JSON.parse(body);
      delete parsed.scope;
      body = JSON.stringify(parsed);
    }
  }
  const extra = {};
  const challenge = r.headers.get('www-authenticate');
  if (challenge) extra['www-authenticate'] = challenge;
  return json(res, r.status, body, { 'content-type': r.headers.get('content-type') ?? 'application/json', ...extra });
}

// A crafted ID token for the ID-token faults, for the user of the refresh token in `form`
// (read before the real answer uses the token up).
async function craftedIdToken(kind, form) {
  const provider = server.provider;
  const rt = form.get('refresh_token') ? await provider.RefreshToken.find(form.get('refresh_token')) : undefined;
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    iss: issuer,
    sub: rt ? rt.accountId : 'unknown',
    aud: kind === 'id_token_wrong_aud' ? 'someone-else' : 'notebooks',
    iat: now,
    exp: now + 300,
  };
  let idToken;
  if (kind === 'id_token_alg_none') {
    const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
    idToken = `${enc({ alg: 'none', typ: 'JWT' })}.${enc(claims)}.`;
  } else {
    const key = kind === 'id_token_other_key' ? jwk.unpublished
      : kind === 'id_token_rotated_key' ? jwk.rotated : jwk.main;
    idToken = await new jose.SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', kid: key.kid, typ: 'JWT' })
      .sign(await jose.importJWK(key, 'RS256'));
  }
  return idToken;
}

async function injectFault(req, res) {
  const f = fault;
  f.remaining -= 1;
  if (f.remaining <= 0) fault = null;
  const raw = await readBody(req);
  const form = new URLSearchParams(raw);
  bump(counters.grants, `fault:${form.get('grant_type')}`);
  switch (f.kind) {
    case 'status500': return json(res, 500, '<html>internal error</html>', { 'content-type': 'text/html' });
    case 'slow': await sleep(f.delayMs); return json(res, 503, '<html>too late</html>', { 'content-type': 'text/html' });
    case 'malformed': return json(res, 200, '{"access_token": "abc", "token_type": ');
    case 'redirect': return json(res, 302, '', { location: 'http://127.0.0.1:9/stolen' });
    // Processed for real (a refresh token used up and rotated), then answered too late.
    case 'slow_processed': {
      const real = await realAnswer(req, raw);
      await sleep(f.delayMs);
      return json(res, real.status, real.body);
    }
    default: {
      // The real answer (the refresh really done, rotated if rotation is on), its ID token
      // swapped for a crafted one.
      const idToken = await craftedIdToken(f.kind, form);
      const real = await realAnswer(req, raw);
      if (real.status !== 200) return json(res, real.status, real.body);
      if (f.kind === 'id_token_rotated_key') publishRotatedKey = true;
      return json(res, 200, { ...JSON.parse(real.body), id_token: idToken });
    }
  }
}

async function testEndpoint(req, res, path) {
  const provider = server.provider;
  if (path === '/test/counters') return json(res, 200, counters);
  const body = req.method === 'POST' ? JSON.parse((await readBody(req)) || '{}') : {};
  if (path === '/test/fault') {
    fault = body.kind ? { kind: body.kind, remaining: body.count ?? 1, delayMs: body.delay_ms ?? 0 } : null;
    return json(res, 200, { armed: fault });
  }
  if (path === '/test/device') {
    const code = await provider.DeviceCode.findByUserCode(String(body.user_code).replaceAll('-', '').toUpperCase(), { ignoreExpiration: true });
    if (!code) return json(res, 404, { error: 'no such user_code' });
    if (body.action === 'deny') {
      Object.assign(code, { error: 'access_denied', errorDescription: 'End-User denied the request' });
    } else {
      const accountId = account(body.login ?? 'alice');
      const grant = new provider.Grant({ accountId, clientId: code.clientId });
      grant.addOIDCScope(code.params.scope);
      Object.assign(code, {
        accountId,
        authTime: Math.floor(Date.now() / 1000),
        grantId: await grant.save(),
        scope: code.params.scope,
      });
    }
    await code.save();
    return json(res, 200, { ok: true });
  }
  return json(res, 404, { error: 'unknown test endpoint' });
}

// Auto-approving login and consent: the user is the login_hint.
async function interaction(req, res) {
  const provider = server.provider;
  const details = await provider.interactionDetails(req, res);
  const { params, session, prompt } = details;
  // A person in a browser (the README's local stack) types a login name; tests send login_hint.
  const typed = new URL(req.url, 'http://127.0.0.1').searchParams.get('login');
  const login = params.login_hint || typed;
  const accountId = session?.accountId ?? (login && account(login));
  if (!accountId) {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    return res.end('<!doctype html><title>Test Check-in</title><h1>Test Check-in</h1>'
      + '<p>Any name logs in; <code>outsider</code> is in no VO, everyone else is in vo.notebooks.egi.eu.</p>'
      + '<form method="get"><label>Login name <input name="login" autofocus></label> <button>Log in</button></form>');
  }
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId, clientId: params.client_id });
  grant.addOIDCScope(params.scope);
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { login: { accountId }, consent: { grantId } }, { mergeWithLastSubmission: true });
}

async function handle(req, res) {
  try {
    const url = new URL(req.url, 'http://127.0.0.1');
    bump(counters.paths, url.pathname);
    if (!server.callback) return json(res, 503, { error: 'starting' });
    if (url.pathname.startsWith('/test/')) return await testEndpoint(req, res, url.pathname);
    if (!url.pathname.startsWith(PREFIX)) return json(res, 404, { error: 'not found' });
    if (url.pathname.startsWith(`${PREFIX}/interaction/`)) return await interaction(req, res);
    if (url.pathname === `${PREFIX}${OIDC}/certs` && publishRotatedKey) {
      return json(res, 200, { keys: [publicJwk(jwk.main), publicJwk(jwk.rotated)] });
    }
    if (url.pathname === `${PREFIX}${OIDC}/token` && req.method === 'POST' && fault
      && !req.headers['x-test-no-fault']) return await injectFault(req, res);
    if (quirky && req.method === 'POST' && url.pathname.startsWith(`${PREFIX}${OIDC}/`)
      && !req.headers['x-test-no-fault']) return await quirks(req, res, url);
    req.originalUrl = req.url;
    req.url = req.url.slice(PREFIX.length) || '/';
    return server.callback(req, res);
  } catch (e) {
    console.error(e);
    if (!res.headersSent) json(res, 500, { error: 'server_error', error_description: String(e.message) });
  }
}

process.on('SIGTERM', () => { server?.close(); process.exit(0); });
start();
