//! The peer-to-peer wire protocol: frames ([`frame`]) and typed messages ([`message`]).
//!
//! A link reads bytes into a buffer, calls [`decode_frame`] until it returns `Ok(None)`,
//! and turns each frame into a [`Message`] with [`Message::from_frame`]. A [`FrameError`]
//! means the stream is out of step (close the connection); a [`MessageError`] means one
//! well-formed frame carried a bad payload (answer Error, decisions D3/D9).

pub mod frame;
pub mod message;

pub use frame::{
    decode_frame, encode_frame, Frame, FrameError, MessageType, FRAME_HEADER_LEN, MAX_FRAME_LENGTH,
};
pub use message::{
    network_id_of, user_agent, Handshake, Message, MessageError, NewEpoch, PeerAddress,
    MAX_HEADERS, MAX_PEERS, MAX_PROOF_LEN, NEW_EPOCH_LEN, PROTOCOL_VERSION,
};

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

#[cfg(test)]
mod tests {
    use super::*;

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
