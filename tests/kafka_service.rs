//! The service on a real Apache Kafka broker (KRaft, started by `scripts/kafka.sh`):
//! end-to-end detection in JSON and Avro, dead letters for every kind of malformed input,
//! offsets advancing past poison messages, restart from committed offsets, and two instances
//! of one consumer group splitting the partitions.

mod common;

use std::time::Duration;

use apache_avro::reader::datum::GenericDatumReader;
use common::*;
use driftwatch::codec::{self, encode_prediction_avro, encode_prediction_json, frame_confluent};
use driftwatch::config::{InputFormat, OutputFormat};
use driftwatch::monitor::output::{AlertState, DriftAlert, RetrainRequest};

const DRIFT_AT: usize = 6_000;
const EVENTS: usize = 12_000;
/// Event time of the first drifted event in `common::stream`.
const DRIFT_TIME: i64 = 1_767_225_600_000 + DRIFT_AT as i64 * 100;

fn check_alerts(alerts: &[DriftAlert]) {
    let firing: Vec<_> = alerts
        .iter()
        .filter(|a| a.state == AlertState::Firing)
        .collect();
    assert!(
        firing.iter().any(|a| a.subject == "amount"),
        "the drifted feature was not caught: {alerts:#?}"
    );
    for alert in &firing {
        assert!(
            alert.subject == "amount" || alert.subject == "__prediction__",
            "false alarm on a stable feature: {alert:#?}"
        );
        assert!(
            alert.detected_at > DRIFT_TIME,
            "alert before the drift: {alert:#?}"
        );
        assert!(alert.emitted_at > 0);
        assert_eq!(alert.evidence_sha256.len(), 64);
    }
}

#[test]
fn detects_drift_end_to_end_in_json() {
    let config = test_config("e2e-json", 2);
    let events = stream("fraud", EVENTS, DRIFT_AT, 1);
    let messages: Vec<_> = events
        .iter()
        .map(|e| (e.model_id.as_bytes().to_vec(), encode_prediction_json(e)))
        .collect();
    produce(&config.topics.predictions, &messages);
    let instance = Instance::start(&config);
    instance.wait_handled(EVENTS as u64, Duration::from_secs(60));
    let summary = instance.stop();
    assert_eq!(summary.consumed, EVENTS as u64);
    assert_eq!(summary.dead_letters, 0);

    let records = read_all(
        &config.topics.alerts,
        summary.outputs as usize,
        Duration::from_secs(20),
    );
    let alerts: Vec<DriftAlert> = records
        .iter()
        .map(|r| serde_json::from_slice(&r.payload).expect("alert JSON"))
        .collect();
    check_alerts(&alerts);
    assert!(
        records.iter().all(|r| r.key == b"fraud"),
        "alerts are keyed by model id"
    );

    let requests = read_all(&config.topics.retrain, 1, Duration::from_secs(20));
    let request: RetrainRequest =
        serde_json::from_slice(&requests[0].payload).expect("retrain JSON");
    assert_eq!(request.model_id, "fraud");
    assert!(!request.source_offsets.is_empty());
    assert!(request
        .source_offsets
        .iter()
        .all(|r| r.topic == config.topics.predictions));
}

#[test]
fn detects_drift_end_to_end_in_avro() {
    let mut config = test_config("e2e-avro", 2);
    config.formats.predictions = InputFormat::Avro;
    config.formats.outputs = OutputFormat::Avro;
    let events = stream("fraud", EVENTS, DRIFT_AT, 2);
    let messages: Vec<_> = events
        .iter()
        .map(|e| (e.model_id.as_bytes().to_vec(), encode_prediction_avro(e)))
        .collect();
    produce(&config.topics.predictions, &messages);
    let instance = Instance::start(&config);
    instance.wait_handled(EVENTS as u64, Duration::from_secs(60));
    let summary = instance.stop();
    assert_eq!(summary.dead_letters, 0);

    let records = read_all(
        &config.topics.alerts,
        summary.outputs as usize,
        Duration::from_secs(20),
    );
    let schema = codec::avro::drift_alert_schema();
    let alerts: Vec<DriftAlert> = records
        .iter()
        .map(|r| {
            let mut bytes = r.payload.as_slice();
            let value = GenericDatumReader::builder(schema)
                .build()
                .unwrap()
                .read_value(&mut bytes)
                .expect("alert Avro");
            assert!(bytes.is_empty());
            apache_avro::from_value(&value).expect("alert record")
        })
        .collect();
    check_alerts(&alerts);
}

