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
//! interned. A waiting entry takes one 64-byte place in the arrival queue and a 16-byte slot
//! of the key index (at most 5/8 full): 90 to 180 bytes with the containers' growth slack.
//!
//! State changelog: entries are written in *batches*, one record per commit interval holding
//! the entries that arrived in it and still wait, named by the first one's arrival number.
//! An entry that leaves an older batch (matched, expired, evicted) is listed in a *removals*
//! record of that commit; a batch whose entries have all left is deleted, and a removals
//! record is deleted once every batch it names is. A batch that has lost three quarters of
//! its entries is rewritten with the rest, so the log stays proportional to what waits. One
//! record per entry would cost a record (and a producer call) per prediction.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::Hasher;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::chunked_queue::ChunkedQueue;
use super::key_index::{KeyIndex, Probe};
use super::model::same_bytes;
use super::state::StateError;
use crate::event::{LabelEvent, LabelValue, PredictionEvent};

/// A label value owned by the join.
///
/// Text is shared (`Arc<str>`, written and read as a plain string): the join hands out the
/// one copy it interned, so a label costs no allocation of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Truth {
    /// Class label.
    Class(Arc<str>),
    /// Regression target.
    Number(f64),
}

impl From<&LabelValue<'_>> for Truth {
    fn from(value: &LabelValue<'_>) -> Self {
        match value {
            LabelValue::Text(text) => Truth::Class(Arc::from(&**text)),
            LabelValue::Number(x) => Truth::Number(*x),
        }
    }
}

/// What the join keeps of a prediction while it waits: just what quality and fairness need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionSummary {
    /// Model version (labels do not carry it).
    pub model_version: Arc<str>,
    /// Event time of the prediction.
    pub timestamp: i64,
    /// Score.
    pub score: Option<f64>,
    /// Predicted class.
    pub class: Option<Arc<str>>,
    /// Class probabilities, when the producer sent them (for multiclass log loss).
    pub probabilities: Vec<(Arc<str>, f64)>,
    /// Value of the model's sensitive attribute, when configured and present.
    pub group: Option<Arc<str>>,
}

impl PredictionSummary {
    /// The summary of `event`, keeping the value of `sensitive_attribute` if given.
    pub fn of(event: &PredictionEvent<'_>, sensitive_attribute: Option<&str>) -> Self {
        Self {
            model_version: Arc::from(&*event.model_version),
            timestamp: event.timestamp,
            score: event.prediction.score,
            class: event.prediction.label.as_deref().map(Arc::from),
            probabilities: event
                .prediction
                .probabilities
                .iter()
                .flatten()
                .map(|(class, p)| (Arc::from(&**class), *p))
                .collect(),
            group: group_of(event, sensitive_attribute).map(Arc::from),
        }
    }
}

/// The value of `event`'s sensitive attribute, when one is configured and the event has it.
fn group_of<'e>(
    event: &'e PredictionEvent<'_>,
    sensitive_attribute: Option<&str>,
) -> Option<&'e str> {
    let name = sensitive_attribute?;
    event
        .attributes
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| &**value)
}

/// A prediction joined to its label.
///
/// Its repeated strings (model, version, classes, group) are the join's shared copies; only
/// the event id, unique to it, is its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinedOutcome {
    /// Model.
    pub model_id: Arc<str>,
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

/// Names one record of the label join in the state changelog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum JoinRecord {
    /// A batch of entries, by the arrival number of its first entry.
    Batch(u64),
    /// A list of entries that left their batches, by its sequence number.
    Removals(u64),
}

/// A batch record's value: waiting entries with their (model_id, event_id) hash, in arrival
/// order.
pub type JoinBatch = Vec<(u64, JoinEntry)>;

/// A removals record's value: arrival numbers of entries that left their batches, ascending.
pub type JoinRemovals = Vec<u64>;

/// The new value of a join record.
#[derive(Debug, Clone, PartialEq)]
pub enum JoinValue {
    /// A batch's entries, already encoded as the state record's value
    /// ([`crate::monitor::state::encode`] of a [`JoinBatch`], which is how it is read back).
    /// Encoded straight from the queue: a commit at a few hundred thousand events per second
    /// writes as many entries, and building them as owned [`JoinEntry`] values first cost
    /// two string allocations each and a transient list of tens of megabytes.
    Batch(Vec<u8>),
    /// Removed arrival numbers.
    Removals(JoinRemovals),
}

/// Largest batch record, estimated with [`JoinEntryRef::size_bound`]: a commit interval of
/// heavy traffic is split into several batches rather than one record the broker refuses.
const BATCH_BYTES: usize = 1 << 20;

/// A batch is rewritten with its remaining entries once at most this fraction of them waits.
const REWRITE_WHEN_LIVE_AT_MOST: (u64, u64) = (1, 4);

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

impl JoinEntry {
    /// The entry's arrival number.
    pub fn arrival(&self) -> u64 {
        match self {
            JoinEntry::Prediction { arrival, .. } | JoinEntry::Label { arrival, .. } => *arrival,
        }
    }

    /// The entry's waiting room.
    pub fn side(&self) -> Side {
        match self {
            JoinEntry::Prediction { .. } => Side::Prediction,
            JoinEntry::Label { .. } => Side::Label,
        }
    }
}

/// A [`JoinEntry`] borrowing from the join: it serializes exactly as the entry it stands
/// for (same names, same fields in the same order), without copying its strings.
#[derive(Serialize)]
#[serde(rename = "JoinEntry")]
enum JoinEntryRef<'a> {
    Prediction {
        arrival: u64,
        summary: SummaryRef<'a>,
    },
    Label {
        arrival: u64,
        timestamp: i64,
        truth: &'a Truth,
    },
}

/// A [`PredictionSummary`] borrowing from the join (see [`JoinEntryRef`]).
#[derive(Serialize)]
#[serde(rename = "PredictionSummary")]
struct SummaryRef<'a> {
    model_version: &'a str,
    timestamp: i64,
    score: Option<f64>,
    class: Option<&'a str>,
    probabilities: ProbabilitiesRef<'a>,
    group: Option<&'a str>,
}

/// A waiting prediction's class probabilities, serialized as the `(class, probability)`
/// list of a [`PredictionSummary`]: classes the interner could not keep are left out, as
/// [`LabelJoin::summary_of`] leaves them out.
struct ProbabilitiesRef<'a> {
    strings: &'a Interner,
    pairs: &'a [(TextId, f64)],
}

impl ProbabilitiesRef<'_> {
    fn resolved(&self) -> impl Iterator<Item = (&str, f64)> {
        self.pairs
            .iter()
            .filter_map(|(class, p)| Some((self.strings.resolve(*class)?, *p)))
    }
}

impl Serialize for ProbabilitiesRef<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        // The length first (postcard writes it before the elements, and a filtered iterator
        // cannot tell it), so the list is walked twice; it is short.
        let mut seq = serializer.serialize_seq(Some(self.resolved().count()))?;
        for pair in self.resolved() {
            seq.serialize_element(&pair)?;
        }
        seq.end()
    }
}

