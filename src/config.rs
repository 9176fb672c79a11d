//! Service configuration: the TOML file of `driftwatch run --config FILE` and
//! `check-config`, environment overrides on top of it, and validation.
//!
//! Owns: the configuration types with their defaults (an empty file is a complete, valid
//! configuration), loading ([`load`]: read → parse → environment overrides → validate) and
//! [`ConfigError`], which lists *every* problem found, one per line, each prefixed by its key
//! path. Must not touch: tokio, rdkafka, the network. The only I/O here is reading the file
//! and, in [`load`] alone, the process environment; everything else is pure, so tests pass
//! their own environment to [`load_with_env`] or [`from_str_with_env`].
//!
//! The `[monitor]` section is [`MonitorSettings`], owned by the monitor; this module only
//! embeds it and folds its `validate()` into [`Config::validate`].
//!
//! # Environment overrides
//! `DRIFTWATCH_<SECTION>__<KEY>` (a double underscore between path segments; names are
//! case-insensitive and lower-cased) sets any key, e.g. `DRIFTWATCH_KAFKA__BROKERS=host:9092`
//! or `DRIFTWATCH_MONITOR__WINDOWS__PANE_MS=30000`. They are applied generically to the TOML
//! tree, not per field, so every key is overridable and a misspelt variable is an error naming
//! it. Details:
//! - Overrides apply to the *effective* configuration (the file with every default filled
//!   in), so `DRIFTWATCH_MONITOR__DETECTORS__PSI__ENABLED=false` keeps the PSI threshold even
//!   when the file has no `[monitor.detectors.psi]` table.
//! - A value is read as a TOML integer, float, boolean (`true`/`false`, any case) or array
//!   (`[1, 2]`) when it parses as one *and* the key accepts it; otherwise it is the string
//!   verbatim. So `DRIFTWATCH_HTTP__BEARER_TOKEN=12345` is the string `"12345"`.
//! - In `kafka.extra` keys, `_` stands for `.` (librdkafka property names contain no `_`,
//!   while shells cannot export names with dots): `DRIFTWATCH_KAFKA__EXTRA__SASL_PASSWORD`
//!   sets `sasl.password`. A name with literal dots works too.
//! - Entries of lists (`[[monitor.models]]`) cannot be addressed; set them in the file.
//! - Other `DRIFTWATCH_*` variables without `__` (for instance one the CLI reads) are not
//!   overrides and are ignored (scripts use e.g. `DRIFTWATCH_KAFKA_CACHE`), except names that
//!   spell a real key with a single `_` (`DRIFTWATCH_KAFKA_BROKERS`), reported as a typo.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::{Table, Value};

use crate::monitor::settings::MonitorSettings;

/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "DRIFTWATCH_";

/// Separator between path segments in an override's name.
pub const ENV_SEPARATOR: &str = "__";

/// librdkafka properties that `kafka.extra` may not set, because driftwatch sets them itself
/// (offset handling and transactions decide correctness) or a typed key owns them; with why.
pub const RESERVED_KAFKA_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "set kafka.brokers instead"),
    (
        "metadata.broker.list",
        "an alias of bootstrap.servers; set kafka.brokers instead",
    ),
    ("group.id", "set kafka.group_id instead"),
    ("client.id", "set kafka.client_id instead"),
    ("session.timeout.ms", "set kafka.session_timeout_ms instead"),
    (
        "max.poll.interval.ms",
        "set kafka.max_poll_interval_ms instead",
    ),
    (
        "enable.auto.commit",
        "driftwatch commits offsets itself, per delivery.mode",
    ),
    (
        "enable.auto.offset.store",
        "driftwatch stores offsets itself, per delivery.mode",
    ),
    ("isolation.level", "driftwatch reads committed records only"),
    (
        "transactional.id",
        "driftwatch derives it for exactly-once delivery",
    ),
    (
        "enable.idempotence",
        "driftwatch's producer is always idempotent",
    ),
    (
        "transaction.timeout.ms",
        "set delivery.transaction_timeout_ms instead",
    ),
    (
        "acks",
        "the idempotent producer needs acks=all, or outputs could be lost",
    ),
];

/// The whole service configuration. Every section has defaults: an empty file is valid and
/// runs against a broker on `127.0.0.1:9092` with the topic names of DESIGN §1.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Kafka connection and consumer group.
    #[serde(default)]
    pub kafka: KafkaSettings,
    /// Topic names.
    #[serde(default)]
    pub topics: TopicSettings,
    /// Wire formats of inputs and outputs.
    #[serde(default)]
    pub formats: FormatSettings,
    /// The schema registry that resolves Confluent schema ids (optional).
    #[serde(default)]
    pub schema_registry: SchemaRegistrySettings,
    /// Offset commits, batching and the delivery guarantee.
    #[serde(default)]
    pub delivery: DeliverySettings,
    /// The HTTP endpoint (metrics, health, models, manual retrain).
    #[serde(default)]
    pub http: HttpSettings,
    /// Prometheus metrics.
    #[serde(default)]
    pub metrics: MetricsSettings,
    /// Windows, references, detectors, policy and per-model overrides.
    #[serde(default)]
    pub monitor: MonitorSettings,
}

/// Kafka connection and consumer group (`[kafka]`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// Bootstrap servers, `host:port[,host:port...]`.
    #[serde(default = "default_brokers")]
    pub brokers: String,
    /// Consumer group; instances sharing it split the input partitions between them.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Client id shown in broker logs and quotas.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// Consumer session timeout: a silent instance is declared dead (and its partitions moved)
    /// after this long.
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u64,
    /// Longest gap between two polls before the instance leaves the group.
    #[serde(default = "default_max_poll_interval_ms")]
    pub max_poll_interval_ms: u64,
    /// Further librdkafka properties, passed verbatim to the consumer and the producer
    /// (`security.protocol`, `sasl.*`, `ssl.*`, ...). The keys of
    /// [`RESERVED_KAFKA_PROPERTIES`] are rejected.
    #[serde(default)]
    pub extra: BTreeMap<String, String>,
}

fn default_brokers() -> String {
    "127.0.0.1:9092".to_owned()
}
fn default_group_id() -> String {
    "driftwatch".to_owned()
}
fn default_client_id() -> String {
    "driftwatch".to_owned()
}
fn default_session_timeout_ms() -> u64 {
    10_000
}
fn default_max_poll_interval_ms() -> u64 {
    300_000
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            brokers: default_brokers(),
            group_id: default_group_id(),
            client_id: default_client_id(),
            session_timeout_ms: default_session_timeout_ms(),
            max_poll_interval_ms: default_max_poll_interval_ms(),
            extra: BTreeMap::new(),
        }
    }
}

/// Whether a librdkafka property holds a secret (its value is redacted in `Debug` output, so
/// logging a configuration never leaks credentials).
fn is_secret_property(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "key.pem", "oauthbearer.config"]
        .iter()
        .any(|marker| key.contains(marker))
}

