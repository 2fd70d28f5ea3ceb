//! API Boundary: the only module that knows JavaScript exists.
//!
//! The loader calls [`start`] once with the URL the SDK was loaded from, then hands
//! every `ac(...)` call to [`command`], its arguments flattened by `fp_args` first.
//! No JavaScript value crosses into the shipped module, only numbers and strings:
//! an `externref` argument or result would bring wasm-bindgen's reference table (its
//! allocator in the module and its set-up in the glue) for nothing else. Nothing here may
//! panic on bad input: every argument is checked and refused with a message.
//!
//! The browser is reached through `host.js`, a few functions that take and return
//! strings and numbers (page facts, storage, cookie, timers, requests): one binding
//! each instead of one per DOM call keeps both the module and its glue small. The
//! page's arguments arrive flattened by `host.js` into [`args::Val`]s; the page's
//! functions stay on the JavaScript side and are held here by handle ([`Func`]).
//!
//! Page callbacks (`on` handlers, `record` callbacks) may call `ac(...)` again, so they
//! are never invoked while the SDK's state is borrowed: state changes queue the calls
//! to make in [`Sdk::calls`], which run after the borrow ends.
//!
//! Delivery: each event leaves the core encoded (a batch of one, with its id) and goes
//! to the send queue in `host.js`, which keeps it in `localStorage` until the collector
//! has judged it, sends one request at a time, beacons what is left when the page is
//! hidden, and hands the queues of closed pages to the next page (see the comments
//! there). The module keeps the rest: the callbacks by event id, called once with the
//! collector's verdict or the refusal (events whose page is gone are still delivered
//! by a later page, but their callbacks went with their page), and the retry backoff
//! (`core::retry_delay_ms`).

mod args;
mod browser;

use std::cell::RefCell;

use footpath_protocol::v1::{AttributeValue, EventKind, Map, BATCH_PATH, PAGE_VIEWED};
use wasm_bindgen::prelude::*;

use crate::core::{
    decide, retry_delay_ms, Consent, Held, Notice, PageviewMode, Signals, Tracked, Tracker,
    CONSENT_COOKIE, OPT_OUT_COOKIE,
};
use args::{Args, Val};
use browser::{Browser, VISITOR_COOKIE};

/// What the callback of an event that was not recorded for want of consent hears.
const NO_CONSENT: &str = "[footpath] no consent: not recorded";

/// What `host.js` calls back with (see `fp_init` there).
const WAKE_FLUSH: u32 = 1;
const WAKE_IDLE: u32 = 2;
const WAKE_RETRY: u32 = 6;
const WAKE_DROPPED: u32 = 7;

/// How a held function is called (see `fp_call` in `host.js`); `+ CALL_ONCE` lets it go.
const CALL_PLAIN: u32 = 0;
const CALL_SESSION: u32 = 1;
const CALL_ERROR_EVENT: u32 = 2;
const CALL_OK: u32 = 3;
const CALL_FAILED: u32 = 4;
const CALL_ONCE: u32 = 8;

/// Events the page can subscribe to, by index.
const EVENTS: [&str; 4] = ["ready", "session:started", "session:ended", "error"];
const READY: u8 = 0;
const SESSION_STARTED: u8 = 1;
const SESSION_ENDED: u8 = 2;
const ERROR: u8 = 3;

#[wasm_bindgen(module = "/src/web/host.js")]
extern "C" {
    fn fp_init(wake: &JsValue);
    fn fp_args(list: &JsValue) -> u32;
    fn fp_kind(index: u32) -> u32;
    fn fp_text(index: u32) -> String;
    fn fp_number(index: u32) -> f64;
    fn fp_call(handle: u32, how: u32, a: &str, b: &str);
    fn fp_free(handle: u32);
    fn fp_same(a: u32, b: u32) -> bool;
    fn fp_state(visitor_id: &str, session_id: &str, started: bool);
    fn fp_state_value() -> JsValue;
    fn fp_now() -> f64;
    fn fp_random() -> u32;
    fn fp_load(key: &str) -> Option<String>;
    fn fp_save(key: &str, value: &str);
    fn fp_error(text: &str);
    fn fp_origin(url: &str) -> String;
    fn fp_cookie(name: &str, set: &str) -> String;
    fn fp_page(location: &str, names: &str, excluded: &str, keep_fragment: bool) -> Option<String>;
    fn fp_setup(batch_url: &str);
    fn fp_signals() -> u32;
    fn fp_wipe();
    fn fp_queue(text: &str);
    fn fp_flush();
    fn fp_timer(which: u32, ms: f64) -> u32;
    fn fp_clear(id: u32);
}

