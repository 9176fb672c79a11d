//! The label join: ground-truth labels (topic `inference.labels`) matched to their
//! predictions by `(model_id, event_id)`, whichever of the two arrives first.
//!
//! Owns: the two waiting rooms (predictions waiting for a label, labels waiting for a
//! prediction), their event-time TTL and their size bound. Pure and deterministic: entries
//! leave in arrival order, time is event time, and nothing here can fail — an entry that never
//! finds its match is counted, not reported as an error.
//!
//! Memory: at most `max_entries` arrivals are remembered (matched ones leave a tombstone in
//! the arrival queue until it reaches the front, and tombstones count towards the bound), so
//! the join holds O(`max_entries`) entries whatever the traffic. Every prediction waits here
//! (its label may come days later), so an entry is kept small and allocation-free: the key is
//! a 64-bit FNV-1a hash of (model_id, event_id) — a collision among a million waiting entries
//! has a probability of about 3e-8 — and repeated strings (versions, classes, groups) are
//! interned. About 90 bytes per waiting prediction, hash table and arrival queue included.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::Hasher;

use serde::{Deserialize, Serialize};

use crate::event::{LabelEvent, LabelValue, PredictionEvent};

/// A label value owned by the join.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Truth {
    /// Class label.
    Class(String),
    /// Regression target.
    Number(f64),
}

impl From<&LabelValue<'_>> for Truth {
    fn from(value: &LabelValue<'_>) -> Self {
        match value {
            LabelValue::Text(text) => Truth::Class(text.to_string()),
            LabelValue::Number(x) => Truth::Number(*x),
        }
    }
}

/// What the join keeps of a prediction while it waits: just what quality and fairness need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionSummary {
    /// Model version (labels do not carry it).
    pub model_version: String,
    /// Event time of the prediction.
    pub timestamp: i64,
    /// Score.
    pub score: Option<f64>,
    /// Predicted class.
    pub class: Option<String>,
    /// Class probabilities, when the producer sent them (for multiclass log loss).
    pub probabilities: Vec<(String, f64)>,
    /// Value of the model's sensitive attribute, when configured and present.
    pub group: Option<String>,
}

impl PredictionSummary {
    /// The summary of `event`, keeping the value of `sensitive_attribute` if given.
    pub fn of(event: &PredictionEvent<'_>, sensitive_attribute: Option<&str>) -> Self {
        Self {
            model_version: event.model_version.to_string(),
            timestamp: event.timestamp,
            score: event.prediction.score,
            class: event.prediction.label.as_deref().map(str::to_owned),
            probabilities: event
                .prediction
                .probabilities
                .iter()
                .flatten()
                .map(|(class, p)| (class.to_string(), *p))
                .collect(),
            group: sensitive_attribute.and_then(|name| {
                event
                    .attributes
                    .iter()
                    .find(|(key, _)| key == name)
                    .map(|(_, value)| value.to_string())
            }),
        }
    }
}

/// A prediction joined to its label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinedOutcome {
    /// Model.
    pub model_id: String,
    /// Prediction's event id.
    pub event_id: String,
    /// What was predicted.
    pub prediction: PredictionSummary,
    /// What was true.
    pub truth: Truth,
    /// Event time of the label.
    pub label_timestamp: i64,
}

impl JoinedOutcome {
    /// When the outcome became known: the later of the prediction and the label. Quality
    /// windows place the outcome here, so a label that arrives before its prediction (clock
    /// skew between producers) still lands after the prediction.
    pub fn known_at(&self) -> i64 {
        self.label_timestamp.max(self.prediction.timestamp)
    }
}

/// Counters of the join, exported as metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinCounters {
    /// Predictions and labels matched.
    pub joined: u64,
    /// Predictions that waited longer than the TTL for a label.
    pub expired_predictions: u64,
    /// Labels that waited longer than the TTL for a prediction.
    pub expired_labels: u64,
    /// Waiting entries pushed out by the size bound.
    pub evicted: u64,
    /// A second label for an event whose label is already waiting: ignored.
    pub duplicate_labels: u64,
    /// A second prediction with an event id already waiting: the first one is kept.
    pub duplicate_predictions: u64,
}

