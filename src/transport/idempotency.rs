//! The `Idempotency-Key` of a delivery: bounded whatever the batch, the
//! same for a retry of the same packets in the same order.

/// The header that names a delivery's packets.
const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// What starts the key of a delivery of several packets; `:` is always
/// percent-encoded in a one-packet key, so the two kinds never meet.
const BATCH_KEY_PREFIX: &str = "sha256:";

/// Writes the `Idempotency-Key: ...` line of a delivery of the packets with `ids`.
pub(super) fn write_header_line<'a>(ids: impl ExactSizeIterator<Item = &'a str>, out: &mut Vec<u8>) {
    out.extend_from_slice(IDEMPOTENCY_HEADER.as_bytes());
    out.extend_from_slice(b": ");
    idempotency_key(ids, out);
    out.extend_from_slice(b"\r\n");
}

/// Writes the `Idempotency-Key` of a delivery of the packets with `ids`:
/// the id, percent-encoded, for one packet (at most three times
/// `limits.max_id_bytes`); for several, `sha256:` and 64 hex digits, the
/// SHA-256 of the ids, each followed by a zero byte (no id holds one). A
/// retry sends the same packets in the same order, so it has the same key.
fn idempotency_key<'a>(mut ids: impl ExactSizeIterator<Item = &'a str>, out: &mut Vec<u8>) {
    if ids.len() == 1 {
        if let Some(id) = ids.next() {
            percent_encode_into(id, out);
        }
        return;
    }
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    for id in ids {
        digest.update(id.as_bytes());
        digest.update(&[0]);
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(BATCH_KEY_PREFIX.as_bytes());
    for byte in digest.finish().as_ref() {
        out.extend_from_slice(&[HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xF)]]);
    }
}

/// Percent-encodes every byte but RFC 3986's unreserved ones, so that an
/// id with a comma, spaces or non-ASCII survives a header intact.
fn percent_encode_into(id: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xF)]]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{idempotency_key, percent_encode_into};

    #[test]
    fn ids_are_percent_encoded_for_the_header() {
        let encode = |id: &str| {
            let mut out = Vec::new();
            percent_encode_into(id, &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(encode("abc-123_x.y~z"), "abc-123_x.y~z");
        assert_eq!(encode("a,b"), "a%2Cb");
        assert_eq!(encode(" lead"), "%20lead");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn a_batch_key_is_a_bounded_hash_of_its_ids_in_order() {
        let key = |ids: &[&str]| {
            let mut out = Vec::new();
            idempotency_key(ids.iter().copied(), &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(key(&["a,b"]), "a%2Cb", "one packet: its id");
        // SHA-256 of "a\0b\0", by sha256sum.
        assert_eq!(
            key(&["a", "b"]),
            "sha256:8fb20ef63ced4145fc2e983ffe597d1dcff39154c3bf21f0fa9dde6a0c50fdc9"
        );
        assert_ne!(key(&["a", "b"]), key(&["b", "a"]), "the order counts");
        assert_ne!(key(&["ab", ""]), key(&["a", "b"]), "ids stay apart");
        let long: Vec<String> = (0..256).map(|i| format!("{i:0>256}")).collect();
        let long: Vec<&str> = long.iter().map(String::as_str).collect();
        assert_eq!(key(&long).len(), 7 + 64);
    }
}
