//! Telemetry: the Prometheus metrics (DESIGN §7 names, contract) and tracing setup.
//!
//! Owns: metric definitions and their registry. Label cardinality is bounded: per-feature
//! drift-score gauges are optional and capped (`metrics.max_feature_series`); beyond the cap a
//! series is simply not exported (and a counter says how many were dropped).

use std::collections::HashSet;
use std::sync::Mutex;

use prometheus::core::Collector;
use prometheus::{GaugeVec, TextEncoder};
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Registers `collector` and records its family names.
fn register<C: Collector + Clone + 'static>(
    registry: &Registry,
    names: &mut Vec<String>,
    collector: &C,
) -> prometheus::Result<()> {
    names.extend(collector.desc().iter().map(|d| d.fq_name.clone()));
    registry.register(Box::new(collector.clone()))
}

/// Every metric driftwatch exports.
pub struct Metrics {
    registry: Registry,
    /// `driftwatch_events_total{topic,outcome}`: consumed messages by outcome
    /// (accepted, late, too_far_ahead, label, dead_letter).
    pub events: IntCounterVec,
    /// `driftwatch_drift_score{model,version,subject,detector}`: latest statistic.
    pub drift_score: GaugeVec,
    /// `driftwatch_alert_firing{model,version,subject,detector}`: 1 while the alert of that
    /// subject and detector is FIRING, else 0. Refreshed from the engines' state (so it is
    /// right after a restart or a rebalance, unlike counts of transitions); feature subjects
    /// share the cap of `driftwatch_drift_score`.
    pub alert_firing: IntGaugeVec,
    /// `driftwatch_alerts_total{model,detector,state}`: published alert transitions.
    pub alerts: IntCounterVec,
    /// `driftwatch_retrain_requests_total{model,trigger}`: published retrain requests.
    pub retrain_requests: IntCounterVec,
    /// `driftwatch_late_events_total`: events dropped for arriving after their pane closed.
    pub late_events: IntCounter,
    /// `driftwatch_dlq_total{reason}`: messages sent to the dead-letter topic.
    pub dlq: IntCounterVec,
    /// `driftwatch_process_seconds`: time to decode and process one message.
    pub process_seconds: Histogram,
    /// `driftwatch_consumer_lag{partition}`: high watermark minus position.
    pub consumer_lag: IntGaugeVec,
    /// `driftwatch_score_series_dropped_total`: drift-score series not exported (cap reached).
    pub score_series_dropped: IntCounter,
    /// `driftwatch_models`: model versions tracked.
    pub models: IntGauge,
    /// `driftwatch_model_quality{model,version,metric}`: windowed quality from joined labels
    /// (accuracy, precision, recall, f1, roc_auc, log_loss, mae, rmse, false_positive_rate).
    pub model_quality: GaugeVec,
    /// `driftwatch_label_join_total{outcome}`: label-join outcomes (joined, late,
    /// expired_prediction, expired_label, evicted, duplicate).
    pub label_join: IntCounterVec,
    /// `driftwatch_label_join_waiting`: predictions and labels waiting for their match.
    pub label_join_waiting: IntGauge,
    /// `driftwatch_transactions_total{outcome}`: Kafka transactions committed or aborted
    /// (exactly-once mode).
    pub transactions: IntCounterVec,
    /// `driftwatch_state_restore_seconds`: time to restore the state of newly assigned
    /// partitions from the state topic.
    pub state_restore_seconds: Histogram,
    /// `driftwatch_state_records_total`: state changelog records written.
    pub state_records: IntCounter,
    /// `driftwatch_state_bytes_total`: bytes of state changelog records written.
    pub state_bytes: IntCounter,
    /// `driftwatch_schema_registry_requests_total{outcome}`: schema lookups sent to the
    /// schema registry (ok, not_found, error); cached ids are not counted.
    pub schema_registry_requests: IntCounterVec,
    /// Names of every metric family registered, as exported.
    names: Vec<String>,
    per_feature_gauges: bool,
    max_feature_series: usize,
    score_series: Mutex<HashSet<(String, String, String, String)>>,
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    ///
    /// # Errors
    /// Only if a metric definition is invalid (a programming error caught by tests).
    pub fn new(per_feature_gauges: bool, max_feature_series: usize) -> prometheus::Result<Self> {
        let registry = Registry::new();
        let mut names = Vec::new();
        let events = IntCounterVec::new(
            Opts::new(
                "driftwatch_events_total",
                "Consumed messages by topic and outcome.",
            ),
            &["topic", "outcome"],
        )?;
        let drift_score = GaugeVec::new(
            Opts::new(
                "driftwatch_drift_score",
                "Latest drift statistic per model, version, subject and detector.",
            ),
            &["model", "version", "subject", "detector"],
        )?;
        let alerts = IntCounterVec::new(
            Opts::new(
                "driftwatch_alerts_total",
                "Published drift alert transitions.",
            ),
            &["model", "detector", "state"],
        )?;
        let retrain_requests = IntCounterVec::new(
            Opts::new(
                "driftwatch_retrain_requests_total",
                "Published retrain requests.",
            ),
            &["model", "trigger"],
        )?;
        let late_events = IntCounter::new(
            "driftwatch_late_events_total",
            "Events dropped because their pane had already closed.",
        )?;
        let dlq = IntCounterVec::new(
            Opts::new(
                "driftwatch_dlq_total",
                "Messages sent to the dead-letter topic, by reason.",
            ),
            &["reason"],
        )?;
        // Every reason exists from the start at 0, so `rate()` sees the first dead letter
        // (a series born at 1 has no increase to show).
        for reason in crate::codec::DecodeError::ALL_REASONS {
            dlq.with_label_values(&[reason]);
        }
        let process_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "driftwatch_process_seconds",
                "Time to decode and process one message.",
            )
            .buckets(vec![
                1e-7, 2.5e-7, 5e-7, 1e-6, 2.5e-6, 5e-6, 1e-5, 5e-5, 1e-4, 1e-3, 1e-2,
            ]),
        )?;
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "driftwatch_consumer_lag",
                "Messages between the consumer position and the high watermark.",
            ),
            &["partition"],
        )?;
        let score_series_dropped = IntCounter::new(
            "driftwatch_score_series_dropped_total",
            "Drift-score updates not exported because the series cap was reached.",
        )?;
        let models = IntGauge::new("driftwatch_models", "Model versions tracked.")?;
        let model_quality = GaugeVec::new(
            Opts::new(
                "driftwatch_model_quality",
                "Windowed model quality from joined labels, per model, version and metric.",
            ),
            &["model", "version", "metric"],
        )?;
        let label_join = IntCounterVec::new(
            Opts::new(
                "driftwatch_label_join_total",
                "Label-join outcomes: joined, late, expired_prediction, expired_label, evicted, duplicate.",
            ),
            &["outcome"],
        )?;
        let label_join_waiting = IntGauge::new(
            "driftwatch_label_join_waiting",
            "Predictions and labels waiting for their match.",
        )?;
        let transactions = IntCounterVec::new(
            Opts::new(
                "driftwatch_transactions_total",
                "Kafka transactions by outcome: committed, aborted.",
            ),
            &["outcome"],
        )?;
        let state_restore_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "driftwatch_state_restore_seconds",
                "Time to restore the state of newly assigned partitions from the state topic.",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
        )?;
        let state_records = IntCounter::new(
            "driftwatch_state_records_total",
            "State changelog records written.",
        )?;
        let state_bytes = IntCounter::new(
            "driftwatch_state_bytes_total",
            "Bytes of state changelog records written.",
        )?;
        let alert_firing = IntGaugeVec::new(
            Opts::new(
                "driftwatch_alert_firing",
                "1 while the alert of a model version, subject and detector is FIRING, else 0.",
            ),
            &["model", "version", "subject", "detector"],
        )?;
        register(&registry, &mut names, &alert_firing)?;
        let schema_registry_requests = IntCounterVec::new(
            Opts::new(
                "driftwatch_schema_registry_requests_total",
                "Schema lookups sent to the schema registry, by outcome: ok, not_found, error.",
            ),
            &["outcome"],
        )?;
        for outcome in ["ok", "not_found", "error"] {
            schema_registry_requests.with_label_values(&[outcome]);
        }
        register(&registry, &mut names, &schema_registry_requests)?;
        register(&registry, &mut names, &transactions)?;
        register(&registry, &mut names, &state_restore_seconds)?;
        register(&registry, &mut names, &state_records)?;
        register(&registry, &mut names, &state_bytes)?;
        register(&registry, &mut names, &events)?;
        register(&registry, &mut names, &drift_score)?;
        register(&registry, &mut names, &alerts)?;
        register(&registry, &mut names, &retrain_requests)?;
        register(&registry, &mut names, &late_events)?;
        register(&registry, &mut names, &dlq)?;
        register(&registry, &mut names, &process_seconds)?;
        register(&registry, &mut names, &consumer_lag)?;
        register(&registry, &mut names, &score_series_dropped)?;
        register(&registry, &mut names, &models)?;
        register(&registry, &mut names, &model_quality)?;
        register(&registry, &mut names, &label_join)?;
        register(&registry, &mut names, &label_join_waiting)?;
        names.sort();
        Ok(Self {
            registry,
            names,
            events,
            drift_score,
            alerts,
            retrain_requests,
            late_events,
            dlq,
            process_seconds,
            consumer_lag,
            score_series_dropped,
            models,
            model_quality,
            label_join,
            label_join_waiting,
            transactions,
            state_restore_seconds,
            state_records,
            state_bytes,
            schema_registry_requests,
            alert_firing,
            per_feature_gauges,
            max_feature_series,
            score_series: Mutex::new(HashSet::new()),
        })
    }

    /// Sets a drift-score gauge, respecting the cardinality settings: the prediction's and
    /// performance series are always exported; feature series only when enabled and under the
    /// cap.
    pub fn set_drift_score(
        &self,
        model: &str,
        version: &str,
        subject: &str,
        detector: &str,
        value: f64,
    ) {
        if self.admit_series(model, version, subject, detector) {
            self.drift_score
                .with_label_values(&[model, version, subject, detector])
                .set(value);
        }
    }

    /// Sets `driftwatch_alert_firing` of one series (within the per-feature cap).
    pub fn set_alert_firing(
        &self,
        model: &str,
        version: &str,
        subject: &str,
        detector: &str,
        firing: bool,
    ) {
        if self.admit_series(model, version, subject, detector) {
            self.alert_firing
                .with_label_values(&[model, version, subject, detector])
                .set(i64::from(firing));
        }
    }

    /// Whether per-series gauges of this (model, version, subject, detector) are exported:
    /// always for the model-level subjects (`__prediction__`, ...), for features only when
    /// per-feature gauges are on and the cap has room (or the series is already in).
    fn admit_series(&self, model: &str, version: &str, subject: &str, detector: &str) -> bool {
        if subject.starts_with("__") {
            return true;
        }
        if !self.per_feature_gauges {
            return false;
        }
        let Ok(mut series) = self.score_series.lock() else {
            return false;
        };
        let key = (
            model.to_owned(),
            version.to_owned(),
            subject.to_owned(),
            detector.to_owned(),
        );
        if series.contains(&key) {
            return true;
        }
        if series.len() >= self.max_feature_series {
            self.score_series_dropped.inc();
            return false;
        }
        series.insert(key);
        true
    }

    /// The name of every metric family driftwatch exports (histograms add `_bucket`, `_sum`
    /// and `_count` series to theirs). Labelled families appear in [`Metrics::render`] only
    /// once a series exists; this lists them all, e.g. for checking dashboards and rules.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|error| format!("# encoding failed: {error}\n"))
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global tracing subscriber writing to stderr; `RUST_LOG` filters (default
/// `info`). Calling it twice is harmless.
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal, never in files or log collectors.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_design_metric_names() {
        let metrics = Metrics::new(true, 2).unwrap();
        metrics
            .events
            .with_label_values(&["inference.predictions", "accepted"])
            .inc();
        metrics.late_events.inc();
        metrics.dlq.with_label_values(&["truncated"]).inc();
        metrics
            .alerts
            .with_label_values(&["m", "psi", "FIRING"])
            .inc();
        metrics
            .retrain_requests
            .with_label_values(&["m", "DATA_DRIFT"])
            .inc();
        metrics.consumer_lag.with_label_values(&["0"]).set(3);
        metrics.process_seconds.observe(1e-6);
        metrics.set_drift_score("m", "1", "amount", "psi", 0.3);
        let text = metrics.render();
        for name in [
            "driftwatch_events_total",
            "driftwatch_drift_score",
            "driftwatch_alerts_total",
            "driftwatch_retrain_requests_total",
            "driftwatch_late_events_total",
            "driftwatch_dlq_total",
            "driftwatch_process_seconds",
            "driftwatch_consumer_lag",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }

    #[test]
    fn feature_series_are_capped() {
        let metrics = Metrics::new(true, 2).unwrap();
        for feature in ["a", "b", "c", "d"] {
            metrics.set_drift_score("m", "1", feature, "psi", 1.0);
        }
        metrics.set_drift_score("m", "1", "__prediction__", "psi", 1.0);
        assert_eq!(metrics.score_series_dropped.get(), 2);
        let text = metrics.render();
        assert!(text.contains("subject=\"__prediction__\""));
        assert!(!text.contains("subject=\"c\""));
    }
}
