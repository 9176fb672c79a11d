//! The monitor of one (model_id, model_version): its feature trackers, prediction trackers,
//! alert book and retrain state.
//!
//! Owns: warm-up → reference freeze, per-event recording, evaluation at pane close, alert
//! transitions and data-drift retrain requests. Pure and deterministic: features are
//! evaluated in name order, and every time is an event time.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::detect::adwin::Adwin;
use crate::event::{FeatureValue, PredictionEvent};

use super::fairness::FairnessCheck;
use super::join::JoinedOutcome;
use super::performance::{
    PerformanceEvaluation, PerformanceTracker, RuleOutcome, CONCEPT_DRIFT_DETECTOR,
};
use super::quality::QualityReport;
use super::schedule::CronSchedule;
use super::settings::TaskKind;

use super::feature::{
    DetectorResult, Observation, QualityCounts, Reference, SeriesEvaluation, SeriesTracker,
    WarmupValues,
};
use super::output::{AlertState, DriftAlert, OffsetRange, Output, RetrainRequest, RetrainTrigger};
use super::policy::{benjamini_hochberg, AlertBook, Verdict};
use super::settings::{DetectorSettings, FeatureKind, MonitorSettings};

/// Subject name of the prediction (score and class) in alerts.
pub const PREDICTION_SUBJECT: &str = "__prediction__";
/// Subject name of the model's quality (performance rules, concept drift) in alerts.
pub const PERFORMANCE_SUBJECT: &str = "__performance__";
/// Subject name of the fairness rules in alerts.
pub const FAIRNESS_SUBJECT: &str = "__fairness__";

/// Byte equality without a `memcmp` call: feature names are short, and on the per-feature path
/// the call's overhead was most of the comparison (~5 % of the in-process profile).
#[inline]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    // Eight bytes per step, then the rest one by one.
    let (a_words, b_words) = (a.chunks_exact(8), b.chunks_exact(8));
    let (a_rest, b_rest) = (a_words.remainder(), b_words.remainder());
    let word = |chunk: &[u8]| chunk.try_into().map_or(0, u64::from_ne_bytes);
    let words_differ = a_words
        .zip(b_words)
        .fold(0u64, |diff, (x, y)| diff | (word(x) ^ word(y)));
    let rest_differs = a_rest
        .iter()
        .zip(b_rest)
        .fold(0u8, |diff, (x, y)| diff | (x ^ y));
    words_differ == 0 && rest_differs == 0
}

/// Where an event came from, so retrain requests can point at their data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourcePosition<'a> {
    /// Topic (or input file for replays).
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Offset (or line number for replays).
    pub offset: i64,
    /// When the record was written (Kafka's record timestamp: the producer's create time or
    /// the broker's append time), when known. Bounds how far ahead an event's own time can
    /// honestly be (see [`crate::detect::window::PaneClock::admit`]).
    pub written_at: Option<i64>,
}

/// First and last offset seen per (topic, partition) in one pane.
/// Entries are few (one per input topic-partition feeding the model), so a vector searched by
/// borrowed topic name keeps the per-event path free of allocation.
type PaneOffsets = Vec<PaneOffsetRange>;

/// First and last offset of one (topic, partition) in one pane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PaneOffsetRange {
    topic: String,
    partition: i32,
    first: i64,
    last: i64,
}

/// One feature slot of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FeatureSlot {
    name: String,
    tracker: SeriesTracker,
    #[serde(with = "super::settings::detectors_as_overrides")]
    detectors: DetectorSettings,
    ignored: bool,
    /// Sequence number of the last event that carried this feature.
    last_seen: u64,
}

/// Quality of one version's window at one evaluation (for metrics and replay reports).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QualityRecord {
    /// Model.
    pub model_id: String,
    /// Version.
    pub model_version: String,
    /// End of the evaluated window (event time, ms).
    pub window_end: i64,
    /// The window's quality.
    pub quality: QualityReport,
}

/// Where evaluations put what they produce.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Collected {
    /// Alerts and retrain requests, in production order.
    pub outputs: Vec<Output>,
    /// Detector results.
    pub evaluations: Vec<EvaluationRecord>,
    /// Window quality of versions with joined labels.
    pub quality: Vec<QualityRecord>,
}

/// An evaluation outcome kept for status pages and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationRecord {
    /// Model.
    pub model_id: String,
    /// Version.
    pub model_version: String,
    /// Feature or `__prediction__`.
    pub subject: String,
    /// Detector result.
    pub result: DetectorResult,
    /// p-value after Benjamini–Hochberg, when applied.
    pub adjusted_p_value: Option<f64>,
    /// Whether this evaluation breached.
    pub breach: bool,
    /// End of the evaluated window (event time, ms).
    pub window_end: i64,
}

/// The event-time span of an evaluated window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: i64,
    end: i64,
}

/// Phase of a model version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Collecting the reference.
    WarmingUp,
    /// Reference frozen; windows evaluated.
    Monitoring,
}

/// Monitor of one model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMonitor {
    model_id: String,
    model_version: String,
    warmup_target: u64,
    events: u64,
    phase: Phase,
    features: Vec<FeatureSlot>,
    by_name: BTreeMap<String, usize>,
    /// Slot of the feature at each position of the previous event: producers send features in
    /// a stable order, so one string comparison usually replaces a map lookup.
    order: Vec<usize>,
    score: SeriesTracker,
    class: SeriesTracker,
    score_adwin: Option<Adwin>,
    adwin_detections_since_evaluation: u64,
    alerts: AlertBook,
    /// Id of the FIRING alert of each currently firing (subject, detector).
    firing_alert_ids: BTreeMap<(String, String), String>,
    /// Panes that received events and have not closed yet.
    open_panes: BTreeSet<i64>,
    /// Offset ranges per pane, for retrain requests.
    pane_offsets: BTreeMap<i64, PaneOffsets>,
    last_retrain_at: Option<i64>,
    /// Latest result per (subject, detector).
    latest: BTreeMap<(String, String), EvaluationRecord>,
    #[serde(with = "super::settings::detectors_as_overrides")]
    prediction_detectors: DetectorSettings,
    /// Label join results: quality, concept drift, fairness.
    performance: PerformanceTracker,
    /// Latest quality evaluation, for status pages (rebuilt at the next evaluation).
    #[serde(skip)]
    latest_performance: Option<PerformanceStatus>,
    /// Largest event time of this version's predictions.
    last_event_time: Option<i64>,
    /// Scheduled retraining, on event time.
    schedule: Option<CronSchedule>,
    /// Event time up to which the schedule has been checked.
    schedule_checked_through: Option<i64>,
    /// Changed since the state changelog last wrote it.
    #[serde(skip)]
    changed: bool,
    /// References set or replaced since the state changelog last wrote them (at creation and
    /// when warm-up freezes: rarely, while the rest changes at every commit).
    #[serde(skip)]
    references_changed: bool,
    /// What the state changelog holds of the warm-up samples' numbers.
    #[serde(skip)]
    warmup_log: WarmupLog,
}