/// Every kind of malformed input goes to the dead-letter topic with its original bytes and a
/// reason, the valid events around it are processed, and the committed offsets move past it.
#[test]
fn poison_messages_go_to_the_dead_letter_topic_and_offsets_advance() {
    let mut config = test_config("poison", 1);
    config.formats.max_message_bytes = 4_096;
    config.formats.dead_letter_max_bytes = 8_192;
    let valid = stream("m", 300, usize::MAX, 3);
    let mut messages: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let poison: Vec<(&str, Vec<u8>)> = vec![
        ("invalid_json", b"{\"event_id\": \"e\", \"model_id\"".to_vec()),
        (
            "wrong_type",
            br#"{"event_id":"e","model_id":"m","model_version":"1","timestamp":"noon","features":{},"prediction":{}}"#.to_vec(),
        ),
        (
            "missing_field",
            br#"{"event_id":"e","model_version":"1","timestamp":1,"features":{},"prediction":{}}"#.to_vec(),
        ),
        ("oversized", {
            let mut big = b"{\"event_id\":\"".to_vec();
            big.extend(std::iter::repeat_n(b'x', 10_000));
            big.extend(b"\"}");
            big
        }),
        ("invalid_json", Vec::new()),
    ];
    for (i, event) in valid.iter().enumerate() {
        if i % 60 == 10 {
            let (_, payload) = &poison[(i / 60) % poison.len()];
            messages.push((b"m".to_vec(), payload.clone()));
        }
        messages.push((b"m".to_vec(), encode_prediction_json(event)));
    }
    let total = messages.len();
    produce(&config.topics.predictions, &messages);
    let instance = Instance::start(&config);
    instance.wait_handled(total as u64, Duration::from_secs(60));
    let summary = instance.stop();
    assert_eq!(summary.dead_letters, 5);
    assert_eq!(summary.consumed, total as u64);

    let dead = read_all(&config.topics.dlq, 5, Duration::from_secs(20));
    assert_eq!(dead.len(), 5);
    for (record, (reason, payload)) in dead.iter().zip(&poison) {
        assert_eq!(record.header("driftwatch.reason").as_deref(), Some(*reason));
        if payload.len() > 8_192 {
            // Longer than the dead-letter copy limit: cut, with the original size.
            assert_eq!(
                &record.payload[..],
                &payload[..8_192],
                "the first bytes are kept"
            );
            assert_eq!(
                record.header("driftwatch.truncated"),
                Some(payload.len().to_string())
            );
        } else {
            assert_eq!(&record.payload, payload, "the original bytes are kept");
            assert_eq!(record.header("driftwatch.truncated"), None);
        }
        assert_eq!(
            record.header("driftwatch.source.topic").as_deref(),
            Some(config.topics.predictions.as_str())
        );
        assert!(record
            .header("driftwatch.error")
            .is_some_and(|e| !e.is_empty()));
        let offset: usize = record
            .header("driftwatch.source.offset")
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            messages[offset].1, *payload,
            "the source offset points at the message"
        );
    }
    assert_eq!(
        committed(&config, &config.topics.predictions, 1),
        end_offsets(&config.topics.predictions, 1),
        "committed offsets moved past every poison message"
    );
}

#[test]
fn confluent_framing_errors_are_dead_lettered() {
    let mut config = test_config("confluent", 1);
    config.formats.predictions = InputFormat::Confluent;
    let events = stream("m", 50, usize::MAX, 4);
    let good = frame_confluent(7, &encode_prediction_avro(&events[0]));
    let mut truncated = good.clone();
    truncated.truncate(good.len() - 3);
    let mut bad_magic = good.clone();
    bad_magic[0] = 1;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", truncated),
        ("bad_magic_byte", bad_magic),
        ("truncated", vec![0, 0, 1]),
    ];
    let mut messages: Vec<(Vec<u8>, Vec<u8>)> = cases
        .iter()
        .map(|(_, p)| (b"m".to_vec(), p.clone()))
        .collect();
    messages.extend(events.iter().map(|e| {
        (
            b"m".to_vec(),
            frame_confluent(7, &encode_prediction_avro(e)),
        )
    }));
    produce(&config.topics.predictions, &messages);
    let instance = Instance::start(&config);
    instance.wait_handled(messages.len() as u64, Duration::from_secs(60));
    let summary = instance.stop();
    assert_eq!(summary.dead_letters, 3);
    let dead = read_all(&config.topics.dlq, 3, Duration::from_secs(20));
    let reasons: Vec<_> = dead
        .iter()
        .filter_map(|r| r.header("driftwatch.reason"))
        .collect();
    assert_eq!(reasons, ["truncated", "bad_magic_byte", "truncated"]);
}

/// A stopped service resumes from its committed offsets: nothing is read twice, nothing skipped.
#[test]
fn restart_resumes_from_committed_offsets() {
    let config = test_config("restart", 2);
    let events = stream("m", 3_000, usize::MAX, 5);
    let encode = |slice: &[_]| -> Vec<(Vec<u8>, Vec<u8>)> {
        slice
            .iter()
            .map(|e: &driftwatch::event::PredictionEvent<'_>| {
                (b"m".to_vec(), encode_prediction_json(e))
            })
            .collect()
    };
    produce(&config.topics.predictions, &encode(&events[..1_000]));
    let first = Instance::start(&config);
    first.wait_handled(1_000, Duration::from_secs(60));
    assert_eq!(first.stop().consumed, 1_000);
    let committed_after_first: i64 = committed(&config, &config.topics.predictions, 2)
        .iter()
        .filter(|o| **o > 0)
        .sum();
    assert_eq!(committed_after_first, 1_000);

    produce(&config.topics.predictions, &encode(&events[1_000..]));
    let second = Instance::start(&config);
    second.wait_handled(2_000, Duration::from_secs(60));
    // Give it a moment to (wrongly) read more, then check it read exactly the new messages.
    std::thread::sleep(Duration::from_millis(500));
    let summary = second.stop();
    assert_eq!(
        summary.consumed, 2_000,
        "the restarted service re-read or skipped messages"
    );
    let total: i64 = committed(&config, &config.topics.predictions, 2)
        .iter()
        .filter(|o| **o > 0)
        .sum();
    assert_eq!(total, 3_000);
}

