//! The engine of one partition: routes events to their model monitors, keeps the partition's
//! event-time clock, closes panes as the watermark moves and collects the outputs.
//!
//! Owns: the partition's [`PaneClock`] and its (model, version) monitors. Pure and
//! deterministic: models are visited in id order, so the same events give the same outputs.

use std::collections::{BTreeMap, BTreeSet};

use crate::detect::window::{Admission, JumpGuard, PaneClock};
use crate::event::Event;

use serde::{Deserialize, Serialize};

use super::join::{
    JoinBatch, JoinCounters, JoinMeta, JoinRecord, JoinRemovals, JoinValue, JoinedOutcome,
    LabelJoin,
};
use super::model::{
    Collected, EvaluationRecord, ManualOutcome, ModelMonitor, ModelStatus, QualityRecord,
    SeriesReferences, SourcePosition, WarmupChunk,
};
use super::output::Output;
use super::settings::MonitorSettings;
use super::state::{self, StateChange, StateError, StateKey};

/// What happened to an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Counted in its model's reference or window.
    Accepted,
    /// Its pane had closed: counted as late and dropped.
    Late,
    /// Its timestamp is further ahead than `monitor.windows.max_time_jump_ms` of the
    /// partition's newest event time (and not confirmed), or of when its record was written:
    /// counted and dropped.
    TooFarAhead,
    /// A label: offered to the label join.
    Label,
}

/// Counters of one engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineCounters {
    /// Prediction events accepted.
    pub predictions: u64,
    /// Events dropped as late.
    pub late: u64,
    /// Events dropped as too far ahead in event time.
    pub too_far_ahead: u64,
    /// Label events seen.
    pub labels: u64,
    /// Joined outcomes whose pane had already closed: applied to the oldest open pane.
    pub late_outcomes: u64,
    /// The label join's counters.
    pub join: JoinCounters,
}

/// Why an engine could not be restored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RestoreError {
    /// The monitor settings are invalid.
    #[error("invalid monitor settings: {}", .0.join("; "))]
    Settings(Vec<String>),
    /// A state record could not be read.
    #[error(transparent)]
    State(#[from] StateError),
}

/// The monitor engine of one partition.
#[derive(Debug, Clone)]
pub struct Engine {
    settings: MonitorSettings,
    clock: PaneClock,
    models: BTreeMap<String, BTreeMap<String, ModelMonitor>>,
    collected: Collected,
    counters: EngineCounters,
    join: LabelJoin,
    /// Joined outcomes waiting for their pane to close, in (known_at, model, event id)
    /// order: applying them in this order, not arrival order, makes quality and concept
    /// drift independent of how the prediction and label topics happened to interleave.
    ready: BTreeSet<ReadyOutcome>,
    /// The engine record changed since the state changelog last wrote it.
    core_changed: bool,
}

/// A joined outcome ordered by (known_at, model, event id), read from the outcome itself: a
/// map keyed by a copy of those would cost an allocation per label (the event id's copy).
#[derive(Debug, Clone)]
struct ReadyOutcome(JoinedOutcome);

impl ReadyOutcome {
    fn order_key(&self) -> (i64, &str, &str) {
        (self.0.known_at(), &*self.0.model_id, &self.0.event_id)
    }
}

impl PartialEq for ReadyOutcome {
    fn eq(&self, other: &Self) -> bool {
        self.order_key() == other.order_key()
    }
}

impl Eq for ReadyOutcome {}

impl PartialOrd for ReadyOutcome {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ReadyOutcome {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.order_key().cmp(&other.order_key())
    }
}

/// The engine's own record in the state changelog, as written (borrowing).
#[derive(Serialize)]
struct EngineRecordRef<'a> {
    clock: &'a PaneClock,
    counters: &'a EngineCounters,
    ready: Vec<&'a JoinedOutcome>,
    join: JoinMeta,
}

/// The engine's own record, as read: the same layout as [`EngineRecordRef`].
#[derive(Deserialize)]
struct EngineRecord {
    clock: PaneClock,
    counters: EngineCounters,
    ready: Vec<JoinedOutcome>,
    join: JoinMeta,
}

impl Engine {
    /// An engine with validated settings.
    ///
    /// # Errors
    /// Every problem [`MonitorSettings::validate`] finds.
    pub fn new(settings: MonitorSettings) -> Result<Self, Vec<String>> {
        let problems = settings.validate();
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut clock = PaneClock::new(
            settings.windows.pane_ms,
            settings.windows.allowed_lateness_ms,
        )
        .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        if settings.windows.max_time_jump_ms > 0 {
            clock = clock.with_jump_guard(JumpGuard {
                max_jump_ms: settings.windows.max_time_jump_ms,
                confirmations: settings.windows.time_jump_confirmations,
            });
        }
        let join = LabelJoin::new(
            settings.performance.join_ttl_ms,
            settings.performance.join_max_entries,
        );
        Ok(Self {
            settings,
            clock,
            models: BTreeMap::new(),
            collected: Collected::default(),
            counters: EngineCounters::default(),
            join,
            ready: BTreeSet::new(),
            core_changed: true,
        })
    }

    /// The parts of the state that changed since the last call, encoded for the state
    /// changelog (see [`super::state`]); empty when nothing changed.
    ///
    /// # Errors
    /// [`StateError::Encode`] when a part fails to encode (a bug). The changes are then
    /// incomplete: the caller must not commit past the events they account for, and this
    /// engine can no longer describe itself as deltas (stop it, restore from the changelog).
    pub fn take_state_changes(&mut self) -> Result<Vec<StateChange>, StateError> {
        let mut changes = Vec::new();
        if !std::mem::take(&mut self.core_changed) {
            return Ok(changes);
        }
        changes.push(StateChange {
            key: StateKey::Engine,
            value: Some(state::encode(&EngineRecordRef {
                clock: &self.clock,
                counters: &self.counters,
                ready: self.ready.iter().map(|ready| &ready.0).collect(),
                join: self.join.meta(),
            })?),
        });
        for (model_id, versions) in &mut self.models {
            for (model_version, monitor) in versions {
                let (changed, references_changed) =
                    (monitor.take_changed(), monitor.take_references_changed());
                if !changed && !references_changed {
                    continue;
                }
                // Encoded apart: the references are written only when they change. They stay
                // out of the monitor while its own record is encoded, and go back before an
                // error is returned, so the monitor keeps working either way.
                let references = monitor.take_references();
                let written = encode_monitor_changes(
                    model_id,
                    model_version,
                    monitor,
                    references_changed.then_some(&references),
                    changed,
                    &mut changes,
                );
                monitor.put_references(references);
                written?;
            }
        }
        for (record, value) in self.join.take_changes()? {
            let value = match value {
                None => None,
                Some(JoinValue::Batch(encoded)) => Some(encoded),
                Some(JoinValue::Removals(arrivals)) => Some(state::encode(&arrivals)?),
            };
            changes.push(StateChange {
                key: StateKey::Join(record),
                value,
            });
        }
        Ok(changes)
    }

