//! Typed messages: every type of reference section 6.3, plus NewEpoch (0x42, decisions D4)
//! and Error (0xFF, UTF-8 reason).
//!
//! | code | message         | payload (LE)                                                        |
//! |-----:|-----------------|---------------------------------------------------------------------|
//! | 0x01 | Handshake       | `i32 version ‖ i64 ts ‖ i32 n ‖ node_id[n] ‖ i32 m ‖ user_agent[m]` |
//! | 0x02 | HandshakeAck    | `empty` |
//! | 0x03 | Heartbeat       | `empty` |
//! | 0x04 | Ping            | `u64 nonce ‖ i64 timestamp (unix ms)` |
//! | 0x05 | Pong            | `u64 nonce ‖ i64 timestamp (unix ms)` |
//! | 0x10 | GetPeers        | `i32 max (1..=1000) ‖ i32 k (0..=1000) ‖ k × (7-bit varint len ‖ UTF-8)` |
//! | 0x11 | Peers           | `i32 k (0..=1000) ‖ k × (i32 4‖16 ‖ addr ‖ i32 port 0..=65535)` |
//! | 0x20 | GetHeaders      | `locator[32] ‖ bool has_stop ‖ stop[32]? ‖ i32 max (> 0)` |
//! | 0x21 | Headers         | `i32 k (0..=2000) ‖ k × (i32 290 ‖ BlockHeader)` |
//! | 0x22 | GetBlock        | `hash[32]` |
//! | 0x23 | Block           | `Block` |
//! | 0x30 | Transaction     | `Transaction (155)` |
//! | 0x31 | NewBlock        | `Block` |
//! | 0x32 | TxPoolRequest   | `i32 max (> 0) ‖ bool include_data` |
//! | 0x40 | ProofSubmission | `i64 height ‖ miner_id[33] ‖ i32 n (0..=1 MiB) ‖ BlockProof[n]` |
//! | 0x41 | BlockAccepted   | `hash[32] ‖ i64 height` |
//! | 0x42 | NewEpoch        | `i64 epoch ‖ tip[32] ‖ i64 tip_height ‖ i64 difficulty ‖ challenge[32] ‖ i64 deadline_ms` |
//! | 0xFF | Error           | `UTF-8 reason` |
//!
//! Choices, all in the direction of decisions D9 (canonical encodings):
//! - Block, NewBlock, Transaction, Headers and ProofSubmission carry **parsed** types, so a
//!   link rejects garbage when the frame arrives, not later in the mining core.
//! - Every payload must be consumed exactly: trailing bytes, a bool byte other than 0/1, a
//!   Headers entry that is not exactly one header, or a ProofSubmission whose proof length
//!   disagrees with the bytes present are errors (the reference ignores or truncates them).
//!   HandshakeAck and Heartbeat must be empty.
//! - Text (node id, user agent, GetPeers excludes, Error) must be valid UTF-8; the
//!   reference substitutes U+FFFD, which could make two different network ids compare
//!   equal, so we refuse instead. Node id and user agent must not be blank (as the
//!   reference).
//! - Numbers the reference declares `i64 ≥ 0` are `u64` here and refused when negative.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

use super::frame::{push_frame_header, FrameError, MessageType, MAX_FRAME_LENGTH};
use crate::block::{Block, BlockHeader, BlockProof, Transaction, BLOCK_HEADER_LEN};
use crate::codec::{put_len, put_u64, DecodeError, Reader};
use crate::hash::Hash32;

/// The protocol version we speak (decisions D3); peers below it are refused.
pub const PROTOCOL_VERSION: i32 = 2;
/// Most peers in one Peers message and most excludes in GetPeers.
pub const MAX_PEERS: usize = 1000;
/// Most headers in one Headers message.
pub const MAX_HEADERS: usize = 2000;
/// Largest proof in a ProofSubmission (1 MiB).
pub const MAX_PROOF_LEN: usize = 1024 * 1024;
/// Encoded size of a NewEpoch payload.
pub const NEW_EPOCH_LEN: usize = 96;

/// Handshake payload (0x01).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// Protocol version of the sender ([`PROTOCOL_VERSION`]).
    pub protocol_version: i32,
    /// Unix seconds.
    pub timestamp: i64,
    /// The sender's node id (not blank).
    pub node_id: String,
    /// `<product>/<version> network=<network-id>` (see [`user_agent`]).
    pub user_agent: String,
}

