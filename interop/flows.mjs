// A third-party driver of complete pre-authorized flows, the same against any issuer: the wallet
// side is oid4vc-ts (Openid4vciClient), as in interop/wallet.mjs. Each flow has an offer made
// through the issuer's own offer API (an adapter per issuer, below), then, as a fresh wallet with
// a fresh holder key: resolves the offer by reference and the issuer's metadata, redeems the
// pre-authorized code at the token endpoint, gets a c_nonce, signs a proof of the holder key and
// asks for the credential. The SD-JWT VC it gets is verified (@sd-jwt/sd-jwt-vc, with the issuer
// key of its jwt-vc-issuer metadata, read once per run) and must be bound to the holder key.
//
//   node interop/flows.mjs --issuer vellum --url URL [--flows N] [--concurrency C] [--warmup W]
//   node interop/flows.mjs --issuer node --url URL ...
//
// The vellum adapter makes offers of the profile demo-identity at POST {url}/api/v1/offers with
// the management API key in VELLUM_API_KEY; the node adapter at POST {url}/offers of
// interop/node-issuer.mjs. W flows (default 50) run first and are left out of the figures. Prints
// one JSON line: {issuer, flows, warmup, concurrency, seconds, flowsPerSecond, p50Ms, p99Ms},
// latencies being those of whole flows (offer included). Any failed flow ends the run non-zero.

import { parseArgs } from 'node:util'

import { clientAuthenticationNone, preAuthorizedCodeGrantIdentifier } from '@openid4vc/oauth2'
import { Openid4vciClient } from '@openid4vc/openid4vci'
import { setGlobalConfig } from '@openid4vc/utils'
import { ES256, digest } from '@sd-jwt/crypto-nodejs'
import { SDJwtVcInstance } from '@sd-jwt/sd-jwt-vc'
import { SignJWT, compactVerify, decodeProtectedHeader, exportJWK, generateKeyPair, importJWK } from 'jose'
import { hashCallbacks } from './callbacks.mjs'

const FETCH_TIMEOUT_MS = 20_000
const CLIENT_ID = 'vellum-bench-driver'

function fail(message) {
  process.stderr.write(`flows: ${message}\n`)
  process.exit(1)
}

const { values: options } = parseArgs({
  options: {
    issuer: { type: 'string' },
    url: { type: 'string' },
    flows: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '16' },
    warmup: { type: 'string', default: '50' },
  },
})
const [flows, concurrency, warmup] = [options.flows, options.concurrency, options.warmup].map(Number)
if (!options.url) fail('--url is required')
if (![flows, concurrency].every((n) => Number.isInteger(n) && n > 0) || !(Number.isInteger(warmup) && warmup >= 0)) {
  fail('--flows and --concurrency must be positive integers, --warmup a non-negative one')
}
const base = options.url.replace(/\/$/, '')

function timedFetch(input, init = {}) {
  return fetch(input, { ...init, signal: init.signal ?? AbortSignal.timeout(FETCH_TIMEOUT_MS) })
}

async function postJson(url, body, headers = {}) {
  const response = await timedFetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json', ...headers },
    body: JSON.stringify(body),
  })
  const text = await response.text()
  if (!response.ok) throw new Error(`POST ${url} answered ${response.status}: ${text}`)
  return JSON.parse(text)
}

// How each issuer makes an offer: its own API, the only part of a flow that differs.
const adapters = {
  vellum: async () => {
    const apiKey = process.env.VELLUM_API_KEY
    if (!apiKey) throw new Error('set VELLUM_API_KEY to the management API key')
    const { credentialOffer } = await postJson(
      `${base}/api/v1/offers`,
      { profileId: 'demo-identity' },
      { Authorization: `Bearer ${apiKey}` },
    )
    return credentialOffer
  },
  node: async () => (await postJson(`${base}/offers`, {})).credentialOffer,
}
const createOffer = adapters[options.issuer]
if (!createOffer) fail(`--issuer must be one of ${Object.keys(adapters).join(', ')}`)

// Both issuers listen on plain http on the loopback interface.
setGlobalConfig({ allowInsecureUrls: true })

const baseCallbacks = {
  fetch: timedFetch,
  ...hashCallbacks,
  verifyJwt: async (signer, { compact }) => {
    if (!signer.publicJwk) return { verified: false }
    try {
      await compactVerify(compact, await importJWK(signer.publicJwk, signer.alg))
      return { verified: true, signerJwk: signer.publicJwk }
    } catch {
      return { verified: false, signerJwk: signer.publicJwk }
    }
  },
  clientAuthentication: clientAuthenticationNone({ clientId: CLIENT_ID }),
}

