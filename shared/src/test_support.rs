//! Helpers of shared's unit tests: the reference test vectors (`testdata/vectors.json`),
//! the names in a directory, and small plots.

use std::path::Path;

/// The parsed vectors file.
pub(crate) fn vectors() -> serde_json::Value {
    serde_json::from_str(include_str!("../testdata/vectors.json")).unwrap()
}

/// The file names in `dir`, sorted.
pub(crate) fn file_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A 32-byte value of the vectors, written as hex.
pub(crate) fn hex32(v: &serde_json::Value) -> [u8; 32] {
    hex::decode(v.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

/// A plot of `leaves` leaves at `dir/name` (no cache), opened.
pub(crate) fn plot(dir: &Path, name: &str, leaves: u64) -> crate::plot::PlotFile {
    let path = dir.join(name);
    let req = crate::plot::CreatePlot {
        path: path.clone(),
        miner_pk: [4; 32],
        seed: [5; 32],
        leaf_count: leaves,
        cache: crate::plot::CacheLevels::Disabled,
        threads: Some(1),
    };
    crate::plot::create_plot(
        &req,
        &mut |_| {},
        &std::sync::atomic::AtomicBool::new(false),
    )
    .unwrap();
    crate::plot::PlotFile::open(&path).unwrap()
}
