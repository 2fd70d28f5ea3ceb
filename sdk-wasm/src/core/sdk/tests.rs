//! The command and callback state machine with a fake host: each case is a list of
//! steps (`ac(...)` calls, the send queue's news, time passing) and the effects the SDK
//! must have on the page, in order, as the fake host logged them.

use std::cell::RefCell;
use std::collections::HashMap;

use super::*;
use crate::core::{cat, is_uuid, Platform};

/// The page as the fake host keeps it, one per test thread.
#[derive(Default)]
struct World {
    log: Vec<String>,
    now: i64,
    random: u8,
    timers: u32,
    storage: HashMap<String, String>,
    cookies: Vec<(String, String)>,
    /// What `fp_signals` gives: 1 Global Privacy Control, 2 Do Not Track.
    signals: u32,
    /// The last event handed to the send queue.
    queued: String,
    /// The callbacks to call once the step is over, as `host.js` holds them: handle,
    /// how, text.
    calls: Vec<(u32, u32, String)>,
    /// The callbacks waiting for their event to be settled: id, handle.
    waiting: Vec<(String, u32)>,
    /// The events held while consent is pending, as `host.js` holds them: id, text.
    held: Vec<(String, String)>,
}

thread_local! {
    static WORLD: RefCell<World> = RefCell::new(World::default());
}

fn world<T>(f: impl FnOnce(&mut World) -> T) -> T {
    WORLD.with(|world| f(&mut world.borrow_mut()))
}

fn log(line: String) {
    world(|world| world.log.push(line));
}

/// The value of JSON field `"key":"` in `text`.
fn json_field<'a>(text: &'a str, key: &str) -> &'a str {
    let pattern = cat(&["\"", key, "\":\""]);
    let start = text.find(&pattern).map_or(0, |i| i + pattern.len());
    let end = text[start..].find('"').map_or(start, |i| start + i);
    &text[start..end]
}

/// A host that logs each effect.
#[derive(Default)]
struct FakeHost;

impl Platform for FakeHost {
    fn now_ms(&self) -> i64 {
        world(|world| world.now)
    }
    fn fill_random(&self, buf: &mut [u8]) {
        world(|world| {
            for b in buf {
                world.random = world.random.wrapping_add(1);
                *b = world.random;
            }
        });
    }
    fn load(&self, key: &str) -> Option<String> {
        world(|world| world.storage.get(key).cloned())
    }
    fn save(&self, key: &str, value: &str) {
        log(format!("save {key}"));
        world(|world| world.storage.insert(key.to_owned(), value.to_owned()));
    }
    fn remove(&self, key: &str) {
        log(format!("remove {key}"));
        world(|world| world.storage.remove(key));
    }
}

