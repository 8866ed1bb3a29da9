"""Verifies an ISO/IEC 18013-5 mdoc issued as `mso_mdoc` with PyPI pymdoccbor, independently of
the issuer: the base64url CBOR IssuerSigned is read from stdin, the IACA (the trusted root) is a
PEM file named by the first argument.

    interop/.venv/bin/python interop/verify_mdoc.py <iaca.pem> [doctype] < credential

pymdoccbor checks the issuerAuth COSE_Sign1 signature with the document signer certificate of its
x5chain, that the document signer certificate is signed by the IACA and valid now, and the SHA-256
digest of every IssuerSignedItem against the MSO's valueDigests. This script also checks the MSO's
docType and validityInfo.

Prints one JSON object on stdout: {docType, digestAlgorithm, validityInfo, nameSpaces: {namespace:
{element: value}}, deviceKey: <the COSE_Key as a JWK>}; dates are strings, byte strings base64url.
Exits non-zero with a message on stderr when the mdoc does not verify.
"""

import base64
import datetime
import json
import sys

import cbor2
from cryptography import x509
from pymdoccbor.mdoc.verifier import MobileDocument

MDL = "org.iso.18013.5.1.mDL"
COSE_CURVES = {1: "P-256", 2: "P-384", 3: "P-521"}
# CBOR tags of dates: RFC 3339 date-time (0) and RFC 8943 full-date (1004).
DATE_TAGS = {0: "tdate", 1004: "full-date"}


def fail(message):
    sys.stderr.write(f"verify_mdoc: {message}\n")
    sys.exit(1)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text):
    text = text.strip()
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def to_json(value):
    """CBOR values as JSON: byte strings base64url, tagged dates as their text."""
    if isinstance(value, cbor2.CBORTag):
        if value.tag in DATE_TAGS:
            return to_json(value.value)
        return {"tag": value.tag, "value": to_json(value.value)}
    if isinstance(value, (bytes, bytearray)):
        return b64url(bytes(value))
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def cose_key_to_jwk(key):
    """An EC2 COSE_Key (RFC 9052: 1 kty, -1 crv, -2 x, -3 y) as a public JWK."""
    if key.get(1) != 2:
        fail(f"the device key is not an EC2 COSE_Key: {to_json(key)}")
    curve = COSE_CURVES.get(key.get(-1))
    if curve is None:
        fail(f"unsupported device key curve {key.get(-1)}")
    return {"kty": "EC", "crv": curve, "x": b64url(key[-2]), "y": b64url(key[-3])}


def check_validity(validity):
    now = datetime.datetime.now(datetime.timezone.utc)
    times = {}
    for name in ("signed", "validFrom", "validUntil"):
        value = validity.get(name)
        if isinstance(value, cbor2.CBORTag) and value.tag == 0:
            value = datetime.datetime.fromisoformat(value.value.replace("Z", "+00:00"))
        if not isinstance(value, datetime.datetime):
            fail(f"validityInfo.{name} is not a tdate: {value!r}")
        times[name] = value
    if not times["validFrom"] <= now <= times["validUntil"]:
        fail(f"the MSO is not valid now: {to_json(validity)}")


def main():
    if len(sys.argv) < 2:
        fail("usage: verify_mdoc.py <iaca.pem> [doctype] < credential")
    with open(sys.argv[1], "rb") as file:
        iaca = x509.load_pem_x509_certificate(file.read())
    expected_doctype = sys.argv[2] if len(sys.argv) > 2 else None

    issuer_signed = cbor2.loads(b64url_decode(sys.stdin.read()))
    auth = issuer_signed["issuerAuth"]
    mso = cbor2.loads(cbor2.loads(auth[2]).value)
    doctype = mso["docType"]
    if expected_doctype and doctype != expected_doctype:
        fail(f"docType is {doctype}, expected {expected_doctype}")

    # pymdoccbor takes a Document's docType and IssuerSigned (as in a DeviceResponse).
    document = MobileDocument(docType=doctype, issuerSigned=dict(issuer_signed))
    try:
        valid = document.verify(trusted_root_certs=[iaca])
    except Exception as error:  # the chain or the signature was refused
        fail(f"pymdoccbor refused the mdoc: {type(error).__name__}: {error}")
    hashes = document.hash_verification
    if not valid or hashes is None:
        fail(f"pymdoccbor refused the mdoc: signature or digests invalid ({hashes})")
    if hashes["failed"] or hashes["verified"] != hashes["total"]:
        fail(f"pymdoccbor found invalid value digests: {hashes['failed']}")
    # pymdoccbor skips a namespace absent from valueDigests; refuse it here.
    missing = set(issuer_signed["nameSpaces"]) - set(mso["valueDigests"])
    if missing:
        fail(f"namespaces without value digests: {sorted(missing)}")
    if mso.get("digestAlgorithm") != "SHA-256":
        fail(f"digestAlgorithm is {mso.get('digestAlgorithm')}")
    check_validity(mso["validityInfo"])

    namespaces = {}
    for namespace, items in issuer_signed["nameSpaces"].items():
        elements = {}
        for item in items:
            decoded = cbor2.loads(item.value)
            elements[decoded["elementIdentifier"]] = to_json(decoded["elementValue"])
        namespaces[namespace] = elements

    print(
        json.dumps(
            {
                "docType": doctype,
                "digestAlgorithm": mso["digestAlgorithm"],
                "validityInfo": to_json(mso["validityInfo"]),
                "nameSpaces": namespaces,
                "deviceKey": cose_key_to_jwk(mso["deviceKeyInfo"]["deviceKey"]),
                "verifiedElements": hashes["verified"],
            },
            ensure_ascii=False,
            sort_keys=True,
        )
    )


if __name__ == "__main__":
    main()
