// A third-party OID4VCI 1.0 wallet (oid4vc-ts) that redeems a credential offer, pre-authorized or
// issuer-initiated for the authorization code flow, or starts wallet-initiated from the issuer's
// metadata, then checks the credential it received with an independent verifier, chosen by the
// format the issuer metadata gives the credential configuration:
//   dc+sd-jwt    the SD-JWT VC, with @sd-jwt/sd-jwt-vc and the issuer's jwt-vc-issuer metadata;
//   jwt_vc_json  the W3C VC as JWT, with jose and the issuer key resolved from the header's kid
//                (a did:jwk or did:key DID URL, resolved locally);
//   mso_mdoc     the ISO/IEC 18013-5 mdoc (base64url CBOR IssuerSigned), with @auth0/mdl: the
//                wallet presents it in a DeviceResponse signed with its holder key (the mdoc's
//                device key) and verifies that against the IACA PEM in the file $VELLUM_IACA_PEM.
//
//   node interop/wallet.mjs <offer-uri> [tx-code]
//   VELLUM_WALLET_USER=<name> VELLUM_WALLET_PASSWORD=<password> node interop/wallet.mjs <offer-uri>
//   VELLUM_WALLET_USER=<name> VELLUM_WALLET_PASSWORD=<password> \
//     node interop/wallet.mjs --issuer <issuer-url> --configuration <credential-configuration-id>
//
// An offer with a pre-authorized_code grant is redeemed at the token endpoint with the tx-code.
// An offer with only an authorization_code grant goes through the library's authorization code
// flow, always with DPoP: a pushed authorization request (RFC 9126) with the offer's issuer_state,
// the scope of the offered configuration and a PKCE S256 challenge; the holder's login at the
// issuer's upstream provider as VELLUM_WALLET_USER (interop/login.mjs, stopping at the wallet's
// redirect_uri, which is never fetched); the authorization response checked for iss (RFC 9207);
// and the code exchanged with its verifier for a DPoP-bound token. With --issuer and
// --configuration there is no offer (wallet-initiated, OID4VCI 1.0 §5.1): the wallet reads the
// issuer's metadata and pushes a request for the configuration's scope without issuer_state, the
// rest of the flow being the same.
//
// With VELLUM_WALLET_PROVIDER_JWK set to a wallet provider's private JWK (JSON, EC P-256 or P-384
// or Ed25519), the wallet authenticates as a HAIP wallet does (attest_jwt_client_auth,
// draft-ietf-oauth-attestation-based-client-auth): it makes a wallet instance key, has the
// provider key attest it (a Client Attestation with sub = its client_id, cnf.jwk = the instance
// key, valid for an hour), and sends that attestation with a fresh PoP by the instance key at
// every request to the authorization server (PAR and token); in the code flow it fails unless the
// authorization server metadata lists attest_jwt_client_auth. Without it the wallet is a public
// client.
//
// With VELLUM_WALLET_DPOP=1 the pre-authorized flow too proves a DPoP key of its own (RFC 9449,
// another key than the holder key) at the token endpoint, answering use_dpop_nonce as the library
// does, and presents the DPoP-bound token with a proof at the credential endpoint. With DPoP the
// wallet fails unless the token it got is of type DPoP.
//
// With VELLUM_WALLET_REFRESH=1 (code flow only), once it has its credential the wallet uses the
// refresh token of the code's token response (RFC 6749 §6) as the library does, proving the same
// DPoP key and sending the same wallet instance's attestation, since the refresh token is bound to
// both; it fails unless the token response had a refresh_token and the new token is of type DPoP.
// With the new token it asks for the credential again (a new proof, by the same holder key, of a
// new nonce) and verifies that one as it did the first.
//
// With VELLUM_WALLET_BATCH=<n> the wallet asks for n credentials in one credential request (batch
// issuance, OID4VCI 1.0 §8): it makes n holder keys and sends, through the library's request
// builder, proofs.jwt with one proof per key, all of the same c_nonce, in the order of the keys;
// the library refuses more proofs than the metadata's batch_credential_issuance.batch_size. It
// fails unless it gets n credentials, and verifies each on its own, as it does one, checking that
// the credential at each position is bound to the key of the proof at that position (SD-JWT VC:
// cnf.jwk; W3C: sub; mdoc: the MSO device key, the DeviceResponse signed with that key).
// Without it, n is 1.
//
// With VELLUM_WALLET_BINDING=did:jwk or did:key, each proof names its holder key by a DID URL in
// kid (the library's did signer) instead of the jwk header: did:jwk:<base64url of the public JWK,
// its members in an order of the wallet's own: kty, x, y, crv>#0, or the did:key of the P-256 key
// (compressed) with its multibase as the fragment. The wallet fails unless the configuration
// lists that method in cryptographic_binding_methods_supported, and, for a W3C VC, unless sub and
// vc.credentialSubject.id are that DID exactly as the wallet wrote it. Without it, the binding
// is jwk.
//
// A credential request answered 202 with a transaction_id (deferred issuance, OID4VCI 1.0 §9) is
// followed through the library at the deferred credential endpoint: the wallet waits the interval
// the issuer gave, asks again while it answers 202 with the same transaction_id, and goes on with
// the credentials once they come (giving up after 45 s). A deferred credential endpoint error (as
// credential_request_denied when the issuer's backend failed the transaction) ends the wallet
// with that error and its description.
//
// With VELLUM_WALLET_NOTIFY=credential_accepted, credential_failure or credential_deleted, once
// the credentials are verified the wallet sends that event, with the response's notification_id
// and VELLUM_WALLET_NOTIFY_DESCRIPTION as event_description when set, through the library to the
// issuer's notification endpoint (OID4VCI 1.0 §11), with the access token (and a DPoP proof when
// the token is DPoP-bound); it fails unless the endpoint answers 204.
//
// Prints one JSON object on stdout: {credential, holderJwk, verified: true, grant, claims}, grant
// being the grant type the token was got with; for an mdoc, claims is {namespace: {element:
// value}} as @auth0/mdl decoded it (dates as strings, byte strings base64url) and docType names
// the document type. With VELLUM_WALLET_REFRESH=1 it adds refreshed: {credential, holderJwk,
// verified: true, claims} for the credential got again, refreshTokens: [the code's, the refresh's (null without
// one)], so a test can look for them where they must not be, and refreshTokenRotated: whether the
// refresh answered another refresh token than the one it used. The top-level credential, holderJwk,
// claims and docType are those of the first credential; every credential of the request is in
// credentials: [{credential, holderJwk, holderKey, holderDid, verified: true, claims, docType}], in
// the order of the proofs (holderKey the RFC 7638 thumbprint of holderJwk, holderDid the DID its
// proof named, null with jwk binding), also in refreshed, and holderKeys lists the thumbprints.
// notificationId is the notification_id of the response that carried the credentials (null
// without one), deferred is {transactionId, polls} when the issuance was deferred (else null), and
// notified names the event the wallet sent with VELLUM_WALLET_NOTIFY.
// Exits non-zero with a message on stderr on any failure (with an OAuth error response, its error
// and error_description as the library reports them).