impl fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let extra: BTreeMap<&str, &str> = self
            .extra
            .iter()
            .map(|(key, value)| {
                let shown = if is_secret_property(key) {
                    "<redacted>"
                } else {
                    value.as_str()
                };
                (key.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaSettings")
            .field("brokers", &self.brokers)
            .field("group_id", &self.group_id)
            .field("client_id", &self.client_id)
            .field("session_timeout_ms", &self.session_timeout_ms)
            .field("max_poll_interval_ms", &self.max_poll_interval_ms)
            .field("extra", &extra)
            .finish()
    }
}

/// Topic names (`[topics]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSettings {
    /// Input: prediction events.
    #[serde(default = "default_predictions_topic")]
    pub predictions: String,
    /// Input: label (ground truth) events, joined to predictions by `event_id`.
    #[serde(default = "default_labels_topic")]
    pub labels: String,
    /// Output: drift alerts (FIRING / RESOLVED transitions).
    #[serde(default = "default_alerts_topic")]
    pub alerts: String,
    /// Output: retrain requests.
    #[serde(default = "default_retrain_topic")]
    pub retrain: String,
    /// Output: undecodable input messages, with the reason in a header.
    #[serde(default = "default_dlq_topic")]
    pub dlq: String,
    /// Output and restore source: monitor state snapshots (should be a compacted topic).
    #[serde(default = "default_state_topic")]
    pub state: String,
}

fn default_predictions_topic() -> String {
    "inference.predictions".to_owned()
}
fn default_labels_topic() -> String {
    "inference.labels".to_owned()
}
fn default_alerts_topic() -> String {
    "drift.alerts".to_owned()
}
fn default_retrain_topic() -> String {
    "model.retrain.requests".to_owned()
}
fn default_dlq_topic() -> String {
    "driftwatch.dlq".to_owned()
}
fn default_state_topic() -> String {
    "driftwatch.state".to_owned()
}

impl Default for TopicSettings {
    fn default() -> Self {
        Self {
            predictions: default_predictions_topic(),
            labels: default_labels_topic(),
            alerts: default_alerts_topic(),
            retrain: default_retrain_topic(),
            dlq: default_dlq_topic(),
            state: default_state_topic(),
        }
    }
}

/// Encoding of an input topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputFormat {
    /// One JSON object per message, field names as in `schemas/*.avsc`.
    Json,
    /// Plain Avro binary with driftwatch's schema (`schemas/`).
    Avro,
    /// Confluent wire format: magic byte 0, 4-byte schema id, Avro binary.
    Confluent,
}

/// Encoding of the output topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    /// One JSON object per message.
    Json,
    /// Plain Avro binary with driftwatch's schema (`schemas/`).
    Avro,
}

/// Wire formats (`[formats]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormatSettings {
    /// Encoding of `topics.predictions`.
    #[serde(default = "default_input_format")]
    pub predictions: InputFormat,
    /// Encoding of `topics.labels`.
    #[serde(default = "default_input_format")]
    pub labels: InputFormat,
    /// Encoding of alerts and retrain requests (state records have their own binary format).
    #[serde(default = "default_output_format")]
    pub outputs: OutputFormat,
    /// Largest input message decoded, in bytes; larger ones go to the DLQ.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Most bytes of an input message copied into its dead letter; a longer one is cut to
    /// this length and its dead letter carries a `driftwatch.truncated` header with the
    /// original size (the full message stays at its source offset). Keeps every dead letter
    /// within the dead-letter topic's `max.message.bytes` (1 MiB by default on brokers), so a
    /// huge poison message cannot stop the service.
    #[serde(default = "default_dead_letter_max_bytes")]
    pub dead_letter_max_bytes: usize,
    /// Confluent schema ids accepted on `confluent` inputs; a message with another id goes to
    /// the DLQ. Unset: any id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confluent_schema_ids: Option<Vec<u32>>,
}

fn default_input_format() -> InputFormat {
    InputFormat::Json
}
fn default_output_format() -> OutputFormat {
    OutputFormat::Json
}
fn default_max_message_bytes() -> usize {
    1_048_576
}
fn default_dead_letter_max_bytes() -> usize {
    // Below the broker's default max.message.bytes (1,048,588) with room for the headers.
    900_000
}

impl Default for FormatSettings {
    fn default() -> Self {
        Self {
            predictions: default_input_format(),
            labels: default_input_format(),
            outputs: default_output_format(),
            max_message_bytes: default_max_message_bytes(),
            dead_letter_max_bytes: default_dead_letter_max_bytes(),
            confluent_schema_ids: None,
        }
    }
}

/// The delivery guarantee for outputs (DESIGN §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    /// Outputs are produced, then offsets committed: a crash may repeat outputs (with the
    /// same deterministic ids), never lose them. Works with any broker.
    AtLeastOnce,
    /// Outputs, state snapshots and offsets commit in one Kafka transaction per commit
    /// interval: after a crash or a rebalance, downstream `read_committed` consumers see
    /// every output exactly once. Needs a broker with transactions (Kafka >= 2.5).
    ExactlyOnce,
}

/// Offset commits, batching and the delivery guarantee (`[delivery]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySettings {
    /// Delivery guarantee.
    #[serde(default = "default_delivery_mode")]
    pub mode: DeliveryMode,
    /// Offsets (and, with transactions, outputs) are committed at most this often.
    #[serde(default = "default_commit_interval_ms")]
    pub commit_interval_ms: u64,
    /// Most records processed between two commit points.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Broker-side timeout of one transaction (exactly-once only). An instance that dies
    /// mid-transaction and is not restarted holds back `read_committed` readers of the output
    /// and state topics until this expires; a restarted one aborts it at once.
    #[serde(default = "default_transaction_timeout_ms")]
    pub transaction_timeout_ms: u64,
    /// Transactional id of this instance (exactly-once only): unique per instance and stable
    /// across its restarts (a StatefulSet pod name, say), so a restarted instance fences its
    /// previous incarnation and aborts what it left open. Default:
    /// `driftwatch-{kafka.group_id}-{hostname}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transactional_id: Option<String>,
    /// Longest time a partition's state restore (reading `topics.state` to its end) may take
    /// before the service gives up with an error.
    #[serde(default = "default_restore_timeout_ms")]
    pub restore_timeout_ms: u64,
}

fn default_delivery_mode() -> DeliveryMode {
    DeliveryMode::ExactlyOnce
}
fn default_commit_interval_ms() -> u64 {
    500
}
fn default_max_batch() -> usize {
    // Each commit writes the changed models' state and (exactly-once) costs a few broker
    // round trips: commits are meant to be paced by commit_interval_ms, this only bounds
    // the work redone after a crash under very heavy load. At 50,000 one instance reached it
    // every ~0.1 s (the throughput bench's 430k events/s), four times per interval, and its
    // loop spent ~20 % of its time waiting for the previous commit; at 500,000 the interval
    // paces commits up to ~1M events/s per instance (bench: 303-421k -> 421-509k events/s).
    500_000
}
fn default_transaction_timeout_ms() -> u64 {
    // Kafka Streams' exactly-once default: short, so a dead instance's open transaction
    // stops blocking read_committed consumers soon.
    10_000
}
fn default_restore_timeout_ms() -> u64 {
    300_000
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            mode: default_delivery_mode(),
            commit_interval_ms: default_commit_interval_ms(),
            max_batch: default_max_batch(),
            transaction_timeout_ms: default_transaction_timeout_ms(),
            transactional_id: None,
            restore_timeout_ms: default_restore_timeout_ms(),
        }
    }
}

