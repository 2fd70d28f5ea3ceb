//! The command and callback state machine behind `ac(...)`: which commands exist, what
//! `init` sets up, the page's `on`/`once`/`off` handlers (held by the host, see
//! [`Host::on`]; with `ready` for the handlers registered before `init`), the callbacks
//! of `record` and `identify` until the collector's verdict, consent, the retry backoff, the inactivity timer and the
//! interaction that keeps a reader's session alive (`WAKE_ACTIVE`). Everything
//! it does to the page goes through [`Host`], so the whole of it runs natively in the
//! tests below with a fake host that logs each effect.
//!
//! Page callbacks (`on` handlers, `record` callbacks) may call `ac(...)` again, so they
//! are never invoked while the SDK's state is borrowed: [`Host::call`] makes them once
//! the borrow has ended (`host.js` holds them until the export returns).
//!
//! Delivery: each event leaves the core encoded (a batch of one, with its id) and goes
//! to the send queue in `host.js`, which keeps it in `localStorage` until the collector
//! has judged it, sends it, beacons what is left when the page is hidden, and hands the
//! queues of closed pages to the next page. The callbacks wait by event id (held by
//! the host, see [`Host::wait`]), called once with the collector's verdict or the
//! refusal (events whose page is gone
//! are still delivered by a later page, but their callbacks went with their page), and
//! so does the retry backoff ([`retry_delay_ms`]).
//!
//! Size: the functions that each command runs once are marked `#[inline]`. Generic over
//! the host, LLVM left them as separate functions, which binaryen then inlined with
//! their own stack frames; the module gained 414 B gzip for the same logic. Inlined by
//! LLVM, as they were when this code was not generic, it costs the same as before.

use footpath_protocol::v1::{
    AttributeValue, EventKind, Map, BATCH_PATH, MAX_EVENT_BYTES, PAGE_VIEWED,
};

use super::args::{self, Args, Val};
use super::page::page;
use super::text::{cat, digits, split};
use super::{
    decide, is_uuid, push_u64, retry_delay_ms, uuid_v4, Consent, Func, Host, Notice, Options,
    PageviewMode, Signals, Timer, Tracked, Tracker, CONSENT_COOKIE, OPT_OUT_COOKIE,
};

/// The first-party cookie that holds the visitor id.
pub const VISITOR_COOKIE: &str = "_footpath_vid";

/// What the callback of an event that was not recorded for want of consent hears.
const NO_CONSENT: &str = "[footpath] no consent: not recorded";

/// Why an event over [`MAX_EVENT_BYTES`] is refused (a literal: formatting the number
/// would cost the module more; a test keeps the two equal).
const TOO_BIG: &str = "event too big: over 65520 bytes";

/// What `host.js` calls back with (see `fp_init` there); 4 is the collector's verdicts.
pub const WAKE_FLUSH: u32 = 1;
pub const WAKE_IDLE: u32 = 2;
/// The visitor interacted with the visible page (at most once a minute).
pub const WAKE_ACTIVE: u32 = 3;
pub const WAKE_RETRY: u32 = 6;
pub const WAKE_DROPPED: u32 = 7;
/// The end of the task that called `init`: the automatic page view, unless the page
/// recorded one itself in that task (see [`Sdk::pageview_timer`]).
pub const WAKE_PAGEVIEW: u32 = 9;

/// How a held function is called (see `fp_call` in `host.js`); `+ CALL_ONCE` lets it go.
pub const CALL_PLAIN: u32 = 0;
pub const CALL_SESSION: u32 = 1;
pub const CALL_ERROR_EVENT: u32 = 2;
pub const CALL_OK: u32 = 3;
pub const CALL_FAILED: u32 = 4;
pub const CALL_ONCE: u32 = 8;

