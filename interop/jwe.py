"""Encrypts and decrypts compact JWEs (ECDH-ES, A128GCM/A256GCM, optional DEF) with PyPI jwcrypto,
independently of the issuer's software: the interop tests encrypt credential requests to the
issuer's request key and decrypt its encrypted responses with it.

    jwe.py encrypt < {"jwk": <public JWK, with kid>, "enc": "A256GCM", "zip": true, "plaintext": "..."}
    jwe.py decrypt < {"jwk": <private JWK>, "jwe": "<compact>"}

encrypt prints the compact JWE; decrypt prints {"header": {...}, "plaintext": "..."}. Exits
non-zero with a message on stderr on any failure.
"""

import json
import sys

from jwcrypto import jwe, jwk


def fail(message):
    sys.stderr.write(f"jwe: {message}\n")
    sys.exit(1)


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in ("encrypt", "decrypt"):
        fail("usage: jwe.py encrypt|decrypt < request.json")
    request = json.load(sys.stdin)
    key = jwk.JWK(**request["jwk"])
    if sys.argv[1] == "encrypt":
        header = {"alg": "ECDH-ES", "enc": request["enc"]}
        if "kid" in request["jwk"]:
            header["kid"] = request["jwk"]["kid"]
        if request.get("zip"):
            header["zip"] = "DEF"
        token = jwe.JWE(request["plaintext"].encode(), protected=json.dumps(header))
        token.add_recipient(key)
        print(token.serialize(compact=True))
    else:
        token = jwe.JWE()
        try:
            token.deserialize(request["jwe"], key=key)
        except Exception as error:  # noqa: BLE001 - any failure is the answer
            fail(f"does not decrypt: {error}")
        print(json.dumps({"header": json.loads(token.objects["protected"]),
                          "plaintext": token.payload.decode()}))


if __name__ == "__main__":
    main()
