//! The visitor's current session as every tab of the site sees it.
//!
//! All tabs read and write one `localStorage` entry, `<session id>|<last activity ms>`,
//! so that a visitor with three tabs open is in one session, and activity in any tab
//! keeps it alive. Reading a value another tab wrote is always safe: a torn or foreign
//! value parses as "no session" and a new one begins.

// `push_str(",")` rather than `push(',')`: pushing a `char` brings in UTF-8
// encoding code that the SDK's wasm module would pay for.
#![allow(clippy::single_char_add_str)]

use footpath_protocol::v1::push_i64;

use super::ids::is_uuid;

/// The `localStorage` key of the shared session record.
pub const SESSION_KEY: &str = "_footpath_session";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: String,
    pub last_activity_ms: i64,
}

impl SessionRecord {
    pub fn parse(text: &str) -> Option<SessionRecord> {
        // By byte: `split_once('|')` would bring in the `char` searcher.
        let bar = text.bytes().position(|b| b == b'|')?;
        let (id, last) = (&text[..bar], &text[bar + 1..]);
        // Only a UUID, as the SDK writes: the id goes into events as it is, and a
        // value another script wrote (`x"|…`) must not break their JSON.
        if !is_uuid(id) {
            return None;
        }
        let last_activity_ms = parse_i64(last)?;
        Some(SessionRecord {
            id: id.to_owned(),
            last_activity_ms,
        })
    }

    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(self.id.len() + 16);
        out.push_str(&self.id);
        out.push_str("|");
        push_i64(&mut out, self.last_activity_ms);
        out
    }

    /// Whether activity at `now_ms` still belongs to this session: strictly less than
    /// the timeout since the last activity, the same rule as the collector's.
    pub fn is_live_at(&self, now_ms: i64, timeout_ms: i64) -> bool {
        now_ms - self.last_activity_ms < timeout_ms
    }
}

fn parse_i64(text: &str) -> Option<i64> {
    if text.is_empty() || text.len() > 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        text.bytes()
            .fold(0i64, |acc, b| acc * 10 + (b - b'0') as i64),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "5d3c1b2a-0000-4000-8000-00000000beef";

    #[test]
    fn round_trips_through_text() {
        let record = SessionRecord {
            id: ID.to_owned(),
            last_activity_ms: 1_764_000_000_123,
        };
        assert_eq!(record.to_text(), format!("{ID}|1764000000123"));
        assert_eq!(SessionRecord::parse(&record.to_text()), Some(record));
    }

    #[test]
    fn foreign_or_torn_values_read_as_no_session() {
        for bad in [
            "".to_owned(),
            ID.to_owned(),
            "|123".to_owned(),
            format!("{ID}|"),
            format!("{ID}|12x"),
            format!("{ID}|-5"),
            format!("{ID}|9999999999999999999"),
            // Not an id the SDK wrote: it would go into events as it is.
            "abc|123".to_owned(),
            "x\"|1764000000000".to_owned(),
        ] {
            assert_eq!(SessionRecord::parse(&bad), None, "{bad}");
        }
    }

    #[test]
    fn liveness_is_strict_at_the_timeout() {
        let record = SessionRecord {
            id: "s".to_owned(),
            last_activity_ms: 0,
        };
        let timeout = 20 * 60 * 1000;
        assert!(
            record.is_live_at(timeout - 1000, timeout),
            "19 min 59 s continues"
        );
        assert!(
            !record.is_live_at(timeout, timeout),
            "20 min is a new session"
        );
    }
}
