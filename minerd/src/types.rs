//! Plain data types that several top-level modules share, so that none of them has to
//! import another for its vocabulary (`events` and `rpc` describe plots and jobs; `plots`
//! owns them).

use std::path::PathBuf;
use std::time::Duration;

use spacetime::metadata::PlotStatus;
use spacetime::plot::{PlotHeader, PlotProgress};
use uuid::Uuid;

/// Lifecycle state of a plot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlotState {
    /// Open and farmed.
    Valid,
    /// Fails to load or failed a check.
    Corrupted,
    /// The file is gone.
    Missing,
    /// Being written by a job.
    Creating,
    /// Same seed as another farmed plot.
    Duplicate,
    /// Made for another miner key: its leaves are not this miner's.
    WrongKey,
}

impl PlotState {
    /// Lower-case name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            PlotState::Valid => "valid",
            PlotState::Corrupted => "corrupted",
            PlotState::Missing => "missing",
            PlotState::Creating => "creating",
            PlotState::Duplicate => "duplicate",
            PlotState::WrongKey => "wrong-key",
        }
    }

    /// The status written to `plots_metadata.json` (the reference knows three).
    pub fn metadata_status(self) -> PlotStatus {
        match self {
            PlotState::Valid | PlotState::Duplicate | PlotState::Creating => PlotStatus::Valid,
            PlotState::Corrupted | PlotState::WrongKey => PlotStatus::Corrupted,
            PlotState::Missing => PlotStatus::Missing,
        }
    }
}

/// A plot as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotInfo {
    /// The plot id.
    pub id: Uuid,
    /// The plot file.
    pub path: PathBuf,
    /// Its cache file, if one exists.
    pub cache_path: Option<PathBuf>,
    /// Current state.
    pub state: PlotState,
    /// File size in bytes (0 when missing).
    pub size_bytes: u64,
    /// The header, when it could be read.
    pub header: Option<PlotHeader>,
    /// The Merkle root (from the header, else from the metadata).
    pub merkle_root: Option<[u8; 32]>,
    /// Registration time, ISO-8601 UTC.
    pub created_at_utc: String,
    /// Why it is not farmed.
    pub problem: Option<String>,
    /// For a duplicate: the farmed plot with the same seed.
    pub duplicate_of: Option<Uuid>,
    /// Whether a validated cache is used for proofs.
    pub cache_in_use: bool,
    /// For a plot being created: its job's progress.
    pub progress: Option<JobProgress>,
    /// Tree levels in the cache in use (0 when none is in use).
    pub cache_levels: u32,
    /// Created with cache levels 0: no cache is ever built for it in the background.
    pub cache_disabled: bool,
    /// The outcome of its last check.
    pub last_check: Option<LastCheck>,
}

/// The outcome of a plot's last check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastCheck {
    /// When it ended, Unix milliseconds.
    pub at_unix_ms: i64,
    /// Passed.
    pub ok: bool,
    /// Full (else sampled).
    pub full: bool,
    /// Leaves or samples checked.
    pub checked: u64,
}

/// Progress of a job.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JobProgress {
    /// Leaves written.
    pub leaves_done: u64,
    /// Leaves in total.
    pub leaves_total: u64,
    /// Bytes produced.
    pub bytes_written: u64,
    /// Rate.
    pub leaves_per_sec: f64,
    /// Time left, once known.
    pub eta: Option<Duration>,
}

impl From<&PlotProgress> for JobProgress {
    fn from(p: &PlotProgress) -> Self {
        Self {
            leaves_done: p.leaves_done,
            leaves_total: p.leaves_total,
            bytes_written: p.bytes_written,
            leaves_per_sec: p.leaves_per_sec,
            eta: p.eta,
        }
    }
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// Written and registered.
    Succeeded,
    /// Failed; nothing left behind.
    Failed,
    /// Cancelled; nothing left behind.
    Cancelled,
}
