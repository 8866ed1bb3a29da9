// A third-party OID4VCI 1.0 wallet (oid4vc-ts) that redeems a pre-authorized credential offer,
// then checks the SD-JWT VC it received with an independent verifier (@sd-jwt/sd-jwt-vc).
//
//   node interop/wallet.mjs <offer-uri> [tx-code]
//
// Prints one JSON object on stdout: {credential, holderJwk, verified: true, claims}.
// Exits non-zero with a message on stderr on any failure.

import { createHash, randomBytes } from 'node:crypto'

import { clientAuthenticationNone } from '@openid4vc/oauth2'
import { Openid4vciClient, Openid4vciVersion } from '@openid4vc/openid4vci'
import { setGlobalConfig } from '@openid4vc/utils'
import { ES256, digest } from '@sd-jwt/crypto-nodejs'
import { SDJwtVcInstance } from '@sd-jwt/sd-jwt-vc'
import { SignJWT, compactVerify, decodeProtectedHeader, exportJWK, generateKeyPair, importJWK } from 'jose'

const FETCH_TIMEOUT_MS = 20_000

function fail(message) {
  process.stderr.write(`wallet: ${message}\n`)
  process.exit(1)
}

const [offerUri, txCode] = process.argv.slice(2)
if (!offerUri) {
  fail('usage: node wallet.mjs <offer-uri> [tx-code]')
}

// The issuer under test listens on plain http on the loopback interface.
setGlobalConfig({ allowInsecureUrls: true })

function timedFetch(input, init = {}) {
  return fetch(input, { ...init, signal: init.signal ?? AbortSignal.timeout(FETCH_TIMEOUT_MS) })
}

async function getJson(url) {
  const response = await timedFetch(url, { headers: { Accept: 'application/json' } })
  const text = await response.text()
  if (!response.ok) {
    throw new Error(`GET ${url} answered ${response.status}: ${text}`)
  }
  return JSON.parse(text)
}

/** RFC 8615 well-known URI: the well-known segment goes between the host and the issuer's path. */
function wellKnown(issuer, name) {
  const url = new URL(issuer)
  const path = url.pathname === '/' ? '' : url.pathname.replace(/\/$/, '')
  return `${url.origin}/.well-known/${name}${path}`
}

// The holder key the credential is to be bound to.
const holder = await generateKeyPair('ES256', { extractable: true })
const holderJwk = await exportJWK(holder.publicKey)

const callbacks = {
  fetch: timedFetch,
  hash: (data, alg) => {
    const name = { 'sha-256': 'sha256', 'sha-384': 'sha384', 'sha-512': 'sha512' }[alg]
    if (!name) throw new Error(`unsupported hash algorithm ${alg}`)
    return new Uint8Array(createHash(name).update(data).digest())
  },
  generateRandom: (byteLength) => new Uint8Array(randomBytes(byteLength)),
  signJwt: async (signer, { header, payload }) => {
    const key = signer.publicJwk ?? {}
    if (signer.method !== 'jwk' || key.x !== holderJwk.x || key.y !== holderJwk.y || key.crv !== holderJwk.crv) {
      throw new Error(`the wallet only signs with its holder key (asked for ${signer.method})`)
    }
    const jwt = await new SignJWT(payload).setProtectedHeader({ ...header, alg: signer.alg }).sign(holder.privateKey)
    return { jwt, signerJwk: holderJwk }
  },
  verifyJwt: async (signer, { compact }) => {
    const publicJwk = signer.publicJwk
    if (!publicJwk) return { verified: false }
    try {
      await compactVerify(compact, await importJWK(publicJwk, signer.alg))
      return { verified: true, signerJwk: publicJwk }
    } catch {
      return { verified: false, signerJwk: publicJwk }
    }
  },
  clientAuthentication: clientAuthenticationNone({ clientId: 'vellum-interop-wallet' }),
}

async function redeem() {
  const client = new Openid4vciClient({ callbacks })

  const credentialOffer = await client.resolveCredentialOffer(offerUri)
  const issuerMetadata = await client.resolveIssuerMetadata(credentialOffer.credential_issuer)
  if (issuerMetadata.originalDraftVersion !== Openid4vciVersion.V1) {
    throw new Error(`the wallet read the issuer metadata as ${issuerMetadata.originalDraftVersion}, not OID4VCI 1.0`)
  }

  const { accessTokenResponse } = await client.retrievePreAuthorizedCodeAccessTokenFromOffer({
    credentialOffer,
    issuerMetadata,
    txCode,
  })

  const credentialConfigurationId = credentialOffer.credential_configuration_ids[0]
  const { c_nonce: nonce } = await client.requestNonce({ issuerMetadata })
  const { jwt: proof } = await client.createCredentialRequestJwtProof({
    issuerMetadata,
    credentialConfigurationId,
    signer: { method: 'jwk', alg: 'ES256', publicJwk: holderJwk },
    nonce,
  })

  const { credentialResponse } = await client.retrieveCredentials({
    issuerMetadata,
    accessToken: accessTokenResponse.access_token,
    credentialConfigurationId,
    proofs: { jwt: [proof] },
  })
  const credentials = credentialResponse.credentials ?? []
  if (credentials.length !== 1 || typeof credentials[0].credential !== 'string') {
    throw new Error(`expected one compact credential, got ${JSON.stringify(credentialResponse)}`)
  }
  return { issuer: credentialOffer.credential_issuer, credential: credentials[0].credential }
}

/** Verifies the SD-JWT VC with the issuer key named by `kid`, from the jwt-vc-issuer metadata. */
async function verify(issuer, credential) {
  const header = decodeProtectedHeader(credential.split('~')[0])
  if (header.typ !== 'dc+sd-jwt') throw new Error(`credential typ is ${header.typ}, not dc+sd-jwt`)
  if (header.alg !== 'ES256') throw new Error(`credential alg is ${header.alg}, not ES256`)
  if (!header.kid) throw new Error('the credential header names no kid')

  const metadata = await getJson(wellKnown(issuer, 'jwt-vc-issuer'))
  if (metadata.issuer !== issuer) {
    throw new Error(`jwt-vc-issuer metadata names issuer ${metadata.issuer}, expected ${issuer}`)
  }
  const jwks = metadata.jwks ?? (await getJson(metadata.jwks_uri))
  const matching = (jwks.keys ?? []).filter((key) => key.kid === header.kid)
  if (matching.length !== 1) throw new Error(`${matching.length} issuer keys with kid ${header.kid}`)

  const sdjwt = new SDJwtVcInstance({ hasher: digest, verifier: await ES256.getVerifier(matching[0]) })
  const { payload } = await sdjwt.verify(credential)
  if (payload.iss !== issuer) throw new Error(`credential iss is ${payload.iss}, expected ${issuer}`)
  return payload
}

try {
  const { issuer, credential } = await redeem()
  const claims = await verify(issuer, credential)
  process.stdout.write(`${JSON.stringify({ credential, holderJwk, verified: true, claims })}\n`)
} catch (error) {
  const detail = error?.response?.status ? ` (HTTP ${error.response.status} from ${error.response.url})` : ''
  fail(`${error?.stack ?? error}${detail}`)
}
