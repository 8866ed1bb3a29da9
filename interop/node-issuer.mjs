// An OID4VCI 1.0 credential issuer on Node for the pre-authorized code flow, assembled from the
// oid4vc-ts server libraries as their types and docs lay them out: the authorization server side
// of @openid4vc/oauth2 (Oauth2AuthorizationServer) answers the token endpoint with a JWT access
// token, its resource server side (Oauth2ResourceServer) checks that token at the credential
// endpoint, and Openid4vciIssuer (@openid4vc/openid4vci) makes the metadata and offers and
// parses and checks the credential request and its key proof. The credential is an SD-JWT VC
// (@sd-jwt/sd-jwt-vc, ES256 by @sd-jwt/crypto-nodejs) bound to the key of the proof (cnf.jwk),
// each claim selectively disclosable. HTTP is express 5. It is the other side of the side-by-side
// benchmark (scripts/bench-node), so it does what an honest issuer must: an offer's
// pre-authorized code is good once and for ten minutes, a nonce is good once and for five
// minutes, the proof's signature, audience and nonce are verified, the access token's signature,
// audience and expiry too. All state is in memory.
//
//   node interop/node-issuer.mjs [port]        (or NODE_ISSUER_PORT; default 7010)
//
// Endpoints, the issuer being http://127.0.0.1:<port> (NODE_ISSUER_URL to name another):
//   POST /offers                                 a new offer of the identity credential, for the
//                                                JSON body's claims (the demo person's without):
//                                                {credentialOffer, credentialOfferUri}
//   GET  /credential-offer/:id                   the offer object, until its code is redeemed
//   GET  /.well-known/openid-credential-issuer   credential issuer metadata
//   GET  /.well-known/oauth-authorization-server authorization server metadata (the issuer is
//                                                its own authorization server)
//   GET  /.well-known/jwt-vc-issuer              the SD-JWT VC issuer key, for verifiers
//   GET  /jwks                                   the access token key
//   POST /token                                  pre-authorized code grant (no tx_code)
//   POST /nonce                                  a fresh c_nonce
//   POST /credential                             one SD-JWT VC for one jwt proof

import { randomBytes, randomUUID } from 'node:crypto'

import {
  Oauth2AuthorizationServer,
  Oauth2ErrorCodes,
  Oauth2ResourceServer,
  Oauth2ResourceUnauthorizedError,
  Oauth2ServerErrorResponseError,
  decodeJwt,
  preAuthorizedCodeGrantIdentifier,
} from '@openid4vc/oauth2'
import { Openid4vciIssuer, Openid4vciVersion } from '@openid4vc/openid4vci'
import { setGlobalConfig } from '@openid4vc/utils'
import { ES256, digest, generateSalt } from '@sd-jwt/crypto-nodejs'
import { SDJwtVcInstance } from '@sd-jwt/sd-jwt-vc'
import express from 'express'
import { SignJWT, calculateJwkThumbprint, compactVerify, exportJWK, generateKeyPair, importJWK } from 'jose'
import { hashCallbacks } from './callbacks.mjs'

// The benchmark runs it on plain http on the loopback interface; the libraries refuse http URLs
// in metadata unless told.
setGlobalConfig({ allowInsecureUrls: true })

const port = Number(process.argv[2] ?? process.env.NODE_ISSUER_PORT ?? 7010)
const issuerUrl = process.env.NODE_ISSUER_URL ?? `http://127.0.0.1:${port}`
const CONFIGURATION_ID = 'identity_credential'
const VCT = 'urn:vellum:node-issuer:identity_credential:1'
const OFFER_LIFETIME_MS = 10 * 60 * 1000
const NONCE_LIFETIME_MS = 5 * 60 * 1000
const ACCESS_TOKEN_LIFETIME_S = 5 * 60
const CREDENTIAL_LIFETIME_S = 365 * 24 * 60 * 60
// The claims of an offer made without any, those of the demo profile of the Rust issuer.
const DEMO_CLAIMS = {
  given_name: 'Erika',
  family_name: 'Mustermann',
  birthdate: '1964-08-12',
  address: { street_address: 'Heidestrasse 17', locality: 'Koeln', country: 'DE' },
  nationalities: ['DE'],
}
// Every claim selectively disclosable, the address's members one by one.
const DISCLOSURE_FRAME = {
  _sd: ['given_name', 'family_name', 'birthdate', 'nationalities'],
  address: { _sd: ['street_address', 'locality', 'country'] },
}

