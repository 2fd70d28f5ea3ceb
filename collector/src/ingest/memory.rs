//! An in-memory [`IngestTransaction`] for the core's own tests: the row operations
//! over vectors, with no rule of their own, so that a table of batches shows what the
//! core decides without a database. (The store contract suite in `tests/it/contract.rs`
//! checks the real backends.)

use std::collections::BTreeMap;

use footpath_protocol::v1::Page;

use super::store::{
    AssignmentExpiry, CandidateSession, CustomerAssignment, IdentityFacts, LandingPage, NewSession,
    PatternCount, SessionIdentity, SessionMatches, SpanUpdate, StoredVisitFacts, SummaryFacts,
    SummaryRow,
};
use super::IngestTransaction;
use crate::contacts::ContactFields;
use crate::identity::LinkKind;
use crate::model::{
    ContactId, DeploymentId, IdentifierKind, NewBatch, NewEvent, SessionId, StoreError,
    StoredContact, StoredIdentifier, VisitorId,
};
use crate::segments::{
    DefinitionKind, Details, OutcomeAchievement, SegmentAssignment, StoredDefinition,
};
use crate::sessions::SessionSpan;

#[derive(Debug, Clone, PartialEq)]
pub(super) struct MemorySession {
    pub id: SessionId,
    pub short_id: String,
    pub deployment_id: DeploymentId,
    pub visitor_id: VisitorId,
    pub span: SessionSpan,
    pub ended_ms: Option<i64>,
    pub closed: bool,
    pub summary: SummaryRow,
    pub contact: Option<(ContactId, LinkKind)>,
    pub authenticated: bool,
}

#[derive(Debug, Default)]
pub(super) struct MemoryRows {
    pub sessions: Vec<MemorySession>,
    /// Stored events in insertion order, with their session.
    pub events: Vec<(SessionId, NewEvent)>,
    pub contacts: Vec<StoredContact>,
    /// The definitions and their generation (see [`MemoryRows::define`]).
    pub definitions: Vec<StoredDefinition>,
    pub generation: i64,
    pub segment_assignments: Vec<(SessionId, SegmentAssignment)>,
    pub outcome_achievements: Vec<(SessionId, OutcomeAchievement)>,
    pub customer_assignments: Vec<CustomerAssignment>,
    pub pattern_counts: Vec<PatternCount>,
    /// Session id → the fingerprint of its last visit-level evaluation.
    pub fingerprints: BTreeMap<String, String>,
    /// The contacts whose customer lock was asked for, in order.
    pub customer_locks: Vec<ContactId>,
    /// How often evaluation read and wrote, so that a test can hold it to its
    /// per-batch cost.
    pub reads: SegmentReads,
    pub writes: SegmentWrites,
}

/// Calls of the evaluation's reads.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct SegmentReads {
    pub generation: usize,
    pub definitions: usize,
    pub visit_facts: usize,
    pub matches: usize,
    pub counts: usize,
}

/// Calls of the evaluation's multi-row writes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct SegmentWrites {
    pub segments: usize,
    pub outcomes: usize,
    pub counts: usize,
}

impl MemoryRows {
    fn session(&mut self, session_id: &SessionId) -> Result<&mut MemorySession, StoreError> {
        self.sessions
            .iter_mut()
            .find(|session| session.id == *session_id)
            .ok_or_else(|| StoreError::Corrupt(format!("no session {session_id}")))
    }

    /// Each session's events by position in `events`, sessions in creation order.
    pub fn event_numbers_by_session(&self) -> Vec<Vec<usize>> {
        self.sessions
            .iter()
            .map(|session| {
                self.events
                    .iter()
                    .enumerate()
                    .filter(|(_, (id, _))| *id == session.id)
                    .map(|(number, _)| number)
                    .collect()
            })
            .collect()
    }

    /// Stores a definition (as a store's definition API would) and moves the
    /// generation.
    pub fn define(&mut self, id: &str, kind: DefinitionKind, json: serde_json::Value) {
        let definition = crate::segments::definition::parse(kind, &json).unwrap();
        match self.definitions.iter_mut().find(|stored| stored.id == id) {
            Some(stored) => {
                stored.definition = definition;
                stored.version += 1;
            }
            None => self.definitions.push(StoredDefinition {
                id: id.to_owned(),
                version: 1,
                definition,
                created_ms: 0,
                modified_ms: 0,
            }),
        }
        self.generation += 1;
    }

    pub fn add_contact(&mut self, id: &str, email: &str) {
        self.contacts.push(StoredContact {
            id: id.to_owned(),
            contact_type: "Curated".to_owned(),
            fields: ContactFields {
                work_email: Some(email.to_owned()),
                ..ContactFields::default()
            },
            identifiers: vec![StoredIdentifier {
                kind: IdentifierKind::Email,
                value: email.to_ascii_lowercase(),
                created_ms: 0,
            }],
            create_ms: 0,
            modify_ms: 0,
        });
    }
}

