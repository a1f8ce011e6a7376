//! Tests of the recovery.

use super::*;
use crate::storage::wal::format::tests::{packet, v1_bytes};
use crate::storage::wal::tests::{options, recover_all};
use crate::storage::wal::{segment_path, FsyncMode, Wal};
use std::ops::Range;

fn accept(seq: u64) -> Record {
    Record::Accept {
        seq,
        packet: packet(&format!("p{seq}")),
        retries: 0,
    }
}

/// Writes one commit group per entry of `groups` (its records' seqs)
/// with the real writer, then stops it; answers segment 1's path and the
/// byte range of each group. The segment is left as long as its groups
/// (no zeroed room), as a segment that could not be zeroed ahead is.
async fn written(dir: &Path, fsync: FsyncMode, groups: &[&[u64]]) -> (PathBuf, Vec<Range<usize>>) {
    let (path, ranges) = written_with_room(dir, fsync, groups).await;
    let end = ranges.last().map_or(SEGMENT_MAGIC.len(), |last| last.end);
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(end as u64)
        .unwrap();
    (path, ranges)
}

/// [`written`], with the zeroed room the writer left after the groups.
async fn written_with_room(dir: &Path, fsync: FsyncMode, groups: &[&[u64]]) -> (PathBuf, Vec<Range<usize>>) {
    let wal = Wal::open(dir, 0, options(fsync)).unwrap();
    for seqs in groups {
        let records: Vec<Record> = seqs.iter().map(|seq| accept(*seq)).collect();
        wal.append_durable(&records).await.unwrap();
    }
    drop(wal);
    let path = segment_path(dir, 1);
    let bytes = std::fs::read(&path).unwrap();
    let mut ranges = Vec::new();
    let mut at = SEGMENT_MAGIC.len();
    while ranges.len() < groups.len() {
        let (_, body) = decode_group(&bytes[at..]).unwrap();
        let end = at + GROUP_HEADER_BYTES + body.len();
        ranges.push(at..end);
        at = end;
    }
    assert!(
        bytes[at..].iter().all(|b| *b == 0),
        "one group per append, then room"
    );
    (path, ranges)
}

/// Zeros added to the end of `path` up to `len` bytes, as the writer
/// leaves room ahead of its groups.
fn with_room(path: &Path, len: u64) {
    let file = OpenOptions::new().write(true).open(path).unwrap();
    assert!(file.metadata().unwrap().len() <= len);
    file.set_len(len).unwrap();
}

fn seqs(recovered: &Recovered) -> Vec<u64> {
    recovered.in_flight.keys().copied().collect()
}