/// A series of a monitor, as warm-up chunks name it: by feature slot, not by position, so
/// that a feature first seen between two chunks shifts nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeriesId {
    /// The feature in this slot.
    Feature(u32),
    /// The prediction's score.
    Score,
    /// The predicted class.
    Class,
}

/// The numbers and category counts added to a monitor's warm-up samples between two commits:
/// one record of the state changelog, written once and never rewritten. The warm-up sample is
/// the bulk of a warming monitor (up to `warmup_events` numbers per numeric series, as many
/// categories for an id-like one); written whole with the monitor at every commit, a slow
/// model's warm-up cost state-topic bytes growing with the square of its length (hundreds of
/// MB for 10,000 events at 50 events/s).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WarmupChunk {
    /// New numbers per series that received any.
    pub series: Vec<(SeriesId, Vec<f64>)>,
    /// Category counts added per series that received any.
    pub categories: Vec<(SeriesId, Vec<(String, u64)>)>,
}

/// What the state changelog must write about a monitor's warm-up at a commit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WarmupChanges {
    /// The next chunk (its number, its numbers), when numbers arrived since the last one.
    pub chunk: Option<(u32, WarmupChunk)>,
    /// Chunks to delete: all of them once the reference is frozen.
    pub deleted: std::ops::Range<u32>,
}

/// How much of each warm-up sample the state changelog's chunks hold.
#[derive(Debug, Clone, Default, PartialEq)]
struct WarmupLog {
    /// Chunks written (numbered from 0) and counted in the monitor's record.
    chunks: u32,
    /// Chunk numbers below this may exist in the changelog (the written ones, and any
    /// written by a commit that did not complete): what the freeze deletes.
    extent: u32,
    /// Numbers of each feature slot's sample already in chunks (missing slots: none).
    features: Vec<usize>,
    score: usize,
    class: usize,
}

/// The frozen references of a monitor's series, as the state changelog stores them: apart
/// from the monitor's record, because they are most of its size (the exact reference sample
/// of every numeric series) and change only when warm-up ends, while windows and detectors
/// change at every commit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SeriesReferences {
    /// Per feature slot; slots created after the record was written have none.
    features: Vec<Option<Reference>>,
    /// The score's reference.
    score: Option<Reference>,
    /// The predicted class's reference.
    class: Option<Reference>,
}

/// The frozen reference of a model, built offline from training data by
/// `driftwatch baseline` and used instead of a warm-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineState {
    /// Frozen feature trackers, by feature name.
    pub features: Vec<(String, SeriesTracker)>,
    /// Frozen score tracker.
    pub score: SeriesTracker,
    /// Frozen predicted-class tracker.
    pub class: SeriesTracker,
    /// Quality of the training data's labels, when it had labels.
    pub reference_quality: Option<super::quality::OutcomeStats>,
}

/// The outcome of a manual retrain request.
#[derive(Debug, Clone, PartialEq)]
pub enum ManualOutcome {
    /// A request was issued.
    Requested(RetrainRequest),
    /// The model's cooldown is running: nothing was issued (unless forced).
    Suppressed {
        /// Event time (ms) at which the cooldown ends.
        until: i64,
    },
}

/// Latest quality of a version, for the HTTP API and metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PerformanceStatus {
    /// Task kind (auto until the first label decides).
    pub task: TaskKind,
    /// Joined outcomes so far.
    pub outcomes: u64,
    /// Joined outcomes that could not be scored.
    pub unscorable: u64,
    /// Quality of the current window.
    pub window: QualityReport,
    /// Reference quality, once complete.
    pub reference: Option<QualityReport>,
    /// Fairness report, or why it was skipped.
    pub fairness: FairnessCheck,
    /// ADWIN on the error stream: current estimate and width.
    pub concept_drift_estimate: Option<f64>,
    /// End of the evaluated window (event time, ms).
    pub window_end: i64,
}

impl ModelMonitor {
    /// Notes that the state changelog must write this monitor again.
    pub fn mark_changed(&mut self) {
        self.changed = true;
    }

    /// Whether the monitor changed since the last call (and forgets it).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Notes that the state changelog must write this monitor's references again.
    pub fn mark_references_changed(&mut self) {
        self.references_changed = true;
    }

    /// Whether the references changed since the last call (and forgets it).
    pub fn take_references_changed(&mut self) -> bool {
        std::mem::take(&mut self.references_changed)
    }

    /// Moves the series' references out, leaving the monitor without them until
    /// [`ModelMonitor::put_references`]: the state changelog encodes the monitor and its
    /// references as separate records, and moving (not cloning) keeps that free.
    pub fn take_references(&mut self) -> SeriesReferences {
        SeriesReferences {
            features: self
                .features
                .iter_mut()
                .map(|feature| feature.tracker.take_reference())
                .collect(),
            score: self.score.take_reference(),
            class: self.class.take_reference(),
        }
    }

    /// Puts back references moved out by [`ModelMonitor::take_references`] (so they fit).
    pub fn put_references(&mut self, references: SeriesReferences) {
        let mut features = references.features.into_iter();
        for feature in &mut self.features {
            feature.tracker.put_reference(features.next().flatten());
        }
        self.score.put_reference(references.score);
        self.class.put_reference(references.class);
    }

    /// Puts references read from the state changelog into a monitor read from its record,
    /// once they are checked to belong with it.
    ///
    /// # Errors
    /// The references do not fit the monitor (records that do not belong together): more
    /// feature slots than it has, or a series whose window they do not fit (see
    /// [`SeriesTracker::check_reference`]). The monitor is then left unchanged.
    pub fn restore_references(&mut self, references: SeriesReferences) -> Result<(), String> {
        let misfit = |detail: String| {
            format!(
                "the references of {}/{} do not fit its monitor: {detail}",
                self.model_id, self.model_version
            )
        };
        if references.features.len() > self.features.len() {
            return Err(misfit(format!(
                "{} feature slots, the monitor has {}",
                references.features.len(),
                self.features.len()
            )));
        }
        // All checked before any is put, so that a refusal leaves the monitor as it was.
        for (slot, feature) in self.features.iter().enumerate() {
            let reference = references.features.get(slot).and_then(Option::as_ref);
            feature
                .tracker
                .check_reference(reference)
                .map_err(|e| misfit(format!("feature {}: {e}", feature.name)))?;
        }
        self.score
            .check_reference(references.score.as_ref())
            .map_err(|e| misfit(format!("the score: {e}")))?;
        self.class
            .check_reference(references.class.as_ref())
            .map_err(|e| misfit(format!("the predicted class: {e}")))?;
        self.put_references(references);
        Ok(())
    }

