// The crypto callbacks every oid4vc-ts party here gives the library alike (wallet, driver, Node
// issuer): hashing by the algorithm names it uses, and random bytes.
import { createHash, randomBytes } from 'node:crypto'

const HASHES = { 'sha-256': 'sha256', 'sha-384': 'sha384', 'sha-512': 'sha512' }

export const hashCallbacks = {
  hash: (data, alg) => {
    const name = HASHES[alg]
    if (!name) throw new Error(`unsupported hash algorithm ${alg}`)
    return new Uint8Array(createHash(name).update(data).digest())
  },
  generateRandom: (byteLength) => new Uint8Array(randomBytes(byteLength)),
}
