"""Verifies a compact SD-JWT VC with the PyPI sd-jwt library (SDJWTVerifier).

    verify_sdjwt.py <issuer-url> [credential]

The credential is read from stdin when it is not given as an argument. The issuer key is the
one named by the credential header's `kid` in the issuer's JWKS, taken from
`<issuer>/.well-known/jwt-vc-issuer` (RFC 8615 placement: the well-known segment goes between
the host and the issuer's path). When the header also carries `x5c`, the X.509 way must agree
(SD-JWT VC, HAIP): the leaf certifies that same key and names `iss` as a URI subject alternative
name, no certificate is self-signed, and the chain leads, signature by signature and valid now,
to the trust anchor in the PEM file $VELLUM_TRUST_ANCHOR_PEM (required then). Prints the verified
claims, disclosures restored, as one JSON object on stdout; exits non-zero with a message on
stderr on any failure.

sd-jwt 0.10.4 checks the issuer signature and the disclosure digests (no duplicates), but not
`typ`, the time claims or disclosures that no digest refers to; this script checks those too.
"""

import base64
import datetime
import hashlib
import json
import os
import sys
import time
import urllib.parse
import urllib.request

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from jwcrypto.jwk import JWK
from sd_jwt.verifier import SDJWTVerifier

TIMEOUT_SECONDS = 20
CLOCK_SKEW_SECONDS = 60


class VerificationError(Exception):
    pass


def well_known(issuer: str, name: str) -> str:
    url = urllib.parse.urlsplit(issuer)
    path = url.path.rstrip("/")
    return urllib.parse.urlunsplit((url.scheme, url.netloc, f"/.well-known/{name}{path}", "", ""))


def get_json(url: str):
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
        return json.load(response)


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url_sha256(text: str) -> str:
    digest = hashlib.sha256(text.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def issuer_key_callback(expected_issuer: str):
    def get_issuer_key(issuer, header):
        if issuer != expected_issuer:
            raise VerificationError(f"credential iss is {issuer!r}, expected {expected_issuer!r}")
        if header.get("typ") != "dc+sd-jwt":
            raise VerificationError(f"credential typ is {header.get('typ')!r}, not 'dc+sd-jwt'")
        if header.get("alg") in (None, "none"):
            raise VerificationError("credential has no signature algorithm")
        kid = header.get("kid")
        if not kid:
            raise VerificationError("the credential header names no kid")
        metadata = get_json(well_known(expected_issuer, "jwt-vc-issuer"))
        if metadata.get("issuer") != expected_issuer:
            raise VerificationError(
                f"jwt-vc-issuer metadata names issuer {metadata.get('issuer')!r}"
            )
        jwks = metadata.get("jwks") or get_json(metadata["jwks_uri"])
        matching = [key for key in jwks.get("keys", []) if key.get("kid") == kid]
        if len(matching) != 1:
            raise VerificationError(f"{len(matching)} issuer keys with kid {kid!r}")
        key = JWK.from_json(json.dumps(matching[0]))
        if "x5c" in header:
            check_x5c(header["x5c"], key, issuer)
        return key

    return get_issuer_key


def check_x5c(x5c, key: JWK, issuer: str):
    anchor_file = os.environ.get("VELLUM_TRUST_ANCHOR_PEM")
    if not anchor_file:
        raise VerificationError("the credential carries x5c: set VELLUM_TRUST_ANCHOR_PEM")
    with open(anchor_file, "rb") as file:
        anchor = x509.load_pem_x509_certificate(file.read())
    chain = [x509.load_der_x509_certificate(base64.b64decode(der)) for der in x5c]
    if not chain:
        raise VerificationError("x5c is empty")
    public = lambda k: k.public_bytes(  # noqa: E731
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    leaf_key = public(chain[0].public_key())
    jwk_key = key.export_to_pem(private_key=False)
    if leaf_key != public(serialization.load_pem_public_key(jwk_key)):
        raise VerificationError("the x5c leaf certifies another key than the kid's")
    try:
        names = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise VerificationError("the x5c leaf has no subject alternative names") from None
    if issuer not in names.get_values_for_type(x509.UniformResourceIdentifier):
        raise VerificationError(f"the x5c leaf does not name iss {issuer!r}")
    now = datetime.datetime.now(datetime.timezone.utc)
    for certificate, signer in zip(chain, chain[1:] + [anchor]):
        if certificate.issuer == certificate.subject:
            raise VerificationError("x5c carries a self-signed certificate")
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise VerificationError(f"{certificate.subject.rfc4514_string()} is not valid now")
        try:
            certificate.verify_directly_issued_by(signer)
        except (ValueError, TypeError, InvalidSignature) as error:
            raise VerificationError(f"x5c does not lead to the trust anchor: {error}") from None


def referenced_digests(value, found: set):
    if isinstance(value, dict):
        found.update(value.get("_sd", []))
        for member in value.values():
            referenced_digests(member, found)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and set(item) == {"..."}:
                found.add(item["..."])
            else:
                referenced_digests(item, found)


def verify(issuer: str, credential: str) -> dict:
    if not credential.endswith("~"):
        raise VerificationError("a compact SD-JWT without key binding ends with '~'")
    verifier = SDJWTVerifier(credential, issuer_key_callback(issuer))
    claims = verifier.get_verified_payload()

    # The library ignores disclosures that no digest refers to; an issuer must not send any.
    jwt, *disclosures, _ = credential.split("~")
    found = set()
    referenced_digests(json.loads(b64url_decode(jwt.split(".")[1])), found)
    for disclosure in disclosures:
        referenced_digests(json.loads(b64url_decode(disclosure)), found)
    unreferenced = [d for d in disclosures if b64url_sha256(d) not in found]
    if unreferenced:
        raise VerificationError(f"{len(unreferenced)} disclosures without a digest")

    now = time.time()
    for name in ("iat", "nbf"):
        if name in claims and claims[name] > now + CLOCK_SKEW_SECONDS:
            raise VerificationError(f"{name} is in the future")
    if "exp" in claims and claims["exp"] < now - CLOCK_SKEW_SECONDS:
        raise VerificationError("the credential has expired")
    return claims


def main() -> int:
    if len(sys.argv) not in (2, 3):
        print("usage: verify_sdjwt.py <issuer-url> [credential]", file=sys.stderr)
        return 2
    issuer = sys.argv[1]
    credential = (sys.argv[2] if len(sys.argv) == 3 else sys.stdin.read()).strip()
    try:
        claims = verify(issuer, credential)
    except Exception as error:  # any failure is a failed verification
        print(f"verify_sdjwt: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    json.dump(claims, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
