//! Avro schema resolution for inputs written with a schema from a schema registry.
//!
//! Owns: deciding how a producer's (writer) schema is read — by the hand-written decoder of
//! [`super::avro`] when it is our schema, through apache-avro's schema resolution when it is
//! another schema our reader schema can read (schema evolution: added optional fields, removed
//! fields with defaults, promoted types) — and turning a resolved value into our events.
//! Must not touch: I/O. The registry client (`crate::registry`) fetches the schema text; this
//! module only parses and compares it, so it is tested without a network.
//!
//! Why two paths: the hand-written decoder borrows every string from the payload and is several
//! times faster than apache-avro's `Value` tree, but it understands exactly one writer schema.
//! Two schemas with the same Parsing Canonical Form have the same binary encoding (PCF drops
//! only docs, defaults, aliases and other attributes that do not change the bytes), so "ours"
//! is decided on the canonical form, and a producer that registered `schemas/*.avsc` — with
//! any whitespace, docs or key order the registry normalised it to — keeps the fast path.

use std::borrow::Cow;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::{
    DecimalSchema, InnerDecimalSchema, NamesRef, ResolvedSchema, UuidSchema,
};
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::types::Value;
use apache_avro::Schema;

use super::avro::{label_event_schema, prediction_event_schema};
use super::{DecodeError, EventKind};
use crate::event::{Event, FeatureValue, LabelEvent, LabelValue, Prediction, PredictionEvent};

/// How payloads written with one writer schema are read.
#[derive(Debug, Clone)]
pub enum WriterSchema {
    /// The writer schema is ours (same canonical form): the hand-written decoder reads it.
    Native,
    /// Another schema that our reader schema can read: apache-avro resolves each payload.
    Resolved(Box<Schema>),
}

/// The reader schema of `kind`: driftwatch's own.
fn reader_schema(kind: EventKind) -> &'static Schema {
    match kind {
        EventKind::Prediction => prediction_event_schema(),
        EventKind::Label => label_event_schema(),
    }
}

/// Parses a writer schema's text (as a registry returns it) and decides how payloads written
/// with it are read as `kind` events.
///
/// # Errors
/// A description fit for a dead-letter header when the text is not an Avro schema, or when
/// our reader schema cannot read data written with it (a required field missing without a
/// default, a type changed incompatibly, ...).
pub fn writer_schema(text: &str, kind: EventKind) -> Result<WriterSchema, String> {
    let writer =
        Schema::parse_str(text).map_err(|e| format!("the writer schema does not parse: {e}"))?;
    let reader = reader_schema(kind);
    if writer.canonical_form() == reader.canonical_form() {
        return Ok(WriterSchema::Native);
    }
    SchemaCompatibility::can_read(&writer, reader).map_err(|e| {
        format!(
            "data written with this schema cannot be read as driftwatch's {}: {e}",
            kind.as_str()
        )
    })?;
    Ok(WriterSchema::Resolved(Box::new(writer)))
}