/// Two instances in one consumer group split the partitions and together handle every message
/// exactly once.
#[test]
fn two_instances_split_partitions() {
    use rdkafka::producer::{BaseRecord, Producer};
    use std::sync::atomic::Ordering;
    let mut config = test_config("scale", 4);
    // A one-partition labels topic: with 5 partitions in all, a balanced assignment gives each
    // instance at least one predictions partition (a 4 + 4 split could legally hand one
    // instance nothing but label partitions, which carry no data here).
    config.topics.labels = unique("scale-labels-1p");
    create_topics(&[(&config.topics.labels, 1)]);
    let a = Instance::start(&config);
    let b = Instance::start(&config);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !(a.shared.ready.load(Ordering::Acquire) && b.shared.ready.load(Ordering::Acquire)) {
        assert!(
            std::time::Instant::now() < deadline,
            "instances did not join the group"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Produce in rounds, every partition in each round, so the data keeps coming while the
    // cooperative rebalance settles.
    let producer = producer();
    let mut sent = 0u64;
    for round in 0..5u64 {
        for model in 0..8u64 {
            let name = format!("model-{model}");
            for event in stream(&name, 50, usize::MAX, 100 * round + model) {
                let payload = encode_prediction_json(&event);
                let partition = (model % 4) as i32;
                let record = BaseRecord::to(&config.topics.predictions)
                    .key(name.as_bytes())
                    .payload(&payload)
                    .partition(partition);
                producer.send(record).map_err(|(e, _)| e).expect("send");
                sent += 1;
            }
        }
        producer.flush(Duration::from_secs(30)).expect("flush");
        std::thread::sleep(Duration::from_millis(300));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while a.handled() + b.handled() < sent {
        assert!(
            std::time::Instant::now() < deadline,
            "handled {} + {} of {sent}",
            a.handled(),
            b.handled()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (sa, sb) = (a.stop(), b.stop());
    assert!(
        sa.consumed > 0 && sb.consumed > 0,
        "one instance got no data partition: {sa:?} {sb:?}"
    );
    assert_eq!(sa.consumed + sb.consumed, sent);
}

/// The real binary: `driftwatch run --config FILE` serves its HTTP API while consuming, and on
/// SIGTERM flushes, commits and exits 0.
#[test]
fn run_command_serves_http_and_stops_cleanly_on_sigterm() {
    let config = test_config("binary", 2);
    let events = stream("m", 3_000, usize::MAX, 6);
    // The partition's first record is stamped in microseconds: refused by its record
    // timestamp (when it was written), it must not set the watermark and make the 3,000 good
    // events after it late.
    let mut far_ahead = events[0].clone();
    far_ahead.timestamp *= 1_000;
    let messages: Vec<_> = std::iter::once(&far_ahead)
        .chain(&events)
        .map(|e| (b"m".to_vec(), encode_prediction_json(e)))
        .collect();
    produce(&config.topics.predictions, &messages);
    let mut service = RunningBinary::start(&config, "[monitor.reference]\nwarmup_events = 1000\n");
    let accepted = format!(
        "driftwatch_events_total{{outcome=\"accepted\",topic=\"{}\"}} 3000",
        config.topics.predictions
    );
    let too_far_ahead = format!(
        "driftwatch_events_total{{outcome=\"too_far_ahead\",topic=\"{}\"}} 1",
        config.topics.predictions
    );
    service.wait_for("/metrics", Duration::from_secs(60), |body| {
        body.contains(&accepted) && body.contains(&too_far_ahead)
    });
    assert_eq!(service.get("/healthz").map(|r| r.0), Some(200));
    assert_eq!(service.get("/readyz").map(|r| r.0), Some(200));
    // The status snapshot is refreshed once a second.
    let body = service.wait_for("/v1/models", Duration::from_secs(30), |body| {
        body.contains("\"model_id\":\"m\"")
    });
    let models: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(models["models"][0]["phase"], "monitoring");

    assert!(
        service.terminate(),
        "driftwatch run did not exit cleanly:\n{}",
        service.log()
    );
    assert_eq!(
        committed(&config, &config.topics.predictions, 2)
            .iter()
            .filter(|o| **o > 0)
            .sum::<i64>(),
        3_001,
        "everything consumed was committed on shutdown"
    );
}
