//! `driftwatch replay`: the same [`Engine`] as the service, driven by a recorded file instead
//! of Kafka (DESIGN §7). Users tune thresholds with it before going live, and batch pipelines
//! use its `--summary` as a drift report.
//!
//! Owns: reading the file — JSON Lines (one event per line, `"kind"` telling predictions from
//! labels) or an Avro object container file (its records through the codec's schema
//! resolution) — writing outputs as JSON lines in the Avro JSON mirror, the per-model summary
//! and the data of the HTML report. The engine sees line (or record) numbers as offsets and
//! the file name as the topic, so retrain requests point at the lines to retrain on.
//! Deterministic: the same file and settings give the same bytes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::codec::{json, DecodeError};
use crate::event::Event;
use crate::monitor::engine::Engine;
use crate::monitor::model::{
    ModelStatus, Phase, QualityRecord, SourcePosition, FAIRNESS_SUBJECT, PERFORMANCE_SUBJECT,
    PREDICTION_SUBJECT,
};
use crate::monitor::output::{AlertState, Output};
use crate::monitor::settings::MonitorSettings;
use crate::report::{AlertMark, ModelReport, QualitySeries, ReportData, RetrainMark, ScoreSeries};
use crate::tools::events::{self, EventsError, Position};

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The input could not be read (an I/O error, or an Avro container file's header,
    /// schema or damaged block).
    #[error(transparent)]
    Input(#[from] EventsError),
    /// Writing the outputs failed (e.g. a closed pipe).
    #[error("writing outputs: {0}")]
    Output(std::io::Error),
    /// The settings are unusable.
    #[error("invalid settings: {}", .0.join("; "))]
    Settings(Vec<String>),
}

/// Counts of one replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReplayCounts {
    /// Records read: non-blank lines of JSON Lines, or records of an Avro container file.
    pub records: u64,
    /// Prediction events accepted.
    pub predictions: u64,
    /// Label events.
    pub labels: u64,
    /// Predictions later than the lateness bound (dropped, as live).
    pub late: u64,
    /// Predictions too far ahead in event time (dropped, as live).
    pub too_far_ahead: u64,
    /// Lines or records that are not a valid event (reported on stderr, skipped).
    pub malformed: u64,
    /// Alerts emitted.
    pub alerts: u64,
    /// Retrain requests emitted.
    pub retrain_requests: u64,
}

/// Status of a model version in a summary (schemas/drift_summary.schema.json).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SummaryStatus {
    /// Monitored; nothing fired.
    Ok,
    /// At least one alert fired during the replay.
    DriftDetected,
    /// Not enough data to monitor (still warming up at the end of the file).
    Skipped,
    /// Monitored, but no detector could run on the data (e.g. no usable values).
    Error,
}

/// One detector's last result in a summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryDetector {
    /// Detector.
    pub detector: String,
    /// Last statistic.
    pub statistic: f64,
    /// Last p-value (adjusted when Benjamini–Hochberg is on).
    pub p_value: Option<f64>,
    /// Threshold.
    pub threshold: f64,
    /// Whether the last evaluation breached.
    pub breach: bool,
    /// Whether it was firing at the end.
    pub firing: bool,
}

/// One feature (or the prediction) in a summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryFeature {
    /// Feature name, `__prediction__`, `__performance__` or `__fairness__`.
    pub name: String,
    /// Whether any of its detectors fired during the replay.
    pub drift_detected: bool,
    /// Observations in the last window.
    pub window_count: u64,
    /// Last detector results.
    pub detectors: Vec<SummaryDetector>,
}

/// The batch drift report of one model version (`replay --summary`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSummary {
    /// Model.
    pub model_id: String,
    /// Version.
    pub model_version: String,
    /// Overall status.
    pub status: SummaryStatus,
    /// Why, in words.
    pub reason: String,
    /// Share of monitored features that drifted during the replay, in [0, 1].
    pub drift_score: f64,
    /// Prediction events of this version.
    pub events: u64,
    /// FIRING alerts during the replay.
    pub alerts_fired: u64,
    /// Retrain requests during the replay.
    pub retrain_requests: u64,
    /// Per feature (name order), then the prediction, performance and fairness subjects.
    pub features: Vec<SummaryFeature>,
    /// Quality from joined labels, when any.
    pub performance: Option<crate::monitor::model::PerformanceStatus>,
}

