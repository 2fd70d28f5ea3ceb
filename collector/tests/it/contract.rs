//! The store contract: behaviour every backend must show, written against the `Store`
//! interface (and through it the ingest core), not against a backend's tables.
//!
//! Each case is a plain function over `&dyn Store`; [`BACKENDS`] lists how to open
//! each backend on a fresh database, and every test runs its case on every backend,
//! naming the backend when it fails. A new backend (PostgreSQL, issue 12) adds one line
//! to [`BACKENDS`].

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use footpath_collector::contacts::{ContactFields, EmailAddress};
use footpath_collector::identity::{IdentityProof, LinkKind, VerifiedIdentity};
use footpath_collector::model::{
    IdentifierKind, IngestOutcome, NewBatch, NewEvent, SessionFilter, StoredEvent, StoredSession,
};
use footpath_collector::privacy::{DataSubject, ErasureReport, RetentionRun, SessionKey};
use footpath_collector::segments::{definition, DefinitionKind, DefinitionWrite};
use footpath_collector::store::{IngestQueueSettings, SessionLimits, SqliteStore, Store};
use footpath_collector::usage::{utc_day, UsageCount};

use crate::postgres::{open_postgres, open_postgres_twice};
use footpath_protocol::v1::{AttributeValue, EventKind, Map, Page};
use serde_json::json;

const MINUTE: i64 = 60_000;
const TIMEOUT: i64 = 20 * MINUTE;
const T0: i64 = 1_795_500_000_000;
const DEPLOYMENT: &str = "contract";

/// Opens a backend on a fresh database in `dir`, with these session limits.
type Open = fn(&Path, SessionLimits) -> Arc<dyn Store>;

fn open_sqlite(dir: &Path, limits: SessionLimits) -> Arc<dyn Store> {
    Arc::new(
        SqliteStore::open_with(
            dir.join("contract.sqlite3"),
            IngestQueueSettings::default(),
            limits,
        )
        .unwrap(),
    )
}

const BACKENDS: &[(&str, Open)] = &[("sqlite", open_sqlite), ("postgres", open_postgres)];

/// Opens two instances of a backend on one fresh database (as two processes would).
type OpenTwice = fn(&Path, SessionLimits) -> [Arc<dyn Store>; 2];

fn open_sqlite_twice(dir: &Path, limits: SessionLimits) -> [Arc<dyn Store>; 2] {
    [open_sqlite(dir, limits), open_sqlite(dir, limits)]
}

const SHARED_BACKENDS: &[(&str, OpenTwice)] = &[
    ("sqlite", open_sqlite_twice),
    ("postgres", open_postgres_twice),
];

/// Runs `case` on two instances of every backend that share one database.
fn on_every_shared_backend(case: impl Fn(&dyn Store, &dyn Store)) {
    for (name, open) in SHARED_BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let [first, second] = open(dir.path(), SessionLimits::default());
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(&*first, &*second)));
        if let Err(panic) = result {
            eprintln!("the contract case failed on the {name} backend");
            std::panic::resume_unwind(panic);
        }
    }
}

/// Runs `case` on every backend, each on a database of its own.
fn on_every_backend(limits: SessionLimits, case: impl Fn(&dyn Store)) {
    on_backends_but(&[], limits, case);
}

/// Runs `case` on every backend not named in `skipped` (a gap of that backend, said
/// where the case calls this).
fn on_backends_but(skipped: &[&str], limits: SessionLimits, case: impl Fn(&dyn Store)) {
    for (name, open) in BACKENDS.iter().filter(|(name, _)| !skipped.contains(name)) {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), limits);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(&*store)));
        if let Err(panic) = result {
            eprintln!("the contract case failed on the {name} backend");
            std::panic::resume_unwind(panic);
        }
    }
}

fn minutes(count: i64) -> i64 {
    T0 + count * MINUTE
}

fn visitor(number: u32) -> String {
    format!("0b7e0c2a-5b9e-4a57-9f3e-{number:012}")
}

fn event(number: u32, kind: EventKind, time_ms: i64) -> NewEvent {
    NewEvent {
        id: format!("00000000-0000-7000-8000-{number:012}"),
        kind,
        name: if kind == EventKind::Pageview {
            "page_viewed".to_owned()
        } else {
            "order_completed".to_owned()
        },
        time_ms,
        client_time_ms: time_ms,
        received_ms: time_ms,
        page: (kind == EventKind::Pageview).then(|| Page {
            url: format!("https://shop.example/{number}"),
            title: String::new(),
            referrer: String::new(),
            lang: String::new(),
            keywords: String::new(),
            search_query: None,
            campaign: Map::new(),
        }),
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
        identity_proof: Default::default(),
    }
}

fn batch(visitor_number: u32, events: Vec<NewEvent>) -> NewBatch {
    NewBatch {
        deployment_id: DEPLOYMENT.to_owned(),
        visitor_id: visitor(visitor_number),
        events,
        require_verified_identity: false,
    }
}

fn ingest(store: &dyn Store, batch: &NewBatch, now_ms: i64) -> Vec<IngestOutcome> {
    store.ingest(batch, now_ms, TIMEOUT).unwrap()
}

/// The visitor's sessions, oldest first.
fn sessions_of(store: &dyn Store, visitor_number: u32) -> Vec<StoredSession> {
    let filter = SessionFilter {
        visitor_id: Some(visitor(visitor_number)),
        ..SessionFilter::default()
    };
    let mut sessions = store.sessions(&filter, None, 1000).unwrap().items;
    sessions.reverse();
    sessions
}

/// The ids of a session's events, in time order.
fn event_ids(store: &dyn Store, session: &StoredSession) -> Vec<String> {
    store
        .session_events(&session.id, None, 1000)
        .unwrap()
        .unwrap()
        .items
        .into_iter()
        .map(|stored| stored.event.id)
        .collect()
}

fn id(number: u32) -> String {
    event(number, EventKind::Pageview, 0).id
}

#[test]
fn sessions_are_cut_by_event_time_not_arrival() {
    on_every_backend(SessionLimits::default(), |store| {
        // Arrival order is not time order; the 20-minute rule works on event time.
        let events = vec![
            event(3, EventKind::Pageview, minutes(50)),
            event(1, EventKind::Pageview, minutes(0)),
            event(2, EventKind::Pageview, minutes(19)),
        ];
        let outcomes = ingest(store, &batch(1, events), minutes(60));
        assert_eq!(outcomes, [IngestOutcome::Accepted; 3]);
        let sessions = sessions_of(store, 1);
        let spans: Vec<(i64, i64, u64)> = sessions
            .iter()
            .map(|session| (session.first_ms, session.last_ms, session.event_count))
            .collect();
        assert_eq!(
            spans,
            [(minutes(0), minutes(19), 2), (minutes(50), minutes(50), 1)]
        );
        assert_eq!(event_ids(store, &sessions[0]), [id(1), id(2)]);
    });
}