/// Which waiting room an entry is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Side {
    /// A prediction waiting for its label.
    Prediction,
    /// A label waiting for its prediction.
    Label,
}

/// Names one waiting entry in the state changelog: its room and its (model_id, event_id)
/// hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JoinKey {
    /// The waiting room.
    pub side: Side,
    /// FNV-1a hash of (model_id, event_id).
    pub key: u64,
}

/// A waiting entry as the state changelog stores it: self-contained (strings resolved, not
/// interned ids), so a restored join may intern in any order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JoinEntry {
    /// A waiting prediction.
    Prediction {
        /// Arrival number (restores the eviction and expiry order).
        arrival: u64,
        /// What the join kept of it.
        summary: PredictionSummary,
    },
    /// A waiting label.
    Label {
        /// Arrival number.
        arrival: u64,
        /// Event time of the label.
        timestamp: i64,
        /// The label's value.
        truth: Truth,
    },
}

/// The join's scalars, stored with the engine's record (the entries are records of their
/// own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinMeta {
    /// Next arrival number.
    pub next_arrival: u64,
    /// Counters so far.
    pub counters: JoinCounters,
}

/// Id of an interned string; [`NONE`] for an absent value.
type TextId = u32;
/// An absent value (no class, no group).
const NONE: TextId = u32::MAX;

/// Distinct strings, each stored once and named by a 4-byte id, so a waiting prediction
/// holds no string of its own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Interner {
    strings: Vec<Box<str>>,
    index: HashMap<Box<str>, TextId, KeyHasher>,
}

impl Interner {
    /// Distinct strings kept. Model versions, classes and group values repeat; a producer
    /// sending free text would otherwise grow this forever. Past the bound a new value is
    /// not kept: that class or group reads as absent.
    const CAPACITY: usize = 65_536;

    fn intern(&mut self, text: &str) -> TextId {
        if let Some(&id) = self.index.get(text) {
            return id;
        }
        if self.strings.len() >= Self::CAPACITY {
            return NONE;
        }
        let id = self.strings.len() as TextId;
        self.strings.push(text.into());
        self.index.insert(text.into(), id);
        id
    }

    fn resolve(&self, id: TextId) -> Option<&str> {
        self.strings.get(id as usize).map(|s| &**s)
    }
}

/// A prediction waiting for its label (about 56 bytes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct WaitingPrediction {
    arrival: u64,
    timestamp: i64,
    score: Option<f64>,
    version: TextId,
    class: TextId,
    group: TextId,
    /// Rare (multiclass producers): boxed so the common entry stays small.
    probabilities: Option<Box<[(TextId, f64)]>>,
}

/// A label waiting for its prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct WaitingLabel {
    arrival: u64,
    timestamp: i64,
    truth: Truth,
}

/// Arrival record: which entry arrived when; the map entry is live only while its arrival
/// number still matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Arrival {
    arrival: u64,
    side: Side,
    key: u64,
}

/// The hasher of the join's tables and interners, which are on the per-prediction path.
/// The tables' keys are already 64-bit hashes, and the interned strings are short, so SipHash
/// (the standard default) cost more than the lookups; foldhash is fast and still seeded per
/// process, so bucket collisions cannot be precomputed.
type KeyHasher = foldhash::fast::RandomState;

/// FNV-1a of (model_id, separator, event_id): stable across runs and releases (a state
/// snapshot may hold these keys), unlike the standard library's hasher.
fn join_key(model_id: &str, event_id: &str) -> u64 {
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(model_id.as_bytes());
    hasher.write_u8(0xff);
    hasher.write(event_id.as_bytes());
    hasher.finish()
}

