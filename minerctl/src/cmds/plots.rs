//! Plot commands: `create-plot`, `list-plots`, `show-plot`, `delete-plot`, `check-plot`,
//! `jobs`, `cancel-job`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::ProgressBar;
use serde_json::json;
use spacetime_proto::client::MinerClient;
use spacetime_proto::pb;

use crate::{output, prompt};
use crate::{CmdResult, Failure};

/// Parses a size: a plain byte count or a number with a unit (KiB, MiB, GiB, TiB, or the
/// decimal kB, MB, GB, TB; case-insensitive; `100MiB`, `1.5GiB`, `4096`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let mult: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {s:?} (use KiB, MiB, GiB, TiB, kB, MB, GB, TB)"
            ))
        }
    };
    if num.is_empty() {
        return Err(format!("{s:?} has no number"));
    }
    let bytes = if num.contains('.') {
        let f: f64 = num
            .parse()
            .map_err(|_| format!("{num:?} is not a number"))?;
        let b = f * mult as f64;
        if !(b.is_finite() && b >= 0.0 && b < u64::MAX as f64) {
            return Err(format!("{s:?} is out of range"));
        }
        b as u64
    } else {
        num.parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(mult))
            .ok_or_else(|| format!("{s:?} is out of range"))?
    };
    Ok(bytes)
}

/// Parses `--size`: gigabytes as a decimal number (`1`, `0.5`, `10`: 10^9 bytes each, as
/// the brief says), or a size with a unit (`100MiB`, `1GiB`, `4096B`).
pub fn parse_plot_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.') {
        let gb: f64 = t
            .parse()
            .map_err(|_| format!("{s:?} is not a number of gigabytes"))?;
        let bytes = gb * 1e9;
        if !(bytes.is_finite() && bytes < u64::MAX as f64) {
            return Err(format!("{s:?} is out of range"));
        }
        return Ok(bytes.round() as u64);
    }
    parse_size(t)
}

/// The default plot size of the brief: 1 GB.
pub const DEFAULT_SIZE_BYTES: u64 = 1_000_000_000;

/// Options of `create-plot`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Plot size: gigabytes as a decimal number (0.5, 10), or with a unit (100MiB, 1GiB)
    /// [default: 1]
    #[arg(short = 's', long, value_parser = parse_plot_size, value_name = "SIZE", conflicts_with = "leaves")]
    pub size: Option<u64>,
    /// Number of 32-byte leaves instead of a size
    #[arg(long, value_name = "N")]
    pub leaves: Option<u64>,
    /// Plot file to write, any path (relative to this directory); the plot is registered and
    /// farmed from there [default: a new name in the daemon's plot directory with the most
    /// free space]
    #[arg(short = 'o', long, value_name = "PATH", conflicts_with = "name")]
    pub output: Option<PathBuf>,
    /// File name in the plot directory with the most free space (must end in .plot)
    /// [default: derived from the seed]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Write the Merkle cache (<plot>.cache) while plotting, for fast proofs (minerd does
    /// this by default; the flag makes it explicit and refuses --cache-levels 0)
    #[arg(long)]
    pub cache: bool,
    /// Merkle cache levels below the root to store (the reference meaning); 0 = no cache,
    /// ever: remembered for the plot, so the daemon never builds one in the background
    /// [default: the levels that bound a proof to 4096 leaves of the plot]
    #[arg(long, value_name = "N")]
    pub cache_levels: Option<u32>,
    /// Plot seed as 64 hex characters [default: random]
    #[arg(long, value_name = "HEX")]
    pub seed: Option<String>,
    /// Hashing threads, at most the daemon machine's cores [default: the daemon's
    /// plotThreads]
    #[arg(long, value_name = "N")]
    pub threads: Option<u32>,
    /// Print the job id and return at once; the daemon keeps writing
    #[arg(long)]
    pub no_wait: bool,
    /// Print JSON lines: {"type":"started","job":…}, then {"type":"finished","plot":…}
    #[arg(long)]
    pub json: bool,
}