    /// The numbers added to the warm-up samples since the last call, as the next chunk of
    /// the state changelog, or, once the reference is frozen, the chunks to delete.
    pub fn take_warmup_changes(&mut self) -> WarmupChanges {
        let log = &mut self.warmup_log;
        if self.phase != Phase::WarmingUp {
            let log = std::mem::take(log);
            return WarmupChanges {
                chunk: None,
                deleted: 0..log.chunks.max(log.extent),
            };
        }
        let mut chunk = WarmupChunk::default();
        log.features.resize(self.features.len(), 0);
        let mut add = |id: SeriesId, tracker: &mut SeriesTracker, persisted: &mut usize| {
            let numbers = tracker.warmup_numbers();
            if let Some(new) = numbers.get(*persisted..).filter(|new| !new.is_empty()) {
                chunk.series.push((id, new.to_vec()));
                *persisted = numbers.len();
            }
            let categories = tracker.take_unwritten_categories();
            if !categories.is_empty() {
                chunk.categories.push((id, categories));
            }
        };
        for (slot, (feature, persisted)) in
            self.features.iter_mut().zip(&mut log.features).enumerate()
        {
            // Slots are indices of a `Vec` created one event at a time: far below `u32::MAX`.
            let id = SeriesId::Feature(u32::try_from(slot).unwrap_or(u32::MAX));
            add(id, &mut feature.tracker, persisted);
        }
        add(SeriesId::Score, &mut self.score, &mut log.score);
        add(SeriesId::Class, &mut self.class, &mut log.class);
        if chunk.series.is_empty() && chunk.categories.is_empty() {
            return WarmupChanges::default();
        }
        let number = log.chunks;
        log.chunks += 1;
        log.extent = log.extent.max(log.chunks);
        WarmupChanges {
            chunk: Some((number, chunk)),
            deleted: 0..0,
        }
    }

    /// Warm-up chunks written so far: the monitor's record carries this count, so that a
    /// restore uses exactly the chunks written before it (see
    /// [`ModelMonitor::restore_warmup`]).
    pub fn warmup_chunks_written(&self) -> u32 {
        self.warmup_log.chunks
    }

    /// Runs `encode` on the monitor with its warm-up numbers and categories moved out (they
    /// are in the warm-up chunks, see [`ModelMonitor::take_warmup_changes`]), then puts them
    /// back.
    pub fn without_warmup_values<R>(&mut self, encode: impl FnOnce(&Self) -> R) -> R {
        let features: Vec<WarmupValues> = self
            .features
            .iter_mut()
            .map(|feature| feature.tracker.take_warmup_values())
            .collect();
        let (score, class) = (
            self.score.take_warmup_values(),
            self.class.take_warmup_values(),
        );
        let result = encode(self);
        for (feature, values) in self.features.iter_mut().zip(features) {
            feature.tracker.put_warmup_values(values);
        }
        self.score.put_warmup_values(score);
        self.class.put_warmup_values(class);
        result
    }

    /// Appends the warm-up chunks read from the state changelog, in their order, to the
    /// samples of a monitor read from its record, and checks that every sample is whole.
    ///
    /// `written` is the chunk count the record carries: a commit writes its chunk before the
    /// record and the freeze's deletions after it, so a commit cut short (at-least-once mode
    /// has no transactions) can leave a chunk the record does not count, or deletions
    /// without them all. The first is ignored (the next commit writes that chunk number
    /// again); of a frozen monitor, every chunk is left over, and the next commit deletes
    /// them. A record written before chunks existed (format v3, `written` = 0) holds its
    /// numbers and categories itself; the first commit then writes them all as chunk 0.
    ///
    /// # Errors
    /// A counted chunk is missing, names a series the monitor does not have, or the samples
    /// do not hold the numbers their counts promise.
    pub fn restore_warmup(
        &mut self,
        chunks: impl IntoIterator<Item = (u32, WarmupChunk)>,
        written: u32,
    ) -> Result<(), String> {
        let name = format!("{}/{}", self.model_id, self.model_version);
        let mut log = WarmupLog {
            features: vec![0; self.features.len()],
            ..WarmupLog::default()
        };
        if self.phase != Phase::WarmingUp {
            log.extent = chunks.into_iter().map(|(n, _)| n + 1).max().unwrap_or(0);
            if log.extent > 0 {
                self.changed = true;
            }
            self.warmup_log = log;
            return Ok(());
        }
        // A format v3 record holds its categories itself (a v4 one none): the next chunk
        // carries them, as it carries v3's numbers (`persisted` starts at 0).
        for feature in &mut self.features {
            feature.tracker.mark_categories_unwritten();
        }
        self.score.mark_categories_unwritten();
        self.class.mark_categories_unwritten();
        for (number, chunk) in chunks {
            log.extent = log.extent.max(number + 1);
            if number >= written {
                continue;
            }
            if number != log.chunks {
                return Err(format!("{name}: warm-up chunk {} is missing", log.chunks));
            }
            log.chunks += 1;
            // A chunk lists a series' numbers and its categories apart.
            let values = chunk
                .series
                .into_iter()
                .map(|(id, numbers)| (id, numbers, Vec::new()))
                .chain(
                    chunk
                        .categories
                        .into_iter()
                        .map(|(id, categories)| (id, Vec::new(), categories)),
                );
            for (id, numbers, categories) in values {
                let (tracker, persisted) = match id {
                    SeriesId::Feature(slot) => {
                        let slot = slot as usize;
                        match (self.features.get_mut(slot), log.features.get_mut(slot)) {
                            (Some(feature), Some(persisted)) => (&mut feature.tracker, persisted),
                            _ => {
                                return Err(format!(
                                    "{name}: warm-up chunk {number} names feature slot {slot}, \
                                     the monitor has {}",
                                    self.features.len()
                                ))
                            }
                        }
                    }
                    SeriesId::Score => (&mut self.score, &mut log.score),
                    SeriesId::Class => (&mut self.class, &mut log.class),
                };
                tracker
                    .extend_warmup(&numbers, categories)
                    .map_err(|e| format!("{name}: warm-up chunk {number}: {e}"))?;
                *persisted += numbers.len();
            }
        }
        if log.chunks != written {
            return Err(format!("{name}: warm-up chunk {} is missing", log.chunks));
        }
        let trackers = self
            .features
            .iter()
            .map(|feature| &feature.tracker)
            .chain([&self.score, &self.class]);
        for tracker in trackers {
            tracker
                .check_warmup_sample()
                .map_err(|e| format!("{name}: {e}"))?;
        }
        self.warmup_log = log;
        Ok(())
    }

