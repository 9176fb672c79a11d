#!/usr/bin/env bash
# The README's test command: every test, real Kafka broker included.
#
# Starts a real Apache Kafka broker (KRaft, from Maven Central via scripts/kafka.sh) unless
# DRIFTWATCH_KAFKA_BOOTSTRAP already points at one, and a real schema registry (Apicurio's
# Confluent-compatible API, from Maven Central via scripts/registry.sh) unless
# DRIFTWATCH_REGISTRY_URL points at one; makes the Python producer's venv
# (scripts/producer-env.sh, from PyPI); runs the whole cargo test suite against them, and stops
# what it started, whatever the outcome.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

started_broker=0
started_registry=0
cleanup() {
  if [[ $started_registry == 1 ]]; then
    scripts/registry.sh stop >&2 || true
  fi
  if [[ $started_broker == 1 ]]; then
    scripts/kafka.sh stop >&2 || true
  fi
}
trap cleanup EXIT

if [[ -z "${DRIFTWATCH_KAFKA_BOOTSTRAP:-}" ]]; then
  echo "test: starting a real Kafka broker (scripts/kafka.sh)" >&2
  DRIFTWATCH_KAFKA_BOOTSTRAP="$(scripts/kafka.sh start)"
  started_broker=1
fi
export DRIFTWATCH_KAFKA_BOOTSTRAP
if [[ -z "${DRIFTWATCH_REGISTRY_URL:-}" ]]; then
  echo "test: starting a real schema registry (scripts/registry.sh)" >&2
  DRIFTWATCH_REGISTRY_URL="$(scripts/registry.sh start)"
  started_registry=1
fi
export DRIFTWATCH_REGISTRY_URL
scripts/producer-env.sh >/dev/null
# promtool and prometheus for tests/deploy.rs (Debian's package; nothing when present).
scripts/prometheus.sh ensure
# Integration tests must not silently skip when the broker is missing.
export DRIFTWATCH_REQUIRE_KAFKA=1
echo "test: Kafka at $DRIFTWATCH_KAFKA_BOOTSTRAP, schema registry at $DRIFTWATCH_REGISTRY_URL" >&2

# Library, binary and integration tests. Benchmarks are compiled (so they cannot rot) but
# not run here: they are measurements, see BENCHMARKS.md.
cargo test --locked --lib --bins --tests "$@"
cargo test --locked --benches --no-run