impl CreateArgs {
    /// The request, or a usage error found without asking the daemon.
    pub fn request(&self) -> Result<pb::CreatePlotRequest, Failure> {
        let a = self;
        let seed = match &a.seed {
            None => Vec::new(),
            Some(h) => match hex::decode(h.trim()) {
                Ok(b) if b.len() == 32 => b,
                _ => {
                    return Err(Failure::usage(
                        "--seed must be 64 hex characters (32 bytes)",
                    ))
                }
            },
        };
        if a.cache && a.cache_levels == Some(0) {
            return Err(Failure::usage(
                "--cache asks for a Merkle cache and --cache-levels 0 for none: choose one",
            ));
        }
        let output_path = match &a.output {
            Some(p) => {
                let abs = crate::conn::absolute(p);
                if abs.extension().is_none_or(|e| e != "plot") {
                    return Err(Failure::usage(format!(
                        "--output {}: a plot file name must end in .plot",
                        p.display()
                    )));
                }
                abs.to_string_lossy().into_owned()
            }
            None => String::new(),
        };
        let (leaf_count, size_bytes) = match (a.leaves, a.size) {
            (Some(n), _) => (n, 0),
            (None, Some(b)) => (0, b),
            (None, None) => (0, DEFAULT_SIZE_BYTES),
        };
        Ok(pb::CreatePlotRequest {
            leaf_count,
            size_bytes,
            cache_levels: a.cache_levels,
            seed,
            file_name: a.name.clone().unwrap_or_default(),
            threads: a.threads.unwrap_or(0),
            output_path,
        })
    }
}

/// Starts a plot job and follows it. The job id is printed first, in every mode. On a
/// terminal, Ctrl-C asks whether to cancel the job or leave it running in the daemon.
pub async fn create(c: &mut MinerClient, a: &CreateArgs) -> CmdResult {
    use pb::create_plot_response::Kind;
    let req = a.request()?;
    let mut stream = c.create_plot(req).await?.into_inner();
    let tty = std::io::stdout().is_terminal() && !a.json;
    let ask_on_interrupt = tty && prompt::interactive();
    let mut bar: Option<ProgressBar> = None;
    let mut job_id = String::new();
    let mut last_line = Instant::now() - Duration::from_secs(10);
    // Ctrl-C is caught only on a terminal, once the job id is known (before that, and
    // in scripts, it ends minerctl as usual; the job goes on in the daemon either way).
    let mut sigint: Option<tokio::signal::unix::Signal> = None;
    loop {
        let msg = if let Some(sig) = sigint.as_mut() {
            tokio::select! {
                m = stream.message() => m?,
                _ = sig.recv() => {
                    if let Some(b) = bar.take() {
                        b.abandon();
                    }
                    return interrupted(c, &job_id, sig).await;
                }
            }
        } else {
            stream.message().await?
        };
        let Some(msg) = msg else { break };
        match msg.kind {
            Some(Kind::Started(job)) => {
                job_id = job.job_id.clone();
                if ask_on_interrupt {
                    sigint =
                        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                            .ok();
                }
                if a.json {
                    output::print_json_line(
                        &json!({"type": "started", "job": output::job_json(&job)}),
                    );
                } else {
                    outln!(
                        "plot job {}: {} ({} leaves, {})",
                        job.job_id,
                        job.file_path,
                        job.leaf_count,
                        output::decimal_bytes(job.leaf_count.saturating_mul(32))
                    );
                }
                if a.no_wait {
                    if !a.json {
                        outln!(
                            "follow it with `minerctl jobs`; cancel it with `minerctl cancel-job {}`",
                            job.job_id
                        );
                    }
                    return Ok(());
                }
                if tty {
                    bar = Some(output::progress_bar(job.leaf_count));
                }
            }
            Some(Kind::Progress(p)) => {
                if let Some(b) = &bar {
                    b.set_position(p.leaves_done);
                    b.set_message(output::rate_eta(&p));
                } else if !a.json && last_line.elapsed() >= Duration::from_secs(1) {
                    last_line = Instant::now();
                    outln!("progress: {}", output::progress_text(&p));
                }
            }
            Some(Kind::Finished(plot)) => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                if a.json {
                    output::print_json_line(
                        &json!({"type": "finished", "plot": output::plot_json(&plot)}),
                    );
                } else {
                    outln!("plot created: {} ({})", plot.plot_id, plot.file_path);
                    out!("{}", output::plot_detail(&plot));
                }
                return Ok(());
            }
            None => {}
        }
    }
    if let Some(b) = bar {
        b.abandon();
    }
    Err(Failure::other(
        "the daemon ended the plot stream without a result",
    ))
}

/// Ctrl-C while following a job on a terminal: cancel it, or leave it running.
async fn interrupted(
    c: &mut MinerClient,
    job_id: &str,
    sigint: &mut tokio::signal::unix::Signal,
) -> CmdResult {
    let question = format!(
        "\nCancel plot job {job_id}? (y: cancel it and remove its partial file; \
         n: leave it running in the daemon)"
    );
    // The answer is read on a blocking thread; a second Ctrl-C means "leave it".
    let answer = tokio::select! {
        a = tokio::task::spawn_blocking(move || prompt::ask_yes_no(&question)) => a.ok().flatten(),
        _ = sigint.recv() => None,
    };
    if answer == Some(true) {
        c.cancel_plot_job(pb::CancelPlotJobRequest {
            job_id: job_id.to_owned(),
        })
        .await?;
        outln!("plot job {job_id} cancelled; its partial file was removed");
        return Err(Failure {
            code: EXIT_INTERRUPTED,
            message: "plot creation cancelled".into(),
        });
    }
    outln!(
        "plot job {job_id} keeps running in the daemon: follow it with `minerctl jobs`, \
         cancel it with `minerctl cancel-job {job_id}`"
    );
    Ok(())
}

