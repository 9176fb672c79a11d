//! Throughput against a real broker (a bench binary, not a test; `harness = false`).
//!
//! In one run it measures, on the same topic of 20-feature prediction events:
//!
//! - (a) the raw consume rate — librdkafka polling and discarding, with the service's own
//!   consumer settings (`bus::settings::consumer_settings`): the ceiling;
//! - (b) driftwatch end to end — the real `bus::service::run` with default monitor settings,
//!   outputs to real topics, offsets committed as in production;
//! - (c) the in-process engine without Kafka — decode (from memory) + `Engine::process` on one
//!   thread (the median of three passes), engine alone on pre-decoded events, decode alone,
//!   the same with every prediction's label following it (the label join and outcome
//!   path, which the stream of (a) and (b) lacks), and a per-event latency histogram of
//!   decode + process.
//!
//! Targets: (b) ≥ 80 % of (a); (c) ≥ 1,000,000 events/s on one core.
//!
//! Rates over Kafka are measured from the first message received (or handled) to the last, so
//! joining the consumer group is excluded (and reported separately). Producing the topic is
//! not part of any figure. The output is Markdown, for BENCHMARKS.md.
//!
//! ```sh
//! cargo bench --bench throughput [-- --events 1000000 --partitions 4 --format avro|json]
//! ```
//!
//! Other options: `--models M` (default 8), `--rounds R` (repeat (a) and (b) on fresh groups,
//! median reported; default 1; (a) runs 3 times per round anyway), `--no-json` (skip the in-process JSON rows), `--keep-topics`,
//! `--seed S`, `--only-inprocess` (just (c), no broker), `--only-service` (just (b), e.g. under
//! `perf record`), `--consumer-set key=value` (a librdkafka consumer setting added through
//! `kafka.extra` to both (a) and (b), for experiments; repeatable), `--delivery
//! exactly_once|at_least_once` (default exactly_once), `--no-join` (predictions do not wait
//! for labels in the label join, nor in the state changelog; in (b) and (c)). The broker is
//! `DRIFTWATCH_KAFKA_BOOTSTRAP`, or the project's broker started by `scripts/kafka.sh start`
//! (left running, as the tests do).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use driftwatch::bus::service::{self, NoObserver, RunSummary, Shared};
use driftwatch::bus::settings::consumer_settings;
use driftwatch::codec::{
    encode_label_avro, encode_prediction_avro, encode_prediction_json, Decoder, EventBuffers,
    EventKind, Format,
};
use driftwatch::config::{Config, DeliveryMode, InputFormat};
use driftwatch::event::{Event, FeatureValue, LabelEvent, LabelValue, Prediction, PredictionEvent};
use driftwatch::monitor::engine::Engine;
use driftwatch::monitor::model::SourcePosition;
use driftwatch::monitor::settings::MonitorSettings;
use driftwatch::telemetry::Metrics;
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp, LogNormal, Normal, Poisson};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Event time of the first event: 2026-01-01T00:00:00Z.
const START_MS: i64 = 1_767_225_600_000;
/// Target of (b) relative to (a).
const E2E_TARGET: f64 = 0.80;
/// Target of (c), events per second on one core.
const ENGINE_TARGET: f64 = 1_000_000.0;
/// Runs of (a) per round (each on a fresh group; the median is reported).
const RAW_REPEATS: usize = 3;
/// Events pre-decoded at a time for the engine-only pass.
const CHUNK: usize = 65_536;

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Options {
    events: u64,
    partitions: i32,
    format: Format,
    models: usize,
    rounds: usize,
    seed: u64,
    json_inprocess: bool,
    keep_topics: bool,
    only_inprocess: bool,
    only_service: bool,
    /// Extra librdkafka consumer settings (`--consumer-set key=value`), applied to (a) and (b)
    /// alike through `kafka.extra`, for experiments.
    consumer_extra: Vec<(String, String)>,
    /// Delivery mode of (b) (`--delivery exactly_once|at_least_once`).
    delivery: DeliveryMode,
    /// `--no-join`: predictions do not wait in the label join (no labels expected).
    no_join: bool,
    /// `--join-max-entries N`: the label join's bound per partition (default: the service's).
    /// A bound below the predictions a partition receives measures a join that evicts on
    /// every prediction, as a long-running service's does, instead of one still filling.
    join_max_entries: Option<usize>,
    /// The arguments as given (for the command line printed with the results).
    args: Vec<String>,
}

fn parse_number(flag: &str, value: Option<String>) -> AnyResult<u64> {
    let value = value.ok_or_else(|| format!("{flag} needs a value"))?;
    let digits: String = value.chars().filter(|c| !matches!(c, '_' | ',')).collect();
    Ok(digits
        .parse::<u64>()
        .map_err(|_| format!("{flag}: not a number: {value:?}"))?)
}

fn options() -> AnyResult<Options> {
    let mut options = Options {
        events: 1_000_000,
        partitions: 4,
        format: Format::Avro,
        models: 8,
        rounds: 1,
        seed: 42,
        json_inprocess: true,
        keep_topics: false,
        only_inprocess: false,
        only_service: false,
        consumer_extra: Vec::new(),
        delivery: DeliveryMode::ExactlyOnce,
        no_join: false,
        join_max_entries: None,
        args: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        // `cargo bench` appends `--bench` to harness-less binaries.
        if arg == "--bench" {
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg.clone(), None),
        };
        options.args.push(flag.clone());
        let takes_value = matches!(
            flag.as_str(),
            "--events"
                | "--partitions"
                | "--models"
                | "--rounds"
                | "--seed"
                | "--format"
                | "--consumer-set"
                | "--delivery"
                | "--join-max-entries"
        );
        let value = if takes_value {
            let value = inline.or_else(|| args.next());
            options.args.extend(value.clone());
            value
        } else {
            None
        };
        match flag.as_str() {
            "--events" => options.events = parse_number(&flag, value)?,
            "--partitions" => options.partitions = i32::try_from(parse_number(&flag, value)?)?,
            "--models" => options.models = usize::try_from(parse_number(&flag, value)?)?,
            "--rounds" => options.rounds = usize::try_from(parse_number(&flag, value)?)?,
            "--seed" => options.seed = parse_number(&flag, value)?,
            "--format" => {
                options.format = match value.as_deref() {
                    Some("avro") => Format::Avro,
                    Some("json") => Format::Json,
                    other => return Err(format!("--format: json or avro, not {other:?}").into()),
                }
            }
            "--consumer-set" => {
                let setting = value.ok_or("--consumer-set needs key=value")?;
                let (key, value) = setting
                    .split_once('=')
                    .ok_or("--consumer-set needs key=value")?;
                options
                    .consumer_extra
                    .push((key.to_owned(), value.to_owned()));
            }
            "--delivery" => {
                options.delivery = match value.as_deref() {
                    Some("exactly_once") => DeliveryMode::ExactlyOnce,
                    Some("at_least_once") => DeliveryMode::AtLeastOnce,
                    other => {
                        return Err(format!(
                            "--delivery: exactly_once or at_least_once, not {other:?}"
                        )
                        .into())
                    }
                }
            }
            "--no-join" => options.no_join = true,
            "--join-max-entries" => {
                options.join_max_entries = Some(usize::try_from(parse_number(&flag, value)?)?);
            }
            "--no-json" => options.json_inprocess = false,
            "--keep-topics" => options.keep_topics = true,
            "--only-inprocess" => options.only_inprocess = true,
            "--only-service" => options.only_service = true,
            "-h" | "--help" => {
                println!(
                    "cargo bench --bench throughput -- [--events N] [--partitions P] \
                     [--format avro|json] [--models M] [--rounds R] [--seed S] [--no-json] \
                     [--keep-topics] [--only-inprocess] [--only-service] [--consumer-set key=value]… \
                     [--delivery exactly_once|at_least_once] [--no-join] [--join-max-entries N]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown option {other:?} (try --help)").into()),
        }
    }
    if options.events < 2
        || options.partitions < 1
        || options.models < 1
        || options.rounds < 1
        || options.join_max_entries == Some(0)
    {
        return Err(
            "--events ≥ 2, --partitions ≥ 1, --models ≥ 1, --rounds ≥ 1, --join-max-entries ≥ 1"
                .into(),
        );
    }
    Ok(options)
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