import { ECDH, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

import {
  Oauth2Client,
  authorizationCodeGrantIdentifier,
  clientAuthenticationClientAttestationJwt,
  clientAuthenticationNone,
  createClientAttestationJwt,
  getAuthorizationServerMetadataFromList,
  preAuthorizedCodeGrantIdentifier,
} from '@openid4vc/oauth2'
import {
  AuthorizationFlow,
  Openid4vciClient,
  Openid4vciVersion,
  determineAuthorizationServerForCredentialOffer,
  extractScopesForCredentialConfigurationIds,
} from '@openid4vc/openid4vci'
import { setGlobalConfig } from '@openid4vc/utils'

import { DataItem, DeviceResponse, Verifier, parse as parseMdoc } from '@auth0/mdl'
// @auth0/mdl exports no encoder; its own (cbor-x with its options) keeps the transcript identical.
import cborModule from '@auth0/mdl/lib/cbor/index.js'
import { ES256, digest } from '@sd-jwt/crypto-nodejs'
import { SDJwtVcInstance } from '@sd-jwt/sd-jwt-vc'
import {
  SignJWT,
  base64url,
  calculateJwkThumbprint,
  compactVerify,
  decodeProtectedHeader,
  exportJWK,
  generateKeyPair,
  importJWK,
  jwtVerify,
} from 'jose'

import { login } from './login.mjs'
import { hashCallbacks } from './callbacks.mjs'

const FETCH_TIMEOUT_MS = 20_000
const CLIENT_ID = 'vellum-interop-wallet'
// A private-use scheme (RFC 8252 §7.1): the login stops at it, nothing ever fetches it.
const REDIRECT_URI = 'org.vellum.interop-wallet:/callback'
// The attestation's iss: the wallet provider is played by the wallet itself here.
const WALLET_PROVIDER = 'https://wallet-provider.vellum-interop.invalid'
const ATTESTATION_LIFETIME_MS = 60 * 60 * 1000
const REFRESH = process.env.VELLUM_WALLET_REFRESH === '1'
const BATCH = process.env.VELLUM_WALLET_BATCH ?? '1'
const BINDING = process.env.VELLUM_WALLET_BINDING ?? 'jwk'
const BINDINGS = ['jwk', 'did:jwk', 'did:key']
const NOTIFY = process.env.VELLUM_WALLET_NOTIFY
const NOTIFY_DESCRIPTION = process.env.VELLUM_WALLET_NOTIFY_DESCRIPTION
const NOTIFICATION_EVENTS = ['credential_accepted', 'credential_failure', 'credential_deleted']
// How long the wallet follows a deferred issuance before it gives up.
const DEFERRED_PATIENCE_MS = 45_000
const USAGE = `usage: node wallet.mjs <offer-uri> [tx-code]
       node wallet.mjs --issuer <issuer-url> --configuration <credential-configuration-id>`

function fail(message) {
  process.stderr.write(`wallet: ${message}\n`)
  process.exit(1)
}

/** What the wallet is asked to do: redeem an offer, or start from an issuer's metadata. */
function parseCommandLine() {
  let parsed
  try {
    parsed = parseArgs({
      options: { issuer: { type: 'string' }, configuration: { type: 'string' } },
      allowPositionals: true,
    })
  } catch (error) {
    fail(`${error.message}\n${USAGE}`)
  }
  const { values, positionals } = parsed
  if (values.issuer !== undefined || values.configuration !== undefined) {
    if (!values.issuer || !values.configuration || positionals.length > 0) fail(USAGE)
    return { issuer: values.issuer, configurationId: values.configuration }
  }
  const [offerUri, txCode] = positionals
  if (!offerUri || positionals.length > 2) fail(USAGE)
  return { offerUri, txCode }
}

const command = parseCommandLine()
if (!/^[1-9][0-9]*$/.test(BATCH)) fail(`VELLUM_WALLET_BATCH must be a positive integer, not ${JSON.stringify(BATCH)}`)
if (!BINDINGS.includes(BINDING)) fail(`VELLUM_WALLET_BINDING must be one of ${BINDINGS.join(', ')}`)
if (NOTIFY !== undefined && !NOTIFICATION_EVENTS.includes(NOTIFY)) {
  fail(`VELLUM_WALLET_NOTIFY must be one of ${NOTIFICATION_EVENTS.join(', ')}`)
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

// The holder keys, one per credential asked for, each credential to be bound to its own.
const holders = await Promise.all(
  Array.from({ length: Number(BATCH) }, async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true })
    const publicJwk = await exportJWK(publicKey)
    return { publicJwk, privateKey, thumbprint: await calculateJwkThumbprint(publicJwk) }
  }),
)