/// Exit code after the user cancelled with Ctrl-C (128 + SIGINT).
pub const EXIT_INTERRUPTED: u8 = 130;

/// Options of `list-plots`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Show every plot in detail: Merkle root, leaf count, tree height, cache levels, created
    /// time, last check
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Print JSON instead of a table (every field, with or without --verbose)
    #[arg(long)]
    pub json: bool,
}

/// Lists plots.
pub async fn list(c: &mut MinerClient, a: &ListArgs) -> CmdResult {
    let plots = c
        .list_plots(pb::ListPlotsRequest {})
        .await?
        .into_inner()
        .plots;
    if a.json {
        output::print_json(&output::json_array(&plots, output::plot_json));
    } else if a.verbose && !plots.is_empty() {
        for (i, p) in plots.iter().enumerate() {
            if i > 0 {
                outln!();
            }
            out!("{}", output::plot_detail(p));
        }
    } else {
        out!("{}", output::plots_table(&plots));
    }
    Ok(())
}

/// Options of `show-plot`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Plot id (a unique prefix of at least 4 characters is enough)
    pub id: String,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// Shows one plot.
pub async fn show(c: &mut MinerClient, a: &ShowArgs) -> CmdResult {
    let plot = get_plot(c, &a.id).await?;
    output::print_json_or_text(
        a.json,
        || output::plot_json(&plot),
        || output::plot_detail(&plot),
    );
    Ok(())
}

/// The plot with this id (or unique id prefix).
async fn get_plot(c: &mut MinerClient, id: &str) -> Result<pb::Plot, Failure> {
    c.get_plot(pb::GetPlotRequest {
        plot_id: id.to_owned(),
    })
    .await?
    .into_inner()
    .plot
    .ok_or_else(|| Failure::other("the daemon sent an empty plot"))
}

/// Options of `delete-plot`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Plot id (a unique prefix of at least 4 characters is enough)
    pub id: String,
    /// Also delete the plot file and its Merkle cache file
    #[arg(long)]
    pub delete_file: bool,
    /// Do not ask for confirmation (needed when stdin is not a terminal)
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

/// What `delete-plot` would remove, as text.
fn removal_text(p: &pb::Plot, delete_file: bool) -> String {
    let mut s = format!(
        "plot {} ({}, {}, {})\n",
        p.plot_id,
        output::plot_state_word(p.state),
        output::bytes(p.size_bytes),
        p.file_path
    );
    if delete_file {
        s.push_str(&format!("  delete file  {}\n", p.file_path));
        if !p.cache_file_path.is_empty() {
            s.push_str(&format!("  delete file  {}\n", p.cache_file_path));
        }
    } else {
        s.push_str("  unregister it; the file stays on disk and is no longer farmed\n");
    }
    s
}

/// Unregisters (and optionally deletes) a plot after showing what goes and asking.
pub async fn delete(c: &mut MinerClient, a: &DeleteArgs) -> CmdResult {
    let plot = get_plot(c, &a.id).await?;
    if plot.state == pb::PlotState::Creating as i32 {
        return Err(Failure::usage(format!(
            "plot {} is being created; cancel its job with `minerctl cancel-job {}`",
            plot.plot_id, plot.plot_id
        )));
    }
    if !a.force {
        eprint!("This removes {}", removal_text(&plot, a.delete_file));
        if !prompt::interactive() {
            return Err(Failure::usage(
                "not removed: confirmation needed but stdin is not a terminal; \
                 pass --force (-f) to remove without asking",
            ));
        }
        if prompt::ask_yes_no("Remove it?") != Some(true) {
            return Err(Failure::other("not confirmed; nothing was removed"));
        }
    }
    let r = c
        .delete_plot(pb::DeletePlotRequest {
            plot_id: plot.plot_id.clone(),
            delete_files: a.delete_file,
        })
        .await?
        .into_inner();
    let plot = r.plot.unwrap_or(plot);
    if a.json {
        output::print_json(&json!({
            "plot": output::plot_json(&plot),
            "deletedFiles": r.deleted_files,
        }));
    } else {
        outln!("plot {} removed ({})", plot.plot_id, plot.file_path);
        for f in &r.deleted_files {
            outln!("deleted {f}");
        }
        if !a.delete_file {
            outln!(
                "the file was kept; it stays unregistered (also after a restart) until you \
                 move it away or delete it"
            );
        }
    }
    Ok(())
}

