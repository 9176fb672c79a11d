//! The events driftwatch consumes (DESIGN §2, contract), as borrowed views.
//!
//! Owns: the in-memory shape of prediction and label events shared by the codecs (which
//! produce them) and the monitor (which consumes them). Strings borrow from the message
//! payload where the wire format allows it (Avro strings and unescaped JSON strings are used
//! in place), so decoding an event costs one allocation (its feature list) rather than one
//! per string.

use std::borrow::Cow;

/// One feature value: the Avro union {null, double, string, boolean}.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureValue<'a> {
    /// Explicitly missing.
    Null,
    /// A number (may be NaN or infinite in JSON written by lenient producers; the monitor
    /// counts those as data-quality problems).
    Number(f64),
    /// A categorical value.
    Text(Cow<'a, str>),
    /// A boolean, treated as the category "true" / "false".
    Bool(bool),
}

/// What the model predicted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prediction<'a> {
    /// Score (regression output or positive-class probability).
    pub score: Option<f64>,
    /// Predicted class.
    pub label: Option<Cow<'a, str>>,
    /// Class probabilities.
    pub probabilities: Option<Vec<(Cow<'a, str>, f64)>>,
}

/// A prediction made by a model (topic `inference.predictions`).
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionEvent<'a> {
    /// Unique id; labels join on it.
    pub event_id: Cow<'a, str>,
    /// Model identifier.
    pub model_id: Cow<'a, str>,
    /// Model version; each version has its own reference and windows.
    pub model_version: Cow<'a, str>,
    /// Event time, milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Feature name → value, in the producer's order.
    pub features: Vec<(Cow<'a, str>, FeatureValue<'a>)>,
    /// The model's output.
    pub prediction: Prediction<'a>,
    /// Free-form attributes (segments, sensitive attributes).
    pub attributes: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

/// A ground-truth label (topic `inference.labels`).
#[derive(Debug, Clone, PartialEq)]
pub enum LabelValue<'a> {
    /// Class label.
    Text(Cow<'a, str>),
    /// Regression target.
    Number(f64),
}

/// A label arriving after its prediction (or before it).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelEvent<'a> {
    /// Id of the prediction this labels.
    pub event_id: Cow<'a, str>,
    /// Model identifier.
    pub model_id: Cow<'a, str>,
    /// Event time of the label, milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The true value.
    pub label: LabelValue<'a>,
}

/// Either kind of input event.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    /// A prediction.
    Prediction(PredictionEvent<'a>),
    /// A label.
    Label(LabelEvent<'a>),
}

impl Event<'_> {
    /// The event's model.
    pub fn model_id(&self) -> &str {
        match self {
            Event::Prediction(p) => &p.model_id,
            Event::Label(l) => &l.model_id,
        }
    }

    /// The event's time.
    pub fn timestamp(&self) -> i64 {
        match self {
            Event::Prediction(p) => p.timestamp,
            Event::Label(l) => l.timestamp,
        }
    }
}
