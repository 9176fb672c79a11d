//! Avro binary: a hand-written decoder for the input events, and encoders for inputs and
//! outputs (DESIGN §2; schemas in `schemas/*.avsc`).
//!
//! Owns: the Avro binary encoding of `PredictionEvent`, `LabelEvent`, `DriftAlert` and
//! `RetrainRequest`, and the parsed schemas. Must not touch: framing (the Confluent header is
//! [`super::wire`]), the schema registry, I/O.
//!
//! Why hand-written decoding: apache-avro decodes into an owned `Value` tree (a `String` per
//! string, a `HashMap` per map) that would then be converted again; reading the binary directly
//! borrows every string from the payload and allocates only the feature list, and keeps the
//! producer's feature order, which a `HashMap` loses. The price is that it understands exactly
//! one writer schema — ours. Resolving a different writer schema (schema-registry evolution) is
//! a later addition: [`decode_event`] is the single entry point the [`super::Decoder`] calls,
//! so a resolving decoder built on apache-avro (owned strings, `Cow::Owned`) can take its place
//! for schema ids whose writer schema is not ours. apache-avro remains the reference
//! implementation: the tests encode with it and decode with this.
//!
//! Every length is checked against the bytes that remain before anything is sliced or
//! reserved, so hostile input costs an error, never a panic or a large allocation.

use std::borrow::Cow;
use std::sync::LazyLock;

use apache_avro::types::Value;
use apache_avro::Schema;

use super::{Attributes, DecodeError, EventBuffers, EventKind, Features, ProbabilityList};
use crate::event::{Event, FeatureValue, LabelEvent, LabelValue, Prediction, PredictionEvent};
use crate::monitor::output::{DriftAlert, RetrainRequest};

/// `schemas/prediction_event.avsc`.
pub const PREDICTION_EVENT_AVSC: &str = include_str!("../../schemas/prediction_event.avsc");
/// `schemas/label_event.avsc`.
pub const LABEL_EVENT_AVSC: &str = include_str!("../../schemas/label_event.avsc");
/// `schemas/drift_alert.avsc`.
pub const DRIFT_ALERT_AVSC: &str = include_str!("../../schemas/drift_alert.avsc");
/// `schemas/retrain_request.avsc`.
pub const RETRAIN_REQUEST_AVSC: &str = include_str!("../../schemas/retrain_request.avsc");

/// Parses a schema compiled into the binary. It cannot fail at run time unless the file is
/// broken, which `schemas_parse_and_mirror_the_structs` rules out before anything ships.
fn parse_embedded(text: &str, file: &str) -> Schema {
    match Schema::parse_str(text) {
        Ok(schema) => schema,
        Err(error) => panic!("embedded schema {file} is invalid: {error}"),
    }
}

static PREDICTION_EVENT_SCHEMA: LazyLock<Schema> =
    LazyLock::new(|| parse_embedded(PREDICTION_EVENT_AVSC, "prediction_event.avsc"));
static LABEL_EVENT_SCHEMA: LazyLock<Schema> =
    LazyLock::new(|| parse_embedded(LABEL_EVENT_AVSC, "label_event.avsc"));
static DRIFT_ALERT_SCHEMA: LazyLock<Schema> =
    LazyLock::new(|| parse_embedded(DRIFT_ALERT_AVSC, "drift_alert.avsc"));
static RETRAIN_REQUEST_SCHEMA: LazyLock<Schema> =
    LazyLock::new(|| parse_embedded(RETRAIN_REQUEST_AVSC, "retrain_request.avsc"));

/// The parsed `PredictionEvent` schema (parsed once, on first use).
///
/// # Panics
/// Only if the embedded schema file is invalid, which the tests rule out.
pub fn prediction_event_schema() -> &'static Schema {
    &PREDICTION_EVENT_SCHEMA
}

/// The parsed `LabelEvent` schema (parsed once, on first use).
///
/// # Panics
/// Only if the embedded schema file is invalid, which the tests rule out.
pub fn label_event_schema() -> &'static Schema {
    &LABEL_EVENT_SCHEMA
}

/// The parsed `DriftAlert` schema (parsed once, on first use).
///
/// # Panics
/// Only if the embedded schema file is invalid, which the tests rule out.
pub fn drift_alert_schema() -> &'static Schema {
    &DRIFT_ALERT_SCHEMA
}

/// The parsed `RetrainRequest` schema (parsed once, on first use).
///
/// # Panics
/// Only if the embedded schema file is invalid, which the tests rule out.
pub fn retrain_request_schema() -> &'static Schema {
    &RETRAIN_REQUEST_SCHEMA
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// A zigzag varint of a 64-bit long takes at most ⌈64 / 7⌉ = 10 bytes.
const MAX_VARINT_BYTES: usize = 10;

/// Decodes an Avro body written with our schema for `kind`.
///
/// # Errors
/// `truncated`, `invalid_value`, `invalid_utf8` or `trailing_bytes`, with the field and the
/// byte offset (counted from the start of `body`).
pub fn decode_event(body: &[u8], kind: EventKind) -> Result<Event<'_>, DecodeError> {
    decode_event_reusing(body, kind, &mut EventBuffers::default())
}

/// [`decode_event`], with the event's lists built in `buffers`' storage (give it back with
/// [`EventBuffers::recycle`]): once warm, decoding allocates nothing.
///
/// # Errors
/// As [`decode_event`].
pub fn decode_event_reusing<'a>(
    body: &'a [u8],
    kind: EventKind,
    buffers: &mut EventBuffers,
) -> Result<Event<'a>, DecodeError> {
    match kind {
        EventKind::Prediction => {
            let (features, attributes, probabilities) = buffers.lend();
            decode_prediction_into(body, features, attributes, probabilities).map(Event::Prediction)
        }
        EventKind::Label => decode_label(body).map(Event::Label),
    }
}

/// Decodes a `PredictionEvent` body (no header). Strings borrow from `body`.
///
/// # Errors
/// As [`decode_event`].
pub fn decode_prediction(body: &[u8]) -> Result<PredictionEvent<'_>, DecodeError> {
    decode_prediction_into(body, Vec::new(), Vec::new(), Vec::new())
}

/// [`decode_prediction`] into the given (empty) lists.
fn decode_prediction_into<'a>(
    body: &'a [u8],
    features: Vec<(Cow<'a, str>, FeatureValue<'a>)>,
    attributes: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    probabilities: ProbabilityList<'a>,
) -> Result<PredictionEvent<'a>, DecodeError> {
    let mut r = Reader::new(body);
    // Fields in schema order: Avro binary has no field names, only the order.
    let event_id = r.string("event_id")?;
    let model_id = r.string("model_id")?;
    let model_version = r.string("model_version")?;
    let timestamp = r.long("timestamp")?;
    let features = read_features(&mut r, features)?;
    let prediction = read_prediction_record(&mut r, probabilities)?;
    let attributes = read_attributes(&mut r, attributes)?;
    r.finish()?;
    Ok(PredictionEvent {
        event_id,
        model_id,
        model_version,
        timestamp,
        features,
        prediction,
        attributes,
    })
}

/// The `features` field: a map of feature values.
#[inline(always)]
fn read_features<'a>(r: &mut Reader<'a>, into: Features<'a>) -> Result<Features<'a>, DecodeError> {
    // Smallest entry: a 1-byte key length (empty key) and a 1-byte union index (null).
    r.map("features", 2, feature_value, into)
}

