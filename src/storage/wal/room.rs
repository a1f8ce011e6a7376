//! Room zeroed ahead of the writer. Writing over blocks a file already
//! holds lets fdatasync flush the data alone; an append also grows the
//! file, so each fdatasync commits the file system's journal too (on ext4
//! here: 0.19 ms against 0.34 ms p50, and half the system CPU, per write
//! and fdatasync of a few KiB). So a segment starts with zeros written and
//! synced ahead of the commit groups, as PostgreSQL's WAL segments do:
//!
//! - a new segment gets [`FIRST_ROOM`] zeroed when it is created;
//! - once half its room is used, and while its fdatasyncs are small (see
//!   [`SMALL_SYNC_BYTES`]), a thread zeroes a *spare*: a whole segment's
//!   worth, magic first, under [`SPARE_NAME`] (no segment's name), which
//!   the writer renames into place once the room is used up, or when it
//!   rotates;
//! - otherwise, once half the segment is written, the thread makes a spare
//!   of the first room, so that a rotation renames a file made ahead
//!   instead of zeroing and syncing a new one while appenders wait (3 to
//!   30 ms here at a hundred packets per request, once a second).
//!
//! Where zeroing buys nothing it is skipped: on tmpfs and ramfs (no
//! journal, and the zeros would sit in memory) and while the file system
//! has less than twice the room free. Recovery reads an all-zero
//! remainder of a segment as room never written (see [`super::recovery`]).

use super::format::SEGMENT_MAGIC;
use super::page_cache;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The room a segment gets zeroed when it is created: cheap enough to
/// zero at once (a few ms), enough for the first writes of a run.
pub(super) const FIRST_ROOM: u64 = 1 << 20;

/// The first room of a new segment of at most `segment_bytes`.
pub(super) fn first_room(segment_bytes: u64) -> u64 {
    FIRST_ROOM.min(segment_bytes)
}
/// The spare being zeroed, or ready, in the log's directory.
pub(super) const SPARE_NAME: &str = "next-segment.spare";
/// How long after a failed or pointless try the next one waits.
const RETRY_AFTER: Duration = Duration::from_secs(10);
/// Zeros are written, synced and dropped from the page cache this much at
/// a time, so that zeroing never holds the disk for long ahead of the
/// writer's fdatasyncs.
const CHUNK: usize = 256 << 10;
/// Zeroing writes each byte twice; what it saves is a journal commit per
/// fdatasync. So a spare is zeroed only while the segment's fdatasyncs
/// average at most this many bytes (one packet per request: a few KiB
/// each; a hundred: hundreds of KiB, where the extra writes cost more).
pub(super) const SMALL_SYNC_BYTES: u64 = 64 << 10;

/// Whether zeroing `bytes` of room in `dir` is worth it: not on a memory
/// file system, and with twice that much free.
pub(super) fn worth_zeroing(dir: &Path, bytes: u64) -> bool {
    match free_disk(dir) {
        Some(free) => free >= bytes.saturating_mul(2),
        None => false,
    }
}

/// Bytes free for this process in `dir`'s file system; `None` for a
/// memory file system, or when it cannot be told.
#[cfg(target_os = "linux")]
fn free_disk(dir: &Path) -> Option<u64> {
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    let stats = rustix::fs::statfs(dir).ok()?;
    #[allow(clippy::unnecessary_cast)] // its width differs between targets
    let kind = stats.f_type as i64;
    if kind == TMPFS_MAGIC || kind == RAMFS_MAGIC {
        return None;
    }
    #[allow(clippy::unnecessary_cast)]
    Some((stats.f_bavail as u64).saturating_mul(stats.f_bsize as u64))
}

#[cfg(not(target_os = "linux"))]
fn free_disk(_dir: &Path) -> Option<u64> {
    None
}

/// Writes a new segment's magic into `file`, then zeros after it up to
/// `room` bytes in all (the magic alone when `room` is shorter), and
/// fdatasyncs it, letting go of the zeroed pages as it goes. Answers the
/// file's length.
pub(super) fn write_magic_and_room(file: &File, room: u64) -> io::Result<u64> {
    file.write_all_at(&SEGMENT_MAGIC, 0)?;
    let to = room.max(SEGMENT_MAGIC.len() as u64);
    let zeros = vec![0u8; CHUNK];
    let mut at = SEGMENT_MAGIC.len() as u64;
    while at < to {
        let len = (to - at).min(CHUNK as u64) as usize;
        file.write_all_at(&zeros[..len], at)?;
        file.sync_data()?;
        page_cache::advise_dont_need(file, &(at..at + len as u64));
        at += len as u64;
    }
    file.sync_data()?;
    Ok(to)
}

/// A whole segment's worth of zeros, magic first, durable, waiting under
/// [`SPARE_NAME`] to become the next segment.
pub(super) struct Spare {
    pub(super) file: File,
    path: PathBuf,
    /// The file's length.
    pub(super) bytes: u64,
}

