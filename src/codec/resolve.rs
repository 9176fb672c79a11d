//! Avro schema resolution for inputs written with a schema from a schema registry.
//!
//! Owns: deciding how a producer's (writer) schema is read — by the hand-written decoder of
//! [`super::avro`] when it is our schema; by a [`Plan`] (the hand-written readers for our
//! fields, a strict walk over the writer's own) when it is ours with fields added, reordered
//! or `attributes` dropped; through apache-avro's schema resolution when it is another schema
//! our reader schema can read (promoted types, changed nested records, named references) —
//! and turning a resolved value into our events.
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

use super::avro::{self, label_event_schema, prediction_event_schema, OurField, PlanStep};
use super::{DecodeError, EventBuffers, EventKind};
use crate::event::{Event, FeatureValue, LabelEvent, LabelValue, Prediction, PredictionEvent};

/// How payloads written with one writer schema are read.
#[derive(Debug, Clone)]
pub enum WriterSchema {
    /// The writer schema is ours (same canonical form): the hand-written decoder reads it.
    Native,
    /// Our fields, each encoded exactly as ours, among fields of the writer's own (the usual
    /// evolution: a producer adds fields, or drops `attributes`): the hand-written readers take
    /// ours and the writer's own are stepped over. See [`Plan`].
    Planned(Box<Plan>),
    /// Another schema that our reader schema can read: apache-avro resolves each payload.
    Resolved(Box<Schema>),
}

/// How to read a body written with an evolved writer schema without apache-avro's `Value`
/// tree: the writer's top-level fields in order, each either one of ours (same encoding:
/// read by the hand-written readers, strings borrowed) or one of the writer's own (walked
/// over, as strictly as apache-avro would read it).
///
/// Why: the generic path builds a tree of owned values per message and resolves it, several
/// times slower than our decoder, and a producer that adds a single field to its schema
/// would otherwise pay that on every event for good. A payload the plan cannot read is
/// handed to the generic path, so errors (and dead-letter reasons) stay that path's.
#[derive(Debug, Clone)]
pub struct Plan {
    steps: Vec<PlanStep>,
    /// The writer's top-level fields' schemas (only those of [`PlanStep::Theirs`] are used).
    their_fields: Vec<Schema>,
    /// The whole writer schema, for the generic path.
    writer: Schema,
}

impl Plan {
    /// A plan for `writer` read as `reader`, or `None` when some field needs more than
    /// skipping or reading as ours (a field of ours with another encoding, a writer field
    /// whose values apache-avro validates beyond their shape, a named-type reference, ...).
    fn compile(writer: &Schema, reader: &Schema, kind: EventKind) -> Option<Self> {
        let (Schema::Record(theirs), Schema::Record(ours)) = (writer, reader) else {
            return None;
        };
        let mut steps = Vec::with_capacity(theirs.fields.len());
        let mut seen = Vec::new();
        for (n, field) in theirs.fields.iter().enumerate() {
            match ours.fields.iter().find(|f| f.name == field.name) {
                Some(our_field) => {
                    let named = OurField::named(&field.name, kind)?;
                    // Same canonical form, same bytes: a nested record must keep its full
                    // name too, which is conservative (another namespace would also do).
                    if field.schema.canonical_form() != our_field.schema.canonical_form() {
                        return None;
                    }
                    seen.push(named);
                    steps.push(PlanStep::Ours(named));
                }
                None => {
                    if !skippable(&field.schema, 0) {
                        return None;
                    }
                    steps.push(PlanStep::Theirs(n));
                }
            }
        }
        // Every field of ours the writer lacks must have a default the readers give: only
        // `attributes` (null: no attributes). Compatibility was checked before, so this only
        // guards the plan against a reader schema that changes later.
        for field in &ours.fields {
            let named = OurField::named(&field.name, kind)?;
            if !seen.contains(&named) && named != OurField::Attributes {
                return None;
            }
        }
        Some(Self {
            steps,
            their_fields: theirs.fields.iter().map(|f| f.schema.clone()).collect(),
            writer: writer.clone(),
        })
    }

    /// The writer schema.
    pub fn writer(&self) -> &Schema {
        &self.writer
    }
}

