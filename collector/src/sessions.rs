//! The session rule, kept free of storage so that it is tested on its own.
//!
//! Sessions belong to one visitor of one deployment. An event at (clock-corrected) time
//! `t` joins an existing session `s` of that visitor when
//! `s.first_ms - timeout < t < s.last_ms + timeout`; the bounds are strict, so with a
//! 20-minute timeout a gap of 19 min 59 s continues a session and a gap of exactly
//! 20 minutes starts a new one. When several sessions qualify (a late event that falls
//! between two sessions), the latest one wins. A late event lands in the session its
//! time belongs to and may move that session's start back.
//!
//! A session ends once `now >= last_ms + timeout`; the store marks it ended in a sweep,
//! so reading a session never has to compute whether it has ended.

/// The time span covered by a session's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSpan {
    /// Time of the session's earliest event; the session's `createdDate`.
    pub first_ms: i64,
    /// Time of the session's latest event.
    pub last_ms: i64,
}

impl SessionSpan {
    /// The span of a session that an event at `time_ms` starts.
    pub fn starting_at(time_ms: i64) -> SessionSpan {
        SessionSpan {
            first_ms: time_ms,
            last_ms: time_ms,
        }
    }

    /// Whether an event at `time_ms` belongs to this session.
    pub fn accepts(&self, time_ms: i64, timeout_ms: i64) -> bool {
        self.first_ms.saturating_sub(timeout_ms) < time_ms
            && time_ms < self.last_ms.saturating_add(timeout_ms)
    }

    /// Widens the span to cover an event that joined the session.
    pub fn include(&mut self, time_ms: i64) {
        self.first_ms = self.first_ms.min(time_ms);
        self.last_ms = self.last_ms.max(time_ms);
    }
}

/// Which of a visitor's sessions an event at `time_ms` joins: the index into `sessions`,
/// or `None` when it starts a new session. "Latest" means the greatest `last_ms`, then
/// the greatest `first_ms`.
pub fn choose_session(sessions: &[SessionSpan], time_ms: i64, timeout_ms: i64) -> Option<usize> {
    sessions
        .iter()
        .enumerate()
        .filter(|(_, span)| span.accepts(time_ms, timeout_ms))
        .max_by_key(|(_, span)| (span.last_ms, span.first_ms))
        .map(|(index, _)| index)
}

/// The window of session `last_ms` values that can possibly accept an event at
/// `time_ms`, as an exclusive lower bound: a store uses it to fetch only candidates.
pub fn candidate_last_ms_after(time_ms: i64, timeout_ms: i64) -> i64 {
    time_ms.saturating_sub(timeout_ms)
}