impl Host for FakeHost {
    fn free(handle: u32) {
        log(format!("free {handle}"));
    }
    fn fail(handle: u32, text: &str) {
        world(|world| world.calls.push((handle, CALL_FAILED, text.to_owned())));
    }
    fn emit(event: u32, session_id: &str) {
        let name = if event == SESSION_STARTED {
            "session:started"
        } else {
            "session:ended"
        };
        log(format!("{name} {session_id}"));
    }
    fn wait(id: &str, handle: u32) {
        world(|world| world.waiting.push((id.to_owned(), handle)));
    }
    fn hold(id: &str, text: &str, refusal: &str) {
        // `host.js`'s bound (`MAX_HELD_EVENTS`).
        if world(|world| world.held.len()) < 200 {
            world(|world| world.held.push((id.to_owned(), text.to_owned())));
        } else {
            Self::settle(id, CALL_FAILED, refusal);
        }
    }
    fn release(refusal: &str) {
        for (id, text) in world(|world| std::mem::take(&mut world.held)) {
            if refusal.is_empty() {
                Self::queue(&text);
            } else {
                Self::settle(&id, CALL_FAILED, refusal);
            }
        }
    }
    fn settle(id: &str, how: u32, text: &str) {
        world(|world| {
            if let Some(i) = world.waiting.iter().position(|(waiting, _)| waiting == id) {
                let (_, handle) = world.waiting.remove(i);
                world.calls.push((handle, how, text.to_owned()));
            }
        });
    }
    fn report(command: &str, message: &str, id: &str) {
        // As `fp_report` words it (the page's `error` handlers are `host.js`'s).
        let text = format!("[footpath] ac('{command}'): {message}");
        log(format!("console {text}"));
        if !id.is_empty() {
            Self::settle(id, CALL_FAILED, &text);
        }
    }
    fn cookie(name: &str) -> String {
        world(|world| {
            let values: Vec<&str> = world
                .cookies
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect();
            values.join("\x01")
        })
    }
    fn set_cookie(name: &str, value: &str) {
        log(format!("cookie {name}={value}"));
        world(|world| {
            world.cookies.retain(|(n, _)| n != name);
            if !value.is_empty() {
                world.cookies.push((name.to_owned(), value.to_owned()));
            }
        });
    }
    fn signals() -> u32 {
        world(|world| world.signals)
    }
    fn page() -> String {
        "\x2c\"page\":{\"url\":\"current\"}".to_owned()
    }
    fn setup() {
        log("setup".to_owned());
    }
    fn wipe() {
        log("wipe".to_owned());
    }
    fn queue(text: &str) {
        log(format!(
            "queue {} {}",
            json_field(text, "kind"),
            json_field(text, "name")
        ));
        world(|world| world.queued = text.to_owned());
    }
    fn flush() {
        log("flush".to_owned());
    }
    fn ping(visitor_id: &str, session_id: &str) {
        log(format!("ping {visitor_id} {session_id}"));
    }
    fn timer(which: u32, ms: f64) -> u32 {
        let id = world(|world| {
            world.timers += 1;
            world.timers
        });
        log(format!("timer {id}: wake {which} in {ms} ms"));
        id
    }
    fn clear(timer: u32) {
        log(format!("clear {timer}"));
    }
    fn random() -> u32 {
        0
    }
}

type C = Command<FakeHost>;

/// The deployment id as `host.js` hands it over, a JSON string.
const DEMO: &str = "\"demo\"";

fn cb(handle: u32) -> Option<Func<FakeHost>> {
    Some(Func::new(handle))
}

fn options(change: impl FnOnce(&mut Options)) -> Options {
    let mut options = Options::new(DEMO.to_owned());
    change(&mut options);
    options
}

/// `init('demo')`, with the options as `host.js` read them.
fn init(change: impl FnOnce(&mut Options)) -> Step {
    Step::Ac(Command::Init(options(change)))
}

fn plain_init() -> Step {
    init(|_| {})
}

fn record(name: &str, callback: Option<Func<FakeHost>>) -> C {
    Command::Record(name.to_owned(), String::new(), callback)
}

