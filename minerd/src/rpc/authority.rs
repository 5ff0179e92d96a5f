//! Makes the Unix socket answer every mainstream gRPC client with its default options.
//!
//! gRPC core (Python `grpcio`, C++, Ruby, PHP) sends the percent-encoded socket path as the
//! HTTP/2 `:authority` of a Unix-socket channel (`home%2Fu%2F.spacetime%2Fminerd.sock`), and
//! grpc-java sends the raw path. Neither is a valid URI authority, and the HTTP/2 server
//! under tonic (`h2`) answers such a request with `RST_STREAM(PROTOCOL_ERROR)`, before any
//! service sees it; h2 has no option to relax that (hyperium/h2#487 is open). On a Unix
//! socket the authority names nothing (there is one server behind it), so [`FixAuthority`]
//! normalises it on the way in: it wraps the accepted stream, parses the client's HTTP/2
//! frames, and re-encodes each header block with an invalid `:authority` replaced by
//! `localhost` (what grpc-go sends for Unix sockets). Everything else passes through
//! byte for byte.
//!
//! HPACK is stateful (the client's dynamic table), so every header block is decoded
//! ([`loona_hpack::Decoder`], table bounded by the 4096 bytes h2 advertises) and re-encoded
//! as literals without indexing, which leaves h2's own dynamic table empty and in step.
//! A header block that does not decode, a frame larger than h2's 16 KiB maximum, or a
//! header block over [`MAX_HEADER_BLOCK`] ends the connection with an I/O error, as h2
//! itself would (COMPRESSION_ERROR / FRAME_SIZE_ERROR).
//!
//! Frame layout (RFC 9113 §4.1): `length:u24 type:u8 flags:u8 stream:u32`, then `length`
//! payload bytes. HEADERS (type 1) payload: `[pad_len:u8 if PADDED] [dependency:u32
//! weight:u8 if PRIORITY] fragment [padding]`; CONTINUATION (type 9) carries more fragment.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The client connection preface (RFC 9113 §3.4).
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// SETTINGS_MAX_FRAME_SIZE as h2 advertises it (its default, which tonic keeps).
const MAX_FRAME: usize = 16_384;
/// SETTINGS_HEADER_TABLE_SIZE as h2 advertises it (the protocol default).
const HEADER_TABLE_SIZE: usize = 4096;
/// Largest header block accepted (all fragments of one HEADERS + CONTINUATION run).
pub const MAX_HEADER_BLOCK: usize = 256 * 1024;
/// What an invalid `:authority` becomes.
const REPLACEMENT: &[u8] = b"localhost";

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// A header block being collected across HEADERS and CONTINUATION frames.
struct Pending {
    stream: [u8; 4],
    end_stream: bool,
    priority: Option<[u8; 5]>,
    block: Vec<u8>,
}

enum State {
    /// Bytes of the connection preface still to pass through.
    Preface(usize),
    /// Expecting a frame header (or the CONTINUATION of `Pending`).
    Frame,
    /// Payload bytes of a non-header frame still to pass through.
    Payload(usize),
}

/// An accepted stream whose HTTP/2 header blocks get a valid `:authority` (see the module
/// documentation). Writes pass through untouched.
pub struct FixAuthority<IO> {
    inner: IO,
    state: State,
    pending: Option<Pending>,
    decoder: loona_hpack::Decoder<'static>,
    /// Bytes read from the client and not yet processed.
    input: Vec<u8>,
    /// Processed bytes not yet handed to the reader, from `out_pos`.
    output: Vec<u8>,
    out_pos: usize,
    eof: bool,
    /// Header blocks whose authority was replaced (for tests and the debug log).
    pub rewritten: u64,
}

impl<IO> std::fmt::Debug for FixAuthority<IO> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FixAuthority")
            .field("rewritten", &self.rewritten)
            .finish_non_exhaustive()
    }
}

