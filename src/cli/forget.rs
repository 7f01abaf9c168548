//! `persona forget`: forgets users by user_id (PIPL / GDPR erasure) as one new version (see
//! `ingest::forget`), and says what to do next for the data to be physically gone.

use std::path::PathBuf;

use clap::Args;

use crate::error::Result;
use crate::ingest::forget::read_user_id_file;
use crate::store::Store;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("who").required(true).multiple(true).args(["user_id", "file"])))]
pub struct ForgetArgs {
    /// The store to forget the users in.
    #[arg(long)]
    pub store: PathBuf,
    /// A user_id to forget (repeat the option for several).
    #[arg(long = "user-id", value_name = "ID")]
    pub user_id: Vec<String>,
    /// A file of user_ids to forget: one per line, CSV quoting allowed, an optional `user_id`
    /// header line.
    #[arg(long, value_name = "IDS.csv")]
    pub file: Option<PathBuf>,
}

pub fn run(args: ForgetArgs) -> Result<()> {
    let mut ids = args.user_id;
    if let Some(file) = &args.file {
        ids.extend(read_user_id_file(file)?);
    }
    let store = Store::open(&args.store)?;
    let summary = store.forget(&ids)?;
    if summary.unknown > 0 {
        let examples: Vec<String> = summary.unknown_examples.iter().map(|u| format!("'{u}'")).collect();
        let more = if summary.unknown > summary.unknown_examples.len() as u64 { ", …" } else { "" };
        eprintln!(
            "{} user_id(s) are no user of the store and were skipped: {}{more}",
            summary.unknown,
            examples.join(", ")
        );
    }
    eprintln!(
        "forgot {} user(s) in {}: version {}, {} file(s) written again, in {:.1} s; their data stays in older versions until `persona vacuum --store {} --keep-versions 1` (and in backups taken before)",
        summary.forgotten,
        args.store.display(),
        summary.version.map_or_else(|| "none".to_string(), |v| v.to_string()),
        summary.rewritten_files,
        summary.elapsed.as_secs_f64(),
        crate::shell_words::shell_path(&args.store)
    );
    Ok(())
}
