//! Exactly-once under failure, on the real broker (issue: exactly-once outputs and state that
//! survive crashes and rebalances).
//!
//! Each scenario produces a stream with drifts at known points (plus a few malformed
//! messages), runs the real `driftwatch run` binary through some failure, lets it finish, and
//! compares what a `read_committed` consumer sees with an uninterrupted run of the same
//! engines over the same input: the same alert ids, retrain request ids and dead letters,
//! each exactly once, and the same final state in `topics.state`.
//!
//! Sizes are kept CI-friendly; `DRIFTWATCH_CHAOS_EVENTS` (events in all) and
//! `DRIFTWATCH_CHAOS_KILLS` make a larger run (results in BENCHMARKS.md).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{bootstrap, end_offsets, stream, test_config, unique, RunningBinary};
use driftwatch::codec::{encode_prediction_json, Decoder, EventKind, Format};
use driftwatch::config::Config;
use driftwatch::monitor::engine::Engine;
use driftwatch::monitor::join::{
    JoinBatch, JoinEntry, JoinMeta, JoinRecord, JoinRemovals, LabelJoin,
};
use driftwatch::monitor::model::{ModelMonitor, SeriesReferences, SourcePosition, WarmupChunk};
use driftwatch::monitor::output::Output;
use driftwatch::monitor::state::{self, StateKey};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

/// The scenarios share two cores: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const PARTITIONS: i32 = 4;

/// Monitor settings of every run (and of the in-process reference).
const MONITOR_TOML: &str = "[monitor.reference]\nwarmup_events = 3000\n\
    [monitor.windows]\npanes = 3\nallowed_lateness_ms = 1000\n";

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One record of a topic, as read back.
#[derive(Debug, Clone)]
struct Read {
    partition: i32,
    offset: i64,
    /// The record's timestamp (the producer's create time).
    timestamp: Option<i64>,
    payload: Option<Vec<u8>>,
    key: Vec<u8>,
    headers: BTreeMap<String, String>,
}

/// Every committed record of `topic`, up to its end (the last stable offset).
fn read_to_end(topic: &str) -> Vec<Read> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("chaos-reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .set("max.partition.fetch.bytes", "20000000")
        .create()
        .expect("reader");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = metadata.topics()[0].partitions().len() as i32;
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&list).expect("assign");
    let mut done = HashSet::new();
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while done.len() < partitions as usize {
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => records.push(Read {
                partition: message.partition(),
                offset: message.offset(),
                timestamp: message.timestamp().to_millis(),
                payload: message.payload().map(<[u8]>::to_vec),
                key: message.key().unwrap_or(&[]).to_vec(),
                headers: message
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_owned(),
                                    String::from_utf8_lossy(h.value.unwrap_or(&[])).into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
            Some(Err(KafkaError::PartitionEOF(p))) => {
                done.insert(p);
            }
            _ => {}
        }
    }
    records
}

/// A scenario's topics, settings and input.
struct Scenario {
    config: Config,
    monitor: Config,
    /// Events in all.
    events: usize,
}

impl Scenario {
    /// Fresh topics; `events` predictions over four models, one per partition: models 0 and 2
    /// drift at 60 % of their stream, 1 and 3 never; one malformed message per 25,000. The
    /// whole input is produced before this returns.
    fn new(name: &str, events: usize) -> Self {
        let scenario = Self::unproduced(name, events);
        scenario.produce(0.0..1.0);
        scenario
    }

    /// The scenario of [`Scenario::new`] with nothing produced yet: [`Scenario::produce`]
    /// writes it in parts.
    fn unproduced(name: &str, events: usize) -> Self {
        let per_model = events / PARTITIONS as usize;
        Self {
            config: test_config(name, PARTITIONS),
            monitor: toml::from_str(MONITOR_TOML).expect("monitor settings"),
            events: per_model * PARTITIONS as usize,
        }
    }

