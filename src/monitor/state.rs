//! The state changelog's records: keys and versioned binary values of an engine's state.
//!
//! An engine's state is split into records so that a commit writes only what changed:
//! - one *engine* record per partition: the event-time clock, counters, the joined outcomes
//!   waiting for their pane and the label join's scalars;
//! - one *model* record per (model, version) monitor: pane windows, detectors (ADWIN
//!   included), alert state machines, cooldowns, quality trackers;
//! - one *references* record per (model, version): the frozen references of its series. They
//!   are most of a monitor's size (the exact reference sample of each numeric series, for
//!   KS) and change only when warm-up ends, so they are written then, not at every commit;
//! - *warm-up* chunks per (model, version), while it warms up: the numbers its warm-up
//!   samples received between two commits, written once each and deleted when the reference
//!   freezes (rewriting the growing sample at every commit cost the square of its length);
//! - *join* records: batches of waiting predictions and labels, and lists of entries that
//!   left them (see [`super::join`]; the join may hold a million entries, so a commit writes
//!   what changed, in a few records).
//!
//! Keys read `{group}/{partition}/e`, `{group}/{partition}/m/{model}/{version}`,
//! `{group}/{partition}/r/{model}/{version}`, `{group}/{partition}/w/{model}/{version}/{chunk:08x}`
//! and `{group}/{partition}/j/{b|x}{number:016x}`, with `%` and `/` escaped in names, so a compacted
//! topic keeps exactly the latest value of each and a consumer group finds its own records.
//! Partition, not only model and version, is part of the key because state is per partition:
//! a model whose events are spread over partitions has one monitor in each.
//!
//! Values start with the magic bytes `DW` and a little-endian `u16` format version, followed
//! by the postcard encoding (compact varints) of the record. A value of a format version this
//! release cannot read is refused with a message that says what to do, never misread.
//!
//! Pure: no Kafka here; the service moves these records.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::join::JoinRecord;

/// The format version this release writes.
pub const STATE_FORMAT_VERSION: u16 = 4;
/// The oldest format version this release reads.
pub const OLDEST_READABLE_FORMAT_VERSION: u16 = 3;
// History: 1 → 2 added the event-time jump guard to the pane clock and its counter.
// 2 → 3 moved the series' references out of the model record into a record of their own,
// and wrote the label join in batches instead of one record per entry.
// 3 → 4 moved the warm-up samples' numbers out of the model record into warm-up chunks. The
// layouts did not change: a v3 model record holds its numbers and has no chunks, and reads as
// such (state is upgraded in place). The version still changed so that a v3 release refuses
// a v4 model record, whose samples it would take as empty.

/// First bytes of every state value.
const MAGIC: [u8; 2] = *b"DW";

/// Which part of a partition's state a record holds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StateKey {
    /// The engine's own record.
    Engine,
    /// The monitor of one model version.
    Model {
        /// Model id.
        model_id: String,
        /// Model version.
        model_version: String,
    },
    /// The frozen references of one model version's series.
    References {
        /// Model id.
        model_id: String,
        /// Model version.
        model_version: String,
    },
    /// The numbers one model version's warm-up samples received between two commits.
    Warmup {
        /// Model id.
        model_id: String,
        /// Model version.
        model_version: String,
        /// Chunk number, from 0.
        chunk: u32,
    },
    /// A record of the label join: a batch of waiting entries or a removals list.
    Join(JoinRecord),
}

/// A record of the changelog: a key of one partition and its new value (`None` deletes it:
/// a tombstone, which compaction eventually removes).
#[derive(Debug, Clone, PartialEq)]
pub struct StateChange {
    /// What the record holds.
    pub key: StateKey,
    /// The encoded value, or `None` for a deletion.
    pub value: Option<Vec<u8>>,
}

