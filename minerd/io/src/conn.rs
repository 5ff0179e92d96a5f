//! One TCP connection speaking `spacetime::wire` (decisions D3, D9).
//!
//! [`Connection`] is used by every link: the miner's node link, the devnet node's peers and
//! the raw test peer. It reads whole messages through `spacetime::wire::MessageDecoder`
//! (which never holds more than one frame of at most `max_frame_length` bytes plus one read
//! chunk: the length is checked before the payload is waited for), sends messages that fit
//! a frame, and closes with a reason: send Error, stop sending, read (and discard) until the
//! peer closes or the linger passes, so TCP does not reset the connection before the Error
//! is read. It never tries to find the next frame after a framing error.
//!
//! A side that writes from another task (the devnet node queues replies to a writer task)
//! splits it with [`Connection::into_split`] and keeps the [`MessageReader`].

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use spacetime::wire::{FrameError, Message, MessageDecoder, WireError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// Why bytes from the peer did not yield a message.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A framing error (close: the stream is out of step) or one well-formed frame with a
    /// bad payload (already skipped: the connection may go on).
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The peer closed in the middle of a frame.
    #[error("the peer closed in the middle of a frame")]
    Truncated,
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The message does not fit a frame of this connection.
    #[error("message does not fit a frame: {0}")]
    TooLarge(#[source] FrameError),
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Turns a byte stream into messages. Cancel-safe: bytes read stay in the decoder between
/// calls, so a `select!` may drop a pending [`MessageReader::next`].
#[derive(Debug)]
pub struct MessageReader<R> {
    rd: R,
    decoder: MessageDecoder,
    chunk: Vec<u8>,
}

impl<R: AsyncRead + Unpin> MessageReader<R> {
    /// Reads frames of at most `max_frame_length` bytes from `rd`.
    pub fn new(rd: R, max_frame_length: u32) -> Self {
        Self {
            rd,
            decoder: MessageDecoder::new(max_frame_length),
            chunk: vec![0; READ_CHUNK],
        }
    }

    /// The next message; `Ok(None)` when the peer closed cleanly between frames.
    pub async fn next(&mut self) -> Result<Option<Message>, ReadError> {
        loop {
            if let Some(message) = self.decoder.next_message()? {
                return Ok(Some(message));
            }
            let n = self.rd.read(&mut self.chunk).await?;
            if n == 0 {
                return if self.decoder.pending() == 0 {
                    Ok(None)
                } else {
                    Err(ReadError::Truncated)
                };
            }
            self.decoder.extend(&self.chunk[..n]);
        }
    }

    /// Reads and discards until the peer closes or `limit` passes (the linger of D9).
    pub async fn drain(&mut self, limit: Duration) {
        let _ = tokio::time::timeout(limit, async {
            while matches!(self.rd.read(&mut self.chunk).await, Ok(n) if n > 0) {}
        })
        .await;
    }
}

/// A TCP connection speaking `spacetime::wire`: [`Connection::next`],
/// [`Connection::send`], [`Connection::close_with_error`].
#[derive(Debug)]
pub struct Connection {
    reader: MessageReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    max_frame_length: u32,
}

impl Connection {
    /// Wraps a connected stream; frames in either direction are limited to
    /// `max_frame_length` bytes. The caller sets TCP_NODELAY (D9) and decides what a
    /// failure to set it means.
    pub fn new(stream: TcpStream, max_frame_length: u32) -> Self {
        let (rd, writer) = stream.into_split();
        Self {
            reader: MessageReader::new(rd, max_frame_length),
            writer,
            max_frame_length,
        }
    }

    /// Connects to `addr`, sets TCP_NODELAY and wraps the stream.
    pub async fn connect(addr: SocketAddr, max_frame_length: u32) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self::new(stream, max_frame_length))
    }

    /// The largest frame this connection reads or sends.
    pub fn max_frame_length(&self) -> u32 {
        self.max_frame_length
    }

    /// The next message; `Ok(None)` when the peer closed cleanly between frames.
    /// Cancel-safe.
    pub async fn next(&mut self) -> Result<Option<Message>, ReadError> {
        self.reader.next().await
    }

    /// Writes one message (refused, nothing written, when it does not fit a frame).
    pub async fn send(&mut self, message: &Message) -> Result<(), SendError> {
        let bytes = message
            .encode_checked(self.max_frame_length)
            .map_err(SendError::TooLarge)?;
        self.writer.write_all(&bytes).await?;
        Ok(())
    }

    /// Writes raw bytes (tests send garbage and hostile lengths this way).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes).await
    }

    /// Closes with a reason (D9): sends `Error(reason)` and shuts the sending side (both
    /// within `linger`), then reads and discards until the peer closes or `linger` passes.
    /// Returns `false` when the Error could not be written (the peer is gone).
    pub async fn close_with_error(&mut self, reason: String, linger: Duration) -> bool {
        let frame = match Message::Error(reason).encode_checked(self.max_frame_length) {
            Ok(frame) => frame,
            Err(_) => return false,
        };
        let sent = tokio::time::timeout(linger, async {
            self.writer.write_all(&frame).await?;
            self.writer.shutdown().await
        })
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            return false;
        }
        self.reader.drain(linger).await;
        true
    }

    /// The reading and the writing halves, for a side that writes from another task.
    pub fn into_split(self) -> (MessageReader<OwnedReadHalf>, OwnedWriteHalf) {
        (self.reader, self.writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spacetime::wire::MAX_FRAME_LENGTH;
    use tokio::net::TcpListener;

    async fn pair() -> (Connection, Connection) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (a, b) = tokio::join!(Connection::connect(addr, MAX_FRAME_LENGTH), async {
            Connection::new(listener.accept().await.unwrap().0, MAX_FRAME_LENGTH)
        });
        (a.unwrap(), b)
    }

    #[tokio::test]
    async fn messages_cross_and_a_clean_close_is_none() {
        let (mut a, mut b) = pair().await;
        a.send(&Message::Heartbeat).await.unwrap();
        a.send(&Message::Ping {
            nonce: 7,
            timestamp: 1,
        })
        .await
        .unwrap();
        assert_eq!(b.next().await.unwrap(), Some(Message::Heartbeat));
        assert_eq!(
            b.next().await.unwrap(),
            Some(Message::Ping {
                nonce: 7,
                timestamp: 1
            })
        );
        drop(a);
        assert_eq!(b.next().await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_close_inside_a_frame_is_truncated() {
        let (mut a, mut b) = pair().await;
        let frame = Message::Heartbeat.encode();
        a.send_raw(&frame[..frame.len() - 1]).await.unwrap();
        drop(a);
        assert!(matches!(b.next().await, Err(ReadError::Truncated)));
    }

    #[tokio::test]
    async fn a_hostile_length_is_a_frame_error() {
        let (mut a, mut b) = pair().await;
        // Type Heartbeat with a 4 GiB length: refused before any payload is awaited.
        a.send_raw(&[0xFF, 0xFF, 0xFF, 0xFF, 0x0A]).await.unwrap();
        assert!(matches!(
            b.next().await,
            Err(ReadError::Wire(WireError::Frame(_)))
        ));
    }

    #[tokio::test]
    async fn close_with_error_delivers_the_reason_then_ends() {
        let (mut a, mut b) = pair().await;
        let closer = tokio::spawn(async move {
            a.close_with_error("bye".into(), Duration::from_secs(5))
                .await
        });
        assert_eq!(b.next().await.unwrap(), Some(Message::Error("bye".into())));
        assert_eq!(b.next().await.unwrap(), None);
        drop(b);
        assert!(closer.await.unwrap());
    }

    #[tokio::test]
    async fn an_oversized_message_is_refused_unsent() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut small = Connection::connect(addr, 8).await.unwrap();
        let err = small
            .send(&Message::Error("a reason longer than eight bytes".into()))
            .await
            .unwrap_err();
        assert!(matches!(err, SendError::TooLarge(_)), "{err}");
    }
}
