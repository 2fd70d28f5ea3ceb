//! The ingest core: what happens to a validated batch, as plain Rust over the row
//! operations of one transaction ([`IngestTransaction`]).
//!
//! Per batch: dedupe by event id, session planning ([`crate::sessions`]'s rule over
//! the visitor's candidate sessions, read once and followed in memory), the limits of
//! a session, short ids, identity orchestration ([`crate::identity`]'s decisions
//! applied as row writes), segment evaluation, and each touched session's span and
//! summary ([`summary`]) written once at the end.
//!
//! **Architecture Invariant:** no product rule lives in a backend. A backend
//! implements [`IngestTransaction`] (row operations and the serialisation it states)
//! and the read queries of `crate::store::Store`; which session an event joins, how a
//! summary follows its events, what identity writes and how short ids are drawn are
//! decided here, once, for every backend, and so is segment and outcome evaluation
//! ([`segments`]).

#[cfg(test)]
mod memory;
pub mod segments;
pub mod store;
pub mod summary;

use rand::Rng;

pub use segments::IndexCache;
pub use store::IngestTransaction;
use store::{CandidateSession, NewSession, SpanUpdate, SummaryEvent};
use summary::SessionSummary;

use crate::identity::{self, CookieChange, IdentityProof, ResolutionInput, TraitIdentity};
use crate::model::{
    ContactId, DeploymentId, IdentifierKind, IngestOutcome, NewBatch, NewEvent, SessionId,
    StoreError, VisitorId,
};
use crate::sessions::{self, SessionSpan};

/// Short ids are unique among the deployment's sessions active in this period, while
/// the space is not crowded.
const SHORT_ID_UNIQUE_FOR_MS: i64 = 24 * 60 * 60 * 1000;

/// When the last 24 hours use too much of the short-id space (a flood of new sessions),
/// a new id is unique among the sessions active in the last hour instead, and then
/// among the live ones (see [`allocate_short_id`]).
const SHORT_ID_CROWDED_UNIQUE_FOR_MS: i64 = 60 * 60 * 1000;

/// Random draws per uniqueness period before the next, shorter, period is tried.
const SHORT_ID_DRAWS: usize = 32;

/// What one session may accumulate, and the short-id space (see the `Config` fields of
/// the same names, and [`allocate_short_id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Events that would join a session holding this many are refused
    /// (a full session is closed and the next event starts a new one).
    pub max_events_per_session: u64,
    /// The session summary keeps the first this many distinct search terms.
    pub max_search_terms_per_session: usize,
    /// Short ids are drawn from these numbers (inclusive); the Journey API promises 4
    /// to 6 digits. Smaller spaces are for tests.
    pub short_id_space: (u32, u32),
}

impl Default for SessionLimits {
    fn default() -> SessionLimits {
        SessionLimits {
            max_events_per_session: 2000,
            max_search_terms_per_session: 20,
            short_id_space: (100_000, 999_999),
        }
    }
}

