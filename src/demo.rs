//! `driftwatch demo`: the embedded default (DESIGN §7).
//!
//! Starts librdkafka's in-process mock cluster, produces synthetic inference traffic for two
//! models with drift injected into some features part-way, runs the *same* service loop as
//! `run` against it, shows each alert as it happens, and ends with a summary.
//!
//! The traffic is realistic in shape: log-normal amounts, Poisson counts, skewed categories,
//! and a model score that depends on the features (so drift in an input moves the prediction,
//! as it would in production). Event time advances 20 ms per event and model, so the demo
//! covers about 20 minutes of event time with 1-minute panes in well under a minute.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Normal, Poisson};
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde::Serialize;

use crate::bus::service::{self, Observer, Shared};
use crate::codec::json::encode_prediction_json;
use crate::config::Config;
use crate::event::{FeatureValue, Prediction, PredictionEvent};
use crate::monitor::output::{AlertState, Output};
use crate::telemetry::Metrics;

/// Event time of the first demo event: 2026-01-01T00:00:00Z.
const START_MS: i64 = 1_767_225_600_000;
/// Event-time step between two events of one model.
const STEP_MS: i64 = 20;
/// How far the producer may run ahead of the service (the mock cluster keeps only ~100k
/// messages or 5 MiB per partition and silently drops older ones).
const MAX_AHEAD: u64 = 4_000;

/// Options of the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Prediction events to produce (both models together).
    pub events: u64,
    /// Index of the first drifted event.
    pub drift_at: u64,
    /// Random seed.
    pub seed: u64,
    /// Print live progress and alerts on stderr.
    pub live: bool,
}

/// A drifted feature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DriftedFeature {
    /// Model.
    pub model_id: String,
    /// Feature.
    pub feature: String,
}

/// An alert, as summarised.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertSummary {
    /// Deterministic id.
    pub alert_id: String,
    /// Model.
    pub model_id: String,
    /// Feature or `__prediction__`.
    pub subject: String,
    /// Detector.
    pub detector: String,
    /// FIRING or RESOLVED.
    pub state: AlertState,
    /// Event time of the evaluation.
    pub detected_at: i64,
}

/// A retrain request, as summarised.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetrainSummary {
    /// Deterministic id.
    pub request_id: String,
    /// Model.
    pub model_id: String,
    /// Trigger.
    pub trigger: String,
}

/// The machine-readable summary (`--json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DemoSummary {
    /// Valid prediction events produced.
    pub events_produced: u64,
    /// Events the service processed (dead letters excluded).
    pub events_processed: u64,
    /// Event time of the first drifted event (ms).
    pub drift_injected_at: i64,
    /// Features whose distribution was changed.
    pub drifted_features: Vec<DriftedFeature>,
    /// Alert transitions published.
    pub alerts: Vec<AlertSummary>,
    /// Retrain requests published.
    pub retrain_requests: Vec<RetrainSummary>,
    /// Malformed messages injected and sent to the dead-letter topic.
    pub dead_letters: u64,
    /// Wall-clock seconds.
    pub elapsed_seconds: f64,
}

/// Features the demo drifts.
pub const DRIFTED: [(&str, &str); 3] = [
    ("fraud-detector", "amount"),
    ("fraud-detector", "merchant_category"),
    ("churn-predictor", "monthly_charges"),
];

fn pick<'a>(rng: &mut StdRng, choices: &[(&'a str, f64)]) -> &'a str {
    let mut u = rng.random::<f64>();
    for (choice, weight) in choices {
        if u < *weight {
            return choice;
        }
        u -= weight;
    }
    choices[choices.len() - 1].0
}

