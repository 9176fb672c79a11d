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

use apache_avro::types::Value;

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
/// prediction or label schema can read, or a union of such (a mixed stream).
fn container_records<E: From<EventsError>>(
    path: &Path,
    source: impl Read,
    read: &Cell<u64>,
    mut each: impl FnMut(Position, u64, Result<Event<'_>, DecodeError>) -> Result<(), E>,
) -> Result<(), E> {
    let unreadable = |detail: String| EventsError::Container {
        path: path.to_owned(),
        detail,
    };
    let mut records = guarded(|| apache_avro::Reader::new(source))
        .map_err(&unreadable)?
        .map_err(|e| unreadable(format!("not a readable Avro object container file: {e}")))?;
    let kinds = resolve::container_kinds(records.writer_schema()).map_err(|detail| {
        unreadable(format!(
            "its records cannot be read as driftwatch events: their schema is {detail}"
        ))
    })?;
    let mut number = 0_u64;
    loop {
        let next = guarded(|| records.next());
        number += 1;
        let value = match next {
            Ok(None) => return Ok(()),
            Ok(Some(Ok(value))) => value,
            Ok(Some(Err(error))) => {
                return Err(unreadable(format!(
                    "record {number} does not read ({error}); a container cannot be read past a \
                     damaged block"
                ))
                .into())
            }
            Err(failed) => return Err(unreadable(format!("record {number}: {failed}")).into()),
        };
        let (kind, value) = match (&kinds, value) {
            (resolve::ContainerKinds::Single(kind), value) => (Some(*kind), value),
            (resolve::ContainerKinds::Union(kinds), Value::Union(branch, inner)) => {
                (kinds.get(branch as usize).copied().flatten(), *inner)
            }
            (resolve::ContainerKinds::Union(_), other) => (None, other),
        };
        let event = kind
            .ok_or_else(|| DecodeError::InvalidValue {
                field: "(record)".to_owned(),
                detail: "a branch of the file's union that is neither a prediction nor a label \
                         event"
                    .to_owned(),
            })
            .and_then(|kind| resolve::event_from_value(value, kind));
        each(Position::Record(number), read.get(), event)?;
    }
}

/// Runs `read`, a step of apache-avro's reading. apache-avro reads what a damaged file
/// describes; should that make it panic, it is a damaged input to report like the rest, not a
/// reason to stop without a word.
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