/// Stores one batch inside the caller's transaction: dedupe by event id, sessions,
/// identity, segments, session summaries. Returns one outcome per event, in order.
/// The caller commits (or rolls back).
///
/// Work that does not have to be per event is per batch: the visitor's sessions are
/// read once and followed in memory (`VisitorSessions`), and each touched session's
/// span and summary are written once, at the end. `index_cache` is the store
/// instance's index of the segment and outcome definitions.
pub fn ingest_batch<T: IngestTransaction>(
    transaction: &mut T,
    batch: &NewBatch,
    now_ms: i64,
    timeout_ms: i64,
    limits: &SessionLimits,
    index_cache: &IndexCache,
) -> Result<Vec<IngestOutcome>, StoreError> {
    let deployment_id = DeploymentId::new(batch.deployment_id.as_str());
    let visitor_id = VisitorId::new(batch.visitor_id.as_str());
    let mut outcomes = Vec::with_capacity(batch.events.len());
    let mut visitor_sessions =
        VisitorSessions::load(transaction, batch, &deployment_id, &visitor_id, timeout_ms)?;
    let mut summaries: Vec<SessionSummary> = Vec::new();
    let mut segments = segments::BatchEvaluation::new(batch);
    for event in &batch.events {
        if transaction.event_exists(&event.id)? {
            outcomes.push(IngestOutcome::Duplicate);
            continue;
        }
        // The session's summary is read before the event joins it. A session that holds
        // `max_events_per_session` events is closed, and the event starts a new one:
        // whoever fills a visitor's session (a visitor id is all it takes) can neither
        // grow one card without bound nor lock the visitor's own sign-in out of it.
        let mut joined = None;
        if let Some(index) = visitor_sessions.choose(event.time_ms, timeout_ms) {
            let session_id = visitor_sessions.sessions[index].id.clone();
            let summary_index = summary_index(transaction, &mut summaries, &session_id)?;
            if summaries[summary_index].events_held >= limits.max_events_per_session {
                visitor_sessions.close(transaction, &session_id, None)?;
            } else {
                visitor_sessions.join(index, event.time_ms, now_ms, timeout_ms);
                joined = Some((session_id, summary_index));
            }
        }
        let (session_id, summary_index) = match joined {
            Some(joined) => joined,
            None => {
                let session_id = visitor_sessions.create(
                    transaction,
                    (&deployment_id, &visitor_id),
                    event.time_ms,
                    now_ms,
                    timeout_ms,
                    limits.short_id_space,
                )?;
                let summary_index = summary_index(transaction, &mut summaries, &session_id)?;
                (session_id, summary_index)
            }
        };
        // Identity is resolved per event, in order, in this same transaction: a
        // batch that identifies and then logs out must see each step.
        let resolution =
            resolve_identity(transaction, batch, &visitor_id, &session_id, event, now_ms)?;
        if let Some(ended_ms) = resolution.close_session_at {
            // A logout closes its session and sets its end: the span this batch gave
            // the session is written first, and the session leaves the candidates.
            visitor_sessions.close(transaction, &session_id, Some(ended_ms))?;
        }
        transaction.insert_event(batch, &session_id, event, resolution.authenticated)?;
        // Segments and outcomes are evaluated in this same transaction, so that an event
        // is never stored without its assignments, or the other way round.
        // They read the session's summary as it was before this batch.
        segments.evaluate(transaction, index_cache, &session_id, event, now_ms)?;
        summaries[summary_index].add(SummaryEvent::of(event), limits.max_search_terms_per_session);
        outcomes.push(IngestOutcome::Accepted);
    }
    segments.finish(transaction)?;
    visitor_sessions.write_spans(transaction)?;
    for summary in &summaries {
        write_summary(transaction, summary, limits.max_search_terms_per_session)?;
    }
    Ok(outcomes)
}

/// Writes a session's summary: as followed in memory, or recomputed from its events
/// when a late event joined.
fn write_summary<T: IngestTransaction>(
    transaction: &mut T,
    summary: &SessionSummary,
    max_search_terms: usize,
) -> Result<(), StoreError> {
    if summary.recompute {
        let facts = transaction.session_summary_facts(&summary.session_id)?;
        let row = SessionSummary::recompute(&facts, max_search_terms);
        return transaction.write_session_summary(&summary.session_id, &row);
    }
    transaction.write_session_summary(&summary.session_id, &summary.row)
}

/// Recomputes a session's summary from its stored events and writes it. For tests
/// that compare it with the incremental path.
pub fn recompute_summary<T: IngestTransaction>(
    transaction: &mut T,
    session_id: &SessionId,
    max_search_terms: usize,
) -> Result<(), StoreError> {
    let facts = transaction.session_summary_facts(session_id)?;
    let row = SessionSummary::recompute(&facts, max_search_terms);
    transaction.write_session_summary(session_id, &row)
}

