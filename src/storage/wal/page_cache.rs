//! Letting go of the page cache behind the writer. Once an fdatasync has
//! made a segment's bytes durable, nothing reads them again until the next
//! start (recovery), so the kernel is told it may drop those pages
//! (`POSIX_FADV_DONTNEED`) rather than keep them until memory runs short:
//! under sustained ingest the cache holds the unsynced tail, not the log.
//!
//! The kernel drops whole pages only, and each advice drains every CPU's
//! page lists: advice goes once a megabyte ([`ADVICE_BYTES`]) of whole
//! pages is ready, not after every fdatasync, and the page an end falls in
//! waits for the next. Elsewhere than on Linux this is a no-op.
//!
//! Where nothing syncs as it goes (`fsync: never`), the same advice on the
//! written but unsynced pages, every [`ADVICE_BYTES`], starts their
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

/// How many bytes of whole pages one advice covers at least.
pub(super) const ADVICE_BYTES: u64 = 1 << 20;

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
    /// advises the kernel that the synced pages will not be read again,
    /// once they are [`ADVICE_BYTES`] or more.
    pub(super) fn after_sync(&mut self, file: &File, synced: u64) {
        advise_up_to(file, &mut self.released, synced, self.page);
    }

    /// After writing the first `written` bytes of `file` without syncing
    /// them: starts the writeback of the pages written since the last
    /// start, once they are [`ADVICE_BYTES`] or more.
    pub(super) fn after_unsynced_write(&mut self, file: &File, written: u64) {
        advise_up_to(file, &mut self.written_back, written, self.page);
    }
}

/// Advises the whole pages of `file` from `advised` up to `upto` once
/// there are enough of them (see [`next_advice`]), and moves `advised`
/// past them.
fn advise_up_to(file: &File, advised: &mut u64, upto: u64, page: u64) {
    if let Some(range) = next_advice(*advised, upto, page) {
        advise_dont_need(file, &range);
        *advised = range.end;
    }
}

/// The whole pages of `[advised, upto)` (`advised` at a page boundary)
/// once they are at least [`ADVICE_BYTES`], else `None`.
fn next_advice(advised: u64, upto: u64, page: u64) -> Option<Range<u64>> {
    let end = upto - upto % page;
    (end >= advised + ADVICE_BYTES).then_some(advised..end)
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
    use super::{next_advice, ADVICE_BYTES};

    #[test]
    fn advice_covers_whole_pages_once_a_megabyte_of_them_is_ready() {
        let page = 4096;
        let mega = ADVICE_BYTES;
        assert_eq!(next_advice(0, 8, page), None);
        assert_eq!(next_advice(0, mega - 1, page), None);
        assert_eq!(next_advice(0, mega, page), Some(0..mega));
        // The page an end falls in waits for the next advice.
        assert_eq!(next_advice(0, mega + 5000, page), Some(0..mega + 4096));
        assert_eq!(next_advice(mega + 4096, 2 * mega, page), None);
        assert_eq!(
            next_advice(mega + 4096, 2 * mega + 8192, page),
            Some(mega + 4096..2 * mega + 8192)
        );
        // Nothing new.
        assert_eq!(next_advice(mega, mega, page), None);
    }

    #[test]
    fn the_advice_after_many_small_writes_covers_every_whole_page_once() {
        for page in [4096, 16_384, 65_536] {
            let mut advised = 0;
            let mut upto = 0;
            let mut advices = 0;
            for group in (1..=5000u64).map(|n| 37 + n * 7919 % 60_000) {
                upto += group;
                if let Some(range) = next_advice(advised, upto, page) {
                    assert_eq!(range.start, advised, "no gap, no page twice");
                    assert_eq!(range.end % page, 0);
                    assert!(range.end <= upto, "nothing not yet there");
                    advised = range.end;
                    advices += 1;
                }
                assert!(upto - advised < ADVICE_BYTES + page, "none left behind");
            }
            assert!(advices > 1, "page {page}");
        }
    }
}