impl<IO> FixAuthority<IO> {
    /// Wraps an accepted connection.
    pub fn new(inner: IO) -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        Self {
            inner,
            state: State::Preface(PREFACE_LEN),
            pending: None,
            decoder,
            input: Vec::new(),
            output: Vec::new(),
            out_pos: 0,
            eof: false,
            rewritten: 0,
        }
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &IO {
        &self.inner
    }

    /// Moves as much of `input` to `output` as the frames allow. Returns whether it made
    /// progress.
    fn process(&mut self) -> io::Result<bool> {
        let mut progressed = false;
        loop {
            match self.state {
                State::Preface(n) | State::Payload(n) if n > 0 => {
                    if self.input.is_empty() {
                        return Ok(progressed);
                    }
                    let take = n.min(self.input.len());
                    self.output.extend(self.input.drain(..take));
                    self.state = match self.state {
                        State::Preface(_) if n == take => State::Frame,
                        State::Preface(_) => State::Preface(n - take),
                        _ if n == take => State::Frame,
                        _ => State::Payload(n - take),
                    };
                    progressed = true;
                }
                State::Preface(_) | State::Payload(_) => self.state = State::Frame,
                State::Frame => {
                    if self.input.len() < FRAME_HEADER_LEN {
                        return Ok(progressed);
                    }
                    let len = usize::from(self.input[0]) << 16
                        | usize::from(self.input[1]) << 8
                        | usize::from(self.input[2]);
                    let kind = self.input[3];
                    let in_block = self.pending.is_some();
                    if kind != TYPE_HEADERS && kind != TYPE_CONTINUATION && !in_block {
                        self.output.extend(self.input.drain(..FRAME_HEADER_LEN));
                        self.state = State::Payload(len);
                        progressed = true;
                        continue;
                    }
                    if len > MAX_FRAME {
                        return Err(invalid(format!(
                            "HTTP/2 header frame of {len} bytes exceeds the {MAX_FRAME}-byte maximum"
                        )));
                    }
                    if self.input.len() < FRAME_HEADER_LEN + len {
                        return Ok(progressed);
                    }
                    let frame: Vec<u8> = self.input.drain(..FRAME_HEADER_LEN + len).collect();
                    self.header_frame(&frame)?;
                    progressed = true;
                }
            }
        }
    }