/// The label join of one partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelJoin {
    ttl_ms: i64,
    max_entries: usize,
    predictions: HashMap<u64, WaitingPrediction, KeyHasher>,
    labels: HashMap<u64, WaitingLabel, KeyHasher>,
    arrivals: VecDeque<Arrival>,
    next_arrival: u64,
    /// Model versions (few; never full in practice, as each one is also a monitor).
    versions: Interner,
    /// Classes and group values.
    strings: Interner,
    counters: JoinCounters,
    /// Entries added or removed since the last [`LabelJoin::take_changes`]: the state
    /// changelog writes these, not the whole join (which may hold a million entries).
    #[serde(skip)]
    changed: Vec<JoinKey>,
}

impl LabelJoin {
    /// A join whose entries wait at most `ttl_ms` of event time, holding at most
    /// `max_entries` arrivals.
    pub fn new(ttl_ms: i64, max_entries: usize) -> Self {
        Self {
            ttl_ms,
            max_entries: max_entries.max(1),
            predictions: HashMap::default(),
            labels: HashMap::default(),
            arrivals: VecDeque::new(),
            next_arrival: 0,
            versions: Interner::default(),
            strings: Interner::default(),
            counters: JoinCounters::default(),
            changed: Vec::new(),
        }
    }

    /// The join's scalars, for the state changelog.
    pub fn meta(&self) -> JoinMeta {
        JoinMeta {
            next_arrival: self.next_arrival,
            counters: self.counters,
        }
    }

    /// Entries changed since the last call, each with its current value (`None`: it left
    /// the join), in key order.
    pub fn take_changes(&mut self) -> Vec<(JoinKey, Option<JoinEntry>)> {
        let mut changed = std::mem::take(&mut self.changed);
        changed.sort_unstable();
        changed.dedup();
        changed
            .into_iter()
            .map(|key| (key, self.entry(key)))
            .collect()
    }

    /// The self-contained form of a waiting entry.
    fn entry(&self, key: JoinKey) -> Option<JoinEntry> {
        match key.side {
            Side::Prediction => self
                .predictions
                .get(&key.key)
                .map(|w| JoinEntry::Prediction {
                    arrival: w.arrival,
                    summary: self.summary_of(w),
                }),
            Side::Label => self.labels.get(&key.key).map(|w| JoinEntry::Label {
                arrival: w.arrival,
                timestamp: w.timestamp,
                truth: w.truth.clone(),
            }),
        }
    }

    /// A join rebuilt from its changelog: `meta` and the live entries. Entries are queued in
    /// arrival order, so expiry and eviction continue in the order they would have.
    /// (Matched entries' arrival tombstones are not restored: after a restore the size bound
    /// counts live entries only, so an eviction may come a little later than it would have.)
    pub fn restore(
        ttl_ms: i64,
        max_entries: usize,
        meta: JoinMeta,
        entries: impl IntoIterator<Item = (JoinKey, JoinEntry)>,
    ) -> Self {
        let mut join = Self::new(ttl_ms, max_entries);
        let mut entries: Vec<(JoinKey, JoinEntry)> = entries.into_iter().collect();
        entries.sort_by_key(|(_, entry)| match entry {
            JoinEntry::Prediction { arrival, .. } | JoinEntry::Label { arrival, .. } => *arrival,
        });
        for (key, entry) in entries {
            match entry {
                JoinEntry::Prediction { arrival, summary } => {
                    let waiting = join.waiting_prediction(arrival, &summary);
                    join.predictions.insert(key.key, waiting);
                    join.arrivals.push_back(Arrival {
                        arrival,
                        side: Side::Prediction,
                        key: key.key,
                    });
                }
                JoinEntry::Label {
                    arrival,
                    timestamp,
                    truth,
                } => {
                    join.labels.insert(
                        key.key,
                        WaitingLabel {
                            arrival,
                            timestamp,
                            truth,
                        },
                    );
                    join.arrivals.push_back(Arrival {
                        arrival,
                        side: Side::Label,
                        key: key.key,
                    });
                }
            }
        }
        join.next_arrival = meta.next_arrival;
        join.counters = meta.counters;
        join
    }

