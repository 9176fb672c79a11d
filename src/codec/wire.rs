//! The Confluent wire format header: magic byte `0`, a 4-byte big-endian schema id, then the
//! Avro binary body (DESIGN §2).
//!
//! Owns: framing and unframing only. Must not touch: the body (that is [`super::avro`]) or the
//! schema registry (resolving an id to a writer schema is the caller's business). The header
//! is length-checked before it is read: a message shorter than the header is an error, never a
//! panic (arroyo once read it unchecked; see STYLE.md).

use super::DecodeError;

/// Length of the header: the magic byte plus the schema id.
pub const HEADER_LEN: usize = 5;

/// The only magic byte the format has defined so far.
pub const MAGIC_BYTE: u8 = 0;

/// Splits a Confluent-framed message into its schema id and Avro body (which borrows from
/// `payload`).
///
/// # Errors
/// `truncated` when the message is shorter than the 5-byte header; `bad_magic_byte` when it
/// does not start with byte 0. The magic byte is checked first when present, because a
/// one-byte message with the wrong magic byte is more usefully reported as "not this format".
pub fn split_confluent(payload: &[u8]) -> Result<(u32, &[u8]), DecodeError> {
    if let Some(&found) = payload.first() {
        if found != MAGIC_BYTE {
            return Err(DecodeError::BadMagicByte { found });
        }
    }
    let Some((header, body)) = payload.split_first_chunk::<HEADER_LEN>() else {
        return Err(DecodeError::Truncated {
            field: "confluent header".to_owned(),
            offset: 0,
            detail: format!(
                "the header needs {HEADER_LEN} bytes, the message has {}",
                payload.len()
            ),
        });
    };
    let [_, id @ ..] = *header;
    Ok((u32::from_be_bytes(id), body))
}

/// Frames an Avro body with the Confluent header for `schema_id`.
pub fn frame_confluent(schema_id: u32, body: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(HEADER_LEN + body.len());
    framed.push(MAGIC_BYTE);
    framed.extend_from_slice(&schema_id.to_be_bytes());
    framed.extend_from_slice(body);
    framed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_and_split_round_trip() {
        let framed = frame_confluent(0x0102_0304, b"body");
        assert_eq!(framed, [0, 1, 2, 3, 4, b'b', b'o', b'd', b'y']);
        assert_eq!(split_confluent(&framed), Ok((0x0102_0304, &b"body"[..])));
        // An empty body is a valid frame; whether it decodes is the body decoder's call.
        assert_eq!(
            split_confluent(&frame_confluent(u32::MAX, b"")),
            Ok((u32::MAX, &b""[..]))
        );
    }

    #[test]
    fn short_messages_are_truncated_not_panics() {
        for len in 0..HEADER_LEN {
            let err = split_confluent(&[0u8; HEADER_LEN][..len]).unwrap_err();
            assert_eq!(err.reason(), "truncated", "length {len}");
            assert!(err.to_string().contains("header"), "{err}");
        }
    }

    #[test]
    fn wrong_magic_byte_is_reported_even_in_short_messages() {
        assert_eq!(
            split_confluent(&[1, 0, 0, 0, 1, 2]),
            Err(DecodeError::BadMagicByte { found: 1 })
        );
        assert_eq!(
            split_confluent(b"{"),
            Err(DecodeError::BadMagicByte { found: b'{' })
        );
    }
}
