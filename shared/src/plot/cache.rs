//! The Merkle cache file `<plot path>.cache` (reference `CacheSerializer`, "MKTC").
//!
//! All integers little-endian:
//!
//! | field                         | type                                   |
//! |-------------------------------|----------------------------------------|
//! | magic                         | `MKTC`                                 |
//! | version                       | u8 = 1                                 |
//! | tree height H                 | i32 ≥ 0                                |
//! | hash name length L            | i32, 0..=1024                          |
//! | hash name                     | L bytes UTF-8, `SHA-256`               |
//! | hash size                     | i32 = 32                               |
//! | start level                   | i32 ≥ 0                                |
//! | end level                     | i32, start ≤ end < H                   |
//! | level count                   | i32 = end − start + 1                  |
//! | per level: level number       | i32 in start..=end, each exactly once  |
//! | per level: node count         | i64 ≥ 0                                |
//! | per level: nodes              | count × 32 bytes, index order          |
//!
//! The file holds whole levels `start..=end` of the plot's tree. The reference stores the
//! K levels below the root; we default to lower levels (decisions D8) so that a proof reads
//! only a small subtree of leaves. The file is not bound to its plot: [`MerkleCache::validate`]
//! checks every level against the one below and the root against the plot header before
//! the cache is trusted. [`build_cache`] builds the cache of an existing plot (one written
//! without a cache, e.g. by the reference) in one pass over its leaves.

mod build;

use std::path::{Path, PathBuf};

use crate::atomic_file;
use crate::hash::Hash32;
use crate::merkle::{internal_node, level_size, padded_parent};
use crate::plot::PlotHeader;
use crate::regular_file::{self, FileIoError, ReadFileError};

pub use build::{build_cache, build_cache_file, CacheBuildError};

const MAGIC: [u8; 4] = *b"MKTC";
const VERSION: u8 = 1;
const HASH_NAME: &str = "SHA-256";
const HASH_SIZE: usize = 32;
/// The reference refuses to serialize a cache past `i32::MAX` bytes.
pub const MAX_CACHE_BYTES: u64 = i32::MAX as u64;

/// Refuses, before anything is built, a cache of levels `start..height` of a tree of
/// `leaf_count` leaves whose file would exceed [`MAX_CACHE_BYTES`].
pub(crate) fn check_cache_size(leaf_count: u64, start: u32, height: u32) -> Result<(), CacheError> {
    let bytes: u64 = (start..height)
        .map(|l| 12 + level_size(leaf_count, l) * 32)
        .sum::<u64>()
        + 36;
    if bytes > MAX_CACHE_BYTES {
        return Err(CacheError::TooLarge { bytes });
    }
    Ok(())
}

/// Why a cache file could not be read, written or trusted.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Reading or writing the file failed.
    #[error(transparent)]
    Io(FileIoError),
    /// The bytes end before a field.
    #[error("cache truncated at byte {offset}: {field} needs {needed} more bytes")]
    Truncated {
        /// Where the field starts.
        offset: usize,
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        needed: u64,
    },
    /// A field holds a value the format forbids.
    #[error("invalid cache field {field}: {value}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// The offending value.
        value: i64,
    },
    /// The file does not start with `MKTC` version 1.
    #[error("not a Merkle cache file (bad magic or version)")]
    BadMagic,
    /// The hash is not SHA-256 with 32-byte nodes.
    #[error("unsupported cache hash {name:?} of size {size}")]
    UnsupportedHash {
        /// Hash name stored.
        name: String,
        /// Hash size stored.
        size: i64,
    },
    /// A level is listed twice (so another is missing).
    #[error("cache level {level} appears twice")]
    DuplicateLevel {
        /// The level number.
        level: u32,
    },
    /// Bytes follow the last level.
    #[error("{count} trailing bytes after the cache")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// The cache would exceed the format's 2 GiB limit.
    #[error("cache of {bytes} bytes exceeds the format limit")]
    TooLarge {
        /// Size it would have.
        bytes: u64,
    },
    /// The cache does not describe this plot's tree.
    #[error("cache does not match the plot: {reason}")]
    Mismatch {
        /// What differs.
        reason: String,
    },
}