enum Step {
    /// One `ac(...)` call as `host.js` hands it over, as a task of its own: the timers
    /// due at once (the automatic page view's) fire after it.
    Ac(C),
    /// Several `ac(...)` calls in one task, as a page's script makes them.
    Task(Vec<C>),
    /// What `host.js` wakes the module with.
    Wake(u32, &'static str),
    /// What `host.js` wakes the module with about the last queued event: the
    /// collector's verdict (4: accepted, or this error), or dropped (7, with why).
    Verdict(u32, Option<&'static str>),
    /// Time passes.
    Advance(i64),
    /// Something the browser or an earlier page left: a cookie, or `fp_signals`.
    Cookie(&'static str, &'static str),
    Signals(u32),
}

/// The log lines with UUIDs as `<uuid>`, so that the cases read without them.
fn normalise(line: &str) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < line.len() {
        if line.is_char_boundary(i) && line.len() - i >= 36 && is_uuid(&line[i..i + 36]) {
            out.push_str("<uuid>");
            i += 36;
        } else {
            let c = line[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

fn log_calls() {
    for (handle, how, text) in world(|world| std::mem::take(&mut world.calls)) {
        let how = if how == CALL_OK { "ok" } else { "failed" };
        log(format!("call {handle} {how} '{text}'"));
    }
}

/// The task ends: the automatic page view's timer (0 ms) fires, if it is set.
fn end_task(sdk: &mut Sdk<FakeHost>) {
    if sdk.pageview_timer.is_some() {
        sdk.wake(WAKE_PAGEVIEW, "");
        log_calls();
    }
}

/// Runs `steps` on a fresh SDK as the wasm entry points do (the page calls queued
/// during a step are made after it) and gives the log. A command that did not take
/// effect is logged as such.
fn run(steps: Vec<Step>) -> Vec<String> {
    WORLD.with(|world| *world.borrow_mut() = World::default());
    world(|world| world.now = 1_000_000);
    let mut sdk: Sdk<FakeHost> = Sdk::new();
    let command = |sdk: &mut Sdk<FakeHost>, command: C| {
        if !sdk.command(command) {
            log("(no effect)".to_owned());
        }
        log_calls();
    };
    for step in steps {
        match step {
            Step::Ac(c) => {
                command(&mut sdk, c);
                end_task(&mut sdk);
                continue;
            }
            Step::Task(calls) => {
                for c in calls {
                    command(&mut sdk, c);
                }
                end_task(&mut sdk);
                continue;
            }
            Step::Wake(kind, text) => sdk.wake(kind, text),
            Step::Verdict(kind, error) => {
                let queued = world(|world| world.queued.clone());
                let id = json_field(&queued, "id").to_owned();
                let answer = match error {
                    None => cat(&[&id, "\x01"]),
                    Some(error) => cat(&[&id, "\x01!", error]),
                };
                sdk.wake(kind, &answer);
            }
            Step::Advance(ms) => world(|world| world.now += ms),
            Step::Cookie(name, value) => {
                world(|world| world.cookies.push((name.to_owned(), value.to_owned())))
            }
            Step::Signals(signals) => world(|world| world.signals = signals),
        }
        log_calls();
    }
    world(|world| world.log.iter().map(|line| normalise(line)).collect())
}

/// What a plain `init` does: a visitor cookie, the send queue set up, the page view
/// queued in a new session with the session record saved, and the inactivity timer
/// (20 minutes).
const INIT: [&str; 8] = [
    "cookie _footpath_vid=<uuid>",
    "setup",
    "timer 1: wake 9 in 0 ms",
    "clear 1",
    "save _footpath_session",
    "queue pageview page_viewed",
    "session:started <uuid>",
    "timer 2: wake 2 in 1200000 ms",
];

fn with_init(rest: &[&str]) -> Vec<String> {
    INIT.iter()
        .chain(rest)
        .map(|line| (*line).to_owned())
        .collect()
}

fn check(cases: Vec<(&str, Vec<Step>, Vec<String>)>) {
    for (why, steps, expected) in cases {
        assert_eq!(run(steps), expected, "{why}");
    }
}

fn lines(lines: &[&str]) -> Vec<String> {
    lines.iter().map(|line| (*line).to_owned()).collect()
}

#[test]
fn the_export_arguments_read_as_commands() {
    let read = |which, number, handle, a: &str, b: &str| {
        Command::<FakeHost>::read(which, number, handle, a, b)
    };
    let Some(Command::Init(options)) = read(COMMAND_INIT, 90_000.0, 1, DEMO, "pending") else {
        panic!("init");
    };
    assert_eq!(
        (
            options.deployment_id.as_str(),
            options.session_timeout_ms,
            options.pageview,
            options.consent
        ),
        (DEMO, 90_000, PageviewMode::Off, Consent::Pending)
    );
    let Some(Command::Init(options)) = read(COMMAND_INIT, 1.5e6, 0, DEMO, "granted") else {
        panic!("init");
    };
    assert_eq!(
        (options.pageview, options.consent),
        (PageviewMode::Auto, Consent::Granted)
    );
    assert!(matches!(
        read(COMMAND_PAGEVIEW, 0.0, 0, "facts", "attributes"),
        Some(Command::Pageview(f, a)) if f == "facts" && a == "attributes"
    ));
    let Some(Command::Record(name, attributes, Some(callback))) =
        read(COMMAND_RECORD, 0.0, 7, "a", ",x")
    else {
        panic!("record");
    };
    assert_eq!(
        (name.as_str(), attributes.as_str(), callback.into_handle()),
        ("a", ",x", 7)
    );
    assert!(matches!(
        read(COMMAND_RECORD, 0.0, 0, "a", ""),
        Some(Command::Record(_, _, None))
    ));
    let Some(Command::Identify(login, traits, Some(callback))) =
        read(COMMAND_IDENTIFY, 0.0, 3, ",l", ",t")
    else {
        panic!("identify");
    };
    assert_eq!(
        (login.as_str(), traits.as_str(), callback.into_handle()),
        (",l", ",t", 3)
    );
    assert!(matches!(
        read(COMMAND_LOGOUT, 0.0, 0, "", ""),
        Some(Command::Logout(None))
    ));
    for (consent, expected) in [("granted", Consent::Granted), ("denied", Consent::Denied)] {
        assert!(
            matches!(read(COMMAND_CONSENT, 0.0, 0, consent, ""), Some(Command::Consent(c)) if c == expected)
        );
    }
    assert!(matches!(
        read(COMMAND_OPT_OUT, 0.0, 0, "", ""),
        Some(Command::OptOut)
    ));
    assert!(matches!(
        read(COMMAND_OPT_IN, 0.0, 0, "", ""),
        Some(Command::OptIn)
    ));
    assert!(read(8, 0.0, 0, "", "").is_none());
    // Nothing was let go but what the cases above dropped: none held a callback.
    assert!(
        world(|world| world.log.is_empty()),
        "{:?}",
        world(|world| world.log.clone())
    );
}

#[test]
fn commands_before_and_at_init() {
    check(vec![
        (
            "a tracking command before init has no effect (`host.js` refuses it), and its callback is let go",
            vec![Step::Ac(record("too_early", cb(1)))],
            lines(&["free 1", "(no effect)"]),
        ),
        (
            "init: the visitor cookie, the queue set up, and the page view at the end of the task",
            vec![plain_init()],
            with_init(&[]),
        ),
        (
            "init then pageview in one task (the Journey SDK's snippet): one page view, the page's",
            vec![Step::Task(vec![
                Command::Init(options(|_| {})),
                Command::Pageview("\x2c\"page\":{\"url\":\"given\"}".into(), String::new()),
            ])],
            lines(&[
                "cookie _footpath_vid=<uuid>",
                "setup",
                "timer 1: wake 9 in 0 ms",
                "clear 1",
                "save _footpath_session",
                "queue pageview page_viewed",
                "session:started <uuid>",
                "timer 2: wake 2 in 1200000 ms",
            ]),
        ),
        (
            "another event first: the automatic page view goes before it, and a later pageview is one more",
            vec![Step::Task(vec![
                Command::Init(options(|_| {})),
                record("a", None),
                Command::Pageview(String::new(), String::new()),
            ])],
            lines(&[
                "cookie _footpath_vid=<uuid>",
                "setup",
                "timer 1: wake 9 in 0 ms",
                "clear 1",
                "save _footpath_session",
                "queue pageview page_viewed",
                "session:started <uuid>",
                "timer 2: wake 2 in 1200000 ms",
                "queue record a",
                "queue pageview page_viewed",
            ]),
        ),
        (
            "init happens once",
            vec![plain_init(), plain_init()],
            with_init(&["(no effect)"]),
        ),
        (
            "page views off: none at init; a session timeout of its own",
            vec![
                init(|o| {
                    o.pageview = PageviewMode::Off;
                    o.session_timeout_ms = 90_000;
                }),
                Step::Ac(record("a", None)),
            ],
            lines(&[
                "cookie _footpath_vid=<uuid>",
                "setup",
                "save _footpath_session",
                "queue record a",
                "session:started <uuid>",
                "timer 1: wake 2 in 90000 ms",
            ]),
        ),
    ]);
}

#[test]
fn record_identify_and_their_callbacks() {
    check(vec![
        (
            "a recorded event's callback hears the collector's verdict, once",
            vec![
                plain_init(),
                Step::Ac(Command::Record(
                    "cart_viewed".into(),
                    "\x2c\"attributes\":{\"items\":2}".into(),
                    cb(1),
                )),
                Step::Verdict(4, None),
                Step::Verdict(4, None),
            ],
            with_init(&["queue record cart_viewed", "call 1 ok '<uuid>'"]),
        ),
        (
            "a refused event's callback hears why, and the page is told once per error",
            vec![
                plain_init(),
                Step::Ac(record("a", cb(2))),
                Step::Verdict(4, Some("attributes: too big")),
            ],
            with_init(&[
                "queue record a",
                "console [footpath] ac('record'): attributes: too big",
                "call 2 failed 'attributes: too big'",
            ]),
        ),
        (
            "identify records the identity, which rides on later events; log-out ends the session",
            vec![
                plain_init(),
                Step::Ac(Command::Identify(
                    "\x2c\"loginId\":\"ada\"".into(),
                    "\x2c\"traits\":{\"plan\":\"pro\"}".into(),
                    cb(1),
                )),
                Step::Ac(record("a", None)),
                Step::Ac(Command::Logout(cb(2))),
                Step::Ac(record("b", None)),
            ],
            with_init(&[
                "queue identify identified",
                "queue record a",
                // The session record goes as the log-out is recorded, before it is queued.
                "remove _footpath_session",
                "queue logout logged_out",
                "session:ended <uuid>",
                "save _footpath_session",
                "queue record b",
                "session:started <uuid>",
            ]),
        ),
    ]);
    let queued = |steps: Vec<Step>| {
        run(steps);
        world(|world| world.queued.clone())
    };
    let identify = Step::Ac(Command::Identify(
        "\x2c\"loginId\":\"ada\"".into(),
        "\x2c\"traits\":{\"plan\":\"pro\"}".into(),
        None,
    ));
    let after = queued(vec![plain_init(), identify, Step::Ac(record("a", None))]);
    assert!(
        after.contains("\"loginId\":\"ada\",\"traits\":{\"plan\":\"pro\"},\"page\""),
        "{after}"
    );
    let logout = Step::Ac(Command::Logout(None));
    let identify = Step::Ac(Command::Identify(
        "\x2c\"loginId\":\"ada\"".into(),
        String::new(),
        None,
    ));
    let after = queued(vec![
        plain_init(),
        identify,
        logout,
        Step::Ac(record("a", None)),
    ]);
    assert!(!after.contains("loginId"), "{after}");
}

#[test]
fn timers_and_the_send_queue() {
    check(vec![
        (
            "a failed send waits out the backoff, then resumes; Retry-After is a floor",
            vec![
                plain_init(),
                Step::Wake(WAKE_RETRY, ""),
                Step::Wake(WAKE_FLUSH, ""),
                Step::Wake(WAKE_RETRY, "30"),
            ],
            with_init(&[
                "timer 3: wake 1 in 1000 ms",
                "clear 3",
                "flush",
                "timer 4: wake 1 in 30000 ms",
            ]),
        ),
        (
            "an event dropped from a full queue: its callback hears it, and the page",
            vec![
                plain_init(),
                Step::Ac(record("a", cb(1))),
                Step::Ac(record("b", cb(2))),
                Step::Verdict(WAKE_DROPPED, Some("queue full: dropped 1 oldest events")),
            ],
            with_init(&[
                "queue record a",
                "queue record b",
                "console [footpath] ac('record'): queue full: dropped 1 oldest events",
                "call 2 failed 'queue full: dropped 1 oldest events'",
            ]),
        ),
        (
            "the inactivity timer ends the session, which the page hears",
            vec![
                plain_init(),
                Step::Advance(20 * 60_000),
                Step::Wake(WAKE_IDLE, ""),
            ],
            with_init(&["clear 2", "session:ended <uuid>"]),
        ),
        (
            "activity in the meantime: the timer waits again for the rest",
            vec![
                plain_init(),
                Step::Advance(5 * 60_000),
                Step::Ac(record("a", None)),
                Step::Advance(15 * 60_000),
                Step::Wake(WAKE_IDLE, ""),
            ],
            with_init(&[
                "save _footpath_session",
                "queue record a",
                "clear 2",
                "timer 3: wake 2 in 300000 ms",
            ]),
        ),
    ]);
}

#[test]
fn consent() {
    check(vec![
        (
            "pending: nothing stored or sent; a grant sets the cookie and sends the held events",
            vec![
                init(|o| o.consent = Consent::Pending),
                Step::Ac(record("a", None)),
                Step::Ac(Command::Consent(Consent::Granted)),
            ],
            lines(&[
                "timer 1: wake 9 in 0 ms",
                "clear 1",
                "session:started <uuid>",
                "timer 2: wake 2 in 1200000 ms",
                "cookie _footpath_consent=granted",
                "cookie _footpath_vid=<uuid>",
                "setup",
                "save _footpath_session",
                "queue pageview page_viewed",
                "queue record a",
            ]),
        ),
        (
            "a denial drops the held events (their callbacks hear it) and wipes; later ones are not recorded",
            vec![
                init(|o| {
                    o.consent = Consent::Pending;
                    o.pageview = PageviewMode::Off;
                }),
                Step::Ac(record("a", cb(1))),
                Step::Ac(Command::Consent(Consent::Denied)),
                Step::Ac(record("b", cb(2))),
            ],
            lines(&[
                "session:started <uuid>",
                "timer 1: wake 2 in 1200000 ms",
                "cookie _footpath_consent=denied",
                "wipe",
                "cookie _footpath_vid=",
                "call 1 failed '[footpath] no consent: not recorded'",
                "(no effect)",
                "call 2 failed '[footpath] no consent: not recorded'",
            ]),
        ),
        (
            "opting out denies whatever the site said; the answer is remembered",
            vec![
                init(|o| o.pageview = PageviewMode::Off),
                Step::Ac(Command::OptOut),
                Step::Ac(Command::OptIn),
            ],
            lines(&[
                "cookie _footpath_vid=<uuid>",
                "setup",
                "cookie _footpath_optout=1",
                "wipe",
                "cookie _footpath_vid=",
                "cookie _footpath_optout=",
                "cookie _footpath_vid=<uuid>",
            ]),
        ),
        (
            "a remembered denial and an honoured privacy signal keep a page untracked",
            vec![
                Step::Cookie("_footpath_consent", "denied"),
                Step::Signals(1),
                init(|o| o.consent = Consent::Pending),
            ],
            lines(&[
                "wipe",
                "cookie _footpath_vid=",
                // The automatic page view's turn comes, and nothing is recorded.
                "timer 1: wake 9 in 0 ms",
                "clear 1",
            ]),
        ),
        (
            "a remembered grant settles a page that says pending",
            vec![
                Step::Cookie("_footpath_consent", "granted"),
                init(|o| o.consent = Consent::Pending),
            ],
            with_init(&[]),
        ),
    ]);
}

#[test]
fn a_visitor_cookie_from_an_earlier_page_is_kept() {
    let kept = "0193a5b0-0000-4000-8000-00000000abcd";
    WORLD.with(|world| *world.borrow_mut() = World::default());
    world(|world| {
        world
            .cookies
            .push(("_footpath_vid".into(), "not-a-uuid".into()));
        world.cookies.push(("_footpath_vid".into(), kept.into()));
    });
    let mut sdk: Sdk<FakeHost> = Sdk::new();
    sdk.command(Command::Init(options(|o| o.pageview = PageviewMode::Off)));
    assert_eq!(sdk.tracker().unwrap().visitor_id(), kept);
    let log = world(|world| world.log.clone());
    assert_eq!(log[0], format!("cookie _footpath_vid={kept}"));
}

#[test]
fn a_page_view_carries_the_facts_it_was_given_and_other_events_the_current_pages() {
    let given = "\x2c\"page\":{\"url\":\"https://shop.example/cart\"}";
    run(vec![
        init(|o| o.pageview = PageviewMode::Off),
        Step::Ac(Command::Pageview(
            given.into(),
            "\x2c\"attributes\":{\"step\":1}".into(),
        )),
    ]);
    let queued = world(|world| world.queued.clone());
    assert!(
        queued.ends_with(&format!(",\"attributes\":{{\"step\":1}}{given}}}]}}")),
        "the attributes, then the facts end the event: {queued}"
    );
    run(vec![plain_init(), Step::Ac(record("a", None))]);
    let queued = world(|world| world.queued.clone());
    assert!(
        queued.ends_with(",\"page\":{\"url\":\"current\"}}]}"),
        "{queued}"
    );
}

#[test]
fn an_event_that_no_request_could_carry_is_refused_when_recorded() {
    assert!(
        TOO_BIG.contains(&MAX_EVENT_BYTES.to_string()),
        "the message names the limit: {TOO_BIG}"
    );
    // The text of a page view but for its facts: facts make an event of any size.
    run(vec![
        init(|o| o.pageview = PageviewMode::Off),
        Step::Ac(Command::Pageview(String::new(), String::new())),
    ]);
    let overhead = world(|world| world.queued.len());
    let pageview_of = |bytes: usize| {
        Step::Ac(Command::Pageview(
            format!(",\"x\":\"{}\"", "a".repeat(bytes - overhead - 7)),
            String::new(),
        ))
    };
    let texts = |key: &str, prefix: &str, count: usize| {
        let value = "v".repeat(1000);
        let members: Vec<String> = (0..count)
            .map(|i| format!("\"{prefix}{i}\":\"{value}\""))
            .collect();
        format!(",\"{key}\":{{{}}}", members.join(","))
    };
    let too_big = "[footpath] ac('record'): event too big: over 65520 bytes";
    check(vec![
        (
            "an event of exactly the limit is queued",
            vec![plain_init(), pageview_of(MAX_EVENT_BYTES)],
            with_init(&["queue pageview page_viewed"]),
        ),
        (
            "one byte more is refused: reported",
            vec![plain_init(), pageview_of(MAX_EVENT_BYTES + 1)],
            // Reported as the collector's refusals are, whatever the command.
            with_init(&[&cat(&["console ", too_big])]),
        ),
        (
            "traits ride on every event: a record that they take over the limit is refused, its callback hears why, once; later events go on",
            vec![
                plain_init(),
                Step::Ac(Command::Identify(String::new(), texts("traits", "t", 30), cb(1))),
                Step::Ac(Command::Record("big".into(), texts("attributes", "a", 40), cb(2))),
                Step::Ac(record("small", cb(3))),
                Step::Verdict(4, None),
            ],
            with_init(&[
                "queue identify identified",
                &cat(&["console ", too_big]),
                &cat(&["call 2 failed '", too_big, "'"]),
                "queue record small",
                "call 3 ok '<uuid>'",
            ]),
        ),
        (
            "while consent is pending, a refused event is not held either",
            vec![
                init(|o| {
                    o.consent = Consent::Pending;
                    o.pageview = PageviewMode::Off;
                }),
                pageview_of(MAX_EVENT_BYTES + 1),
                Step::Ac(Command::Consent(Consent::Granted)),
            ],
            lines(&[
                &cat(&["console ", too_big]),
                "session:started <uuid>",
                "timer 1: wake 2 in 1200000 ms",
                "cookie _footpath_consent=granted",
                "cookie _footpath_vid=<uuid>",
                "setup",
                "save _footpath_session",
            ]),
        ),
    ]);
}

/// The Journey API's ping that keeps the session of `init`'s page alive.
const PING: &str = "ping <uuid> <uuid>";

#[test]
fn interaction_keeps_the_session_alive_while_the_visitor_reads() {
    const MINUTE: i64 = 60_000;
    let active = || Step::Wake(WAKE_ACTIVE, "");
    // 25 minutes of reading, interacting every 4 minutes: pings at 8, 16 and 24 (each
    // at least 5 minutes after the last activity), the inactivity timer at 20 finds
    // the session alive, and an event at 25 is in the same session.
    let mut reading = vec![plain_init()];
    for minute in (4..=24).step_by(4) {
        reading.push(Step::Advance(4 * MINUTE));
        reading.push(active());
        if minute == 20 {
            reading.push(Step::Wake(WAKE_IDLE, ""));
        }
    }
    reading.push(Step::Advance(MINUTE));
    reading.push(Step::Ac(record("still_reading", None)));
    check(vec![
        (
            "an interaction after 6 minutes pings once, however many follow within the interval",
            vec![
                plain_init(),
                Step::Advance(6 * MINUTE),
                active(),
                active(),
                Step::Advance(4 * MINUTE),
                active(),
            ],
            with_init(&["save _footpath_session", PING]),
        ),
        (
            "without interaction, nothing is sent: the inactivity timer only looks",
            vec![
                plain_init(),
                Step::Advance(19 * MINUTE),
                Step::Wake(WAKE_IDLE, ""),
            ],
            with_init(&["clear 2", "timer 3: wake 2 in 60000 ms"]),
        ),
        (
            "an event is activity: interaction pings 5 minutes after the last one, not before",
            vec![
                plain_init(),
                Step::Advance(4 * MINUTE),
                Step::Ac(record("a", None)),
                Step::Advance(4 * MINUTE),
                active(),
                Step::Advance(MINUTE),
                active(),
            ],
            with_init(&[
                "save _footpath_session",
                "queue record a",
                "save _footpath_session",
                PING,
            ]),
        ),
        (
            "25 minutes of reading keep one session",
            reading,
            with_init(&[
                "save _footpath_session",
                PING,
                "save _footpath_session",
                PING,
                "clear 2",
                "timer 3: wake 2 in 960000 ms",
                "save _footpath_session",
                PING,
                "save _footpath_session",
                "queue record still_reading",
            ]),
        ),
        (
            "a session that ended is not revived: the next event starts one",
            vec![
                plain_init(),
                Step::Advance(20 * MINUTE),
                Step::Wake(WAKE_IDLE, ""),
                active(),
            ],
            with_init(&["clear 2", "session:ended <uuid>"]),
        ),
        (
            "nothing before init, while consent is pending, or once it is denied",
            vec![
                active(),
                init(|o| o.consent = Consent::Pending),
                Step::Advance(6 * MINUTE),
                active(),
                Step::Ac(Command::Consent(Consent::Denied)),
                Step::Advance(6 * MINUTE),
                active(),
            ],
            lines(&[
                "timer 1: wake 9 in 0 ms",
                "clear 1",
                "session:started <uuid>",
                "timer 2: wake 2 in 1200000 ms",
                "cookie _footpath_consent=denied",
                "wipe",
                "cookie _footpath_vid=",
            ]),
        ),
    ]);
}
