//! The service loop: consume → decode → engine → publish → commit.
//!
//! Delivery, exactly-once (the default; DESIGN §6): per commit interval (or `max_batch`
//! records), one Kafka transaction holds the outputs (alerts, retrain requests, dead letters),
//! the state records of what changed (`topics.state`, see [`super::changelog`]) and the
//! consumed offsets (`send_offsets_to_transaction` with the group's metadata, so a zombie
//! from an older group generation is fenced). Errors follow librdkafka's transaction
//! contract: retriable → retry the call; abortable → abort, then *rewind* (engines restored
//! from the changelog, consumer positions reset to the committed offsets), so the aborted work
//! is redone from the same inputs and state; fatal (fenced, ...) → stop with an error, nothing
//! half-committed. Downstream consumers read with `isolation.level=read_committed`.
//!
//! The commit itself (librdkafka flushing the transaction's records and ending it with the
//! coordinator) runs on a thread of its own while the loop handles the next records, whose
//! state changes and offsets belong to the next transaction; records they produce (alerts,
//! dead letters) are held back until that transaction opens, since librdkafka takes none
//! while a commit is under way. At most one commit is in flight: the next one waits for it.
//! A failed commit rewinds past both, so the records handled meanwhile are redone too.
//!
//! Delivery, at-least-once (`delivery.mode = "at_least_once"`, for brokers without
//! transactions): outputs and state records are produced with an idempotent producer, and the
//! consumed offsets are committed only once everything produced so far is acknowledged. A
//! crash repeats outputs (with the same deterministic ids) but never loses one.
//!
//! Rebalances: the range assignor gives partition p of the predictions topic and partition p
//! of the labels topic to the same member (when both topics have the same partition count),
//! which the label join needs: labels are joined by the engine of their partition number. On
//! revocation (inside librdkafka's callback, on this loop's thread, between messages) a commit
//! in flight is waited for, then the open transaction is aborted (exactly-once) or the producer flushed (at-least-once), and the
//! revoked engines are dropped: their state as of the last commit is in the changelog, with
//! the offsets it matches. On assignment, the engines of the assigned partitions are restored
//! from the changelog before their first record is processed.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::{debug, error, info, warn};

use crate::codec::{self, DecodeError, Decoder, EventBuffers, EventKind, Format};
use crate::config::{Config, DeliveryMode, InputFormat, OutputFormat};
use crate::monitor::engine::{Disposition, Engine};
use crate::monitor::model::{
    ManualOutcome, ModelStatus, SourcePosition, FAIRNESS_SUBJECT, PERFORMANCE_SUBJECT,
};
use crate::monitor::output::{Output, RetrainRequest};
use crate::registry::{Lookup, SchemaRegistry};
use crate::telemetry::Metrics;
use prometheus::IntCounter;

use super::align::{Aligner, Flow};
use super::changelog::{self, state_partition};
use super::settings::{consumer_settings, producer_settings};

/// State shared between the loop, the HTTP server and the demo.
pub struct Shared {
    /// Metrics registry.
    pub metrics: Metrics,
    /// Latest status of every model version (refreshed at each commit).
    pub status: RwLock<Vec<ModelStatus>>,
    /// The consumer joined its group and received an assignment.
    pub ready: AtomicBool,
    /// Wall-clock ms of the loop's last iteration (liveness).
    pub heartbeat_ms: AtomicI64,
    /// Messages fully handled (processed or dead-lettered).
    pub handled: AtomicU64,
    /// Set to stop the loop; it then flushes, commits and returns.
    pub shutdown: AtomicBool,
    /// Manual retrain requests from the HTTP API, for the loop to carry out.
    commands: Mutex<Vec<ManualCommand>>,
    /// Set with `commands`; the loop checks this flag (no lock) each iteration.
    commands_waiting: AtomicBool,
}

/// A manual retrain request handed from the HTTP API to the service loop.
pub struct ManualCommand {
    /// Model to retrain.
    pub model_id: String,
    /// Why, in the requester's words.
    pub reason: String,
    /// Issue it even while the model's cooldown runs.
    pub force: bool,
    /// Where the loop answers.
    pub reply: tokio::sync::oneshot::Sender<ManualReply>,
}

/// The loop's answer to a [`ManualCommand`].
#[derive(Debug, Clone, PartialEq)]
pub enum ManualReply {
    /// The request was handed to the producer.
    Requested(RetrainRequest),
    /// The model's cooldown runs until this event time (ms); nothing was issued.
    Suppressed {
        /// End of the cooldown (event time, ms).
        until: i64,
    },
    /// No partition of this instance monitors the model.
    UnknownModel,
}

impl Shared {
    /// Fresh shared state.
    pub fn new(metrics: Metrics) -> Self {
        Self {
            metrics,
            status: RwLock::new(Vec::new()),
            ready: AtomicBool::new(false),
            heartbeat_ms: AtomicI64::new(now_ms()),
            handled: AtomicU64::new(0),
            shutdown: AtomicBool::new(false),
            commands: Mutex::new(Vec::new()),
            commands_waiting: AtomicBool::new(false),
        }
    }

    /// Queues a manual retrain request for the loop.
    pub fn submit(&self, command: ManualCommand) {
        if let Ok(mut commands) = self.commands.lock() {
            commands.push(command);
            self.commands_waiting.store(true, Ordering::Release);
        }
    }
}

/// Sees what the loop publishes, as it happens (the demo prints it live).
pub trait Observer: Send {
    /// An output was handed to the producer.
    fn on_output(&mut self, _output: &Output) {}
    /// A message went to the dead-letter topic.
    fn on_dead_letter(&mut self, _reason: &str) {}
}

/// An observer that ignores everything.
pub struct NoObserver;
impl Observer for NoObserver {}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Messages consumed.
    pub consumed: u64,
    /// Outputs published.
    pub outputs: u64,
    /// Dead letters published.
    pub dead_letters: u64,
}