#[test]
fn a_late_event_lands_where_its_time_belongs_and_moves_the_summary() {
    on_every_backend(SessionLimits::default(), |store| {
        ingest(
            store,
            &batch(
                1,
                vec![
                    event(1, EventKind::Pageview, minutes(10)),
                    event(2, EventKind::Pageview, minutes(20)),
                    event(3, EventKind::Pageview, minutes(60)),
                ],
            ),
            minutes(61),
        );
        // Earlier than every event of the first session, within its timeout.
        ingest(
            store,
            &batch(1, vec![event(4, EventKind::Pageview, minutes(-5))]),
            minutes(62),
        );
        let sessions = sessions_of(store, 1);
        assert_eq!(sessions.len(), 2);
        let first = &sessions[0];
        assert_eq!((first.first_ms, first.last_ms), (minutes(-5), minutes(20)));
        assert_eq!(first.event_count, 3);
        // The late pageview is the session's landing page now; the last stays.
        assert_eq!(
            first.landing_page.as_ref().map(|page| page.url.as_str()),
            Some("https://shop.example/4")
        );
        assert_eq!(
            first.last_event.as_ref().map(|last| last.id.as_str()),
            Some(id(2).as_str())
        );
        assert_eq!(event_ids(store, first), [id(4), id(1), id(2)]);
    });
}

#[test]
fn a_resent_event_is_stored_once() {
    on_every_backend(SessionLimits::default(), |store| {
        let first = batch(1, vec![event(1, EventKind::Pageview, minutes(0))]);
        assert_eq!(ingest(store, &first, minutes(1)), [IngestOutcome::Accepted]);
        let resent = batch(
            1,
            vec![
                event(1, EventKind::Pageview, minutes(0)),
                event(2, EventKind::Pageview, minutes(1)),
                // The same id twice in one batch.
                event(2, EventKind::Pageview, minutes(1)),
            ],
        );
        assert_eq!(
            ingest(store, &resent, minutes(2)),
            [
                IngestOutcome::Duplicate,
                IngestOutcome::Accepted,
                IngestOutcome::Duplicate
            ]
        );
        let sessions = sessions_of(store, 1);
        assert_eq!(sessions.len(), 1);
        assert_eq!(event_ids(store, &sessions[0]), [id(1), id(2)]);
    });
}

#[test]
fn concurrent_duplicates_are_stored_once() {
    on_every_backend(SessionLimits::default(), |store| {
        // The same batch from eight requests at once (a retry racing its original),
        // through the queue the HTTP handlers use.
        let events: Vec<NewEvent> = (1..=20)
            .map(|number| event(number, EventKind::Pageview, minutes(i64::from(number))))
            .collect();
        let the_batch = batch(1, events);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let outcomes: Vec<Vec<IngestOutcome>> = std::thread::scope(|scope| {
            let senders: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        store
                            .enqueue_ingest(the_batch.clone(), minutes(30), TIMEOUT)
                            .unwrap()
                    })
                })
                .collect();
            senders
                .into_iter()
                .map(|sender| {
                    let reply = sender.join().unwrap();
                    runtime.block_on(reply).unwrap().unwrap()
                })
                .collect()
        });
        for position in 0..20 {
            let accepted = outcomes
                .iter()
                .filter(|outcome| outcome[position] == IngestOutcome::Accepted)
                .count();
            assert_eq!(accepted, 1, "event {position}: {outcomes:?}");
        }
        let sessions = sessions_of(store, 1);
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].event_count, 20);
        assert_eq!(event_ids(store, &sessions[0]).len(), 20);
    });
}

#[test]
fn a_logout_closes_its_session_and_the_next_event_starts_another() {
    on_every_backend(SessionLimits::default(), |store| {
        let events = vec![
            event(1, EventKind::Pageview, minutes(0)),
            event(2, EventKind::Logout, minutes(1)),
            event(3, EventKind::Pageview, minutes(2)),
        ];
        ingest(store, &batch(1, events), minutes(3));
        let sessions = sessions_of(store, 1);
        assert_eq!(sessions.len(), 2);
        assert_eq!(sessions[0].ended_ms, Some(minutes(1)));
        assert_eq!(event_ids(store, &sessions[0]), [id(1), id(2)]);
        assert_eq!(event_ids(store, &sessions[1]), [id(3)]);
    });
}

#[test]
fn a_full_session_closes_and_the_next_event_starts_another() {
    let limits = SessionLimits {
        max_events_per_session: 3,
        ..SessionLimits::default()
    };
    on_every_backend(limits, |store| {
        let events = (1..=5)
            .map(|number| event(number, EventKind::Pageview, minutes(i64::from(number))))
            .collect();
        ingest(store, &batch(1, events), minutes(6));
        let sessions = sessions_of(store, 1);
        let counts: Vec<u64> = sessions.iter().map(|session| session.event_count).collect();
        assert_eq!(counts, [3, 2]);
        assert_eq!(sessions[0].ended_ms, Some(minutes(3)));
    });
}

#[test]
fn unverified_traits_link_the_session_to_the_matching_contact() {
    on_every_backend(SessionLimits::default(), |store| {
        let ada = store
            .create_contact(
                &ContactFields {
                    first_name: Some("Ada".to_owned()),
                    work_email: Some("ada@example.com".to_owned()),
                    ..ContactFields::default()
                },
                T0,
            )
            .unwrap();
        let mut identify = event(1, EventKind::Identify, minutes(0));
        identify.traits.insert(
            "email".to_owned(),
            AttributeValue::String("ADA@example.com".to_owned()),
        );
        ingest(store, &batch(1, vec![identify]), minutes(1));
        let session = &sessions_of(store, 1)[0];
        assert_eq!(session.contact_id.as_deref(), Some(ada.id.as_str()));
        assert_eq!(session.contact_link, Some(LinkKind::Unverified));
        assert!(!session.authenticated);
        // Unverified traits write nothing to the contact: no cookie identifier.
        let contact = store.contact(&ada.id).unwrap().unwrap();
        assert_eq!(contact.identifiers, ada.identifiers);
    });
}