/// `parts` joined; smaller than `[..].concat()`, which is generic over separators.
fn cat(parts: &[&str]) -> String {
    let mut text = String::new();
    for part in parts {
        text.push_str(part);
    }
    text
}

/// A page function the SDK holds; the page's reference is let go on drop.
#[must_use]
pub struct Func(u32);

impl Func {
    /// The handle, for a call that lets the function go after running it.
    fn into_handle(self) -> u32 {
        let handle = self.0;
        std::mem::forget(self);
        handle
    }
}

impl Drop for Func {
    fn drop(&mut self) {
        fp_free(self.0);
    }
}

/// A pending `setTimeout`, cancelled on drop.
#[must_use]
struct Timer(u32);

impl Timer {
    fn new(which: u32, ms: f64) -> Timer {
        Timer(fp_timer(which, ms))
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        fp_clear(self.0);
    }
}

struct Handler {
    event: u8,
    function: Func,
    once: bool,
}

struct Sdk {
    /// Where the SDK was loaded from: the default collector.
    script_url: String,
    tracker: Option<Tracker<Browser>>,
    handlers: Vec<Handler>,
    /// `record`/`identify` callbacks waiting for the collector's answer, by event id.
    callbacks: Vec<(String, Func)>,
    /// The wait before `host.js` sends again after a failure.
    retry_timer: Option<Timer>,
    idle_timer: Option<Timer>,
    /// Sends that failed in a row, for the backoff.
    failures: u32,
    /// Page functions to call, with how and what, once the state is no longer borrowed.
    calls: Vec<(u32, u32, String, String)>,
    /// What decides consent, and the decision in force.
    signals: Signals,
    consent: Consent,
    /// Events recorded while consent is pending.
    held: Held,
    /// Where batches go; `host.js` is set up to send there at the first grant, so
    /// that nothing is read from or written to its queue before.
    batch_url: String,
    set_up: bool,
}

thread_local! {
    static SDK: RefCell<Sdk> = const {
        RefCell::new(Sdk {
            script_url: String::new(),
            tracker: None,
            handlers: Vec::new(),
            callbacks: Vec::new(),
            retry_timer: None,
            idle_timer: None,
            failures: 0,
            calls: Vec::new(),
            signals: Signals {
                site: Consent::Granted,
                remembered: None,
                opted_out: false,
                privacy_control: false,
                do_not_track: false,
            },
            consent: Consent::Pending,
            held: Held::new(),
            batch_url: String::new(),
            set_up: false,
        })
    };
}

/// Runs `f` on the state, then the page callbacks it queued.
fn with_sdk(f: &mut dyn FnMut(&mut Sdk)) {
    let calls = SDK.with(|sdk| {
        let mut sdk = sdk.borrow_mut();
        f(&mut sdk);
        std::mem::take(&mut sdk.calls)
    });
    for (handle, how, a, b) in calls {
        // `host.js` catches what the page's function throws.
        fp_call(handle, how, &a, &b);
    }
}

#[wasm_bindgen]
pub fn start(script_url: String) {
    let mut script_url = Some(script_url);
    with_sdk(&mut |sdk| sdk.script_url = script_url.take().unwrap_or_default());
}

/// One `ac(...)` call, whose `count` arguments `fp_args` has just flattened.
#[wasm_bindgen]
pub fn command(count: u32) {
    let mut args = Args::read(count);
    with_sdk(&mut |sdk| {
        let name = match args.get(0) {
            Val::Str(name) => name.clone(),
            _ => String::new(),
        };
        if let Err(message) = sdk.command(&name, &mut args) {
            let text = sdk.report(&name, &message);
            // A refused `record` or `identify` still answers its callback, once.
            if matches!(name.as_str(), "record" | "identify") {
                if let Some(callback) = args.callback() {
                    let handle = callback.into_handle();
                    sdk.calls
                        .push((handle, CALL_FAILED | CALL_ONCE, text, String::new()));
                }
            }
        }
    });
}

