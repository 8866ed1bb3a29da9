// An independent status check: reads the status of one credential from the Token Status List
// its SD-JWT VC references, with @sd-jwt/jwt-status-list, after checking the list's signature
// against the leaf certificate of its x5c (jose) and that the list names itself (sub = uri).
//
//   node interop/status.mjs <sd-jwt-vc>
//
// Prints one JSON line {"uri", "idx", "status"} (0 valid, 1 invalid, 2 suspended); exits 1 with a
// message on stderr when the credential has no status reference or the list does not verify.

import { getListFromStatusListJWT } from '@sd-jwt/jwt-status-list'
import { compactVerify, decodeJwt, decodeProtectedHeader, importX509 } from 'jose'

function fail(message) {
  process.stderr.write(`status: ${message}\n`)
  process.exit(1)
}

const [credential] = process.argv.slice(2)
if (!credential) fail('usage: node status.mjs <sd-jwt-vc>')

const reference = decodeJwt(credential.split('~')[0]).status?.status_list
if (!reference) fail('the credential has no status.status_list')
const { idx, uri } = reference

const response = await fetch(uri, {
  headers: { accept: 'application/statuslist+jwt' },
  signal: AbortSignal.timeout(10_000),
})
if (!response.ok) fail(`GET ${uri}: ${response.status}`)
if (response.headers.get('content-type') !== 'application/statuslist+jwt') {
  fail(`GET ${uri}: content-type ${response.headers.get('content-type')}`)
}
const jwt = await response.text()
const header = decodeProtectedHeader(jwt)
if (header.typ !== 'statuslist+jwt') fail(`typ ${header.typ}`)
const leaf = header.x5c?.[0]
if (!leaf) fail('the list has no x5c')
const pem = `-----BEGIN CERTIFICATE-----\n${leaf}\n-----END CERTIFICATE-----`
await compactVerify(jwt, await importX509(pem, header.alg)).catch((error) =>
  fail(`the list's signature does not verify: ${error.message}`),
)
if (decodeJwt(jwt).sub !== uri) fail('the list does not name its uri as sub')

const status = getListFromStatusListJWT(jwt).getStatus(idx)
process.stdout.write(`${JSON.stringify({ uri, idx, status })}\n`)