// The DPoP key, used in the authorization code flow and, with VELLUM_WALLET_DPOP=1, in the
// pre-authorized one.
const dpopKey = await generateKeyPair('ES256', { extractable: true })
const dpopJwk = await exportJWK(dpopKey.publicKey)
const dpopSigner = { method: 'jwk', alg: 'ES256', publicJwk: dpopJwk }

/** The JWS algorithm of a key of the curves a wallet provider may sign with. */
function algorithmOf(jwk) {
  const algorithm = { 'P-256': 'ES256', 'P-384': 'ES384', Ed25519: 'EdDSA' }[jwk.crv]
  if (!algorithm) throw new Error(`the wallet provider key has crv ${jwk.crv}: use P-256, P-384 or Ed25519`)
  return algorithm
}

/**
 * With VELLUM_WALLET_PROVIDER_JWK, the wallet provider's key and a fresh wallet instance key, the
 * one it attests; null for a public client.
 */
async function attestationKeys() {
  const text = process.env.VELLUM_WALLET_PROVIDER_JWK
  if (!text) return null
  const { d, ...providerJwk } = JSON.parse(text)
  if (!d) throw new Error('VELLUM_WALLET_PROVIDER_JWK must be a private JWK (with d)')
  const providerAlg = algorithmOf(providerJwk)
  const provider = { publicJwk: providerJwk, privateKey: await importJWK({ ...providerJwk, d }, providerAlg) }
  const instance = await generateKeyPair('ES256', { extractable: true })
  return {
    provider,
    providerSigner: { method: 'jwk', alg: providerAlg, publicJwk: providerJwk },
    instance: { publicJwk: await exportJWK(instance.publicKey), privateKey: instance.privateKey },
  }
}

const attestation = await attestationKeys().catch((error) => fail(error.message))

// Every key the wallet signs with, found by the public JWK the library names.
const signingKeys = [
  ...holders,
  { publicJwk: dpopJwk, privateKey: dpopKey.privateKey },
  ...(attestation ? [attestation.provider, attestation.instance] : []),
]