/// The files next to the segments.
fn kept(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_none_or(|e| e != "wal"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn a_last_group_cut_short_is_cut_off_and_kept_aside() {
    let dir = tempfile::tempdir().unwrap();
    let (path, groups) = written(dir.path(), FsyncMode::Always, &[&[1], &[2], &[3, 4]]).await;
    let whole = std::fs::read(&path).unwrap();
    let torn = &whole[..whole.len() - 10];
    std::fs::write(&path, torn).unwrap();

    let recovered = recover_all(dir.path(), RecoverMode::Strict).unwrap();
    assert_eq!(seqs(&recovered), [1, 2], "the torn group is dropped whole");
    assert_eq!(recovered.torn_tail_bytes, (torn.len() - groups[2].start) as u64);
    assert_eq!(std::fs::read(&path).unwrap(), &whole[..groups[2].start]);
    let name = format!("00000000000000000001.wal.torn-at-{}", groups[2].start);
    assert_eq!(kept(dir.path()), [(name, torn[groups[2].start..].to_vec())]);
}

/// A power loss during the last group's write: the file grew, but a
/// page of it (or its end) was never written and reads as zeros, while
/// pages after it were. Zeros past it, to the end, are room.
#[tokio::test]
async fn zeros_in_the_last_group_are_a_torn_write() {
    for zeros in ["a page inside it", "its end", "a page past it"] {
        let dir = tempfile::tempdir().unwrap();
        let seqs_of_last: Vec<u64> = (3..200).collect();
        let (path, groups) = written(dir.path(), FsyncMode::Always, &[&[1], &[2], &seqs_of_last]).await;
        let mut bytes = std::fs::read(&path).unwrap();
        let last = groups[2].clone();
        assert!(last.len() > 3 * 4096, "the last group spans pages");
        match zeros {
            "a page inside it" => bytes[last.start + 4096..last.start + 8192].fill(0),
            "its end" => bytes[last.end - 4096..].fill(0),
            _ => bytes.extend([0; 4096]),
        }
        std::fs::write(&path, &bytes).unwrap();
        let recovered =
            recover_all(dir.path(), RecoverMode::Strict).unwrap_or_else(|e| panic!("zeros at {zeros}: {e}"));
        if zeros == "a page past it" {
            // Zeros to the end: read as room, every group whole.
            assert_eq!(seqs(&recovered), (1..200).collect::<Vec<u64>>());
            assert_eq!(recovered.torn_tail_bytes, 0);
        } else {
            assert_eq!(seqs(&recovered), [1, 2], "zeros at {zeros}");
            assert!(recovered.torn_tail_bytes > 0, "zeros at {zeros}");
        }
    }
}

#[tokio::test]
async fn a_damaged_length_before_synced_groups_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (path, groups) = written(dir.path(), FsyncMode::Always, &[&[1], &[2, 3], &[4], &[5]]).await;
    let whole = std::fs::read(&path).unwrap();
    // The length field of the second record of the second group: the
    // group's own length and every record's are under its checksums.
    let body = groups[1].start + GROUP_HEADER_BYTES;
    let (_, first) = Record::decode(&whole[body..]).unwrap();
    let mut damaged = whole.clone();
    damaged[body + first..body + first + 4].copy_from_slice(&0x00f0_0000u32.to_le_bytes());
    std::fs::write(&path, &damaged).unwrap();

    let error = recover_all(dir.path(), RecoverMode::Strict)
        .unwrap_err()
        .to_string();
    assert!(error.contains("00000000000000000001.wal"), "{error}");
    assert!(error.contains(&format!("at byte {}", groups[1].start)), "{error}");
    assert!(
        error.contains(&format!("at byte {} was written after", groups[2].start)),
        "{error}"
    );
    assert!(error.contains("--wal-recover=skip-corrupt"), "{error}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        damaged,
        "a refusal changes nothing"
    );
    assert!(kept(dir.path()).is_empty());

    let skipped = recover_all(dir.path(), RecoverMode::SkipCorrupt).unwrap();
    assert_eq!(seqs(&skipped), [1, 4, 5], "only the damaged group is lost");
    assert_eq!(skipped.torn_tail_bytes, 0);
    let name = format!("00000000000000000001.wal.skipped-at-{}", groups[1].start);
    assert_eq!(kept(dir.path()), [(name, damaged[groups[1].clone()].to_vec())]);
    assert_eq!(
        skipped
            .skipped
            .iter()
            .map(|s| (s.offset, s.bytes))
            .collect::<Vec<_>>(),
        [(groups[1].start as u64, groups[1].len() as u64)]
    );
}

/// With `fsync: interval` or `never` the groups after the last fdatasync
/// can all be torn: damage in one of them, with only such groups after
/// it, is the window those modes may lose.
#[tokio::test]
async fn damage_with_only_unsynced_groups_after_it_is_a_torn_write() {
    let dir = tempfile::tempdir().unwrap();
    let (path, groups) = written(dir.path(), FsyncMode::Never, &[&[1], &[2], &[3]]).await;
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[groups[1].start + GROUP_HEADER_BYTES + 20] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let recovered = recover_all(dir.path(), RecoverMode::Strict).unwrap();
    assert_eq!(seqs(&recovered), [1]);
    assert_eq!(std::fs::read(&path).unwrap(), &bytes[..groups[1].start]);
}

#[tokio::test]
async fn damage_in_an_older_segment_is_corruption_even_at_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = written(dir.path(), FsyncMode::Always, &[&[1], &[2]]).await;
    let wal = Wal::open(dir.path(), 1, options(FsyncMode::Always)).unwrap();
    wal.append_durable(&[accept(3)]).await.unwrap();
    drop(wal);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
    let error = recover_all(dir.path(), RecoverMode::Strict)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("00000000000000000001.wal") && error.contains("not the newest"),
        "{error}"
    );
}