    /// Handles one complete HEADERS or CONTINUATION frame (or, inside a header block, any
    /// frame: anything but a CONTINUATION of the same stream is a protocol error).
    fn header_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        let (kind, flags) = (frame[3], frame[4]);
        let mut stream = [0u8; 4];
        stream.copy_from_slice(&frame[5..9]);
        let payload = &frame[FRAME_HEADER_LEN..];
        let fragment = match (&mut self.pending, kind) {
            (Some(p), TYPE_CONTINUATION) if p.stream == stream => payload,
            (Some(_), _) => {
                return Err(invalid(
                    "HTTP/2 header block interrupted by another frame (expected CONTINUATION)",
                ))
            }
            (None, TYPE_CONTINUATION) => {
                return Err(invalid("HTTP/2 CONTINUATION frame outside a header block"))
            }
            (None, _) => {
                let mut body = payload;
                let mut pad = 0usize;
                if flags & FLAG_PADDED != 0 {
                    let (&p, rest) = body
                        .split_first()
                        .ok_or_else(|| invalid("HTTP/2 HEADERS frame too short for padding"))?;
                    pad = usize::from(p);
                    body = rest;
                }
                let mut priority = None;
                if flags & FLAG_PRIORITY != 0 {
                    if body.len() < 5 {
                        return Err(invalid("HTTP/2 HEADERS frame too short for priority"));
                    }
                    let mut p = [0u8; 5];
                    p.copy_from_slice(&body[..5]);
                    priority = Some(p);
                    body = &body[5..];
                }
                if pad > body.len() {
                    return Err(invalid("HTTP/2 HEADERS padding exceeds the frame"));
                }
                self.pending = Some(Pending {
                    stream,
                    end_stream: flags & FLAG_END_STREAM != 0,
                    priority,
                    block: Vec::new(),
                });
                &body[..body.len() - pad]
            }
        };
        let Some(p) = self.pending.as_mut() else {
            unreachable!("set above")
        };
        if p.block.len() + fragment.len() > MAX_HEADER_BLOCK {
            return Err(invalid(format!(
                "HTTP/2 header block exceeds {MAX_HEADER_BLOCK} bytes"
            )));
        }
        p.block.extend_from_slice(fragment);
        if flags & FLAG_END_HEADERS != 0 {
            let p = self
                .pending
                .take()
                .unwrap_or_else(|| unreachable!("set above"));
            self.emit_block(p)?;
        }
        Ok(())
    }

    /// Decodes a complete header block, fixes `:authority`, and writes it out as HEADERS
    /// (plus CONTINUATIONs when it outgrows one frame).
    fn emit_block(&mut self, p: Pending) -> io::Result<()> {
        let mut encoded = Vec::with_capacity(p.block.len() * 2);
        let mut replaced = false;
        let mut write_err = None;
        self.decoder
            .decode_with_cb(&p.block, |name, value| {
                let value: &[u8] = if &*name == b":authority"
                    && http::uri::Authority::try_from(&*value).is_err()
                {
                    replaced = true;
                    REPLACEMENT
                } else {
                    &value
                };
                if let Err(e) = encode_literal(&name, value, &mut encoded) {
                    write_err = Some(e);
                }
            })
            .map_err(|e| invalid(format!("undecodable HTTP/2 header block: {e:?}")))?;
        if let Some(e) = write_err {
            return Err(e);
        }
        if replaced {
            self.rewritten += 1;
            tracing::trace!("replaced an invalid :authority with localhost");
        }
        let prio_len = if p.priority.is_some() { 5 } else { 0 };
        let first = encoded.len().min(MAX_FRAME - prio_len);
        let (head, mut rest) = encoded.split_at(first);
        let mut flags = if p.end_stream { FLAG_END_STREAM } else { 0 };
        if p.priority.is_some() {
            flags |= FLAG_PRIORITY;
        }
        if rest.is_empty() {
            flags |= FLAG_END_HEADERS;
        }
        push_frame_header(
            &mut self.output,
            head.len() + prio_len,
            TYPE_HEADERS,
            flags,
            p.stream,
        );
        if let Some(prio) = p.priority {
            self.output.extend_from_slice(&prio);
        }
        self.output.extend_from_slice(head);
        while !rest.is_empty() {
            let n = rest.len().min(MAX_FRAME);
            let (chunk, tail) = rest.split_at(n);
            let flags = if tail.is_empty() { FLAG_END_HEADERS } else { 0 };
            push_frame_header(&mut self.output, n, TYPE_CONTINUATION, flags, p.stream);
            self.output.extend_from_slice(chunk);
            rest = tail;
        }
        Ok(())
    }
}

