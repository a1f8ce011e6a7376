//! Letting go of the page cache behind the writer. Once an fdatasync has
//! made a segment's bytes durable, nothing reads them again until the next
//! start (recovery), so the kernel is told it may drop those pages
//! (`POSIX_FADV_DONTNEED`) rather than keep them until memory runs short:
//! under sustained ingest the cache holds the unsynced tail, not the log.
//!
//! The kernel drops whole pages only; the page the synced end falls in is
//! advised again after the next fdatasync. Elsewhere than on Linux this is
//! a no-op.
//!
//! Where nothing syncs as it goes (`fsync: never`), the same advice on the
//! written but unsynced pages, every [`WRITEBACK_BYTES`], starts their
//! writeback without waiting for it (Linux's `POSIX_FADV_DONTNEED` starts
//! writeback of the dirty pages of the range, and drops only the clean
//! ones): the fdatasync that seals a segment at rotation then finds little
//! left to write, instead of a whole segment that holds up every append.

use std::fs::File;
use std::ops::Range;

/// What a segment's writer has let go of: every whole page before
/// `released` was advised after it was synced.
pub(super) struct PageCache {
    released: u64,
    /// Every whole page before this was written and its writeback started.
    written_back: u64,
    page: u64,
}

/// How much is written unsynced before its writeback is started.
pub(super) const WRITEBACK_BYTES: u64 = 1 << 20;

impl PageCache {
    /// For a new segment, none of which is let go yet.
    pub(super) fn new() -> PageCache {
        PageCache {
            released: 0,
            written_back: 0,
            page: page_size(),
        }
    }

    /// After a completed fdatasync of the first `synced` bytes of `file`:
    /// advises the kernel that the synced pages will not be read again.
    pub(super) fn after_sync(&mut self, file: &File, synced: u64) {
        if let Some(range) = to_release(self.released, synced, self.page) {
            advise_dont_need(file, &range);
            self.released = range.end;
        }
    }

    /// After writing the first `written` bytes of `file` without syncing
    /// them: starts the writeback of the pages written since the last
    /// start, once they are [`WRITEBACK_BYTES`] or more.
    pub(super) fn after_unsynced_write(&mut self, file: &File, written: u64) {
        if let Some(range) = to_write_back(self.written_back, written, self.page) {
            advise_dont_need(file, &range);
            self.written_back = range.end;
        }
    }
}

/// The whole pages of `[written_back, written)` once they are at least
/// [`WRITEBACK_BYTES`], else `None`.
fn to_write_back(written_back: u64, written: u64, page: u64) -> Option<Range<u64>> {
    let end = written - written % page;
    (end >= written_back + WRITEBACK_BYTES).then_some(written_back..end)
}

/// The whole pages of `[released, synced)` (`released` at a page
/// boundary), or `None` when that holds no whole page yet.
fn to_release(released: u64, synced: u64, page: u64) -> Option<Range<u64>> {
    let end = synced - synced % page;
    (end > released).then_some(released..end)
}

#[cfg(target_os = "linux")]
fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

#[cfg(not(target_os = "linux"))]
fn page_size() -> u64 {
    4096
}

#[cfg(target_os = "linux")]
pub(super) fn advise_dont_need(file: &File, range: &Range<u64>) {
    use rustix::fs::{fadvise, Advice};
    use std::num::NonZeroU64;
    let len = NonZeroU64::new(range.end - range.start);
    // Only advice: a refusal leaves the pages to the kernel, as without it.
    if let Err(e) = fadvise(file, range.start, len, Advice::DontNeed) {
        tracing::debug!(error = %e, "posix_fadvise(DONTNEED) on the write-ahead log failed");
    }
}

#[cfg(not(target_os = "linux"))]
pub(super) fn advise_dont_need(_file: &File, _range: &Range<u64>) {}

#[cfg(test)]
mod tests {
    use super::{to_release, to_write_back, WRITEBACK_BYTES};

    #[test]
    fn whole_synced_pages_are_released_once_each() {
        let page = 4096;
        // Less than a page synced: nothing whole to let go.
        assert_eq!(to_release(0, 8, page), None);
        assert_eq!(to_release(0, 4095, page), None);
        assert_eq!(to_release(0, 4096, page), Some(0..4096));
        // The page the synced end falls in waits for the next sync.
        assert_eq!(to_release(0, 10_000, page), Some(0..8192));
        assert_eq!(to_release(8192, 10_000, page), None);
        assert_eq!(to_release(8192, 12_288, page), Some(8192..12_288));
        assert_eq!(to_release(8192, 1 << 20, page), Some(8192..1 << 20));
        // Nothing new synced.
        assert_eq!(to_release(1 << 20, 1 << 20, page), None);
    }

    #[test]
    fn the_releases_of_many_small_syncs_cover_every_whole_synced_page() {
        for page in [4096, 16_384, 65_536] {
            let mut released = 0;
            let mut covered = Vec::new();
            let mut synced = 0;
            for group in (1..=2000u64).map(|n| 37 + n * 13 % 900) {
                synced += group;
                if let Some(range) = to_release(released, synced, page) {
                    assert_eq!(range.start, released, "no gap, no page twice");
                    assert_eq!(range.end % page, 0);
                    assert!(range.end <= synced, "nothing unsynced");
                    covered.push(range.clone());
                    released = range.end;
                }
            }
            assert_eq!(released, synced - synced % page, "page {page}");
            assert!(covered.len() > 1);
        }
    }

    #[test]
    fn writeback_starts_every_megabyte_of_whole_written_pages() {
        let page = 4096;
        let mega = WRITEBACK_BYTES;
        assert_eq!(to_write_back(0, mega - 1, page), None);
        assert_eq!(to_write_back(0, mega, page), Some(0..mega));
        assert_eq!(to_write_back(0, mega + 5000, page), Some(0..mega + 4096));
        // The rest waits for the next megabyte.
        assert_eq!(to_write_back(mega + 4096, 2 * mega, page), None);
        assert_eq!(
            to_write_back(mega + 4096, 2 * mega + 8192, page),
            Some(mega + 4096..2 * mega + 8192)
        );
        let mut written_back = 0;
        let mut written = 0;
        for group in (1..=5000u64).map(|n| 1000 + n * 7919 % 60_000) {
            written += group;
            if let Some(range) = to_write_back(written_back, written, page) {
                assert_eq!(range.start, written_back, "no gap, no page twice");
                assert_eq!(range.end % page, 0);
                assert!(range.end <= written, "nothing not yet written");
                written_back = range.end;
            }
            assert!(
                written - written_back < WRITEBACK_BYTES + page,
                "none left behind"
            );
        }
    }
}
