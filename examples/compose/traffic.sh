#!/usr/bin/env bash
# Traffic generator of the docker compose stack (service "traffic" in docker-compose.yml):
# calls examples/python/produce_predictions.py in a loop, one batch of Confluent-Avro
# predictions at a time, with a drift episode in every cycle, so the Grafana dashboard shows
# the reference warming up, features drifting, alerts firing and resolving, within minutes.
#
# Each batch is BATCH_EVENTS events STEP_MS apart in event time, continuing where the previous
# batch ended; with the defaults a batch is one 1-minute pane of event time and the loop makes
# one every ~2 s (~0.7 s of work measured, plus PAUSE_S), so event time runs ~30x faster than
# the wall clock. In each cycle of CYCLE_BATCHES batches, batches DRIFT_FROM..DRIFT_TO-1 are
# drifted (amount +80 %, merchant mix towards electronics; see produce_predictions.py). A
# failed batch (broker or registry not up yet) is retried with the same seed after
# RETRY_PAUSE_S.
#
# Environment (all optional): BOOTSTRAP (kafka:9092), REGISTRY (Apicurio's ccompat API),
# TOPIC (inference.predictions), MODEL_ID (fraud-detector), MODEL_VERSION (v3),
# BATCH_EVENTS (2000), STEP_MS (30), PAUSE_S (1), CYCLE_BATCHES (150), DRIFT_FROM (30),
# DRIFT_TO (90), RETRY_PAUSE_S (5), MAX_BATCHES (0 = forever), PYTHON (python3).
set -euo pipefail

BOOTSTRAP="${BOOTSTRAP:-kafka:9092}"
REGISTRY="${REGISTRY:-http://schema-registry:8080/apis/ccompat/v7}"
TOPIC="${TOPIC:-inference.predictions}"
MODEL_ID="${MODEL_ID:-fraud-detector}"
MODEL_VERSION="${MODEL_VERSION:-v3}"
BATCH_EVENTS="${BATCH_EVENTS:-2000}"
STEP_MS="${STEP_MS:-30}"
PAUSE_S="${PAUSE_S:-1}"
CYCLE_BATCHES="${CYCLE_BATCHES:-150}"
DRIFT_FROM="${DRIFT_FROM:-30}"
DRIFT_TO="${DRIFT_TO:-90}"
RETRY_PAUSE_S="${RETRY_PAUSE_S:-5}"
MAX_BATCHES="${MAX_BATCHES:-0}"
PYTHON="${PYTHON:-python3}"

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
PRODUCER="$SCRIPT_DIR/../python/produce_predictions.py"

log() { printf 'traffic: %s\n' "$*" >&2; }

# Event time starts a day in the past, so that at ~30x it reaches "now" only after ~48 min.
start_ms=$(( $(date +%s) * 1000 - 86400000 ))
batch=0
log "producing to $TOPIC on $BOOTSTRAP (registry $REGISTRY): $BATCH_EVENTS events per batch, drift in batches $DRIFT_FROM..$((DRIFT_TO - 1)) of every $CYCLE_BATCHES"
while [[ "$MAX_BATCHES" -eq 0 || "$batch" -lt "$MAX_BATCHES" ]]; do
  phase=$(( batch % CYCLE_BATCHES ))
  if (( phase >= DRIFT_FROM && phase < DRIFT_TO )); then
    drift_at=0                  # the whole batch is drifted
  else
    drift_at="$BATCH_EVENTS"    # >= events: no drift
  fi
  (( phase == DRIFT_FROM )) && log "batch $batch: drift starts"
  (( phase == DRIFT_TO )) && log "batch $batch: drift ends"
  if "$PYTHON" "$PRODUCER" \
      --bootstrap "$BOOTSTRAP" --registry "$REGISTRY" --topic "$TOPIC" \
      --events "$BATCH_EVENTS" --model-id "$MODEL_ID" --model-version "$MODEL_VERSION" \
      --drift-at "$drift_at" --seed "$(( 1000 + batch ))" \
      --start-ms "$(( start_ms + batch * BATCH_EVENTS * STEP_MS ))" --step-ms "$STEP_MS" \
      >/dev/null; then
    batch=$(( batch + 1 ))
    sleep "$PAUSE_S"
  else
    log "batch $batch failed; retrying in ${RETRY_PAUSE_S}s"
    sleep "$RETRY_PAUSE_S"
  fi
done
log "done: $batch batches"