/// Levels `start_level ..= start_level + levels.len() − 1` of a plot's Merkle tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerkleCache {
    /// Height of the plot's tree.
    pub tree_height: u32,
    /// The lowest stored level.
    pub start_level: u32,
    /// `levels[i]` holds every node of level `start_level + i`, in index order.
    pub levels: Vec<Vec<Hash32>>,
}

impl MerkleCache {
    /// The cache path of a plot: the plot path with `.cache` appended.
    pub fn path_for(plot_path: &Path) -> PathBuf {
        let mut s = plot_path.as_os_str().to_os_string();
        s.push(".cache");
        PathBuf::from(s)
    }

    /// The highest stored level, or `None` when no level is stored.
    pub fn end_level(&self) -> Option<u32> {
        let len = u32::try_from(self.levels.len()).ok()?;
        len.checked_sub(1)
            .and_then(|l| self.start_level.checked_add(l))
    }

    /// Node `index` of `level`, if stored.
    pub fn node(&self, level: u32, index: u64) -> Option<&Hash32> {
        let slot = level.checked_sub(self.start_level)? as usize;
        self.levels.get(slot)?.get(usize::try_from(index).ok()?)
    }

    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> u64 {
        let header = 4 + 1 + 4 + 4 + HASH_NAME.len() as u64 + 4 + 4 + 4 + 4;
        let levels: u64 = self
            .levels
            .iter()
            .map(|l| 12 + l.len() as u64 * HASH_SIZE as u64)
            .sum();
        header + levels
    }