/// Why a state record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The value does not start with the state magic bytes.
    #[error("not a driftwatch state record (bad magic bytes)")]
    NotState,
    /// Written by a release with another format.
    #[error(
        "state record format v{found} was written by another driftwatch release; this release \
         reads v{oldest} to v{supported}. Start from fresh state: use a new kafka.group_id or topics.state \
         (the old records stay for a rollback)"
    )]
    UnsupportedVersion {
        /// Version in the record.
        found: u16,
        /// Newest version this release reads (the one it writes).
        supported: u16,
        /// Oldest version this release reads.
        oldest: u16,
    },
    /// The value has the right header but does not decode.
    #[error("corrupt state record: {0}")]
    Corrupt(String),
    /// The key does not follow the state key layout.
    #[error("malformed state key {0:?}")]
    BadKey(String),
    /// A value could not be written: a driftwatch bug. It is reported rather than written
    /// as a record no restore could read, so the commit that would have carried it stops.
    #[error("a state value failed to encode (a driftwatch bug; nothing of it was committed): {0}")]
    Encode(String),
}

/// Encodes a state value: header, then postcard.
///
/// # Errors
/// [`StateError::Encode`] when the value refuses to serialize. Our state types serialize
/// infallibly into a growable buffer, except where a value checks itself while it is written
/// (a join batch whose entries disagree with its length): a failure is a programming error,
/// and the caller must not commit without the record. Writing an empty record instead would
/// commit the offsets past events whose state no restore can read.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, StateError> {
    let mut bytes = Vec::with_capacity(256);
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&STATE_FORMAT_VERSION.to_le_bytes());
    postcard::to_extend(value, bytes).map_err(|error| {
        StateError::Encode(match error {
            // Raised by the values that check themselves as they are written (a join batch
            // whose entries disagree with its length); postcard drops their message.
            postcard::Error::SerdeSerCustom => {
                "a part whose contents disagree with what was written before them (such as a \
                 label join batch with more or fewer entries than its length)"
                    .to_owned()
            }
            other => other.to_string(),
        })
    })
}

/// The format version of a state value written by [`encode`]; `None` when it is not one.
pub fn format_version(bytes: &[u8]) -> Option<u16> {
    (bytes.len() >= 4 && bytes[..2] == MAGIC).then(|| u16::from_le_bytes([bytes[2], bytes[3]]))
}

/// Decodes a state value written by [`encode`].
///
/// # Errors
/// [`StateError::NotState`], [`StateError::UnsupportedVersion`] or [`StateError::Corrupt`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StateError> {
    if bytes.len() < 4 || bytes[..2] != MAGIC {
        return Err(StateError::NotState);
    }
    let found = u16::from_le_bytes([bytes[2], bytes[3]]);
    if !(OLDEST_READABLE_FORMAT_VERSION..=STATE_FORMAT_VERSION).contains(&found) {
        return Err(StateError::UnsupportedVersion {
            found,
            supported: STATE_FORMAT_VERSION,
            oldest: OLDEST_READABLE_FORMAT_VERSION,
        });
    }
    postcard::from_bytes(&bytes[4..]).map_err(|e| {
        StateError::Corrupt(match e {
            // Raised by the types that check their parts as they are read (pane windows,
            // ADWIN histograms, score histograms); postcard drops their message, so say
            // what such a refusal means instead of "Serde Deserialization Error".
            postcard::Error::SerdeDeCustom => {
                "a part that does not fit the rest (a pane window, ADWIN histogram or score \
                 histogram out of shape)"
                    .to_owned()
            }
            other => other.to_string(),
        })
    })
}

/// Escapes `%` and `/` so names can be key segments.
fn escape(name: &str) -> String {
    name.replace('%', "%25").replace('/', "%2F")
}

fn unescape(segment: &str) -> String {
    segment.replace("%2F", "/").replace("%25", "%")
}

