//! The hot path allocates per pane, not per event (issue #3: "no per-event allocation in
//! the hot path"): decoding a payload into reused buffers and handing it to the engine, for
//! predictions and for the labels joined to them, in both input formats.
//!
//! Allocations are counted by a global allocator, per thread, so tests running beside each
//! other do not disturb the count. Only the memory the Rust code asks for is counted
//! (librdkafka is not involved here).

use std::alloc::{GlobalAlloc, Layout, System};
use std::borrow::Cow;
use std::cell::Cell;

use driftwatch::codec::{
    encode_label_avro, encode_label_json, encode_prediction_avro, encode_prediction_json, Decoder,
    EventBuffers, EventKind, Format,
};
use driftwatch::event::{FeatureValue, LabelEvent, LabelValue, Prediction, PredictionEvent};
use driftwatch::monitor::engine::Engine;
use driftwatch::monitor::model::SourcePosition;
use driftwatch::monitor::settings::MonitorSettings;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Counts the allocations (and reallocations) of the calling thread.
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_one() {
    // `try_with`, not `with`: an allocator must never panic. (A constant-initialised `Cell`
    // has no destructor, so the counter is never torn down and this always counts.)
    let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
}

// SAFETY: every call is passed on unchanged to the system allocator; the counter is a
// thread-local `Cell` with a constant initialiser, so counting never allocates itself.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

const MODELS: [&str; 2] = ["fraud-scorer", "churn-model"];
const CATEGORIES: [&str; 6] = ["ios", "android", "web", "desktop", "tv", "other"];
const COUNTRIES: [&str; 5] = ["DE", "FR", "US", "BR", "IN"];
/// Values of the `region` attribute, the sensitive attribute when fairness is on.
const REGIONS: [&str; 3] = ["eu", "us", "apac"];
/// Event time of the first event: 2026-01-01T00:00:00Z.
const START_MS: i64 = 1_767_225_600_000;
/// Event time between two predictions of one model: 6,000 per one-minute pane.
const STEP_MS: i64 = 10;
/// A label follows its prediction this much later in the stream.
const LABEL_DELAY: usize = 200;
/// One prediction in this many has its label come first (producers' clocks and topics
/// disagree): the prediction then completes the join.
const LABEL_FIRST_EVERY: usize = 10;

/// What a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A prediction whose label comes later (or never).
    Prediction,
    /// A label.
    Label,
    /// A prediction whose label came first: it makes the joined outcome.
    PredictionAfterItsLabel,
}

/// One input record: its payload and kind.
struct Record {
    payload: Vec<u8>,
    kind: Kind,
}

fn label_record(
    format: Format,
    model: &'static str,
    event_id: String,
    timestamp: i64,
    truth: bool,
) -> Record {
    let label = LabelEvent {
        event_id: Cow::Owned(event_id),
        model_id: Cow::Borrowed(model),
        timestamp: timestamp + 2_000,
        label: LabelValue::Text(Cow::Borrowed(if truth { "1" } else { "0" })),
    };
    let payload = match format {
        Format::Json => encode_label_json(&label),
        Format::Avro | Format::Confluent => encode_label_avro(&label),
    };
    Record {
        payload,
        kind: Kind::Label,
    }
}

