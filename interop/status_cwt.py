"""Reads one entry of an IETF Token Status List served as a CWT (draft-ietf-oauth-status-list),
decoded with PyPI cbor2 and verified with pycose, with no help from the issuer's software.

    status_cwt.py <uri> <idx>

The list is fetched from the uri with Accept: application/statuslist+cwt. It must be a COSE_Sign1
(tag 18 or untagged) whose protected header names the type application/statuslist+cwt and carries
the signer's certificate chain (x5chain, label 33); the signature is checked with the leaf
certificate's key. The claims must name the uri as subject (2), be issued (6) and not expired (4),
and carry a ttl (65534) and the status list (65533: bits, lst). lst is zlib-compressed; entry idx
of `bits` bits starts at bit idx * bits counted from the least significant bit of each byte.
Prints {"status": n, "bits": bits, "size": entries}; exits non-zero with a message on stderr on
any failure.
"""

import json
import sys
import time
import urllib.request
import zlib

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from pycose.algorithms import Es256, Es384, Es512, EdDSA
from pycose.keys import EC2Key, OKPKey
from pycose.keys.curves import Ed25519, P256, P384, P521
from pycose.messages import Sign1Message

MEDIA_TYPE = "application/statuslist+cwt"
TYP, X5CHAIN = 16, 33
SUB, EXP, IAT, TTL, STATUS_LIST = 2, 4, 6, 65534, 65533
CURVES = {"secp256r1": P256, "secp384r1": P384, "secp521r1": P521}
ALGORITHMS = {-7: Es256, -35: Es384, -36: Es512, -8: EdDSA}


def fail(message):
    sys.stderr.write(f"status_cwt: {message}\n")
    sys.exit(1)


def cose_key(certificate):
    public = certificate.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        numbers = public.public_numbers()
        size = (public.curve.key_size + 7) // 8
        curve = CURVES.get(public.curve.name)
        if curve is None:
            fail(f"unsupported curve {public.curve.name}")
        return EC2Key(
            crv=curve, x=numbers.x.to_bytes(size, "big"), y=numbers.y.to_bytes(size, "big")
        )
    from cryptography.hazmat.primitives import serialization

    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return OKPKey(crv=Ed25519, x=raw)


def main():
    if len(sys.argv) != 3:
        fail("usage: status_cwt.py <uri> <idx>")
    uri, index = sys.argv[1], int(sys.argv[2])
    request = urllib.request.Request(uri, headers={"Accept": MEDIA_TYPE})
    with urllib.request.urlopen(request, timeout=10) as response:
        if response.headers.get("Content-Type") != MEDIA_TYPE:
            fail(f"served as {response.headers.get('Content-Type')!r}")
        body = response.read()
    outer = cbor2.loads(body)
    if isinstance(outer, cbor2.CBORTag):
        if outer.tag != 18:
            fail(f"CBOR tag {outer.tag}, not COSE_Sign1 (18)")
        outer = outer.value
    if not isinstance(outer, (list, tuple)) or len(outer) != 4:
        fail("not a COSE_Sign1 array")
    protected = cbor2.loads(outer[0]) if outer[0] else {}
    if protected.get(TYP) != MEDIA_TYPE:
        fail(f"protected typ {protected.get(TYP)!r}")
    chain = protected.get(X5CHAIN) or outer[1].get(X5CHAIN)
    if isinstance(chain, bytes):
        chain = [chain]
    if not chain:
        fail("no x5chain")
    leaf = x509.load_der_x509_certificate(chain[0])
    # From the array: cbor2 6 decodes a tagged array as a tuple, which Sign1Message.decode refuses.
    message = Sign1Message.from_cose_obj(list(outer), True)
    message.key = cose_key(leaf)
    if not message.verify_signature():
        fail("the signature does not verify with the x5chain leaf's key")
    claims = cbor2.loads(outer[2])
    if claims.get(SUB) != uri:
        fail(f"sub {claims.get(SUB)!r} is not the uri")
    now = time.time()
    if not isinstance(claims.get(IAT), int) or claims[IAT] > now + 60:
        fail(f"iat {claims.get(IAT)!r}")
    if not isinstance(claims.get(EXP), int) or claims[EXP] <= now:
        fail(f"exp {claims.get(EXP)!r}: expired or missing")
    if not isinstance(claims.get(TTL), int) or claims[TTL] <= 0:
        fail(f"ttl {claims.get(TTL)!r}")
    status_list = claims.get(STATUS_LIST)
    if not isinstance(status_list, dict):
        fail("no status_list claim")
    bits = status_list.get("bits")
    if bits not in (1, 2, 4, 8):
        fail(f"bits {bits!r}")
    entries = zlib.decompress(status_list["lst"])
    size = len(entries) * 8 // bits
    if not 0 <= index < size:
        fail(f"idx {index} outside the list of {size} entries")
    position = index * bits
    status = (entries[position // 8] >> (position % 8)) & ((1 << bits) - 1)
    print(json.dumps({"status": status, "bits": bits, "size": size}))


if __name__ == "__main__":
    main()