impl IngestTransaction for MemoryRows {
    fn event_exists(&mut self, event_id: &str) -> Result<bool, StoreError> {
        Ok(self.events.iter().any(|(_, event)| event.id == event_id))
    }

    fn candidate_sessions(
        &mut self,
        deployment_id: &DeploymentId,
        visitor_id: &VisitorId,
        last_after_ms: i64,
        first_before_ms: i64,
    ) -> Result<Vec<CandidateSession>, StoreError> {
        Ok(self
            .sessions
            .iter()
            .filter(|session| {
                session.deployment_id == *deployment_id
                    && session.visitor_id == *visitor_id
                    && session.span.last_ms > last_after_ms
                    && session.span.first_ms < first_before_ms
                    && !session.closed
            })
            .map(|session| CandidateSession {
                id: session.id.clone(),
                span: session.span,
                ended_ms: session.ended_ms,
            })
            .collect())
    }

    fn short_id_taken(
        &mut self,
        deployment_id: &DeploymentId,
        short_id: &str,
        active_since_ms: i64,
    ) -> Result<bool, StoreError> {
        Ok(self.sessions.iter().any(|session| {
            session.deployment_id == *deployment_id
                && session.short_id == short_id
                && session.span.last_ms >= active_since_ms
        }))
    }

    fn insert_session(&mut self, session: &NewSession<'_>) -> Result<(), StoreError> {
        self.sessions.push(MemorySession {
            id: session.id.clone(),
            short_id: session.short_id.to_owned(),
            deployment_id: session.deployment_id.clone(),
            visitor_id: session.visitor_id.clone(),
            span: SessionSpan::starting_at(session.first_ms),
            ended_ms: None,
            closed: false,
            summary: SummaryRow::default(),
            contact: None,
            authenticated: false,
        });
        Ok(())
    }

    fn update_session_span(
        &mut self,
        session_id: &SessionId,
        update: &SpanUpdate,
    ) -> Result<(), StoreError> {
        let session = self.session(session_id)?;
        session.span = update.span;
        session.ended_ms = update.ended_ms;
        Ok(())
    }

    fn close_session(&mut self, session_id: &SessionId, ended_ms: i64) -> Result<(), StoreError> {
        let session = self.session(session_id)?;
        session.closed = true;
        session.ended_ms = Some(ended_ms);
        Ok(())
    }

    fn session_summary(&mut self, session_id: &SessionId) -> Result<SummaryRow, StoreError> {
        Ok(self.session(session_id)?.summary.clone())
    }

    fn write_session_summary(
        &mut self,
        session_id: &SessionId,
        summary: &SummaryRow,
    ) -> Result<(), StoreError> {
        self.session(session_id)?.summary = summary.clone();
        Ok(())
    }

    fn session_summary_facts(
        &mut self,
        session_id: &SessionId,
    ) -> Result<Vec<SummaryFacts>, StoreError> {
        let mut events: Vec<&NewEvent> = self
            .events
            .iter()
            .filter(|(id, _)| id == session_id)
            .map(|(_, event)| event)
            .collect();
        events.sort_by(|a, b| (a.time_ms, &a.id).cmp(&(b.time_ms, &b.id)));
        Ok(events
            .into_iter()
            .map(|event| SummaryFacts {
                id: event.id.clone(),
                time_ms: event.time_ms,
                kind: event.kind,
                has_context: event.context.is_some(),
                search_query: event
                    .page
                    .as_ref()
                    .and_then(|page| page.search_query.clone()),
                user_agent_info: event.user_agent_info.clone(),
                geolocation: event.geolocation.clone(),
            })
            .collect())
    }

    fn insert_event(
        &mut self,
        _batch: &NewBatch,
        session_id: &SessionId,
        event: &NewEvent,
        _authenticated: bool,
    ) -> Result<(), StoreError> {
        self.events.push((session_id.clone(), event.clone()));
        Ok(())
    }

    fn identity_facts(
        &mut self,
        visitor_id: &VisitorId,
        session_id: &SessionId,
    ) -> Result<IdentityFacts, StoreError> {
        let cookie_contact = self
            .contacts
            .iter()
            .find(|contact| {
                contact.identifiers.iter().any(|identifier| {
                    identifier.kind == IdentifierKind::Cookie
                        && identifier.value == visitor_id.as_str()
                })
            })
            .map(|contact| ContactId::new(contact.id.as_str()));
        let session = self.session(session_id)?;
        Ok(IdentityFacts {
            cookie_contact,
            authenticated: session.authenticated,
            session_contact: session.contact.as_ref().map(|(id, _)| id.clone()),
            session_link: session.contact.as_ref().map(|(_, link)| *link),
        })
    }

