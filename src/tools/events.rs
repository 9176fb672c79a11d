//! Recorded events from a file, for `replay` and `baseline`: JSON Lines (one event object per
//! line) or an Avro object container file, told apart by the file's first bytes.
//!
//! Owns: opening the file (`-` for stdin), telling the formats apart, reading lines or
//! container records, and the errors that name the file and what could not be read. Decoding
//! itself is the codec's: JSON lines through [`json::decode_event`], container records
//! through the schema resolution of [`resolve`], so a recorded event means what it would mean
//! on a topic.

use std::cell::Cell;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::codec::{json, resolve, DecodeError, EventKind};
use crate::event::Event;

/// The first bytes of an Avro object container file (the Avro specification's "Object
/// Container Files"); no JSON text starts with them.
const AVRO_CONTAINER_MAGIC: [u8; 4] = *b"Obj\x01";

/// Where an event was in its file (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// A line of a JSON Lines file.
    Line(u64),
    /// A record of an Avro container file.
    Record(u64),
}

impl Position {
    /// The line or record number.
    pub fn number(self) -> u64 {
        match self {
            Position::Line(n) | Position::Record(n) => n,
        }
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::Line(n) => write!(f, "line {n}"),
            Position::Record(n) => write!(f, "record {n}"),
        }
    }
}

/// Why a file's events could not be read (a malformed event is not this: it is handed to the
/// caller, which decides whether to skip it).
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file as given.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// An Avro container file whose header, schema or a block cannot be read.
    #[error("{path}: {detail}")]
    Container {
        /// The file as given.
        path: PathBuf,
        /// What could not be read.
        detail: String,
    },
}