#[test]
fn a_bound_token_links_and_authenticates_and_a_logout_unlinks_the_cookie() {
    on_every_backend(SessionLimits::default(), |store| {
        let ada = store
            .create_contact(
                &ContactFields {
                    work_email: Some("ada@example.com".to_owned()),
                    ..ContactFields::default()
                },
                T0,
            )
            .unwrap();
        let mut identify = event(1, EventKind::Identify, minutes(0));
        identify.identity_proof = IdentityProof::Valid(VerifiedIdentity {
            email: EmailAddress::parse("ada@example.com"),
            first_name: Some("Ada".to_owned()),
            bound_to_visitor: true,
            ..VerifiedIdentity::default()
        });
        identify.identity_verified = true;
        ingest(store, &batch(1, vec![identify]), minutes(1));
        let session = &sessions_of(store, 1)[0];
        assert_eq!(session.contact_id.as_deref(), Some(ada.id.as_str()));
        assert_eq!(session.contact_link, Some(LinkKind::Verified));
        assert!(session.authenticated);
        let contact = store.contact(&ada.id).unwrap().unwrap();
        assert_eq!(
            contact.fields.first_name.as_deref(),
            Some("Ada"),
            "claims written"
        );
        let has_cookie = |contact: &footpath_collector::model::StoredContact| {
            contact.identifiers.iter().any(|identifier| {
                identifier.kind == IdentifierKind::Cookie && identifier.value == visitor(1)
            })
        };
        assert!(has_cookie(&contact), "a bound token adds the cookie");

        // The logout, in a later batch, closes the session and takes the cookie off.
        ingest(
            store,
            &batch(1, vec![event(2, EventKind::Logout, minutes(2))]),
            minutes(3),
        );
        ingest(
            store,
            &batch(1, vec![event(3, EventKind::Pageview, minutes(3))]),
            minutes(4),
        );
        let sessions = sessions_of(store, 1);
        assert_eq!(sessions.len(), 2);
        assert_eq!(sessions[0].ended_ms, Some(minutes(2)));
        assert_eq!(sessions[1].contact_id, None, "the next session is Unknown");
        assert!(!has_cookie(&store.contact(&ada.id).unwrap().unwrap()));
    });
}

#[test]
fn identity_changes_within_one_batch_are_seen_by_its_later_events() {
    // A backend may answer identity reads for a batch at once (PostgreSQL keeps what
    // it read until the transaction writes it): each step must still see the last.
    on_every_backend(SessionLimits::default(), |store| {
        let ada = store
            .create_contact(
                &ContactFields {
                    work_email: Some("ada@example.com".to_owned()),
                    ..ContactFields::default()
                },
                T0,
            )
            .unwrap();
        let mut identify = event(2, EventKind::Identify, minutes(1));
        identify.identity_proof = IdentityProof::Valid(VerifiedIdentity {
            email: EmailAddress::parse("ada@example.com"),
            bound_to_visitor: true,
            ..VerifiedIdentity::default()
        });
        identify.identity_verified = true;
        let outcomes = ingest(
            store,
            &batch(
                1,
                vec![
                    event(1, EventKind::Pageview, minutes(0)),
                    identify,
                    event(3, EventKind::Pageview, minutes(2)),
                    event(4, EventKind::Logout, minutes(3)),
                    event(5, EventKind::Pageview, minutes(4)),
                ],
            ),
            minutes(5),
        );
        assert_eq!(outcomes, [IngestOutcome::Accepted; 5]);
        let sessions = sessions_of(store, 1);
        assert_eq!(sessions.len(), 2, "the logout closed the first session");
        assert_eq!(sessions[0].contact_id.as_deref(), Some(ada.id.as_str()));
        assert_eq!(sessions[0].contact_link, Some(LinkKind::Verified));
        assert!(sessions[0].authenticated);
        assert_eq!(sessions[0].ended_ms, Some(minutes(3)));
        assert_eq!(event_ids(store, &sessions[0]), [id(1), id(2), id(3), id(4)]);
        assert_eq!(sessions[1].contact_id, None, "after the logout: Unknown");
        assert!(!sessions[1].authenticated);
        assert_eq!(event_ids(store, &sessions[1]), [id(5)]);
        let contact = store.contact(&ada.id).unwrap().unwrap();
        assert!(
            !contact
                .identifiers
                .iter()
                .any(|identifier| identifier.kind == IdentifierKind::Cookie),
            "the logout took the cookie added earlier in the batch off again"
        );
    });
}

#[test]
fn a_segment_is_assigned_once_its_pattern_is_met() {
    on_every_backend(SessionLimits::default(), |store| {
        let definition = definition::parse(
            DefinitionKind::Segment,
            &json!({
                "displayName": "Two pages",
                "color": "#1f77b4",
                "scope": "Session",
                "journey": {"patterns": [{"eventName": "page_viewed", "count": 2}]},
            }),
        )
        .unwrap();
        let DefinitionWrite::Written(segment) = store.create_definition(&definition, T0).unwrap()
        else {
            panic!("not written");
        };
        ingest(
            store,
            &batch(1, vec![event(1, EventKind::Pageview, minutes(0))]),
            minutes(1),
        );
        assert!(sessions_of(store, 1)[0].segment_assignments.is_empty());
        ingest(
            store,
            &batch(1, vec![event(2, EventKind::Pageview, minutes(1))]),
            minutes(2),
        );
        ingest(
            store,
            &batch(1, vec![event(3, EventKind::Pageview, minutes(2))]),
            minutes(3),
        );
        let session = &sessions_of(store, 1)[0];
        let assigned: Vec<(&str, &str)> = session
            .segment_assignments
            .iter()
            .map(|assignment| {
                (
                    assignment.segment_id.as_str(),
                    assignment.trigger_event_id.as_str(),
                )
            })
            .collect();
        assert_eq!(assigned, [(segment.id.as_str(), id(2).as_str())]);
    });
}

/// A pageview of `path` at `time_ms`.
fn pageview_of(number: u32, path: &str, time_ms: i64) -> NewEvent {
    let mut pageview = event(number, EventKind::Pageview, time_ms);
    if let Some(page) = &mut pageview.page {
        page.url = format!("https://shop.example{path}");
    }
    pageview
}

fn define(store: &dyn Store, kind: DefinitionKind, json: serde_json::Value) -> String {
    let definition = definition::parse(kind, &json).unwrap();
    match store.create_definition(&definition, T0).unwrap() {
        DefinitionWrite::Written(stored) => stored.id,
        other => panic!("not written: {other:?}"),
    }
}

fn visited(path: &str) -> serde_json::Value {
    json!({"count": 1, "criteria": [
        {"key": "page.pathname", "operator": "equal", "values": [path]}]})
}

/// The segments of a session as `(segment id, trigger event id)`, oldest first.
fn segments_of(session: &StoredSession) -> Vec<(String, String)> {
    session
        .segment_assignments
        .iter()
        .map(|assignment| {
            (
                assignment.segment_id.clone(),
                assignment.trigger_event_id.clone(),
            )
        })
        .collect()
}

