#!/usr/bin/env bash
# The README's test command: every test, real Kafka broker included.
#
# Starts a real Apache Kafka broker (KRaft, from Maven Central via scripts/kafka.sh) unless
# DRIFTWATCH_KAFKA_BOOTSTRAP already points at one, runs the whole cargo test suite against
# it, and stops the broker it started, whatever the outcome.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

started_broker=0
cleanup() {
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
# Integration tests must not silently skip when the broker is missing.
export DRIFTWATCH_REQUIRE_KAFKA=1
echo "test: Kafka at $DRIFTWATCH_KAFKA_BOOTSTRAP" >&2

# Library, binary and integration tests. Benchmarks are compiled (so they cannot rot) but
# not run here: they are measurements, see BENCHMARKS.md.
cargo test --locked --lib --bins --tests "$@"
cargo test --locked --benches --no-run