    fn waiting_prediction(
        &mut self,
        arrival: u64,
        summary: &PredictionSummary,
    ) -> WaitingPrediction {
        let strings = &mut self.strings;
        WaitingPrediction {
            arrival,
            timestamp: summary.timestamp,
            score: summary.score,
            version: self.versions.intern(&summary.model_version),
            class: summary.class.as_deref().map_or(NONE, |c| strings.intern(c)),
            group: summary.group.as_deref().map_or(NONE, |g| strings.intern(g)),
            probabilities: (!summary.probabilities.is_empty()).then(|| {
                summary
                    .probabilities
                    .iter()
                    .map(|(class, p)| (strings.intern(class), *p))
                    .collect()
            }),
        }
    }

    /// What a waiting prediction holds, with its strings resolved.
    fn summary_of(&self, prediction: &WaitingPrediction) -> PredictionSummary {
        let text = |id: TextId| self.strings.resolve(id).map(str::to_owned);
        PredictionSummary {
            model_version: self
                .versions
                .resolve(prediction.version)
                .unwrap_or_default()
                .to_owned(),
            timestamp: prediction.timestamp,
            score: prediction.score,
            class: text(prediction.class),
            probabilities: prediction
                .probabilities
                .iter()
                .flatten()
                .filter_map(|(class, p)| Some((text(*class)?, *p)))
                .collect(),
            group: text(prediction.group),
        }
    }

    fn mark(&mut self, side: Side, key: u64) {
        self.changed.push(JoinKey { side, key });
    }

    /// Counters so far.
    pub fn counters(&self) -> JoinCounters {
        self.counters
    }

    /// Entries waiting for their match.
    pub fn waiting(&self) -> usize {
        self.predictions.len() + self.labels.len()
    }

    /// Offers a prediction: returns the joined outcome when its label was already waiting,
    /// otherwise the prediction waits.
    pub fn offer_prediction(
        &mut self,
        event: &PredictionEvent<'_>,
        sensitive_attribute: Option<&str>,
    ) -> Option<JoinedOutcome> {
        let key = join_key(&event.model_id, &event.event_id);
        if let Some(label) = self.labels.remove(&key) {
            self.counters.joined += 1;
            self.mark(Side::Label, key);
            return Some(JoinedOutcome {
                model_id: event.model_id.to_string(),
                event_id: event.event_id.to_string(),
                prediction: PredictionSummary::of(event, sensitive_attribute),
                truth: label.truth,
                label_timestamp: label.timestamp,
            });
        }
        // One probe of the (large) table for both the duplicate check and the insertion.
        let vacant = match self.predictions.entry(key) {
            Entry::Occupied(_) => {
                self.counters.duplicate_predictions += 1;
                return None;
            }
            Entry::Vacant(vacant) => vacant,
        };
        let arrival = Self::arrive(
            &mut self.next_arrival,
            &mut self.arrivals,
            Side::Prediction,
            key,
        );
        let strings = &mut self.versions;
        let version = strings.intern(&event.model_version);
        let strings = &mut self.strings;
        vacant.insert(WaitingPrediction {
            arrival,
            timestamp: event.timestamp,
            score: event.prediction.score,
            version,
            class: event
                .prediction
                .label
                .as_deref()
                .map_or(NONE, |c| strings.intern(c)),
            group: sensitive_attribute
                .and_then(|name| {
                    event
                        .attributes
                        .iter()
                        .find(|(key, _)| key == name)
                        .map(|(_, value)| strings.intern(value))
                })
                .unwrap_or(NONE),
            probabilities: event.prediction.probabilities.as_ref().map(|p| {
                p.iter()
                    .map(|(class, probability)| (strings.intern(class), *probability))
                    .collect()
            }),
        });
        self.mark(Side::Prediction, key);
        self.enforce_bound();
        None
    }

