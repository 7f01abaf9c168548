//! A fault-injecting [`StoreIo`] for crash tests (redb's `FuzzerBackend` and `CrashBackend` in
//! one): it counts the store's file operations, and fails the k-th with an error, a short write,
//! or a crash. After a crash, [`FaultyIo::crash_image`] turns the directory into what a power
//! cut would have left: file contents not fsynced are torn (cut to half), and names created,
//! renamed or removed in a directory not fsynced since are undone, newest first.
//!
//! Counted operations: every [`StoreIo`] call except `read` and `list`, plus every `write` and
//! `sync_all` on a file it created. The log of their kinds ([`FaultyIo::log`]) lets a test pick the
//! points of one kind (short writes only make sense at a `write`).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::store::io::{HookedFile, NewFile, StoreIo};

/// How the chosen operation fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The operation returns an error and has no effect; the process goes on.
    Error,
    /// A `write` writes half its bytes and says so (`Ok(n)` with `n` short); callers must go on
    /// writing the rest.
    ShortWrite,
    /// The operation takes effect, then the process "dies": it and every later operation fail,
    /// and [`FaultyIo::crash_image`] leaves on disk only what was durable.
    Crash,
}

/// See the module doc.
#[derive(Debug, Clone, Default)]
pub struct FaultyIo {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    /// Kinds of the operations counted so far, in order.
    log: Vec<&'static str>,
    /// The operation to fail and how.
    fail_at: Option<(usize, Fault)>,
    /// Whether the fault happened.
    fired: bool,
    /// After a crash: every operation fails without effect.
    dead: bool,
    /// Files whose content was written and not yet fsynced.
    unsynced: HashSet<PathBuf>,
    /// Name changes not yet durable: the directory whose fsync makes each durable, and its undo.
    undo: Vec<(PathBuf, Undo)>,
}

#[derive(Debug)]
enum Undo {
    /// A name was created: a crash removes it.
    Remove(PathBuf),
    /// A directory was created: a crash removes it with its content.
    RemoveDir(PathBuf),
    /// Files were removed: a crash brings them back.
    Restore(Vec<(PathBuf, Vec<u8>)>),
    /// `from` was renamed to `to`, replacing `old` (its bytes) if there was one.
    RenameBack { from: PathBuf, to: PathBuf, old: Option<Vec<u8>> },
}

/// What the next operation may do.
enum Verdict {
    Go,
    /// Fail it without effect.
    Fail,
    /// Do it, then crash.
    DoThenCrash,
    /// Write half (writes only).
    Short,
}

fn injected() -> std::io::Error {
    std::io::Error::other("injected fault")
}

fn parent(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

impl FaultyIo {
    /// Counts operations and fails none.
    pub fn counting() -> FaultyIo {
        FaultyIo::default()
    }

    /// Fails operation `k` (0-based) with `fault`.
    pub fn failing(k: usize, fault: Fault) -> FaultyIo {
        let io = FaultyIo::default();
        io.state().fail_at = Some((k, fault));
        io
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The kinds of the operations counted so far.
    pub fn log(&self) -> Vec<&'static str> {
        self.state().log.clone()
    }

    /// Whether the chosen operation was reached.
    pub fn fired(&self) -> bool {
        self.state().fired
    }

    /// Whether a crash happened.
    pub fn crashed(&self) -> bool {
        self.state().dead
    }

    /// Counts an operation of `kind` and says what to do with it.
    fn next(&self, kind: &'static str) -> Verdict {
        let mut s = self.state();
        if s.dead {
            return Verdict::Fail;
        }
        let k = s.log.len();
        s.log.push(kind);
        match s.fail_at {
            Some((at, fault)) if at == k => {
                s.fired = true;
                match fault {
                    Fault::Error => Verdict::Fail,
                    Fault::ShortWrite if kind == "write" => Verdict::Short,
                    Fault::ShortWrite => Verdict::Fail,
                    Fault::Crash => Verdict::DoThenCrash,
                }
            }
            _ => Verdict::Go,
        }
    }

    /// Runs `op` as the operation `kind`, recording `effect` (on success) for the crash image.
    fn run<T>(
        &self,
        kind: &'static str,
        op: impl FnOnce() -> std::io::Result<T>,
        effect: impl FnOnce(&mut State),
    ) -> std::io::Result<T> {
        let crash = match self.next(kind) {
            Verdict::Fail => return Err(injected()),
            Verdict::DoThenCrash => true,
            Verdict::Go | Verdict::Short => false,
        };
        let value = op()?;
        let mut s = self.state();
        effect(&mut s);
        if crash {
            s.dead = true;
            return Err(injected());
        }
        Ok(value)
    }

    fn hooked(&self, file: File, path: &Path) -> NewFile {
        NewFile::hooked(Box::new(FaultyFile { io: self.clone(), file, path: path.to_path_buf(), len: 0 }))
    }

    /// Leaves on disk only what was durable at the crash (see the module doc). Call once, after
    /// the operation under test returned and every handle of the store was dropped.
    pub fn crash_image(&self) {
        let mut s = self.state();
        for path in s.unsynced.drain() {
            if let Ok(f) = OpenOptions::new().write(true).open(&path) {
                let len = f.metadata().map_or(0, |m| m.len());
                let _ = f.set_len(len / 2);
            }
        }
        for (_, undo) in s.undo.drain(..).rev() {
            match undo {
                Undo::Remove(path) => {
                    let _ = std::fs::remove_file(path);
                }
                Undo::RemoveDir(path) => {
                    let _ = std::fs::remove_dir_all(path);
                }
                Undo::Restore(files) => {
                    for (path, bytes) in files {
                        let _ = std::fs::create_dir_all(parent(&path));
                        let _ = std::fs::write(path, bytes);
                    }
                }
                Undo::RenameBack { from, to, old } => {
                    let _ = std::fs::rename(&to, &from);
                    if let Some(bytes) = old {
                        let _ = std::fs::write(&to, bytes);
                    }
                }
            }
        }
    }
}

/// Every file under `path` (or `path` itself), with its bytes.
fn files_with_bytes(path: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            files_with_bytes(&entry.path(), out);
        }
    } else if let Ok(bytes) = std::fs::read(path) {
        out.push((path.to_path_buf(), bytes));
    }
}