const callbacks = {
  fetch: timedFetch,
  ...hashCallbacks,
  signJwt: async (signer, { header, payload }) => {
    // A did signer names its key by a DID URL (the kid the library puts in the header).
    const key = (signer.method === 'did' ? resolveDid(signer.didUrl) : signer.publicJwk) ?? {}
    const own = ['jwk', 'did'].includes(signer.method)
      ? signingKeys.find(({ publicJwk }) => sameKey(publicJwk, key))
      : undefined
    if (!own) {
      throw new Error(`the wallet only signs with keys of its own (asked for ${signer.method})`)
    }
    const jwt = await new SignJWT(payload).setProtectedHeader({ ...header, alg: signer.alg }).sign(own.privateKey)
    return { jwt, signerJwk: key }
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
}

/**
 * The wallet instance's Client Attestation, as its provider issues it: the client_id in sub, the
 * instance key in cnf.jwk.
 */
async function attestInstance({ providerSigner, instance }) {
  return createClientAttestationJwt({
    issuer: WALLET_PROVIDER,
    clientId: CLIENT_ID,
    expiresAt: new Date(Date.now() + ATTESTATION_LIFETIME_MS),
    confirmation: { jwk: instance.publicJwk },
    additionalPayload: { wallet_name: 'Vellum interop wallet (oid4vc-ts)' },
    signer: providerSigner,
    callbacks,
  })
}

// The library sends the attestation with a new PoP (aud: the authorization server's issuer) at
// each request to the authorization server; the client_id goes in the pushed request itself.
callbacks.clientAuthentication = attestation
  ? clientAuthenticationClientAttestationJwt({
      clientAttestationJwt: await attestInstance(attestation).catch((error) => fail(`cannot attest the instance: ${error}`)),
      callbacks,
    })
  : clientAuthenticationNone({ clientId: CLIENT_ID })

/**
 * The authorization code flow, DPoP-bound from the pushed request on, for an issuer-initiated
 * offer or, without `credentialOffer`, wallet-initiated for `credentialConfigurationId`: the
 * access token response, the DPoP state (key and latest server nonce) and the metadata of the
 * authorization server that answered it.
 */
async function retrieveAccessTokenByLogin(client, issuerMetadata, credentialConfigurationId, credentialOffer) {
  const username = process.env.VELLUM_WALLET_USER
  const password = process.env.VELLUM_WALLET_PASSWORD
  if (!username || !password) {
    throw new Error('the code flow needs a login: set VELLUM_WALLET_USER and VELLUM_WALLET_PASSWORD')
  }
  const scope = extractScopesForCredentialConfigurationIds({
    credentialConfigurationIds: credentialOffer?.credential_configuration_ids ?? [credentialConfigurationId],
    issuerMetadata,
    throwOnConfigurationWithoutScope: true,
  }).join(' ')
  const authorizationServerMetadata = getAuthorizationServerMetadataFromList(
    issuerMetadata.authorizationServers,
    // Unless the offer's grant names one: the only one the issuer metadata lists, or the issuer.
    determineAuthorizationServerForCredentialOffer({
      issuerMetadata,
      grantAuthorizationServer: credentialOffer?.grants?.[authorizationCodeGrantIdentifier]?.authorization_server,
    }),
  )
  const oauth2Client = new Oauth2Client({ callbacks })
  if (attestation && !oauth2Client.isClientAttestationSupported({ authorizationServerMetadata }).supported) {
    throw new Error(
      `the authorization server does not list attest_jwt_client_auth: ${JSON.stringify(authorizationServerMetadata.token_endpoint_auth_methods_supported)}`,
    )
  }
  const authorizationRequest = {
    clientId: CLIENT_ID,
    redirectUri: REDIRECT_URI,
    scope,
    dpop: { signer: dpopSigner },
  }
  let authorization
  if (credentialOffer) {
    authorization = await client.initiateAuthorization({ ...authorizationRequest, credentialOffer, issuerMetadata })
    if (authorization.authorizationFlow !== AuthorizationFlow.Oauth2Redirect) {
      throw new Error(`the issuer asked for the ${authorization.authorizationFlow} flow, not a redirect`)
    }
  } else {
    // No issuer_state: the scope alone says what the wallet asks for.
    authorization = await oauth2Client.initiateAuthorization({
      ...authorizationRequest,
      authorizationServerMetadata,
      resource: issuerMetadata.credentialIssuer.credential_issuer,
    })
  }
  if (authorization.pkce?.codeChallengeMethod !== 'S256') {
    throw new Error(`the library chose PKCE ${authorization.pkce?.codeChallengeMethod}, not S256`)
  }
  // The library pushes the request when the server has a PAR endpoint and sends only its reference.
  if (!new URL(authorization.authorizationRequestUrl).searchParams.has('request_uri')) {
    throw new Error(`the authorization request was not pushed: ${authorization.authorizationRequestUrl}`)
  }

  const redirect = await login(authorization.authorizationRequestUrl, { username, password, stopAt: REDIRECT_URI })
  const response = client.parseAndVerifyAuthorizationResponseRedirectUrl({ url: redirect, authorizationServerMetadata })
  if (response.error) {
    throw new Error(`the authorization ended with ${response.error}: ${response.error_description ?? ''}`)
  }
  const exchange = {
    authorizationCode: response.code,
    pkceCodeVerifier: authorization.pkce.codeVerifier,
    redirectUri: REDIRECT_URI,
    dpop: authorization.dpop,
  }
  const token = credentialOffer
    ? await client.retrieveAuthorizationCodeAccessTokenFromOffer({ ...exchange, credentialOffer, issuerMetadata })
    : await oauth2Client.retrieveAuthorizationCodeAccessToken({
        ...exchange,
        authorizationServerMetadata,
        resource: issuerMetadata.credentialIssuer.credential_issuer,
      })
  return { ...token, authorizationServerMetadata }
}

/**
 * Exchanges the refresh token of the code flow's `token` for a new access token at the server that
 * issued it, with the DPoP key and server nonce of the exchange and, through the callbacks' client
 * authentication, the same wallet instance's attestation. Returns the new token and the refresh
 * tokens seen, the code's and the refresh's.
 */
async function refreshAccessToken(issuerMetadata, token) {
  const refreshToken = token.accessTokenResponse.refresh_token
  if (!refreshToken) {
    throw new Error(`the code's token response has no refresh_token: ${JSON.stringify(Object.keys(token.accessTokenResponse))}`)
  }
  const refreshed = await new Oauth2Client({ callbacks }).retrieveRefreshTokenAccessToken({
    authorizationServerMetadata: token.authorizationServerMetadata,
    refreshToken,
    // As the library sends it with the code.
    resource: issuerMetadata.credentialIssuer.credential_issuer,
    dpop: { ...token.dpop, signer: dpopSigner },
  })
  if (refreshed.accessTokenResponse.token_type !== 'DPoP') {
    throw new Error(`the refresh gave a token of type ${refreshed.accessTokenResponse.token_type}, not DPoP`)
  }
  return { token: refreshed, refreshTokens: [refreshToken, refreshed.accessTokenResponse.refresh_token ?? null] }
}

/**
 * What the wallet is to get and from whom: the offer resolved, or, wallet-initiated, the issuer
 * named on the command line and the configuration it was asked for.
 */
async function resolveRequest(client) {
  const credentialOffer = command.offerUri ? await client.resolveCredentialOffer(command.offerUri) : undefined
  const issuer = credentialOffer?.credential_issuer ?? command.issuer
  const issuerMetadata = await client.resolveIssuerMetadata(issuer)
  if (issuerMetadata.originalDraftVersion !== Openid4vciVersion.V1) {
    throw new Error(`the wallet read the issuer metadata as ${issuerMetadata.originalDraftVersion}, not OID4VCI 1.0`)
  }
  const credentialConfigurationId = credentialOffer?.credential_configuration_ids[0] ?? command.configurationId
  return { issuer, issuerMetadata, credentialOffer, credentialConfigurationId }
}

async function redeem() {
  const client = new Openid4vciClient({ callbacks })
  const { issuer, issuerMetadata, credentialOffer, credentialConfigurationId } = await resolveRequest(client)
  const configuration = issuerMetadata.credentialIssuer.credential_configurations_supported[credentialConfigurationId]
  if (!configuration) throw new Error(`the issuer metadata has no configuration ${credentialConfigurationId}`)
  const bindingMethods = configuration.cryptographic_binding_methods_supported ?? []
  if (BINDING !== 'jwk' && !bindingMethods.includes(BINDING)) {
    throw new Error(
      `the configuration does not list ${BINDING} in cryptographic_binding_methods_supported: ${JSON.stringify(bindingMethods)}`,
    )
  }

  const grants = credentialOffer?.grants ?? {}
  let grant
  let useDpop
  let token
  if (grants[preAuthorizedCodeGrantIdentifier]) {
    grant = preAuthorizedCodeGrantIdentifier
    useDpop = process.env.VELLUM_WALLET_DPOP === '1'
    token = await client.retrievePreAuthorizedCodeAccessTokenFromOffer({
      credentialOffer,
      issuerMetadata,
      txCode: command.txCode,
      dpop: useDpop ? { signer: dpopSigner } : undefined,
    })
  } else if (!credentialOffer || grants[authorizationCodeGrantIdentifier]) {
    grant = authorizationCodeGrantIdentifier
    useDpop = true
    token = await retrieveAccessTokenByLogin(client, issuerMetadata, credentialConfigurationId, credentialOffer)
  } else {
    throw new Error(`the offer has no grant this wallet uses: ${JSON.stringify(grants)}`)
  }
  if (REFRESH && grant !== authorizationCodeGrantIdentifier) {
    throw new Error(`VELLUM_WALLET_REFRESH=1 needs the authorization code flow, the offer has ${grant}`)
  }
  if (useDpop && token.accessTokenResponse.token_type !== 'DPoP') {
    throw new Error(`asked for a DPoP-bound token, got token_type ${token.accessTokenResponse.token_type}`)
  }
  const obtained = await requestCredentials(client, issuerMetadata, credentialConfigurationId, token, useDpop)
  const redeemed = { client, issuer, issuerMetadata, configuration, obtained, grant }
  if (!REFRESH) return redeemed

  const { token: refreshed, refreshTokens } = await refreshAccessToken(issuerMetadata, token)
  const again = await requestCredentials(client, issuerMetadata, credentialConfigurationId, refreshed, true)
  return { ...redeemed, refresh: { credentials: again.credentials, refreshTokens } }
}

/**
 * The library's signer for a holder key: the key itself in the proof's jwk header, or, with
 * VELLUM_WALLET_BINDING, the DID URL of its did:jwk or did:key in kid.
 */
function holderSigner(holder) {
  if (BINDING === 'jwk') return { method: 'jwk', alg: 'ES256', publicJwk: holder.publicJwk }
  return { method: 'did', alg: 'ES256', didUrl: holderDidUrl(holder.publicJwk) }
}

/** The DPoP state for the next request: the key, and the server's latest nonce. */
function nextDpop(dpop, response) {
  return dpop && response.dpop?.nonce ? { ...dpop, nonce: response.dpop.nonce } : dpop
}

/**
 * One credential per holder key, in the order of the keys, asked for in one request with `token`
 * (proving its DPoP key if `useDpop`): a proof per key, all of one c_nonce. A deferred answer (a
 * transaction_id) is followed at the deferred credential endpoint until the credentials come.
 * Returns them with the response's notification_id, what the deferral took (null when there was
 * none) and how to reach the issuer's resource endpoints again (the token and the DPoP state).
 */
async function requestCredentials(client, issuerMetadata, credentialConfigurationId, token, useDpop) {
  const accessToken = token.accessTokenResponse.access_token
  const { c_nonce: nonce } = await client.requestNonce({ issuerMetadata })
  const proofs = []
  for (const holder of holders) {
    const { jwt } = await client.createCredentialRequestJwtProof({
      issuerMetadata,
      credentialConfigurationId,
      signer: holderSigner(holder),
      nonce,
    })
    proofs.push(jwt)
  }

  let dpop = useDpop ? { ...token.dpop, signer: dpopSigner } : undefined
  const response = await client.retrieveCredentials({
    issuerMetadata,
    accessToken,
    credentialConfigurationId,
    proofs: { jwt: proofs },
    dpop,
  })
  dpop = nextDpop(dpop, response)
  let { credentialResponse } = response
  let deferred = null
  if (credentialResponse.transaction_id !== undefined) {
    if (response.response.status !== 202) {
      throw new Error(`a transaction_id came with HTTP ${response.response.status}, not 202`)
    }
    ;({ credentialResponse, deferred, dpop } = await awaitDeferred(client, issuerMetadata, accessToken, credentialResponse, dpop))
  }
  const credentials = credentialResponse.credentials ?? []
  if (credentials.length !== holders.length || credentials.some(({ credential }) => typeof credential !== 'string')) {
    throw new Error(
      `expected ${holders.length} compact credential(s), one per proof, got ${JSON.stringify(credentialResponse)}`,
    )
  }
  return {
    credentials: credentials.map(({ credential }) => credential),
    notificationId: credentialResponse.notification_id ?? null,
    deferred,
    access: { accessToken, dpop },
  }
}

/**
 * Follows a deferred issuance (OID4VCI 1.0 §9) through the library: waits the interval the issuer
 * asked for, asks at the deferred credential endpoint with the transaction_id, and again while it
 * answers 202 with the same transaction_id, until the credentials come (or an error, or
 * DEFERRED_PATIENCE_MS). Returns the final response, {transactionId, polls} and the DPoP state.
 */
async function awaitDeferred(client, issuerMetadata, accessToken, pending, dpop) {
  const transactionId = pending.transaction_id
  const deadline = Date.now() + DEFERRED_PATIENCE_MS
  let interval = pending.interval
  let polls = 0
  for (;;) {
    if (Date.now() + interval * 1000 > deadline) {
      throw new Error(`the deferred credentials were not ready within ${DEFERRED_PATIENCE_MS} ms (${polls} requests)`)
    }
    await new Promise((resolve) => setTimeout(resolve, interval * 1000))
    polls += 1
    const response = await retrieveDeferred(client, { issuerMetadata, accessToken, transactionId, dpop })
    dpop = nextDpop(dpop, response)
    const body = response.deferredCredentialResponse
    if (body.credentials !== undefined) {
      if (response.response.status !== 200) throw new Error(`credentials came with HTTP ${response.response.status}`)
      return { credentialResponse: body, deferred: { transactionId, polls }, dpop }
    }
    if (response.response.status !== 202) throw new Error(`still pending with HTTP ${response.response.status}, not 202`)
    interval = body.interval
  }
}

/**
 * The library's retrieveDeferredCredentials, its errors made plain (the OAuth error and
 * description the issuer answered). oid4vc-ts 0.4.6 inverts its check of notification_id in a
 * deferred response (upstream issue 245): it refuses notification_id beside credentials, which
 * OID4VCI 1.0 §9.2 and §8.3 prescribe. A 200 response refused for that reason alone is taken as
 * the library parsed it; any other issue still fails.
 */
async function retrieveDeferred(client, options) {
  try {
    return await client.retrieveDeferredCredentials(options)
  } catch (error) {
    const failed = error?.response
    const issues = failed?.deferredCredentialResponseResult?.error?.issues ?? []
    const inverted = "'notification_id' MUST NOT be defined when 'credentials' is not defined."
    if (failed?.response?.status === 200 && issues.length > 0 && issues.every(({ message }) => message === inverted)) {
      const body = await failed.response.clone().json()
      return { ...failed, ok: true, deferredCredentialResponse: body }
    }
    const answered = failed?.deferredCredentialErrorResponseResult?.data
    if (answered?.error) {
      throw new Error(
        `the deferred credential endpoint answered HTTP ${failed.response.status} ${answered.error}: ${answered.error_description ?? ''}`,
      )
    }
    throw error
  }
}

/**
 * Tells the issuer's notification endpoint (OID4VCI 1.0 §11), through the library, what became of
 * the credentials of the response with `notificationId`: NOTIFY, with NOTIFY_DESCRIPTION.
 */
async function notify(client, issuerMetadata, notificationId, { accessToken, dpop }) {
  if (notificationId === null) throw new Error('the credential response has no notification_id to notify with')
  if (!issuerMetadata.credentialIssuer.notification_endpoint) {
    throw new Error('the issuer metadata has no notification_endpoint')
  }
  const response = await client.sendNotification({
    issuerMetadata,
    notification: { notificationId, event: NOTIFY, eventDescription: NOTIFY_DESCRIPTION },
    accessToken,
    dpop,
  })
  if (response.response.status !== 204) {
    throw new Error(`the notification endpoint answered HTTP ${response.response.status}, not 204`)
  }
}

/**
 * Verifies the SD-JWT VC with the issuer key named by `kid`, from the jwt-vc-issuer metadata, and
 * checks that it is bound to `holder`'s key.
 */
async function verify(issuer, credential, holder) {
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
  if (!payload.cnf?.jwk || !sameKey(payload.cnf.jwk, holder.publicJwk)) {
    throw new Error(`cnf ${JSON.stringify(payload.cnf)} is not the key of the credential's proof`)
  }
  return payload
}

// did:jwk and did:key resolution, done here without the issuer's help.

const BASE58_ALPHABET = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'

function base58Decode(text) {
  let value = 0n
  for (const char of text) {
    const digit = BASE58_ALPHABET.indexOf(char)
    if (digit < 0) throw new Error(`${JSON.stringify(char)} is not a base58 character`)
    value = value * 58n + BigInt(digit)
  }
  const bytes = []
  while (value > 0n) {
    bytes.unshift(Number(value % 256n))
    value /= 256n
  }
  const leadingZeros = text.length - text.replace(/^1+/, '').length
  return Uint8Array.from([...new Array(leadingZeros).fill(0), ...bytes])
}

/** Multicodec varint prefixes of the did:key public keys this wallet resolves. */
const DID_KEY_CODECS = [
  { prefix: [0x80, 0x24], kty: 'EC', crv: 'P-256', curve: 'prime256v1', length: 33 },
  { prefix: [0x81, 0x24], kty: 'EC', crv: 'P-384', curve: 'secp384r1', length: 49 },
  { prefix: [0xed, 0x01], kty: 'OKP', crv: 'Ed25519', length: 32 },
]

function splitDidUrl(didUrl) {
  const hash = didUrl.indexOf('#')
  return hash < 0 ? { did: didUrl, fragment: undefined } : { did: didUrl.slice(0, hash), fragment: didUrl.slice(hash + 1) }
}

/** The public JWK of a did:jwk or did:key (a DID URL's fragment is ignored). */
function resolveDid(didUrl) {
  const { did } = splitDidUrl(didUrl)
  if (did.startsWith('did:jwk:')) {
    const jwk = JSON.parse(new TextDecoder().decode(base64url.decode(did.slice('did:jwk:'.length))))
    if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) throw new Error(`${did} is not a JWK`)
    if ('d' in jwk) throw new Error(`${did} carries a private key`)
    return jwk
  }
  if (did.startsWith('did:key:z')) {
    const bytes = base58Decode(did.slice('did:key:z'.length))
    const codec = DID_KEY_CODECS.find(({ prefix }) => bytes[0] === prefix[0] && bytes[1] === prefix[1])
    if (!codec) throw new Error(`${did} is not a P-256, P-384 or Ed25519 did:key`)
    const key = bytes.slice(2)
    if (key.length !== codec.length) throw new Error(`${did} has a ${key.length}-byte ${codec.crv} key`)
    if (codec.kty === 'OKP') return { kty: 'OKP', crv: codec.crv, x: base64url.encode(key) }
    // Node's KeyObject does not take compressed points; ECDH converts (and checks) them.
    const point = ECDH.convertKey(Buffer.from(key), codec.curve, undefined, undefined, 'uncompressed')
    const size = (point.length - 1) / 2
    return {
      kty: 'EC',
      crv: codec.crv,
      x: base64url.encode(point.subarray(1, 1 + size)),
      y: base64url.encode(point.subarray(1 + size)),
    }
  }
  throw new Error(`cannot resolve ${JSON.stringify(did)}: only did:jwk and did:key are supported`)
}