/// Events the page can subscribe to, by index.
/// The commands, in the order of the numbers below (`dispatch` matches ranges).
const COMMANDS: [&str; 13] = [
    "init",
    "on",
    "once",
    "off",
    "pageview",
    "record",
    "identify",
    "consent",
    "optOut",
    "optIn",
    "load",
    "forms:track",
    "session",
];
const INIT: usize = 0;
const ON: usize = 1;
const ONCE: usize = 2;
const OFF: usize = 3;
const PAGEVIEW: usize = 4;
const RECORD: usize = 5;
const IDENTIFY: usize = 6;
const CONSENT: usize = 7;
const OPT_OUT: usize = 8;
const OPT_IN: usize = 9;
const PLUGIN_FIRST: usize = 10;
const PLUGIN_LAST: usize = 12;

const EVENTS: [&str; 4] = ["ready", "session:started", "session:ended", "error"];
const READY: u32 = 0;
const SESSION_STARTED: u32 = 1;
const SESSION_ENDED: u32 = 2;
const ERROR: u32 = 3;

/// What a tracking command records.
enum What {
    Event(EventKind, String, Map<AttributeValue>),
    Identify(Option<String>, Map<AttributeValue>),
    Logout,
}

pub struct Sdk<H: Host> {
    /// Where the SDK was loaded from: the default collector.
    script_url: String,
    tracker: Option<Tracker<H>>,
    /// The wait before `host.js` sends again after a failure.
    retry_timer: Option<Timer<H>>,
    idle_timer: Option<Timer<H>>,
    /// Set while the automatic page view waits for the end of the task that called
    /// `init`. A page written for the Journey SDK calls `init` and then `pageview`:
    /// that explicit page view takes the automatic one's place, so that a page records
    /// one page view on load either way. Any other event recorded first has the
    /// automatic page view recorded before it, so that a journey starts with its page.
    pageview_timer: Option<Timer<H>>,
    /// Sends that failed in a row, for the backoff.
    failures: u32,
    /// What decides consent, and the decision in force.
    signals: Signals,
    consent: Consent,
    /// Events recorded while consent is pending.
    /// Where batches go; `host.js` is set up to send there at the first grant, so
    /// that nothing is read from or written to its queue before.
    batch_url: String,
    set_up: bool,
}

impl<H: Host> Default for Sdk<H> {
    fn default() -> Sdk<H> {
        Sdk::new()
    }
}

impl<H: Host> Sdk<H> {
    pub const fn new() -> Sdk<H> {
        Sdk {
            script_url: String::new(),
            tracker: None,
            retry_timer: None,
            idle_timer: None,
            pageview_timer: None,
            failures: 0,
            signals: Signals {
                site: Consent::Granted,
                remembered: None,
                opted_out: false,
                privacy_control: false,
                do_not_track: false,
            },
            consent: Consent::Pending,
            batch_url: String::new(),
            set_up: false,
        }
    }

    /// The loader starts the SDK with the URL it was loaded from.
    pub fn start(&mut self, script_url: String) {
        self.script_url = script_url;
    }

    /// The tracker, once `init` has made it: the visitor and session, for the test hook.
    pub fn tracker(&self) -> Option<&Tracker<H>> {
        self.tracker.as_ref()
    }

    /// One `ac(...)` call. A refused call is reported, and a refused `record` or
    /// `identify` still answers its callback, once.
    #[inline]
    pub fn command(&mut self, args: &mut Args<H>) {
        let name = match args.get(0) {
            Val::Str(name) => name.clone(),
            _ => String::new(),
        };
        // One look-up in a table, then numbers: string comparisons inlined at every
        // branch cost more code.
        let id = COMMANDS
            .iter()
            .position(|command| *command == name)
            .unwrap_or(COMMANDS.len());
        if let Err(message) = self.dispatch(id, &name, args) {
            let text = self.report(&name, &message);
            if id == RECORD || id == IDENTIFY {
                if let Some(callback) = args.callback() {
                    let handle = callback.into_handle();
                    H::call(handle, CALL_FAILED | CALL_ONCE, &text, "");
                }
            }
        }
    }