/// One peer address in Peers (0x11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerAddress {
    /// IPv4 or IPv6 address.
    pub ip: IpAddr,
    /// TCP port.
    pub port: u16,
}

/// The epoch announcement (0x42, decisions D4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NewEpoch {
    /// Epochs since genesis.
    pub epoch: u64,
    /// Hash of the tip this epoch builds on.
    pub tip_hash: Hash32,
    /// Height of that tip.
    pub tip_height: u64,
    /// Difficulty of this epoch.
    pub difficulty: u64,
    /// `H(tip_hash ‖ i64 epoch)`.
    pub challenge: Hash32,
    /// When the node stops taking proofs and blocks for this epoch (unix ms).
    pub deadline_unix_ms: u64,
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// 0x01
    Handshake(Handshake),
    /// 0x02
    HandshakeAck,
    /// 0x03
    Heartbeat,
    /// 0x04
    Ping {
        /// Echoed by the Pong.
        nonce: u64,
        /// Unix milliseconds.
        timestamp: i64,
    },
    /// 0x05
    Pong {
        /// The Ping's nonce.
        nonce: u64,
        /// Unix milliseconds.
        timestamp: i64,
    },
    /// 0x10
    GetPeers {
        /// How many peers are wanted (1..=1000).
        max_count: i32,
        /// Peers the asker already knows (at most 1000).
        exclude: Vec<String>,
    },
    /// 0x11 (at most 1000 peers)
    Peers(Vec<PeerAddress>),
    /// 0x20
    GetHeaders {
        /// Hash to start after.
        locator: Hash32,
        /// Hash to stop at, if any.
        stop: Option<Hash32>,
        /// How many headers at most (> 0).
        max_headers: i32,
    },
    /// 0x21 (at most 2000 headers)
    Headers(Vec<BlockHeader>),
    /// 0x22
    GetBlock {
        /// The wanted block.
        hash: Hash32,
    },
    /// 0x23: what the reference miner sends.
    Block(Block),
    /// 0x30
    Transaction(Transaction),
    /// 0x31: what the docs say a miner sends; nodes accept both (D5).
    NewBlock(Block),
    /// 0x32
    TxPoolRequest {
        /// How many transactions at most (> 0).
        max_transactions: i32,
        /// Whether to send the transactions themselves.
        include_data: bool,
    },
    /// 0x40
    ProofSubmission {
        /// Tip height + 1.
        block_height: u64,
        /// `0xED ‖ pk` of the miner.
        miner_id: [u8; 33],
        /// The proof.
        proof: BlockProof,
    },
    /// 0x41
    BlockAccepted {
        /// Hash of the accepted block.
        hash: Hash32,
        /// Its height.
        height: u64,
    },
    /// 0x42
    NewEpoch(NewEpoch),
    /// 0xFF: the reason a connection is being closed.
    Error(String),
}

/// Why a payload does not decode as its message type.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MessageError {
    /// The payload of a well-formed frame is not a canonical encoding of its type.
    #[error("invalid {message_type:?} (0x{code:02x}) payload: {error}", code = message_type.code())]
    Payload {
        /// The frame's type.
        message_type: MessageType,
        /// What is wrong (part of this error's message, so not a separate source).
        error: DecodeError,
    },
}

