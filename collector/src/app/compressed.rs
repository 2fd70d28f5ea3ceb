//! gzip-compressed batch bodies, and their limits.
//!
//! The SDK compresses what it sends where the browser has `CompressionStream`: events
//! of one page repeat the same page facts and context, so a batch shrinks many times.
//! A body is gzip when either
//! - the request says `Content-Encoding: gzip` (any sender that can set headers), or
//! - it says nothing (or `identity`) and the body starts with gzip's magic bytes
//!   `1f 8b 08` (the SDK's `fetch` and `sendBeacon` both send this way: a beacon cannot
//!   set headers, and a `fetch` with `Content-Encoding` would need a CORS preflight).
//!   No JSON text starts with the byte `1f`, so a plain batch is never taken for gzip.
//!
//! `max_body_bytes` bounds the body as sent. What it inflates to is bounded too, so
//! that a small body cannot make the collector allocate without end (a decompression
//! bomb): at most [`MAX_INFLATED_FACTOR`] × `max_body_bytes` in all, and nothing over
//! `max_body_bytes` unless it is at most [`MAX_RATIO`] times the compressed size. A
//! body over either is refused with 413 after at most one byte past the limit has been
//! inflated.

use std::io::Read;

use axum::body::Bytes;
use axum::http::{header, HeaderMap};

use crate::error::ApiError;

/// The inflated body may be this many times `max_body_bytes` (1 MiB by default).
pub const MAX_INFLATED_FACTOR: usize = 16;
/// Past `max_body_bytes`, the inflated body may be at most this many times the body
/// as sent. The SDK's batches of one page's events compress 10 to 40 times.
pub const MAX_RATIO: usize = 100;

const GZIP_MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];

/// How the request says its body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Declared {
    /// No `Content-Encoding`, or `identity`: plain, or gzip by its magic bytes.
    Plain,
    Gzip,
}

/// `Content-Encoding`: absent, `identity` or `gzip`, given once; anything else is
/// refused (415) rather than read as something it is not.
pub(super) fn declared_encoding(headers: &HeaderMap) -> Result<Declared, ApiError> {
    let mut values = headers.get_all(header::CONTENT_ENCODING).iter();
    let declared = match values.next() {
        None => Declared::Plain,
        Some(value) if value.as_bytes().eq_ignore_ascii_case(b"identity") => Declared::Plain,
        Some(value) if value.as_bytes().eq_ignore_ascii_case(b"gzip") => Declared::Gzip,
        Some(_) => {
            return Err(ApiError::UnsupportedMediaType(
                "Content-Encoding must be gzip or identity".to_owned(),
            ))
        }
    };
    if values.next().is_some() {
        return Err(ApiError::UnsupportedMediaType(
            "Content-Encoding must be given once".to_owned(),
        ));
    }
    Ok(declared)
}

/// The body as the batch's JSON text: inflated when it is gzip (see the module's
/// documentation), as it came otherwise.
pub(super) fn decode_body(
    body: Bytes,
    declared: Declared,
    max_body_bytes: usize,
) -> Result<Bytes, ApiError> {
    if declared == Declared::Plain && !body.starts_with(&GZIP_MAGIC) {
        return Ok(body);
    }
    let limit = inflated_limit(body.len(), max_body_bytes);
    let mut inflated = Vec::with_capacity(body.len().saturating_mul(8).min(limit));
    // One byte more than allowed tells "at the limit" from "over it".
    let read = flate2::read::GzDecoder::new(&body[..])
        .take(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut inflated);
    match read {
        Ok(_) if inflated.len() > limit => Err(ApiError::PayloadTooLarge(limit)),
        Ok(_) => Ok(Bytes::from(inflated)),
        Err(error) => Err(ApiError::BadRequest(format!(
            "the body is not valid gzip: {error}"
        ))),
    }
}

