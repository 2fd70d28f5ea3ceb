//! The PostgreSQL backend: the throwaway cluster the contract suite's `postgres` line
//! runs on, and the cases where PostgreSQL differs from SQLite: several transactions
//! (as from several collectors) at once on one database, partitions and migrations.
//!
//! One cluster per test binary (started on first use under Cargo's target folder and
//! stopped when the binary ends), a fresh database per case.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier, OnceLock};

use footpath_collector::model::{IngestOutcome, NewBatch, NewEvent, SessionFilter};
use footpath_collector::privacy::{DataSubject, PrivacyStore};
use footpath_collector::store::{PostgresSettings, PostgresStore, SessionLimits, Store};
use footpath_pgcluster::Cluster;
use footpath_protocol::v1::{EventKind, Map, Page};

const MINUTE: i64 = 60_000;
const TIMEOUT: i64 = 20 * MINUTE;
/// 2026-11-24, as in the contract suite.
const T0: i64 = 1_795_500_000_000;

pub(crate) fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let cluster = Cluster::start(Path::new(env!("CARGO_TARGET_TMPDIR")))
            .expect("a throwaway PostgreSQL cluster (`cargo xtask setup` installs PostgreSQL)");
        // A static is never dropped: the cluster goes when the test binary ends.
        cluster.stop_when_process_ends().unwrap();
        cluster
    })
}

/// The URL of a new, empty database of the shared cluster.
pub(crate) fn fresh_database() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!("case_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    cluster().create_database(&name).unwrap()
}

fn open(url: &str, limits: SessionLimits) -> PostgresStore {
    PostgresStore::open(url, PostgresSettings::default(), limits, T0).unwrap()
}

/// The contract suite's `postgres` backend (the folder is SQLite's business).
pub(crate) fn open_postgres(_dir: &Path, limits: SessionLimits) -> Arc<dyn Store> {
    Arc::new(open(&fresh_database(), limits))
}

/// Two store instances on one fresh database, as two collectors would have.
pub(crate) fn open_postgres_twice(_dir: &Path, limits: SessionLimits) -> [Arc<dyn Store>; 2] {
    let url = fresh_database();
    [Arc::new(open(&url, limits)), Arc::new(open(&url, limits))]
}

fn visitor(number: u32) -> String {
    format!("5c0a7e55-0000-4000-8000-{number:012}")
}

