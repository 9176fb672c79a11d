//! The label join: what one prediction costs while the join fills (its queue and index
//! grow) and once it is full (each prediction evicts the oldest), and what one label costs
//! when its prediction waits (the match and the joined outcome it makes).
//! Predictions carry a class label, as the throughput bench's do, and their keys are
//! prefetched the way the engine does: the engine asks for a key's index slot and then spends
//! most of a microsecond on the event's features, so here each key is asked for
//! [`PREFETCH_AHEAD`] predictions before it is offered.
//!
//! ```sh
//! cargo bench --bench join
//! ```

use std::borrow::Cow;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use driftwatch::event::{LabelEvent, LabelValue, Prediction, PredictionEvent};
use driftwatch::monitor::join::LabelJoin;

/// A few predictions of two models, alternating, with classes: the engine offers the event
/// it has just counted, so the event itself is in the cache; only its key is new.
fn predictions() -> Vec<PredictionEvent<'static>> {
    (0..16)
        .map(|k| {
            let model = if k % 2 == 0 { "fraud-a" } else { "churn-b" };
            PredictionEvent {
                event_id: Cow::Owned(format!("{model}-{k:010}")),
                model_id: Cow::Borrowed(model),
                model_version: Cow::Borrowed("v3"),
                timestamp: 1_767_225_600_000 + k,
                features: Vec::new(),
                prediction: Prediction {
                    score: Some(0.25),
                    label: Some(Cow::Borrowed(if k % 7 == 0 { "1" } else { "0" })),
                    probabilities: None,
                },
                attributes: Vec::new(),
            }
        })
        .collect()
}

/// The join keys of `count` distinct predictions, ids in the throughput bench's form.
fn keys(from: usize, count: usize) -> Vec<u64> {
    (from..from + count)
        .map(|k| {
            let model = if k % 2 == 0 { "fraud-a" } else { "churn-b" };
            LabelJoin::key_of(model, &format!("{model}-{k:010}"))
        })
        .collect()
}

/// The labels of the predictions [`keys`] names, in the same order.
fn labels(from: usize, count: usize) -> Vec<LabelEvent<'static>> {
    (from..from + count)
        .map(|k| {
            let model = if k % 2 == 0 { "fraud-a" } else { "churn-b" };
            LabelEvent {
                event_id: Cow::Owned(format!("{model}-{k:010}")),
                model_id: Cow::Borrowed(model),
                timestamp: 1_767_225_700_000 + k as i64,
                label: LabelValue::Text(Cow::Borrowed(if k % 5 == 0 { "1" } else { "0" })),
            }
        })
        .collect()
}

/// How many predictions ahead of its offer a key is prefetched.
const PREFETCH_AHEAD: usize = 8;

/// Offers a prediction under each key, each key prefetched [`PREFETCH_AHEAD`] ahead; returns
/// the time.
fn offer_all(join: &mut LabelJoin, events: &[PredictionEvent<'_>], keys: &[u64]) -> Duration {
    let started = Instant::now();
    for (i, key) in keys.iter().enumerate() {
        if let Some(next) = keys.get(i + PREFETCH_AHEAD) {
            join.prefetch(*next);
        }
        let event = &events[i % events.len()];
        black_box(join.offer_prediction_keyed(*key, event, None));
    }
    started.elapsed()
}

fn join(c: &mut Criterion) {
    const FILL: usize = 250_000;
    const BOUND: usize = 100_000;
    let events = predictions();
    let fill = keys(0, FILL);
    let mut group = c.benchmark_group("join");
    group.sample_size(10);
    group.throughput(Throughput::Elements(FILL as u64));
    // A fresh join each time: the queue and the index grow from empty to 250k entries (a
    // throughput-bench partition's share of a million events).
    group.bench_function("offer_250k_predictions_into_an_empty_join", |b| {
        b.iter_custom(|iterations| {
            (0..iterations)
                .map(|_| offer_all(&mut LabelJoin::new(i64::MAX / 4, 1_000_000), &events, &fill))
                .sum()
        });
    });
    // A join at its bound: every prediction evicts the oldest one.
    let (first, rest) = (keys(FILL, BOUND), keys(FILL + BOUND, FILL));
    group.bench_function("offer_250k_predictions_into_a_full_join", |b| {
        b.iter_custom(|iterations| {
            (0..iterations)
                .map(|_| {
                    let mut join = LabelJoin::new(i64::MAX / 4, BOUND);
                    offer_all(&mut join, &events, &first);
                    offer_all(&mut join, &events, &rest)
                })
                .sum()
        });
    });
    // Labels whose predictions wait: each one is matched, leaves the join, and makes an
    // outcome (dropped here; the engine keeps it until its pane closes).
    let answers = labels(0, FILL);
    group.bench_function("join_250k_labels_to_waiting_predictions", |b| {
        b.iter_custom(|iterations| {
            (0..iterations)
                .map(|_| {
                    let mut join = LabelJoin::new(i64::MAX / 4, 1_000_000);
                    offer_all(&mut join, &events, &fill);
                    let started = Instant::now();
                    for label in &answers {
                        black_box(join.offer_label(label));
                    }
                    let elapsed = started.elapsed();
                    assert_eq!(join.waiting(), 0, "every label found its prediction");
                    elapsed
                })
                .sum()
        });
    });
    group.finish();
}

criterion_group!(benches, join);
criterion_main!(benches);
