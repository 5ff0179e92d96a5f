//! `plots_metadata.json`: the plot registry file, in the reference format (section 8.1).
//!
//! A JSON array of objects, indented by 2 spaces, keys in this order:
//!
//! | key                   | JSON type | meaning                                              |
//! |-----------------------|-----------|------------------------------------------------------|
//! | `plotId`              | string    | GUID, lower case `8-4-4-4-12`                        |
//! | `filePath`            | string    | plot path as registered                              |
//! | `cacheFilePath`       | string    | the `.cache` path (the reference always writes `""`; we keep it, decisions D8) |
//! | `spaceAllocatedBytes` | number    | file length (0 when missing)                         |
//! | `merkleRoot`          | string    | standard padded base64 of the root, `""` if unknown  |
//! | `createdAtUtc`        | string    | ISO-8601 UTC, `Z`, 0–7 fraction digits               |
//! | `status`              | string    | `Valid`, `Corrupted` or `Missing`                    |
//!
//! Strings are written with the reference serializer's escaping: `"` `+` `<` `>` `&` `'`
//! `` ` ``, control characters and all non-ASCII as `\uXXXX` (upper-case hex, UTF-16).
//! Reading is lenient like the reference: unknown keys are ignored, missing keys take
//! defaults, a status that is not exactly one of the names (or its number 0–2) is
//! `Missing`; a missing status takes the enum's default, `Valid` (value 0), which the
//! loader re-checks anyway. Unlike the reference, a null string or invalid base64 is a typed
//! error rather than a crash. Duplicate plot ids are returned as found; the reference keeps
//! the first.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::atomic_file;
use crate::clock::civil_from_days;
use crate::hash::Hash32;
use crate::regular_file::{self, FileIoError, ReadFileError};

/// Files larger than this are refused before reading (a registry of a million plots is
/// about 300 MiB; a real one is a few KiB).
pub const MAX_METADATA_BYTES: u64 = 256 * 1024 * 1024;

/// The default `createdAtUtc` of an entry without one (.NET's `DateTime.MinValue`).
pub const DEFAULT_CREATED_AT: &str = "0001-01-01T00:00:00Z";

/// Status of a registered plot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlotStatus {
    /// The plot loads (header and size checks pass).
    Valid,
    /// The file exists but does not load.
    Corrupted,
    /// The file is absent.
    Missing,
}

impl PlotStatus {
    /// The name written in the file.
    pub fn as_str(&self) -> &'static str {
        match self {
            PlotStatus::Valid => "Valid",
            PlotStatus::Corrupted => "Corrupted",
            PlotStatus::Missing => "Missing",
        }
    }

    fn from_json(value: &Value) -> Self {
        let number = match value {
            Value::String(s) => match s.as_str() {
                "Valid" => return PlotStatus::Valid,
                "Corrupted" => return PlotStatus::Corrupted,
                "Missing" => return PlotStatus::Missing,
                other => other.parse::<i64>().ok(),
            },
            Value::Number(n) => n.as_i64(),
            _ => None,
        };
        match number {
            Some(0) => PlotStatus::Valid,
            Some(1) => PlotStatus::Corrupted,
            _ => PlotStatus::Missing,
        }
    }
}

/// One registered plot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlotMetadataEntry {
    /// Random id assigned at registration.
    pub plot_id: Uuid,
    /// Plot path as registered.
    pub file_path: String,
    /// Cache path (empty when none).
    pub cache_file_path: String,
    /// File length including the header; 0 for a missing plot.
    pub space_allocated_bytes: i64,
    /// The plot's Merkle root, if known.
    pub merkle_root: Option<Hash32>,
    /// Registration time, ISO-8601 UTC (see [`format_utc`]).
    pub created_at_utc: String,
    /// Last known status.
    pub status: PlotStatus,
}