/// The schema registry (`[schema_registry]`): with a URL, the schema id in each Confluent-framed
/// input selects the producer's writer schema, fetched from the registry's Confluent API
/// (Confluent Schema Registry, Apicurio's `ccompat` API, Redpanda, ...) and resolved against
/// driftwatch's reader schema, so producers may evolve their schema compatibly.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistrySettings {
    /// Base URL of the Confluent-compatible API, e.g. `http://registry:8081` or
    /// `http://apicurio:8080/apis/ccompat/v7`. Unset: no registry (any schema id is taken to
    /// mean driftwatch's own schema, subject to `formats.confluent_schema_ids`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Basic-auth user (an API key on managed registries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Basic-auth password (an API secret). Redacted in `Debug` output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Timeout of one registry request (at most [`MAX_REGISTRY_TIMEOUT_MS`]).
    #[serde(default = "default_registry_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Longest wait between two attempts while the registry is unreachable. Lookups are
    /// retried until it answers: a message whose schema cannot be fetched is never
    /// dead-lettered or skipped, its partition waits.
    #[serde(default = "default_registry_max_backoff_ms")]
    pub max_backoff_ms: u64,
}

/// Longest registry request timeout: a lookup runs on the service loop, and `/healthz`
/// reports a loop that has not iterated for [`crate::http::HEARTBEAT_TIMEOUT_MS`] as dead, so
/// a longer request during an outage would get a healthy instance restarted.
pub const MAX_REGISTRY_TIMEOUT_MS: u64 = crate::http::HEARTBEAT_TIMEOUT_MS as u64 * 2 / 3;

fn default_registry_timeout_ms() -> u64 {
    5_000
}
fn default_registry_max_backoff_ms() -> u64 {
    10_000
}

impl Default for SchemaRegistrySettings {
    fn default() -> Self {
        Self {
            url: None,
            username: None,
            password: None,
            request_timeout_ms: default_registry_timeout_ms(),
            max_backoff_ms: default_registry_max_backoff_ms(),
        }
    }
}

impl fmt::Debug for SchemaRegistrySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaRegistrySettings")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("max_backoff_ms", &self.max_backoff_ms)
            .finish()
    }
}

/// The HTTP endpoint (`[http]`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Token required (`Authorization: Bearer ...`) by `POST /v1/models/{id}/retrain`. Unset:
    /// no authentication. Redacted in `Debug` output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<String>,
    /// Whether the endpoint runs at all.
    #[serde(default = "default_http_enabled")]
    pub enabled: bool,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 9464))
}
fn default_http_enabled() -> bool {
    true
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            bearer_token: None,
            enabled: default_http_enabled(),
        }
    }
}

impl fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSettings")
            .field("listen", &self.listen)
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .field("enabled", &self.enabled)
            .finish()
    }
}

/// Prometheus metrics (`[metrics]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Export `driftwatch_drift_score` per feature; off: only the prediction and performance
    /// subjects.
    #[serde(default = "default_per_feature_gauges")]
    pub per_feature_gauges: bool,
    /// Most per-feature gauge series (label sets) exported; beyond it new series are not
    /// created, which bounds the label cardinality the metrics backend sees.
    #[serde(default = "default_max_feature_series")]
    pub max_feature_series: usize,
}

fn default_per_feature_gauges() -> bool {
    true
}
fn default_max_feature_series() -> usize {
    10_000
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            per_feature_gauges: default_per_feature_gauges(),
            max_feature_series: default_max_feature_series(),
        }
    }
}

/// Why a configuration could not be loaded: every problem found, each prefixed by its key
/// path (or by the file, for a TOML syntax error). `Display` prints one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct ConfigError {
    /// The problems, in the order found; never empty.
    pub problems: Vec<String>,
}

impl ConfigError {
    /// An error from `problems`, each made a single line (a problem may quote a value or a
    /// message from elsewhere), so `Display` keeps one problem per line.
    fn new(problems: Vec<String>) -> Self {
        let problems = problems
            .into_iter()
            .map(|problem| problem.replace(['\r', '\n'], " "))
            .collect();
        Self { problems }
    }
}

