//! Shared harness of the real-broker integration tests: a real Apache Kafka broker (started
//! once by `scripts/kafka.sh`, or given by `DRIFTWATCH_KAFKA_BOOTSTRAP`), unique topics per
//! test, the service loop on a thread, and readers of the output topics.
#![allow(dead_code)]

use std::borrow::Cow;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use driftwatch::bus::service::{self, NoObserver, RunSummary, ServiceError, Shared};
use driftwatch::config::Config;
use driftwatch::event::{FeatureValue, Prediction, PredictionEvent};
use driftwatch::telemetry::Metrics;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::TopicPartitionList;

/// The broker's bootstrap address. Starts the project's real broker when none is given; never
/// skips: these tests are the proof that driftwatch works on Kafka.
pub fn bootstrap() -> String {
    static BOOTSTRAP: OnceLock<String> = OnceLock::new();
    BOOTSTRAP
        .get_or_init(|| {
            if let Ok(address) = std::env::var("DRIFTWATCH_KAFKA_BOOTSTRAP") {
                if !address.is_empty() {
                    return address;
                }
            }
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka.sh");
            let output = Command::new("bash")
                .arg(script)
                .arg("start")
                .output()
                .expect("cannot run scripts/kafka.sh");
            assert!(
                output.status.success(),
                "scripts/kafka.sh start failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8_lossy(&output.stdout).trim().to_owned()
        })
        .clone()
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}-{}-{nanos}-{n}", std::process::id())
}

