//! The engine of one partition: routes events to their model monitors, keeps the partition's
//! event-time clock, closes panes as the watermark moves and collects the outputs.
//!
//! Owns: the partition's [`PaneClock`] and its (model, version) monitors. Pure and
//! deterministic: models are visited in id order, so the same events give the same outputs.

use std::collections::BTreeMap;

use crate::detect::window::{Admission, PaneClock};
use crate::event::Event;

use super::model::{EvaluationRecord, ModelMonitor, ModelStatus, SourcePosition};
use super::output::Output;
use super::settings::MonitorSettings;

/// What happened to an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Counted in its model's reference or window.
    Accepted,
    /// Its pane had closed: counted as late and dropped.
    Late,
    /// A label: counted (the label join comes with performance monitoring).
    Label,
}

/// Counters of one engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineCounters {
    /// Prediction events accepted.
    pub predictions: u64,
    /// Events dropped as late.
    pub late: u64,
    /// Label events seen.
    pub labels: u64,
}

/// The monitor engine of one partition.
#[derive(Debug, Clone)]
pub struct Engine {
    settings: MonitorSettings,
    clock: PaneClock,
    models: BTreeMap<String, BTreeMap<String, ModelMonitor>>,
    outputs: Vec<Output>,
    evaluations: Vec<EvaluationRecord>,
    counters: EngineCounters,
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
        let clock = PaneClock::new(
            settings.windows.pane_ms,
            settings.windows.allowed_lateness_ms,
        )
        .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        Ok(Self {
            settings,
            clock,
            models: BTreeMap::new(),
            outputs: Vec::new(),
            evaluations: Vec::new(),
            counters: EngineCounters::default(),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &MonitorSettings {
        &self.settings
    }

    /// Processes one event. Outputs it causes are collected until [`Engine::drain_outputs`].
    pub fn process(&mut self, event: &Event<'_>, source: SourcePosition<'_>) -> Disposition {
        let prediction = match event {
            Event::Label(_) => {
                self.counters.labels += 1;
                return Disposition::Label;
            }
            Event::Prediction(prediction) => prediction,
        };
        let Admission::OnTime { pane } = self.clock.admit(prediction.timestamp) else {
            self.counters.late += 1;
            return Disposition::Late;
        };
        self.counters.predictions += 1;
        let settings = &self.settings;
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
        if let Some(through) = self.clock.advance() {
            self.close_through(through);
        }
        Disposition::Accepted
    }

    fn close_through(&mut self, through: i64) {
        let pane_ms = self.clock.pane_ms();
        for versions in self.models.values_mut() {
            for monitor in versions.values_mut() {
                monitor.close_through(
                    through,
                    pane_ms,
                    &self.settings,
                    &mut self.outputs,
                    &mut self.evaluations,
                );
            }
        }
    }

    /// Outputs produced since the last drain, in production order.
    pub fn drain_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    /// Evaluations performed since the last drain (for metrics).
    pub fn drain_evaluations(&mut self) -> Vec<EvaluationRecord> {
        std::mem::take(&mut self.evaluations)
    }

    /// Counters.
    pub fn counters(&self) -> EngineCounters {
        self.counters
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

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use rand_distr::{Distribution, Normal};

    use super::*;
    use crate::event::{FeatureValue, Prediction, PredictionEvent};
    use crate::monitor::output::{AlertState, RetrainTrigger};

    const SOURCE: SourcePosition<'static> = SourcePosition {
        topic: "t",
        partition: 0,
        offset: 0,
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
}