#[test]
fn a_page_pattern_assigns_a_session_segment_once() {
    on_every_backend(SessionLimits::default(), |store| {
        let cart = define(
            store,
            DefinitionKind::Segment,
            json!({"displayName": "Cart", "color": "#2ca02c", "shouldDisplayToAgent": true,
                   "journey": {"patterns": [visited("/cart")]}}),
        );
        let events = vec![
            pageview_of(1, "/", minutes(0)),
            pageview_of(2, "/cart", minutes(1)),
            pageview_of(3, "/cart", minutes(2)),
        ];
        ingest(store, &batch(1, events), minutes(3));
        ingest(
            store,
            &batch(1, vec![pageview_of(4, "/cart", minutes(4))]),
            minutes(5),
        );
        let listed = &sessions_of(store, 1)[0];
        assert_eq!(segments_of(listed), [(cart.clone(), id(2))]);
        // The single-session read shows the same, with what the segment looked like.
        let read = store.session(&listed.id).unwrap().unwrap();
        assert_eq!(read.segment_assignments, listed.segment_assignments);
        let assignment = &read.segment_assignments[0];
        assert_eq!(
            (
                assignment.display_name.as_str(),
                assignment.color.as_str(),
                assignment.should_display_to_agent,
                assignment.assigned_ms
            ),
            ("Cart", "#2ca02c", true, minutes(1))
        );
    });
}

#[test]
fn an_outcome_is_achieved_once_with_its_value() {
    on_every_backend(SessionLimits::default(), |store| {
        let order = define(
            store,
            DefinitionKind::Outcome,
            json!({"displayName": "Order", "isPositive": true,
                   "journey": {"patterns": [{"eventName": "order_completed", "count": 1}]},
                   "associatedValueField": {"dataType": "Number", "name": "value"}}),
        );
        let order_event = |number: u32, minute: i64, value: &str| {
            let mut order = event(number, EventKind::Record, minutes(minute));
            order
                .attributes
                .insert("value".to_owned(), AttributeValue::String(value.to_owned()));
            order
        };
        ingest(
            store,
            &batch(1, vec![order_event(1, 0, "12.5")]),
            minutes(1),
        );
        ingest(store, &batch(1, vec![order_event(2, 1, "99")]), minutes(2));
        let session = &sessions_of(store, 1)[0];
        let achieved: Vec<(&str, &str, Option<&str>, u64)> = session
            .outcome_achievements
            .iter()
            .map(|achievement| {
                (
                    achievement.outcome_id.as_str(),
                    achievement.trigger_event_id.as_str(),
                    achievement.associated_value.as_deref(),
                    achievement.version,
                )
            })
            .collect();
        assert_eq!(
            achieved,
            [(order.as_str(), id(1).as_str(), Some("12.5"), 1)]
        );
        let read = store.session(&session.id).unwrap().unwrap();
        assert_eq!(read.outcome_achievements, session.outcome_achievements);
    });
}

#[test]
fn a_customer_segment_is_carried_to_the_contacts_later_session() {
    on_every_backend(SessionLimits::default(), |store| {
        let ada = store
            .create_contact(
                &ContactFields {
                    work_email: Some("ada@example.com".to_owned()),
                    ..ContactFields::default()
                },
                T0,
            )
            .unwrap();
        let loyal = define(
            store,
            DefinitionKind::Segment,
            json!({"displayName": "Loyal", "color": "#000000", "scope": "Customer",
                   "journey": {"patterns": [{"eventName": "page_viewed", "count": 2}]}}),
        );
        let identify = |number: u32, minute: i64| {
            let mut identify = event(number, EventKind::Identify, minutes(minute));
            identify.traits.insert(
                "email".to_owned(),
                AttributeValue::String("ada@example.com".to_owned()),
            );
            identify
        };
        // Ada on her laptop: the second pageview meets the pattern.
        let laptop = vec![
            identify(1, 0),
            pageview_of(2, "/", minutes(1)),
            pageview_of(3, "/", minutes(2)),
        ];
        ingest(store, &batch(1, laptop), minutes(3));
        let first = &sessions_of(store, 1)[0];
        assert_eq!(first.contact_id.as_deref(), Some(ada.id.as_str()));
        assert_eq!(segments_of(first), [(loyal.clone(), id(3))]);
        // An hour later on her phone (another visitor): the session is hers once she
        // is identified, and the segment comes along.
        ingest(store, &batch(2, vec![identify(4, 60)]), minutes(61));
        assert_eq!(segments_of(&sessions_of(store, 2)[0]), [(loyal, id(4))]);
        // Someone else's session at the same time does not get it.
        ingest(
            store,
            &batch(3, vec![pageview_of(5, "/", minutes(60))]),
            minutes(61),
        );
        assert_eq!(segments_of(&sessions_of(store, 3)[0]), []);
    });
}

#[test]
fn counters_of_a_multi_step_pattern_add_up_across_batches() {
    on_every_backend(SessionLimits::default(), |store| {
        let buyer = define(
            store,
            DefinitionKind::Segment,
            json!({"displayName": "Browsed and bought", "color": "#000000",
                   "journey": {"patterns": [
                       {"eventName": "page_viewed", "count": 2},
                       {"eventName": "order_completed", "count": 1}]}}),
        );
        let first = vec![
            pageview_of(1, "/", minutes(0)),
            event(2, EventKind::Record, minutes(1)),
        ];
        ingest(store, &batch(1, first), minutes(2));
        assert_eq!(segments_of(&sessions_of(store, 1)[0]), []);
        ingest(
            store,
            &batch(1, vec![pageview_of(3, "/", minutes(2))]),
            minutes(3),
        );
        assert_eq!(segments_of(&sessions_of(store, 1)[0]), [(buyer, id(3))]);
    });
}

#[test]
fn a_definition_changed_through_one_instance_applies_in_another() {
    on_every_shared_backend(|writer, collector| {
        let definition = |path: &str| {
            definition::parse(
                DefinitionKind::Segment,
                &json!({"displayName": "Went", "color": "#000000",
                        "journey": {"patterns": [visited(path)]}}),
            )
            .unwrap()
        };
        let DefinitionWrite::Written(went) =
            writer.create_definition(&definition("/cart"), T0).unwrap()
        else {
            panic!("not written");
        };
        // The other instance builds its index of the definitions...
        ingest(
            collector,
            &batch(1, vec![pageview_of(1, "/cart", minutes(0))]),
            minutes(1),
        );
        assert_eq!(
            segments_of(&sessions_of(collector, 1)[0]),
            [(went.id.clone(), id(1))]
        );
        // ...and its next batch applies the change made through the first.
        writer
            .update_definition(&went.id, &definition("/checkout"), 1, T0 + 1)
            .unwrap();
        let events = vec![
            pageview_of(2, "/cart", minutes(0)),
            pageview_of(3, "/checkout", minutes(1)),
        ];
        ingest(collector, &batch(2, events), minutes(2));
        assert_eq!(
            segments_of(&sessions_of(collector, 2)[0]),
            [(went.id.clone(), id(3))]
        );
        // A deletion too.
        assert!(writer
            .delete_definition(DefinitionKind::Segment, &went.id)
            .unwrap());
        ingest(
            collector,
            &batch(3, vec![pageview_of(4, "/checkout", minutes(0))]),
            minutes(1),
        );
        assert_eq!(segments_of(&sessions_of(collector, 3)[0]), []);
    });
}