impl Config {
    /// Every problem with this configuration, each prefixed by its key path
    /// (`topics.alerts: must differ from topics.predictions`). Empty means valid.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        self.validate_kafka(&mut problems);
        self.validate_topics(&mut problems);
        self.validate_formats(&mut problems);
        self.validate_schema_registry(&mut problems);
        self.validate_delivery(&mut problems);
        self.validate_http(&mut problems);
        self.validate_metrics(&mut problems);
        problems.extend(self.monitor.validate());
        problems
    }

    fn validate_kafka(&self, problems: &mut Vec<String>) {
        let k = &self.kafka;
        if k.brokers.trim().is_empty() {
            problems.push("kafka.brokers: must not be empty".to_owned());
        } else if k.brokers.split(',').any(|broker| broker.trim().is_empty()) {
            problems.push(format!("kafka.brokers: empty entry in {:?}", k.brokers));
        }
        if k.group_id.trim().is_empty() {
            problems.push("kafka.group_id: must not be empty".to_owned());
        }
        if k.client_id.trim().is_empty() {
            problems.push("kafka.client_id: must not be empty".to_owned());
        }
        // librdkafka's own ranges: a value outside them fails only when the client is built.
        if !(1..=3_600_000).contains(&k.session_timeout_ms) {
            problems.push(format!(
                "kafka.session_timeout_ms: must be in 1..=3600000, got {}",
                k.session_timeout_ms
            ));
        }
        if !(1..=86_400_000).contains(&k.max_poll_interval_ms) {
            problems.push(format!(
                "kafka.max_poll_interval_ms: must be in 1..=86400000, got {}",
                k.max_poll_interval_ms
            ));
        } else if k.max_poll_interval_ms < k.session_timeout_ms {
            problems.push(format!(
                "kafka.max_poll_interval_ms: must be >= kafka.session_timeout_ms ({}), got {}",
                k.session_timeout_ms, k.max_poll_interval_ms
            ));
        }
        let reserved_list = RESERVED_KAFKA_PROPERTIES
            .iter()
            .map(|(key, _)| *key)
            .collect::<Vec<_>>()
            .join(", ");
        for key in k.extra.keys() {
            let normalized = key.trim().to_ascii_lowercase();
            if normalized.is_empty() {
                problems.push("kafka.extra: empty property name".to_owned());
            } else if let Some((_, why)) = RESERVED_KAFKA_PROPERTIES
                .iter()
                .find(|(reserved, _)| *reserved == normalized)
            {
                problems.push(format!(
                    "kafka.extra.{}: not allowed ({why}); properties kafka.extra cannot set: {reserved_list}",
                    toml_key(key)
                ));
            }
        }
    }

    fn validate_topics(&self, problems: &mut Vec<String>) {
        let t = &self.topics;
        let inputs = [("predictions", &t.predictions), ("labels", &t.labels)];
        let outputs = [
            ("alerts", &t.alerts),
            ("retrain", &t.retrain),
            ("dlq", &t.dlq),
            ("state", &t.state),
        ];
        for (key, name) in inputs.iter().chain(&outputs) {
            if name.is_empty() {
                problems.push(format!("topics.{key}: must not be empty"));
            } else if let Some(why) = invalid_topic_name(name) {
                problems.push(format!(
                    "topics.{key}: {name:?} is not a valid Kafka topic name: {why}"
                ));
            }
        }
        // Each output must be distinct from the inputs and from the outputs before it. The
        // inputs may share one topic: that is the producers' choice.
        for (i, (key, name)) in outputs.iter().enumerate() {
            if name.is_empty() {
                continue;
            }
            for (other_key, other) in inputs.iter().chain(&outputs[..i]) {
                if name == other {
                    problems.push(format!(
                        "topics.{key}: must differ from topics.{other_key} (both are {name:?})"
                    ));
                }
            }
        }
    }

    fn validate_formats(&self, problems: &mut Vec<String>) {
        let f = &self.formats;
        if !(1..=1_000_000_000).contains(&f.max_message_bytes) {
            problems.push(format!(
                "formats.max_message_bytes: must be in 1..=1000000000, got {}",
                f.max_message_bytes
            ));
        }
        if f.dead_letter_max_bytes > 1_000_000_000 {
            problems.push(format!(
                "formats.dead_letter_max_bytes: must be in 0..=1000000000, got {}",
                f.dead_letter_max_bytes
            ));
        }
        if let Some(ids) = &f.confluent_schema_ids {
            if ids.is_empty() {
                problems.push(
                    "formats.confluent_schema_ids: must not be empty (leave it unset to accept any id)".to_owned(),
                );
            }
            if f.predictions != InputFormat::Confluent && f.labels != InputFormat::Confluent {
                problems.push(
                    "formats.confluent_schema_ids: only applies to confluent inputs, but neither formats.predictions nor formats.labels is \"confluent\"".to_owned(),
                );
            }
        }
    }

    fn validate_schema_registry(&self, problems: &mut Vec<String>) {
        let r = &self.schema_registry;
        let Some(url) = &r.url else {
            if r.username.is_some() || r.password.is_some() {
                problems.push(
                    "schema_registry.username/password: set without schema_registry.url".to_owned(),
                );
            }
            return;
        };
        if !(url.starts_with("http://") || url.starts_with("https://"))
            || url.len() <= "https://".len()
        {
            problems.push(format!(
                "schema_registry.url: must be an http:// or https:// URL, got {url:?}"
            ));
        }
        if self.formats.predictions != InputFormat::Confluent
            && self.formats.labels != InputFormat::Confluent
        {
            problems.push(
                "schema_registry.url: only applies to confluent inputs, but neither formats.predictions nor formats.labels is \"confluent\"".to_owned(),
            );
        }
        if r.username.is_some() != r.password.is_some() {
            problems.push(
                "schema_registry.username/password: set both for basic authentication, or neither"
                    .to_owned(),
            );
        }
        if r.request_timeout_ms == 0 {
            problems.push("schema_registry.request_timeout_ms: must be >= 1".to_owned());
        }
        if r.request_timeout_ms > MAX_REGISTRY_TIMEOUT_MS {
            problems.push(format!(
                "schema_registry.request_timeout_ms: must be <= {MAX_REGISTRY_TIMEOUT_MS} \
                 (a lookup runs on the service loop, and /healthz reports a loop silent for \
                 {} ms as dead), got {}",
                crate::http::HEARTBEAT_TIMEOUT_MS,
                r.request_timeout_ms
            ));
        }
        if r.max_backoff_ms == 0 {
            problems.push("schema_registry.max_backoff_ms: must be >= 1".to_owned());
        }
    }

    fn validate_delivery(&self, problems: &mut Vec<String>) {
        let d = &self.delivery;
        if d.transactional_id
            .as_deref()
            .is_some_and(|id| id.trim().is_empty())
        {
            problems.push("delivery.transactional_id: must not be empty".to_owned());
        }
        if d.restore_timeout_ms == 0 {
            problems.push("delivery.restore_timeout_ms: must be >= 1".to_owned());
        }
        if d.commit_interval_ms == 0 {
            problems.push("delivery.commit_interval_ms: must be >= 1".to_owned());
        }
        if d.max_batch == 0 {
            problems.push("delivery.max_batch: must be >= 1".to_owned());
        }
        // librdkafka's range for transaction.timeout.ms.
        if !(1000..=i32::MAX as u64).contains(&d.transaction_timeout_ms) {
            problems.push(format!(
                "delivery.transaction_timeout_ms: must be in 1000..={}, got {}",
                i32::MAX,
                d.transaction_timeout_ms
            ));
        } else if d.mode == DeliveryMode::ExactlyOnce
            && d.transaction_timeout_ms <= d.commit_interval_ms
        {
            // A transaction stays open for a whole commit interval; the broker would abort it.
            problems.push(format!(
                "delivery.transaction_timeout_ms: must exceed delivery.commit_interval_ms ({}), got {}",
                d.commit_interval_ms, d.transaction_timeout_ms
            ));
        }
    }

    fn validate_http(&self, problems: &mut Vec<String>) {
        if let Some(token) = &self.http.bearer_token {
            // Never echo the token itself.
            if token.is_empty() {
                problems.push("http.bearer_token: must not be empty (leave it unset to disable authentication)".to_owned());
            } else if token.chars().any(|c| !c.is_ascii_graphic()) {
                problems.push(
                    "http.bearer_token: must be printable ASCII without spaces (it travels in an HTTP header)".to_owned(),
                );
            }
        }
    }

    fn validate_metrics(&self, problems: &mut Vec<String>) {
        let m = &self.metrics;
        if m.per_feature_gauges && m.max_feature_series == 0 {
            problems.push(
                "metrics.max_feature_series: must be >= 1 while metrics.per_feature_gauges is true"
                    .to_owned(),
            );
        }
    }
}

/// Why `name` cannot be a Kafka topic, if it cannot (Kafka's own rules).
fn invalid_topic_name(name: &str) -> Option<&'static str> {
    if name == "." || name == ".." {
        Some("\".\" and \"..\" are reserved")
    } else if name.len() > 249 {
        Some("longer than 249 characters")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        Some("only ASCII letters, digits, '.', '_' and '-' are allowed")
    } else {
        None
    }
}

/// `key` as it would be written in a TOML key path: bare if it can be, quoted otherwise.
fn toml_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
    {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

/// Loads the configuration at `path` with overrides from the process environment: reads the
/// file, parses it, applies `DRIFTWATCH_*` overrides (see the module docs) and validates.
///
/// Environment values that are not valid UTF-8 are converted lossily (invalid bytes become
/// U+FFFD); names that are not valid UTF-8 cannot be overrides and are skipped.
///
/// # Errors
/// Every problem found: unreadable file, TOML syntax (with line and column), unknown keys
/// and wrong types (with the key path, and the line for keys in the file), bad overrides
/// (naming the variable) and every validation problem.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let env = std::env::vars_os().filter_map(|(name, value)| {
        let name = name.into_string().ok()?;
        Some((name, value.to_string_lossy().into_owned()))
    });
    load_with_env(path, env)
}

/// [`load`] with the environment given explicitly (tests, or a caller with its own source).
///
/// # Errors
/// As [`load`].
pub fn load_with_env(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| {
        ConfigError::new(vec![format!(
            "{origin}: cannot read the configuration file: {error}"
        )])
    })?;
    let mut config = from_str_with_env(&text, &origin, env)?;
    // Baseline files are named relative to the configuration file.
    let base_dir = path.parent().unwrap_or_else(|| Path::new("."));
    let problems = crate::baseline::load_into(&mut config.monitor, base_dir);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::new(problems))
    }
}

/// Parses configuration `text` (named `origin` in messages, usually the file path), applies
/// overrides from `env` and validates.
///
/// # Errors
/// As [`load`], except reading.
pub fn from_str_with_env(
    text: &str,
    origin: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let table: Table = toml::from_str(text)
        .map_err(|error| ConfigError::new(vec![syntax_problem(text, origin, &error)]))?;
    // Check the file on its own first, so its mistakes are reported against its lines and
    // not blamed on an override.
    let mut problems = Vec::new();
    let from_file = deserialize_reporting_all(table, text, origin, &mut problems);

    let overrides = collect_overrides(env, &mut problems);
    let config = if overrides.is_empty() {
        from_file
    } else {
        apply_overrides(&from_file, overrides, &mut problems)
    };
    problems.extend(config.validate());
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::new(problems))
    }
}

