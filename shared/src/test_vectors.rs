//! The reference test vectors (`testdata/vectors.json`), read once for every unit test.

/// The parsed vectors file.
pub(crate) fn vectors() -> serde_json::Value {
    serde_json::from_str(include_str!("../testdata/vectors.json")).unwrap()
}

/// A 32-byte value of the vectors, written as hex.
pub(crate) fn hex32(v: &serde_json::Value) -> [u8; 32] {
    hex::decode(v.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}