const MODELS: [&str; 12] = [
    "fraud-detector",
    "churn-predictor",
    "credit-risk",
    "ltv-regressor",
    "ad-ctr",
    "recsys-ranker",
    "eta-estimator",
    "price-elasticity",
    "spam-filter",
    "demand-forecast",
    "upsell-propensity",
    "kyc-screening",
];

fn model_name(m: usize) -> Cow<'static, str> {
    if m < MODELS.len() {
        Cow::Borrowed(MODELS[m])
    } else {
        Cow::Owned(format!("model-{m}"))
    }
}

const COUNTRIES: [&str; 20] = [
    "US", "DE", "GB", "FR", "IN", "BR", "ES", "IT", "NL", "PL", "SE", "CA", "MX", "JP", "AU", "PT",
    "BE", "AT", "CH", "IE",
];
const MCC: [&str; 30] = [
    "5411", "5812", "5541", "5999", "4121", "5311", "5912", "5814", "4814", "5732", "5651", "7011",
    "4511", "5942", "5300", "5211", "5691", "5941", "7832", "5045", "5661", "5722", "8011", "8062",
    "4900", "5499", "5921", "7299", "5993", "6011",
];

/// Cumulative Zipf-like weights 1/(rank+1), normalised.
fn zipf_cdf(n: usize) -> Vec<f64> {
    let weights: Vec<f64> = (0..n).map(|r| 1.0 / (r as f64 + 1.0)).collect();
    cdf(&weights)
}

fn cdf(weights: &[f64]) -> Vec<f64> {
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    weights
        .iter()
        .map(|w| {
            acc += w / total;
            acc
        })
        .collect()
}

fn pick(cdf: &[f64], u: f64) -> usize {
    cdf.iter().position(|&c| u < c).unwrap_or(cdf.len() - 1)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Realistic synthetic traffic: 15 numeric features (log-normal amounts, Poisson counts,
/// exponential recencies, a zero-inflated discount, coordinates, 1 % missing credit scores)
/// and 5 categorical ones (Zipf countries and merchant categories, skewed device, channel and
/// plan mixes); a score that depends on the features. Each model has its own parameters.
struct Generator {
    rng: StdRng,
    countries: Vec<f64>,
    mcc: Vec<f64>,
    devices: Vec<f64>,
    channels: Vec<f64>,
    plans: Vec<f64>,
    models: Vec<ModelParams>,
}

struct ModelParams {
    amount: LogNormal<f64>,
    account_age: Exp<f64>,
    txn_count: Poisson<f64>,
    basket: LogNormal<f64>,
    balance: Normal<f64>,
    credit: Normal<f64>,
    recency: Exp<f64>,
    session: LogNormal<f64>,
    page_views: Poisson<f64>,
    latitude: Normal<f64>,
    longitude: Normal<f64>,
    distance: LogNormal<f64>,
}

impl Generator {
    fn new(seed: u64, models: usize) -> Self {
        let models = (0..models)
            .map(|m| {
                let s = m as f64;
                ModelParams {
                    amount: LogNormal::new(3.5 + 0.1 * s, 1.0).unwrap(),
                    account_age: Exp::new(1.0 / (400.0 + 20.0 * s)).unwrap(),
                    txn_count: Poisson::new(3.0 + s).unwrap(),
                    basket: LogNormal::new(3.0, 0.6).unwrap(),
                    balance: Normal::new(2_500.0 + 100.0 * s, 1_200.0).unwrap(),
                    credit: Normal::new(680.0, 60.0).unwrap(),
                    recency: Exp::new(0.2).unwrap(),
                    session: LogNormal::new(2.0, 0.8).unwrap(),
                    page_views: Poisson::new(12.0).unwrap(),
                    latitude: Normal::new(48.0, 8.0).unwrap(),
                    longitude: Normal::new(5.0, 15.0).unwrap(),
                    distance: LogNormal::new(1.5, 1.2).unwrap(),
                }
            })
            .collect();
        Self {
            rng: StdRng::seed_from_u64(seed),
            countries: zipf_cdf(COUNTRIES.len()),
            mcc: zipf_cdf(MCC.len()),
            devices: cdf(&[0.45, 0.40, 0.13, 0.02]),
            channels: cdf(&[0.50, 0.25, 0.15, 0.10]),
            plans: cdf(&[0.55, 0.30, 0.12, 0.03]),
            models,
        }
    }

    /// The `k`-th event of model `m`; its event time is `START_MS + k` (1 ms per event and
    /// model), so with the default 1-minute panes every 60,000 events of a model close a pane.
    fn event(&mut self, m: usize, k: u64) -> PredictionEvent<'static> {
        let rng = &mut self.rng;
        let p = &self.models[m];
        let amount = round2(p.amount.sample(rng));
        let account_age = p.account_age.sample(rng).floor();
        let tenure = f64::from(rng.random_range(1..=72u32));
        let txn_count = p.txn_count.sample(rng);
        let basket = round2(p.basket.sample(rng));
        let balance = round2(p.balance.sample(rng));
        let credit = if rng.random::<f64>() < 0.01 {
            FeatureValue::Null
        } else {
            FeatureValue::Number(p.credit.sample(rng).clamp(300.0, 850.0).round())
        };
        let recency = round2(p.recency.sample(rng));
        let session = round2(p.session.sample(rng));
        let page_views = p.page_views.sample(rng);
        let discount = if rng.random::<f64>() < 0.6 {
            0.0
        } else {
            f64::from(rng.random_range(5..=40u32))
        };
        let latitude = p.latitude.sample(rng);
        let longitude = p.longitude.sample(rng);
        let distance = round2(p.distance.sample(rng));
        let risk: f64 = rng.random();
        let country = COUNTRIES[pick(&self.countries, rng.random())];
        let device = ["ios", "android", "web", "other"][pick(&self.devices, rng.random())];
        let channel = ["organic", "paid", "email", "referral"][pick(&self.channels, rng.random())];
        let plan = ["basic", "plus", "pro", "enterprise"][pick(&self.plans, rng.random())];
        let mcc = MCC[pick(&self.mcc, rng.random())];
        let z = -2.0 + 0.4 * (amount.ln_1p() - 3.5) + 0.1 * txn_count - 0.002 * account_age / 10.0
            + 1.5 * (risk - 0.5)
            + if device == "other" { 0.8 } else { 0.0 };
        let score = 1.0 / (1.0 + (-z).exp());
        let n = FeatureValue::Number;
        let t = |s: &'static str| FeatureValue::Text(Cow::Borrowed(s));
        let features: Vec<(Cow<'static, str>, FeatureValue<'static>)> = vec![
            ("amount".into(), n(amount)),
            ("account_age_days".into(), n(account_age)),
            ("tenure_months".into(), n(tenure)),
            ("txn_count_24h".into(), n(txn_count)),
            ("avg_basket_value".into(), n(basket)),
            ("balance".into(), n(balance)),
            ("credit_score".into(), credit),
            ("days_since_last_login".into(), n(recency)),
            ("session_minutes".into(), n(session)),
            ("page_views".into(), n(page_views)),
            ("discount_pct".into(), n(discount)),
            ("latitude".into(), n(latitude)),
            ("longitude".into(), n(longitude)),
            ("distance_km".into(), n(distance)),
            ("risk_index".into(), n(risk)),
            ("country".into(), t(country)),
            ("device_type".into(), t(device)),
            ("channel".into(), t(channel)),
            ("plan".into(), t(plan)),
            ("merchant_category".into(), t(mcc)),
        ];
        let model = model_name(m);
        PredictionEvent {
            event_id: Cow::Owned(format!("{model}-{k:010}")),
            model_id: model,
            model_version: Cow::Borrowed("v3"),
            timestamp: START_MS + k as i64,
            features,
            prediction: Prediction {
                score: Some(score),
                label: Some(Cow::Borrowed(if score >= 0.5 { "1" } else { "0" })),
                probabilities: None,
            },
            attributes: vec![(Cow::Borrowed("region"), Cow::Borrowed("eu-west-1"))],
        }
    }
}

/// N encoded payloads in one buffer.
struct Corpus {
    data: Vec<u8>,
    ends: Vec<usize>,
}

impl Corpus {
    fn with_capacity(events: usize, bytes: usize) -> Self {
        Self {
            data: Vec::with_capacity(events * bytes),
            ends: Vec::with_capacity(events),
        }
    }
    fn push(&mut self, payload: &[u8]) {
        self.data.extend_from_slice(payload);
        self.ends.push(self.data.len());
    }
    fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.data[start..self.ends[i]]
    }
    fn len(&self) -> usize {
        self.ends.len()
    }
    fn mean_bytes(&self) -> f64 {
        self.data.len() as f64 / self.len().max(1) as f64
    }
}