function base58Encode(bytes) {
  let value = 0n
  for (const byte of bytes) value = value * 256n + BigInt(byte)
  let text = ''
  while (value > 0n) {
    text = BASE58_ALPHABET[Number(value % 58n)] + text
    value /= 58n
  }
  const firstNonZero = bytes.findIndex((byte) => byte !== 0)
  return '1'.repeat(firstNonZero < 0 ? bytes.length : firstNonZero) + text
}

/**
 * The DID a holder key's proof names with VELLUM_WALLET_BINDING, null with jwk binding: a did:jwk
 * of the JWK with its members written kty, x, y, crv (neither the lexicographic order of RFC 7638
 * nor the usual kty, crv, x, y, so that an issuer that writes the DID again from the key shows),
 * or the did:key of the P-256 key, compressed.
 */
function holderDidOf(publicJwk) {
  const { kty, crv, x, y } = publicJwk
  if (BINDING === 'did:jwk') return `did:jwk:${base64url.encode(JSON.stringify({ kty, x, y, crv }))}`
  if (BINDING === 'did:key') {
    const codec = DID_KEY_CODECS.find((candidate) => candidate.crv === crv)
    const point = Buffer.concat([Buffer.from([4]), base64url.decode(x), base64url.decode(y)])
    const compressed = ECDH.convertKey(point, codec.curve, undefined, undefined, 'compressed')
    return `did:key:z${base58Encode(Uint8Array.from([...codec.prefix, ...compressed]))}`
  }
  return null
}

