#!/usr/bin/env bash
# Creates (once) the Python venv for examples/python/produce_predictions.py and the Schema
# Registry end-to-end test: Confluent's Python client with its Avro serializer and Schema
# Registry client. The "avro" extra brings fastavro (what AvroSerializer encodes with), avro
# and requests; the "schemaregistry" extra brings the registry client's httpx2, authlib,
# attrs, cachetools and certifi. librdkafka comes inside the confluent-kafka wheel.
# Prints the venv's python path on stdout.
#
# Environment (optional): DRIFTWATCH_PRODUCER_ENV  the venv (default <repo>/target/producer-env)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${DRIFTWATCH_PRODUCER_ENV:-$root/target/producer-env}"
marker="$venv/.driftwatch-complete"
requirements="confluent-kafka[avro,schemaregistry]==2.16.1"
if [[ ! -f "$marker" || "$(cat "$marker")" != "$requirements" ]]; then
  echo "producer-env: creating $venv ($requirements)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$requirements" >&2
  echo "$requirements" > "$marker"
fi
echo "$venv/bin/python"