/// How many bytes a gzip body of `compressed` bytes may inflate to.
fn inflated_limit(compressed: usize, max_body_bytes: usize) -> usize {
    let by_ratio = compressed.saturating_mul(MAX_RATIO).max(max_body_bytes);
    by_ratio.min(max_body_bytes.saturating_mul(MAX_INFLATED_FACTOR))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use axum::http::HeaderValue;

    use super::*;

    const MAX_BODY: usize = 65_536;

    fn gzip(data: &[u8]) -> Bytes {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(data).unwrap();
        Bytes::from(encoder.finish().unwrap())
    }

    fn status(result: Result<Bytes, ApiError>) -> Result<Bytes, u16> {
        use axum::response::IntoResponse;
        result.map_err(|error| error.into_response().status().as_u16())
    }

    /// What is sent, how it is declared, and the body or status expected.
    type Case<'a> = (&'a str, Bytes, Declared, Result<&'a [u8], u16>);

    #[test]
    fn encodings_are_read_from_the_header_or_the_magic_bytes() {
        let json = br#"{"v":1,"events":[]}"#;
        let cases: [Case; 5] = [
            (
                "plain JSON",
                Bytes::from_static(json),
                Declared::Plain,
                Ok(json),
            ),
            ("gzip by magic bytes", gzip(json), Declared::Plain, Ok(json)),
            ("gzip by header", gzip(json), Declared::Gzip, Ok(json)),
            (
                "plain JSON said to be gzip",
                Bytes::from_static(json),
                Declared::Gzip,
                Err(400),
            ),
            (
                "magic bytes, then garbage",
                Bytes::from_static(b"\x1f\x8b\x08garbage"),
                Declared::Plain,
                Err(400),
            ),
        ];
        for (what, body, declared, expected) in cases {
            let decoded = status(decode_body(body, declared, MAX_BODY));
            assert_eq!(decoded.as_deref().map_err(|s| *s), expected, "{what}");
        }
    }

    #[test]
    fn content_encoding_other_than_gzip_or_identity_is_refused() {
        let check = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(
                    header::CONTENT_ENCODING,
                    HeaderValue::from_str(value).unwrap(),
                );
            }
            declared_encoding(&headers).ok()
        };
        assert_eq!(check(&[]), Some(Declared::Plain));
        assert_eq!(check(&["identity"]), Some(Declared::Plain));
        assert_eq!(check(&["GZIP"]), Some(Declared::Gzip));
        assert_eq!(check(&["br"]), None);
        assert_eq!(check(&["deflate"]), None);
        assert_eq!(check(&["gzip", "gzip"]), None);
    }

    #[test]
    fn a_decompression_bomb_is_refused() {
        // 32 MiB of zeros fit in about 32 KiB of gzip: far past both limits.
        let bomb = gzip(&vec![0u8; 32 << 20]);
        assert!(bomb.len() <= MAX_BODY, "{} bytes", bomb.len());
        assert_eq!(
            status(decode_body(bomb, Declared::Plain, MAX_BODY)),
            Err(413)
        );
        // A small body past `max_body_bytes` by a ratio over 100 is refused, even though
        // it is under the total cap.
        let small = gzip(&vec![b' '; 200_000]);
        assert!(small.len() * MAX_RATIO < 200_000, "{} bytes", small.len());
        assert_eq!(
            status(decode_body(small, Declared::Gzip, MAX_BODY)),
            Err(413)
        );
    }

    #[test]
    fn inflating_up_to_the_limits_is_accepted() {
        // Anything that would be accepted uncompressed is accepted compressed, however
        // well it compresses.
        let at_max_body = vec![b'a'; MAX_BODY];
        let decoded = decode_body(gzip(&at_max_body), Declared::Plain, MAX_BODY).unwrap();
        assert_eq!(decoded.len(), MAX_BODY);
        let one_more = vec![b'a'; MAX_BODY + 1];
        assert!(decode_body(gzip(&one_more), Declared::Plain, MAX_BODY).is_err());
        // And more than that, at a ratio a batch really has.
        assert_eq!(inflated_limit(1_000, MAX_BODY), 100_000);
        assert_eq!(inflated_limit(60_000, MAX_BODY), 16 * MAX_BODY);
    }
}