/// Timers and the send queue's news: `host.js` calls this export (the loader hands it
/// over with `fp_init`), which costs far less glue than a `Closure` would.
#[wasm_bindgen]
pub fn wake(kind: u32, text: String) {
    with_sdk(&mut |sdk| match kind {
        WAKE_FLUSH => {
            sdk.retry_timer = None;
            fp_flush();
        }
        WAKE_IDLE => {
            sdk.idle_timer = None;
            sdk.check_idle();
        }
        WAKE_RETRY => {
            // The events stay queued in `host.js`, ids unchanged.
            sdk.failures += 1;
            let delay = retry_delay_ms(
                sdk.failures,
                browser::digits(text.trim_ascii()),
                fp_random(),
            );
            sdk.retry_timer = Some(Timer::new(WAKE_FLUSH, delay as f64));
        }
        // The queue was full: these events were dropped (no answer for the backoff).
        WAKE_DROPPED => sdk.sent(&text),
        // 4: the collector's verdicts.
        _ => {
            sdk.failures = 0;
            sdk.sent(&text);
        }
    });
}

/// What a tracking command records.
enum What {
    Event(EventKind, String, Map<AttributeValue>),
    Identify(Option<String>, Map<AttributeValue>),
    Logout,
}

impl Sdk {
    fn command(&mut self, name: &str, args: &mut Args) -> Result<(), String> {
        match name {
            "init" => self.init(args),
            "on" | "once" | "off" => self.subscribe(name, args),
            "pageview" | "record" | "identify" | "consent" | "optOut" | "optIn" => {
                let Some(tracker) = &self.tracker else {
                    return Err("call init first".into());
                };
                match name {
                    "consent" | "optOut" | "optIn" => {
                        let (cookie, value) = match name {
                            "consent" => {
                                let Val::Str(value) = args.take(1) else {
                                    return Err("needs 'granted' or 'denied'".into());
                                };
                                let consent = Consent::parse(&value)
                                    .filter(|consent| *consent != Consent::Pending)
                                    .ok_or("needs 'granted' or 'denied'")?;
                                self.signals.site = consent;
                                (CONSENT_COOKIE, value)
                            }
                            "optOut" => {
                                self.signals.opted_out = true;
                                (OPT_OUT_COOKIE, "1".into())
                            }
                            _ => {
                                self.signals.opted_out = false;
                                (OPT_OUT_COOKIE, String::new())
                            }
                        };
                        // Remembered for the next pages; only the answer, no identifier.
                        browser::set_cookie(tracker.options(), cookie, &value);
                        self.decide();
                        Ok(())
                    }
                    "pageview" => {
                        let (location, title, attributes) = args::pageview(args.take(1))?;
                        self.track(
                            What::Event(EventKind::Pageview, PAGE_VIEWED.into(), attributes),
                            &location,
                            title,
                            None,
                        )
                    }
                    "record" => {
                        let (name, attributes, callback) = args::record(args)?;
                        self.track(
                            What::Event(EventKind::Record, name, attributes),
                            "",
                            None,
                            callback,
                        )
                    }
                    _ => {
                        let (logout, login_id, traits, callback) = args::identify(args)?;
                        let what = if logout {
                            What::Logout
                        } else {
                            What::Identify(login_id, traits)
                        };
                        self.track(what, "", None, callback)
                    }
                }
            }
            "load" | "forms:track" => Err("is not supported".into()),
            "" => Err("needs a command name".into()),
            _ => Err("is not a command".into()),
        }
    }

    /// Logs the problem once on the console and tells the page's `error` handlers;
    /// gives the text it reported.
    fn report(&mut self, command: &str, message: &str) -> String {
        let text = cat(&["[footpath] ac('", command, "'): ", message]);
        fp_error(&text);
        self.emit(ERROR, CALL_ERROR_EVENT, command, &text);
        text
    }

    fn emit(&mut self, event: u8, how: u32, a: &str, b: &str) {
        let mut i = 0;
        while i < self.handlers.len() {
            let handler = &self.handlers[i];
            if handler.event != event {
                i += 1;
            } else if handler.once {
                let handler = self.handlers.remove(i);
                self.calls.push((
                    handler.function.into_handle(),
                    how | CALL_ONCE,
                    a.into(),
                    b.into(),
                ));
            } else {
                self.calls
                    .push((handler.function.0, how, a.into(), b.into()));
                i += 1;
            }
        }
    }

    fn notices(&mut self, notices: Vec<Notice>) {
        for notice in notices {
            let (event, id) = match notice {
                Notice::SessionStarted(id) => (SESSION_STARTED, id),
                Notice::SessionEnded(id) => (SESSION_ENDED, id),
            };
            self.emit(event, CALL_SESSION, &id, "");
        }
    }