impl StoreIo for FaultyIo {
    fn create(&self, path: &Path) -> std::io::Result<NewFile> {
        let existed = path.exists();
        let file = self.run(
            "create",
            || File::create(path),
            |s| {
                if !existed {
                    s.undo.push((parent(path), Undo::Remove(path.to_path_buf())));
                }
                s.unsynced.insert(path.to_path_buf());
            },
        )?;
        Ok(self.hooked(file, path))
    }

    fn create_new(&self, path: &Path) -> std::io::Result<NewFile> {
        let file = self.run(
            "create",
            || OpenOptions::new().write(true).create_new(true).open(path),
            |s| {
                s.undo.push((parent(path), Undo::Remove(path.to_path_buf())));
                s.unsynced.insert(path.to_path_buf());
            },
        )?;
        Ok(self.hooked(file, path))
    }

    fn sync_file(&self, path: &Path) -> std::io::Result<()> {
        self.run(
            "fsync",
            || File::open(path)?.sync_all(),
            |s| {
                s.unsynced.remove(path);
            },
        )
    }

    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        self.run("fsync directory", || File::open(path)?.sync_all(), |s| s.undo.retain(|(dir, _)| dir != path))
    }

    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        let old = if to.is_file() { std::fs::read(to).ok() } else { None };
        self.run(
            "rename",
            || std::fs::rename(from, to),
            |s| {
                if s.unsynced.remove(from) {
                    s.unsynced.insert(to.to_path_buf());
                }
                s.undo.push((parent(to), Undo::RenameBack { from: from.to_path_buf(), to: to.to_path_buf(), old }));
            },
        )
    }

    fn hard_link(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.run("link", || std::fs::hard_link(from, to), |s| s.undo.push((parent(to), Undo::Remove(to.to_path_buf()))))
    }

    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
        files_with_bytes(path, &mut files);
        self.run(
            "remove",
            || std::fs::remove_file(path),
            |s| {
                // Removed before its content was durable: what comes back is torn.
                if s.unsynced.remove(path) {
                    for (_, bytes) in &mut files {
                        bytes.truncate(bytes.len() / 2);
                    }
                }
                s.undo.push((parent(path), Undo::Restore(files)));
            },
        )
    }

    fn remove_dir_all(&self, path: &Path) -> std::io::Result<()> {
        let mut files = Vec::new();
        files_with_bytes(path, &mut files);
        let dir = path.to_path_buf();
        self.run(
            "remove directory",
            || std::fs::remove_dir_all(path),
            |s| {
                s.unsynced.retain(|p| !p.starts_with(&dir));
                s.undo.push((parent(&dir), Undo::Restore(files)));
            },
        )
    }

    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        let mut top = None;
        let mut at = path;
        while !at.exists() {
            top = Some(at.to_path_buf());
            match at.parent() {
                Some(p) => at = p,
                None => break,
            }
        }
        self.run(
            "create directory",
            || std::fs::create_dir_all(path),
            |s| {
                if let Some(top) = top {
                    s.undo.push((parent(&top), Undo::RemoveDir(top)));
                }
            },
        )
    }

    fn copy(&self, from: &Path, to: &Path) -> std::io::Result<u64> {
        let existed = to.exists();
        self.run(
            "copy",
            || std::fs::copy(from, to),
            |s| {
                if !existed {
                    s.undo.push((parent(to), Undo::Remove(to.to_path_buf())));
                }
                s.unsynced.insert(to.to_path_buf());
            },
        )
    }

    fn reopen(&self, path: &Path) -> std::io::Result<NewFile> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(NewFile::hooked(Box::new(FaultyFile { io: self.clone(), file, path: path.to_path_buf(), len })))
    }

    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn list(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        std::fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect()
    }
}