    fn contacts_with_identifier(
        &mut self,
        kind: IdentifierKind,
        value: &str,
    ) -> Result<Vec<ContactId>, StoreError> {
        Ok(self
            .contacts
            .iter()
            .filter(|contact| {
                contact
                    .identifiers
                    .iter()
                    .any(|identifier| identifier.kind == kind && identifier.value == value)
            })
            .map(|contact| ContactId::new(contact.id.as_str()))
            .collect())
    }

    fn remove_cookie(&mut self, visitor_id: &VisitorId) -> Result<(), StoreError> {
        for contact in &mut self.contacts {
            contact.identifiers.retain(|identifier| {
                identifier.kind != IdentifierKind::Cookie || identifier.value != visitor_id.as_str()
            });
        }
        Ok(())
    }

    fn add_cookie(
        &mut self,
        contact_id: &ContactId,
        visitor_id: &VisitorId,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        if let Some(contact) = self
            .contacts
            .iter_mut()
            .find(|contact| contact.id == contact_id.as_str())
        {
            contact.identifiers.push(StoredIdentifier {
                kind: IdentifierKind::Cookie,
                value: visitor_id.as_str().to_owned(),
                created_ms: now_ms,
            });
        }
        Ok(())
    }

    fn link_session(
        &mut self,
        session_id: &SessionId,
        contact_id: &ContactId,
        link: LinkKind,
    ) -> Result<(), StoreError> {
        self.session(session_id)?.contact = Some((contact_id.clone(), link));
        Ok(())
    }

    fn set_session_authenticated(
        &mut self,
        session_id: &SessionId,
        authenticated: bool,
    ) -> Result<(), StoreError> {
        self.session(session_id)?.authenticated = authenticated;
        Ok(())
    }

    fn contact(&mut self, contact_id: &ContactId) -> Result<Option<StoredContact>, StoreError> {
        Ok(self
            .contacts
            .iter()
            .find(|contact| contact.id == contact_id.as_str())
            .cloned())
    }

    fn replace_contact_fields(
        &mut self,
        contact_id: &ContactId,
        fields: &ContactFields,
        _now_ms: i64,
    ) -> Result<(), StoreError> {
        if let Some(contact) = self
            .contacts
            .iter_mut()
            .find(|contact| contact.id == contact_id.as_str())
        {
            contact.fields = fields.clone();
        }
        Ok(())
    }

    fn definitions_generation(&mut self) -> Result<i64, StoreError> {
        self.reads.generation += 1;
        Ok(self.generation)
    }

    fn active_definitions(&mut self) -> Result<Vec<StoredDefinition>, StoreError> {
        self.reads.definitions += 1;
        let of_kind = |segments: bool| {
            self.definitions
                .iter()
                .filter(move |stored| {
                    matches!(stored.definition.details, Details::Segment { .. }) == segments
                })
                .cloned()
        };
        Ok(of_kind(true).chain(of_kind(false)).collect())
    }

    fn session_identity(&mut self, session_id: &SessionId) -> Result<SessionIdentity, StoreError> {
        let session = self.session(session_id)?;
        Ok(SessionIdentity {
            contact_id: session.contact.as_ref().map(|(id, _)| id.clone()),
            authenticated: session.authenticated,
        })
    }

    fn session_visit_facts(
        &mut self,
        session_id: &SessionId,
    ) -> Result<StoredVisitFacts, StoreError> {
        self.reads.visit_facts += 1;
        let summary = self.session(session_id)?.summary.clone();
        let event = |id: &Option<String>| {
            id.as_ref().and_then(|id| {
                self.events
                    .iter()
                    .map(|(_, event)| event)
                    .find(|event| event.id == *id)
            })
        };
        let landing = event(&summary.landing_pageview_id).and_then(|event| {
            let page = event.page.as_ref()?;
            Some(LandingPage {
                page: Page {
                    url: page.url.clone(),
                    referrer: page.referrer.clone(),
                    campaign: page.campaign.clone(),
                    ..Page::default()
                },
                referrer: event.referrer_info.clone(),
                time_ms: event.time_ms,
            })
        });
        Ok(StoredVisitFacts {
            user_agent: summary.user_agent_info.clone(),
            geolocation: summary.geolocation.clone(),
            context: event(&summary.context_event_id).and_then(|event| event.context.clone()),
            landing,
        })
    }