impl StateKey {
    /// The record key of this part of `partition`'s state for consumer group `group`.
    pub fn record_key(&self, group: &str, partition: i32) -> String {
        let prefix = format!("{}/{partition}/", escape(group));
        match self {
            StateKey::Engine => prefix + "e",
            StateKey::Model {
                model_id,
                model_version,
            } => format!("{prefix}m/{}/{}", escape(model_id), escape(model_version)),
            StateKey::References {
                model_id,
                model_version,
            } => format!("{prefix}r/{}/{}", escape(model_id), escape(model_version)),
            StateKey::Warmup {
                model_id,
                model_version,
                chunk,
            } => format!(
                "{prefix}w/{}/{}/{chunk:08x}",
                escape(model_id),
                escape(model_version)
            ),
            StateKey::Join(JoinRecord::Batch(first)) => format!("{prefix}j/b{first:016x}"),
            StateKey::Join(JoinRecord::Removals(sequence)) => {
                format!("{prefix}j/x{sequence:016x}")
            }
        }
    }

    /// Splits a record key into (group, partition, part).
    ///
    /// # Errors
    /// [`StateError::BadKey`] when it does not follow the layout.
    pub fn parse(record_key: &str) -> Result<(String, i32, StateKey), StateError> {
        let bad = || StateError::BadKey(record_key.to_owned());
        let mut segments = record_key.split('/');
        let group = unescape(segments.next().ok_or_else(bad)?);
        let partition: i32 = segments
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(bad)?;
        let kind = segments.next();
        if kind == Some("w") {
            let (model, version, chunk) = (segments.next(), segments.next(), segments.next());
            let (Some(model), Some(version), Some(chunk), None) =
                (model, version, chunk, segments.next())
            else {
                return Err(bad());
            };
            if chunk.len() != 8 {
                return Err(bad());
            }
            let key = StateKey::Warmup {
                model_id: unescape(model),
                model_version: unescape(version),
                chunk: u32::from_str_radix(chunk, 16).map_err(|_| bad())?,
            };
            return Ok((group, partition, key));
        }
        let key = match (kind, segments.next(), segments.next()) {
            (Some("e"), None, None) => StateKey::Engine,
            (Some("m"), Some(model), Some(version)) => StateKey::Model {
                model_id: unescape(model),
                model_version: unescape(version),
            },
            (Some("r"), Some(model), Some(version)) => StateKey::References {
                model_id: unescape(model),
                model_version: unescape(version),
            },
            (Some("j"), Some(record), None) if record.len() == 17 => {
                let number = u64::from_str_radix(&record[1..], 16).map_err(|_| bad())?;
                match &record[..1] {
                    "b" => StateKey::Join(JoinRecord::Batch(number)),
                    "x" => StateKey::Join(JoinRecord::Removals(number)),
                    _ => return Err(bad()),
                }
            }
            _ => return Err(bad()),
        };
        if segments.next().is_some() {
            return Err(bad());
        }
        Ok((group, partition, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_whatever_the_names() {
        let keys = [
            StateKey::Engine,
            StateKey::Model {
                model_id: "fraud/eu%v".into(),
                model_version: "2024-01/rc".into(),
            },
            StateKey::References {
                model_id: "m/%".into(),
                model_version: "%2F".into(),
            },
            StateKey::Warmup {
                model_id: "a/b".into(),
                model_version: "%".into(),
                chunk: 0,
            },
            StateKey::Warmup {
                model_id: "m".into(),
                model_version: "1".into(),
                chunk: u32::MAX,
            },
            StateKey::Join(JoinRecord::Batch(u64::MAX)),
            StateKey::Join(JoinRecord::Removals(7)),
        ];
        for key in keys {
            let record = key.record_key("team/a", 12);
            assert_eq!(
                StateKey::parse(&record).unwrap(),
                ("team/a".to_owned(), 12, key)
            );
        }
    }

    #[test]
    fn malformed_keys_are_refused() {
        for bad in [
            "",
            "g",
            "g/x/e",
            "g/1/q",
            "g/1/m/only",
            "g/1/r/only",
            "g/1/j/z0000000000000001",
            "g/1/e/x",
            "g/1/w/m/1",
            "g/1/w/m/1/0",
            "g/1/w/m/1/0000000g",
            "g/1/w/m/1/00000000/x",
        ] {
            assert!(
                matches!(StateKey::parse(bad), Err(StateError::BadKey(_))),
                "{bad}"
            );
        }
    }

    /// A pane window's record as the state encodes it (postcard writes a struct as the
    /// tuple of its fields): `cells`, `max_panes`, one open pane of `counts` cells, no closed
    /// pane, zero totals over `cells`, count 0, no sums.
    fn stored_window(cells: usize, counts: usize) -> Vec<u8> {
        type Sums = (u64, f64, f64);
        type ClosedPane = (i64, Vec<(u32, u64)>, Sums);
        let open: Vec<(i64, Vec<u32>, Sums)> = vec![(7, vec![0; counts], (0, 0.0, 0.0))];
        let closed: Vec<ClosedPane> = Vec::new();
        let totals = vec![0_u64; cells];
        encode(&(cells, 3_i64, open, closed, totals, 0_u64, (0_u64, 0.0, 0.0))).expect("encodes")
    }

    #[test]
    fn a_record_part_out_of_shape_is_refused_with_a_clear_message() {
        let window = decode::<crate::detect::window::PaneWindow>(&stored_window(4, 4)).unwrap();
        assert_eq!((window.cells(), window.open_panes()), (4, 1));
        let error = decode::<crate::detect::window::PaneWindow>(&stored_window(4, 3)).unwrap_err();
        let StateError::Corrupt(message) = error else {
            panic!("{error:?}");
        };
        assert!(message.contains("pane window"), "{message}");
    }

    #[test]
    fn a_value_that_fails_to_encode_is_an_error_not_an_empty_record() {
        struct Refuses;
        impl Serialize for Refuses {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("refused on purpose"))
            }
        }
        let error = encode(&(1_u32, Refuses)).unwrap_err();
        assert!(matches!(error, StateError::Encode(_)), "{error:?}");
        let message = error.to_string();
        assert!(message.contains("failed to encode"), "{message}");
        assert!(message.contains("nothing of it was committed"), "{message}");
        assert!(
            message.contains("disagree with what was written"),
            "{message}"
        );
    }

    #[test]
    fn another_format_version_is_refused_with_a_clear_message() {
        let mut bytes = encode(&(1_u32, "x".to_owned())).expect("encodes");
        assert_eq!(
            decode::<(u32, String)>(&bytes).unwrap(),
            (1, "x".to_owned())
        );
        bytes[2] = 9;
        let error = decode::<(u32, String)>(&bytes).unwrap_err();
        assert_eq!(
            error,
            StateError::UnsupportedVersion {
                found: 9,
                supported: STATE_FORMAT_VERSION,
                oldest: OLDEST_READABLE_FORMAT_VERSION,
            }
        );
        // The previous format is read: its layouts are this one's.
        bytes[2..4].copy_from_slice(&OLDEST_READABLE_FORMAT_VERSION.to_le_bytes());
        assert_eq!(
            decode::<(u32, String)>(&bytes).unwrap(),
            (1, "x".to_owned())
        );
        bytes[2..4].copy_from_slice(&(OLDEST_READABLE_FORMAT_VERSION - 1).to_le_bytes());
        assert!(matches!(
            decode::<(u32, String)>(&bytes),
            Err(StateError::UnsupportedVersion { found: 2, .. })
        ));
        assert!(error.to_string().contains("new kafka.group_id"), "{error}");
        assert_eq!(decode::<u32>(b"{\"json\":1}"), Err(StateError::NotState));
        let truncated = &encode(&(1_u32, "a long enough string".to_owned())).expect("encodes")[..8];
        assert!(matches!(
            decode::<(u32, String)>(truncated),
            Err(StateError::Corrupt(_))
        ));
    }
}