    /// A fresh monitor in warm-up.
    pub fn new(model_id: &str, model_version: &str, settings: &MonitorSettings) -> Self {
        let overrides = settings.model(model_id);
        let warmup_target = overrides
            .and_then(|m| m.warmup_events)
            .unwrap_or(settings.reference.warmup_events);
        let prediction_detectors = match overrides {
            Some(m) => settings.detectors.with(&m.detectors),
            None => settings.detectors.clone(),
        };
        Self {
            model_id: model_id.to_owned(),
            model_version: model_version.to_owned(),
            warmup_target,
            events: 0,
            phase: Phase::WarmingUp,
            features: Vec::new(),
            by_name: BTreeMap::new(),
            order: Vec::new(),
            score: SeriesTracker::new(Some(FeatureKind::Numeric)),
            class: SeriesTracker::new(Some(FeatureKind::Categorical)),
            score_adwin: settings
                .prediction
                .adwin_enabled
                .then(|| Adwin::new(settings.prediction.adwin).ok())
                .flatten(),
            adwin_detections_since_evaluation: 0,
            alerts: AlertBook::default(),
            firing_alert_ids: BTreeMap::new(),
            open_panes: BTreeSet::new(),
            pane_offsets: BTreeMap::new(),
            last_retrain_at: None,
            latest: BTreeMap::new(),
            prediction_detectors,
            performance: PerformanceTracker::new(model_id, settings),
            latest_performance: None,
            last_event_time: None,
            schedule: overrides
                .and_then(|m| m.retrain_schedule.as_deref())
                .and_then(|expression| CronSchedule::parse(expression).ok()),
            schedule_checked_through: None,
            changed: true,
            references_changed: true,
            warmup_log: WarmupLog::default(),
        }
        .with_baseline(settings)
    }

    /// Starts from the model's baseline, when the settings carry one: monitoring from the
    /// first event, against the training data.
    fn with_baseline(mut self, settings: &MonitorSettings) -> Self {
        let Some(baseline) = settings.baselines.get(&self.model_id) else {
            return self;
        };
        let panes = settings.windows.panes;
        for (name, tracker) in &baseline.features {
            let slot = self.slot_for(usize::MAX, name, settings);
            self.features[slot].tracker = tracker.restarted(panes);
        }
        self.score = baseline.score.restarted(panes);
        self.class = baseline.class.restarted(panes);
        if let Some(quality) = &baseline.reference_quality {
            self.performance.set_reference(quality.clone());
        }
        self.phase = Phase::Monitoring;
        self
    }

    /// Builds a baseline: every event given so far (the model must still be warming up)
    /// becomes the frozen reference.
    pub fn into_baseline(mut self, settings: &MonitorSettings) -> BaselineState {
        if self.phase == Phase::WarmingUp {
            self.freeze(settings);
        }
        let reference_quality = self.performance.reference_stats();
        let mut features: Vec<(String, SeriesTracker)> = Vec::new();
        for (name, &slot) in &self.by_name {
            let feature = &self.features[slot];
            if !feature.ignored {
                features.push((name.clone(), feature.tracker.restarted(1)));
            }
        }
        BaselineState {
            features,
            score: self.score.restarted(1),
            class: self.class.restarted(1),
            reference_quality,
        }
    }

    /// Largest event time of this version's predictions.
    pub fn last_event_time(&self) -> Option<i64> {
        self.last_event_time
    }

    /// The model's sensitive attribute, when fairness is configured.
    pub fn sensitive_attribute(&self) -> Option<&str> {
        self.performance.sensitive_attribute()
    }

    /// Records a prediction joined to its label in pane `pane`.
    pub fn record_outcome(&mut self, pane: i64, outcome: &JoinedOutcome) {
        self.performance.record_outcome(pane, outcome);
    }

    /// Model id.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Model version.
    pub fn model_version(&self) -> &str {
        &self.model_version
    }

    /// Events seen.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Warm-up or monitoring.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Warm-up length.
    pub fn warmup_target(&self) -> u64 {
        self.warmup_target
    }

    /// The slot of the feature `name` at `position` of an event's list: nearly always the
    /// slot that position had last time, which costs one comparison here, inlined; anything
    /// else goes out of line.
    #[inline(always)]
    fn slot_for(&mut self, position: usize, name: &str, settings: &MonitorSettings) -> usize {
        if let Some(&slot) = self.order.get(position) {
            if self
                .features
                .get(slot)
                .is_some_and(|f| same_bytes(f.name.as_bytes(), name.as_bytes()))
            {
                return slot;
            }
        }
        self.slot_for_new_position(position, name, settings)
    }

    /// [`Self::slot_for`] when the position's last slot is not the feature's: finds or
    /// creates the slot and remembers it for the position.
    #[inline(never)]
    fn slot_for_new_position(
        &mut self,
        position: usize,
        name: &str,
        settings: &MonitorSettings,
    ) -> usize {
        let slot = match self.by_name.get(name) {
            Some(&slot) => slot,
            None => {
                let model = settings.model(&self.model_id);
                let feature = model.and_then(|m| m.features.get(name));
                let mut detectors = settings.detectors.clone();
                if let Some(m) = model {
                    detectors = detectors.with(&m.detectors);
                }
                if let Some(f) = feature {
                    detectors = detectors.with(&f.detectors);
                }
                let kind = feature.and_then(|f| f.kind);
                let tracker = if self.phase == Phase::WarmingUp {
                    SeriesTracker::new(kind)
                } else {
                    SeriesTracker::unreferenced()
                };
                self.features.push(FeatureSlot {
                    name: name.to_owned(),
                    tracker,
                    detectors,
                    ignored: kind == Some(FeatureKind::Ignore),
                    last_seen: 0,
                });
                let slot = self.features.len() - 1;
                self.by_name.insert(name.to_owned(), slot);
                slot
            }
        };
        if position < self.order.len() {
            self.order[position] = slot;
        } else if position == self.order.len() {
            self.order.push(slot);
        }
        slot
    }

