//! Small text helpers that keep `core::fmt` and generic string code out of the module.

/// `parts` joined (for the tests' texts).
#[cfg(test)]
pub fn cat(parts: &[&str]) -> String {
    let mut text = String::new();
    for part in parts {
        text.push_str(part);
    }
    text
}

/// `text` cut at every `separator` byte (an ASCII one, so the pieces stay UTF-8).
pub fn split(text: &str, separator: u8) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for (i, &b) in text.as_bytes().iter().enumerate() {
        if b == separator {
            pieces.push(&text[start..i]);
            start = i + 1;
        }
    }
    pieces.push(&text[start..]);
    pieces
}

/// A decimal number of at most 9 digits and nothing else.
pub fn digits(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 9 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.bytes().fold(0, |n, b| n * 10 + (b - b'0') as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_empty_pieces() {
        for (text, expected) in [
            ("", vec![""]),
            ("a", vec!["a"]),
            ("a\x01", vec!["a", ""]),
            ("\x01b\x01\x01c", vec!["", "b", "", "c"]),
        ] {
            assert_eq!(split(text, 1), expected, "{text:?}");
        }
    }

    #[test]
    fn digits_are_nine_at_most_and_nothing_else() {
        for (text, expected) in [
            ("0", Some(0)),
            ("120", Some(120)),
            ("999999999", Some(999_999_999)),
            ("1000000000", None),
            ("", None),
            ("12 ", None),
            ("-1", None),
            ("1.5", None),
        ] {
            assert_eq!(digits(text), expected, "{text:?}");
        }
    }
}