#[test]
fn short_ids_are_unique_among_the_deployments_recent_sessions() {
    // Eight sessions in a space of ten numbers: the draws must find free ones (the
    // last session still has three free numbers, so 96 draws miss them all with a
    // probability of 0.7^96).
    let limits = SessionLimits {
        short_id_space: (1000, 1009),
        ..SessionLimits::default()
    };
    on_every_backend(limits, |store| {
        for number in 1..=8 {
            ingest(
                store,
                &batch(number, vec![event(number, EventKind::Pageview, minutes(0))]),
                minutes(1),
            );
        }
        let filter = SessionFilter::default();
        let mut short_ids: Vec<u32> = store
            .sessions(&filter, None, 100)
            .unwrap()
            .items
            .into_iter()
            .map(|session| session.short_id.parse().unwrap())
            .collect();
        short_ids.sort_unstable();
        short_ids.dedup();
        assert_eq!(short_ids.len(), 8, "{short_ids:?}");
        assert!(short_ids.iter().all(|id| (1000..=1009).contains(id)));
    });
}

#[test]
fn events_are_paged_with_running_totals() {
    on_every_backend(SessionLimits::default(), |store| {
        let kinds = [
            EventKind::Pageview,
            EventKind::Record,
            EventKind::Pageview,
            EventKind::Record,
            EventKind::Pageview,
        ];
        let events = (1..=5)
            .zip(kinds)
            .map(|(number, kind)| event(number, kind, minutes(i64::from(number))))
            .collect();
        ingest(store, &batch(1, events), minutes(6));
        let session = &sessions_of(store, 1)[0];
        let page = |after: Option<&str>| {
            store
                .session_events(&session.id, after, 2)
                .unwrap()
                .unwrap()
        };
        let totals = |listing: &footpath_collector::model::Listing<
            footpath_collector::model::StoredEvent,
        >| {
            listing
                .items
                .iter()
                .map(|stored| {
                    (
                        stored.event.id.clone(),
                        stored.total_event_count,
                        stored.total_pageview_count,
                    )
                })
                .collect::<Vec<_>>()
        };
        let first = page(None);
        assert!(first.has_more);
        assert_eq!(totals(&first), [(id(1), 1, 1), (id(2), 2, 1)]);
        let second = page(Some(&id(2)));
        assert_eq!(totals(&second), [(id(3), 3, 2), (id(4), 4, 2)]);
        let last = page(Some(&id(4)));
        assert!(!last.has_more);
        assert_eq!(totals(&last), [(id(5), 5, 3)]);
        let one = store.event(&id(4)).unwrap().unwrap();
        assert_eq!(
            (
                one.session_id.as_str(),
                one.total_event_count,
                one.total_pageview_count
            ),
            (session.id.as_str(), 4, 2)
        );
        assert!(store.event(&id(99)).unwrap().is_none());
        assert!(matches!(
            store.session_events(&session.id, Some(&id(99)), 2),
            Err(footpath_collector::model::StoreError::UnknownCursor)
        ));
        assert!(store
            .session_events("no-such-session", None, 2)
            .unwrap()
            .is_none());
    });
}

#[test]
fn contacts_are_searched_replaced_and_deleted() {
    on_every_backend(SessionLimits::default(), |store| {
        let fields = |first: &str, email: &str| ContactFields {
            first_name: Some(first.to_owned()),
            last_name: Some("Lovelace".to_owned()),
            work_email: Some(email.to_owned()),
            ..ContactFields::default()
        };
        let ada = store
            .create_contact(&fields("Ada", "ada@example.com"), T0)
            .unwrap();
        store
            .create_contact(&fields("Byron", "byron@example.com"), T0 + 1)
            .unwrap();
        let search = |text: &str| {
            let query = footpath_collector::model::ContactQuery {
                text: Some(text.to_owned()),
                page_number: 1,
                page_size: 10,
            };
            let page = store.contacts(&query).unwrap();
            let names: Vec<String> = page
                .items
                .iter()
                .map(|contact| contact.fields.first_name.clone().unwrap())
                .collect();
            (page.total, names)
        };
        assert_eq!(
            search("LOVELACE"),
            (2, vec!["Ada".to_owned(), "Byron".to_owned()])
        );
        assert_eq!(search("ada lovelace"), (1, vec!["Ada".to_owned()]));
        assert_eq!(search("nobody"), (0, vec![]));
        // A new email: the identifiers follow the fields.
        let replaced = store
            .replace_contact(&ada.id, &fields("Ada", "countess@example.com"), T0 + 2)
            .unwrap()
            .unwrap();
        let emails: Vec<&str> = replaced
            .identifiers
            .iter()
            .map(|identifier| identifier.value.as_str())
            .collect();
        assert_eq!(emails, ["countess@example.com"]);
        assert_eq!(replaced.modify_ms, T0 + 2);
        assert!(store
            .replace_contact("no-such-contact", &fields("X", "x@example.com"), T0)
            .unwrap()
            .is_none());
        // A session linked to the contact keeps its events, not the link.
        let mut identify = event(1, EventKind::Identify, minutes(0));
        identify.traits.insert(
            "email".to_owned(),
            AttributeValue::String("countess@example.com".to_owned()),
        );
        ingest(store, &batch(1, vec![identify]), minutes(1));
        assert_eq!(
            sessions_of(store, 1)[0].contact_id.as_deref(),
            Some(ada.id.as_str())
        );
        assert!(store.delete_contact(&ada.id).unwrap());
        assert!(!store.delete_contact(&ada.id).unwrap());
        assert!(store.contact(&ada.id).unwrap().is_none());
        let session = &sessions_of(store, 1)[0];
        assert_eq!(session.contact_id, None);
        assert_eq!(session.event_count, 1);
    });
}

#[test]
fn definitions_are_versioned_listed_and_deleted() {
    on_every_backend(SessionLimits::default(), |store| {
        let segment = |name: &str| {
            definition::parse(
                DefinitionKind::Segment,
                &json!({
                    "displayName": name,
                    "color": "#1f77b4",
                    "scope": "Session",
                    "journey": {"patterns": [{"eventName": "page_viewed", "count": 1}]},
                }),
            )
            .unwrap()
        };
        let written = |write: DefinitionWrite| match write {
            DefinitionWrite::Written(stored) => stored,
            other => panic!("not written: {other:?}"),
        };
        let first = written(store.create_definition(&segment("First"), T0).unwrap());
        written(store.create_definition(&segment("Second"), T0 + 1).unwrap());
        let (page, total) = store.definitions(DefinitionKind::Segment, 2, 1).unwrap();
        assert_eq!(total, 2);
        assert_eq!(page.len(), 1);
        assert_ne!(page[0].id, first.id);
        assert_eq!(
            store
                .update_definition(&first.id, &segment("Renamed"), 7, T0 + 2)
                .unwrap(),
            DefinitionWrite::VersionChanged { current: 1 }
        );
        let renamed = written(
            store
                .update_definition(&first.id, &segment("Renamed"), 1, T0 + 2)
                .unwrap(),
        );
        assert_eq!((renamed.version, renamed.modified_ms), (2, T0 + 2));
        assert_eq!(
            store
                .definition(DefinitionKind::Segment, &first.id)
                .unwrap()
                .unwrap(),
            renamed
        );
        assert!(store
            .delete_definition(DefinitionKind::Segment, &first.id)
            .unwrap());
        assert!(store
            .definition(DefinitionKind::Segment, &first.id)
            .unwrap()
            .is_none());
        assert_eq!(
            store.definitions(DefinitionKind::Segment, 1, 10).unwrap().1,
            1
        );
    });
}

