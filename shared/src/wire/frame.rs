//! The frame codec (reference section 6.1/6.2).
//!
//! | off | size       | field   | rule                                         |
//! |----:|-----------:|---------|----------------------------------------------|
//! |   0 |          4 | length  | i32 LE = payload length + 1 (the type byte)  |
//! |   4 |          1 | type    | a [`MessageType`]                            |
//! |   5 | length − 1 | payload |                                              |
//!
//! `1 ≤ length ≤ max`, where the reference maximum is [`MAX_FRAME_LENGTH`] (16 MiB) and a
//! link may pass a smaller one. [`decode_frame`] is incremental: it returns `Ok(None)` while
//! the buffer holds a valid prefix of a frame, and an error as soon as the bytes present
//! prove the frame invalid (bad length once 4 bytes are in, unknown type once 5 are in).
//! Nothing is allocated before the length has been checked. After an error the stream is
//! out of step: close the connection, never resynchronise (decisions D3).

use thiserror::Error;

/// Bytes before the payload: i32 length + type byte.
pub const FRAME_HEADER_LEN: usize = 5;
/// Largest `length` field the reference accepts (16 MiB; payload ≤ 16 MiB − 1).
pub const MAX_FRAME_LENGTH: u32 = 16 * 1024 * 1024;

/// Every message type of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// 0x01
    Handshake = 0x01,
    /// 0x02
    HandshakeAck = 0x02,
    /// 0x03
    Heartbeat = 0x03,
    /// 0x04
    Ping = 0x04,
    /// 0x05
    Pong = 0x05,
    /// 0x10
    GetPeers = 0x10,
    /// 0x11
    Peers = 0x11,
    /// 0x20
    GetHeaders = 0x20,
    /// 0x21
    Headers = 0x21,
    /// 0x22
    GetBlock = 0x22,
    /// 0x23
    Block = 0x23,
    /// 0x30
    Transaction = 0x30,
    /// 0x31
    NewBlock = 0x31,
    /// 0x32
    TxPoolRequest = 0x32,
    /// 0x40
    ProofSubmission = 0x40,
    /// 0x41
    BlockAccepted = 0x41,
    /// 0x42 (decisions D4)
    NewEpoch = 0x42,
    /// 0xFF
    Error = 0xFF,
}

impl MessageType {
    /// The type byte.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The type for a type byte, or `None` for an unknown one.
    pub fn from_code(code: u8) -> Option<Self> {
        use MessageType::*;
        Some(match code {
            0x01 => Handshake,
            0x02 => HandshakeAck,
            0x03 => Heartbeat,
            0x04 => Ping,
            0x05 => Pong,
            0x10 => GetPeers,
            0x11 => Peers,
            0x20 => GetHeaders,
            0x21 => Headers,
            0x22 => GetBlock,
            0x23 => Block,
            0x30 => Transaction,
            0x31 => NewBlock,
            0x32 => TxPoolRequest,
            0x40 => ProofSubmission,
            0x41 => BlockAccepted,
            0x42 => NewEpoch,
            0xFF => Error,
            _ => return None,
        })
    }
}

/// One frame: a type and its (not yet decoded) payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The message type.
    pub message_type: MessageType,
    /// The payload bytes.
    pub payload: Vec<u8>,
}

impl Frame {
    /// `length ‖ type ‖ payload`. Fails when the payload does not fit in `max_length`.
    pub fn encode(&self, max_length: u32) -> Result<Vec<u8>, FrameError> {
        encode_frame(self.message_type, &self.payload, max_length)
    }
}

/// Why bytes are not a valid frame. The connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The length field is outside `1..=max`.
    #[error("frame length {length} is outside 1..={max}")]
    InvalidLength {
        /// The length field as read (signed, as the reference reads it).
        length: i64,
        /// The largest length this link accepts.
        max: u32,
    },
    /// The type byte names no message.
    #[error("unknown message type {code:#04x}")]
    UnknownType {
        /// The type byte.
        code: u8,
    },
}