/// Why the service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Creating or configuring a Kafka client failed.
    #[error("kafka client setup failed: {0}")]
    Setup(#[source] KafkaError),
    /// The broker did not acknowledge outputs: offsets were not committed.
    #[error("outputs were not acknowledged: {0}")]
    Delivery(String),
    /// A fatal consumer or producer error.
    #[error("fatal kafka error: {0}")]
    Fatal(#[source] KafkaError),
    /// The monitor settings were refused.
    #[error("invalid monitor settings: {0}")]
    Settings(String),
    /// The state topic could not be created or read.
    #[error("state changelog: {0}")]
    Changelog(String),
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Counts deliveries so commits can wait for every output to be acknowledged.
struct DeliveryTracker {
    in_flight: AtomicU64,
    failure: Mutex<Option<String>>,
}

struct DeliveryContext {
    tracker: Arc<DeliveryTracker>,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        self.tracker.in_flight.fetch_sub(1, Ordering::AcqRel);
        if let Err((error, message)) = result {
            // Records of an aborted transaction are purged from the queues: expected, and
            // reprocessed after the rewind.
            if matches!(
                error,
                KafkaError::MessageProduction(
                    RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight
                )
            ) {
                return;
            }
            let text = format!("{} (topic {})", error, message.topic());
            error!(message = "Output delivery failed.", error = %text);
            if let Ok(mut failure) = self.tracker.failure.lock() {
                failure.get_or_insert(text);
            }
        }
    }
}

type OutputProducer = ThreadedProducer<DeliveryContext>;

/// The exactly-once transaction, shared by the loop, its commit thread and the rebalance
/// callback.
#[derive(Default)]
struct Transaction {
    /// A transaction is open: records were produced into it and it has not ended.
    open: AtomicBool,
    /// A commit thread is committing it: the rebalance callback waits for the outcome
    /// before it aborts anything (librdkafka allows one transactional call at a time).
    committing: AtomicBool,
}

/// A record produced while the previous transaction was committing, kept until the next
/// transaction opens (librdkafka refuses records between a commit's start and its end).
struct HeldRecord {
    topic: String,
    key: Vec<u8>,
    payload: Option<Vec<u8>>,
    headers: Option<OwnedHeaders>,
    partition: Option<i32>,
}

/// Partitions revoked by the last rebalance, for the loop to drop their engines.
///
/// No offsets are tracked here: messages are handled synchronously between polls, so the
/// consumer's position *is* the next unhandled offset, and commits use it directly. The hot
/// path therefore shares nothing with the rebalance callback.
#[derive(Default)]
struct Pending {
    revoked: Vec<(String, i32)>,
    /// The last assignment, when one arrived since the loop looked.
    assigned: Option<Vec<(String, i32)>>,
    /// Set with `revoked`; the loop checks this flag (no lock) before looking.
    any: Arc<AtomicBool>,
}

struct BusContext {
    predictions_topic: String,
    producer: Arc<OutputProducer>,
    tracker: Arc<DeliveryTracker>,
    pending: Arc<Mutex<Pending>>,
    shared: Arc<Shared>,
    /// Exactly-once mode: the transaction (shared with the loop).
    transaction: Option<Arc<Transaction>>,
}

impl ClientContext for BusContext {
    /// librdkafka's statistics carry each partition's offsets without extra broker requests.
    /// The lag is computed from the last stable offset (what a read_committed consumer can
    /// reach; the high watermark if unknown) minus the application's position, not taken
    /// from librdkafka's `consumer_lag`: that one is relative to the *committed* offset, which
    /// librdkafka never learns in exactly-once mode (offsets go through the producer's
    /// transaction), so it would always be -1 there. Partitions no longer assigned lose their
    /// series, so a former owner shows no stale lag.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let gauge = &self.shared.metrics.consumer_lag;
        for (name, topic) in &statistics.topics {
            if name != &self.predictions_topic {
                continue;
            }
            for (id, partition) in &topic.partitions {
                if *id < 0 {
                    continue;
                }
                let end = if partition.ls_offset >= 0 {
                    partition.ls_offset
                } else {
                    partition.hi_offset
                };
                let label = id.to_string();
                if partition.fetch_state == "active" && end >= 0 && partition.app_offset >= 0 {
                    gauge
                        .with_label_values(&[&label])
                        .set((end - partition.app_offset).max(0));
                } else if matches!(
                    partition.fetch_state.as_str(),
                    "none" | "stopping" | "stopped"
                ) {
                    // Not (or no longer) assigned here.
                    let _ = gauge.remove_label_values(&[&label]);
                }
            }
        }
    }
}

impl ConsumerContext for BusContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        // The work since the last commit is not handed over: the next owner (maybe this
        // instance again) restores the state of the last commit and resumes from its offsets.
        // So that work must not become visible either: abort it (exactly-once), or at least
        // deliver what was produced (at-least-once: outputs may repeat, never get lost).
        if let Some(transaction) = &self.transaction {
            // A commit in flight ends first (committed, or failed and still open).
            while transaction.committing.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let handed_over = match &self.transaction {
            Some(transaction) if transaction.open.swap(false, Ordering::AcqRel) => {
                match self.producer.abort_transaction(TRANSACTION_TIMEOUT) {
                    Ok(()) => {
                        self.shared
                            .metrics
                            .transactions
                            .with_label_values(&["aborted"])
                            .inc();
                        true
                    }
                    Err(error) => {
                        // The next transactional call reports it again and decides.
                        warn!(message = "Aborting the open transaction on revocation failed.", %error);
                        false
                    }
                }
            }
            Some(_) => true,
            None => flush(&self.producer, &self.tracker).is_ok(),
        };
        if let Ok(mut pending) = self.pending.lock() {
            for element in revoked.elements() {
                pending
                    .revoked
                    .push((element.topic().to_owned(), element.partition()));
                pending.any.store(true, Ordering::Release);
            }
        }
        info!(
            message = "Partitions revoked.",
            partitions = revoked.count(),
            handed_over
        );
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(assigned) = rebalance {
            if let Ok(mut pending) = self.pending.lock() {
                pending.assigned = Some(
                    assigned
                        .elements()
                        .iter()
                        .map(|e| (e.topic().to_owned(), e.partition()))
                        .collect(),
                );
                pending.any.store(true, Ordering::Release);
            }
            info!(
                message = "Partitions assigned.",
                partitions = assigned.count()
            );
            self.shared.ready.store(true, Ordering::Release);
        }
    }
}

/// Whether the labels partition `partition` has messages this consumer has not read yet
/// (librdkafka's cached high watermark against the fetch position; no broker round trip).
fn labels_backlog(consumer: &BaseConsumer<BusContext>, labels: &str, partition: i32) -> bool {
    let Some((low, high)) = cached_watermarks(consumer, labels, partition) else {
        return false;
    };
    match fetch_position(consumer, labels, partition) {
        Some(position) => position < high,
        None => high > low,
    }
}

/// The consumer's fetch position in one partition, from librdkafka's local state.
///
/// Why not `Consumer::position`: it first asks librdkafka's main thread for the whole
/// assignment and blocks until that thread answers, which on a busy machine took
/// milliseconds; the label alignment asks on the per-prediction path (perf: ~1,800 blocking
/// round trips in a 3-second window of the throughput bench). `rd_kafka_position` on a
/// one-partition list reads the position under the partition's lock, with no round trip.
fn fetch_position(consumer: &BaseConsumer<BusContext>, topic: &str, partition: i32) -> Option<i64> {
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, partition);
    // SAFETY: the client pointer is valid for the consumer's lifetime and `list` is a valid
    // partition list that outlives the call; librdkafka only writes the offsets of the
    // list's own elements.
    let error =
        unsafe { rdkafka::bindings::rd_kafka_position(consumer.client().native_ptr(), list.ptr()) };
    if error != rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return None;
    }
    match list.find_partition(topic, partition)?.offset() {
        Offset::Offset(offset) => Some(offset),
        _ => None,
    }
}

