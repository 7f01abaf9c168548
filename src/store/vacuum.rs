//! `persona vacuum`: deletes the versions a policy no longer keeps, and every store file that no
//! kept version refers to, so that replaced and removed data is physically gone. It holds the
//! writer lock (no file being written can be mistaken for garbage) and never touches the current
//! version. A reader pinned to a version that vacuum removed keeps the files it has open or mapped
//! (Linux frees an unlinked file when its last handle closes), but a file it opens afterwards is
//! gone: keep versions for at least as long as the longest query or shell session that may pin
//! them (docs/lifecycle.md).

use std::collections::HashSet;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::store::manifest::Manifest;
use crate::store::{Store, io, layout};

/// Which versions survive a vacuum (the current one always does). A version is removed only when
/// every given rule lets it go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeepPolicy {
    /// Keep the newest this many versions.
    pub versions: Option<u64>,
    /// Keep the versions committed less than this long ago.
    pub newer_than: Option<Duration>,
}

/// What a vacuum removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VacuumReport {
    pub kept_versions: Vec<u64>,
    pub removed_versions: Vec<u64>,
    pub removed_files: u64,
    pub freed_bytes: u64,
}

/// An error when `policy` keeps nothing or is given no rule.
pub fn check_policy(policy: KeepPolicy) -> Result<()> {
    if policy.versions.is_none() && policy.newer_than.is_none() {
        return Err(Error::Usage("vacuum needs --keep-versions N or --older-than DURATION (or both)".into()));
    }
    if policy.versions == Some(0) {
        return Err(Error::Usage("--keep-versions must be at least 1 (the current version is always kept)".into()));
    }
    Ok(())
}

/// Removes what `policy` does not keep. Dead rows of forgotten users in the current version's
/// files stay: `Store::vacuum` purges them first (what an erasure needs).
pub fn vacuum(store: &Store, policy: KeepPolicy) -> Result<VacuumReport> {
    check_policy(policy)?;
    // The lock: no writer is writing files meanwhile, and unpublished ones are already gone.
    let writer = store.writer()?;
    let root = store.root().to_path_buf();
    let current = writer.base().version;
    let mut versions: Vec<u64> = store.versions()?.into_iter().filter(|v| *v <= current).collect();
    versions.sort_unstable_by(|a, b| b.cmp(a));
    let now = chrono::Utc::now();
    let mut report = VacuumReport::default();
    let mut keep_files: HashSet<String> = HashSet::new();
    for (rank, version) in versions.iter().enumerate() {
        let path = layout::manifest_path(&root, *version);
        let manifest = Manifest::from_bytes(&io::read(&path)?, &path)?;
        let by_count = policy.versions.is_some_and(|n| (rank as u64) < n);
        let by_age = policy.newer_than.is_some_and(|age| {
            chrono::DateTime::parse_from_rfc3339(&manifest.committed_at)
                .map(|t| now.signed_duration_since(t).to_std().map_or(true, |d| d < age))
                .unwrap_or(true)
        });
        if *version == current || by_count || by_age {
            keep_files.extend(manifest.referenced_files());
            report.kept_versions.push(*version);
        } else {
            report.removed_versions.push(*version);
        }
    }
    // Manifests first: a version without its manifest is unreachable, so removing its files next
    // can never leave a reachable version with a file missing, whatever stops us in between.
    for version in &report.removed_versions {
        let path = layout::manifest_path(&root, *version);
        io::remove_file(&path)?;
    }
    io::sync_dir(&layout::manifests_dir(&root))?;
    let dirs = layout::versioned_dirs(&root)?;
    for dir in &dirs {
        for path in layout::files_in(dir)? {
            let relative = path.strip_prefix(&root).unwrap_or(&path).to_string_lossy().into_owned();
            if keep_files.contains(&relative) {
                continue;
            }
            let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            io::remove_file(&path)?;
            report.removed_files += 1;
            report.freed_bytes += bytes;
        }
        io::sync_dir(dir)?;
    }
    drop(writer);
    report.kept_versions.reverse();
    report.removed_versions.reverse();
    Ok(report)
}

/// A duration as `90s`, `30m`, `12h`, `7d` or `2w`.
pub fn parse_age(text: &str) -> std::result::Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("'{text}' is not a duration such as 7d, 12h or 30m"))?;
    let seconds = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(format!("'{text}' is not a duration such as 7d, 12h or 30m (units: s, m, h, d, w)")),
    };
    Ok(Duration::from_secs(n.saturating_mul(seconds)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_with_their_unit() {
        assert_eq!(parse_age("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_age("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_age("2w"), Ok(Duration::from_secs(14 * 86_400)));
        assert!(parse_age("7").is_err());
        assert!(parse_age("d").is_err());
        assert!(parse_age("3 years").is_err());
    }
}