/// Whether the plan may walk over values of `schema` and be sure apache-avro would read
/// them: shapes whose every byte pattern the walk checks as apache-avro does (booleans,
/// `int` ranges, enum symbols, UTF-8 of strings and map keys). Types apache-avro validates
/// further (uuid, decimal, duration) or named references go the generic way.
fn skippable(schema: &Schema, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    match schema {
        Schema::Null
        | Schema::Boolean
        | Schema::Int
        | Schema::Long
        | Schema::Float
        | Schema::Double
        | Schema::Bytes
        | Schema::String
        | Schema::Enum(_)
        | Schema::Fixed(_)
        | Schema::Date
        | Schema::TimeMillis
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => true,
        Schema::Array(array) => skippable(&array.items, depth + 1),
        Schema::Map(map) => skippable(&map.types, depth + 1),
        Schema::Union(union) => union.variants().iter().all(|v| skippable(v, depth + 1)),
        Schema::Record(record) => record
            .fields
            .iter()
            .all(|f| skippable(&f.schema, depth + 1)),
        Schema::Ref { .. }
        | Schema::Uuid(_)
        | Schema::Decimal(_)
        | Schema::BigDecimal
        | Schema::Duration(_) => false,
    }
}

/// Decodes `body` (written with `plan`'s writer schema) as a `kind` event by the plan; on
/// any problem, by the generic path, whose result (event or error) is then the answer.
///
/// # Errors
/// As [`decode_resolved`].
pub fn decode_planned<'a>(
    body: &'a [u8],
    plan: &Plan,
    kind: EventKind,
    buffers: &mut EventBuffers,
) -> Result<Event<'a>, DecodeError> {
    let no_names = NamesRef::default();
    let skip = |n: usize, body: &'a [u8], at: usize| {
        let schema = plan
            .their_fields
            .get(n)
            .ok_or_else(|| DecodeError::InvalidValue {
                field: "(schema)".to_owned(),
                detail: format!("the plan names writer field {n}, which does not exist"),
            })?;
        let mut walker = Walker {
            body,
            at,
            names: &no_names,
            steps: 0,
            max_steps: max_steps(body),
            strict: true,
        };
        walker.skip(schema, 0)?;
        Ok(walker.at)
    };
    match avro::decode_planned(body, kind, &plan.steps, skip, buffers) {
        Ok(event) => Ok(event),
        Err(_) => decode_resolved(body, &plan.writer, kind),
    }
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
    Ok(match Plan::compile(&writer, reader, kind) {
        Some(plan) => WriterSchema::Planned(Box::new(plan)),
        None => WriterSchema::Resolved(Box::new(writer)),
    })
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
    // apache-avro reads a body that ends early as if its remaining fields with defaults were
    // absent, and fills in the defaults: a truncated message would pass. So the body is first
    // walked strictly against the writer schema (every byte accounted for), then read, then
    // resolved against our schema. Built per message: this is the slow path of evolved
    // schemas only (our own schema takes the hand-written decoder).
    check_complete(body, writer)?;
    let value = read_whole(body, "the registered writer schema", |rest| {
        GenericDatumReader::builder(writer)
            .build()
            .and_then(|reader| reader.read_value(rest))
    })?;
    event_from_value(value, kind)
}

/// The one value `read` reads from `body`, every byte of it used (`schema` names the writer
/// schema in the error).
fn read_whole(
    body: &[u8],
    schema: &str,
    read: impl FnOnce(&mut &[u8]) -> apache_avro::AvroResult<Value>,
) -> Result<Value, DecodeError> {
    let mut rest = body;
    let value = read(&mut rest).map_err(|e| DecodeError::InvalidValue {
        field: "(record)".to_owned(),
        detail: format!("does not decode with {schema}: {e}"),
    })?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes {
            offset: body.len() - rest.len(),
            count: rest.len(),
        });
    }
    Ok(value)
}