/// Calls `each(position, bytes read so far, event)` for every non-blank line or every
/// container record of `path`, in order; the event is the decode error when it does not
/// decode (a JSON line that is not an event, a container record that is not one). An error
/// `each` returns stops the reading and is returned.
///
/// # Errors
/// [`EventsError`] (converted into `E`) when the file cannot be read, or what `each` returned.
pub fn for_each_event<E: From<EventsError>>(
    path: &Path,
    mut each: impl FnMut(Position, u64, Result<Event<'_>, DecodeError>) -> Result<(), E>,
) -> Result<(), E> {
    let io_error = |source| EventsError::Io {
        path: path.to_owned(),
        source,
    };
    let mut reader = crate::tools::lines::open(path).map_err(|error| match error {
        crate::tools::lines::InputError::Io { path, source } => EventsError::Io { path, source },
        other => io_error(std::io::Error::other(other.to_string())),
    })?;
    // Four bytes tell the formats apart; they are read off and put back in front, so stdin
    // works as well as a file.
    let mut head = Vec::with_capacity(AVRO_CONTAINER_MAGIC.len());
    (&mut reader)
        .take(AVRO_CONTAINER_MAGIC.len() as u64)
        .read_to_end(&mut head)
        .map_err(io_error)?;
    let container = head == AVRO_CONTAINER_MAGIC;
    let read = Rc::new(Cell::new(0_u64));
    let source = Counting {
        inner: std::io::Cursor::new(head).chain(reader),
        read: Rc::clone(&read),
    };
    if container {
        container_records(path, source, &read, each)
    } else {
        let mut line_number = 0_u64;
        for line in std::io::BufReader::new(source).split(b'\n') {
            let line = line.map_err(io_error)?;
            line_number += 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let event = json::decode_event(&line, EventKind::Prediction);
            each(Position::Line(line_number), read.get(), event)?;
        }
        Ok(())
    }
}

/// The records of an Avro object container file: its writer schema must be one our
/// prediction or label schema can read, or a union of such (a mixed stream). The framing
/// (header, blocks, sync markers) is read here and each block's records through
/// [`resolve::ContainerDecoder`], which walks them strictly.
fn container_records<E: From<EventsError>>(
    path: &Path,
    mut source: impl Read,
    read: &Cell<u64>,
    mut each: impl FnMut(Position, u64, Result<Event<'_>, DecodeError>) -> Result<(), E>,
) -> Result<(), E> {
    let unreadable = |detail: String| EventsError::Container {
        path: path.to_owned(),
        detail,
    };
    let header = read_header(&mut source).map_err(|detail| {
        unreadable(format!(
            "not a readable Avro object container file: {detail}"
        ))
    })?;
    let writer = std::str::from_utf8(&header.schema)
        .map_err(|e| e.to_string())
        .and_then(|text| apache_avro::Schema::parse_str(text).map_err(|e| e.to_string()))
        .map_err(|e| {
            unreadable(format!(
                "not a readable Avro object container file: its schema: {e}"
            ))
        })?;
    let decoder = resolve::ContainerDecoder::new(&writer).map_err(|detail| {
        unreadable(format!(
            "its records cannot be read as driftwatch events: their schema is {detail}"
        ))
    })?;
    let (mut number, mut block) = (0_u64, 0_u64);
    loop {
        block += 1;
        let damaged = |detail: String| {
            unreadable(format!(
                "block {block} (after record {number}) is damaged: {detail}; a container cannot \
                 be read past a damaged block"
            ))
        };
        // The end of the file is only clean where a block would start.
        let Some(count) = read_long(&mut source, true).map_err(&damaged)? else {
            return Ok(());
        };
        let size = read_long(&mut source, false)
            .map_err(&damaged)?
            .unwrap_or_default();
        let (Ok(count), Ok(size)) = (u64::try_from(count), u64::try_from(size)) else {
            return Err(damaged(format!("a negative count ({count}) or size ({size})")).into());
        };
        // Read up to the size given, never allocating more than the file holds.
        let mut data = Vec::new();
        (&mut source)
            .take(size)
            .read_to_end(&mut data)
            .map_err(|e| damaged(e.to_string()))?;
        if data.len() as u64 != size {
            return Err(damaged("the file ends inside it".to_owned()).into());
        }
        let mut sync = [0_u8; 16];
        source
            .read_exact(&mut sync)
            .map_err(|_| damaged("the file ends before its sync marker".to_owned()))?;
        if sync != header.sync {
            return Err(damaged("its sync marker is not the file's".to_owned()).into());
        }
        let codec = header.codec;
        guarded(|| codec.decompress(&mut data))
            .map_err(&damaged)?
            .map_err(|e| damaged(format!("it does not decompress ({e})")))?;
        let records = decoder
            .records(&data, count)
            .map_err(|e| damaged(format!("its records do not fit it ({e})")))?;
        for record in records {
            number += 1;
            let event = guarded(|| decoder.event(&data[record])).unwrap_or_else(|failed| {
                Err(DecodeError::InvalidValue {
                    field: "(record)".to_owned(),
                    detail: failed,
                })
            });
            each(Position::Record(number), read.get(), event)?;
        }
    }
}

/// What an Avro object container file's header says.
struct Header {
    /// The writer schema's JSON text (`avro.schema`).
    schema: Vec<u8>,
    /// The blocks' codec (`avro.codec`).
    codec: apache_avro::Codec,
    /// The marker that ends every block.
    sync: [u8; 16],
}

/// Reads a container's header (after its magic bytes, which the caller checked and left in
/// `source`): the metadata map, then the sync marker.
fn read_header(source: &mut impl Read) -> Result<Header, String> {
    /// Longest metadata value read (schemas are kilobytes).
    const MAX_METADATA_BYTES: u64 = 64 << 20;
    let mut magic = [0_u8; 4];
    source.read_exact(&mut magic).map_err(|e| e.to_string())?;
    if magic != AVRO_CONTAINER_MAGIC {
        return Err("bad magic bytes".to_owned());
    }
    let bytes = |source: &mut dyn Read| -> Result<Vec<u8>, String> {
        let length = read_long(source, false)?.unwrap_or_default();
        let length = u64::try_from(length)
            .ok()
            .filter(|&l| l <= MAX_METADATA_BYTES)
            .ok_or_else(|| format!("a metadata length of {length}"))?;
        let mut value = Vec::new();
        source
            .take(length)
            .read_to_end(&mut value)
            .map_err(|e| e.to_string())?;
        if value.len() as u64 != length {
            return Err("the file ends inside its header".to_owned());
        }
        Ok(value)
    };
    let (mut schema, mut codec) = (None, None);
    loop {
        let count = read_long(source, false)?.unwrap_or_default();
        if count == 0 {
            break;
        }
        if count < 0 {
            // A negative count is followed by the block's size in bytes, unused here.
            read_long(source, false)?;
        }
        for _ in 0..count.unsigned_abs() {
            let key = bytes(source)?;
            let value = bytes(source)?;
            match key.as_slice() {
                b"avro.schema" => schema = Some(value),
                b"avro.codec" => codec = Some(value),
                _ => {}
            }
        }
    }
    let codec = match codec.as_deref() {
        None | Some(b"null") => apache_avro::Codec::Null,
        Some(b"deflate") => apache_avro::Codec::Deflate(apache_avro::DeflateSettings::default()),
        Some(b"snappy") => apache_avro::Codec::Snappy,
        Some(other) => {
            return Err(format!(
                "its codec {:?} is not supported (null, deflate and snappy are)",
                String::from_utf8_lossy(other)
            ))
        }
    };
    let schema = schema.ok_or("no avro.schema in its header")?;
    let mut sync = [0_u8; 16];
    source
        .read_exact(&mut sync)
        .map_err(|_| "the file ends inside its header".to_owned())?;
    Ok(Header {
        schema,
        codec,
        sync,
    })
}

/// Reads an Avro `long` (zig-zag varint). `None` at a clean end of the file when
/// `end_allowed` (before its first byte); an error anywhere else the file ends.
fn read_long(source: &mut (impl Read + ?Sized), end_allowed: bool) -> Result<Option<i64>, String> {
    let mut value = 0_u64;
    for shift in (0..70).step_by(7) {
        let mut byte = [0_u8; 1];
        match source.read(&mut byte) {
            Ok(0) if shift == 0 && end_allowed => return Ok(None),
            Ok(0) => return Err("the file ends inside a number".to_owned()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
        if shift == 63 && byte[0] > 1 {
            return Err("a number longer than 64 bits".to_owned());
        }
        value |= u64::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            return Ok(Some((value >> 1) as i64 ^ -((value & 1) as i64)));
        }
    }
    Err("a number longer than 64 bits".to_owned())
}

/// Runs `read`, a step of apache-avro's reading (decompressing a block, reading a record).
/// apache-avro reads what a damaged file describes; should that make it panic, it is a
/// damaged input to report like the rest, not a reason to stop without a word.
fn guarded<T>(read: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).map_err(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        format!("the Avro reader failed ({message})")
    })
}

/// A reader that counts the bytes read through it (for progress).
struct Counting<R> {
    inner: R,
    read: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{avro::prediction_event_schema, encode_prediction_avro};
    use crate::event::{FeatureValue, Prediction, PredictionEvent};
    use std::borrow::Cow;

    /// A container of driftwatch's prediction schema, null codec, whose one block holds
    /// `data` declared as `count` records.
    fn container(count: i64, data: &[u8]) -> Vec<u8> {
        let empty = apache_avro::Writer::new(prediction_event_schema(), Vec::new())
            .and_then(apache_avro::Writer::into_inner)
            .expect("a header");
        let sync = &empty[empty.len() - 16..];
        let mut file = empty.clone();
        let long = |value: i64, out: &mut Vec<u8>| {
            let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
            loop {
                let byte = (zigzag & 0x7f) as u8;
                zigzag >>= 7;
                if zigzag == 0 {
                    out.push(byte);
                    break;
                }
                out.push(byte | 0x80);
            }
        };
        long(count, &mut file);
        long(data.len() as i64, &mut file);
        file.extend_from_slice(data);
        file.extend_from_slice(sync);
        file
    }

    fn record() -> Vec<u8> {
        encode_prediction_avro(&PredictionEvent {
            event_id: Cow::Borrowed("e1"),
            model_id: Cow::Borrowed("m"),
            model_version: Cow::Borrowed("1"),
            timestamp: 5,
            features: vec![(Cow::Borrowed("x"), FeatureValue::Number(1.5))],
            prediction: Prediction {
                score: Some(0.25),
                label: None,
                probabilities: None,
            },
            attributes: vec![(Cow::Borrowed("region"), Cow::Borrowed("eu"))],
        })
    }

    /// The events of `bytes` as a file, or the error that stopped the reading.
    fn read(name: &str, bytes: &[u8]) -> Result<Vec<Result<String, String>>, EventsError> {
        let path = std::env::temp_dir().join(format!(
            "driftwatch-events-{}-{name}.avro",
            std::process::id()
        ));
        std::fs::write(&path, bytes).expect("a temp file");
        let mut seen = Vec::new();
        let result = for_each_event(&path, |_, _, event| {
            seen.push(event.map(|e| format!("{e:?}")).map_err(|e| e.to_string()));
            Ok::<(), EventsError>(())
        });
        let _ = std::fs::remove_file(&path);
        result.map(|()| seen)
    }

    #[test]
    fn container_blocks_are_read_strictly() {
        let record = record();
        let whole = read("whole", &container(1, &record)).expect("a sound file reads");
        assert_eq!(whole.len(), 1);
        assert!(
            whole[0].as_ref().is_ok_and(|e| e.contains("region")),
            "{whole:?}"
        );
        // apache-avro's own reader takes both of these as one event with no attributes: the
        // record cut short (its attributes missing), and a byte left after the block's records.
        let cut = &record[..record.len() - 8];
        for (name, bytes) in [
            ("cut", container(1, cut)),
            (
                "leftover",
                container(1, &[record.as_slice(), &[0]].concat()),
            ),
            ("count", container(2, &record)),
        ] {
            match read(name, &bytes) {
                Err(EventsError::Container { detail, .. }) => {
                    assert!(
                        detail.contains("block 1 (after record 0) is damaged"),
                        "{name}: {detail}"
                    );
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        // A file cut inside a block, and one whose block ends with another marker.
        let sound = container(1, &record);
        let mut foreign_sync = sound.clone();
        let last = foreign_sync.len() - 1;
        foreign_sync[last] ^= 1;
        for (name, bytes, reason) in [
            (
                "short",
                sound[..sound.len() - 20].to_vec(),
                "the file ends inside it",
            ),
            ("sync", foreign_sync, "its sync marker is not the file's"),
        ] {
            match read(name, &bytes) {
                Err(EventsError::Container { detail, .. }) => {
                    assert!(detail.contains(reason), "{name}: {detail}");
                }
                other => panic!("{name}: {other:?}"),
            }
        }
    }
}