    /// Timers and the send queue's news (`WAKE_*`, and 4 for the collector's verdicts).
    #[inline]
    pub fn wake(&mut self, kind: u32, text: &str) {
        match kind {
            WAKE_FLUSH => {
                self.retry_timer = None;
                H::flush();
            }
            WAKE_IDLE => {
                self.idle_timer = None;
                self.check_idle();
            }
            WAKE_PAGEVIEW => {
                if self.pageview_timer.take().is_some() {
                    self.auto_pageview();
                }
            }
            WAKE_ACTIVE => self.keep_alive(),
            WAKE_RETRY => {
                // The events stay queued in `host.js`, ids unchanged.
                self.failures += 1;
                let delay = retry_delay_ms(self.failures, digits(text.trim_ascii()), H::random());
                self.retry_timer = Some(Timer::new(WAKE_FLUSH, delay as f64));
            }
            // The queue was full: these events were dropped (no answer for the backoff).
            WAKE_DROPPED => self.sent(text),
            _ => {
                self.failures = 0;
                self.sent(text);
            }
        }
    }

    #[inline]
    fn dispatch(&mut self, id: usize, name: &str, args: &mut Args<H>) -> Result<(), String> {
        match id {
            INIT => self.init(args),
            ON..=OFF => self.subscribe(id, args),
            PAGEVIEW..=OPT_IN => {
                if self.tracker.is_none() {
                    return Err("call init first".into());
                }
                // An explicit page view cancels the automatic one; consent commands
                // leave it waiting.
                if id < CONSENT && self.pageview_timer.take().is_some() && id != PAGEVIEW {
                    self.auto_pageview();
                }
                let Some(tracker) = &self.tracker else {
                    return Err("call init first".into());
                };
                match id {
                    CONSENT..=OPT_IN => {
                        let (cookie, value) = match id {
                            CONSENT => {
                                let Val::Str(value) = args.take(1) else {
                                    return Err("needs 'granted' or 'denied'".into());
                                };
                                let consent = Consent::parse(&value)
                                    .filter(|consent| *consent != Consent::Pending)
                                    .ok_or("needs 'granted' or 'denied'")?;
                                self.signals.site = consent;
                                (CONSENT_COOKIE, value)
                            }
                            OPT_OUT => {
                                self.signals.opted_out = true;
                                (OPT_OUT_COOKIE, "1".into())
                            }
                            _ => {
                                self.signals.opted_out = false;
                                (OPT_OUT_COOKIE, String::new())
                            }
                        };
                        // Remembered for the next pages; only the answer, no identifier.
                        set_cookie::<H>(tracker.options(), cookie, &value);
                        self.decide();
                        Ok(())
                    }
                    PAGEVIEW => {
                        let (location, title, attributes) = args::pageview(args.take(1))?;
                        self.track(
                            What::Event(EventKind::Pageview, PAGE_VIEWED.into(), attributes),
                            &location,
                            title,
                            None,
                        )
                    }
                    RECORD => {
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
            // The loader hands these to the plugin module, which reports its refusals
            // back through here (see `js/loader.js`): the message, as the core's own.
            PLUGIN_FIRST..=PLUGIN_LAST => match args.take(1) {
                Val::Str(message) => Err(message),
                _ => Err("is for the plugin module".into()),
            },
            _ if name.is_empty() => Err("needs a command name".into()),
            _ => Err("is not a command".into()),
        }
    }

    /// Logs the problem once on the console and tells the page's `error` handlers;
    /// gives the text it reported.
    fn report(&mut self, command: &str, message: &str) -> String {
        let text = cat(&["[footpath] ac('", command, "'): ", message]);
        H::error(&text);
        self.emit(ERROR, CALL_ERROR_EVENT, command, &text);
        text
    }

    /// Calls the page's handlers of `event` (`host.js` holds them, see [`Host::on`]).
    fn emit(&mut self, event: u32, how: u32, a: &str, b: &str) {
        H::emit(event, how, a, b);
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

    #[inline]
    fn init(&mut self, args: &mut Args<H>) -> Result<(), String> {
        if self.tracker.is_some() {
            return Err("already initialised".into());
        }
        let deployment_id = match args.take(1) {
            Val::Str(id) if !id.is_empty() => id,
            _ => return Err("needs a deployment id".into()),
        };
        let (options, problems) =
            args::options(deployment_id, H::origin(&self.script_url), args.take(2))?;
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
        self.signals = signals::<H>(&options);
        self.tracker = Some(Tracker::new(H::default(), options, visitor_id::<H>()));
        self.decide();
        for problem in problems {
            self.report("init", &problem);
        }
        if pageview == PageviewMode::Auto {
            self.pageview_timer = Some(Timer::new(WAKE_PAGEVIEW, 0.0));
        }
        // `ready` is for handlers registered before init; later ones are called at once.
        self.emit(READY, CALL_PLAIN, "", "");
        Ok(())
    }

    /// The page view `init` promised. One that fails is reported.
    fn auto_pageview(&mut self) {
        if let Err(message) = self.track(
            What::Event(EventKind::Pageview, PAGE_VIEWED.into(), Map::new()),
            "",
            None,
            None,
        ) {
            self.report("pageview", &message);
        }
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
        match consent {
            Consent::Granted if was != Consent::Granted => {
                set_cookie::<H>(tracker.options(), VISITOR_COOKIE, tracker.visitor_id());
                if !self.set_up {
                    self.set_up = true;
                    H::setup(&self.batch_url);
                }
                tracker.set_storing(true);
                H::release("");
            }
            Consent::Granted => {}
            Consent::Pending => tracker.set_storing(false),
            Consent::Denied => {
                tracker.set_storing(false);
                tracker.set_visitor_id(new_visitor_id::<H>());
                // Also on a page that starts denied: the cookie and a queue may be
                // left from before the visitor said no.
                H::wipe();
                set_cookie::<H>(tracker.options(), VISITOR_COOKIE, "");
                self.retry_timer = None;
                H::release(NO_CONSENT);
            }
        }
    }

    #[inline]
    fn subscribe(&mut self, how: usize, args: &mut Args<H>) -> Result<(), String> {
        let event = match args.get(1) {
            Val::Str(name) => EVENTS.iter().position(|event| event == name),
            _ => None,
        }
        .ok_or("unknown event")?;
        let Val::Func(function) = args.take(2) else {
            return Err("needs a function".into());
        };
        let event = event as u32;
        if how == OFF {
            // The handle given to `off` is let go when the arguments are.
            H::off(event, function.handle());
        } else if event == READY && self.tracker.is_some() {
            H::call(function.into_handle(), CALL_PLAIN | CALL_ONCE, "", "");
        } else {
            H::on(event, function.into_handle(), how == ONCE);
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
        callback: Option<Func<H>>,
    ) -> Result<(), String> {
        let Some(tracker) = self.tracker.as_mut() else {
            return Err("not initialised".into());
        };
        if self.consent == Consent::Denied {
            // Not an error of the page's: nothing is reported, only the callback hears.
            if let Some(callback) = callback {
                H::call(
                    callback.into_handle(),
                    CALL_FAILED | CALL_ONCE,
                    NO_CONSENT,
                    "",
                );
            }
            return Ok(());
        }
        let facts = page::<H>(tracker.options(), location, title)?;
        let tracked: Tracked = match what {
            What::Event(kind, name, attributes) => tracker.track(kind, name, &facts, attributes),
            What::Identify(login_id, traits) => tracker.identify(login_id, traits, &facts),
            What::Logout => tracker.logout(&facts),
        };
        let timeout = tracker.options().session_timeout_ms;
        if let Some(callback) = callback {
            H::wait(&tracked.event_id, callback.into_handle());
        }
        if tracked.text.len() > MAX_EVENT_BYTES {
            // No request could carry it: refused now, as the collector would refuse it
            // (reported, and its callback told), rather than sent in vain. The
            // visitor's activity still counts for the session.
            let text = self.report("record", TOO_BIG);
            self.settle(&tracked.event_id, Some(&text));
        } else if self.consent == Consent::Granted {
            H::queue(&tracked.text);
        } else {
            H::hold(&tracked.event_id, &tracked.text, NO_CONSENT);
        }
        self.notices(tracked.notices);
        // One timer for the page, not one per event: when it fires, `check_idle` waits
        // again for whatever is left of the timeout since the last activity.
        if self.idle_timer.is_none() {
            self.idle_timer = Some(Timer::new(WAKE_IDLE, timeout as f64));
        }
        Ok(())
    }

    /// Interaction keeps the session alive while the visitor reads: the tracker says
    /// when it is time to tell the collector (see [`Tracker::keep_alive`]), and the
    /// Journey API's ping tells it without an event. Only once consent is granted, as
    /// the ping sends the visitor id.
    #[inline]
    fn keep_alive(&mut self) {
        let Some(tracker) = self.tracker.as_mut() else {
            return;
        };
        if self.consent != Consent::Granted {
            return;
        }
        let Some(notices) = tracker.keep_alive() else {
            return;
        };
        H::ping(
            &tracker.options().deployment_id,
            tracker.visitor_id(),
            tracker.session_id().unwrap_or_default(),
        );
        self.notices(notices);
    }

    #[inline]
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
        let fields = split(text, 1);
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
        let (how, text) = match error {
            None => (CALL_OK, id),
            Some(message) => (CALL_FAILED, message),
        };
        H::settle(id, how | CALL_ONCE, text);
    }
}

/// Reads the visitor cookie (once per page, at init), or makes a new id for it. The
/// cookie is (re)written, renewing its lifetime, only once consent is granted.
#[inline]
fn visitor_id<H: Host>() -> String {
    let values = H::cookie(VISITOR_COOKIE, "");
    let mut id = None;
    for value in split(&values, 1) {
        if is_uuid(value) {
            id = Some(value.to_owned());
            break;
        }
    }
    id.unwrap_or_else(new_visitor_id::<H>)
}

fn new_visitor_id<H: Host>() -> String {
    let mut random = [0u8; 16];
    H::default().fill_random(&mut random);
    uuid_v4(random)
}

/// Sets first-party cookie `name` for the visitor's lifetime, or removes it when
/// `value` is empty.
fn set_cookie<H: Host>(options: &Options, name: &str, value: &str) {
    let mut cookie = cat(&[name, "=", value, "; Max-Age="]);
    let days = if value.is_empty() {
        0
    } else {
        options.cookie_expiry_days
    };
    push_u64(&mut cookie, days as u64 * 86_400);
    cookie.push_str("; Path=/; SameSite=Lax");
    if let Some(domain) = &options.cookie_domain {
        cookie.push_str("; Domain=");
        cookie.push_str(domain);
    }
    // `host.js` adds `Secure` on https pages.
    H::cookie("", &cookie);
}

/// What decides whether this visitor may be tracked, as the page stands now: the
/// remembered answers in their cookies and the browser's privacy signals.
#[inline]
fn signals<H: Host>(options: &Options) -> Signals {
    let browser = H::signals();
    let consent = H::cookie(CONSENT_COOKIE, "");
    Signals {
        site: options.consent,
        remembered: split(&consent, 1).into_iter().find_map(Consent::parse),
        opted_out: !H::cookie(OPT_OUT_COOKIE, "").is_empty(),
        privacy_control: options.honor_global_privacy_control && browser & 1 != 0,
        do_not_track: options.honor_do_not_track && browser & 2 != 0,
    }
}

#[cfg(test)]
mod tests;
