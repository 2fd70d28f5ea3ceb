//! The state of one page's SDK: who the visitor is, which session they are in, and who
//! they said they are. Each event leaves here already encoded; the send queue itself
//! lives in `host.js` (see `web/mod.rs`), which stores, bounds and sends the texts.

// `push_str(",")` rather than `push(',')`: pushing a `char` brings in UTF-8
// encoding code that the SDK's wasm module would pay for.
#![allow(clippy::single_char_add_str)]

use footpath_protocol::v1::{push_i64, EventKind, IDENTIFIED, LOGGED_OUT};

use super::ids::{uuid_v4, uuid_v7};
use super::session::{SessionRecord, SESSION_KEY};
use super::{Options, Platform};

/// How old the shared session record may be before an event writes it again.
pub const SESSION_WRITE_INTERVAL_MS: i64 = 1_000;

/// How long after the session's last activity (an event, or interaction that kept it
/// alive, in any tab) interaction without an event tells the collector again: at most
/// every 5 minutes, or a quarter of a shorter session timeout. A visitor who reads
/// and scrolls now and then thus keeps their session with at most 12 pings an hour,
/// and the session's last activity is never more than this (plus `host.js`'s minute
/// between wakes) behind the visitor's last interaction, well within the timeout.
pub const KEEP_ALIVE_INTERVAL_MS: i64 = 5 * 60_000;

