//! SHA-256 helpers shared by every format.
//!
//! All hashes in Spacetime are SHA-256 over short, fixed-shape inputs. The helpers here
//! keep hashing on the `sha2` crate (which picks SHA-NI at run time) and expose the raw
//! compression function for the hot paths that precompute a midstate.

use sha2::{Digest, Sha256};

/// A 32-byte SHA-256 digest (also used for leaves, scores, roots and ids).
pub type Hash32 = [u8; 32];

/// SHA-256 of one byte string.
pub fn sha256(data: &[u8]) -> Hash32 {
    Sha256::digest(data).into()
}

/// SHA-256 of the concatenation of several byte strings, without copying them together.
pub fn sha256_concat(parts: &[&[u8]]) -> Hash32 {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// Lower-case hex of a byte string (for logs, errors and the API).
pub fn to_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_empty_string_is_the_standard_value() {
        assert_eq!(
            to_hex(&sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn concat_equals_hash_of_joined_parts() {
        assert_eq!(sha256_concat(&[b"ab", b"", b"cd"]), sha256(b"abcd"));
    }
}
