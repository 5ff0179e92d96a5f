//! Helpers of shared's unit tests: the reference test vectors (`testdata/vectors.json`)
//! and the names in a directory.

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