/// Deserialises the file's table, reporting *every* unknown key and mistyped value rather
/// than the first: each offending key is reported, removed (so its default applies) and the
/// rest deserialised again, until the table deserialises. The validation that follows then
/// reports the remaining problems of the same file in the same run.
fn deserialize_reporting_all(
    mut table: Table,
    text: &str,
    origin: &str,
    problems: &mut Vec<String>,
) -> Config {
    // Each round removes one key, so a file can't loop forever; the bound only guards
    // against a key that cannot be removed.
    for _ in 0..256 {
        let error = match Config::deserialize(table.clone()) {
            Ok(config) => return config,
            Err(error) => error,
        };
        let problem = file_problem(text, origin, &error);
        let path = describe(&error)
            .split_once(": ")
            .map(|(path, _)| path.to_owned())
            .unwrap_or_default();
        problems.push(problem);
        if path.is_empty() || !remove_path(&mut table, &path) {
            break;
        }
    }
    Config::default()
}

/// Removes `a.b.c` from `table`; false when there is no such key.
fn remove_path(table: &mut Table, path: &str) -> bool {
    let segments: Vec<&str> = path.split('.').collect();
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut current = table;
    for segment in parents {
        match current.get_mut(*segment) {
            Some(toml::Value::Table(inner)) => current = inner,
            _ => return false,
        }
    }
    current.remove(*last).is_some()
}

/// A TOML syntax error: `FILE: TOML parse error at line L, column C: message`.
fn syntax_problem(text: &str, origin: &str, error: &toml::de::Error) -> String {
    match error.span() {
        Some(span) => {
            let (line, column) = line_column(text, span.start);
            format!(
                "{origin}: TOML parse error at line {line}, column {column}: {}",
                error.message()
            )
        }
        None => format!("{origin}: TOML parse error: {}", error.message()),
    }
}

/// A deserialisation error in the file: `key.path: message (FILE, line L, column C)`.
fn file_problem(text: &str, origin: &str, error: &toml::de::Error) -> String {
    let described = describe(error);
    // Errors from a `Table` carry the key path but no position; parsing the text directly gives
    // the position. Use it only when it is the same error (same message).
    let position = match toml::from_str::<Config>(text) {
        Err(spanned) if spanned.message() == error.message() => spanned.span(),
        _ => None,
    };
    match position {
        Some(span) => {
            let (line, column) = line_column(text, span.start);
            format!("{described} ({origin}, line {line}, column {column})")
        }
        None => format!("{described} ({origin})"),
    }
}