impl JoinEntryRef<'_> {
    /// An upper bound of the entry's encoded size with its key (varints at their longest),
    /// cheap enough to sum over every entry of a batch.
    fn size_bound(&self) -> usize {
        const FIXED: usize = 64;
        match self {
            JoinEntryRef::Prediction { summary, .. } => {
                let text = |t: Option<&str>| t.map_or(1, |t| t.len() + 11);
                FIXED
                    + summary.model_version.len()
                    + text(summary.class)
                    + text(summary.group)
                    + summary
                        .probabilities
                        .resolved()
                        .map(|(class, _)| class.len() + 18)
                        .sum::<usize>()
            }
            JoinEntryRef::Label { truth, .. } => {
                FIXED
                    + match truth {
                        Truth::Class(class) => class.len() + 10,
                        Truth::Number(_) => 8,
                    }
            }
        }
    }
}

/// The entries waiting at some queue positions of a join, serialized as a [`JoinBatch`].
struct BatchView<'a> {
    join: &'a LabelJoin,
    positions: std::ops::Range<usize>,
    /// How many of those positions hold a waiting entry (a sequence's length comes first).
    count: usize,
}

impl Serialize for BatchView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.count))?;
        let mut written = 0;
        for position in self.positions.clone() {
            if let Some((key, entry)) = self.join.entry_at(position) {
                seq.serialize_element(&(key, entry))?;
                written += 1;
            }
        }
        // The length went out first: a record whose entries disagree with it must not be
        // written (it would misread), so fail it instead (a caller bug, never expected).
        if written != self.count {
            return Err(serde::ser::Error::custom(format!(
                "{written} entries in a batch of {}",
                self.count
            )));
        }
        seq.end()
    }
}

/// The join's scalars, stored with the engine's record (the entries are records of their
/// own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinMeta {
    /// Next arrival number.
    pub next_arrival: u64,
    /// Sequence number of the next removals record.
    pub next_removals: u64,
    /// Counters so far.
    pub counters: JoinCounters,
}

/// A batch record the changelog holds.
#[derive(Debug, Clone, Default, PartialEq)]
struct BatchBook {
    /// Entries the record holds.
    written: u64,
    /// Of those, entries still waiting.
    live: u64,
    /// Removals records that name entries of this batch.
    removals: Vec<u64>,
}

/// What the state changelog holds of the join, so a commit writes only the difference.
#[derive(Debug, Clone, Default, PartialEq)]
struct ChangelogBook {
    /// Entries with a smaller arrival number were written (in a batch) already.
    written_through: u64,
    /// Arrival numbers of written entries that left since the last write.
    removed: Vec<u64>,
    /// Batch records, by first arrival.
    batches: BTreeMap<u64, BatchBook>,
    /// Removals records, by sequence: how many of the batches they name are still there.
    removals: BTreeMap<u64, u32>,
    /// Sequence number of the next removals record.
    next_removals: u64,
    /// Records to delete at the next write (found useless at a restore).
    doomed: Vec<JoinRecord>,
}

impl ChangelogBook {
    /// A written entry left the join.
    fn removed(&mut self, arrival: u64) {
        // Entries that arrived since the last write leave no trace: they were never written.
        if arrival < self.written_through {
            self.removed.push(arrival);
        }
    }

    /// `batch` no longer needs its removals records; deletes those that name nothing else.
    fn release(&mut self, batch: &BatchBook, changes: &mut Vec<(JoinRecord, Option<JoinValue>)>) {
        for sequence in &batch.removals {
            if let Some(count) = self.removals.get_mut(sequence) {
                *count -= 1;
                if *count == 0 {
                    self.removals.remove(sequence);
                    changes.push((JoinRecord::Removals(*sequence), None));
                }
            }
        }
    }
}

/// Id of an interned string; [`NONE`] for an absent value.
type TextId = u32;
/// An absent value (no class, no group).
const NONE: TextId = u32::MAX;

/// Distinct strings, each stored once and named by a 4-byte id, so a waiting prediction
/// holds no string of its own.
#[derive(Debug, Clone)]
struct Interner {
    /// Shared, so that what the join hands out (outcomes) refers to the same copy.
    strings: Vec<Arc<str>>,
    index: HashMap<Arc<str>, TextId, KeyHasher>,
    /// The id last interned in each slot of a cheap fingerprint of the text, checked against
    /// the text before use. Versions, classes and groups are few and repeat, so nearly every
    /// lookup ends here: one compare instead of hashing the text, probing the map and a
    /// `memcmp` call (which together were a fifth of the join's cost per prediction).
    recent: [TextId; Interner::RECENT],
}

impl Default for Interner {
    fn default() -> Self {
        Self {
            strings: Vec::new(),
            index: HashMap::default(),
            recent: [NONE; Interner::RECENT],
        }
    }
}

impl Interner {
    /// Distinct strings kept. Model versions, classes and group values repeat; a producer
    /// sending free text would otherwise grow this forever. Past the bound a new value is
    /// not kept: that class or group reads as absent.
    const CAPACITY: usize = 65_536;

    /// Slots of [`Interner::recent`].
    const RECENT: usize = 16;

    /// The slot of `text` in [`Interner::recent`]: from its length and end bytes, which tell
    /// apart the usual versions and classes ("v3", "v4"; "0", "1"; "fraud", "legit").
    #[inline]
    fn recent_slot(text: &str) -> usize {
        let bytes = text.as_bytes();
        let (first, last) = match bytes {
            [] => (0, 0),
            [first, .., last] => (*first, *last),
            [only] => (*only, *only),
        };
        (bytes.len() + 3 * usize::from(first) + 5 * usize::from(last)) % Self::RECENT
    }

    fn intern(&mut self, text: &str) -> TextId {
        let slot = Self::recent_slot(text);
        let recent = self.recent[slot];
        if let Some(kept) = self.strings.get(recent as usize) {
            if same_bytes(kept.as_bytes(), text.as_bytes()) {
                return recent;
            }
        }
        let id = match self.index.get(text) {
            Some(&id) => id,
            None if self.strings.len() >= Self::CAPACITY => return NONE,
            None => {
                let id = self.strings.len() as TextId;
                let shared: Arc<str> = Arc::from(text);
                self.strings.push(Arc::clone(&shared));
                self.index.insert(shared, id);
                id
            }
        };
        self.recent[slot] = id;
        id
    }

    fn resolve(&self, id: TextId) -> Option<&str> {
        self.strings.get(id as usize).map(|s| &**s)
    }

    /// The shared copy of an interned string.
    fn shared(&self, id: TextId) -> Option<Arc<str>> {
        self.strings.get(id as usize).cloned()
    }

    /// The shared copy of `text`, interned now if need be; a copy of its own only when the
    /// interner is full.
    fn share(&mut self, text: &str) -> Arc<str> {
        let id = self.intern(text);
        self.shared(id).unwrap_or_else(|| Arc::from(text))
    }
}

/// A prediction waiting for its label (56 bytes; its arrival number is its place in the
/// queue).
#[derive(Debug, Clone, PartialEq)]
struct WaitingPrediction {
    timestamp: i64,
    score: Option<f64>,
    version: TextId,
    class: TextId,
    group: TextId,
    /// Rare (multiclass producers): boxed so the common entry stays small.
    probabilities: Option<Box<[(TextId, f64)]>>,
}

/// A label waiting for its prediction.
#[derive(Debug, Clone, PartialEq)]
struct WaitingLabel {
    timestamp: i64,
    truth: Truth,
}

