//! Tests of the writer.

use super::super::format::decode_group;
use super::super::tests::options;
use super::*;
use crate::model::{EncodedPacket, Level, LogMessage, LogPacket};

/// An Accept record of about `bytes` bytes.
fn accept(seq: u64, bytes: usize) -> Record {
    let packet = EncodedPacket::new(&LogPacket {
        id: format!("p{seq}"),
        messages: vec![LogMessage {
            level: Level::Info,
            message: "m".repeat(bytes),
            source: "s".into(),
            timestamp: chrono::Utc::now(),
            metadata: None,
        }],
        retry_count: 0,
    });
    Record::Accept {
        seq,
        packet: Arc::new(packet),
        retries: 0,
    }
}

/// A writer on segment 1 of `dir`, fsync always, with segments of
/// `segment_bytes`.
fn writer_with_segments(dir: &Path, segment_bytes: u64) -> Writer {
    let options = WalOptions {
        segment_bytes,
        ..options(FsyncMode::Always)
    };
    Writer::open(dir, 1, options, Arc::default()).unwrap()
}

/// A writer that does not rotate within one batch of a few MiB.
fn unrotated_writer(dir: &Path) -> Writer {
    writer_with_segments(dir, 64 << 20)
}

/// Appends `records` and waits for the answer.
fn append(writer: &mut Writer, records: Vec<Record>) {
    let (done, mut answer) = oneshot::channel();
    writer.commit(vec![Command::Append { records, done }]);
    answer.try_recv().unwrap().unwrap();
}

/// Asserts that `dir` is not on a memory file system, where segments
/// get no zeroed room.
fn on_disk(dir: &Path) {
    assert!(
        room::worth_zeroing(dir, 64 << 20),
        "{} must be on a disk file system with room to spare",
        dir.display()
    );
}

/// The segment's length in the file, and the blocks it holds.
fn extent(path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).unwrap();
    (meta.len(), meta.blocks())
}

#[test]
fn appends_overwrite_the_zeroed_room_without_growing_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    on_disk(dir.path());
    let mut writer = unrotated_writer(dir.path());
    let path = super::super::segment_path(dir.path(), 1);
    let before = extent(&path);
    assert_eq!(before.0, room::FIRST_ROOM, "the first room is zeroed at creation");
    for seq in 0..100 {
        append(&mut writer, vec![accept(seq, 1000)]);
    }
    assert!(writer.segment.len > 100_000);
    assert_eq!(extent(&path), before, "the appends grew the segment");
}