impl Message {
    /// The type byte this message is sent with.
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Handshake(_) => MessageType::Handshake,
            Message::HandshakeAck => MessageType::HandshakeAck,
            Message::Heartbeat => MessageType::Heartbeat,
            Message::Ping { .. } => MessageType::Ping,
            Message::Pong { .. } => MessageType::Pong,
            Message::GetPeers { .. } => MessageType::GetPeers,
            Message::Peers(_) => MessageType::Peers,
            Message::GetHeaders { .. } => MessageType::GetHeaders,
            Message::Headers(_) => MessageType::Headers,
            Message::GetBlock { .. } => MessageType::GetBlock,
            Message::Block(_) => MessageType::Block,
            Message::Transaction(_) => MessageType::Transaction,
            Message::NewBlock(_) => MessageType::NewBlock,
            Message::TxPoolRequest { .. } => MessageType::TxPoolRequest,
            Message::ProofSubmission { .. } => MessageType::ProofSubmission,
            Message::BlockAccepted { .. } => MessageType::BlockAccepted,
            Message::NewEpoch(_) => MessageType::NewEpoch,
            Message::Error(_) => MessageType::Error,
        }
    }

    /// The whole frame: `i32 length ‖ type ‖ payload`. The caller keeps collections within
    /// the limits above (an oversized Block would not fit a frame); use
    /// [`Message::encode_checked`] when the size is not known to fit.
    pub fn encode(&self) -> Vec<u8> {
        let payload = self.encode_payload();
        let mut out = Vec::with_capacity(5 + payload.len());
        push_frame_header(&mut out, self.message_type(), payload.len());
        out.extend_from_slice(&payload);
        out
    }

    /// [`Message::encode`], refusing a frame longer than `max_length`
    /// (at most [`MAX_FRAME_LENGTH`]).
    pub fn encode_checked(&self, max_length: u32) -> Result<Vec<u8>, FrameError> {
        super::frame::encode_frame(
            self.message_type(),
            &self.encode_payload(),
            max_length.min(MAX_FRAME_LENGTH),
        )
    }

    /// The payload bytes alone.
    pub fn encode_payload(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Message::Handshake(h) => {
                out.extend_from_slice(&h.protocol_version.to_le_bytes());
                out.extend_from_slice(&h.timestamp.to_le_bytes());
                put_len(&mut out, h.node_id.len());
                out.extend_from_slice(h.node_id.as_bytes());
                put_len(&mut out, h.user_agent.len());
                out.extend_from_slice(h.user_agent.as_bytes());
            }
            Message::HandshakeAck | Message::Heartbeat => {}
            Message::Ping { nonce, timestamp } | Message::Pong { nonce, timestamp } => {
                put_u64(&mut out, *nonce);
                out.extend_from_slice(&timestamp.to_le_bytes());
            }
            Message::GetPeers { max_count, exclude } => {
                out.extend_from_slice(&max_count.to_le_bytes());
                put_len(&mut out, exclude.len());
                for s in exclude {
                    put_varint(&mut out, s.len());
                    out.extend_from_slice(s.as_bytes());
                }
            }
            Message::Peers(peers) => {
                put_len(&mut out, peers.len());
                for p in peers {
                    match p.ip {
                        IpAddr::V4(v4) => {
                            put_len(&mut out, 4);
                            out.extend_from_slice(&v4.octets());
                        }
                        IpAddr::V6(v6) => {
                            put_len(&mut out, 16);
                            out.extend_from_slice(&v6.octets());
                        }
                    }
                    out.extend_from_slice(&i32::from(p.port).to_le_bytes());
                }
            }
            Message::GetHeaders {
                locator,
                stop,
                max_headers,
            } => {
                out.extend_from_slice(locator);
                match stop {
                    Some(stop) => {
                        out.push(1);
                        out.extend_from_slice(stop);
                    }
                    None => out.push(0),
                }
                out.extend_from_slice(&max_headers.to_le_bytes());
            }
            Message::Headers(headers) => {
                put_len(&mut out, headers.len());
                for h in headers {
                    put_len(&mut out, BLOCK_HEADER_LEN);
                    out.extend_from_slice(&h.encode());
                }
            }
            Message::GetBlock { hash } => out.extend_from_slice(hash),
            Message::Block(block) | Message::NewBlock(block) => out = block.encode(),
            Message::Transaction(tx) => out.extend_from_slice(&tx.encode()),
            Message::TxPoolRequest {
                max_transactions,
                include_data,
            } => {
                out.extend_from_slice(&max_transactions.to_le_bytes());
                out.push(u8::from(*include_data));
            }
            Message::ProofSubmission {
                block_height,
                miner_id,
                proof,
            } => {
                put_u64(&mut out, *block_height);
                out.extend_from_slice(miner_id);
                let proof = proof.encode();
                put_len(&mut out, proof.len());
                out.extend_from_slice(&proof);
            }
            Message::BlockAccepted { hash, height } => {
                out.extend_from_slice(hash);
                put_u64(&mut out, *height);
            }
            Message::NewEpoch(e) => {
                put_u64(&mut out, e.epoch);
                out.extend_from_slice(&e.tip_hash);
                put_u64(&mut out, e.tip_height);
                put_u64(&mut out, e.difficulty);
                out.extend_from_slice(&e.challenge);
                put_u64(&mut out, e.deadline_unix_ms);
            }
            Message::Error(reason) => out.extend_from_slice(reason.as_bytes()),
        }
        out
    }

    /// Decodes the payload of a frame of type `message_type`.
    pub fn decode(message_type: MessageType, payload: &[u8]) -> Result<Message, MessageError> {
        decode_payload(message_type, payload).map_err(|error| MessageError::Payload {
            message_type,
            error,
        })
    }

    /// Decodes a frame produced by [`super::decode_frame`].
    pub fn from_frame(frame: &super::Frame) -> Result<Message, MessageError> {
        Self::decode(frame.message_type, &frame.payload)
    }
}