/// Lifecycle changes the page can subscribe to with `ac('on', ...)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    SessionStarted(String),
    SessionEnded(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tracked {
    pub event_id: String,
    /// The event as a batch of one, `sentAt` 0: the sender merges such texts into
    /// batches and sets `sentAt` (see `fpBody` in `host.js`). The id stays the same
    /// through every retry and reload, so that the collector can deduplicate.
    pub text: String,
    pub notices: Vec<Notice>,
}

pub struct Tracker<P: Platform> {
    platform: P,
    options: Options,
    visitor_id: String,
    /// The session this tab last took part in; `None` before the first event and
    /// after the session ended.
    session_id: Option<String>,
    /// Who the visitor said they are, as the JSON fields every later event carries
    /// (written by `host.js`, see `fpIdentify`): `,"loginId":"…"` or '', and
    /// `,"traits":{…}` or ''.
    login: String,
    traits: String,
    /// Whether the shared session record may be written: not while consent is pending
    /// or denied, when the SDK stores nothing.
    storing: bool,
    /// This tab's last activity, for the record written when storing begins.
    last_activity_ms: i64,
}

impl<P: Platform> Tracker<P> {
    pub fn new(platform: P, options: Options, visitor_id: String) -> Tracker<P> {
        Tracker {
            platform,
            options,
            visitor_id,
            session_id: None,
            login: String::new(),
            traits: String::new(),
            storing: true,
            last_activity_ms: 0,
        }
    }

    /// Consent was granted (`true`) or is pending or denied: from a grant on, the
    /// shared session record is written, starting with the session this page began
    /// while it was not.
    pub fn set_storing(&mut self, storing: bool) {
        self.storing = storing;
        if storing {
            if let Some(id) = self.session_id.clone() {
                self.save_session(id, self.last_activity_ms);
            }
        }
    }

    fn save_session(&self, id: String, last_activity_ms: i64) {
        if self.storing {
            self.platform.save(
                SESSION_KEY,
                &SessionRecord {
                    id,
                    last_activity_ms,
                }
                .to_text(),
            );
        }
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    pub fn visitor_id(&self) -> &str {
        &self.visitor_id
    }

    /// A denial forgets who the visitor was: a later grant starts a new visitor.
    pub fn set_visitor_id(&mut self, visitor_id: String) {
        self.visitor_id = visitor_id;
    }

    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// Records an event of the current session (starting one if needed). `host.js`
    /// has checked the name and written the attributes as JSON (`,"attributes":{…}`,
    /// or ''); `facts` is the JSON of the page and context (`,"page":{…},"context":{…}`,
    /// see `fp_page` there), or ''.
    pub fn track(&mut self, kind: EventKind, name: &str, facts: &str, attributes: &str) -> Tracked {
        let now = self.platform.now_ms();
        let notices = self.touch_session(now);
        let mut random = [0u8; 10];
        self.platform.fill_random(&mut random);
        let event_id = uuid_v7(now, random);
        // Written here rather than through `encode_batch` and an `Event`: what the page
        // gave arrives as JSON already (`host.js` writes it with the browser's own
        // `JSON.stringify`), and what the module adds is ids, a kind and a name that
        // need no escaping; the general encoder's code would only ride along. The
        // fields of `encode_batch` for a batch of one, in its order, with the facts
        // last in the event (the collector reads an event's fields in any order);
        // `sentAt` 0 for the sender.
        let mut text = String::with_capacity(512);
        for part in [
            "{\"v\":1,\"deploymentId\":",
            &self.options.deployment_id,
            ",\"visitorId\":\"",
            &self.visitor_id,
            "\",\"sentAt\":0,\"events\":[{\"id\":\"",
            &event_id,
            "\",\"kind\":\"",
            kind.as_str(),
            "\",\"name\":\"",
            name,
            "\",\"time\":",
        ] {
            text.push_str(part);
        }
        push_i64(&mut text, now);
        if let Some(session_id) = &self.session_id {
            text.push_str(",\"sessionId\":\"");
            text.push_str(session_id);
            text.push_str("\"");
        }
        for part in [&self.login, attributes, &self.traits, facts, "}]}"] {
            text.push_str(part);
        }
        Tracked {
            event_id,
            text,
            notices,
        }
    }

    /// `ac('identify', loginId, traits)`: the identity that rides on this and every
    /// following event of this page. `login` ('' keeps the one before) and `traits`
    /// (all of them: `host.js` merges newer traits over older ones) as JSON fields.
    pub fn identify(&mut self, login: String, traits: String, facts: &str) -> Tracked {
        if !login.is_empty() {
            self.login = login;
        }
        self.traits = traits;
        self.track(EventKind::Identify, IDENTIFIED, facts, "")
    }

    /// `ac('identify', null)`: records the log-out in the current session, then forgets
    /// the identity and ends the session, so that the next activity starts a new one.
    pub fn logout(&mut self, facts: &str) -> Tracked {
        let mut tracked = self.track(EventKind::Logout, LOGGED_OUT, facts, "");
        self.login.clear();
        self.traits.clear();
        if self.storing {
            self.platform.remove(SESSION_KEY);
        }
        if let Some(ended) = self.session_id.take() {
            tracked.notices.push(Notice::SessionEnded(ended));
        }
        tracked
    }

    /// Called when the inactivity timer fires. Returns the notices to emit and, while
    /// the session is still alive (another tab may have kept it so), how long to wait
    /// before checking again.
    pub fn check_idle(&mut self) -> (Vec<Notice>, Option<i64>) {
        let Some(ours) = self.session_id.clone() else {
            return (Vec::new(), None);
        };
        let now = self.platform.now_ms();
        let timeout = self.options.session_timeout_ms;
        match self.current_session() {
            Some(shared) if shared.is_live_at(now, timeout) => {
                let wait = shared.last_activity_ms + timeout - now;
                if shared.id == ours {
                    (Vec::new(), Some(wait))
                } else {
                    // Another tab began a new session after ours had ended there.
                    self.session_id = Some(shared.id);
                    (vec![Notice::SessionEnded(ours)], Some(wait))
                }
            }
            _ => {
                self.session_id = None;
                (vec![Notice::SessionEnded(ours)], None)
            }
        }
    }

    /// The visitor interacts with the page (scrolls, clicks, types) without an event.
    /// When this tab's session is alive and its last activity is at least
    /// [`KEEP_ALIVE_INTERVAL_MS`] old (a quarter of a shorter timeout), the session is
    /// touched, as an event would touch it, and the caller tells the collector: gives
    /// the notices to emit. Otherwise `None`, and nothing changes: a session that has
    /// ended is not revived (the next event starts one).
    pub fn keep_alive(&mut self) -> Option<Vec<Notice>> {
        self.session_id.as_ref()?;
        let now = self.platform.now_ms();
        let timeout = self.options.session_timeout_ms;
        let shared = self
            .current_session()
            .filter(|shared| shared.is_live_at(now, timeout))?;
        if now - shared.last_activity_ms < KEEP_ALIVE_INTERVAL_MS.min(timeout / 4) {
            return None;
        }
        Some(self.touch_session(now))
    }

    /// The session as every tab sees it; or, while nothing is stored, as this tab
    /// alone knows it.
    fn current_session(&self) -> Option<SessionRecord> {
        if !self.storing {
            return self.session_id.clone().map(|id| SessionRecord {
                id,
                last_activity_ms: self.last_activity_ms,
            });
        }
        self.platform
            .load(SESSION_KEY)
            .and_then(|text| SessionRecord::parse(&text))
    }

    /// Activity at `now`: continue the shared session if it is alive, otherwise start
    /// one, and record the activity for every tab.
    fn touch_session(&mut self, now: i64) -> Vec<Notice> {
        let mut notices = Vec::new();
        let shared = self
            .current_session()
            .filter(|shared| shared.is_live_at(now, self.options.session_timeout_ms));
        let id = match &shared {
            Some(shared) => shared.id.clone(),
            _ => {
                let mut random = [0u8; 16];
                self.platform.fill_random(&mut random);
                let id = uuid_v4(random);
                notices.push(Notice::SessionStarted(id.clone()));
                id
            }
        };
        if let Some(previous) = self.session_id.take() {
            if previous != id {
                notices.insert(0, Notice::SessionEnded(previous));
            }
        }
        // A burst of events writes the shared record once a second, not once per event:
        // a record at most a second old keeps the session alive just as well (the
        // timeout is minutes), and every write costs the page a storage call.
        let fresh = shared.is_some_and(|shared| {
            shared.id == id && now - shared.last_activity_ms < SESSION_WRITE_INTERVAL_MS
        });
        if !fresh {
            self.save_session(id.clone(), now);
        }
        self.last_activity_ms = now;
        self.session_id = Some(id);
        notices
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::FakePlatform;
    use super::*;

    const MINUTE: i64 = 60_000;

    fn tracker(platform: &FakePlatform) -> Tracker<FakePlatform> {
        Tracker::new(
            platform.clone(),
            Options::new("\"demo\"".into()),
            "visitor".into(),
        )
    }

    fn record(t: &mut Tracker<FakePlatform>, name: &str) -> Tracked {
        t.track(EventKind::Record, name, "", "")
    }

    #[test]
    fn first_event_starts_a_session() {
        let platform = FakePlatform::new(1_000_000);
        let mut t = tracker(&platform);
        let tracked = record(&mut t, "a");
        let id = t.session_id().unwrap().to_owned();
        assert_eq!(tracked.notices, vec![Notice::SessionStarted(id.clone())]);
        assert_eq!(platform.load(SESSION_KEY).unwrap(), format!("{id}|1000000"));
        assert!(record(&mut t, "b").notices.is_empty());
    }

    #[test]
    fn each_event_is_a_batch_of_one_that_starts_with_its_id() {
        let platform = FakePlatform::new(1_000_000);
        let mut t = tracker(&platform);
        let tracked = record(&mut t, "cart_viewed");
        let session = t.session_id().unwrap().to_owned();
        let event = format!(
            "{{\"id\":\"{}\",\"kind\":\"record\",\"name\":\"cart_viewed\",\"time\":1000000,\"sessionId\":\"{session}\"",
            tracked.event_id
        );
        // `host.js` relies on this shape: the header up to `"events":[`, with `sentAt`
        // 0 for it to replace, then the event, whose first field is its id.
        let expected = format!("{{\"v\":1,\"deploymentId\":\"demo\",\"visitorId\":\"visitor\",\"sentAt\":0,\"events\":[{event}");
        assert!(tracked.text.starts_with(&expected), "{}", tracked.text);
        assert!(tracked.text.ends_with("}]}"), "{}", tracked.text);
    }

    /// The tracker writes its events itself, from the JSON fields `host.js` wrote;
    /// they are the JSON `encode_batch` writes for the same event, with the page facts
    /// last, and decode as the collector decodes them.
    #[test]
    fn events_are_what_the_encoder_writes_and_decode_as_the_collector_reads_them() {
        use footpath_protocol::v1::{
            encode_batch, push_attributes, AttributeValue, Batch, Event, Map, Number, VERSION,
        };

        let platform = FakePlatform::new(1_000_000);
        let mut t = tracker(&platform);
        let mut traits = Map::new();
        traits.insert(
            "plan".to_owned(),
            AttributeValue::String("pro \"x\"\n".into()),
        );
        // The fields as `host.js` writes them (`fpObject`, `fpIdentify`), here by
        // the encoder's own functions.
        let mut traits_json = String::new();
        push_attributes(&mut traits_json, "traits", &traits);
        t.identify(",\"loginId\":\"ada\"".into(), traits_json, "");
        let mut attributes = Map::new();
        attributes.insert(
            "price".to_owned(),
            AttributeValue::Number(Number::parse("12.5").unwrap()),
        );
        attributes.insert("gift".to_owned(), AttributeValue::Bool(true));
        let mut attributes_json = String::new();
        push_attributes(&mut attributes_json, "attributes", &attributes);
        let facts = ",\"page\":{\"url\":\"https://shop.example/\"},\"context\":{\"browserLang\":\"en\",\"screenWidth\":1280,\"screenHeight\":800,\"screenDensity\":200,\"viewportWidth\":1200,\"viewportHeight\":700}";
        let tracked = t.track(EventKind::Record, "cart_viewed", facts, &attributes_json);
        let event = Event {
            id: tracked.event_id.clone(),
            kind: EventKind::Record,
            name: "cart_viewed".into(),
            time: 1_000_000,
            session_id: t.session_id().map(str::to_owned),
            page: None,
            context: None,
            login_id: Some("ada".into()),
            attributes,
            traits,
        };
        let batch = Batch {
            v: VERSION,
            deployment_id: "demo".into(),
            visitor_id: "visitor".into(),
            sent_at: 0,
            events: vec![event.clone()],
        };
        let general = encode_batch(&batch);
        let cut = general.len() - 3;
        assert_eq!(
            tracked.text,
            format!("{}{facts}}}]}}", &general[..cut]),
            "the encoder's JSON, facts last"
        );
        let decoded: Batch = serde_json::from_str(&tracked.text).unwrap();
        let page = decoded.events[0].page.clone().unwrap();
        let context = decoded.events[0].context.clone().unwrap();
        assert_eq!(page.url, "https://shop.example/");
        assert_eq!((context.screen_width, context.viewport_height), (1280, 700));
        let without_facts = Batch {
            events: vec![Event {
                page: None,
                context: None,
                ..decoded.events[0].clone()
            }],
            ..decoded
        };
        assert_eq!(without_facts, batch);
    }

    #[test]
    fn a_burst_writes_the_session_record_once_a_second() {
        let platform = FakePlatform::new(1_000_000);
        let mut t = tracker(&platform);
        record(&mut t, "a");
        let id = t.session_id().unwrap().to_owned();
        platform.advance(SESSION_WRITE_INTERVAL_MS - 1);
        record(&mut t, "b");
        assert_eq!(
            platform.load(SESSION_KEY).unwrap(),
            format!("{id}|1000000"),
            "not written again within the interval"
        );
        platform.advance(1);
        record(&mut t, "c");
        assert_eq!(
            platform.load(SESSION_KEY).unwrap(),
            format!("{id}|{}", 1_000_000 + SESSION_WRITE_INTERVAL_MS)
        );
    }

    #[test]
    fn without_storing_the_session_is_kept_in_the_tab_until_storing_begins() {
        let platform = FakePlatform::new(1_000_000);
        let mut t = tracker(&platform);
        t.set_storing(false);
        record(&mut t, "a");
        assert_eq!(platform.load(SESSION_KEY), None, "nothing stored");
        let id = t.session_id().unwrap().to_owned();
        platform.advance(5_000);
        assert!(
            record(&mut t, "a2").notices.is_empty(),
            "the tab's own session goes on"
        );
        assert_eq!(t.session_id(), Some(id.as_str()));
        assert_eq!(platform.load(SESSION_KEY), None, "still nothing stored");
        t.set_storing(true);
        assert_eq!(
            platform.load(SESSION_KEY).unwrap(),
            format!("{id}|1005000"),
            "the session of the held events, at their last activity"
        );
        record(&mut t, "b");
        assert_eq!(t.session_id(), Some(id.as_str()));
    }

    #[test]
    fn event_ids_are_time_ordered_and_unique() {
        let platform = FakePlatform::new(1_000_000);
        let mut t = tracker(&platform);
        let a = record(&mut t, "a").event_id;
        let b = record(&mut t, "b").event_id;
        platform.advance(1);
        let c = record(&mut t, "c").event_id;
        assert_ne!(a, b);
        assert!(a[..13] == b[..13] && b < c, "{a} {b} {c}");
    }

    #[test]
    fn activity_within_the_timeout_continues_the_session() {
        let platform = FakePlatform::new(0);
        let mut t = tracker(&platform);
        record(&mut t, "a");
        let first = t.session_id().unwrap().to_owned();
        platform.advance(20 * MINUTE - 1000);
        assert!(record(&mut t, "b").notices.is_empty());
        assert_eq!(t.session_id(), Some(first.as_str()));
    }

    #[test]
    fn activity_after_the_timeout_ends_the_old_session_and_starts_a_new_one() {
        let platform = FakePlatform::new(0);
        let mut t = tracker(&platform);
        record(&mut t, "a");
        let first = t.session_id().unwrap().to_owned();
        platform.advance(20 * MINUTE);
        let notices = record(&mut t, "b").notices;
        let second = t.session_id().unwrap().to_owned();
        assert_ne!(first, second);
        assert_eq!(
            notices,
            vec![Notice::SessionEnded(first), Notice::SessionStarted(second)]
        );
    }

    #[test]
    fn tabs_share_one_session_and_keep_it_alive_for_each_other() {
        let tab1 = FakePlatform::new(0);
        let tab2 = tab1.other_tab();
        let mut t1 = tracker(&tab1);
        let mut t2 = tracker(&tab2);
        record(&mut t1, "a");
        tab1.advance(15 * MINUTE);
        assert!(
            record(&mut t2, "b").notices.is_empty(),
            "tab 2 joins without starting a session"
        );
        assert_eq!(t1.session_id(), t2.session_id());
        // Tab 1's timer fires 20 minutes after its own activity, but tab 2 was active
        // 5 minutes ago: the session lives on for 15 more minutes.
        tab1.advance(5 * MINUTE);
        assert_eq!(t1.check_idle(), (vec![], Some(15 * MINUTE)));
        tab1.advance(15 * MINUTE);
        let ended = t1.session_id().unwrap().to_owned();
        assert_eq!(t1.check_idle(), (vec![Notice::SessionEnded(ended)], None));
        assert_eq!(t1.session_id(), None);
    }

    #[test]
    fn interaction_keeps_a_live_session_at_most_once_per_interval_counting_every_tab() {
        let tab1 = FakePlatform::new(0);
        let tab2 = tab1.other_tab();
        let mut t1 = tracker(&tab1);
        let mut t2 = tracker(&tab2);
        assert_eq!(t1.keep_alive(), None, "no session yet: nothing to keep");
        record(&mut t1, "a");
        let id = t1.session_id().unwrap().to_owned();
        tab1.advance(KEEP_ALIVE_INTERVAL_MS - 1);
        assert_eq!(t1.keep_alive(), None, "within the interval");
        tab1.advance(1);
        assert_eq!(t1.keep_alive(), Some(vec![]));
        assert_eq!(
            tab1.load(SESSION_KEY).unwrap(),
            format!("{id}|{KEEP_ALIVE_INTERVAL_MS}"),
            "touched for every tab"
        );
        assert_eq!(t1.keep_alive(), None, "just touched");
        // Tab 2's event is activity too: tab 1 need not tell the collector.
        tab1.advance(4 * MINUTE);
        record(&mut t2, "b");
        tab1.advance(4 * MINUTE);
        assert_eq!(t1.keep_alive(), None, "4 minutes after tab 2's event");
        // A session that has ended stays ended.
        tab1.advance(20 * MINUTE);
        assert_eq!(t1.keep_alive(), None, "the session ended");
        assert_eq!(t1.session_id(), Some(id.as_str()));
    }

    #[test]
    fn a_short_timeout_keeps_alive_every_quarter_of_it() {
        let platform = FakePlatform::new(0);
        let mut options = Options::new("\"demo\"".into());
        options.session_timeout_ms = 4 * MINUTE;
        let mut t = Tracker::new(platform.clone(), options, "visitor".into());
        record(&mut t, "a");
        platform.advance(MINUTE - 1);
        assert_eq!(t.keep_alive(), None);
        platform.advance(1);
        assert_eq!(t.keep_alive(), Some(vec![]));
    }

    #[test]
    fn idle_check_without_a_session_does_nothing() {
        let platform = FakePlatform::new(0);
        let mut t = tracker(&platform);
        assert_eq!(t.check_idle(), (vec![], None));
    }

    #[test]
    fn traits_ride_on_following_events_and_logout_clears_them() {
        let platform = FakePlatform::new(0);
        let mut t = tracker(&platform);
        let identity = ",\"loginId\":\"ada\"";
        let traits = ",\"traits\":{\"email\":\"ada@example.com\"}";
        let identified = t.identify(identity.into(), traits.into(), "");
        let after = record(&mut t, "after");
        // An identify without a login id keeps the one before; its traits are all of
        // them (`host.js` merges).
        let more = ",\"traits\":{\"email\":\"ada@example.com\",\"plan\":\"pro\"}";
        let again = t.identify(String::new(), more.into(), "");
        let session = t.session_id().unwrap().to_owned();
        let logout = t.logout("");
        for (tracked, name, traits) in [
            (&identified, "identified", traits),
            (&after, "after", traits),
            (&again, "identified", more),
            (&logout, "logged_out", more),
        ] {
            assert!(
                tracked.text.contains(&format!("\"name\":\"{name}\"")),
                "{}",
                tracked.text
            );
            assert!(
                tracked.text.ends_with(&format!("{identity}{traits}}}]}}")),
                "{}",
                tracked.text
            );
        }
        assert_eq!(logout.notices, vec![Notice::SessionEnded(session.clone())]);
        assert_eq!(platform.load(SESSION_KEY), None);
        let next = record(&mut t, "anonymous");
        assert!(matches!(&next.notices[..], [Notice::SessionStarted(s)] if *s != session));
        assert!(
            !next.text.contains("loginId") && !next.text.contains("traits"),
            "{}",
            next.text
        );
    }
}
