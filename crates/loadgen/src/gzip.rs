//! `--gzip`: request bodies compressed as one gzip member each.

use bytes::Bytes;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// Gzip member header: magic, deflate, no flags, no mtime, no extra flags, unknown OS.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// Gzip with a reused deflate state (allocating one per request would dominate the cost).
pub(crate) struct GzipEncoder {
    deflate: Compress,
}

impl GzipEncoder {
    pub(crate) fn new() -> Self {
        Self {
            deflate: Compress::new(Compression::fast(), false),
        }
    }

    pub(crate) fn encode(&mut self, raw: &[u8]) -> Bytes {
        self.deflate.reset();
        let mut out = Vec::with_capacity(GZIP_HEADER.len() + raw.len() + 64);
        out.extend_from_slice(&GZIP_HEADER);
        loop {
            let consumed = usize::try_from(self.deflate.total_in()).expect("consumed input fits in memory");
            let status = self
                .deflate
                .compress_vec(&raw[consumed..], &mut out, FlushCompress::Finish)
                .expect("deflating an in-memory buffer cannot fail");
            if status == Status::StreamEnd {
                break;
            }
            out.reserve(4096);
        }
        let mut crc = Crc::new();
        crc.update(raw);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        // The gzip trailer stores the input length modulo 2^32.
        out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
        Bytes::from(out)
    }
}
