//! Codecs: bytes from Kafka (or a replay file) to [`Event`]s, and outputs to bytes (DESIGN §2).
//!
//! Owns: the wire formats — JSON ([`json`]), Avro binary ([`avro`]) and the Confluent header
//! ([`wire`]) — the schemas in `schemas/*.avsc`, and the classification of bad input into short
//! [`DecodeError::reason`]s for the dead-letter header and metrics. Must not touch: tokio,
//! rdkafka, clocks or any other I/O; every function here is a pure function of its input, and
//! none panics on any input (a property the tests check on random and truncated bytes).
//!
//! Decoded events borrow their strings from the payload wherever the format allows (always in
//! Avro, for unescaped strings in JSON), so a decoded event lives no longer than its message.

pub mod avro;
pub mod json;
pub mod resolve;
pub mod wire;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use std::borrow::Cow;

use crate::event::{Event, FeatureValue};

pub use avro::{
    alert_to_avro, encode_label_avro, encode_prediction_avro, retrain_to_avro, EncodeError,
};
pub use json::{alert_to_json, encode_label_json, encode_prediction_json, retrain_to_json};
pub use wire::{frame_confluent, split_confluent};

/// Default for [`Decoder::with_max_payload_bytes`]: 1 MiB, Kafka's default `message.max.bytes`,
/// so anything larger did not come through a default-configured broker anyway.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// How messages on a topic (or lines in a file) are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per message, mirroring the Avro schema (see `schemas/README.md`).
    Json,
    /// Plain Avro binary written with driftwatch's schema (no header).
    Avro,
    /// Confluent wire format: byte 0, 4-byte big-endian schema id, then Avro binary.
    Confluent,
}