/// The `kind` event in `value`, a datum as read with its writer schema (e.g. a record of an
/// Avro object container file), through apache-avro's resolution to our reader schema.
/// Features come out sorted by name, as in [`decode_resolved`].
///
/// # Errors
/// `invalid_value` when the value cannot be resolved to our schema or a field has another
/// type than ours.
pub fn event_from_value(value: Value, kind: EventKind) -> Result<Event<'static>, DecodeError> {
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

/// What the records of an Avro object container file written with one schema are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerKinds {
    /// Every record is a `kind` event.
    Single(EventKind),
    /// The schema is a union: the record's branch tells its kind (`None`: a branch that is
    /// neither, whose records are refused one by one).
    Union(Vec<Option<EventKind>>),
}

/// Which events the records written with `writer` are: predictions when our prediction
/// schema can read them, labels when our label schema can, and for a union, each branch so.
///
/// # Errors
/// A description naming both incompatibilities when `writer` (or every branch of it) is
/// neither.
pub fn container_kinds(writer: &Schema) -> Result<ContainerKinds, String> {
    let kind_of = |schema: &Schema| -> Result<EventKind, String> {
        let as_prediction = SchemaCompatibility::can_read(schema, prediction_event_schema());
        if as_prediction.is_ok() {
            return Ok(EventKind::Prediction);
        }
        let as_label = SchemaCompatibility::can_read(schema, label_event_schema());
        if as_label.is_ok() {
            return Ok(EventKind::Label);
        }
        Err(format!(
            "not a prediction ({}) nor a label ({})",
            as_prediction
                .err()
                .map_or_else(String::new, |e| e.to_string()),
            as_label.err().map_or_else(String::new, |e| e.to_string())
        ))
    };
    match writer {
        Schema::Union(union) => {
            let kinds: Vec<Option<EventKind>> = union
                .variants()
                .iter()
                .map(|branch| kind_of(branch).ok())
                .collect();
            if kinds.iter().all(Option::is_none) {
                return Err("no branch of its union is a prediction or a label event".to_owned());
            }
            Ok(ContainerKinds::Union(kinds))
        }
        other => kind_of(other).map(ContainerKinds::Single),
    }
}

/// Reads the records of an Avro object container file's blocks as `kind` events, as strictly
/// as a registry payload ([`decode_resolved`]): each block is walked record by record against
/// the writer schema before apache-avro reads a record, so a record that runs past its block,
/// or bytes left over after the block's last record, are errors. (apache-avro's own container
/// reader reads a record cut short as nulls and ignores leftover bytes, so damage inside a
/// block without a checksum could pass as events.) Built once per file.
pub struct ContainerDecoder<'s> {
    writer: &'s Schema,
    resolved: ResolvedSchema<'s>,
    reader: GenericDatumReader<'s>,
    kinds: ContainerKinds,
}

impl<'s> ContainerDecoder<'s> {
    /// A decoder of records written with `writer`.
    ///
    /// # Errors
    /// A description when `writer` is not an event schema (see [`container_kinds`]) or does
    /// not resolve.
    pub fn new(writer: &'s Schema) -> Result<Self, String> {
        let kinds = container_kinds(writer)?;
        let resolved = ResolvedSchema::try_from(writer)
            .map_err(|e| format!("a schema that does not resolve: {e}"))?;
        let reader = GenericDatumReader::builder(writer)
            .build()
            .map_err(|e| format!("a schema apache-avro cannot read with: {e}"))?;
        Ok(Self {
            writer,
            resolved,
            reader,
            kinds,
        })
    }

    /// The byte ranges of the `count` records in a block's (decompressed) `data`.
    ///
    /// # Errors
    /// `truncated` when a record runs past the data, `trailing_bytes` when bytes follow the
    /// last record, or what the walk refuses.
    pub fn records(
        &self,
        data: &[u8],
        count: u64,
    ) -> Result<Vec<std::ops::Range<usize>>, DecodeError> {
        let mut walker = Walker {
            body: data,
            at: 0,
            names: self.resolved.get_names(),
            steps: 0,
            max_steps: max_steps(data),
            // apache-avro reads each record after this walk and validates its values.
            strict: false,
        };
        let mut ranges = Vec::new();
        for _ in 0..count {
            let start = walker.at;
            walker.skip(self.writer, 0)?;
            ranges.push(start..walker.at);
        }
        if walker.at != data.len() {
            return Err(DecodeError::TrailingBytes {
                offset: walker.at,
                count: data.len() - walker.at,
            });
        }
        Ok(ranges)
    }