    /// The file bytes, exactly as the reference serializer lays them out.
    pub fn encode(&self) -> Result<Vec<u8>, CacheError> {
        let bytes = self.encoded_len();
        let end = self.end_level().ok_or(CacheError::InvalidField {
            field: "level count",
            value: 0,
        })?;
        if bytes > MAX_CACHE_BYTES {
            return Err(CacheError::TooLarge { bytes });
        }
        let as_i32 = |field, v: u32| {
            i32::try_from(v).map_err(|_| CacheError::InvalidField {
                field,
                value: i64::from(v),
            })
        };
        let height = as_i32("tree height", self.tree_height)?;
        let start = as_i32("start level", self.start_level)?;
        let end = as_i32("end level", end)?;
        let mut out = Vec::with_capacity(bytes as usize);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&height.to_le_bytes());
        out.extend_from_slice(&(HASH_NAME.len() as i32).to_le_bytes());
        out.extend_from_slice(HASH_NAME.as_bytes());
        out.extend_from_slice(&(HASH_SIZE as i32).to_le_bytes());
        out.extend_from_slice(&start.to_le_bytes());
        out.extend_from_slice(&end.to_le_bytes());
        out.extend_from_slice(&(end - start + 1).to_le_bytes());
        for (level, nodes) in (start..).zip(&self.levels) {
            out.extend_from_slice(&level.to_le_bytes());
            out.extend_from_slice(&(nodes.len() as i64).to_le_bytes());
            out.extend_from_slice(nodes.as_flattened());
        }
        Ok(out)
    }

    /// Parse a cache file with every reference check, plus: the hash must be SHA-256/32.
    /// Never allocates more than the input can fill.
    pub fn decode(bytes: &[u8]) -> Result<Self, CacheError> {
        let mut r = Reader { bytes, pos: 0 };
        if r.take::<4>("magic")? != MAGIC || r.take::<1>("version")?[0] != VERSION {
            return Err(CacheError::BadMagic);
        }
        if r.remaining() < 24 {
            return Err(CacheError::Truncated {
                offset: r.pos,
                field: "header",
                needed: 24,
            });
        }
        let height = r.i32("tree height")?;
        if height < 0 {
            return Err(invalid("tree height", height));
        }
        let name_len = r.i32("hash name length")?;
        if !(0..=1024).contains(&name_len) {
            return Err(invalid("hash name length", name_len));
        }
        let name = r.slice(name_len as usize, "hash name")?;
        let name = String::from_utf8_lossy(name).into_owned();
        if name.trim().is_empty() {
            return Err(CacheError::UnsupportedHash { name, size: 0 });
        }
        let size = r.i32("hash size")?;
        if size <= 0 {
            return Err(invalid("hash size", size));
        }
        if name != HASH_NAME || size as usize != HASH_SIZE {
            return Err(CacheError::UnsupportedHash {
                name,
                size: i64::from(size),
            });
        }
        let start = r.i32("start level")?;
        if start < 0 {
            return Err(invalid("start level", start));
        }
        let end = r.i32("end level")?;
        if end < start {
            return Err(invalid("end level", end));
        }
        let count = r.i32("level count")?;
        if i64::from(count) != i64::from(end) - i64::from(start) + 1 {
            return Err(invalid("level count", count));
        }
        if height > 0 && end >= height {
            return Err(invalid("end level", end));
        }
        // Each level needs at least 12 bytes: never allocate past what the input holds.
        let count = count as usize;
        if count > r.remaining() / 12 {
            return Err(CacheError::Truncated {
                offset: r.pos,
                field: "levels",
                needed: count as u64 * 12,
            });
        }
        let mut levels: Vec<Option<Vec<Hash32>>> = vec![None; count];
        for _ in 0..count {
            let level = r.i32("level number")?;
            if level < start || level > end {
                return Err(invalid("level number", level));
            }
            let nodes = r.i64("node count")?;
            if nodes < 0 {
                return Err(CacheError::InvalidField {
                    field: "node count",
                    value: nodes,
                });
            }
            let needed = (nodes as u64).saturating_mul(HASH_SIZE as u64);
            if needed > r.remaining() as u64 {
                return Err(CacheError::Truncated {
                    offset: r.pos,
                    field: "nodes",
                    needed,
                });
            }
            let raw = r.slice(needed as usize, "nodes")?;
            let slot = &mut levels[(level - start) as usize];
            if slot.is_some() {
                return Err(CacheError::DuplicateLevel {
                    level: level as u32,
                });
            }
            *slot = Some(
                raw.chunks_exact(HASH_SIZE)
                    .map(|c| c.try_into().unwrap_or([0; 32]))
                    .collect(),
            );
        }
        if r.remaining() != 0 {
            return Err(CacheError::TrailingBytes {
                count: r.remaining(),
            });
        }
        // `count` distinct levels within a range of `count` numbers: none is missing.
        let levels = levels.into_iter().flatten().collect();
        Ok(Self {
            tree_height: height as u32,
            start_level: start as u32,
            levels,
        })
    }

    /// Read and decode a cache file (refusing files past the format's size limit, and
    /// anything that is not a regular file: a FIFO or device named `<plot>.cache` is an
    /// error at once, never a hang or an endless read; see [`crate::regular_file`]).
    pub fn read(path: &Path) -> Result<Self, CacheError> {
        let bytes = regular_file::read_regular(path, MAX_CACHE_BYTES).map_err(|e| match e {
            ReadFileError::TooLarge { bytes, .. } => CacheError::TooLarge { bytes },
            other => CacheError::Io(FileIoError::new("reading", path, other.into_io())),
        })?;
        Self::decode(&bytes)
    }

    /// Write the cache atomically (temporary file, fsync, rename).
    pub fn write_atomic(&self, path: &Path) -> Result<(), CacheError> {
        let bytes = self.encode()?;
        atomic_file::write_atomic(path, &bytes)
            .map_err(|source| CacheError::Io(FileIoError::new("writing", path, source)))
    }

    /// Check that this cache is exactly levels `start..=end` of the plot's tree: the same
    /// height, every level of the right size, each level the parents of the one below, and
    /// the root folded from the top level equal to the header's root.
    pub fn validate(&self, header: &PlotHeader) -> Result<(), CacheError> {
        let mismatch = |reason: String| Err(CacheError::Mismatch { reason });
        let n = header.leaf_count;
        if u64::from(self.tree_height) != header.tree_height {
            return mismatch(format!(
                "tree height {} vs plot {}",
                self.tree_height, header.tree_height
            ));
        }
        let Some(end) = self.end_level() else {
            return mismatch("no level stored".into());
        };
        if end >= self.tree_height {
            return mismatch(format!("level {end} is not below the root"));
        }
        for (level, nodes) in (self.start_level..).zip(&self.levels) {
            if nodes.len() as u64 != level_size(n, level) {
                return mismatch(format!(
                    "level {level} has {} nodes, expected {}",
                    nodes.len(),
                    level_size(n, level)
                ));
            }
        }
        for (i, pair) in self.levels.windows(2).enumerate() {
            if parents(&pair[0]) != pair[1] {
                let level = self.start_level as usize + i + 1;
                return mismatch(format!("level {level} is not built from the level below"));
            }
        }
        let mut top = self.levels.last().cloned().unwrap_or_default();
        while top.len() > 1 {
            top = parents(&top);
        }
        if top.first() != Some(&header.merkle_root) {
            return mismatch("root recomputed from the top level differs".into());
        }
        Ok(())
    }
}

