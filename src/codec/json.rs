//! JSON: decoding of prediction and label events, encoding of events and outputs (DESIGN §2;
//! the mirror rules are in `schemas/README.md`).
//!
//! Owns: the JSON mirror of the Avro schemas. Must not touch: I/O, the Avro binary format.
//!
//! Decoding is two steps. serde_json parses the payload into `Json`, a small value tree whose
//! strings borrow from the payload when they contain no escapes; then typed code walks that
//! tree into an [`Event`]. The split is what makes errors precise: a serde derive reports
//! "missing field" and "invalid type" as free text, while walking the tree ourselves tells
//! `missing_field` from `wrong_type` and names the field (`features.age`) for the dead-letter
//! header. serde_json still does all the parsing, including its nesting limit (128 levels), so
//! deep input is an error rather than a stack overflow.
//!
//! The tree costs an allocation per object and array, so events written the plain way take a
//! second route first: the direct path (module `direct`) streams them from serde_json into the event with no
//! tree, its lists in storage lent by the caller, and gives way to the tree path on anything
//! unusual. The tree path alone defines what a payload means and reports every error.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};

use super::{field_path, DecodeError, EventBuffers, EventKind};
use crate::event::{Event, FeatureValue, LabelEvent, LabelValue, Prediction, PredictionEvent};
use crate::monitor::output::{DriftAlert, RetrainRequest};

// ---------------------------------------------------------------------------------------------
// The value tree
// ---------------------------------------------------------------------------------------------

/// A parsed JSON value whose strings borrow from the input where possible. Objects keep their
/// entries in order, duplicates included, so the typed layer decides what duplicates mean.
#[derive(Debug, Clone, PartialEq)]
enum Json<'a> {
    Null,
    Bool(bool),
    /// An integer that fits an i64 (serde_json reports non-negative ones as u64 first).
    Int(i64),
    /// A non-negative integer above i64::MAX.
    UInt(u64),
    /// A number written with a fraction or exponent (or an integer beyond u64).
    Float(f64),
    Str(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    /// The name used in `wrong_type` messages.
    fn type_name(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "boolean",
            Json::Int(_) | Json::UInt(_) => "integer",
            Json::Float(_) => "number",
            Json::Str(_) => "string",
            Json::Array(_) => "array",
            Json::Object(_) => "object",
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match *self {
            Json::Int(i) => Some(i as f64),
            Json::UInt(u) => Some(u as f64),
            Json::Float(x) => Some(x),
            _ => None,
        }
    }

    /// Detaches from the input buffer (used when the input had to be rewritten, see
    /// [`lenient`]).
    fn into_owned(self) -> Json<'static> {
        match self {
            Json::Null => Json::Null,
            Json::Bool(b) => Json::Bool(b),
            Json::Int(i) => Json::Int(i),
            Json::UInt(u) => Json::UInt(u),
            Json::Float(x) => Json::Float(x),
            Json::Str(s) => Json::Str(Cow::Owned(s.into_owned())),
            Json::Array(items) => Json::Array(items.into_iter().map(Json::into_owned).collect()),
            Json::Object(entries) => Json::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (Cow::Owned(k.into_owned()), v.into_owned()))
                    .collect(),
            ),
        }
    }
}

/// A string that borrows when the deserializer can lend it. serde's own `Cow<str>` impl
/// always copies; `#[serde(borrow)]` only exists for derived fields.
struct BorrowedStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for BorrowedStr<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = BorrowedStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(StrVisitor)
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct JsonVisitor;
        impl<'de> Visitor<'de> for JsonVisitor {
            type Value = Json<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Json::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Json::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                Json::deserialize(d)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Json::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Json::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(i64::try_from(v).map_or(Json::UInt(v), Json::Int))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Json::Float(v))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Json::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Json::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Json::Str(Cow::Owned(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Json::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(BorrowedStr(key)) = map.next_key()? {
                    entries.push((key, map.next_value()?));
                }
                Ok(Json::Object(entries))
            }
        }
        deserializer.deserialize_any(JsonVisitor)
    }
}

/// Parses exactly one JSON value, allowing surrounding whitespace.
fn parse(text: &str) -> Result<Json<'_>, DecodeError> {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Json<'_>>();
    let value = match stream.next() {
        None => {
            return Err(DecodeError::InvalidJson {
                message: "empty payload".to_owned(),
            });
        }
        Some(Err(error)) => {
            return Err(DecodeError::InvalidJson {
                message: error.to_string(),
            });
        }
        Some(Ok(value)) => value,
    };
    // The stream stops after one value; anything but whitespace after it is a second value
    // or garbage, reported as trailing bytes rather than a syntax error so the DLQ reason
    // says what happened (typically two messages concatenated by a buggy producer).
    let end = stream.byte_offset();
    let rest = text.as_bytes().get(end..).unwrap_or_default();
    if let Some(first) = rest
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        return Err(DecodeError::TrailingBytes {
            offset: end + first,
            count: rest.len() - first,
        });
    }
    Ok(value)
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// Decodes one JSON object into an event. The object's `"kind"` (`"prediction"` or `"label"`)
/// decides what it is; without one, `default_kind` does (the topic's kind).
///
/// Strings borrow from `payload` unless they contain escapes. Unknown fields are ignored,
/// duplicate fields are an error, Avro-JSON union wrappers (`{"double": 1.5}`) are unwrapped,
/// and the bare tokens `NaN`, `Infinity`, `-Infinity` are accepted as numbers (see
/// `schemas/README.md`).
///
/// # Errors
/// `invalid_utf8`, `invalid_json`, `trailing_bytes`, `missing_field`, `wrong_type` or
/// `invalid_value`, naming the field.
pub fn decode_event(payload: &[u8], default_kind: EventKind) -> Result<Event<'_>, DecodeError> {
    decode_event_reusing(payload, default_kind, &mut EventBuffers::default())
}

/// [`decode_event`], building a prediction's feature and attribute lists in `buffers`' storage
/// (give it back with [`EventBuffers::recycle`]): once warm, a plainly written event decodes
/// without allocating (the direct path; see the module doc).
///
/// # Errors
/// As [`decode_event`].
pub fn decode_event_reusing<'a>(
    payload: &'a [u8],
    default_kind: EventKind,
    buffers: &mut EventBuffers,
) -> Result<Event<'a>, DecodeError> {
    // Checked up front so the reason is precise (serde_json would call it a syntax error),
    // and so serde_json can then work on a `&str` without validating again.
    let text = std::str::from_utf8(payload).map_err(|e| DecodeError::InvalidUtf8 {
        field: "(payload)".to_owned(),
        offset: e.valid_up_to(),
    })?;
    match direct::decode(text, default_kind, buffers) {
        Some(event) => Ok(event),
        None => decode_tree(text, default_kind),
    }
}

/// The tree path: every payload the direct path declines, errors included, decodes here, so
/// this function alone defines what a JSON payload means.
fn decode_tree(text: &str, default_kind: EventKind) -> Result<Event<'_>, DecodeError> {
    match parse(text) {
        Ok(root) => event_from(root, default_kind),
        Err(error) => match lenient::rewrite_non_finite(text) {
            // Only input that failed to parse pays for the rewrite, and it then decodes to
            // owned strings because the rewritten text is a temporary.
            Some(rewritten) => {
                match parse(&rewritten).map(|root| lenient::restore(root.into_owned())) {
                    Ok(Some(root)) => event_from(root, default_kind),
                    // Still not JSON, or a token stood where only a key may: the original error
                    // describes the input the producer actually sent.
                    Ok(None) | Err(_) => Err(error),
                }
            }
            None => Err(error),
        },
    }
}

fn event_from(root: Json<'_>, default_kind: EventKind) -> Result<Event<'_>, DecodeError> {
    let Json::Object(entries) = root else {
        return Err(wrong_type("(root)", "object", &root));
    };
    let kind = match entries.iter().find(|(key, _)| key.as_ref() == "kind") {
        None => default_kind,
        Some((_, Json::Str(kind))) => match kind.as_ref() {
            "prediction" => EventKind::Prediction,
            "label" => EventKind::Label,
            other => {
                return Err(DecodeError::InvalidValue {
                    field: "kind".to_owned(),
                    detail: format!(
                        "expected \"prediction\" or \"label\", found {:?}",
                        cut(other)
                    ),
                })
            }
        },
        Some((_, other)) => return Err(wrong_type("kind", "string", other)),
    };
    match kind {
        EventKind::Prediction => prediction_from(entries).map(Event::Prediction),
        EventKind::Label => label_from(entries).map(Event::Label),
    }
}

fn prediction_from<'a>(
    entries: Vec<(Cow<'a, str>, Json<'a>)>,
) -> Result<PredictionEvent<'a>, DecodeError> {
    let mut event_id = None;
    let mut model_id = None;
    let mut model_version = None;
    let mut timestamp = None;
    let mut features = None;
    let mut prediction = None;
    let mut attributes = None;
    // Already interpreted by `event_from`; the slot only catches a duplicate.
    let mut kind = None;
    for (key, value) in entries {
        let slot = match key.as_ref() {
            "event_id" => &mut event_id,
            "model_id" => &mut model_id,
            "model_version" => &mut model_version,
            "timestamp" => &mut timestamp,
            "features" => &mut features,
            "prediction" => &mut prediction,
            "attributes" => &mut attributes,
            "kind" => &mut kind,
            // Unknown fields are ignored so producers can add fields before we read them.
            _ => continue,
        };
        put_once(slot, &key, value)?;
    }
    Ok(PredictionEvent {
        event_id: string(required(event_id, "event_id")?, "event_id")?,
        model_id: string(required(model_id, "model_id")?, "model_id")?,
        model_version: string(required(model_version, "model_version")?, "model_version")?,
        timestamp: timestamp_millis(required(timestamp, "timestamp")?, "timestamp")?,
        features: feature_map(required(features, "features")?)?,
        prediction: prediction_record(required(prediction, "prediction")?)?,
        attributes: match optional(attributes, &["map"]) {
            None => Vec::new(),
            Some(map) => object(map, "attributes", |value| string(value, ""))?,
        },
    })
}