/// What a replay produced besides the output lines.
#[derive(Debug, Clone)]
pub struct ReplayOutcome {
    /// Counts.
    pub counts: ReplayCounts,
    /// One summary per model version, in id order.
    pub summaries: Vec<ModelSummary>,
    /// Data for the HTML report, when asked for.
    pub report: Option<ReportData>,
}

/// Replays `input` (JSON Lines or an Avro object container file, told apart by the file's
/// first bytes; `-` for stdin) through a fresh engine. Outputs go to `out` as JSON lines
/// unless `write_outputs` is false; malformed lines or records are reported on stderr (the
/// first few in full) and skipped, like the dead-letter topic does live.
///
/// # Errors
/// Unreadable input (for a container file: a header, schema or block that cannot be read),
/// unwritable output, or unusable settings.
pub fn replay(
    settings: MonitorSettings,
    input: &Path,
    out: &mut dyn Write,
    write_outputs: bool,
    collect_report: bool,
) -> Result<ReplayOutcome, ReplayError> {
    let engine = Engine::new(settings).map_err(ReplayError::Settings)?;
    let mut run = Run {
        engine,
        topic: input.display().to_string(),
        input,
        out,
        write_outputs,
        counts: ReplayCounts::default(),
        fired: BTreeMap::new(),
        retrains: BTreeMap::new(),
        collector: collect_report.then(ReportCollector::default),
    };
    events::for_each_event(input, |position, _, event| {
        run.counts.records += 1;
        match event {
            // Lines and records are numbered from 1: the engine's offsets.
            Ok(event) => run.event(&event, position.number() as i64),
            Err(error) => {
                run.malformed(position, &error);
                Ok(())
            }
        }
    })?;
    run.finish()
}

/// One replay in progress.
struct Run<'a> {
    engine: Engine,
    /// The input's name, as the engine's topic.
    topic: String,
    input: &'a Path,
    out: &'a mut dyn Write,
    write_outputs: bool,
    counts: ReplayCounts,
    /// FIRING alerts per (model, version) and subject.
    fired: BTreeMap<(String, String), BTreeMap<String, u64>>,
    /// Retrain requests per (model, version).
    retrains: BTreeMap<(String, String), u64>,
    collector: Option<ReportCollector>,
}

impl Run<'_> {
    /// Counts and reports an input that is not an event (the first ten in full).
    fn malformed(&mut self, position: Position, error: &DecodeError) {
        self.counts.malformed += 1;
        if self.counts.malformed > 10 {
            return;
        }
        let (file, reason) = (self.input.display(), error.reason());
        match position {
            Position::Line(line) => {
                tracing::warn!(message = "Skipped a malformed line.", %file, line, reason, %error);
            }
            Position::Record(record) => {
                tracing::warn!(message = "Skipped a malformed record.", %file, record, reason, %error);
            }
        }
    }

    /// Runs one event through the engine, at `offset` of the input, and writes what it caused.
    fn event(&mut self, event: &Event<'_>, offset: i64) -> Result<(), ReplayError> {
        let source = SourcePosition {
            topic: &self.topic,
            partition: 0,
            offset,
            written_at: None,
        };
        self.engine.process(event, source);
        for output in self.engine.drain_outputs() {
            let bytes = match &output {
                Output::Alert(alert) => {
                    self.counts.alerts += 1;
                    if alert.state == AlertState::Firing {
                        *self
                            .fired
                            .entry((alert.model_id.clone(), alert.model_version.clone()))
                            .or_default()
                            .entry(alert.subject.clone())
                            .or_default() += 1;
                    }
                    json::alert_to_json(alert)
                }
                Output::Retrain(request) => {
                    self.counts.retrain_requests += 1;
                    *self
                        .retrains
                        .entry((request.model_id.clone(), request.model_version.clone()))
                        .or_default() += 1;
                    json::retrain_to_json(request)
                }
            };
            if let Some(collector) = self.collector.as_mut() {
                collector.output(&output);
            }
            if self.write_outputs {
                self.out.write_all(&bytes).map_err(ReplayError::Output)?;
                self.out.write_all(b"\n").map_err(ReplayError::Output)?;
            }
        }
        let evaluations = self.engine.drain_evaluations();
        let quality = self.engine.drain_quality();
        if let Some(collector) = self.collector.as_mut() {
            collector.evaluations(&evaluations);
            collector.quality(&quality);
        }
        Ok(())
    }

    /// The counts, summaries and report once the input is read.
    fn finish(self) -> Result<ReplayOutcome, ReplayError> {
        self.out.flush().map_err(ReplayError::Output)?;
        let mut counts = self.counts;
        let engine_counts = self.engine.counters();
        counts.predictions = engine_counts.predictions;
        counts.labels = engine_counts.labels;
        counts.late = engine_counts.late;
        counts.too_far_ahead = engine_counts.too_far_ahead;
        let statuses = self.engine.status();
        let summaries = statuses
            .iter()
            .map(|status| {
                let key = (status.model_id.clone(), status.model_version.clone());
                summarize(
                    status,
                    self.fired.get(&key),
                    self.retrains.get(&key).copied().unwrap_or(0),
                )
            })
            .collect();
        let report = self
            .collector
            .map(|c| c.finish(&self.topic, counts.records, &statuses));
        Ok(ReplayOutcome {
            counts,
            summaries,
            report,
        })
    }
}

