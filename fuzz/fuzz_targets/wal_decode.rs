//! The records of a write-ahead-log commit group's body: decode them one
//! after another until the first error. Must never panic; a record that
//! decodes must encode to bytes that decode to the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logs_distributor::storage::wal::Record;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok((record, used)) = Record::decode(rest) {
        assert!(
            used > 0 && used <= rest.len(),
            "decode used {used} of {} bytes",
            rest.len()
        );
        let mut encoded = Vec::new();
        record.encode(&mut encoded);
        let (again, again_used) = Record::decode(&encoded).expect("an encoded record decodes");
        assert_eq!(again, record, "encode/decode changed the record");
        assert_eq!(again_used, encoded.len());
        rest = &rest[used..];
    }
});
