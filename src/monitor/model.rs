//! The monitor of one (model_id, model_version): its feature trackers, prediction trackers,
//! alert book and retrain state.
//!
//! Owns: warm-up → reference freeze, per-event recording, evaluation at pane close, alert
//! transitions and data-drift retrain requests. Pure and deterministic: features are
//! evaluated in name order, and every time is an event time.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::detect::adwin::Adwin;
use crate::event::PredictionEvent;

use super::feature::{DetectorResult, Observation, QualityCounts, SeriesEvaluation, SeriesTracker};
use super::output::{AlertState, DriftAlert, OffsetRange, Output, RetrainRequest, RetrainTrigger};
use super::policy::{benjamini_hochberg, AlertBook, Verdict};
use super::settings::{DetectorSettings, FeatureKind, MonitorSettings};

/// Subject name of the prediction (score and class) in alerts.
pub const PREDICTION_SUBJECT: &str = "__prediction__";

/// Where an event came from, so retrain requests can point at their data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourcePosition<'a> {
    /// Topic (or input file for replays).
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Offset (or line number for replays).
    pub offset: i64,
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
    detectors: DetectorSettings,
    ignored: bool,
    /// Sequence number of the last event that carried this feature.
    last_seen: u64,
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
    prediction_detectors: DetectorSettings,
}