/// The run's events: models interleaved round-robin (event i belongs to model i mod M, the
/// k-th of its model with k = i div M), each model on a fixed partition (m mod P) as a
/// model_id-keyed producer would place it, with balanced partitions.
struct Traffic {
    models: usize,
    partitions: usize,
    /// Predictions wait in the label join (not with `--no-join`).
    join_predictions: bool,
    /// `--join-max-entries`, when given.
    join_max_entries: Option<usize>,
    avro: Corpus,
    json: Option<Corpus>,
    /// `labels[i]`: the label of prediction `i` (Avro), for the pass with labels.
    labels: Corpus,
}

impl Traffic {
    fn model(&self, i: usize) -> usize {
        i % self.models
    }
    fn partition(&self, i: usize) -> usize {
        self.model(i) % self.partitions
    }
    fn corpus(&self, format: Format) -> &Corpus {
        match format {
            Format::Json => self.json.as_ref().expect("JSON corpus"),
            _ => &self.avro,
        }
    }
}

#[inline(never)]
fn generate(options: &Options) -> Traffic {
    let n = options.events as usize;
    let json = options.json_inprocess || options.format == Format::Json;
    let mut generator = Generator::new(options.seed, options.models);
    let mut traffic = Traffic {
        models: options.models,
        partitions: options.partitions as usize,
        join_predictions: !options.no_join,
        join_max_entries: options.join_max_entries,
        avro: Corpus::with_capacity(n, 480),
        json: json.then(|| Corpus::with_capacity(n, 1_000)),
        labels: Corpus::with_capacity(n, 48),
    };
    for i in 0..n {
        let m = i % options.models;
        let event = generator.event(m, (i / options.models) as u64);
        traffic.avro.push(&encode_prediction_avro(&event));
        if let Some(corpus) = &mut traffic.json {
            corpus.push(&encode_prediction_json(&event));
        }
        // The truth: whether the score's class was right, wrong one time in five.
        let predicted = event.prediction.label.as_deref() == Some("1");
        let truth = predicted != (i % 5 == 0);
        traffic.labels.push(&encode_label_avro(&LabelEvent {
            event_id: event.event_id,
            model_id: event.model_id,
            timestamp: event.timestamp + LABEL_DELAY_MS,
            label: LabelValue::Text(Cow::Borrowed(if truth { "1" } else { "0" })),
        }));
    }
    traffic
}

// ---------------------------------------------------------------------------------------------
// Broker
// ---------------------------------------------------------------------------------------------

