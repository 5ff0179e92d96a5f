//! The plot header decoder and `PlotFile::open` on a file holding the input. The first byte
//! chooses whether the header checksum is recomputed first, so the fuzzer gets past it and
//! reaches the checks behind it (counts, leaf size, height, file length, leaf reads).
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use spacetime::hash::sha256;
use spacetime::plot::{PlotFile, PlotHeader, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if ctl & 1 == 1 && bytes.len() >= HEADER_LEN {
        let sum = sha256(&bytes[..89]);
        bytes[89..HEADER_LEN].copy_from_slice(&sum);
    }
    if let Ok(h) = PlotHeader::decode(&bytes) {
        assert_eq!(&h.encode()[..], &bytes[..HEADER_LEN]);
    }
    let Ok(mut file) = tempfile::NamedTempFile::new() else {
        return;
    };
    if file.write_all(&bytes).is_err() {
        return;
    }
    if let Ok(plot) = PlotFile::open(file.path()) {
        let n = plot.leaf_count();
        assert!(n > 0);
        // The whole file is on disk, so every leaf reads; past the end is `None`.
        assert!(matches!(plot.leaf(0), Ok(Some(_))));
        assert!(matches!(plot.leaf(n - 1), Ok(Some(_))));
        assert!(matches!(plot.leaf(n), Ok(None)));
        let mut tail = vec![[0u8; 32]; n.min(1024) as usize];
        plot.read_leaves(n - tail.len() as u64, &mut tail).unwrap();
    }
});