#[tokio::test]
async fn a_whole_group_that_cannot_be_read_is_refused_even_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = written(dir.path(), FsyncMode::Always, &[&[1]]).await;
    let mut record = vec![0, 0, 0, 0, 1];
    record.extend_from_slice(&2u64.to_le_bytes());
    record.extend_from_slice(b"{not json");
    let len = (record.len() - 4) as u32;
    record[..4].copy_from_slice(&len.to_le_bytes());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend(GroupHeader::for_body(&record, bytes.len() as u64).encode());
    bytes.extend(&record);
    std::fs::write(&path, &bytes).unwrap();
    let error = recover_all(dir.path(), RecoverMode::Strict)
        .unwrap_err()
        .to_string();
    assert!(error.contains("cannot be read"), "{error}");
}

/// Segment 1 of `dir` with two groups, the second cut short by 3 bytes;
/// answers its path and the groups' byte ranges.
async fn second_group_torn(dir: &Path) -> (PathBuf, Vec<Range<usize>>) {
    let (path, groups) = written(dir, FsyncMode::Always, &[&[1], &[2]]).await;
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    (path, groups)
}

#[tokio::test]
async fn a_newer_segment_with_only_its_magic_leaves_the_torn_tail_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let (path, groups) = second_group_torn(dir.path()).await;
    // Two start-ups that crashed before recovering: one segment with
    // its magic, one with part of it.
    std::fs::write(segment_path(dir.path(), 2), SEGMENT_MAGIC).unwrap();
    std::fs::write(segment_path(dir.path(), 3), &SEGMENT_MAGIC[..3]).unwrap();
    let recovered = recover_all(dir.path(), RecoverMode::Strict).unwrap();
    assert_eq!(seqs(&recovered), [1]);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), groups[1].start as u64);
}

#[tokio::test]
async fn zeroed_room_after_the_last_group_is_cut_off_as_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let (path, groups) = written(dir.path(), FsyncMode::Always, &[&[1], &[2], &[3, 4]]).await;
    with_room(&path, 1 << 20);

    let recovered = recover_all(dir.path(), RecoverMode::Strict).unwrap();
    assert_eq!(seqs(&recovered), [1, 2, 3, 4]);
    assert_eq!(recovered.torn_tail_bytes, 0, "room is no torn write");
    assert_eq!(kept(dir.path()), [], "nothing kept aside");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), groups[2].end as u64);
}

#[tokio::test]
async fn the_writer_leaves_its_room_and_recovery_reads_through_it() {
    let dir = tempfile::tempdir().unwrap();
    let (path, groups) = written_with_room(dir.path(), FsyncMode::Always, &[&[1], &[2, 3]]).await;
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        1 << 20,
        "the first room, zeroed ahead"
    );
    let recovered = recover_all(dir.path(), RecoverMode::Strict).unwrap();
    assert_eq!(seqs(&recovered), [1, 2, 3]);
    assert_eq!(recovered.torn_tail_bytes, 0);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), groups[1].end as u64);
}

/// A crash in the last group's write into room: its first part on
/// disk, the rest still the zeros written ahead.
#[tokio::test]
async fn a_torn_group_in_zeroed_room_is_cut_and_its_copy_ends_at_its_last_written_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (path, groups) = written(dir.path(), FsyncMode::Always, &[&[1], &[2], &[3, 4]]).await;
    let last = groups[2].clone();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[last.end - 10..].fill(0);
    bytes.resize(1 << 20, 0);
    std::fs::write(&path, &bytes).unwrap();

    let recovered = recover_all(dir.path(), RecoverMode::Strict).unwrap();
    assert_eq!(seqs(&recovered), [1, 2], "the torn group is dropped whole");
    assert_eq!(recovered.torn_tail_bytes, (last.len() - 10) as u64);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), last.start as u64);
    let name = format!("00000000000000000001.wal.torn-at-{}", last.start);
    assert_eq!(
        kept(dir.path()),
        [(name, bytes[last.start..last.end - 10].to_vec())]
    );
}