/// Predictions of two models (12 numeric and 4 categorical features, some missing, one of
/// them always absent from one model), interleaved with the labels of earlier predictions;
/// one prediction in [`LABEL_FIRST_EVERY`] comes right after its label.
fn stream(format: Format, predictions_per_model: usize, multiclass: bool) -> Vec<Record> {
    let seed = 7;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut records = Vec::new();
    let mut labelled = Vec::new();
    for k in 0..predictions_per_model {
        for (m, model) in MODELS.iter().enumerate() {
            let mut features: Vec<(Cow<'static, str>, FeatureValue<'static>)> = (0..12)
                .map(|f| {
                    let value = if rng.random::<f64>() < 0.01 {
                        FeatureValue::Null
                    } else if f % 3 == 0 {
                        // Integer-valued, with ties.
                        FeatureValue::Number(f64::from(rng.random_range(0..40u32)))
                    } else {
                        FeatureValue::Number(rng.random::<f64>() * 100.0 + f as f64)
                    };
                    (Cow::Owned(format!("num_{f}")), value)
                })
                .collect();
            for c in 0..4 {
                let value = if c % 2 == 0 {
                    CATEGORIES[rng.random_range(0..CATEGORIES.len())]
                } else {
                    COUNTRIES[rng.random_range(0..COUNTRIES.len())]
                };
                features.push((
                    Cow::Owned(format!("cat_{c}")),
                    FeatureValue::Text(Cow::Borrowed(value)),
                ));
            }
            if m == 1 {
                features.pop();
            }
            let score: f64 = rng.random();
            let event_id = format!("{model}-{k:09}");
            let prediction = PredictionEvent {
                event_id: Cow::Owned(event_id.clone()),
                model_id: Cow::Borrowed(model),
                model_version: Cow::Borrowed("v1"),
                timestamp: START_MS + k as i64 * STEP_MS,
                features,
                prediction: Prediction {
                    score: Some(score),
                    label: Some(Cow::Borrowed(if score >= 0.5 { "1" } else { "0" })),
                    probabilities: multiclass.then(|| {
                        vec![
                            (Cow::Borrowed("0"), 1.0 - score),
                            (Cow::Borrowed("1"), score),
                        ]
                    }),
                },
                attributes: vec![(
                    Cow::Borrowed("region"),
                    Cow::Borrowed(REGIONS[rng.random_range(0..REGIONS.len())]),
                )],
            };
            let payload = match format {
                Format::Json => encode_prediction_json(&prediction),
                Format::Avro | Format::Confluent => encode_prediction_avro(&prediction),
            };
            let truth = rng.random_bool(0.5);
            if k % LABEL_FIRST_EVERY == 0 {
                records.push(label_record(
                    format,
                    model,
                    event_id,
                    prediction.timestamp,
                    truth,
                ));
                records.push(Record {
                    payload,
                    kind: Kind::PredictionAfterItsLabel,
                });
            } else {
                records.push(Record {
                    payload,
                    kind: Kind::Prediction,
                });
                labelled.push((model, event_id, prediction.timestamp, truth));
            }
        }
        while labelled.len() > LABEL_DELAY {
            let (model, event_id, timestamp, truth) = labelled.remove(0);
            records.push(label_record(format, model, event_id, timestamp, truth));
        }
    }
    records
}

/// Allocations counted while part of a stream was decoded and processed, by what the event
/// did.
#[derive(Debug, Default)]
struct Counted {
    /// Predictions that closed no pane, and their allocations.
    predictions: u64,
    prediction_allocations: u64,
    /// Labels that closed no pane, and their allocations.
    labels: u64,
    label_allocations: u64,
    /// Predictions after their label that closed no pane (each makes an outcome), and their
    /// allocations.
    completing: u64,
    completing_allocations: u64,
    /// Events that closed panes (and evaluated their windows), and their allocations.
    closing: u64,
    closing_allocations: u64,
}

/// Decodes and processes `records` as the service does; counts the allocations of
/// `records[measured..]`, after `records[..measured]` warmed the engine up.
fn count_allocations(
    format: Format,
    settings: MonitorSettings,
    records: &[Record],
    measured: usize,
) -> Counted {
    let predictions = Decoder::new(format, EventKind::Prediction);
    let labels = Decoder::new(format, EventKind::Label);
    let mut engine = Engine::new(settings).expect("valid settings");
    let mut buffers = EventBuffers::default();
    let mut counted = Counted::default();
    for (offset, record) in records.iter().enumerate() {
        let before = allocations();
        let decoder = if record.kind == Kind::Label {
            &labels
        } else {
            &predictions
        };
        let event = decoder
            .decode_reusing(&record.payload, &mut buffers)
            .expect("a valid payload");
        engine.process(
            &event,
            SourcePosition {
                topic: "predictions",
                partition: 0,
                offset: offset as i64,
                written_at: None,
            },
        );
        // Drained as the service drains them after each event.
        drop(engine.drain_outputs());
        let evaluations = engine.drain_evaluations();
        let closed_panes = !evaluations.is_empty();
        drop(evaluations);
        drop(engine.drain_quality());
        buffers.recycle(event);
        let allocated = allocations() - before;
        if offset < measured {
            continue;
        }
        let (events, total) = match record.kind {
            _ if closed_panes => (&mut counted.closing, &mut counted.closing_allocations),
            Kind::Label => (&mut counted.labels, &mut counted.label_allocations),
            Kind::PredictionAfterItsLabel => {
                (&mut counted.completing, &mut counted.completing_allocations)
            }
            Kind::Prediction => (
                &mut counted.predictions,
                &mut counted.prediction_allocations,
            ),
        };
        *events += 1;
        *total += allocated;
    }
    counted
}

