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
        assert!(plot.leaf(0).is_some());
        assert!(plot.leaf(n - 1).is_some());
        assert!(plot.leaf(n).is_none());
        assert_eq!(plot.leaves(0..n).len() as u64, n);
    }
});