    /// Produces the part `share` (a range of fractions of each model's stream) of the input:
    /// parts produced in order make up exactly the input of [`Scenario::new`].
    fn produce(&self, share: std::ops::Range<f64>) {
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap())
            .set("enable.idempotence", "true")
            .set("linger.ms", "20")
            .create()
            .expect("producer");
        let per_model = self.events / PARTITIONS as usize;
        let at = |fraction: f64| ((per_model as f64 * fraction).round() as usize).min(per_model);
        let part = at(share.start)..at(share.end);
        for model in 0..PARTITIONS {
            let name = format!("model-{model}");
            let drift_at = if model % 2 == 0 {
                per_model * 6 / 10
            } else {
                usize::MAX
            };
            let events = stream(&name, per_model, drift_at, 1_000 + model as u64);
            for (i, event) in events.iter().enumerate().take(part.end).skip(part.start) {
                let payload = if i % 25_000 == 12_345 {
                    b"{\"not\": \"an event\"".to_vec()
                } else {
                    encode_prediction_json(event)
                };
                let mut record = BaseRecord::to(&self.config.topics.predictions)
                    .key(name.as_bytes())
                    .payload(&payload)
                    .partition(model);
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((_, returned)) => {
                            record = returned;
                            producer.poll(Duration::from_millis(5));
                        }
                    }
                }
            }
        }
        producer.flush(Duration::from_secs(60)).expect("flush");
    }

    /// Starts `driftwatch run` with transactional id `instance`.
    fn start(&self, instance: &str) -> RunningBinary {
        RunningBinary::start(
            &self.config,
            &format!(
                "{MONITOR_TOML}[delivery]\ntransactional_id = \"{}-{instance}\"\n",
                self.config.kafka.group_id
            ),
        )
    }

    /// Whether the group has committed every input offset (offsets inside a transaction
    /// that is still open count: `read_uncommitted` asks the coordinator not to wait for
    /// them to become stable, which it otherwise does until the transaction ends).
    fn finished(&self) -> bool {
        let ends = end_offsets(&self.config.topics.predictions, PARTITIONS);
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap())
            .set("group.id", &self.config.kafka.group_id)
            .set("isolation.level", "read_uncommitted")
            .create()
            .expect("offset reader");
        let mut list = TopicPartitionList::new();
        for partition in 0..PARTITIONS {
            list.add_partition(&self.config.topics.predictions, partition);
        }
        let Ok(committed) = consumer.committed_offsets(list, Duration::from_secs(30)) else {
            return false;
        };
        (0..PARTITIONS).all(|p| {
            match committed
                .find_partition(&self.config.topics.predictions, p)
                .map(|e| e.offset())
            {
                Some(Offset::Offset(offset)) => offset >= ends[p as usize],
                _ => false,
            }
        })
    }

    /// Waits until the group has committed every input offset.
    fn wait_finished(&self, instances: &mut [&mut RunningBinary], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.finished() {
            for instance in instances.iter_mut() {
                assert!(
                    instance.child.try_wait().unwrap().is_none(),
                    "an instance exited:\n{}",
                    instance.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the input was not finished in time"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Compares the committed outputs and the final state with an uninterrupted run.
    fn check_exactly_once(&self) {
        let input = read_to_end(&self.config.topics.predictions);
        assert_eq!(input.len(), self.events);
        let expected = Expected::compute(&self.monitor, &self.config.topics.predictions, &input);
        assert!(
            expected.alerts.len() >= 4 && !expected.requests.is_empty(),
            "the input must exercise alerts and retrain requests: {} alerts, {} requests",
            expected.alerts.len(),
            expected.requests.len()
        );

        let alerts = ids(&read_to_end(&self.config.topics.alerts), "alert_id");
        assert_exactly(&alerts, &expected.alerts, "alert ids");
        let requests = ids(&read_to_end(&self.config.topics.retrain), "request_id");
        assert_exactly(&requests, &expected.requests, "retrain request ids");
        let dead: Vec<String> = read_to_end(&self.config.topics.dlq)
            .iter()
            .map(|r| {
                format!(
                    "{}@{}",
                    r.headers["driftwatch.source.partition"], r.headers["driftwatch.source.offset"]
                )
            })
            .collect();
        assert_exactly(&dead, &expected.dead_letters, "dead letters");

        // Final state: the latest committed record of each key.
        let mut state: BTreeMap<(i32, StateKey), Vec<u8>> = BTreeMap::new();
        for record in read_to_end(&self.config.topics.state) {
            let key = String::from_utf8(record.key).expect("state key");
            let (group, partition, part) = StateKey::parse(&key).expect("state key layout");
            assert_eq!(group, self.config.kafka.group_id);
            match record.payload {
                Some(value) => state.insert((partition, part), value),
                None => state.remove(&(partition, part)),
            };
        }
        let (mut models, mut references, mut engines, mut waiting) = (0, 0, 0, 0_usize);
        for ((partition, key), value) in &expected.state {
            // Join batches and warm-up chunks follow the commits, which differ between the
            // runs: both are compared as a whole below.
            if matches!(key, StateKey::Join(_) | StateKey::Warmup { .. }) {
                continue;
            }
            let actual = state
                .get(&(*partition, key.clone()))
                .unwrap_or_else(|| panic!("no state for partition {partition} {key:?}"));
            match key {
                StateKey::Model { .. } => {
                    // The warm-up chunk count follows the commits, like the chunks: the
                    // samples are compared as a whole below.
                    let (want, _): (ModelMonitor, u32) = state::decode(value).unwrap();
                    let (got, _): (ModelMonitor, u32) = state::decode(actual).unwrap();
                    assert!(
                        want == got,
                        "state of partition {partition} {key:?} differs"
                    );
                    models += 1;
                }
                StateKey::References { .. } => {
                    let want: SeriesReferences = state::decode(value).unwrap();
                    let got: SeriesReferences = state::decode(actual).unwrap();
                    assert!(
                        want == got,
                        "references of partition {partition} {key:?} differ"
                    );
                    references += 1;
                }
                StateKey::Engine => {
                    assert_eq!(value, actual, "state of partition {partition} {key:?}");
                    engines += 1;
                }
                StateKey::Join(_) | StateKey::Warmup { .. } => {}
            }
        }
        for partition in 0..PARTITIONS {
            let want = waiting_entries(&expected.state, partition);
            let got = waiting_entries(&state, partition);
            assert!(want == got, "label join of partition {partition} differs");
            waiting += got.len();
            assert!(
                warmup_samples(&expected.state, partition) == warmup_samples(&state, partition),
                "warm-up samples of partition {partition} differ"
            );
        }
        assert_eq!(models, PARTITIONS);
        assert_eq!(references, PARTITIONS);
        assert_eq!(engines, PARTITIONS);
        // No labels here: every prediction still waits in the label join.
        assert_eq!(waiting, self.events - expected.dead_letters.len());
        let stray: Vec<_> = state
            .keys()
            .filter(|k| {
                !matches!(k.1, StateKey::Join(_) | StateKey::Warmup { .. })
                    && !expected.state.contains_key(k)
            })
            .collect();
        assert!(stray.is_empty(), "state records of nothing: {stray:?}");
    }
}

/// The label join's waiting entries of `partition` in a compacted state log.
fn waiting_entries(
    log: &BTreeMap<(i32, StateKey), Vec<u8>>,
    partition: i32,
) -> Vec<(u64, JoinEntry)> {
    let (mut batches, mut removals) = (Vec::new(), Vec::new());
    for ((p, key), value) in log {
        match key {
            StateKey::Join(JoinRecord::Batch(first)) if *p == partition => {
                batches.push((*first, state::decode::<JoinBatch>(value).unwrap()));
            }
            StateKey::Join(JoinRecord::Removals(sequence)) if *p == partition => {
                removals.push((*sequence, state::decode::<JoinRemovals>(value).unwrap()));
            }
            _ => {}
        }
    }
    LabelJoin::restore(i64::MAX, usize::MAX, JoinMeta::default(), batches, removals).entries()
}

/// The warm-up numbers and category counts of each monitor of `partition` in a compacted
/// state log, its chunks concatenated in order: how they were cut depends on when the
/// commits fell.
fn warmup_samples(
    log: &BTreeMap<(i32, StateKey), Vec<u8>>,
    partition: i32,
) -> BTreeMap<(String, String), WarmupChunk> {
    let mut samples: BTreeMap<(String, String), WarmupChunk> = BTreeMap::new();
    // BTreeMap order is chunk order within a monitor.
    for ((p, key), value) in log {
        let StateKey::Warmup {
            model_id,
            model_version,
            ..
        } = key
        else {
            continue;
        };
        if *p != partition {
            continue;
        }
        let sample = samples
            .entry((model_id.clone(), model_version.clone()))
            .or_default();
        let chunk = state::decode::<WarmupChunk>(value).unwrap();
        for (id, numbers) in chunk.series {
            match sample.series.iter_mut().find(|(known, _)| *known == id) {
                Some((_, all)) => all.extend(numbers),
                None => sample.series.push((id, numbers)),
            }
        }
        for (id, counts) in chunk.categories {
            let all = match sample
                .categories
                .iter_mut()
                .position(|(known, _)| *known == id)
            {
                Some(at) => &mut sample.categories[at].1,
                None => {
                    sample.categories.push((id, Vec::new()));
                    &mut sample.categories.last_mut().unwrap().1
                }
            };
            for (category, count) in counts {
                match all.iter_mut().find(|(known, _)| *known == category) {
                    Some((_, total)) => *total += count,
                    None => all.push((category, count)),
                }
            }
        }
    }
    // In a canonical order: chunks list series by slot and categories by name, but which
    // chunk first holds one differs between the runs.
    for sample in samples.values_mut() {
        sample.series.sort_by_key(|(id, _)| format!("{id:?}"));
        sample.categories.sort_by_key(|(id, _)| format!("{id:?}"));
        for (_, counts) in &mut sample.categories {
            counts.sort();
        }
    }
    samples
}

/// What an uninterrupted run gives.
struct Expected {
    alerts: Vec<String>,
    requests: Vec<String>,
    dead_letters: Vec<String>,
    state: BTreeMap<(i32, StateKey), Vec<u8>>,
}

impl Expected {
    /// One engine per partition over its records in offset order, as the service runs them.
    fn compute(monitor: &Config, topic: &str, input: &[Read]) -> Self {
        let decoder = Decoder::new(Format::Json, EventKind::Prediction)
            .with_max_payload_bytes(monitor.formats.max_message_bytes);
        let mut by_partition: BTreeMap<i32, Vec<&Read>> = BTreeMap::new();
        for record in input {
            by_partition
                .entry(record.partition)
                .or_default()
                .push(record);
        }
        let mut expected = Expected {
            alerts: Vec::new(),
            requests: Vec::new(),
            dead_letters: Vec::new(),
            state: BTreeMap::new(),
        };
        for (partition, mut records) in by_partition {
            records.sort_by_key(|r| r.offset);
            let mut engine = Engine::new(monitor.monitor.clone()).expect("settings");
            for record in records {
                let payload = record.payload.as_deref().unwrap_or(&[]);
                match decoder.decode(payload) {
                    Ok(event) => {
                        engine.process(
                            &event,
                            SourcePosition {
                                topic,
                                partition,
                                offset: record.offset,
                                written_at: record.timestamp,
                            },
                        );
                        for output in engine.drain_outputs() {
                            match output {
                                Output::Alert(a) => expected.alerts.push(a.alert_id),
                                Output::Retrain(r) => expected.requests.push(r.request_id),
                            }
                        }
                    }
                    Err(_) => expected
                        .dead_letters
                        .push(format!("{partition}@{}", record.offset)),
                }
            }
            for change in engine.take_state_changes().expect("state encodes") {
                if let Some(value) = change.value {
                    expected.state.insert((partition, change.key), value);
                }
            }
        }
        expected
    }
}

fn ids(records: &[Read], field: &str) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            let value: serde_json::Value =
                serde_json::from_slice(r.payload.as_deref().unwrap_or(&[])).expect("output JSON");
            value[field].as_str().expect("id").to_owned()
        })
        .collect()
}