/// Generates the `index`-th event (model alternates); `drifted` applies the injected drift.
fn event(rng: &mut StdRng, index: u64, drifted: bool) -> PredictionEvent<'static> {
    let timestamp = START_MS + (index / 2) as i64 * STEP_MS;
    let event_id = Cow::Owned(format!("evt-{index:08}"));
    let sigmoid = |z: f64| 1.0 / (1.0 + (-z).exp());
    if index % 2 == 0 {
        let amount_scale = if drifted { 1.8 } else { 1.0 };
        let amount: f64 = LogNormal::new(3.9, 0.8).map_or(50.0, |d| d.sample(rng)) * amount_scale;
        let age = -400.0 * (1.0 - rng.random::<f64>()).ln();
        let transactions = Poisson::new(3.0).map_or(3.0, |d| d.sample(rng));
        let merchants: &[(&str, f64)] = if drifted {
            &[
                ("grocery", 0.2),
                ("electronics", 0.4),
                ("travel", 0.1),
                ("fashion", 0.1),
                ("gaming", 0.2),
            ]
        } else {
            &[
                ("grocery", 0.35),
                ("electronics", 0.15),
                ("travel", 0.1),
                ("fashion", 0.2),
                ("gaming", 0.2),
            ]
        };
        let merchant = pick(rng, merchants);
        let country = pick(
            rng,
            &[
                ("US", 0.4),
                ("GB", 0.15),
                ("DE", 0.15),
                ("FR", 0.15),
                ("IN", 0.15),
            ],
        );
        let score = sigmoid(
            -6.0 + 0.9 * amount.ln() - 0.002 * age + 0.1 * transactions + 0.3 * rng.random::<f64>(),
        );
        PredictionEvent {
            event_id,
            model_id: Cow::Borrowed("fraud-detector"),
            model_version: Cow::Borrowed("v3"),
            timestamp,
            features: vec![
                (
                    Cow::Borrowed("amount"),
                    FeatureValue::Number((amount * 100.0).round() / 100.0),
                ),
                (
                    Cow::Borrowed("account_age_days"),
                    FeatureValue::Number(age.round()),
                ),
                (
                    Cow::Borrowed("transactions_24h"),
                    FeatureValue::Number(transactions),
                ),
                (
                    Cow::Borrowed("merchant_category"),
                    FeatureValue::Text(Cow::Borrowed(merchant)),
                ),
                (
                    Cow::Borrowed("country"),
                    FeatureValue::Text(Cow::Borrowed(country)),
                ),
            ],
            prediction: Prediction {
                score: Some(score),
                label: Some(Cow::Borrowed(if score > 0.5 { "fraud" } else { "legit" })),
                probabilities: None,
            },
            attributes: Vec::new(),
        }
    } else {
        let tenure = rng.random_range(1..=72) as f64;
        let charges = Normal::new(70.0, 20.0).map_or(70.0, |d| d.sample(rng))
            + if drifted { 14.0 } else { 0.0 };
        let tickets = Poisson::new(1.2).map_or(1.0, |d| d.sample(rng));
        let plan = pick(rng, &[("basic", 0.5), ("standard", 0.3), ("premium", 0.2)]);
        let payment = pick(rng, &[("card", 0.55), ("bank", 0.3), ("paypal", 0.15)]);
        let score = sigmoid(-1.0 - 0.04 * tenure + 0.02 * (charges - 70.0) + 0.5 * tickets);
        PredictionEvent {
            event_id,
            model_id: Cow::Borrowed("churn-predictor"),
            model_version: Cow::Borrowed("v1"),
            timestamp,
            features: vec![
                (Cow::Borrowed("tenure_months"), FeatureValue::Number(tenure)),
                (
                    Cow::Borrowed("monthly_charges"),
                    FeatureValue::Number((charges * 100.0).round() / 100.0),
                ),
                (
                    Cow::Borrowed("support_tickets"),
                    FeatureValue::Number(tickets),
                ),
                (
                    Cow::Borrowed("plan"),
                    FeatureValue::Text(Cow::Borrowed(plan)),
                ),
                (
                    Cow::Borrowed("payment_method"),
                    FeatureValue::Text(Cow::Borrowed(payment)),
                ),
            ],
            prediction: Prediction {
                score: Some(score),
                label: None,
                probabilities: None,
            },
            attributes: Vec::new(),
        }
    }
}