/// A file created through a [`FaultyIo`]: its writes and fsync are counted operations.
struct FaultyFile {
    io: FaultyIo,
    file: File,
    path: PathBuf,
    len: u64,
}

impl Write for FaultyFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = match self.io.next("write") {
            Verdict::Fail => return Err(injected()),
            Verdict::Short => buf.len() / 2,
            Verdict::Go => buf.len(),
            Verdict::DoThenCrash => {
                self.file.write_all(buf)?;
                self.len += buf.len() as u64;
                self.io.state().dead = true;
                return Err(injected());
            }
        };
        self.file.write_all(&buf[..n])?;
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl HookedFile for FaultyFile {
    fn sync_all(&mut self) -> std::io::Result<()> {
        let path = self.path.clone();
        let file = &self.file;
        self.io.run(
            "fsync",
            || file.sync_all(),
            |s| {
                s.unsynced.remove(&path);
            },
        )
    }

    fn size(&self) -> u64 {
        self.len
    }

    /// A counted write like any other: a short one writes the first half, then the rest (as a
    /// retrying caller would).
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        match self.io.next("write") {
            Verdict::Fail => return Err(injected()),
            Verdict::Short => {
                let half = buf.len() / 2;
                self.file.write_all_at(&buf[..half], offset)?;
                self.file.write_all_at(&buf[half..], offset + half as u64)?;
            }
            Verdict::Go => self.file.write_all_at(buf, offset)?,
            Verdict::DoThenCrash => {
                self.file.write_all_at(buf, offset)?;
                self.io.state().dead = true;
                return Err(injected());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_keeps_only_what_was_made_durable() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("CURRENT"), b"v1").unwrap();
        // Op 0 create, 1 write, 2 fsync, 3 rename, then op 4 (a second file's create) crashes.
        let io = FaultyIo::failing(4, Fault::Crash);
        let mut f = io.create_new(&root.join("tmp")).unwrap();
        f.write_all(b"v2").unwrap();
        f.sync_all().unwrap();
        io.rename(&root.join("tmp"), &root.join("CURRENT")).unwrap();
        assert!(io.create(&root.join("other")).is_err());
        assert!(io.crashed());
        assert!(io.sync_dir(root).is_err(), "nothing runs after a crash");
        io.crash_image();
        // The rename was never made durable by a directory fsync: the old CURRENT is back.
        assert_eq!(std::fs::read(root.join("CURRENT")).unwrap(), b"v1");
        assert!(!root.join("tmp").exists() && !root.join("other").exists());
    }

    #[test]
    fn a_synced_directory_keeps_its_names_and_unsynced_data_is_torn() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let io = FaultyIo::failing(3, Fault::Crash);
        let mut f = io.create(&root.join("data")).unwrap();
        f.write_all(b"abcdefgh").unwrap();
        io.sync_dir(root).unwrap();
        assert!(io.remove_file(&root.join("data")).is_err());
        io.crash_image();
        // The removal (not durable) is undone; the content (never fsynced) is torn.
        assert_eq!(std::fs::read(root.join("data")).unwrap(), b"abcd");
        assert_eq!(io.log(), vec!["create", "write", "fsync directory", "remove"]);
    }

    #[test]
    fn a_short_write_writes_half_and_an_error_has_no_effect() {
        let dir = tempfile::tempdir().unwrap();
        let io = FaultyIo::failing(1, Fault::ShortWrite);
        let mut f = io.create(&dir.path().join("a")).unwrap();
        assert_eq!(f.write(b"abcd").unwrap(), 2);
        let io = FaultyIo::failing(0, Fault::Error);
        assert!(io.create(&dir.path().join("b")).is_err());
        assert!(!dir.path().join("b").exists());
    }
}
