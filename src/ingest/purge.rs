//! Purging dead rows: the second half of an erasure. A forget marks its users' fact rows dead
//! ([`crate::store::dead_rows`]) instead of writing every file that holds one again; a purge
//! writes each file with dead rows again from its live rows (with fresh companions) as one new
//! version, so that no file of that version holds a forgotten user's row; identifier links a
//! forget left in the links files (hidden as `forgotten`) go the same way, by a resolution
//! from the start, and their users rows are blanked in place. `Store::vacuum` purges
//! before it deletes anything, so forget + vacuum leaves no byte of them (docs/lifecycle.md).

use std::collections::BTreeMap;

use crate::error::Result;
use crate::store::manifest::Manifest;
use crate::store::vacuum::{KeepPolicy, VacuumReport};
use crate::store::{Store, StoreWriter};
use crate::tables::Table;

/// What a purge did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeSummary {
    /// The committed version; `None` when no file had dead rows.
    pub version: Option<u64>,
    /// Files written again (the identity resolution counted as one), and the dead rows they left
    /// out.
    pub files: usize,
    pub rows: u64,
}

impl Store {
    /// Writes every fact file with dead rows again without them, as one new version.
    pub fn purge_dead_rows(&self) -> Result<PurgeSummary> {
        let writer = self.writer()?;
        match purge(&writer)? {
            Some((next, files, rows)) => Ok(PurgeSummary { version: Some(writer.commit(next)?), files, rows }),
            None => Ok(PurgeSummary::default()),
        }
    }

    /// `persona vacuum`: purges dead rows first ([`Store::purge_dead_rows`]), then removes
    /// what `policy` does not keep ([`crate::store::vacuum::vacuum`]).
    pub fn vacuum(&self, policy: KeepPolicy) -> Result<(PurgeSummary, VacuumReport)> {
        crate::store::vacuum::check_policy(policy)?;
        let purged = self.purge_dead_rows()?;
        Ok((purged, crate::store::vacuum::vacuum(self, policy)?))
    }
}

/// The next version without dead rows, with the number of files written again and the dead
/// rows left out; `None` when no file has any.
fn purge(writer: &StoreWriter) -> Result<Option<(Manifest, usize, u64)>> {
    let base = std::sync::Arc::clone(writer.base());
    let root = writer.store().root().to_path_buf();
    let mut next = (*base).clone();
    let mut replaced: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut rows = 0u64;
    for table in Table::ALL.into_iter().filter(|t| t.is_fact()) {
        let files = base.files(table);
        if files.iter().all(|f| f.dead.is_none()) {
            continue;
        }
        let mut kept = Vec::with_capacity(files.len());
        for f in files {
            let Some(dead) = &f.dead else {
                kept.push(f.clone());
                continue;
            };
            rows += dead.rows;
            let written = super::repair::rewrite(writer, &root, &base, table, f)?;
            replaced.insert(f.path.clone(), written.iter().map(|w| w.path.clone()).collect());
            kept.extend(written);
        }
        next.tables.insert(table, kept);
    }
    // Links of forgotten users still in the links files: resolved again from the start, which
    // writes the links, the state and the persons without them.
    let resolved = super::identity::resolve_without_forgotten_links(writer, &root, &mut next)?;
    // Their users rows, blanked in place.
    let blanked = match &base.forgotten {
        Some(f) => {
            let forgotten = crate::store::catalog::read_set(&root, &f.set)?;
            super::forget::blank_users(writer, &root, &base, &forgotten, &mut next)?
        }
        None => 0,
    };
    if replaced.is_empty() && !resolved && blanked == 0 {
        return Ok(None);
    }
    // A rule tag lists its user_tags files by name.
    for tag in &mut next.catalog.tags {
        tag.rows_files =
            tag.rows_files.iter().flat_map(|f| replaced.get(f).cloned().unwrap_or_else(|| vec![f.clone()])).collect();
    }
    Ok(Some((next, replaced.len() + usize::from(resolved) + blanked, rows)))
}