/** A wallet of one holder key: the library's client with callbacks that sign with that key. */
async function newWallet() {
  const { publicKey, privateKey } = await generateKeyPair('ES256')
  const publicJwk = await exportJWK(publicKey)
  const client = new Openid4vciClient({
    callbacks: {
      ...baseCallbacks,
      signJwt: async (signer, { header, payload }) => {
        if (signer.method !== 'jwk' || signer.publicJwk.x !== publicJwk.x || signer.publicJwk.y !== publicJwk.y) {
          throw new Error(`the wallet only signs with its holder key (asked for ${signer.method})`)
        }
        const jwt = await new SignJWT(payload).setProtectedHeader({ ...header, alg: 'ES256' }).sign(privateKey)
        return { jwt, signerJwk: publicJwk }
      },
    },
  })
  return { client, publicJwk }
}

// The issuer's SD-JWT VC keys, by kid, from its jwt-vc-issuer metadata (RFC 8615 at the root).
const verifiers = new Map()
async function verifierFor(credential) {
  const { kid, alg, typ } = decodeProtectedHeader(credential.split('~')[0])
  if (typ !== 'dc+sd-jwt' || alg !== 'ES256') throw new Error(`credential typ ${typ}, alg ${alg}`)
  if (!verifiers.has(kid)) {
    const response = await timedFetch(`${base}/.well-known/jwt-vc-issuer`)
    if (!response.ok) throw new Error(`the jwt-vc-issuer metadata answered ${response.status}`)
    const { keys = [] } = (await response.json()).jwks ?? {}
    const key = keys.find((candidate) => candidate.kid === kid)
    if (!key) throw new Error(`no issuer key with kid ${kid}`)
    verifiers.set(kid, new SDJwtVcInstance({ hasher: digest, verifier: await ES256.getVerifier(key) }))
  }
  return verifiers.get(kid)
}

/** One complete flow; throws unless it ends with a verified credential bound to the holder key. */
async function flow() {
  const offerUri = await createOffer()
  const { client, publicJwk } = await newWallet()
  const credentialOffer = await client.resolveCredentialOffer(offerUri)
  if (!credentialOffer.grants?.[preAuthorizedCodeGrantIdentifier]) throw new Error('the offer has no pre-authorized code')
  const issuerMetadata = await client.resolveIssuerMetadata(credentialOffer.credential_issuer)
  const [credentialConfigurationId] = credentialOffer.credential_configuration_ids
  const { accessTokenResponse } = await client.retrievePreAuthorizedCodeAccessTokenFromOffer({
    credentialOffer,
    issuerMetadata,
  })
  const { c_nonce: nonce } = await client.requestNonce({ issuerMetadata })
  const { jwt } = await client.createCredentialRequestJwtProof({
    issuerMetadata,
    credentialConfigurationId,
    signer: { method: 'jwk', alg: 'ES256', publicJwk },
    nonce,
  })
  const { credentialResponse } = await client.retrieveCredentials({
    issuerMetadata,
    accessToken: accessTokenResponse.access_token,
    credentialConfigurationId,
    proofs: { jwt: [jwt] },
  })
  const credential = credentialResponse.credentials?.[0]?.credential
  if (typeof credential !== 'string') throw new Error(`no credential: ${JSON.stringify(credentialResponse)}`)
  const { payload } = await (await verifierFor(credential)).verify(credential)
  const { jwk } = payload.cnf ?? {}
  if (!jwk || jwk.x !== publicJwk.x || jwk.y !== publicJwk.y) throw new Error('the credential is not bound to the holder key')
}

/** Runs `count` flows, `concurrency` at a time: the duration of each. */
async function run(count) {
  const durations = []
  let next = 0
  async function worker() {
    while (next < count) {
      next += 1
      const start = performance.now()
      await flow()
      durations.push(performance.now() - start)
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
  return durations
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]
}

try {
  if (warmup > 0) await run(warmup)
  const start = performance.now()
  const durations = await run(flows)
  const seconds = (performance.now() - start) / 1000
  durations.sort((a, b) => a - b)
  const round = (n, digits) => Number(n.toFixed(digits))
  process.stdout.write(
    `${JSON.stringify({
      issuer: options.issuer,
      flows,
      warmup,
      concurrency,
      seconds: round(seconds, 3),
      flowsPerSecond: round(flows / seconds, 1),
      p50Ms: round(percentile(durations, 50), 2),
      p99Ms: round(percentile(durations, 99), 2),
    })}\n`,
  )
} catch (error) {
  const detail = error?.response?.status ? ` (HTTP ${error.response.status} from ${error.response.url})` : ''
  fail(`${error?.stack ?? error}${detail}`)
}
