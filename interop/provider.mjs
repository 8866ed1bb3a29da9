// An upstream OpenID Connect provider for the authorization code flow tests: oidc-provider
// (OpenID Certified) with one confidential client, a few test accounts and a plain login form.
//
//   node interop/provider.mjs --port <port> --client-id <id> --client-secret <secret>
//     --redirect-uri <uri> [--redirect-uri <uri> ...]
//
// Serves http://127.0.0.1:<port> as its issuer and prints one JSON line {"issuer": ...} on stdout
// once it listens; everything else goes to stderr. Its EC P-256 signing key is new at every start,
// so restarting it on the same port rotates the key (a new kid at the same JWKS URI).
//
// With --tamper signature|nonce|aud|expired every ID token the token endpoint hands out is spoilt
// that way (a flipped signature byte, or a claim changed and signed again with the provider's own
// key), for the tests of what the issuer refuses.
//
// Accounts: alice / alice-password and bob / bob-password log in; logging in as "denied" (any
// password) refuses, ending the flow with access_denied at the client's redirect_uri; a wrong
// password shows the form again. Consent is granted without asking, for what was requested.

import { randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import { parseArgs } from 'node:util'

import { CompactSign, base64url, calculateJwkThumbprint, decodeProtectedHeader, exportJWK, generateKeyPair } from 'jose'
import Provider from 'oidc-provider'

// oidc-provider prints its notices with console.info, which writes to stdout: stdout is only for
// the line that says the provider is ready.
console.info = console.log = console.error

function fail(message) {
  process.stderr.write(`provider: ${message}\n`)
  process.exit(1)
}

let args
try {
  ;({ values: args } = parseArgs({
    options: {
      port: { type: 'string' },
      'client-id': { type: 'string' },
      'client-secret': { type: 'string' },
      'redirect-uri': { type: 'string', multiple: true },
      tamper: { type: 'string' },
    },
  }))
} catch (error) {
  fail(error.message)
}
const port = Number(args.port)
if (!Number.isInteger(port) || port <= 0 || !args['client-id'] || !args['client-secret'] || !args['redirect-uri']) {
  fail('usage: node provider.mjs --port <port> --client-id <id> --client-secret <secret> --redirect-uri <uri> [--redirect-uri <uri> ...]')
}
const issuer = `http://127.0.0.1:${port}`
const TAMPERINGS = ['signature', 'nonce', 'aud', 'expired']
if (args.tamper && !TAMPERINGS.includes(args.tamper)) fail(`--tamper takes one of ${TAMPERINGS.join(', ')}`)

const ACCOUNTS = {
  alice: {
    password: 'alice-password',
    claims: {
      given_name: 'Erika',
      family_name: 'Mustermann',
      birthdate: '1964-08-12',
      email: 'erika@example.com',
      email_verified: true,
      address: { street_address: 'Heidestraße 17', locality: 'Köln', postal_code: '51147', country: 'DE' },
    },
  },
  bob: {
    password: 'bob-password',
    claims: { given_name: 'Max', family_name: 'Meier', birthdate: '1990-01-01', email: 'max@example.com' },
  },
}
const REFUSING_LOGIN = 'denied'

const { privateKey } = await generateKeyPair('ES256', { extractable: true })
const signingJwk = await exportJWK(privateKey)
signingJwk.kid = await calculateJwkThumbprint(signingJwk)
signingJwk.alg = 'ES256'
signingJwk.use = 'sig'

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: args['client-id'],
      client_secret: args['client-secret'],
      redirect_uris: args['redirect-uri'],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      // oidc-provider takes the secret in the body (client_secret_post) from such a client too.
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
    },
  ],
  // The issuer verifies only ES256, ES384 and EdDSA: with no RSA key, nothing can ask for RS256.
  jwks: { keys: [signingJwk] },
  responseTypes: ['code'],
  scopes: ['openid', 'profile', 'email', 'address'],
  claims: {
    openid: ['sub'],
    profile: [
      'name', 'family_name', 'given_name', 'middle_name', 'nickname', 'preferred_username', 'profile',
      'picture', 'website', 'gender', 'birthdate', 'zoneinfo', 'locale', 'updated_at',
    ],
    email: ['email', 'email_verified'],
    address: ['address'],
  },
  // By default the claims of the profile, email and address scopes go only to userinfo when an
  // access token is issued; the issuer reads them from the ID token.
  conformIdTokenClaims: false,
  // The issuer always sends a S256 code challenge: a request without one is its bug.
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false } },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  async findAccount(ctx, sub) {
    if (!Object.hasOwn(ACCOUNTS, sub)) return undefined
    return { accountId: sub, claims: async () => ({ sub, ...ACCOUNTS[sub].claims }) }
  },
})