    /// The event in one record's bytes (a range [`Self::records`] gave).
    ///
    /// # Errors
    /// `invalid_value` when the record does not read, is on a union branch that is no event,
    /// or does not resolve to our schema; `trailing_bytes` when bytes follow it.
    pub fn event(&self, record: &[u8]) -> Result<Event<'static>, DecodeError> {
        let value = read_whole(record, "the file's schema", |rest| {
            self.reader.read_value(rest)
        })?;
        let (kind, value) = match (&self.kinds, value) {
            (ContainerKinds::Single(kind), value) => (Some(*kind), value),
            (ContainerKinds::Union(kinds), Value::Union(branch, inner)) => {
                (kinds.get(branch as usize).copied().flatten(), *inner)
            }
            (ContainerKinds::Union(_), other) => (None, other),
        };
        let kind = kind.ok_or_else(|| DecodeError::InvalidValue {
            field: "(record)".to_owned(),
            detail: "a branch of the file's union that is neither a prediction nor a label event"
                .to_owned(),
        })?;
        event_from_value(value, kind)
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
        max_steps: max_steps(body),
        // apache-avro's read after this walk validates the values.
        strict: false,
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

/// The most values a walk over `body` may visit: far more than any real event has per
/// byte; only a body of zero-byte elements repeated a huge number of times runs into it.
fn max_steps(body: &[u8]) -> usize {
    body.len().saturating_mul(8).saturating_add(4096)
}

/// A strict cursor over an Avro body, driven by its schema.
struct Walker<'a, 's> {
    body: &'a [u8],
    at: usize,
    names: &'a NamesRef<'s>,
    /// Values walked so far, and the most allowed (bounds the work on hostile input).
    steps: usize,
    max_steps: usize,
    /// Also refuse what apache-avro would refuse to read (a boolean byte other than 0 or 1,
    /// an `int` beyond 32 bits, an enum index without a symbol, a string or map key that is
    /// not UTF-8): when the walk is all that reads the value.
    strict: bool,
}

impl Walker<'_, '_> {
    fn truncated(&self, what: &str) -> DecodeError {
        DecodeError::Truncated {
            field: what.to_owned(),
            offset: self.at,
            detail: "the body ends inside a value of the writer schema".to_owned(),
        }
    }

    fn invalid(&self, what: &str, detail: String) -> DecodeError {
        DecodeError::InvalidValue {
            field: what.to_owned(),
            detail,
        }
    }