/// The `prediction` field: the `Prediction` record (its probabilities, when present, in
/// `probabilities`).
#[inline(always)]
fn read_prediction_record<'a>(
    r: &mut Reader<'a>,
    probabilities: ProbabilityList<'a>,
) -> Result<Prediction<'a>, DecodeError> {
    let score = match r.union_index("prediction.score", 2)? {
        0 => None,
        _ => Some(r.double("prediction.score")?),
    };
    let label = match r.union_index("prediction.label", 2)? {
        0 => None,
        _ => Some(r.string("prediction.label")?),
    };
    let probabilities = match r.union_index("prediction.probabilities", 2)? {
        0 => None,
        // Smallest entry: an empty key (1 byte) and a double (8 bytes).
        _ => Some(r.map(
            "prediction.probabilities",
            9,
            |r| r.double("prediction.probabilities"),
            probabilities,
        )?),
    };
    Ok(Prediction {
        score,
        label,
        probabilities,
    })
}

/// The `attributes` field: an optional map of strings.
#[inline(always)]
fn read_attributes<'a>(
    r: &mut Reader<'a>,
    into: Attributes<'a>,
) -> Result<Attributes<'a>, DecodeError> {
    match r.union_index("attributes", 2)? {
        // The event type has no "absent" distinct from "empty": both mean no attributes.
        0 => Ok(into),
        _ => r.map("attributes", 2, |r| r.string("attributes"), into),
    }
}

/// A top-level field of our event schemas, as a [`PlanStep`] names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OurField {
    /// `event_id` (both kinds).
    EventId,
    /// `model_id` (both kinds).
    ModelId,
    /// `model_version` (predictions).
    ModelVersion,
    /// `timestamp` (both kinds).
    Timestamp,
    /// `features` (predictions).
    Features,
    /// `prediction` (predictions).
    Prediction,
    /// `attributes` (predictions).
    Attributes,
    /// `label` (labels).
    Label,
}

impl OurField {
    /// The field of ours named `name` in `kind`'s schema.
    pub(crate) fn named(name: &str, kind: EventKind) -> Option<Self> {
        let field = match name {
            "event_id" => Self::EventId,
            "model_id" => Self::ModelId,
            "timestamp" => Self::Timestamp,
            "model_version" => Self::ModelVersion,
            "features" => Self::Features,
            "prediction" => Self::Prediction,
            "attributes" => Self::Attributes,
            "label" => Self::Label,
            _ => return None,
        };
        let ours = match kind {
            EventKind::Prediction => field != Self::Label,
            EventKind::Label => {
                matches!(
                    field,
                    Self::EventId | Self::ModelId | Self::Timestamp | Self::Label
                )
            }
        };
        ours.then_some(field)
    }
}

/// One top-level field of a body written with an evolved writer schema, in writer order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlanStep {
    /// A field of ours, encoded exactly as in our schema: read by the hand-written readers.
    Ours(OurField),
    /// The writer's own field number `n` (its position in the writer record): skipped.
    Theirs(usize),
}

/// Decodes a body written with an evolved writer schema, following `steps` (see
/// `resolve::Plan`); `skip(n, body, at)` steps over the writer's own field `n` starting at
/// byte `at` and returns where it ends. Strings of ours borrow from `body`. A field of ours
/// the writer does not have takes its default; `attributes` is the only one that can be
/// absent (the plan checks).
///
/// # Errors
/// As [`decode_event`]; the caller replaces them with the generic path's own errors.
pub(crate) fn decode_planned<'a>(
    body: &'a [u8],
    kind: EventKind,
    steps: &[PlanStep],
    mut skip: impl FnMut(usize, &'a [u8], usize) -> Result<usize, DecodeError>,
    buffers: &mut EventBuffers,
) -> Result<Event<'a>, DecodeError> {
    let mut r = Reader::new(body);
    let (mut event_id, mut model_id, mut model_version, mut timestamp) = (None, None, None, None);
    let (mut features, mut prediction, mut label) = (None, None, None);
    let (lent_features, lent_attributes, lent_probabilities) = match kind {
        EventKind::Prediction => buffers.lend(),
        EventKind::Label => (Vec::new(), Vec::new(), Vec::new()),
    };
    let (mut lent_features, mut attributes) = (Some(lent_features), lent_attributes);
    let mut lent_probabilities = Some(lent_probabilities);
    for step in steps {
        match *step {
            PlanStep::Theirs(n) => r.pos = skip(n, body, r.pos)?,
            PlanStep::Ours(OurField::EventId) => event_id = Some(r.string("event_id")?),
            PlanStep::Ours(OurField::ModelId) => model_id = Some(r.string("model_id")?),
            PlanStep::Ours(OurField::ModelVersion) => {
                model_version = Some(r.string("model_version")?);
            }
            PlanStep::Ours(OurField::Timestamp) => timestamp = Some(r.long("timestamp")?),
            PlanStep::Ours(OurField::Features) => {
                let into = lent_features.take().unwrap_or_default();
                features = Some(read_features(&mut r, into)?);
            }
            PlanStep::Ours(OurField::Prediction) => {
                let into = lent_probabilities.take().unwrap_or_default();
                prediction = Some(read_prediction_record(&mut r, into)?);
            }
            PlanStep::Ours(OurField::Attributes) => {
                attributes = read_attributes(&mut r, std::mem::take(&mut attributes))?;
            }
            PlanStep::Ours(OurField::Label) => {
                // Union {string, double}, in that order.
                label = Some(match r.union_index("label", 2)? {
                    0 => LabelValue::Text(r.string("label")?),
                    _ => LabelValue::Number(r.double("label")?),
                });
            }
        }
    }
    r.finish()?;
    let missing = |field: &str| DecodeError::MissingField {
        field: field.to_owned(),
    };
    let event_id = event_id.ok_or_else(|| missing("event_id"))?;
    let model_id = model_id.ok_or_else(|| missing("model_id"))?;
    let timestamp = timestamp.ok_or_else(|| missing("timestamp"))?;
    Ok(match kind {
        EventKind::Prediction => Event::Prediction(PredictionEvent {
            event_id,
            model_id,
            model_version: model_version.ok_or_else(|| missing("model_version"))?,
            timestamp,
            features: features.ok_or_else(|| missing("features"))?,
            prediction: prediction.ok_or_else(|| missing("prediction"))?,
            attributes,
        }),
        EventKind::Label => Event::Label(LabelEvent {
            event_id,
            model_id,
            timestamp,
            label: label.ok_or_else(|| missing("label"))?,
        }),
    })
}

/// Decodes a `LabelEvent` body (no header). Strings borrow from `body`.
///
/// # Errors
/// As [`decode_event`].
pub fn decode_label(body: &[u8]) -> Result<LabelEvent<'_>, DecodeError> {
    let mut r = Reader::new(body);
    let event_id = r.string("event_id")?;
    let model_id = r.string("model_id")?;
    let timestamp = r.long("timestamp")?;
    // Union {string, double}, in that order.
    let label = match r.union_index("label", 2)? {
        0 => LabelValue::Text(r.string("label")?),
        _ => LabelValue::Number(r.double("label")?),
    };
    r.finish()?;
    Ok(LabelEvent {
        event_id,
        model_id,
        timestamp,
        label,
    })
}