#[test]
fn a_ping_keeps_a_session_alive_through_the_sweep() {
    on_every_backend(SessionLimits::default(), |store| {
        ingest(
            store,
            &batch(1, vec![event(1, EventKind::Pageview, minutes(0))]),
            minutes(0),
        );
        assert!(store.record_ping(DEPLOYMENT, &visitor(1), minutes(15), TIMEOUT));
        // Idle for 25 minutes since the event, but not since the ping.
        assert_eq!(store.close_idle_sessions(minutes(25), TIMEOUT).unwrap(), 0);
        assert_eq!(sessions_of(store, 1)[0].last_ms, minutes(15));
        assert_eq!(store.close_idle_sessions(minutes(36), TIMEOUT).unwrap(), 1);
        assert_eq!(sessions_of(store, 1)[0].ended_ms, Some(minutes(15)));
    });
}

#[test]
fn the_desk_presentation_is_saved_and_forgotten() {
    on_every_backend(SessionLimits::default(), |store| {
        use footpath_collector::store::SavedPresentation;
        assert_eq!(store.saved_desk_presentation().unwrap(), None);
        for text in ["{\"title\":\"One\"}", "{\"title\":\"Two\"}"] {
            let saved = SavedPresentation {
                presentation_json: text.to_owned(),
                file_presentation_json: "{}".to_owned(),
                saved_ms: T0,
            };
            store.save_desk_presentation(Some(&saved)).unwrap();
            assert_eq!(store.saved_desk_presentation().unwrap(), Some(saved));
        }
        store.save_desk_presentation(None).unwrap();
        assert_eq!(store.saved_desk_presentation().unwrap(), None);
    });
}

#[test]
fn desk_sign_ins_are_saved_expired_and_deleted() {
    use footpath_collector::desk::auth::StoredSignIn;
    let sign_in = |session: &str, token: &str, expires_ms: i64| StoredSignIn {
        session_sha256: session.repeat(64),
        token_sha256: token.repeat(64),
        expires_ms,
    };
    on_every_backend(SessionLimits::default(), |store| {
        assert_eq!(store.sign_ins().unwrap(), []);
        store.save_sign_in(&sign_in("a", "1", T0 + 10), T0).unwrap();
        store.save_sign_in(&sign_in("b", "2", T0 + 20), T0).unwrap();
        assert_eq!(
            store.sign_in(&"a".repeat(64)).unwrap(),
            Some(sign_in("a", "1", T0 + 10))
        );
        assert_eq!(store.sign_in(&"z".repeat(64)).unwrap(), None);
        // A new sign-in takes the expired ones away with it.
        store
            .save_sign_in(&sign_in("c", "1", T0 + 30), T0 + 10)
            .unwrap();
        assert_eq!(
            store.sign_ins().unwrap(),
            [sign_in("b", "2", T0 + 20), sign_in("c", "1", T0 + 30)]
        );
        // A collector started without token 2 deletes its sign-ins.
        let kept = ["1".repeat(64)];
        assert_eq!(store.delete_sign_ins_except(&kept, T0 + 10).unwrap(), 1);
        assert_eq!(store.sign_ins().unwrap(), [sign_in("c", "1", T0 + 30)]);
        // Signing out.
        assert!(store.delete_sign_in(&"c".repeat(64)).unwrap());
        assert!(!store.delete_sign_in(&"c".repeat(64)).unwrap());
        assert_eq!(store.sign_ins().unwrap(), []);
    });
}

/// Values that name Ada in [`ada_visits`]'s rows; none may be read back after an erase.
const ADA_VALUES: &[&str] = &[
    "0b7e0c2a-5b9e-4a57-9f3e-000000000001", // visitor(1), her cookie
    "ada@example.com",
    "Lovelace",
    "account/ada-lovelace",
    "Ada's basket",
    "https://mail.example/ada",
    "ada-lang",
    "blue boots",
    "user-42",
    "ORD-77",
    "newsletter-ada",
    "Mozilla/5.0 (ada)",
    "203.0.113.42",
    "Ada-upon-Thames",
];

/// Ada (a contact) browses as visitor 1: a session before she identifies herself,
/// then one with a verified identify bound to her cookie. Visitor 2 is a stranger.
/// Returns her contact id.
fn ada_visits(store: &dyn Store) -> String {
    let ada = store
        .create_contact(
            &ContactFields {
                last_name: Some("Lovelace".to_owned()),
                work_email: Some("ada@example.com".to_owned()),
                ..ContactFields::default()
            },
            T0,
        )
        .unwrap();
    let mut browsing = event(1, EventKind::Pageview, minutes(0));
    let page = browsing.page.as_mut().unwrap();
    page.url = "https://shop.example/account/ada-lovelace?order=ORD-77".to_owned();
    page.title = "Ada's basket".to_owned();
    page.referrer = "https://mail.example/ada".to_owned();
    page.lang = "ada-lang".to_owned();
    page.keywords = "blue boots".to_owned();
    page.search_query = Some("blue boots".to_owned());
    browsing.context = Some(footpath_protocol::v1::Context {
        browser_lang: "ada-lang".to_owned(),
        ..Default::default()
    });
    browsing.login_id = Some("user-42".to_owned());
    browsing.attributes.insert(
        "order".to_owned(),
        AttributeValue::String("ORD-77".to_owned()),
    );
    browsing.user_agent = Some("Mozilla/5.0 (ada)".to_owned());
    browsing.ip_address = Some("203.0.113.42".to_owned());
    browsing.geolocation = Some(footpath_collector::enrich::geo::Geolocation {
        locality: Some("Ada-upon-Thames".to_owned()),
        ..Default::default()
    });
    let order = event(2, EventKind::Record, minutes(1));
    ingest(store, &batch(1, vec![browsing, order]), minutes(2));
    // Later, a new session (past the timeout): she proves who she is.
    let mut identify = event(3, EventKind::Identify, minutes(40));
    identify.traits.insert(
        "campaign".to_owned(),
        AttributeValue::String("newsletter-ada".to_owned()),
    );
    identify.identity_proof = IdentityProof::Valid(VerifiedIdentity {
        email: EmailAddress::parse("ada@example.com"),
        bound_to_visitor: true,
        ..VerifiedIdentity::default()
    });
    identify.identity_verified = true;
    ingest(store, &batch(1, vec![identify]), minutes(41));
    ingest(
        store,
        &batch(2, vec![event(10, EventKind::Pageview, minutes(5))]),
        minutes(6),
    );
    let sessions = sessions_of(store, 1);
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[1].contact_id.as_deref(), Some(ada.id.as_str()));
    ada.id
}