/// Decodes an Avro body written with `writer` (not ours) into a `kind` event, through
/// apache-avro's writer → reader resolution. Strings are owned (the `Value` tree owns them).
/// Features come out sorted by name: Avro maps carry no order, and apache-avro's `Value::Map`
/// is a hash map, so sorting is what keeps the engine's input deterministic.
///
/// # Errors
/// `invalid_value` when the body does not decode with the writer schema, `trailing_bytes`
/// when bytes follow the record.
pub fn decode_resolved(
    body: &[u8],
    writer: &Schema,
    kind: EventKind,
) -> Result<Event<'static>, DecodeError> {
    let mut rest = body;
    // apache-avro reads a body that ends early as if its remaining fields with defaults were
    // absent, and fills in the defaults: a truncated message would pass. So the body is first
    // walked strictly against the writer schema (every byte accounted for), then read, then
    // resolved against our schema. Built per message: this is the slow path of evolved
    // schemas only (our own schema takes the hand-written decoder).
    check_complete(body, writer)?;
    let value = GenericDatumReader::builder(writer)
        .build()
        .and_then(|reader| reader.read_value(&mut rest))
        .map_err(|e| DecodeError::InvalidValue {
            field: "(record)".to_owned(),
            detail: format!("does not decode with the registered writer schema: {e}"),
        })?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes {
            offset: body.len() - rest.len(),
            count: rest.len(),
        });
    }
    let value = value
        .resolve(reader_schema(kind))
        .map_err(|e| DecodeError::InvalidValue {
            field: "(record)".to_owned(),
            detail: format!("cannot be resolved to driftwatch's schema: {e}"),
        })?;
    let mut fields = Fields::of(value)?;
    match kind {
        EventKind::Prediction => {
            let event_id = fields.string("event_id")?;
            let model_id = fields.string("model_id")?;
            let model_version = fields.string("model_version")?;
            let timestamp = fields.long("timestamp")?;
            let mut features: Vec<(Cow<'static, str>, FeatureValue<'static>)> =
                match fields.take("features")? {
                    Value::Map(map) => map
                        .into_iter()
                        .map(|(name, value)| Ok((Cow::Owned(name), feature(value)?)))
                        .collect::<Result<_, DecodeError>>()?,
                    other => return Err(unexpected("features", &other)),
                };
            features.sort_by(|a, b| a.0.cmp(&b.0));
            let mut prediction = Fields::of(fields.take("prediction")?)?;
            let score = optional(prediction.take("score")?, "prediction.score", double)?;
            let label = optional(prediction.take("label")?, "prediction.label", string)?;
            let probabilities = optional(
                prediction.take("probabilities")?,
                "prediction.probabilities",
                |value, field| sorted_map(value, field, double),
            )?;
            let attributes = optional(fields.take("attributes")?, "attributes", |value, field| {
                sorted_map(value, field, |v, f| string(v, f).map(Cow::Owned))
            })?
            .unwrap_or_default();
            Ok(Event::Prediction(PredictionEvent {
                event_id: Cow::Owned(event_id),
                model_id: Cow::Owned(model_id),
                model_version: Cow::Owned(model_version),
                timestamp,
                features,
                prediction: Prediction {
                    score,
                    label: label.map(Cow::Owned),
                    probabilities,
                },
                attributes,
            }))
        }
        EventKind::Label => {
            let event_id = fields.string("event_id")?;
            let model_id = fields.string("model_id")?;
            let timestamp = fields.long("timestamp")?;
            let label = match strip_union(fields.take("label")?) {
                Value::String(text) => LabelValue::Text(Cow::Owned(text)),
                Value::Double(number) => LabelValue::Number(number),
                other => return Err(unexpected("label", &other)),
            };
            Ok(Event::Label(LabelEvent {
                event_id: Cow::Owned(event_id),
                model_id: Cow::Owned(model_id),
                timestamp,
                label,
            }))
        }
    }
}

/// Deepest nesting walked; a writer schema deeper than this is not an event schema.
const MAX_DEPTH: usize = 64;

/// Checks that `body` is exactly one complete datum of `writer`: every value present in full
/// and no byte left over. Reads nothing into memory.
fn check_complete(body: &[u8], writer: &Schema) -> Result<(), DecodeError> {
    let resolved = ResolvedSchema::try_from(writer).map_err(|e| DecodeError::InvalidValue {
        field: "(schema)".to_owned(),
        detail: format!("the writer schema does not resolve: {e}"),
    })?;
    let mut walker = Walker {
        body,
        at: 0,
        names: resolved.get_names(),
        steps: 0,
        // Far more values than any real event has per byte; only a body of zero-byte
        // elements repeated a huge number of times runs into it.
        max_steps: body.len().saturating_mul(8).saturating_add(4096),
    };
    walker.skip(writer, 0)?;
    if walker.at != body.len() {
        return Err(DecodeError::TrailingBytes {
            offset: walker.at,
            count: body.len() - walker.at,
        });
    }
    Ok(())
}