    /// Takes `n` bytes that must be UTF-8.
    fn utf8(&mut self, n: usize, what: &str) -> Result<(), DecodeError> {
        let start = self.at;
        self.take(n, what)?;
        std::str::from_utf8(&self.body[start..self.at]).map_err(|e| DecodeError::InvalidUtf8 {
            field: what.to_owned(),
            offset: start + e.valid_up_to(),
        })?;
        Ok(())
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
            Schema::Boolean if self.strict => {
                let at = self.at;
                self.take(1, "boolean")?;
                if self.body[at] > 1 {
                    return Err(self.invalid("boolean", format!("byte {at} is not 0 or 1")));
                }
                Ok(())
            }
            Schema::Boolean => self.take(1, "boolean"),
            Schema::Int | Schema::Date | Schema::TimeMillis if self.strict => {
                let n = self.long("int")?;
                if i32::try_from(n).is_err() {
                    return Err(self.invalid("int", format!("{n} does not fit 32 bits")));
                }
                Ok(())
            }
            Schema::Enum(symbols) if self.strict => {
                let index = self.long("enum")?;
                if usize::try_from(index).map_or(true, |i| i >= symbols.symbols.len()) {
                    return Err(self.invalid("enum", format!("no symbol {index}")));
                }
                Ok(())
            }
            Schema::String if self.strict => {
                let n = self.length("string", 1)?;
                self.utf8(n, "string")
            }
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
                if w.strict {
                    w.utf8(n, "map key")?;
                } else {
                    w.take(n, "map key")?;
                }
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
    use proptest::prelude::*;

    #[test]
    fn a_container_schema_tells_its_records_kinds() {
        let text = |schema: &Schema| schema.canonical_form();
        let (ours, theirs) = (prediction_event_schema(), label_event_schema());
        assert_eq!(
            container_kinds(ours),
            Ok(ContainerKinds::Single(EventKind::Prediction))
        );
        assert_eq!(
            container_kinds(theirs),
            Ok(ContainerKinds::Single(EventKind::Label))
        );
        let other =
            r#"{"type": "record", "name": "Click", "fields": [{"name": "url", "type": "string"}]}"#;
        let union = Schema::parse_str(&format!("[{}, {}, {other}]", text(theirs), text(ours)))
            .expect("a union");
        assert_eq!(
            container_kinds(&union),
            Ok(ContainerKinds::Union(vec![
                Some(EventKind::Label),
                Some(EventKind::Prediction),
                None
            ]))
        );
        let error = container_kinds(&Schema::parse_str(other).expect("a record")).unwrap_err();
        assert!(
            error.contains("not a prediction") && error.contains("nor a label"),
            "{error}"
        );
        let only_others = Schema::parse_str(&format!("[\"long\", {other}]")).expect("a union");
        assert!(container_kinds(&only_others).is_err());
    }

    /// Sorts by key and keeps the last of repeated keys, as a map does.
    fn as_map<V>(list: &mut Vec<(Cow<'static, str>, V)>) {
        list.sort_by(|a, b| a.0.cmp(&b.0));
        let mut kept: Vec<(Cow<'static, str>, V)> = Vec::with_capacity(list.len());
        for entry in list.drain(..) {
            match kept.last_mut() {
                Some(last) if last.0 == entry.0 => *last = entry,
                _ => kept.push(entry),
            }
        }
        *list = kept;
    }

    /// `event` with its maps in name order, as the generic path gives them. A key repeated
    /// in a payload (only a damaged or hand-made one) is read differently by the two paths:
    /// apache-avro's map keeps the last value; our decoders keep every entry and the engine
    /// the first. The comparison keeps the last on both sides.
    fn sorted(event: Event<'_>) -> Event<'static> {
        match event {
            Event::Prediction(p) => {
                let own = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
                let mut features: Vec<(Cow<'static, str>, FeatureValue<'static>)> = p
                    .features
                    .into_iter()
                    .map(|(name, value)| {
                        let value = match value {
                            FeatureValue::Text(text) => FeatureValue::Text(own(text)),
                            FeatureValue::Number(x) => FeatureValue::Number(x),
                            FeatureValue::Bool(b) => FeatureValue::Bool(b),
                            FeatureValue::Null => FeatureValue::Null,
                        };
                        (own(name), value)
                    })
                    .collect();
                as_map(&mut features);
                let mut probabilities: Option<Vec<(Cow<'static, str>, f64)>> = p
                    .prediction
                    .probabilities
                    .map(|list| list.into_iter().map(|(k, v)| (own(k), v)).collect());
                if let Some(list) = probabilities.as_mut() {
                    as_map(list);
                }
                let mut attributes: Vec<(Cow<'static, str>, Cow<'static, str>)> = p
                    .attributes
                    .into_iter()
                    .map(|(k, v)| (own(k), own(v)))
                    .collect();
                as_map(&mut attributes);
                Event::Prediction(PredictionEvent {
                    event_id: own(p.event_id),
                    model_id: own(p.model_id),
                    model_version: own(p.model_version),
                    timestamp: p.timestamp,
                    features,
                    prediction: Prediction {
                        score: p.prediction.score,
                        label: p.prediction.label.map(own),
                        probabilities,
                    },
                    attributes,
                })
            }
            Event::Label(l) => Event::Label(LabelEvent {
                event_id: Cow::Owned(l.event_id.into_owned()),
                model_id: Cow::Owned(l.model_id.into_owned()),
                timestamp: l.timestamp,
                label: match l.label {
                    LabelValue::Text(text) => LabelValue::Text(Cow::Owned(text.into_owned())),
                    LabelValue::Number(x) => LabelValue::Number(x),
                },
            }),
        }
    }

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
        let Ok(WriterSchema::Planned(plan)) = writer_schema(&text, EventKind::Prediction) else {
            panic!("v2 (one added field) must be read by a plan");
        };
        let writer = plan.writer().clone();
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
        // The plan reads v2 as our decoder reads v1: the same event (maps in the order
        // apache-avro wrote them, which is its hash map's).
        let mut buffers = EventBuffers::default();
        assert_eq!(
            sorted(decode_planned(&v2_body, &plan, EventKind::Prediction, &mut buffers).unwrap()),
            sorted(Event::Prediction(expected.clone()))
        );
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
            assert_eq!(
                decode_planned(&v2_body[..cut], &plan, EventKind::Prediction, &mut buffers)
                    .unwrap_err(),
                decode_resolved(&v2_body[..cut], &writer, EventKind::Prediction).unwrap_err()
            );
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

    /// Writer-only field types the equivalence test adds, with a value of each from `seed`.
    fn extra_field(kind: usize, seed: u64) -> (serde_json::Value, Value) {
        use serde_json::json;
        let n = seed as i64;
        let text = format!("v{}", seed % 1000);
        match kind % 14 {
            0 => (json!("null"), Value::Null),
            1 => (json!("boolean"), Value::Boolean(seed % 2 == 0)),
            2 => (json!("int"), Value::Int(n as i32)),
            3 => (json!("long"), Value::Long(n)),
            4 => (json!("float"), Value::Float(f32::from_bits(seed as u32))),
            5 => (json!("double"), Value::Double(f64::from_bits(seed))),
            6 => (json!("string"), Value::String(text)),
            7 => (
                json!("bytes"),
                Value::Bytes(seed.to_le_bytes()[..(seed % 9) as usize].to_vec()),
            ),
            8 => (
                json!({"type": "enum", "name": format!("E{seed}"), "symbols": ["A", "B", "C"]}),
                Value::Enum(
                    (seed % 3) as u32,
                    ["A", "B", "C"][(seed % 3) as usize].into(),
                ),
            ),
            9 => (
                json!({"type": "fixed", "name": format!("F{seed}"), "size": 4}),
                Value::Fixed(4, (seed as u32).to_le_bytes().to_vec()),
            ),
            10 => (
                json!({"type": "array", "items": "int"}),
                Value::Array((0..seed % 5).map(|i| Value::Int(i as i32 - 2)).collect()),
            ),
            11 => (
                json!({"type": "map", "values": "string"}),
                Value::Map(
                    (0..seed % 4)
                        .map(|i| (format!("k{i}"), Value::String(text.clone())))
                        .collect(),
                ),
            ),
            12 => (
                json!(["null", "string"]),
                if seed % 2 == 0 {
                    Value::Union(0, Box::new(Value::Null))
                } else {
                    Value::Union(1, Box::new(Value::String(text)))
                },
            ),
            _ => (
                json!({"type": "record", "name": format!("R{seed}"), "fields": [
                    {"name": "x", "type": "long"},
                    {"name": "y", "type": ["null", "boolean"]},
                    {"name": "when", "type": {"type": "int", "logicalType": "date"}}]}),
                Value::Record(vec![
                    ("x".into(), Value::Long(n)),
                    ("y".into(), Value::Union(1, Box::new(Value::Boolean(true)))),
                    ("when".into(), Value::Date(n as i32)),
                ]),
            ),
        }
    }

    /// A writer schema for `kind`: our fields (`order` permutes them, `drop_attributes` leaves
    /// that optional one out) and `extras` at the given places; and a body of it for `ours`
    /// (our fields' values, as apache-avro reads our own encoding).
    fn evolved(
        kind: EventKind,
        ours: Vec<(String, Value)>,
        order: &[usize],
        drop_attributes: bool,
        extras: &[(usize, u64, usize)],
    ) -> (String, Vec<u8>) {
        let our_schema: serde_json::Value = serde_json::from_str(match kind {
            EventKind::Prediction => crate::codec::avro::PREDICTION_EVENT_AVSC,
            EventKind::Label => crate::codec::avro::LABEL_EVENT_AVSC,
        })
        .unwrap();
        let our_fields = our_schema["fields"].as_array().unwrap().clone();
        let mut fields: Vec<(serde_json::Value, Value)> = Vec::new();
        for &i in order {
            let (name, value) = ours[i].clone();
            if drop_attributes && name == "attributes" {
                continue;
            }
            fields.push((our_fields[i].clone(), value));
        }
        for (n, &(kind_of, seed, at)) in extras.iter().enumerate() {
            let (schema, value) = extra_field(kind_of, seed);
            let field = serde_json::json!({"name": format!("their_{n}"), "type": schema});
            fields.insert(at % (fields.len() + 1), (field, value));
        }
        let mut schema = our_schema.clone();
        schema["fields"] =
            serde_json::Value::Array(fields.iter().map(|(f, _)| f.clone()).collect());
        let text = schema.to_string();
        let writer = Schema::parse_str(&text).unwrap();
        let record = fields
            .into_iter()
            .map(|(f, v)| (f["name"].as_str().unwrap().to_owned(), v))
            .collect();
        (text, to_avro_datum(&writer, Value::Record(record)).unwrap())
    }

    /// Our fields' values for `body` (our own encoding of a `kind` event), in our order.
    fn our_values(body: &[u8], kind: EventKind) -> Vec<(String, Value)> {
        match GenericDatumReader::builder(reader_schema(kind))
            .build()
            .unwrap()
            .read_value(&mut &body[..])
            .unwrap()
        {
            Value::Record(fields) => fields,
            other => panic!("{other:?}"),
        }
    }

    /// The plan's answer equals the generic path's, for the body and damaged copies of it.
    fn assert_plan_agrees(text: &str, body: &[u8], kind: EventKind, damage: &[(usize, u8)]) {
        let Ok(WriterSchema::Planned(plan)) = writer_schema(text, kind) else {
            panic!("a plan for {text}");
        };
        let mut buffers = EventBuffers::default();
        let mut bodies = vec![body.to_vec()];
        for &(at, byte) in damage {
            let mut damaged = body.to_vec();
            if let Some(b) = damaged.get_mut(at % body.len().max(1)) {
                *b = byte;
            }
            bodies.push(damaged);
            bodies.push(body[..at % (body.len() + 1)].to_vec());
        }
        for (i, body) in bodies.iter().enumerate() {
            let planned = decode_planned(body, &plan, kind, &mut buffers).map(sorted);
            let generic = decode_resolved(body, plan.writer(), kind).map(sorted);
            assert_eq!(planned, generic, "body {i} of {text}");
            if i == 0 {
                assert!(planned.is_ok(), "{planned:?}");
            }
        }
    }

    #[test]
    fn a_plan_refuses_what_apache_avro_refuses_in_the_writers_own_fields() {
        // One field of the writer's own before ours, holding bytes its type forbids: the plan
        // must not accept what the generic path dead-letters.
        let label = crate::codec::avro::encode_label_avro(&LabelEvent {
            event_id: "e-1".into(),
            model_id: "m".into(),
            timestamp: 5,
            label: LabelValue::Number(1.0),
        });
        let zigzag = |n: i64| {
            let mut v = ((n << 1) ^ (n >> 63)) as u64;
            let mut out = Vec::new();
            loop {
                let byte = (v & 0x7f) as u8;
                v >>= 7;
                if v == 0 {
                    out.push(byte);
                    return out;
                }
                out.push(byte | 0x80);
            }
        };
        let cases: [(&str, Vec<u8>); 6] = [
            (r#""int""#, zigzag(1 << 40)),
            (
                r#"{"type": "int", "logicalType": "date"}"#,
                zigzag(-(1 << 35)),
            ),
            (r#""boolean""#, vec![2]),
            (
                r#"{"type": "enum", "name": "Tier", "symbols": ["A", "B"]}"#,
                zigzag(2),
            ),
            (r#""string""#, [zigzag(2), vec![0xc3, 0x28]].concat()),
            (
                r#"{"type": "map", "values": "null"}"#,
                [zigzag(1), zigzag(1), vec![0xff], zigzag(0)].concat(),
            ),
        ];
        for (their_type, bytes) in cases {
            let text = crate::codec::avro::LABEL_EVENT_AVSC.replacen(
                r#""fields": ["#,
                &format!(r#""fields": [{{"name": "theirs", "type": {their_type}}},"#),
                1,
            );
            assert_ne!(text, crate::codec::avro::LABEL_EVENT_AVSC);
            let Ok(WriterSchema::Planned(plan)) = writer_schema(&text, EventKind::Label) else {
                panic!("a plan for {text}");
            };
            let body = [bytes, label.clone()].concat();
            let generic = decode_resolved(&body, plan.writer(), EventKind::Label);
            assert!(
                generic.is_err(),
                "apache-avro reads {their_type}: {generic:?}"
            );
            let planned =
                decode_planned(&body, &plan, EventKind::Label, &mut EventBuffers::default());
            assert_eq!(planned, generic, "{their_type}");
            // And the walk itself refuses it (not only the fallback).
            let mut walker = Walker {
                body: &body,
                at: 0,
                names: &NamesRef::default(),
                steps: 0,
                max_steps: max_steps(&body),
                strict: true,
            };
            assert!(
                walker.skip(&plan.their_fields[0], 0).is_err(),
                "{their_type}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn a_plan_reads_what_the_generic_path_reads(
            seed in any::<u64>(),
            order in Just((0..7).collect::<Vec<usize>>()).prop_shuffle(),
            drop_attributes in any::<bool>(),
            extras in prop::collection::vec((0usize..14, any::<u64>(), 0usize..10), 0..6),
            damage in prop::collection::vec((0usize..400, any::<u8>()), 0..4),
        ) {
            use rand::{Rng, SeedableRng};
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let features = (0..rng.random_range(0..6)).map(|i| {
                let value = match rng.random_range(0..4) {
                    0 => FeatureValue::Null,
                    1 => FeatureValue::Number(rng.random_range(-1e3..1e3)),
                    2 => FeatureValue::Text(Cow::Owned(format!("c{}", rng.random_range(0..9)))),
                    _ => FeatureValue::Bool(rng.random()),
                };
                (Cow::Owned(format!("f{i}")), value)
            }).collect();
            let event = PredictionEvent {
                event_id: Cow::Owned(format!("e-{seed}")),
                model_id: "m".into(),
                model_version: "v9".into(),
                timestamp: rng.random_range(0..2_000_000_000_000),
                features,
                prediction: Prediction {
                    score: rng.random::<bool>().then(|| rng.random()),
                    label: rng.random::<bool>().then_some(Cow::Borrowed("yes")),
                    probabilities: rng.random::<bool>().then(|| vec![("yes".into(), 0.5), ("no".into(), 0.5)]),
                },
                attributes: (0..rng.random_range(0..3)).map(|i| (Cow::Owned(format!("a{i}")), Cow::Borrowed("x"))).collect(),
            };
            let ours = our_values(&encode_prediction_avro(&event), EventKind::Prediction);
            let (text, body) = evolved(EventKind::Prediction, ours, &order, drop_attributes, &extras);
            assert_plan_agrees(&text, &body, EventKind::Prediction, &damage);
        }

        #[test]
        fn a_plan_reads_labels_as_the_generic_path_does(
            order in Just((0..4).collect::<Vec<usize>>()).prop_shuffle(),
            extras in prop::collection::vec((0usize..14, any::<u64>(), 0usize..6), 1..4),
            text_label in any::<bool>(),
            damage in prop::collection::vec((0usize..120, any::<u8>()), 0..4),
        ) {
            let event = LabelEvent {
                event_id: "e-1".into(),
                model_id: "m".into(),
                timestamp: 1_767_225_600_000,
                label: if text_label { LabelValue::Text("fraud".into()) } else { LabelValue::Number(0.5) },
            };
            let ours = our_values(&crate::codec::avro::encode_label_avro(&event), EventKind::Label);
            let (text, body) = evolved(EventKind::Label, ours, &order, false, &extras);
            assert_plan_agrees(&text, &body, EventKind::Label, &damage);
        }
    }
}