/// Where the batch's summary of the session is, read on first use.
fn summary_index<T: IngestTransaction>(
    transaction: &mut T,
    summaries: &mut Vec<SessionSummary>,
    session_id: &SessionId,
) -> Result<usize, StoreError> {
    if let Some(index) = summaries
        .iter()
        .position(|summary| summary.session_id == *session_id)
    {
        return Ok(index);
    }
    let row = transaction.session_summary(session_id)?;
    summaries.push(SessionSummary::loaded(session_id.clone(), row));
    Ok(summaries.len() - 1)
}

/// One of the batch's visitor's sessions, as the batch has changed it so far.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VisitorSession {
    id: SessionId,
    span: SessionSpan,
    ended_ms: Option<i64>,
    /// The first_ms the database holds.
    stored_first_ms: i64,
    /// The span or the end moved and is not written yet.
    changed: bool,
}

/// The sessions of a batch's visitor that any of the batch's events could join, read
/// once per batch and kept up to date in memory as events join them, so that choosing
/// a session is [`sessions::choose_session`] over memory rather than a query and an
/// update per event. Spans are written back by [`VisitorSessions::write_spans`].
///
/// Reading once is enough: an event at `t` can only join a session with
/// `last_ms > t - timeout` and `first_ms < t + timeout` (the rule's bounds). Over the
/// batch's time range that is what [`VisitorSessions::load`] reads, and a session
/// outside it could only come within reach by taking an event of the batch first.
/// Sessions the batch creates are added as they are created; a session that is closed
/// (by a logout, or for being full) is dropped.
#[derive(Debug, Default)]
struct VisitorSessions {
    sessions: Vec<VisitorSession>,
}

impl VisitorSessions {
    fn load<T: IngestTransaction>(
        transaction: &mut T,
        batch: &NewBatch,
        deployment_id: &DeploymentId,
        visitor_id: &VisitorId,
        timeout_ms: i64,
    ) -> Result<VisitorSessions, StoreError> {
        let times = batch.events.iter().map(|event| event.time_ms);
        let (Some(earliest_ms), Some(latest_ms)) = (times.clone().min(), times.max()) else {
            return Ok(VisitorSessions::default());
        };
        let candidates = transaction.candidate_sessions(
            deployment_id,
            visitor_id,
            sessions::candidate_last_ms_after(earliest_ms, timeout_ms),
            latest_ms.saturating_add(timeout_ms),
        )?;
        Ok(VisitorSessions {
            sessions: candidates
                .into_iter()
                .map(|CandidateSession { id, span, ended_ms }| VisitorSession {
                    id,
                    stored_first_ms: span.first_ms,
                    span,
                    ended_ms,
                    changed: false,
                })
                .collect(),
        })
    }

    /// The session an event at `time_ms` joins, per [`sessions::choose_session`], if
    /// any: an index into `sessions`.
    fn choose(&self, time_ms: i64, timeout_ms: i64) -> Option<usize> {
        let spans: Vec<SessionSpan> = self.sessions.iter().map(|session| session.span).collect();
        sessions::choose_session(&spans, time_ms, timeout_ms)
    }

    /// Widens the span of the session at `index` (from [`VisitorSessions::choose`]) to
    /// an event at `time_ms`.
    fn join(&mut self, index: usize, time_ms: i64, now_ms: i64, timeout_ms: i64) {
        let session = &mut self.sessions[index];
        let before = (session.span, session.ended_ms);
        session.span.include(time_ms);
        // A late event can land in a session that the sweep already ended. If it
        // moves the session's last activity, the end moves with it, or the session
        // reopens when the new last activity is within the timeout.
        let last_ms = session.span.last_ms;
        session.ended_ms = session
            .ended_ms
            .and_then(|_| sessions::is_idle(last_ms, now_ms, timeout_ms).then_some(last_ms));
        session.changed |= (session.span, session.ended_ms) != before;
    }