/// The broker's bootstrap address: `DRIFTWATCH_KAFKA_BOOTSTRAP`, or the project's broker
/// (`scripts/kafka.sh start` prints the running one's address, or starts one). As in
/// tests/common/mod.rs.
fn bootstrap() -> AnyResult<String> {
    if let Ok(address) = std::env::var("DRIFTWATCH_KAFKA_BOOTSTRAP") {
        if !address.is_empty() {
            return Ok(address);
        }
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka.sh");
    let output = Command::new("bash").arg(script).arg("start").output()?;
    if !output.status.success() {
        return Err(format!(
            "scripts/kafka.sh start failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// A name no other run uses.
fn unique(prefix: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}-{}-{nanos}-{n}", std::process::id())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn admin(bootstrap: &str) -> AnyResult<AdminClient<DefaultClientContext>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?)
}

fn create_topics(bootstrap: &str, topics: &[(&str, i32)]) -> AnyResult<()> {
    let admin = admin(bootstrap)?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    for result in runtime().block_on(admin.create_topics(&new, &AdminOptions::new()))? {
        result.map_err(|(topic, code)| format!("cannot create {topic}: {code}"))?;
    }
    Ok(())
}

fn delete_topics(bootstrap: &str, topics: &[&str]) -> AnyResult<()> {
    let admin = admin(bootstrap)?;
    for result in runtime().block_on(admin.delete_topics(topics, &AdminOptions::new()))? {
        result.map_err(|(topic, code)| format!("cannot delete {topic}: {code}"))?;
    }
    Ok(())
}

/// Fills the topic (event i to its model's partition, keyed by model id) and waits for every
/// acknowledgement; returns the time it took.
fn produce(bootstrap: &str, topic: &str, traffic: &Traffic, format: Format) -> AnyResult<f64> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()?;
    let corpus = traffic.corpus(format);
    let started = Instant::now();
    for i in 0..corpus.len() {
        let key = model_name(traffic.model(i));
        let mut record = BaseRecord::to(topic)
            .partition(traffic.partition(i) as i32)
            .key(key.as_bytes())
            .payload(corpus.get(i));
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((error, _)) => return Err(error.into()),
            }
        }
    }
    producer.flush(Duration::from_secs(300))?;
    let seconds = started.elapsed().as_secs_f64();
    // Check that every event is there.
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let mut total = 0;
    for p in 0..traffic.partitions as i32 {
        let (low, high) = probe.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        total += high - low;
    }
    if total != corpus.len() as i64 {
        return Err(format!("topic holds {total} events, {} produced", corpus.len()).into());
    }
    Ok(seconds)
}

// ---------------------------------------------------------------------------------------------
// CPU accounting (from /proc: where the CPU went during a measured window)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
struct ThreadSample {
    name: String,
    /// Nanoseconds on a CPU (`/proc/…/schedstat`, field 1).
    run_ns: u64,
    /// Nanoseconds runnable but waiting for a CPU (field 2).
    wait_ns: u64,
}

#[derive(Debug, Clone, Default)]
struct CpuSample {
    /// Threads of this process by tid.
    threads: BTreeMap<u32, ThreadSample>,
    /// Machine busy and total ticks (all cores).
    machine: (u64, u64),
    /// Broker process ticks, when its pid is known.
    broker: Option<u64>,
    at: Option<Instant>,
}

/// (name, utime + stime ticks) from a `/proc/…/stat` line.
fn stat_ticks(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat[open + 1..close].to_owned();
    let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    // Fields after the name start at field 3 (state); utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

fn broker_pid() -> Option<u32> {
    let run = std::env::var("DRIFTWATCH_KAFKA_RUN")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target/kafka-run").into());
    std::fs::read_to_string(format!("{run}/kafka.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn cpu_sample() -> CpuSample {
    let mut sample = CpuSample {
        at: Some(Instant::now()),
        ..CpuSample::default()
    };
    if let Ok(entries) = std::fs::read_dir("/proc/self/task") {
        for entry in entries.flatten() {
            let Ok(tid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let name = std::fs::read_to_string(entry.path().join("comm"))
                .unwrap_or_default()
                .trim()
                .to_owned();
            let schedstat: Vec<u64> = std::fs::read_to_string(entry.path().join("schedstat"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            if schedstat.len() >= 2 {
                sample.threads.insert(
                    tid,
                    ThreadSample {
                        name,
                        run_ns: schedstat[0],
                        wait_ns: schedstat[1],
                    },
                );
            }
        }
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/stat") {
        if let Some(line) = stat.lines().next() {
            let v: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal (guest counted in user)
            let total: u64 = v.iter().take(8).sum();
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            sample.machine = (total - idle, total);
        }
    }
    sample.broker = broker_pid()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .as_deref()
        .and_then(stat_ticks)
        .map(|(_, ticks)| ticks);
    sample
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU used between two samples, as shares of one core over the window.
#[derive(Debug, Clone, Default)]
struct CpuUse {
    /// Machine: busy share of all cores (0..=nproc).
    machine_cores: f64,
    /// This process, all threads.
    process_cores: f64,
    broker_cores: Option<f64>,
    /// Thread group → cores.
    groups: BTreeMap<String, f64>,
    /// The measured loop thread (dw-raw or dw-service): shares of the window spent running,
    /// runnable but waiting for a CPU, and blocked (sleeping in poll, commit, …).
    loop_thread: Option<(f64, f64, f64)>,
}

fn thread_group(name: &str) -> String {
    if name.starts_with("rdk:broker") {
        // rdk:brokerN (a broker connection) and rdk:broker-1 (internal); one bucket.
        "librdkafka rdk:broker*".into()
    } else if name.starts_with("rdk:main") {
        "librdkafka rdk:main".into()
    } else if name.starts_with("rdk:") {
        "librdkafka other".into()
    } else if name == "dw-service" {
        "service loop (dw-service)".into()
    } else if name == "dw-raw" {
        "raw consumer loop (dw-raw)".into()
    } else if name.starts_with("throughput") {
        "bench main (watcher)".into()
    } else {
        format!("other ({name})")
    }
}

fn cpu_use(before: &CpuSample, after: &CpuSample, ticks_per_s: f64) -> CpuUse {
    let wall = match (before.at, after.at) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    }
    .max(1e-9);
    let share = |ns: u64| ns as f64 / 1e9 / wall;
    let mut groups: BTreeMap<String, f64> = BTreeMap::new();
    let mut process_cores = 0.0;
    let mut loop_thread = None;
    for (tid, thread) in &after.threads {
        let (run0, wait0) = before
            .threads
            .get(tid)
            .map_or((0, 0), |t| (t.run_ns, t.wait_ns));
        let run = share(thread.run_ns.saturating_sub(run0));
        let wait = share(thread.wait_ns.saturating_sub(wait0));
        process_cores += run;
        *groups.entry(thread_group(&thread.name)).or_default() += run;
        if thread.name == "dw-service" || thread.name == "dw-raw" {
            loop_thread = Some((run, wait, (1.0 - run - wait).max(0.0)));
        }
    }
    groups.retain(|_, v| *v >= 0.005);
    let busy = after.machine.0.saturating_sub(before.machine.0) as f64;
    let total = after.machine.1.saturating_sub(before.machine.1) as f64;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    CpuUse {
        machine_cores: if total > 0.0 {
            busy / total * cores
        } else {
            0.0
        },
        process_cores,
        broker_cores: match (before.broker, after.broker) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / ticks_per_s / wall),
            _ => None,
        },
        groups,
        loop_thread,
    }
}

// ---------------------------------------------------------------------------------------------
// (a) raw consume, (b) end to end
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
struct KafkaRun {
    /// Subscribe → partitions assigned (the group join).
    join_s: f64,
    /// Subscribe → first message.
    first_s: f64,
    /// First message → last message.
    window_s: f64,
    /// Messages counted in the window.
    counted: u64,
    rate: f64,
    cpu: CpuUse,
    summary: Option<RunSummary>,
    /// (b) only: state changelog records and bytes written, transactions committed.
    state: Option<(u64, u64, u64)>,
}

fn bench_config(options: &Options, bootstrap: &str, topics: &Topics) -> Config {
    let mut config = Config::default();
    config.kafka.brokers = bootstrap.to_owned();
    config.topics.predictions = topics.predictions.clone();
    config.topics.labels = topics.labels.clone();
    config.topics.alerts = topics.alerts.clone();
    config.topics.retrain = topics.retrain.clone();
    config.topics.dlq = topics.dlq.clone();
    config.topics.state = topics.state.clone();
    config.http.enabled = false;
    config.delivery.mode = options.delivery;
    config.monitor.performance.join_predictions = !options.no_join;
    if let Some(bound) = options.join_max_entries {
        config.monitor.performance.join_max_entries = bound;
    }
    for (key, value) in &options.consumer_extra {
        config.kafka.extra.insert(key.clone(), value.clone());
    }
    config.formats.predictions = match options.format {
        Format::Json => InputFormat::Json,
        _ => InputFormat::Avro,
    };
    config
}

fn timeout_for(events: u64) -> Duration {
    Duration::from_secs(120 + events / 10_000)
}

/// (a): a BaseConsumer with the service's consumer settings (fresh group, earliest), polling
/// and discarding until every event was read.
fn raw_consume(config: &Config, n: u64, ticks: f64) -> AnyResult<KafkaRun> {
    let mut config = config.clone();
    config.kafka.group_id = unique("throughput-raw");
    let thread = std::thread::Builder::new().name("dw-raw".into()).spawn(
        move || -> Result<KafkaRun, String> {
            let mut client = ClientConfig::new();
            for (key, value) in consumer_settings(&config) {
                client.set(key, value);
            }
            let consumer: BaseConsumer = client.create().map_err(|e| e.to_string())?;
            let subscribed = Instant::now();
            consumer
                .subscribe(&[
                    config.topics.predictions.as_str(),
                    config.topics.labels.as_str(),
                ])
                .map_err(|e| e.to_string())?;
            let deadline = subscribed + timeout_for(n);
            let mut run = KafkaRun::default();
            let mut count = 0u64;
            let mut bytes = 0usize;
            let mut first: Option<(Instant, CpuSample)> = None;
            let mut joined: Option<Instant> = None;
            while count < n {
                if Instant::now() > deadline {
                    return Err(format!("only {count} of {n} messages read"));
                }
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(message)) => {
                        if first.is_none() {
                            // Sampled before the clock starts, so reading /proc is not timed.
                            let cpu = cpu_sample();
                            first = Some((Instant::now(), cpu));
                        }
                        bytes += message.payload_len();
                        count += 1;
                    }
                    Some(Err(error)) => eprintln!("raw consumer: {error}"),
                    None => {}
                }
                if joined.is_none() && !consumer.assignment().is_ok_and(|a| a.count() == 0) {
                    joined = Some(Instant::now());
                }
            }
            let last = Instant::now();
            let after = cpu_sample();
            let (first_at, before) = first.expect("at least one message");
            black_box(bytes);
            run.join_s = joined
                .unwrap_or(first_at)
                .duration_since(subscribed)
                .as_secs_f64();
            run.first_s = first_at.duration_since(subscribed).as_secs_f64();
            run.window_s = last.duration_since(first_at).as_secs_f64();
            run.counted = n - 1;
            run.rate = run.counted as f64 / run.window_s;
            run.cpu = cpu_use(&before, &after, ticks);
            drop(consumer);
            Ok(run)
        },
    )?;
    Ok(thread.join().map_err(|_| "raw consumer panicked")??)
}

/// (b): the real service loop on a thread, fresh group, default monitor settings, until
/// `shared.handled == n`. The rate runs from the first handled message to the last.
fn end_to_end(config: &Config, n: u64, ticks: f64) -> AnyResult<KafkaRun> {
    let mut config = config.clone();
    config.kafka.group_id = unique("throughput-service");
    let metrics = Metrics::new(
        config.metrics.per_feature_gauges,
        config.metrics.max_feature_series,
    )?;
    let shared = Arc::new(Shared::new(metrics));
    let started = Instant::now();
    let thread = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("dw-service".into())
            .spawn(move || service::run(&config, shared, &mut NoObserver))?
    };
    let deadline = started + timeout_for(n);
    let mut joined: Option<Instant> = None;
    let mut first: Option<(Instant, u64, CpuSample)> = None;
    let last;
    loop {
        let handled = shared.handled.load(Ordering::Acquire);
        let now = Instant::now();
        if joined.is_none() && shared.ready.load(Ordering::Acquire) {
            joined = Some(now);
        }
        if first.is_none() && handled > 0 {
            first = Some((now, handled, cpu_sample()));
        }
        if handled >= n {
            last = now;
            break;
        }
        if thread.is_finished() {
            let result = thread.join();
            return Err(format!("the service stopped after {handled} messages: {result:?}").into());
        }
        if now > deadline {
            shared.shutdown.store(true, Ordering::Release);
            return Err(format!("only {handled} of {n} messages handled").into());
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let after = cpu_sample();
    shared.shutdown.store(true, Ordering::Release);
    let summary = thread
        .join()
        .map_err(|_| "service thread panicked")?
        .map_err(|e| format!("service failed: {e}"))?;
    let (first_at, handled_at_first, before) = first.expect("first");
    let window_s = last.duration_since(first_at).as_secs_f64();
    let counted = n - handled_at_first;
    Ok(KafkaRun {
        join_s: joined
            .unwrap_or(first_at)
            .duration_since(started)
            .as_secs_f64(),
        first_s: first_at.duration_since(started).as_secs_f64(),
        window_s,
        counted,
        rate: counted as f64 / window_s,
        cpu: cpu_use(&before, &after, ticks),
        summary: Some(summary),
        state: Some((
            shared.metrics.state_records.get(),
            shared.metrics.state_bytes.get(),
            shared
                .metrics
                .transactions
                .with_label_values(&["committed"])
                .get(),
        )),
    })
}

// ---------------------------------------------------------------------------------------------
// (c) in process
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct InProcess {
    label: String,
    seconds: f64,
    events: u64,
    note: String,
}

impl InProcess {
    fn rate(&self) -> f64 {
        self.events as f64 / self.seconds
    }
}

fn engines(traffic: &Traffic) -> Vec<Engine> {
    let mut settings = MonitorSettings::default();
    settings.performance.join_predictions = traffic.join_predictions;
    if let Some(bound) = traffic.join_max_entries {
        settings.performance.join_max_entries = bound;
    }
    (0..traffic.partitions)
        .map(|_| Engine::new(settings.clone()).expect("default settings"))
        .collect()
}

const TOPIC: &str = "bench-predictions";

/// A label's event time after its prediction's, in the pass with labels.
const LABEL_DELAY_MS: i64 = 2_000;

/// Decode + process of every prediction and of its label, which comes [`LABEL_DELAY_MS`] of
/// each model's event time later in the stream (the models' events interleave, so that many
/// events times the model count), one engine per partition. Returns (seconds, events).
#[inline(never)]
fn decode_and_process_with_labels(traffic: &Traffic) -> (f64, usize) {
    let lag = LABEL_DELAY_MS as usize * traffic.models;
    let predictions = Decoder::new(Format::Avro, EventKind::Prediction);
    let labels = Decoder::new(Format::Avro, EventKind::Label);
    let mut engines = engines(traffic);
    let mut offsets = vec![0i64; traffic.partitions];
    let mut buffers = EventBuffers::default();
    let mut events = 0;
    let started = Instant::now();
    for i in 0..traffic.avro.len() {
        let labelled = i.checked_sub(lag);
        let records = [
            Some((&predictions, traffic.avro.get(i), traffic.partition(i))),
            labelled.map(|j| (&labels, traffic.labels.get(j), traffic.partition(j))),
        ];
        for (decoder, payload, p) in records.into_iter().flatten() {
            black_box(handle(
                decoder,
                payload,
                p,
                &mut engines,
                &mut offsets,
                &mut buffers,
            ));
            events += 1;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        // Engines of partitions no model hashes to (fewer models than partitions) saw nothing.
        engines
            .iter()
            .all(|e| e.counters().labels == 0 || e.counters().join.joined > 0)
            || !traffic.join_predictions,
        "labels must join their predictions"
    );
    black_box(&engines);
    (seconds, events)
}

/// Decodes `payload` and hands it to partition `p`'s engine as the service does, drains
/// included; returns how many outputs and evaluations it caused.
#[inline(always)]
fn handle(
    decoder: &Decoder,
    payload: &[u8],
    p: usize,
    engines: &mut [Engine],
    offsets: &mut [i64],
    buffers: &mut EventBuffers,
) -> (usize, usize) {
    let event = decoder
        .decode_reusing(payload, buffers)
        .expect("valid payload");
    let engine = &mut engines[p];
    engine.process(
        &event,
        SourcePosition {
            topic: TOPIC,
            partition: p as i32,
            offset: offsets[p],
            written_at: None,
        },
    );
    offsets[p] += 1;
    let caused = (
        engine.drain_outputs().len(),
        engine.drain_evaluations().len(),
    );
    buffers.recycle(event);
    caused
}

/// Passes of (c) decode + process whose median is reported.
const C_PASSES: usize = 3;

/// Decode + process (+ drain, as the service does) of every event, one engine per partition
/// as in the service. Returns (seconds, outputs, evaluations).
#[inline(never)]
fn decode_and_process(traffic: &Traffic, format: Format) -> (f64, usize, usize) {
    let corpus = traffic.corpus(format);
    let decoder = Decoder::new(format, EventKind::Prediction);
    let mut engines = engines(traffic);
    let mut offsets = vec![0i64; traffic.partitions];
    let (mut outputs, mut evaluations) = (0, 0);
    let mut buffers = EventBuffers::default();
    let started = Instant::now();
    for i in 0..corpus.len() {
        let p = traffic.partition(i);
        let (o, e) = handle(
            &decoder,
            corpus.get(i),
            p,
            &mut engines,
            &mut offsets,
            &mut buffers,
        );
        outputs += o;
        evaluations += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    black_box(&engines);
    (seconds, outputs, evaluations)
}

/// `Engine::process` alone on pre-decoded events (decoded CHUNK at a time, untimed).
#[inline(never)]
fn engine_only(traffic: &Traffic, format: Format) -> f64 {
    let corpus = traffic.corpus(format);
    let decoder = Decoder::new(format, EventKind::Prediction);
    let mut engines = engines(traffic);
    let mut offsets = vec![0i64; traffic.partitions];
    let mut busy = Duration::ZERO;
    let mut chunk: Vec<(usize, Event<'_>)> = Vec::with_capacity(CHUNK);
    let mut start = 0;
    while start < corpus.len() {
        chunk.clear();
        for i in start..corpus.len().min(start + CHUNK) {
            let event = decoder.decode(corpus.get(i)).expect("valid payload");
            chunk.push((traffic.partition(i), event));
        }
        let t = Instant::now();
        for (p, event) in &chunk {
            let engine = &mut engines[*p];
            engine.process(
                event,
                SourcePosition {
                    topic: TOPIC,
                    partition: *p as i32,
                    offset: offsets[*p],
                    written_at: None,
                },
            );
            offsets[*p] += 1;
            black_box(engine.drain_outputs());
            black_box(engine.drain_evaluations());
        }
        busy += t.elapsed();
        start += CHUNK;
    }
    busy.as_secs_f64()
}

/// Decoding alone (the event's lists are given back for the next, as the service does).
#[inline(never)]
fn decode_only(corpus: &Corpus, format: Format) -> f64 {
    let decoder = Decoder::new(format, EventKind::Prediction);
    let mut buffers = EventBuffers::default();
    let started = Instant::now();
    for i in 0..corpus.len() {
        let event = decoder
            .decode_reusing(black_box(corpus.get(i)), &mut buffers)
            .expect("valid payload");
        buffers.recycle(black_box(event));
    }
    started.elapsed().as_secs_f64()
}

struct Latency {
    histogram: Histogram<u64>,
    timer_overhead_ns: u64,
    /// Events whose decode + process took ≥ 1 ms, by cause.
    slow: BTreeMap<&'static str, (u64, u64)>,
    /// Events that closed panes: (median latency in ns, count).
    pane_close: (u64, u64),
}

/// Per-event latency of decode + process, every event timed (a separate pass, so timing does
/// not slow the throughput passes).
#[inline(never)]
fn latency(traffic: &Traffic, format: Format) -> Latency {
    let mut overhead = Histogram::<u64>::new_with_bounds(1, 1_000_000, 3).expect("histogram");
    for _ in 0..100_000 {
        let t = Instant::now();
        let e = t.elapsed();
        overhead.saturating_record(e.as_nanos() as u64);
    }
    let corpus = traffic.corpus(format);
    let decoder = Decoder::new(format, EventKind::Prediction);
    let mut engines = engines(traffic);
    let mut offsets = vec![0i64; traffic.partitions];
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let mut closes = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let mut slow: BTreeMap<&'static str, (u64, u64)> = BTreeMap::new();
    let warmup = MonitorSettings::default().reference.warmup_events;
    let mut buffers = EventBuffers::default();
    for i in 0..corpus.len() {
        let p = traffic.partition(i);
        let t = Instant::now();
        let (_, evaluations) = handle(
            &decoder,
            corpus.get(i),
            p,
            &mut engines,
            &mut offsets,
            &mut buffers,
        );
        let ns = t.elapsed().as_nanos() as u64;
        histogram.saturating_record(ns);
        let cause = if evaluations > 0 {
            closes.saturating_record(ns);
            "pane close (detectors run)"
        } else if (i / traffic.models) as u64 + 1 == warmup {
            "last warm-up event of a model (reference built)"
        } else {
            "other"
        };
        if ns >= 1_000_000 {
            let entry = slow.entry(cause).or_default();
            entry.0 += 1;
            entry.1 = entry.1.max(ns);
        }
    }
    Latency {
        pane_close: (closes.value_at_quantile(0.5), closes.len()),
        histogram,
        timer_overhead_ns: overhead.value_at_quantile(0.5),
        slow,
    }
}

// ---------------------------------------------------------------------------------------------
// Reporting
// ---------------------------------------------------------------------------------------------

fn thousands(x: f64) -> String {
    let n = x.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn ns_per(rate: f64) -> String {
    format!("{:.0}", 1e9 / rate)
}

fn micros(ns: u64) -> String {
    if ns >= 1_000_000 {
        format!("{:.1} ms", ns as f64 / 1e6)
    } else {
        format!("{:.2} µs", ns as f64 / 1e3)
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn machine_info() -> Vec<(String, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".into(), |(_, v)| v.trim().to_owned());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or("?".into(), |kb| format!("{:.1} GiB", kb / 1_048_576.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let pom = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/kafka/pom.xml"
    ))
    .unwrap_or_default();
    let kafka = pom
        .split("<kafka.version>")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap_or("?")
        .to_owned();
    let (_, librdkafka) = rdkafka::util::get_rdkafka_version();
    let rustc = command_output("rustc", &["-V"]).unwrap_or_else(|| "?".into());
    let commit = command_output(
        "git",
        &[
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    )
    .unwrap_or_else(|| "?".into());
    let dirty = command_output(
        "git",
        &[
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "status",
            "--porcelain",
            "--untracked-files=no",
        ],
    )
    .is_some_and(|s| !s.is_empty());
    vec![
        ("CPU".into(), model),
        ("nproc".into(), nproc.to_string()),
        ("memory".into(), memory),
        ("kernel".into(), kernel),
        (
            "broker".into(),
            format!("Apache Kafka {kafka}, single node (KRaft), same machine"),
        ),
        ("client".into(), format!("librdkafka {librdkafka}")),
        ("rustc".into(), rustc),
        (
            "driftwatch".into(),
            format!("{commit}{}", if dirty { " + local changes" } else { "" }),
        ),
    ]
}

fn cpu_line(label: &str, cpu: &CpuUse) -> String {
    let pct = |x: f64| format!("{:.0} %", x * 100.0);
    let threads: Vec<String> = cpu
        .groups
        .iter()
        .map(|(group, cores)| format!("{group} {}", pct(*cores)))
        .collect();
    let others = cpu.machine_cores - cpu.process_cores - cpu.broker_cores.unwrap_or(0.0);
    let loop_thread = cpu.loop_thread.map_or("?".into(), |(run, wait, blocked)| {
        format!("{} / {} / {}", pct(run), pct(wait), pct(blocked))
    });
    format!(
        "| {label} | {} | {} | {} | {} | {loop_thread} | {} |",
        pct(cpu.machine_cores),
        pct(cpu.process_cores),
        cpu.broker_cores.map_or("?".into(), pct),
        pct(others.max(0.0)),
        threads.join(", ")
    )
}

// ---------------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------------

struct Topics {
    predictions: String,
    labels: String,
    alerts: String,
    retrain: String,
    dlq: String,
    state: String,
}

fn main() {
    if let Err(error) = run() {
        eprintln!("throughput: error: {error}");
        std::process::exit(1);
    }
}

fn run() -> AnyResult<()> {
    let options = options()?;
    let total_started = Instant::now();
    let ticks = clock_ticks();
    let n = options.events;
    let format_name = options.format.as_str();

    eprintln!(
        "throughput: generating {n} events ({} models, {} partitions)…",
        options.models, options.partitions
    );
    let t = Instant::now();
    let traffic = generate(&options);
    eprintln!(
        "throughput: generated in {:.1} s (avro {:.0} B/event{})",
        t.elapsed().as_secs_f64(),
        traffic.avro.mean_bytes(),
        traffic.json.as_ref().map_or(String::new(), |j| format!(
            ", json {:.0} B/event",
            j.mean_bytes()
        ))
    );

    // (c) first, while nothing else runs.
    let mut inprocess: Vec<InProcess> = Vec::new();
    let mut latency_result = None;
    let mut evaluations_seen = (0usize, 0usize);
    if !options.only_service {
        eprintln!("throughput: (c) in-process passes…");
        let formats: Vec<Format> = if options.json_inprocess || options.format == Format::Json {
            let mut f = vec![options.format];
            let other = if options.format == Format::Avro {
                Format::Json
            } else {
                Format::Avro
            };
            f.push(other);
            f
        } else {
            vec![options.format]
        };
        for (i, &format) in formats.iter().enumerate() {
            let main = i == 0;
            // The target's row: the median of a few passes (fresh engines each time), since a
            // shared 2-core VM moves single runs by ±10 %; the spread goes in the note.
            let passes = if main { C_PASSES } else { 1 };
            let mut runs: Vec<(f64, usize, usize)> = (0..passes)
                .map(|_| decode_and_process(&traffic, format))
                .collect();
            runs.sort_by(|a, b| a.0.total_cmp(&b.0));
            let spread = (runs.len() > 1).then(|| {
                let rate = |seconds: f64| n as f64 / seconds;
                format!(
                    "median of {} passes, {}–{}/s; ",
                    runs.len(),
                    thousands(rate(runs[runs.len() - 1].0)),
                    thousands(rate(runs[0].0)),
                )
            });
            let (seconds, outputs, evaluations) = runs[runs.len() / 2];
            if main {
                evaluations_seen = (outputs, evaluations);
            }
            inprocess.push(InProcess {
                label: if main {
                    format!(
                        "(c) decode ({}) + `Engine::process`, 1 thread",
                        format.as_str()
                    )
                } else {
                    format!(
                        "(c) for comparison: decode ({}) + `Engine::process`",
                        format.as_str()
                    )
                },
                seconds,
                events: n,
                note: if main {
                    format!(
                        "{}{evaluations} evaluations, {outputs} outputs",
                        spread.unwrap_or_default()
                    )
                } else {
                    String::new()
                },
            });
            if main {
                inprocess.push(InProcess {
                    label: "(c′) `Engine::process` only (pre-decoded events)".into(),
                    seconds: engine_only(&traffic, format),
                    events: n,
                    note: "decoded 64 Ki events at a time, untimed".into(),
                });
            }
            inprocess.push(InProcess {
                label: format!("(c″) decode only ({})", format.as_str()),
                seconds: decode_only(traffic.corpus(format), format),
                events: n,
                note: format!("{:.0} B/event", traffic.corpus(format).mean_bytes()),
            });
        }
        let (seconds, events) = decode_and_process_with_labels(&traffic);
        inprocess.push(InProcess {
            label: "(c) with labels: decode (avro) + `Engine::process` of predictions and their labels"
                .into(),
            seconds,
            events: events as u64,
            note: format!(
                "each label {LABEL_DELAY_MS} ms of event time after its prediction; events/s counts both"
            ),
        });
        latency_result = Some(latency(&traffic, options.format));
    }

    let mut raw_runs: Vec<KafkaRun> = Vec::new();
    let mut e2e_runs: Vec<KafkaRun> = Vec::new();
    let mut production_s = None;
    let mut bootstrap_address = None;
    if !options.only_inprocess {
        let bootstrap = bootstrap()?;
        eprintln!("throughput: broker {bootstrap}");
        let topics = Topics {
            predictions: unique("throughput-predictions"),
            labels: unique("throughput-labels"),
            alerts: unique("throughput-alerts"),
            retrain: unique("throughput-retrain"),
            dlq: unique("throughput-dlq"),
            state: unique("throughput-state"),
        };
        create_topics(
            &bootstrap,
            &[
                (&topics.predictions, options.partitions),
                (&topics.labels, options.partitions),
                (&topics.alerts, 1),
                (&topics.retrain, 1),
                (&topics.dlq, 1),
            ],
        )?;
        let result = (|| -> AnyResult<()> {
            eprintln!(
                "throughput: producing {n} {format_name} events to {}…",
                topics.predictions
            );
            production_s = Some(produce(
                &bootstrap,
                &topics.predictions,
                &traffic,
                options.format,
            )?);
            eprintln!(
                "throughput: produced in {:.1} s",
                production_s.unwrap_or(0.0)
            );
            // Let the broker settle (segment flushes, replication bookkeeping) before measuring.
            std::thread::sleep(Duration::from_secs(2));
            let config = bench_config(&options, &bootstrap, &topics);
            for round in 1..=options.rounds {
                if !options.only_service {
                    // (a) is short (under a second per million events), so it runs
                    // RAW_REPEATS times per round on fresh groups; the median is reported.
                    for repeat in 1..=RAW_REPEATS {
                        eprintln!("throughput: round {round}: (a) raw consume #{repeat}…");
                        let raw = raw_consume(&config, n, ticks)?;
                        eprintln!("throughput:   {} events/s", thousands(raw.rate));
                        raw_runs.push(raw);
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                eprintln!("throughput: round {round}: (b) driftwatch end to end…");
                let e2e = end_to_end(&config, n, ticks)?;
                eprintln!("throughput:   {} events/s", thousands(e2e.rate));
                e2e_runs.push(e2e);
                std::thread::sleep(Duration::from_secs(1));
            }
            Ok(())
        })();
        if !options.keep_topics {
            let names = [
                topics.predictions.as_str(),
                topics.labels.as_str(),
                topics.alerts.as_str(),
                topics.retrain.as_str(),
                topics.dlq.as_str(),
            ];
            if let Err(error) = delete_topics(&bootstrap, &names) {
                eprintln!("throughput: could not delete the topics: {error}");
            }
        }
        result?;
        bootstrap_address = Some(bootstrap);
    }
    let total_s = total_started.elapsed().as_secs_f64();

    // ----- report -----
    let mut args = vec!["cargo bench --bench throughput".to_owned()];
    if !options.args.is_empty() {
        args.push("--".into());
        args.extend(options.args.iter().cloned());
    }
    println!();
    println!("## Throughput: Kafka ceiling, end to end, in-process engine");
    println!();
    println!("`{}`", args.join(" "));
    println!();
    println!(
        "{} prediction events ({format_name}, {:.0} B each on average; 20 features: 15 numeric, \
         5 categorical; {} models keyed by model_id over {} partitions; event time +1 ms per \
         event and model, so 1-minute panes close every 60,000 events of a model); default \
         monitor settings (warm-up 10,000, panes 60 × 1 min). Whole run: {:.0} s{}.",
        thousands(n as f64),
        traffic.corpus(options.format).mean_bytes(),
        options.models,
        options.partitions,
        total_s,
        production_s.map_or(String::new(), |p| format!(
            " (producing the topic: {p:.1} s, not in any figure)"
        ))
    );
    if options.no_join {
        println!();
        println!("Predictions do not wait in the label join (`--no-join`).");
    } else if let Some(bound) = options.join_max_entries {
        println!();
        println!(
            "The label join holds at most {} predictions per partition (`--join-max-entries`), \
             so once full it evicts one per prediction, as a long-running service's does.",
            thousands(bound as f64)
        );
    }
    if !options.consumer_extra.is_empty() {
        let extra: Vec<String> = options
            .consumer_extra
            .iter()
            .map(|(k, v)| format!("`{k}={v}`"))
            .collect();
        println!();
        println!(
            "**Experiment:** consumer settings added to (a) and (b) through `kafka.extra`: {}.",
            extra.join(", ")
        );
    }
    println!();
    println!("| measurement | events/s | ns/event | target | met |");
    println!("| --- | ---: | ---: | --- | --- |");
    let raw_rate = (!raw_runs.is_empty())
        .then(|| median(&mut raw_runs.iter().map(|r| r.rate).collect::<Vec<_>>()));
    let e2e_rate = (!e2e_runs.is_empty())
        .then(|| median(&mut e2e_runs.iter().map(|r| r.rate).collect::<Vec<_>>()));
    if let Some(rate) = raw_rate {
        println!(
            "| (a) raw consume: librdkafka `BaseConsumer`, poll + discard, service's consumer settings (median of {}) | {} | {} | ceiling | — |",
            raw_runs.len(),
            thousands(rate),
            ns_per(rate)
        );
    }
    if let Some(rate) = e2e_rate {
        let (target, met) = match raw_rate {
            Some(raw) => {
                let ratio = rate / raw;
                (
                    format!("≥ 80 % of (a): **{:.0} %**", ratio * 100.0),
                    if ratio >= E2E_TARGET { "yes" } else { "**no**" },
                )
            }
            None => ("≥ 80 % of (a)".into(), "?"),
        };
        println!(
            "| (b) driftwatch end to end: `service::run`, decode + engine + outputs + commits{} | {} | {} | {target} | {met} |",
            if e2e_runs.len() > 1 { format!(" (median of {})", e2e_runs.len()) } else { String::new() },
            thousands(rate),
            ns_per(rate)
        );
    }
    for (i, row) in inprocess.iter().enumerate() {
        let rate = row.rate();
        let (target, met) = if i == 0 {
            (
                "≥ 1,000,000/s".to_owned(),
                if rate >= ENGINE_TARGET {
                    "yes"
                } else {
                    "**no**"
                },
            )
        } else {
            (String::new(), "")
        };
        let note = if row.note.is_empty() {
            String::new()
        } else {
            format!(" ({})", row.note)
        };
        println!(
            "| {}{note} | {} | {} | {target} | {met} |",
            row.label,
            thousands(rate),
            ns_per(rate)
        );
    }
    println!();
    if !raw_runs.is_empty() || !e2e_runs.is_empty() {
        println!(
            "Kafka rates run from the first message received (a) or handled (b) to the last, so \
             joining the consumer group is excluded; it is reported here. (b) is read from \
             `shared.handled`, sampled every 0.5 ms."
        );
        println!();
        println!(
            "| run | join group (subscribe → assignment) | subscribe → first message | \
             measured window | events in window | events/s | loop-thread CPU per event |"
        );
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
        let rows = raw_runs
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("(a) run {}", i + 1), r))
            .chain(
                e2e_runs
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (format!("(b) round {}", i + 1), r)),
            );
        for (label, r) in rows {
            let cpu_per_event = r.cpu.loop_thread.map_or("?".into(), |(run, _, _)| {
                format!("{:.0} ns", run * r.window_s * 1e9 / r.counted as f64)
            });
            println!(
                "| {label} | {:.2} s | {:.2} s | {:.3} s | {} | {} | {cpu_per_event} |",
                r.join_s,
                r.first_s,
                r.window_s,
                thousands(r.counted as f64),
                thousands(r.rate)
            );
        }
        if let Some(summary) = e2e_runs.last().and_then(|r| r.summary.as_ref()) {
            println!();
            println!(
                "(b) service summary: {} consumed, {} outputs published, {} dead letters.",
                thousands(summary.consumed as f64),
                summary.outputs,
                summary.dead_letters
            );
        }
        if let Some((records, bytes, transactions)) = e2e_runs.last().and_then(|r| r.state) {
            println!(
                "(b) state changelog: {} records, {:.1} MB, in {} committed transactions \
                 (per commit: the changed models' records, a batch of the label-join entries \
                 that arrived; references once per model, when warm-up ends).",
                thousands(records as f64),
                bytes as f64 / 1e6,
                transactions
            );
        }
        println!();
        println!(
            "CPU during the measured windows, in % of one core (from /proc: schedstat per \
             thread, stat for the machine and the broker; \"other processes\" is whatever else \
             ran on the machine). The loop thread is the one calling `poll` (dw-raw in (a), \
             dw-service in (b)): running / waiting for a CPU / blocked."
        );
        println!();
        println!("| run | machine | this process | broker JVM | other processes | loop thread run / wait / blocked | this process by thread |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: | --- |");
        for (i, r) in raw_runs.iter().enumerate() {
            println!("{}", cpu_line(&format!("(a) run {}", i + 1), &r.cpu));
        }
        for (i, r) in e2e_runs.iter().enumerate() {
            println!("{}", cpu_line(&format!("(b) round {}", i + 1), &r.cpu));
        }
        println!();
    }
    if let Some(lat) = &latency_result {
        let h = &lat.histogram;
        println!(
            "Per-event latency of decode ({format_name}) + `Engine::process` (every one of the {} \
             events timed, separate pass; timer overhead ≈ {} ns included):",
            thousands(h.len() as f64),
            lat.timer_overhead_ns
        );
        println!();
        println!("| p50 | p99 | p99.9 | p99.99 | max | mean |");
        println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            micros(h.value_at_quantile(0.50)),
            micros(h.value_at_quantile(0.99)),
            micros(h.value_at_quantile(0.999)),
            micros(h.value_at_quantile(0.9999)),
            micros(h.max()),
            micros(h.mean() as u64)
        );
        println!();
        let slow: Vec<String> = lat
            .slow
            .iter()
            .map(|(cause, (count, max))| format!("{count} × {cause} (max {})", micros(*max)))
            .collect();
        println!(
            "Events over 1 ms: {}. Events that closed panes: {} (median {}); the detectors and \
             the reference build run inline in `process`. Over the run: {} evaluations, {} outputs.",
            if slow.is_empty() { "none".into() } else { slow.join("; ") },
            lat.pane_close.1,
            micros(lat.pane_close.0),
            evaluations_seen.1,
            evaluations_seen.0
        );
        println!();
    }
    println!("Machine:");
    println!();
    println!("| | |");
    println!("| --- | --- |");
    for (key, value) in machine_info() {
        println!("| {key} | {value} |");
    }
    if let Some(address) = bootstrap_address {
        println!();
        println!(
            "Broker at {address}; client, service and broker share the machine's cores (bench run \
             time {total_s:.0} s)."
        );
    }
    Ok(())
}
