//! Schema Registry wire format end to end, on the real broker with a real registry: Apicurio
//! Registry's Confluent-compatible API (started by `scripts/registry.sh`, from Maven Central)
//! and the real Python producer of `examples/python/produce_predictions.py` (Confluent's
//! `AvroSerializer`, from PyPI via `scripts/producer-env.sh`).
//!
//! Proves: events serialised by Confluent's client are resolved through the registry and
//! monitored; a producer's evolved schema (v2, an added optional field) is resolved against
//! ours mid-stream; an unregistered schema id goes to the DLQ with its reason; and an outage
//! of the registry holds messages back without dead-lettering or losing any.

mod common;
#[path = "../examples/rust/publish_predictions.rs"]
mod publish_predictions;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::*;
use driftwatch::codec::frame_confluent;
use driftwatch::config::{Config, InputFormat};
use driftwatch::monitor::output::{AlertState, DriftAlert};

const START_MS: i64 = 1_767_225_600_000;
const STEP_MS: i64 = 100;
const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The registry's Confluent API base URL: `DRIFTWATCH_REGISTRY_URL`, or the project's own
/// registry, started once (`scripts/test.sh` starts and stops it; a plain `cargo test` leaves
/// it running, like the broker).
fn registry_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("DRIFTWATCH_REGISTRY_URL") {
            if !url.is_empty() {
                return url;
            }
        }
        run_script("scripts/registry.sh", &["start"])
    })
    .clone()
}

