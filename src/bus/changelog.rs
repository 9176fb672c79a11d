//! The state changelog on Kafka (DESIGN §6): the compacted topic `topics.state`, its
//! creation, and the restore of partitions' engines from it.
//!
//! Layout: the state of input partition `p` goes to partition `p mod n` of the state topic
//! (`n` its partition count; created equal to the predictions topic's, so each state
//! partition belongs to one input partition and a restore reads only its own). Keys and
//! values: [`crate::monitor::state`].
//!
//! Restore reads the state partitions of the assigned input partitions from the beginning to
//! their end with `read_committed`: the end is the last stable offset, so records of a
//! transaction that a crashed instance left open are never read, and the restore waits for
//! nothing but the broker.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{info, warn};

use crate::config::Config;
use crate::monitor::engine::Engine;
use crate::monitor::state::StateKey;

use super::service::ServiceError;
use super::settings::consumer_settings;

/// Largest state record the created topic accepts (`max.message.bytes`), and the producer's
/// `message.max.bytes`: one model version's state (references, windows, detectors) must fit.
pub const MAX_STATE_RECORD_BYTES: usize = 16 << 20;

/// Timeout of metadata and admin requests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The state topic's partition of input partition `partition`.
pub fn state_partition(partition: i32, state_partitions: i32) -> i32 {
    partition.rem_euclid(state_partitions.max(1))
}

/// A consumer outside the group (it only `assign`s) with the service's connection settings.
fn reader(config: &Config) -> Result<BaseConsumer, ServiceError> {
    let mut client = ClientConfig::new();
    for (key, value) in consumer_settings(config) {
        client.set(key, value);
    }
    client
        .set("enable.partition.eof", "true")
        .set("statistics.interval.ms", "0")
        // State records can be large: fetch whole ones.
        .set(
            "max.partition.fetch.bytes",
            MAX_STATE_RECORD_BYTES.to_string(),
        )
        .create()
        .map_err(ServiceError::Setup)
}

/// Partition count of `topic`, or `None` when it does not exist.
fn partition_count(consumer: &BaseConsumer, topic: &str) -> Result<Option<i32>, ServiceError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(ServiceError::Setup)?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len() as i32))
}