/// librdkafka's cached (low, high) watermarks of a partition, as updated by fetch responses:
/// a local lookup, unlike `fetch_watermarks`, which asks the broker. rust-rdkafka 0.39 does not
/// wrap `rd_kafka_get_watermark_offsets`, hence the direct call.
fn cached_watermarks(
    consumer: &BaseConsumer<BusContext>,
    topic: &str,
    partition: i32,
) -> Option<(i64, i64)> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1_i64, -1_i64);
    // SAFETY: the client pointer is valid for the consumer's lifetime; `topic` is a valid
    // NUL-terminated string that outlives the call; `low` and `high` are valid out-pointers.
    // The function only reads librdkafka's own state under its locks.
    let error = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (error == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some((low.max(0), high))
}

/// Runs a transactional call again while librdkafka says the error is retriable.
fn retrying(mut call: impl FnMut() -> Result<(), KafkaError>) -> Result<(), KafkaError> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match call() {
            Err(KafkaError::Transaction(error))
                if error.is_retriable() && Instant::now() < deadline =>
            {
                warn!(message = "Retriable transaction error; retrying.", %error);
                std::thread::sleep(Duration::from_millis(100));
            }
            result => return result,
        }
    }
}

/// Whether a transactional error leaves the producer unusable (fenced, ...). Any other
/// failure is handled by aborting: if even the abort fails, that is fatal.
fn is_fatal(error: &KafkaError) -> bool {
    matches!(error, KafkaError::Transaction(error) if error.is_fatal())
}

/// Timeout of one transactional call (commit, abort, offsets).
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);

/// How long rewinding a partition to a message held back for its schema may take (a local
/// operation of librdkafka's; the broker is not asked).
const SEEK_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits until every produced output is acknowledged.
fn flush(producer: &OutputProducer, tracker: &DeliveryTracker) -> Result<(), ServiceError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while tracker.in_flight.load(Ordering::Acquire) > 0 {
        if Instant::now() > deadline {
            return Err(ServiceError::Delivery(
                "timed out waiting for acknowledgements".into(),
            ));
        }
        let _ = producer.flush(Duration::from_millis(100));
    }
    match tracker.failure.lock().map(|f| f.clone()) {
        Ok(Some(failure)) => Err(ServiceError::Delivery(failure)),
        _ => Ok(()),
    }
}

fn codec_format(format: InputFormat) -> Format {
    match format {
        InputFormat::Json => Format::Json,
        InputFormat::Avro => Format::Avro,
        InputFormat::Confluent => Format::Confluent,
    }
}

fn decoder(config: &Config, format: InputFormat, kind: EventKind) -> Decoder {
    let decoder = Decoder::new(codec_format(format), kind)
        .with_max_payload_bytes(config.formats.max_message_bytes);
    match &config.formats.confluent_schema_ids {
        Some(ids) => decoder.with_accepted_schema_ids(ids.iter().copied()),
        None => decoder,
    }
}

/// What happened to a message, as counted in `driftwatch_events_total{outcome}`.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Accepted = 0,
    Late = 1,
    Label = 2,
    DeadLetter = 3,
    TooFarAhead = 4,
}

impl Outcome {
    const ALL: [Outcome; 5] = [
        Outcome::Accepted,
        Outcome::Late,
        Outcome::Label,
        Outcome::DeadLetter,
        Outcome::TooFarAhead,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Late => "late",
            Outcome::Label => "label",
            Outcome::DeadLetter => "dead_letter",
            Outcome::TooFarAhead => "too_far_ahead",
        }
    }
}

/// The loop's working state.
struct Loop<'a> {
    config: &'a Config,
    shared: Arc<Shared>,
    producer: Arc<OutputProducer>,
    tracker: Arc<DeliveryTracker>,
    pending: Arc<Mutex<Pending>>,
    predictions: Decoder,
    labels: Decoder,
    /// Resolves Confluent schema ids when `schema_registry.url` is set.
    registry: Option<SchemaRegistry>,
    /// Messages left unhandled because their schema could not be fetched (the registry is
    /// unreachable): (topic, partition, offset). Commits take the offset as the partition's
    /// position, so that neither a restart nor a new owner of the partition skips it.
    held: Vec<(String, i32, i64)>,
    /// Partitions paused (and rewound to their held message) until the registry may be
    /// asked again: (topic, partition, when). Handling the partitions whose schemas are known
    /// goes on meanwhile, as do heartbeats and commits.
    schema_waits: Vec<(String, i32, Instant)>,
    /// Storage for decoded events' lists, reused from one message to the next.
    buffers: EventBuffers,
    engines: HashMap<i32, Engine>,
    /// Exactly-once mode: the transaction (shared with the rebalance callback, which aborts
    /// it, and with the commit thread).
    transaction: Option<Arc<Transaction>>,
    /// The commit running on its own thread, while the loop handles the next records:
    /// waiting for the broker to acknowledge a transaction would otherwise stop the loop
    /// for a quarter of its time.
    committing: Option<std::thread::JoinHandle<Result<(), KafkaError>>>,
    /// Records produced while `committing`, for the next transaction.
    held_back: Vec<HeldRecord>,
    /// Partition count of the state topic.
    state_partitions: i32,
    /// Keeps each predictions partition within reach of its labels in event time.
    aligner: Aligner,
    /// `driftwatch_events_total` children resolved once: [predictions, labels] × outcome,
    /// so the per-message path does no label lookup (which takes a lock in prometheus).
    outcome_counters: [[IntCounter; 5]; 2],
    revocations: Arc<AtomicBool>,
    /// Messages handled since the last commit.
    uncommitted: bool,
    /// Label-join totals already added to the metrics.
    join_exported: [u64; 6],
    /// `driftwatch_alert_firing` series set by the last status refresh.
    firing_series: HashSet<[String; 4]>,
    summary: RunSummary,
    observer: &'a mut dyn Observer,
}

