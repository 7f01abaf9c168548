//! `persona identity`: shows or sets a store's identity rules (docs/identity.md) and reports its
//! resolution of users into persons.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::error::{Error, IoContext, Result};
use crate::ingest::identity::SplitRequest;
use crate::store::Store;
use crate::store::identity::IdentityRules;

#[derive(Debug, Args)]
pub struct IdentityArgs {
    #[command(subcommand)]
    pub command: IdentityCommand,
}

#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// Print the identity rules in force as JSON, or set them from a JSON file (a new version,
    /// with the users resolved into persons again under them).
    Rules {
        /// The store.
        #[arg(long)]
        store: PathBuf,
        /// A JSON file of rules, as printed (every field required).
        #[arg(long, value_name = "FILE")]
        set: Option<PathBuf>,
    },
    /// Separate what resolution joined: two users that must never be one person again
    /// (--users A B), or an identifier that must link nobody any more (--value TYPE VALUE).
    ///
    /// A new version, resolved again; the split is kept, so later imports do not merge them.
    Split {
        /// The store.
        #[arg(long)]
        store: PathBuf,
        /// Two user_ids to keep apart.
        #[arg(long, num_args = 2, value_names = ["USER_ID", "USER_ID"], conflicts_with = "value", required_unless_present = "value")]
        users: Option<Vec<String>>,
        /// An identifier to block: its type and value (an openid as APP_ID:OPENID).
        #[arg(long, num_args = 2, value_names = ["TYPE", "VALUE"])]
        value: Option<Vec<String>>,
        /// Resolve every link again instead of only the users the split can change (the same
        /// result, and the links files written again without overrides; slower).
        #[arg(long)]
        from_start: bool,
    },
    /// Rebuild the resolution from the stored links in one pass and compare it with the stored
    /// persons (exit code 1 when they differ).
    Check {
        /// The store.
        #[arg(long)]
        store: PathBuf,
    },
    /// Report the resolution: users, persons, links and the links rejected, by reason.
    Report {
        /// The store.
        #[arg(long)]
        store: PathBuf,
    },
}

pub fn run(args: IdentityArgs) -> Result<()> {
    match args.command {
        IdentityCommand::Rules { store, set: None } => {
            let store = Store::open(&store)?;
            let rules = store.snapshot()?.manifest().identity.rules();
            println!("{}", serde_json::to_string_pretty(&rules).map_err(|e| Error::Internal(e.to_string()))?);
            Ok(())
        }
        IdentityCommand::Rules { store: path, set: Some(file) } => {
            let text = std::fs::read_to_string(&file).io_context("read", &file)?;
            let rules: IdentityRules = serde_json::from_str(&text).map_err(|e| {
                Error::Usage(format!(
                    "{}: not identity rules ({e}); print the current ones with `persona identity rules --store STORE`",
                    file.display()
                ))
            })?;
            let store = Store::open(&path)?;
            let version = store.set_identity_rules(rules)?;
            eprintln!("{}", describe(&store, version)?);
            Ok(())
        }
        IdentityCommand::Split { store: path, users, value, from_start } => {
            let request = match (users, value) {
                (Some(u), _) if u.len() == 2 => SplitRequest::Users(u[0].clone(), u[1].clone()),
                (_, Some(v)) if v.len() == 2 => SplitRequest::Value(v[0].clone(), v[1].clone()),
                _ => return Err(Error::Arguments("give --users USER_ID USER_ID or --value TYPE VALUE".into())),
            };
            let store = Store::open(&path)?;
            let version = match from_start {
                true => store.split_identity_from_start(request)?,
                false => store.split_identity(request)?,
            };
            eprintln!("{}", describe(&store, version)?);
            Ok(())
        }
        IdentityCommand::Check { store } => {
            let c = Store::open(&store)?.check_identity()?;
            if c.differing > 0 {
                return Err(Error::Failed(format!(
                    "version {}: {} of {} users are in a different person than a rebuild from the {} links puts them in; report this",
                    c.version, c.differing, c.users, c.links
                )));
            }
            println!("version {}: the persons of {} users equal a rebuild from {} links", c.version, c.users, c.links);
            Ok(())
        }
        IdentityCommand::Report { store } => {
            let store = Store::open(&store)?;
            let version = store.snapshot()?.version();
            println!("{}", describe(&store, version)?);
            Ok(())
        }
    }
}

/// One line about the resolution of the store's current version.
fn describe(store: &Store, version: u64) -> Result<String> {
    let snapshot = store.snapshot()?;
    let Some(r) = &snapshot.manifest().identity.resolution else {
        return Ok(format!("version {version}: no identity resolution yet (import an identities table)"));
    };
    let rejected: Vec<String> = r.rejected.iter().map(|(reason, n)| format!("{reason} {n}")).collect();
    Ok(format!(
        "version {version}: {} users in {} persons; {} identifier links, {} accepted{}",
        r.users,
        r.person_count,
        r.link_rows,
        r.linked,
        if rejected.is_empty() { String::new() } else { format!(", rejected: {}", rejected.join(", ")) }
    ))
}
