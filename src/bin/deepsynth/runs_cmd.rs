//! `deepsynth runs DIR`: the runs of a folder as one table (the rows of `Runs::summaries`, the
//! table `Runs::table` gives a notebook), as aligned text, CSV or JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use deepsynth::track::Runs;

/// Arguments of `deepsynth runs`.
#[derive(Args, Debug)]
pub struct RunsArgs {
    /// A folder of runs (each sub-folder with a metrics.jsonl), or one run folder.
    dir: PathBuf,
    /// Output: table (aligned text), csv, json.
    #[arg(long, default_value = "table")]
    format: String,
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub fn run(args: RunsArgs) -> deepsynth::Result<ExitCode> {
    if !args.dir.is_dir() {
        return Ok(crate::common::usage(format!(
            "{} is not a folder",
            args.dir.display()
        )));
    }
    let runs = Runs::summaries(&args.dir)?;
    if runs.is_empty() {
        eprintln!("no runs (no metrics.jsonl) in {}", args.dir.display());
        return Ok(ExitCode::FAILURE);
    }
    let (cols, rows) = Runs::summary_rows(&runs);
    match args.format.as_str() {
        "json" => println!(
            "{}",
            serde_json::to_string_pretty(&runs).expect("summaries serialise")
        ),
        "csv" => {
            for line in std::iter::once(&cols).chain(&rows) {
                let cells: Vec<String> = line.iter().map(|c| csv_cell(c)).collect();
                println!("{}", cells.join(","));
            }
        }
        "table" => {
            let widths: Vec<usize> = (0..cols.len())
                .map(|i| {
                    std::iter::once(&cols)
                        .chain(&rows)
                        .map(|r| r[i].chars().count())
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            for line in std::iter::once(&cols).chain(&rows) {
                let cells: Vec<String> = line
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                println!("{}", cells.join("  ").trim_end());
            }
        }
        other => {
            return Ok(crate::common::usage(format!(
                "unknown --format `{other}` (valid: table, csv, json)"
            )))
        }
    }
    Ok(ExitCode::SUCCESS)
}