fn decode_payload(t: MessageType, payload: &[u8]) -> Result<Message, DecodeError> {
    let mut r = Reader::new(payload);
    let msg = match t {
        MessageType::Handshake => {
            let protocol_version = r.i32("handshake.protocol_version")?;
            let timestamp = r.i64("handshake.timestamp")?;
            let node_id = read_text(&mut r, "handshake.node_id")?;
            let user_agent = read_text(&mut r, "handshake.user_agent")?;
            Message::Handshake(Handshake {
                protocol_version,
                timestamp,
                node_id,
                user_agent,
            })
        }
        MessageType::HandshakeAck => Message::HandshakeAck,
        MessageType::Heartbeat => Message::Heartbeat,
        MessageType::Ping | MessageType::Pong => {
            let nonce = r.i64("ping.nonce")? as u64;
            let timestamp = r.i64("ping.timestamp")?;
            if t == MessageType::Ping {
                Message::Ping { nonce, timestamp }
            } else {
                Message::Pong { nonce, timestamp }
            }
        }
        MessageType::GetPeers => {
            let max_count = r.i32("get_peers.max_count")?;
            if !(1..=MAX_PEERS as i32).contains(&max_count) {
                return Err(DecodeError::OutOfRange {
                    field: "get_peers.max_count",
                    value: i64::from(max_count),
                    rule: "must be 1..=1000",
                });
            }
            let k = r.count(
                "get_peers.exclude_count",
                0,
                MAX_PEERS as i32,
                1,
                "must be 0..=1000",
            )?;
            let mut exclude = Vec::with_capacity(k);
            for _ in 0..k {
                exclude.push(read_varint_string(&mut r)?);
            }
            Message::GetPeers { max_count, exclude }
        }
        MessageType::Peers => {
            let k = r.count("peers.count", 0, MAX_PEERS as i32, 12, "must be 0..=1000")?;
            let mut peers = Vec::with_capacity(k);
            for _ in 0..k {
                let len = r.i32("peers.address_length")?;
                let ip = match len {
                    4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>("peers.address")?)),
                    16 => IpAddr::V6(Ipv6Addr::from(r.array::<16>("peers.address")?)),
                    other => {
                        return Err(DecodeError::OutOfRange {
                            field: "peers.address_length",
                            value: i64::from(other),
                            rule: "must be 4 or 16",
                        })
                    }
                };
                let port = r.i32("peers.port")?;
                let port = u16::try_from(port).map_err(|_| DecodeError::OutOfRange {
                    field: "peers.port",
                    value: i64::from(port),
                    rule: "must be 0..=65535",
                })?;
                peers.push(PeerAddress { ip, port });
            }
            Message::Peers(peers)
        }
        MessageType::GetHeaders => {
            let locator = r.array("get_headers.locator")?;
            let stop = if r.bool("get_headers.has_stop")? {
                Some(r.array("get_headers.stop")?)
            } else {
                None
            };
            let max_headers = r.i32("get_headers.max_headers")?;
            if max_headers <= 0 {
                return Err(DecodeError::OutOfRange {
                    field: "get_headers.max_headers",
                    value: i64::from(max_headers),
                    rule: "must be > 0",
                });
            }
            Message::GetHeaders {
                locator,
                stop,
                max_headers,
            }
        }
        MessageType::Headers => {
            let k = r.count(
                "headers.count",
                0,
                MAX_HEADERS as i32,
                4 + BLOCK_HEADER_LEN,
                "must be 0..=2000",
            )?;
            let mut headers = Vec::with_capacity(k);
            for _ in 0..k {
                let len = r.i32("headers.entry_length")?;
                if len != BLOCK_HEADER_LEN as i32 {
                    return Err(DecodeError::Mismatch {
                        field: "headers.entry_length",
                        expected: BLOCK_HEADER_LEN as i64,
                        found: i64::from(len),
                    });
                }
                headers.push(BlockHeader::read(&mut r)?);
            }
            Message::Headers(headers)
        }
        MessageType::GetBlock => Message::GetBlock {
            hash: r.array("get_block.hash")?,
        },
        MessageType::Block | MessageType::NewBlock => {
            // Block::decode consumes the whole payload (trailing bytes are its error).
            let block = Block::decode(payload)?;
            return Ok(if t == MessageType::Block {
                Message::Block(block)
            } else {
                Message::NewBlock(block)
            });
        }
        MessageType::Transaction => {
            return Ok(Message::Transaction(Transaction::decode(payload)?));
        }
        MessageType::TxPoolRequest => {
            let max_transactions = r.i32("tx_pool_request.max_transactions")?;
            if max_transactions <= 0 {
                return Err(DecodeError::OutOfRange {
                    field: "tx_pool_request.max_transactions",
                    value: i64::from(max_transactions),
                    rule: "must be > 0",
                });
            }
            let include_data = r.bool("tx_pool_request.include_data")?;
            Message::TxPoolRequest {
                max_transactions,
                include_data,
            }
        }
        MessageType::ProofSubmission => {
            let block_height = r.i64_non_negative("proof_submission.block_height")?;
            let miner_id = r.array("proof_submission.miner_id")?;
            let len = r.count(
                "proof_submission.proof_length",
                0,
                MAX_PROOF_LEN as i32,
                1,
                "must be 0..=1048576",
            )?;
            if len != r.remaining() {
                return Err(DecodeError::Mismatch {
                    field: "proof_submission.proof_length",
                    expected: r.remaining() as i64,
                    found: len as i64,
                });
            }
            let proof = BlockProof::decode(r.bytes("proof_submission.proof", len)?)?;
            Message::ProofSubmission {
                block_height,
                miner_id,
                proof,
            }
        }
        MessageType::BlockAccepted => Message::BlockAccepted {
            hash: r.array("block_accepted.hash")?,
            height: r.i64_non_negative("block_accepted.height")?,
        },
        MessageType::NewEpoch => Message::NewEpoch(NewEpoch {
            epoch: r.i64_non_negative("new_epoch.epoch")?,
            tip_hash: r.array("new_epoch.tip_hash")?,
            tip_height: r.i64_non_negative("new_epoch.tip_height")?,
            difficulty: r.i64_non_negative("new_epoch.difficulty")?,
            challenge: r.array("new_epoch.challenge")?,
            deadline_unix_ms: r.i64_non_negative("new_epoch.deadline_unix_ms")?,
        }),
        MessageType::Error => {
            let reason = std::str::from_utf8(payload).map_err(|_| DecodeError::InvalidUtf8 {
                field: "error.reason",
            })?;
            return Ok(Message::Error(reason.to_owned()));
        }
    };
    r.finish(payload_name(t))?;
    Ok(msg)
}

