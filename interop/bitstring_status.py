"""Reads the status of a W3C Verifiable Credential as JWT (jwt_vc_json) from the Bitstring Status
List credentials its credentialStatus entries name, decoded here as the W3C Bitstring Status List
v1.0 specification describes it, with no help from the issuer's software.

    bitstring_status.py [credential]

The credential is read from stdin when it is not given as an argument, and verified with
verify_jwt_vc.py. For each BitstringStatusListEntry: the list credential is fetched from
statusListCredential, its signature checked with the key of the DID its kid names (which must be
the credential's issuer), its id, type and statusPurpose compared with the entry's; encodedList is
multibase base64url ("u"), GZIP compressed, at least 131,072 bits, and the entry's bit is
statusListIndex counted from the most significant bit of the first byte. Prints
{"<purpose>": 0 or 1, ...} as one JSON object; exits non-zero with a message on stderr on any
failure.
"""

import gzip
import json
import sys
import urllib.request

from jwcrypto import jwk, jwt

from verify_jwt_vc import VerificationError, b64url_decode, resolve_did, verify

MIN_BITS = 131_072


def list_credential(uri: str, issuer: str) -> dict:
    with urllib.request.urlopen(uri, timeout=10) as response:
        compact = response.read().decode("ascii").strip()
    header = json.loads(b64url_decode(compact.split(".")[0]))
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid.startswith(issuer + "#"):
        raise VerificationError(f"the list is not signed by the credential's issuer: kid {kid!r}")
    token = jwt.JWT(algs=["ES256", "ES384", "EdDSA"], check_claims={"iss": issuer, "exp": None})
    token.deserialize(compact, jwk.JWK(**resolve_did(kid)))
    return json.loads(token.claims)


def bit(encoded: str, index: int) -> int:
    if not encoded.startswith("u"):
        raise VerificationError("encodedList is not multibase base64url")
    bits = gzip.decompress(b64url_decode(encoded[1:]))
    if len(bits) * 8 < MIN_BITS:
        raise VerificationError(f"the list has {len(bits) * 8} bits, fewer than {MIN_BITS}")
    if not 0 <= index < len(bits) * 8:
        raise VerificationError(f"statusListIndex {index} is outside the list")
    return (bits[index // 8] >> (7 - index % 8)) & 1


def status(credential: str) -> dict:
    claims = verify(credential)
    vc = claims.get("vc", claims)
    entries = vc.get("credentialStatus")
    entries = entries if isinstance(entries, list) else [entries]
    result = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("type") != "BitstringStatusListEntry":
            raise VerificationError(f"not a BitstringStatusListEntry: {entry!r}")
        uri = entry["statusListCredential"]
        purpose = entry["statusPurpose"]
        listed = list_credential(uri, claims["iss"])
        if listed.get("id") != uri:
            raise VerificationError(f"the list credential's id is {listed.get('id')!r}, not {uri!r}")
        if "BitstringStatusListCredential" not in listed.get("type", []):
            raise VerificationError(f"not a BitstringStatusListCredential: {listed.get('type')!r}")
        subject = listed.get("credentialSubject", {})
        if subject.get("type") != "BitstringStatusList" or subject.get("statusPurpose") != purpose:
            raise VerificationError(f"the list is not a {purpose} BitstringStatusList: {subject!r}")
        result[purpose] = bit(subject["encodedList"], int(entry["statusListIndex"]))
    return result


def main() -> int:
    if len(sys.argv) not in (1, 2):
        print("usage: bitstring_status.py [credential]", file=sys.stderr)
        return 2
    credential = (sys.argv[1] if len(sys.argv) == 2 else sys.stdin.read()).strip()
    try:
        result = status(credential)
    except Exception as error:  # any failure is a failed check
        print(f"bitstring_status: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