    /// Offers a label: returns the joined outcome when its prediction was waiting, otherwise
    /// the label waits.
    pub fn offer_label(&mut self, event: &LabelEvent<'_>) -> Option<JoinedOutcome> {
        let key = join_key(&event.model_id, &event.event_id);
        if let Some(prediction) = self.predictions.remove(&key) {
            self.counters.joined += 1;
            self.mark(Side::Prediction, key);
            return Some(JoinedOutcome {
                model_id: event.model_id.to_string(),
                event_id: event.event_id.to_string(),
                prediction: self.summary_of(&prediction),
                truth: Truth::from(&event.label),
                label_timestamp: event.timestamp,
            });
        }
        if self.labels.contains_key(&key) {
            self.counters.duplicate_labels += 1;
            return None;
        }
        let arrival = Self::arrive(&mut self.next_arrival, &mut self.arrivals, Side::Label, key);
        self.mark(Side::Label, key);
        self.labels.insert(
            key,
            WaitingLabel {
                arrival,
                timestamp: event.timestamp,
                truth: Truth::from(&event.label),
            },
        );
        self.enforce_bound();
        None
    }

    /// Forgets entries older than the TTL with respect to `now` (the partition's event-time
    /// clock), in arrival order.
    pub fn expire(&mut self, now: i64) {
        let horizon = now.saturating_sub(self.ttl_ms);
        while let Some(&front) = self.arrivals.front() {
            match self.entry_timestamp(&front) {
                // A tombstone (matched): drop it.
                None => {}
                Some(timestamp) if timestamp < horizon => {
                    self.remove_front();
                    match front.side {
                        Side::Prediction => self.counters.expired_predictions += 1,
                        Side::Label => self.counters.expired_labels += 1,
                    }
                    continue;
                }
                // Arrival order is close to time order; an entry that is not yet due keeps
                // the ones behind it (they expire at most a little late, never early).
                Some(_) => break,
            }
            self.arrivals.pop_front();
        }
    }

    /// Numbers and queues a new entry's arrival. Over the two fields rather than `&mut self`,
    /// so a caller can hold a vacant entry of a table meanwhile.
    fn arrive(
        next_arrival: &mut u64,
        arrivals: &mut VecDeque<Arrival>,
        side: Side,
        key: u64,
    ) -> u64 {
        let arrival = *next_arrival;
        *next_arrival += 1;
        arrivals.push_back(Arrival { arrival, side, key });
        arrival
    }

    fn entry_timestamp(&self, arrival: &Arrival) -> Option<i64> {
        match arrival.side {
            Side::Prediction => self
                .predictions
                .get(&arrival.key)
                .filter(|w| w.arrival == arrival.arrival)
                .map(|w| w.timestamp),
            Side::Label => self
                .labels
                .get(&arrival.key)
                .filter(|w| w.arrival == arrival.arrival)
                .map(|w| w.timestamp),
        }
    }

    /// Removes the front arrival and its entry (when still live); true when it was live.
    fn remove_front(&mut self) -> bool {
        let Some(front) = self.arrivals.pop_front() else {
            return false;
        };
        let live = self.entry_timestamp(&front).is_some();
        if live {
            self.mark(front.side, front.key);
            match front.side {
                Side::Prediction => {
                    self.predictions.remove(&front.key);
                }
                Side::Label => {
                    self.labels.remove(&front.key);
                }
            }
        }
        live
    }