impl Format {
    /// The spelling used in configuration and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Avro => "avro",
            Format::Confluent => "confluent",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no [`Format`] or [`EventKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {given:?}, expected one of: {expected}")]
pub struct ParseNameError {
    /// What was being parsed ("format", "event kind").
    pub what: &'static str,
    /// The text given.
    pub given: String,
    /// The accepted spellings, comma-separated.
    pub expected: &'static str,
}

impl FromStr for Format {
    type Err = ParseNameError;

    /// Parses the lowercase spelling (as in configuration files); case-insensitive because
    /// people type `--format JSON`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(Format::Json),
            "avro" => Ok(Format::Avro),
            "confluent" => Ok(Format::Confluent),
            _ => Err(ParseNameError {
                what: "format",
                given: s.to_owned(),
                expected: "json, avro, confluent",
            }),
        }
    }
}

/// Which kind of event a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// [`crate::event::PredictionEvent`]s (`inference.predictions`).
    Prediction,
    /// [`crate::event::LabelEvent`]s (`inference.labels`).
    Label,
}

impl EventKind {
    /// The spelling of the JSON `"kind"` field and of configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Prediction => "prediction",
            EventKind::Label => "label",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = ParseNameError;

    /// Parses `prediction`/`label`; the plurals (topic-style names) are accepted too.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "prediction" | "predictions" => Ok(EventKind::Prediction),
            "label" | "labels" => Ok(EventKind::Label),
            _ => Err(ParseNameError {
                what: "event kind",
                given: s.to_owned(),
                expected: "prediction, label",
            }),
        }
    }
}

/// Why a message could not be decoded. [`reason`](DecodeError::reason) is the short,
/// bounded label for the dead-letter header and the `driftwatch_dlq_total{reason}` metric; the
/// `Display` text is for people (field, byte offset, what was expected).
///
/// Byte offsets count from the start of the whole payload (including a Confluent header).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The payload ended before the value being read.
    #[error("truncated: `{field}` at byte {offset} runs past the end of the payload ({detail})")]
    Truncated {
        /// What was being read.
        field: String,
        /// Where the incomplete value starts.
        offset: usize,
        /// How many bytes were needed, or which structure was incomplete.
        detail: String,
    },
    /// A Confluent-framed message does not start with byte 0.
    #[error("bad magic byte {found:#04x} at byte 0, expected 0x00 (Confluent wire format)")]
    BadMagicByte {
        /// The first byte of the message.
        found: u8,
    },
    /// A Confluent schema id outside the configured allow-list.
    #[error("schema id {id} is not one of the accepted schema ids")]
    UnknownSchemaId {
        /// The id from the header.
        id: u32,
    },
    /// The schema registry has no schema with the id in the Confluent header.
    #[error("schema id {id} is not registered in the schema registry ({detail})")]
    UnregisteredSchemaId {
        /// The id from the header.
        id: u32,
        /// What the registry answered.
        detail: String,
    },
    /// The registered writer schema cannot be read as driftwatch's event schema.
    #[error("schema id {id}: {detail}")]
    IncompatibleSchema {
        /// The id from the header.
        id: u32,
        /// Why it cannot be read.
        detail: String,
    },
    /// The payload is not one JSON value (syntax error, or nested too deeply).
    #[error("invalid JSON: {message}")]
    InvalidJson {
        /// serde_json's description, with line and column.
        message: String,
    },
    /// A required field is absent.
    #[error("missing field `{field}`")]
    MissingField {
        /// Path of the field, e.g. `prediction`.
        field: String,
    },
    /// A field holds the wrong JSON type.
    #[error("field `{field}`: expected {expected}, found {found}")]
    WrongType {
        /// Path of the field, e.g. `features.age`.
        field: String,
        /// What the schema wants.
        expected: &'static str,
        /// What the payload has.
        found: &'static str,
    },
    /// A string is not UTF-8.
    #[error("invalid UTF-8 in `{field}` at byte {offset}")]
    InvalidUtf8 {
        /// What was being read (`(payload)` for a whole JSON message).
        field: String,
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// The payload exceeds the decoder's size limit.
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    Oversized {
        /// Payload size.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
    /// Bytes left over after a complete record.
    #[error("{count} trailing bytes after the record, starting at byte {offset}")]
    TrailingBytes {
        /// Where the record ended.
        offset: usize,
        /// How many bytes follow it.
        count: usize,
    },
    /// Well-formed, but a value the schema does not allow (bad union branch, out-of-range
    /// number, unknown `"kind"`, duplicate field, inconsistent Avro block size, ...).
    #[error("field `{field}`: {detail}")]
    InvalidValue {
        /// Path of the field.
        field: String,
        /// What is wrong, with the byte offset for binary formats.
        detail: String,
    },
}

impl DecodeError {
    /// Every value [`reason`](DecodeError::reason) can return, so metrics can pre-register
    /// their label values and dashboards know the full set.
    pub const ALL_REASONS: &'static [&'static str] = &[
        "truncated",
        "bad_magic_byte",
        "unknown_schema_id",
        "incompatible_schema",
        "invalid_json",
        "missing_field",
        "wrong_type",
        "invalid_utf8",
        "oversized",
        "trailing_bytes",
        "invalid_value",
    ];

    /// Short, stable, machine-friendly label (snake_case) for the dead-letter header and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Truncated { .. } => "truncated",
            DecodeError::BadMagicByte { .. } => "bad_magic_byte",
            DecodeError::UnknownSchemaId { .. } | DecodeError::UnregisteredSchemaId { .. } => {
                "unknown_schema_id"
            }
            DecodeError::IncompatibleSchema { .. } => "incompatible_schema",
            DecodeError::InvalidJson { .. } => "invalid_json",
            DecodeError::MissingField { .. } => "missing_field",
            DecodeError::WrongType { .. } => "wrong_type",
            DecodeError::InvalidUtf8 { .. } => "invalid_utf8",
            DecodeError::Oversized { .. } => "oversized",
            DecodeError::TrailingBytes { .. } => "trailing_bytes",
            DecodeError::InvalidValue { .. } => "invalid_value",
        }
    }

    /// Moves byte offsets by `by`: the Avro decoder counts from the start of the Avro body,
    /// while people (and `kcat` hex dumps) count from the start of the message.
    fn shifted(mut self, by: usize) -> Self {
        match &mut self {
            DecodeError::Truncated { offset, .. }
            | DecodeError::InvalidUtf8 { offset, .. }
            | DecodeError::TrailingBytes { offset, .. } => *offset = offset.saturating_add(by),
            // `InvalidValue` carries its offset inside the detail text; rewriting text is not
            // worth it, so the Avro decoder states there that the offset is body-relative.
            _ => {}
        }
        self
    }
}

/// Turns message payloads into [`Event`]s for one topic (or file): a [`Format`], the
/// [`EventKind`] the topic carries, a size limit and, for Confluent framing, the accepted
/// schema ids.
///
/// [`Decoder::decode`] reads Avro written with driftwatch's own schemas (`schemas/*.avsc`).
/// With a schema registry, [`Decoder::decode_confluent_with`] reads any writer schema our
/// reader schema can resolve (see [`resolve`]); the caller looks the header's id up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoder {
    format: Format,
    kind: EventKind,
    max_payload_bytes: usize,
    /// `None` accepts any id. Without a registry, any id is taken to mean our schema, which
    /// is what a producer registering `schemas/*.avsc` gets.
    accepted_schema_ids: Option<Vec<u32>>,
}

impl Decoder {
    /// A decoder for `format` on a topic carrying `kind` events, with the default size limit
    /// ([`DEFAULT_MAX_PAYLOAD_BYTES`]) and any schema id accepted.
    ///
    /// For JSON, a `"kind"` field in a message overrides `kind`, so one decoder also reads
    /// files that mix predictions and labels.
    pub fn new(format: Format, kind: EventKind) -> Self {
        Decoder {
            format,
            kind,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            accepted_schema_ids: None,
        }
    }

    /// Rejects payloads longer than `limit` bytes as `oversized` before parsing them.
    pub fn with_max_payload_bytes(mut self, limit: usize) -> Self {
        self.max_payload_bytes = limit;
        self
    }

    /// Accepts only these Confluent schema ids (others are `unknown_schema_id`); an empty list
    /// accepts none. Ignored by the other formats.
    pub fn with_accepted_schema_ids(mut self, ids: impl IntoIterator<Item = u32>) -> Self {
        let mut ids: Vec<u32> = ids.into_iter().collect();
        // Sorted so the per-message check is a binary search.
        ids.sort_unstable();
        ids.dedup();
        self.accepted_schema_ids = Some(ids);
        self
    }

    /// The configured format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The event kind assumed when a message does not say.
    pub fn kind(&self) -> EventKind {
        self.kind
    }

    /// The size limit in bytes.
    pub fn max_payload_bytes(&self) -> usize {
        self.max_payload_bytes
    }

    /// Decodes one message. Strings in the result borrow from `payload` where possible.
    ///
    /// # Errors
    /// A [`DecodeError`] for anything that is not one well-formed event of the configured
    /// format; never panics.
    pub fn decode<'a>(&self, payload: &'a [u8]) -> Result<Event<'a>, DecodeError> {
        // Fresh (empty) lists allocate only as the event's entries arrive.
        self.decode_reusing(payload, &mut EventBuffers::default())
    }

    /// [`Decoder::decode`], building the event's lists in `buffers`' storage; give it back
    /// with [`EventBuffers::recycle`] once the event is handled. Avro, and JSON written the
    /// plain way (see `json::decode_event_reusing`), then decode without allocating.
    ///
    /// # Errors
    /// As [`Decoder::decode`].
    pub fn decode_reusing<'a>(
        &self,
        payload: &'a [u8],
        buffers: &mut EventBuffers,
    ) -> Result<Event<'a>, DecodeError> {
        if payload.len() > self.max_payload_bytes {
            return Err(DecodeError::Oversized {
                size: payload.len(),
                limit: self.max_payload_bytes,
            });
        }
        match self.format {
            Format::Json => json::decode_event_reusing(payload, self.kind, buffers),
            Format::Avro => avro::decode_event_reusing(payload, self.kind, buffers),
            Format::Confluent => {
                let (id, body) = split_confluent(payload)?;
                self.check_schema_id(id)?;
                avro::decode_event_reusing(body, self.kind, buffers)
                    .map_err(|e| e.shifted(wire::HEADER_LEN))
            }
        }
    }

    /// Decodes a Confluent-framed message whose header's schema id the caller resolved (through
    /// the schema registry) to `writer`: our own schema takes the fast path of
    /// [`Decoder::decode`], another one is resolved against ours.
    ///
    /// # Errors
    /// As [`Decoder::decode`].
    pub fn decode_confluent_with<'a>(
        &self,
        payload: &'a [u8],
        writer: &resolve::WriterSchema,
        buffers: &mut EventBuffers,
    ) -> Result<Event<'a>, DecodeError> {
        if payload.len() > self.max_payload_bytes {
            return Err(DecodeError::Oversized {
                size: payload.len(),
                limit: self.max_payload_bytes,
            });
        }
        let (id, body) = split_confluent(payload)?;
        self.check_schema_id(id)?;
        match writer {
            resolve::WriterSchema::Native => avro::decode_event_reusing(body, self.kind, buffers),
            resolve::WriterSchema::Planned(plan) => {
                resolve::decode_planned(body, plan, self.kind, buffers)
            }
            resolve::WriterSchema::Resolved(schema) => {
                resolve::decode_resolved(body, schema, self.kind)
            }
        }
        .map_err(|e| e.shifted(wire::HEADER_LEN))
    }

    fn check_schema_id(&self, id: u32) -> Result<(), DecodeError> {
        match &self.accepted_schema_ids {
            Some(ids) if ids.binary_search(&id).is_err() => {
                Err(DecodeError::UnknownSchemaId { id })
            }
            _ => Ok(()),
        }
    }
}

/// Storage for a prediction's feature, attribute and class-probability lists, lent to the
/// decoder for each event and given back once the event has been handled, so that decoding a
/// stream allocates nothing per event once the lists have grown to the events' size.
#[derive(Debug, Default)]
pub struct EventBuffers {
    features: Vec<(Cow<'static, str>, FeatureValue<'static>)>,
    attributes: Vec<(Cow<'static, str>, Cow<'static, str>)>,
    probabilities: Vec<(Cow<'static, str>, f64)>,
}

/// A decoded prediction's feature list, borrowing from its payload.
pub(crate) type Features<'a> = Vec<(Cow<'a, str>, FeatureValue<'a>)>;
/// A decoded prediction's attribute list, borrowing from its payload.
pub(crate) type Attributes<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;
/// A decoded prediction's class probabilities, borrowing from its payload.
pub(crate) type ProbabilityList<'a> = Vec<(Cow<'a, str>, f64)>;

impl EventBuffers {
    /// Empty lists for an event borrowing from a payload of lifetime `'a`, in the kept storage.
    /// (A probability list lent to an event that has none is dropped: only a stream that mixes
    /// events with and without probabilities allocates one now and then.)
    pub(crate) fn lend<'a>(&mut self) -> (Features<'a>, Attributes<'a>, ProbabilityList<'a>) {
        (
            relabel(std::mem::take(&mut self.features)),
            relabel(std::mem::take(&mut self.attributes)),
            relabel(std::mem::take(&mut self.probabilities)),
        )
    }

    /// Takes back the lists of a handled event, emptied, for the next one.
    pub fn recycle(&mut self, event: Event<'_>) {
        if let Event::Prediction(prediction) = event {
            if prediction.features.capacity() >= self.features.capacity() {
                self.features = relabel(prediction.features);
            }
            if prediction.attributes.capacity() >= self.attributes.capacity() {
                self.attributes = relabel(prediction.attributes);
            }
            if let Some(probabilities) = prediction.prediction.probabilities {
                if probabilities.capacity() >= self.probabilities.capacity() {
                    self.probabilities = relabel(probabilities);
                }
            }
        }
    }
}

/// `list`, emptied, as a list of the same type under another lifetime, in the same storage:
/// the standard library collects a `vec::IntoIter` in place when the element layouts match
/// (they do: only a lifetime differs), and nothing is moved since nothing is left. Should
/// that ever not hold, this allocates, which is slower but still correct.
fn relabel<A, B>(mut list: Vec<A>) -> Vec<B> {
    list.clear();
    list.into_iter().filter_map(|_| None).collect()
}

/// Cuts a field name taken from a payload to a length fit for an error message: names come
/// from producers and may be arbitrarily long, and error text ends up in logs and headers.
pub(crate) fn field_path(prefix: &str, name: &str) -> String {
    const MAX: usize = 64;
    if name.len() <= MAX {
        return format!("{prefix}.{name}");
    }
    let mut cut = MAX;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{prefix}.{}…", &name[..cut])
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use proptest::prelude::*;

    use super::*;
    use crate::event::{FeatureValue, LabelEvent, LabelValue, Prediction, PredictionEvent};

    fn twenty_feature_event() -> PredictionEvent<'static> {
        let features = (0..20)
            .map(|i| {
                let value = match i % 4 {
                    0 => FeatureValue::Number(f64::from(i) * 1.5),
                    1 => FeatureValue::Text(Cow::Owned(format!("cat_{i}"))),
                    2 => FeatureValue::Bool(i % 3 == 0),
                    _ => FeatureValue::Null,
                };
                (Cow::Owned(format!("feature_{i}")), value)
            })
            .collect();
        PredictionEvent {
            event_id: "evt-0001".into(),
            model_id: "churn".into(),
            model_version: "v3".into(),
            timestamp: 1_700_000_000_123,
            features,
            prediction: Prediction {
                score: Some(0.81),
                label: Some("yes".into()),
                probabilities: Some(vec![("yes".into(), 0.81), ("no".into(), 0.19)]),
            },
            attributes: vec![("segment".into(), "emea".into())],
        }
    }

    fn label() -> LabelEvent<'static> {
        LabelEvent {
            event_id: "evt-0001".into(),
            model_id: "churn".into(),
            timestamp: 1_700_000_100_000,
            label: LabelValue::Text("no".into()),
        }
    }

    /// Reused storage decodes every event exactly as fresh storage does (lists longer or
    /// shorter than the last event's, attributes present or absent, labels in between,
    /// malformed payloads), and a warm decoder builds each event's features in the same
    /// allocation.
    #[test]
    fn reused_buffers_decode_the_same_events_without_allocating() {
        let full = twenty_feature_event();
        let mut small = twenty_feature_event();
        small.features.truncate(3);
        small.attributes.clear();
        let mut wide = twenty_feature_event();
        wide.features.extend(
            (20..45).map(|i| (Cow::Owned(format!("extra_{i}")), FeatureValue::Number(0.5))),
        );
        wide.attributes.push(("region".into(), "north".into()));
        for format in [Format::Avro, Format::Confluent, Format::Json] {
            let decoder = Decoder::new(format, EventKind::Prediction);
            let encode = |event: &PredictionEvent<'_>| match format {
                Format::Json => encode_prediction_json(event),
                Format::Avro => encode_prediction_avro(event),
                Format::Confluent => frame_confluent(1, &encode_prediction_avro(event)),
            };
            let mut payloads: Vec<Vec<u8>> = [&full, &small, &wide, &small, &full]
                .iter()
                .map(|event| encode(event))
                .collect();
            let mut truncated = encode(&full);
            truncated.truncate(truncated.len() / 2);
            payloads.insert(2, truncated);
            let mut buffers = EventBuffers::default();
            for payload in &payloads {
                let fresh = decoder.decode(payload);
                let reused = decoder.decode_reusing(payload, &mut buffers);
                assert_eq!(reused, fresh, "{format:?}");
                if let Ok(event) = reused {
                    buffers.recycle(event);
                }
            }
            let storage = buffers.features.as_ptr() as usize;
            let event = decoder.decode_reusing(&payloads[0], &mut buffers).unwrap();
            let Event::Prediction(prediction) = &event else {
                panic!("a prediction")
            };
            assert_eq!(prediction.features.as_ptr() as usize, storage, "{format:?}");
            buffers.recycle(event);
        }
    }

    // The `Cow` itself is what is inspected, so clippy's "take &str" advice does not apply.
    #[allow(clippy::ptr_arg)]
    fn is_borrowed(s: &Cow<'_, str>) -> bool {
        matches!(s, Cow::Borrowed(_))
    }

    #[test]
    fn format_and_kind_parse_and_serialise_lowercase() {
        for format in [Format::Json, Format::Avro, Format::Confluent] {
            assert_eq!(format.as_str().parse::<Format>(), Ok(format));
            let json = serde_json::to_string(&format).unwrap();
            assert_eq!(json, format!("\"{}\"", format.as_str()));
            assert_eq!(serde_json::from_str::<Format>(&json).unwrap(), format);
        }
        assert_eq!("JSON".parse::<Format>(), Ok(Format::Json));
        let err = "protobuf".parse::<Format>().unwrap_err();
        assert!(err.to_string().contains("json, avro, confluent"), "{err}");
        assert_eq!("labels".parse::<EventKind>(), Ok(EventKind::Label));
        assert_eq!(
            serde_json::to_string(&EventKind::Prediction).unwrap(),
            "\"prediction\""
        );
        assert!("x".parse::<EventKind>().is_err());
    }

    #[test]
    fn every_reason_is_listed() {
        let samples = [
            DecodeError::Truncated {
                field: "f".into(),
                offset: 0,
                detail: String::new(),
            },
            DecodeError::BadMagicByte { found: 1 },
            DecodeError::UnknownSchemaId { id: 1 },
            DecodeError::IncompatibleSchema {
                id: 1,
                detail: String::new(),
            },
            DecodeError::InvalidJson {
                message: String::new(),
            },
            DecodeError::MissingField { field: "f".into() },
            DecodeError::WrongType {
                field: "f".into(),
                expected: "a",
                found: "b",
            },
            DecodeError::InvalidUtf8 {
                field: "f".into(),
                offset: 0,
            },
            DecodeError::Oversized { size: 2, limit: 1 },
            DecodeError::TrailingBytes {
                offset: 0,
                count: 1,
            },
            DecodeError::InvalidValue {
                field: "f".into(),
                detail: String::new(),
            },
        ];
        let reasons: Vec<&str> = samples.iter().map(DecodeError::reason).collect();
        assert_eq!(reasons, DecodeError::ALL_REASONS);
        // A registry's "no such id" shares the allow-list's reason.
        let unregistered = DecodeError::UnregisteredSchemaId {
            id: 1,
            detail: String::new(),
        };
        assert_eq!(unregistered.reason(), "unknown_schema_id");
    }

    #[test]
    fn decoder_round_trips_every_format() {
        let event = twenty_feature_event();
        let payloads = [
            (Format::Json, encode_prediction_json(&event)),
            (Format::Avro, encode_prediction_avro(&event)),
            (
                Format::Confluent,
                frame_confluent(7, &encode_prediction_avro(&event)),
            ),
        ];
        for (format, payload) in &payloads {
            let decoder = Decoder::new(*format, EventKind::Prediction);
            assert_eq!(
                decoder.decode(payload),
                Ok(Event::Prediction(event.clone())),
                "{format}"
            );
        }
        let label = label();
        let decoder = Decoder::new(Format::Avro, EventKind::Label);
        assert_eq!(
            decoder.decode(&encode_label_avro(&label)),
            Ok(Event::Label(label))
        );
    }

    #[test]
    fn avro_twenty_features_borrow_every_string() {
        let event = twenty_feature_event();
        let payload = encode_prediction_avro(&event);
        let decoder = Decoder::new(Format::Avro, EventKind::Prediction);
        let Ok(Event::Prediction(decoded)) = decoder.decode(&payload) else {
            panic!("not a prediction");
        };
        assert_eq!(decoded, event);
        assert_eq!(decoded.features.len(), 20);
        let mut strings = vec![&decoded.event_id, &decoded.model_id, &decoded.model_version];
        for (name, value) in &decoded.features {
            strings.push(name);
            if let FeatureValue::Text(text) = value {
                strings.push(text);
            }
        }
        strings.extend(decoded.prediction.label.as_ref());
        for (class, _) in decoded.prediction.probabilities.iter().flatten() {
            strings.push(class);
        }
        for (key, value) in &decoded.attributes {
            strings.extend([key, value]);
        }
        assert!(strings.len() > 25);
        for s in strings {
            assert!(is_borrowed(s), "{s:?} was copied");
        }
    }

    #[test]
    fn json_twenty_features_borrow_unescaped_strings() {
        let event = twenty_feature_event();
        let payload = encode_prediction_json(&event);
        let decoder = Decoder::new(Format::Json, EventKind::Prediction);
        let Ok(Event::Prediction(decoded)) = decoder.decode(&payload) else {
            panic!("not a prediction");
        };
        assert_eq!(decoded, event);
        // No string in this event needs escaping, so none needs copying.
        assert!(is_borrowed(&decoded.event_id));
        assert!(decoded.features.iter().all(|(name, _)| is_borrowed(name)));
        // An escape forces a copy (the JSON text differs from the string), which must still
        // decode to the right value.
        let escaped =
            br#"{"kind":"label","event_id":"a\"b","model_id":"m","timestamp":1,"label":"x"}"#;
        let Ok(Event::Label(label)) = decoder.decode(escaped) else {
            panic!("not a label")
        };
        assert_eq!(label.event_id, "a\"b");
        assert!(!is_borrowed(&label.event_id));
        assert!(is_borrowed(&label.model_id));
    }

    #[test]
    fn oversized_payloads_are_rejected_before_parsing() {
        let payload = encode_prediction_avro(&twenty_feature_event());
        let decoder = Decoder::new(Format::Avro, EventKind::Prediction);
        assert!(decoder
            .clone()
            .with_max_payload_bytes(payload.len())
            .decode(&payload)
            .is_ok());
        let err = decoder
            .with_max_payload_bytes(payload.len() - 1)
            .decode(&payload)
            .unwrap_err();
        assert_eq!(err.reason(), "oversized");
        let big = vec![b' '; DEFAULT_MAX_PAYLOAD_BYTES + 1];
        let err = Decoder::new(Format::Json, EventKind::Label)
            .decode(&big)
            .unwrap_err();
        assert_eq!(err.reason(), "oversized");
    }

    #[test]
    fn confluent_schema_ids_are_checked_against_the_allow_list() {
        let body = encode_label_avro(&label());
        let any = Decoder::new(Format::Confluent, EventKind::Label);
        assert!(any.decode(&frame_confluent(123_456, &body)).is_ok());
        let listed = any.clone().with_accepted_schema_ids([5, 3]);
        assert!(listed.decode(&frame_confluent(3, &body)).is_ok());
        let err = listed.decode(&frame_confluent(4, &body)).unwrap_err();
        assert_eq!(err, DecodeError::UnknownSchemaId { id: 4 });
        let none = any.clone().with_accepted_schema_ids([]);
        assert_eq!(
            none.decode(&frame_confluent(3, &body))
                .unwrap_err()
                .reason(),
            "unknown_schema_id"
        );
        assert_eq!(
            any.decode(&[1, 0, 0, 0, 3]).unwrap_err().reason(),
            "bad_magic_byte"
        );
        assert_eq!(any.decode(&[0, 0, 0]).unwrap_err().reason(), "truncated");
    }

    #[test]
    fn confluent_errors_count_offsets_from_the_message_start() {
        let mut body = encode_label_avro(&label());
        body.push(0);
        let err = Decoder::new(Format::Confluent, EventKind::Label)
            .decode(&frame_confluent(1, &body))
            .unwrap_err();
        let expected_offset = wire::HEADER_LEN + body.len() - 1;
        assert_eq!(
            err,
            DecodeError::TrailingBytes {
                offset: expected_offset,
                count: 1
            }
        );
    }

    #[test]
    fn every_prefix_of_every_format_is_an_error() {
        let event = twenty_feature_event();
        let label = label();
        let cases = [
            (
                Format::Json,
                EventKind::Prediction,
                encode_prediction_json(&event),
            ),
            (Format::Json, EventKind::Label, encode_label_json(&label)),
            (
                Format::Avro,
                EventKind::Prediction,
                encode_prediction_avro(&event),
            ),
            (Format::Avro, EventKind::Label, encode_label_avro(&label)),
            (
                Format::Confluent,
                EventKind::Prediction,
                frame_confluent(9, &encode_prediction_avro(&event)),
            ),
        ];
        for (format, kind, payload) in &cases {
            let decoder = Decoder::new(*format, *kind);
            assert!(decoder.decode(payload).is_ok(), "{format} {kind}");
            for end in 0..payload.len() {
                let err = decoder.decode(&payload[..end]).unwrap_err();
                if *format != Format::Json {
                    // A binary prefix always runs out of bytes before the record completes.
                    assert_eq!(
                        err.reason(),
                        "truncated",
                        "{format} {kind} prefix {end}: {err}"
                    );
                }
            }
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            for format in [Format::Json, Format::Avro, Format::Confluent] {
                for kind in [EventKind::Prediction, EventKind::Label] {
                    let _ = Decoder::new(format, kind).decode(&bytes);
                }
            }
        }

        #[test]
        fn corrupted_messages_never_panic(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)
        ) {
            // Random bytes rarely get past the first field; editing a valid message reaches
            // every branch of the decoders.
            let event = twenty_feature_event();
            let cases = [
                (Format::Json, encode_prediction_json(&event)),
                (Format::Avro, encode_prediction_avro(&event)),
                (Format::Confluent, frame_confluent(1, &encode_prediction_avro(&event))),
            ];
            for (format, mut payload) in cases {
                for (index, byte) in &edits {
                    let i = index.index(payload.len());
                    payload[i] = *byte;
                }
                let _ = Decoder::new(format, EventKind::Prediction).decode(&payload);
            }
        }
    }
}