/// Every session of the deployment with every one of its events, newest first.
fn everything(store: &dyn Store) -> Vec<(StoredSession, Vec<StoredEvent>)> {
    let filter = SessionFilter {
        deployment_id: Some(DEPLOYMENT.to_owned()),
        ..SessionFilter::default()
    };
    store
        .sessions(&filter, None, 1000)
        .unwrap()
        .items
        .into_iter()
        .map(|session| {
            let events = store
                .session_events(&session.id, None, 1000)
                .unwrap()
                .unwrap()
                .items;
            (session, events)
        })
        .collect()
}

/// What of Ada's values the rows read back hold (by their debug text: every field).
fn ada_values_in(text: &str) -> Vec<&'static str> {
    ADA_VALUES
        .iter()
        .copied()
        .filter(|value| text.contains(value))
        .collect()
}

/// The shells of Ada's sessions after an erase: same ids and counts, no personal data.
fn assert_shells(
    store: &dyn Store,
    before: &[(StoredSession, Vec<StoredEvent>)],
    ada_sessions: &[String],
) {
    let after = everything(store);
    assert_eq!(after.len(), before.len(), "no session is deleted");
    let mut shell_visitors = Vec::new();
    for ((old, old_events), (shell, events)) in before.iter().zip(&after) {
        assert_eq!(old.id, shell.id);
        if !ada_sessions.contains(&shell.id) {
            assert_eq!(
                (old, old_events),
                (shell, events),
                "a stranger is untouched"
            );
            continue;
        }
        let text = format!("{shell:?} {events:?} {:?}", store.session(&shell.id));
        assert_eq!(ada_values_in(&text), Vec::<&str>::new(), "{text}");
        assert_eq!(
            (shell.event_count, shell.pageview_count, shell.first_ms),
            (old.event_count, old.pageview_count, old.first_ms)
        );
        assert_eq!(shell.contact_id, None);
        assert_eq!(
            shell.contact_link, old.contact_link,
            "the link's kind stays"
        );
        assert!(shell.ended_ms.is_some(), "a shell is ended");
        shell_visitors.push(shell.visitor_id.clone());
        let ids = |events: &[StoredEvent]| -> Vec<(String, EventKind, i64)> {
            events
                .iter()
                .map(|stored| {
                    (
                        stored.event.id.clone(),
                        stored.event.kind,
                        stored.event.time_ms,
                    )
                })
                .collect()
        };
        assert_eq!(ids(events), ids(old_events), "events are kept as shells");
        for stored in events {
            assert_eq!(stored.visitor_id, shell.visitor_id);
            if let Some(page) = &stored.event.page {
                assert_eq!(page.url, "https://shop.example/", "the origin only");
            }
            let single = store.event(&stored.event.id).unwrap().unwrap();
            assert_eq!(ada_values_in(&format!("{single:?}")), Vec::<&str>::new());
        }
    }
    shell_visitors.sort();
    shell_visitors.dedup();
    assert_eq!(
        shell_visitors.len(),
        ada_sessions.len(),
        "one visitor id per shell"
    );
}

#[test]
fn erasing_a_contact_leaves_shells_that_count_and_name_nobody() {
    on_every_backend(SessionLimits::default(), |store| {
        let ada = ada_visits(store);
        let subject = DataSubject::Contact {
            contact_id: ada.clone(),
        };
        let export = store.subject_sessions(&subject).unwrap().unwrap();
        let ada_keys: Vec<SessionKey> = sessions_of(store, 1)
            .into_iter()
            .rev()
            .map(|session| SessionKey {
                id: session.id,
                first_ms: session.first_ms,
            })
            .collect();
        // Newest first: the linked one, and the cookie's from before she identified.
        assert_eq!(export.sessions, ada_keys);
        assert!(ada_keys[0].first_ms > ada_keys[1].first_ms);
        let ada_sessions: Vec<String> = ada_keys.into_iter().map(|key| key.id).collect();
        let before = everything(store);
        // The check can see every one of her values before the erase.
        let contact = store.contact(&ada).unwrap();
        assert_eq!(
            ada_values_in(&format!("{before:?} {contact:?}")),
            ADA_VALUES
        );

        let report = store.erase_subject(&subject).unwrap().unwrap();
        assert_eq!(
            report,
            ErasureReport {
                sessions: 2,
                events: 3,
                cookie_links: 1,
                contact_deleted: true
            }
        );
        assert_shells(store, &before, &ada_sessions);
        assert_eq!(store.contact(&ada).unwrap(), None);
        assert_eq!(store.subject_sessions(&subject).unwrap(), None);
        let cookie = DataSubject::Visitor {
            deployment_id: DEPLOYMENT.to_owned(),
            visitor_id: visitor(1),
        };
        assert_eq!(store.subject_sessions(&cookie).unwrap(), None);
        assert_eq!(
            store.erase_subject(&subject).unwrap(),
            None,
            "a second erase"
        );

        // A resent copy of an erased event is still a duplicate; a new event of the
        // cookie starts a new session that links to nobody.
        let resent = batch(
            1,
            vec![
                event(3, EventKind::Pageview, minutes(40)),
                event(4, EventKind::Pageview, minutes(42)),
            ],
        );
        assert_eq!(
            ingest(store, &resent, minutes(43)),
            [IngestOutcome::Duplicate, IngestOutcome::Accepted]
        );
        let new = sessions_of(store, 1);
        assert_eq!(new.len(), 1);
        assert!(!ada_sessions.contains(&new[0].id));
        assert_eq!(new[0].contact_id, None);
    });
}

#[test]
fn erasing_a_visitor_keeps_the_contact_but_not_the_cookie_link() {
    on_every_backend(SessionLimits::default(), |store| {
        let ada = ada_visits(store);
        let subject = DataSubject::Visitor {
            deployment_id: DEPLOYMENT.to_owned(),
            visitor_id: visitor(1),
        };
        let export = store.subject_sessions(&subject).unwrap().unwrap();
        assert_eq!(export.linked_contact_id.as_deref(), Some(ada.as_str()));
        let ada_sessions: Vec<String> = sessions_of(store, 1)
            .into_iter()
            .rev()
            .map(|session| session.id)
            .collect();
        let exported: Vec<&str> = export.sessions.iter().map(|key| key.id.as_str()).collect();
        assert_eq!(exported, ada_sessions);
        let before = everything(store);

        let report = store.erase_subject(&subject).unwrap().unwrap();
        assert_eq!(
            report,
            ErasureReport {
                sessions: 2,
                events: 3,
                cookie_links: 1,
                contact_deleted: false
            }
        );
        assert_shells(store, &before, &ada_sessions);
        let contact = store.contact(&ada).unwrap().unwrap();
        assert_eq!(contact.fields.last_name.as_deref(), Some("Lovelace"));
        assert!(
            contact
                .identifiers
                .iter()
                .all(|identifier| identifier.kind != IdentifierKind::Cookie),
            "{contact:?}"
        );
        assert_eq!(store.subject_sessions(&subject).unwrap(), None);
        assert_eq!(
            store.erase_subject(&subject).unwrap(),
            None,
            "a second erase"
        );
        // The contact itself is still a subject, now without sessions.
        let as_contact = DataSubject::Contact { contact_id: ada };
        let left = store.subject_sessions(&as_contact).unwrap().unwrap();
        assert_eq!(left.sessions, Vec::<SessionKey>::new());
    });
}