/** The DID URL of the verification method of a holder key's DID: `#0`, or a did:key's multibase. */
function holderDidUrl(publicJwk) {
  const did = holderDidOf(publicJwk)
  return did.startsWith('did:key:') ? `${did}#${did.slice('did:key:'.length)}` : `${did}#0`
}

function sameKey(a, b) {
  return a.kty === b.kty && a.crv === b.crv && a.x === b.x && (a.y ?? null) === (b.y ?? null)
}

/** The DID of a VC's `issuer`, which is a URI or an object with an `id`. */
function issuerId(issuer) {
  return typeof issuer === 'object' && issuer !== null ? issuer.id : issuer
}

/**
 * Verifies the W3C VC as JWT with the key of the DID its header's kid names, and checks that the
 * credential names that DID as its issuer and is bound to `holder`'s key: by the DID its proof
 * named, exactly as written, or else by the key's did:jwk.
 */
async function verifyJwtVc(configuration, credential, holder) {
  const header = decodeProtectedHeader(credential)
  if (header.alg !== 'ES256') throw new Error(`credential alg is ${header.alg}, not ES256`)
  if (header.typ !== 'JWT' && header.typ !== 'vc+jwt') throw new Error(`credential typ is ${header.typ}`)
  if (typeof header.kid !== 'string') throw new Error('the credential header names no kid')
  const { did, fragment } = splitDidUrl(header.kid)
  const expectedFragment = did.startsWith('did:key:') ? did.slice('did:key:'.length) : '0'
  if (fragment !== expectedFragment) {
    throw new Error(`kid ${header.kid} is not the verification method of ${did} (#${expectedFragment})`)
  }

  const issuerJwk = resolveDid(header.kid)
  const { payload } = await jwtVerify(credential, await importJWK(issuerJwk, header.alg), {
    algorithms: ['ES256'],
    issuer: did,
    requiredClaims: ['iss', 'sub', 'nbf', 'exp'],
  })

  // VCDM 1.1 puts the credential in the vc claim; VCDM 2.0 makes it the payload.
  const vc = payload.vc ?? payload
  if (issuerId(vc.issuer) !== did) throw new Error(`vc.issuer is ${JSON.stringify(vc.issuer)}, expected ${did}`)
  const subject = vc.credentialSubject
  if (typeof subject !== 'object' || subject === null || Array.isArray(subject)) {
    throw new Error(`the credential has no single credentialSubject: ${JSON.stringify(subject)}`)
  }
  if (subject.id !== payload.sub) throw new Error(`credentialSubject.id ${subject.id} is not sub ${payload.sub}`)
  const holderDid = holderDidOf(holder.publicJwk)
  if (holderDid !== null && payload.sub !== holderDid) {
    throw new Error(`sub ${payload.sub} is not the DID the proof named, ${holderDid}`)
  }
  if (holderDid === null && !payload.sub.startsWith('did:jwk:')) throw new Error(`sub ${payload.sub} is not a did:jwk`)
  if (!sameKey(resolveDid(payload.sub), holder.publicJwk)) {
    throw new Error(`sub ${payload.sub} resolves to another key than the one of the credential's proof`)
  }
  const types = Array.isArray(vc.type) ? vc.type : [vc.type]
  for (const type of configuration.credential_definition?.type ?? []) {
    if (!types.includes(type)) throw new Error(`the credential's type ${JSON.stringify(vc.type)} lacks ${type}`)
  }
  return payload
}