/// Why the metadata file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// Reading or writing the file failed.
    #[error(transparent)]
    Io(FileIoError),
    /// The file is larger than [`MAX_METADATA_BYTES`].
    #[error("metadata file of {bytes} bytes is too large")]
    TooLarge {
        /// Its size.
        bytes: u64,
    },
    /// The file is not UTF-8.
    #[error("metadata file is not valid UTF-8")]
    NotUtf8,
    /// The text is not JSON.
    #[error("metadata file is not valid JSON")]
    Json(#[source] serde_json::Error),
    /// The top level is not an array.
    #[error("metadata file is not a JSON array")]
    NotAnArray,
    /// An element is not an object.
    #[error("metadata entry {index} is not a JSON object")]
    NotAnObject {
        /// Position in the array.
        index: usize,
    },
    /// A field has the wrong type or an unusable value.
    #[error("metadata entry {index}: invalid {field}: {reason}")]
    InvalidField {
        /// Position in the array.
        index: usize,
        /// The JSON key.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Parse the file's text.
pub fn parse_metadata(text: &str) -> Result<Vec<PlotMetadataEntry>, MetadataError> {
    let value: Value = serde_json::from_str(text).map_err(MetadataError::Json)?;
    let Value::Array(items) = value else {
        return Err(MetadataError::NotAnArray);
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| match item {
            Value::Object(map) => parse_entry(index, map),
            _ => Err(MetadataError::NotAnObject { index }),
        })
        .collect()
}

fn parse_entry(index: usize, map: &Map<String, Value>) -> Result<PlotMetadataEntry, MetadataError> {
    let invalid = |field: &'static str, reason: String| MetadataError::InvalidField {
        index,
        field,
        reason,
    };
    let string = |field: &'static str| -> Result<Option<&str>, MetadataError> {
        match map.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(invalid(field, format!("expected a string, found {other}"))),
        }
    };
    let plot_id = match string("plotId")? {
        None => Uuid::nil(),
        Some(s) if s.len() == 36 => {
            Uuid::try_parse(s).map_err(|e| invalid("plotId", e.to_string()))?
        }
        Some(s) => return Err(invalid("plotId", format!("not a GUID: {s:?}"))),
    };
    let space_allocated_bytes = match map.get("spaceAllocatedBytes") {
        None => 0,
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| invalid("spaceAllocatedBytes", format!("not an i64: {n}")))?,
        Some(other) => {
            return Err(invalid(
                "spaceAllocatedBytes",
                format!("expected a number, found {other}"),
            ))
        }
    };
    let merkle_root = match string("merkleRoot")? {
        None | Some("") => None,
        Some(s) => {
            let bytes = STANDARD
                .decode(s)
                .map_err(|e| invalid("merkleRoot", format!("invalid base64: {e}")))?;
            let root: Hash32 = bytes.try_into().map_err(|b: Vec<u8>| {
                invalid("merkleRoot", format!("{} bytes, expected 32", b.len()))
            })?;
            Some(root)
        }
    };
    let created_at_utc = match string("createdAtUtc")? {
        None => DEFAULT_CREATED_AT.to_string(),
        Some(s) if is_iso_datetime(s) => s.to_string(),
        Some(s) => {
            return Err(invalid(
                "createdAtUtc",
                format!("not an ISO-8601 time: {s:?}"),
            ))
        }
    };
    Ok(PlotMetadataEntry {
        plot_id,
        file_path: string("filePath")?.unwrap_or_default().to_string(),
        cache_file_path: string("cacheFilePath")?.unwrap_or_default().to_string(),
        space_allocated_bytes,
        merkle_root,
        created_at_utc,
        status: map
            .get("status")
            .map_or(PlotStatus::Valid, PlotStatus::from_json),
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,7}][Z|±HH:MM]`, the forms the reference reads and writes.
fn is_iso_datetime(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if b.len() < 19
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || b[10] != b'T'
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut rest = &b[19..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=7).contains(&n) {
            return false;
        }
        rest = &frac[n..];
    }
    match rest {
        [] | [b'Z'] => true,
        [sign, h1, h2, b':', m1, m2] => {
            matches!(sign, b'+' | b'-') && [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit())
        }
        _ => false,
    }
}

/// The file text for `entries`, byte-compatible with the reference serializer.
pub fn to_json(entries: &[PlotMetadataEntry]) -> String {
    if entries.is_empty() {
        return "[]".to_string();
    }
    let mut out = String::from("[\n");
    for (i, e) in entries.iter().enumerate() {
        let root = e
            .merkle_root
            .map(|r| STANDARD.encode(r))
            .unwrap_or_default();
        out.push_str("  {\n");
        push_field(
            &mut out,
            "plotId",
            &e.plot_id.hyphenated().to_string(),
            true,
        );
        push_field(&mut out, "filePath", &e.file_path, true);
        push_field(&mut out, "cacheFilePath", &e.cache_file_path, true);
        push_field(
            &mut out,
            "spaceAllocatedBytes",
            &e.space_allocated_bytes.to_string(),
            false,
        );
        push_field(&mut out, "merkleRoot", &root, true);
        push_field(&mut out, "createdAtUtc", &e.created_at_utc, true);
        out.push_str("    \"status\": ");
        push_string(&mut out, e.status.as_str());
        out.push_str("\n  }");
        out.push_str(if i + 1 < entries.len() { ",\n" } else { "\n" });
    }
    out.push(']');
    out
}

fn push_field(out: &mut String, key: &str, value: &str, quoted: bool) {
    out.push_str("    \"");
    out.push_str(key);
    out.push_str("\": ");
    if quoted {
        push_string(out, value);
    } else {
        out.push_str(value);
    }
    out.push_str(",\n");
}

/// A JSON string with the reference encoder's escaping.
fn push_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '"' | '+' | '<' | '>' | '&' | '\'' | '`' => push_escaped(out, c),
            c if c.is_ascii_control() || !c.is_ascii() => push_escaped(out, c),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn push_escaped(out: &mut String, c: char) {
    let mut units = [0u16; 2];
    for unit in c.encode_utf16(&mut units) {
        out.push_str(&format!("\\u{unit:04X}"));
    }
}