    /// Creates a session for an event at `time_ms` that joins none. Returns its id.
    fn create<T: IngestTransaction>(
        &mut self,
        transaction: &mut T,
        (deployment_id, visitor_id): (&DeploymentId, &VisitorId),
        time_ms: i64,
        now_ms: i64,
        timeout_ms: i64,
        short_id_space: (u32, u32),
    ) -> Result<SessionId, StoreError> {
        let session_id = SessionId::new(uuid::Uuid::now_v7().to_string());
        let short_id = allocate_short_id(
            transaction,
            deployment_id,
            now_ms,
            timeout_ms,
            short_id_space,
        )?;
        transaction.insert_session(&NewSession {
            id: &session_id,
            short_id: &short_id,
            deployment_id,
            visitor_id,
            first_ms: time_ms,
        })?;
        self.sessions.push(VisitorSession {
            id: session_id.clone(),
            span: SessionSpan::starting_at(time_ms),
            ended_ms: None,
            stored_first_ms: time_ms,
            changed: false,
        });
        Ok(session_id)
    }

    /// Closes a session: its span is written, it ends at `ended_ms` (a logout's time)
    /// or at its last activity (a full session), takes no more events, and leaves the
    /// candidates.
    fn close<T: IngestTransaction>(
        &mut self,
        transaction: &mut T,
        session_id: &SessionId,
        ended_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        let Some(position) = self
            .sessions
            .iter()
            .position(|session| session.id == *session_id)
        else {
            return Ok(());
        };
        let mut session = self.sessions.remove(position);
        write_span(transaction, &mut session)?;
        transaction.close_session(session_id, ended_ms.unwrap_or(session.span.last_ms))
    }

    /// Writes every span the batch moved.
    fn write_spans<T: IngestTransaction>(&mut self, transaction: &mut T) -> Result<(), StoreError> {
        for session in &mut self.sessions {
            write_span(transaction, session)?;
        }
        Ok(())
    }
}

fn write_span<T: IngestTransaction>(
    transaction: &mut T,
    session: &mut VisitorSession,
) -> Result<(), StoreError> {
    if session.changed {
        transaction.update_session_span(
            &session.id,
            &SpanUpdate {
                span: session.span,
                ended_ms: session.ended_ms,
                first_moved: session.span.first_ms != session.stored_first_ms,
            },
        )?;
        session.stored_first_ms = session.span.first_ms;
        session.changed = false;
    }
    Ok(())
}

/// A random number of `space` (6 digits unless a test says otherwise) for a new
/// session's short id, which agents ask visitors to read out.
///
/// It is unique among the deployment's sessions active in the last 24 hours. With
/// 900,000 numbers that is easy for any real traffic, but a flood of new sessions (a
/// script with fresh visitor ids) could fill it, and creating a session must never
/// fail. So when `SHORT_ID_DRAWS` random draws find no free number, the id need only
/// be unique among the sessions active in the last hour, then among the live ones (last
/// activity within the session timeout); and if even those fill the space, a random
/// number is used anyway (logged), since an ambiguous short id costs an agent one more
/// question while a refused session loses the visitor's events. The Journey API
/// promises 4 to 6 digits, so the id does not grow instead.
pub fn allocate_short_id<T: IngestTransaction>(
    transaction: &mut T,
    deployment_id: &DeploymentId,
    now_ms: i64,
    timeout_ms: i64,
    space: (u32, u32),
) -> Result<String, StoreError> {
    let mut random = rand::rng();
    let (low, high) = (space.0.min(space.1), space.0.max(space.1));
    let periods = [
        SHORT_ID_UNIQUE_FOR_MS,
        SHORT_ID_CROWDED_UNIQUE_FOR_MS,
        timeout_ms,
    ];
    for (crowded, period_ms) in periods.into_iter().enumerate() {
        let since_ms = now_ms.saturating_sub(period_ms);
        for _ in 0..SHORT_ID_DRAWS {
            let short_id = random.random_range(low..=high).to_string();
            if !transaction.short_id_taken(deployment_id, &short_id, since_ms)? {
                if crowded > 0 {
                    tracing::warn!(
                        deployment = deployment_id.as_str(),
                        unique_for_ms = period_ms,
                        "the short-id space is crowded; new ids are unique over a shorter period"
                    );
                }
                return Ok(short_id);
            }
        }
    }
    tracing::warn!(
        deployment = deployment_id.as_str(),
        "every short id is taken by a live session; reusing one"
    );
    Ok(random.random_range(low..=high).to_string())
}