fn payload_name(t: MessageType) -> &'static str {
    match t {
        MessageType::Handshake => "Handshake payload",
        MessageType::HandshakeAck => "HandshakeAck payload (must be empty)",
        MessageType::Heartbeat => "Heartbeat payload (must be empty)",
        MessageType::Ping => "Ping payload",
        MessageType::Pong => "Pong payload",
        MessageType::GetPeers => "GetPeers payload",
        MessageType::Peers => "Peers payload",
        MessageType::GetHeaders => "GetHeaders payload",
        MessageType::Headers => "Headers payload",
        MessageType::GetBlock => "GetBlock payload",
        MessageType::Block => "Block payload",
        MessageType::Transaction => "Transaction payload",
        MessageType::NewBlock => "NewBlock payload",
        MessageType::TxPoolRequest => "TxPoolRequest payload",
        MessageType::ProofSubmission => "ProofSubmission payload",
        MessageType::BlockAccepted => "BlockAccepted payload",
        MessageType::NewEpoch => "NewEpoch payload",
        MessageType::Error => "Error payload",
    }
}

/// `i32 len ‖ UTF-8`, not blank.
fn read_text(r: &mut Reader<'_>, field: &'static str) -> Result<String, DecodeError> {
    let len = r.count(field, 0, i32::MAX, 1, "must be >= 0")?;
    let text = std::str::from_utf8(r.bytes(field, len)?)
        .map_err(|_| DecodeError::InvalidUtf8 { field })?;
    if text.trim().is_empty() {
        return Err(DecodeError::Blank { field });
    }
    Ok(text.to_owned())
}