/// Whether a session whose latest event was at `last_ms` is over at `now_ms`.
pub fn is_idle(last_ms: i64, now_ms: i64, timeout_ms: i64) -> bool {
    now_ms >= last_ms.saturating_add(timeout_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const MINUTE: i64 = 60_000;
    const SECOND: i64 = 1_000;
    const TIMEOUT: i64 = 20 * MINUTE;
    /// An arbitrary "injected" start time, so that nothing depends on the real clock.
    const T0: i64 = 1_795_500_000_000;

    /// Replays `(visitor, time)` events in arrival order through the rule, the way the
    /// store does, and returns for each event the number of the session it landed in
    /// (numbered per visitor in order of creation) plus every visitor's final spans.
    fn replay(events: &[(&str, i64)]) -> (Vec<usize>, BTreeMap<String, Vec<SessionSpan>>) {
        let mut sessions: BTreeMap<String, Vec<SessionSpan>> = BTreeMap::new();
        let mut assigned = Vec::new();
        for &(visitor, time_ms) in events {
            let spans = sessions.entry(visitor.to_owned()).or_default();
            let index = match choose_session(spans, time_ms, TIMEOUT) {
                Some(index) => {
                    spans[index].include(time_ms);
                    index
                }
                None => {
                    spans.push(SessionSpan::starting_at(time_ms));
                    spans.len() - 1
                }
            };
            assigned.push(index);
        }
        (assigned, sessions)
    }

    struct Case {
        name: &'static str,
        /// `(visitor, offset from T0)` in arrival order.
        events: &'static [(&'static str, i64)],
        /// Session number of each event, per visitor.
        expected_sessions: &'static [usize],
        /// Final `(first, last)` offsets of visitor "a"'s sessions.
        expected_spans_of_a: &'static [(i64, i64)],
    }

    #[test]
    fn session_rule_table() {
        let cases = [
            Case {
                name: "gap of 19 min 59 s continues",
                events: &[("a", 0), ("a", 19 * MINUTE + 59 * SECOND)],
                expected_sessions: &[0, 0],
                expected_spans_of_a: &[(0, 19 * MINUTE + 59 * SECOND)],
            },
            Case {
                name: "gap of exactly 20 min starts a new session",
                events: &[("a", 0), ("a", 20 * MINUTE)],
                expected_sessions: &[0, 1],
                expected_spans_of_a: &[(0, 0), (20 * MINUTE, 20 * MINUTE)],
            },
            Case {
                name: "activity keeps extending one session",
                events: &[
                    ("a", 0),
                    ("a", 15 * MINUTE),
                    ("a", 30 * MINUTE),
                    ("a", 45 * MINUTE),
                ],
                expected_sessions: &[0, 0, 0, 0],
                expected_spans_of_a: &[(0, 45 * MINUTE)],
            },
            Case {
                name: "late event lands in the earlier session",
                events: &[("a", 0), ("a", 60 * MINUTE), ("a", 5 * MINUTE)],
                expected_sessions: &[0, 1, 0],
                expected_spans_of_a: &[(0, 5 * MINUTE), (60 * MINUTE, 60 * MINUTE)],
            },
            Case {
                name: "late event before the first event, within the timeout, moves first_ms",
                events: &[("a", 30 * MINUTE), ("a", 35 * MINUTE), ("a", 11 * MINUTE)],
                expected_sessions: &[0, 0, 0],
                expected_spans_of_a: &[(11 * MINUTE, 35 * MINUTE)],
            },
            Case {
                name: "late event exactly one timeout before the first event starts a new one",
                events: &[("a", 30 * MINUTE), ("a", 10 * MINUTE)],
                expected_sessions: &[0, 1],
                expected_spans_of_a: &[(30 * MINUTE, 30 * MINUTE), (10 * MINUTE, 10 * MINUTE)],
            },
            Case {
                name: "event between two sessions joins the latest",
                events: &[("a", 0), ("a", 30 * MINUTE), ("a", 15 * MINUTE)],
                expected_sessions: &[0, 1, 1],
                expected_spans_of_a: &[(0, 0), (15 * MINUTE, 30 * MINUTE)],
            },
            Case {
                name: "two visitors never share a session",
                events: &[
                    ("a", 0),
                    ("b", SECOND),
                    ("a", 2 * SECOND),
                    ("b", 3 * SECOND),
                ],
                expected_sessions: &[0, 0, 0, 0],
                expected_spans_of_a: &[(0, 2 * SECOND)],
            },
        ];
        for case in cases {
            let events: Vec<(&str, i64)> = case
                .events
                .iter()
                .map(|&(visitor, offset)| (visitor, T0 + offset))
                .collect();
            let (assigned, sessions) = replay(&events);
            assert_eq!(assigned, case.expected_sessions, "{}", case.name);
            let spans_of_a: Vec<(i64, i64)> = sessions["a"]
                .iter()
                .map(|span| (span.first_ms - T0, span.last_ms - T0))
                .collect();
            assert_eq!(spans_of_a, case.expected_spans_of_a, "{}", case.name);
        }
    }

    #[test]
    fn two_visitors_have_separate_spans() {
        let (_, sessions) = replay(&[("a", T0), ("b", T0 + SECOND)]);
        assert_eq!(sessions["a"], vec![SessionSpan::starting_at(T0)]);
        assert_eq!(sessions["b"], vec![SessionSpan::starting_at(T0 + SECOND)]);
    }

    #[test]
    fn idle_exactly_at_the_timeout() {
        let check = |now_offset: i64, expected: bool| {
            assert_eq!(
                is_idle(T0, T0 + now_offset, TIMEOUT),
                expected,
                "{now_offset}"
            );
        };
        check(0, false);
        check(TIMEOUT - 1, false);
        check(TIMEOUT, true);
        check(TIMEOUT + 1, true);
    }
}