fn event(number: u32, time_ms: i64) -> NewEvent {
    NewEvent {
        id: format!("00000000-0000-7000-8000-{number:012}"),
        kind: EventKind::Pageview,
        name: "page_viewed".to_owned(),
        time_ms,
        client_time_ms: time_ms,
        received_ms: time_ms,
        page: Some(Page {
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
        deployment_id: "pg".to_owned(),
        visitor_id: visitor(visitor_number),
        events,
        require_verified_identity: false,
    }
}

/// Runs `work(thread number)` on `threads` threads that start together.
fn at_once<T: Send>(threads: usize, work: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let barrier = Barrier::new(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|number| {
                let (barrier, work) = (&barrier, &work);
                scope.spawn(move || {
                    barrier.wait();
                    work(number)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    })
}

#[test]
fn two_batches_of_one_visitor_at_once_land_in_one_session() {
    // Two collectors each get one event of the visitor at the same moment: without
    // the visitor's lock both would find no session and make one each.
    let store = open(&fresh_database(), SessionLimits::default());
    for round in 0..20_u32 {
        let outcomes = at_once(2, |thread| {
            let number = round * 2 + u32::try_from(thread).unwrap() + 1;
            let batch = batch(round, vec![event(number, T0 + i64::from(number) * 1000)]);
            store.ingest(&batch, T0 + MINUTE, TIMEOUT).unwrap()
        });
        assert_eq!(
            outcomes,
            [[IngestOutcome::Accepted], [IngestOutcome::Accepted]]
        );
        let filter = SessionFilter {
            visitor_id: Some(visitor(round)),
            ..SessionFilter::default()
        };
        let sessions = store.sessions(&filter, None, 10).unwrap().items;
        let counts: Vec<u64> = sessions.iter().map(|session| session.event_count).collect();
        assert_eq!(counts, [2], "round {round}");
    }
}

#[test]
fn the_same_event_sent_twice_at_once_is_stored_once() {
    let store = open(&fresh_database(), SessionLimits::default());
    for round in 0..10_u32 {
        // The same event from the same visitor (a retry racing its original), and the
        // same event id under another visitor too, which the visitor's lock does not
        // serialise: only the id's claim does.
        let number = 1000 + round;
        let outcomes = at_once(4, |thread| {
            let visitor_number = if thread < 2 { 1 } else { 2 };
            let batch = batch(visitor_number, vec![event(number, T0)]);
            store.ingest(&batch, T0 + MINUTE, TIMEOUT).unwrap()[0]
        });
        let accepted = outcomes
            .iter()
            .filter(|outcome| **outcome == IngestOutcome::Accepted)
            .count();
        assert_eq!(accepted, 1, "round {round}: {outcomes:?}");
        let id = event(number, T0).id;
        let stored = store.event(&id).unwrap().unwrap();
        assert_eq!(stored.event.id, id);
    }
    let total: u64 = store
        .sessions(&SessionFilter::default(), None, 100)
        .unwrap()
        .items
        .iter()
        .map(|session| session.event_count)
        .sum();
    assert_eq!(total, 10);
}

#[test]
fn short_ids_stay_unique_when_sessions_are_made_at_once() {
    // Sixteen new sessions at once in a space of twenty numbers.
    let limits = SessionLimits {
        short_id_space: (1000, 1019),
        ..SessionLimits::default()
    };
    let store = open(&fresh_database(), limits);
    at_once(16, |thread| {
        let number = u32::try_from(thread).unwrap();
        store
            .ingest(&batch(number, vec![event(number, T0)]), T0, TIMEOUT)
            .unwrap()
    });
    let short_ids: BTreeSet<String> = store
        .sessions(&SessionFilter::default(), None, 100)
        .unwrap()
        .items
        .into_iter()
        .map(|session| session.short_id)
        .collect();
    assert_eq!(short_ids.len(), 16, "{short_ids:?}");
}

#[test]
fn events_go_to_their_months_partition() {
    let url = fresh_database();
    let database = url.rsplit('/').next().unwrap().to_owned();
    let store = open(&url, SessionLimits::default());
    // T0 is in November 2026: its month, the one before and the two after are made.
    let in_month = |days: i64| T0 + days * 24 * 60 * MINUTE;
    for (number, time_ms) in [(1, in_month(0)), (2, in_month(-30)), (3, in_month(20))] {
        store
            .ingest(
                &batch(number, vec![event(number, time_ms)]),
                time_ms,
                TIMEOUT,
            )
            .unwrap();
    }
    // Far in the future: no partition of its own.
    store
        .ingest(&batch(4, vec![event(4, in_month(400))]), T0, TIMEOUT)
        .unwrap();
    let placed = cluster()
        .psql(
            &database,
            "SELECT string_agg(tableoid::regclass::text, ',' ORDER BY id) FROM events",
        )
        .unwrap();
    assert_eq!(
        placed.trim(),
        "events_y2026m11,events_y2026m10,events_y2026m12,events_default"
    );
    let partitions = cluster()
        .psql(
            &database,
            "SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass",
        )
        .unwrap();
    assert_eq!(
        partitions.trim(),
        "events_default,events_y2026m10,events_y2026m11,events_y2026m12,events_y2027m01"
    );
    // The sweep makes the months ahead of a later now.
    store.close_idle_sessions(in_month(62), TIMEOUT).unwrap();
    let ahead = cluster()
        .psql(
            &database,
            "SELECT to_regclass('events_y2027m03') IS NOT NULL",
        )
        .unwrap();
    assert_eq!(ahead.trim(), "t");
}

#[test]
fn collectors_starting_together_migrate_once() {
    let url = fresh_database();
    let stores = at_once(4, |_| open(&url, SessionLimits::default()));
    for store in &stores {
        store.check_ready().unwrap();
    }
    let database = url.rsplit('/').next().unwrap();
    let applied = cluster()
        .psql(database, "SELECT count(*) FROM footpath_schema_history")
        .unwrap();
    // Each migration file once, however many collectors ran them.
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count();
    assert_eq!(applied.trim(), files.to_string());
}

#[tokio::test]
async fn the_collector_runs_on_postgres_by_its_database_url() {
    use crate::support::{batch as sdk_batch, pageview, TestApp, T0 as APP_T0, VISITOR};
    let url = fresh_database();
    let app = TestApp::with_config(|config| config.database_url = Some(url.clone()));
    app.post_batch(&sdk_batch(
        VISITOR,
        APP_T0,
        vec![
            pageview(1, APP_T0, "https://shop.example/"),
            pageview(2, APP_T0 + 1000, "https://shop.example/cart"),
        ],
    ))
    .await
    .ok_json();
    let session = app.only_session_of(VISITOR).await;
    assert_eq!(session["eventCount"], 2, "{session:#}");
    let ready = app.get("/readyz").await.ok_json();
    assert_eq!(ready["status"], "ready");
    // Nothing went to the SQLite file that `database_path` names.
    assert!(!app.dir.path().join("test.sqlite3").exists());
    // Dropped inside the async test: the store closes its connections off the runtime.
    drop(app);
}

#[test]
fn one_customers_sign_ins_from_many_visitors_at_once_stay_consistent() {
    use footpath_collector::contacts::{ContactFields, EmailAddress};
    use footpath_collector::identity::{IdentityProof, LinkKind, VerifiedIdentity};
    use footpath_collector::model::IdentifierKind;
    // Eight browsers of one customer sign in at the same moment, each with a token
    // bound to its visitor: each adds its cookie to the contact and rewrites the
    // contact's fields from its claims, under the contact's lock.
    let store = open(&fresh_database(), SessionLimits::default());
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
    let outcomes = at_once(8, |thread| {
        let number = u32::try_from(thread).unwrap() + 1;
        let mut identify = event(number, T0);
        identify.kind = EventKind::Identify;
        identify.name = "identify".to_owned();
        identify.identity_verified = true;
        identify.identity_proof = IdentityProof::Valid(VerifiedIdentity {
            login_id: Some("ada".to_owned()),
            email: EmailAddress::parse("ada@example.com"),
            phone: None,
            first_name: Some(format!("Ada{number}")),
            last_name: None,
            bound_to_visitor: true,
        });
        store
            .ingest(&batch(number, vec![identify]), T0 + MINUTE, TIMEOUT)
            .unwrap()
    });
    assert!(outcomes
        .iter()
        .all(|outcome| *outcome == [IngestOutcome::Accepted]));
    let contact = store.contact(&ada.id).unwrap().unwrap();
    let cookies: BTreeSet<&str> = contact
        .identifiers
        .iter()
        .filter(|identifier| identifier.kind == IdentifierKind::Cookie)
        .map(|identifier| identifier.value.as_str())
        .collect();
    let expected: BTreeSet<String> = (1..=8).map(visitor).collect();
    assert_eq!(
        cookies,
        expected.iter().map(String::as_str).collect::<BTreeSet<_>>()
    );
    let emails = contact
        .identifiers
        .iter()
        .filter(|identifier| identifier.kind == IdentifierKind::Email)
        .count();
    assert_eq!(emails, 1, "{contact:?}");
    let name = contact.fields.first_name.unwrap();
    assert!(
        (1..=8).any(|number| name == format!("Ada{number}")),
        "{name}"
    );
    for number in 1..=8 {
        let filter = SessionFilter {
            visitor_id: Some(visitor(number)),
            ..SessionFilter::default()
        };
        let sessions = store.sessions(&filter, None, 10).unwrap().items;
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].contact_id.as_deref(), Some(ada.id.as_str()));
        assert_eq!(sessions[0].contact_link, Some(LinkKind::Verified));
        assert!(sessions[0].authenticated);
    }
}

#[test]
fn one_customers_visitors_at_once_count_customer_patterns_once_each() {
    use footpath_collector::contacts::ContactFields;
    use footpath_collector::segments::{definition, DefinitionKind, DefinitionStore};
    use footpath_protocol::v1::AttributeValue;
    // Four browsers of one contact send pageviews at the same moments. A Customer-scope
    // count is read and written back by each batch: without the contact's lock two
    // batches would read the same count and one increment would be lost, and the
    // 20th pageview would never meet the pattern.
    const THREADS: u32 = 4;
    const ROUNDS: u32 = 5;
    let store = open(&fresh_database(), SessionLimits::default());
    store
        .create_contact(
            &ContactFields {
                work_email: Some("ada@example.com".to_owned()),
                ..ContactFields::default()
            },
            T0,
        )
        .unwrap();
    let definition = definition::parse(
        DefinitionKind::Segment,
        &serde_json::json!({"displayName": "Busy", "color": "#000000", "scope": "Customer",
            "journey": {"patterns": [{"eventName": "page_viewed",
                                       "count": THREADS * ROUNDS}]}}),
    )
    .unwrap();
    store.create_definition(&definition, T0).unwrap();
    for number in 1..=THREADS {
        let mut identify = event(1000 + number, T0);
        identify.kind = EventKind::Identify;
        identify.name = "identify".to_owned();
        identify.page = None;
        identify.traits.insert(
            "email".to_owned(),
            AttributeValue::String("ada@example.com".to_owned()),
        );
        store
            .ingest(&batch(number, vec![identify]), T0 + MINUTE, TIMEOUT)
            .unwrap();
    }
    for round in 0..ROUNDS {
        at_once(THREADS as usize, |thread| {
            let visitor_number = u32::try_from(thread).unwrap() + 1;
            let number = round * THREADS + visitor_number;
            let pageview = event(number, T0 + i64::from(number) * 1000);
            store
                .ingest(&batch(visitor_number, vec![pageview]), T0 + MINUTE, TIMEOUT)
                .unwrap()
        });
    }
    let assigned: usize = (1..=THREADS)
        .map(|number| {
            let filter = SessionFilter {
                visitor_id: Some(visitor(number)),
                ..SessionFilter::default()
            };
            let sessions = store.sessions(&filter, None, 10).unwrap().items;
            assert_eq!(sessions.len(), 1);
            assert!(sessions[0].contact_id.is_some());
            sessions[0].segment_assignments.len()
        })
        .sum();
    assert_eq!(assigned, 1, "the 20th pageview meets the pattern, once");
}

#[test]
fn a_busy_events_table_delays_new_partitions_but_not_the_sweep() {
    let url = fresh_database();
    let database = url.rsplit('/').next().unwrap().to_owned();
    let store = open(&url, SessionLimits::default());
    store
        .ingest(&batch(1, vec![event(1, T0)]), T0, TIMEOUT)
        .unwrap();
    // A long read holds the events table: making a partition would wait for it.
    let mut reader = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let mut long_read = reader.transaction().unwrap();
    long_read.query("SELECT count(*) FROM events", &[]).unwrap();
    let months_later = T0 + 62 * 24 * 60 * MINUTE;
    let started = std::time::Instant::now();
    assert_eq!(store.close_idle_sessions(months_later, TIMEOUT).unwrap(), 1);
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let made = || {
        cluster()
            .psql(
                &database,
                "SELECT to_regclass('events_y2027m03') IS NOT NULL",
            )
            .unwrap()
            .trim()
            .to_owned()
    };
    assert_eq!(made(), "f");
    // Once the read is over, the next sweep makes it.
    long_read.commit().unwrap();
    store.close_idle_sessions(months_later, TIMEOUT).unwrap();
    assert_eq!(made(), "t");
}

#[test]
fn an_erase_waits_for_a_batch_of_the_same_visitor() {
    let url = fresh_database();
    let store = open(&url, SessionLimits::default());
    store
        .ingest(&batch(1, vec![event(1, T0)]), T0, TIMEOUT)
        .unwrap();
    // Another collector's batch of the visitor, in its transaction: it holds the
    // visitor's lock, as every batch does first (LockSpace::Visitor is 1, the key
    // "deployment\nvisitor").
    let mut collector = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let mut batch_in_progress = collector.transaction().unwrap();
    batch_in_progress
        .execute(
            "SELECT pg_advisory_xact_lock(1, hashtext($1))",
            &[&format!("pg\n{}", visitor(1))],
        )
        .unwrap();
    let mut watcher = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let subject = DataSubject::Visitor {
        deployment_id: "pg".to_owned(),
        visitor_id: visitor(1),
    };
    std::thread::scope(|scope| {
        let erase = scope.spawn(|| store.erase_subject(&subject));
        // The erase must come to wait for that lock, not run under the batch.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let waiting: i64 = watcher
                .query_one(
                    "SELECT count(*) FROM pg_locks
                     WHERE locktype = 'advisory' AND NOT granted AND classid = 1
                       AND database = (SELECT oid FROM pg_database
                                       WHERE datname = current_database())",
                    &[],
                )
                .unwrap()
                .get(0);
            if waiting > 0 {
                break;
            }
            assert!(
                !erase.is_finished(),
                "the erase ran without waiting for the visitor's batch"
            );
            assert!(
                std::time::Instant::now() < deadline,
                "the erase never waited"
            );
            // Polling another process's state: there is no clock to inject here.
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let untouched: i64 = watcher
            .query_one(
                "SELECT count(*) FROM sessions WHERE visitor_id = $1",
                &[&visitor(1)],
            )
            .unwrap()
            .get(0);
        assert_eq!(untouched, 1, "nothing is erased while the batch runs");
        batch_in_progress.commit().unwrap();
        let report = erase.join().unwrap().unwrap().unwrap();
        assert_eq!((report.sessions, report.events), (1, 1));
    });
    assert_eq!(store.erase_subject(&subject).unwrap(), None);
}

#[test]
fn the_lookup_tables_get_statistics_before_autovacuum_would() {
    // A generic plan made while the sessions table had no statistics may find a
    // visitor's sessions by scanning the whole deployment's: the store analyzes the
    // lookup tables itself once they hold enough rows (see `FirstStatistics`).
    let url = fresh_database();
    let database = url.rsplit('/').next().unwrap().to_owned();
    let store = open(&url, SessionLimits::default());
    // Only the store may analyze here, not autovacuum, whenever it wakes up.
    cluster()
        .psql(
            &database,
            "ALTER TABLE sessions SET (autovacuum_enabled = false);
             ALTER TABLE event_ids SET (autovacuum_enabled = false)",
        )
        .unwrap();
    let analyzed = || {
        cluster()
            .psql(
                &database,
                "SELECT string_agg(relname::text, ',' ORDER BY relname) FROM pg_stat_user_tables
                 WHERE relname IN ('sessions', 'event_ids') AND last_analyze IS NOT NULL",
            )
            .unwrap()
            .trim()
            .to_owned()
    };
    assert_eq!(
        analyzed(),
        "",
        "nothing is analyzed while the tables are small"
    );
    at_once(4, |thread| {
        for n in 0..400_u32 {
            let number = u32::try_from(thread).unwrap() * 400 + n + 1;
            let batch = batch(number, vec![event(number, T0 + i64::from(number))]);
            store.ingest(&batch, T0 + MINUTE, TIMEOUT).unwrap();
        }
    });
    // The statistics are given after the answers, by a writer thread: wait for them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while analyzed() != "event_ids,sessions" {
        assert!(
            std::time::Instant::now() < deadline,
            "after 1,600 sessions: analyzed {:?}",
            analyzed()
        );
        // One more batch gives a writer its next look.
        for number in 0..500_u32 {
            let number = 10_000 + number;
            let batch = batch(number, vec![event(number, T0 + i64::from(number))]);
            store.ingest(&batch, T0 + MINUTE, TIMEOUT).unwrap();
        }
    }
}

const DAY: i64 = 24 * 60 * MINUTE;
/// 2026-10-01T00:00:00Z and 2026-11-01T00:00:00Z: October's partition, which the store
/// makes when it opens at T0 (in November).
const OCTOBER: i64 = 1_790_812_800_000;
const NOVEMBER: i64 = 1_793_491_200_000;

/// Stores one session of `visitor_number` in `deployment` with an event at each time.
fn session_in(
    store: &PostgresStore,
    deployment: &str,
    visitor_number: u32,
    times_ms: &[i64],
) -> String {
    let events = times_ms
        .iter()
        .zip(0..)
        .map(|(&time_ms, n)| event(visitor_number * 100 + n, time_ms))
        .collect();
    let mut batch = batch(visitor_number, events);
    batch.deployment_id = deployment.to_owned();
    let outcomes = store
        .ingest(&batch, *times_ms.last().unwrap(), TIMEOUT)
        .unwrap();
    assert!(outcomes.iter().all(|o| *o == IngestOutcome::Accepted));
    let filter = SessionFilter {
        visitor_id: Some(visitor(visitor_number)),
        ..SessionFilter::default()
    };
    let sessions = store.sessions(&filter, None, 10).unwrap().items;
    assert_eq!(sessions.len(), 1, "visitor {visitor_number}");
    sessions[0].id.clone()
}

fn psql(database: &str, sql: &str) -> String {
    cluster().psql(database, sql).unwrap().trim().to_owned()
}

fn listed_visitors(store: &PostgresStore) -> BTreeSet<String> {
    store
        .sessions(&SessionFilter::default(), None, 100)
        .unwrap()
        .items
        .into_iter()
        .map(|session| session.visitor_id)
        .collect()
}

#[test]
fn retention_drops_a_month_whose_every_session_is_past_it() {
    use footpath_collector::privacy::{RetentionPolicy, RetentionRun};
    use footpath_collector::usage::{utc_day, UsageStore};
    let url = fresh_database();
    let database = url.rsplit('/').next().unwrap().to_owned();
    let store = open(&url, SessionLimits::default());
    let one = session_in(&store, "pg", 1, &[OCTOBER + 9 * DAY]);
    let two = session_in(&store, "shop", 2, &[OCTOBER + 14 * DAY]);
    session_in(&store, "pg", 4, &[T0]);
    let cutoff = NOVEMBER + DAY;
    let policy = |settled_before_ms: i64| RetentionPolicy {
        cutoffs_ms: [("pg".to_owned(), cutoff), ("shop".to_owned(), cutoff)].into(),
        settled_before_ms,
    };
    // Nothing goes before the usage figures hold the month's days.
    assert_eq!(
        store.drop_expired_partitions(&policy(cutoff), 5).unwrap(),
        RetentionRun::default()
    );
    // Over the month's end: its November event goes with it, row by row.
    let three = session_in(
        &store,
        "pg",
        3,
        &[NOVEMBER - 5 * MINUTE, NOVEMBER + 5 * MINUTE],
    );
    // What segment evaluation keeps per session (not yet made by this backend's
    // ingest), so that the drop is seen to remove it as the row path does.
    for session_id in [&one, &three] {
        psql(
            &database,
            &format!(
                "INSERT INTO session_segment_assignments VALUES
                     ('{session_id}', 'seg', 'pg', 'v', 'a', 'Viewers', '#000000', true, 0, 'e');
                 INSERT INTO session_outcome_achievements VALUES
                     ('{session_id}', 'out', 'pg', 'v', 'a', 'Bought', 1, true, NULL, 0, 'e');
                 INSERT INTO session_visit_evaluations VALUES ('{session_id}', 'f');
                 INSERT INTO journey_pattern_counts VALUES ('session:{session_id}', 'seg', 1, 0, 1)"
            ),
        );
    }
    let october_exists = || {
        psql(
            &database,
            "SELECT to_regclass('events_y2026m10') IS NOT NULL",
        )
    };
    store.summarise_usage(utc_day(cutoff)).unwrap();
    let usage_before = psql(&database, "SELECT string_agg(deployment_id || day || metric || count, ',' ORDER BY 1) FROM usage_counts");
    // Nor while an event could still land in the month.
    assert_eq!(
        store
            .drop_expired_partitions(&policy(NOVEMBER - MINUTE), 5)
            .unwrap(),
        RetentionRun::default()
    );
    assert_eq!(october_exists(), "t");

    let run = store.drop_expired_partitions(&policy(cutoff), 5).unwrap();
    assert_eq!(
        run,
        RetentionRun {
            sessions: 3,
            events: 4
        }
    );
    assert_eq!(october_exists(), "f");
    assert_eq!(
        psql(
            &database,
            "SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass"
        ),
        "events_default,events_y2026m11,events_y2026m12,events_y2027m01"
    );
    // The sessions and everything that pointed at their events are gone; the newer
    // month is untouched.
    assert_eq!(listed_visitors(&store), BTreeSet::from([visitor(4)]));
    for gone in [&one, &two, &three] {
        assert!(store.session(gone).unwrap().is_none());
    }
    for table in [
        "session_segment_assignments",
        "session_outcome_achievements",
        "session_visit_evaluations",
    ] {
        assert_eq!(
            psql(&database, &format!("SELECT count(*) FROM {table}")),
            "0"
        );
    }
    assert_eq!(
        psql(&database, "SELECT count(*) FROM journey_pattern_counts"),
        "0"
    );
    assert_eq!(
        psql(&database, "SELECT string_agg(id, ',') FROM event_ids"),
        event(400, T0).id
    );
    assert_eq!(psql(&database, "SELECT count(*) FROM events"), "1");
    // The usage figures keep counting what went.
    assert_eq!(
        psql(&database, "SELECT string_agg(deployment_id || day || metric || count, ',' ORDER BY 1) FROM usage_counts"),
        usage_before
    );
    // The row path finds nothing left of it, and a second drop has nothing to do.
    assert_eq!(
        store.delete_sessions_before("pg", cutoff, 10).unwrap(),
        RetentionRun::default()
    );
    assert_eq!(
        store.drop_expired_partitions(&policy(cutoff), 5).unwrap(),
        RetentionRun::default()
    );
    // A dropped event's id is forgotten, as on the row path: sent again, it is stored.
    let again = batch(1, vec![event(100, T0)]);
    assert_eq!(
        store.ingest(&again, T0, TIMEOUT).unwrap(),
        [IngestOutcome::Accepted]
    );
}

#[test]
fn retention_keeps_a_month_that_another_deployment_still_keeps() {
    use footpath_collector::privacy::{RetentionPolicy, RetentionRun};
    use footpath_collector::usage::{utc_day, UsageStore};
    let cutoff = NOVEMBER + DAY;
    // The deployment beside "pg" in October: one without retention, one that keeps
    // longer, and one without retention whose only session there began in September
    // (which the cheap look at sessions' starts does not see; the scan of the month
    // does).
    let cases: [(&str, Option<i64>, i64); 3] = [
        ("keep", None, OCTOBER + 14 * DAY),
        ("long", Some(OCTOBER - DAY), OCTOBER + 14 * DAY),
        ("keep", None, OCTOBER - 5 * MINUTE),
    ];
    for (other, other_cutoff, other_start) in cases {
        let url = fresh_database();
        let database = url.rsplit('/').next().unwrap().to_owned();
        let store = open(&url, SessionLimits::default());
        session_in(
            &store,
            "pg",
            1,
            &[OCTOBER + 9 * DAY, OCTOBER + 9 * DAY + MINUTE],
        );
        session_in(&store, other, 2, &[other_start, other_start + 10 * MINUTE]);
        store.summarise_usage(utc_day(cutoff)).unwrap();
        let mut cutoffs_ms = std::collections::BTreeMap::from([("pg".to_owned(), cutoff)]);
        if let Some(other_cutoff) = other_cutoff {
            cutoffs_ms.insert(other.to_owned(), other_cutoff);
        }
        let policy = RetentionPolicy {
            cutoffs_ms,
            settled_before_ms: cutoff,
        };
        assert_eq!(
            store.drop_expired_partitions(&policy, 5).unwrap(),
            RetentionRun::default(),
            "{other} from {other_start}"
        );
        assert_eq!(
            psql(
                &database,
                "SELECT to_regclass('events_y2026m10') IS NOT NULL"
            ),
            "t"
        );
        // The row path deletes what is past retention, as before.
        assert_eq!(
            store.delete_sessions_before("pg", cutoff, 10).unwrap(),
            RetentionRun {
                sessions: 1,
                events: 2
            }
        );
        assert_eq!(listed_visitors(&store), BTreeSet::from([visitor(2)]));
        assert_eq!(
            psql(&database, "SELECT count(*) FROM events_y2026m10"),
            if other_start < OCTOBER { "1" } else { "2" }
        );
        assert_eq!(psql(&database, "SELECT count(*) FROM event_ids"), "2");
    }
}

/// One housekeeping run, off the runtime as the background task runs it (the
/// PostgreSQL client blocks).
async fn housekeeping(app: &crate::support::TestApp) -> footpath_collector::privacy::RetentionRun {
    let state = app.state.clone();
    tokio::task::spawn_blocking(move || state.run_housekeeping())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn the_housekeeping_run_drops_months_past_retention() {
    use crate::support::{
        batch as sdk_batch, pageview, TestApp, DEPLOYMENT, T0 as APP_T0, VISITOR,
    };
    let url = fresh_database();
    let database = url.rsplit('/').next().unwrap().to_owned();
    let app = TestApp::with_config(|config| {
        config.database_url = Some(url.clone());
        config.deployment_privacy = vec![footpath_collector::config::DeploymentPrivacyConfig {
            retention_days: Some(30),
            ..footpath_collector::config::DeploymentPrivacyConfig::default_for(DEPLOYMENT)
        }];
    });
    app.post_batch(&sdk_batch(
        VISITOR,
        APP_T0,
        vec![
            pageview(1, APP_T0, "https://shop.example/"),
            pageview(2, APP_T0 + 1000, "https://shop.example/cart"),
        ],
    ))
    .await
    .ok_json();
    let session_id = app.only_session_of(VISITOR).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let exists = |name: &str| {
        psql(
            &database,
            &format!("SELECT to_regclass('{name}') IS NOT NULL"),
        )
    };
    // Twenty-nine days on, the session is within the deployment's retention: only the
    // empty October goes.
    app.clock.set_ms(APP_T0 + 29 * DAY);
    let run = housekeeping(&app).await;
    assert_eq!((run.sessions, run.events), (0, 0));
    assert_eq!(exists("events_y2026m10"), "f");
    assert_eq!(exists("events_y2026m11"), "t");
    // Thirty days after November ended and a few more: November goes whole.
    app.clock.set_ms(NOVEMBER + 65 * DAY);
    let run = housekeeping(&app).await;
    assert_eq!((run.sessions, run.events), (1, 2));
    assert_eq!(exists("events_y2026m11"), "f");
    assert_eq!(exists("events_y2026m12"), "t");
    assert_eq!(exists("events_default"), "t");
    app.get(&format!("/api/v2/journey/sessions/{session_id}"))
        .await
        .assert_error(axum::http::StatusCode::NOT_FOUND, "not.found");
    assert!(app.sessions_of(VISITOR).await.is_empty());
    // The usage figures still count the day.
    assert_eq!(
        psql(
            &database,
            "SELECT sum(count) FROM usage_counts WHERE metric = 'sessions.total'"
        ),
        "1"
    );
    drop(app);
}

#[test]
fn a_long_read_of_the_events_leaves_a_month_for_the_next_run() {
    use footpath_collector::privacy::{RetentionPolicy, RetentionRun};
    use footpath_collector::usage::{utc_day, UsageStore};
    let url = fresh_database();
    let database = url.rsplit('/').next().unwrap().to_owned();
    let store = open(&url, SessionLimits::default());
    session_in(&store, "pg", 1, &[OCTOBER + 9 * DAY]);
    let cutoff = NOVEMBER + DAY;
    store.summarise_usage(utc_day(cutoff)).unwrap();
    let policy = RetentionPolicy {
        cutoffs_ms: [("pg".to_owned(), cutoff)].into(),
        settled_before_ms: cutoff,
    };
    // A read holds the events table: dropping a partition would wait for it, and hold
    // up ingest behind it meanwhile, so the drop gives up and undoes its deletes.
    let mut reader = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let mut long_read = reader.transaction().unwrap();
    long_read.query("SELECT count(*) FROM events", &[]).unwrap();
    assert_eq!(
        store.drop_expired_partitions(&policy, 5).unwrap(),
        RetentionRun::default()
    );
    assert_eq!(
        psql(
            &database,
            "SELECT to_regclass('events_y2026m10') IS NOT NULL"
        ),
        "t"
    );
    assert_eq!(listed_visitors(&store), BTreeSet::from([visitor(1)]));
    // Once the read is over, the next run drops it.
    long_read.commit().unwrap();
    assert_eq!(
        store.drop_expired_partitions(&policy, 5).unwrap(),
        RetentionRun {
            sessions: 1,
            events: 1
        }
    );
    assert!(listed_visitors(&store).is_empty());
}

#[test]
fn queued_batches_stored_together_keep_every_visitor_in_one_session() {
    // The writers store what is queued behind a batch in the same transaction (a
    // savepoint each): two batches of one visitor may share it, or not, and each
    // event must still be stored once, in the visitor's one session.
    let store = open(&fresh_database(), SessionLimits::default());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let visitors = 60_u32;
    let replies: Vec<_> = (0..2_u32)
        .flat_map(|round| (1..=visitors).map(move |visitor| (round, visitor)))
        .map(|(round, visitor)| {
            let number = visitor * 10 + round;
            let batch = batch(
                visitor,
                vec![event(
                    number,
                    T0 + i64::from(round) * MINUTE + i64::from(visitor),
                )],
            );
            store
                .enqueue_ingest(batch, T0 + 2 * MINUTE, TIMEOUT)
                .unwrap()
        })
        .collect();
    for reply in replies {
        assert_eq!(
            runtime.block_on(reply).unwrap().unwrap(),
            [IngestOutcome::Accepted]
        );
    }
    for visitor_number in 1..=visitors {
        let filter = SessionFilter {
            visitor_id: Some(visitor(visitor_number)),
            ..SessionFilter::default()
        };
        let sessions = store.sessions(&filter, None, 10).unwrap().items;
        let counts: Vec<u64> = sessions.iter().map(|session| session.event_count).collect();
        assert_eq!(counts, [2], "visitor {visitor_number}");
    }
}

/// `sslmode=require` (or `verify-full`) connects over TLS, with the server's certificate
/// checked against `sslrootcert` and its name against the URL's host; a certificate
/// from an authority the collector was not told of, or for another name, is refused.
/// A cluster of its own, so that the shared one's configuration stays as it is.
#[test]
fn tls_is_verified_when_the_url_asks_for_it() {
    let folder = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(Path::new(env!("CARGO_TARGET_TMPDIR"))).unwrap();
    let authority_key = rcgen::KeyPair::generate().unwrap();
    let mut authority = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    authority.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    authority
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Footpath test authority");
    let authority = rcgen::CertifiedIssuer::self_signed(authority, authority_key).unwrap();
    // For 127.0.0.1 only: `localhost` is another name.
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &authority)
        .unwrap();
    cluster
        .enable_tls(&server.pem(), &server_key.serialize_pem())
        .unwrap();
    let roots = folder.path().join("authority.pem");
    std::fs::write(&roots, authority.pem()).unwrap();
    let url = cluster.create_database("tls").unwrap();
    // The database's connections: (over TLS, without).
    let backends = || -> (u32, u32) {
        let counts = cluster
            .psql(
                "postgres",
                "SELECT count(*) FILTER (WHERE ssl) || ' ' || count(*) FILTER (WHERE NOT ssl) \
                 FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE datname = 'tls'",
            )
            .unwrap();
        let (encrypted, plain) = counts.trim().split_once(' ').unwrap();
        (encrypted.parse().unwrap(), plain.parse().unwrap())
    };

    for (number, mode) in (1..).zip(["require", "verify-full", "verify-ca"]) {
        let store = PostgresStore::open(
            &format!("{url}?sslmode={mode}&sslrootcert={}", roots.display()),
            PostgresSettings::default(),
            SessionLimits::default(),
            T0,
        )
        .unwrap_or_else(|error| panic!("{mode}: {error}\n{}", cluster.log()));
        let outcome = store
            .ingest(&batch(1, vec![event(number, T0)]), T0, TIMEOUT)
            .unwrap();
        assert_eq!(outcome, [IngestOutcome::Accepted], "{mode}");
        let (encrypted, plain) = backends();
        assert!(encrypted >= 1, "{mode}: {encrypted} connections over TLS");
        assert_eq!(plain, 0, "{mode}: connections without TLS");
        drop(store);
    }

    let refused = |url: String| {
        PostgresStore::open(
            &url,
            PostgresSettings::default(),
            SessionLimits::default(),
            T0,
        )
        .map(|_| ())
        .unwrap_err()
        .to_string()
    };
    // The system's roots do not know the test authority.
    let unknown = refused(format!("{url}?sslmode=require"));
    assert!(unknown.contains("UnknownIssuer"), "{unknown}");
    // The right authority, the wrong name.
    let other_name = refused(format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        url.replace("127.0.0.1", "localhost"),
        roots.display()
    ));
    assert!(
        other_name.contains("certificate not valid for name \"localhost\""),
        "{other_name}"
    );
    // Without `sslmode`, as before: no TLS.
    let store = open(&url, SessionLimits::default());
    store
        .ingest(&batch(2, vec![event(100, T0)]), T0, TIMEOUT)
        .unwrap();
    assert!(backends().1 >= 1, "{:?}", backends());
}
