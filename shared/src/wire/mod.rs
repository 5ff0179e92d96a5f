//! The peer-to-peer wire protocol: frames ([`frame`]), typed messages ([`message`]) and the
//! machine-readable refusals inside Error messages ([`rejection`]).
//!
//! A link feeds the bytes it reads to a [`MessageDecoder`] and takes messages out of it
//! ([`decode_frame`] then [`Message::from_frame`], one frame at a time). A [`FrameError`]
//! means the stream is out of step (close the connection); a [`MessageError`] means one
//! well-formed frame carried a bad payload (answer Error, decisions D3/D9).

pub mod frame;
pub mod message;
pub mod rejection;

pub use frame::{
    decode_frame, encode_frame, Frame, FrameError, MessageType, FRAME_HEADER_LEN, MAX_FRAME_LENGTH,
};
pub use message::{
    network_id_of, user_agent, Handshake, Message, MessageError, NewEpoch, PeerAddress,
    MAX_HEADERS, MAX_PEERS, MAX_PROOF_LEN, NEW_EPOCH_LEN, PROTOCOL_VERSION,
};
pub use rejection::{Rejected, Rejection};

use thiserror::Error;

/// Why bytes from a peer could not be turned into a message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// The framing is broken: the stream is out of step; close the connection.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// One well-formed frame carried an invalid payload; its bytes were consumed.
    #[error("{error} (frame of {consumed} bytes)")]
    Message {
        /// What is wrong with the payload.
        error: MessageError,
        /// Length of the bad frame, so a link that keeps the connection can skip it.
        consumed: usize,
    },
}

/// [`decode_frame`] then [`Message::from_frame`]: `Ok(None)` while more bytes are needed,
/// `Ok(Some((message, consumed)))` for a whole valid message.
pub fn decode_message(buf: &[u8], max_length: u32) -> Result<Option<(Message, usize)>, WireError> {
    let Some((frame, consumed)) = decode_frame(buf, max_length)? else {
        return Ok(None);
    };
    let message =
        Message::from_frame(&frame).map_err(|error| WireError::Message { error, consumed })?;
    Ok(Some((message, consumed)))
}

/// The receiving side of a connection: bytes go in as they arrive, messages come out one
/// frame at a time. Every link (the miner's node link, the devnet node's peers, test
/// clients) reads through this, so framing is handled in one place.
///
/// It holds at most one incomplete frame (checked against `max_length` before it is
/// buffered whole) plus what the last read appended.
#[derive(Debug, Clone)]
pub struct MessageDecoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already decoded (compacted lazily, before the next append).
    start: usize,
    max_length: u32,
}

impl MessageDecoder {
    /// A decoder accepting frames of at most `max_length` (≤ [`MAX_FRAME_LENGTH`]).
    pub fn new(max_length: u32) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            max_length,
        }
    }

    /// Appends bytes read from the connection.
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, or `Ok(None)` while more bytes are needed. A
    /// [`WireError::Message`] consumes its frame (the stream stays in step and the caller
    /// may skip it); after a [`WireError::Frame`] the stream is out of step and the
    /// connection must be closed.
    pub fn next_message(&mut self) -> Result<Option<Message>, WireError> {
        match decode_message(&self.buf[self.start..], self.max_length) {
            Ok(Some((message, used))) => {
                self.start += used;
                Ok(Some(message))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                if let WireError::Message { consumed, .. } = e {
                    self.start += consumed;
                }
                Err(e)
            }
        }
    }

    /// Bytes received but not yet decoded (non-zero at a close means a torn frame).
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }
}

/// Longest peer-supplied text (user agent, Error reason) kept for logs and the API.
pub const MAX_PEER_TEXT: usize = 512;

