"""Reads a Prometheus text exposition on stdin with the official client's parser
(prometheus_client) and prints its samples as JSON: [{"name", "labels", "value"}]. A document the
parser refuses fails (exit 1) with its message."""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main() -> None:
    samples = []
    for family in text_string_to_metric_families(sys.stdin.read()):
        for sample in family.samples:
            samples.append({"family": family.name, "type": family.type, "name": sample.name,
                            "labels": sample.labels, "value": sample.value})
    json.dump(samples, sys.stdout)


if __name__ == "__main__":
    main()
