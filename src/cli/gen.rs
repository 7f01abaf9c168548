//! The `persona gen` subcommand: generates the synthetic data set with a progress bar and prints a
//! one-line summary to stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::r#gen::{GenFormat, GenOptions, generate};

/// Generate a deterministic synthetic customer data set (users, products, channels, purchases,
/// events, user_tags).
#[derive(Debug, Clone, clap::Args)]
pub struct GenArgs {
    /// Number of users; facts scale with it (≈ 5 purchases, 10 events and 6 tags per user).
    #[arg(long, default_value_t = 100_000)]
    pub users: u64,
    /// Random seed; the same users and seed give byte-identical files.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Output directory (one folder per table is created in it).
    #[arg(long)]
    pub out: PathBuf,
    /// File format.
    #[arg(long, value_enum, default_value_t = GenFormat::Parquet)]
    pub format: GenFormat,
    /// Do not show a progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs `persona gen`.
pub fn run(args: GenArgs) -> crate::Result<()> {
    let opts = GenOptions { users: args.users, seed: args.seed, out: args.out, format: args.format };
    let bar = (!args.quiet && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(opts.users);
        let style =
            ProgressStyle::with_template("{spinner} generating [{bar:40}] {human_pos}/{human_len} users ({eta})")
                .map(|s| s.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let started = Instant::now();
    let progress = |done: u64| {
        if let Some(bar) = &bar {
            bar.set_position(done);
        }
    };
    let result = generate(&opts, &progress);
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    // The generator refuses only its --out directory: a command-line mistake (exit code 2).
    let summary = result.map_err(|e| match e {
        crate::Error::Usage(message) => crate::Error::Arguments(message),
        other => other,
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let rows: Vec<String> = summary.rows.iter().map(|(table, n)| format!("{n} {table}")).collect();
    eprintln!(
        "generated {} in {} files ({}) in {elapsed:.1}s → {}",
        rows.join(", "),
        summary.files,
        human_bytes(summary.bytes),
        opts.out.display()
    );
    Ok(())
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        gen_args: GenArgs,
    }

    #[test]
    fn defaults_and_format_parse() {
        let cli = Cli::try_parse_from(["persona", "--out", "x"]).expect("parses");
        assert_eq!(cli.gen_args.users, 100_000);
        assert_eq!(cli.gen_args.seed, 42);
        assert_eq!(cli.gen_args.format, GenFormat::Parquet);
        let cli = Cli::try_parse_from(["persona", "--out", "x", "--format", "csv", "--users", "7", "--quiet"])
            .expect("parses");
        assert_eq!(cli.gen_args.format, GenFormat::Csv);
        assert_eq!(cli.gen_args.users, 7);
        assert!(cli.gen_args.quiet);
        assert!(Cli::try_parse_from(["persona"]).is_err(), "--out is required");
    }

    #[test]
    fn bytes_are_human_readable() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