// ISO/IEC 18013-5 mdoc.

const { cborEncode } = cborModule

/** The CBOR head of a major type and length (RFC 8949 section 3). */
function cborHead(major, length) {
  if (length < 24) return Buffer.from([(major << 5) | length])
  if (length < 0x100) return Buffer.from([(major << 5) | 24, length])
  if (length < 0x10000) return Buffer.from([(major << 5) | 25, length >> 8, length & 0xff])
  throw new Error(`CBOR length ${length} is out of range here`)
}

function cborText(text) {
  const bytes = Buffer.from(text, 'utf8')
  return Buffer.concat([cborHead(3, bytes.length), bytes])
}

/**
 * An issuer-only DeviceResponse {version, documents: [{docType, issuerSigned}], status} around the
 * IssuerSigned bytes exactly as the issuer encoded them.
 */
function deviceResponseOf(docType, issuerSigned) {
  return Buffer.concat([
    cborHead(5, 3),
    cborText('version'),
    cborText('1.0'),
    cborText('documents'),
    cborHead(4, 1),
    cborHead(5, 2),
    cborText('docType'),
    cborText(docType),
    cborText('issuerSigned'),
    issuerSigned,
    cborText('status'),
    cborHead(0, 0),
  ])
}

/** Element values as JSON: dates as their text, byte strings base64url. */
function elementJson(value) {
  if (value instanceof Uint8Array) return base64url.encode(value)
  if (value instanceof Date) return value.toISOString().replace(/\.000Z$/, 'Z')
  if (value instanceof Map) return Object.fromEntries([...value].map(([k, v]) => [String(k), elementJson(v)]))
  if (Array.isArray(value)) return value.map(elementJson)
  if (typeof value === 'object' && value !== null) {
    // cbor-x gives a full-date (tag 1004) as a tagged value or a DateOnly-like object.
    if ('tag' in value && 'value' in value) return elementJson(value.value)
    if (typeof value.toJSON === 'function') return value.toJSON()
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, elementJson(v)]))
  }
  return value
}

/**
 * Presents the mdoc to @auth0/mdl's verifier as a holder would: a DeviceResponse disclosing every
 * element, device-signed with `holder`'s key over a session transcript, verified against the IACA
 * (issuer signature, certificate chain, validity, value digests, device signature with the MSO's
 * device key).
 */