/** A fresh ES256 key with its public JWK named by its RFC 7638 thumbprint. */
async function newKey() {
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true })
  const publicJwk = await exportJWK(publicKey)
  const kid = await calculateJwkThumbprint(publicJwk)
  return { publicJwk: { ...publicJwk, kid, alg: 'ES256', use: 'sig' }, privateKey, privateJwk: await exportJWK(privateKey) }
}

// One key signs access tokens, another the credentials.
const tokenKey = await newKey()
const credentialKey = await newKey()
const tokenJwks = { keys: [tokenKey.publicJwk] }
const jwksUri = `${issuerUrl}/jwks`

const callbacks = {
  ...hashCallbacks,
  // The issuer signs only access tokens (a custom signer: the token key, named by kid).
  signJwt: async (signer, { header, payload }) => {
    if (signer.method !== 'custom' || signer.kid !== tokenKey.publicJwk.kid) {
      throw new Error(`the issuer signs only with its token key (asked for ${signer.method})`)
    }
    const jwt = await new SignJWT(payload)
      .setProtectedHeader({ ...header, alg: 'ES256', kid: tokenKey.publicJwk.kid })
      .sign(tokenKey.privateKey)
    return { jwt, signerJwk: tokenKey.publicJwk }
  },
  // The libraries check the claims (nonce, aud, exp); this checks the signature.
  verifyJwt: async (signer, { compact }) => {
    const publicJwk = signer.publicJwk
    if (!publicJwk || signer.alg !== 'ES256') return { verified: false }
    try {
      await compactVerify(compact, await importJWK(publicJwk, 'ES256'), { algorithms: ['ES256'] })
      return { verified: true, signerJwk: publicJwk }
    } catch {
      return { verified: false, signerJwk: publicJwk }
    }
  },
  // The resource server reads the authorization server's jwks_uri for every token it checks;
  // the authorization server is this process, so its keys are answered from memory (as a cache
  // would) instead of over HTTP. Anything else is fetched.
  fetch: async (input, init) => {
    if (String(input) === jwksUri) {
      return new Response(JSON.stringify(tokenJwks), { headers: { 'Content-Type': 'application/jwk-set+json' } })
    }
    return fetch(input, init)
  },
}

const issuer = new Openid4vciIssuer({ callbacks })
const authorizationServer = new Oauth2AuthorizationServer({ callbacks })
const resourceServer = new Oauth2ResourceServer({ callbacks })

const credentialIssuerMetadata = issuer.createCredentialIssuerMetadata({
  credential_issuer: issuerUrl,
  credential_endpoint: `${issuerUrl}/credential`,
  nonce_endpoint: `${issuerUrl}/nonce`,
  display: [{ name: 'Node issuer (oid4vc-ts)', locale: 'en' }],
  credential_configurations_supported: {
    [CONFIGURATION_ID]: {
      format: 'dc+sd-jwt',
      vct: VCT,
      scope: CONFIGURATION_ID,
      cryptographic_binding_methods_supported: ['jwk'],
      credential_signing_alg_values_supported: ['ES256'],
      proof_types_supported: { jwt: { proof_signing_alg_values_supported: ['ES256'] } },
      credential_metadata: {
        display: [{ name: 'Identity credential', locale: 'en' }],
        claims: [
          { path: ['given_name'] },
          { path: ['family_name'] },
          { path: ['birthdate'] },
          { path: ['address', 'street_address'] },
          { path: ['address', 'locality'] },
          { path: ['address', 'country'] },
          { path: ['nationalities'] },
        ],
      },
    },
  },
})
const authorizationServerMetadata = authorizationServer.createAuthorizationServerMetadata({
  issuer: issuerUrl,
  token_endpoint: `${issuerUrl}/token`,
  jwks_uri: jwksUri,
  grant_types_supported: [preAuthorizedCodeGrantIdentifier],
  'pre-authorized_grant_anonymous_access_supported': true,
  dpop_signing_alg_values_supported: ['ES256'],
})
// The metadata as the library's issuer functions take it (what a client resolves it to).
const issuerMetadata = {
  originalDraftVersion: Openid4vciVersion.V1,
  credentialIssuer: credentialIssuerMetadata,
  authorizationServers: [authorizationServerMetadata],
  knownCredentialConfigurations: issuer.getKnownCredentialConfigurationsSupported(credentialIssuerMetadata),
}

const sdJwtVc = new SDJwtVcInstance({
  signer: await ES256.getSigner(credentialKey.privateJwk),
  signAlg: 'ES256',
  hasher: digest,
  saltGenerator: generateSalt,
})