fn summarize(
    status: &ModelStatus,
    fired: Option<&BTreeMap<String, u64>>,
    retrain_requests: u64,
) -> ModelSummary {
    let fired_count = |subject: &str| fired.and_then(|f| f.get(subject)).copied().unwrap_or(0);
    let detectors = |list: &[crate::monitor::model::DetectorStatus]| {
        list.iter()
            .map(|d| SummaryDetector {
                detector: d.detector.clone(),
                statistic: d.statistic,
                p_value: d.p_value,
                threshold: d.threshold,
                breach: d.breach,
                firing: d.firing,
            })
            .collect::<Vec<_>>()
    };
    let mut features: Vec<SummaryFeature> = status
        .features
        .iter()
        .map(|f| SummaryFeature {
            name: f.name.clone(),
            drift_detected: fired_count(&f.name) > 0,
            window_count: f.window_count,
            detectors: detectors(&f.detectors),
        })
        .collect();
    let monitored = features.len();
    let drifted = features.iter().filter(|f| f.drift_detected).count();
    let evaluated = features
        .iter()
        .chain(std::iter::once(&SummaryFeature {
            name: String::new(),
            drift_detected: false,
            window_count: 0,
            detectors: detectors(&status.prediction.detectors),
        }))
        .any(|f| !f.detectors.is_empty());
    features.push(SummaryFeature {
        name: PREDICTION_SUBJECT.to_owned(),
        drift_detected: fired_count(PREDICTION_SUBJECT) > 0,
        window_count: status.prediction.window_count,
        detectors: detectors(&status.prediction.detectors),
    });
    for (subject, list) in [
        (PERFORMANCE_SUBJECT, &status.performance_detectors),
        (FAIRNESS_SUBJECT, &status.fairness_detectors),
    ] {
        if !list.is_empty() || fired_count(subject) > 0 {
            features.push(SummaryFeature {
                name: subject.to_owned(),
                drift_detected: fired_count(subject) > 0,
                window_count: 0,
                detectors: detectors(list),
            });
        }
    }
    let alerts_fired: u64 = fired.map_or(0, |f| f.values().sum());
    let (summary_status, reason) = if status.phase == Phase::WarmingUp {
        (
            SummaryStatus::Skipped,
            format!(
                "still warming up: {} of {} reference events",
                status.events, status.warmup_target
            ),
        )
    } else if alerts_fired > 0 {
        let subjects: Vec<&str> = fired
            .into_iter()
            .flat_map(|f| f.keys().map(String::as_str))
            .collect();
        (
            SummaryStatus::DriftDetected,
            format!("alerts fired on: {}", subjects.join(", ")),
        )
    } else if !evaluated {
        (
            SummaryStatus::Error,
            "no detector could run: no usable values in the windows".to_owned(),
        )
    } else {
        (SummaryStatus::Ok, "no alert fired".to_owned())
    };
    ModelSummary {
        model_id: status.model_id.clone(),
        model_version: status.model_version.clone(),
        status: summary_status,
        reason,
        drift_score: if monitored == 0 {
            0.0
        } else {
            drifted as f64 / monitored as f64
        },
        events: status.events,
        alerts_fired,
        retrain_requests,
        features,
        performance: status.performance.clone(),
    }
}