fn label_from<'a>(entries: Vec<(Cow<'a, str>, Json<'a>)>) -> Result<LabelEvent<'a>, DecodeError> {
    let mut event_id = None;
    let mut model_id = None;
    let mut timestamp = None;
    let mut label = None;
    // Already interpreted by `event_from`; the slot only catches a duplicate.
    let mut kind = None;
    for (key, value) in entries {
        let slot = match key.as_ref() {
            "event_id" => &mut event_id,
            "model_id" => &mut model_id,
            "timestamp" => &mut timestamp,
            "label" => &mut label,
            "kind" => &mut kind,
            _ => continue,
        };
        put_once(slot, &key, value)?;
    }
    // Fields are converted in schema order so the first problem reported is the first field.
    let event_id = string(required(event_id, "event_id")?, "event_id")?;
    let model_id = string(required(model_id, "model_id")?, "model_id")?;
    let timestamp = timestamp_millis(required(timestamp, "timestamp")?, "timestamp")?;
    let label = match unwrap_union(
        required(label, "label")?,
        &["string", "double", "float", "long", "int"],
    ) {
        Json::Str(s) => LabelValue::Text(s),
        number @ (Json::Int(_) | Json::UInt(_) | Json::Float(_)) => {
            LabelValue::Number(number.as_f64().unwrap_or(f64::NAN))
        }
        other => return Err(wrong_type("label", "string or number", &other)),
    };
    Ok(LabelEvent {
        event_id,
        model_id,
        timestamp,
        label,
    })
}

/// The `prediction` record: every field optional (default null).
fn prediction_record(value: Json<'_>) -> Result<Prediction<'_>, DecodeError> {
    let Json::Object(entries) = value else {
        return Err(wrong_type("prediction", "object", &value));
    };
    let mut score = None;
    let mut label = None;
    let mut probabilities = None;
    for (key, value) in entries {
        let slot = match key.as_ref() {
            "score" => &mut score,
            "label" => &mut label,
            "probabilities" => &mut probabilities,
            _ => continue,
        };
        put_once(slot, &key, value).map_err(|e| in_prediction(e, &key))?;
    }
    Ok(Prediction {
        score: optional(score, NUMBER_BRANCHES)
            .map(|v| number(v, "prediction.score"))
            .transpose()?,
        label: optional(label, &["string"])
            .map(|v| string(v, "prediction.label"))
            .transpose()?,
        probabilities: optional(probabilities, &["map"])
            .map(|v| object(v, "prediction.probabilities", |value| number(value, "")))
            .transpose()?,
    })
}

fn in_prediction(error: DecodeError, key: &str) -> DecodeError {
    match error {
        DecodeError::InvalidValue { detail, .. } => DecodeError::InvalidValue {
            field: format!("prediction.{key}"),
            detail,
        },
        other => other,
    }
}

/// The `features` map; values are union {null, double, string, boolean}.
fn feature_map(value: Json<'_>) -> Result<Vec<(Cow<'_, str>, FeatureValue<'_>)>, DecodeError> {
    object(value, "features", |value| {
        match unwrap_union(
            value,
            &["double", "float", "long", "int", "string", "boolean"],
        ) {
            Json::Null => Ok(FeatureValue::Null),
            Json::Bool(b) => Ok(FeatureValue::Bool(b)),
            Json::Str(s) => Ok(FeatureValue::Text(s)),
            number @ (Json::Int(_) | Json::UInt(_) | Json::Float(_)) => {
                Ok(FeatureValue::Number(number.as_f64().unwrap_or(f64::NAN)))
            }
            other => Err(wrong_type("", "null, number, string or boolean", &other)),
        }
    })
}

const NUMBER_BRANCHES: &[&str] = &["double", "float", "long", "int"];

/// An object as ordered (key, value) pairs, each value converted by `convert`. Converters
/// report errors with an empty field name; the path (`prefix.key`) is filled in here.
fn object<'a, T>(
    value: Json<'a>,
    prefix: &str,
    mut convert: impl FnMut(Json<'a>) -> Result<T, DecodeError>,
) -> Result<Vec<(Cow<'a, str>, T)>, DecodeError> {
    let Json::Object(entries) = value else {
        return Err(wrong_type(prefix, "object", &value));
    };
    let mut out = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        // The path is only built when a conversion fails: error text for a 1,000-feature
        // event must not cost 1,000 allocations on the happy path.
        let converted = match convert(value) {
            Ok(converted) => converted,
            Err(error) => return Err(with_path(error, &field_path(prefix, &key))),
        };
        out.push((key, converted));
    }
    Ok(out)
}

/// Fills in the field path of an error a converter raised with an empty one.
fn with_path(error: DecodeError, path: &str) -> DecodeError {
    match error {
        DecodeError::WrongType {
            field,
            expected,
            found,
        } if field.is_empty() => DecodeError::WrongType {
            field: path.to_owned(),
            expected,
            found,
        },
        DecodeError::InvalidValue { field, detail } if field.is_empty() => {
            DecodeError::InvalidValue {
                field: path.to_owned(),
                detail,
            }
        }
        other => other,
    }
}

fn put_once<'a>(
    slot: &mut Option<Json<'a>>,
    key: &str,
    value: Json<'a>,
) -> Result<(), DecodeError> {
    if slot.is_some() {
        // Parsers disagree on duplicates (first wins, last wins); refusing is the only
        // reading that cannot silently differ from what the producer meant.
        return Err(DecodeError::InvalidValue {
            field: key.to_owned(),
            detail: "field appears more than once".to_owned(),
        });
    }
    *slot = Some(value);
    Ok(())
}

fn required<'a>(slot: Option<Json<'a>>, field: &str) -> Result<Json<'a>, DecodeError> {
    slot.ok_or_else(|| DecodeError::MissingField {
        field: field.to_owned(),
    })
}

/// An optional field: absent and `null` both mean `None`; otherwise the value, unwrapped from
/// an Avro-JSON union wrapper if it has one.
fn optional<'a>(slot: Option<Json<'a>>, branches: &[&str]) -> Option<Json<'a>> {
    match slot {
        None | Some(Json::Null) => None,
        Some(value) => match unwrap_union(value, branches) {
            Json::Null => None,
            value => Some(value),
        },
    }
}

/// Avro's JSON encoding writes a non-null union value as `{"<branch type>": value}`. Such a
/// wrapper is recognised only when the key is one of the field's branch names *and* the
/// inner value has that type, so a map that happens to have a key `"map"` or `"string"` is
/// not mistaken for one (`{"string": "x"}` as a feature value cannot be a map: feature values
/// are never objects).
fn unwrap_union<'a>(value: Json<'a>, branches: &[&str]) -> Json<'a> {
    let Json::Object(mut entries) = value else {
        return value;
    };
    let is_wrapper = match entries.as_slice() {
        [(key, inner)] => {
            branches.contains(&key.as_ref())
                && match (key.as_ref(), inner) {
                    ("double" | "float" | "long" | "int", inner) => inner.as_f64().is_some(),
                    ("string", Json::Str(_))
                    | ("boolean", Json::Bool(_))
                    | ("map", Json::Object(_)) => true,
                    _ => false,
                }
        }
        _ => false,
    };
    match entries.pop() {
        Some((_, inner)) if is_wrapper => inner,
        Some(entry) => {
            entries.push(entry);
            Json::Object(entries)
        }
        None => Json::Object(entries),
    }
}

fn string<'a>(value: Json<'a>, field: &str) -> Result<Cow<'a, str>, DecodeError> {
    match value {
        Json::Str(s) => Ok(s),
        other => Err(wrong_type(field, "string", &other)),
    }
}

fn number(value: Json<'_>, field: &str) -> Result<f64, DecodeError> {
    value
        .as_f64()
        .ok_or_else(|| wrong_type(field, "number", &value))
}

/// Event time: an integer number of milliseconds. `1.7e12` is rejected although it is a
/// whole number: a float here usually means seconds or a lossy writer, and guessing would
/// put events in the wrong pane.
fn timestamp_millis(value: Json<'_>, field: &str) -> Result<i64, DecodeError> {
    match value {
        Json::Int(ms) => Ok(ms),
        Json::UInt(ms) => Err(DecodeError::InvalidValue {
            field: field.to_owned(),
            detail: format!("{ms} ms does not fit a signed 64-bit integer"),
        }),
        other => Err(wrong_type(field, "integer milliseconds", &other)),
    }
}

fn wrong_type(field: &str, expected: &'static str, found: &Json<'_>) -> DecodeError {
    DecodeError::WrongType {
        field: field.to_owned(),
        expected,
        found: found.type_name(),
    }
}