/// `actual` holds each of `expected` exactly once and nothing else.
fn assert_exactly(actual: &[String], expected: &[String], what: &str) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for id in actual {
        *counts.entry(id).or_default() += 1;
    }
    let duplicates: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "{what}: duplicates {duplicates:?}");
    let actual: BTreeSet<&str> = counts.keys().copied().collect();
    let expected_set: BTreeSet<&str> = expected.iter().map(String::as_str).collect();
    assert_eq!(
        expected_set.len(),
        expected.len(),
        "{what}: the reference repeats ids"
    );
    let missing: Vec<_> = expected_set.difference(&actual).collect();
    let extra: Vec<_> = actual.difference(&expected_set).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: missing {missing:?}, unexpected {extra:?}"
    );
}

/// Messages the instance handled so far (from its metrics), if it answers.
fn handled(instance: &RunningBinary) -> Option<u64> {
    let (status, body) = instance.get("/metrics")?;
    (status == 200).then(|| {
        body.lines()
            .filter(|l| l.starts_with("driftwatch_events_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    })
}

/// SIGKILL: no flush, no commit, no goodbye to the group; the open transaction stays open.
fn kill(instance: &mut RunningBinary) {
    instance.child.kill().expect("SIGKILL");
    instance.child.wait().expect("reaped");
}

#[test]
fn sigkill_at_random_moments_loses_and_repeats_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kills = env_number("DRIFTWATCH_CHAOS_KILLS", 10);
    let scenario = Scenario::new("chaos", env_number("DRIFTWATCH_CHAOS_EVENTS", 200_000));
    let seed = env_number("DRIFTWATCH_CHAOS_SEED", 7) as u64;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut done_kills = 0;
    let started = Instant::now();
    while done_kills < kills {
        let mut instance = scenario.start("solo");
        // Kill after a random amount of work: during the restore (0), mid-batch,
        // mid-transaction, around a commit. Polled every 10 ms, so it overshoots a little.
        // Scaled to the input, so the kills of a larger run spread over more of it.
        let work = rng.random_range(0..(scenario.events / (kills + 2)).max(1_000) as u64);
        let life = Instant::now();
        loop {
            assert!(
                instance.child.try_wait().unwrap().is_none(),
                "the instance exited by itself:\n{}",
                instance.log()
            );
            if handled(&instance).is_some_and(|h| h >= work) {
                break;
            }
            assert!(
                life.elapsed() < Duration::from_secs(120),
                "no progress:\n{}",
                instance.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        kill(&mut instance);
        eprintln!(
            "chaos: killed {done_kills} after {work}+ events, {:.1} s after start",
            life.elapsed().as_secs_f64()
        );
        // Checked after the kill, not before: the check takes a while, and the instance
        // would go on working meanwhile (a fast machine could finish the input so).
        assert!(
            !scenario.finished(),
            "the input ran out by kill {done_kills}: raise DRIFTWATCH_CHAOS_EVENTS"
        );
        done_kills += 1;
    }
    let mut last = scenario.start("solo");
    scenario.wait_finished(&mut [&mut last], Duration::from_secs(600));
    assert!(last.terminate(), "clean exit:\n{}", last.log());
    eprintln!(
        "chaos: {} events, {done_kills} SIGKILLs, {:.1} s",
        scenario.events,
        started.elapsed().as_secs_f64()
    );
    scenario.check_exactly_once();
}

#[test]
fn scaling_out_one_to_three_and_in_to_two_keeps_exactly_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scenario = Scenario::unproduced("scale", env_number("DRIFTWATCH_CHAOS_EVENTS", 200_000));
    let logs = |instances: &[&RunningBinary]| {
        instances
            .iter()
            .map(|i| i.log())
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    let progress =
        |instances: &[&RunningBinary]| -> u64 { instances.iter().filter_map(|i| handled(i)).sum() };
    let wait_until = |instances: &[&RunningBinary], what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !done() {
            assert!(
                Instant::now() < deadline,
                "{what}; the instances' logs:\n{}",
                logs(instances)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // The input comes in two parts. With all of it there from the start, a fast instance
    // `a` could finish the partitions the joiners later receive before they join, leaving
    // them nothing to do (the test failed so, at random, while the service was fine).
    scenario.produce(0.0..0.4);
    let mut a = scenario.start("a");
    wait_until(&[&a], "no progress of a", &|| progress(&[&a]) >= 20_000);
    let mut b = scenario.start("b");
    let mut c = scenario.start("c");
    // Each joiner owns partitions once it is ready (its first assignment): what is produced
    // from then on is theirs in part, so they certainly have work.
    let ready = |i: &RunningBinary| i.get("/readyz").is_some_and(|(status, _)| status == 200);
    wait_until(&[&b, &c], "the joiners were never assigned", &|| {
        ready(&b) && ready(&c)
    });
    scenario.produce(0.4..1.0);
    wait_until(&[&a, &b, &c], "no progress of the joiners", &|| {
        progress(&[&b, &c]) >= 10_000
    });
    assert!(!scenario.finished(), "the input ran out before scaling in");
    // Scale in: c leaves gracefully (SIGTERM commits, then leaves the group).
    assert!(c.terminate(), "clean exit of c:\n{}", c.log());
    scenario.wait_finished(&mut [&mut a, &mut b], Duration::from_secs(600));
    assert!(a.terminate(), "clean exit of a:\n{}", a.log());
    assert!(b.terminate(), "clean exit of b:\n{}", b.log());
    scenario.check_exactly_once();
}

#[test]
fn a_zombie_with_the_same_transactional_id_is_fenced() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scenario = Scenario::new("zombie", 60_000);
    let mut first = scenario.start("same");
    let deadline = Instant::now() + Duration::from_secs(60);
    while handled(&first).is_none_or(|h| h <= 1_000) {
        assert!(Instant::now() < deadline, "first instance made no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A second incarnation with the same transactional id: its init_transactions fences the
    // first, whose next transactional call fails fatally: it stops instead of committing.
    let mut second = scenario.start("same");
    let status = {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = first.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the zombie kept running:\n{}",
                first.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert_eq!(
        status.code(),
        Some(1),
        "a fenced instance fails:\n{}",
        first.log()
    );
    assert!(
        first.log().to_lowercase().contains("fenced"),
        "the log says why:\n{}",
        first.log()
    );
    scenario.wait_finished(&mut [&mut second], Duration::from_secs(300));
    assert!(second.terminate(), "clean exit:\n{}", second.log());
    scenario.check_exactly_once();
}

/// Restarts the project's broker (same ports, same data) through `scripts/kafka.sh restart`.
/// `None` when the tests run against a broker the project did not start (given by
/// `DRIFTWATCH_KAFKA_BOOTSTRAP`): someone else's broker is not ours to restart.
fn restart_own_broker() -> Option<Duration> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka.sh");
    let ours = std::process::Command::new("bash")
        .args([script, "bootstrap"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if ours.as_deref() != Some(bootstrap().as_str()) {
        return None;
    }
    let started = Instant::now();
    let output = std::process::Command::new("bash")
        .args([script, "restart"])
        .output()
        .expect("scripts/kafka.sh restart");
    assert!(
        output.status.success(),
        "scripts/kafka.sh restart failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        bootstrap(),
        "the broker came back on another address"
    );
    Some(started.elapsed())
}

#[test]
fn a_broker_restart_mid_run_loses_and_repeats_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scenario = Scenario::new("restart", env_number("DRIFTWATCH_CHAOS_EVENTS", 200_000));
    let mut instance = scenario.start("solo");
    let deadline = Instant::now() + Duration::from_secs(120);
    while handled(&instance).is_none_or(|h| h < 20_000) {
        assert!(
            instance.child.try_wait().unwrap().is_none(),
            "the instance exited by itself:\n{}",
            instance.log()
        );
        assert!(
            Instant::now() < deadline,
            "no progress:\n{}",
            instance.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!scenario.finished(), "the input ran out before the restart");
    let before = handled(&instance).unwrap_or(0);
    let Some(downtime) = restart_own_broker() else {
        eprintln!(
            "restart: skipped, the broker at {} is not the project's own",
            bootstrap()
        );
        return;
    };
    eprintln!(
        "restart: broker restarted in {:.1} s",
        downtime.as_secs_f64()
    );
    // The same process, never restarted, finishes the input.
    scenario.wait_finished(&mut [&mut instance], Duration::from_secs(600));
    assert!(
        handled(&instance).unwrap_or(0) > before,
        "no work after the restart"
    );
    assert!(instance.terminate(), "clean exit:\n{}", instance.log());
    scenario.check_exactly_once();
}