/// A .NET `BinaryWriter` string length: LEB128 of the byte length, at most 5 bytes.
fn put_varint(out: &mut Vec<u8>, len: usize) {
    let mut v = u32::try_from(len).unwrap_or(u32::MAX);
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A .NET `BinaryReader.ReadString`: 7-bit varint length (≤ i32::MAX), then UTF-8.
fn read_varint_string(r: &mut Reader<'_>) -> Result<String, DecodeError> {
    const FIELD: &str = "get_peers.exclude";
    let offset = r.position();
    let mut value: u32 = 0;
    for i in 0..5 {
        let byte = r.u8(FIELD)?;
        if i == 4 && byte > 0x0F {
            return Err(DecodeError::OutOfRange {
                field: FIELD,
                value: i64::from(byte),
                rule: "fifth varint byte must be <= 0x0f",
            });
        }
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            // Canonical: no superfluous zero continuation bytes.
            if i > 0 && byte == 0 {
                return Err(DecodeError::OutOfRange {
                    field: FIELD,
                    value: offset as i64,
                    rule: "string length varint is not minimal",
                });
            }
            let len = i32::try_from(value).map_err(|_| DecodeError::OutOfRange {
                field: FIELD,
                value: i64::from(value),
                rule: "string length must be <= i32::MAX",
            })?;
            let bytes = r.bytes(FIELD, len as usize)?;
            return std::str::from_utf8(bytes)
                .map(str::to_owned)
                .map_err(|_| DecodeError::InvalidUtf8 { field: FIELD });
        }
    }
    Err(DecodeError::OutOfRange {
        field: FIELD,
        value: offset as i64,
        rule: "string length varint longer than 5 bytes",
    })
}

/// `<product>/<version> network=<network-id>` (decisions D3).
pub fn user_agent(product: &str, version: &str, network_id: &str) -> String {
    format!("{product}/{version} network={network_id}")
}