/// Runs one of the project's scripts; its stdout, trimmed.
fn run_script(script: &str, args: &[&str]) -> String {
    let output = Command::new("bash")
        .arg(format!("{REPO}/{script}"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    assert!(
        output.status.success(),
        "{script} {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// One run of the Python example producer; its JSON summary line.
fn produce_with_python(
    topic: &str,
    registry: &str,
    events: usize,
    drift_at: usize,
    seed: u64,
    first_index: usize,
    extra: &[&str],
) -> serde_json::Value {
    static PYTHON: OnceLock<String> = OnceLock::new();
    let python = PYTHON.get_or_init(|| run_script("scripts/producer-env.sh", &[]));
    let start_ms = START_MS + first_index as i64 * STEP_MS;
    let output = Command::new(python)
        .arg(format!("{REPO}/examples/python/produce_predictions.py"))
        .args(["--bootstrap", &bootstrap(), "--registry", registry])
        .args(["--topic", topic, "--model-id", "fraud-detector"])
        .args(["--events", &events.to_string()])
        .args(["--drift-at", &drift_at.to_string()])
        .args(["--seed", &seed.to_string()])
        .args(["--start-ms", &start_ms.to_string()])
        .args(["--step-ms", &STEP_MS.to_string()])
        .args(extra)
        .output()
        .expect("python producer");
    assert!(
        output.status.success(),
        "the Python producer failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: serde_json::Value = serde_json::from_str(
        stdout
            .lines()
            .last()
            .expect("the producer prints a summary"),
    )
    .expect("summary JSON");
    assert_eq!(summary["events_sent"], events, "{summary}");
    summary
}

/// A configuration reading Confluent-framed predictions through the registry at `url`.
fn registry_config(name: &str, url: &str) -> Config {
    let mut config = test_config(name, 1);
    config.formats.predictions = InputFormat::Confluent;
    config.schema_registry.url = Some(url.to_owned());
    config.schema_registry.max_backoff_ms = 500;
    config
}

fn counter(instance: &Instance, name: &str, label: &str) -> f64 {
    instance
        .shared
        .metrics
        .render()
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn confluent_serialised_events_are_resolved_through_the_registry_and_drift_caught() {
    let registry = registry_url();
    let config = registry_config("registry-e2e", &registry);
    let topic = config.topics.predictions.clone();
    // v1 (our schema) for the warm-up and a clean stretch, then the producer's v2 schema
    // (plus an optional field), whose events drift from its 3,000th on.
    let v1 = produce_with_python(&topic, &registry, 6_000, usize::MAX >> 1, 11, 0, &[]);
    let v2_schema = format!("{REPO}/tests/fixtures/prediction_event_v2.avsc");
    let v2 = produce_with_python(
        &topic,
        &registry,
        6_000,
        3_000,
        12,
        6_000,
        &[
            "--schema",
            &v2_schema,
            "--field",
            "request_region=eu-west-1",
        ],
    );
    assert_ne!(
        v1["schema_id"], v2["schema_id"],
        "v2 is a new schema: {v1} {v2}"
    );
    // A message framed with an id the registry never gave out.
    produce(
        &topic,
        &[(
            b"fraud-detector".to_vec(),
            frame_confluent(987_654, &[2, b'x']),
        )],
    );

    let instance = Instance::start(&config);
    instance.wait_handled(12_001, Duration::from_secs(120));
    assert_eq!(
        counter(
            &instance,
            "driftwatch_schema_registry_requests_total",
            "\"ok\""
        ),
        2.0
    );
    let summary = instance.stop();
    assert_eq!(summary.consumed, 12_001);
    assert_eq!(summary.dead_letters, 1, "only the unregistered id is dead");
    let dead = read_all(&config.topics.dlq, 1, Duration::from_secs(20));
    assert_eq!(
        dead[0].header("driftwatch.reason").as_deref(),
        Some("unknown_schema_id")
    );
    assert!(
        dead[0]
            .header("driftwatch.error")
            .is_some_and(|e| e.contains("987654") && e.contains("registry")),
        "{:?}",
        dead[0].header("driftwatch.error")
    );

    let drift_time = START_MS + 9_000 * STEP_MS;
    let alerts: Vec<DriftAlert> = read_all(
        &config.topics.alerts,
        summary.outputs as usize,
        Duration::from_secs(20),
    )
    .iter()
    .filter_map(|r| serde_json::from_slice(&r.payload).ok())
    .collect();
    let firing: Vec<&DriftAlert> = alerts
        .iter()
        .filter(|a| a.state == AlertState::Firing)
        .collect();
    assert!(
        firing.iter().any(|a| a.subject == "amount"),
        "the drift of v2's events was not caught: {alerts:#?}"
    );
    for alert in firing {
        assert!(
            ["amount", "merchant_category", "__prediction__"].contains(&alert.subject.as_str()),
            "false alarm: {alert:#?}"
        );
        assert!(
            alert.detected_at > drift_time,
            "alert before the drift: {alert:#?}"
        );
    }
}

/// A TCP gate in front of the registry: while closed, connections are accepted and dropped at
/// once (what a registry restarting behind a load balancer looks like); open, it relays.
/// Closing it also cuts the connections it relays (driftwatch's client keeps them alive).
struct Gate {
    url: String,
    open: Arc<AtomicBool>,
    relayed: Arc<Mutex<Vec<TcpStream>>>,
}

impl Gate {
    fn new(upstream_url: &str, open: bool) -> Self {
        let rest = upstream_url
            .strip_prefix("http://")
            .expect("an http registry URL");
        let (upstream, path) = rest.split_once('/').unwrap_or((rest, ""));
        let upstream = upstream.to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/{path}", listener.local_addr().unwrap());
        let open = Arc::new(AtomicBool::new(open));
        let relayed = Arc::new(Mutex::new(Vec::new()));
        let (gate, connections) = (open.clone(), relayed.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !gate.load(Ordering::Acquire) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                connections
                    .lock()
                    .unwrap()
                    .push(client.try_clone().unwrap());
                relay(client, server);
            }
        });
        Self { url, open, relayed }
    }

    fn open(&self) {
        self.open.store(true, Ordering::Release);
    }

    fn close(&self) {
        self.open.store(false, Ordering::Release);
        for connection in self.relayed.lock().unwrap().drain(..) {
            let _ = connection.shutdown(Shutdown::Both);
        }
    }
}

/// Copies bytes both ways between two connections until either side closes.
fn relay(client: TcpStream, server: TcpStream) {
    fn pump(mut from: TcpStream, mut to: TcpStream) {
        let mut buffer = [0_u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buffer) {
            if n == 0 || to.write_all(&buffer[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    }
    let (client2, server2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    std::thread::spawn(move || pump(client, server));
    std::thread::spawn(move || pump(server2, client2));
}

#[test]
fn a_registry_outage_holds_messages_back_and_loses_none() {
    let registry = registry_url();
    let gate = Gate::new(&registry, false);
    let config = registry_config("registry-outage", &gate.url);
    // The producer talks to the registry directly; only driftwatch's way to it is cut.
    produce_with_python(
        &config.topics.predictions,
        &registry,
        3_000,
        usize::MAX >> 1,
        21,
        0,
        &[],
    );
    let instance = Instance::start(&config);
    // Long enough to join the group, fetch, and fail several lookups.
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(
        instance.handled(),
        0,
        "nothing is handled without its schema"
    );
    assert!(
        counter(
            &instance,
            "driftwatch_schema_registry_requests_total",
            "\"error\""
        ) >= 2.0,
        "the lookups were retried"
    );
    assert_eq!(counter(&instance, "driftwatch_dlq_total", ""), 0.0);
    gate.open();
    instance.wait_handled(3_000, Duration::from_secs(60));
    let summary = instance.stop();
    assert_eq!(summary.consumed, 3_000);
    assert_eq!(summary.dead_letters, 0, "an outage dead-letters nothing");
    assert_eq!(
        committed(&config, &config.topics.predictions, 1),
        vec![3_000],
        "every message handled and committed"
    );
}

/// 200 events written with the v2 schema (a schema id the service has not seen), numbered
/// after the 300 v1 events the outage tests start with.
fn produce_v2_after_v1(topic: &str, registry: &str, seed: u64) {
    let v2_schema = format!("{REPO}/tests/fixtures/prediction_event_v2.avsc");
    produce_with_python(
        topic,
        registry,
        200,
        usize::MAX >> 1,
        seed,
        300,
        &["--schema", &v2_schema],
    );
}

#[test]
fn stopping_during_an_outage_commits_only_what_was_handled() {
    let registry = registry_url();
    let gate = Gate::new(&registry, true);
    let mut config = registry_config("registry-stop", &gate.url);
    // One long transaction: the v1 events stay uncommitted until the stop, so the stop's
    // commit is the one that must not include the message still waiting for its schema.
    config.delivery.commit_interval_ms = 600_000;
    let topic = config.topics.predictions.clone();
    produce_with_python(&topic, &registry, 300, usize::MAX >> 1, 31, 0, &[]);
    let instance = Instance::start(&config);
    instance.wait_handled(300, Duration::from_secs(60));
    gate.close();
    // A new schema id (v2) whose lookup now fails: its first message waits.
    produce_v2_after_v1(&topic, &registry, 32);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        instance.handled(),
        300,
        "the v2 events wait for their schema"
    );
    let summary = instance.stop();
    assert_eq!(summary.dead_letters, 0);
    assert_eq!(
        committed(&config, &topic, 1),
        vec![300],
        "the commit at stop covers the handled messages, not the waiting one"
    );
    // The registry is back: a new instance reads the rest from there.
    gate.open();
    let instance = Instance::start(&config);
    instance.wait_handled(200, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500));
    let summary = instance.stop();
    assert_eq!(
        summary.consumed, 200,
        "restarts exactly at the waiting message"
    );
    assert_eq!(summary.dead_letters, 0);
    assert_eq!(committed(&config, &topic, 1), vec![500]);
}

/// An outage holds back only what needs the registry: while a new schema id waits in one
/// partition, the other partition, whose schema is known, is handled and committed (and the
/// service stays in its group, however long the outage).
#[test]
fn during_an_outage_partitions_with_known_schemas_go_on() {
    use rdkafka::producer::{BaseRecord, Producer};
    let registry = registry_url();
    let gate = Gate::new(&registry, true);
    let mut config = registry_config("registry-partial", &gate.url);
    config.topics.predictions = unique("registry-partial-2p");
    create_topics(&[(&config.topics.predictions, 2)]);
    let topic = config.topics.predictions.clone();
    produce_with_python(&topic, &registry, 300, usize::MAX >> 1, 41, 0, &[]);
    let ends = end_offsets(&topic, 2);
    // All 300 went to the partition of the producer's key; the test writes the other one.
    let busy = ends
        .iter()
        .position(|&end| end == 300)
        .expect("one partition") as i32;
    let other = 1 - busy;
    let instance = Instance::start(&config);
    instance.wait_handled(300, Duration::from_secs(60));
    gate.close();
    // A new schema id (v2) in the busy partition: its lookup fails, so it waits ...
    produce_v2_after_v1(&topic, &registry, 42);
    // ... while records framed with the known v1 id arrive in the other partition.
    let v1 = read_all(&topic, 300, Duration::from_secs(30));
    assert_eq!(v1.len(), 300);
    let producer = producer();
    for record in &v1 {
        let record = BaseRecord::to(&topic)
            .key(&record.key)
            .payload(&record.payload)
            .partition(other);
        producer.send(record).map_err(|(e, _)| e).expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    instance.wait_handled(600, Duration::from_secs(60));
    // Committed during the outage: all of the other partition, the busy one up to its held
    // message.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut expected = vec![0, 0];
    expected[busy as usize] = 300;
    expected[other as usize] = 300;
    while committed(&config, &topic, 2) != expected {
        assert!(
            std::time::Instant::now() < deadline,
            "committed during the outage: {:?}, expected {expected:?}",
            committed(&config, &topic, 2)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(instance.handled(), 600, "the v2 events still wait");
    assert!(
        counter(
            &instance,
            "driftwatch_schema_registry_requests_total",
            "\"error\""
        ) >= 2.0,
        "the lookups were retried"
    );
    gate.open();
    instance.wait_handled(800, Duration::from_secs(60));
    let summary = instance.stop();
    assert_eq!(summary.consumed, 800, "each message handled once");
    assert_eq!(summary.dead_letters, 0);
    expected[busy as usize] = 500;
    assert_eq!(committed(&config, &topic, 2), expected);
}

#[test]
fn the_readme_rust_producer_is_read_through_the_registry() {
    use publish_predictions::{Feature, Prediction, PredictionPublisher};
    let registry = registry_url();
    let config = registry_config("registry-rust", &registry);
    let publisher = PredictionPublisher::connect(
        &bootstrap(),
        &registry,
        &config.topics.predictions,
        driftwatch::codec::avro::PREDICTION_EVENT_AVSC,
    )
    .expect("registered and connected");
    assert!(publisher.schema_id() > 0);
    const EVENTS: usize = 2_500;
    for i in 0..EVENTS {
        publisher
            .publish(&Prediction {
                event_id: format!("rust-{i}"),
                model_id: "rust-model".into(),
                model_version: "v1".into(),
                timestamp: START_MS + i as i64 * STEP_MS,
                features: vec![
                    ("amount".into(), Feature::Number((i % 97) as f64)),
                    (
                        "country".into(),
                        Feature::Category(["FR", "DE"][i % 2].into()),
                    ),
                    ("is_new".into(), Feature::Flag(i % 3 == 0)),
                    ("coupon".into(), Feature::Missing),
                ],
                score: Some((i % 10) as f64 / 10.0),
                label: None,
            })
            .expect("queued");
    }
    publisher.flush().expect("delivered");

    let instance = Instance::start(&config);
    instance.wait_handled(EVENTS as u64, Duration::from_secs(60));
    let shared = instance.shared.clone();
    let summary = instance.stop();
    assert_eq!(summary.dead_letters, 0);
    let status = shared.status.read().unwrap().clone();
    let model = status
        .iter()
        .find(|m| m.model_id == "rust-model")
        .expect("the model is monitored");
    assert_eq!(model.events, EVENTS as u64);
    let features: Vec<&str> = model.features.iter().map(|f| f.name.as_str()).collect();
    for name in ["amount", "country", "is_new"] {
        assert!(features.contains(&name), "{features:?}");
    }

    // The README shows this producer as it is tested.
    let readme = std::fs::read_to_string(format!("{REPO}/README.md")).unwrap();
    let source = include_str!("../examples/rust/publish_predictions.rs");
    assert!(
        readme.contains(source.trim()),
        "README.md's Rust producer differs from examples/rust/publish_predictions.rs"
    );
}

#[test]
fn the_readme_python_producer_is_the_tested_script() {
    // Every line of the README's Python snippet is a line of the script the tests run.
    let readme = std::fs::read_to_string(format!("{REPO}/README.md")).unwrap();
    let script =
        std::fs::read_to_string(format!("{REPO}/examples/python/produce_predictions.py")).unwrap();
    let script_lines: BTreeSet<&str> = script.lines().map(str::trim).collect();
    let snippet = readme
        .split("```python\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README.md has a Python snippet");
    let lines: Vec<&str> = snippet
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "...")
        .collect();
    assert!(lines.len() >= 10, "{snippet}");
    let foreign: Vec<&&str> = lines
        .iter()
        .filter(|l| !script_lines.contains(**l))
        .collect();
    assert!(
        foreign.is_empty(),
        "README lines not in the script: {foreign:#?}"
    );
}
