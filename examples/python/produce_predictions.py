#!/usr/bin/env python3
"""Publish model predictions to Kafka the way driftwatch expects them.

What an inference service does after each prediction: build a `PredictionEvent`
(schemas/prediction_event.avsc), serialize it with Confluent's `AvroSerializer` (which registers
the schema in a Schema Registry and frames every message in the Confluent wire format: magic
byte 0, 4-byte big-endian schema id, Avro binary body), and produce it keyed by `model_id`, so
that all the events of a model land on one partition.

driftwatch reads such a topic with `[formats] predictions = "confluent"`.

The traffic is synthetic but shaped like a card-fraud model's: log-normal amounts, exponential
account ages, Poisson transaction counts, a skewed merchant category, a new-device flag, and a
score that depends on them. From event `--drift-at` on, `amount` grows by 80 % and the merchant
mix moves towards electronics: the drift driftwatch should report. The same `--seed` gives the
same events (ids included), so a run can be replayed.

Needs `confluent-kafka[avro,schemaregistry]` (scripts/producer-env.sh makes a venv with it):

    python examples/python/produce_predictions.py \\
        --bootstrap 127.0.0.1:9092 --registry http://127.0.0.1:8081 \\
        --topic inference.predictions --events 2000 --drift-at 1000

(with Apicurio Registry, the registry URL is its Confluent-compatible API, e.g.
http://127.0.0.1:PORT/apis/ccompat/v7; scripts/registry.sh start prints it.)

Prints one JSON line when done: events delivered, the schema id the registry gave, the drifted
features. Exits 1 if the registry refuses the schema or any event was not delivered, 2 on bad
arguments.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SCHEMA = REPO_ROOT / "schemas" / "prediction_event.avsc"

# The features that change from --drift-at on (see PredictionTraffic.event).
DRIFTED_FEATURES = ["amount", "merchant_category"]

MERCHANTS_BEFORE = [("grocery", 0.35), ("electronics", 0.15), ("travel", 0.10), ("fashion", 0.20), ("gaming", 0.20)]
MERCHANTS_AFTER = [("grocery", 0.20), ("electronics", 0.40), ("travel", 0.10), ("fashion", 0.10), ("gaming", 0.20)]


class PredictionTraffic:
    """Deterministic synthetic predictions of one model version (one RNG per run)."""

    def __init__(self, model_id: str, model_version: str, seed: int, start_ms: int, step_ms: int, drift_at: int):
        self.model_id = model_id
        self.model_version = model_version
        self.seed = seed
        self.start_ms = start_ms
        self.step_ms = step_ms
        self.drift_at = drift_at
        self.rng = random.Random(seed)

    def _pick(self, weighted: list[tuple[str, float]]) -> str:
        return self.rng.choices([v for v, _ in weighted], weights=[w for _, w in weighted])[0]

    def _poisson(self, lam: float) -> int:
        # Knuth's method: fine for the small rates used here.
        limit, k, p = math.exp(-lam), 0, 1.0
        while True:
            p *= self.rng.random()
            if p <= limit:
                return k
            k += 1

    def event(self, index: int) -> dict:
        """The index-th event, as the dict AvroSerializer turns into Avro (field names = schema's)."""
        drifted = index >= self.drift_at
        amount = self.rng.lognormvariate(3.9, 0.8) * (1.8 if drifted else 1.0)
        # About 1 % of accounts have no age on file: a null feature value (union branch "null").
        age = None if self.rng.random() < 0.01 else float(round(self.rng.expovariate(1 / 400)))
        transactions = self._poisson(3.0)
        merchant = self._pick(MERCHANTS_AFTER if drifted else MERCHANTS_BEFORE)
        new_device = self.rng.random() < 0.12
        z = -6.0 + 0.9 * math.log(amount) - 0.002 * (age or 400.0) + 0.1 * transactions + 0.8 * new_device
        score = 1.0 / (1.0 + math.exp(-(z + 0.3 * self.rng.random())))
        return {
            # Unique per (model, version, seed, index): labels join on it, and a re-run with the
            # same seed produces the same ids (a replay, not new traffic).
            "event_id": f"{self.model_id}-{self.model_version}-{self.seed}-{index:08d}",
            "model_id": self.model_id,
            "model_version": self.model_version,
            # timestamp-millis: AvroSerializer accepts an int (ms since the epoch) as is.
            "timestamp": self.start_ms + index * self.step_ms,
            # map<union{null, double, string, boolean}>: fastavro picks the branch from the Python
            # type (None, float/int, str, bool); numbers are written as doubles.
            "features": {
                "amount": round(amount, 2),
                "account_age_days": age,
                "transactions_24h": float(transactions),
                "merchant_category": merchant,
                "is_new_device": new_device,
            },
            "prediction": {
                "score": score,
                "label": "fraud" if score > 0.5 else "legit",
                "probabilities": {"fraud": score, "legit": 1.0 - score},
            },
            "attributes": {"channel": self._pick([("web", 0.6), ("app", 0.4)])},
        }


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Publish synthetic PredictionEvents (Confluent Avro) to Kafka.")
    p.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers, e.g. 127.0.0.1:9092")
    p.add_argument("--registry", required=True, help="Schema Registry URL (Confluent API)")
    p.add_argument("--topic", default="inference.predictions")
    p.add_argument("--events", type=int, default=2000, help="number of events (default 2000)")
    p.add_argument("--model-id", default="fraud-detector")
    p.add_argument("--model-version", default="v3")
    p.add_argument(
        "--drift-at",
        type=int,
        default=None,
        help="index of the first drifted event (default: events / 2; >= events: no drift)",
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--start-ms", type=int, default=None, help="event time of the first event, ms since the epoch (default: now)"
    )
    p.add_argument("--step-ms", type=int, default=100, help="event time between two events (default 100)")
    p.add_argument(
        "--schema",
        type=Path,
        default=DEFAULT_SCHEMA,
        help="writer schema, .avsc (default: schemas/prediction_event.avsc); a later version "
        "of it may add fields, which take their defaults unless set with --field",
    )
    p.add_argument(
        "--field",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a top-level string field of the schema on every event (repeatable), "
        "e.g. --field request_region=eu-west-1 with a schema that has it",
    )
    args = p.parse_args(argv)
    if args.events < 0 or args.step_ms < 0:
        p.error("--events and --step-ms must be >= 0")
    if args.drift_at is None:
        args.drift_at = args.events // 2
    if args.start_ms is None:
        args.start_ms = int(time.time() * 1000)
    fields = {}
    for item in args.field:
        name, sep, value = item.partition("=")
        if not sep or not name:
            p.error(f"--field wants NAME=VALUE, got {item!r}")
        fields[name] = value
    args.field = fields
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    schema_str = args.schema.read_text(encoding="utf-8")
    schema_fields = {f["name"] for f in json.loads(schema_str)["fields"]}
    unknown = sorted(set(args.field) - schema_fields)
    if unknown:
        print(f"produce_predictions: --field {', '.join(unknown)}: not a field of {args.schema}", file=sys.stderr)
        return 2

    registry = SchemaRegistryClient({"url": args.registry})
    serializer = AvroSerializer(
        registry,
        schema_str,
        conf={
            # Register the schema under "<topic>-value" on first use (or find its id if it is
            # already there). A registry that enforces BACKWARD compatibility on the subject
            # accepts a later version that adds an optional field with a default, and rejects
            # one that breaks older readers.
            "auto.register.schemas": True,
            # Spelled out: recent clients default to the "ASSOCIATED" strategy, which first asks
            # the registry for the topic's associations (a recent Confluent API that other
            # registries lack) and falls back to TOPIC when there are none.
            "subject.name.strategy.type": "TOPIC",
        },
    )
    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            # No duplicates or reordering on retries; acks=all comes with it.
            "enable.idempotence": True,
            "linger.ms": 20,
            "client.id": f"produce-predictions-{args.model_id}",
        }
    )

    delivered = 0
    failures: list[str] = []  # the first few delivery errors, for the message

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        # Called from producer.poll()/flush() once the broker acknowledged (or gave up on) a message.
        nonlocal delivered
        if err is None:
            delivered += 1
        elif len(failures) < 5:
            failures.append(f"{msg.topic()} [{msg.partition()}]: {err}")

    traffic = PredictionTraffic(
        args.model_id, args.model_version, args.seed, args.start_ms, args.step_ms, args.drift_at
    )
    ctx = SerializationContext(args.topic, MessageField.VALUE)
    key = args.model_id.encode("utf-8")
    schema_id = None
    started = time.monotonic()
    try:
        for i in range(args.events):
            event = traffic.event(i)
            event.update(args.field)
            value = serializer(event, ctx)
            if schema_id is None:
                schema_id = int.from_bytes(value[1:5], "big")  # the wire-format header
            while True:
                try:
                    producer.produce(args.topic, key=key, value=value, on_delivery=on_delivery)
                    break
                except BufferError:  # local queue full: let deliveries drain, then retry
                    producer.poll(0.1)
            producer.poll(0)
    except SchemaRegistryError as e:  # an HTTP error answer, e.g. 409 for an incompatible schema
        print(f"produce_predictions: the schema registry refused the schema: {e}", file=sys.stderr)
        return 1
    except KafkaException as e:
        print(f"produce_predictions: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 -- no registry at that URL, an event not matching the schema, ...
        print(f"produce_predictions: cannot serialize with the registry at {args.registry}: {e!r}", file=sys.stderr)
        return 1
    finally:
        remaining = producer.flush(30)

    summary = {
        "events_sent": delivered,
        "events_failed": args.events - delivered,
        "topic": args.topic,
        "subject": f"{args.topic}-value",
        "schema_id": schema_id,
        "model_id": args.model_id,
        "model_version": args.model_version,
        "first_timestamp": args.start_ms if args.events else None,
        "last_timestamp": args.start_ms + (args.events - 1) * args.step_ms if args.events else None,
        "drift_at": args.drift_at if args.drift_at < args.events else None,
        "drifted_features": DRIFTED_FEATURES if args.drift_at < args.events else [],
        "elapsed_seconds": round(time.monotonic() - started, 3),
    }
    print(json.dumps(summary))
    if remaining or delivered != args.events:
        for f in failures:
            print(f"produce_predictions: delivery failed: {f}", file=sys.stderr)
        print(f"produce_predictions: {args.events - delivered} of {args.events} events not delivered", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