/// Read the file. A missing file is an empty registry; anything unreadable or malformed is
/// an error (the caller moves the file aside and starts empty, as the reference does).
pub fn load(path: &Path) -> Result<Vec<PlotMetadataEntry>, MetadataError> {
    let io = |op| move |source| MetadataError::Io(FileIoError::new(op, path, source));
    let bytes = match regular_file::read_regular(path, MAX_METADATA_BYTES) {
        Ok(bytes) => bytes,
        Err(ReadFileError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Vec::new())
        }
        Err(ReadFileError::TooLarge { bytes, .. }) => {
            return Err(MetadataError::TooLarge { bytes })
        }
        Err(e) => return Err(io("reading")(e.into_io())),
    };
    let text = String::from_utf8(bytes).map_err(|_| MetadataError::NotUtf8)?;
    // The reference writer emits no BOM, but editors may add one.
    parse_metadata(text.strip_prefix('\u{feff}').unwrap_or(&text))
}

/// Write the file atomically (temporary file, fsync, rename).
pub fn save_atomic(path: &Path, entries: &[PlotMetadataEntry]) -> Result<(), MetadataError> {
    atomic_file::write_atomic(path, to_json(entries).as_bytes())
        .map_err(|source| MetadataError::Io(FileIoError::new("writing", path, source)))
}