/// `key.path: message` from a deserialisation error on a [`Table`]. toml renders the path as
/// a trailing "in `a.b`" line; for an unknown key the path is its parent, so the key itself is
/// appended.
fn describe(error: &toml::de::Error) -> String {
    let message = error.message();
    let rendered = error.to_string();
    let mut path = rendered
        .strip_prefix(message)
        .map(str::trim)
        .and_then(|rest| rest.strip_prefix("in `"))
        .and_then(|rest| rest.strip_suffix('`'))
        .unwrap_or("")
        .to_owned();
    if let Some(unknown) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
    {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(unknown);
    }
    if path.is_empty() {
        message.to_owned()
    } else {
        format!("{path}: {message}")
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

/// One environment override, parsed from its name.
struct EnvOverride {
    /// The variable, as given (for messages).
    var: String,
    /// Key path, lower-cased.
    path: Vec<String>,
    /// The value, verbatim.
    raw: String,
}

/// The overrides in `env`, in a deterministic order (by path), with a problem for each
/// malformed or conflicting one.
fn collect_overrides(
    env: impl IntoIterator<Item = (String, String)>,
    problems: &mut Vec<String>,
) -> Vec<EnvOverride> {
    let sections = section_names();
    let mut by_path: BTreeMap<Vec<String>, Vec<EnvOverride>> = BTreeMap::new();
    let mut env: Vec<(String, String)> = env.into_iter().collect();
    env.sort();
    for (var, raw) in env {
        let rest = match var.get(..ENV_PREFIX.len()) {
            Some(prefix) if prefix.eq_ignore_ascii_case(ENV_PREFIX) => {
                var[ENV_PREFIX.len()..].to_lowercase()
            }
            _ => continue,
        };
        if !rest.contains(ENV_SEPARATOR) {
            // Not an override (tools such as scripts/kafka.sh use DRIFTWATCH_KAFKA_CACHE and
            // the like), unless it names a real key with a single `_` where `__` belongs.
            let misspelt = rest.split_once('_').is_some_and(|(section, key)| {
                sections.get(section).is_some_and(|keys| keys.contains(key))
            });
            if misspelt {
                problems.push(format!(
                    "{var}: not a configuration override: separate sections and keys with a double underscore, as in {ENV_PREFIX}KAFKA{ENV_SEPARATOR}BROKERS"
                ));
            }
            continue;
        }
        let mut path: Vec<String> = rest.split(ENV_SEPARATOR).map(str::to_owned).collect();
        if path.iter().any(String::is_empty) {
            problems.push(format!(
                "{var}: empty key segment (one `{ENV_SEPARATOR}` between segments)"
            ));
            continue;
        }
        if path.len() == 3 && path[0] == "kafka" && path[1] == "extra" {
            path[2] = path[2].replace('_', ".");
        }
        by_path
            .entry(path.clone())
            .or_default()
            .push(EnvOverride { var, path, raw });
    }
    let mut overrides = Vec::new();
    for (path, mut vars) in by_path {
        if vars.len() > 1 {
            let names: Vec<&str> = vars.iter().map(|o| o.var.as_str()).collect();
            problems.push(format!(
                "{}: set by several variables: {}",
                path.join("."),
                names.join(", ")
            ));
        } else {
            overrides.append(&mut vars);
        }
    }
    overrides
}

/// Names of the configuration's sections (`kafka`, `topics`, ...), from the serialised
/// defaults so a new section is known here without touching this code.
/// Each section of the configuration with the names of its keys.
fn section_names() -> BTreeMap<String, BTreeSet<String>> {
    Table::try_from(Config::default())
        .map(|table| {
            table
                .iter()
                .map(|(section, value)| {
                    let keys = value
                        .as_table()
                        .map(|t| t.keys().cloned().collect())
                        .unwrap_or_default();
                    (section.clone(), keys)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `base` with `overrides` applied, one at a time, each to the effective configuration so far;
/// an override that does not fit is reported (naming its variable) and left out.
fn apply_overrides(
    base: &Config,
    overrides: Vec<EnvOverride>,
    problems: &mut Vec<String>,
) -> Config {
    // Start from the effective configuration, defaults filled in, so an override of one field
    // of an absent table (e.g. monitor.detectors.psi.enabled) keeps that table's other fields.
    let mut table = match Table::try_from(base) {
        Ok(table) => table,
        Err(error) => {
            // Cannot happen for these types (no non-string map keys); reported, not panicked.
            problems.push(format!(
                "environment overrides: cannot serialise the configuration: {error}"
            ));
            return base.clone();
        }
    };
    let mut config = base.clone();
    for o in overrides {
        let mut first_error = None;
        for candidate in env_candidates(&o.raw) {
            let mut attempt = table.clone();
            if let Err(why) = set_path(&mut attempt, &o.path, candidate) {
                first_error = Some(why);
                break;
            }
            match attempt.clone().try_into::<Config>() {
                Ok(parsed) => {
                    table = attempt;
                    config = parsed;
                    first_error = None;
                    break;
                }
                Err(error) => {
                    first_error.get_or_insert_with(|| describe(&error));
                }
            }
        }
        if let Some(error) = first_error {
            problems.push(format!("{error} (from environment variable {})", o.var));
        }
    }
    config
}

/// The values an override's text may stand for, most specific first: a TOML integer, float,
/// boolean or array if it parses as one, then the text itself as a string.
fn env_candidates(raw: &str) -> Vec<Value> {
    let mut candidates = Vec::with_capacity(2);
    let trimmed = raw.trim();
    if trimmed.eq_ignore_ascii_case("true") {
        candidates.push(Value::Boolean(true));
    } else if trimmed.eq_ignore_ascii_case("false") {
        candidates.push(Value::Boolean(false));
    } else if let Ok(mut parsed) = toml::from_str::<Table>(&format!("v = {trimmed}")) {
        // Exactly one key, so the text cannot smuggle in other keys or tables.
        if parsed.len() == 1 {
            if let Some(value @ (Value::Integer(_) | Value::Float(_) | Value::Array(_))) =
                parsed.remove("v")
            {
                candidates.push(value);
            }
        }
    }
    candidates.push(Value::String(raw.to_owned()));
    candidates
}

/// Sets `path` in `table` to `value`, creating missing tables on the way.
fn set_path(table: &mut Table, path: &[String], value: Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("empty key path".to_owned());
    };
    let mut current = table;
    for (depth, segment) in parents.iter().enumerate() {
        let here = || path[..=depth].join(".");
        current = match current
            .entry(segment.clone())
            .or_insert_with(|| Value::Table(Table::new()))
        {
            Value::Table(inner) => inner,
            Value::Array(_) => {
                return Err(format!(
                    "{}: a list; its entries cannot be set from the environment",
                    here()
                ))
            }
            _ => {
                return Err(format!(
                    "{}: a value, not a table, so it has no key {:?}",
                    here(),
                    path[depth + 1]
                ))
            }
        };
    }
    current.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::settings::{
        Action, DetectorOverrides, DistancePatch, FeatureKind, FeatureOverrides, ModelOverrides,
        TestPatch,
    };

    const EXAMPLE_PATH: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/driftwatch.example.toml"
    );

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        from_str_with_env(text, "test.toml", no_env())
    }

    fn problems(text: &str, env: Vec<(String, String)>) -> Vec<String> {
        match from_str_with_env(text, "test.toml", env) {
            Ok(config) => panic!("expected problems, got {config:?}"),
            Err(error) => error.problems,
        }
    }

    fn assert_reported(problems: &[String], needle: &str) {
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "no problem contains {needle:?}: {problems:#?}"
        );
    }

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
        assert_eq!(
            parse("# nothing but a comment\n").unwrap(),
            Config::default()
        );
        assert_eq!(Config::default().validate(), Vec::<String>::new());
        let config = Config::default();
        assert_eq!(config.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(config.topics.state, "driftwatch.state");
        assert_eq!(config.http.listen.to_string(), "127.0.0.1:9464");
        assert_eq!(config.delivery.mode, DeliveryMode::ExactlyOnce);
    }

    #[test]
    fn partial_sections_keep_the_other_defaults() {
        let config =
            parse("[kafka]\nbrokers = \"k1:9092,k2:9092\"\n[monitor.windows]\npane_ms = 30000\n")
                .unwrap();
        assert_eq!(config.kafka.brokers, "k1:9092,k2:9092");
        assert_eq!(config.kafka.group_id, "driftwatch");
        assert_eq!(config.monitor.windows.pane_ms, 30_000);
        assert_eq!(config.monitor.windows.panes, 60);
    }

    #[test]
    fn unknown_keys_are_named_at_any_level() {
        let cases = [
            ("[kafak]\nbrokers = \"x\"\n", "kafak: unknown field `kafak`", "line 1"),
            ("[kafka]\nbrokerz = \"x\"\n", "kafka.brokerz: unknown field `brokerz`", "line 2"),
            ("[http]\nenabled = true\ntoken = \"t\"\n", "http.token: unknown field", "line 3"),
            ("[monitor.windows]\npane_mz = 1\n", "monitor.windows.pane_mz: unknown field", "line 2"),
            (
                "[monitor.detectors.psi]\nthreshold = 0.3\nthresold = 0.2\n",
                "monitor.detectors.psi.thresold: unknown field",
                "line 3",
            ),
            (
                "[[monitor.models]]\nid = \"m\"\n[monitor.models.features.amount]\ntyp = \"numeric\"\n",
                "typ: unknown field `typ`",
                "line 4",
            ),
        ];
        for (text, key, line) in cases {
            let problems = problems(text, no_env());
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_reported(&problems, key);
            assert_reported(&problems, line);
            assert_reported(&problems, "test.toml");
        }
    }

    #[test]
    fn wrong_types_name_the_key_and_line() {
        let problems = problems("[kafka]\nsession_timeout_ms = \"10s\"\n", no_env());
        assert_reported(
            &problems,
            "kafka.session_timeout_ms: invalid type: string \"10s\"",
        );
        assert_reported(&problems, "line 2, column 22");
        let problems = self::problems("[delivery]\nmode = \"exactly_twice\"\n", no_env());
        assert_reported(&problems, "delivery.mode: unknown variant `exactly_twice`");
    }

    #[test]
    fn parse_errors_report_file_line_and_column() {
        let problems = problems(
            "[kafka]\nbrokers = \"a:9092\"\nsession_timeout_ms = = 3\n",
            no_env(),
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_reported(&problems, "test.toml: TOML parse error at line 3, column");
        assert!(
            !problems[0].contains('\n'),
            "one line per problem: {problems:?}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = r#"
[kafka]
extra = { "enable.auto.commit" = "true", "security.protocol" = "ssl" }
[topics]
alerts = "inference.predictions"
dlq = ""
[delivery]
transactional_id = " "
[monitor.windows]
pane_ms = 0
"#;
        let problems = problems(text, no_env());
        assert_reported(&problems, "monitor.windows.pane_ms: must be > 0");
        assert_reported(
            &problems,
            "topics.alerts: must differ from topics.predictions",
        );
        assert_reported(&problems, "topics.dlq: must not be empty");
        assert_reported(&problems, "kafka.extra.\"enable.auto.commit\": not allowed");
        assert_reported(
            &problems,
            "bootstrap.servers, metadata.broker.list, group.id",
        );
        assert_reported(&problems, "delivery.transactional_id: must not be empty");
        assert_eq!(problems.len(), 5, "{problems:#?}");
        // Display: one problem per line.
        let error = parse(text).unwrap_err();
        assert_eq!(error.to_string().lines().count(), 5);
    }

    #[test]
    fn output_topics_must_be_distinct() {
        let problems = problems(
            "[topics]\nlabels = \"x\"\nretrain = \"x\"\nstate = \"drift.alerts\"\ndlq = \"bad topic\"\n",
            no_env(),
        );
        assert_reported(&problems, "topics.retrain: must differ from topics.labels");
        assert_reported(&problems, "topics.state: must differ from topics.alerts");
        assert_reported(
            &problems,
            "topics.dlq: \"bad topic\" is not a valid Kafka topic name",
        );
        // The two inputs may share a topic.
        parse("[topics]\npredictions = \"inference\"\nlabels = \"inference\"\n").unwrap();
    }

    #[test]
    fn reserved_kafka_properties_are_rejected_in_any_case() {
        for (key, _) in RESERVED_KAFKA_PROPERTIES {
            let problems = problems(
                &format!("[kafka.extra]\n\"{}\" = \"x\"\n", key.to_uppercase()),
                no_env(),
            );
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_reported(&problems, "not allowed");
        }
        let config = parse("[kafka.extra]\n\"security.protocol\" = \"sasl_ssl\"\n\"auto.offset.reset\" = \"earliest\"\n")
            .unwrap();
        assert_eq!(config.kafka.extra.len(), 2);
    }

    #[test]
    fn other_cross_checks() {
        let problems = problems(
            r#"
[kafka]
session_timeout_ms = 60000
max_poll_interval_ms = 30000
[formats]
confluent_schema_ids = []
[http]
bearer_token = "has space"
[metrics]
max_feature_series = 0
"#,
            no_env(),
        );
        assert_reported(
            &problems,
            "kafka.max_poll_interval_ms: must be >= kafka.session_timeout_ms",
        );
        assert_reported(&problems, "formats.confluent_schema_ids: must not be empty");
        assert_reported(
            &problems,
            "formats.confluent_schema_ids: only applies to confluent inputs",
        );
        assert_reported(&problems, "http.bearer_token: must be printable ASCII");
        assert_reported(&problems, "metrics.max_feature_series: must be >= 1");
        assert!(
            !problems.iter().any(|p| p.contains("has space")),
            "token echoed: {problems:?}"
        );
        let config =
            parse("[formats]\npredictions = \"confluent\"\nconfluent_schema_ids = [1, 7]\n")
                .unwrap();
        assert_eq!(config.formats.confluent_schema_ids, Some(vec![1, 7]));
    }

    #[test]
    fn schema_registry_settings_are_checked() {
        let found = problems(
            "[schema_registry]\nurl = \"registry:8081\"\nusername = \"key\"\nrequest_timeout_ms = 0\n",
            no_env(),
        );
        assert_reported(
            &found,
            "schema_registry.url: must be an http:// or https:// URL",
        );
        assert_reported(
            &found,
            "schema_registry.url: only applies to confluent inputs",
        );
        assert_reported(&found, "schema_registry.username/password: set both");
        assert_reported(&found, "schema_registry.request_timeout_ms: must be >= 1");
        let slow = problems(
            "[formats]\npredictions = \"confluent\"\n\
             [schema_registry]\nurl = \"http://registry:8081\"\nrequest_timeout_ms = 60000\n",
            no_env(),
        );
        assert_reported(
            &slow,
            "schema_registry.request_timeout_ms: must be <= 20000 (a lookup runs on the service loop",
        );
        assert_eq!(slow.len(), 1, "{slow:?}");
        let unused = problems("[schema_registry]\npassword = \"secret\"\n", no_env());
        assert_reported(&unused, "set without schema_registry.url");
        assert!(!unused.iter().any(|p| p.contains("secret")), "{unused:?}");
        let config = parse(
            "[formats]\npredictions = \"confluent\"\n\
             [schema_registry]\nurl = \"https://registry.example:8081/\"\n",
        )
        .unwrap();
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        assert_eq!(config.schema_registry.request_timeout_ms, 5_000);
        assert!(!format!(
            "{:?}",
            Config {
                schema_registry: SchemaRegistrySettings {
                    password: Some("hunter2".into()),
                    ..SchemaRegistrySettings::default()
                },
                ..Config::default()
            }
        )
        .contains("hunter2"));
    }

    #[test]
    fn env_overrides_nested_keys() {
        let config = from_str_with_env(
            "[kafka]\nbrokers = \"from-file:9092\"\n[monitor.windows]\npanes = 30\n",
            "test.toml",
            env(&[
                ("DRIFTWATCH_KAFKA__BROKERS", "from-env:9092"),
                ("DRIFTWATCH_MONITOR__WINDOWS__PANE_MS", "30000"),
                ("driftwatch_monitor__policy__benjamini_hochberg", "FALSE"),
                ("DRIFTWATCH_MONITOR__PREDICTION__ADWIN__DELTA", "0.01"),
                // Digits only, yet a string: the key accepts nothing else.
                ("DRIFTWATCH_HTTP__BEARER_TOKEN", "12345"),
                ("DRIFTWATCH_KAFKA__EXTRA__SASL_PASSWORD", "s3cret"),
                ("DRIFTWATCH_KAFKA__EXTRA__SOCKET.TIMEOUT.MS", "60000"),
                // One field of a table absent from the file: the rest keep their defaults.
                ("DRIFTWATCH_MONITOR__DETECTORS__JS__ENABLED", "true"),
                ("DRIFTWATCH_FORMATS__PREDICTIONS", "confluent"),
                ("DRIFTWATCH_FORMATS__CONFLUENT_SCHEMA_IDS", "[3, 4]"),
                // Not an override: no double underscore and no section name.
                ("DRIFTWATCH_LOG", "debug"),
                ("PATH", "/usr/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(config.kafka.brokers, "from-env:9092");
        assert_eq!(config.monitor.windows.pane_ms, 30_000);
        assert_eq!(config.monitor.windows.panes, 30);
        assert!(!config.monitor.policy.benjamini_hochberg);
        assert_eq!(config.monitor.prediction.adwin.delta, 0.01);
        assert_eq!(config.http.bearer_token.as_deref(), Some("12345"));
        assert_eq!(config.kafka.extra["sasl.password"], "s3cret");
        assert_eq!(config.kafka.extra["socket.timeout.ms"], "60000");
        let mut js = Config::default().monitor.detectors.js;
        js.enabled = true;
        assert_eq!(config.monitor.detectors.js, js);
        assert_eq!(config.formats.confluent_schema_ids, Some(vec![3, 4]));
    }

    #[test]
    fn tool_variables_are_not_mistaken_for_overrides() {
        // scripts/kafka.sh and the test harness read these; they are no configuration keys.
        let env = [
            ("DRIFTWATCH_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
            ("DRIFTWATCH_KAFKA_CACHE", "/tmp/x"),
            ("DRIFTWATCH_REQUIRE_KAFKA", "1"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert!(from_str_with_env("", "f.toml", env).is_ok());
        let typo = [("DRIFTWATCH_KAFKA_BROKERS".to_owned(), "h:1".to_owned())];
        let error = from_str_with_env("", "f.toml", typo).unwrap_err();
        assert!(error.problems[0].contains("double underscore"), "{error}");
    }

    #[test]
    fn bad_env_overrides_name_the_variable() {
        let problems = problems(
            "",
            env(&[
                ("DRIFTWATCH_KAFKA__BROKERZ", "x:9092"),
                ("DRIFTWATCH_KAFKA_BROKERS", "x:9092"),
                ("DRIFTWATCH_MONITOR__WINDOWS__PANE_MS", "1m"),
                ("DRIFTWATCH_MONITOR__MODELS__ID", "m"),
                ("DRIFTWATCH_KAFKA__BROKERS__HOST", "x"),
                ("DRIFTWATCH_HTTP____ENABLED", "true"),
                ("DRIFTWATCH_DELIVERY__RESTORE_TIMEOUT_MS", "0"),
                ("DRIFTWATCH_TOPICS__DLQ", "x"),
                ("driftwatch_topics__dlq", "y"),
            ]),
        );
        assert_reported(&problems, "kafka.brokerz: unknown field `brokerz`");
        assert_reported(
            &problems,
            "(from environment variable DRIFTWATCH_KAFKA__BROKERZ)",
        );
        assert_reported(
            &problems,
            "DRIFTWATCH_KAFKA_BROKERS: not a configuration override",
        );
        assert_reported(
            &problems,
            "monitor.windows.pane_ms: invalid type: string \"1m\"",
        );
        assert_reported(
            &problems,
            "(from environment variable DRIFTWATCH_MONITOR__WINDOWS__PANE_MS)",
        );
        assert_reported(&problems, "monitor.models: a list");
        assert_reported(&problems, "kafka.brokers: a value, not a table");
        assert_reported(&problems, "DRIFTWATCH_HTTP____ENABLED: empty key segment");
        assert_reported(
            &problems,
            "topics.dlq: set by several variables: DRIFTWATCH_TOPICS__DLQ, driftwatch_topics__dlq",
        );
        // Overrides that fit are applied and then validated like the file.
        assert_reported(&problems, "delivery.restore_timeout_ms: must be >= 1");
        assert_eq!(problems.len(), 8, "{problems:#?}");
    }

    #[test]
    fn file_errors_are_not_blamed_on_the_environment() {
        let problems = problems(
            "[kafka]\nbrokerz = 1\n",
            env(&[("DRIFTWATCH_KAFKA__BROKERS", "x:1")]),
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_reported(&problems, "kafka.brokerz: unknown field");
        assert_reported(&problems, "line 2");
    }

    #[test]
    fn load_reads_the_file_and_names_a_missing_one() {
        let config = load_with_env(
            Path::new(EXAMPLE_PATH),
            env(&[("DRIFTWATCH_HTTP__ENABLED", "false")]),
        )
        .unwrap();
        assert!(!config.http.enabled);
        let error = load_with_env(Path::new("/nonexistent/driftwatch.toml"), no_env()).unwrap_err();
        assert_eq!(error.problems.len(), 1);
        assert_reported(&error.problems, "/nonexistent/driftwatch.toml: cannot read");
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let mut config = Config::default();
        config.http.bearer_token = Some("tok-123".to_owned());
        config
            .kafka
            .extra
            .insert("sasl.password".to_owned(), "pw-456".to_owned());
        config
            .kafka
            .extra
            .insert("security.protocol".to_owned(), "sasl_ssl".to_owned());
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("tok-123") && !debug.contains("pw-456"),
            "{debug}"
        );
        assert!(debug.contains("sasl_ssl"), "{debug}");
    }

    /// The example's `# BEGIN EXAMPLE` ... `# END EXAMPLE` blocks with one leading `#` (and one
    /// space) removed from each line: `## text` stays a comment.
    fn uncomment_examples(text: &str) -> String {
        let mut out = String::new();
        let mut inside = false;
        for line in text.lines() {
            if line.starts_with("# BEGIN EXAMPLE") {
                inside = true;
            } else if line.starts_with("# END EXAMPLE") {
                inside = false;
            } else if inside {
                let stripped = line.strip_prefix('#').unwrap_or(line);
                out.push_str(stripped.strip_prefix(' ').unwrap_or(stripped));
            } else {
                out.push_str(line);
            }
            out.push('\n');
        }
        assert!(!inside, "unterminated # BEGIN EXAMPLE block");
        out
    }

    /// Keys of `expected` (recursively) missing from `actual`; empty lists may be left out.
    fn missing_keys(expected: &Table, actual: &Table, prefix: &str, missing: &mut Vec<String>) {
        for (key, value) in expected {
            let path = format!("{prefix}{key}");
            match (value, actual.get(key)) {
                (Value::Array(items), None) if items.is_empty() => {}
                (_, None) => missing.push(path),
                (Value::Table(inner), Some(Value::Table(other))) => {
                    missing_keys(inner, other, &format!("{path}."), missing);
                }
                _ => {}
            }
        }
    }

    #[test]
    fn example_file_is_complete_and_shows_the_defaults() {
        let text = std::fs::read_to_string(EXAMPLE_PATH).unwrap();
        // As shipped, every live key holds its default value ...
        let config = from_str_with_env(&text, EXAMPLE_PATH, no_env()).unwrap();
        assert_eq!(config, Config::default());
        // ... and every key of the configuration is there, so a new key must be documented.
        let defaults = Table::try_from(Config::default()).unwrap();
        let example: Table = toml::from_str(&text).unwrap();
        let mut missing = Vec::new();
        missing_keys(&defaults, &example, "", &mut missing);
        assert_eq!(
            missing,
            Vec::<String>::new(),
            "keys missing from the example"
        );
    }

    #[test]
    fn example_file_overrides_parse_as_documented() {
        let text = uncomment_examples(&std::fs::read_to_string(EXAMPLE_PATH).unwrap());
        let config = from_str_with_env(&text, EXAMPLE_PATH, no_env()).unwrap();
        let mut expected = Config::default();
        expected.kafka.extra = [
            ("security.protocol", "sasl_ssl"),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", "driftwatch"),
            ("auto.offset.reset", "latest"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let amount = FeatureOverrides {
            kind: Some(FeatureKind::Numeric),
            detectors: DetectorOverrides {
                psi: Some(DistancePatch {
                    threshold: Some(0.1),
                    ..Default::default()
                }),
                wasserstein: Some(DistancePatch {
                    enabled: Some(true),
                    threshold: Some(0.3),
                    action: Some(Action::AlertOnly),
                }),
                ..Default::default()
            },
        };
        let session_id = FeatureOverrides {
            kind: Some(FeatureKind::Ignore),
            ..Default::default()
        };
        expected.monitor.models = vec![ModelOverrides {
            id: "fraud-scorer".to_owned(),
            warmup_events: Some(50_000),
            baseline: Some("baselines/fraud-scorer-v7.json".to_owned()),
            detectors: DetectorOverrides {
                ks: Some(TestPatch {
                    p_value: Some(0.0001),
                    ..Default::default()
                }),
                min_samples: Some(500),
                ..Default::default()
            },
            features: [
                ("amount".to_owned(), amount),
                ("session_id".to_owned(), session_id),
            ]
            .into(),
            task: Some(crate::monitor::settings::TaskKind::Classification),
            positive_class: Some("fraud".to_owned()),
            performance_rules: Some(vec![crate::monitor::settings::PerformanceRule {
                metric: crate::monitor::quality::QualityMetric::Recall,
                min: Some(0.7),
                max: None,
                max_degradation: None,
                action: Action::Retrain,
            }]),
            sensitive_attribute: Some("region".to_owned()),
            retrain_schedule: Some("0 3 * * MON".to_owned()),
        }];
        assert_eq!(config, expected);
    }

    #[test]
    fn serialisation_round_trips() {
        let text = uncomment_examples(&std::fs::read_to_string(EXAMPLE_PATH).unwrap());
        let mut config = from_str_with_env(&text, "example", no_env()).unwrap();
        config.http.bearer_token = Some("t".to_owned());
        config.formats.confluent_schema_ids = Some(vec![1]);
        let table = Table::try_from(&config).unwrap();
        assert_eq!(table.try_into::<Config>().unwrap(), config);
        let rendered = toml::to_string(&config).unwrap();
        assert_eq!(toml::from_str::<Config>(&rendered).unwrap(), config);
    }
}