async function verifyMdoc(configuration, credential, holder) {
  const iacaFile = process.env.VELLUM_IACA_PEM
  if (!iacaFile) throw new Error('set VELLUM_IACA_PEM to the IACA certificate (PEM) to verify an mdoc against')
  const iaca = readFileSync(iacaFile, 'utf8')
  const docType = configuration.doctype
  if (typeof docType !== 'string') throw new Error('the mso_mdoc configuration names no doctype')

  const issuerSigned = Buffer.from(base64url.decode(credential))
  const mdoc = parseMdoc(deviceResponseOf(docType, issuerSigned))
  const [document] = mdoc.documents
  const fields = Object.entries(document.issuerSigned.nameSpaces).flatMap(([namespace, items]) =>
    items.map((item) => ({ path: [`$['${namespace}']['${item.elementIdentifier}']`], intent_to_retain: false })),
  )
  const presentationDefinition = {
    id: 'vellum-interop',
    input_descriptors: [
      {
        id: docType,
        format: { mso_mdoc: { alg: ['ES256'] } },
        constraints: { limit_disclosure: 'required', fields },
      },
    ],
  }
  const handover = [base64url.encode(randomBytes(16)), 'vellum-interop-verifier', 'https://verifier.invalid/response', base64url.encode(randomBytes(16))]
  const sessionTranscript = DataItem.fromData([null, null, handover])
  const holderPrivateJwk = await exportJWK(holder.privateKey)
  const presented = await DeviceResponse.from(mdoc)
    .usingPresentationDefinition(presentationDefinition)
    .usingSessionTranscriptBytes(cborEncode(sessionTranscript))
    .authenticateWithSignature(holderPrivateJwk, 'ES256')
    .sign()

  const verified = await new Verifier([iaca]).verify(presented.encode(), {
    encodedSessionTranscript: cborEncode(sessionTranscript),
  })
  const [checked] = verified.documents
  if (checked.docType !== docType) throw new Error(`docType is ${checked.docType}, expected ${docType}`)
  const deviceKey = checked.issuerSigned.issuerAuth.decodedPayload.deviceKeyInfo.deviceKey
  const deviceJwk = {
    kty: 'EC',
    crv: { 1: 'P-256', 2: 'P-384', 3: 'P-521' }[deviceKey.get(-1)],
    x: base64url.encode(deviceKey.get(-2)),
    y: base64url.encode(deviceKey.get(-3)),
  }
  if (!sameKey(deviceJwk, holder.publicJwk)) throw new Error('the MSO device key is not the key of the credential\'s proof')
  const claims = Object.fromEntries(
    Object.entries(checked.issuerSigned.nameSpaces).map(([namespace, items]) => [
      namespace,
      Object.fromEntries(items.map((item) => [item.elementIdentifier, elementJson(item.elementValue)])),
    ]),
  )
  return { docType, claims, deviceJwk }
}

/**
 * The credential's claims, checked by the verifier of the configuration's format (and an mdoc's
 * docType), the credential bound to `holder`'s key.
 */
async function verifyCredential(issuer, configuration, credential, holder) {
  if (configuration.format === 'dc+sd-jwt') return { claims: await verify(issuer, credential, holder) }
  if (configuration.format === 'jwt_vc_json') return { claims: await verifyJwtVc(configuration, credential, holder) }
  if (configuration.format === 'mso_mdoc') {
    const { docType, claims } = await verifyMdoc(configuration, credential, holder)
    return { claims, docType }
  }
  throw new Error(`the wallet cannot verify format ${configuration.format}`)
}

/**
 * Each credential verified on its own, bound to the holder key at its position (the key of the
 * proof at that position); the entries of `credentials` in the output.
 */
async function verifyEach(issuer, configuration, credentials) {
  const entries = []
  for (const [index, credential] of credentials.entries()) {
    const holder = holders[index]
    const verified = await verifyCredential(issuer, configuration, credential, holder).catch((error) => {
      // The verifier's own error (its name, as MDLError) stays in the message, its stack in cause.
      throw new Error(`credential ${index + 1} of ${credentials.length}: ${error}`, { cause: error })
    })
    entries.push({
      credential,
      holderJwk: holder.publicJwk,
      holderKey: holder.thumbprint,
      holderDid: holderDidOf(holder.publicJwk),
      verified: true,
      ...verified,
    })
  }
  return entries
}

/** The first credential's members at the top, as the wallet printed them before batches. */
function firstOf(entries) {
  const { credential, holderJwk, verified, claims, docType } = entries[0]
  return { credential, holderJwk, verified, claims, ...(docType === undefined ? {} : { docType }), credentials: entries }
}

try {
  const { client, issuer, issuerMetadata, configuration, obtained, grant, refresh } = await redeem()
  const entries = await verifyEach(issuer, configuration, obtained.credentials)
  const output = {
    ...firstOf(entries),
    grant,
    holderKeys: holders.map(({ thumbprint }) => thumbprint),
    notificationId: obtained.notificationId,
    deferred: obtained.deferred,
  }
  if (NOTIFY) {
    await notify(client, issuerMetadata, obtained.notificationId, obtained.access)
    output.notified = NOTIFY
  }
  if (refresh) {
    output.refreshed = firstOf(await verifyEach(issuer, configuration, refresh.credentials))
    output.refreshTokens = refresh.refreshTokens
    output.refreshTokenRotated = refresh.refreshTokens[1] !== null && refresh.refreshTokens[1] !== refresh.refreshTokens[0]
  }
  process.stdout.write(`${JSON.stringify(output)}\n`)
} catch (error) {
  const detail = error?.response?.status ? ` (HTTP ${error.response.status} from ${error.response.url})` : ''
  const cause = error?.cause?.stack ? `\ncaused by ${error.cause.stack}` : ''
  fail(`${error?.stack ?? error}${detail}${cause}`)
}