/// What an arrival left in the queue.
#[derive(Debug, Clone, PartialEq)]
enum Waiting {
    /// A prediction still waiting.
    Prediction(WaitingPrediction),
    /// A label still waiting.
    Label(WaitingLabel),
    /// A tombstone: the entry was matched (it stays until it reaches the front, so the
    /// queue's place of an arrival is its number minus the front's).
    Left,
}

/// One arrival in the queue.
#[derive(Debug, Clone, PartialEq)]
struct Queued {
    key: u64,
    entry: Waiting,
}

/// The hasher of the interners, which are on the per-prediction path: the interned strings
/// are short, so SipHash (the standard default) cost more than the lookups; foldhash is fast
/// and still seeded per process, so bucket collisions cannot be precomputed.
type KeyHasher = foldhash::fast::RandomState;

/// Arrival numbers from here on are refused at a restore (a damaged record): counting one
/// per event, no stream reaches them, and below them no count can overflow.
const MAX_ARRIVAL: u64 = 1 << 62;

/// How many arrivals behind the front a full join prefetches its queue: an event's work
/// (~1 µs) between one eviction and the next leaves each prefetch that long to arrive.
const EVICTION_LOOKAHEAD: usize = 4;

/// How many places past its back the queue's storage is prefetched. An arrival's 64 bytes are
/// written to storage last touched a whole queue ago (or never): without the hint each
/// append waits for those lines to be read in before the stores behind it can drain (perf
/// put that wait in the code that follows the join). Sixteen arrivals of a partition are
/// tens of microseconds ahead, ample for memory to answer.
const QUEUE_AHEAD: usize = 16;

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
///
/// Layout, for speed: the entries live in one queue in arrival order (appending is
/// sequential, so it costs no cache miss), and a [`KeyIndex`] maps each waiting entry's key
/// to its arrival number. One index serves both sides, since a key never waits on both
/// (whichever of a prediction and its label comes second matches the first).
#[derive(Debug, Clone)]
pub struct LabelJoin {
    ttl_ms: i64,
    max_entries: usize,
    /// Every arrival from `front_arrival` to `next_arrival - 1`, in order.
    queue: ChunkedQueue<Queued>,
    /// Arrival number of the queue's front.
    front_arrival: u64,
    /// Key → arrival number of every waiting entry.
    index: KeyIndex,
    next_arrival: u64,
    /// Model ids of joined outcomes (few, as each one is also a monitor).
    models: Interner,
    /// Model versions (few; never full in practice, as each one is also a monitor).
    versions: Interner,
    /// Classes and group values.
    strings: Interner,
    /// The true classes of labels. Apart from `strings`: a regression target sent as text
    /// takes many values, and filling the interner with them must not cost predictions their
    /// classes and groups. Once full, a new value is copied instead (the label still counts).
    /// Like every interner it keeps what it holds for the join's life: at most
    /// [`Interner::CAPACITY`] strings (a few megabytes of free text per partition).
    truths: Interner,
    counters: JoinCounters,
    /// What the state changelog holds of the entries: it writes the difference, not the
    /// whole join (which may hold a million entries).
    book: ChangelogBook,
}

impl LabelJoin {
    /// A join whose entries wait at most `ttl_ms` of event time, holding at most
    /// `max_entries` arrivals.
    pub fn new(ttl_ms: i64, max_entries: usize) -> Self {
        Self {
            ttl_ms,
            max_entries: max_entries.max(1),
            queue: ChunkedQueue::default(),
            front_arrival: 0,
            index: KeyIndex::default(),
            next_arrival: 0,
            models: Interner::default(),
            versions: Interner::default(),
            strings: Interner::default(),
            truths: Interner::default(),
            counters: JoinCounters::default(),
            book: ChangelogBook::default(),
        }
    }

    /// The key under which (model_id, event_id) waits.
    pub fn key_of(model_id: &str, event_id: &str) -> u64 {
        join_key(model_id, event_id)
    }

    /// Brings into the cache what offering an event with `key` will touch in the (large)
    /// index, so the caller can do other work while memory answers. Only a hint.
    #[inline]
    pub fn prefetch(&self, key: u64) {
        self.index.prefetch(key);
        if let Some(back) = self.queue.back() {
            // Past the back chunk's end this names some other memory: a wasted hint, no more.
            crate::hint::prefetch_raw_all(std::ptr::from_ref(back).wrapping_add(QUEUE_AHEAD));
        }
        // A full join evicts its oldest arrival on the next insertion. Its queue entry was
        // last touched a whole queue ago, long out of the cache, and the index slot is found
        // through the key it holds: so the entries a few places behind the front are asked
        // for now (the front itself was, that many events ago) and the front's slot too.
        if self.queue.len() >= self.max_entries {
            if let Some(ahead) = self.queue.get(EVICTION_LOOKAHEAD) {
                crate::hint::prefetch_read_all(ahead);
            }
            if let Some(front) = self.queue.front() {
                self.index.prefetch(front.key);
            }
        }
    }

    /// The queue's entry for `arrival`.
    fn queued(&self, arrival: u64) -> Option<&Queued> {
        let position = usize::try_from(arrival.checked_sub(self.front_arrival)?).ok()?;
        self.queue.get(position)
    }

    /// Takes the entry waiting as `arrival` under `key` out of the join (leaving a tombstone
    /// in the queue) when it waits on the `wanted` side, and counts the match. `None` (and
    /// nothing changes) when it waits on the other side: the offer is a duplicate.
    fn take_match(&mut self, key: u64, arrival: u64, wanted: Side) -> Option<Waiting> {
        let position = usize::try_from(arrival.checked_sub(self.front_arrival)?).ok()?;
        let queued = self.queue.get_mut(position)?;
        let side = match queued.entry {
            Waiting::Prediction(_) => Side::Prediction,
            Waiting::Label(_) => Side::Label,
            Waiting::Left => return None,
        };
        if side != wanted {
            return None;
        }
        let taken = std::mem::replace(&mut queued.entry, Waiting::Left);
        self.index.remove(key);
        self.counters.joined += 1;
        self.book.removed(arrival);
        Some(taken)
    }

    /// Queues a new arrival with `key`, which the index reported vacant at `at`.
    fn arrive(&mut self, at: usize, key: u64, entry: Waiting) {
        let arrival = self.next_arrival;
        self.next_arrival += 1;
        self.queue.push_back(Queued { key, entry });
        self.index.insert_vacant(at, key, arrival);
        self.enforce_bound();
    }

    /// Searches `key`, first dropping an index entry that does not point at a waiting entry
    /// (never expected; it would otherwise block the key for good).
    fn probe(&mut self, key: u64) -> Probe {
        match self.index.probe(key) {
            Probe::Found(arrival)
                if self
                    .queued(arrival)
                    .is_none_or(|q| q.key != key || q.entry == Waiting::Left) =>
            {
                self.index.remove(key);
                self.index.probe(key)
            }
            probe => probe,
        }
    }

    /// The join's scalars, for the state changelog.
    pub fn meta(&self) -> JoinMeta {
        JoinMeta {
            next_arrival: self.next_arrival,
            next_removals: self.book.next_removals,
            counters: self.counters,
        }
    }