/// One feature value: union {null, double, string, boolean}, in that order.
fn feature_value<'a>(r: &mut Reader<'a>) -> Result<FeatureValue<'a>, DecodeError> {
    Ok(match r.union_index("features", 4)? {
        0 => FeatureValue::Null,
        1 => FeatureValue::Number(r.double("features")?),
        2 => FeatureValue::Text(r.string("features")?),
        _ => FeatureValue::Bool(r.boolean("features")?),
    })
}

/// `std::str::from_utf8` with a fast path for short ASCII strings: ids, feature names and
/// categories are almost always that, and for a dozen bytes std's validator spends more on its
/// setup than on the bytes (it was ~6 % of the in-process throughput run's profile).
#[inline]
fn utf8(bytes: &[u8]) -> Result<&str, std::str::Utf8Error> {
    const SHORT: usize = 64;
    if bytes.len() <= SHORT && short_ascii(bytes) {
        // SAFETY: every byte is below 0x80, so the slice is ASCII, which is valid UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes)
}

/// Whether every byte of a short slice is ASCII, a word at a time.
///
/// Why not `<[u8]>::is_ascii`: below 16 bytes or so, which is most feature names and
/// categories, it tests byte by byte, and that loop was a quarter of decoding a prediction
/// (perf). Here a string of 8 bytes or more is covered by its whole words and one last word
/// that may overlap them; a shorter one by two overlapping 4-byte halves, or its bytes.
#[inline(always)]
fn short_ascii(bytes: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let len = bytes.len();
    if len >= 8 {
        let word = |chunk: &[u8]| chunk.try_into().map_or(HIGH, u64::from_le_bytes);
        let chunks = bytes.chunks_exact(8);
        let whole = chunks.fold(0u64, |seen, chunk| seen | word(chunk));
        (whole | word(&bytes[len - 8..])) & HIGH == 0
    } else if len >= 4 {
        let half = |chunk: &[u8]| chunk.try_into().map_or(u32::MAX, u32::from_le_bytes);
        (half(&bytes[..4]) | half(&bytes[len - 4..])) & 0x8080_8080 == 0
    } else {
        bytes.iter().fold(0u8, |seen, &byte| seen | byte) < 0x80
    }
}

/// A cursor over an Avro body. Every read checks the remaining length first and reports the
/// offset where the value started, so an error message points at the bad bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// `entries.push((key, item))`, writing the two halves straight into the vector.
///
/// Why not `push`: it assembles the pair in a stack slot, from the decoders' narrower
/// stores, and then copies it with 16-byte loads that straddle those stores. The processor
/// cannot forward such a load from its store buffer and waits for the stores to reach the
/// cache: that wait was half of all Avro decoding time (perf), and this function takes a
/// prediction's decode from ~380 to ~290 ns.
#[inline(always)]
fn push_pair<K, V>(entries: &mut Vec<(K, V)>, key: K, item: V) {
    entries.reserve(1);
    let len = entries.len();
    let slot = entries.spare_capacity_mut()[0].as_mut_ptr();
    // SAFETY: `reserve(1)` left room for one more element, so `slot` points at allocated,
    // unused, properly aligned space for a `(K, V)`. Both fields are written (`ptr::write`
    // cannot panic) before the length grows over them, so the vector never exposes an
    // uninitialised element, and nothing is dropped or read in place.
    unsafe {
        std::ptr::addr_of_mut!((*slot).0).write(key);
        std::ptr::addr_of_mut!((*slot).1).write(item);
        entries.set_len(len + 1);
    }
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn left(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    // Error constructors are cold and out of line: the per-event path then carries no
    // string building, and the readers below stay small enough to inline.
    #[cold]
    #[inline(never)]
    fn truncated(field: &str, offset: usize, detail: String) -> DecodeError {
        DecodeError::Truncated {
            field: field.to_owned(),
            offset,
            detail,
        }
    }

    #[cold]
    #[inline(never)]
    fn invalid(field: &str, offset: usize, detail: &str) -> DecodeError {
        DecodeError::InvalidValue {
            field: field.to_owned(),
            detail: format!("{detail} at byte {offset} of the Avro body"),
        }
    }

    /// The next `n` bytes, borrowed from the payload.
    #[inline]
    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], DecodeError> {
        let start = self.pos;
        // `get` rather than indexing: no arithmetic or slicing here can panic.
        let bytes = self
            .buf
            .get(start..)
            .and_then(|rest| rest.get(..n))
            .ok_or_else(|| {
                Self::truncated(
                    field,
                    start,
                    format!("needs {n} bytes, {} left", self.left()),
                )
            })?;
        self.pos = start + bytes.len();
        Ok(bytes)
    }

    /// A zigzag varint (Avro `int` and `long` share the encoding).
    ///
    /// Union indexes, string lengths and small counts — most varints of an event — fit in one
    /// byte; that case is inlined at every call site, the rest is out of line.
    #[inline(always)]
    fn long(&mut self, field: &str) -> Result<i64, DecodeError> {
        if let Some(&byte) = self.buf.get(self.pos) {
            if byte & 0x80 == 0 {
                self.pos += 1;
                let raw = u64::from(byte);
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        self.long_multibyte(field)
    }

    #[inline(never)]
    fn long_multibyte(&mut self, field: &str) -> Result<i64, DecodeError> {
        let start = self.pos;
        let mut raw: u64 = 0;
        for i in 0..MAX_VARINT_BYTES {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(Self::truncated(
                    field,
                    start,
                    "incomplete varint".to_owned(),
                ));
            };
            self.pos += 1;
            if i == MAX_VARINT_BYTES - 1 && byte > 1 {
                // The 10th byte carries bit 63 only; anything more is a longer varint or an
                // overflow, and silently dropping the high bits would decode a wrong number.
                let what = if byte & 0x80 != 0 {
                    "varint longer than 10 bytes"
                } else {
                    "varint overflows 64 bits"
                };
                return Err(Self::invalid(field, start, what));
            }
            raw |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                // Undo the zigzag mapping: 0, -1, 1, -2, ... ← 0, 1, 2, 3, ...
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        // Unreachable (the 10th byte either ends the varint or is rejected above), but an
        // error is cheaper to reason about than an `unreachable!`.
        Err(Self::invalid(field, start, "varint longer than 10 bytes"))
    }

    /// A length prefix (strings, map block byte sizes): a non-negative long.
    #[inline(always)]
    fn length(&mut self, field: &str) -> Result<usize, DecodeError> {
        let start = self.pos;
        let n = self.long(field)?;
        usize::try_from(n).map_err(|_| Self::invalid(field, start, &format!("negative length {n}")))
    }

    #[inline(always)]
    fn string(&mut self, field: &str) -> Result<Cow<'a, str>, DecodeError> {
        let n = self.length(field)?;
        let start = self.pos;
        let bytes = self.take(n, field)?;
        utf8(bytes)
            .map(Cow::Borrowed)
            .map_err(|e| DecodeError::InvalidUtf8 {
                field: field.to_owned(),
                offset: start + e.valid_up_to(),
            })
    }

    /// An IEEE 754 double, little-endian; NaN and infinities pass through bit for bit.
    #[inline]
    fn double(&mut self, field: &str) -> Result<f64, DecodeError> {
        let bytes = self.take(8, field)?;
        let mut le = [0u8; 8];
        le.copy_from_slice(bytes);
        Ok(f64::from_le_bytes(le))
    }

    fn boolean(&mut self, field: &str) -> Result<bool, DecodeError> {
        let start = self.pos;
        match self.take(1, field)? {
            [0] => Ok(false),
            [1] => Ok(true),
            _ => Err(Self::invalid(
                field,
                start,
                "boolean byte is neither 0 nor 1",
            )),
        }
    }

    /// A union branch index, checked against the number of branches.
    #[inline]
    fn union_index(&mut self, field: &str, branches: usize) -> Result<usize, DecodeError> {
        let start = self.pos;
        let index = self.long(field)?;
        usize::try_from(index)
            .ok()
            .filter(|&i| i < branches)
            .ok_or_else(|| {
                Self::invalid(
                    field,
                    start,
                    &format!("union branch {index} is not in 0..{branches}"),
                )
            })
    }

    /// A map: blocks of `count` entries until a zero count. A negative count means `-count`
    /// entries preceded by the block's size in bytes (which writers add so readers can skip
    /// blocks; we check it instead). `min_entry_bytes` is the smallest encoded entry, used to
    /// reject impossible counts before reserving memory for them.
    /// Reads a map into `entries` (empty; its storage is reused).
    fn map<T>(
        &mut self,
        field: &str,
        min_entry_bytes: usize,
        mut value: impl FnMut(&mut Self) -> Result<T, DecodeError>,
        mut entries: Vec<(Cow<'a, str>, T)>,
    ) -> Result<Vec<(Cow<'a, str>, T)>, DecodeError> {
        loop {
            let block_start = self.pos;
            let count = self.long(field)?;
            if count == 0 {
                return Ok(entries);
            }
            let byte_size = if count < 0 {
                let size_start = self.pos;
                let size = self.length(field)?;
                if size > self.left() {
                    return Err(Self::truncated(
                        field,
                        size_start,
                        format!("block of {size} bytes, {} left", self.left()),
                    ));
                }
                Some(size)
            } else {
                None
            };
            // `unsigned_abs` because -i64::MIN does not fit an i64; the bound below rejects
            // it (and every other impossible count) anyway.
            let count = usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX);
            if count > self.left() / min_entry_bytes.max(1) {
                return Err(Self::truncated(
                    field,
                    block_start,
                    format!(
                        "block of {count} entries needs at least {} bytes, {} left",
                        count.saturating_mul(min_entry_bytes),
                        self.left()
                    ),
                ));
            }
            // Capped so a count that passes the bound still cannot make us reserve much more
            // than the entries that are actually there; the vector grows as they decode.
            entries.reserve(count.min(1024));
            let items_start = self.pos;
            for _ in 0..count {
                let key = self.string(field)?;
                let item = value(self)?;
                push_pair(&mut entries, key, item);
            }
            if let Some(size) = byte_size {
                let used = self.pos - items_start;
                if used != size {
                    return Err(Self::invalid(
                        field,
                        block_start,
                        &format!("block declares {size} bytes but its entries take {used}"),
                    ));
                }
            }
        }
    }

    /// The record must use the whole payload: leftover bytes mean the writer used another
    /// schema (or the message was corrupted), and decoding it as ours would be a guess.
    fn finish(&self) -> Result<(), DecodeError> {
        match self.left() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes {
                offset: self.pos,
                count,
            }),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding of input events (demo producer, tests)
// ---------------------------------------------------------------------------------------------

/// Encodes a `PredictionEvent` as Avro binary (no header) with our schema.
///
/// Hand-written for the same reason as the decoder: it keeps the feature order (apache-avro's
/// `Value::Map` is a `HashMap`, whose order changes from run to run), so the demo's messages
/// are the same bytes every time. Maps are written as one block with a positive count. An
/// empty `attributes` list is written as `null`. Tests check the output with apache-avro's reader.
pub fn encode_prediction_avro(event: &PredictionEvent<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + 16 * event.features.len());
    put_str(&mut out, &event.event_id);
    put_str(&mut out, &event.model_id);
    put_str(&mut out, &event.model_version);
    put_long(&mut out, event.timestamp);
    put_map(&mut out, &event.features, |out, value| match value {
        FeatureValue::Null => put_long(out, 0),
        FeatureValue::Number(x) => {
            put_long(out, 1);
            put_double(out, *x);
        }
        FeatureValue::Text(s) => {
            put_long(out, 2);
            put_str(out, s);
        }
        FeatureValue::Bool(b) => {
            put_long(out, 3);
            out.push(u8::from(*b));
        }
    });
    let prediction = &event.prediction;
    put_optional(&mut out, prediction.score.as_ref(), |out, x| {
        put_double(out, *x)
    });
    put_optional(&mut out, prediction.label.as_ref(), |out, s| {
        put_str(out, s)
    });
    put_optional(
        &mut out,
        prediction.probabilities.as_ref(),
        |out, probabilities| {
            put_map(out, probabilities, |out, p| put_double(out, *p));
        },
    );
    let attributes = (!event.attributes.is_empty()).then_some(&event.attributes);
    put_optional(&mut out, attributes, |out, attributes| {
        put_map(out, attributes, |out, v| put_str(out, v));
    });
    out
}

/// Encodes a `LabelEvent` as Avro binary (no header) with our schema.
pub fn encode_label_avro(event: &LabelEvent<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + event.event_id.len() + event.model_id.len());
    put_str(&mut out, &event.event_id);
    put_str(&mut out, &event.model_id);
    put_long(&mut out, event.timestamp);
    match &event.label {
        LabelValue::Text(s) => {
            put_long(&mut out, 0);
            put_str(&mut out, s);
        }
        LabelValue::Number(x) => {
            put_long(&mut out, 1);
            put_double(&mut out, *x);
        }
    }
    out
}

fn put_long(out: &mut Vec<u8>, value: i64) {
    // Zigzag, so small negative numbers stay short, then 7 bits per byte, low bits first.
    let mut z = ((value << 1) ^ (value >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // A Rust length never exceeds isize::MAX, so it always fits a long.
    put_long(out, i64::try_from(len).unwrap_or(i64::MAX));
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_double(out: &mut Vec<u8>, x: f64) {
    out.extend_from_slice(&x.to_le_bytes());
}

/// A union {null, T}: branch 0 for `None`, branch 1 then the value.
fn put_optional<T>(out: &mut Vec<u8>, value: Option<&T>, put: impl FnOnce(&mut Vec<u8>, &T)) {
    match value {
        None => put_long(out, 0),
        Some(v) => {
            put_long(out, 1);
            put(out, v);
        }
    }
}

fn put_map<T>(out: &mut Vec<u8>, entries: &[(Cow<'_, str>, T)], put: impl Fn(&mut Vec<u8>, &T)) {
    if !entries.is_empty() {
        put_len(out, entries.len());
        for (key, value) in entries {
            put_str(out, key);
            put(out, value);
        }
    }
    put_long(out, 0);
}

// ---------------------------------------------------------------------------------------------
// Encoding of outputs (the sink)
// ---------------------------------------------------------------------------------------------

/// apache-avro refused to encode an output record.
///
/// The values are built to match the embedded schemas, so this indicates a bug (a schema file
/// and `monitor::output` drifted apart), never bad input; it is an error rather than a panic
/// so the sink can log it and carry on.
#[derive(Debug, thiserror::Error)]
#[error("Avro encoding of {record} failed: {source}")]
pub struct EncodeError {
    /// The record type being encoded.
    pub record: &'static str,
    /// apache-avro's error.
    #[source]
    pub source: apache_avro::Error,
}

/// Counts are `u64` in memory and `long` on the wire; 2⁶³ observations cannot happen, so
/// saturating is only a formality that avoids a wrapping cast.
fn count_value(count: u64) -> Value {
    Value::Long(i64::try_from(count).unwrap_or(i64::MAX))
}

fn string_value(s: &str) -> Value {
    Value::String(s.to_owned())
}

fn encode_with(
    schema: &Schema,
    value: Value,
    record: &'static str,
) -> Result<Vec<u8>, EncodeError> {
    // `GenericDatumWriter` is what the deprecated `to_avro_datum` calls; it validates the
    // value against the schema before writing, which is where a drift between schema file and
    // struct would show up.
    apache_avro::writer::datum::GenericDatumWriter::builder(schema)
        .build()
        .and_then(|writer| writer.write_value_to_vec(value))
        .map_err(|source| EncodeError { record, source })
}

/// Encodes a [`DriftAlert`] as Avro binary (no header) with `schemas/drift_alert.avsc`.
///
/// # Errors
/// Only if the schema and the struct disagree (a bug; see [`EncodeError`]).
pub fn alert_to_avro(alert: &DriftAlert) -> Result<Vec<u8>, EncodeError> {
    let p_value = match alert.p_value {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(p) => Value::Union(1, Box::new(Value::Double(p))),
    };
    let state_index = match alert.state {
        crate::monitor::output::AlertState::Firing => 0,
        crate::monitor::output::AlertState::Resolved => 1,
    };
    let value = Value::Record(vec![
        ("alert_id".into(), string_value(&alert.alert_id)),
        ("model_id".into(), string_value(&alert.model_id)),
        ("model_version".into(), string_value(&alert.model_version)),
        ("subject".into(), string_value(&alert.subject)),
        ("detector".into(), string_value(&alert.detector)),
        ("statistic".into(), Value::Double(alert.statistic)),
        ("threshold".into(), Value::Double(alert.threshold)),
        ("p_value".into(), p_value),
        (
            "state".into(),
            Value::Enum(state_index, alert.state.as_str().to_owned()),
        ),
        (
            "window_start".into(),
            Value::TimestampMillis(alert.window_start),
        ),
        (
            "window_end".into(),
            Value::TimestampMillis(alert.window_end),
        ),
        ("reference_count".into(), count_value(alert.reference_count)),
        ("window_count".into(), count_value(alert.window_count)),
        (
            "evidence_sha256".into(),
            string_value(&alert.evidence_sha256),
        ),
        (
            "detected_at".into(),
            Value::TimestampMillis(alert.detected_at),
        ),
        (
            "emitted_at".into(),
            Value::TimestampMillis(alert.emitted_at),
        ),
    ]);
    encode_with(drift_alert_schema(), value, "DriftAlert")
}

/// Encodes a [`RetrainRequest`] as Avro binary (no header) with `schemas/retrain_request.avsc`.
///
/// # Errors
/// Only if the schema and the struct disagree (a bug; see [`EncodeError`]).
pub fn retrain_to_avro(request: &RetrainRequest) -> Result<Vec<u8>, EncodeError> {
    use crate::monitor::output::RetrainTrigger;
    // Symbol positions in the schema's enum.
    let trigger_index = match request.trigger {
        RetrainTrigger::DataDrift => 0,
        RetrainTrigger::ConceptDrift => 1,
        RetrainTrigger::Performance => 2,
        RetrainTrigger::Scheduled => 3,
        RetrainTrigger::Manual => 4,
    };
    let offsets = request
        .source_offsets
        .iter()
        .map(|range| {
            Value::Record(vec![
                ("topic".into(), string_value(&range.topic)),
                ("partition".into(), Value::Int(range.partition)),
                ("from_offset".into(), Value::Long(range.from_offset)),
                ("to_offset".into(), Value::Long(range.to_offset)),
            ])
        })
        .collect();
    let value = Value::Record(vec![
        ("request_id".into(), string_value(&request.request_id)),
        ("model_id".into(), string_value(&request.model_id)),
        ("model_version".into(), string_value(&request.model_version)),
        (
            "trigger".into(),
            Value::Enum(trigger_index, request.trigger.as_str().to_owned()),
        ),
        (
            "reasons".into(),
            Value::Array(request.reasons.iter().map(|r| string_value(r)).collect()),
        ),
        (
            "data_from".into(),
            Value::TimestampMillis(request.data_from),
        ),
        ("data_to".into(), Value::TimestampMillis(request.data_to)),
        ("source_offsets".into(), Value::Array(offsets)),
        (
            "created_at".into(),
            Value::TimestampMillis(request.created_at),
        ),
    ]);
    encode_with(retrain_request_schema(), value, "RetrainRequest")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use apache_avro::reader::datum::GenericDatumReader;
    use apache_avro::schema::RecordSchema;
    use proptest::prelude::*;

    use super::*;
    use crate::monitor::output::{AlertState, OffsetRange, RetrainTrigger};

    // -- helpers: the reference side (apache-avro) ------------------------------------------

    fn reference_encode(schema: &Schema, value: Value) -> Vec<u8> {
        apache_avro::writer::datum::GenericDatumWriter::builder(schema)
            .build()
            .unwrap()
            .write_value_to_vec(value)
            .unwrap()
    }

    fn reference_decode(schema: &Schema, mut bytes: &[u8]) -> Value {
        let value = GenericDatumReader::builder(schema)
            .build()
            .unwrap()
            .read_value(&mut bytes);
        assert!(bytes.is_empty(), "apache-avro left {} bytes", bytes.len());
        value.unwrap()
    }

    fn null() -> Value {
        Value::Union(0, Box::new(Value::Null))
    }

    fn some(value: Value) -> Value {
        Value::Union(1, Box::new(value))
    }

    fn feature_to_value(value: &FeatureValue<'_>) -> Value {
        match value {
            FeatureValue::Null => null(),
            FeatureValue::Number(x) => Value::Union(1, Box::new(Value::Double(*x))),
            FeatureValue::Text(s) => Value::Union(2, Box::new(Value::String(s.to_string()))),
            FeatureValue::Bool(b) => Value::Union(3, Box::new(Value::Boolean(*b))),
        }
    }

    fn map_value<T>(entries: &[(Cow<'_, str>, T)], f: impl Fn(&T) -> Value) -> Value {
        Value::Map(entries.iter().map(|(k, v)| (k.to_string(), f(v))).collect())
    }

    /// The apache-avro `Value` of an event. `attributes_as_null` picks between the two
    /// encodings of "no attributes" (null, or an empty map) that both must decode to `[]`.
    fn prediction_to_value(event: &PredictionEvent<'_>, attributes_as_null: bool) -> Value {
        let p = &event.prediction;
        let attributes = if event.attributes.is_empty() && attributes_as_null {
            null()
        } else {
            some(map_value(&event.attributes, |v| {
                Value::String(v.to_string())
            }))
        };
        Value::Record(vec![
            ("event_id".into(), Value::String(event.event_id.to_string())),
            ("model_id".into(), Value::String(event.model_id.to_string())),
            (
                "model_version".into(),
                Value::String(event.model_version.to_string()),
            ),
            ("timestamp".into(), Value::TimestampMillis(event.timestamp)),
            (
                "features".into(),
                map_value(&event.features, feature_to_value),
            ),
            (
                "prediction".into(),
                Value::Record(vec![
                    (
                        "score".into(),
                        p.score.map_or_else(null, |x| some(Value::Double(x))),
                    ),
                    (
                        "label".into(),
                        p.label
                            .as_ref()
                            .map_or_else(null, |s| some(Value::String(s.to_string()))),
                    ),
                    (
                        "probabilities".into(),
                        p.probabilities
                            .as_ref()
                            .map_or_else(null, |m| some(map_value(m, |x| Value::Double(*x)))),
                    ),
                ]),
            ),
            ("attributes".into(), attributes),
        ])
    }

    /// Compares apache-avro values with NaN equal to itself (bitwise), since NaN features are
    /// part of what must round-trip.
    fn same_value(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Double(x), Value::Double(y)) => x.to_bits() == y.to_bits(),
            (Value::Union(i, x), Value::Union(j, y)) => i == j && same_value(x, y),
            (Value::Record(x), Value::Record(y)) => {
                x.len() == y.len()
                    && x.iter()
                        .zip(y)
                        .all(|((n, v), (m, w))| n == m && same_value(v, w))
            }
            (Value::Map(x), Value::Map(y)) => {
                x.len() == y.len()
                    && x.iter()
                        .all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w)))
            }
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same_value(v, w))
            }
            _ => a == b,
        }
    }

    /// An order-insensitive, NaN-tolerant fingerprint of an event: the reference encoder
    /// writes maps in `HashMap` order, so only the set of entries can be compared.
    fn canonical(event: &PredictionEvent<'_>) -> String {
        fn sorted(mut items: Vec<String>) -> Vec<String> {
            items.sort();
            items
        }
        let feature = |v: &FeatureValue<'_>| match v {
            FeatureValue::Number(x) => format!("n{:016x}", x.to_bits()),
            other => format!("{other:?}"),
        };
        let features = sorted(
            event
                .features
                .iter()
                .map(|(k, v)| format!("{k:?}={}", feature(v)))
                .collect(),
        );
        let probabilities = event.prediction.probabilities.as_ref().map(|m| {
            sorted(
                m.iter()
                    .map(|(k, x)| format!("{k:?}={:016x}", x.to_bits()))
                    .collect(),
            )
        });
        let attributes = sorted(
            event
                .attributes
                .iter()
                .map(|(k, v)| format!("{k:?}={v:?}"))
                .collect(),
        );
        format!(
            "{:?} {:?} {:?} {} {features:?} {:?} {:?} {probabilities:?} {attributes:?}",
            event.event_id,
            event.model_id,
            event.model_version,
            event.timestamp,
            event.prediction.score.map(f64::to_bits),
            event.prediction.label,
        )
    }

    fn sample_event() -> PredictionEvent<'static> {
        PredictionEvent {
            event_id: "e-1".into(),
            model_id: "fraud".into(),
            model_version: "2024-06".into(),
            timestamp: 1_718_000_000_000,
            features: vec![
                ("amount".into(), FeatureValue::Number(12.5)),
                ("country".into(), FeatureValue::Text("FR".into())),
                ("new_device".into(), FeatureValue::Bool(true)),
                ("age".into(), FeatureValue::Null),
                ("ratio".into(), FeatureValue::Number(f64::NAN)),
            ],
            prediction: Prediction {
                score: Some(0.25),
                label: Some("legit".into()),
                probabilities: Some(vec![("legit".into(), 0.75), ("fraud".into(), 0.25)]),
            },
            attributes: vec![
                ("segment".into(), "smb".into()),
                ("région".into(), "Île".into()),
            ],
        }
    }

    // -- strategies --------------------------------------------------------------------------

    fn any_double() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
        ]
    }

    fn any_feature() -> impl Strategy<Value = FeatureValue<'static>> {
        prop_oneof![
            Just(FeatureValue::Null),
            any_double().prop_map(FeatureValue::Number),
            any::<String>().prop_map(|s| FeatureValue::Text(s.into())),
            Just(FeatureValue::Text("".into())),
            any::<bool>().prop_map(FeatureValue::Bool),
        ]
    }

    fn entries<T: std::fmt::Debug>(
        values: impl Strategy<Value = T>,
        max: usize,
    ) -> impl Strategy<Value = Vec<(Cow<'static, str>, T)>> {
        // Unique keys: the reference `Value::Map` is a `HashMap` and would merge duplicates.
        proptest::collection::hash_map(any::<String>(), values, 0..max)
            .prop_map(|m| m.into_iter().map(|(k, v)| (Cow::Owned(k), v)).collect())
    }

    prop_compose! {
        fn any_prediction()(
            event_id in any::<String>(),
            model_id in "[a-z]{0,12}",
            model_version in any::<String>(),
            timestamp in any::<i64>(),
            features in entries(any_feature(), 64),
            score in proptest::option::of(any_double()),
            label in proptest::option::of(any::<String>()),
            probabilities in proptest::option::of(entries(any_double(), 8)),
            attributes in entries(any::<String>().prop_map(Cow::Owned), 6),
        ) -> PredictionEvent<'static> {
            PredictionEvent {
                event_id: event_id.into(),
                model_id: model_id.into(),
                model_version: model_version.into(),
                timestamp,
                features,
                prediction: Prediction {
                    score,
                    label: label.map(Cow::Owned),
                    probabilities,
                },
                attributes,
            }
        }
    }

    // -- tests -------------------------------------------------------------------------------

    #[test]
    fn schemas_parse_and_mirror_the_structs() {
        fn field_names(schema: &Schema) -> Vec<String> {
            match schema {
                Schema::Record(RecordSchema { fields, .. }) => {
                    fields.iter().map(|f| f.name.clone()).collect()
                }
                other => panic!("not a record: {other:?}"),
            }
        }
        fn json_keys(value: serde_json::Value) -> Vec<String> {
            let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
            keys.sort();
            keys
        }
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        assert_eq!(
            field_names(prediction_event_schema()),
            [
                "event_id",
                "model_id",
                "model_version",
                "timestamp",
                "features",
                "prediction",
                "attributes"
            ]
        );
        assert_eq!(
            field_names(label_event_schema()),
            ["event_id", "model_id", "timestamp", "label"]
        );
        // The output schemas have exactly the fields serde gives the structs (the JSON mirror).
        let alert = sample_alert();
        assert_eq!(
            sorted(field_names(drift_alert_schema())),
            json_keys(serde_json::to_value(&alert).unwrap())
        );
        let request = sample_request();
        assert_eq!(
            sorted(field_names(retrain_request_schema())),
            json_keys(serde_json::to_value(&request).unwrap())
        );
        for schema in [drift_alert_schema(), retrain_request_schema()] {
            assert!(schema.namespace().is_some_and(|ns| ns == "io.driftwatch"));
        }
    }

    #[test]
    fn sample_event_round_trips_against_the_reference() {
        let event = sample_event();
        let ours = encode_prediction_avro(&event);
        // Our encoder is readable by the reference reader...
        let read = reference_decode(prediction_event_schema(), &ours);
        assert!(
            same_value(&read, &prediction_to_value(&event, true)),
            "{read:?}"
        );
        // ...and our decoder reads the reference encoder.
        let theirs = reference_encode(prediction_event_schema(), prediction_to_value(&event, true));
        let decoded = decode_prediction(&theirs).unwrap();
        assert_eq!(canonical(&decoded), canonical(&event));
        // Our encoder keeps the feature order; decoding gives the event back exactly.
        let decoded = decode_prediction(&ours).unwrap();
        assert_eq!(format!("{decoded:?}"), format!("{event:?}"));
    }

    #[test]
    fn labels_round_trip_both_branches() {
        for label in [LabelValue::Text("churned".into()), LabelValue::Number(-3.5)] {
            let event = LabelEvent {
                event_id: "e".into(),
                model_id: "m".into(),
                timestamp: -1,
                label,
            };
            let (index, inner) = match &event.label {
                LabelValue::Text(s) => (0, Value::String(s.to_string())),
                LabelValue::Number(x) => (1, Value::Double(*x)),
            };
            let value = Value::Record(vec![
                ("event_id".into(), Value::String("e".into())),
                ("model_id".into(), Value::String("m".into())),
                ("timestamp".into(), Value::TimestampMillis(-1)),
                ("label".into(), Value::Union(index, Box::new(inner))),
            ]);
            let theirs = reference_encode(label_event_schema(), value.clone());
            assert_eq!(encode_label_avro(&event), theirs);
            assert_eq!(decode_label(&theirs).unwrap(), event);
            assert_eq!(
                decode_event(&theirs, EventKind::Label).unwrap(),
                Event::Label(event)
            );
        }
    }

    #[test]
    fn map_blocks_with_negative_counts_decode() {
        // features as two blocks — one with a negative count and a byte size, one plain —
        // the way buffering writers (Java's, apache-avro with a block size) write them.
        let mut entry_a = Vec::new();
        put_str(&mut entry_a, "a");
        put_long(&mut entry_a, 1);
        put_double(&mut entry_a, 1.5);
        let mut entry_b = Vec::new();
        put_str(&mut entry_b, "b");
        put_long(&mut entry_b, 2);
        put_str(&mut entry_b, "x");
        let mut body = Vec::new();
        put_str(&mut body, "id");
        put_str(&mut body, "m");
        put_str(&mut body, "v");
        put_long(&mut body, 42);
        put_long(&mut body, -2);
        put_len(&mut body, entry_a.len() + entry_b.len());
        body.extend_from_slice(&entry_a);
        body.extend_from_slice(&entry_b);
        put_long(&mut body, 1);
        put_str(&mut body, "c");
        put_long(&mut body, 0);
        put_long(&mut body, 0); // end of features
        put_long(&mut body, 0); // score: null
        put_long(&mut body, 0); // label: null
        put_long(&mut body, 1); // probabilities: a map in a negative-count block
        put_long(&mut body, -1);
        put_len(&mut body, 2 + 8);
        put_str(&mut body, "p");
        put_double(&mut body, 0.5);
        put_long(&mut body, 0);
        put_long(&mut body, 0); // attributes: null

        let decoded = decode_prediction(&body).unwrap();
        assert_eq!(
            decoded.features,
            vec![
                (Cow::Borrowed("a"), FeatureValue::Number(1.5)),
                (Cow::Borrowed("b"), FeatureValue::Text("x".into())),
                (Cow::Borrowed("c"), FeatureValue::Null),
            ]
        );
        assert_eq!(
            decoded.prediction.probabilities,
            Some(vec![("p".into(), 0.5)])
        );
        // The reference reader agrees on the same bytes.
        let reference = reference_decode(prediction_event_schema(), &body);
        assert!(
            same_value(&reference, &prediction_to_value(&decoded, true)),
            "{reference:?}"
        );

        // A block whose declared byte size disagrees with its entries is rejected.
        let mut lying = body.clone();
        let size_at = 3 + 2 + 2 + 1 + 1; // the three strings, the timestamp, the count
        lying[size_at] += 2;
        let err = decode_prediction(&lying).unwrap_err();
        assert_eq!(err.reason(), "invalid_value", "{err}");
    }

    #[test]
    fn every_prefix_is_truncated() {
        let full = encode_prediction_avro(&sample_event());
        assert!(decode_prediction(&full).is_ok());
        for end in 0..full.len() {
            let err = decode_prediction(&full[..end]).unwrap_err();
            assert_eq!(err.reason(), "truncated", "prefix of {end} bytes: {err}");
        }
        let label = encode_label_avro(&LabelEvent {
            event_id: "e".into(),
            model_id: "m".into(),
            timestamp: 7,
            label: LabelValue::Number(1.0),
        });
        for end in 0..label.len() {
            assert_eq!(
                decode_label(&label[..end]).unwrap_err().reason(),
                "truncated"
            );
        }
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut body = encode_prediction_avro(&sample_event());
        let len = body.len();
        body.extend_from_slice(&[0, 0]);
        assert_eq!(
            decode_prediction(&body),
            Err(DecodeError::TrailingBytes {
                offset: len,
                count: 2
            })
        );
    }

    #[test]
    fn malformed_varints_and_lengths_are_rejected() {
        // 11 continuation bytes: longer than any 64-bit varint.
        let err = decode_prediction(&[0xff; 11]).unwrap_err();
        assert_eq!(err.reason(), "invalid_value", "{err}");
        assert!(err.to_string().contains("longer than 10 bytes"), "{err}");
        // A 10th byte with more than bit 63.
        let mut overflow = vec![0xff; 9];
        overflow.push(0x02);
        let err = decode_prediction(&overflow).unwrap_err();
        assert!(err.to_string().contains("overflows"), "{err}");
        // The largest valid varints decode (i64::MIN and i64::MAX as timestamps).
        for timestamp in [i64::MIN, i64::MAX] {
            let event = PredictionEvent {
                timestamp,
                ..sample_event()
            };
            assert_eq!(
                decode_prediction(&encode_prediction_avro(&event))
                    .unwrap()
                    .timestamp,
                timestamp
            );
        }
        // A negative string length.
        let mut negative = Vec::new();
        put_long(&mut negative, -3);
        let err = decode_prediction(&negative).unwrap_err();
        assert_eq!(err.reason(), "invalid_value");
        assert!(err.to_string().contains("negative length -3"), "{err}");
        // A string length far beyond the payload.
        let mut long = Vec::new();
        put_long(&mut long, i64::MAX);
        assert_eq!(decode_prediction(&long).unwrap_err().reason(), "truncated");
    }

    fn header() -> Vec<u8> {
        let mut body = Vec::new();
        put_str(&mut body, "id");
        put_str(&mut body, "m");
        put_str(&mut body, "v");
        put_long(&mut body, 42);
        body
    }

    #[test]
    fn hostile_block_counts_fail_without_allocating() {
        for count in [i64::MAX, i64::MIN, 1 << 40, -(1 << 40)] {
            let mut body = header();
            put_long(&mut body, count);
            if count < 0 {
                put_long(&mut body, 0);
            }
            let err = decode_prediction(&body).unwrap_err();
            assert_eq!(err.reason(), "truncated", "count {count}: {err}");
        }
        // A negative block byte size.
        let mut body = header();
        put_long(&mut body, -1);
        put_long(&mut body, -5);
        assert_eq!(
            decode_prediction(&body).unwrap_err().reason(),
            "invalid_value"
        );
    }

    #[test]
    fn bad_union_indexes_booleans_and_utf8_are_rejected() {
        let feature = |bytes: &[u8]| {
            let mut body = header();
            put_long(&mut body, 1);
            put_str(&mut body, "f");
            body.extend_from_slice(bytes);
            put_long(&mut body, 0);
            body.extend_from_slice(&[0, 0, 0, 0]);
            body
        };
        assert!(decode_prediction(&feature(&[6, 1])).is_ok()); // branch 3 (boolean), true
        let err = decode_prediction(&feature(&[8])).unwrap_err(); // branch 4
        assert!(err.to_string().contains("union branch 4"), "{err}");
        let err = decode_prediction(&feature(&[1])).unwrap_err(); // branch -1
        assert_eq!(err.reason(), "invalid_value");
        let err = decode_prediction(&feature(&[6, 2])).unwrap_err(); // boolean byte 2
        assert!(err.to_string().contains("neither 0 nor 1"), "{err}");
        // Branch 2 (string) of 4 bytes, the third of which is not UTF-8.
        let err = decode_prediction(&feature(&[4, 8, b'o', b'k', 0xff, b'!'])).unwrap_err();
        let utf8_at = header().len() + 1 + 2 + 1 + 1 + 2;
        assert_eq!(
            err,
            DecodeError::InvalidUtf8 {
                field: "features".into(),
                offset: utf8_at
            }
        );
    }

    #[test]
    fn alerts_and_requests_encode_against_the_schemas() {
        for alert in [
            sample_alert(),
            DriftAlert {
                p_value: None,
                state: AlertState::Resolved,
                ..sample_alert()
            },
        ] {
            let bytes = alert_to_avro(&alert).unwrap();
            let Value::Record(fields) = reference_decode(drift_alert_schema(), &bytes) else {
                panic!("not a record");
            };
            let fields: HashMap<_, _> = fields.into_iter().collect();
            assert_eq!(fields["alert_id"], Value::String(alert.alert_id.clone()));
            assert_eq!(
                fields["state"],
                Value::Enum(
                    u32::from(alert.state == AlertState::Resolved),
                    alert.state.as_str().into(),
                )
            );
            let p_value = alert.p_value.map_or_else(null, |p| some(Value::Double(p)));
            assert_eq!(fields["p_value"], p_value);
            assert_eq!(fields["reference_count"], Value::Long(1000));
            assert_eq!(
                fields["emitted_at"],
                Value::TimestampMillis(alert.emitted_at)
            );
        }
        for trigger in [
            RetrainTrigger::DataDrift,
            RetrainTrigger::ConceptDrift,
            RetrainTrigger::Performance,
            RetrainTrigger::Scheduled,
            RetrainTrigger::Manual,
        ] {
            let request = RetrainRequest {
                trigger,
                ..sample_request()
            };
            let bytes = retrain_to_avro(&request).unwrap();
            let Value::Record(fields) = reference_decode(retrain_request_schema(), &bytes) else {
                panic!("not a record");
            };
            let fields: HashMap<_, _> = fields.into_iter().collect();
            let Value::Enum(_, symbol) = &fields["trigger"] else {
                panic!("not an enum")
            };
            assert_eq!(symbol, trigger.as_str());
            assert_eq!(
                fields["source_offsets"],
                Value::Array(vec![Value::Record(vec![
                    (
                        "topic".into(),
                        Value::String("inference.predictions".into())
                    ),
                    ("partition".into(), Value::Int(3)),
                    ("from_offset".into(), Value::Long(100)),
                    ("to_offset".into(), Value::Long(250)),
                ])])
            );
            assert_eq!(
                fields["created_at"],
                Value::TimestampMillis(request.created_at)
            );
        }
    }

    fn sample_alert() -> DriftAlert {
        DriftAlert {
            alert_id: "a1".into(),
            model_id: "fraud".into(),
            model_version: "v1".into(),
            subject: "amount".into(),
            detector: "ks".into(),
            statistic: 0.31,
            threshold: 0.05,
            p_value: Some(0.001),
            state: AlertState::Firing,
            window_start: 1_000,
            window_end: 61_000,
            reference_count: 1000,
            window_count: 120,
            evidence_sha256: "00".repeat(32),
            detected_at: 61_000,
            emitted_at: 1_718_000_000_000,
        }
    }

    fn sample_request() -> RetrainRequest {
        RetrainRequest {
            request_id: "r1".into(),
            model_id: "fraud".into(),
            model_version: "v1".into(),
            trigger: RetrainTrigger::DataDrift,
            reasons: vec!["a1".into(), "psi on amount".into()],
            data_from: 1_000,
            data_to: 61_000,
            source_offsets: vec![OffsetRange {
                topic: "inference.predictions".into(),
                partition: 3,
                from_offset: 100,
                to_offset: 250,
            }],
            created_at: 61_000,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn short_ascii_agrees_with_std(
            // Every length up to the fast path's bound and past it, mostly ASCII with the odd
            // high byte anywhere (first, last, inside a word, in the overlap).
            bytes in prop::collection::vec(prop_oneof![9 => 0u8..0x80, 1 => 0x80u8..=0xff], 0..80),
        ) {
            prop_assert_eq!(short_ascii(&bytes), bytes.is_ascii());
            for cut in 0..bytes.len() {
                prop_assert_eq!(short_ascii(&bytes[cut..]), bytes[cut..].is_ascii());
            }
        }

        #[test]
        fn reference_encoding_decodes_to_the_same_event(
            event in any_prediction(),
            attributes_as_null in any::<bool>(),
        ) {
            let bytes = reference_encode(
                prediction_event_schema(),
                prediction_to_value(&event, attributes_as_null),
            );
            let decoded = decode_prediction(&bytes).unwrap();
            prop_assert_eq!(canonical(&decoded), canonical(&event));
        }

        #[test]
        fn our_encoding_is_what_the_reference_reads(event in any_prediction()) {
            let bytes = encode_prediction_avro(&event);
            let read = reference_decode(prediction_event_schema(), &bytes);
            prop_assert!(same_value(&read, &prediction_to_value(&event, true)));
            // And it decodes back exactly, order included.
            let decoded = decode_prediction(&bytes).unwrap();
            prop_assert_eq!(format!("{decoded:?}"), format!("{event:?}"));
        }

        #[test]
        fn string_fast_path_agrees_with_std(
            bytes in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..48),
                proptest::collection::vec(0u8..0x80, 0..48),
                any::<String>().prop_map(String::into_bytes),
            ],
        ) {
            prop_assert_eq!(utf8(&bytes), std::str::from_utf8(&bytes));
        }

        #[test]
        fn random_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_prediction(&bytes);
            let _ = decode_label(&bytes);
        }

        #[test]
        fn random_bytes_after_a_valid_header_never_panic(
            tail in proptest::collection::vec(any::<u8>(), 0..256)
        ) {
            // Gets random input past the strings, into the maps and unions.
            let mut body = header();
            body.extend_from_slice(&tail);
            let _ = decode_prediction(&body);
        }
    }
}