/// Creates topics (name, partitions) on the broker.
pub fn create_topics(topics: &[(&str, i32)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("admin client");
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = runtime
        .block_on(admin.create_topics(&new, &AdminOptions::new()))
        .expect("create topics");
    for result in results {
        result.expect("topic created");
    }
}

/// A configuration for one test: its own topics (created here) and consumer group.
pub fn test_config(name: &str, partitions: i32) -> Config {
    let mut config = Config::default();
    config.kafka.brokers = bootstrap();
    config.kafka.group_id = unique(&format!("{name}-group"));
    config.kafka.session_timeout_ms = 6_000;
    config.topics.predictions = unique(&format!("{name}-predictions"));
    config.topics.labels = unique(&format!("{name}-labels"));
    config.topics.alerts = unique(&format!("{name}-alerts"));
    config.topics.retrain = unique(&format!("{name}-retrain"));
    config.topics.dlq = unique(&format!("{name}-dlq"));
    config.topics.state = unique(&format!("{name}-state"));
    config.http.enabled = false;
    config.delivery.commit_interval_ms = 200;
    config.monitor.reference.warmup_events = 2_000;
    config.monitor.windows.panes = 3;
    config.monitor.windows.allowed_lateness_ms = 1_000;
    create_topics(&[
        (&config.topics.predictions, partitions),
        (&config.topics.labels, partitions),
        (&config.topics.alerts, 1),
        (&config.topics.retrain, 1),
        (&config.topics.dlq, 1),
    ]);
    config
}

/// A running service instance.
pub struct Instance {
    pub shared: Arc<Shared>,
    thread: JoinHandle<Result<RunSummary, ServiceError>>,
}

impl Instance {
    /// Starts the service loop on a thread, with a transactional id of its own (instances
    /// of one test share a host name, from which the default is derived).
    pub fn start(config: &Config) -> Self {
        let shared = Arc::new(Shared::new(Metrics::new(true, 1_000).unwrap()));
        let thread = {
            let (mut config, shared) = (config.clone(), shared.clone());
            config
                .delivery
                .transactional_id
                .get_or_insert_with(|| unique("instance"));
            std::thread::spawn(move || service::run(&config, shared, &mut NoObserver))
        };
        Self { shared, thread }
    }

    /// Messages handled so far.
    pub fn handled(&self) -> u64 {
        self.shared.handled.load(Ordering::Acquire)
    }

    /// Waits until `predicate(handled)` or panics after `timeout`.
    pub fn wait_handled(&self, at_least: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.handled() < at_least {
            assert!(
                !self.thread.is_finished(),
                "the service stopped early after {} messages",
                self.handled()
            );
            assert!(
                Instant::now() < deadline,
                "only {} of {at_least} messages handled in {timeout:?}",
                self.handled()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Graceful stop (flush and commit), like SIGTERM.
    pub fn stop(self) -> RunSummary {
        self.shared.shutdown.store(true, Ordering::Release);
        self.thread
            .join()
            .expect("service thread panicked")
            .expect("service failed")
    }
}

/// A producer for test input.
pub fn producer() -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// Produces `(key, payload)` messages to `topic` and waits for their acknowledgement.
pub fn produce(topic: &str, messages: &[(Vec<u8>, Vec<u8>)]) {
    let producer = producer();
    for (key, payload) in messages {
        let mut record = BaseRecord::to(topic).key(key).payload(payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, returned)) => {
                    record = returned;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// A record read back from an output topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Record {
    pub fn header(&self, key: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// Reads every record of `topic` (read_committed) until `expected` records arrived or the
/// topic stayed quiet for `quiet` after at least `timeout`.
pub fn read_all(topic: &str, expected: usize, timeout: Duration) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("reader");
    consumer.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + timeout;
    let mut records = Vec::new();
    while Instant::now() < deadline && records.len() < expected {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            let headers = message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|header| (header.key.to_owned(), header.value.unwrap_or(&[]).to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            records.push(Record {
                key: message.key().unwrap_or(&[]).to_vec(),
                payload: message.payload().unwrap_or(&[]).to_vec(),
                headers,
            });
        }
    }
    records
}

/// The group's committed offsets on `topic` (partition → offset).
pub fn committed(config: &Config, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", &config.kafka.group_id)
        .create()
        .expect("offset reader");
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .expect("committed offsets");
    (0..partitions)
        .map(
            |p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(rdkafka::Offset::Offset(o)) => o,
                _ => -1,
            },
        )
        .collect()
}

/// End offsets of `topic` (partition → high watermark). Transient errors are retried for up
/// to a minute: right after a broker restart, partitions answer "not leader" until their
/// leadership is re-established.
pub fn end_offsets(topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("watermark reader");
    let deadline = Instant::now() + Duration::from_secs(60);
    (0..partitions)
        .map(|p| loop {
            match consumer.fetch_watermarks(topic, p, Duration::from_secs(10)) {
                Ok((_, high)) => break high,
                Err(error) => {
                    assert!(
                        Instant::now() < deadline,
                        "watermarks of {topic}/{p}: {error}"
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        })
        .collect()
}

/// Headers helper for produced test messages.
pub fn no_headers() -> OwnedHeaders {
    OwnedHeaders::new()
}

/// A deterministic stream for one model: `amount` shifts by +1.5σ from `drift_at` on;
/// `tenure` (numeric) and `plan` (categorical) never drift. 10 events per second.
pub fn stream(model: &str, n: usize, drift_at: usize, seed: u64) -> Vec<PredictionEvent<'static>> {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use rand_distr::{Distribution, Normal};
    let mut rng = StdRng::seed_from_u64(seed);
    let normal = Normal::new(0.0, 1.0).unwrap();
    (0..n)
        .map(|i| {
            let amount: f64 =
                100.0 + 20.0 * normal.sample(&mut rng) + if i >= drift_at { 30.0 } else { 0.0 };
            let tenure = rng.random_range(1..=60) as f64;
            let plan = ["basic", "plus", "pro"][rng.random_range(0..3)];
            let score = 1.0 / (1.0 + (-(amount - 100.0) / 20.0).exp());
            PredictionEvent {
                event_id: Cow::Owned(format!("{model}-{i}")),
                model_id: Cow::Owned(model.to_owned()),
                model_version: Cow::Borrowed("1"),
                timestamp: 1_767_225_600_000 + i as i64 * 100,
                features: vec![
                    (Cow::Borrowed("amount"), FeatureValue::Number(amount)),
                    (Cow::Borrowed("tenure"), FeatureValue::Number(tenure)),
                    (
                        Cow::Borrowed("plan"),
                        FeatureValue::Text(Cow::Borrowed(plan)),
                    ),
                ],
                prediction: Prediction {
                    score: Some(score),
                    label: None,
                    probabilities: None,
                },
                attributes: Vec::new(),
            }
        })
        .collect()
}

/// Labels for `events`: the truth agrees with the score's decision (≥ 0.5) with probability
/// `accuracy_before` before event `change_at` and `accuracy_after` from there on; each label
/// is timestamped `delay_ms` after its prediction.
pub fn labels_for(
    events: &[PredictionEvent<'static>],
    change_at: usize,
    accuracy_before: f64,
    accuracy_after: f64,
    delay_ms: i64,
    seed: u64,
) -> Vec<driftwatch::event::LabelEvent<'static>> {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    let mut rng = StdRng::seed_from_u64(seed);
    events
        .iter()
        .enumerate()
        .map(|(i, event)| {
            let predicted = event.prediction.score.unwrap_or(0.0) >= 0.5;
            let accuracy = if i < change_at {
                accuracy_before
            } else {
                accuracy_after
            };
            let truth = if rng.random_bool(accuracy) {
                predicted
            } else {
                !predicted
            };
            driftwatch::event::LabelEvent {
                event_id: event.event_id.clone(),
                model_id: event.model_id.clone(),
                timestamp: event.timestamp + delay_ms,
                label: driftwatch::event::LabelValue::Text(Cow::Borrowed(if truth {
                    "1"
                } else {
                    "0"
                })),
            }
        })
        .collect()
}

/// `driftwatch run` as a child process with its HTTP API on a free port; killed on drop.
pub struct RunningBinary {
    pub child: std::process::Child,
    pub port: u16,
    pub config_path: std::path::PathBuf,
    pub log_path: std::path::PathBuf,
}

impl RunningBinary {
    /// Starts `driftwatch run` on the topics and group of `config`, with `extra_toml`
    /// appended to its configuration file.
    pub fn start(config: &Config, extra_toml: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let config_path = std::env::temp_dir().join(format!("{}.toml", unique("driftwatch-run")));
        let text = format!(
            "[kafka]\nbrokers = \"{}\"\ngroup_id = \"{}\"\nsession_timeout_ms = 6000\n\
             [topics]\npredictions = \"{}\"\nlabels = \"{}\"\nalerts = \"{}\"\nretrain = \"{}\"\ndlq = \"{}\"\nstate = \"{}\"\n\
             {extra_toml}\n",
            config.kafka.brokers,
            config.kafka.group_id,
            config.topics.predictions,
            config.topics.labels,
            config.topics.alerts,
            config.topics.retrain,
            config.topics.dlq,
            config.topics.state
        );
        let listen = format!("[http]\nlisten = \"127.0.0.1:{port}\"\n");
        let text = if text.contains("[http]\n") {
            text.replace("[http]\n", &listen)
        } else {
            text + &listen
        };
        std::fs::write(&config_path, text).unwrap();
        let log_path = config_path.with_extension("log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_driftwatch"))
            .args(["run", "--config"])
            .arg(&config_path)
            .stderr(log)
            .spawn()
            .expect("driftwatch run");
        Self {
            child,
            port,
            config_path,
            log_path,
        }
    }

    /// The service's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// One HTTP request; `None` when the server is not answering (yet).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &str,
        body: &str,
    ) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let status = response.get(9..12)?.parse().ok()?;
        Some((
            status,
            response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned(),
        ))
    }

    /// GET `path`.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        self.request("GET", path, "", "")
    }

    /// Polls until `ready(body of GET path)` or panics after `timeout`.
    pub fn wait_for(
        &mut self,
        path: &str,
        timeout: Duration,
        ready: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((200, body)) = self.get(path) {
                if ready(&body) {
                    return body;
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting on {path}:\n{}",
                self.log()
            );
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "driftwatch run exited early:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then waits; returns whether it exited 0.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().map(|s| s.success()).unwrap_or(false)
    }
}

impl Drop for RunningBinary {
    fn drop(&mut self) {
        // Never leave the service running when an assertion fails.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config_path);
        let _ = std::fs::remove_file(&self.log_path);
    }
}