const DAY: i64 = 24 * 60 * MINUTE;

/// Visitor `number`'s session of two events starting at `start_ms`.
fn two_event_session(store: &dyn Store, number: u32, start_ms: i64) {
    let events = vec![
        event(10 * number, EventKind::Pageview, start_ms),
        event(10 * number + 1, EventKind::Record, start_ms + MINUTE),
    ];
    ingest(store, &batch(number, events), start_ms + 2 * MINUTE);
}

#[test]
fn retention_deletes_whole_sessions_oldest_first_in_chunks() {
    on_every_backend(SessionLimits::default(), |store| {
        for number in 1..=3 {
            two_event_session(store, number, minutes(i64::from(number)));
        }
        two_event_session(store, 4, T0 + 2 * DAY);
        let cutoff = T0 + DAY;
        // Nothing goes before the usage figures hold the sessions' days.
        assert_eq!(
            store
                .delete_sessions_before(DEPLOYMENT, cutoff, 10)
                .unwrap(),
            RetentionRun::default()
        );
        store.summarise_usage(utc_day(T0 + DAY)).unwrap();
        let run = store.delete_sessions_before(DEPLOYMENT, cutoff, 2).unwrap();
        assert_eq!(
            run,
            RetentionRun {
                sessions: 2,
                events: 4
            }
        );
        // The oldest went, whole; the one left is whole too.
        assert_eq!(sessions_of(store, 1).len(), 0);
        assert_eq!(sessions_of(store, 2).len(), 0);
        assert_eq!(store.event(&id(10)).unwrap(), None);
        assert_eq!(store.event(&id(21)).unwrap(), None);
        let left = &sessions_of(store, 3)[0];
        assert_eq!(event_ids(store, left), [id(30), id(31)]);
        assert_eq!(left.event_count, 2);
        // Another deployment's sessions are not this run's.
        assert_eq!(
            store
                .delete_sessions_before("elsewhere", cutoff, 10)
                .unwrap(),
            RetentionRun::default()
        );
        let run = store.delete_sessions_before(DEPLOYMENT, cutoff, 2).unwrap();
        assert_eq!(
            run,
            RetentionRun {
                sessions: 1,
                events: 2
            }
        );
        assert_eq!(
            store.delete_sessions_before(DEPLOYMENT, cutoff, 2).unwrap(),
            RetentionRun::default()
        );
        // The newer session stays.
        assert_eq!(
            event_ids(store, &sessions_of(store, 4)[0]),
            [id(40), id(41)]
        );
        // A deleted event is forgotten whole: sent again, it is stored again.
        let again = batch(1, vec![event(10, EventKind::Pageview, T0 + 2 * DAY)]);
        assert_eq!(
            ingest(store, &again, T0 + 2 * DAY + MINUTE),
            [IngestOutcome::Accepted]
        );
    });
}

#[test]
fn usage_is_summarised_per_received_day_and_refusals_are_added() {
    on_every_backend(SessionLimits::default(), |store| {
        let day = utc_day(T0);
        let midnight = (day + 1) * DAY;
        store
            .create_contact(
                &ContactFields {
                    work_email: Some("ada@example.com".to_owned()),
                    ..ContactFields::default()
                },
                T0,
            )
            .unwrap();
        two_event_session(store, 1, minutes(0));
        // Visitor 2's session runs over midnight: total on both days, new on the first.
        ingest(
            store,
            &batch(
                2,
                vec![event(20, EventKind::Pageview, midnight - 5 * MINUTE)],
            ),
            midnight - 4 * MINUTE,
        );
        ingest(
            store,
            &batch(
                2,
                vec![event(21, EventKind::Pageview, midnight + 5 * MINUTE)],
            ),
            midnight + 6 * MINUTE,
        );
        let mut identify = event(30, EventKind::Identify, minutes(3));
        identify.traits.insert(
            "email".to_owned(),
            AttributeValue::String("ada@example.com".to_owned()),
        );
        ingest(store, &batch(3, vec![identify]), minutes(4));

        assert_eq!(store.usage_summarised_until().unwrap(), None);
        assert_eq!(store.summarise_usage(day + 1).unwrap(), 1);
        assert_eq!(store.usage_summarised_until().unwrap(), Some(day + 1));
        assert_eq!(store.summarise_usage(day + 1).unwrap(), 0, "once a day");
        let figure = |day: i64, metric: &str, count: u64| UsageCount {
            deployment_id: DEPLOYMENT.to_owned(),
            day,
            metric: metric.to_owned(),
            count,
        };
        let first_day = vec![
            figure(day, "accepted.identify", 1),
            figure(day, "accepted.pageview", 2),
            figure(day, "accepted.record", 1),
            figure(day, "sessions.identified", 1),
            figure(day, "sessions.new", 3),
            figure(day, "sessions.total", 3),
        ];
        assert_eq!(store.usage_counts(None, day, day + 5).unwrap(), first_day);
        assert_eq!(store.summarise_usage(day + 2).unwrap(), 1);
        let mut expected = first_day.clone();
        expected.extend([
            figure(day + 1, "accepted.pageview", 1),
            figure(day + 1, "sessions.identified", 0),
            figure(day + 1, "sessions.new", 0),
            figure(day + 1, "sessions.total", 1),
        ]);
        assert_eq!(store.usage_counts(None, day, day + 5).unwrap(), expected);

        // Refusals are added to what is there.
        let refused = |count: u64| vec![figure(day + 2, "refused.rate_limited", count)];
        store.add_usage_counts(&refused(3)).unwrap();
        store.add_usage_counts(&refused(2)).unwrap();
        store.add_usage_counts(&[]).unwrap();
        assert_eq!(
            store
                .usage_counts(Some(DEPLOYMENT), day + 2, day + 2)
                .unwrap(),
            refused(5)
        );
        assert_eq!(
            store.usage_counts(Some("elsewhere"), day, day + 5).unwrap(),
            []
        );
        assert_eq!(
            store.usage_counts(None, day + 1, day + 1).unwrap(),
            expected[6..]
        );
    });
}