/// Peer-supplied text made safe to log, store and print: at most `max_chars` characters
/// (the rest replaced by a note of how much was cut), and every control character (terminal
/// escapes, newlines that would forge log lines, bidi controls) written as a Rust escape,
/// so what reaches a log or a terminal is inert. Plain text is returned unchanged.
pub fn printable(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 2));
    let mut chars = text.char_indices();
    for (n, (at, c)) in chars.by_ref().enumerate() {
        if n == max_chars {
            out.push_str(&format!("… ({} more bytes)", text.len() - at));
            break;
        }
        let bidi = matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || bidi {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_text_is_bounded_and_inert() {
        assert_eq!(
            printable("minerd/0.1 network=x", 64),
            "minerd/0.1 network=x"
        );
        assert_eq!(printable("a\x1b[31mred\n", 64), "a\\u{1b}[31mred\\n");
        assert_eq!(printable("ab\u{202E}c", 64), "ab\\u{202e}c");
        let long = "x".repeat(1_000_000);
        let p = printable(&long, MAX_PEER_TEXT);
        assert!(p.len() < MAX_PEER_TEXT + 40, "{}", p.len());
        assert!(p.ends_with("… (999488 more bytes)"), "{p}");
        assert_eq!(printable("é", 0), "… (2 more bytes)");
    }

    #[test]
    fn decoder_yields_messages_across_arbitrary_splits_and_skips_bad_payloads() {
        let ping = Message::Ping {
            nonce: 7,
            timestamp: 9,
        }
        .encode();
        let mut bad = Message::Ping {
            nonce: 1,
            timestamp: 2,
        }
        .encode();
        bad.truncate(bad.len() - 1);
        bad[0] -= 1; // a well-formed frame whose payload is one byte short
        let mut stream = ping.clone();
        stream.extend_from_slice(&bad);
        stream.extend_from_slice(&ping);
        for split in 0..=stream.len() {
            let mut d = MessageDecoder::new(MAX_FRAME_LENGTH);
            let mut got = Vec::new();
            for part in [&stream[..split], &stream[split..]] {
                d.extend(part);
                loop {
                    match d.next_message() {
                        Ok(Some(m)) => got.push(Ok(m)),
                        Ok(None) => break,
                        Err(WireError::Message { .. }) => got.push(Err(())),
                        Err(e) => panic!("unexpected {e}"),
                    }
                }
            }
            let ping_msg = Message::Ping {
                nonce: 7,
                timestamp: 9,
            };
            assert_eq!(
                got,
                vec![Ok(ping_msg.clone()), Err(()), Ok(ping_msg)],
                "split {split}"
            );
            assert_eq!(d.pending(), 0);
        }
    }

    #[test]
    fn decoder_reports_a_broken_frame_and_a_torn_tail() {
        let mut d = MessageDecoder::new(64);
        d.extend(&[0xFF, 0xFF, 0xFF, 0x7F, 0x01]);
        assert!(matches!(d.next_message(), Err(WireError::Frame(_))));
        let mut d = MessageDecoder::new(MAX_FRAME_LENGTH);
        d.extend(&Message::HandshakeAck.encode()[..3]);
        assert_eq!(d.next_message(), Ok(None));
        assert_eq!(d.pending(), 3);
    }

    #[test]
    fn decode_message_separates_need_more_bad_frames_and_bad_payloads() {
        let ping = Message::Ping {
            nonce: 9,
            timestamp: 10,
        }
        .encode();
        assert_eq!(decode_message(&ping[..7], MAX_FRAME_LENGTH), Ok(None));
        let mut two = ping.clone();
        two.extend_from_slice(&ping);
        let (msg, used) = decode_message(&two, MAX_FRAME_LENGTH).unwrap().unwrap();
        assert_eq!(used, ping.len());
        assert!(matches!(msg, Message::Ping { nonce: 9, .. }));
        assert!(matches!(
            decode_message(&[1, 0, 0, 0, 0x99], MAX_FRAME_LENGTH),
            Err(WireError::Frame(FrameError::UnknownType { code: 0x99 }))
        ));
        // A Ping whose payload is one byte short is a well-formed frame with a bad payload.
        let short = encode_frame(MessageType::Ping, &[0; 15], MAX_FRAME_LENGTH).unwrap();
        assert!(matches!(
            decode_message(&short, MAX_FRAME_LENGTH),
            Err(WireError::Message { consumed: 20, .. })
        ));
    }
}