/// Encodes one frame, checking the size against `max_length` (≤ [`MAX_FRAME_LENGTH`]).
pub fn encode_frame(
    message_type: MessageType,
    payload: &[u8],
    max_length: u32,
) -> Result<Vec<u8>, FrameError> {
    let max = max_length.min(MAX_FRAME_LENGTH);
    let length = payload.len() as u64 + 1;
    if length > u64::from(max) {
        return Err(FrameError::InvalidLength {
            length: i64::try_from(length).unwrap_or(i64::MAX),
            max,
        });
    }
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    push_frame_header(&mut out, message_type, payload.len());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Writes `length ‖ type` for a payload of `payload_len` bytes (callers bound the size).
pub(crate) fn push_frame_header(out: &mut Vec<u8>, message_type: MessageType, payload_len: usize) {
    let length = u32::try_from(payload_len + 1).unwrap_or(u32::MAX);
    out.extend_from_slice(&length.to_le_bytes());
    out.push(message_type.code());
}

/// Decodes the first frame in `buf`.
///
/// `Ok(Some((frame, consumed)))` when a whole frame is present (`consumed` bytes belong to
/// it), `Ok(None)` when `buf` is a valid but incomplete prefix, `Err` when the bytes present
/// are invalid. `max_length` (capped at [`MAX_FRAME_LENGTH`]) bounds the length field.
pub fn decode_frame(buf: &[u8], max_length: u32) -> Result<Option<(Frame, usize)>, FrameError> {
    let max = max_length.min(MAX_FRAME_LENGTH);
    let Some(len_bytes) = buf.get(..4) else {
        return Ok(None);
    };
    let mut raw = [0u8; 4];
    raw.copy_from_slice(len_bytes);
    let length = i32::from_le_bytes(raw);
    let length = match u32::try_from(length) {
        Ok(l) if (1..=max).contains(&l) => l as usize,
        _ => {
            return Err(FrameError::InvalidLength {
                length: i64::from(length),
                max,
            })
        }
    };
    let Some(&code) = buf.get(4) else {
        return Ok(None);
    };
    let message_type = MessageType::from_code(code).ok_or(FrameError::UnknownType { code })?;
    let total = 4 + length;
    let Some(payload) = buf.get(FRAME_HEADER_LEN..total) else {
        return Ok(None);
    };
    Ok(Some((
        Frame {
            message_type,
            payload: payload.to_vec(),
        },
        total,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [MessageType; 18] = [
        MessageType::Handshake,
        MessageType::HandshakeAck,
        MessageType::Heartbeat,
        MessageType::Ping,
        MessageType::Pong,
        MessageType::GetPeers,
        MessageType::Peers,
        MessageType::GetHeaders,
        MessageType::Headers,
        MessageType::GetBlock,
        MessageType::Block,
        MessageType::Transaction,
        MessageType::NewBlock,
        MessageType::TxPoolRequest,
        MessageType::ProofSubmission,
        MessageType::BlockAccepted,
        MessageType::NewEpoch,
        MessageType::Error,
    ];

    #[test]
    fn type_codes_round_trip_and_others_are_unknown() {
        for t in ALL {
            assert_eq!(MessageType::from_code(t.code()), Some(t));
        }
        let known = (0..=255u8)
            .filter(|&c| MessageType::from_code(c).is_some())
            .count();
        assert_eq!(known, ALL.len());
    }

    #[test]
    fn reference_codec_facts() {
        // An empty Heartbeat is 5 bytes.
        let hb = encode_frame(MessageType::Heartbeat, &[], MAX_FRAME_LENGTH).unwrap();
        assert_eq!(hb, [1, 0, 0, 0, 3]);
        assert_eq!(
            decode_frame(&hb, MAX_FRAME_LENGTH).unwrap(),
            Some((
                Frame {
                    message_type: MessageType::Heartbeat,
                    payload: vec![]
                },
                5
            ))
        );
        // `01 00 00 00 FE`: unknown type.
        assert_eq!(
            decode_frame(&[1, 0, 0, 0, 0xFE], MAX_FRAME_LENGTH),
            Err(FrameError::UnknownType { code: 0xFE })
        );
        // `FF FF FF 7F`: invalid length, detected from the length bytes alone.
        assert_eq!(
            decode_frame(&[0xFF, 0xFF, 0xFF, 0x7F], MAX_FRAME_LENGTH),
            Err(FrameError::InvalidLength {
                length: i64::from(i32::MAX),
                max: MAX_FRAME_LENGTH
            })
        );
        // A 2-byte stream needs more bytes.
        assert_eq!(decode_frame(&[1, 0], MAX_FRAME_LENGTH), Ok(None));
        assert_eq!(decode_frame(&[], MAX_FRAME_LENGTH), Ok(None));
    }

    #[test]
    fn length_limits() {
        for bad in [0i32, -1, i32::MIN, (MAX_FRAME_LENGTH + 1) as i32] {
            let mut buf = bad.to_le_bytes().to_vec();
            buf.push(0x03);
            assert!(
                matches!(
                    decode_frame(&buf, MAX_FRAME_LENGTH),
                    Err(FrameError::InvalidLength { .. })
                ),
                "{bad}"
            );
        }
        // The maximum length is accepted as a prefix (needs more bytes), not refused.
        let mut buf = MAX_FRAME_LENGTH.to_le_bytes().to_vec();
        buf.push(0x23);
        assert_eq!(decode_frame(&buf, MAX_FRAME_LENGTH), Ok(None));
        // A link's smaller limit applies, and the reference limit cannot be raised.
        let mut buf = 101u32.to_le_bytes().to_vec();
        buf.push(0x23);
        assert!(decode_frame(&buf, 100).is_err());
        assert!(decode_frame(&buf, 101).unwrap().is_none());
        let mut buf = (MAX_FRAME_LENGTH + 1).to_le_bytes().to_vec();
        buf.push(0x23);
        assert!(decode_frame(&buf, u32::MAX).is_err());
        assert!(encode_frame(MessageType::Block, &[0; 100], 100).is_err());
        assert!(encode_frame(MessageType::Block, &[0; 99], 100).is_ok());
    }

    proptest! {
        #[test]
        fn frames_round_trip_incrementally(
            idx in 0..ALL.len(),
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            tail in proptest::collection::vec(any::<u8>(), 0..10),
        ) {
            let t = ALL[idx];
            let bytes = encode_frame(t, &payload, MAX_FRAME_LENGTH).unwrap();
            for cut in 0..bytes.len() {
                prop_assert_eq!(decode_frame(&bytes[..cut], MAX_FRAME_LENGTH), Ok(None));
            }
            let mut stream = bytes.clone();
            stream.extend_from_slice(&tail);
            let (frame, used) = decode_frame(&stream, MAX_FRAME_LENGTH).unwrap().unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(frame.message_type, t);
            prop_assert_eq!(&frame.payload, &payload);
            prop_assert_eq!(frame.encode(MAX_FRAME_LENGTH).unwrap(), bytes);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(Some((frame, used))) = decode_frame(&bytes, MAX_FRAME_LENGTH) {
                prop_assert!(used <= bytes.len());
                prop_assert_eq!(used, frame.payload.len() + FRAME_HEADER_LEN);
            }
        }
    }
}