/// Runs the service until `shared.shutdown` is set or a fatal error occurs.
///
/// # Errors
/// See [`ServiceError`]; on error nothing unacknowledged has been committed.
pub fn run(
    config: &Config,
    shared: Arc<Shared>,
    observer: &mut dyn Observer,
) -> Result<RunSummary, ServiceError> {
    let tracker = Arc::new(DeliveryTracker {
        in_flight: AtomicU64::new(0),
        failure: Mutex::new(None),
    });
    let mut producer_config = ClientConfig::new();
    for (key, value) in producer_settings(config) {
        producer_config.set(key, value);
    }
    let producer: Arc<OutputProducer> = Arc::new(
        producer_config
            .create_with_context(DeliveryContext {
                tracker: tracker.clone(),
            })
            .map_err(ServiceError::Setup)?,
    );
    let exactly_once = config.delivery.mode == DeliveryMode::ExactlyOnce;
    if exactly_once {
        // Fences this transactional id's previous incarnation and aborts what it left open.
        producer
            .init_transactions(TRANSACTION_TIMEOUT)
            .map_err(ServiceError::Fatal)?;
        info!(
            message = "Transactions initialised.",
            transactional_id = %super::settings::transactional_id(config)
        );
    }
    let transaction = exactly_once.then(|| Arc::new(Transaction::default()));
    let state_partitions = changelog::ensure_state_topic(config)?;
    let pending = Arc::new(Mutex::new(Pending::default()));
    let revocations = pending.lock().map(|p| p.any.clone()).unwrap_or_default();
    let mut consumer_config = ClientConfig::new();
    for (key, value) in consumer_settings(config) {
        consumer_config.set(key, value);
    }
    let consumer: BaseConsumer<BusContext> = consumer_config
        .create_with_context(BusContext {
            predictions_topic: config.topics.predictions.clone(),
            producer: producer.clone(),
            tracker: tracker.clone(),
            pending: pending.clone(),
            shared: shared.clone(),
            transaction: transaction.clone(),
        })
        .map_err(ServiceError::Setup)?;
    consumer
        .subscribe(&[
            config.topics.predictions.as_str(),
            config.topics.labels.as_str(),
        ])
        .map_err(ServiceError::Setup)?;
    // Fail at start, not at the first partition, if the settings are unusable.
    Engine::new(config.monitor.clone()).map_err(|p| ServiceError::Settings(p.join("; ")))?;
    info!(
        message = "Service started.",
        brokers = %config.kafka.brokers,
        group = %config.kafka.group_id,
        predictions = %config.topics.predictions,
        labels = %config.topics.labels
    );
    let metrics_source = shared.clone();
    let mut state = Loop {
        config,
        shared,
        producer,
        tracker,
        pending,
        predictions: decoder(config, config.formats.predictions, EventKind::Prediction),
        labels: decoder(config, config.formats.labels, EventKind::Label),
        registry: SchemaRegistry::new(
            &config.schema_registry,
            Some(metrics_source.metrics.schema_registry_requests.clone()),
        ),
        held: Vec::new(),
        schema_waits: Vec::new(),
        buffers: EventBuffers::default(),
        engines: HashMap::new(),
        transaction,
        committing: None,
        held_back: Vec::new(),
        state_partitions,
        // Labels up to half the lateness bound behind are still on time: past that, the
        // predictions wait. A quiet labels topic stalls nobody for more than 2 s.
        aligner: Aligner::new(
            config.monitor.windows.allowed_lateness_ms / 2,
            Duration::from_secs(2),
        ),
        outcome_counters: [&config.topics.predictions, &config.topics.labels].map(|topic| {
            Outcome::ALL.map(|outcome| {
                metrics_source
                    .metrics
                    .events
                    .with_label_values(&[topic.as_str(), outcome.as_str()])
            })
        }),
        revocations,
        uncommitted: false,
        join_exported: [0; 6],
        firing_series: HashSet::new(),
        summary: RunSummary::default(),
        observer,
    };
    let result = state.run(&consumer);
    // Whatever happened, try to leave nothing unacknowledged and commit what is safe.
    let final_commit = state
        .commit(&consumer)
        .and_then(|()| state.finish_commit(&consumer));
    state.publish_status();
    consumer.unsubscribe();
    result.and(final_commit).map(|()| state.summary.clone())
}

