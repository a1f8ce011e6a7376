//! Names of the temp files that atomic replacements write first, and their
//! removal when a crash left some behind.
//!
//! ```text
//! <file>.tmp-<pid>-<n>     next to <file>; n counts within the process
//! ```
//!
//! Each write gets a name of its own, so two writes of the same file at
//! once never share (and interleave in) one temp file: whichever renames
//! last wins whole. A crash between the write and the rename leaves the
//! temp file; start-up removes those, before anything writes again.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const MARK: &str = ".tmp-";

/// A temp file name next to `path`, used by no other write.
pub fn unique_path(path: &Path) -> PathBuf {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!("{MARK}{}-{n}", std::process::id()));
    path.with_file_name(name)
}

/// Removes the temp files [`unique_path`] names from `dir`; answers how
/// many. Only at start-up: they are leftovers of a process that stopped
/// between a write and its rename.
pub fn remove_leftovers(dir: &Path) -> io::Result<usize> {
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
}