/** The ID token spoilt as --tamper asks. */
async function tampered(idToken) {
  const [header, payload, signature] = idToken.split('.')
  if (args.tamper === 'signature') {
    const bytes = base64url.decode(signature)
    bytes[0] ^= 0x01
    return `${header}.${payload}.${base64url.encode(bytes)}`
  }
  const claims = JSON.parse(new TextDecoder().decode(base64url.decode(payload)))
  const now = Math.floor(Date.now() / 1000)
  if (args.tamper === 'nonce') claims.nonce = 'not-the-nonce-of-this-login'
  if (args.tamper === 'aud') claims.aud = 'another-client'
  if (args.tamper === 'expired') Object.assign(claims, { iat: now - 7200, exp: now - 3600 })
  return new CompactSign(new TextEncoder().encode(JSON.stringify(claims)))
    .setProtectedHeader(decodeProtectedHeader(idToken))
    .sign(privateKey)
}

if (args.tamper) {
  provider.use(async (ctx, next) => {
    await next()
    if (ctx.path === '/token' && typeof ctx.body?.id_token === 'string') {
      ctx.body = { ...ctx.body, id_token: await tampered(ctx.body.id_token) }
    }
  })
}

/** A grant of everything the client asked for, standing in for the holder's consent. */
async function grantAll({ params }, accountId) {
  const grant = new provider.Grant({ accountId, clientId: params.client_id })
  grant.addOIDCScope(params.scope)
  return grant.save()
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`)
}

function loginPage(res, uid, error) {
  res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' })
  res.end(`<!DOCTYPE html>
<html>
<head><meta charset="utf-8"><title>Sign in</title></head>
<body>
<h1>Sign in</h1>
${error ? `<p class="error">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
<label>Login <input name="login" autofocus></label>
<label>Password <input name="password" type="password"></label>
<button type="submit">Sign in</button>
</form>
</body>
</html>
`)
}

async function readForm(req) {
  let body = ''
  for await (const chunk of req) {
    body += chunk
    if (body.length > 10_000) throw Object.assign(new Error('form too large'), { statusCode: 413 })
  }
  return new URLSearchParams(body)
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res)
  if (details.uid !== uid) throw Object.assign(new Error('interaction mismatch'), { statusCode: 400 })
  if (req.method === 'GET' && !action) return loginPage(res, uid)
  if (req.method !== 'POST' || action !== 'login') {
    throw Object.assign(new Error('not found'), { statusCode: 404 })
  }

  const form = await readForm(req)
  const login = form.get('login') ?? ''
  if (login === REFUSING_LOGIN) {
    return provider.interactionFinished(
      req,
      res,
      { error: 'access_denied', error_description: 'the holder refused' },
      { mergeWithLastSubmission: false },
    )
  }
  const account = Object.hasOwn(ACCOUNTS, login) ? ACCOUNTS[login] : undefined
  if (!account || form.get('password') !== account.password) {
    return loginPage(res, uid, 'Wrong login or password.')
  }
  const grantId = await grantAll(details, login)
  return provider.interactionFinished(req, res, { login: { accountId: login }, consent: { grantId } })
}

const handleProtocol = provider.callback()

const server = createServer(async (req, res) => {
  const match = /^\/interaction\/([^/?]+)(?:\/([^/?]+))?(?:\?|$)/.exec(req.url)
  if (!match) return handleProtocol(req, res)
  try {
    await interaction(req, res, match[1], match[2])
  } catch (error) {
    const status = error.statusCode ?? error.status ?? 500
    const detail = status >= 500 ? error.stack : (error.error_description ?? error.message)
    process.stderr.write(`provider: ${req.method} ${req.url}: ${detail}\n`)
    if (!res.headersSent) {
      res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8' })
    }
    res.end(`${error.name}: ${error.error_description ?? error.message}\n`)
  }
})

provider.on('server_error', (ctx, error) => process.stderr.write(`provider: ${ctx.path}: ${error.stack}\n`))

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close(() => process.exit(0))
    server.closeAllConnections()
  })
}

server.on('error', (error) => fail(error.message))
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ issuer })}\n`)
})