    /// Records one on-time prediction event in pane `pane`.
    pub fn observe(
        &mut self,
        event: &PredictionEvent<'_>,
        pane: i64,
        source: SourcePosition<'_>,
        settings: &MonitorSettings,
    ) {
        self.events += 1;
        self.last_event_time = Some(
            self.last_event_time
                .map_or(event.timestamp, |t| t.max(event.timestamp)),
        );
        if let Some(attribute) = self.performance.sensitive_attribute() {
            let group = event
                .attributes
                .iter()
                .find(|(key, _)| key == attribute)
                .map(|(_, value)| value.clone());
            if let Some(group) = group {
                self.performance.record_prediction(
                    pane,
                    &group,
                    event.prediction.score,
                    event.prediction.label.as_deref(),
                );
            }
        }
        let sequence = self.events;
        let warming = self.phase == Phase::WarmingUp;
        if !warming {
            // Each numeric feature's grid lookup is a likely cache miss (a model's tables
            // together outgrow the core's cache). Asking for all of them first lets the misses
            // overlap. The slot is the one this position had last time, unchecked: a wrong
            // guess only wastes a hint.
            for (&slot, (_, value)) in self.order.iter().zip(event.features.iter()) {
                if let (Some(feature), FeatureValue::Number(x)) = (self.features.get(slot), value) {
                    feature.tracker.prefetch_number(*x);
                }
            }
        }
        // Slots this event marked seen: when that is all of them, none is absent.
        let mut marked = 0;
        for (position, (name, value)) in event.features.iter().enumerate() {
            let slot = self.slot_for(position, name, settings);
            let feature = &mut self.features[slot];
            if feature.ignored || feature.last_seen == sequence {
                // Ignored, or a duplicate key in one event: the first value wins.
                continue;
            }
            feature.last_seen = sequence;
            marked += 1;
            let observation = Observation::from_value(value);
            if warming {
                feature.tracker.warm_up(observation);
            } else {
                feature.tracker.record(pane, observation);
            }
        }
        // A feature absent from this event is missing for it. (Skipping the scan when every
        // slot was marked saves a pass over all of them, which is most events.)
        if marked < self.features.len() {
            for feature in self
                .features
                .iter_mut()
                .filter(|f| !f.ignored && f.last_seen != sequence)
            {
                if warming {
                    feature.tracker.warm_up(Observation::Missing);
                } else {
                    feature.tracker.record(pane, Observation::Missing);
                }
            }
        }

        let score = event.prediction.score.map_or(Observation::Missing, |s| {
            if s.is_finite() {
                Observation::Number(s)
            } else {
                Observation::NonFinite
            }
        });
        let class = event
            .prediction
            .label
            .as_deref()
            .map_or(Observation::Missing, Observation::Category);
        if let (Some(adwin), Observation::Number(s)) = (self.score_adwin.as_mut(), score) {
            if adwin.update(s) {
                self.adwin_detections_since_evaluation += 1;
            }
        }
        if warming {
            self.score.warm_up(score);
            self.class.warm_up(class);
            if self.events >= self.warmup_target {
                self.freeze(settings);
            }
        } else {
            self.score.record(pane, score);
            self.class.record(pane, class);
            if self.open_panes.last() != Some(&pane) {
                self.open_panes.insert(pane);
            }
            let ranges = match self.pane_offsets.get_mut(&pane) {
                Some(ranges) => ranges,
                None => self.pane_offsets.entry(pane).or_default(),
            };
            match ranges
                .iter_mut()
                .find(|r| r.partition == source.partition && r.topic == source.topic)
            {
                Some(range) => {
                    range.first = range.first.min(source.offset);
                    range.last = range.last.max(source.offset);
                }
                None => ranges.push(PaneOffsetRange {
                    topic: source.topic.to_owned(),
                    partition: source.partition,
                    first: source.offset,
                    last: source.offset,
                }),
            }
        }
    }

    fn freeze(&mut self, settings: &MonitorSettings) {
        let (reference, panes) = (&settings.reference, settings.windows.panes);
        for feature in &mut self.features {
            feature.tracker.freeze(reference, panes);
        }
        self.score.freeze(reference, panes);
        self.class.freeze(reference, panes);
        self.phase = Phase::Monitoring;
        self.references_changed = true;
    }

    /// Closes panes up to `through`; when one of them held events of this model, evaluates
    /// every detector and appends alert transitions and retrain requests to `outputs`.
    pub fn close_through(
        &mut self,
        through: i64,
        pane_ms: i64,
        settings: &MonitorSettings,
        collected: &mut Collected,
    ) {
        // Outcomes arrive during warm-up too (they form the reference quality); their old
        // panes must slide out all the same.
        self.performance.close_through(through);
        if self.phase != Phase::Monitoring {
            return;
        }
        let closed_any = self.open_panes.first().is_some_and(|&p| p <= through);
        for feature in &mut self.features {
            feature.tracker.close_through(through);
        }
        self.score.close_through(through);
        self.class.close_through(through);
        if !closed_any {
            return;
        }
        self.open_panes = self.open_panes.split_off(&(through + 1));
        let oldest = through.saturating_sub(settings.windows.panes as i64 - 1);
        self.pane_offsets = self.pane_offsets.split_off(&oldest);
        self.evaluate(through, pane_ms, settings, collected);
    }

    fn evaluate(
        &mut self,
        through: i64,
        pane_ms: i64,
        settings: &MonitorSettings,
        collected: &mut Collected,
    ) {
        let Collected {
            outputs,
            evaluations,
            quality,
        } = collected;
        let policy = settings.policy;
        let window_end = through.saturating_add(1).saturating_mul(pane_ms);
        let default_start = (through - settings.windows.panes as i64 + 1).saturating_mul(pane_ms);

        // Gather every series' statistics first: Benjamini–Hochberg needs all p-values of the
        // evaluation before any verdict.
        let mut gathered: Vec<(String, SeriesEvaluation, i64)> = Vec::new();
        for (name, &slot) in &self.by_name {
            let feature = &self.features[slot];
            if feature.ignored {
                continue;
            }
            if let Some(evaluation) = feature.tracker.evaluate(&feature.detectors) {
                let start = feature
                    .tracker
                    .pane_range()
                    .map_or(default_start, |(oldest, _)| oldest.saturating_mul(pane_ms));
                gathered.push((name.clone(), evaluation, start));
            }
        }
        let feature_count = gathered.len();
        for (tracker, prefix) in [(&self.score, ""), (&self.class, "class_")] {
            if let Some(mut evaluation) = tracker.evaluate(&self.prediction_detectors) {
                for result in &mut evaluation.results {
                    if !prefix.is_empty() {
                        result.detector = prefixed(prefix, &result.detector);
                    }
                }
                let start = tracker
                    .pane_range()
                    .map_or(default_start, |(oldest, _)| oldest.saturating_mul(pane_ms));
                gathered.push((PREDICTION_SUBJECT.to_owned(), evaluation, start));
            }
        }

        // Multiple testing: adjust the p-values of all feature tests of this evaluation.
        let mut adjusted: Vec<Vec<Option<f64>>> = gathered
            .iter()
            .map(|(_, e, _)| e.results.iter().map(|r| r.p_value).collect())
            .collect();
        if policy.benjamini_hochberg {
            let positions: Vec<(usize, usize)> = (0..feature_count)
                .flat_map(|i| {
                    gathered[i]
                        .1
                        .results
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.p_value.is_some())
                        .map(move |(j, _)| (i, j))
                })
                .collect();
            let raw: Vec<f64> = positions
                .iter()
                .map(|&(i, j)| adjusted[i][j].unwrap_or(1.0))
                .collect();
            for (&(i, j), p) in positions.iter().zip(benjamini_hochberg(&raw)) {
                adjusted[i][j] = Some(p);
            }
        }