/// The configuration the demo runs the service with: defaults, pointed at the mock cluster,
/// with a shorter warm-up and window so a short run shows the whole life cycle.
pub fn demo_config(bootstrap: String) -> Config {
    let mut config = Config::default();
    config.kafka.brokers = bootstrap;
    config.kafka.group_id = "driftwatch-demo".into();
    config.http.enabled = false;
    config.delivery.commit_interval_ms = 200;
    config.monitor.reference.warmup_events = 5_000;
    config.monitor.windows.panes = 5;
    config.monitor.windows.allowed_lateness_ms = 2_000;
    config
}

struct ChannelObserver(mpsc::Sender<Output>);

impl Observer for ChannelObserver {
    fn on_output(&mut self, output: &Output) {
        let _ = self.0.send(output.clone());
    }
}

fn describe(output: &Output, drift_at: i64) -> String {
    let minutes = |t: i64| (t - START_MS) as f64 / 60_000.0;
    match output {
        Output::Alert(a) => format!(
            "{} {:<8} {}/{} {} {}={:.4} (threshold {}) at t+{:.1} min{}",
            if a.state == AlertState::Firing {
                "ALERT "
            } else {
                "RESOLV"
            },
            a.state.as_str(),
            a.model_id,
            a.model_version,
            a.subject,
            a.detector,
            a.statistic,
            a.threshold,
            minutes(a.detected_at),
            if a.detected_at < drift_at {
                "  <-- before the drift!"
            } else {
                ""
            }
        ),
        Output::Retrain(r) => format!(
            "RETRAIN {}/{} {} ({} reasons) at t+{:.1} min",
            r.model_id,
            r.model_version,
            r.trigger.as_str(),
            r.reasons.len(),
            minutes(r.created_at)
        ),
    }
}