    /// The changelog records to write since the last call (`None`: delete the record): the
    /// batch of entries that arrived and still wait, a removals record for entries that left
    /// older batches, and deletions of batches and removals records that hold nothing live.
    ///
    /// # Errors
    /// [`StateError::Encode`] when a batch fails to encode (a bug): the changes are then
    /// incomplete and must not be committed.
    pub fn take_changes(&mut self) -> Result<Vec<(JoinRecord, Option<JoinValue>)>, StateError> {
        let mut changes: Vec<(JoinRecord, Option<JoinValue>)> =
            std::mem::take(&mut self.book.doomed)
                .into_iter()
                .map(|record| (record, None))
                .collect();
        self.write_new_batches(&mut changes)?;
        self.write_removals(&mut changes)?;
        Ok(changes)
    }

    /// Queue positions of the arrivals from `first` (inclusive) to `end` (exclusive).
    fn positions(&self, first: u64, end: u64) -> std::ops::Range<usize> {
        let place = |arrival: u64| {
            usize::try_from(arrival.saturating_sub(self.front_arrival))
                .map_or(self.queue.len(), |p| p.min(self.queue.len()))
        };
        place(first)..place(end).max(place(first))
    }

    /// Writes the entries that arrived since the last write and still wait.
    fn write_new_batches(
        &mut self,
        changes: &mut Vec<(JoinRecord, Option<JoinValue>)>,
    ) -> Result<(), StateError> {
        let positions = self.positions(self.book.written_through, self.next_arrival);
        let (mut start, mut count, mut bytes) = (positions.start, 0, 0);
        let mut first: Option<u64> = None;
        for position in positions.clone() {
            let Some((_, entry)) = self.entry_at(position) else {
                continue;
            };
            first.get_or_insert(self.front_arrival + position as u64);
            count += 1;
            bytes += entry.size_bound();
            if bytes >= BATCH_BYTES {
                self.open_batch(first.take(), start..position + 1, count, changes)?;
                (start, count, bytes) = (position + 1, 0, 0);
            }
        }
        self.open_batch(first, start..positions.end, count, changes)?;
        self.book.written_through = self.next_arrival;
        Ok(())
    }

    /// Writes the `count` waiting entries at `positions`, the first of which arrived as
    /// `first` (`None`: there are none, nothing is written), as a new batch record.
    fn open_batch(
        &mut self,
        first: Option<u64>,
        positions: std::ops::Range<usize>,
        count: usize,
        changes: &mut Vec<(JoinRecord, Option<JoinValue>)>,
    ) -> Result<(), StateError> {
        let Some(first) = first else {
            return Ok(());
        };
        let value = self.encode_batch(positions, count)?;
        self.book.batches.insert(
            first,
            BatchBook {
                written: count as u64,
                live: count as u64,
                removals: Vec::new(),
            },
        );
        changes.push((JoinRecord::Batch(first), Some(JoinValue::Batch(value))));
        Ok(())
    }

    /// The state record value of the `count` waiting entries at `positions`.
    fn encode_batch(
        &self,
        positions: std::ops::Range<usize>,
        count: usize,
    ) -> Result<Vec<u8>, StateError> {
        super::state::encode(&BatchView {
            join: self,
            positions,
            count,
        })
    }

    /// Accounts for the written entries that left: deletes emptied batches, rewrites mostly
    /// empty ones, and lists the rest in one removals record.
    fn write_removals(
        &mut self,
        changes: &mut Vec<(JoinRecord, Option<JoinValue>)>,
    ) -> Result<(), StateError> {
        let mut by_batch: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for arrival in std::mem::take(&mut self.book.removed) {
            // Every written entry is in the batch with the largest first arrival ≤ its own.
            if let Some((&first, batch)) = self.book.batches.range_mut(..=arrival).next_back() {
                batch.live = batch.live.saturating_sub(1);
                by_batch.entry(first).or_default().push(arrival);
            }
        }
        let sequence = self.book.next_removals;
        let (mut listed, mut named) = (Vec::new(), 0_u32);
        for (first, arrivals) in by_batch {
            let Some(batch) = self.book.batches.get(&first).cloned() else {
                continue;
            };
            let (at_most, of) = REWRITE_WHEN_LIVE_AT_MOST;
            if batch.live == 0 {
                self.book.batches.remove(&first);
                self.book.release(&batch, changes);
                changes.push((JoinRecord::Batch(first), None));
            } else if batch.live * of <= batch.written * at_most {
                let positions = self.batch_positions(first);
                let count = positions
                    .clone()
                    .filter(|&p| self.entry_at(p).is_some())
                    .count();
                let value = self.encode_batch(positions, count)?;
                self.book.release(&batch, changes);
                self.book.batches.insert(
                    first,
                    BatchBook {
                        written: count as u64,
                        live: count as u64,
                        removals: Vec::new(),
                    },
                );
                changes.push((JoinRecord::Batch(first), Some(JoinValue::Batch(value))));
            } else {
                listed.extend(arrivals);
                named += 1;
                if let Some(book) = self.book.batches.get_mut(&first) {
                    book.removals.push(sequence);
                }
            }
        }
        if named > 0 {
            listed.sort_unstable();
            self.book.removals.insert(sequence, named);
            self.book.next_removals += 1;
            changes.push((
                JoinRecord::Removals(sequence),
                Some(JoinValue::Removals(listed)),
            ));
        }
        Ok(())
    }

    /// The queue positions of the batch starting at arrival `first`.
    fn batch_positions(&self, first: u64) -> std::ops::Range<usize> {
        let end = self
            .book
            .batches
            .range(first + 1..)
            .next()
            .map_or(self.book.written_through, |(&next, _)| next);
        self.positions(first, end)
    }

    /// The key and the borrowed stored form of the entry at queue `position`, if it still
    /// waits.
    fn entry_at(&self, position: usize) -> Option<(u64, JoinEntryRef<'_>)> {
        let queued = self.queue.get(position)?;
        let arrival = self.front_arrival + position as u64;
        let entry = match &queued.entry {
            Waiting::Prediction(waiting) => JoinEntryRef::Prediction {
                arrival,
                summary: SummaryRef {
                    model_version: self.versions.resolve(waiting.version).unwrap_or_default(),
                    timestamp: waiting.timestamp,
                    score: waiting.score,
                    class: self.strings.resolve(waiting.class),
                    probabilities: ProbabilitiesRef {
                        strings: &self.strings,
                        pairs: waiting.probabilities.as_deref().unwrap_or_default(),
                    },
                    group: self.strings.resolve(waiting.group),
                },
            },
            Waiting::Label(waiting) => JoinEntryRef::Label {
                arrival,
                timestamp: waiting.timestamp,
                truth: &waiting.truth,
            },
            Waiting::Left => return None,
        };
        Some((queued.key, entry))
    }

    /// The self-contained form of the entry that arrived as `arrival`, if it still waits.
    fn entry_of(&self, arrival: u64, queued: &Queued) -> Option<JoinEntry> {
        match &queued.entry {
            Waiting::Prediction(waiting) => Some(JoinEntry::Prediction {
                arrival,
                summary: self.summary_of(waiting),
            }),
            Waiting::Label(waiting) => Some(JoinEntry::Label {
                arrival,
                timestamp: waiting.timestamp,
                truth: waiting.truth.clone(),
            }),
            Waiting::Left => None,
        }
    }