// State, in memory: offers by id, the same offers by their pre-authorized code, grants (what an
// access token's sub names: the claims to issue, until the token expires) and unused nonces.
const offers = new Map()
const offersByCode = new Map()
const grants = new Map()
const nonces = new Map()

// Forgets what has expired, once a minute.
setInterval(() => {
  const now = Date.now()
  for (const [code, offer] of offersByCode) {
    if (offer.expiresAt < now) {
      offersByCode.delete(code)
      offers.delete(offer.id)
    }
  }
  for (const [sub, grant] of grants) if (grant.expiresAt < now) grants.delete(sub)
  for (const [nonce, expiresAt] of nonces) if (expiresAt < now) nonces.delete(nonce)
}, 60_000).unref()

/** The request as the libraries take it: a fetch Headers, the method and the full URL. */
function requestLike(req) {
  const headers = new Headers()
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(', ') : value)
  }
  return { headers, method: req.method, url: new URL(req.originalUrl, issuerUrl).toString() }
}

function oauthError(error, description, status = 400) {
  return new Oauth2ServerErrorResponseError({ error, error_description: description }, { status })
}

/** Wraps a handler: the libraries' OAuth errors become their error responses. */
function handle(handler) {
  return async (req, res) => {
    try {
      await handler(req, res)
    } catch (error) {
      if (error instanceof Oauth2ServerErrorResponseError) {
        res.status(error.status).set('Cache-Control', 'no-store').json(error.errorResponse)
      } else if (error instanceof Oauth2ResourceUnauthorizedError) {
        res.status(401).set('WWW-Authenticate', error.toHeaderValue()).json({ error: 'invalid_token' })
      } else {
        process.stderr.write(`node-issuer: ${error?.stack ?? error}\n`)
        res.status(500).json({ error: 'server_error' })
      }
    }
  }
}

const app = express()
app.disable('x-powered-by')
app.use(express.json())
app.use(express.urlencoded({ extended: false }))

app.get('/.well-known/openid-credential-issuer', (req, res) => res.json(credentialIssuerMetadata))
app.get('/.well-known/oauth-authorization-server', (req, res) => res.json(authorizationServerMetadata))
app.get('/.well-known/jwt-vc-issuer', (req, res) =>
  res.json({ issuer: issuerUrl, jwks: { keys: [credentialKey.publicJwk] } }),
)
app.get('/jwks', (req, res) => res.type('application/jwk-set+json').send(JSON.stringify(tokenJwks)))

app.post(
  '/offers',
  handle(async (req, res) => {
    const claims = req.body?.claims ?? DEMO_CLAIMS
    if (typeof claims !== 'object' || claims === null || Array.isArray(claims)) {
      throw oauthError(Oauth2ErrorCodes.InvalidRequest, 'claims must be a JSON object')
    }
    const id = randomUUID()
    const credentialOfferUri = `${issuerUrl}/credential-offer/${id}`
    // The library makes the pre-authorized code (32 random bytes) when the grant names none.
    const { credentialOffer, credentialOfferObject } = await issuer.createCredentialOffer({
      issuerMetadata,
      credentialConfigurationIds: [CONFIGURATION_ID],
      grants: { [preAuthorizedCodeGrantIdentifier]: {} },
      credentialOfferUri,
    })
    const code = credentialOfferObject.grants[preAuthorizedCodeGrantIdentifier]['pre-authorized_code']
    const offer = { id, code, object: credentialOfferObject, claims, expiresAt: Date.now() + OFFER_LIFETIME_MS }
    offers.set(id, offer)
    offersByCode.set(code, offer)
    res.status(201).json({ credentialOffer, credentialOfferUri })
  }),
)

app.get('/credential-offer/:id', (req, res) => {
  const offer = offers.get(req.params.id)
  if (!offer || offer.expiresAt < Date.now()) return res.status(404).json({ error: 'not_found' })
  res.set('Cache-Control', 'no-store').json(offer.object)
})