/// What identity resolution did for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Resolution {
    /// Whether the session is authenticated after the event.
    authenticated: bool,
    /// The event closes its session (a logout), ending it at this time.
    close_session_at: Option<i64>,
}

/// Runs the identity rules ([`identity::decide`]) for one stored-to-be event of the
/// batch and applies the decision as row writes, in the ingest transaction. The
/// session's closing is left to the caller, which also drops it from the candidates.
///
/// Which identifiers count (see [`crate::identity`]): with a valid token, only its
/// signed claims; with an invalid token, none; without a token, the traits, unless the
/// deployment requires verified identity.
fn resolve_identity<T: IngestTransaction>(
    transaction: &mut T,
    batch: &NewBatch,
    visitor_id: &VisitorId,
    session_id: &SessionId,
    event: &NewEvent,
    now_ms: i64,
) -> Result<Resolution, StoreError> {
    let state = transaction.identity_facts(visitor_id, session_id)?;
    let cookie = state.cookie_contact.as_ref().map(ContactId::as_str);
    let (by_email, by_phone) = match &event.identity_proof {
        IdentityProof::Valid(claims) if claims.has_identifiers() => contacts_matching(
            transaction,
            claims.email.as_ref().map(|email| email.normalized()),
            claims.phone.as_ref().map(|phone| phone.e164.as_str()),
        )?,
        IdentityProof::Absent if !batch.require_verified_identity => {
            let traits = TraitIdentity::from_traits(&event.traits);
            if traits.has_identifiers() && cookie.is_none() {
                contacts_matching(
                    transaction,
                    traits.email.as_ref().map(|email| email.normalized()),
                    traits.phone.as_ref().map(|phone| phone.e164.as_str()),
                )?
            } else {
                (Vec::new(), Vec::new())
            }
        }
        _ => (Vec::new(), Vec::new()),
    };
    let claimed = identity::choose_claimed_contact(cookie, &by_email, &by_phone);
    let input = ResolutionInput {
        kind: event.kind,
        cookie_contact: cookie,
        session_link: state
            .session_contact
            .as_ref()
            .map(ContactId::as_str)
            .zip(state.session_link),
        verified: event.identity_proof.verified().is_some(),
        bound_to_visitor: event
            .identity_proof
            .verified()
            .is_some_and(|claims| claims.bound_to_visitor),
        claimed_contact: claimed,
        proof_required: batch.require_verified_identity,
    };
    let decision = identity::decide(input);
    let authenticated = identity::authenticated_after(&input, &decision, state.authenticated);

    match &decision.cookie {
        CookieChange::Keep => {}
        CookieChange::AddTo(contact_id) => {
            transaction.add_cookie(&ContactId::new(contact_id.as_str()), visitor_id, now_ms)?;
        }
        CookieChange::Move { to, .. } => {
            transaction.remove_cookie(visitor_id)?;
            transaction.add_cookie(&ContactId::new(to.as_str()), visitor_id, now_ms)?;
        }
        CookieChange::RemoveFrom(_) => transaction.remove_cookie(visitor_id)?,
    }
    if let Some((contact_id, link)) = &decision.link_session_to {
        transaction.link_session(session_id, &ContactId::new(contact_id.as_str()), *link)?;
    }
    if let (Some(contact_id), Some(claims)) =
        (&decision.apply_claims_to, event.identity_proof.verified())
    {
        let contact_id = ContactId::new(contact_id.as_str());
        if let Some(contact) = transaction.contact(&contact_id)? {
            if let Some(updated) = identity::apply_verified_claims(&contact.fields, claims) {
                transaction.replace_contact_fields(&contact_id, &updated, now_ms)?;
            }
        }
    }
    // Nothing but this writes the session's authenticated state, so the value after
    // the event follows from the one read before it without reading it again.
    if authenticated != state.authenticated {
        transaction.set_session_authenticated(session_id, authenticated)?;
    }
    Ok(Resolution {
        authenticated,
        close_session_at: decision.close_session.then_some(event.time_ms),
    })
}

