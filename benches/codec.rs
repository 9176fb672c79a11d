//! Avro decoding of one 20-feature prediction, by the three ways a body can be read:
//! written with our schema (the hand-written decoder), written with an evolved schema that
//! adds a field (a plan: our readers plus a walk over the added field), and the same
//! evolved body through apache-avro's generic resolution (what every evolved schema paid
//! before plans).
//!
//! ```sh
//! cargo bench --bench codec
//! ```

use std::borrow::Cow;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use driftwatch::codec::avro::{
    decode_event_reusing, encode_prediction_avro, PREDICTION_EVENT_AVSC,
};
use driftwatch::codec::resolve::{decode_planned, decode_resolved, writer_schema, WriterSchema};
use driftwatch::codec::{EventBuffers, EventKind};
use driftwatch::event::{FeatureValue, Prediction, PredictionEvent};

/// A prediction shaped like the throughput bench's: 15 numeric and 5 categorical features.
fn event() -> PredictionEvent<'static> {
    let mut features: Vec<(Cow<'static, str>, FeatureValue<'static>)> = (0..15)
        .map(|i| {
            (
                Cow::Owned(format!("numeric_feature_{i}")),
                FeatureValue::Number(1.5 * f64::from(i) + 0.25),
            )
        })
        .collect();
    for (i, value) in ["FR", "mobile", "web", "pro", "grocery"]
        .into_iter()
        .enumerate()
    {
        features.push((
            Cow::Owned(format!("category_{i}")),
            FeatureValue::Text(Cow::Borrowed(value)),
        ));
    }
    PredictionEvent {
        event_id: Cow::Borrowed("fraud-v3-0000001234"),
        model_id: Cow::Borrowed("fraud-v3"),
        model_version: Cow::Borrowed("v3"),
        timestamp: 1_767_225_600_000,
        features,
        prediction: Prediction {
            score: Some(0.125),
            label: Some(Cow::Borrowed("0")),
            probabilities: None,
        },
        attributes: vec![(Cow::Borrowed("segment"), Cow::Borrowed("b2c"))],
    }
}

fn decode(c: &mut Criterion) {
    let ours = encode_prediction_avro(&event());
    // Our schema plus an optional string field at the end: its body is ours followed by
    // the new field (union branch 1, a 7-byte string).
    let mut schema: serde_json::Value = serde_json::from_str(PREDICTION_EVENT_AVSC).unwrap();
    schema["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!(
            {"name": "request_region", "type": ["null", "string"], "default": null}
        ));
    let Ok(WriterSchema::Planned(plan)) = writer_schema(&schema.to_string(), EventKind::Prediction)
    else {
        panic!("the evolved schema is read by a plan");
    };
    let evolved = [ours.clone(), vec![2, 14], b"eu-west".to_vec()].concat();

    let mut group = c.benchmark_group("avro_decode_prediction");
    group.throughput(Throughput::Elements(1));
    let mut buffers = EventBuffers::default();
    group.bench_function("our_schema", |b| {
        b.iter(|| {
            let event = decode_event_reusing(black_box(&ours), EventKind::Prediction, &mut buffers)
                .unwrap();
            buffers.recycle(black_box(event));
        });
    });
    group.bench_function("evolved_schema_plan", |b| {
        b.iter(|| {
            let event = decode_planned(
                black_box(&evolved),
                &plan,
                EventKind::Prediction,
                &mut buffers,
            )
            .unwrap();
            buffers.recycle(black_box(event));
        });
    });
    group.bench_function("evolved_schema_generic", |b| {
        b.iter(|| {
            black_box(
                decode_resolved(black_box(&evolved), plan.writer(), EventKind::Prediction).unwrap(),
            )
        });
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