/// `time` as the reference writes `DateTime.UtcNow`: `YYYY-MM-DDTHH:MM:SS[.fffffff]Z`, with
/// 100 ns resolution and trailing fraction zeros trimmed. Times before 1970 clamp to 1970.
pub fn format_utc(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let ticks = since.subsec_nanos() / 100;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    );
    if ticks > 0 {
        let frac = format!("{ticks:07}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn entry() -> PlotMetadataEntry {
        PlotMetadataEntry {
            plot_id: Uuid::parse_str("0f8fad5b-d9cb-469f-a165-70867728950e").unwrap(),
            file_path: "/plots/a+b<c>&'`é.plot".into(),
            cache_file_path: "/plots/a.plot.cache".into(),
            space_allocated_bytes: 104_857_721,
            merkle_root: Some([0xfb; 32]),
            created_at_utc: "2025-12-21T10:00:00.1234567Z".into(),
            status: PlotStatus::Valid,
        }
    }

    #[test]
    fn writes_the_reference_layout() {
        let text = to_json(&[entry()]);
        // base64 of 32 × 0xfb is "+/v7" × 10 + "+/s=": the encoder escapes every '+'.
        let root = "\\u002B/v7".repeat(10) + "\\u002B/s=";
        let expected = format!(
            "[\n  {{\n    \"plotId\": \"0f8fad5b-d9cb-469f-a165-70867728950e\",\n    \"filePath\": \"/plots/a\\u002Bb\\u003Cc\\u003E\\u0026\\u0027\\u0060\\u00E9.plot\",\n    \"cacheFilePath\": \"/plots/a.plot.cache\",\n    \"spaceAllocatedBytes\": 104857721,\n    \"merkleRoot\": \"{root}\",\n    \"createdAtUtc\": \"2025-12-21T10:00:00.1234567Z\",\n    \"status\": \"Valid\"\n  }}\n]"
        );
        assert_eq!(text, expected);
        assert_eq!(parse_metadata(&text).unwrap(), vec![entry()]);
        assert_eq!(to_json(&[]), "[]");
    }

    #[test]
    fn escapes_quotes_controls_and_astral_characters() {
        let mut out = String::new();
        push_string(&mut out, "\"\\\n\u{1}\u{7f}😀");
        assert_eq!(out, "\"\\u0022\\\\\\n\\u0001\\u007F\\uD83D\\uDE00\"");
    }

    #[test]
    fn lenient_reading_like_the_reference() {
        let text = r#"[{"plotId":"0f8fad5b-d9cb-469f-a165-70867728950e","extra":[1,2],"status":"valid"},
                       {"status":"Corrupted","merkleRoot":""},{"status":"1"},{"status":2},{}]"#;
        let entries = parse_metadata(text).unwrap();
        assert_eq!(
            entries[0].status,
            PlotStatus::Missing,
            "case-sensitive names"
        );
        assert_eq!(entries[0].file_path, "");
        assert_eq!(entries[1].status, PlotStatus::Corrupted);
        assert_eq!(entries[1].merkle_root, None);
        assert_eq!(entries[2].status, PlotStatus::Corrupted);
        assert_eq!(entries[3].status, PlotStatus::Missing);
        assert_eq!(entries[4].plot_id, Uuid::nil());
        assert_eq!(entries[4].created_at_utc, DEFAULT_CREATED_AT);
    }

    #[test]
    fn hostile_inputs_are_errors() {
        for text in [
            "",
            "{}",
            "[1]",
            "[{\"merkleRoot\":\"not base64!\"}]",
            "[{\"merkleRoot\":\"AAAA\"}]",
            "[{\"filePath\":null}]",
            "[{\"plotId\":\"nope\"}]",
            "[{\"spaceAllocatedBytes\":1.5}]",
            "[{\"spaceAllocatedBytes\":99999999999999999999}]",
            "[{\"createdAtUtc\":\"yesterday\"}]",
            "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]",
        ] {
            assert!(parse_metadata(text).is_err(), "{text}");
        }
    }

    #[test]
    fn load_and_save_round_trip_and_reject_bad_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plots_metadata.json");
        assert_eq!(load(&path).unwrap(), vec![]);
        save_atomic(&path, &[entry(), entry()]).unwrap();
        assert_eq!(load(&path).unwrap(), vec![entry(), entry()]);
        std::fs::write(&path, b"[\"\xff\"]").unwrap();
        assert!(matches!(load(&path), Err(MetadataError::NotUtf8)));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn formats_times_like_the_reference() {
        let t = UNIX_EPOCH + Duration::new(1_766_311_200, 123_456_700);
        assert_eq!(format_utc(t), "2025-12-21T10:00:00.1234567Z");
        let t = UNIX_EPOCH + Duration::new(951_782_400, 500_000_000);
        assert_eq!(format_utc(t), "2000-02-29T00:00:00.5Z");
        assert_eq!(format_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert!(is_iso_datetime(&format_utc(SystemTime::now())));
    }

    fn arb_entry() -> impl Strategy<Value = PlotMetadataEntry> {
        (
            any::<u128>(),
            any::<String>(),
            any::<String>(),
            any::<i64>(),
            proptest::option::of(any::<[u8; 32]>()),
            (0u64..253_402_300_799, 0u32..10_000_000),
            0..3u8,
        )
            .prop_map(|(id, file, cache, bytes, root, (secs, ticks), status)| {
                PlotMetadataEntry {
                    plot_id: Uuid::from_u128(id),
                    file_path: file,
                    cache_file_path: cache,
                    space_allocated_bytes: bytes,
                    merkle_root: root,
                    created_at_utc: format_utc(UNIX_EPOCH + Duration::new(secs, ticks * 100)),
                    status: [
                        PlotStatus::Valid,
                        PlotStatus::Corrupted,
                        PlotStatus::Missing,
                    ][status as usize],
                }
            })
    }

    proptest! {
        #[test]
        fn parse_inverts_to_json(entries in proptest::collection::vec(arb_entry(), 0..4)) {
            prop_assert_eq!(parse_metadata(&to_json(&entries)).unwrap(), entries);
        }

        #[test]
        fn parse_never_panics(text in any::<String>()) {
            let _ = parse_metadata(&text);
        }
    }
}
