//! A session's summary (what its card shows that depends on its events), kept up to
//! date event by event while a batch is stored and written once at the batch's end.
//!
//! An event later (by time, then id) than every event of the session changes it in a
//! simple way: counts go up, it is the last event (and the last pageview, and the
//! latest context, when it has them), it is the landing pageview and the source of the
//! user agent and geolocation only when the session had none, and its search term is
//! appended unless already there. An earlier ("late") event can change the order of
//! search terms or which event is first, so then the summary is recomputed: the same
//! fold over every event of the session in time order ([`SessionSummary::recompute`]).
//! That is rare, and gives the same result by definition.

use footpath_protocol::v1::EventKind;

use super::store::{SummaryEvent, SummaryFacts, SummaryRow};
use crate::model::SessionId;

#[derive(Debug, Clone, PartialEq)]
pub struct SessionSummary {
    pub session_id: SessionId,
    pub row: SummaryRow,
    /// A late event joined: recompute from the events.
    pub recompute: bool,
    /// Events the session holds, counted even when `recompute` stops the rest of the
    /// summary from following: what `max_events_per_session` is checked against.
    pub events_held: u64,
}

impl SessionSummary {
    /// The summary as stored before the batch.
    pub fn loaded(session_id: SessionId, row: SummaryRow) -> SessionSummary {
        SessionSummary {
            session_id,
            // A summary that does not point at its latest event is not one to build on.
            recompute: row.event_count > 0 && row.last_event.is_none(),
            events_held: row.event_count,
            row,
        }
    }

    /// Takes in an event just stored in the session. The search terms keep the first
    /// `max_search_terms` distinct ones.
    pub fn add(&mut self, event: SummaryEvent<'_>, max_search_terms: usize) {
        self.events_held += 1;
        if self.recompute {
            return;
        }
        let row = &mut self.row;
        if let Some((time_ms, id)) = &row.last_event {
            if (event.time_ms, event.id) < (*time_ms, id.as_str()) {
                self.recompute = true;
                return;
            }
        }
        row.event_count += 1;
        row.last_event = Some((event.time_ms, event.id.to_owned()));
        if event.kind == EventKind::Pageview {
            row.pageview_count += 1;
            row.last_pageview_id = Some(event.id.to_owned());
            if row.landing_pageview_id.is_none() {
                row.landing_pageview_id = Some(event.id.to_owned());
            }
        }
        if event.has_context {
            row.context_event_id = Some(event.id.to_owned());
        }
        if let Some(term) = event.search_query.filter(|term| !term.is_empty()) {
            if row.search_terms.len() < max_search_terms
                && !row.search_terms.iter().any(|known| known == term)
            {
                row.search_terms.push(term.to_owned());
            }
        }
        if row.user_agent_info.is_none() {
            row.user_agent_info = event.user_agent_info.cloned();
        }
        if row.geolocation.is_none() {
            row.geolocation = event.geolocation.cloned();
        }
    }

    /// The summary of a session's events, given in `(time_ms, id)` order.
    pub fn recompute(events: &[SummaryFacts], max_search_terms: usize) -> SummaryRow {
        let mut summary = SessionSummary::loaded(SessionId::new(""), SummaryRow::default());
        for event in events {
            summary.add(event.as_event(), max_search_terms);
        }
        summary.row
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(id: &str, time_ms: i64, kind: EventKind, term: Option<&str>) -> SummaryFacts {
        SummaryFacts {
            id: id.to_owned(),
            time_ms,
            kind,
            has_context: kind == EventKind::Record,
            search_query: term.map(str::to_owned),
            user_agent_info: None,
            geolocation: None,
        }
    }

    #[test]
    fn events_in_order_build_the_summary_and_a_late_one_asks_for_a_recompute() {
        let events = [
            facts("a", 10, EventKind::Pageview, Some("shoes")),
            facts("b", 20, EventKind::Record, None),
            facts("c", 30, EventKind::Pageview, Some("socks")),
            facts("d", 40, EventKind::Pageview, Some("shoes")),
        ];
        let mut summary = SessionSummary::loaded(SessionId::new("s"), SummaryRow::default());
        for event in &events {
            summary.add(event.as_event(), 1);
        }
        let expected = SummaryRow {
            event_count: 4,
            pageview_count: 3,
            last_event: Some((40, "d".to_owned())),
            last_pageview_id: Some("d".to_owned()),
            landing_pageview_id: Some("a".to_owned()),
            context_event_id: Some("b".to_owned()),
            // One term at most: the first.
            search_terms: vec!["shoes".to_owned()],
            user_agent_info: None,
            geolocation: None,
        };
        assert_eq!(
            (summary.row.clone(), summary.recompute),
            (expected.clone(), false)
        );
        assert_eq!(SessionSummary::recompute(&events, 1), expected);

        summary.add(facts("0", 5, EventKind::Pageview, None).as_event(), 1);
        assert!(summary.recompute);
        assert_eq!(summary.events_held, 5);
    }

    #[test]
    fn a_stored_summary_without_its_latest_event_is_recomputed() {
        let row = SummaryRow {
            event_count: 3,
            ..SummaryRow::default()
        };
        let summary = SessionSummary::loaded(SessionId::new("s"), row);
        assert!(summary.recompute);
        assert_eq!(summary.events_held, 3);
    }
}