impl Loop<'_> {
    fn run(&mut self, consumer: &BaseConsumer<BusContext>) -> Result<(), ServiceError> {
        /// Clock reads are checked once per this many messages (and at every idle poll):
        /// reading the clock per message cost more than the metrics themselves.
        const CLOCK_EVERY: u64 = 64;
        /// The HTTP status snapshot is rebuilt at most this often.
        const STATUS_EVERY: Duration = Duration::from_secs(1);
        let interval = Duration::from_millis(self.config.delivery.commit_interval_ms);
        let max_batch = self.config.delivery.max_batch as u64;
        let mut last_commit = Instant::now();
        let mut last_status = Instant::now();
        let mut since_commit = 0u64;
        let mut handled = 0u64;
        while !self.shared.shutdown.load(Ordering::Acquire) {
            let idle = match consumer.poll(Duration::from_millis(100)) {
                None => true,
                Some(Ok(message)) => {
                    // One message in CLOCK_EVERY is timed for driftwatch_process_seconds.
                    let timed = handled % CLOCK_EVERY == 0;
                    let started = timed.then(Instant::now);
                    self.handle(consumer, &message)?;
                    if let Some(started) = started {
                        self.shared
                            .metrics
                            .process_seconds
                            .observe(started.elapsed().as_secs_f64());
                    }
                    since_commit += 1;
                    handled += 1;
                    false
                }
                Some(Err(error)) => {
                    if let KafkaError::MessageConsumption(code) = &error {
                        if *code == RDKafkaErrorCode::Fatal {
                            return Err(ServiceError::Fatal(error));
                        }
                    }
                    warn!(message = "Consumer error; librdkafka retries.", %error);
                    true
                }
            };
            self.apply_rebalance(consumer)?;
            if self.shared.commands_waiting.load(Ordering::Acquire) {
                self.handle_commands()?;
            }
            if !idle && handled % CLOCK_EVERY != 0 && since_commit < max_batch {
                continue;
            }
            self.shared.heartbeat_ms.store(now_ms(), Ordering::Release);
            // Outputs held back during a commit go out as soon as it has ended.
            if self.committing.as_ref().is_some_and(|c| c.is_finished()) {
                self.finish_commit(consumer)?;
            }
            if !self.schema_waits.is_empty() {
                self.resume_schema_waits(consumer, false);
            }
            if self.aligner.any_paused() {
                let labels = self.config.topics.labels.as_str();
                let actions = self
                    .aligner
                    .on_tick(Instant::now(), |p| labels_backlog(consumer, labels, p));
                for (partition, flow) in actions {
                    self.apply_flow(consumer, partition, flow);
                }
            }
            // Manual requests leave outputs uncommitted without consuming anything.
            if (since_commit > 0 || self.uncommitted)
                && (since_commit >= max_batch || last_commit.elapsed() >= interval)
            {
                self.commit(consumer)?;
                last_commit = Instant::now();
                since_commit = 0;
            }
            if last_status.elapsed() >= STATUS_EVERY {
                self.publish_status();
                last_status = Instant::now();
            }
        }
        Ok(())
    }

    fn handle(
        &mut self,
        consumer: &BaseConsumer<BusContext>,
        message: &BorrowedMessage<'_>,
    ) -> Result<(), ServiceError> {
        // A message of a newly assigned partition may come out of the very poll that ran the
        // rebalance callback: restore before processing it.
        if self.revocations.load(Ordering::Acquire) {
            self.apply_rebalance(consumer)?;
        }
        let topic = message.topic();
        let partition = message.partition();
        let offset = message.offset();
        // librdkafka drops what it had fetched for a partition it pauses; this guards the
        // rewind in case a message fetched before the pause still comes out.
        if !self.schema_waits.is_empty()
            && self
                .schema_waits
                .iter()
                .any(|(t, p, _)| t == topic && *p == partition)
        {
            return Ok(());
        }
        let payload = message.payload().unwrap_or(&[]);
        let decoder = if topic == self.config.topics.labels {
            &self.labels
        } else {
            &self.predictions
        };
        let decoded = match &mut self.registry {
            // Oversized and badly framed messages need no schema to be rejected.
            Some(registry)
                if decoder.format() == Format::Confluent
                    && payload.len() <= decoder.max_payload_bytes() =>
            {
                match codec::split_confluent(payload) {
                    Ok((id, _)) => match registry.lookup(id, decoder.kind()) {
                        Lookup::Resolved(Ok(writer)) => {
                            decoder.decode_confluent_with(payload, &writer, &mut self.buffers)
                        }
                        Lookup::Resolved(Err(error)) => Err(error),
                        Lookup::Unavailable { retry_at } => {
                            return self
                                .wait_for_schema(consumer, topic, partition, offset, retry_at);
                        }
                    },
                    Err(error) => Err(error),
                }
            }
            _ => decoder.decode_reusing(payload, &mut self.buffers),
        };
        if !self.held.is_empty() {
            self.held
                .retain(|(t, p, _)| !(t == topic && *p == partition));
        }
        self.summary.consumed += 1;
        let topic_index = usize::from(topic == self.config.topics.labels);
        match decoded {
            Ok(event) => {
                let engine = match self.engines.get_mut(&partition) {
                    Some(engine) => engine,
                    None => {
                        let engine = Engine::new(self.config.monitor.clone())
                            .map_err(|p| ServiceError::Settings(p.join("; ")))?;
                        self.engines.entry(partition).or_insert(engine)
                    }
                };
                let disposition = engine.process(
                    &event,
                    SourcePosition {
                        topic,
                        partition,
                        offset,
                        written_at: message.timestamp().to_millis(),
                    },
                );
                let flow = if topic_index == 1 {
                    self.aligner.on_label(partition, event.timestamp())
                } else {
                    let labels = self.config.topics.labels.as_str();
                    self.aligner
                        .on_prediction(partition, event.timestamp(), || {
                            labels_backlog(consumer, labels, partition)
                        })
                };
                if flow != Flow::Keep {
                    self.apply_flow(consumer, partition, flow);
                }
                let engine = self.engines.get_mut(&partition).ok_or_else(|| {
                    ServiceError::Settings("engine vanished while handling a message".into())
                })?;
                let outcome = match disposition {
                    Disposition::Accepted => Outcome::Accepted,
                    Disposition::Late => {
                        self.shared.metrics.late_events.inc();
                        Outcome::Late
                    }
                    Disposition::Label => Outcome::Label,
                    Disposition::TooFarAhead => Outcome::TooFarAhead,
                };
                self.outcome_counters[topic_index][outcome as usize].inc();
                let outputs = engine.drain_outputs();
                let evaluations = engine.drain_evaluations();
                for record in engine.drain_quality() {
                    for (metric, value) in record.quality.metrics() {
                        self.shared
                            .metrics
                            .model_quality
                            .with_label_values(&[
                                record.model_id.as_str(),
                                record.model_version.as_str(),
                                metric,
                            ])
                            .set(value);
                    }
                }
                for record in &evaluations {
                    self.shared.metrics.set_drift_score(
                        &record.model_id,
                        &record.model_version,
                        &record.subject,
                        &record.result.detector,
                        record.result.statistic,
                    );
                }
                self.buffers.recycle(event);
                for output in outputs {
                    self.publish(output)?;
                }
            }
            Err(error) => self.dead_letter(message, &error)?,
        }
        self.uncommitted = true;
        self.shared.handled.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Opens a transaction unless one is open (exactly-once mode).
    fn begin_transaction(&self) -> Result<(), ServiceError> {
        let Some(transaction) = &self.transaction else {
            return Ok(());
        };
        if transaction.open.load(Ordering::Acquire) {
            return Ok(());
        }
        self.producer
            .begin_transaction()
            .map_err(ServiceError::Fatal)?;
        transaction.open.store(true, Ordering::Release);
        Ok(())
    }

    fn send(
        &mut self,
        topic: &str,
        key: &[u8],
        payload: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
        partition: Option<i32>,
    ) -> Result<(), ServiceError> {
        if self.committing.is_some() {
            self.held_back.push(HeldRecord {
                topic: topic.to_owned(),
                key: key.to_vec(),
                payload: payload.map(<[u8]>::to_vec),
                headers,
                partition,
            });
            return Ok(());
        }
        self.begin_transaction()?;
        self.tracker.in_flight.fetch_add(1, Ordering::AcqRel);
        let mut record = BaseRecord::<[u8], [u8]>::to(topic).key(key);
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    // Back-pressure: let the producer drain, then retry the same record.
                    record = returned;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((error, _)) => {
                    self.tracker.in_flight.fetch_sub(1, Ordering::AcqRel);
                    return Err(ServiceError::Fatal(error));
                }
            }
        }
    }

    fn publish(&mut self, mut output: Output) -> Result<(), ServiceError> {
        let shared = self.shared.clone();
        let metrics = &shared.metrics;
        let (topic, key, payload) = match &mut output {
            Output::Alert(alert) => {
                alert.emitted_at = now_ms();
                metrics
                    .alerts
                    .with_label_values(&[&alert.model_id, &alert.detector, alert.state.as_str()])
                    .inc();
                let payload = match self.config.formats.outputs {
                    OutputFormat::Json => codec::json::alert_to_json(alert),
                    OutputFormat::Avro => codec::avro::alert_to_avro(alert)
                        .map_err(|e| ServiceError::Delivery(format!("cannot encode alert: {e}")))?,
                };
                (&self.config.topics.alerts, alert.model_id.clone(), payload)
            }
            Output::Retrain(request) => {
                metrics
                    .retrain_requests
                    .with_label_values(&[&request.model_id, request.trigger.as_str()])
                    .inc();
                let payload = match self.config.formats.outputs {
                    OutputFormat::Json => codec::json::retrain_to_json(request),
                    OutputFormat::Avro => codec::avro::retrain_to_avro(request).map_err(|e| {
                        ServiceError::Delivery(format!("cannot encode retrain request: {e}"))
                    })?,
                };
                (
                    &self.config.topics.retrain,
                    request.model_id.clone(),
                    payload,
                )
            }
        };
        self.send(topic, key.as_bytes(), Some(&payload), None, None)?;
        self.summary.outputs += 1;
        self.observer.on_output(&output);
        Ok(())
    }

    fn dead_letter(
        &mut self,
        message: &BorrowedMessage<'_>,
        error: &DecodeError,
    ) -> Result<(), ServiceError> {
        let reason = error.reason();
        let detail = error.to_string();
        warn!(
            message = "Failed to decode event; sent to the dead-letter topic.",
            error = %detail,
            reason,
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset()
        );
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let timestamp = message.timestamp().to_millis().unwrap_or(-1).to_string();
        let original = message.payload().unwrap_or(&[]);
        let limit = self.config.formats.dead_letter_max_bytes;
        // A dead letter larger than the DLQ topic accepts would fail to produce and stop the
        // service on every restart: the copy is cut, the source offset keeps the whole.
        let (kept, original_size) = if original.len() > limit {
            (&original[..limit], Some(original.len().to_string()))
        } else {
            (original, None)
        };
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: "driftwatch.reason",
                value: Some(reason),
            })
            .insert(Header {
                key: "driftwatch.error",
                value: Some(detail.as_str()),
            })
            .insert(Header {
                key: "driftwatch.source.topic",
                value: Some(message.topic()),
            })
            .insert(Header {
                key: "driftwatch.source.partition",
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: "driftwatch.source.offset",
                value: Some(offset.as_str()),
            })
            .insert(Header {
                key: "driftwatch.source.timestamp",
                value: Some(timestamp.as_str()),
            });
        if let Some(size) = &original_size {
            headers = headers.insert(Header {
                key: "driftwatch.truncated",
                value: Some(size.as_str()),
            });
        }
        // The original headers travel along, so a fixed message can be replayed as it was.
        if let Some(original) = message.headers() {
            for header in original.iter() {
                headers = headers.insert(Header {
                    key: header.key,
                    value: header.value,
                });
            }
        }
        let topic = self.config.topics.dlq.clone();
        self.send(
            &topic,
            message.key().unwrap_or(&[]),
            Some(kept),
            Some(headers),
            None,
        )?;
        let metrics = &self.shared.metrics;
        metrics.dlq.with_label_values(&[reason]).inc();
        let topic_index = usize::from(message.topic() == self.config.topics.labels);
        self.outcome_counters[topic_index][Outcome::DeadLetter as usize].inc();
        self.summary.dead_letters += 1;
        self.observer.on_dead_letter(reason);
        Ok(())
    }

    /// Produces the state records of every engine's changes since the last commit. Every
    /// engine's changes are taken before any is sent, so a record that fails to encode stops
    /// the service with nothing of this commit's state handed to the producer.
    fn write_state(&mut self) -> Result<(), ServiceError> {
        let mut partitions: Vec<i32> = self.engines.keys().copied().collect();
        partitions.sort_unstable();
        let group = self.config.kafka.group_id.clone();
        let topic = self.config.topics.state.clone();
        let metrics = self.shared.metrics.state_records.clone();
        let bytes = self.shared.metrics.state_bytes.clone();
        let mut all_changes = Vec::with_capacity(partitions.len());
        for partition in partitions {
            let Some(engine) = self.engines.get_mut(&partition) else {
                continue;
            };
            // A record that fails to encode stops the service before this commit: its
            // offsets stay uncommitted and a restart replays from the last good state.
            let changes = engine.take_state_changes().map_err(|error| {
                ServiceError::Changelog(format!("partition {partition}: {error}"))
            })?;
            all_changes.push((partition, changes));
        }
        for (partition, changes) in all_changes {
            let target = state_partition(partition, self.state_partitions);
            for change in changes {
                let key = change.key.record_key(&group, partition);
                bytes.inc_by(change.value.as_ref().map_or(0, Vec::len) as u64);
                metrics.inc();
                self.send(
                    &topic,
                    key.as_bytes(),
                    change.value.as_deref(),
                    None,
                    Some(target),
                )?;
            }
        }
        Ok(())
    }

    /// Commits what was handled since the last commit: its outputs, the state changes and
    /// the consumer's positions (every message before them has been handled).
    fn commit(&mut self, consumer: &BaseConsumer<BusContext>) -> Result<(), ServiceError> {
        // One transaction at a time: the previous commit ends (and its held-back records
        // open the next transaction) before this one starts.
        self.finish_commit(consumer)?;
        if !std::mem::take(&mut self.uncommitted) {
            if self.transaction.is_none() {
                flush(&self.producer, &self.tracker)?;
            }
            return Ok(());
        }
        self.write_state()?;
        if self.transaction.is_some() {
            return self.commit_transaction(consumer);
        }
        flush(&self.producer, &self.tracker)?;
        let positions = self.positions(consumer)?;
        if positions.count() == 0 {
            return Ok(());
        }
        match consumer.commit(&positions, CommitMode::Sync) {
            Ok(()) => debug!(message = "Offsets committed."),
            // Nothing new to commit (e.g. only already-committed partitions moved): fine.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            // Not fatal: the next commit carries newer offsets; a crash before it re-reads
            // (at-least-once). Rebalances in progress cause this routinely.
            Err(error) => {
                warn!(message = "Offset commit failed; will retry with the next batch.", %error)
            }
        }
        Ok(())
    }

    /// The offsets to commit: the consumer's position in each partition (every message before
    /// it has been handled), except for a partition whose message waits for its schema
    /// ([`Loop::held`]), which commits up to that message.
    fn positions(
        &self,
        consumer: &BaseConsumer<BusContext>,
    ) -> Result<TopicPartitionList, ServiceError> {
        let mut offsets = TopicPartitionList::new();
        if let Ok(positions) = consumer.position() {
            for element in positions.elements() {
                let held = self.held.iter().find_map(|(topic, partition, offset)| {
                    (topic == element.topic() && *partition == element.partition())
                        .then_some(*offset)
                });
                let offset = match (held, element.offset()) {
                    (Some(held), _) => held,
                    (None, Offset::Offset(offset)) => offset,
                    (None, _) => continue,
                };
                offsets
                    .add_partition_offset(
                        element.topic(),
                        element.partition(),
                        Offset::Offset(offset),
                    )
                    .map_err(ServiceError::Fatal)?;
            }
        }
        Ok(offsets)
    }

    /// Sends the positions to the open transaction and starts its commit on a thread of its
    /// own ([`Loop::finish_commit`] takes the outcome); on an abortable error, aborts and
    /// rewinds.
    fn commit_transaction(
        &mut self,
        consumer: &BaseConsumer<BusContext>,
    ) -> Result<(), ServiceError> {
        let Some(transaction) = self.transaction.clone() else {
            return Ok(());
        };
        if !transaction.open.load(Ordering::Acquire) {
            // Aborted by a revocation meanwhile: that work is redone by the partition's owner.
            return Ok(());
        }
        let offsets = self.positions(consumer)?;
        if offsets.count() > 0 {
            // No group metadata (the member is between generations): this transaction
            // cannot carry offsets, so it is aborted and redone (not fatal).
            let sent = consumer
                .group_metadata()
                .ok_or(KafkaError::Canceled)
                .and_then(|metadata| {
                    retrying(|| {
                        self.producer.send_offsets_to_transaction(
                            &offsets,
                            &metadata,
                            TRANSACTION_TIMEOUT,
                        )
                    })
                });
            if let Err(error) = sent {
                return self.settle(Err(error), consumer);
            }
        }
        // Only the commit leaves the loop's thread, not the offsets above: they depend on the
        // group's generation, and the rebalance callback waits for the commit thread, so a
        // thread retrying offsets through a rebalance would wait for the callback that waits
        // for it (seen in the scale-out test: both stuck until the retry deadline).
        transaction.committing.store(true, Ordering::Release);
        let producer = self.producer.clone();
        let shared = transaction.clone();
        let spawned = std::thread::Builder::new()
            .name("dw-commit".into())
            .spawn(move || {
                let result = retrying(|| producer.commit_transaction(TRANSACTION_TIMEOUT));
                if result.is_ok() {
                    shared.open.store(false, Ordering::Release);
                }
                shared.committing.store(false, Ordering::Release);
                result
            });
        match spawned {
            Ok(handle) => {
                self.committing = Some(handle);
                Ok(())
            }
            Err(error) => {
                // No thread to spare: commit here, as the loop did before it had one.
                warn!(message = "Cannot start a commit thread; committing inline.", %error);
                let result = retrying(|| self.producer.commit_transaction(TRANSACTION_TIMEOUT));
                if result.is_ok() {
                    transaction.open.store(false, Ordering::Release);
                }
                transaction.committing.store(false, Ordering::Release);
                self.settle(result, consumer)
            }
        }
    }

    /// Waits for the commit in flight, if any, and acts on its outcome.
    fn finish_commit(&mut self, consumer: &BaseConsumer<BusContext>) -> Result<(), ServiceError> {
        let Some(handle) = self.committing.take() else {
            return Ok(());
        };
        // A commit thread that panicked committed nothing we can vouch for: redo its work.
        let result = handle.join().unwrap_or(Err(KafkaError::Canceled));
        self.settle(result, consumer)
    }

    /// Acts on a commit's outcome: counts it and lets the held-back records open the next
    /// transaction; stops on a fatal error; aborts and rewinds on any other.
    fn settle(
        &mut self,
        result: Result<(), KafkaError>,
        consumer: &BaseConsumer<BusContext>,
    ) -> Result<(), ServiceError> {
        match result {
            Ok(()) => {
                self.shared
                    .metrics
                    .transactions
                    .with_label_values(&["committed"])
                    .inc();
                debug!(message = "Transaction committed.");
                for record in std::mem::take(&mut self.held_back) {
                    self.send(
                        &record.topic,
                        &record.key,
                        record.payload.as_deref(),
                        record.headers,
                        record.partition,
                    )?;
                }
                Ok(())
            }
            Err(error) if is_fatal(&error) => {
                error!(message = "Fatal transaction error: stopping (nothing uncommitted is visible).", %error);
                if let Some(transaction) = &self.transaction {
                    transaction.open.store(false, Ordering::Release);
                }
                Err(ServiceError::Fatal(error))
            }
            Err(error) => {
                warn!(message = "Transaction failed; aborting and redoing its work.", %error);
                // What was handled since is redone after the rewind, outputs included.
                self.held_back.clear();
                self.rewind(consumer)
            }
        }
    }

    /// Aborts the open transaction and returns to the last commit: engines restored from the
    /// changelog, positions reset to the committed offsets. The same inputs then give the same
    /// outputs (deterministic ids), committed once.
    fn rewind(&mut self, consumer: &BaseConsumer<BusContext>) -> Result<(), ServiceError> {
        if let Some(transaction) = &self.transaction {
            if let Err(error) = retrying(|| self.producer.abort_transaction(TRANSACTION_TIMEOUT)) {
                return Err(ServiceError::Fatal(error));
            }
            transaction.open.store(false, Ordering::Release);
            self.shared
                .metrics
                .transactions
                .with_label_values(&["aborted"])
                .inc();
        }
        self.resume_schema_waits(consumer, true);
        for partition in self.aligner.reset() {
            self.apply_flow(consumer, partition, Flow::Resume);
        }
        // Every partition goes back to its committed offset, at or before any held message.
        self.held.clear();
        let assignment = consumer.assignment().map_err(ServiceError::Fatal)?;
        let partitions = self.input_partitions(&assignment);
        self.engines = self.restore(&partitions)?;
        let committed = consumer
            .committed(TRANSACTION_TIMEOUT)
            .map_err(ServiceError::Fatal)?;
        for element in committed.elements() {
            let offset = match element.offset() {
                Offset::Offset(offset) => Offset::Offset(offset),
                // Nothing committed yet: auto.offset.reset = earliest.
                _ => Offset::Beginning,
            };
            if let Err(error) = consumer.seek(
                element.topic(),
                element.partition(),
                offset,
                TRANSACTION_TIMEOUT,
            ) {
                return Err(ServiceError::Fatal(error));
            }
        }
        self.uncommitted = false;
        info!(message = "Rewound to the last commit.", partitions = ?partitions);
        Ok(())
    }

    /// Partition numbers of the input topics in `list` (predictions and labels partitions
    /// share numbers and engines).
    fn input_partitions(&self, list: &TopicPartitionList) -> Vec<i32> {
        let mut partitions: Vec<i32> = list
            .elements()
            .iter()
            .filter(|e| {
                e.topic() == self.config.topics.predictions
                    || e.topic() == self.config.topics.labels
            })
            .map(|e| e.partition())
            .collect();
        partitions.sort_unstable();
        partitions.dedup();
        partitions
    }

    /// Engines of `partitions` from the changelog, timed.
    fn restore(&self, partitions: &[i32]) -> Result<HashMap<i32, Engine>, ServiceError> {
        let started = Instant::now();
        let engines = changelog::restore_engines(self.config, self.state_partitions, partitions)?;
        self.shared
            .metrics
            .state_restore_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(engines)
    }

    /// Carries out manual retrain requests: the engine that saw the model most recently
    /// issues it, the output is handed to the producer, then the requester gets the answer.
    fn handle_commands(&mut self) -> Result<(), ServiceError> {
        self.shared.commands_waiting.store(false, Ordering::Release);
        let commands = match self.shared.commands.lock() {
            Ok(mut commands) => std::mem::take(&mut *commands),
            Err(_) => return Ok(()),
        };
        for command in commands {
            let engine = self
                .engines
                .values_mut()
                .filter(|engine| engine.has_model(&command.model_id))
                .max_by_key(|engine| engine.watermark());
            let (reply, outputs) = match engine {
                None => (ManualReply::UnknownModel, Vec::new()),
                Some(engine) => {
                    let reply = match engine.manual_retrain(
                        &command.model_id,
                        &command.reason,
                        command.force,
                    ) {
                        Some(ManualOutcome::Requested(request)) => ManualReply::Requested(request),
                        Some(ManualOutcome::Suppressed { until }) => {
                            ManualReply::Suppressed { until }
                        }
                        None => ManualReply::UnknownModel,
                    };
                    (reply, engine.drain_outputs())
                }
            };
            if !outputs.is_empty() {
                self.uncommitted = true;
            }
            for output in outputs {
                self.publish(output)?;
            }
            info!(
                message = "Manual retrain request handled.",
                model = %command.model_id,
                reason = %command.reason,
                outcome = ?reply
            );
            // The requester may have given up (timeout): nothing to do then.
            let _ = command.reply.send(reply);
        }
        Ok(())
    }

    /// Pauses or resumes the predictions partition `partition` (event-time alignment).
    /// Holds back the message at `offset`, whose schema the registry could not give: pauses
    /// its partition and rewinds it to the message, to be read again after `retry_at`
    /// ([`Loop::resume_schema_waits`]). Fails if the pause or the rewind fails, since going
    /// on without either would skip the message; it is held first, so that the commit the
    /// service makes on its way out stops before it.
    fn wait_for_schema(
        &mut self,
        consumer: &BaseConsumer<BusContext>,
        topic: &str,
        partition: i32,
        offset: i64,
        retry_at: Instant,
    ) -> Result<(), ServiceError> {
        if !self
            .held
            .iter()
            .any(|(t, p, _)| t == topic && *p == partition)
        {
            self.held.push((topic.to_owned(), partition, offset));
        }
        let mut list = TopicPartitionList::new();
        list.add_partition(topic, partition);
        consumer.pause(&list).map_err(ServiceError::Fatal)?;
        consumer
            .seek(topic, partition, Offset::Offset(offset), SEEK_TIMEOUT)
            .map_err(ServiceError::Fatal)?;
        self.schema_waits
            .push((topic.to_owned(), partition, retry_at));
        debug!(
            message = "Message held back until the schema registry answers.",
            topic, partition, offset
        );
        Ok(())
    }

    /// Resumes the partitions whose wait for the registry is over (all of them with
    /// `everything`: a rebalance or a rewind). One that alignment keeps paused stays so: its
    /// resumption will read the held message again.
    fn resume_schema_waits(&mut self, consumer: &BaseConsumer<BusContext>, everything: bool) {
        let now = Instant::now();
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.schema_waits)
            .into_iter()
            .partition(|(_, _, retry_at)| everything || *retry_at <= now);
        self.schema_waits = waiting;
        for (topic, partition, _) in due {
            if topic == self.config.topics.predictions && self.aligner.is_paused(partition) {
                continue;
            }
            let mut list = TopicPartitionList::new();
            list.add_partition(&topic, partition);
            if let Err(error) = consumer.resume(&list) {
                warn!(message = "Resume failed.", topic, partition, %error);
            }
        }
    }

    fn apply_flow(&self, consumer: &BaseConsumer<BusContext>, partition: i32, flow: Flow) {
        let predictions = &self.config.topics.predictions;
        if flow == Flow::Resume
            && self
                .schema_waits
                .iter()
                .any(|(t, p, _)| t == predictions && *p == partition)
        {
            // Still waiting for the registry: resumed when that wait ends.
            return;
        }
        let mut list = TopicPartitionList::new();
        list.add_partition(predictions, partition);
        let result = match flow {
            Flow::Keep => return,
            Flow::Pause => consumer.pause(&list),
            Flow::Resume => consumer.resume(&list),
        };
        match result {
            Ok(()) => debug!(
                message = "Predictions partition flow changed to align with its labels.",
                partition,
                flow = ?flow
            ),
            Err(error) => warn!(message = "Pause/resume failed.", partition, %error),
        }
    }

    /// Drops the engines of revoked partitions and restores those of assigned ones.
    fn apply_rebalance(&mut self, consumer: &BaseConsumer<BusContext>) -> Result<(), ServiceError> {
        if !self.revocations.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        // librdkafka keeps partitions paused across a rebalance: resume what alignment and
        // the registry's waits paused (a held message is read again at once).
        self.resume_schema_waits(consumer, true);
        for partition in self.aligner.reset() {
            self.apply_flow(consumer, partition, Flow::Resume);
        }
        let (revoked, assigned) = match self.pending.lock() {
            Ok(mut pending) => (
                std::mem::take(&mut pending.revoked),
                pending.assigned.take(),
            ),
            Err(_) => return Ok(()),
        };
        if !revoked.is_empty() {
            // The callback waited for a commit in flight, then aborted (or flushed) the work
            // since the last commit; the changelog holds the state that goes with the
            // committed offsets. A failed commit was aborted with the rest: only a fatal
            // error is left to act on.
            if let Some(handle) = self.committing.take() {
                match handle.join() {
                    Ok(Ok(())) => {
                        self.shared
                            .metrics
                            .transactions
                            .with_label_values(&["committed"])
                            .inc();
                    }
                    Ok(Err(error)) if is_fatal(&error) => return Err(ServiceError::Fatal(error)),
                    _ => {}
                }
            }
            self.held_back.clear();
            for (topic, partition) in &revoked {
                self.engines.remove(partition);
                self.held
                    .retain(|(t, p, _)| !(t == topic && p == partition));
            }
            self.uncommitted = false;
        }
        let Some(assigned) = assigned else {
            return Ok(());
        };
        let mut list = TopicPartitionList::new();
        for (topic, partition) in &assigned {
            list.add_partition(topic, *partition);
        }
        let partitions: Vec<i32> = self
            .input_partitions(&list)
            .into_iter()
            .filter(|p| !self.engines.contains_key(p))
            .collect();
        let restored = self.restore(&partitions)?;
        self.engines.extend(restored);
        Ok(())
    }

    /// Adds what the engines' label joins counted since the last export. Engines of revoked
    /// partitions disappear with their counts, so a total that went down restarts the
    /// baseline instead of going negative.
    fn export_join_counters(&mut self) {
        let mut totals = [0_u64; 6];
        let mut waiting = 0_usize;
        for engine in self.engines.values() {
            let counters = engine.counters();
            let join = counters.join;
            for (total, value) in totals.iter_mut().zip([
                join.joined,
                counters.late_outcomes,
                join.expired_predictions,
                join.expired_labels,
                join.evicted,
                join.duplicate_labels + join.duplicate_predictions,
            ]) {
                *total += value;
            }
            waiting += engine.join_waiting();
        }
        let metrics = &self.shared.metrics;
        for (i, outcome) in [
            "joined",
            "late",
            "expired_prediction",
            "expired_label",
            "evicted",
            "duplicate",
        ]
        .into_iter()
        .enumerate()
        {
            let delta = totals[i].saturating_sub(self.join_exported[i]);
            if delta > 0 {
                metrics
                    .label_join
                    .with_label_values(&[outcome])
                    .inc_by(delta);
            }
        }
        self.join_exported = totals;
        metrics.label_join_waiting.set(waiting as i64);
    }

    fn publish_status(&mut self) {
        let mut status: Vec<ModelStatus> = self.engines.values().flat_map(Engine::status).collect();
        status
            .sort_by(|a, b| (&a.model_id, &a.model_version).cmp(&(&b.model_id, &b.model_version)));
        self.shared.metrics.models.set(status.len() as i64);
        let mut exported = HashSet::new();
        for model in &status {
            let subjects = model
                .features
                .iter()
                .chain(std::iter::once(&model.prediction))
                .map(|series| (series.name.as_str(), &series.detectors))
                .chain([
                    (PERFORMANCE_SUBJECT, &model.performance_detectors),
                    (FAIRNESS_SUBJECT, &model.fairness_detectors),
                ]);
            for (subject, detectors) in subjects {
                for detector in detectors.iter() {
                    self.shared.metrics.set_alert_firing(
                        &model.model_id,
                        &model.model_version,
                        subject,
                        &detector.detector,
                        detector.firing,
                    );
                    exported.insert([
                        model.model_id.clone(),
                        model.model_version.clone(),
                        subject.to_owned(),
                        detector.detector.clone(),
                    ]);
                }
            }
        }
        // Models whose partition moved to another instance: their new owner reports them,
        // a stale FIRING here would keep an alert up after it resolved there.
        for gone in self.firing_series.difference(&exported) {
            let labels: Vec<&str> = gone.iter().map(String::as_str).collect();
            let _ = self
                .shared
                .metrics
                .alert_firing
                .remove_label_values(&labels);
        }
        self.firing_series = exported;
        self.export_join_counters();
        if let Ok(mut shared) = self.shared.status.write() {
            *shared = status;
        }
    }
}
