//! UUIDs without the `uuid` crate, whose formatting goes through `core::fmt`.

// `push_str(",")` rather than `push(',')`: pushing a `char` brings in UTF-8
// encoding code that the SDK's wasm module would pay for.
#![allow(clippy::single_char_add_str)]

const HEX: &str = "0123456789abcdef";

/// A random UUID (version 4) from 16 random bytes: the visitor id and session ids.
pub fn uuid_v4(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    format_uuid(&bytes)
}

/// A time-ordered UUID (version 7): 48 bits of milliseconds, then random bits. Event
/// ids sort by time, which keeps the collector's unique index append-mostly.
pub fn uuid_v7(unix_ms: i64, random: [u8; 10]) -> String {
    let ms = (unix_ms.max(0) as u64).to_be_bytes();
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms[2..]);
    bytes[6..].copy_from_slice(&random);
    bytes[6] = (bytes[6] & 0x0f) | 0x70;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    format_uuid(&bytes)
}

fn format_uuid(bytes: &[u8; 16]) -> String {
    let mut out = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push_str("-");
        }
        // `push_str`, not `push(char)`, which would bring UTF-8 encoding along.
        for digit in [(b >> 4) as usize, (b & 0xf) as usize] {
            out.push_str(&HEX[digit..digit + 1]);
        }
    }
    out
}

/// True for the textual form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (lowercase or not).
pub fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v7_puts_milliseconds_first_and_sets_version_and_variant() {
        let id = uuid_v7(0x0123_4567_89ab, [0xff; 10]);
        assert_eq!(id, "01234567-89ab-7fff-bfff-ffffffffffff");
        assert!(is_uuid(&id));
    }

    #[test]
    fn v7_ids_sort_by_time() {
        let earlier = uuid_v7(1_764_000_000_000, [0xff; 10]);
        let later = uuid_v7(1_764_000_000_001, [0x00; 10]);
        assert!(earlier < later, "{earlier} {later}");
    }

    #[test]
    fn v4_sets_version_and_variant() {
        let id = uuid_v4([0u8; 16]);
        assert_eq!(id, "00000000-0000-4000-8000-000000000000");
        assert!(is_uuid(&uuid_v4([0xab; 16])));
    }

    #[test]
    fn is_uuid_rejects_other_shapes() {
        for bad in [
            "",
            "not-a-uuid",
            "01234567-89ab-7fff-bfff-ffffffffffffff",
            "01234567x89ab-7fff-bfff-ffffffffffff",
            "0123456g-89ab-7fff-bfff-ffffffffffff",
        ] {
            assert!(!is_uuid(bad), "{bad}");
        }
    }
}