impl Spare {
    fn zero(dir: &Path, bytes: u64) -> io::Result<Spare> {
        let path = dir.join(SPARE_NAME);
        let made = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .and_then(|file| write_magic_and_room(&file, bytes).map(|_| file));
        match made {
            Ok(file) => Ok(Spare { file, path, bytes }),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// Renames the spare to `segment` and makes the name durable.
    pub(super) fn install(self, dir: &Path, segment: &Path) -> io::Result<(File, u64)> {
        std::fs::rename(&self.path, segment)?;
        File::open(dir)?.sync_all()?;
        Ok((self.file, self.bytes))
    }
}

/// Zeroes one spare at a time on its own thread, on request.
pub(super) struct Spares {
    dir: PathBuf,
    zeroing: Option<mpsc::Receiver<io::Result<Spare>>>,
    ready: Option<Spare>,
    /// No new try before this (after a failure, or while it is not worth it).
    quiet_until: Option<Instant>,
}

impl Spares {
    /// Spares in `dir`; removes one a stopped run left behind.
    pub(super) fn new(dir: &Path) -> Spares {
        let _ = std::fs::remove_file(dir.join(SPARE_NAME));
        Spares {
            dir: dir.to_path_buf(),
            zeroing: None,
            ready: None,
            quiet_until: None,
        }
    }

    /// Starts zeroing the next spare, `bytes` long, unless one is ready or
    /// on its way.
    pub(super) fn request(&mut self, bytes: u64) {
        if self.ready.is_some() || self.zeroing.is_some() {
            return;
        }
        if self.quiet_until.is_some_and(|until| Instant::now() < until) {
            return;
        }
        if !worth_zeroing(&self.dir, bytes) {
            self.quiet_until = Some(Instant::now() + RETRY_AFTER);
            return;
        }
        let (done, zeroing) = mpsc::sync_channel(1);
        let dir = self.dir.clone();
        let spawned = std::thread::Builder::new()
            .name("wal-spare".into())
            .spawn(move || {
                let spare = Spare::zero(&dir, bytes);
                if let Err(mpsc::SendError(Ok(unused))) = done.send(spare) {
                    // The writer has stopped.
                    let _ = std::fs::remove_file(unused.path);
                }
            });
        match spawned {
            Ok(_) => self.zeroing = Some(zeroing),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start zeroing the next write-ahead log segment");
                self.quiet_until = Some(Instant::now() + RETRY_AFTER);
            }
        }
    }

    /// The length of the spare ready to be taken, if any.
    pub(super) fn ready_bytes(&mut self) -> Option<u64> {
        if let Some(zeroing) = &self.zeroing {
            match zeroing.try_recv() {
                Ok(Ok(spare)) => {
                    self.ready = Some(spare);
                    self.zeroing = None;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, dir = %self.dir.display(),
                        "cannot zero the next write-ahead log segment ahead; appending instead");
                    self.zeroing = None;
                    self.quiet_until = Some(Instant::now() + RETRY_AFTER);
                }
                Err(mpsc::TryRecvError::Empty) => {}
                Err(mpsc::TryRecvError::Disconnected) => self.zeroing = None,
            }
        }
        self.ready.as_ref().map(|spare| spare.bytes)
    }

    /// The ready spare, if any.
    pub(super) fn take(&mut self) -> Option<Spare> {
        self.ready_bytes();
        self.ready.take()
    }
}

impl Drop for Spares {
    /// A spare never used goes with the writer (one still being zeroed
    /// removes itself once it finds the writer gone).
    fn drop(&mut self) {
        if let Some(spare) = self.ready.take() {
            let _ = std::fs::remove_file(spare.path);
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn memory_file_systems_get_no_zeroed_room_and_disks_do() {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
        let tmpfs = mounts
            .lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .find(|fields| fields.get(2) == Some(&"tmpfs") && fields.get(1) == Some(&"/dev/shm"))
            .expect("/dev/shm is a tmpfs here");
        assert!(!worth_zeroing(Path::new(tmpfs[1]), 1));
        let disk = tempfile::tempdir().unwrap();
        assert!(
            worth_zeroing(disk.path(), 1 << 20),
            "{} is on a disk",
            disk.path().display()
        );
        assert!(
            !worth_zeroing(disk.path(), u64::MAX / 4),
            "no disk has room for that twice"
        );
    }

    #[test]
    fn a_spare_is_a_whole_segment_of_magic_and_zeros_and_a_stopped_runs_spare_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let spare = Spare::zero(dir.path(), 3 << 20).unwrap();
        let bytes = std::fs::read(dir.path().join(SPARE_NAME)).unwrap();
        assert_eq!(bytes.len(), 3 << 20);
        assert!(bytes.starts_with(&SEGMENT_MAGIC));
        assert!(bytes[SEGMENT_MAGIC.len()..].iter().all(|b| *b == 0));
        drop(spare);
        let _spares = Spares::new(dir.path());
        assert!(!dir.path().join(SPARE_NAME).exists());
    }
}