    /// An engine rebuilt from its latest state records (deletions already applied), or
    /// `None` when there is no engine record (the partition has no state yet).
    ///
    /// # Errors
    /// Invalid `settings`, or a record that cannot be read ([`StateError`]).
    pub fn restore<'a>(
        settings: MonitorSettings,
        records: impl IntoIterator<Item = (&'a StateKey, &'a [u8])>,
    ) -> Result<Option<Self>, RestoreError> {
        let mut engine = Self::new(settings).map_err(RestoreError::Settings)?;
        let mut core: Option<EngineRecord> = None;
        let (mut batches, mut removals) = (Vec::new(), Vec::new());
        let mut references = BTreeMap::new();
        let mut warmup_chunks: BTreeMap<(String, String), BTreeMap<u32, WarmupChunk>> =
            BTreeMap::new();
        let mut chunks_written: BTreeMap<(String, String), u32> = BTreeMap::new();
        for (key, value) in records {
            match key {
                StateKey::Engine => core = Some(state::decode(value)?),
                StateKey::Model {
                    model_id,
                    model_version,
                } => {
                    // Format 4 records carry the number of warm-up chunks written with
                    // them; format 3 ones hold their warm-up sample themselves.
                    let (monitor, written): (ModelMonitor, u32) = match state::format_version(value)
                    {
                        Some(version) if version < 4 => (state::decode(value)?, 0),
                        _ => state::decode(value)?,
                    };
                    chunks_written.insert((model_id.clone(), model_version.clone()), written);
                    engine
                        .models
                        .entry(model_id.clone())
                        .or_default()
                        .insert(model_version.clone(), monitor);
                }
                StateKey::References {
                    model_id,
                    model_version,
                } => {
                    let decoded: SeriesReferences = state::decode(value)?;
                    references.insert((model_id.clone(), model_version.clone()), decoded);
                }
                StateKey::Warmup {
                    model_id,
                    model_version,
                    chunk,
                } => {
                    let decoded: WarmupChunk = state::decode(value)?;
                    warmup_chunks
                        .entry((model_id.clone(), model_version.clone()))
                        .or_default()
                        .insert(*chunk, decoded);
                }
                StateKey::Join(JoinRecord::Batch(first)) => {
                    batches.push((*first, state::decode::<JoinBatch>(value)?));
                }
                StateKey::Join(JoinRecord::Removals(sequence)) => {
                    removals.push((*sequence, state::decode::<JoinRemovals>(value)?));
                }
            }
        }
        let Some(core) = core else {
            return Ok(None);
        };
        // Every monitor's references were written with it (at its creation at the latest).
        for (model_id, versions) in &mut engine.models {
            for (model_version, monitor) in versions {
                let found = references
                    .remove(&(model_id.clone(), model_version.clone()))
                    .ok_or_else(|| {
                        StateError::Corrupt(format!(
                            "model {model_id} version {model_version} has no references record"
                        ))
                    })?;
                monitor
                    .restore_references(found)
                    .map_err(StateError::Corrupt)?;
                let key = (model_id.clone(), model_version.clone());
                let chunks = warmup_chunks.remove(&key).unwrap_or_default();
                let written = chunks_written.get(&key).copied().unwrap_or(0);
                monitor
                    .restore_warmup(chunks, written)
                    .map_err(StateError::Corrupt)?;
            }
        }
        engine.clock = core.clock;
        engine.counters = core.counters;
        engine.ready = core.ready.into_iter().map(ReadyOutcome).collect();
        let performance = &engine.settings.performance;
        engine.join = LabelJoin::restore(
            performance.join_ttl_ms,
            performance.join_max_entries,
            core.join,
            batches,
            removals,
        );
        engine.core_changed = false;
        Ok(Some(engine))
    }

    /// The settings.
    pub fn settings(&self) -> &MonitorSettings {
        &self.settings
    }

    /// Processes one event. Outputs it causes are collected until [`Engine::drain_outputs`].
    pub fn process(&mut self, event: &Event<'_>, source: SourcePosition<'_>) -> Disposition {
        self.core_changed = true;
        let prediction = match event {
            Event::Label(label) => {
                self.counters.labels += 1;
                if let Some(outcome) = self.join.offer_label(label) {
                    self.schedule_outcome(outcome);
                }
                return Disposition::Label;
            }
            Event::Prediction(prediction) => prediction,
        };
        let pane = match self.clock.admit(prediction.timestamp, source.written_at) {
            Admission::OnTime { pane } => pane,
            Admission::Late => {
                self.counters.late += 1;
                return Disposition::Late;
            }
            Admission::TooFarAhead => {
                self.counters.too_far_ahead += 1;
                return Disposition::TooFarAhead;
            }
        };
        self.counters.predictions += 1;
        let settings = &self.settings;
        // The join's index is large (a million waiting predictions) and its slot for this
        // event almost never cached: ask for it now, and it arrives while the features are
        // counted (~40 % of this function when waited for).
        let join_key = settings.performance.join_predictions.then(|| {
            let key = LabelJoin::key_of(&prediction.model_id, &prediction.event_id);
            self.join.prefetch(key);
            key
        });
        let versions = match self.models.get_mut(prediction.model_id.as_ref()) {
            Some(versions) => versions,
            None => self
                .models
                .entry(prediction.model_id.to_string())
                .or_default(),
        };
        let monitor = match versions.get_mut(prediction.model_version.as_ref()) {
            Some(monitor) => monitor,
            None => versions
                .entry(prediction.model_version.to_string())
                .or_insert_with(|| {
                    ModelMonitor::new(&prediction.model_id, &prediction.model_version, settings)
                }),
        };
        monitor.observe(prediction, pane, source, settings);
        monitor.mark_changed();
        let joined = join_key.and_then(|key| {
            self.join
                .offer_prediction_keyed(key, prediction, monitor.sensitive_attribute())
        });
        if let Some(outcome) = joined {
            self.schedule_outcome(outcome);
        }
        if let Some(through) = self.clock.advance() {
            if let Some(now) = self.clock.max_event_time() {
                self.join.expire(now);
            }
            self.close_through(through);
        }
        Disposition::Accepted
    }

    /// Queues a joined outcome for its pane, or applies it at once to the oldest open pane
    /// when its own pane has closed (a label later than the lateness bound is still worth
    /// counting; it just cannot go back in time).
    fn schedule_outcome(&mut self, outcome: JoinedOutcome) {
        let pane = self.clock.pane_of(outcome.known_at());
        match self.clock.closed_through() {
            Some(closed) if pane <= closed => {
                self.counters.late_outcomes += 1;
                self.apply_outcome(closed + 1, &outcome);
            }
            _ => {
                // `replace`: an outcome with the same key (a repeated event id) takes the
                // place of the one before, as a map insertion would.
                self.ready.replace(ReadyOutcome(outcome));
                // Labels far ahead of the predictions' clock must not pile up unbounded.
                if self.ready.len() > self.settings.performance.join_max_entries {
                    if let Some(ReadyOutcome(early)) = self.ready.pop_first() {
                        let pane = self.clock.pane_of(early.known_at());
                        self.apply_outcome(pane, &early);
                    }
                }
            }
        }
    }

    fn apply_outcome(&mut self, pane: i64, outcome: &JoinedOutcome) {
        if let Some(monitor) = self
            .models
            .get_mut(&*outcome.model_id)
            .and_then(|versions| versions.get_mut(&*outcome.prediction.model_version))
        {
            monitor.record_outcome(pane, outcome);
            monitor.mark_changed();
        }
    }

    fn close_through(&mut self, through: i64) {
        // Outcomes known before the closing panes' end go in first, in key order.
        let end = self.clock.pane_bounds(through).1;
        while self
            .ready
            .first()
            .is_some_and(|ready| ready.0.known_at() < end)
        {
            if let Some(ReadyOutcome(outcome)) = self.ready.pop_first() {
                let pane = self.clock.pane_of(outcome.known_at());
                self.apply_outcome(pane, &outcome);
            }
        }
        let pane_ms = self.clock.pane_ms();
        for versions in self.models.values_mut() {
            for monitor in versions.values_mut() {
                monitor.close_through(through, pane_ms, &self.settings, &mut self.collected);
                monitor.mark_changed();
            }
        }
    }

    /// Outputs produced since the last drain, in production order.
    pub fn drain_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.collected.outputs)
    }

    /// Evaluations performed since the last drain (for metrics).
    pub fn drain_evaluations(&mut self) -> Vec<EvaluationRecord> {
        std::mem::take(&mut self.collected.evaluations)
    }

    /// Window quality computed since the last drain (for metrics and reports).
    pub fn drain_quality(&mut self) -> Vec<QualityRecord> {
        std::mem::take(&mut self.collected.quality)
    }

    /// Counters.
    pub fn counters(&self) -> EngineCounters {
        EngineCounters {
            join: self.join.counters(),
            ..self.counters
        }
    }

    /// Predictions and labels waiting in the label join.
    pub fn join_waiting(&self) -> usize {
        self.join.waiting()
    }

    /// Whether this engine monitors `model_id`.
    pub fn has_model(&self, model_id: &str) -> bool {
        self.models.contains_key(model_id)
    }

    /// A manual retrain request for the most recently active version of `model_id`, at the
    /// partition's current event time; `None` when this engine does not monitor the model.
    /// An issued request is also queued with the outputs.
    pub fn manual_retrain(
        &mut self,
        model_id: &str,
        reason: &str,
        force: bool,
    ) -> Option<ManualOutcome> {
        let now = self.clock.max_event_time()?;
        let monitor = self
            .models
            .get_mut(model_id)?
            .values_mut()
            .max_by_key(|m| (m.last_event_time(), m.events()))?;
        let outcome = monitor.manual_retrain(now, reason, force, &self.settings);
        monitor.mark_changed();
        self.core_changed = true;
        if let ManualOutcome::Requested(request) = &outcome {
            self.collected
                .outputs
                .push(Output::Retrain(request.clone()));
        }
        Some(outcome)
    }

    /// Current watermark (event time, ms).
    pub fn watermark(&self) -> Option<i64> {
        self.clock.watermark()
    }

    /// Status of every model version, in id order.
    pub fn status(&self) -> Vec<ModelStatus> {
        self.models
            .values()
            .flat_map(|versions| versions.values().map(ModelMonitor::status))
            .collect()
    }
}

