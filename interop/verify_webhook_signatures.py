"""Verifies webhook requests with the Standard Webhooks reference library (PyPI standardwebhooks).

Usage: verify_webhook_signatures.py SECRET FILE

FILE holds one JSON object per line, {"body": "<raw request body>", "headers": {name: value}}.
Prints one JSON line per request, in order: {"verified": true, "id": ...} or
{"verified": false, "error": "..."}.
"""

import json
import sys

from standardwebhooks import Webhook, WebhookVerificationError


def main() -> None:
    secret, path = sys.argv[1], sys.argv[2]
    webhook = Webhook(secret)
    with open(path, encoding="utf-8") as requests:
        for line in requests:
            if not line.strip():
                continue
            request = json.loads(line)
            try:
                payload = webhook.verify(request["body"].encode("utf-8"), request["headers"])
                print(json.dumps({"verified": True, "id": payload.get("id")}))
            except WebhookVerificationError as error:
                print(json.dumps({"verified": False, "error": str(error)}))


if __name__ == "__main__":
    main()