    fn init(&mut self, args: &mut Args) -> Result<(), String> {
        if self.tracker.is_some() {
            return Err("already initialised".into());
        }
        let deployment_id = match args.take(1) {
            Val::Str(id) if !id.is_empty() => id,
            _ => return Err("needs a deployment id".into()),
        };
        let (options, problems) =
            args::options(deployment_id, fp_origin(&self.script_url), args.take(2))?;
        let collector = options.collector_url.as_bytes();
        let mut end = collector.len();
        while end > 0 && collector[end - 1] == b'/' {
            end -= 1;
        }
        if end == 0 {
            return Err("needs collectorUrl".into());
        }
        self.batch_url = cat(&[&options.collector_url[..end], BATCH_PATH]);
        let pageview = options.pageview;
        self.signals = browser::signals(&options);
        self.tracker = Some(Tracker::new(Browser, options, browser::visitor_id()));
        self.decide();
        for problem in problems {
            self.report("init", &problem);
        }
        if pageview == PageviewMode::Auto {
            // A page view that fails is reported; `ready` is emitted all the same.
            if let Err(message) = self.track(
                What::Event(EventKind::Pageview, PAGE_VIEWED.into(), Map::new()),
                "",
                None,
                None,
            ) {
                self.report("pageview", &message);
            }
        }
        // `ready` is for handlers registered before init; later ones are called at once.
        self.emit(READY, CALL_PLAIN, "", "");
        Ok(())
    }

    /// Puts the consent that the signals now lead to in force. Granting sets the
    /// visitor cookie, lets `host.js` store and send, and queues the held events with
    /// the real visitor id; pending stores and sends nothing; denying drops the held
    /// events and removes the visitor cookie and everything Footpath keeps in
    /// `localStorage`.
    fn decide(&mut self) {
        let Some(tracker) = self.tracker.as_mut() else {
            return;
        };
        let consent = decide(self.signals);
        let was = std::mem::replace(&mut self.consent, consent);
        let mut dropped = Vec::new();
        match consent {
            Consent::Granted if was != Consent::Granted => {
                browser::set_cookie(tracker.options(), VISITOR_COOKIE, tracker.visitor_id());
                if !self.set_up {
                    self.set_up = true;
                    fp_setup(&self.batch_url);
                }
                tracker.set_storing(true);
                for (_, text) in self.held.take() {
                    fp_queue(&text);
                }
            }
            Consent::Granted => {}
            Consent::Pending => tracker.set_storing(false),
            Consent::Denied => {
                tracker.set_storing(false);
                tracker.set_visitor_id(browser::new_visitor_id());
                // Also on a page that starts denied: the cookie and a queue may be
                // left from before the visitor said no.
                fp_wipe();
                browser::set_cookie(tracker.options(), VISITOR_COOKIE, "");
                self.retry_timer = None;
                dropped = self.held.take();
            }
        }
        for (id, _) in dropped {
            self.settle(&id, Some(NO_CONSENT));
        }
    }

    fn subscribe(&mut self, how: &str, args: &mut Args) -> Result<(), String> {
        let event = match args.get(1) {
            Val::Str(name) => EVENTS.iter().position(|event| event == name),
            _ => None,
        }
        .ok_or("unknown event")?;
        let Val::Func(function) = args.take(2) else {
            return Err("needs a function".into());
        };
        let event = event as u8;
        if how == "off" {
            let mut i = 0;
            while i < self.handlers.len() {
                let handler = &self.handlers[i];
                if handler.event == event && fp_same(handler.function.0, function.0) {
                    self.handlers.remove(i);
                } else {
                    i += 1;
                }
            }
        } else if event == READY && self.tracker.is_some() {
            self.calls.push((
                function.into_handle(),
                CALL_PLAIN | CALL_ONCE,
                String::new(),
                String::new(),
            ));
        } else {
            self.handlers.push(Handler {
                event,
                function,
                once: how == "once",
            });
        }
        Ok(())
    }