/// The writer cuts a segment's unused room off when it rotates; a
/// crash can keep that cut from reaching the disk.
#[tokio::test]
async fn zeroed_room_left_in_an_older_segment_is_no_damage() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = written(dir.path(), FsyncMode::Always, &[&[1], &[2]]).await;
    with_room(&path, 256 * 1024);
    let next = Wal::open(dir.path(), 1, options(FsyncMode::Always)).unwrap();
    next.append_durable(&[accept(3)]).await.unwrap();
    drop(next);

    let recovered = recover_all(dir.path(), RecoverMode::Strict).unwrap();
    assert_eq!(seqs(&recovered), [1, 2, 3]);
    assert_eq!(recovered.torn_tail_bytes, 0);
    assert_eq!(kept(dir.path()), []);
}

/// A spare renamed into place as the next segment, then a crash before
/// anything was written to it: its magic and zeros hold no group, so
/// the torn tail is still the older segment's.
#[tokio::test]
async fn a_newer_segment_of_magic_and_zeros_leaves_the_torn_tail_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let (path, groups) = second_group_torn(dir.path()).await;
    let mut spare = SEGMENT_MAGIC.to_vec();
    spare.resize(256 * 1024, 0);
    std::fs::write(segment_path(dir.path(), 2), spare).unwrap();

    let recovered = recover_all(dir.path(), RecoverMode::Strict).unwrap();
    assert_eq!(seqs(&recovered), [1]);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), groups[1].start as u64);
}

/// Segments written before the commit-group format: records with their
/// own checksums, no magic.
#[test]
fn version_1_segments_are_read_and_their_damage_judged() {
    let dir = tempfile::tempdir().unwrap();
    let path = segment_path(dir.path(), 1);
    let records = [
        accept(1),
        Record::Retry { seq: 1, retries: 2 },
        accept(2),
        Record::End { seq: 2 },
        accept(3),
    ];
    let mut bytes = Vec::new();
    let mut starts = Vec::new();
    for record in &records {
        starts.push(bytes.len());
        bytes.extend(v1_bytes(record));
    }
    std::fs::write(&path, &bytes).unwrap();
    let recovered = recover_all(dir.path(), RecoverMode::Strict).unwrap();
    assert_eq!(seqs(&recovered), [1, 3]);
    assert_eq!(recovered.in_flight[&1].retries, 2);
    assert_eq!((recovered.records, recovered.next_seq), (5, 4));

    // A damaged length in the middle, whole records after it.
    let mut damaged = bytes.clone();
    damaged[starts[2]..starts[2] + 4].copy_from_slice(&0x00f0_0000u32.to_le_bytes());
    std::fs::write(&path, &damaged).unwrap();
    let error = recover_all(dir.path(), RecoverMode::Strict)
        .unwrap_err()
        .to_string();
    assert!(error.contains(&format!("at byte {}", starts[2])), "{error}");
    let skipped = recover_all(dir.path(), RecoverMode::SkipCorrupt).unwrap();
    assert_eq!(
        seqs(&skipped),
        [1, 3],
        "the record with the damaged length is skipped, and End 2 with no Accept"
    );
    assert_eq!(skipped.skipped[0].bytes as usize, starts[3] - starts[2]);

    // The last record cut short: a torn tail, cut and kept.
    std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
    let recovered = recover_all(dir.path(), RecoverMode::Strict).unwrap();
    assert_eq!(seqs(&recovered), [1]);
    assert_eq!(std::fs::read(&path).unwrap(), &bytes[..starts[4]]);
    let torn = format!("00000000000000000001.wal.torn-at-{}", starts[4]);
    assert!(kept(dir.path())
        .iter()
        .any(|(name, copy)| *name == torn && copy[..] == bytes[starts[4]..bytes.len() - 4]));
}