    /// A join rebuilt from its changelog: `meta`, the batch records and the removals
    /// records. Entries are queued in arrival order, with tombstones for the matched ones
    /// between them, so expiry and eviction continue in the order they would have. (The
    /// tombstones before the oldest waiting entry are not restored: after a restore the size
    /// bound may evict a little later than it would have.)
    ///
    /// A damaged or foreign changelog cannot make it fail or grow past its bound: entries
    /// further back than `max_entries` arrivals (a smaller bound than the one they were
    /// written under) are evicted, a second entry with the same arrival number or key is
    /// dropped, and arrival numbers no stream reaches leave the join empty. What is dropped
    /// this way is removed from the changelog at the next write.
    pub fn restore(
        ttl_ms: i64,
        max_entries: usize,
        meta: JoinMeta,
        batches: impl IntoIterator<Item = (u64, JoinBatch)>,
        removals: impl IntoIterator<Item = (u64, JoinRemovals)>,
    ) -> Self {
        let mut join = Self::new(ttl_ms, max_entries);
        let removals: BTreeMap<u64, JoinRemovals> = removals.into_iter().collect();
        let removed: HashSet<u64> = removals.values().flatten().copied().collect();
        let mut entries: Vec<(u64, JoinEntry)> = Vec::new();
        // Every batch record, live or not, for finding which batch an arrival belongs to.
        let mut alive: BTreeMap<u64, bool> = BTreeMap::new();
        for (first, batch) in batches {
            let written = batch.len() as u64;
            let before = entries.len();
            entries.extend(
                batch
                    .into_iter()
                    .filter(|(_, entry)| !removed.contains(&entry.arrival())),
            );
            let live = (entries.len() - before) as u64;
            alive.insert(first, live > 0);
            if live > 0 {
                join.book.batches.insert(
                    first,
                    BatchBook {
                        written,
                        live,
                        removals: Vec::new(),
                    },
                );
            } else {
                join.book.doomed.push(JoinRecord::Batch(first));
            }
        }
        for (sequence, arrivals) in removals {
            let named: BTreeSet<u64> = arrivals
                .iter()
                .filter_map(|&arrival| alive.range(..=arrival).next_back())
                .filter(|(_, &live)| live)
                .map(|(&first, _)| first)
                .collect();
            if named.is_empty() {
                join.book.doomed.push(JoinRecord::Removals(sequence));
                continue;
            }
            for first in &named {
                if let Some(batch) = join.book.batches.get_mut(first) {
                    batch.removals.push(sequence);
                }
            }
            join.book.removals.insert(sequence, named.len() as u32);
        }
        entries.sort_by_key(|(_, entry)| entry.arrival());
        let newest = entries.last().map_or(0, |(_, entry)| entry.arrival() + 1);
        let next_arrival = meta.next_arrival.max(newest);
        join.book.written_through = next_arrival;
        join.book.next_removals = meta.next_removals;
        join.counters = meta.counters;
        if next_arrival > MAX_ARRIVAL {
            // Damaged: start empty, and let the next write delete every record.
            join.book.doomed.extend(
                std::mem::take(&mut join.book.batches)
                    .into_keys()
                    .map(JoinRecord::Batch),
            );
            join.book.doomed.extend(
                std::mem::take(&mut join.book.removals)
                    .into_keys()
                    .map(JoinRecord::Removals),
            );
            join.book.written_through = 0;
            return join;
        }
        let oldest_kept = next_arrival.saturating_sub(join.max_entries as u64);
        join.front_arrival = entries
            .first()
            .map_or(next_arrival, |(_, entry)| entry.arrival().max(oldest_kept));
        join.next_arrival = join.front_arrival;
        for (key, entry) in entries {
            let arrival = entry.arrival();
            let Probe::Vacant(at) = join.index.probe(key) else {
                join.book.removed(arrival);
                continue;
            };
            if arrival < join.next_arrival {
                // Older than the bound allows (evicted), or a repeated arrival number.
                if arrival < oldest_kept {
                    join.counters.evicted += 1;
                }
                join.book.removed(arrival);
                continue;
            }
            join.pad_to(arrival);
            let waiting = match entry {
                JoinEntry::Prediction { summary, .. } => {
                    Waiting::Prediction(join.waiting_prediction(&summary))
                }
                JoinEntry::Label {
                    timestamp, truth, ..
                } => Waiting::Label(WaitingLabel { timestamp, truth }),
            };
            join.queue.push_back(Queued {
                key,
                entry: waiting,
            });
            join.index.insert_vacant(at, key, arrival);
            join.next_arrival = arrival + 1;
        }
        join.pad_to(next_arrival);
        join
    }

    /// Fills the queue with tombstones up to (not including) `arrival`.
    fn pad_to(&mut self, arrival: u64) {
        while self.next_arrival < arrival {
            self.queue.push_back(Queued {
                key: 0,
                entry: Waiting::Left,
            });
            self.next_arrival += 1;
        }
    }