        let span = Span {
            start: default_start,
            end: window_end,
        };
        for (index, (subject, evaluation, window_start)) in gathered.iter().enumerate() {
            for (j, result) in evaluation.results.iter().enumerate() {
                let p_used = adjusted[index][j];
                let breach = match p_used {
                    Some(p) => p < result.threshold,
                    None if result.detector.ends_with("missing_rate") => {
                        result.statistic > result.threshold
                    }
                    None => result.statistic >= result.threshold,
                };
                let verdict = Verdict::from_breach(breach);
                self.publish(
                    subject,
                    result,
                    p_used,
                    verdict,
                    policy.consecutive,
                    Span {
                        start: *window_start,
                        end: window_end,
                    },
                    evaluation,
                    outputs,
                );
                self.record(
                    subject,
                    result,
                    policy.benjamini_hochberg.then_some(p_used).flatten(),
                    breach,
                    window_end,
                    evaluations,
                );
            }
        }

        // ADWIN on the score: a change detector is its own confirmation, so it fires at the
        // first evaluation after a detection and resolves after k quiet ones.
        if self.score_adwin.is_some() {
            let detections = std::mem::take(&mut self.adwin_detections_since_evaluation);
            let estimation = self.score_adwin.as_ref().map_or(0.0, Adwin::estimation);
            let width = self.score_adwin.as_ref().map_or(0, Adwin::width);
            self.publish_change_detector(
                PREDICTION_SUBJECT,
                "adwin",
                detections,
                (estimation, width),
                settings.prediction.adwin.delta,
                span,
                settings,
                outputs,
            );
        }

