//! Files replaced whole, so that a crash leaves the old file or the new
//! one and never a mix: every such write goes to a temp file of its own
//! next to the target, is fsynced, renamed over the target, and the
//! directory is fsynced.
//!
//! ```text
//! <file>.tmp-<pid>-<n>     next to <file>; n counts within the process
//! ```
//!
//! Each write gets a name of its own, so two writes of the same file at
//! once never share (and interleave in) one temp file: whichever renames
//! last wins whole. A crash between the write and the rename leaves the
//! temp file; start-up removes those ([`remove_leftovers`]), before
//! anything writes again.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const MARK: &str = ".tmp-";

/// A temp file name next to `path`, used by no other write.
fn unique_path(path: &Path) -> PathBuf {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!("{MARK}{}-{n}", std::process::id()));
    path.with_file_name(name)
}

/// Removes the temp files [`unique_path`] names from `dir`; answers how
/// many. Only at start-up: they are leftovers of a process that stopped
/// between a write and its rename.
pub(crate) fn remove_leftovers(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if is_temp_name(&entry.file_name().to_string_lossy()) && entry.file_type()?.is_file() {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn is_temp_name(name: &str) -> bool {
    let Some((file, tag)) = name.rsplit_once(MARK) else {
        return false;
    };
    let Some((pid, n)) = tag.split_once('-') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    !file.is_empty() && digits(pid) && digits(n)
}

/// Writes `bytes` to `path` whole (see the module docs).
pub(crate) fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(bytes)?;
    file.commit()
}

/// A replacement of `path` being written: [`commit`](AtomicFile::commit)
/// puts it in place; dropped without that, it is removed and `path` is
/// left as it was.
pub(crate) struct AtomicFile {
    path: PathBuf,
    temp: PathBuf,
    out: Option<BufWriter<File>>,
}

impl AtomicFile {
    pub(crate) fn create(path: &Path) -> io::Result<AtomicFile> {
        let temp = unique_path(path);
        let file = File::create(&temp)?;
        Ok(AtomicFile {
            path: path.to_path_buf(),
            temp,
            out: Some(BufWriter::new(file)),
        })
    }

    /// Flushes and fsyncs the new file, renames it over the target and
    /// fsyncs the directory.
    pub(crate) fn commit(mut self) -> io::Result<()> {
        let out = self.out.take().expect("an atomic file is committed once");
        let written = out
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|file| file.sync_all())
            .and_then(|()| std::fs::rename(&self.temp, &self.path));
        if written.is_err() {
            let _ = std::fs::remove_file(&self.temp);
        }
        written?;
        sync_dir_of(&self.path)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.as_mut().expect("not committed").write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.out.as_mut().expect("not committed").write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.as_mut().expect("not committed").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Fsyncs the directory that holds `path`, so that a rename or a new file
/// in it survives a power loss.
pub(crate) fn sync_dir_of(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_write_gets_its_own_name_and_leftovers_are_found_by_it() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("state.json.gz");
        let first = unique_path(&target);
        let second = unique_path(&target);
        assert_ne!(first, second);
        assert_eq!(first.parent(), Some(dir.path()));
        for temp in [&first, &second] {
            std::fs::write(temp, b"half").unwrap();
        }
        for kept in [
            "state.json.gz",
            "failed_packets.json",
            "00000000000000000001.wal",
            "notes.tmp-x-1",
        ] {
            std::fs::write(dir.path().join(kept), b"kept").unwrap();
        }
        assert_eq!(remove_leftovers(dir.path()).unwrap(), 2);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "00000000000000000001.wal",
                "failed_packets.json",
                "notes.tmp-x-1",
                "state.json.gz"
            ]
        );
    }

    #[test]
    fn a_replacement_is_in_place_only_once_committed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("failed_packets.json");
        write(&target, b"old").unwrap();
        let mut abandoned = AtomicFile::create(&target).unwrap();
        abandoned.write_all(b"half of the new").unwrap();
        drop(abandoned);
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        assert_eq!(
            remove_leftovers(dir.path()).unwrap(),
            0,
            "the abandoned temp file is gone"
        );
        let mut replacement = AtomicFile::create(&target).unwrap();
        replacement.write_all(b"new").unwrap();
        replacement.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