fn push_frame_header(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: [u8; 4]) {
    let len = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    out.extend_from_slice(&len[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream);
}

/// "Literal Header Field without Indexing — New Name" (RFC 7541 §6.2.2), no Huffman.
fn encode_literal(name: &[u8], value: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    out.push(0);
    loona_hpack::encoder::encode_integer_into(name.len(), 7, 0, out)?;
    out.extend_from_slice(name);
    loona_hpack::encoder::encode_integer_into(value.len(), 7, 0, out)?;
    out.extend_from_slice(value);
    Ok(())
}

impl<IO: AsyncRead + Unpin> AsyncRead for FixAuthority<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.out_pos < this.output.len() {
                let n = buf.remaining().min(this.output.len() - this.out_pos);
                buf.put_slice(&this.output[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                if this.out_pos == this.output.len() {
                    this.output.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.process()? {
                continue;
            }
            if this.eof {
                // A truncated frame at the end: hand over what is left; h2 reports it.
                if !this.input.is_empty() {
                    this.output.append(&mut this.input);
                    continue;
                }
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut rb = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                this.eof = true;
            } else {
                this.input.extend_from_slice(rb.filled());
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for FixAuthority<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<IO: tonic::transport::server::Connected> tonic::transport::server::Connected
    for FixAuthority<IO>
{
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        push_frame_header(&mut out, payload.len(), kind, flags, stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// Runs `input` through the wrapper, delivered in `chunk`-byte reads, and returns what
    /// h2 would read.
    async fn through(input: Vec<u8>, chunk: usize) -> io::Result<Vec<u8>> {
        let (mut client, server) = tokio::io::duplex(chunk);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for c in input.chunks(chunk) {
                if client.write_all(c).await.is_err() {
                    break;
                }
            }
        });
        let mut fixed = FixAuthority::new(server);
        let mut out = Vec::new();
        let r = fixed.read_to_end(&mut out).await;
        drop(fixed); // unblocks a writer stuck on a full pipe after an error
        writer.await.unwrap();
        r.map(|_| out)
    }

    type Headers = Vec<(Vec<u8>, Vec<u8>)>;
    type Frames = Vec<(u8, u8, Vec<u8>)>;

    /// Splits h2's view back into frames and decodes every header block.
    fn decode_all(bytes: &[u8]) -> (Frames, Vec<Headers>) {
        assert_eq!(&bytes[..PREFACE_LEN], PREFACE);
        let mut rest = &bytes[PREFACE_LEN..];
        let mut frames = Vec::new();
        let mut blocks = Vec::new();
        let mut dec = loona_hpack::Decoder::new();
        let mut block = Vec::new();
        while !rest.is_empty() {
            let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
            let (kind, flags) = (rest[3], rest[4]);
            let payload = rest[9..9 + len].to_vec();
            if kind == TYPE_HEADERS || kind == TYPE_CONTINUATION {
                let start = if kind == TYPE_HEADERS && flags & FLAG_PRIORITY != 0 {
                    5
                } else {
                    0
                };
                assert_eq!(flags & FLAG_PADDED, 0, "padding is removed");
                block.extend_from_slice(&payload[start..]);
                if flags & FLAG_END_HEADERS != 0 {
                    blocks.push(dec.decode(&block).unwrap());
                    block.clear();
                }
            }
            frames.push((kind, flags, payload));
            rest = &rest[9 + len..];
        }
        (frames, blocks)
    }

    fn headers(authority: &[u8], extra: &[(&[u8], &[u8])]) -> Headers {
        let mut h: Headers = vec![
            (b":method".to_vec(), b"POST".to_vec()),
            (b":scheme".to_vec(), b"http".to_vec()),
            (b":path".to_vec(), b"/grpc.health.v1.Health/Check".to_vec()),
            (b":authority".to_vec(), authority.to_vec()),
            (b"content-type".to_vec(), b"application/grpc".to_vec()),
        ];
        h.extend(extra.iter().map(|(n, v)| (n.to_vec(), v.to_vec())));
        h
    }

    #[tokio::test]
    async fn grpcio_style_authority_is_replaced_and_the_rest_passes_through() {
        // The client's encoder indexes (stateful), as gRPC core does: the second request's
        // block refers to dynamic-table entries of the first.
        let mut enc = loona_hpack::Encoder::new();
        let bad = b"home%2Fu%2F.spacetime%2Fminerd.sock";
        let h1 = headers(bad, &[(b"te", b"trailers")]);
        let b1 = enc.encode(h1.iter().map(|(n, v)| (&n[..], &v[..])));
        let b2 = enc.encode(h1.iter().map(|(n, v)| (&n[..], &v[..])));
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100])); // SETTINGS
        input.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &b1));
        // DATA, then HEADERS padded and with priority, split over a CONTINUATION.
        input.extend(frame(0x0, FLAG_END_STREAM, 1, b"\0\0\0\0\x05hello"));
        let mut p = vec![3u8, 0, 0, 0, 0, 15];
        p.extend_from_slice(&b2[..4]);
        p.extend_from_slice(&[0, 0, 0]);
        input.extend(frame(TYPE_HEADERS, FLAG_PADDED | FLAG_PRIORITY, 3, &p));
        input.extend(frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 3, &b2[4..]));
        for chunk in [1, 7, 4096] {
            let out = through(input.clone(), chunk).await.unwrap();
            let (frames, blocks) = decode_all(&out);
            let kinds: Vec<u8> = frames.iter().map(|f| f.0).collect();
            assert_eq!(kinds, [0x4, TYPE_HEADERS, 0x0, TYPE_HEADERS]);
            assert_eq!(frames[0].2, [0, 3, 0, 0, 0, 100]);
            assert_eq!(frames[2].2, b"\0\0\0\0\x05hello");
            assert_eq!(frames[2].1, FLAG_END_STREAM);
            assert_eq!(&frames[3].2[..5], &[0, 0, 0, 0, 15], "priority kept");
            let want = headers(b"localhost", &[(b"te", b"trailers")]);
            assert_eq!(blocks, [want.clone(), want]);
        }
    }

    #[tokio::test]
    async fn valid_authorities_and_large_blocks_survive_unchanged() {
        let mut enc = loona_hpack::Encoder::new();
        let big = vec![b'x'; 40_000];
        let h = headers(b"localhost:9090", &[(b"x-big", &big)]);
        let b = enc.encode(h.iter().map(|(n, v)| (&n[..], &v[..])));
        let mut input = PREFACE.to_vec();
        for (i, c) in b.chunks(MAX_FRAME).enumerate() {
            let last = (i + 1) * MAX_FRAME >= b.len();
            let kind = if i == 0 {
                TYPE_HEADERS
            } else {
                TYPE_CONTINUATION
            };
            let flags =
                if last { FLAG_END_HEADERS } else { 0 } | if i == 0 { FLAG_END_STREAM } else { 0 };
            input.extend(frame(kind, flags, 1, c));
        }
        let out = through(input, 1000).await.unwrap();
        let (frames, blocks) = decode_all(&out);
        assert!(frames.iter().all(|f| f.2.len() <= MAX_FRAME));
        assert_eq!(frames[0].1 & FLAG_END_STREAM, FLAG_END_STREAM);
        assert_eq!(blocks, [h]);
    }

    #[tokio::test]
    async fn hostile_header_frames_end_the_connection() {
        let oversized = {
            let mut v = PREFACE.to_vec();
            v.extend(frame(
                TYPE_HEADERS,
                FLAG_END_HEADERS,
                1,
                &vec![0u8; MAX_FRAME + 1],
            ));
            v
        };
        let garbage = {
            let mut v = PREFACE.to_vec();
            v.extend(frame(
                TYPE_HEADERS,
                FLAG_END_HEADERS,
                1,
                &[0xff, 0xff, 0xff],
            ));
            v
        };
        let interrupted = {
            let mut v = PREFACE.to_vec();
            v.extend(frame(TYPE_HEADERS, 0, 1, &[0x82]));
            v.extend(frame(0x0, 0, 1, b"x"));
            v
        };
        let lone_continuation = {
            let mut v = PREFACE.to_vec();
            v.extend(frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, &[0x82]));
            v
        };
        let bad_padding = {
            let mut v = PREFACE.to_vec();
            v.extend(frame(
                TYPE_HEADERS,
                FLAG_PADDED | FLAG_END_HEADERS,
                1,
                &[9, 0x82],
            ));
            v
        };
        let endless = {
            let mut v = PREFACE.to_vec();
            v.extend(frame(TYPE_HEADERS, 0, 1, &vec![0u8; MAX_FRAME]));
            for _ in 0..MAX_HEADER_BLOCK / MAX_FRAME + 1 {
                v.extend(frame(TYPE_CONTINUATION, 0, 1, &vec![0u8; MAX_FRAME]));
            }
            v
        };
        for input in [
            oversized,
            garbage,
            interrupted,
            lone_continuation,
            bad_padding,
            endless,
        ] {
            let e = through(input, 4096).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        }
    }

    #[tokio::test]
    async fn big_data_frames_stream_through_without_buffering_whole() {
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x0, 0, 1, &vec![7u8; 100_000]));
        let out = through(input.clone(), 512).await.unwrap();
        assert_eq!(out, input);
    }
}