/// Makes sure the state topic exists (creating it compacted, with as many partitions as the
/// predictions topic) and returns its partition count.
///
/// # Errors
/// Metadata or topic creation failed.
pub fn ensure_state_topic(config: &Config) -> Result<i32, ServiceError> {
    let consumer = reader(config)?;
    let topic = config.topics.state.as_str();
    if let Some(count) = partition_count(&consumer, topic)? {
        return Ok(count);
    }
    let partitions = partition_count(&consumer, &config.topics.predictions)?.unwrap_or(1);
    let mut admin_config = ClientConfig::new();
    for (key, value) in consumer_settings(config) {
        // Connection and security settings only; the admin client rejects consumer keys
        // with a warning, harmlessly, but keep its log clean.
        if key == "bootstrap.servers"
            || key.starts_with("security.")
            || key.starts_with("sasl.")
            || key.starts_with("ssl.")
            || key == "client.id"
        {
            admin_config.set(key, value);
        }
    }
    let admin: AdminClient<DefaultClientContext> =
        admin_config.create().map_err(ServiceError::Setup)?;
    let max_bytes = MAX_STATE_RECORD_BYTES.to_string();
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1))
        .set("cleanup.policy", "compact")
        .set("max.message.bytes", &max_bytes);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ServiceError::Changelog(format!("cannot start a runtime: {e}")))?;
    let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let results = runtime
        .block_on(admin.create_topics([&new], &options))
        .map_err(ServiceError::Setup)?;
    for result in results {
        match result {
            Ok(_) => info!(
                message = "Created the state topic.",
                topic,
                partitions,
                cleanup_policy = "compact"
            ),
            // Another instance created it meanwhile: fine.
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(ServiceError::Changelog(format!(
                    "cannot create the state topic {topic}: {code}"
                )))
            }
        }
    }
    // Metadata may lag the creation by a moment.
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    loop {
        if let Some(count) = partition_count(&consumer, topic)? {
            return Ok(count);
        }
        if Instant::now() > deadline {
            return Err(ServiceError::Changelog(format!(
                "the state topic {topic} does not appear in the metadata"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The latest state records of input partitions `partitions`, read from the state topic.
///
/// # Errors
/// Kafka errors, or the end was not reached within `delivery.restore_timeout_ms`.
pub fn read_state(
    config: &Config,
    state_partitions: i32,
    partitions: &[i32],
) -> Result<HashMap<i32, BTreeMap<StateKey, Vec<u8>>>, ServiceError> {
    let mut records: HashMap<i32, BTreeMap<StateKey, Vec<u8>>> = HashMap::new();
    if partitions.is_empty() {
        return Ok(records);
    }
    let wanted: HashSet<i32> = partitions.iter().copied().collect();
    let sources: HashSet<i32> = partitions
        .iter()
        .map(|&p| state_partition(p, state_partitions))
        .collect();
    let consumer = reader(config)?;
    let mut assignment = TopicPartitionList::new();
    for &source in &sources {
        assignment
            .add_partition_offset(&config.topics.state, source, Offset::Beginning)
            .map_err(ServiceError::Setup)?;
    }
    consumer.assign(&assignment).map_err(ServiceError::Setup)?;
    let group = config.kafka.group_id.as_str();
    let deadline = Instant::now() + Duration::from_millis(config.delivery.restore_timeout_ms);
    let mut at_end: HashSet<i32> = HashSet::new();
    let mut skipped = 0_u64;
    while at_end.len() < sources.len() {
        if Instant::now() > deadline {
            return Err(ServiceError::Changelog(format!(
                "restoring from {} took longer than delivery.restore_timeout_ms ({} ms)",
                config.topics.state, config.delivery.restore_timeout_ms
            )));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                at_end.insert(partition);
            }
            Some(Err(error)) => {
                warn!(message = "Error while restoring state; retrying.", %error);
            }
            Some(Ok(message)) => {
                let Some(key) = message.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                    skipped += 1;
                    continue;
                };
                let Ok((owner, partition, part)) = StateKey::parse(key) else {
                    skipped += 1;
                    continue;
                };
                if owner != group || !wanted.contains(&partition) {
                    continue;
                }
                let state = records.entry(partition).or_default();
                match message.payload() {
                    Some(value) => state.insert(part, value.to_vec()),
                    None => state.remove(&part),
                };
            }
        }
    }
    if skipped > 0 {
        warn!(
            message = "Ignored records of the state topic that are not driftwatch state.",
            skipped
        );
    }
    Ok(records)
}

/// Engines of input partitions `partitions` restored from the state topic (partitions
/// without state are absent: they start fresh).
///
/// # Errors
/// See [`read_state`]; a record that cannot be read stops the service
/// ([`ServiceError::Changelog`], with the reason): silently starting from scratch would lose
/// the windows and re-alert.
pub fn restore_engines(
    config: &Config,
    state_partitions: i32,
    partitions: &[i32],
) -> Result<HashMap<i32, Engine>, ServiceError> {
    let started = Instant::now();
    let records = read_state(config, state_partitions, partitions)?;
    let mut engines = HashMap::new();
    let mut bytes = 0_usize;
    for (partition, state) in records {
        bytes += state.values().map(Vec::len).sum::<usize>();
        let restored = Engine::restore(
            config.monitor.clone(),
            state.iter().map(|(k, v)| (k, v.as_slice())),
        )
        .map_err(|e| {
            ServiceError::Changelog(format!(
                "cannot restore partition {partition} from {}: {e}",
                config.topics.state
            ))
        })?;
        if let Some(engine) = restored {
            engines.insert(partition, engine);
        }
    }
    info!(
        message = "State restored.",
        partitions = ?partitions,
        restored = engines.len(),
        bytes,
        seconds = started.elapsed().as_secs_f64()
    );
    Ok(engines)
}
