// A real OpenID provider (node-oidc-provider) for the pg_stepup tests.
//
//   node provider.mjs CONFIG.json
//
// CONFIG (written by tests/oidc_provider.py):
//   { "host": "127.0.0.1", "port": 0, "cert": PEM path, "key": PEM path,
//     "jwks": path of a JWKS with private keys (RS256 for ID tokens, ES256
//             for JWT access tokens; re-read on every start: rotation is a
//             restart with another file),
//     "client": { "client_id", "client_secret", "redirect_uri" },
//     "resource": "urn:pg_stepup:bank", "resource_scope": "transfer",
//     "acr_values": ["1", "2"],   // lowest first; the last one needs the OTP
//     "ttl": 300,
//     "accounts": { "alice": { "password": "...", "totp_secret": hex } } }
//
// Prints one line `READY {"issuer": ..., "port": ...}` on stdout once it
// listens; exits on SIGTERM.
import * as crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as https from 'node:https';

import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const jwks = JSON.parse(readFileSync(config.jwks, 'utf8'));
const [passwordAcr] = config.acr_values;
const otpAcr = config.acr_values[config.acr_values.length - 1];
const ttl = config.ttl ?? 300;

// RFC 6238 TOTP (SHA-1, 6 digits, 30 s steps), as authenticator apps compute it.
function totp(secretHex, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = crypto.createHmac('sha1', Buffer.from(secretHex, 'hex')).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

function totpValid(secretHex, code) {
  const step = Math.floor(Date.now() / 30_000);
  return [step - 1, step, step + 1].some((s) => totp(secretHex, s) === code);
}

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(res, status, title, body) {
  const html = `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${escape(title)}</title></head>`
    + `<body><h1>${escape(title)}</h1>${body}</body></html>`;
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(html);
}

function loginForm(res, uid, error) {
  page(res, error ? 401 : 200, 'Sign in', `${error ? `<p class="error">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login" id="login">
  <input type="text" name="username" autocomplete="username">
  <input type="password" name="password" autocomplete="current-password">
  <button type="submit">Sign in</button>
</form>`);
}

function otpForm(res, uid, error) {
  page(res, error ? 401 : 200, 'Second factor', `${error ? `<p class="error">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/otp" id="otp">
  <input type="text" name="otp" inputmode="numeric" autocomplete="one-time-code">
  <button type="submit">Verify</button>
</form>`);
}

async function formBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 16_384) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

const server = https.createServer({
  cert: readFileSync(config.cert),
  key: readFileSync(config.key),
});

await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(config.port ?? 0, config.host ?? '127.0.0.1', resolve);
});
const { port } = server.address();
// The certificate names localhost; the issuer is what tokens carry in iss.
const issuer = `https://localhost:${port}`;

const provider = new Provider(issuer, {
  jwks,
  clients: [{
    client_id: config.client.client_id,
    client_secret: config.client.client_secret,
    redirect_uris: [config.client.redirect_uri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'RS256',
    // auth_time in every ID token, not only when max_age was asked for.
    require_auth_time: true,
  }],
  acrValues: config.acr_values,
  // amr with the openid scope: every ID token says how the user signed in
  // (acr comes with acr_values, auth_time with require_auth_time).
  claims: {
    openid: ['sub', 'amr'], acr: null, auth_time: null, sid: null, iss: null,
  },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  pkce: { required: () => true },
  ttl: {
    AccessToken: ttl,
    IdToken: ttl,
    AuthorizationCode: 60,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
  },
  features: {
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => config.resource,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resourceIndicator) => {
        if (resourceIndicator !== config.resource) {
          throw new Provider.errors.InvalidTarget();
        }
        // RFC 9068 JWT access token (typ at+jwt), ES256, aud = the resource.
        return {
          scope: config.resource_scope,
          audience: config.resource,
          accessTokenTTL: ttl,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
  // Access tokens carry what the ID token says about the authentication,
  // so that a resource server (here: the database) can judge step-up.
  extraTokenClaims: async (ctx, token) => {
    const code = ctx.oidc.entities.AuthorizationCode;
    if (token.kind !== 'AccessToken' || !code) return undefined;
    return { acr: code.acr, amr: code.amr, auth_time: code.authTime };
  },
  // A first-party client: no consent screen, the grant covers what it asked.
  loadExistingGrant: async (ctx) => {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) {
      const existing = await ctx.oidc.provider.Grant.find(grantId);
      if (existing) return existing;
    }
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid');
    grant.addOIDCClaims(['acr', 'amr', 'auth_time']);
    grant.addResourceScope(config.resource, config.resource_scope);
    await grant.save();
    return grant;
  },
  findAccount: async (ctx, sub) => {
    if (!config.accounts[sub]) return undefined;
    return { accountId: sub, claims: async () => ({ sub }) };
  },
  interactions: {
    url: async (ctx, interaction) => `/interaction/${interaction.uid}`,
  },
  renderError: async (ctx, out) => {
    ctx.type = 'application/json';
    ctx.body = JSON.stringify(out);
  },
});

// Pending second factors: interaction uid -> account that passed the password.
const passwordDone = new Map();

async function interaction(req, res) {
  const url = new URL(req.url, issuer);
  const [, , uid, step] = url.pathname.split('/');
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    page(res, 400, 'Error', '<p>interaction mismatch</p>');
    return;
  }
  // The level the client asked for (acr_values, space separated, preferred first).
  const wanted = (details.params.acr_values || '').split(' ').filter(Boolean);
  const needsOtp = wanted.includes(otpAcr);

  const finish = async (accountId, acr, amr) => {
    passwordDone.delete(uid);
    await provider.interactionFinished(req, res, {
      login: { accountId, acr, amr, ts: Math.floor(Date.now() / 1000) },
    }, { mergeWithLastSubmission: false });
  };

  if (req.method === 'GET' && !step) {
    loginForm(res, uid);
    return;
  }
  if (req.method === 'POST' && step === 'login') {
    const form = await formBody(req);
    const account = config.accounts[form.get('username')];
    if (!account || account.password !== form.get('password')) {
      loginForm(res, uid, 'wrong user name or password');
      return;
    }
    if (!needsOtp) {
      await finish(form.get('username'), passwordAcr, ['pwd']);
      return;
    }
    passwordDone.set(uid, form.get('username'));
    otpForm(res, uid);
    return;
  }
  if (req.method === 'POST' && step === 'otp') {
    const accountId = passwordDone.get(uid);
    if (!accountId) {
      loginForm(res, uid, 'sign in with your password first');
      return;
    }
    const form = await formBody(req);
    if (!totpValid(config.accounts[accountId].totp_secret, form.get('otp') || '')) {
      otpForm(res, uid, 'wrong code');
      return;
    }
    await finish(accountId, otpAcr, ['pwd', 'otp']);
    return;
  }
  page(res, 404, 'Not found', '');
}

const callback = provider.callback();
server.on('request', (req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((err) => {
      console.error(err);
      if (!res.headersSent) page(res, 500, 'Error', `<p>${escape(err.message)}</p>`);
    });
  } else {
    callback(req, res);
  }
});

provider.on('server_error', (ctx, err) => console.error('server_error', err));

function stop() {
  server.close(() => process.exit(0));
  server.closeAllConnections(); // keep-alive clients would hold close() open
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

console.log(`READY ${JSON.stringify({ issuer, port })}`);