        self.evaluate_performance(through, span, settings, outputs, evaluations, quality);
        self.maybe_request_retrain(window_end, settings, outputs);
        self.maybe_schedule_retrain(window_end, settings, outputs);
    }

    /// Quality rules, fairness rules and concept drift of the window ending at `through`.
    fn evaluate_performance(
        &mut self,
        through: i64,
        span: Span,
        settings: &MonitorSettings,
        outputs: &mut Vec<Output>,
        evaluations: &mut Vec<EvaluationRecord>,
        quality_records: &mut Vec<QualityRecord>,
    ) {
        let PerformanceEvaluation {
            quality,
            reference,
            rules,
            fairness_rules,
            fairness,
            concept_drift_detections,
        } = self.performance.evaluate(through);
        let start = self.performance.first_pane().map_or(span.start, |pane| {
            pane.saturating_mul(settings.windows.pane_ms)
        });
        let evidence = super::output::stable_id(&[
            b"performance",
            serde_json::to_string(&quality)
                .unwrap_or_default()
                .as_bytes(),
        ]);
        let evaluation = SeriesEvaluation {
            results: Vec::new(),
            reference_count: reference.as_ref().map_or(0, |r| r.count),
            window_count: quality.count,
            evidence_sha256: evidence,
        };
        let k = settings.policy.consecutive;
        for (subject, outcomes) in [
            (PERFORMANCE_SUBJECT, &rules),
            (FAIRNESS_SUBJECT, &fairness_rules),
        ] {
            for RuleOutcome { result, breach } in outcomes {
                self.publish(
                    subject,
                    result,
                    None,
                    Verdict::from_breach(*breach),
                    k,
                    Span {
                        start,
                        end: span.end,
                    },
                    &evaluation,
                    outputs,
                );
                self.record(subject, result, None, *breach, span.end, evaluations);
            }
        }
        if let Some((estimation, width)) = self.performance.concept_drift_state() {
            self.publish_change_detector(
                PERFORMANCE_SUBJECT,
                CONCEPT_DRIFT_DETECTOR,
                concept_drift_detections,
                (estimation, width),
                settings.performance.adwin.delta,
                Span {
                    start,
                    end: span.end,
                },
                settings,
                outputs,
            );
        }
        if quality.count > 0 {
            quality_records.push(QualityRecord {
                model_id: self.model_id.clone(),
                model_version: self.model_version.clone(),
                window_end: span.end,
                quality: quality.clone(),
            });
        }
        self.latest_performance = Some(PerformanceStatus {
            task: self.performance.task(),
            outcomes: self.performance.outcomes(),
            unscorable: self.performance.unscorable(),
            window: quality,
            reference,
            fairness,
            concept_drift_estimate: self.performance.concept_drift_state().map(|(e, _)| e),
            window_end: span.end,
        });
    }

    /// Feeds one verdict to the alert book and publishes the transition, if any.
    #[allow(clippy::too_many_arguments)]
    fn publish(
        &mut self,
        subject: &str,
        result: &DetectorResult,
        p_value: Option<f64>,
        verdict: Verdict,
        k_fire: u32,
        span: Span,
        evaluation: &SeriesEvaluation,
        outputs: &mut Vec<Output>,
    ) {
        self.publish_with(
            subject,
            result,
            p_value,
            verdict,
            (k_fire, k_fire),
            span,
            evaluation,
            outputs,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn publish_with(
        &mut self,
        subject: &str,
        result: &DetectorResult,
        p_value: Option<f64>,
        verdict: Verdict,
        (k_fire, k_resolve): (u32, u32),
        span: Span,
        evaluation: &SeriesEvaluation,
        outputs: &mut Vec<Output>,
    ) {
        if let Some(state) =
            self.alerts
                .observe(subject, &result.detector, verdict, k_fire, k_resolve)
        {
            let alert = self.alert(
                subject, result, p_value, state, span.start, span.end, evaluation,
            );
            self.track_firing(subject, &result.detector, state, &alert.alert_id);
            outputs.push(Output::Alert(alert));
        }
    }

    /// Remembers the latest result of (subject, detector) and hands it to the metrics.
    fn record(
        &mut self,
        subject: &str,
        result: &DetectorResult,
        adjusted_p_value: Option<f64>,
        breach: bool,
        window_end: i64,
        evaluations: &mut Vec<EvaluationRecord>,
    ) {
        let record = EvaluationRecord {
            model_id: self.model_id.clone(),
            model_version: self.model_version.clone(),
            subject: subject.to_owned(),
            result: result.clone(),
            adjusted_p_value,
            breach,
            window_end,
        };
        self.latest.insert(
            (subject.to_owned(), result.detector.to_string()),
            record.clone(),
        );
        evaluations.push(record);
    }

    /// A change detector (ADWIN) is its own confirmation: it fires at the first evaluation
    /// after a detection and resolves after k quiet ones.
    #[allow(clippy::too_many_arguments)]
    fn publish_change_detector(
        &mut self,
        subject: &str,
        detector: &'static str,
        detections: u64,
        (estimation, width): (f64, u64),
        delta: f64,
        span: Span,
        settings: &MonitorSettings,
        outputs: &mut Vec<Output>,
    ) {
        let result = DetectorResult {
            detector: std::borrow::Cow::Borrowed(detector),
            statistic: estimation,
            p_value: None,
            threshold: delta,
            error_bound: None,
            retrain: true,
        };
        let evaluation = SeriesEvaluation {
            results: Vec::new(),
            reference_count: 0,
            window_count: width,
            evidence_sha256: super::output::stable_id(&[
                detector.as_bytes(),
                &detections.to_le_bytes(),
                &estimation.to_bits().to_le_bytes(),
                &width.to_le_bytes(),
            ]),
        };
        self.publish_with(
            subject,
            &result,
            None,
            Verdict::from_breach(detections > 0),
            (1, settings.policy.consecutive),
            span,
            &evaluation,
            outputs,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn alert(
        &self,
        subject: &str,
        result: &DetectorResult,
        p_value: Option<f64>,
        state: AlertState,
        window_start: i64,
        window_end: i64,
        evaluation: &SeriesEvaluation,
    ) -> DriftAlert {
        DriftAlert {
            alert_id: DriftAlert::id_for(
                &self.model_id,
                &self.model_version,
                subject,
                &result.detector,
                state,
                window_end,
            ),
            model_id: self.model_id.clone(),
            model_version: self.model_version.clone(),
            subject: subject.to_owned(),
            detector: result.detector.to_string(),
            statistic: result.statistic,
            threshold: result.threshold,
            p_value,
            state,
            window_start,
            window_end,
            reference_count: evaluation.reference_count,
            window_count: evaluation.window_count,
            evidence_sha256: evaluation.evidence_sha256.clone(),
            detected_at: window_end,
            emitted_at: 0,
        }
    }

    fn track_firing(&mut self, subject: &str, detector: &str, state: AlertState, alert_id: &str) {
        let key = (subject.to_owned(), detector.to_owned());
        match state {
            AlertState::Firing => {
                self.firing_alert_ids.insert(key, alert_id.to_owned());
            }
            AlertState::Resolved => {
                self.firing_alert_ids.remove(&key);
            }
        }
    }

    /// Whether a firing (subject, detector) counts towards retraining (its action is
    /// `retrain`; the change detectors always count).
    fn retrain_relevant(&self, subject: &str, detector: &str) -> bool {
        (subject == PREDICTION_SUBJECT && detector == "adwin")
            || (subject == PERFORMANCE_SUBJECT && detector == CONCEPT_DRIFT_DETECTOR)
            || self
                .latest
                .get(&(subject.to_owned(), detector.to_owned()))
                .is_some_and(|record| record.result.retrain)
    }

    fn cooling_down(&self, now: i64, settings: &MonitorSettings) -> Option<i64> {
        let until = self
            .last_retrain_at?
            .saturating_add(settings.policy.cooldown_ms);
        (now < until).then_some(until)
    }

    /// One retrain request per evaluation at most, whatever fired: the strongest trigger
    /// names it (performance, then concept drift, then data drift) and every firing alert
    /// that counts is among its reasons.
    fn maybe_request_retrain(
        &mut self,
        now: i64,
        settings: &MonitorSettings,
        outputs: &mut Vec<Output>,
    ) {
        let policy = settings.policy;
        // Votes per subject among retrain-relevant firing detectors.
        let mut votes: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (subject, detector) in self.alerts.firing() {
            if self.retrain_relevant(subject, detector) {
                votes.entry(subject).or_default().push(detector);
            }
        }
        let special = [PREDICTION_SUBJECT, PERFORMANCE_SUBJECT, FAIRNESS_SUBJECT];
        let drifted: Vec<&str> = votes
            .iter()
            .filter(|(subject, v)| !special.contains(subject) && v.len() >= policy.votes as usize)
            .map(|(s, _)| *s)
            .collect();
        let prediction_drifted = votes.contains_key(PREDICTION_SUBJECT);
        let data_drift = drifted.len() >= policy.drifted_features_for_retrain || prediction_drifted;
        let performance_detectors = votes.get(PERFORMANCE_SUBJECT);
        let concept_drift =
            performance_detectors.is_some_and(|d| d.contains(&CONCEPT_DRIFT_DETECTOR));
        let performance = votes.contains_key(FAIRNESS_SUBJECT)
            || performance_detectors
                .is_some_and(|d| d.iter().any(|d| *d != CONCEPT_DRIFT_DETECTOR));
        let trigger = if performance {
            RetrainTrigger::Performance
        } else if concept_drift {
            RetrainTrigger::ConceptDrift
        } else if data_drift {
            RetrainTrigger::DataDrift
        } else {
            return;
        };
        if self.cooling_down(now, settings).is_some() {
            return;
        }
        let mut reasons = Vec::new();
        for (subject, detectors) in &votes {
            let counts = match *subject {
                PREDICTION_SUBJECT => data_drift,
                PERFORMANCE_SUBJECT | FAIRNESS_SUBJECT => true,
                feature => data_drift && drifted.contains(&feature),
            };
            if !counts {
                continue;
            }
            for detector in detectors {
                let key = ((*subject).to_owned(), (*detector).to_owned());
                if let Some(id) = self.firing_alert_ids.get(&key) {
                    reasons.push(id.clone());
                }
                if let Some(record) = self.latest.get(&key) {
                    reasons.push(format!(
                        "{subject}: {detector} = {:.6} (threshold {})",
                        record.result.statistic, record.result.threshold
                    ));
                }
            }
        }
        let request = self.request(trigger, now, now, reasons, settings);
        outputs.push(Output::Retrain(request));
    }

    /// A SCHEDULED request when the version's cron schedule passed since the last evaluation
    /// (on event time), unless the cooldown is running.
    fn maybe_schedule_retrain(
        &mut self,
        now: i64,
        settings: &MonitorSettings,
        outputs: &mut Vec<Output>,
    ) {
        let Some(schedule) = &self.schedule else {
            return;
        };
        let checked = self.schedule_checked_through.replace(now);
        // The first evaluation only starts the schedule: instants before the stream began
        // are not owed.
        let Some(after) = checked else { return };
        let Some(instant) = schedule.last_between(after, now) else {
            return;
        };
        if self.cooling_down(now, settings).is_some() {
            return;
        }
        let reasons = vec![format!("schedule {:?} at {instant}", schedule.expression())];
        let request = self.request(RetrainTrigger::Scheduled, instant, now, reasons, settings);
        outputs.push(Output::Retrain(request));
    }

    /// A MANUAL request (HTTP), at event time `now` (the partition's clock). Subject to the
    /// cooldown unless `force`; the same reason at the same event time gives the same id, so
    /// a retried HTTP call is de-duplicated downstream.
    pub fn manual_retrain(
        &mut self,
        now: i64,
        reason: &str,
        force: bool,
        settings: &MonitorSettings,
    ) -> ManualOutcome {
        if !force {
            if let Some(until) = self.cooling_down(now, settings) {
                return ManualOutcome::Suppressed { until };
            }
        }
        let mut request = self.request(
            RetrainTrigger::Manual,
            now,
            now,
            vec![format!("manual: {reason}")],
            settings,
        );
        request.request_id =
            super::output::stable_id(&[request.request_id.as_bytes(), reason.as_bytes()]);
        ManualOutcome::Requested(request)
    }

    /// A request of `trigger` created at `now` (id keyed on `key_time`), for the data of the
    /// current window; starts the cooldown.
    fn request(
        &mut self,
        trigger: RetrainTrigger,
        key_time: i64,
        now: i64,
        reasons: Vec<String>,
        settings: &MonitorSettings,
    ) -> RetrainRequest {
        let data_from = self
            .pane_offsets
            .keys()
            .next()
            .map_or(now, |p| p.saturating_mul(settings.windows.pane_ms));
        let mut ranges: BTreeMap<(String, i32), (i64, i64)> = BTreeMap::new();
        for pane in self.pane_offsets.values() {
            for entry in pane {
                let range = ranges
                    .entry((entry.topic.clone(), entry.partition))
                    .or_insert((entry.first, entry.last));
                range.0 = range.0.min(entry.first);
                range.1 = range.1.max(entry.last);
            }
        }
        let source_offsets = ranges
            .into_iter()
            .map(
                |((topic, partition), (from_offset, to_offset))| OffsetRange {
                    topic,
                    partition,
                    from_offset,
                    to_offset,
                },
            )
            .collect();
        self.last_retrain_at = Some(now);
        RetrainRequest {
            request_id: RetrainRequest::id_for(
                &self.model_id,
                &self.model_version,
                trigger,
                key_time,
            ),
            model_id: self.model_id.clone(),
            model_version: self.model_version.clone(),
            trigger,
            reasons,
            data_from,
            data_to: now,
            source_offsets,
            created_at: now,
        }
    }

    /// Status of every series, for the HTTP API.
    pub fn status(&self) -> ModelStatus {
        let mut features = Vec::new();
        for (name, &slot) in &self.by_name {
            let feature = &self.features[slot];
            features.push(SeriesStatus {
                name: name.clone(),
                kind: if feature.ignored {
                    Some(FeatureKind::Ignore)
                } else {
                    feature.tracker.kind()
                },
                window_count: feature.tracker.window_count(),
                quality: feature.tracker.quality,
                detectors: self.detector_status(name),
            });
        }
        ModelStatus {
            model_id: self.model_id.clone(),
            model_version: self.model_version.clone(),
            phase: self.phase,
            events: self.events,
            warmup_target: self.warmup_target,
            features,
            prediction: SeriesStatus {
                name: PREDICTION_SUBJECT.to_owned(),
                kind: Some(FeatureKind::Numeric),
                window_count: self.score.window_count(),
                quality: self.score.quality,
                detectors: self.detector_status(PREDICTION_SUBJECT),
            },
            performance: self.latest_performance.clone(),
            performance_detectors: self.detector_status(PERFORMANCE_SUBJECT),
            fairness_detectors: self.detector_status(FAIRNESS_SUBJECT),
        }
    }

    fn detector_status(&self, subject: &str) -> Vec<DetectorStatus> {
        self.latest
            .range((subject.to_owned(), String::new())..)
            .take_while(|((s, _), _)| s == subject)
            .map(|((_, detector), record)| DetectorStatus {
                detector: detector.clone(),
                statistic: record.result.statistic,
                p_value: record.adjusted_p_value.or(record.result.p_value),
                threshold: record.result.threshold,
                breach: record.breach,
                firing: self.alerts.is_firing(subject, detector),
                window_end: record.window_end,
            })
            .collect()
    }
}

fn prefixed(prefix: &str, detector: &str) -> std::borrow::Cow<'static, str> {
    std::borrow::Cow::Owned(format!("{prefix}{detector}"))
}

/// Latest outcome of one detector, for the HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetectorStatus {
    /// Detector name.
    pub detector: String,
    /// Latest statistic.
    pub statistic: f64,
    /// Latest p-value (adjusted when Benjamini–Hochberg is on).
    pub p_value: Option<f64>,
    /// Threshold.
    pub threshold: f64,
    /// Whether the latest evaluation breached.
    pub breach: bool,
    /// Whether the alert is firing.
    pub firing: bool,
    /// End of the window evaluated (event time, ms).
    pub window_end: i64,
}

/// Status of one series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesStatus {
    /// Feature name or `__prediction__`.
    pub name: String,
    /// Type, once known.
    pub kind: Option<FeatureKind>,
    /// Observations in the current window.
    pub window_count: u64,
    /// Data-quality counts.
    pub quality: QualityCounts,
    /// Latest detector outcomes.
    pub detectors: Vec<DetectorStatus>,
}

/// Status of one model version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelStatus {
    /// Model.
    pub model_id: String,
    /// Version.
    pub model_version: String,
    /// Warm-up or monitoring.
    pub phase: Phase,
    /// Events seen.
    pub events: u64,
    /// Warm-up length.
    pub warmup_target: u64,
    /// Features in name order.
    pub features: Vec<SeriesStatus>,
    /// The prediction's score.
    pub prediction: SeriesStatus,
    /// Quality from joined labels (after the first evaluation).
    pub performance: Option<PerformanceStatus>,
    /// Latest outcomes of the performance rules and concept drift.
    pub performance_detectors: Vec<DetectorStatus>,
    /// Latest outcomes of the fairness rules.
    pub fairness_detectors: Vec<DetectorStatus>,
}

#[cfg(test)]
mod byte_tests {
    use super::same_bytes;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn same_bytes_is_slice_equality(
            a in proptest::collection::vec(0u8..4, 0..40),
            b in proptest::collection::vec(0u8..4, 0..40),
        ) {
            prop_assert_eq!(same_bytes(&a, &b), a == b);
            prop_assert!(same_bytes(&a, &a.clone()));
        }
    }
}
