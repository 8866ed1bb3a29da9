"""Verifies a W3C Verifiable Credential as JWT (jwt_vc_json) with the PyPI jwcrypto library.

    verify_jwt_vc.py [credential]

The credential is read from stdin when it is not given as an argument. The issuer key is the one
of the DID the header's `kid` names, a did:jwk or did:key DID URL, resolved here without the
issuer's help (did:key: base58btc, multicodec prefix, SEC1 compressed EC point). Checks the
signature, `iss` == `vc.issuer` == that DID, `sub` == `credentialSubject.id` (a resolvable
did:jwk), and that `nbf` and `exp` are present and hold now. Prints the verified claims as one
JSON object on stdout; exits non-zero with a message on stderr on any failure.
"""

import base64
import json
import sys

from cryptography.hazmat.primitives.asymmetric import ec
from jwcrypto import jwk, jws, jwt

CLOCK_SKEW_SECONDS = 60
BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

# Multicodec varint prefixes of the did:key public keys: (curve, key length).
DID_KEY_CODECS = {
    b"\x80\x24": ("P-256", 33),
    b"\x81\x24": ("P-384", 49),
    b"\xed\x01": ("Ed25519", 32),
}
EC_CURVES = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1}


class VerificationError(Exception):
    pass


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def base58_decode(text: str) -> bytes:
    value = 0
    for char in text:
        digit = BASE58_ALPHABET.find(char)
        if digit < 0:
            raise VerificationError(f"{char!r} is not a base58 character")
        value = value * 58 + digit
    body = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return b"\x00" * (len(text) - len(text.lstrip("1"))) + body


def split_did_url(did_url: str):
    did, _, fragment = did_url.partition("#")
    return did, fragment if "#" in did_url else None


def resolve_did(did_url: str) -> dict:
    """The public JWK (as a dict) of a did:jwk or did:key; a DID URL's fragment is ignored."""
    did, _ = split_did_url(did_url)
    if did.startswith("did:jwk:"):
        key = json.loads(b64url_decode(did[len("did:jwk:") :]))
        if not isinstance(key, dict):
            raise VerificationError(f"{did} is not a JWK")
        if "d" in key:
            raise VerificationError(f"{did} carries a private key")
        return key
    if did.startswith("did:key:z"):
        data = base58_decode(did[len("did:key:z") :])
        codec = DID_KEY_CODECS.get(data[:2])
        if codec is None:
            raise VerificationError(f"{did} is not a P-256, P-384 or Ed25519 did:key")
        crv, length = codec
        key = data[2:]
        if len(key) != length:
            raise VerificationError(f"{did} has a {len(key)}-byte {crv} key")
        if crv == "Ed25519":
            return {"kty": "OKP", "crv": crv, "x": b64url_encode(key)}
        point = ec.EllipticCurvePublicKey.from_encoded_point(EC_CURVES[crv](), key)
        numbers = point.public_numbers()
        size = (point.curve.key_size + 7) // 8
        return {
            "kty": "EC",
            "crv": crv,
            "x": b64url_encode(numbers.x.to_bytes(size, "big")),
            "y": b64url_encode(numbers.y.to_bytes(size, "big")),
        }
    raise VerificationError(f"cannot resolve {did!r}: only did:jwk and did:key are supported")


def issuer_id(issuer):
    return issuer.get("id") if isinstance(issuer, dict) else issuer


def verify(credential: str) -> dict:
    header = json.loads(b64url_decode(credential.split(".")[0]))
    if header.get("alg") in (None, "none"):
        raise VerificationError("credential has no signature algorithm")
    if header.get("typ") not in ("JWT", "vc+jwt"):
        raise VerificationError(f"credential typ is {header.get('typ')!r}")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise VerificationError("the credential header names no kid")
    did, fragment = split_did_url(kid)
    expected_fragment = did[len("did:key:") :] if did.startswith("did:key:") else "0"
    if fragment != expected_fragment:
        raise VerificationError(f"kid {kid!r} is not the verification method of {did!r}")

    key = jwk.JWK(**resolve_did(kid))
    token = jwt.JWT(
        algs=["ES256", "ES384", "EdDSA"],
        # None: the claim must be present, and nbf/exp are checked against the clock.
        check_claims={"iss": did, "sub": None, "nbf": None, "exp": None},
    )
    token.leeway = CLOCK_SKEW_SECONDS
    token.deserialize(credential, key)
    if not isinstance(token.token, jws.JWS):
        raise VerificationError("the credential is not a JWS")
    claims = json.loads(token.claims)

    vc = claims.get("vc", claims)
    if issuer_id(vc.get("issuer")) != did:
        raise VerificationError(f"vc.issuer is {vc.get('issuer')!r}, expected {did!r}")
    subject = vc.get("credentialSubject")
    if not isinstance(subject, dict):
        raise VerificationError(f"the credential has no single credentialSubject: {subject!r}")
    if subject.get("id") != claims["sub"]:
        raise VerificationError(f"credentialSubject.id {subject.get('id')!r} is not sub")
    if not claims["sub"].startswith("did:jwk:"):
        raise VerificationError(f"sub {claims['sub']!r} is not a did:jwk")
    jwk.JWK(**resolve_did(claims["sub"]))  # a real public key
    return claims


def main() -> int:
    if len(sys.argv) not in (1, 2):
        print("usage: verify_jwt_vc.py [credential]", file=sys.stderr)
        return 2
    credential = (sys.argv[1] if len(sys.argv) == 2 else sys.stdin.read()).strip()
    try:
        claims = verify(credential)
    except Exception as error:  # any failure is a failed verification
        print(f"verify_jwt_vc: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    json.dump(claims, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