    fn waiting_prediction(&mut self, summary: &PredictionSummary) -> WaitingPrediction {
        let strings = &mut self.strings;
        WaitingPrediction {
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

    /// A label's value, its text the join's shared copy.
    fn truth_of(&mut self, label: &LabelValue<'_>) -> Truth {
        match label {
            LabelValue::Text(text) => Truth::Class(self.truths.share(text)),
            LabelValue::Number(x) => Truth::Number(*x),
        }
    }

    /// What a waiting prediction holds, with its strings resolved (shared, not copied).
    fn summary_of(&self, prediction: &WaitingPrediction) -> PredictionSummary {
        let text = |id: TextId| self.strings.shared(id);
        PredictionSummary {
            model_version: self
                .versions
                .shared(prediction.version)
                .unwrap_or_else(|| Arc::from("")),
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

    /// Every waiting entry with its key, in arrival order.
    pub fn entries(&self) -> Vec<(u64, JoinEntry)> {
        self.queue
            .iter()
            .enumerate()
            .filter_map(|(position, queued)| {
                let entry = self.entry_of(self.front_arrival + position as u64, queued)?;
                Some((queued.key, entry))
            })
            .collect()
    }

    /// Counters so far.
    pub fn counters(&self) -> JoinCounters {
        self.counters
    }

    /// Entries waiting for their match.
    pub fn waiting(&self) -> usize {
        self.index.len()
    }

    /// Offers a prediction: returns the joined outcome when its label was already waiting,
    /// otherwise the prediction waits.
    pub fn offer_prediction(
        &mut self,
        event: &PredictionEvent<'_>,
        sensitive_attribute: Option<&str>,
    ) -> Option<JoinedOutcome> {
        let key = join_key(&event.model_id, &event.event_id);
        self.offer_prediction_keyed(key, event, sensitive_attribute)
    }

    /// [`Self::offer_prediction`] with the event's key already computed ([`Self::key_of`]),
    /// e.g. to [`Self::prefetch`] it first.
    pub fn offer_prediction_keyed(
        &mut self,
        key: u64,
        event: &PredictionEvent<'_>,
        sensitive_attribute: Option<&str>,
    ) -> Option<JoinedOutcome> {
        // One probe of the (large) index for the match, the duplicate check and the insertion.
        let at = match self.probe(key) {
            Probe::Found(arrival) => {
                let Some(Waiting::Label(label)) = self.take_match(key, arrival, Side::Label) else {
                    self.counters.duplicate_predictions += 1;
                    return None;
                };
                return Some(JoinedOutcome {
                    model_id: self.models.share(&event.model_id),
                    event_id: event.event_id.to_string(),
                    prediction: self.summary_of_event(event, sensitive_attribute),
                    truth: label.truth,
                    label_timestamp: label.timestamp,
                });
            }
            Probe::Vacant(at) => at,
        };
        let waiting = self.waiting_of_event(event, sensitive_attribute);
        self.arrive(at, key, Waiting::Prediction(waiting));
        None
    }

    /// The summary of a prediction that matched a waiting label, its strings the join's
    /// shared copies (exact even when an interner is full: then a copy of its own).
    fn summary_of_event(
        &mut self,
        event: &PredictionEvent<'_>,
        sensitive_attribute: Option<&str>,
    ) -> PredictionSummary {
        let strings = &mut self.strings;
        PredictionSummary {
            model_version: self.versions.share(&event.model_version),
            timestamp: event.timestamp,
            score: event.prediction.score,
            class: event.prediction.label.as_deref().map(|c| strings.share(c)),
            probabilities: event
                .prediction
                .probabilities
                .iter()
                .flatten()
                .map(|(class, p)| (strings.share(class), *p))
                .collect(),
            group: group_of(event, sensitive_attribute).map(|group| strings.share(group)),
        }
    }

    /// What the join keeps of a prediction event while it waits, its strings interned.
    fn waiting_of_event(
        &mut self,
        event: &PredictionEvent<'_>,
        sensitive_attribute: Option<&str>,
    ) -> WaitingPrediction {
        let strings = &mut self.strings;
        WaitingPrediction {
            timestamp: event.timestamp,
            score: event.prediction.score,
            version: self.versions.intern(&event.model_version),
            class: event
                .prediction
                .label
                .as_deref()
                .map_or(NONE, |c| strings.intern(c)),
            group: group_of(event, sensitive_attribute).map_or(NONE, |group| strings.intern(group)),
            probabilities: event.prediction.probabilities.as_ref().map(|p| {
                p.iter()
                    .map(|(class, probability)| (strings.intern(class), *probability))
                    .collect()
            }),
        }
    }

    /// Offers a label: returns the joined outcome when its prediction was waiting, otherwise
    /// the label waits.
    pub fn offer_label(&mut self, event: &LabelEvent<'_>) -> Option<JoinedOutcome> {
        let key = join_key(&event.model_id, &event.event_id);
        let at = match self.probe(key) {
            Probe::Found(arrival) => {
                let Some(Waiting::Prediction(prediction)) =
                    self.take_match(key, arrival, Side::Prediction)
                else {
                    self.counters.duplicate_labels += 1;
                    return None;
                };
                return Some(JoinedOutcome {
                    model_id: self.models.share(&event.model_id),
                    event_id: event.event_id.to_string(),
                    prediction: self.summary_of(&prediction),
                    truth: self.truth_of(&event.label),
                    label_timestamp: event.timestamp,
                });
            }
            Probe::Vacant(at) => at,
        };
        let waiting = WaitingLabel {
            timestamp: event.timestamp,
            truth: self.truth_of(&event.label),
        };
        self.arrive(at, key, Waiting::Label(waiting));
        None
    }

    /// Forgets entries older than the TTL with respect to `now` (the partition's event-time
    /// clock), in arrival order.
    pub fn expire(&mut self, now: i64) {
        let horizon = now.saturating_sub(self.ttl_ms);
        while let Some(front) = self.queue.front() {
            let (timestamp, side) = match &front.entry {
                Waiting::Prediction(p) => (p.timestamp, Side::Prediction),
                Waiting::Label(l) => (l.timestamp, Side::Label),
                // A tombstone (matched): drop it.
                Waiting::Left => {
                    self.remove_front();
                    continue;
                }
            };
            // Arrival order is close to time order; an entry that is not yet due keeps the
            // ones behind it (they expire at most a little late, never early).
            if timestamp >= horizon {
                break;
            }
            self.remove_front();
            match side {
                Side::Prediction => self.counters.expired_predictions += 1,
                Side::Label => self.counters.expired_labels += 1,
            }
        }
    }

    /// Removes the front arrival and its entry (when still waiting); true when it waited.
    fn remove_front(&mut self) -> bool {
        let Some(front) = self.queue.front() else {
            return false;
        };
        let key = front.key;
        let waited = !matches!(front.entry, Waiting::Left);
        self.queue.pop_front();
        let arrival = self.front_arrival;
        self.front_arrival += 1;
        if !waited {
            return false;
        }
        self.index.remove(key);
        self.book.removed(arrival);
        true
    }

    fn enforce_bound(&mut self) {
        while self.queue.len() > self.max_entries {
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
    use proptest::prelude::*;

    proptest! {
        /// Interning names each distinct text by one id, whatever the order and however the
        /// texts share fingerprint slots (short texts from a small alphabet collide often).
        #[test]
        fn the_interner_gives_one_id_per_distinct_text(
            texts in proptest::collection::vec("[ab01]{0,3}", 1..200),
        ) {
            let mut interner = Interner::default();
            let mut ids: HashMap<String, TextId> = HashMap::new();
            for text in &texts {
                let id = interner.intern(text);
                prop_assert_eq!(*ids.entry(text.clone()).or_insert(id), id);
                prop_assert_eq!(interner.resolve(id), Some(text.as_str()));
            }
            let distinct: HashSet<TextId> = ids.values().copied().collect();
            prop_assert_eq!(distinct.len(), ids.len());
        }
    }

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

    /// The batch records are encoded from the queue without building [`JoinEntry`] values;
    /// the bytes must be those of the entries themselves, which is what restores (and
    /// earlier releases) read: every kind of entry, every optional part present and absent.
    #[test]
    fn batches_encode_exactly_as_their_entries() {
        let mut join = LabelJoin::new(i64::MAX / 4, 1_000);
        for i in 0..300_i64 {
            let mut event = prediction(&format!("p{i}"), i);
            event.model_version = Cow::Owned(format!("v{}", i % 3));
            event.prediction.score = (i % 5 != 0).then_some(i as f64 / 300.0);
            event.prediction.label = (i % 4 != 0).then(|| Cow::Owned(format!("class-{}", i % 6)));
            event.prediction.probabilities = (i % 3 == 0).then(|| {
                vec![
                    (Cow::Borrowed("a"), 0.25),
                    (Cow::Owned(format!("b{}", i % 2)), 0.75),
                ]
            });
            event.attributes = vec![(Cow::Borrowed("region"), Cow::Owned(format!("r{}", i % 7)))];
            let attribute = (i % 2 == 0).then_some("region");
            join.offer_prediction(&event, attribute);
            // Labels waiting for predictions that never come, of both kinds, and matches
            // that leave tombstones between waiting entries.
            let mut waiting = label(&format!("l{i}"), i);
            if i % 2 == 0 {
                waiting.label = LabelValue::Number(i as f64 * 0.5);
            }
            join.offer_label(&waiting);
            if i % 5 == 1 {
                join.offer_label(&label(&format!("p{i}"), i));
            }
        }
        let entries = join.entries();
        assert!(entries.len() > 400, "{} waiting", entries.len());
        let view = join
            .encode_batch(0..join.queue.len(), entries.len())
            .expect("batch encodes");
        assert_eq!(
            view,
            crate::monitor::state::encode(&entries).expect("entries encode")
        );
    }

    #[test]
    fn a_batch_whose_length_disagrees_with_its_entries_fails_to_encode() {
        let mut join = LabelJoin::new(i64::MAX / 4, 1_000);
        for i in 0..10_i64 {
            join.offer_prediction(&prediction(&format!("p{i}"), i), None);
        }
        // One matched: its tombstone is skipped, so nine entries wait at ten positions.
        join.offer_label(&label("p3", 3));
        let positions = 0..join.queue.len();
        assert!(join.encode_batch(positions.clone(), 9).is_ok());
        for wrong in [8, 10] {
            match join.encode_batch(positions.clone(), wrong) {
                Err(StateError::Encode(message)) => {
                    assert!(message.contains("disagree"), "{message}");
                }
                other => panic!("a batch of {wrong} encoded as {other:?}"),
            }
        }
    }

    #[test]
    fn joins_in_either_order() {
        let mut join = LabelJoin::new(60_000, 100);
        assert!(join
            .offer_prediction(&prediction("a", 1_000), None)
            .is_none());
        let outcome = join.offer_label(&label("a", 5_000)).unwrap();
        assert_eq!(&*outcome.prediction.model_version, "v1");
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

    /// Outcomes and waiting entries share their strings (`Arc<str>`), where releases up to
    /// `880c504` owned them (`String`): the state they write and read must not change with
    /// it, or a restart after an upgrade could not read the state it left.
    #[test]
    fn shared_strings_are_written_and_read_as_owned_ones_were() {
        #[derive(Serialize)]
        struct OwnedSummary {
            model_version: String,
            timestamp: i64,
            score: Option<f64>,
            class: Option<String>,
            probabilities: Vec<(String, f64)>,
            group: Option<String>,
        }
        #[derive(Serialize)]
        enum OwnedTruth {
            Class(String),
        }
        #[derive(Serialize)]
        struct OwnedOutcome {
            model_id: String,
            event_id: String,
            prediction: OwnedSummary,
            truth: OwnedTruth,
            label_timestamp: i64,
        }
        let mut join = LabelJoin::new(60_000, 100);
        let mut multiclass = prediction("a", 1_000);
        multiclass.prediction.probabilities =
            Some(vec![(Cow::Borrowed("0"), 0.25), (Cow::Borrowed("1"), 0.75)]);
        join.offer_prediction(&multiclass, Some("gender"));
        let outcome = join.offer_label(&label("a", 5_000)).unwrap();
        let owned = OwnedOutcome {
            model_id: outcome.model_id.to_string(),
            event_id: "a".to_owned(),
            prediction: OwnedSummary {
                model_version: "v1".to_owned(),
                timestamp: 1_000,
                score: outcome.prediction.score,
                class: outcome.prediction.class.as_deref().map(str::to_owned),
                probabilities: vec![("0".to_owned(), 0.25), ("1".to_owned(), 0.75)],
                group: Some("f".to_owned()),
            },
            truth: OwnedTruth::Class("0".to_owned()),
            label_timestamp: 5_000,
        };
        let written = crate::monitor::state::encode(&outcome).unwrap();
        assert_eq!(written, crate::monitor::state::encode(&owned).unwrap());
        let read: JoinedOutcome = crate::monitor::state::decode(&written).unwrap();
        assert_eq!(read, outcome);
    }

    /// Labels sent as free text (a regression target written as a string) take as many
    /// distinct values as there are labels. They fill an interner of their own: every label
    /// still joins with its own value, and predictions keep their classes and groups.
    #[test]
    fn many_distinct_text_labels_cost_predictions_nothing() {
        let mut join = LabelJoin::new(i64::MAX / 4, 1_000_000);
        for i in 0..(Interner::CAPACITY + 100) {
            let id = format!("p{i}");
            join.offer_prediction(&prediction(&id, 1_000), Some("gender"));
            let mut answer = label(&id, 2_000);
            answer.label = LabelValue::Text(Cow::Owned(format!("{i}.5")));
            let outcome = join.offer_label(&answer).expect("its prediction waits");
            assert_eq!(outcome.truth, Truth::Class(format!("{i}.5").into()));
        }
        let mut late = prediction("late", 3_000);
        late.prediction.label = Some(Cow::Borrowed("a class never seen before"));
        late.attributes = vec![(Cow::Borrowed("gender"), Cow::Borrowed("x"))];
        join.offer_prediction(&late, Some("gender"));
        let outcome = join.offer_label(&label("late", 4_000)).unwrap();
        assert_eq!(
            outcome.prediction.class.as_deref(),
            Some("a class never seen before")
        );
        assert_eq!(outcome.prediction.group.as_deref(), Some("x"));
    }

    /// A prediction that completes a join (its label came first) is summarised from the
    /// event itself: its class and group stay exact when the interner is full (a waiting
    /// prediction's would read as absent, as the interner's bound documents).
    #[test]
    fn a_prediction_after_its_label_keeps_its_strings_when_the_interner_is_full() {
        let mut join = LabelJoin::new(i64::MAX / 4, 1_000_000);
        for i in 0..Interner::CAPACITY {
            let mut event = prediction(&format!("p{i}"), 1_000);
            event.prediction.label = Some(Cow::Owned(format!("class {i}")));
            join.offer_prediction(&event, None);
        }
        assert!(join.offer_label(&label("late", 2_000)).is_none());
        let mut late = prediction("late", 3_000);
        late.prediction.label = Some(Cow::Borrowed("a class never seen before"));
        late.attributes = vec![(Cow::Borrowed("gender"), Cow::Borrowed("x"))];
        let outcome = join.offer_prediction(&late, Some("gender")).unwrap();
        assert_eq!(
            outcome.prediction.class.as_deref(),
            Some("a class never seen before")
        );
        assert_eq!(outcome.prediction.group.as_deref(), Some("x"));
        assert_eq!(&*outcome.prediction.model_version, "v1");
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
        assert!(join.queue.len() <= 1_000);
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

    /// A compacted changelog of the join: the latest value of each record.
    type Log = BTreeMap<JoinRecord, JoinValue>;

    fn write(log: &mut Log, join: &mut LabelJoin) -> usize {
        let changes = join.take_changes().expect("state encodes");
        let written = changes.len();
        for (record, value) in changes {
            match value {
                Some(value) => log.insert(record, value),
                None => log.remove(&record),
            };
        }
        written
    }

    /// A batch record's entries, read back as a restore reads them.
    fn decoded(encoded: &[u8]) -> JoinBatch {
        crate::monitor::state::decode(encoded).expect("a batch record decodes")
    }

    fn restored(log: &Log, meta: JoinMeta, max_entries: usize) -> LabelJoin {
        let batches = log
            .iter()
            .filter_map(|(record, value)| match (record, value) {
                (JoinRecord::Batch(first), JoinValue::Batch(encoded)) => {
                    Some((*first, decoded(encoded)))
                }
                _ => None,
            });
        let removals = log
            .iter()
            .filter_map(|(record, value)| match (record, value) {
                (JoinRecord::Removals(sequence), JoinValue::Removals(arrivals)) => {
                    Some((*sequence, arrivals.clone()))
                }
                _ => None,
            });
        LabelJoin::restore(10_000, max_entries, meta, batches, removals)
    }

    #[test]
    fn the_changelog_restores_exactly_the_waiting_entries_and_keeps_nothing_stale() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        for seed in 0..40 {
            let mut rng = StdRng::seed_from_u64(seed);
            let max_entries = rng.random_range(50..400);
            let mut join = LabelJoin::new(10_000, max_entries);
            let mut log = Log::new();
            let (mut next_id, mut now) = (0_u64, 0_i64);
            for step in 0..3_000 {
                match rng.random_range(0..10) {
                    // Predictions, most of which get a label later (or earlier).
                    0..=4 => {
                        join.offer_prediction(&prediction(&format!("e{next_id}"), now), None);
                        next_id += 1;
                    }
                    5..=7 if next_id > 0 => {
                        let back = rng.random_range(0..next_id.min(300)) as i64;
                        let id = next_id as i64 - 1 - back + rng.random_range(0..3);
                        join.offer_label(&label(&format!("e{id}"), now));
                    }
                    _ => {
                        now += rng.random_range(0..400);
                        join.expire(now);
                    }
                }
                if rng.random_range(0..25) == 0 || step == 2_999 {
                    write(&mut log, &mut join);
                    let again = restored(&log, join.meta(), max_entries);
                    assert_eq!(again.entries(), join.entries(), "seed {seed} step {step}");
                    assert_eq!(again.meta(), join.meta());
                    // Half the time carry on from the restored join: its account of the
                    // changelog must be as good as the original's.
                    if rng.random_bool(0.5) {
                        join = again;
                    }
                }
            }
            // When nothing waits any more, nothing of the join stays in the changelog.
            join.expire(i64::MAX);
            write(&mut log, &mut join);
            assert_eq!(join.waiting(), 0);
            assert!(
                log.is_empty(),
                "seed {seed}: stale records {:?}",
                log.keys()
            );
        }
    }

    #[test]
    fn a_smaller_bound_at_restore_evicts_the_oldest_and_drops_them_from_the_changelog() {
        let mut join = LabelJoin::new(i64::MAX, 1_000);
        let mut log = Log::new();
        for i in 0..300 {
            join.offer_prediction(&prediction(&format!("p{i}"), i), None);
        }
        // A matched entry in the middle leaves a tombstone, which a restore keeps.
        join.offer_label(&label("p250", 300));
        write(&mut log, &mut join);
        let mut smaller = restored(&log, join.meta(), 100);
        let kept: Vec<u64> = smaller.entries().iter().map(|(_, e)| e.arrival()).collect();
        let expected: Vec<u64> = (200..300).filter(|&a| a != 250).collect();
        assert_eq!(
            kept, expected,
            "the newest 100 arrivals, the tombstone among them"
        );
        assert_eq!(smaller.counters().evicted, 200);
        // The evicted entries leave the changelog at the next write, so a second restore
        // (with the old bound) does not bring them back.
        write(&mut log, &mut smaller);
        let again = restored(&log, smaller.meta(), 1_000);
        assert_eq!(again.entries(), smaller.entries());
        // Arrivals go on from where they were.
        smaller.offer_prediction(&prediction("new", 400), None);
        let last = smaller.entries().last().map(|(_, e)| e.arrival());
        assert_eq!(last, Some(300));
        // 99 waited (100 arrivals, one of them matched); the bound evicted arrival 200.
        assert_eq!(smaller.waiting(), 99);
        assert_eq!(smaller.entries()[0].1.arrival(), 201);
    }

    #[test]
    fn a_damaged_changelog_restores_without_a_panic_or_a_duplicate() {
        let entry = |arrival: u64| JoinEntry::Label {
            arrival,
            timestamp: 0,
            truth: Truth::Number(1.0),
        };
        let meta = |next_arrival: u64| JoinMeta {
            next_arrival,
            ..JoinMeta::default()
        };
        // The same key twice, the same arrival twice, and an arrival past `next_arrival`:
        // the second (7, 1) is dropped (its key waits already), so arrival 1 is key 8's.
        let batches = vec![
            (0, vec![(7, entry(0)), (7, entry(1)), (8, entry(1))]),
            (5, vec![(9, entry(5))]),
        ];
        let join = LabelJoin::restore(10_000, 1_000, meta(3), batches.clone(), Vec::new());
        let kept: Vec<(u64, u64)> = join
            .entries()
            .iter()
            .map(|(key, e)| (*key, e.arrival()))
            .collect();
        assert_eq!(kept, vec![(7, 0), (8, 1), (9, 5)]);
        assert_eq!(join.meta().next_arrival, 6);
        // Arrival numbers no stream reaches: nothing is restored, and every record of the
        // join is deleted at the next write.
        let mut join = LabelJoin::restore(
            10_000,
            1_000,
            meta(u64::MAX - 1),
            batches,
            vec![(0, vec![1])],
        );
        assert_eq!(join.waiting(), 0);
        let changes = join.take_changes().expect("state encodes");
        assert_eq!(changes.len(), 3, "{changes:?}");
        assert!(changes.iter().all(|(_, value)| value.is_none()));
        join.offer_prediction(&prediction("p", 0), None);
        assert_eq!(join.waiting(), 1);
    }

    #[test]
    fn a_commit_writes_a_few_records_not_one_per_entry() {
        let mut join = LabelJoin::new(i64::MAX, 1_000_000);
        let mut log = Log::new();
        for i in 0..10_000 {
            join.offer_prediction(&prediction(&format!("p{i}"), i), None);
        }
        assert_eq!(write(&mut log, &mut join), 1, "one batch");
        // Labels for a scattered tenth: one removals record.
        for i in (0..10_000).step_by(10) {
            join.offer_label(&label(&format!("p{i}"), 20_000));
        }
        assert_eq!(write(&mut log, &mut join), 1, "one removals record");
        // Most of the rest: the batch is rewritten with what is left, and the removals record,
        // now useless, is deleted.
        for i in (0..10_000).filter(|i| i % 10 != 0 && i % 7 != 0) {
            join.offer_label(&label(&format!("p{i}"), 20_000));
        }
        assert_eq!(write(&mut log, &mut join), 2);
        assert_eq!(log.len(), 1);
        let Some(JoinValue::Batch(left)) = log.values().next() else {
            panic!("a batch");
        };
        assert_eq!(decoded(left).len(), join.waiting());
        assert_eq!(
            restored(&log, join.meta(), 1_000_000).entries(),
            join.entries()
        );
    }

    #[test]
    fn heavy_intervals_are_split_into_batches_the_broker_accepts() {
        let mut join = LabelJoin::new(i64::MAX, 1_000_000);
        for i in 0..60_000 {
            let mut event = prediction(&format!("p{i}"), i);
            let class = format!("a-rather-long-class-name-{}", i % 1_000);
            event.prediction.label = Some(Cow::Owned(class));
            join.offer_prediction(&event, None);
        }
        let changes = join.take_changes().expect("state encodes");
        assert!(changes.len() > 1, "{} records", changes.len());
        let mut total = 0;
        for (_, value) in &changes {
            let Some(JoinValue::Batch(encoded)) = value else {
                panic!("batches only");
            };
            total += decoded(encoded).len();
            assert!(encoded.len() <= BATCH_BYTES, "{} bytes", encoded.len());
        }
        assert_eq!(total, 60_000);
    }
}
