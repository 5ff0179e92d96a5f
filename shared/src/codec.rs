//! Byte-level reading shared by the block and wire decoders.
//!
//! Every decoder reads through [`Reader`], which never indexes past the input, and reports
//! failures as [`DecodeError`] naming the field that failed. Integers are little-endian, as
//! the reference writes them with `BinaryWriter`. Fields that the reference declares as
//! `i64 ≥ 0` are exposed as `u64` and rejected when the sign bit is set, so a value that
//! decodes always re-encodes to the same bytes.

use thiserror::Error;

/// Why a byte string is not a canonical encoding of the structure being decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The input ends inside a field.
    #[error("{field}: truncated at offset {offset}: needs {needed} bytes, {available} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Offset of the field in the input.
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the input.
        available: usize,
    },
    /// Bytes remain after a complete encoding (decisions D9: encodings are canonical).
    #[error("{what}: {trailing} trailing bytes after a complete encoding")]
    TrailingBytes {
        /// The structure that was decoded.
        what: &'static str,
        /// How many bytes were left over.
        trailing: usize,
    },
    /// A bool byte other than 0x00 or 0x01 (decisions D9).
    #[error("{field}: bool byte {value:#04x} at offset {offset} is neither 0x00 nor 0x01")]
    InvalidBool {
        /// The field being read.
        field: &'static str,
        /// Offset of the byte.
        offset: usize,
        /// The byte found.
        value: u8,
    },
    /// A numeric field outside its allowed range.
    #[error("{field}: value {value} is out of range ({rule})")]
    OutOfRange {
        /// The field being read.
        field: &'static str,
        /// The value found (as a signed 64-bit number, as the reference reads it).
        value: i64,
        /// The rule it breaks, e.g. "must be > 0".
        rule: &'static str,
    },
    /// Two fields that must agree do not.
    #[error("{field}: expected {expected}, found {found}")]
    Mismatch {
        /// The field that disagrees.
        field: &'static str,
        /// The value required by an earlier field.
        expected: i64,
        /// The value found.
        found: i64,
    },
    /// A text field that is not valid UTF-8.
    #[error("{field}: not valid UTF-8")]
    InvalidUtf8 {
        /// The field being read.
        field: &'static str,
    },
    /// A text field that is empty or only whitespace where the reference requires content.
    #[error("{field}: empty or whitespace-only")]
    Blank {
        /// The field being read.
        field: &'static str,
    },
}

/// A bounds-checked cursor over untrusted bytes.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Bytes consumed so far.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn bytes(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                field,
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(field, N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    /// A bool byte: exactly 0x00 or 0x01.
    pub(crate) fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        let offset = self.pos;
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(DecodeError::InvalidBool {
                field,
                offset,
                value,
            }),
        }
    }

    pub(crate) fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array(field)?))
    }

    /// An `i64` that must be ≥ 0, returned as `u64`.
    pub(crate) fn i64_non_negative(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let value = self.i64(field)?;
        u64::try_from(value).map_err(|_| DecodeError::OutOfRange {
            field,
            value,
            rule: "must be >= 0",
        })
    }

    /// An `i32` count in `min..=max` whose items take at least `min_item_len` bytes each;
    /// checked against the bytes left before anyone allocates for it.
    pub(crate) fn count(
        &mut self,
        field: &'static str,
        min: i32,
        max: i32,
        min_item_len: usize,
        rule: &'static str,
    ) -> Result<usize, DecodeError> {
        let offset = self.pos;
        let value = self.i32(field)?;
        if value < min || value > max {
            return Err(DecodeError::OutOfRange {
                field,
                value: i64::from(value),
                rule,
            });
        }
        let count = usize::try_from(value).map_err(|_| DecodeError::OutOfRange {
            field,
            value: i64::from(value),
            rule,
        })?;
        let needed = count.saturating_mul(min_item_len);
        if needed > self.remaining() {
            return Err(DecodeError::Truncated {
                field,
                offset,
                needed,
                available: self.remaining(),
            });
        }
        Ok(count)
    }

    /// Fails unless every byte was consumed.
    pub(crate) fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            trailing => Err(DecodeError::TrailingBytes { what, trailing }),
        }
    }
}

/// `u64` fields that the wire carries as `i64`: written as the same eight bytes.
pub(crate) fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// Length or count as `i32`, saturating (encoders are only given in-range values; decoders
/// reject anything that saturated because the bytes then disagree with the count).
pub(crate) fn put_len(out: &mut Vec<u8>, len: usize) {
    let value = i32::try_from(len).unwrap_or(i32::MAX);
    out.extend_from_slice(&value.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_rejects_reads_past_the_end() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert!(matches!(
            r.i32("x"),
            Err(DecodeError::Truncated { needed: 4, .. })
        ));
        assert_eq!(r.u8("y").unwrap(), 1);
        assert_eq!(r.remaining(), 2);
    }

    #[test]
    fn count_is_checked_against_remaining_bytes() {
        let mut bytes = i32::MAX.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0; 8]);
        let mut r = Reader::new(&bytes);
        assert!(matches!(
            r.count("n", 0, i32::MAX, 1, "n"),
            Err(DecodeError::Truncated { .. })
        ));
        let minus_one = (-1i32).to_le_bytes();
        let mut r = Reader::new(&minus_one);
        assert!(matches!(
            r.count("n", 0, 10, 1, "0..=10"),
            Err(DecodeError::OutOfRange { value: -1, .. })
        ));
    }

    #[test]
    fn bools_are_strict_and_negative_i64_is_rejected() {
        assert!(matches!(
            Reader::new(&[2]).bool("b"),
            Err(DecodeError::InvalidBool { value: 2, .. })
        ));
        assert!(matches!(
            Reader::new(&(-5i64).to_le_bytes()).i64_non_negative("h"),
            Err(DecodeError::OutOfRange { value: -5, .. })
        ));
    }
}
