//! The command and callback state machine with a fake host: each case is a list of
//! steps (`ac(...)` calls, the send queue's news, time passing) and the effects the SDK
//! must have on the page, in order, as the fake host logged them.

use std::cell::RefCell;
use std::collections::HashMap;

use super::*;
use crate::core::{is_uuid, Platform};

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
    /// What the page's facts were last asked with.
    page_request: String,
    /// The page functions to call once the step is over, as `host.js` holds them.
    calls: Vec<(u32, u32, String, String)>,
    /// The page's handlers as `host.js` holds them: event, handle, once.
    handlers: Vec<(u32, u32, bool)>,
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

/// A host that logs each effect. Handles 1 and 101 (2 and 102, …) hold the same page
/// function, as `host.js` gives a function passed twice two handles.
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
    fn call(handle: u32, how: u32, a: &str, b: &str) {
        world(|world| world.calls.push((handle, how, a.to_owned(), b.to_owned())));
    }
    fn free(handle: u32) {
        log(format!("free {handle}"));
    }
    fn on(event: u32, handle: u32, once: bool) {
        world(|world| world.handlers.push((event, handle, once)));
    }
    fn off(event: u32, handle: u32) {
        let handlers = world(|world| std::mem::take(&mut world.handlers));
        for (e, h, once) in handlers {
            if e == event && h % 100 == handle % 100 {
                Self::free(h);
            } else {
                world(|world| world.handlers.push((e, h, once)));
            }
        }
    }
    fn wait(id: &str, handle: u32) {
        world(|world| world.waiting.push((id.to_owned(), handle)));
    }
    fn hold(id: &str, text: &str, refusal: &str) {
        // `host.js`'s bound (`MAX_HELD_EVENTS`).
        if world(|world| world.held.len()) < 200 {
            world(|world| world.held.push((id.to_owned(), text.to_owned())));
        } else {
            Self::settle(id, CALL_FAILED | CALL_ONCE, refusal);
        }
    }
    fn release(refusal: &str) {
        for (id, text) in world(|world| std::mem::take(&mut world.held)) {
            if refusal.is_empty() {
                Self::queue(&text);
            } else {
                Self::settle(&id, CALL_FAILED | CALL_ONCE, refusal);
            }
        }
    }
    fn settle(id: &str, how: u32, text: &str) {
        world(|world| {
            if let Some(i) = world.waiting.iter().position(|(waiting, _)| waiting == id) {
                let (_, handle) = world.waiting.remove(i);
                world
                    .calls
                    .push((handle, how, text.to_owned(), String::new()));
            }
        });
    }
    fn emit(event: u32, how: u32, a: &str, b: &str) {
        world(|world| {
            let mut calls = Vec::new();
            world.handlers.retain(|&(e, h, once)| {
                if e == event {
                    calls.push((
                        h,
                        how | if once { CALL_ONCE } else { 0 },
                        a.to_owned(),
                        b.to_owned(),
                    ));
                }
                e != event || !once
            });
            world.calls.extend(calls);
        });
    }
    fn error(text: &str) {
        log(format!("console {text}"));
    }
    fn cookie(name: &str, set: &str) -> String {
        if !set.is_empty() {
            log(format!("cookie {set}"));
            let (pair, attributes) = set.split_once("; ").unwrap();
            let (set_name, value) = pair.split_once('=').unwrap();
            world(|world| {
                world.cookies.retain(|(n, _)| n != set_name);
                if !attributes.starts_with("Max-Age=0;") {
                    world.cookies.push((set_name.to_owned(), value.to_owned()));
                }
            });
        }
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
    fn signals() -> u32 {
        world(|world| world.signals)
    }
    fn origin(url: &str) -> String {
        let after_scheme = url.find("://").map_or(0, |i| i + 3);
        let end = url[after_scheme..]
            .find('/')
            .map_or(url.len(), |i| after_scheme + i);
        url[..end].to_owned()
    }
    fn page(
        location: &str,
        names: &str,
        searched: u32,
        excluded: &str,
        keep_fragment: bool,
        title: &str,
        own_title: bool,
    ) -> Option<String> {
        if location == "not a url" {
            return None;
        }
        let request = format!(
            "{location:?} names {:?} searched {searched} excluded {:?} keep {keep_fragment} title {:?}",
            names.replace('\x01', ","),
            excluded.replace('\x01', ","),
            own_title.then_some(title)
        );
        world(|world| world.page_request = request);
        Some(format!(",\"page\":{{\"url\":\"{location}\"}}"))
    }
    fn setup(batch_url: &str) {
        log(format!("setup {batch_url}"));
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
    fn ping(deployment_id: &str, visitor_id: &str, session_id: &str) {
        log(format!("ping {deployment_id} {visitor_id} {session_id}"));
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

type V = Val<FakeHost>;

fn s(text: &str) -> V {
    Val::Str(text.to_owned())
}

fn n(number: f64, text: &str) -> V {
    Val::Number(number, text.to_owned())
}

/// An array of strings as `host.js` gives it: each followed by `\x01`, and the count.
fn list(items: &[&str]) -> V {
    let text: String = items.iter().map(|item| format!("{item}\x01")).collect();
    Val::List(text, items.len() as u32)
}

fn f(handle: u32) -> V {
    Val::Func(Func::new(handle))
}

fn obj(entries: Vec<(&str, V)>) -> V {
    Val::Object(
        entries
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect(),
    )
}

/// `init('demo', { collectorUrl: 'https://c.example', ...more })`.
fn init(more: Vec<(&str, V)>) -> Step {
    let mut options = vec![("collectorUrl", s("https://c.example"))];
    options.extend(more);
    Step::Ac(vec![s("init"), s("demo"), obj(options)])
}

enum Step {
    /// `ac(...)` with these arguments, as a task of its own: the timers due at once
    /// (the automatic page view's) fire after it.
    Ac(Vec<V>),
    /// Several `ac(...)` calls in one task, as a page's script makes them.
    Task(Vec<Vec<V>>),
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

fn how(how: u32) -> String {
    let name = match how & 7 {
        CALL_PLAIN => "plain",
        CALL_SESSION => "session",
        CALL_ERROR_EVENT => "error-event",
        CALL_OK => "ok",
        _ => "failed",
    };
    if how & CALL_ONCE != 0 {
        cat(&[name, " once"])
    } else {
        name.to_owned()
    }
}

fn log_calls() {
    for (handle, kind, a, b) in world(|world| std::mem::take(&mut world.calls)) {
        log(format!("call {handle} {} '{a}' '{b}'", how(kind)));
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
/// during a step are made after it) and gives the log.
fn run(steps: Vec<Step>) -> Vec<String> {
    WORLD.with(|world| *world.borrow_mut() = World::default());
    world(|world| world.now = 1_000_000);
    let mut sdk: Sdk<FakeHost> = Sdk::new();
    sdk.start("https://cdn.example/footpath.js".to_owned());
    for step in steps {
        match step {
            Step::Ac(args) => {
                // As in `web::command`, the arguments are let go after the calls.
                let mut args = Args::new(args);
                sdk.command(&mut args);
                log_calls();
                end_task(&mut sdk);
                continue;
            }
            Step::Task(calls) => {
                for args in calls {
                    sdk.command(&mut Args::new(args));
                    log_calls();
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
/// queued with the session record saved, and the inactivity timer (20 minutes).
const INIT: [&str; 7] = [
    "cookie _footpath_vid=<uuid>; Max-Age=31536000; Path=/; SameSite=Lax",
    "setup https://c.example/sdk/v1/batch",
    "timer 1: wake 9 in 0 ms",
    "clear 1",
    "save _footpath_session",
    "queue pageview page_viewed",
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
fn commands_before_and_at_init() {
    check(vec![
        (
            "a tracking command before init is refused, and its callback hears it",
            vec![Step::Ac(vec![s("record"), s("too_early"), f(1)])],
            lines(&[
                "console [footpath] ac('record'): call init first",
                "call 1 failed once '[footpath] ac('record'): call init first' ''",
            ]),
        ),
        (
            "a command name is needed, and must be known",
            vec![Step::Ac(vec![]), Step::Ac(vec![s("shout")])],
            lines(&[
                "console [footpath] ac(''): needs a command name",
                "console [footpath] ac('shout'): is not a command",
            ]),
        ),
        (
            "the plugin module's refusals (handed back by the loader) are reported as the core's own, to the console and the error handlers",
            vec![
                Step::Ac(vec![s("on"), s("error"), f(1)]),
                Step::Ac(vec![s("load"), s("clickEvents: needs 1 to 50 rules")]),
                Step::Ac(vec![s("session"), n(1.0, "1")]),
            ],
            lines(&[
                "console [footpath] ac('load'): clickEvents: needs 1 to 50 rules",
                "call 1 error-event 'load' '[footpath] ac('load'): clickEvents: needs 1 to 50 rules'",
                "console [footpath] ac('session'): is for the plugin module",
                "call 1 error-event 'session' '[footpath] ac('session'): is for the plugin module'",
            ]),
        ),
        (
            "init with defaults: the collector is where the SDK came from",
            vec![Step::Ac(vec![s("init"), s("demo")])],
            lines(&[
                "cookie _footpath_vid=<uuid>; Max-Age=31536000; Path=/; SameSite=Lax",
                "setup https://cdn.example/sdk/v1/batch",
                "timer 1: wake 9 in 0 ms",
                "clear 1",
                "save _footpath_session",
                "queue pageview page_viewed",
                "timer 2: wake 2 in 1200000 ms",
            ]),
        ),
        (
            "init then pageview in one task (the Journey SDK's snippet): one page view, the page's",
            vec![Step::Task(vec![
                vec![s("init"), s("demo"), obj(vec![("collectorUrl", s("https://c.example"))])],
                vec![s("pageview"), obj(vec![("title", s("Home"))])],
            ])],
            lines(&[
                "cookie _footpath_vid=<uuid>; Max-Age=31536000; Path=/; SameSite=Lax",
                "setup https://c.example/sdk/v1/batch",
                "timer 1: wake 9 in 0 ms",
                "clear 1",
                "save _footpath_session",
                "queue pageview page_viewed",
                "timer 2: wake 2 in 1200000 ms",
            ]),
        ),
        (
            "another event first: the automatic page view goes before it, and a later pageview is one more",
            vec![Step::Task(vec![
                vec![s("init"), s("demo"), obj(vec![("collectorUrl", s("https://c.example"))])],
                vec![s("record"), s("a")],
                vec![s("pageview")],
            ])],
            with_init(&["queue record a", "queue pageview page_viewed"]),
        ),
        (
            "init needs a deployment id, and happens once",
            vec![Step::Ac(vec![s("init")]), init(vec![]), init(vec![])],
            {
                let mut expected = lines(&["console [footpath] ac('init'): needs a deployment id"]);
                expected.extend(with_init(&[
                    "console [footpath] ac('init'): already initialised",
                ]));
                expected
            },
        ),
        (
            "bad options are reported one by one and keep their defaults",
            vec![init(vec![
                ("cookieExpiryDays", n(0.0, "0")),
                ("pageview", s("sometimes")),
                ("colour", s("red")),
                ("globalTraitsMapper", Val::Null),
                ("region", s("use1")),
                ("sessionTimeoutMinutes", n(1.5, "1.5")),
                // An array with anything but strings in it, as `host.js` gives it.
                ("searchQueryParameters", Val::Other),
            ])],
            lines(&[
                "cookie _footpath_vid=<uuid>; Max-Age=31536000; Path=/; SameSite=Lax",
                "setup https://c.example/sdk/v1/batch",
                "console [footpath] ac('init'): option 'cookieExpiryDays' must be 1 to 3650",
                "console [footpath] ac('init'): option 'pageview' must be 'auto', 'once' or 'off'",
                "console [footpath] ac('init'): option 'colour' is not an option",
                "console [footpath] ac('init'): option 'searchQueryParameters' must be an array of strings",
                "timer 1: wake 9 in 0 ms",
                "clear 1",
                "save _footpath_session",
                "queue pageview page_viewed",
                "timer 2: wake 2 in 90000 ms",
            ]),
        ),
        (
            "a collector URL that is not http(s) is refused, keeping the one before; cookie options shape the cookie",
            vec![init(vec![
                ("collectorUrl", s("ftp://c.example")),
                ("cookieDomain", s("example.com")),
                ("cookieExpiryDays", n(2.0, "2")),
                ("pageview", s("off")),
            ])],
            lines(&[
                "cookie _footpath_vid=<uuid>; Max-Age=172800; Path=/; SameSite=Lax; Domain=example.com",
                "setup https://c.example/sdk/v1/batch",
                "console [footpath] ac('init'): option 'collectorUrl' must be an http(s) URL",
            ]),
        ),
    ]);
}

#[test]
fn handlers_and_ready() {
    check(vec![
        (
            "handlers registered before init hear ready; later ones are called at once",
            vec![
                Step::Ac(vec![s("on"), s("ready"), f(1)]),
                Step::Ac(vec![s("once"), s("session:started"), f(2)]),
                init(vec![]),
                Step::Ac(vec![s("on"), s("ready"), f(3)]),
            ],
            // `ready` at init; the page view, and its session, at the end of the task.
            lines(&[
                "cookie _footpath_vid=<uuid>; Max-Age=31536000; Path=/; SameSite=Lax",
                "setup https://c.example/sdk/v1/batch",
                "timer 1: wake 9 in 0 ms",
                "call 1 plain '' ''",
                "clear 1",
                "save _footpath_session",
                "queue pageview page_viewed",
                "timer 2: wake 2 in 1200000 ms",
                "call 2 session once '<uuid>' ''",
                "call 3 plain once '' ''",
            ]),
        ),
        (
            "off removes every handler holding the same function, and lets both go",
            vec![
                Step::Ac(vec![s("on"), s("error"), f(1)]),
                Step::Ac(vec![s("on"), s("error"), f(2)]),
                Step::Ac(vec![s("off"), s("error"), f(101)]),
                Step::Ac(vec![s("shout")]),
            ],
            lines(&[
                "free 1",
                "free 101",
                "console [footpath] ac('shout'): is not a command",
                "call 2 error-event 'shout' '[footpath] ac('shout'): is not a command'",
            ]),
        ),
        (
            "once handlers are called once; unknown events and non-functions are refused",
            vec![
                Step::Ac(vec![s("once"), s("error"), f(1)]),
                Step::Ac(vec![s("on"), s("click"), f(2)]),
                Step::Ac(vec![s("on"), s("error"), s("not a function")]),
            ],
            lines(&[
                "console [footpath] ac('on'): unknown event",
                "call 1 error-event once 'on' '[footpath] ac('on'): unknown event'",
                "free 2",
                "console [footpath] ac('on'): needs a function",
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
                init(vec![]),
                Step::Ac(vec![
                    s("record"),
                    s("cart_viewed"),
                    obj(vec![("items", n(2.0, "2")), ("gift", Val::Bool(true))]),
                    f(1),
                ]),
                Step::Verdict(4, None),
                Step::Verdict(4, None),
            ],
            with_init(&["queue record cart_viewed", "call 1 ok once '<uuid>' ''"]),
        ),
        (
            "a refused event's callback hears why, and the page is told once per error",
            vec![
                Step::Ac(vec![s("on"), s("error"), f(1)]),
                init(vec![]),
                Step::Ac(vec![s("record"), s("a"), f(2)]),
                Step::Verdict(4, Some("attributes: too big")),
            ],
            with_init(&[
                "queue record a",
                "console [footpath] ac('record'): attributes: too big",
                "call 2 failed once 'attributes: too big' ''",
                "call 1 error-event 'record' '[footpath] ac('record'): attributes: too big'",
            ])

        ),
        (
            "bad names, values and callbacks are refused before anything is queued",
            vec![
                init(vec![]),
                Step::Ac(vec![s("record"), s("bad-name"), f(1)]),
                Step::Ac(vec![s("record"), s("a"), obj(vec![("x", obj(vec![]))])]),
                Step::Ac(vec![s("record"), s("a"), obj(vec![("n", n(f64::INFINITY, "Infinity"))])]),
                Step::Ac(vec![s("record"), s("a"), obj(vec![]), s("callback")]),
                Step::Ac(vec![s("record")]),
            ],
            with_init(&[
                "console [footpath] ac('record'): event name 'bad-name' may contain only letters, digits and _",
                "call 1 failed once '[footpath] ac('record'): event name 'bad-name' may contain only letters, digits and _' ''",
                "console [footpath] ac('record'): attributes.x must be a string, finite number or boolean",
                "console [footpath] ac('record'): attributes.n must be a string, finite number or boolean",
                "console [footpath] ac('record'): bad callback",
                "console [footpath] ac('record'): needs an event name",
            ]),
        ),
        (
            "identify takes a login id, traits and a callback; null logs out and ends the session",
            vec![
                init(vec![]),
                Step::Ac(vec![s("identify"), s("ada"), obj(vec![("plan", s("pro"))]), f(1)]),
                Step::Ac(vec![s("identify"), Val::Null]),
                Step::Ac(vec![s("identify"), Val::Null, obj(vec![])]),
                Step::Ac(vec![s("identify"), s("ada"), obj(vec![]), f(2), s("extra")]),
            ],
            with_init(&[
                "queue identify identified",
                // The session record goes as the log-out is recorded, before it is queued.
                "remove _footpath_session",
                "queue logout logged_out",
                "console [footpath] ac('identify'): log-out takes no traits",
                "console [footpath] ac('identify'): too many arguments",
                "call 2 failed once '[footpath] ac('identify'): too many arguments' ''",
            ]),
        ),
        (
            "a page view with its own location; one that is not a URL is refused",
            vec![
                init(vec![("pageview", s("off"))]),
                Step::Ac(vec![s("pageview"), obj(vec![("location", s("/cart"))])]),
                Step::Ac(vec![s("pageview"), obj(vec![("location", s("not a url"))])]),
                Step::Ac(vec![s("pageview"), obj(vec![("colour", s("red"))])]),
            ],
            lines(&[
                "cookie _footpath_vid=<uuid>; Max-Age=31536000; Path=/; SameSite=Lax",
                "setup https://c.example/sdk/v1/batch",
                "save _footpath_session",
                "queue pageview page_viewed",
                "timer 1: wake 2 in 1200000 ms",
                "console [footpath] ac('pageview'): location is not a URL",
                "console [footpath] ac('pageview'): 'colour' is not a page view option",
            ]),
        ),
    ]);
}

#[test]
fn timers_and_the_send_queue() {
    check(vec![
        (
            "a failed send waits out the backoff, then resumes; Retry-After is a floor",
            vec![
                init(vec![]),
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
                init(vec![]),
                Step::Ac(vec![s("record"), s("a"), f(1)]),
                Step::Ac(vec![s("record"), s("b"), f(2)]),
                Step::Verdict(WAKE_DROPPED, Some("queue full: dropped 1 oldest events")),
            ],
            with_init(&[
                "queue record a",
                "queue record b",
                "console [footpath] ac('record'): queue full: dropped 1 oldest events",
                "call 2 failed once 'queue full: dropped 1 oldest events' ''",
            ]),
        ),
        (
            "the inactivity timer ends the session, which the page hears",
            vec![
                Step::Ac(vec![s("on"), s("session:ended"), f(1)]),
                init(vec![]),
                Step::Advance(20 * 60_000),
                Step::Wake(WAKE_IDLE, ""),
            ],
            with_init(&["clear 2", "call 1 session '<uuid>' ''"]),
        ),
        (
            "activity in the meantime: the timer waits again for the rest",
            vec![
                init(vec![]),
                Step::Advance(5 * 60_000),
                Step::Ac(vec![s("record"), s("a")]),
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
                init(vec![("consent", s("pending"))]),
                Step::Ac(vec![s("record"), s("a")]),
                Step::Ac(vec![s("consent"), s("granted")]),
            ],
            lines(&[
                "timer 1: wake 9 in 0 ms",
                "clear 1",
                "timer 2: wake 2 in 1200000 ms",
                "cookie _footpath_consent=granted; Max-Age=31536000; Path=/; SameSite=Lax",
                "cookie _footpath_vid=<uuid>; Max-Age=31536000; Path=/; SameSite=Lax",
                "setup https://c.example/sdk/v1/batch",
                "save _footpath_session",
                "queue pageview page_viewed",
                "queue record a",
            ]),
        ),
        (
            "a denial drops the held events (their callbacks hear it) and wipes",
            vec![
                init(vec![("consent", s("pending")), ("pageview", s("off"))]),
                Step::Ac(vec![s("record"), s("a"), f(1)]),
                Step::Ac(vec![s("consent"), s("denied")]),
                Step::Ac(vec![s("record"), s("b"), f(2)]),
            ],
            lines(&[
                "timer 1: wake 2 in 1200000 ms",
                "cookie _footpath_consent=denied; Max-Age=31536000; Path=/; SameSite=Lax",
                "wipe",
                "cookie _footpath_vid=; Max-Age=0; Path=/; SameSite=Lax",
                "call 1 failed once '[footpath] no consent: not recorded' ''",
                "call 2 failed once '[footpath] no consent: not recorded' ''",
            ]),
        ),
        (
            "opting out denies whatever the site said; the answer is remembered",
            vec![
                init(vec![("pageview", s("off"))]),
                Step::Ac(vec![s("optOut")]),
                Step::Ac(vec![s("optIn")]),
            ],
            lines(&[
                "cookie _footpath_vid=<uuid>; Max-Age=31536000; Path=/; SameSite=Lax",
                "setup https://c.example/sdk/v1/batch",
                "cookie _footpath_optout=1; Max-Age=31536000; Path=/; SameSite=Lax",
                "wipe",
                "cookie _footpath_vid=; Max-Age=0; Path=/; SameSite=Lax",
                "cookie _footpath_optout=; Max-Age=0; Path=/; SameSite=Lax",
                "cookie _footpath_vid=<uuid>; Max-Age=31536000; Path=/; SameSite=Lax",
            ]),
        ),
        (
            "a remembered denial and Global Privacy Control keep a page untracked",
            vec![
                Step::Cookie("_footpath_consent", "denied"),
                Step::Signals(1),
                init(vec![("consent", s("pending"))]),
                Step::Ac(vec![s("consent"), s("maybe")]),
            ],
            lines(&[
                "wipe",
                "cookie _footpath_vid=; Max-Age=0; Path=/; SameSite=Lax",
                // The automatic page view's turn comes, and nothing is recorded.
                "timer 1: wake 9 in 0 ms",
                "clear 1",
                "console [footpath] ac('consent'): needs 'granted' or 'denied'",
            ]),
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
    sdk.start("https://cdn.example/footpath.js".to_owned());
    sdk.command(&mut Args::new(vec![
        s("init"),
        s("demo"),
        obj(vec![("pageview", s("off"))]),
    ]));
    assert_eq!(sdk.tracker().unwrap().visitor_id(), kept);
    let log = world(|world| world.log.clone());
    assert_eq!(
        log[0],
        format!("cookie _footpath_vid={kept}; Max-Age=31536000; Path=/; SameSite=Lax")
    );
}

#[test]
fn the_page_facts_are_asked_with_the_site_options_and_go_into_the_event() {
    let campaign = "utm_source,utm_medium,utm_campaign,utm_term,utm_content,gclid,fbclid,msclkid,dclid,ttclid,";
    for (steps, expected) in [
        (
            vec![init(vec![])],
            format!("\"\" names \"q,{campaign}\" searched 1 excluded \"\" keep false title None"),
        ),
        (
            vec![
                init(vec![
                    ("searchQueryParameters", list(&["s", "term"])),
                    ("excludedQueryParameters", list(&["token"])),
                    ("keepUrlFragment", Val::Bool(true)),
                    ("pageview", s("off")),
                ]),
                Step::Ac(vec![
                    s("pageview"),
                    obj(vec![("location", s("/cart")), ("title", s("Cart"))]),
                ]),
            ],
            format!(
                "\"/cart\" names \"s,term,{campaign}\" searched 2 excluded \"token,\" keep true title Some(\"Cart\")"
            ),
        ),
    ] {
        run(steps);
        assert_eq!(world(|world| world.page_request.clone()), expected);
        let queued = world(|world| world.queued.clone());
        let url = if expected.starts_with("\"/cart") { "/cart" } else { "" };
        assert!(
            queued.ends_with(&format!(",\"page\":{{\"url\":\"{url}\"}}}}]}}")),
            "the facts end the event: {queued}"
        );
    }
}

#[test]
fn attributes_may_be_plain_or_the_journey_apis_data_type_and_value() {
    let typed = |data_type: &str, value: V| obj(vec![("dataType", s(data_type)), ("value", value)]);
    run(vec![
        init(vec![("pageview", s("off"))]),
        Step::Ac(vec![
            s("record"),
            s("bought"),
            obj(vec![
                ("sku", typed("String", s("BOOT-1"))),
                ("price", typed("Number", n(139.5, "139.5"))),
                ("gift", Val::Bool(true)),
                (
                    "late",
                    obj(vec![
                        ("value", Val::Bool(false)),
                        ("dataType", s("Boolean")),
                    ]),
                ),
            ]),
        ]),
    ]);
    let queued = world(|world| world.queued.clone());
    assert!(
        queued.contains(r#""attributes":{"sku":"BOOT-1","price":139.5,"gift":true,"late":false}"#),
        "{queued}"
    );
}

#[test]
fn an_event_that_no_request_could_carry_is_refused_when_recorded() {
    assert!(
        TOO_BIG.contains(&MAX_EVENT_BYTES.to_string()),
        "the message names the limit: {TOO_BIG}"
    );
    // The text of a page view but for its location (the fake host writes the facts
    // as `"url":"<location>"`): a location makes an event of any size.
    run(vec![
        init(vec![("pageview", s("off"))]),
        Step::Ac(vec![s("pageview"), obj(vec![("location", s("x"))])]),
    ]);
    let overhead = world(|world| world.queued.len()) - 1;
    let pageview_of = |bytes: usize| {
        Step::Ac(vec![
            s("pageview"),
            obj(vec![("location", s(&"a".repeat(bytes - overhead)))]),
        ])
    };
    let texts = |prefix: &str, count: usize| {
        let value = "v".repeat(1000);
        Val::Object(
            (0..count)
                .map(|i| (format!("{prefix}{i}"), s(&value)))
                .collect(),
        )
    };
    let too_big = "[footpath] ac('record'): event too big: over 65520 bytes";
    check(vec![
        (
            "an event of exactly the limit is queued",
            vec![init(vec![]), pageview_of(MAX_EVENT_BYTES)],
            with_init(&["queue pageview page_viewed"]),
        ),
        (
            "one byte more is refused: on the console and to the error handlers",
            vec![
                Step::Ac(vec![s("on"), s("error"), f(1)]),
                init(vec![]),
                pageview_of(MAX_EVENT_BYTES + 1),
            ],
            // Reported as the collector's refusals are, whatever the command.
            with_init(&[
                "console [footpath] ac('record'): event too big: over 65520 bytes",
                "call 1 error-event 'record' '[footpath] ac('record'): event too big: over 65520 bytes'",
            ]),
        ),
        (
            "traits ride on every event: a record that they take over the limit is refused, its callback hears why, once; later events go on",
            vec![
                init(vec![]),
                Step::Ac(vec![s("identify"), s("ada"), texts("t", 30), f(1)]),
                Step::Ac(vec![s("record"), s("big"), texts("a", 40), f(2)]),
                Step::Ac(vec![s("record"), s("small"), obj(vec![]), f(3)]),
                Step::Verdict(4, None),
            ],
            with_init(&[
                "queue identify identified",
                &cat(&["console ", too_big]),
                &cat(&["call 2 failed once '", too_big, "' ''"]),
                "queue record small",
                "call 3 ok once '<uuid>' ''",
            ]),
        ),
        (
            "while consent is pending, a refused event is not held either",
            vec![
                init(vec![("consent", s("pending")), ("pageview", s("off"))]),
                pageview_of(MAX_EVENT_BYTES + 1),
                Step::Ac(vec![s("consent"), s("granted")]),
            ],
            lines(&[
                "console [footpath] ac('record'): event too big: over 65520 bytes",
                "timer 1: wake 2 in 1200000 ms",
                "cookie _footpath_consent=granted; Max-Age=31536000; Path=/; SameSite=Lax",
                "cookie _footpath_vid=<uuid>; Max-Age=31536000; Path=/; SameSite=Lax",
                "setup https://c.example/sdk/v1/batch",
                "save _footpath_session",
            ]),
        ),
    ]);
}

/// The Journey API's ping that keeps the session of `init`'s page alive.
const PING: &str = "ping demo <uuid> <uuid>";

#[test]
fn interaction_keeps_the_session_alive_while_the_visitor_reads() {
    const MINUTE: i64 = 60_000;
    let active = || Step::Wake(WAKE_ACTIVE, "");
    // 25 minutes of reading, interacting every 4 minutes: pings at 8, 16 and 24 (each
    // at least 5 minutes after the last activity), the inactivity timer at 20 finds
    // the session alive, and an event at 25 is in the same session.
    let mut reading = vec![
        Step::Ac(vec![s("on"), s("session:ended"), f(1)]),
        init(vec![]),
    ];
    for minute in (4..=24).step_by(4) {
        reading.push(Step::Advance(4 * MINUTE));
        reading.push(active());
        if minute == 20 {
            reading.push(Step::Wake(WAKE_IDLE, ""));
        }
    }
    reading.push(Step::Advance(MINUTE));
    reading.push(Step::Ac(vec![s("record"), s("still_reading")]));
    check(vec![
        (
            "an interaction after 6 minutes pings once, however many follow within the interval",
            vec![
                init(vec![]),
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
                init(vec![]),
                Step::Advance(19 * MINUTE),
                Step::Wake(WAKE_IDLE, ""),
            ],
            with_init(&["clear 2", "timer 3: wake 2 in 60000 ms"]),
        ),
        (
            "an event is activity: interaction pings 5 minutes after the last one, not before",
            vec![
                init(vec![]),
                Step::Advance(4 * MINUTE),
                Step::Ac(vec![s("record"), s("a")]),
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
                init(vec![]),
                Step::Advance(20 * MINUTE),
                Step::Wake(WAKE_IDLE, ""),
                active(),
            ],
            with_init(&["clear 2"]),
        ),
        (
            "nothing before init, while consent is pending, or once it is denied",
            vec![
                active(),
                init(vec![("consent", s("pending"))]),
                Step::Advance(6 * MINUTE),
                active(),
                Step::Ac(vec![s("consent"), s("denied")]),
                Step::Advance(6 * MINUTE),
                active(),
            ],
            lines(&[
                "timer 1: wake 9 in 0 ms",
                "clear 1",
                "timer 2: wake 2 in 1200000 ms",
                "cookie _footpath_consent=denied; Max-Age=31536000; Path=/; SameSite=Lax",
                "wipe",
                "cookie _footpath_vid=; Max-Age=0; Path=/; SameSite=Lax",
            ]),
        ),
    ]);
}
