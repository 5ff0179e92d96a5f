//! `plots_metadata.json`: the parser never panics on any text, what parses writes back
//! (`to_json`) to text that parses to the same entries, and the file loader handles any
//! bytes (invalid UTF-8, a BOM) with a typed error.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use spacetime::metadata::{load, parse_metadata, to_json};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(entries) = parse_metadata(text) {
            let json = to_json(&entries);
            assert_eq!(parse_metadata(&json).ok(), Some(entries));
        }
    }
    if let Ok(mut file) = tempfile::NamedTempFile::new() {
        if file.write_all(data).is_ok() {
            let _ = load(file.path());
        }
    }
});