    fn enforce_bound(&mut self) {
        while self.arrivals.len() > self.max_entries {
            if self.remove_front() {
                self.counters.evicted += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::event::Prediction;

    fn prediction(id: &str, timestamp: i64) -> PredictionEvent<'static> {
        PredictionEvent {
            event_id: Cow::Owned(id.to_owned()),
            model_id: Cow::Borrowed("m"),
            model_version: Cow::Borrowed("v1"),
            timestamp,
            features: Vec::new(),
            prediction: Prediction {
                score: Some(0.8),
                label: Some(Cow::Borrowed("1")),
                probabilities: None,
            },
            attributes: vec![(Cow::Borrowed("gender"), Cow::Borrowed("f"))],
        }
    }

    fn label(id: &str, timestamp: i64) -> LabelEvent<'static> {
        LabelEvent {
            event_id: Cow::Owned(id.to_owned()),
            model_id: Cow::Borrowed("m"),
            timestamp,
            label: LabelValue::Text(Cow::Borrowed("0")),
        }
    }

    #[test]
    fn joins_in_either_order() {
        let mut join = LabelJoin::new(60_000, 100);
        assert!(join
            .offer_prediction(&prediction("a", 1_000), None)
            .is_none());
        let outcome = join.offer_label(&label("a", 5_000)).unwrap();
        assert_eq!(outcome.prediction.model_version, "v1");
        assert_eq!(outcome.truth, Truth::Class("0".into()));
        assert_eq!(outcome.known_at(), 5_000);

        // The label first: clocks of different producers disagree.
        assert!(join.offer_label(&label("b", 900)).is_none());
        let outcome = join
            .offer_prediction(&prediction("b", 1_000), Some("gender"))
            .unwrap();
        assert_eq!(outcome.known_at(), 1_000, "never before the prediction");
        assert_eq!(outcome.prediction.group.as_deref(), Some("f"));
        assert_eq!(join.counters().joined, 2);
        assert_eq!(join.waiting(), 0);
    }

    #[test]
    fn the_same_event_id_of_another_model_does_not_join() {
        let mut join = LabelJoin::new(60_000, 100);
        join.offer_prediction(&prediction("a", 1_000), None);
        let mut other = label("a", 2_000);
        other.model_id = Cow::Borrowed("other");
        assert!(join.offer_label(&other).is_none());
        assert_eq!(join.waiting(), 2);
    }

    #[test]
    fn unmatched_entries_expire_after_the_ttl_in_event_time() {
        let mut join = LabelJoin::new(10_000, 100);
        join.offer_prediction(&prediction("a", 0), None);
        join.offer_label(&label("z", 1_000));
        join.offer_prediction(&prediction("b", 20_000), None);
        join.expire(10_000);
        assert_eq!(join.waiting(), 3, "exactly at the TTL: still waiting");
        join.expire(10_001);
        assert_eq!(join.counters().expired_predictions, 1);
        join.expire(11_001);
        assert_eq!(join.counters().expired_labels, 1);
        assert_eq!(join.waiting(), 1);
        assert!(join.offer_label(&label("a", 30_000)).is_none(), "expired");
        assert!(join.offer_label(&label("b", 30_000)).is_some());
    }

    #[test]
    fn memory_is_bounded_and_evictions_are_counted() {
        let mut join = LabelJoin::new(i64::MAX, 1_000);
        for i in 0..10_000 {
            join.offer_prediction(&prediction(&format!("p{i}"), i), None);
            // Half of them are labelled at once, leaving tombstones behind.
            if i % 2 == 0 {
                assert!(join.offer_label(&label(&format!("p{i}"), i)).is_some());
            }
        }
        assert!(join.waiting() <= 1_000);
        assert!(join.arrivals.len() <= 1_000);
        let counters = join.counters();
        assert_eq!(counters.joined, 5_000);
        assert_eq!(counters.evicted, 5_000 - join.waiting() as u64);
        // The newest unlabelled prediction is still there.
        assert!(join.offer_label(&label("p9999", 10_000)).is_some());
    }

    #[test]
    fn duplicates_are_counted_and_ignored() {
        let mut join = LabelJoin::new(60_000, 100);
        join.offer_label(&label("a", 0));
        join.offer_label(&label("a", 1));
        join.offer_prediction(&prediction("b", 0), None);
        join.offer_prediction(&prediction("b", 1), None);
        let counters = join.counters();
        assert_eq!(counters.duplicate_labels, 1);
        assert_eq!(counters.duplicate_predictions, 1);
        assert_eq!(join.waiting(), 2);
    }
}
