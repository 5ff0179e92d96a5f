//! Streaming the leaf bytes of a new plot to its temporary file.
//!
//! When the filesystem allows it, bytes go out with `O_DIRECT` in large 4 KiB-aligned
//! writes from an aligned staging buffer: the kernel then DMAs them to the device instead
//! of copying every byte into the page cache (that copy costs more CPU than a fifth of the
//! hashing on a 2-core machine). Where `O_DIRECT` is refused (tmpfs, some network
//! filesystems: `EINVAL` at open or at the first write), the same writes go through the
//! ordinary buffered descriptor. The unaligned tail and the header are always written
//! buffered.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// Alignment of direct writes (offsets, lengths and buffer addresses).
const ALIGN: usize = 4096;
/// Bytes staged before a write.
const STAGE: usize = 8 << 20;

/// Appends bytes to a file from a given starting offset.
pub(super) struct LeafWriter<'f> {
    buffered: &'f File,
    direct: Option<File>,
    stage: Vec<u8>,
    /// Index of the first aligned byte of `stage`.
    start: usize,
    /// Bytes staged at `stage[start..]`.
    len: usize,
    /// File offset of `stage[start]` (always a multiple of `ALIGN`).
    pos: u64,
}

impl<'f> LeafWriter<'f> {
    /// A writer whose first staged bytes are `prefix` at offset 0 (the header placeholder),
    /// writing with `O_DIRECT` through a second descriptor of `path` when allowed.
    pub(super) fn new(buffered: &'f File, path: &Path, prefix: &[u8]) -> Self {
        Self::with_mode(buffered, path, prefix, true)
    }

    fn with_mode(buffered: &'f File, path: &Path, prefix: &[u8], allow_direct: bool) -> Self {
        let direct = allow_direct
            .then(|| {
                OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_DIRECT)
                    .open(path)
                    .ok()
            })
            .flatten();
        let stage = vec![0u8; STAGE + ALIGN];
        let start = stage.as_ptr().align_offset(ALIGN);
        let (direct, start) = if start < ALIGN {
            (direct, start)
        } else {
            (None, 0)
        };
        let mut writer = Self {
            buffered,
            direct,
            stage,
            start,
            len: 0,
            pos: 0,
        };
        writer.stage[start..start + prefix.len()].copy_from_slice(prefix);
        writer.len = prefix.len();
        writer
    }

    /// Append `bytes`.
    pub(super) fn append(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let take = (STAGE - self.len).min(bytes.len());
            let at = self.start + self.len;
            self.stage[at..at + take].copy_from_slice(&bytes[..take]);
            self.len += take;
            bytes = &bytes[take..];
            if self.len == STAGE {
                self.flush_aligned()?;
            }
        }
        Ok(())
    }

    /// Write every whole aligned block staged and keep the remainder.
    fn flush_aligned(&mut self) -> io::Result<()> {
        let n = self.len / ALIGN * ALIGN;
        if n == 0 {
            return Ok(());
        }
        let data = &self.stage[self.start..self.start + n];
        let mut done = false;
        if let Some(direct) = &self.direct {
            match direct.write_all_at(data, self.pos) {
                Ok(()) => done = true,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => self.direct = None,
                Err(e) => return Err(e),
            }
        }
        if !done {
            self.buffered.write_all_at(data, self.pos)?;
        }
        self.pos += n as u64;
        self.stage
            .copy_within(self.start + n..self.start + self.len, self.start);
        self.len -= n;
        Ok(())
    }

    /// Write everything still staged; returns the file length written.
    pub(super) fn finish(mut self) -> io::Result<u64> {
        self.flush_aligned()?;
        let tail = &self.stage[self.start..self.start + self.len];
        self.buffered.write_all_at(tail, self.pos)?;
        Ok(self.pos + self.len as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_every_byte_in_order_whatever_the_split() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w");
        let file = File::create(&path).unwrap();
        let data: Vec<u8> = (0..(STAGE * 2 + 12_345))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let mut w = LeafWriter::new(&file, &path, b"head");
        for piece in data.chunks(1_000_003) {
            w.append(piece).unwrap();
        }
        assert_eq!(w.finish().unwrap(), 4 + data.len() as u64);
        let back = std::fs::read(&path).unwrap();
        assert_eq!(&back[..4], b"head");
        assert!(back[4..] == data[..]);
    }
}
