//! An in-memory [`IngestTransaction`] for the core's own tests: the row operations
//! over vectors, with no rule of their own, so that a table of batches shows what the
//! core decides without a database. (The store contract suite in `tests/it/contract.rs`
//! checks the real backends.)

use super::store::{
    CandidateSession, IdentityFacts, NewSession, SpanUpdate, SummaryFacts, SummaryRow,
};
use super::IngestTransaction;
use crate::contacts::ContactFields;
use crate::identity::LinkKind;
use crate::model::{
    ContactId, DeploymentId, IdentifierKind, NewBatch, NewEvent, SessionId, StoreError,
    StoredContact, StoredIdentifier, VisitorId,
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
    pub segment_calls: usize,
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

    fn evaluate_segments(
        &mut self,
        _batch: &NewBatch,
        _session_id: &SessionId,
        _event: &NewEvent,
        _now_ms: i64,
    ) -> Result<(), StoreError> {
        self.segment_calls += 1;
        Ok(())
    }

    fn finish_segments(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}