/// A MiB per fdatasync (a hundred packets per request, many requests
/// per group): zeroing a spare would write more than it saves.
#[test]
fn large_fdatasyncs_get_no_spare_and_the_segment_grows_past_its_room() {
    let dir = tempfile::tempdir().unwrap();
    on_disk(dir.path());
    let mut writer = writer_with_segments(dir.path(), 16 << 20);
    for batch in 0..4 {
        let first = batch * 1000;
        append(
            &mut writer,
            (first..first + 1000).map(|seq| accept(seq, 1000)).collect(),
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(writer.segment.number, 1, "rotated into a spare");
    assert!(writer.segment.len > 2 * room::FIRST_ROOM);
    assert!(!dir.path().join(room::SPARE_NAME).exists(), "a spare was zeroed");
}

/// Segments small enough to fill in a test, large enough for spares.
const SPARED_SEGMENT_BYTES: u64 = 4 << 20;

/// A writer on a disk directory with segments of [`SPARED_SEGMENT_BYTES`],
/// and where its spare is made.
fn spared_writer(dir: &Path) -> (Writer, PathBuf) {
    on_disk(dir);
    let writer = writer_with_segments(dir, SPARED_SEGMENT_BYTES);
    (writer, dir.join(room::SPARE_NAME))
}

/// The file's inode number.
fn inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().ino()
}

/// Large fdatasyncs get no whole spare, but the next segment is still made
/// ahead, with the first room: the rotation renames it rather than zeroing
/// and syncing a new file while appenders wait.
#[test]
fn large_fdatasyncs_rotate_into_a_spare_of_the_first_room_made_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, spare) = spared_writer(dir.path());
    let segment_bytes = SPARED_SEGMENT_BYTES;
    let mut seq = 0;
    let mut append_mib = |writer: &mut Writer| {
        append(writer, (seq..seq + 1000).map(|seq| accept(seq, 1000)).collect());
        seq += 1000;
    };
    while writer.segment.len < segment_bytes / 2 {
        append_mib(&mut writer);
    }
    assert_eq!(writer.segment.number, 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    while writer.spares.ready_bytes().is_none() {
        assert!(Instant::now() < deadline, "no spare made ahead");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(extent(&spare).0, room::FIRST_ROOM, "a spare of the first room");
    let made_ahead = inode(&spare);
    append_mib(&mut writer);
    assert_eq!(writer.segment.number, 1, "rotated before the segment was full");
    while writer.segment.number == 1 {
        append_mib(&mut writer);
    }
    let new = super::super::segment_path(dir.path(), 2);
    assert_eq!(inode(&new), made_ahead, "the new segment is not the spare");
    assert!(!spare.exists());
}

#[test]
fn a_used_up_room_moves_the_writer_into_a_zeroed_spare_and_the_old_segment_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, spare) = spared_writer(dir.path());
    let segment_bytes = SPARED_SEGMENT_BYTES;
    let mut seq = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while writer.segment.number == 1 {
        assert!(Instant::now() < deadline, "no rotation into a spare");
        append(
            &mut writer,
            (seq..seq + 10).map(|seq| accept(seq, 1000)).collect(),
        );
        seq += 10;
        if writer.segment.len >= room::FIRST_ROOM {
            // Past its room the segment grows; the spare comes soon.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // The old segment ends at its last group; the new one is the spare,
    // a whole segment long, renamed into place.
    let old = std::fs::read(super::super::segment_path(dir.path(), 1)).unwrap();
    let mut at = SEGMENT_MAGIC.len();
    while at < old.len() {
        let (_, body) = decode_group(&old[at..]).unwrap();
        at += GROUP_HEADER_BYTES + body.len();
    }
    assert_eq!(at, old.len());
    assert!(
        (old.len() as u64) < segment_bytes,
        "rotated for its room, not its size"
    );
    let new = super::super::segment_path(dir.path(), 2);
    assert_eq!(extent(&new).0, segment_bytes);
    assert!(std::fs::read(&new).unwrap().starts_with(&SEGMENT_MAGIC));
    assert!(!spare.exists(), "the spare was renamed, not copied");
    // Writing on keeps the spare's length.
    let before = extent(&new);
    append(&mut writer, vec![accept(seq, 1000)]);
    assert_eq!(extent(&new), before);
    drop(writer);
    let recovered = super::super::tests::recover_all(dir.path(), super::super::RecoverMode::Strict).unwrap();
    assert_eq!(recovered.in_flight.len() as u64, seq + 1);
    assert_eq!(recovered.torn_tail_bytes, 0);
}

/// Bytes of `path` in the page cache, as util-linux's `fincore` reads them.
#[cfg(target_os = "linux")]
fn resident_bytes(path: &Path) -> u64 {
    let out = std::process::Command::new("fincore")
        .args(["--bytes", "--noheadings", "--raw", "--output", "RES"])
        .arg(path)
        .output()
        .expect("fincore (util-linux) runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[cfg(target_os = "linux")]
#[test]
fn the_synced_log_leaves_the_page_cache_once_its_appenders_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = unrotated_writer(dir.path());
    let (done, mut answer) = oneshot::channel();
    let records = (0..2000).map(|seq| accept(seq, 1000)).collect();
    writer.commit(vec![Command::Append { records, done }]);
    answer.try_recv().unwrap().unwrap();

    let path = super::super::segment_path(dir.path(), 1);
    let written = std::fs::metadata(&path).unwrap().len();
    assert!(written > 2_000_000, "{written} bytes written");
    // At most the advice still waiting for its megabyte stays behind.
    let resident = resident_bytes(&path);
    assert!(
        resident <= super::super::page_cache::ADVICE_BYTES + 64 * 1024,
        "{resident} of {written} bytes still cached"
    );
}

#[test]
fn a_batch_is_written_in_groups_of_about_group_bytes_each_append_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = unrotated_writer(dir.path());
    // 60 appends of 40 records of about 1 KB: 2.4 MB in one batch.
    let (appends, per_append) = (60u64, 40u64);
    let mut answers = Vec::new();
    let batch = (0..appends)
        .map(|append| {
            let (done, answer) = oneshot::channel();
            answers.push(answer);
            let first = append * per_append;
            let records = (first..first + per_append).map(|seq| accept(seq, 1000)).collect();
            Command::Append { records, done }
        })
        .collect();
    writer.commit(batch);
    for mut answer in answers {
        answer.try_recv().unwrap().unwrap();
    }

    let segment = std::fs::read(super::super::segment_path(dir.path(), 1)).unwrap();
    let mut at = SEGMENT_MAGIC.len();
    let (mut groups, mut next_seq) = (0, 0);
    while at < segment.len() {
        let (header, body) = decode_group(&segment[at..]).unwrap();
        let seqs: Vec<u64> = super::super::format::decode_body(body)
            .unwrap()
            .iter()
            .map(|record| match record {
                Record::Accept { seq, .. } => *seq,
                other => panic!("{other:?}"),
            })
            .collect();
        // In order, whole appends only, at most one append past GROUP_BYTES.
        assert_eq!(seqs[0], next_seq);
        assert!(seqs.windows(2).all(|pair| pair[1] == pair[0] + 1));
        assert_eq!(seqs.len() as u64 % per_append, 0, "an append split across groups");
        assert!(
            body.len() < GROUP_BYTES + 50 * 1024,
            "a group of {} bytes",
            body.len()
        );
        // All written before the batch's one fdatasync.
        assert_eq!(header.synced, SEGMENT_MAGIC.len() as u64);
        next_seq += seqs.len() as u64;
        groups += 1;
        at += GROUP_HEADER_BYTES + body.len();
    }
    assert_eq!(next_seq, appends * per_append);
    assert!(groups >= 3, "{groups} groups");
    assert_eq!(writer.segment.synced, segment.len() as u64);
}