fn assert_no_allocation_per_prediction(format: Format, settings: MonitorSettings) {
    assert_allocations(format, settings, false);
}

/// Counts allocations over a stream of predictions with (`multiclass`) or without class
/// probabilities, and checks them.
fn assert_allocations(format: Format, settings: MonitorSettings, multiclass: bool) {
    // 10,000 predictions per model warm up (the default); the rest run on frozen references
    // for 70,000 events of event time per model, so panes close during the measurement.
    let records = stream(format, 100_000, multiclass);
    let counted = count_allocations(format, settings, &records, records.len() * 3 / 10);
    assert!(
        counted.closing > 0 && counted.closing_allocations > 0,
        "the measured stretch must close panes, or it proves nothing about steady state: \
         {counted:?}"
    );
    // What the join keeps of an event's class probabilities is its own copy: one list per
    // waiting prediction, and one per outcome.
    let kept = u64::from(multiclass);
    assert!(counted.predictions > 100_000, "{counted:?}");
    assert!(counted.completing > 10_000, "{counted:?}");
    // What may still allocate on a prediction: the label join's storage growing (a chunk per
    // 1,024 waiting entries, or its index doubling), and the first event of a pane making
    // that pane's entries (a fairness group's, say). Even one allocation per 200 predictions
    // would mean work leaked into the hot path.
    assert!(
        counted.prediction_allocations < counted.predictions * kept + counted.predictions / 200,
        "{format:?}: predictions allocate: {counted:?}"
    );
    // An event that makes a joined outcome (a label after its prediction, or a prediction
    // after its label) allocates the outcome's event id, unique to it and kept until its pane
    // closes, and now and then a node of the ordered set of waiting outcomes (about one per
    // six). Its other strings (model, version, predicted and true class, group) are the
    // join's shared copies: a second allocation per outcome fails this.
    let joining = counted.labels + counted.completing;
    let joining_allocations = counted.label_allocations + counted.completing_allocations;
    assert!(
        joining_allocations * 2 <= joining * (3 + 2 * kept),
        "{format:?}: outcomes allocate more than their event id: {counted:?}"
    );
    // A pane close evaluates every series once and applies the outcomes that became known
    // in the pane: under a thousand allocations per model, not a few per outcome applied.
    assert!(
        counted.closing_allocations < joining / 5,
        "{format:?}: closing panes allocates per outcome: {counted:?}"
    );
}

#[test]
fn avro_predictions_are_decoded_and_counted_without_allocating() {
    assert_no_allocation_per_prediction(Format::Avro, MonitorSettings::default());
}

#[test]
fn json_predictions_are_decoded_and_counted_without_allocating() {
    assert_no_allocation_per_prediction(Format::Json, MonitorSettings::default());
}

/// With fairness on, each prediction is also counted in its group's pane, and each label's
/// outcome in its group's confusion counts.
#[test]
fn fairness_groups_are_counted_without_allocating() {
    let mut settings = MonitorSettings::default();
    settings.fairness.sensitive_attribute = Some("region".to_owned());
    assert_no_allocation_per_prediction(Format::Avro, settings);
}

/// Class probabilities are decoded into a lent list too; what is left is the join's copy of
/// them while the prediction waits, and the outcome's once it is joined.
#[test]
fn class_probabilities_are_decoded_without_allocating() {
    assert_allocations(Format::Avro, MonitorSettings::default(), true);
    assert_allocations(Format::Json, MonitorSettings::default(), true);
}