    /// Queues an event with the facts of the page, remembers its callback, emits
    /// session notices and re-arms the inactivity timer; `host.js` sends it.
    fn track(
        &mut self,
        what: What,
        location: &str,
        title: Option<String>,
        callback: Option<Func>,
    ) -> Result<(), String> {
        let Some(tracker) = self.tracker.as_mut() else {
            return Err("not initialised".into());
        };
        if self.consent == Consent::Denied {
            // Not an error of the page's: nothing is reported, only the callback hears.
            if let Some(callback) = callback {
                self.calls.push((
                    callback.into_handle(),
                    CALL_FAILED | CALL_ONCE,
                    NO_CONSENT.into(),
                    String::new(),
                ));
            }
            return Ok(());
        }
        let (page, context) = browser::page(tracker.options(), location, title)?;
        let (page, context) = (Some(page), Some(context));
        let tracked: Tracked = match what {
            What::Event(kind, name, attributes) => {
                tracker.track(kind, name, page, context, attributes)
            }
            What::Identify(login_id, traits) => tracker.identify(login_id, traits, page, context),
            What::Logout => tracker.logout(page, context),
        };
        let timeout = tracker.options().session_timeout_ms;
        let mut dropped = None;
        if let Some(callback) = callback {
            self.callbacks.push((tracked.event_id.clone(), callback));
        }
        if self.consent == Consent::Granted {
            fp_queue(&tracked.text);
        } else {
            dropped = self.held.push(tracked.event_id, tracked.text);
        }
        if let Some(id) = dropped {
            self.settle(&id, Some(NO_CONSENT));
        }
        self.notices(tracked.notices);
        // One timer for the page, not one per event: when it fires, `check_idle` waits
        // again for whatever is left of the timeout since the last activity.
        if self.idle_timer.is_none() {
            self.idle_timer = Some(Timer::new(WAKE_IDLE, timeout as f64));
        }
        Ok(())
    }

    fn check_idle(&mut self) {
        let Some(tracker) = self.tracker.as_mut() else {
            return;
        };
        let (notices, again) = tracker.check_idle();
        if let Some(wait) = again {
            self.idle_timer = Some(Timer::new(WAKE_IDLE, wait as f64));
        }
        self.notices(notices);
    }

    /// Events were settled (`id`, then `!error` or nothing, for each): judged by the
    /// collector, or dropped from the full queue. Their callbacks are called, and each
    /// error is reported once however many events it concerns.
    fn sent(&mut self, text: &str) {
        let fields = browser::split(text, 1);
        let mut last = "";
        for pair in fields.chunks(2) {
            let error = pair
                .get(1)
                .filter(|e| e.as_bytes().first() == Some(&b'!'))
                .map(|e| &e[1..]);
            self.settle(pair[0], error);
            if let Some(error) = error.filter(|e| *e != last) {
                self.report("record", error);
                last = error;
            }
        }
    }

    /// Calls and lets go the callback of event `id`, if it has one.
    fn settle(&mut self, id: &str, error: Option<&str>) {
        let Some(index) = self
            .callbacks
            .iter()
            .position(|(event_id, _)| event_id == id)
        else {
            return;
        };
        let (_, callback) = self.callbacks.swap_remove(index);
        let (how, text) = match error {
            None => (CALL_OK, id),
            Some(message) => (CALL_FAILED, message),
        };
        self.calls.push((
            callback.into_handle(),
            how | CALL_ONCE,
            text.into(),
            String::new(),
        ));
    }
}

/// For the browser tests, which have no loader: hands [`wake`], as a JavaScript
/// function, to `host.js`. Not exported to JavaScript, so not in the shipped module.
#[doc(hidden)]
pub fn __footpath_connect(wake: &JsValue) {
    fp_init(wake);
}

/// For the browser tests, which have no loader: one `ac(...)` call as the loader makes
/// it. Not exported to JavaScript, so not in the shipped module.
#[doc(hidden)]
pub fn __footpath_command(arguments: &JsValue) {
    command(fp_args(arguments));
}

/// For the browser tests: what [`__footpath_state`] made, as a JavaScript object.
#[doc(hidden)]
pub fn __footpath_state_value() -> JsValue {
    __footpath_state();
    fp_state_value()
}

/// The page's `ac.state()` (for the end-to-end tests and the benchmark): makes the
/// state object in `host.js`, where the loader picks it up.
#[doc(hidden)]
#[wasm_bindgen]
pub fn __footpath_state() {
    SDK.with(|sdk| match &sdk.borrow().tracker {
        Some(tracker) => fp_state(
            tracker.visitor_id(),
            tracker.session_id().unwrap_or(""),
            true,
        ),
        None => fp_state("", "", false),
    })
}