/// Options of `check-plot`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Plot id (a unique prefix of at least 4 characters is enough), or the path of any plot
    /// file, registered or not
    #[arg(value_name = "ID|PATH")]
    pub plot: String,
    /// Check every leaf and recompute the Merkle root
    #[arg(long, conflicts_with = "samples")]
    pub full: bool,
    /// Number of random leaves to check, at least 1 (a plot small enough that the full check
    /// is as fast gets the full check) [default: 1000]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub samples: Option<u32>,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

/// Whether the argument of `check-plot` names a file rather than a plot id.
fn names_a_file(arg: &str) -> bool {
    arg.contains('/') || arg.ends_with(".plot") || Path::new(arg).is_file()
}

/// Checks a plot; exits 1 when the check fails.
pub async fn check(c: &mut MinerClient, a: &CheckArgs) -> CmdResult {
    use pb::check_plot_response::Kind;
    let mode = if a.full {
        pb::check_plot_request::Mode::Full(pb::FullCheck {})
    } else {
        pb::check_plot_request::Mode::Sampled(pb::SampledCheck {
            samples: a.samples.unwrap_or(0),
            seed: None,
        })
    };
    let (plot_id, file_path) = if names_a_file(&a.plot) {
        let abs = crate::conn::absolute(Path::new(&a.plot));
        (String::new(), abs.to_string_lossy().into_owned())
    } else {
        (a.plot.clone(), String::new())
    };
    let mut stream = c
        .check_plot(pb::CheckPlotRequest {
            plot_id,
            mode: Some(mode),
            file_path,
        })
        .await?
        .into_inner();
    let tty = std::io::stdout().is_terminal() && !a.json;
    let mut bar: Option<ProgressBar> = None;
    while let Some(msg) = stream.message().await? {
        match msg.kind {
            Some(Kind::Progress(p)) if tty => {
                let b = bar.get_or_insert_with(|| ProgressBar::new(p.total));
                b.set_position(p.done);
            }
            Some(Kind::Progress(_)) => {}
            Some(Kind::Report(r)) => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                output::print_json_or_text(
                    a.json,
                    || output::check_json(&r),
                    || output::check_text(&r),
                );
                return if r.ok {
                    Ok(())
                } else {
                    Err(Failure::other(format!(
                        "plot {} failed the check",
                        r.plot_id
                    )))
                };
            }
            None => {}
        }
    }
    Err(Failure::other(
        "the daemon ended the check stream without a report",
    ))
}

/// Options of `jobs`.
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

/// Lists plot jobs.
pub async fn jobs(c: &mut MinerClient, a: &JobsArgs) -> CmdResult {
    let jobs = c
        .list_plot_jobs(pb::ListPlotJobsRequest {})
        .await?
        .into_inner()
        .jobs;
    output::print_json_or_text(
        a.json,
        || output::json_array(&jobs, output::job_json),
        || output::jobs_table(&jobs),
    );
    Ok(())
}

/// Options of `cancel-job`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// Job id (a unique prefix of at least 4 characters is enough)
    pub id: String,
    /// Print the cancelled job as JSON
    #[arg(long)]
    pub json: bool,
}

/// Cancels a plot job.
pub async fn cancel(c: &mut MinerClient, a: &CancelArgs) -> CmdResult {
    let job = c
        .cancel_plot_job(pb::CancelPlotJobRequest {
            job_id: a.id.clone(),
        })
        .await?
        .into_inner()
        .job
        .unwrap_or_default();
    output::print_json_or_text(
        a.json,
        || output::job_json(&job),
        || {
            format!(
                "plot job {} cancelled ({} removed)\n",
                job.job_id, job.file_path
            )
        },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("100MiB"), Ok(100 << 20));
        assert_eq!(parse_size("100 mib"), Ok(100 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("1k"), Ok(1024));
        assert!(parse_size("10 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }

    #[test]
    fn plot_sizes_are_gigabytes_unless_a_unit_says_otherwise() {
        assert_eq!(parse_plot_size("1"), Ok(1_000_000_000));
        assert_eq!(parse_plot_size("0.5"), Ok(500_000_000));
        assert_eq!(parse_plot_size("10"), Ok(10_000_000_000));
        assert_eq!(parse_plot_size("100MiB"), Ok(100 << 20));
        assert_eq!(parse_plot_size("4096B"), Ok(4096));
        assert!(parse_plot_size("ten").is_err());
        assert!(parse_plot_size("1e400").is_err());
    }

    #[test]
    fn check_plot_tells_files_from_ids() {
        assert!(names_a_file("./a.plot"));
        assert!(names_a_file("/mnt/x"));
        assert!(names_a_file("p.plot"));
        assert!(!names_a_file("550e8400"));
    }
}