impl ModelMonitor {
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
        }
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

    fn slot_for(&mut self, position: usize, name: &str, settings: &MonitorSettings) -> usize {
        if let Some(&slot) = self.order.get(position) {
            if self.features.get(slot).is_some_and(|f| f.name == name) {
                return slot;
            }
        }
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
        let sequence = self.events;
        let warming = self.phase == Phase::WarmingUp;
        for (position, (name, value)) in event.features.iter().enumerate() {
            let slot = self.slot_for(position, name, settings);
            let feature = &mut self.features[slot];
            if feature.ignored || feature.last_seen == sequence {
                // Ignored, or a duplicate key in one event: the first value wins.
                continue;
            }
            feature.last_seen = sequence;
            let observation = Observation::from_value(value);
            if warming {
                feature.tracker.warm_up(observation);
            } else {
                feature.tracker.record(pane, observation);
            }
        }
        // A feature absent from this event is missing for it.
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
    }

    /// Closes panes up to `through`; when one of them held events of this model, evaluates
    /// every detector and appends alert transitions and retrain requests to `outputs`.
    pub fn close_through(
        &mut self,
        through: i64,
        pane_ms: i64,
        settings: &MonitorSettings,
        outputs: &mut Vec<Output>,
        evaluations: &mut Vec<EvaluationRecord>,
    ) {
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
        self.evaluate(through, pane_ms, settings, outputs, evaluations);
    }

    fn evaluate(
        &mut self,
        through: i64,
        pane_ms: i64,
        settings: &MonitorSettings,
        outputs: &mut Vec<Output>,
        evaluations: &mut Vec<EvaluationRecord>,
    ) {
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
                let verdict = if breach {
                    Verdict::Breach
                } else {
                    Verdict::Clean
                };
                if let Some(state) = self.alerts.observe(
                    subject,
                    &result.detector,
                    verdict,
                    policy.consecutive,
                    policy.consecutive,
                ) {
                    let alert = self.alert(
                        subject,
                        result,
                        p_used,
                        state,
                        *window_start,
                        window_end,
                        evaluation,
                    );
                    self.track_firing(subject, &result.detector, state, &alert.alert_id);
                    outputs.push(Output::Alert(alert));
                }
                let record = EvaluationRecord {
                    model_id: self.model_id.clone(),
                    model_version: self.model_version.clone(),
                    subject: subject.clone(),
                    result: result.clone(),
                    adjusted_p_value: if policy.benjamini_hochberg {
                        p_used
                    } else {
                        None
                    },
                    breach,
                    window_end,
                };
                self.latest.insert(
                    (subject.clone(), result.detector.to_string()),
                    record.clone(),
                );
                evaluations.push(record);
            }
        }

        // ADWIN on the score: a change detector is its own confirmation, so it fires at the
        // first evaluation after a detection and resolves after k quiet ones.
        if self.score_adwin.is_some() {
            let detections = std::mem::take(&mut self.adwin_detections_since_evaluation);
            let verdict = if detections > 0 {
                Verdict::Breach
            } else {
                Verdict::Clean
            };
            let result = DetectorResult {
                detector: std::borrow::Cow::Borrowed("adwin"),
                statistic: self.score_adwin.as_ref().map_or(0.0, Adwin::estimation),
                p_value: None,
                threshold: settings.prediction.adwin.delta,
                error_bound: None,
                retrain: true,
            };
            if let Some(state) =
                self.alerts
                    .observe(PREDICTION_SUBJECT, "adwin", verdict, 1, policy.consecutive)
            {
                let width = self.score_adwin.as_ref().map_or(0, Adwin::width);
                let evaluation = SeriesEvaluation {
                    results: Vec::new(),
                    reference_count: 0,
                    window_count: width,
                    evidence_sha256: super::output::stable_id(&[
                        b"adwin",
                        &detections.to_le_bytes(),
                        &result.statistic.to_bits().to_le_bytes(),
                        &width.to_le_bytes(),
                    ]),
                };
                let alert = self.alert(
                    PREDICTION_SUBJECT,
                    &result,
                    None,
                    state,
                    default_start,
                    window_end,
                    &evaluation,
                );
                self.track_firing(PREDICTION_SUBJECT, "adwin", state, &alert.alert_id);
                outputs.push(Output::Alert(alert));
            }
        }

        self.maybe_request_retrain(window_end, settings, outputs);
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
    /// `retrain`; ADWIN on the score always counts).
    fn retrain_relevant(&self, subject: &str, detector: &str) -> bool {
        (subject == PREDICTION_SUBJECT && detector == "adwin")
            || self
                .latest
                .get(&(subject.to_owned(), detector.to_owned()))
                .is_some_and(|record| record.result.retrain)
    }

    fn maybe_request_retrain(
        &mut self,
        now: i64,
        settings: &MonitorSettings,
        outputs: &mut Vec<Output>,
    ) {
        let policy = settings.policy;
        // Votes per subject among retrain-relevant firing detectors.
        let mut votes: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
        for (subject, detector) in self.alerts.firing() {
            if self.retrain_relevant(subject, detector) {
                votes.entry(subject).or_default().push((subject, detector));
            }
        }
        let drifted: Vec<&str> = votes
            .iter()
            .filter(|(subject, v)| {
                **subject != PREDICTION_SUBJECT && v.len() >= policy.votes as usize
            })
            .map(|(s, _)| *s)
            .collect();
        let prediction_drifted = votes.get(PREDICTION_SUBJECT).is_some_and(|v| !v.is_empty());
        if drifted.len() < policy.drifted_features_for_retrain && !prediction_drifted {
            return;
        }
        if self
            .last_retrain_at
            .is_some_and(|last| now.saturating_sub(last) < policy.cooldown_ms)
        {
            return;
        }
        let mut reasons = Vec::new();
        for (subject, detectors) in &votes {
            if *subject != PREDICTION_SUBJECT && !drifted.contains(subject) {
                continue;
            }
            for (s, d) in detectors {
                if let Some(id) = self
                    .firing_alert_ids
                    .get(&((*s).to_owned(), (*d).to_owned()))
                {
                    reasons.push(id.clone());
                }
                if let Some(record) = self.latest.get(&((*s).to_owned(), (*d).to_owned())) {
                    reasons.push(format!(
                        "{s}: {d} = {:.6} (threshold {})",
                        record.result.statistic, record.result.threshold
                    ));
                }
            }
        }
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
        outputs.push(Output::Retrain(RetrainRequest {
            request_id: RetrainRequest::id_for(
                &self.model_id,
                &self.model_version,
                RetrainTrigger::DataDrift,
                now,
            ),
            model_id: self.model_id.clone(),
            model_version: self.model_version.clone(),
            trigger: RetrainTrigger::DataDrift,
            reasons,
            data_from,
            data_to: now,
            source_offsets,
            created_at: now,
        }));
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
}