/// The network id of a user agent: the non-empty rest of its `network=` word, or `None`
/// (a mismatch, decisions D9).
pub fn network_id_of(user_agent: &str) -> Option<&str> {
    user_agent
        .split_whitespace()
        .find_map(|word| word.strip_prefix("network="))
        .filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::super::frame::{decode_frame, Frame};
    use super::*;
    use crate::block::test_support::{arb_header, arb_proof, arb_tx, example_header};
    use proptest::prelude::*;

    use crate::test_support::vectors;

    fn hx(v: &serde_json::Value) -> Vec<u8> {
        hex::decode(v.as_str().unwrap()).unwrap()
    }

    fn decode_whole(bytes: &[u8]) -> Message {
        let (frame, used) = decode_frame(bytes, MAX_FRAME_LENGTH).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        Message::from_frame(&frame).unwrap()
    }

    #[test]
    fn frame_vectors_encode_and_decode_byte_for_byte() {
        let v = vectors();
        let cases = [
            (
                "block_accepted",
                Message::BlockAccepted {
                    hash: [0; 32],
                    height: 7,
                },
            ),
            (
                "ping",
                Message::Ping {
                    nonce: 1,
                    timestamp: 2,
                },
            ),
            (
                "handshake",
                Message::Handshake(Handshake {
                    protocol_version: 1,
                    timestamp: 1_700_000_000,
                    node_id: "node-1".into(),
                    user_agent: "Spacetime/1.0".into(),
                }),
            ),
        ];
        for (name, msg) in cases {
            let bytes = hx(&v["frames"][name]);
            assert_eq!(msg.encode(), bytes, "{name}");
            assert_eq!(decode_whole(&bytes), msg, "{name}");
        }
    }

    #[test]
    fn proof_submission_vector() {
        let v = vectors();
        let ex = &v["block_example"];
        let msg = Message::ProofSubmission {
            block_height: 1,
            miner_id: example_header().miner_id,
            proof: BlockProof::decode(&hx(&ex["block_proof"])).unwrap(),
        };
        let bytes = hx(&ex["proof_submission_frame"]);
        assert_eq!(msg.encode(), bytes);
        assert_eq!(decode_whole(&bytes), msg);
        // A declared proof length that disagrees with the bytes present is refused.
        let mut payload = bytes[5..].to_vec();
        payload.pop();
        assert!(Message::decode(MessageType::ProofSubmission, &payload).is_err());
    }

    #[test]
    fn user_agent_carries_the_network_id() {
        let ua = user_agent("spacetime-miner", "0.1.0", "spacetime-devnet-local");
        assert_eq!(ua, "spacetime-miner/0.1.0 network=spacetime-devnet-local");
        assert_eq!(network_id_of(&ua), Some("spacetime-devnet-local"));
        assert_eq!(network_id_of("Spacetime/1.0"), None);
        assert_eq!(network_id_of("x/1 network="), None);
        assert_eq!(network_id_of("x/1 mainnetwork=a"), None);
    }

    #[test]
    fn hostile_payloads_are_errors() {
        let t = MessageType::Handshake;
        let mut invalid_utf8 = Vec::new();
        invalid_utf8.extend_from_slice(&2i32.to_le_bytes());
        invalid_utf8.extend_from_slice(&0i64.to_le_bytes());
        invalid_utf8.extend_from_slice(&2i32.to_le_bytes());
        invalid_utf8.extend_from_slice(&[0xC3, 0x28]);
        invalid_utf8.extend_from_slice(&1i32.to_le_bytes());
        invalid_utf8.push(b'a');
        assert!(matches!(
            Message::decode(t, &invalid_utf8),
            Err(MessageError::Payload {
                error: DecodeError::InvalidUtf8 { .. },
                ..
            })
        ));
        let mut huge = invalid_utf8[..12].to_vec();
        huge.extend_from_slice(&i32::MAX.to_le_bytes());
        assert!(Message::decode(t, &huge).is_err());
        let mut blank = invalid_utf8[..12].to_vec();
        blank.extend_from_slice(&1i32.to_le_bytes());
        blank.push(b' ');
        blank.extend_from_slice(&1i32.to_le_bytes());
        blank.push(b'a');
        assert!(matches!(
            Message::decode(t, &blank),
            Err(MessageError::Payload {
                error: DecodeError::Blank { .. },
                ..
            })
        ));
        // Non-empty acks, counts near i32 max, bad bool bytes, negative heights.
        assert!(Message::decode(MessageType::HandshakeAck, &[0]).is_err());
        assert!(Message::decode(MessageType::Heartbeat, &[0]).is_err());
        for t in [MessageType::Peers, MessageType::Headers] {
            assert!(Message::decode(t, &i32::MAX.to_le_bytes()).is_err());
            assert!(Message::decode(t, &(-1i32).to_le_bytes()).is_err());
        }
        let mut gp = 10i32.to_le_bytes().to_vec();
        gp.extend_from_slice(&1000i32.to_le_bytes());
        assert!(Message::decode(MessageType::GetPeers, &gp).is_err());
        let mut gp = 10i32.to_le_bytes().to_vec();
        gp.extend_from_slice(&1i32.to_le_bytes());
        gp.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0x0F]);
        assert!(Message::decode(MessageType::GetPeers, &gp).is_err());
        let mut gh = [0u8; 33].to_vec();
        gh[32] = 2;
        gh.extend_from_slice(&[0; 32]);
        gh.extend_from_slice(&1i32.to_le_bytes());
        assert!(Message::decode(MessageType::GetHeaders, &gh).is_err());
        let mut ba = [0u8; 32].to_vec();
        ba.extend_from_slice(&(-1i64).to_le_bytes());
        assert!(Message::decode(MessageType::BlockAccepted, &ba).is_err());
        let mut ps = 1i64.to_le_bytes().to_vec();
        ps.extend_from_slice(&[0; 33]);
        ps.extend_from_slice(&i32::MAX.to_le_bytes());
        assert!(Message::decode(MessageType::ProofSubmission, &ps).is_err());
        assert!(Message::decode(MessageType::Error, &[0xFF]).is_err());
        assert!(Message::decode(MessageType::Transaction, &[0; 156]).is_err());
    }

    fn arb_text() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9é😀/=.-]{1,12}"
    }

    fn arb_block() -> impl Strategy<Value = Block> {
        (
            arb_header(),
            proptest::collection::vec(arb_tx(), 0..2),
            arb_proof(),
        )
            .prop_map(|(header, transactions, proof)| Block {
                header,
                transactions,
                proof,
            })
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        let peer = (any::<bool>(), any::<[u8; 16]>(), any::<u16>()).prop_map(|(v4, b, port)| {
            let ip = if v4 {
                IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
            } else {
                IpAddr::V6(Ipv6Addr::from(b))
            };
            PeerAddress { ip, port }
        });
        prop_oneof![
            (any::<i32>(), any::<i64>(), arb_text(), arb_text()).prop_map(|(v, ts, n, u)| {
                Message::Handshake(Handshake {
                    protocol_version: v,
                    timestamp: ts,
                    node_id: n,
                    user_agent: u,
                })
            }),
            Just(Message::HandshakeAck),
            Just(Message::Heartbeat),
            (any::<u64>(), any::<i64>())
                .prop_map(|(nonce, timestamp)| Message::Ping { nonce, timestamp }),
            (any::<u64>(), any::<i64>())
                .prop_map(|(nonce, timestamp)| Message::Pong { nonce, timestamp }),
            (
                1..=1000i32,
                proptest::collection::vec("[a-z:0-9é]{0,8}", 0..4)
            )
                .prop_map(|(max_count, exclude)| Message::GetPeers { max_count, exclude }),
            proptest::collection::vec(peer, 0..4).prop_map(Message::Peers),
            (
                any::<[u8; 32]>(),
                proptest::option::of(any::<[u8; 32]>()),
                1..=i32::MAX
            )
                .prop_map(|(locator, stop, max_headers)| Message::GetHeaders {
                    locator,
                    stop,
                    max_headers
                }),
            proptest::collection::vec(arb_header(), 0..3).prop_map(Message::Headers),
            any::<[u8; 32]>().prop_map(|hash| Message::GetBlock { hash }),
            arb_block().prop_map(Message::Block),
            arb_tx().prop_map(Message::Transaction),
            arb_block().prop_map(Message::NewBlock),
            (1..=i32::MAX, any::<bool>()).prop_map(|(max_transactions, include_data)| {
                Message::TxPoolRequest {
                    max_transactions,
                    include_data,
                }
            }),
            (
                0..=i64::MAX as u64,
                any::<[u8; 32]>(),
                any::<u8>(),
                arb_proof()
            )
                .prop_map(|(block_height, id, tag, proof)| {
                    let mut miner_id = [tag; 33];
                    miner_id[1..].copy_from_slice(&id);
                    Message::ProofSubmission {
                        block_height,
                        miner_id,
                        proof,
                    }
                }),
            (any::<[u8; 32]>(), 0..=i64::MAX as u64)
                .prop_map(|(hash, height)| Message::BlockAccepted { hash, height }),
            (
                (0..=i64::MAX as u64, any::<[u8; 32]>(), 0..=i64::MAX as u64),
                (0..=i64::MAX as u64, any::<[u8; 32]>(), 0..=i64::MAX as u64)
            )
                .prop_map(
                    |((epoch, tip_hash, tip_height), (difficulty, challenge, deadline))| {
                        Message::NewEpoch(NewEpoch {
                            epoch,
                            tip_hash,
                            tip_height,
                            difficulty,
                            challenge,
                            deadline_unix_ms: deadline,
                        })
                    }
                ),
            "\\PC{0,20}".prop_map(Message::Error),
        ]
    }

    #[test]
    fn new_epoch_is_96_bytes() {
        let msg = Message::NewEpoch(NewEpoch {
            epoch: 1,
            tip_hash: [1; 32],
            tip_height: 0,
            difficulty: 100,
            challenge: [2; 32],
            deadline_unix_ms: 5,
        });
        assert_eq!(msg.encode_payload().len(), NEW_EPOCH_LEN);
        assert_eq!(msg.encode()[..5], [97, 0, 0, 0, 0x42]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn every_message_round_trips_and_every_truncation_fails(msg in arb_message()) {
            let bytes = msg.encode();
            prop_assert_eq!(&msg.encode_checked(MAX_FRAME_LENGTH).unwrap(), &bytes);
            let (frame, used) = decode_frame(&bytes, MAX_FRAME_LENGTH).unwrap().unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(frame.message_type, msg.message_type());
            prop_assert_eq!(&Message::from_frame(&frame).unwrap(), &msg);
            let payload = &frame.payload;
            // Error's reason is free text: every prefix that is valid UTF-8 is a valid
            // message; every other type's truncations must fail.
            if msg.message_type() != MessageType::Error {
                for cut in 0..payload.len() {
                    prop_assert!(Message::decode(frame.message_type, &payload[..cut]).is_err());
                }
                let mut longer = payload.clone();
                longer.push(0);
                prop_assert!(Message::decode(frame.message_type, &longer).is_err());
            }
        }

        #[test]
        fn random_payloads_never_panic(
            code in any::<u8>(),
            payload in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            if let Some(t) = MessageType::from_code(code) {
                let _ = Message::decode(t, &payload);
            }
            let mut frame = ((payload.len() + 1) as u32).to_le_bytes().to_vec();
            frame.push(code);
            frame.extend_from_slice(&payload);
            if let Ok(Some((f, _))) = decode_frame(&frame, MAX_FRAME_LENGTH) {
                let _ = Message::from_frame(&f);
                prop_assert_eq!(f, Frame { message_type: MessageType::from_code(code).unwrap(), payload });
            }
        }
    }
}