/// A strict cursor over an Avro body, driven by its schema.
struct Walker<'a, 's> {
    body: &'a [u8],
    at: usize,
    names: &'a NamesRef<'s>,
    /// Values walked so far, and the most allowed (bounds the work on hostile input).
    steps: usize,
    max_steps: usize,
}

impl Walker<'_, '_> {
    fn truncated(&self, what: &str) -> DecodeError {
        DecodeError::Truncated {
            field: what.to_owned(),
            offset: self.at,
            detail: "the body ends inside a value of the writer schema".to_owned(),
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<(), DecodeError> {
        if self.body.len() - self.at < n {
            return Err(self.truncated(what));
        }
        self.at += n;
        Ok(())
    }

    /// A zigzag varint long.
    fn long(&mut self, what: &str) -> Result<i64, DecodeError> {
        let mut value: u64 = 0;
        for shift in (0..70).step_by(7) {
            let Some(&byte) = self.body.get(self.at) else {
                return Err(self.truncated(what));
            };
            self.at += 1;
            if shift == 63 && byte > 1 {
                break;
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        Err(DecodeError::InvalidValue {
            field: what.to_owned(),
            detail: format!("varint longer than 64 bits at byte {}", self.at),
        })
    }

    /// A length or count: a non-negative long that fits the remaining bytes where `unit`
    /// is the smallest size of one element.
    fn length(&mut self, what: &str, unit: usize) -> Result<usize, DecodeError> {
        let n = self.long(what)?;
        let n = usize::try_from(n).map_err(|_| DecodeError::InvalidValue {
            field: what.to_owned(),
            detail: format!("negative length {n} at byte {}", self.at),
        })?;
        if n.saturating_mul(unit) > self.body.len() - self.at {
            return Err(self.truncated(what));
        }
        Ok(n)
    }

    /// The blocks of an array or map, calling `item` once per element.
    fn blocks(
        &mut self,
        what: &str,
        mut item: impl FnMut(&mut Self) -> Result<(), DecodeError>,
    ) -> Result<(), DecodeError> {
        loop {
            let count = self.long(what)?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                // A negative count is followed by the block's size in bytes.
                self.length(what, 1)?;
            }
            // Elements of most types take at least a byte, so the walk soon runs out of body;
            // zero-byte elements (nulls, empty records) are bounded by the step budget.
            for _ in 0..count.unsigned_abs() {
                item(self)?;
            }
        }
    }

    fn skip(&mut self, schema: &Schema, depth: usize) -> Result<(), DecodeError> {
        self.steps += 1;
        if self.steps > self.max_steps {
            return Err(DecodeError::InvalidValue {
                field: "(record)".to_owned(),
                detail: format!(
                    "more than {} values in a {}-byte body",
                    self.max_steps,
                    self.body.len()
                ),
            });
        }
        if depth > MAX_DEPTH {
            return Err(DecodeError::InvalidValue {
                field: "(schema)".to_owned(),
                detail: format!("nested deeper than {MAX_DEPTH}"),
            });
        }
        match schema {
            Schema::Null => Ok(()),
            Schema::Boolean => self.take(1, "boolean"),
            Schema::Int
            | Schema::Long
            | Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos
            | Schema::Enum(_) => self.long("number").map(drop),
            Schema::Float => self.take(4, "float"),
            Schema::Double => self.take(8, "double"),
            Schema::Bytes
            | Schema::String
            | Schema::BigDecimal
            | Schema::Uuid(UuidSchema::Bytes | UuidSchema::String)
            | Schema::Decimal(DecimalSchema {
                inner: InnerDecimalSchema::Bytes,
                ..
            }) => {
                let n = self.length("bytes", 1)?;
                self.take(n, "bytes")
            }
            Schema::Fixed(fixed)
            | Schema::Duration(fixed)
            | Schema::Uuid(UuidSchema::Fixed(fixed))
            | Schema::Decimal(DecimalSchema {
                inner: InnerDecimalSchema::Fixed(fixed),
                ..
            }) => self.take(fixed.size, "fixed"),
            Schema::Array(array) => self.blocks("array", |w| w.skip(&array.items, depth + 1)),
            Schema::Map(map) => self.blocks("map", |w| {
                let n = w.length("map key", 1)?;
                w.take(n, "map key")?;
                w.skip(&map.types, depth + 1)
            }),
            Schema::Union(union) => {
                let index = self.long("union index")?;
                let variant = usize::try_from(index)
                    .ok()
                    .and_then(|i| union.variants().get(i))
                    .ok_or_else(|| DecodeError::InvalidValue {
                        field: "union".to_owned(),
                        detail: format!("branch {index} does not exist, at byte {}", self.at),
                    })?;
                self.skip(variant, depth + 1)
            }
            Schema::Record(record) => {
                for field in &record.fields {
                    self.skip(&field.schema, depth + 1)?;
                }
                Ok(())
            }
            Schema::Ref { name } => {
                let named =
                    self.names
                        .get(name)
                        .copied()
                        .ok_or_else(|| DecodeError::InvalidValue {
                            field: "(schema)".to_owned(),
                            detail: format!("unresolved type reference {name}"),
                        })?;
                self.skip(named, depth + 1)
            }
        }
    }
}

/// The fields of a resolved record, taken out by name.
struct Fields(Vec<(String, Value)>);

impl Fields {
    fn of(value: Value) -> Result<Self, DecodeError> {
        match value {
            Value::Record(fields) => Ok(Fields(fields)),
            other => Err(unexpected("(record)", &other)),
        }
    }

    /// Resolution against our reader schema yields every reader field, so a missing one is
    /// a resolution bug rather than bad input; it is still reported, never a panic.
    fn take(&mut self, name: &str) -> Result<Value, DecodeError> {
        let position = self.0.iter().position(|(n, _)| n == name).ok_or_else(|| {
            DecodeError::MissingField {
                field: name.to_owned(),
            }
        })?;
        Ok(self.0.swap_remove(position).1)
    }

    fn string(&mut self, name: &str) -> Result<String, DecodeError> {
        string(self.take(name)?, name)
    }

    fn long(&mut self, name: &str) -> Result<i64, DecodeError> {
        match strip_union(self.take(name)?) {
            Value::Long(n) | Value::TimestampMillis(n) => Ok(n),
            Value::Int(n) => Ok(i64::from(n)),
            other => Err(unexpected(name, &other)),
        }
    }
}

/// The value inside a union branch (resolution keeps the branch wrapper).
fn strip_union(value: Value) -> Value {
    match value {
        Value::Union(_, inner) => *inner,
        other => other,
    }
}

fn string(value: Value, field: &str) -> Result<String, DecodeError> {
    match strip_union(value) {
        Value::String(text) => Ok(text),
        other => Err(unexpected(field, &other)),
    }
}

fn double(value: Value, field: &str) -> Result<f64, DecodeError> {
    match strip_union(value) {
        Value::Double(number) => Ok(number),
        other => Err(unexpected(field, &other)),
    }
}

/// `None` for the null branch of an optional field, else `read` of its value.
fn optional<T>(
    value: Value,
    field: &str,
    read: impl FnOnce(Value, &str) -> Result<T, DecodeError>,
) -> Result<Option<T>, DecodeError> {
    match strip_union(value) {
        Value::Null => Ok(None),
        other => read(other, field).map(Some),
    }
}

/// A map's entries sorted by key (see [`decode_resolved`] on order).
fn sorted_map<T>(
    value: Value,
    field: &str,
    read: impl Fn(Value, &str) -> Result<T, DecodeError>,
) -> Result<Vec<(Cow<'static, str>, T)>, DecodeError> {
    match value {
        Value::Map(map) => {
            let mut entries = map
                .into_iter()
                .map(|(key, value)| Ok((Cow::<'static, str>::Owned(key), read(value, field)?)))
                .collect::<Result<Vec<_>, DecodeError>>()?;
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(entries)
        }
        other => Err(unexpected(field, &other)),
    }
}

fn feature(value: Value) -> Result<FeatureValue<'static>, DecodeError> {
    Ok(match strip_union(value) {
        Value::Null => FeatureValue::Null,
        Value::Double(number) => FeatureValue::Number(number),
        Value::String(text) => FeatureValue::Text(Cow::Owned(text)),
        Value::Boolean(flag) => FeatureValue::Bool(flag),
        other => return Err(unexpected("features", &other)),
    })
}

/// A resolved value of a shape our reader schema does not have.
fn unexpected(field: &str, value: &Value) -> DecodeError {
    DecodeError::InvalidValue {
        field: field.to_owned(),
        detail: format!("unexpected resolved value {value:?}"),
    }
}

#[cfg(test)]
mod tests {

    /// Encodes `value` with `schema`, as apache-avro (the reference implementation) does.
    fn to_avro_datum(schema: &Schema, value: Value) -> apache_avro::AvroResult<Vec<u8>> {
        apache_avro::writer::datum::GenericDatumWriter::builder(schema)
            .build()
            .and_then(|writer| writer.write_value_to_vec(value))
    }
    use super::*;
    use crate::codec::avro::encode_prediction_avro;

    /// Our schema plus an optional field, as a producer's v2 schema would add it.
    fn v2_schema_text() -> String {
        let mut schema: serde_json::Value =
            serde_json::from_str(crate::codec::avro::PREDICTION_EVENT_AVSC).unwrap();
        schema["fields"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!(
                {"name": "request_region", "type": ["null", "string"], "default": null}
            ));
        schema.to_string()
    }

    #[test]
    fn our_schema_in_any_layout_is_read_natively() {
        // A registry may hand the schema back compacted, without docs, keys reordered.
        let compact: serde_json::Value =
            serde_json::from_str(crate::codec::avro::PREDICTION_EVENT_AVSC).unwrap();
        assert!(matches!(
            writer_schema(&compact.to_string(), EventKind::Prediction),
            Ok(WriterSchema::Native)
        ));
        assert!(matches!(
            writer_schema(crate::codec::avro::LABEL_EVENT_AVSC, EventKind::Label),
            Ok(WriterSchema::Native)
        ));
    }

    #[test]
    fn an_evolved_writer_schema_is_resolved_to_the_same_event() {
        let text = v2_schema_text();
        let Ok(WriterSchema::Resolved(writer)) = writer_schema(&text, EventKind::Prediction) else {
            panic!("v2 must be resolvable and not native");
        };
        // The v2 body: our encoding of every v1 field, plus the new field, written by
        // apache-avro (the reference implementation) from a Value.
        let event = PredictionEvent {
            event_id: "e-7".into(),
            model_id: "fraud".into(),
            model_version: "v2".into(),
            timestamp: 1_767_225_600_000,
            features: vec![
                ("zeta".into(), FeatureValue::Number(4.5)),
                ("alpha".into(), FeatureValue::Text("FR".into())),
                ("is_new".into(), FeatureValue::Bool(true)),
                ("coupon".into(), FeatureValue::Null),
            ],
            prediction: Prediction {
                score: Some(0.25),
                label: Some("legit".into()),
                probabilities: Some(vec![("legit".into(), 0.75), ("fraud".into(), 0.25)]),
            },
            attributes: vec![
                ("segment".into(), "b2c".into()),
                ("country".into(), "FR".into()),
            ],
        };
        let v1_body = encode_prediction_avro(&event);
        let v1_value = GenericDatumReader::builder(prediction_event_schema())
            .build()
            .unwrap()
            .read_value(&mut &v1_body[..])
            .unwrap();
        let Value::Record(mut fields) = v1_value else {
            panic!("record")
        };
        fields.push((
            "request_region".to_owned(),
            Value::Union(1, Box::new(Value::String("eu-west".into()))),
        ));
        let v2_body = to_avro_datum(&writer, Value::Record(fields)).unwrap();
        let decoded = decode_resolved(&v2_body, &writer, EventKind::Prediction).unwrap();
        let Event::Prediction(mut expected) =
            crate::codec::avro::decode_event(&v1_body, EventKind::Prediction).unwrap()
        else {
            panic!("prediction")
        };
        expected.features.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(p) = expected.prediction.probabilities.as_mut() {
            p.sort_by(|a, b| a.0.cmp(&b.0));
        }
        expected.attributes.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(decoded, Event::Prediction(expected));

        // Trailing garbage and a cut body are errors, not panics.
        let mut long = v2_body.clone();
        long.push(0);
        assert_eq!(
            decode_resolved(&long, &writer, EventKind::Prediction)
                .unwrap_err()
                .reason(),
            "trailing_bytes"
        );
        // An absurd element count of zero-byte values is refused, not walked for ever.
        let nulls = apache_avro::Schema::parse_str(r#"{"type":"array","items":"null"}"#).unwrap();
        let mut huge = vec![0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        huge.push(0);
        assert!(check_complete(&huge, &nulls).is_err());
        assert!(check_complete(&[6, 0], &nulls).is_ok());
        for cut in 0..v2_body.len() {
            assert!(
                decode_resolved(&v2_body[..cut], &writer, EventKind::Prediction).is_err(),
                "cut at {cut} of {}: {:?}",
                v2_body.len(),
                decode_resolved(&v2_body[..cut], &writer, EventKind::Prediction)
            );
        }
    }

    #[test]
    fn an_unreadable_writer_schema_is_refused_with_the_reason() {
        // `features` as an array: our reader cannot read that.
        let text = crate::codec::avro::PREDICTION_EVENT_AVSC.replace(
            r#"{"type": "map", "values": ["null", "double", "string", "boolean"]}"#,
            r#"{"type": "array", "items": "double"}"#,
        );
        assert_ne!(text, crate::codec::avro::PREDICTION_EVENT_AVSC);
        let error = writer_schema(&text, EventKind::Prediction).unwrap_err();
        assert!(error.contains("cannot be read"), "{error}");
        // A label schema is not a prediction schema.
        assert!(
            writer_schema(crate::codec::avro::LABEL_EVENT_AVSC, EventKind::Prediction).is_err()
        );
        assert!(writer_schema("{not json", EventKind::Label)
            .unwrap_err()
            .contains("does not parse"));
    }

    #[test]
    fn a_label_with_a_promoted_type_is_resolved() {
        // A writer whose timestamp is an int (promotable to long) and label a float
        // (promotable to double): legal evolution, read through resolution.
        let text = r#"{"type":"record","name":"LabelEvent","namespace":"io.driftwatch","fields":[
            {"name":"event_id","type":"string"},{"name":"model_id","type":"string"},
            {"name":"timestamp","type":"int"},{"name":"label","type":["string","float"]}]}"#;
        let Ok(WriterSchema::Resolved(writer)) = writer_schema(text, EventKind::Label) else {
            panic!("resolvable")
        };
        let body = to_avro_datum(
            &writer,
            Value::Record(vec![
                ("event_id".into(), Value::String("e-1".into())),
                ("model_id".into(), Value::String("m".into())),
                ("timestamp".into(), Value::Int(1234)),
                ("label".into(), Value::Union(1, Box::new(Value::Float(0.5)))),
            ]),
        )
        .unwrap();
        assert_eq!(
            decode_resolved(&body, &writer, EventKind::Label).unwrap(),
            Event::Label(LabelEvent {
                event_id: "e-1".into(),
                model_id: "m".into(),
                timestamp: 1234,
                label: LabelValue::Number(0.5),
            })
        );
    }
}