/// The next level up: pairs hashed, a lone last node padded.
pub(crate) fn parents(nodes: &[Hash32]) -> Vec<Hash32> {
    nodes
        .chunks(2)
        .map(|pair| match pair {
            [l, r] => internal_node(l, r),
            // `chunks(2)` never yields an empty chunk, so this is the lone last node.
            _ => padded_parent(&pair[0]),
        })
        .collect()
}

fn invalid(field: &'static str, value: i32) -> CacheError {
    CacheError::InvalidField {
        field,
        value: i64::from(value),
    }
}

/// A bounds-checked little-endian cursor.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn slice(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], CacheError> {
        if len > self.remaining() {
            return Err(CacheError::Truncated {
                offset: self.pos,
                field,
                needed: len as u64,
            });
        }
        let out = &self.bytes[self.pos..self.pos + len];
        self.pos += len;
        Ok(out)
    }

    fn take<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], CacheError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.slice(N, field)?);
        Ok(out)
    }

    fn i32(&mut self, field: &'static str) -> Result<i32, CacheError> {
        self.take::<4>(field).map(i32::from_le_bytes)
    }

    fn i64(&mut self, field: &'static str) -> Result<i64, CacheError> {
        self.take::<8>(field).map(i64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{leaf_node, root_of_leaves};
    use crate::plot::LeafGenerator;
    use crate::test_support::{hex32, vectors};
    use proptest::prelude::*;

    /// All levels of a small tree, level 0 first (the root level last).
    fn all_levels(leaves: &[[u8; 32]]) -> Vec<Vec<Hash32>> {
        let mut levels = vec![leaves.iter().map(leaf_node).collect::<Vec<_>>()];
        while levels.last().unwrap().len() > 1 {
            let next = parents(levels.last().unwrap());
            levels.push(next);
        }
        levels
    }

    fn vector_plot(n: u64) -> (PlotHeader, Vec<Vec<Hash32>>) {
        let v = vectors();
        let gen = LeafGenerator::new(&hex32(&v["inputs"]["pubkey"]), &hex32(&v["inputs"]["seed"]));
        let leaves: Vec<[u8; 32]> = (0..n).map(|i| gen.leaf(i)).collect();
        let header = PlotHeader::new(
            hex32(&v["inputs"]["seed"]),
            n,
            root_of_leaves(&leaves).unwrap(),
        );
        (header, all_levels(&leaves))
    }

    #[test]
    fn sixteen_leaf_cache_matches_vector_byte_for_byte() {
        let (header, levels) = vector_plot(16);
        let cache = MerkleCache {
            tree_height: 4,
            start_level: 2,
            levels: levels[2..4].to_vec(),
        };
        let bytes = cache.encode().unwrap();
        assert_eq!(
            hex::encode(&bytes),
            vectors()["cache_16_leaves_2_levels"].as_str().unwrap()
        );
        assert_eq!(bytes.len(), 252);
        assert_eq!(MerkleCache::decode(&bytes).unwrap(), cache);
        cache.validate(&header).unwrap();
    }

    #[test]
    fn validate_rejects_stale_or_inconsistent_caches() {
        let (header, levels) = vector_plot(13);
        let good = MerkleCache {
            tree_height: 4,
            start_level: 1,
            levels: levels[1..4].to_vec(),
        };
        good.validate(&header).unwrap();

        let mut other = header;
        other.merkle_root[0] ^= 1;
        assert!(good.validate(&other).is_err(), "root differs");

        let mut bad = good.clone();
        bad.levels[0][3][5] ^= 1;
        assert!(bad.validate(&header).is_err(), "lower level corrupted");

        let mut bad = good.clone();
        bad.levels[0].pop();
        assert!(bad.validate(&header).is_err(), "level size");

        let bad = MerkleCache {
            tree_height: 4,
            start_level: 2,
            levels: levels[2..5].to_vec(),
        };
        assert!(bad.validate(&header).is_err(), "root level stored");

        let bad = MerkleCache {
            tree_height: 5,
            ..good.clone()
        };
        assert!(bad.validate(&header).is_err(), "height");
    }

    #[test]
    fn path_appends_cache_suffix() {
        assert_eq!(
            MerkleCache::path_for(Path::new("/a/x.plot")),
            PathBuf::from("/a/x.plot.cache")
        );
    }

    #[test]
    fn hostile_inputs_are_errors() {
        let (_, levels) = vector_plot(16);
        let good = MerkleCache {
            tree_height: 4,
            start_level: 2,
            levels: levels[2..4].to_vec(),
        }
        .encode()
        .unwrap();
        for len in 0..good.len() {
            assert!(
                MerkleCache::decode(&good[..len]).is_err(),
                "truncated to {len}"
            );
        }
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(
            MerkleCache::decode(&long),
            Err(CacheError::TrailingBytes { count: 1 })
        ));

        // A huge node count must fail before allocating.
        let mut huge = good.clone();
        huge[40..48].copy_from_slice(&i64::MAX.to_le_bytes());
        assert!(matches!(
            MerkleCache::decode(&huge),
            Err(CacheError::Truncated { .. })
        ));
        let mut neg = good.clone();
        neg[40..48].copy_from_slice(&(-1i64).to_le_bytes());
        assert!(MerkleCache::decode(&neg).is_err());
        // A huge level count.
        let mut many = good.clone();
        many[28..32].copy_from_slice(&i32::MAX.to_le_bytes());
        many[32..36].copy_from_slice(&i32::MAX.to_le_bytes());
        many[5..9].copy_from_slice(&0i32.to_le_bytes());
        assert!(MerkleCache::decode(&many).is_err());
        // Duplicate level (3 listed twice, 2 missing).
        let mut dup = good.clone();
        dup[36..40].copy_from_slice(&3i32.to_le_bytes());
        assert!(MerkleCache::decode(&dup).is_err());
        // Negative height, end >= height, wrong hash name.
        let mut b = good.clone();
        b[5..9].copy_from_slice(&(-1i32).to_le_bytes());
        assert!(MerkleCache::decode(&b).is_err());
        let mut b = good.clone();
        b[5..9].copy_from_slice(&3i32.to_le_bytes());
        assert!(MerkleCache::decode(&b).is_err());
        let mut b = good;
        b[13] = b'X';
        assert!(matches!(
            MerkleCache::decode(&b),
            Err(CacheError::UnsupportedHash { .. })
        ));
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(
            tree_height in 1u32..40,
            start in 0u32..39,
            sizes in proptest::collection::vec(0usize..5, 1..4),
            seed in any::<u8>(),
        ) {
            prop_assume!(start + (sizes.len() as u32) <= tree_height);
            let levels: Vec<Vec<Hash32>> = sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| (0..n).map(|j| [seed ^ (i as u8) ^ (j as u8); 32]).collect())
                .collect();
            let cache = MerkleCache { tree_height, start_level: start, levels };
            let bytes = cache.encode().unwrap();
            prop_assert_eq!(bytes.len() as u64, cache.encoded_len());
            prop_assert_eq!(MerkleCache::decode(&bytes).unwrap(), cache);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = MerkleCache::decode(&bytes);
        }
    }
}