/// Appends the changelog records of one model version: its references when `references`
/// is given (they changed), and when `changed`, its new warm-up chunk, its own record (with
/// `monitor`'s references already moved out) and the deletions of a freeze.
fn encode_monitor_changes(
    model_id: &str,
    model_version: &str,
    monitor: &mut ModelMonitor,
    references: Option<&SeriesReferences>,
    changed: bool,
    changes: &mut Vec<StateChange>,
) -> Result<(), StateError> {
    if let Some(references) = references {
        changes.push(StateChange {
            key: StateKey::References {
                model_id: model_id.to_owned(),
                model_version: model_version.to_owned(),
            },
            value: Some(state::encode(references)?),
        });
    }
    if !changed {
        return Ok(());
    }
    // In this order: the new chunk, the record that counts it, then the deletions of a
    // freeze. A commit cut short (at-least-once mode writes without a transaction) then
    // leaves a state that restores: see `ModelMonitor::restore_warmup`.
    let warmup = monitor.take_warmup_changes();
    let chunk_key = |chunk: u32| StateKey::Warmup {
        model_id: model_id.to_owned(),
        model_version: model_version.to_owned(),
        chunk,
    };
    if let Some((number, chunk)) = warmup.chunk {
        changes.push(StateChange {
            key: chunk_key(number),
            value: Some(state::encode(&chunk)?),
        });
    }
    let written = monitor.warmup_chunks_written();
    changes.push(StateChange {
        key: StateKey::Model {
            model_id: model_id.to_owned(),
            model_version: model_version.to_owned(),
        },
        value: Some(monitor.without_warmup_values(|m| state::encode(&(m, written)))?),
    });
    for chunk in warmup.deleted {
        changes.push(StateChange {
            key: chunk_key(chunk),
            value: None,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use rand_distr::{Distribution, Normal};

    use super::*;
    use crate::event::{FeatureValue, Prediction, PredictionEvent};
    use crate::monitor::model::ManualOutcome;
    use crate::monitor::output::{AlertState, RetrainTrigger};

    const SOURCE: SourcePosition<'static> = SourcePosition {
        topic: "t",
        partition: 0,
        offset: 0,
        written_at: None,
    };

    /// Events for model "m": `amount` (numeric) drifts by +1σ at `drift_at`; `income` (numeric)
    /// and `country` (categorical) never drift. 10 events per second of event time.
    fn stream(seed: u64, n: usize, drift_at: usize) -> Vec<PredictionEvent<'static>> {
        let mut rng = StdRng::seed_from_u64(seed);
        let normal = Normal::new(0.0, 1.0).unwrap();
        (0..n)
            .map(|i| {
                let shift = if i >= drift_at { 1.0 } else { 0.0 };
                let amount = normal.sample(&mut rng) + shift;
                let income = 50.0 + 10.0 * normal.sample(&mut rng);
                let country = ["fr", "de", "us", "jp"][rng.random_range(0..4)];
                PredictionEvent {
                    event_id: Cow::Owned(format!("e{i}")),
                    model_id: Cow::Borrowed("m"),
                    model_version: Cow::Borrowed("1"),
                    timestamp: 1_700_000_000_000 + i as i64 * 100,
                    features: vec![
                        (Cow::Borrowed("amount"), FeatureValue::Number(amount)),
                        (Cow::Borrowed("income"), FeatureValue::Number(income)),
                        (
                            Cow::Borrowed("country"),
                            FeatureValue::Text(Cow::Borrowed(country)),
                        ),
                    ],
                    prediction: Prediction {
                        score: Some(0.5 + 0.1 * normal.sample(&mut rng)),
                        label: None,
                        probabilities: None,
                    },
                    attributes: Vec::new(),
                }
            })
            .collect()
    }

    fn settings() -> MonitorSettings {
        let mut settings = MonitorSettings::default();
        settings.reference.warmup_events = 3_000;
        settings.windows.panes = 5;
        settings.windows.allowed_lateness_ms = 1_000;
        settings
    }

    fn run(events: &[PredictionEvent<'static>]) -> Vec<Output> {
        let mut engine = Engine::new(settings()).unwrap();
        let mut outputs = Vec::new();
        for (offset, event) in events.iter().enumerate() {
            let source = SourcePosition {
                offset: offset as i64,
                written_at: None,
                ..SOURCE
            };
            engine.process(&Event::Prediction(event.clone()), source);
            outputs.extend(engine.drain_outputs());
        }
        outputs
    }

    fn alerts(outputs: &[Output]) -> Vec<&crate::monitor::output::DriftAlert> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Alert(a) => Some(a),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn catches_the_drifted_feature_only_and_only_after_the_drift() {
        let drift_at = 12_000;
        let events = stream(7, 24_000, drift_at);
        let drift_time = events[drift_at].timestamp;
        let outputs = run(&events);
        let alerts = alerts(&outputs);
        let firing: Vec<_> = alerts
            .iter()
            .filter(|a| a.state == AlertState::Firing)
            .collect();
        assert!(
            firing
                .iter()
                .any(|a| a.subject == "amount" && a.detector == "psi"),
            "{firing:#?}"
        );
        assert!(
            firing
                .iter()
                .any(|a| a.subject == "amount" && a.detector == "ks"),
            "{firing:#?}"
        );
        for alert in &firing {
            assert_eq!(alert.subject, "amount", "false alarm: {alert:#?}");
            assert!(
                alert.detected_at > drift_time,
                "alert before the drift: {alert:#?}"
            );
        }
    }

    #[test]
    fn a_feature_absent_from_an_event_is_counted_missing_for_it() {
        // Warm-up and monitoring both: every 7th event lacks `income` (not the first: a
        // feature is known from its first appearance); with `doubled`, every 5th carries
        // `amount` twice (the first value wins, the second is not a second observation).
        let quality = |doubled: bool| {
            let mut events = stream(3, 6_000, usize::MAX);
            for (i, event) in events.iter_mut().enumerate() {
                if i % 7 == 3 {
                    event.features.retain(|(name, _)| name != "income");
                }
                if doubled && i % 5 == 0 {
                    event
                        .features
                        .push((Cow::Borrowed("amount"), FeatureValue::Number(1e9)));
                }
            }
            let mut engine = Engine::new(settings()).unwrap();
            for (offset, event) in events.iter().enumerate() {
                let source = SourcePosition {
                    offset: offset as i64,
                    ..SOURCE
                };
                engine.process(&Event::Prediction(event.clone()), source);
            }
            let status = engine.status();
            let of = |name: &str| {
                status[0]
                    .features
                    .iter()
                    .find(|f| f.name == name)
                    .map(|f| f.quality)
                    .unwrap()
            };
            (of("income"), of("amount"), of("country"))
        };
        let (income, amount, country) = quality(false);
        assert_eq!(
            income.missing,
            (0..6_000).filter(|i| i % 7 == 3).count() as u64
        );
        assert_eq!(income.observed, 6_000);
        assert_eq!((amount.missing, amount.observed), (0, 6_000));
        assert_eq!((country.missing, country.observed), (0, 6_000));
        // The repeated key changes nothing (its 1e9 would be out of range had it counted).
        assert_eq!(quality(true), (income, amount, country));
    }

    #[test]
    fn replays_are_byte_identical() {
        let events = stream(11, 20_000, 10_000);
        assert_eq!(run(&events), run(&events));
    }

    #[test]
    fn no_drift_no_alert() {
        let outputs = run(&stream(3, 24_000, usize::MAX));
        assert!(outputs.is_empty(), "{outputs:#?}");
    }

    #[test]
    fn two_drifted_features_request_one_retrain_within_cooldown() {
        let mut events = stream(5, 24_000, usize::MAX);
        for event in events.iter_mut().skip(12_000) {
            for (_, value) in &mut event.features {
                match value {
                    FeatureValue::Number(x) => *x += 15.0,
                    FeatureValue::Text(c) => *c = Cow::Borrowed("br"),
                    _ => {}
                }
            }
        }
        let outputs = run(&events);
        let requests: Vec<_> = outputs
            .iter()
            .filter_map(|o| match o {
                Output::Retrain(r) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(requests.len(), 1, "{requests:#?}");
        let request = requests[0];
        assert_eq!(request.trigger, RetrainTrigger::DataDrift);
        assert!(
            request.reasons.iter().any(|r| r.len() == 64),
            "alert ids among reasons: {:?}",
            request.reasons
        );
        assert_eq!(request.source_offsets.len(), 1);
        assert!(request.source_offsets[0].from_offset <= request.source_offsets[0].to_offset);
        assert!(request.data_from < request.data_to);
    }

    #[test]
    fn late_events_are_counted_and_dropped() {
        let mut engine = Engine::new(settings()).unwrap();
        let events = stream(1, 100, usize::MAX);
        for event in &events {
            engine.process(&Event::Prediction(event.clone()), SOURCE);
        }
        let mut late = events[0].clone();
        late.timestamp -= 120_000;
        assert_eq!(
            engine.process(&Event::Prediction(late), SOURCE),
            Disposition::Late
        );
        assert_eq!(engine.counters().late, 1);
        assert_eq!(engine.counters().predictions, 100);
    }

    #[test]
    fn a_far_future_timestamp_is_dropped_and_the_stream_goes_on() {
        let mut engine = Engine::new(settings()).unwrap();
        let events = stream(1, 400, usize::MAX);
        for (i, event) in events.iter().enumerate() {
            engine.process(&Event::Prediction(event.clone()), SOURCE);
            if i == 200 {
                // A producer's clock decades off: refused, counted.
                let mut bad = event.clone();
                bad.timestamp = event.timestamp * 1_000;
                assert_eq!(
                    engine.process(&Event::Prediction(bad), SOURCE),
                    Disposition::TooFarAhead
                );
            }
        }
        assert_eq!(engine.counters().too_far_ahead, 1);
        assert_eq!(engine.counters().late, 0, "the stream was not blinded");
        assert_eq!(engine.counters().predictions, 400);
    }

    #[test]
    fn a_far_future_first_event_does_not_blind_the_partition() {
        let mut engine = Engine::new(settings()).unwrap();
        let events = stream(1, 400, usize::MAX);
        // Each record written 50 ms after its event happened, as a producer would.
        let written = |timestamp: i64| SourcePosition {
            written_at: Some(timestamp + 50),
            ..SOURCE
        };
        let mut bad = events[0].clone();
        bad.timestamp *= 1_000;
        assert_eq!(
            engine.process(&Event::Prediction(bad), written(events[0].timestamp)),
            Disposition::TooFarAhead
        );
        for event in &events {
            assert_eq!(
                engine.process(&Event::Prediction(event.clone()), written(event.timestamp)),
                Disposition::Accepted
            );
        }
        assert_eq!(engine.counters().too_far_ahead, 1);
        assert_eq!(engine.counters().late, 0);
        assert_eq!(engine.counters().predictions, 400);
    }

    #[test]
    fn each_version_has_its_own_reference() {
        let mut engine = Engine::new(settings()).unwrap();
        for (i, event) in stream(2, 4_000, usize::MAX).into_iter().enumerate() {
            let mut event = event;
            if i % 2 == 1 {
                event.model_version = Cow::Borrowed("2");
            }
            engine.process(&Event::Prediction(event), SOURCE);
        }
        let status = engine.status();
        assert_eq!(status.len(), 2);
        assert!(status.iter().all(|s| s.events == 2_000));
        assert!(status
            .iter()
            .all(|s| s.phase == crate::monitor::model::Phase::WarmingUp));
    }

    /// A labelled stream for model "q": one prediction per 100 ms with a score; the label
    /// of event i arrives `label_delay` events later (label time = that event's time). The
    /// model is right with probability `accuracy_before` before `change_at` and
    /// `accuracy_after` from there on. Attribute `group` alternates "a"/"b"; group "b" is
    /// selected more often after `change_at` when `unfair_after` is set.
    struct Labelled {
        seed: u64,
        n: usize,
        change_at: usize,
        accuracy_before: f64,
        accuracy_after: f64,
        label_delay: usize,
        labels_first: bool,
    }

    impl Labelled {
        fn events(&self) -> Vec<Event<'static>> {
            let mut rng = StdRng::seed_from_u64(self.seed);
            let normal = Normal::new(0.0, 1.0).unwrap();
            let time = |i: usize| 1_700_000_000_000 + i as i64 * 100;
            let mut predictions = Vec::new();
            let mut labels = Vec::new();
            for i in 0..self.n {
                let truth = rng.random_bool(0.5);
                let accuracy = if i < self.change_at {
                    self.accuracy_before
                } else {
                    self.accuracy_after
                };
                let predicted = if rng.random_bool(accuracy) {
                    truth
                } else {
                    !truth
                };
                let score: f64 = if predicted { 0.75 } else { 0.25 };
                predictions.push(PredictionEvent {
                    event_id: Cow::Owned(format!("q{i}")),
                    model_id: Cow::Borrowed("q"),
                    model_version: Cow::Borrowed("1"),
                    timestamp: time(i),
                    features: vec![(
                        Cow::Borrowed("x"),
                        FeatureValue::Number(normal.sample(&mut rng)),
                    )],
                    prediction: Prediction {
                        score: Some(score + 0.01 * normal.sample(&mut rng)),
                        label: None,
                        probabilities: None,
                    },
                    attributes: vec![(
                        Cow::Borrowed("group"),
                        Cow::Borrowed(if i % 2 == 0 { "a" } else { "b" }),
                    )],
                });
                labels.push(crate::event::LabelEvent {
                    event_id: Cow::Owned(format!("q{i}")),
                    model_id: Cow::Borrowed("q"),
                    timestamp: time(i + self.label_delay),
                    label: crate::event::LabelValue::Text(Cow::Borrowed(if truth {
                        "1"
                    } else {
                        "0"
                    })),
                });
            }
            let mut events = Vec::new();
            let mut labels = labels.into_iter().enumerate().peekable();
            for (i, prediction) in predictions.into_iter().enumerate() {
                if self.labels_first {
                    if let Some((_, label)) = labels.next() {
                        events.push(Event::Label(label));
                    }
                }
                events.push(Event::Prediction(prediction));
                while let Some((_, label)) = labels.next_if(|(j, _)| j + self.label_delay <= i) {
                    events.push(Event::Label(label));
                }
            }
            events.extend(labels.map(|(_, l)| Event::Label(l)));
            events
        }
    }

    fn labelled_settings() -> MonitorSettings {
        let mut settings = settings();
        settings.windows.allowed_lateness_ms = 120_000;
        settings.performance.reference_outcomes = 2_000;
        settings
    }

    fn run_events(settings: MonitorSettings, events: &[Event<'static>]) -> (Engine, Vec<Output>) {
        let mut engine = Engine::new(settings).unwrap();
        let mut outputs = Vec::new();
        for (offset, event) in events.iter().enumerate() {
            let source = SourcePosition {
                offset: offset as i64,
                written_at: None,
                ..SOURCE
            };
            engine.process(event, source);
            outputs.extend(engine.drain_outputs());
        }
        (engine, outputs)
    }

    /// Outputs without their source offsets (which index a test's merged event list).
    fn without_offsets(outputs: Vec<Output>) -> Vec<Output> {
        outputs
            .into_iter()
            .map(|output| match output {
                Output::Retrain(mut r) => {
                    r.source_offsets.clear();
                    Output::Retrain(r)
                }
                alert => alert,
            })
            .collect()
    }

    fn requests(outputs: &[Output]) -> Vec<&crate::monitor::output::RetrainRequest> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Retrain(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_quality_drop_is_caught_from_joined_labels() {
        let stream = Labelled {
            seed: 21,
            n: 24_000,
            change_at: 12_000,
            accuracy_before: 0.9,
            accuracy_after: 0.6,
            label_delay: 50,
            labels_first: false,
        };
        let events = stream.events();
        let change_time = 1_700_000_000_000 + 12_000 * 100;
        let (engine, outputs) = run_events(labelled_settings(), &events);
        let firing: Vec<_> = alerts(&outputs)
            .into_iter()
            .filter(|a| a.state == AlertState::Firing)
            .collect();
        let performance: Vec<_> = firing
            .iter()
            .filter(|a| a.subject == crate::monitor::model::PERFORMANCE_SUBJECT)
            .collect();
        assert!(
            performance.iter().any(|a| a.detector == "adwin_error"),
            "concept drift: {firing:#?}"
        );
        assert!(
            performance
                .iter()
                .any(|a| a.detector == "accuracy_degradation"),
            "accuracy drop: {firing:#?}"
        );
        for alert in &performance {
            assert!(alert.detected_at > change_time, "{alert:#?}");
        }
        let requests = requests(&outputs);
        assert!(!requests.is_empty());
        assert!(matches!(
            requests[0].trigger,
            RetrainTrigger::Performance | RetrainTrigger::ConceptDrift
        ));
        assert!(requests[0].created_at > change_time);
        assert!(
            requests[0].reasons.iter().any(|r| r.len() == 64),
            "{:?}",
            requests[0].reasons
        );
        let status = &engine.status()[0];
        let performance = status.performance.as_ref().unwrap();
        assert_eq!(
            performance.task,
            crate::monitor::settings::TaskKind::Classification
        );
        let accuracy = performance.window.accuracy.unwrap();
        assert!((0.5..0.7).contains(&accuracy), "{accuracy}");
        let reference = performance.reference.as_ref().unwrap().accuracy.unwrap();
        assert!((0.85..0.95).contains(&reference), "{reference}");
        assert_eq!(engine.counters().join.joined, 24_000);
    }

    #[test]
    fn a_steady_model_raises_no_quality_alert() {
        let stream = Labelled {
            seed: 4,
            n: 24_000,
            change_at: usize::MAX,
            accuracy_before: 0.85,
            accuracy_after: 0.85,
            label_delay: 30,
            labels_first: false,
        };
        let (_, outputs) = run_events(labelled_settings(), &stream.events());
        assert!(outputs.is_empty(), "{outputs:#?}");
    }

    /// The stream both interleaving tests reorder: a quality drop at event 10,000.
    fn interleaving_base() -> Labelled {
        Labelled {
            seed: 8,
            n: 20_000,
            change_at: 10_000,
            accuracy_before: 0.9,
            accuracy_after: 0.65,
            label_delay: 10,
            labels_first: false,
        }
    }

    /// A compacted changelog: the latest value of each key, deletions applied.
    fn apply_changes(log: &mut BTreeMap<StateKey, Vec<u8>>, changes: Vec<StateChange>) {
        for change in changes {
            match change.value {
                Some(value) => log.insert(change.key, value),
                None => log.remove(&change.key),
            };
        }
    }

    /// Runs `events`, writing the changelog every `commit_every` events and restoring a new
    /// engine from it at each of `crash_at` (the events since the last write are processed
    /// again, as after a crash); returns the outputs that a transactional sink would keep.
    fn run_with_crashes(
        settings: MonitorSettings,
        events: &[Event<'static>],
        commit_every: usize,
        crash_at: &[usize],
    ) -> (Engine, Vec<Output>) {
        let mut log: BTreeMap<StateKey, Vec<u8>> = BTreeMap::new();
        let mut engine = Engine::new(settings.clone()).unwrap();
        let (mut committed, mut pending) = (Vec::new(), Vec::new());
        let mut committed_through = 0;
        let mut crashes = crash_at.iter().copied().peekable();
        let mut i = 0;
        while i < events.len() {
            if crashes.next_if(|&at| at == i).is_some() {
                // Uncommitted outputs are aborted; state comes back from the changelog.
                pending.clear();
                engine = Engine::restore(settings.clone(), log.iter().map(|(k, v)| (k, &v[..])))
                    .unwrap()
                    .unwrap_or_else(|| Engine::new(settings.clone()).unwrap());
                i = committed_through;
                continue;
            }
            let source = SourcePosition {
                offset: i as i64,
                written_at: None,
                ..SOURCE
            };
            engine.process(&events[i], source);
            pending.extend(engine.drain_outputs());
            i += 1;
            if i % commit_every == 0 || i == events.len() {
                apply_changes(
                    &mut log,
                    engine.take_state_changes().expect("state encodes"),
                );
                committed.append(&mut pending);
                committed_through = i;
            }
        }
        (engine, committed)
    }

    #[test]
    fn state_restored_from_the_changelog_continues_exactly_like_an_uninterrupted_run() {
        // Features drift (data drift) and the model's accuracy drops (quality, concept
        // drift): references, windows, ADWIN, alert machines, cooldowns and the label join
        // all have state that must survive.
        let stream = Labelled {
            seed: 4,
            n: 24_000,
            change_at: 12_000,
            accuracy_before: 0.9,
            accuracy_after: 0.6,
            label_delay: 30,
            labels_first: false,
        };
        let mut events = stream.events();
        for event in &mut events[24_000..] {
            if let Event::Prediction(p) = event {
                for (_, value) in &mut p.features {
                    if let FeatureValue::Number(x) = value {
                        *x += 1.0;
                    }
                }
            }
        }
        let (mut reference, expected) = run_events(labelled_settings(), &events);
        assert!(
            expected.iter().any(|o| matches!(o, Output::Alert(_)))
                && expected.iter().any(|o| matches!(o, Output::Retrain(_))),
            "the stream must exercise alerts and retrain requests: {expected:#?}"
        );
        let crashes = [999, 7_531, 19_999, 24_100, 31_000, 47_990];
        let (mut restored, outputs) =
            run_with_crashes(labelled_settings(), &events, 1_000, &crashes);
        assert_eq!(outputs, expected, "each output exactly once, the same ones");
        // The same final state: what the changelog would hold is identical.
        let (mut left, mut right) = (BTreeMap::new(), BTreeMap::new());
        reference.core_changed = true;
        restored.core_changed = true;
        for engine in [&mut reference, &mut restored] {
            for versions in engine.models.values_mut() {
                for monitor in versions.values_mut() {
                    monitor.mark_changed();
                    monitor.mark_references_changed();
                }
            }
        }
        apply_changes(
            &mut left,
            reference.take_state_changes().expect("state encodes"),
        );
        apply_changes(
            &mut right,
            restored.take_state_changes().expect("state encodes"),
        );
        let decoded = |log: &BTreeMap<StateKey, Vec<u8>>| -> Vec<(StateKey, ModelMonitor)> {
            log.iter()
                .filter(|(k, _)| matches!(k, StateKey::Model { .. }))
                .map(|(k, v)| (k.clone(), state::decode(v).unwrap()))
                .collect()
        };
        assert_eq!(decoded(&left), decoded(&right));
        let references = |log: &BTreeMap<StateKey, Vec<u8>>| -> Vec<(StateKey, SeriesReferences)> {
            log.iter()
                .filter(|(k, _)| matches!(k, StateKey::References { .. }))
                .map(|(k, v)| (k.clone(), state::decode(v).unwrap()))
                .collect()
        };
        assert_eq!(references(&left), references(&right));
        assert_eq!(
            references(&left).len(),
            decoded(&left).len(),
            "one references record per monitor"
        );
        assert_eq!(reference.counters(), restored.counters());
        assert_eq!(reference.join_waiting(), restored.join_waiting());
        assert_eq!(reference.watermark(), restored.watermark());
    }

    #[test]
    fn references_are_written_when_they_change_not_at_every_commit() {
        let events = stream(3, 8_000, usize::MAX);
        let mut engine = Engine::new(settings()).unwrap();
        let mut log = BTreeMap::new();
        // When each commit (every 500 events) wrote the references.
        let mut written_at = Vec::new();
        for (i, event) in events.iter().enumerate() {
            engine.process(&Event::Prediction(event.clone()), SOURCE);
            if (i + 1) % 500 == 0 {
                let changes = engine.take_state_changes().expect("state encodes");
                if changes
                    .iter()
                    .any(|c| matches!(c.key, StateKey::References { .. }))
                {
                    written_at.push(i + 1);
                }
                apply_changes(&mut log, changes);
            }
        }
        // At creation (no reference yet) and when the 3,000-event warm-up froze.
        assert_eq!(written_at, [500, 3_000]);
        let model = StateKey::Model {
            model_id: "m".into(),
            model_version: "1".into(),
        };
        let references = StateKey::References {
            model_id: "m".into(),
            model_version: "1".into(),
        };
        assert!(
            log[&references].len() > 5 * log[&model].len(),
            "the reference samples are the bulk that no longer repeats: {} vs {} bytes",
            log[&references].len(),
            log[&model].len()
        );
        // The restored engine has its references back: it evaluates like the original.
        let mut restored = Engine::restore(settings(), log.iter().map(|(k, v)| (k, &v[..])))
            .unwrap()
            .unwrap();
        let later = stream(5, 20_000, 0);
        for event in &later[8_000..] {
            engine.process(&Event::Prediction(event.clone()), SOURCE);
            restored.process(&Event::Prediction(event.clone()), SOURCE);
        }
        let (original, again) = (engine.drain_outputs(), restored.drain_outputs());
        assert!(!alerts(&original).is_empty(), "the shifted stream alerts");
        assert_eq!(original, again);
        // A monitor without its references is refused, not run without them.
        log.remove(&references);
        let error =
            Engine::restore(settings(), log.iter().map(|(k, v)| (k, &v[..]))).expect_err("refused");
        assert!(
            error.to_string().contains("no references record"),
            "{error}"
        );
    }

    /// Runs `events` through `engine`, writing the changelog into `log` every `commit_every`
    /// events; returns the outputs.
    fn run_logged(
        engine: &mut Engine,
        log: &mut BTreeMap<StateKey, Vec<u8>>,
        events: &[PredictionEvent<'static>],
        commit_every: usize,
    ) -> Vec<Output> {
        let mut outputs = Vec::new();
        for (i, event) in events.iter().enumerate() {
            engine.process(&Event::Prediction(event.clone()), SOURCE);
            outputs.extend(engine.drain_outputs());
            if (i + 1) % commit_every == 0 {
                apply_changes(log, engine.take_state_changes().expect("state encodes"));
            }
        }
        apply_changes(log, engine.take_state_changes().expect("state encodes"));
        outputs
    }

    fn warmup_chunks(log: &BTreeMap<StateKey, Vec<u8>>) -> Vec<u32> {
        log.keys()
            .filter_map(|k| match k {
                StateKey::Warmup { chunk, .. } => Some(*chunk),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn warm_up_samples_are_written_once_in_chunks_and_deleted_when_the_reference_freezes() {
        // Besides two numeric features and a 4-category one, an id-like feature: nearly every
        // event brings a new category.
        let mut rng = StdRng::seed_from_u64(61);
        let mut events = stream(6, 20_000, 12_000);
        for event in &mut events {
            let user = format!("u{:05}", rng.random_range(0..100_000));
            event
                .features
                .push((Cow::Borrowed("user"), FeatureValue::Text(Cow::Owned(user))));
        }
        let model = StateKey::Model {
            model_id: "m".into(),
            model_version: "1".into(),
        };
        let mut engine = Engine::new(settings()).unwrap();
        let mut log = BTreeMap::new();
        let (mut model_sizes, mut chunks_written) = (Vec::new(), Vec::new());
        // 2,000 of the 3,000 warm-up events, a commit every 100.
        for (i, event) in events[..2_000].iter().enumerate() {
            engine.process(&Event::Prediction(event.clone()), SOURCE);
            if (i + 1) % 100 == 0 {
                let changes = engine.take_state_changes().expect("state encodes");
                chunks_written.extend(changes.iter().filter_map(|c| match (&c.key, &c.value) {
                    (StateKey::Warmup { chunk, .. }, Some(_)) => Some(*chunk),
                    _ => None,
                }));
                apply_changes(&mut log, changes);
                model_sizes.push(log[&model].len());
            }
        }
        // One new chunk per commit, never one rewritten; the model record does not grow with
        // the sample, which is 20 times larger at the end than at the first commit (60 KB
        // more). What it does gain is ADWIN's bucket rows, logarithmic in the events seen.
        assert_eq!(chunks_written, (0..20).collect::<Vec<u32>>());
        let (smallest, largest) = (
            model_sizes.iter().min().unwrap(),
            model_sizes.iter().max().unwrap(),
        );
        assert!(
            largest - smallest < 1_024,
            "model record sizes over the warm-up: {model_sizes:?}"
        );
        let chunk_bytes: usize = log
            .iter()
            .filter(|(k, _)| matches!(k, StateKey::Warmup { .. }))
            .map(|(_, v)| v.len())
            .sum();
        // amount, income and the score: 3 numbers of 8 bytes per event; a user id of 6 bytes,
        // its length and its count (1 byte each) per event, fewer when an id repeats within a
        // chunk; the 4 countries per chunk; headers.
        let (numbers, users) = (2_000 * 3 * 8, 2_000 * 8);
        assert!(
            (numbers + users * 99 / 100..numbers + users + 20 * 64).contains(&chunk_bytes),
            "{chunk_bytes} bytes of chunks"
        );

        // Restored in the middle of its warm-up, the engine goes on exactly like the original:
        // same outputs, the same frozen references, and the chunks are deleted at the freeze.
        let mut restored = Engine::restore(settings(), log.iter().map(|(k, v)| (k, &v[..])))
            .unwrap()
            .unwrap();
        let mut restored_log = log.clone();
        let original_outputs = run_logged(&mut engine, &mut log, &events[2_000..], 100);
        let restored_outputs = run_logged(&mut restored, &mut restored_log, &events[2_000..], 100);
        assert!(
            !alerts(&original_outputs).is_empty(),
            "the drift must be caught"
        );
        assert_eq!(original_outputs, restored_outputs);
        assert_eq!(log, restored_log, "byte-identical changelogs");
        assert_eq!(
            warmup_chunks(&log),
            Vec::<u32>::new(),
            "deleted at the freeze"
        );
    }

    #[test]
    fn a_lost_warm_up_chunk_is_refused_and_a_v3_record_is_upgraded_in_place() {
        let events = stream(8, 12_000, 8_000);
        let mut engine = Engine::new(settings()).unwrap();
        let mut log = BTreeMap::new();
        run_logged(&mut engine, &mut log, &events[..1_500], 100);
        assert_eq!(warmup_chunks(&log), (0..15).collect::<Vec<u32>>());
        let restore = |log: &BTreeMap<StateKey, Vec<u8>>| {
            Engine::restore(settings(), log.iter().map(|(k, v)| (k, &v[..])))
        };
        let chunk = |chunk: u32| StateKey::Warmup {
            model_id: "m".into(),
            model_version: "1".into(),
            chunk,
        };
        for (lost, message) in [
            (4, "warm-up chunk 4 is missing"),
            // The last one: the model record counts it.
            (14, "warm-up chunk 14 is missing"),
        ] {
            let mut damaged = log.clone();
            damaged.remove(&chunk(lost));
            let error = restore(&damaged).expect_err("refused");
            assert!(error.to_string().contains(message), "{error}");
        }

        // State written by the previous release (format v3): the numbers inside the model
        // record, no chunks. It is read, and its first commit writes the whole sample as
        // chunk 0, so that the state it leaves behind restores too.
        let mut v3 = log.clone();
        v3.retain(|k, _| !matches!(k, StateKey::Warmup { .. }));
        let monitor = engine.models.get_mut("m").unwrap().get_mut("1").unwrap();
        let mut record = state::encode(&*monitor).expect("state encodes");
        record[2..4].copy_from_slice(&3u16.to_le_bytes());
        v3.insert(
            StateKey::Model {
                model_id: "m".into(),
                model_version: "1".into(),
            },
            record,
        );
        let mut upgraded = restore(&v3).unwrap().unwrap();
        run_logged(&mut upgraded, &mut v3, &events[1_500..1_600], 100);
        assert_eq!(warmup_chunks(&v3), [0]);
        let mut again = restore(&v3).unwrap().unwrap();
        let mut again_log = v3.clone();
        let original = run_logged(&mut engine, &mut log, &events[1_500..], 100);
        let upgraded_outputs = run_logged(&mut upgraded, &mut v3, &events[1_600..], 100);
        let again_outputs = run_logged(&mut again, &mut again_log, &events[1_600..], 100);
        assert!(!alerts(&original).is_empty(), "the drift must be caught");
        assert_eq!(upgraded_outputs, original);
        assert_eq!(again_outputs, original);
        let references = StateKey::References {
            model_id: "m".into(),
            model_version: "1".into(),
        };
        assert_eq!(v3[&references], log[&references]);
        assert_eq!(again_log[&references], log[&references]);
    }

    #[test]
    fn the_changelog_holds_waiting_join_entries_and_deletes_joined_ones() {
        let stream = Labelled {
            seed: 2,
            n: 500,
            change_at: usize::MAX,
            accuracy_before: 0.9,
            accuracy_after: 0.9,
            label_delay: 50,
            labels_first: false,
        };
        let events = stream.events();
        let mut engine = Engine::new(labelled_settings()).unwrap();
        let mut log = BTreeMap::new();
        // Predictions 0..300 and the labels of 0..250.
        let cut = events
            .iter()
            .position(|e| matches!(e, Event::Prediction(p) if p.event_id == "q300"))
            .unwrap();
        // A commit every 40 events.
        for (i, event) in events[..cut].iter().enumerate() {
            engine.process(event, SOURCE);
            if i % 40 == 39 || i + 1 == cut {
                apply_changes(
                    &mut log,
                    engine.take_state_changes().expect("state encodes"),
                );
            }
        }
        assert_eq!(engine.join_waiting(), 50, "predictions 250..300 wait");
        let restored = Engine::restore(labelled_settings(), log.iter().map(|(k, v)| (k, &v[..])))
            .unwrap()
            .unwrap();
        assert_eq!(restored.join_waiting(), 50);
        assert_eq!(restored.join.entries(), engine.join.entries());
        // Batches of the commits whose predictions wait, and lists of what left them: a
        // handful of records, not one per entry; joined predictions' batches are gone.
        let records = log
            .keys()
            .filter(|k| matches!(k, StateKey::Join(_)))
            .count();
        assert!((1..=8).contains(&records), "{records} join records");
        assert!(
            engine
                .take_state_changes()
                .expect("state encodes")
                .is_empty(),
            "nothing changed since"
        );
    }

    #[test]
    fn quality_does_not_depend_on_how_the_topics_interleave() {
        let base = interleaving_base();
        let (_, reference) = run_events(labelled_settings(), &base.events());
        assert!(!reference.is_empty());
        // The label topic lags the prediction topic by 400 more events (40 s of event time,
        // within the allowed lateness), so joins happen at other moments.
        let lagging = Labelled {
            label_delay: 410,
            ..base
        };
        let mut events = lagging.events();
        // Same label *timestamps* as the base stream: only the arrival order changed.
        for event in &mut events {
            if let Event::Label(label) = event {
                label.timestamp -= 400 * 100;
            }
        }
        let (_, shifted) = run_events(labelled_settings(), &events);
        // Offsets index this test's merged list, not a real topic: compare the rest.
        assert_eq!(without_offsets(reference), without_offsets(shifted));
    }

    #[test]
    fn quality_does_not_depend_on_labels_running_ahead_of_predictions() {
        let base = interleaving_base();
        let events = base.events();
        let (_, reference) = run_events(labelled_settings(), &events);
        // Every label moves 600 positions earlier in the stream (but keeps its timestamp):
        // the label topic was fetched ahead of the prediction topic.
        let mut keyed: Vec<(i64, Event<'static>)> = events
            .into_iter()
            .enumerate()
            .map(|(i, e)| match e {
                Event::Label(_) => (i as i64 * 2 - 1_200, e),
                Event::Prediction(_) => (i as i64 * 2, e),
            })
            .collect();
        keyed.sort_by_key(|(k, _)| *k);
        let shifted: Vec<Event<'static>> = keyed.into_iter().map(|(_, e)| e).collect();
        let (_, ahead) = run_events(labelled_settings(), &shifted);
        assert_eq!(without_offsets(reference), without_offsets(ahead));
    }

    #[test]
    fn labels_that_arrive_before_their_prediction_join() {
        let stream = Labelled {
            seed: 2,
            n: 3_000,
            change_at: usize::MAX,
            accuracy_before: 0.8,
            accuracy_after: 0.8,
            label_delay: 0,
            labels_first: true,
        };
        let (engine, _) = run_events(labelled_settings(), &stream.events());
        let counters = engine.counters();
        assert_eq!(counters.labels, 3_000);
        assert_eq!(counters.join.joined, 3_000);
        assert_eq!(engine.join_waiting(), 0);
    }

    #[test]
    fn fairness_is_skipped_without_a_sensitive_attribute_and_fires_with_one() {
        let stream = Labelled {
            seed: 5,
            n: 12_000,
            change_at: usize::MAX,
            accuracy_before: 0.8,
            accuracy_after: 0.8,
            label_delay: 10,
            labels_first: false,
        };
        let mut events = stream.events();
        let (engine, outputs) = run_events(labelled_settings(), &events);
        let performance = engine.status()[0].performance.clone().unwrap();
        assert_eq!(
            serde_json::to_value(&performance.fairness).unwrap(),
            serde_json::json!({"status": "skipped", "reason": "no sensitive attribute"})
        );
        assert!(outputs.is_empty(), "{outputs:#?}");

        // Group "b" gets the positive decision far more often from event 6000 on.
        for event in events.iter_mut().skip(12_000) {
            if let Event::Prediction(p) = event {
                if p.attributes[0].1 == "b" {
                    p.prediction.score = Some(0.9);
                }
            }
        }
        let mut settings = labelled_settings();
        settings.fairness.sensitive_attribute = Some("group".to_owned());
        let (engine, outputs) = run_events(settings, &events);
        let performance = engine.status()[0].performance.clone().unwrap();
        let crate::monitor::fairness::FairnessCheck::Computed(report) = performance.fairness else {
            panic!("fairness not computed: {performance:#?}")
        };
        assert!(
            report.demographic_parity_difference.unwrap() > 0.3,
            "{report:#?}"
        );
        let fairness: Vec<_> = alerts(&outputs)
            .into_iter()
            .filter(|a| a.subject == crate::monitor::model::FAIRNESS_SUBJECT)
            .collect();
        assert!(
            fairness
                .iter()
                .any(|a| a.detector == "demographic_parity" && a.state == AlertState::Firing),
            "{fairness:#?}"
        );
        for request in requests(&outputs) {
            assert!(
                request.reasons.iter().all(|r| !r.contains("__fairness__")),
                "fairness is alert-only by default: {request:#?}"
            );
        }
    }

    #[test]
    fn schedules_fire_on_event_time_and_respect_the_cooldown() {
        let events: Vec<Event<'static>> = stream(9, 60_000, usize::MAX)
            .into_iter()
            .map(Event::Prediction)
            .collect();
        // 60,000 events × 100 ms = 100 minutes of event time: a schedule every 20 minutes.
        let mut settings = settings();
        settings.policy.cooldown_ms = 0;
        settings
            .models
            .push(crate::monitor::settings::ModelOverrides {
                id: "m".into(),
                retrain_schedule: Some("*/20 * * * *".into()),
                ..Default::default()
            });
        let (_, outputs) = run_events(settings.clone(), &events);
        let scheduled = requests(&outputs);
        assert!((3..=5).contains(&scheduled.len()), "{scheduled:#?}");
        for request in &scheduled {
            assert_eq!(request.trigger, RetrainTrigger::Scheduled);
        }
        let ids: std::collections::BTreeSet<_> = scheduled.iter().map(|r| &r.request_id).collect();
        assert_eq!(ids.len(), scheduled.len(), "one id per instant");
        let (_, again) = run_events(settings.clone(), &events);
        assert_eq!(outputs, again, "replays reproduce scheduled requests");

        settings.policy.cooldown_ms = 3_600_000;
        let (_, cooled) = run_events(settings, &events);
        assert!(requests(&cooled).len() < scheduled.len());
    }

    #[test]
    fn manual_requests_obey_the_cooldown_unless_forced() {
        let events: Vec<Event<'static>> = stream(3, 5_000, usize::MAX)
            .into_iter()
            .map(Event::Prediction)
            .collect();
        let (mut engine, _) = run_events(settings(), &events);
        assert_eq!(engine.manual_retrain("nope", "why", false), None);
        let Some(ManualOutcome::Requested(first)) = engine.manual_retrain("m", "audit", false)
        else {
            panic!("no request")
        };
        assert_eq!(first.trigger, RetrainTrigger::Manual);
        assert_eq!(first.created_at, events_end(&events));
        assert!(first.reasons[0].contains("audit"));
        assert_eq!(engine.drain_outputs(), vec![Output::Retrain(first.clone())]);
        assert!(matches!(
            engine.manual_retrain("m", "again", false),
            Some(ManualOutcome::Suppressed { until }) if until > first.created_at
        ));
        let Some(ManualOutcome::Requested(forced)) = engine.manual_retrain("m", "again", true)
        else {
            panic!("force ignored")
        };
        assert_ne!(forced.request_id, first.request_id);
    }

    fn events_end(events: &[Event<'static>]) -> i64 {
        events.iter().map(Event::timestamp).max().unwrap()
    }

    /// Every kind of state record of a realistic engine: model "q" past its warm-up with
    /// frozen references, joined labels and a quality drop; model "m" in the middle of its
    /// warm-up (chunks); the label join's batches and removals; the engine record.
    fn varied_state() -> (BTreeMap<StateKey, Vec<u8>>, Vec<Event<'static>>) {
        let labelled = Labelled {
            seed: 3,
            n: 6_000,
            change_at: 4_000,
            accuracy_before: 0.9,
            accuracy_after: 0.6,
            label_delay: 20,
            labels_first: false,
        };
        let mut events = labelled.events();
        events.extend(
            stream(5, 2_500, 1_500)
                .into_iter()
                .enumerate()
                .map(|(j, mut e)| {
                    e.timestamp = 1_700_000_000_000 + (3_500 + j as i64) * 100;
                    Event::Prediction(e)
                }),
        );
        events.sort_by_key(Event::timestamp);
        let (before, after) = events.split_at(events.len() - 1_000);
        let mut engine = Engine::new(labelled_settings()).unwrap();
        let mut log = BTreeMap::new();
        for (i, event) in before.iter().enumerate() {
            engine.process(event, SOURCE);
            engine.drain_outputs();
            if (i + 1) % 400 == 0 {
                apply_changes(
                    &mut log,
                    engine.take_state_changes().expect("state encodes"),
                );
            }
        }
        apply_changes(
            &mut log,
            engine.take_state_changes().expect("state encodes"),
        );
        (log, after.to_vec())
    }

    #[test]
    fn a_damaged_state_record_is_refused_or_restored_never_a_panic() {
        let (log, rest) = varied_state();
        let kind = |key: &StateKey| match key {
            StateKey::Engine => "engine",
            StateKey::Model { .. } => "model",
            StateKey::References { .. } => "references",
            StateKey::Warmup { .. } => "warmup",
            StateKey::Join(JoinRecord::Batch(_)) => "join batch",
            StateKey::Join(JoinRecord::Removals(_)) => "join removals",
        };
        let kinds: std::collections::BTreeSet<_> = log.keys().map(kind).collect();
        assert_eq!(kinds.len(), 6, "every kind of record: {kinds:?}");
        // Restores the log with `key`'s value replaced, then runs the rest of the stream and
        // a commit on whatever came back: damage must surface as an error, not a panic.
        // Returns whether the damaged log was restored (`None`: it panicked).
        let survives = |key: &StateKey, damaged: &[u8]| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let records = log
                    .iter()
                    .map(|(k, v)| (k, if k == key { damaged } else { &v[..] }));
                let Ok(Some(mut engine)) = Engine::restore(labelled_settings(), records) else {
                    return false;
                };
                for event in &rest {
                    engine.process(event, SOURCE);
                    engine.drain_outputs();
                }
                engine.take_state_changes().expect("state encodes");
                engine.status();
                true
            }))
            .ok()
        };
        let mut rng = StdRng::seed_from_u64(17);
        let mut per_kind: BTreeMap<&str, usize> = BTreeMap::new();
        let mut panics = Vec::new();
        let (mut cases, mut restored) = (0, 0);
        for (key, value) in &log {
            // Records of one kind share a layout: three of each are enough.
            let seen = per_kind.entry(kind(key)).or_default();
            *seen += 1;
            if *seen > 3 {
                continue;
            }
            // Past the 4-byte header (whose damage `decode` refuses by construction).
            let mut damages: Vec<(String, Vec<u8>)> = Vec::new();
            for _ in 0..60.min(value.len() - 4) {
                let at = rng.random_range(4..value.len());
                for byte in [value[at] ^ 0x01, value[at] ^ 0x80, 0x00, 0xff] {
                    let mut damaged = value.clone();
                    damaged[at] = byte;
                    damages.push((format!("byte {at} = {byte:#04x}"), damaged));
                }
            }
            for _ in 0..8 {
                let length = rng.random_range(4..value.len());
                damages.push((format!("cut at {length}"), value[..length].to_vec()));
            }
            for (damage, damaged) in damages {
                cases += 1;
                match survives(key, &damaged) {
                    Some(true) => restored += 1,
                    Some(false) => {}
                    None => panics.push(format!("{key:?}: {damage}")),
                }
            }
        }
        assert!(cases > 3_000, "{cases} cases");
        // Both paths ran: damage that decodes (a changed number: the engine ran on it) and
        // damage that is refused.
        assert!(
            (cases / 10..cases - cases / 10).contains(&restored),
            "{restored} of {cases} restored"
        );
        assert!(
            panics.is_empty(),
            "{} of {cases} damaged records panicked, e.g. {:#?}",
            panics.len(),
            &panics[..panics.len().min(12)]
        );
    }

    #[test]
    fn references_of_another_monitor_are_refused_not_a_panic() {
        // Two frozen monitors whose series differ in kind and grid: "m" (two numeric
        // features, a categorical one) and "q" (one numeric feature), past their warm-ups.
        let (mut log, rest) = varied_state();
        let mut engine = Engine::restore(labelled_settings(), log.iter().map(|(k, v)| (k, &v[..])))
            .unwrap()
            .unwrap();
        for event in &rest {
            engine.process(event, SOURCE);
        }
        let more: Vec<Event<'static>> = stream(9, 2_000, usize::MAX)
            .into_iter()
            .enumerate()
            .map(|(j, mut e)| {
                e.timestamp = events_end(&rest) + 100 * (j as i64 + 1);
                Event::Prediction(e)
            })
            .collect();
        for event in &more {
            engine.process(event, SOURCE);
        }
        apply_changes(
            &mut log,
            engine.take_state_changes().expect("state encodes"),
        );
        let references = |model: &str| StateKey::References {
            model_id: model.into(),
            model_version: "1".into(),
        };
        assert!(engine
            .status()
            .iter()
            .all(|s| s.phase == crate::monitor::model::Phase::Monitoring));
        let (m, q) = (log[&references("m")].clone(), log[&references("q")].clone());
        for (model, other) in [("m", q), ("q", m)] {
            let mut swapped = log.clone();
            swapped.insert(references(model), other);
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                match Engine::restore(
                    labelled_settings(),
                    swapped.iter().map(|(k, v)| (k, &v[..])),
                ) {
                    Ok(Some(mut restored)) => {
                        for event in &more {
                            restored.process(event, SOURCE);
                            restored.drain_outputs();
                        }
                        restored.take_state_changes().expect("state encodes");
                        "restored".to_owned()
                    }
                    Ok(None) => "nothing".to_owned(),
                    Err(error) => error.to_string(),
                }
            }));
            let outcome =
                outcome.unwrap_or_else(|_| panic!("{model} with the other's references panicked"));
            assert!(outcome.contains("do not fit"), "{model}: {outcome}");
        }
    }

    #[test]
    fn a_commit_cut_short_leaves_a_state_that_restores() {
        // At-least-once mode writes a commit's records without a transaction, so a crash can
        // leave any prefix of them. Every prefix of every commit through the warm-up and the
        // freeze (at event 3,000) must restore, and the commit after it must leave exactly
        // the chunks its model record counts (none once frozen): nothing stale, no hole.
        let events = stream(12, 4_000, usize::MAX);
        let mut engine = Engine::new(settings()).unwrap();
        let mut log = BTreeMap::new();
        let model = StateKey::Model {
            model_id: "m".into(),
            model_version: "1".into(),
        };
        // No engine record yet (the first commit cut before it): a fresh engine, as the
        // service starts one.
        let restore = |log: &BTreeMap<StateKey, Vec<u8>>, context: &str| {
            Engine::restore(settings(), log.iter().map(|(k, v)| (k, &v[..])))
                .unwrap_or_else(|e| panic!("{context}: {e}"))
                .unwrap_or_else(|| Engine::new(settings()).unwrap())
        };
        let mut cuts = 0;
        for (i, event) in events[..3_400].iter().enumerate() {
            engine.process(&Event::Prediction(event.clone()), SOURCE);
            if (i + 1) % 200 != 0 {
                continue;
            }
            let changes = engine.take_state_changes().expect("state encodes");
            for cut in 0..changes.len() {
                let context = format!("commit after event {i}, first {cut} of its records");
                let mut partial = log.clone();
                apply_changes(&mut partial, changes[..cut].to_vec());
                let mut restored = restore(&partial, &context);
                // The events since the last complete commit, again, as after a crash.
                for event in &events[i + 1 - 200..i + 1] {
                    restored.process(&Event::Prediction(event.clone()), SOURCE);
                }
                apply_changes(
                    &mut partial,
                    restored.take_state_changes().expect("state encodes"),
                );
                restore(&partial, &context);
                let (_, written): (ModelMonitor, u32) = state::decode(&partial[&model]).unwrap();
                assert_eq!(
                    warmup_chunks(&partial),
                    (0..written).collect::<Vec<u32>>(),
                    "{context}"
                );
                cuts += 1;
            }
            apply_changes(&mut log, changes);
        }
        assert!(cuts > 40, "{cuts} cuts");
        assert_eq!(warmup_chunks(&log), Vec::<u32>::new(), "frozen at 3,000");
    }
}
