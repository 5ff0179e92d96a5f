//! The `.cache` file: the decoder never panics nor allocates past its input, a decoded
//! cache round-trips, and validating it against a plot header never panics. The file path
//! (`MerkleCache::read`) is exercised too.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use spacetime::cache::MerkleCache;
use spacetime::plot::PlotHeader;

fuzz_target!(|data: &[u8]| {
    if let Ok(cache) = MerkleCache::decode(data) {
        let bytes = cache.encode().expect("a decoded cache encodes");
        assert_eq!(bytes.len() as u64, cache.encoded_len());
        assert_eq!(MerkleCache::decode(&bytes).as_ref().ok(), Some(&cache));
        // A header whose tree the cache could belong to (leaf count from the lowest level).
        let lowest = cache.levels.first().map_or(1, |l| l.len() as u64).max(1);
        let leaves = lowest
            .checked_shl(cache.start_level)
            .unwrap_or(u64::MAX >> 1);
        let root = cache
            .levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or([0; 32]);
        let _ = cache.validate(&PlotHeader::new([7; 32], leaves.max(1), root));
    }
    if let Ok(mut file) = tempfile::NamedTempFile::new() {
        if file.write_all(data).is_ok() {
            let _ = MerkleCache::read(file.path());
        }
    }
});