/// Runs the demo.
///
/// # Errors
/// Mock cluster, producer or service failures.
pub fn run(options: &DemoOptions) -> anyhow::Result<DemoSummary> {
    if options.events < 2 {
        bail!("--events must be at least 2");
    }
    let started = Instant::now();
    let cluster = MockCluster::new(1).context("cannot start the mock cluster")?;
    let config = demo_config(cluster.bootstrap_servers());
    for (topic, partitions) in [
        (&config.topics.predictions, 4),
        (&config.topics.labels, 4),
        (&config.topics.alerts, 1),
        (&config.topics.retrain, 1),
        (&config.topics.dlq, 1),
        // The mock cluster has no Admin API: the service cannot create its state topic.
        (&config.topics.state, 4),
    ] {
        cluster
            .create_topic(topic, partitions, 1)
            .context("cannot create a demo topic")?;
    }

    let shared = Arc::new(Shared::new(Metrics::new(true, 10_000)?));
    let (sender, outputs) = mpsc::channel();
    let service = {
        let (config, shared) = (config.clone(), shared.clone());
        std::thread::Builder::new()
            .name("driftwatch-service".into())
            .spawn(move || {
                let mut observer = ChannelObserver(sender);
                service::run(&config, shared, &mut observer)
            })?
    };

    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.brokers)
        .set("linger.ms", "5")
        .create()
        .context("cannot create the demo producer")?;
    let mut rng = StdRng::seed_from_u64(options.seed);
    let drift_injected_at = START_MS + (options.drift_at / 2) as i64 * STEP_MS;
    let progress = if options.live {
        let bar = ProgressBar::new(options.events);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} events  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut collected = Vec::new();
    let drain = |collected: &mut Vec<Output>, progress: &ProgressBar| {
        while let Ok(output) = outputs.try_recv() {
            // `suspend` prints above a live bar and plainly when the bar is hidden.
            progress.suspend(|| eprintln!("{}", describe(&output, drift_injected_at)));
            collected.push(output);
        }
    };
    let poison_at = options.events / 3;
    let poison: [&[u8]; 3] = [
        b"{\"event_id\": \"broken\", \"model_id\": \"fraud-detector\"",
        b"{\"event_id\":\"x\",\"model_id\":\"fraud-detector\",\"model_version\":\"v3\",\"timestamp\":\"yesterday\",\"features\":{},\"prediction\":{}}",
        b"\x00\x00\x00\x00",
    ];
    let mut sent = 0u64;
    for index in 0..options.events {
        if index == poison_at {
            for payload in poison {
                send(
                    &producer,
                    &config.topics.predictions,
                    b"fraud-detector",
                    payload,
                )?;
                sent += 1;
            }
        }
        let event = event(&mut rng, index, index >= options.drift_at);
        let payload = encode_prediction_json(&event);
        send(
            &producer,
            &config.topics.predictions,
            event.model_id.as_bytes(),
            &payload,
        )?;
        sent += 1;
        while sent.saturating_sub(shared.handled.load(Ordering::Acquire)) > MAX_AHEAD {
            drain(&mut collected, &progress);
            std::thread::sleep(Duration::from_millis(2));
        }
        if index % 1024 == 0 {
            progress.set_position(shared.handled.load(Ordering::Acquire).min(options.events));
            drain(&mut collected, &progress);
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .context("cannot flush demo events")?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while shared.handled.load(Ordering::Acquire) < sent {
        if service.is_finished() || Instant::now() > deadline {
            break;
        }
        progress.set_position(shared.handled.load(Ordering::Acquire).min(options.events));
        drain(&mut collected, &progress);
        std::thread::sleep(Duration::from_millis(20));
    }
    shared.shutdown.store(true, Ordering::Release);
    let run_summary = service
        .join()
        .map_err(|_| anyhow::anyhow!("the service thread panicked"))??;
    drain(&mut collected, &progress);
    progress.finish_and_clear();
    if shared.handled.load(Ordering::Acquire) < sent {
        bail!(
            "the service processed {} of {sent} messages",
            shared.handled.load(Ordering::Acquire)
        );
    }

    let mut alerts = Vec::new();
    let mut retrain_requests = Vec::new();
    for output in collected {
        match output {
            Output::Alert(a) => alerts.push(AlertSummary {
                alert_id: a.alert_id,
                model_id: a.model_id,
                subject: a.subject,
                detector: a.detector,
                state: a.state,
                detected_at: a.detected_at,
            }),
            Output::Retrain(r) => retrain_requests.push(RetrainSummary {
                request_id: r.request_id,
                model_id: r.model_id,
                trigger: r.trigger.as_str().to_owned(),
            }),
        }
    }
    Ok(DemoSummary {
        events_produced: options.events,
        events_processed: run_summary.consumed - run_summary.dead_letters,
        drift_injected_at,
        drifted_features: DRIFTED
            .iter()
            .map(|(m, f)| DriftedFeature {
                model_id: (*m).to_owned(),
                feature: (*f).to_owned(),
            })
            .collect(),
        alerts,
        retrain_requests,
        dead_letters: run_summary.dead_letters,
        elapsed_seconds: started.elapsed().as_secs_f64(),
    })
}

fn send(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    key: &[u8],
    payload: &[u8],
) -> anyhow::Result<()> {
    let mut record = BaseRecord::to(topic).key(key).payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                returned,
            )) => {
                record = returned;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((error, _)) => return Err(error).context("cannot produce a demo event"),
        }
    }
}

/// Human-readable verdict lines for the summary.
pub fn verdict(summary: &DemoSummary) -> Vec<String> {
    let mut lines = Vec::new();
    for feature in &summary.drifted_features {
        let caught = summary.alerts.iter().find(|a| {
            a.model_id == feature.model_id
                && a.subject == feature.feature
                && a.state == AlertState::Firing
        });
        lines.push(match caught {
            Some(a) => format!(
                "caught    {}/{} by {} {:.1} min after the drift",
                feature.model_id,
                feature.feature,
                a.detector,
                (a.detected_at - summary.drift_injected_at) as f64 / 60_000.0
            ),
            None => format!("MISSED    {}/{}", feature.model_id, feature.feature),
        });
    }
    let false_alarms: Vec<_> = summary
        .alerts
        .iter()
        .filter(|a| {
            a.state == AlertState::Firing
                && (a.detected_at < summary.drift_injected_at
                    || (!a.subject.starts_with("__")
                        && !summary
                            .drifted_features
                            .iter()
                            .any(|f| f.model_id == a.model_id && f.feature == a.subject)))
        })
        .collect();
    lines.push(format!("false alarms: {}", false_alarms.len()));
    lines
}