/// (model, version).
type ModelKey = (String, String);
/// Metric name → (window end, value) points.
type MetricSeries = BTreeMap<String, Vec<(i64, f64)>>;

/// Gathers the time series of a replay for the HTML report.
#[derive(Debug, Default)]
struct ReportCollector {
    /// (model, version) → (subject, detector) → series.
    series: BTreeMap<(String, String), BTreeMap<(String, String), ScoreSeries>>,
    quality: BTreeMap<ModelKey, MetricSeries>,
    alerts: BTreeMap<(String, String), Vec<AlertMark>>,
    retrains: BTreeMap<(String, String), Vec<RetrainMark>>,
}

impl ReportCollector {
    fn evaluations(&mut self, records: &[crate::monitor::model::EvaluationRecord]) {
        for record in records {
            let model = (record.model_id.clone(), record.model_version.clone());
            let key = (record.subject.clone(), record.result.detector.to_string());
            let p_value = record.adjusted_p_value.or(record.result.p_value);
            let series = self
                .series
                .entry(model)
                .or_default()
                .entry(key)
                .or_insert_with(|| ScoreSeries {
                    subject: record.subject.clone(),
                    detector: record.result.detector.to_string(),
                    threshold: record.result.threshold,
                    higher_is_worse: p_value.is_none(),
                    points: Vec::new(),
                });
            series.points.push((
                record.window_end,
                p_value.unwrap_or(record.result.statistic),
            ));
        }
    }

    fn quality(&mut self, records: &[QualityRecord]) {
        for record in records {
            let model = (record.model_id.clone(), record.model_version.clone());
            let metrics = self.quality.entry(model).or_default();
            for (name, value) in record.quality.metrics() {
                metrics
                    .entry(name.to_owned())
                    .or_default()
                    .push((record.window_end, value));
            }
        }
    }

    fn output(&mut self, output: &Output) {
        match output {
            Output::Alert(alert) => self
                .alerts
                .entry((alert.model_id.clone(), alert.model_version.clone()))
                .or_default()
                .push(AlertMark {
                    subject: alert.subject.clone(),
                    detector: alert.detector.clone(),
                    at: alert.detected_at,
                    firing: alert.state == AlertState::Firing,
                    alert_id: alert.alert_id.clone(),
                }),
            Output::Retrain(request) => self
                .retrains
                .entry((request.model_id.clone(), request.model_version.clone()))
                .or_default()
                .push(RetrainMark {
                    at: request.created_at,
                    trigger: request.trigger.as_str().to_owned(),
                    request_id: request.request_id.clone(),
                }),
        }
    }

    fn finish(mut self, input: &str, events: u64, statuses: &[ModelStatus]) -> ReportData {
        let models = statuses
            .iter()
            .map(|status| {
                let key = (status.model_id.clone(), status.model_version.clone());
                ModelReport {
                    model_id: status.model_id.clone(),
                    model_version: status.model_version.clone(),
                    series: self
                        .series
                        .remove(&key)
                        .map(|s| s.into_values().collect())
                        .unwrap_or_default(),
                    quality: self
                        .quality
                        .remove(&key)
                        .map(|q| {
                            q.into_iter()
                                .map(|(metric, points)| QualitySeries { metric, points })
                                .collect()
                        })
                        .unwrap_or_default(),
                    alerts: self.alerts.remove(&key).unwrap_or_default(),
                    retrains: self.retrains.remove(&key).unwrap_or_default(),
                }
            })
            .collect();
        ReportData {
            title: "driftwatch replay".to_owned(),
            input: input.to_owned(),
            events,
            models,
        }
    }
}