/// Producer-supplied text in an error message is cut short (it goes into logs and headers).
fn cut(text: &str) -> &str {
    let mut end = text.len().min(64);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Python's `json.dumps` (and other lenient writers) emit the bare tokens `NaN`, `Infinity`
/// and `-Infinity`, which are not JSON. Rather than dead-letter those events, we rewrite the
/// tokens — outside strings only — into sentinel strings, parse again, and turn the sentinels
/// back into numbers, so the monitor sees the non-finite value and can count it as a
/// data-quality problem. This path runs only for payloads that failed to parse.
mod lenient {
    use super::Json;

    // Sentinels start with a NUL character, which a producer can only write as the escape
    // `\u0000`; a real string spelling exactly a sentinel, in a payload that also has a bare
    // NaN token, is not a case worth more machinery.
    const NAN: &str = "\u{0}driftwatch:NaN";
    const POS_INF: &str = "\u{0}driftwatch:+Infinity";
    const NEG_INF: &str = "\u{0}driftwatch:-Infinity";

    /// The payload with non-finite tokens replaced by sentinel strings, or `None` when it has
    /// no such token (then the original parse error stands).
    pub(super) fn rewrite_non_finite(text: &str) -> Option<String> {
        let bytes = text.as_bytes();
        let mut out = String::with_capacity(text.len() + 64);
        let mut in_string = false;
        let mut escaped = false;
        let mut copied_up_to = 0;
        let mut found = false;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if in_string {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                }
                i += 1;
                continue;
            }
            let token = [("NaN", NAN), ("Infinity", POS_INF), ("-Infinity", NEG_INF)]
                .into_iter()
                .find(|(token, _)| bytes[i..].starts_with(token.as_bytes()));
            match (b, token) {
                (b'"', _) => {
                    in_string = true;
                    i += 1;
                }
                (_, Some((token, sentinel))) => {
                    // Token boundaries are ASCII, so these slices are on char boundaries.
                    out.push_str(&text[copied_up_to..i]);
                    out.push_str(&serde_json_string(sentinel));
                    i += token.len();
                    copied_up_to = i;
                    found = true;
                }
                _ => i += 1,
            }
        }
        if !found {
            return None;
        }
        out.push_str(&text[copied_up_to..]);
        Some(out)
    }

    fn serde_json_string(s: &str) -> String {
        // serde_json escapes the NUL as \u0000; writing a &str cannot fail.
        serde_json::to_string(s).unwrap_or_default()
    }

    /// Turns the sentinel strings back into non-finite numbers; `None` if a sentinel ended up
    /// as an object key (`{NaN: 1}`), which was not JSON to begin with.
    pub(super) fn restore(value: Json<'static>) -> Option<Json<'static>> {
        Some(match value {
            Json::Str(s) => match s.as_ref() {
                NAN => Json::Float(f64::NAN),
                POS_INF => Json::Float(f64::INFINITY),
                NEG_INF => Json::Float(f64::NEG_INFINITY),
                _ => Json::Str(s),
            },
            Json::Array(items) => {
                Json::Array(items.into_iter().map(restore).collect::<Option<_>>()?)
            }
            Json::Object(entries) => Json::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| {
                        let is_sentinel = [NAN, POS_INF, NEG_INF].contains(&k.as_ref());
                        if is_sentinel {
                            None
                        } else {
                            restore(v).map(|v| (k, v))
                        }
                    })
                    .collect::<Option<_>>()?,
            ),
            other => other,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The direct path
// ---------------------------------------------------------------------------------------------

/// The direct path: serde_json streams a payload straight into an [`Event`], a prediction's
/// lists built in lent storage, with no value tree in between, so a warm decoder allocates
/// nothing per event (the tree costs an allocation per object and array).
///
/// It takes what producers send every day: the plain mirror of the schema, Avro-JSON union
/// wrappers included, unknown fields skipped. On anything else (a duplicate field, a missing
/// or mistyped one, `"kind": "label"` on the prediction topic, a bare `NaN`, trailing bytes,
/// broken syntax) it *declines* and [`decode_tree`] decodes the payload from scratch. It
/// never reports an error of its own, so dead-letter reasons and field paths stay the tree
/// path's, and a test holds its results equal to the tree path's on valid, unusual and
/// broken payloads alike.
mod direct {
    use std::borrow::Cow;
    use std::fmt;

    use serde::de::{
        self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
    };

    use super::{BorrowedStr, EventBuffers, EventKind};
    use crate::codec::{Attributes, Features, ProbabilityList};
    use crate::event::{Event, FeatureValue, LabelEvent, LabelValue, Prediction, PredictionEvent};

    /// The event in `text`, or `None` when the tree path must decide (see the module).
    pub(super) fn decode<'a>(
        text: &'a str,
        kind: EventKind,
        buffers: &mut EventBuffers,
    ) -> Option<Event<'a>> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let event = match kind {
            EventKind::Prediction => {
                let (features, attributes, probabilities) = buffers.lend();
                let visitor = PredictionVisitor {
                    features,
                    attributes,
                    probabilities,
                };
                Event::Prediction((&mut deserializer).deserialize_map(visitor).ok()?)
            }
            EventKind::Label => {
                Event::Label((&mut deserializer).deserialize_map(LabelVisitor).ok()?)
            }
        };
        if deserializer.end().is_err() {
            buffers.recycle(event);
            return None;
        }
        Some(event)
    }

    /// The error that makes the direct path give way to the tree path. Its text is never
    /// shown; allocating it is fine because it only happens on the rare path.
    fn decline<E: de::Error>() -> E {
        E::custom("left to the tree path")
    }

    /// Fills a field's slot; a second occurrence declines (the tree path reports it).
    fn put<T, E: de::Error>(slot: &mut Option<T>, value: T) -> Result<(), E> {
        if slot.is_some() {
            return Err(decline());
        }
        *slot = Some(value);
        Ok(())
    }

    /// Marks a field whose value went straight into a list as seen; a second one declines.
    fn first<E: de::Error>(seen: &mut bool) -> Result<(), E> {
        if std::mem::replace(seen, true) {
            return Err(decline());
        }
        Ok(())
    }

    /// The rest of a union wrapper `{"<branch>": value}` after its one entry: more entries
    /// make it an ordinary object, which the tree path reports as a wrong type.
    fn end_of_wrapper<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
        match map.next_key::<IgnoredAny>()? {
            Some(_) => Err(decline()),
            None => Ok(()),
        }
    }

    /// A value of an unknown field, parsed and dropped. Not serde's `IgnoredAny`: that skips
    /// strings without decoding their escapes, so it would take a lone surrogate (`"\ud800"`)
    /// that the tree path's parse rejects.
    struct Skipped;

    impl<'de> de::Deserialize<'de> for Skipped {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(SkippedVisitor)
        }
    }

    struct SkippedVisitor;

    impl<'de> Visitor<'de> for SkippedVisitor {
        type Value = Skipped;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Skipped, E> {
            Ok(Skipped)
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Skipped, E> {
            Ok(Skipped)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Skipped, E> {
            Ok(Skipped)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Skipped, E> {
            Ok(Skipped)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Skipped, E> {
            Ok(Skipped)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Skipped, E> {
            Ok(Skipped)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skipped, A::Error> {
            while seq.next_element::<Skipped>()?.is_some() {}
            Ok(Skipped)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skipped, A::Error> {
            while map.next_entry::<Skipped, Skipped>()?.is_some() {}
            Ok(Skipped)
        }
    }

    struct PredictionVisitor<'a> {
        features: Features<'a>,
        attributes: Attributes<'a>,
        probabilities: ProbabilityList<'a>,
    }

    impl<'de> Visitor<'de> for PredictionVisitor<'de> {
        type Value = PredictionEvent<'de>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a prediction event")
        }

        fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut event_id = None;
            let mut model_id = None;
            let mut model_version = None;
            let mut timestamp = None;
            let mut prediction = None;
            let (mut features, mut attributes, mut kind) = (false, false, false);
            while let Some(BorrowedStr(key)) = map.next_key()? {
                match key.as_ref() {
                    "event_id" => put(&mut event_id, map.next_value::<BorrowedStr>()?.0)?,
                    "model_id" => put(&mut model_id, map.next_value::<BorrowedStr>()?.0)?,
                    "model_version" => put(&mut model_version, map.next_value::<BorrowedStr>()?.0)?,
                    // serde's `i64` takes exactly the JSON integers that fit; fractions,
                    // exponents and larger integers decline.
                    "timestamp" => put(&mut timestamp, map.next_value::<i64>()?)?,
                    "features" => {
                        first(&mut features)?;
                        map.next_value_seed(FeatureList(&mut self.features))?;
                    }
                    "prediction" => put(
                        &mut prediction,
                        map.next_value_seed(PredictionRecord(&mut self.probabilities))?,
                    )?,
                    "attributes" => {
                        first(&mut attributes)?;
                        map.next_value_seed(AttributeList(&mut self.attributes))?;
                    }
                    "kind" => {
                        first(&mut kind)?;
                        if map.next_value::<BorrowedStr>()?.0 != "prediction" {
                            return Err(decline());
                        }
                    }
                    _ => {
                        map.next_value::<Skipped>()?;
                    }
                }
            }
            if !features {
                return Err(decline());
            }
            Ok(PredictionEvent {
                event_id: event_id.ok_or_else(decline)?,
                model_id: model_id.ok_or_else(decline)?,
                model_version: model_version.ok_or_else(decline)?,
                timestamp: timestamp.ok_or_else(decline)?,
                features: self.features,
                prediction: prediction.ok_or_else(decline)?,
                attributes: self.attributes,
            })
        }
    }

    struct LabelVisitor;

    impl<'de> Visitor<'de> for LabelVisitor {
        type Value = LabelEvent<'de>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a label event")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut event_id = None;
            let mut model_id = None;
            let mut timestamp = None;
            let mut label = None;
            let mut kind = false;
            while let Some(BorrowedStr(key)) = map.next_key()? {
                match key.as_ref() {
                    "event_id" => put(&mut event_id, map.next_value::<BorrowedStr>()?.0)?,
                    "model_id" => put(&mut model_id, map.next_value::<BorrowedStr>()?.0)?,
                    "timestamp" => put(&mut timestamp, map.next_value::<i64>()?)?,
                    "label" => put(&mut label, map.next_value::<Truth>()?.0)?,
                    "kind" => {
                        first(&mut kind)?;
                        if map.next_value::<BorrowedStr>()?.0 != "label" {
                            return Err(decline());
                        }
                    }
                    _ => {
                        map.next_value::<Skipped>()?;
                    }
                }
            }
            Ok(LabelEvent {
                event_id: event_id.ok_or_else(decline)?,
                model_id: model_id.ok_or_else(decline)?,
                timestamp: timestamp.ok_or_else(decline)?,
                label: label.ok_or_else(decline)?,
            })
        }
    }

    /// A label's value: a string or a number, bare or in a union wrapper.
    struct Truth<'a>(LabelValue<'a>);

    impl<'de> de::Deserialize<'de> for Truth<'de> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(TruthVisitor)
        }
    }

    struct TruthVisitor;

    impl<'de> Visitor<'de> for TruthVisitor {
        type Value = Truth<'de>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a label value")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Truth(LabelValue::Number(v as f64)))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Truth(LabelValue::Number(v as f64)))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Truth(LabelValue::Number(v)))
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Truth(LabelValue::Text(Cow::Borrowed(v))))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Truth(LabelValue::Text(Cow::Owned(v.to_owned()))))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let Some(BorrowedStr(branch)) = map.next_key()? else {
                return Err(decline());
            };
            let value = match branch.as_ref() {
                "double" | "float" | "long" | "int" => LabelValue::Number(map.next_value()?),
                "string" => LabelValue::Text(map.next_value::<BorrowedStr>()?.0),
                _ => return Err(decline()),
            };
            end_of_wrapper(&mut map)?;
            Ok(Truth(value))
        }
    }

    /// The `features` map, pushed entry by entry into the lent list.
    struct FeatureList<'s, 'a>(&'s mut Features<'a>);

    impl<'de> DeserializeSeed<'de> for FeatureList<'_, 'de> {
        type Value = ();

        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for FeatureList<'_, 'de> {
        type Value = ();

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map of feature values")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(BorrowedStr(name)) = map.next_key()? {
                let Feature(value) = map.next_value()?;
                self.0.push((name, value));
            }
            Ok(())
        }
    }

    /// A feature value: null, number, string, boolean, or one of those in a union wrapper.
    struct Feature<'a>(FeatureValue<'a>);

    impl<'de> de::Deserialize<'de> for Feature<'de> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(FeatureVisitor)
        }
    }

    struct FeatureVisitor;

    impl<'de> Visitor<'de> for FeatureVisitor {
        type Value = Feature<'de>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a feature value")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Feature(FeatureValue::Null))
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Feature(FeatureValue::Bool(v)))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Feature(FeatureValue::Number(v as f64)))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Feature(FeatureValue::Number(v as f64)))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Feature(FeatureValue::Number(v)))
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Feature(FeatureValue::Text(Cow::Borrowed(v))))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Feature(FeatureValue::Text(Cow::Owned(v.to_owned()))))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let Some(BorrowedStr(branch)) = map.next_key()? else {
                return Err(decline());
            };
            let value = match branch.as_ref() {
                "double" | "float" | "long" | "int" => FeatureValue::Number(map.next_value()?),
                "string" => FeatureValue::Text(map.next_value::<BorrowedStr>()?.0),
                "boolean" => FeatureValue::Bool(map.next_value()?),
                _ => return Err(decline()),
            };
            end_of_wrapper(&mut map)?;
            Ok(Feature(value))
        }
    }

    /// The `prediction` record; each of its fields may be absent or null.
    /// The `prediction` record; its probabilities, when present, go into the lent list.
    struct PredictionRecord<'s, 'a>(&'s mut ProbabilityList<'a>);

    impl<'de> DeserializeSeed<'de> for PredictionRecord<'_, 'de> {
        type Value = Prediction<'de>;

        fn deserialize<D: Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for PredictionRecord<'_, 'de> {
        type Value = Prediction<'de>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a prediction record")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut score = None;
            let mut label = None;
            let mut probabilities = None;
            while let Some(BorrowedStr(key)) = map.next_key()? {
                match key.as_ref() {
                    "score" => put(&mut score, map.next_value::<Score>()?.0)?,
                    "label" => put(&mut label, map.next_value::<ClassName>()?.0)?,
                    "probabilities" => put(
                        &mut probabilities,
                        map.next_value_seed(Probabilities(&mut *self.0))?,
                    )?,
                    _ => {
                        map.next_value::<Skipped>()?;
                    }
                }
            }
            Ok(Prediction {
                score: score.flatten(),
                label: label.flatten(),
                probabilities: probabilities.flatten(),
            })
        }
    }

    /// `prediction.score`: null, a number, or a number in a union wrapper.
    struct Score(Option<f64>);

    impl<'de> de::Deserialize<'de> for Score {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(ScoreVisitor)
        }
    }

    struct ScoreVisitor;

    impl<'de> Visitor<'de> for ScoreVisitor {
        type Value = Score;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a score")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Score(None))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Score(Some(v as f64)))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Score(Some(v as f64)))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Score(Some(v)))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            match map.next_key::<BorrowedStr>()? {
                Some(BorrowedStr(branch))
                    if matches!(branch.as_ref(), "double" | "float" | "long" | "int") =>
                {
                    let score = map.next_value()?;
                    end_of_wrapper(&mut map)?;
                    Ok(Score(Some(score)))
                }
                _ => Err(decline()),
            }
        }
    }

    /// `prediction.label`: null, a string, or a string in a union wrapper.
    struct ClassName<'a>(Option<Cow<'a, str>>);

    impl<'de> de::Deserialize<'de> for ClassName<'de> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(ClassNameVisitor)
        }
    }

    struct ClassNameVisitor;

    impl<'de> Visitor<'de> for ClassNameVisitor {
        type Value = ClassName<'de>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a class name")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(ClassName(None))
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(ClassName(Some(Cow::Borrowed(v))))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(ClassName(Some(Cow::Owned(v.to_owned()))))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            match map.next_key::<BorrowedStr>()? {
                Some(BorrowedStr(branch)) if branch == "string" => {
                    let BorrowedStr(class) = map.next_value()?;
                    end_of_wrapper(&mut map)?;
                    Ok(ClassName(Some(class)))
                }
                _ => Err(decline()),
            }
        }
    }

    /// `prediction.probabilities`: null, a map of numbers, or that map in a `{"map": …}`
    /// wrapper, pushed into the lent list (taken from it when present).
    struct Probabilities<'s, 'a>(&'s mut ProbabilityList<'a>);

    impl<'de> DeserializeSeed<'de> for Probabilities<'_, 'de> {
        type Value = Option<ProbabilityList<'de>>;

        fn deserialize<D: Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> Result<Self::Value, D::Error> {
            let present = deserializer.deserialize_any(WrappableMap {
                list: &mut *self.0,
                entry: Scalar::number,
            })?;
            Ok(present.then(|| std::mem::take(self.0)))
        }
    }

    /// The `attributes` map of strings (or null, or in a `{"map": …}` wrapper), pushed into
    /// the lent list.
    struct AttributeList<'s, 'a>(&'s mut Attributes<'a>);

    impl<'de> DeserializeSeed<'de> for AttributeList<'_, 'de> {
        type Value = ();

        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_any(WrappableMap {
                list: self.0,
                entry: Scalar::text,
            })?;
            Ok(())
        }
    }

    /// A value inside a map field; the field's `entry` function takes the type it holds.
    enum Scalar<'a> {
        Number(f64),
        Text(Cow<'a, str>),
    }

    impl<'a> Scalar<'a> {
        fn number(self) -> Option<f64> {
            match self {
                Scalar::Number(x) => Some(x),
                Scalar::Text(_) => None,
            }
        }

        fn text(self) -> Option<Cow<'a, str>> {
            match self {
                Scalar::Text(text) => Some(text),
                Scalar::Number(_) => None,
            }
        }
    }

    impl<'de> de::Deserialize<'de> for Scalar<'de> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(ScalarVisitor)
        }
    }

    struct ScalarVisitor;

    impl<'de> Visitor<'de> for ScalarVisitor {
        type Value = Scalar<'de>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number or a string")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Scalar::Number(v as f64))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Scalar::Number(v as f64))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Scalar::Number(v))
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Scalar::Text(Cow::Borrowed(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Scalar::Text(Cow::Owned(v.to_owned())))
        }
    }

    /// A map field whose union is `{null, map}`: null (the visitor's value is `false`), the
    /// map itself, or the map in a `{"map": …}` wrapper, recognised as the tree path does (a
    /// single entry named `map` holding an object). Entries go into `list` through `entry`,
    /// whose `None` (a value of the wrong type) declines.
    struct WrappableMap<'s, 'de, T> {
        list: &'s mut Vec<(Cow<'de, str>, T)>,
        entry: fn(Scalar<'de>) -> Option<T>,
    }

    impl<'de, T> Visitor<'de> for WrappableMap<'_, 'de, T> {
        type Value = bool;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("null or a map")
        }

        fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
            let Some(BorrowedStr(key)) = map.next_key()? else {
                return Ok(true);
            };
            let value = if key == "map" {
                let seed = FirstValue {
                    list: &mut *self.list,
                    entry: self.entry,
                };
                match map.next_value_seed(seed)? {
                    Some(value) => value,
                    None => {
                        // The wrapper's map went into the list.
                        end_of_wrapper(&mut map)?;
                        return Ok(true);
                    }
                }
            } else {
                map.next_value()?
            };
            self.list
                .push((key, (self.entry)(value).ok_or_else(decline)?));
            fill(&mut map, self.list, self.entry)?;
            Ok(true)
        }
    }

    /// The remaining entries of a map into `list`.
    fn fill<'de, A: MapAccess<'de>, T>(
        map: &mut A,
        list: &mut Vec<(Cow<'de, str>, T)>,
        entry: fn(Scalar<'de>) -> Option<T>,
    ) -> Result<(), A::Error> {
        while let Some(BorrowedStr(key)) = map.next_key()? {
            let value = entry(map.next_value()?).ok_or_else(decline)?;
            list.push((key, value));
        }
        Ok(())
    }

    /// The value of a map field's first entry when its key is `map`: a scalar (`Some`), or the
    /// object of a wrapper, whose entries go straight into `list` (`None`).
    struct FirstValue<'s, 'de, T> {
        list: &'s mut Vec<(Cow<'de, str>, T)>,
        entry: fn(Scalar<'de>) -> Option<T>,
    }

    impl<'de, T> DeserializeSeed<'de> for FirstValue<'_, 'de, T> {
        type Value = Option<Scalar<'de>>;

        fn deserialize<D: Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    impl<'de, T> Visitor<'de> for FirstValue<'_, 'de, T> {
        type Value = Option<Scalar<'de>>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number, a string or a map")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            ScalarVisitor.visit_i64(v).map(Some)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            ScalarVisitor.visit_u64(v).map(Some)
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            ScalarVisitor.visit_f64(v).map(Some)
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            ScalarVisitor.visit_borrowed_str(v).map(Some)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            ScalarVisitor.visit_str(v).map(Some)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            fill(&mut map, self.list, self.entry)?;
            Ok(None)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/// Serialises a value that cannot fail to serialise (only strings, numbers and string-keyed
/// maps). serde_json writes NaN and ±∞ as `null`.
fn to_json_bytes(value: &impl Serialize) -> Vec<u8> {
    // serde_json fails only on non-string map keys or a failing `Serialize` impl; none here.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Encodes a [`DriftAlert`] as one JSON object with the schema's field names; `p_value` is
/// `null` when absent, and a non-finite `statistic` or `threshold` is written as `null`.
pub fn alert_to_json(alert: &DriftAlert) -> Vec<u8> {
    to_json_bytes(alert)
}

/// Encodes a [`RetrainRequest`] as one JSON object with the schema's field names.
pub fn retrain_to_json(request: &RetrainRequest) -> Vec<u8> {
    to_json_bytes(request)
}

/// Encodes a prediction as one JSON object (with `"kind": "prediction"`, so the output also
/// serves as a replay-file line), features in their order.
///
/// JSON has no NaN or ±∞: a non-finite feature is written as `null` (it reads back as
/// missing), a non-finite score as `null` (absent), and a non-finite class probability as
/// `null`, which the decoder rejects (`wrong_type`) because the schema's probability map holds
/// only doubles. Use Avro where non-finite values must survive.
pub fn encode_prediction_json(event: &PredictionEvent<'_>) -> Vec<u8> {
    to_json_bytes(&PredictionJson(event))
}

/// Encodes a label as one JSON object (with `"kind": "label"`). A non-finite numeric label is
/// written as `null`, which the decoder rejects: the label union has no null branch.
pub fn encode_label_json(event: &LabelEvent<'_>) -> Vec<u8> {
    to_json_bytes(&LabelJson(event))
}

struct PredictionJson<'e, 'a>(&'e PredictionEvent<'a>);
struct LabelJson<'e, 'a>(&'e LabelEvent<'a>);
/// Pairs written as a JSON object in their order (serde_json's `Map` would sort them).
struct Pairs<'e, T>(&'e [(Cow<'e, str>, T)]);
struct Feature<'e, 'a>(&'e FeatureValue<'a>);

impl Serialize for PredictionJson<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let e = self.0;
        let p = &e.prediction;
        let mut map = serializer.serialize_map(Some(8))?;
        map.serialize_entry("kind", EventKind::Prediction.as_str())?;
        map.serialize_entry("event_id", &e.event_id)?;
        map.serialize_entry("model_id", &e.model_id)?;
        map.serialize_entry("model_version", &e.model_version)?;
        map.serialize_entry("timestamp", &e.timestamp)?;
        map.serialize_entry("features", &FeatureMap(&e.features))?;
        map.serialize_entry("prediction", &PredictionRecord(p))?;
        let attributes = (!e.attributes.is_empty()).then_some(Pairs(&e.attributes));
        map.serialize_entry("attributes", &attributes)?;
        map.end()
    }
}

struct FeatureMap<'e, 'a>(&'e [(Cow<'a, str>, FeatureValue<'a>)]);
struct PredictionRecord<'e, 'a>(&'e Prediction<'a>);

impl Serialize for FeatureMap<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            map.serialize_entry(name.as_ref(), &Feature(value))?;
        }
        map.end()
    }
}

impl Serialize for PredictionRecord<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("score", &p.score)?;
        map.serialize_entry("label", &p.label)?;
        map.serialize_entry("probabilities", &p.probabilities.as_deref().map(Pairs))?;
        map.end()
    }
}

impl Serialize for Feature<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            FeatureValue::Null => serializer.serialize_unit(),
            FeatureValue::Number(x) => serializer.serialize_f64(*x),
            FeatureValue::Text(s) => serializer.serialize_str(s),
            FeatureValue::Bool(b) => serializer.serialize_bool(*b),
        }
    }
}

