//! Letting go of the page cache behind the writer. Once an fdatasync has
//! made a segment's bytes durable, nothing reads them again until the next
//! start (recovery), so the kernel is told it may drop those pages
//! (`POSIX_FADV_DONTNEED`) rather than keep them until memory runs short:
//! under sustained ingest the cache holds the unsynced tail, not the log.
//!
//! The kernel drops whole pages only; the page the synced end falls in is
//! advised again after the next fdatasync. Elsewhere than on Linux this is
//! a no-op.

use std::fs::File;
use std::ops::Range;

/// What a segment's writer has let go of: every whole page before
/// `released` was advised after it was synced.
pub(super) struct PageCache {
    released: u64,
    page: u64,
}

impl PageCache {
    /// For a new segment, none of which is let go yet.
    pub(super) fn new() -> PageCache {
        PageCache {
            released: 0,
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
    use super::to_release;

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
}
