//! Plot commands: `create-plot`, `list-plots`, `show-plot`, `delete-plot`, `check-plot`,
//! `jobs`, `cancel-job`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use spacetime_proto::client::MinerClient;
use spacetime_proto::pb;

use crate::output;
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

/// Options of `create-plot`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("amount").required(true).args(["size", "leaves"])))]
pub struct CreateArgs {
    /// Plot size, e.g. 100MiB, 1GiB, 4096 (bytes of leaves; the file is 121 bytes larger)
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub size: Option<u64>,
    /// Number of 32-byte leaves instead of a size
    #[arg(long, value_name = "N")]
    pub leaves: Option<u64>,
    /// Merkle cache levels below the root to store beside the plot (0 = no cache file)
    /// [default: the daemon's, sized for fast proofs]
    #[arg(long, value_name = "K")]
    pub cache_levels: Option<u32>,
    /// Plot seed as 64 hex characters [default: random]
    #[arg(long, value_name = "HEX")]
    pub seed: Option<String>,
    /// File name in the plot directory (must end in .plot) [default: derived from the seed]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Hashing threads [default: the daemon's plotThreads]
    #[arg(long, value_name = "N")]
    pub threads: Option<u32>,
    /// Print the job id and return at once; the daemon keeps writing
    #[arg(long)]
    pub no_wait: bool,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

/// Starts a plot job and follows it.
pub async fn create(c: &mut MinerClient, a: &CreateArgs) -> CmdResult {
    use pb::create_plot_response::Kind;
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
    let req = pb::CreatePlotRequest {
        leaf_count: a.leaves.unwrap_or(0),
        size_bytes: a.size.unwrap_or(0),
        cache_levels: a.cache_levels,
        seed,
        file_name: a.name.clone().unwrap_or_default(),
        threads: a.threads.unwrap_or(0),
    };
    let mut stream = c.create_plot(req).await?.into_inner();
    let tty = std::io::stdout().is_terminal() && !a.json;
    let mut bar: Option<ProgressBar> = None;
    let mut last_line = Instant::now() - Duration::from_secs(10);
    while let Some(msg) = stream.message().await? {
        match msg.kind {
            Some(Kind::Started(job)) => {
                if a.no_wait {
                    if a.json {
                        output::print_json(&output::job_json(&job));
                    } else {
                        println!("plot job {} started: {}", job.job_id, job.file_path);
                        println!("follow it with `minerctl jobs`; cancel it with `minerctl cancel-job {}`", job.job_id);
                    }
                    return Ok(());
                }
                if tty {
                    let b = ProgressBar::new(job.leaf_count);
                    b.set_style(
                        ProgressStyle::with_template(
                            "{spinner} [{elapsed_precise}] [{bar:40}] {percent:>3}% {msg}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    b.set_message(job.file_path.clone());
                    bar = Some(b);
                } else if !a.json {
                    println!(
                        "plot job {} started: {} ({} leaves)",
                        job.job_id, job.file_path, job.leaf_count
                    );
                }
            }
            Some(Kind::Progress(p)) => {
                if let Some(b) = &bar {
                    b.set_position(p.leaves_done);
                    b.set_message(output::progress_text(&p));
                } else if !a.json && last_line.elapsed() >= Duration::from_secs(1) {
                    last_line = Instant::now();
                    println!("progress: {}", output::progress_text(&p));
                }
            }
            Some(Kind::Finished(plot)) => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                if a.json {
                    output::print_json(&output::plot_json(&plot));
                } else {
                    println!("plot created: {} ({})", plot.plot_id, plot.file_path);
                    print!("{}", output::plot_detail(&plot));
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

/// Options of `list-plots`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON instead of a table
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
        output::print_json(&serde_json::Value::Array(
            plots.iter().map(output::plot_json).collect(),
        ));
    } else {
        print!("{}", output::plots_table(&plots));
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
    let plot = c
        .get_plot(pb::GetPlotRequest {
            plot_id: a.id.clone(),
        })
        .await?
        .into_inner()
        .plot
        .ok_or_else(|| Failure::other("the daemon sent an empty plot"))?;
    if a.json {
        output::print_json(&output::plot_json(&plot));
    } else {
        print!("{}", output::plot_detail(&plot));
    }
    Ok(())
}

/// Options of `delete-plot`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Plot id (a unique prefix of at least 4 characters is enough)
    pub id: String,
    /// Also delete the plot file and its Merkle cache file
    #[arg(long)]
    pub delete_file: bool,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// Unregisters (and optionally deletes) a plot.
pub async fn delete(c: &mut MinerClient, a: &DeleteArgs) -> CmdResult {
    let r = c
        .delete_plot(pb::DeletePlotRequest {
            plot_id: a.id.clone(),
            delete_files: a.delete_file,
        })
        .await?
        .into_inner();
    let plot = r.plot.unwrap_or_default();
    if a.json {
        output::print_json(&serde_json::json!({
            "plot": output::plot_json(&plot),
            "deletedFiles": r.deleted_files,
        }));
    } else {
        println!("plot {} removed ({})", plot.plot_id, plot.file_path);
        for f in &r.deleted_files {
            println!("deleted {f}");
        }
        if !a.delete_file {
            println!(
                "the file was kept; it is not farmed until minerd restarts or the file changes"
            );
        }
    }
    Ok(())
}

/// Options of `check-plot`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Plot id (a unique prefix of at least 4 characters is enough)
    pub id: String,
    /// Check every leaf and recompute the Merkle root (slow for large plots)
    #[arg(long, conflicts_with = "samples")]
    pub full: bool,
    /// Number of random leaves to check [default: 1000]
    #[arg(long, value_name = "N")]
    pub samples: Option<u32>,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
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
    let mut stream = c
        .check_plot(pb::CheckPlotRequest {
            plot_id: a.id.clone(),
            mode: Some(mode),
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
                if a.json {
                    output::print_json(&output::check_json(&r));
                } else {
                    print!("{}", output::check_text(&r));
                }
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
    if a.json {
        output::print_json(&serde_json::Value::Array(
            jobs.iter().map(output::job_json).collect(),
        ));
    } else {
        print!("{}", output::jobs_table(&jobs));
    }
    Ok(())
}

/// Options of `cancel-job`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// Job id (a unique prefix of at least 4 characters is enough)
    pub id: String,
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
    println!(
        "plot job {} cancelled ({} removed)",
        job.job_id, job.file_path
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
}