/// The contacts that an email and a phone point at, each list oldest first.
fn contacts_matching<T: IngestTransaction>(
    transaction: &mut T,
    email: Option<String>,
    phone: Option<&str>,
) -> Result<(Vec<String>, Vec<String>), StoreError> {
    let mut lookup =
        |kind: IdentifierKind, value: Option<&str>| -> Result<Vec<String>, StoreError> {
            Ok(match value {
                Some(value) => transaction
                    .contacts_with_identifier(kind, value)?
                    .into_iter()
                    .map(ContactId::into_string)
                    .collect(),
                None => Vec::new(),
            })
        };
    let by_email = lookup(IdentifierKind::Email, email.as_deref())?;
    let by_phone = lookup(IdentifierKind::Phone, phone)?;
    Ok((by_email, by_phone))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use footpath_protocol::v1::{AttributeValue, EventKind};

    use super::memory::MemoryRows;
    use super::*;
    use crate::identity::LinkKind;

    const MINUTE: i64 = 60_000;
    const TIMEOUT: i64 = 20 * MINUTE;
    const T0: i64 = 1_795_500_000_000;
    const P: EventKind = EventKind::Pageview;
    const L: EventKind = EventKind::Logout;

    fn event(number: usize, kind: EventKind, minute: i64) -> NewEvent {
        NewEvent {
            id: format!("00000000-0000-7000-8000-{number:012}"),
            kind,
            name: "page_viewed".to_owned(),
            time_ms: T0 + minute * MINUTE,
            client_time_ms: T0 + minute * MINUTE,
            received_ms: T0,
            page: None,
            context: None,
            login_id: None,
            attributes: BTreeMap::new(),
            traits: BTreeMap::new(),
            user_agent: None,
            ip_address: None,
            user_agent_info: None,
            geolocation: None,
            referrer_info: None,
            identity_verified: false,
            identity_proof: IdentityProof::Absent,
        }
    }

    fn batch(events: Vec<NewEvent>) -> NewBatch {
        NewBatch {
            deployment_id: "shop".to_owned(),
            visitor_id: "0b7e0c2a-5b9e-4a57-9f3e-000000000001".to_owned(),
            events,
            require_verified_identity: false,
        }
    }

    /// Ingests the batches in order (events numbered from 0 across them) and returns
    /// the rows.
    fn run(batches: &[&[(EventKind, i64)]], limits: &SessionLimits) -> MemoryRows {
        let mut rows = MemoryRows::default();
        let mut number = 0;
        for events in batches {
            let events = events
                .iter()
                .map(|&(kind, minute)| {
                    number += 1;
                    event(number - 1, kind, minute)
                })
                .collect();
            let outcomes = ingest_batch(
                &mut rows,
                &batch(events),
                T0 + 60 * MINUTE,
                TIMEOUT,
                limits,
                &IndexCache::default(),
            )
            .unwrap();
            assert!(outcomes
                .iter()
                .all(|outcome| *outcome == IngestOutcome::Accepted));
        }
        rows
    }

    #[test]
    fn sessions_follow_the_rule_batch_by_batch() {
        type Case<'a> = (&'a str, &'a [&'a [(EventKind, i64)]], &'a [&'a [usize]]);
        let cases: &[Case<'_>] = &[
            (
                "a gap makes two sessions",
                &[&[(P, 0), (P, 10), (P, 40)]],
                &[&[0, 1], &[2]],
            ),
            (
                "the timeout apart starts anew",
                &[&[(P, 0), (P, 20)]],
                &[&[0], &[1]],
            ),
            ("just under it joins", &[&[(P, 0)], &[(P, 19)]], &[&[0, 1]]),
            (
                "a late event joins across batches",
                &[&[(P, 10)], &[(P, -5)]],
                &[&[0, 1]],
            ),
            (
                "arrival order does not matter",
                &[&[(P, 40), (P, 0), (P, 10)]],
                &[&[0], &[1, 2]],
            ),
            (
                "a logout closes its session",
                &[&[(P, 0), (L, 1), (P, 2)]],
                &[&[0, 1], &[2]],
            ),
            (
                "a logout closes it for later batches",
                &[&[(P, 0), (L, 1)], &[(P, 2)]],
                &[&[0, 1], &[2]],
            ),
        ];
        for (name, batches, expected) in cases {
            let rows = run(batches, &SessionLimits::default());
            let expected: Vec<Vec<usize>> =
                expected.iter().map(|numbers| numbers.to_vec()).collect();
            assert_eq!(rows.event_numbers_by_session(), expected, "{name}");
        }
    }

    #[test]
    fn a_full_session_is_closed_and_the_event_starts_another() {
        let limits = SessionLimits {
            max_events_per_session: 2,
            ..SessionLimits::default()
        };
        let rows = run(&[&[(P, 0), (P, 1)], &[(P, 2), (P, 3), (P, 4)]], &limits);
        assert_eq!(
            rows.event_numbers_by_session(),
            [vec![0, 1], vec![2, 3], vec![4]]
        );
        let first = &rows.sessions[0];
        assert!(first.closed);
        assert_eq!(first.ended_ms, Some(T0 + MINUTE));
    }

    #[test]
    fn a_resent_event_is_a_duplicate_and_stored_once() {
        let mut rows = MemoryRows::default();
        // Met by three stored pageviews: the two duplicates must not count.
        rows.define(
            "three-pages",
            crate::segments::DefinitionKind::Segment,
            serde_json::json!({"displayName": "Three pages", "color": "#000000",
                "journey": {"patterns": [{"eventName": "page_viewed", "count": 3}]}}),
        );
        let cache = IndexCache::default();
        let limits = SessionLimits::default();
        let first = batch(vec![event(1, P, 0)]);
        ingest_batch(&mut rows, &first, T0, TIMEOUT, &limits, &cache).unwrap();
        let again = batch(vec![event(1, P, 0), event(2, P, 1), event(2, P, 1)]);
        let outcomes = ingest_batch(&mut rows, &again, T0, TIMEOUT, &limits, &cache).unwrap();
        assert_eq!(
            outcomes,
            [
                IngestOutcome::Duplicate,
                IngestOutcome::Accepted,
                IngestOutcome::Duplicate
            ]
        );
        assert_eq!(rows.events.len(), 2);
        // Segments are evaluated for stored events only.
        assert_eq!(rows.pattern_counts.len(), 1);
        assert_eq!(rows.pattern_counts[0].count, 2);
        assert!(rows.segment_assignments.is_empty());
        assert_eq!(rows.sessions[0].summary.event_count, 2);
    }

    #[test]
    fn unverified_traits_link_the_session_and_write_no_cookie() {
        let mut rows = MemoryRows::default();
        rows.add_contact("ada", "ada@example.com");
        let mut identify = event(1, EventKind::Identify, 0);
        identify.traits.insert(
            "email".to_owned(),
            AttributeValue::String("Ada@Example.com".to_owned()),
        );
        ingest_batch(
            &mut rows,
            &batch(vec![identify]),
            T0,
            TIMEOUT,
            &SessionLimits::default(),
            &IndexCache::default(),
        )
        .unwrap();
        let session = &rows.sessions[0];
        assert_eq!(
            session.contact,
            Some((ContactId::new("ada"), LinkKind::Unverified))
        );
        assert!(!session.authenticated);
        assert_eq!(rows.contacts[0].identifiers.len(), 1, "no cookie added");
    }
}