impl<T: Serialize> Serialize for Pairs<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in self.0 {
            map.serialize_entry(key.as_ref(), value)?;
        }
        map.end()
    }
}

impl Serialize for LabelJson<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let e = self.0;
        let mut map = serializer.serialize_map(Some(5))?;
        map.serialize_entry("kind", EventKind::Label.as_str())?;
        map.serialize_entry("event_id", &e.event_id)?;
        map.serialize_entry("model_id", &e.model_id)?;
        map.serialize_entry("timestamp", &e.timestamp)?;
        match &e.label {
            LabelValue::Text(s) => map.serialize_entry("label", s)?,
            LabelValue::Number(x) => map.serialize_entry("label", x)?,
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::monitor::output::AlertState;

    fn full_prediction() -> serde_json::Value {
        json!({
            "event_id": "e-1",
            "model_id": "fraud",
            "model_version": "v2",
            "timestamp": 1_718_000_000_000_i64,
            "features": {"amount": 12.5, "count": 3, "country": "FR", "vip": false, "age": null},
            "prediction": {"score": 0.9, "label": "fraud", "probabilities": {"fraud": 0.9, "ok": 0.1}},
            "attributes": {"segment": "smb"}
        })
    }

    fn decode_value(
        value: &serde_json::Value,
        kind: EventKind,
    ) -> Result<Event<'static>, DecodeError> {
        let bytes = serde_json::to_vec(value).unwrap();
        decode_event(&bytes, kind).map(|event| match event {
            // Detach from the local buffer so tests can return the event.
            Event::Prediction(p) => Event::Prediction(owned_prediction(p)),
            Event::Label(l) => Event::Label(LabelEvent {
                event_id: l.event_id.into_owned().into(),
                model_id: l.model_id.into_owned().into(),
                timestamp: l.timestamp,
                label: match l.label {
                    LabelValue::Text(s) => LabelValue::Text(s.into_owned().into()),
                    LabelValue::Number(x) => LabelValue::Number(x),
                },
            }),
        })
    }

    fn owned_prediction(p: PredictionEvent<'_>) -> PredictionEvent<'static> {
        let own = |s: Cow<'_, str>| Cow::Owned(s.into_owned());
        PredictionEvent {
            event_id: own(p.event_id),
            model_id: own(p.model_id),
            model_version: own(p.model_version),
            timestamp: p.timestamp,
            features: p
                .features
                .into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        FeatureValue::Text(s) => FeatureValue::Text(own(s)),
                        FeatureValue::Null => FeatureValue::Null,
                        FeatureValue::Number(x) => FeatureValue::Number(x),
                        FeatureValue::Bool(b) => FeatureValue::Bool(b),
                    };
                    (own(k), v)
                })
                .collect(),
            prediction: Prediction {
                score: p.prediction.score,
                label: p.prediction.label.map(own),
                probabilities: p
                    .prediction
                    .probabilities
                    .map(|m| m.into_iter().map(|(k, x)| (own(k), x)).collect()),
            },
            attributes: p
                .attributes
                .into_iter()
                .map(|(k, v)| (own(k), own(v)))
                .collect(),
        }
    }

    fn prediction(value: &serde_json::Value) -> PredictionEvent<'static> {
        match decode_value(value, EventKind::Prediction) {
            Ok(Event::Prediction(p)) => p,
            other => panic!("not a prediction: {other:?}"),
        }
    }

    fn error(value: &serde_json::Value, kind: EventKind) -> DecodeError {
        decode_value(value, kind).unwrap_err()
    }

    #[test]
    fn decodes_a_full_prediction_in_order_and_borrowed() {
        let bytes = serde_json::to_vec(&full_prediction()).unwrap();
        let Ok(Event::Prediction(p)) = decode_event(&bytes, EventKind::Prediction) else {
            panic!("not a prediction");
        };
        assert_eq!(p.event_id, "e-1");
        assert_eq!(p.timestamp, 1_718_000_000_000);
        // serde_json::Value sorts keys, so the bytes list features alphabetically.
        assert_eq!(
            p.features,
            vec![
                (Cow::Borrowed("age"), FeatureValue::Null),
                ("amount".into(), FeatureValue::Number(12.5)),
                ("count".into(), FeatureValue::Number(3.0)),
                ("country".into(), FeatureValue::Text("FR".into())),
                ("vip".into(), FeatureValue::Bool(false)),
            ]
        );
        assert_eq!(p.prediction.score, Some(0.9));
        assert_eq!(p.prediction.label.as_deref(), Some("fraud"));
        assert_eq!(
            p.prediction.probabilities,
            Some(vec![("fraud".into(), 0.9), ("ok".into(), 0.1)])
        );
        assert_eq!(p.attributes, vec![("segment".into(), "smb".into())]);
        assert!(matches!(p.model_id, Cow::Borrowed(_)));
        assert!(p
            .features
            .iter()
            .all(|(k, _)| matches!(k, Cow::Borrowed(_))));
        assert!(matches!(
            &p.features[3].1,
            FeatureValue::Text(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn producer_order_is_kept() {
        let text = br#"{"event_id":"e","model_id":"m","model_version":"1","timestamp":0,
            "features":{"z":1,"a":2,"m":3},"prediction":{}}"#;
        let Ok(Event::Prediction(p)) = decode_event(text, EventKind::Prediction) else {
            panic!("not a prediction");
        };
        let names: Vec<&str> = p.features.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(names, ["z", "a", "m"]);
        assert_eq!(p.prediction, Prediction::default());
        assert!(p.attributes.is_empty());
    }

    #[test]
    fn avro_json_union_wrappers_are_unwrapped() {
        let p = prediction(&json!({
            "event_id": "e", "model_id": "m", "model_version": "1", "timestamp": 5,
            "features": {"a": {"double": 1.5}, "b": {"string": "x"}, "c": {"boolean": true},
                         "d": {"long": 7}},
            "prediction": {"score": {"double": 0.5}, "label": {"string": "yes"},
                           "probabilities": {"map": {"yes": 0.5}}},
            "attributes": {"map": {"k": "v"}}
        }));
        assert_eq!(
            p.features,
            vec![
                (Cow::Borrowed("a"), FeatureValue::Number(1.5)),
                ("b".into(), FeatureValue::Text("x".into())),
                ("c".into(), FeatureValue::Bool(true)),
                ("d".into(), FeatureValue::Number(7.0)),
            ]
        );
        assert_eq!(p.prediction.score, Some(0.5));
        assert_eq!(p.prediction.label.as_deref(), Some("yes"));
        assert_eq!(p.prediction.probabilities, Some(vec![("yes".into(), 0.5)]));
        assert_eq!(p.attributes, vec![("k".into(), "v".into())]);
        let label = decode_value(
            &json!({"event_id": "e", "model_id": "m", "timestamp": 1, "label": {"double": 2.0}}),
            EventKind::Label,
        );
        assert!(
            matches!(label, Ok(Event::Label(LabelEvent { label: LabelValue::Number(x), .. })) if x == 2.0)
        );
    }

    #[test]
    fn maps_whose_keys_look_like_wrappers_stay_maps() {
        // A probability map with one class called "map", and attributes with a key "map":
        // the inner value's type tells them from wrappers.
        let p = prediction(&json!({
            "event_id": "e", "model_id": "m", "model_version": "1", "timestamp": 5,
            "features": {"double": 1.5},
            "prediction": {"probabilities": {"map": 1.0}},
            "attributes": {"map": "x"}
        }));
        assert_eq!(
            p.features,
            vec![(Cow::Borrowed("double"), FeatureValue::Number(1.5))]
        );
        assert_eq!(p.prediction.probabilities, Some(vec![("map".into(), 1.0)]));
        assert_eq!(p.attributes, vec![("map".into(), "x".into())]);
        // A wrapper of the wrong type is not unwrapped, so the error names the real problem.
        let mut bad = full_prediction();
        bad["prediction"]["score"] = json!({"double": "high"});
        let err = error(&bad, EventKind::Prediction);
        assert_eq!(
            err,
            DecodeError::WrongType {
                field: "prediction.score".into(),
                expected: "number",
                found: "object"
            }
        );
    }

    #[test]
    fn every_required_field_is_reported_missing_by_name() {
        for field in [
            "event_id",
            "model_id",
            "model_version",
            "timestamp",
            "features",
            "prediction",
        ] {
            let mut value = full_prediction();
            value.as_object_mut().unwrap().remove(field);
            assert_eq!(
                error(&value, EventKind::Prediction),
                DecodeError::MissingField {
                    field: field.into()
                }
            );
        }
        let label = json!({"event_id": "e", "model_id": "m", "timestamp": 1, "label": "x"});
        for field in ["event_id", "model_id", "timestamp", "label"] {
            let mut value = label.clone();
            value.as_object_mut().unwrap().remove(field);
            assert_eq!(error(&value, EventKind::Label).reason(), "missing_field");
        }
        // Optional fields may be absent or null.
        let mut value = full_prediction();
        value.as_object_mut().unwrap().remove("attributes");
        value["prediction"] = json!({"score": null, "label": null, "probabilities": null});
        assert!(decode_value(&value, EventKind::Prediction).is_ok());
    }

    #[test]
    fn wrong_types_name_the_field() {
        let cases = [
            ("/event_id", json!(5), "event_id", "string", "integer"),
            (
                "/timestamp",
                json!(1.7e12),
                "timestamp",
                "integer milliseconds",
                "number",
            ),
            (
                "/timestamp",
                json!("2024-06-01"),
                "timestamp",
                "integer milliseconds",
                "string",
            ),
            ("/features", json!([1, 2]), "features", "object", "array"),
            (
                "/features/amount",
                json!([1]),
                "features.amount",
                "null, number, string or boolean",
                "array",
            ),
            (
                "/features/amount",
                json!({"a": 1}),
                "features.amount",
                "null, number, string or boolean",
                "object",
            ),
            ("/prediction", json!(0.5), "prediction", "object", "number"),
            (
                "/prediction/label",
                json!(true),
                "prediction.label",
                "string",
                "boolean",
            ),
            (
                "/prediction/probabilities/ok",
                json!(null),
                "prediction.probabilities.ok",
                "number",
                "null",
            ),
            (
                "/attributes/segment",
                json!(3),
                "attributes.segment",
                "string",
                "integer",
            ),
        ];
        for (pointer, replacement, field, expected, found) in cases {
            let mut value = full_prediction();
            *value.pointer_mut(pointer).unwrap() = replacement;
            assert_eq!(
                error(&value, EventKind::Prediction),
                DecodeError::WrongType {
                    field: field.into(),
                    expected,
                    found
                },
                "{pointer}"
            );
        }
        assert_eq!(
            error(&json!([1]), EventKind::Prediction).reason(),
            "wrong_type"
        );
        let label = json!({"event_id": "e", "model_id": "m", "timestamp": 1, "label": [1]});
        assert_eq!(
            error(&label, EventKind::Label),
            DecodeError::WrongType {
                field: "label".into(),
                expected: "string or number",
                found: "array"
            }
        );
    }

    #[test]
    fn timestamps_must_be_in_range_integers() {
        let mut value = full_prediction();
        value["timestamp"] = json!(-5);
        assert_eq!(prediction(&value).timestamp, -5);
        value["timestamp"] = json!(u64::MAX);
        assert_eq!(
            error(&value, EventKind::Prediction).reason(),
            "invalid_value"
        );
    }

    #[test]
    fn kind_selects_the_event_type_and_overrides_the_default() {
        let label = json!({"kind": "label", "event_id": "e", "model_id": "m", "timestamp": 1, "label": "x"});
        assert!(matches!(
            decode_value(&label, EventKind::Prediction),
            Ok(Event::Label(_))
        ));
        let mut value = full_prediction();
        value["kind"] = json!("prediction");
        assert!(matches!(
            decode_value(&value, EventKind::Label),
            Ok(Event::Prediction(_))
        ));
        value["kind"] = json!("metric");
        let err = error(&value, EventKind::Label);
        assert_eq!(err.reason(), "invalid_value");
        assert!(err.to_string().contains("\"metric\""), "{err}");
        value["kind"] = json!(1);
        assert_eq!(error(&value, EventKind::Label).reason(), "wrong_type");
    }

    #[test]
    fn duplicates_unknown_fields_and_trailing_bytes() {
        let dup = br#"{"event_id":"a","event_id":"b","model_id":"m","timestamp":1,"label":"x"}"#;
        let err = decode_event(dup, EventKind::Label).unwrap_err();
        assert_eq!(err.reason(), "invalid_value");
        assert!(err.to_string().contains("event_id"), "{err}");
        let dup =
            br#"{"event_id":"a","model_id":"m","model_version":"1","timestamp":1,"features":{},
            "prediction":{"score":1,"score":2}}"#;
        let err = decode_event(dup, EventKind::Prediction).unwrap_err();
        assert!(err.to_string().contains("prediction.score"), "{err}");

        let extra = br#"{"event_id":"a","model_id":"m","timestamp":1,"label":"x","source":{"deep":[1,{}]}}"#;
        assert!(decode_event(extra, EventKind::Label).is_ok());

        let mut two = extra.to_vec();
        let len = two.len();
        two.extend_from_slice(b" \n{}");
        assert_eq!(
            decode_event(&two, EventKind::Label),
            Err(DecodeError::TrailingBytes {
                offset: len + 2,
                count: 2
            })
        );
        let mut newline = extra.to_vec();
        newline.extend_from_slice(b"\r\n");
        assert!(decode_event(&newline, EventKind::Label).is_ok());
    }

    #[test]
    fn syntax_utf8_and_depth_errors() {
        assert_eq!(
            decode_event(b"", EventKind::Label).unwrap_err().reason(),
            "invalid_json"
        );
        assert_eq!(
            decode_event(b"  ", EventKind::Label).unwrap_err().reason(),
            "invalid_json"
        );
        let err = decode_event(br#"{"event_id": }"#, EventKind::Label).unwrap_err();
        assert_eq!(err.reason(), "invalid_json");
        assert!(err.to_string().contains("column"), "{err}");
        let err = decode_event(b"{\"event_id\": \"a\xffb\"}", EventKind::Label).unwrap_err();
        assert_eq!(
            err,
            DecodeError::InvalidUtf8 {
                field: "(payload)".into(),
                offset: 15
            }
        );
        // Far deeper than serde_json's limit: an error, not a stack overflow.
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            decode_event(deep.as_bytes(), EventKind::Label)
                .unwrap_err()
                .reason(),
            "invalid_json"
        );
    }

    #[test]
    fn bare_non_finite_tokens_are_accepted_as_numbers() {
        // What Python's json.dumps writes for float("nan") and float("inf").
        let text = br#"{"event_id":"NaN","model_id":"m","model_version":"1","timestamp":1,
            "features":{"a":NaN,"b":-Infinity,"c":"NaN","d":Infinity,"e":"say \"NaN\""},
            "prediction":{"score":NaN,"probabilities":{"x":Infinity}}}"#;
        let Ok(Event::Prediction(p)) = decode_event(text, EventKind::Prediction) else {
            panic!("not decoded");
        };
        assert_eq!(p.event_id, "NaN");
        assert!(matches!(p.features[0].1, FeatureValue::Number(x) if x.is_nan()));
        assert_eq!(p.features[1].1, FeatureValue::Number(f64::NEG_INFINITY));
        assert_eq!(p.features[2].1, FeatureValue::Text("NaN".into()));
        assert_eq!(p.features[3].1, FeatureValue::Number(f64::INFINITY));
        assert_eq!(p.features[4].1, FeatureValue::Text("say \"NaN\"".into()));
        assert!(p.prediction.score.is_some_and(f64::is_nan));
        assert_eq!(
            p.prediction.probabilities,
            Some(vec![("x".into(), f64::INFINITY)])
        );
        // Still wrong where a number is wrong, and still not JSON where a key should be.
        let ts = br#"{"event_id":"e","model_id":"m","timestamp":NaN,"label":"x"}"#;
        assert_eq!(
            decode_event(ts, EventKind::Label).unwrap_err().reason(),
            "wrong_type"
        );
        let key = br#"{"event_id":"e","model_id":"m","timestamp":1,"label":"x",NaN:1}"#;
        assert_eq!(
            decode_event(key, EventKind::Label).unwrap_err().reason(),
            "invalid_json"
        );
        let junk = br#"{"event_id":NaNa}"#;
        assert_eq!(
            decode_event(junk, EventKind::Label).unwrap_err().reason(),
            "invalid_json"
        );
    }

    #[test]
    fn encoders_write_the_schema_names_and_null_for_non_finite() {
        let event = PredictionEvent {
            event_id: "e".into(),
            model_id: "m".into(),
            model_version: "1".into(),
            timestamp: 9,
            features: vec![
                ("nan".into(), FeatureValue::Number(f64::NAN)),
                ("x".into(), FeatureValue::Number(2.0)),
            ],
            prediction: Prediction {
                score: Some(f64::INFINITY),
                label: None,
                probabilities: None,
            },
            attributes: vec![],
        };
        let bytes = encode_prediction_json(&event);
        let text = std::str::from_utf8(&bytes).unwrap();
        assert_eq!(
            text,
            r#"{"kind":"prediction","event_id":"e","model_id":"m","model_version":"1","timestamp":9,"features":{"nan":null,"x":2.0},"prediction":{"score":null,"label":null,"probabilities":null},"attributes":null}"#
        );
        let Ok(Event::Prediction(back)) = decode_event(&bytes, EventKind::Label) else {
            panic!()
        };
        assert_eq!(back.features[0].1, FeatureValue::Null);
        assert_eq!(back.prediction.score, None);

        let label = LabelEvent {
            event_id: "e".into(),
            model_id: "m".into(),
            timestamp: 3,
            label: LabelValue::Number(0.5),
        };
        let bytes = encode_label_json(&label);
        assert_eq!(
            bytes,
            br#"{"kind":"label","event_id":"e","model_id":"m","timestamp":3,"label":0.5}"#
        );
        assert_eq!(
            decode_event(&bytes, EventKind::Prediction),
            Ok(Event::Label(label))
        );
    }

    #[test]
    fn outputs_serialise_with_null_p_value() {
        let alert = DriftAlert {
            alert_id: "a".into(),
            model_id: "m".into(),
            model_version: "1".into(),
            subject: "__prediction__".into(),
            detector: "psi".into(),
            statistic: 0.3,
            threshold: 0.2,
            p_value: None,
            state: AlertState::Firing,
            window_start: 0,
            window_end: 60_000,
            reference_count: 10,
            window_count: 20,
            evidence_sha256: "ab".into(),
            detected_at: 60_000,
            emitted_at: 123,
        };
        let value: serde_json::Value = serde_json::from_slice(&alert_to_json(&alert)).unwrap();
        assert_eq!(value["p_value"], serde_json::Value::Null);
        assert_eq!(value["state"], "FIRING");
        assert_eq!(value["window_end"], 60_000);
        let request = RetrainRequest {
            request_id: "r".into(),
            model_id: "m".into(),
            model_version: "1".into(),
            trigger: crate::monitor::output::RetrainTrigger::Manual,
            reasons: vec!["asked".into()],
            data_from: 0,
            data_to: 1,
            source_offsets: vec![],
            created_at: 1,
        };
        let value: serde_json::Value = serde_json::from_slice(&retrain_to_json(&request)).unwrap();
        assert_eq!(value["trigger"], "MANUAL");
        assert_eq!(value["source_offsets"], json!([]));
    }

    fn finite_feature() -> impl Strategy<Value = FeatureValue<'static>> {
        prop_oneof![
            Just(FeatureValue::Null),
            (-1e300f64..1e300).prop_map(FeatureValue::Number),
            any::<i32>().prop_map(|i| FeatureValue::Number(f64::from(i))),
            any::<String>().prop_map(|s| FeatureValue::Text(s.into())),
            any::<bool>().prop_map(FeatureValue::Bool),
        ]
    }

    /// The fields of a generated payload, in any order: a prediction's or a label's, each
    /// usually valid and sometimes any variant of its key, plus a few random fields (which
    /// may repeat a key or supply a missing one).
    fn payload_fields() -> impl Strategy<Value = Vec<String>> {
        let prediction = (
            payload_field("event_id"),
            payload_field("model_id"),
            payload_field("model_version"),
            payload_field("timestamp"),
            payload_field("features"),
            payload_field("prediction"),
            payload_field("attributes"),
        )
            .prop_map(|(a, b, c, d, e, f, g)| vec![a, b, c, d, e, f, g]);
        let label = (
            payload_field("event_id"),
            payload_field("model_id"),
            payload_field("timestamp"),
            payload_field("label"),
        )
            .prop_map(|(a, b, c, d)| vec![a, b, c, d]);
        let extra = proptest::collection::vec(payload_field(""), 0..4);
        (prop_oneof![prediction, label], extra)
            .prop_flat_map(|(mut fields, extra)| {
                fields.extend(extra);
                Just(fields).prop_shuffle()
            })
            // An absent field: most variants keep every field, some drop one.
            .prop_flat_map(|fields| {
                let len = fields.len();
                (Just(fields), 0..len * 4)
            })
            .prop_map(|(mut fields, drop)| {
                if drop < fields.len() {
                    fields.remove(drop);
                }
                fields
            })
    }

    /// Keys of the generated payloads, each with the variants of its value (see
    /// [`value_variants`]).
    const PAYLOAD_KEYS: [&str; 10] = [
        "event_id",
        "model_id",
        "model_version",
        "timestamp",
        "features",
        "prediction",
        "attributes",
        "label",
        "kind",
        "extra",
    ];

    /// One `"key": value` of a generated payload: for a named key, usually a valid value and
    /// otherwise any variant of that key's value; for `""`, any key with any variant.
    fn payload_field(key: &'static str) -> BoxedStrategy<String> {
        let valid = match key {
            "event_id" | "model_id" | "model_version" => r#""m-1""#,
            "timestamp" => "1718000000000",
            "features" => r#"{"amount":12.5,"country":"FR","vip":true,"age":null}"#,
            "prediction" => r#"{"score":0.9,"label":"fraud"}"#,
            "attributes" => r#"{"segment":"smb"}"#,
            "label" => r#""fraud""#,
            _ => {
                return proptest::sample::select(&PAYLOAD_KEYS[..])
                    .prop_flat_map(|key| {
                        value_variants(key).prop_map(move |value| format!(r#""{key}":{value}"#))
                    })
                    .boxed()
            }
        };
        prop_oneof![6 => Just(valid.to_owned()), 1 => value_variants(key)]
            .prop_map(move |value| format!(r#""{key}":{value}"#))
            .boxed()
    }

    /// The variants of a key's value: valid, wrapped, null, mistyped, escaped, nested.
    fn value_variants(key: &str) -> BoxedStrategy<String> {
        let one_of = |variants: &'static [&'static str]| {
            proptest::sample::select(variants)
                .prop_map(str::to_owned)
                .boxed()
        };
        match key {
            "event_id" | "model_id" | "model_version" => one_of(&[
                r#""e-1""#,
                r#""e\u00e9""#,
                "null",
                "3",
                r#"{"string":"x"}"#,
                "[]",
            ]),
            "timestamp" => one_of(&[
                "1718000000000",
                "-5",
                "0",
                "1.7e12",
                "1718000000000.0",
                "9223372036854775807",
                "9223372036854775808",
                r#""1""#,
                "null",
            ]),
            "features" => {
                let name = proptest::sample::select(
                    &["amount", "country", "map", "double", r#"a\tb"#][..],
                );
                let value = proptest::sample::select(
                    &[
                        "1.5",
                        "-2",
                        "18446744073709551615",
                        "1e300",
                        "null",
                        "true",
                        r#""FR""#,
                        r#""a\"b""#,
                        r#"{"double":1}"#,
                        r#"{"long":-7}"#,
                        r#"{"string":"s"}"#,
                        r#"{"boolean":false}"#,
                        r#"{"double":"x"}"#,
                        r#"{"map":1}"#,
                        "{}",
                        r#"{"double":1,"int":2}"#,
                        "[1]",
                        "NaN",
                        "-Infinity",
                    ][..],
                );
                proptest::collection::vec((name, value), 0..5)
                    .prop_map(|entries| {
                        let entries: Vec<String> = entries
                            .iter()
                            .map(|(k, v)| format!(r#""{k}":{v}"#))
                            .collect();
                        format!("{{{}}}", entries.join(","))
                    })
                    .boxed()
            }
            "prediction" => {
                let entry = proptest::sample::select(
                    &[
                        r#""score":0.9"#,
                        r#""score":1"#,
                        r#""score":null"#,
                        r#""score":{"double":0.5}"#,
                        r#""score":{"float":2}"#,
                        r#""score":{"string":"x"}"#,
                        r#""score":"0.9""#,
                        r#""label":"fraud""#,
                        r#""label":null"#,
                        r#""label":{"string":"a"}"#,
                        r#""label":{"string":1}"#,
                        r#""label":3"#,
                        r#""probabilities":{"fraud":0.9,"ok":0.1}"#,
                        r#""probabilities":null"#,
                        r#""probabilities":{"map":{"fraud":0.9}}"#,
                        r#""probabilities":{"map":{"fraud":0.9},"ok":0.1}"#,
                        r#""probabilities":{"fraud":"x"}"#,
                        r#""probabilities":{"fraud":{"double":1}}"#,
                        r#""other":[1,{"a":null}]"#,
                    ][..],
                );
                prop_oneof![
                    4 => proptest::collection::vec(entry, 0..4)
                        .prop_map(|entries| format!("{{{}}}", entries.join(","))),
                    1 => proptest::sample::select(&["null", "[]"][..]).prop_map(str::to_owned),
                ]
                .boxed()
            }
            "attributes" => one_of(&[
                "null",
                "{}",
                r#"{"segment":"smb"}"#,
                r#"{"map":{"a":"b"}}"#,
                r#"{"map":{"a":"b"},"c":"d"}"#,
                r#"{"map":"x","c":"d"}"#,
                r#"{"map":{}}"#,
                r#"{"map":{"a":1}}"#,
                r#"{"a":1}"#,
                r#"{"map":{"map":{"a":"b"}}}"#,
                r#"{"a":"b","map":{"c":"d"}}"#,
                r#"{"fraud":0.9,"ok":0.1}"#,
                "[]",
            ]),
            "label" => one_of(&[
                r#""fraud""#,
                "1",
                "-0.5",
                "null",
                "true",
                r#"{"string":"ok"}"#,
                r#"{"double":1}"#,
                r#"{"boolean":true}"#,
                r#"{"int":1,"long":2}"#,
                "[]",
            ]),
            "kind" => one_of(&[r#""prediction""#, r#""label""#, r#""other""#, "1"]),
            _ => one_of(&[r#"{"deep":[1,2,{"x":null}]}"#, "NaN", r#""\ud800""#]),
        }
    }

    #[test]
    fn the_direct_path_takes_plain_and_wrapped_events_and_reuses_the_lists() {
        let mut wrapped = full_prediction();
        wrapped["features"]["amount"] = json!({"double": 12.5});
        wrapped["features"]["country"] = json!({"string": "FR"});
        wrapped["prediction"]["score"] = json!({"double": 0.9});
        wrapped["prediction"]["probabilities"] = json!({"map": {"fraud": 0.9, "ok": 0.1}});
        wrapped["attributes"] = json!({"map": {"segment": "smb"}});
        let label = json!({"event_id": "e-1", "model_id": "fraud", "timestamp": 5, "label": {"string": "ok"}});
        let mut buffers = EventBuffers::default();
        for (value, kind) in [
            (full_prediction(), EventKind::Prediction),
            (wrapped, EventKind::Prediction),
            (label, EventKind::Label),
        ] {
            let text = serde_json::to_string(&value).unwrap();
            let event = direct::decode(&text, kind, &mut buffers);
            assert!(event.is_some(), "declined: {text}");
            assert_eq!(
                event.clone().ok_or(()),
                decode_tree(&text, kind).map_err(|_| ())
            );
            if let Some(event) = event {
                buffers.recycle(event);
            }
        }
        // The same storage comes back for the next event: no allocation once warm.
        let text = serde_json::to_string(&full_prediction()).unwrap();
        let first = direct::decode(&text, EventKind::Prediction, &mut buffers).unwrap();
        let storage = match &first {
            Event::Prediction(p) => p.features.as_ptr() as usize,
            Event::Label(_) => unreachable!("a prediction"),
        };
        buffers.recycle(first);
        let Some(Event::Prediction(second)) =
            direct::decode(&text, EventKind::Prediction, &mut buffers)
        else {
            panic!("declined")
        };
        assert_eq!(second.features.as_ptr() as usize, storage);
    }

    proptest! {
        #[test]
        fn encoded_predictions_decode_to_themselves(
            event_id in any::<String>(),
            timestamp in any::<i64>(),
            // Any names, duplicates included: JSON objects keep them all, in order.
            features in proptest::collection::vec((any::<String>(), finite_feature()), 0..40),
            score in proptest::option::of(-1e10f64..1e10),
            attributes in proptest::collection::vec(("\\PC*", "\\PC*"), 0..4),
        ) {
            let event = PredictionEvent {
                event_id: event_id.into(),
                model_id: "m".into(),
                model_version: "v".into(),
                timestamp,
                features: features.into_iter().map(|(k, v)| (Cow::Owned(k), v)).collect(),
                prediction: Prediction { score, label: None, probabilities: Some(vec![]) },
                attributes: attributes.into_iter().map(|(k, v)| (Cow::Owned(k), Cow::Owned(v))).collect(),
            };
            let bytes = encode_prediction_json(&event);
            // What our own encoder writes is the plain mirror: the direct path must take it.
            let text = std::str::from_utf8(&bytes).unwrap();
            let direct = direct::decode(text, EventKind::Prediction, &mut EventBuffers::default());
            prop_assert_eq!(direct, Some(Event::Prediction(event.clone())));
            prop_assert_eq!(decode_event(&bytes, EventKind::Label), Ok(Event::Prediction(event)));
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = decode_event(text.as_bytes(), EventKind::Prediction);
        }

        #[test]
        fn json_shaped_noise_never_panics(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("{"), Just("}"), Just("["), Just("]"), Just(","), Just(":"), Just("\""),
                    Just("NaN"), Just("-Infinity"), Just("\\"), Just("1"), Just("null"),
                    Just("\"features\""), Just("\"kind\""), Just("\"label\""), Just("{\"double\":"),
                ],
                0..60,
            )
        ) {
            let text: String = parts.concat();
            let _ = decode_event(text.as_bytes(), EventKind::Prediction);
            let _ = decode_event(text.as_bytes(), EventKind::Label);
        }
    }

    proptest! {
        // Most generated payloads are one variant away from valid, and each edge case is one
        // variant in a dozen: the cases are cheap (~15 µs), so many of them run.
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// The direct path is only a faster route: whatever it accepts, the tree path decodes
        /// to the same event. Payloads are built field by field from valid, wrapped, null,
        /// mistyped, escaped, duplicated and absent variants, in any order, so most of them
        /// sit right at the edge of what either path accepts.
        #[test]
        fn the_direct_path_agrees_with_the_tree_path(
            fields in payload_fields(),
            trailing in prop_oneof![4 => Just(""), 2 => Just(" \n"), 1 => Just(" {}"), 1 => Just("x")],
        ) {
            let text = format!("{{{}}}{trailing}", fields.join(","));
            let mut buffers = EventBuffers::default();
            for kind in [EventKind::Prediction, EventKind::Label] {
                let tree = decode_tree(&text, kind);
                if let Some(event) = direct::decode(&text, kind, &mut buffers) {
                    prop_assert_eq!(Ok(event.clone()), tree, "{}", text);
                    buffers.recycle(event);
                }
            }
        }
    }
}