app.post(
  '/token',
  handle(async (req, res) => {
    const request = requestLike(req)
    const parsed = authorizationServer.parseAccessTokenRequest({ accessTokenRequest: req.body, request })
    if (parsed.grant.grantType !== preAuthorizedCodeGrantIdentifier) {
      throw oauthError(Oauth2ErrorCodes.UnsupportedGrantType, `grant type ${parsed.grant.grantType} is not supported`)
    }
    // A code is good once: taken out before it is checked, so a second request finds none.
    const offer = offersByCode.get(parsed.grant.preAuthorizedCode)
    if (!offer) throw oauthError(Oauth2ErrorCodes.InvalidGrant, "Invalid 'pre-authorized_code' provided")
    offersByCode.delete(offer.code)
    offers.delete(offer.id)
    const { dpop } = await authorizationServer.verifyPreAuthorizedCodeAccessTokenRequest({
      grant: parsed.grant,
      accessTokenRequest: parsed.accessTokenRequest,
      request,
      dpop: parsed.dpop
        ? { jwt: parsed.dpop.jwt, allowedSigningAlgs: authorizationServerMetadata.dpop_signing_alg_values_supported }
        : undefined,
      authorizationServerMetadata,
      expectedPreAuthorizedCode: offer.code,
      preAuthorizedCodeExpiresAt: new Date(offer.expiresAt),
    })
    const subject = randomUUID()
    grants.set(subject, { claims: offer.claims, expiresAt: Date.now() + ACCESS_TOKEN_LIFETIME_S * 1000 })
    const response = await authorizationServer.createAccessTokenResponse({
      audience: issuerUrl,
      authorizationServer: issuerUrl,
      expiresInSeconds: ACCESS_TOKEN_LIFETIME_S,
      subject,
      signer: { method: 'custom', alg: 'ES256', kid: tokenKey.publicJwk.kid },
      dpop: dpop ? { jwk: dpop.jwk } : undefined,
    })
    res.set('Cache-Control', 'no-store').json(response)
  }),
)

app.post(
  '/nonce',
  handle(async (req, res) => {
    const nonce = Buffer.from(randomBytes(32)).toString('base64url')
    nonces.set(nonce, Date.now() + NONCE_LIFETIME_MS)
    res.set('Cache-Control', 'no-store').json(issuer.createNonceResponse({ cNonce: nonce }))
  }),
)

app.post(
  '/credential',
  handle(async (req, res) => {
    const { tokenPayload } = await resourceServer.verifyResourceRequest({
      request: requestLike(req),
      resourceServer: issuerUrl,
      authorizationServers: [authorizationServerMetadata],
    })
    const grant = grants.get(tokenPayload.sub)
    if (!grant || grant.expiresAt < Date.now()) {
      throw oauthError(Oauth2ErrorCodes.InvalidToken, 'the access token grants nothing (any more)', 401)
    }
    const parsed = issuer.parseCredentialRequest({ issuerMetadata, credentialRequest: req.body })
    if (parsed.credentialConfigurationId !== CONFIGURATION_ID) {
      throw oauthError(Oauth2ErrorCodes.InvalidCredentialRequest, `ask for ${CONFIGURATION_ID} by credential_configuration_id`)
    }
    const jwts = parsed.proofs?.jwt ?? []
    if (jwts.length !== 1) throw oauthError(Oauth2ErrorCodes.InvalidProof, 'exactly one jwt proof is expected')
    // The nonce the proof names must be one this issuer gave and no proof used: taken out first.
    const { payload } = decodeJwt({ jwt: jwts[0] })
    const nonceExpiresAt = typeof payload.nonce === 'string' ? nonces.get(payload.nonce) : undefined
    if (nonceExpiresAt === undefined) throw oauthError(Oauth2ErrorCodes.InvalidNonce, 'the proof has no valid c_nonce')
    nonces.delete(payload.nonce)
    const { signer } = await issuer.verifyCredentialRequestJwtProof({
      issuerMetadata,
      jwt: jwts[0],
      expectedNonce: payload.nonce,
      nonceExpiresAt: new Date(nonceExpiresAt),
    })
    if (signer.method !== 'jwk') throw oauthError(Oauth2ErrorCodes.InvalidProof, 'the proof must carry its key in jwk')
    const { kty, crv, x, y } = signer.publicJwk
    const now = Math.floor(Date.now() / 1000)
    const credential = await sdJwtVc.issue(
      {
        iss: issuerUrl,
        iat: now,
        exp: now + CREDENTIAL_LIFETIME_S,
        vct: VCT,
        cnf: { jwk: { kty, crv, x, y } },
        ...grant.claims,
      },
      DISCLOSURE_FRAME,
      { header: { kid: credentialKey.publicJwk.kid } },
    )
    res.set('Cache-Control', 'no-store').json(
      issuer.createCredentialResponse({ credentialRequest: parsed, credentials: [{ credential }] }),
    )
  }),
)

const server = app.listen(port, '127.0.0.1', (error) => {
  if (error) {
    process.stderr.write(`node-issuer: ${error.message}\n`)
    process.exit(1)
  }
  process.stderr.write(`node-issuer: listening at ${issuerUrl}\n`)
})
// scripts/bench-node stops it with SIGTERM.
process.on('SIGTERM', () => server.close(() => process.exit(0)))