    fn session_matches(&mut self, session_id: &SessionId) -> Result<SessionMatches, StoreError> {
        self.reads.matches += 1;
        Ok(SessionMatches {
            segment_ids: self
                .segment_assignments
                .iter()
                .filter(|(id, _)| id == session_id)
                .map(|(_, assignment)| assignment.segment_id.clone())
                .collect(),
            outcome_ids: self
                .outcome_achievements
                .iter()
                .filter(|(id, _)| id == session_id)
                .map(|(_, achievement)| achievement.outcome_id.clone())
                .collect(),
        })
    }

    fn visit_fingerprint(&mut self, session_id: &SessionId) -> Result<Option<String>, StoreError> {
        Ok(self.fingerprints.get(session_id.as_str()).cloned())
    }

    fn write_visit_fingerprint(
        &mut self,
        session_id: &SessionId,
        fingerprint: &str,
    ) -> Result<(), StoreError> {
        self.fingerprints
            .insert(session_id.as_str().to_owned(), fingerprint.to_owned());
        Ok(())
    }

    fn pattern_counts(&mut self, scope_key: &str) -> Result<Vec<PatternCount>, StoreError> {
        self.reads.counts += 1;
        Ok(self
            .pattern_counts
            .iter()
            .filter(|count| count.scope_key == scope_key)
            .cloned()
            .collect())
    }

    fn write_pattern_counts(&mut self, counts: &[PatternCount]) -> Result<(), StoreError> {
        self.writes.counts += 1;
        for count in counts {
            let key = |stored: &PatternCount| {
                (
                    stored.scope_key.clone(),
                    stored.definition_id.clone(),
                    stored.version,
                    stored.pattern_index,
                )
            };
            match self
                .pattern_counts
                .iter_mut()
                .find(|stored| key(stored) == key(count))
            {
                Some(stored) => stored.count = count.count,
                None => self.pattern_counts.push(count.clone()),
            }
        }
        Ok(())
    }

    fn customer_assignments(
        &mut self,
        customer_key: &str,
    ) -> Result<Vec<AssignmentExpiry>, StoreError> {
        Ok(self
            .customer_assignments
            .iter()
            .filter(|assignment| assignment.customer_key == customer_key)
            .map(|assignment| AssignmentExpiry {
                segment_id: assignment.segment_id.clone(),
                expires_ms: assignment.expires_ms,
            })
            .collect())
    }

    fn live_customer_assignments(
        &mut self,
        customer_key: &str,
        visitor_key: &str,
        now_ms: i64,
    ) -> Result<Vec<CustomerAssignment>, StoreError> {
        let mut live: Vec<CustomerAssignment> = self
            .customer_assignments
            .iter()
            .filter(|assignment| {
                (assignment.customer_key == customer_key || assignment.customer_key == visitor_key)
                    && assignment.expires_ms.is_none_or(|ms| ms > now_ms)
            })
            .cloned()
            .collect();
        live.sort_by(|a, b| (a.assigned_ms, &a.segment_id).cmp(&(b.assigned_ms, &b.segment_id)));
        Ok(live)
    }

    fn write_customer_assignments(
        &mut self,
        assignments: &[CustomerAssignment],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        for assignment in assignments {
            match self.customer_assignments.iter_mut().find(|stored| {
                stored.customer_key == assignment.customer_key
                    && stored.segment_id == assignment.segment_id
            }) {
                Some(stored) if stored.expires_ms.is_some_and(|ms| ms <= now_ms) => {
                    *stored = assignment.clone();
                }
                Some(_) => {}
                None => self.customer_assignments.push(assignment.clone()),
            }
        }
        Ok(())
    }

    fn write_segment_assignments(
        &mut self,
        assignments: &[(SessionId, SegmentAssignment)],
    ) -> Result<(), StoreError> {
        self.writes.segments += 1;
        for (session_id, assignment) in assignments {
            if !self
                .segment_assignments
                .iter()
                .any(|(id, stored)| id == session_id && stored.segment_id == assignment.segment_id)
            {
                self.segment_assignments
                    .push((session_id.clone(), assignment.clone()));
            }
        }
        Ok(())
    }

    fn write_outcome_achievements(
        &mut self,
        achievements: &[(SessionId, OutcomeAchievement)],
    ) -> Result<(), StoreError> {
        self.writes.outcomes += 1;
        for (session_id, achievement) in achievements {
            if !self
                .outcome_achievements
                .iter()
                .any(|(id, stored)| id == session_id && stored.outcome_id == achievement.outcome_id)
            {
                self.outcome_achievements
                    .push((session_id.clone(), achievement.clone()));
            }
        }
        Ok(())
    }

    fn lock_customer(&mut self, contact_id: &ContactId) -> Result<(), StoreError> {
        self.customer_locks.push(contact_id.clone());
        Ok(())
    }
}
