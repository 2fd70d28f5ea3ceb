//! The state machine behind `ac(...)`, once `host.js` has read and checked the page's
//! arguments (`fp_ac` there): what `init` sets up, the callbacks of `record` and
//! `identify` until the collector's verdict, consent, the retry backoff, the inactivity
//! timer and the interaction that keeps a reader's session alive (`WAKE_ACTIVE`).
//! Everything it does to the page goes through [`Host`], so the whole of it runs
//! natively in the tests below with a fake host that logs each effect.
//!
//! The commands arrive as [`Command`]s, each made of the few numbers and strings the
//! module's `command` export takes ([`Command::read`]). Reading the arguments is
//! `host.js`'s: the page's objects, functions and handlers stay on the JavaScript
//! side, which takes them apart and checks them with the browser's own
//! `JSON.stringify`, `typeof` and `Object.keys` for less code than the module would
//! need for the same.
//!
//! Page callbacks (`record` callbacks, `on` handlers) may call `ac(...)` again, so they
//! are never invoked while the SDK's state is borrowed: [`Host::fail`] and
//! [`Host::settle`] ask for the calls, which `host.js` makes once the export returns.
//!
//! Delivery: each event leaves the core encoded (a batch of one, with its id) and goes
//! to the send queue in `host.js`, which keeps it in `localStorage` until the collector
//! has judged it, sends it, beacons what is left when the page is hidden, and hands the
//! queues of closed pages to the next page. The callbacks wait by event id (held by
//! the host, see [`Host::wait`]), called once with the collector's verdict or the
//! refusal (events whose page is gone are still delivered by a later page, but their
//! callbacks went with their page), and so does the retry backoff
//! ([`retry_delay_ms`]).
//!
//! Size: the functions that each command runs once are marked `#[inline]`. Generic over
//! the host, LLVM left them as separate functions, which binaryen then inlined with
//! their own stack frames; the module gained 414 B gzip for the same logic. Inlined by
//! LLVM, as they were when this code was not generic, it costs the same as before.

use footpath_protocol::v1::{EventKind, MAX_EVENT_BYTES, PAGE_VIEWED};

use super::text::{digits, split};
use super::{
    decide, is_uuid, retry_delay_ms, uuid_v4, Consent, Func, Host, Notice, Options, PageviewMode,
    Signals, Timer, Tracked, Tracker, CONSENT_COOKIE, OPT_OUT_COOKIE,
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

/// How a callback is settled (see `fpCallback` in `host.js`).
pub const CALL_OK: u32 = 3;
pub const CALL_FAILED: u32 = 4;

/// The page's events the module emits, by their index in `host.js`'s `EVENTS`.
const SESSION_STARTED: u32 = 1;
const SESSION_ENDED: u32 = 2;

/// The commands by the numbers `host.js` gives them (`COMMAND_*` there).
pub const COMMAND_INIT: u32 = 0;
pub const COMMAND_PAGEVIEW: u32 = 1;
pub const COMMAND_RECORD: u32 = 2;
pub const COMMAND_IDENTIFY: u32 = 3;
pub const COMMAND_LOGOUT: u32 = 4;
pub const COMMAND_CONSENT: u32 = 5;
pub const COMMAND_OPT_OUT: u32 = 6;
pub const COMMAND_OPT_IN: u32 = 7;

/// One `ac(...)` call as `host.js` read and checked it. Texts that go into events are
/// JSON already (`host.js` writes them with `JSON.stringify`).
pub enum Command<H: Host> {
    /// `init`: what the module keeps of the options.
    Init(Options),
    /// `pageview`: the facts of its page (`,"page":{…},"context":{…}`), and its
    /// attributes (`,"attributes":{…}` or '').
    Pageview(String, String),
    /// `record`: a checked event name, its attributes (as for a page view) and the
    /// callback.
    Record(String, String, Option<Func<H>>),
    /// `identify`: the login id (`,"loginId":"…"`, or '' to keep the one before), all
    /// the traits (`,"traits":{…}` or ''), and the callback.
    Identify(String, String, Option<Func<H>>),
    /// `identify(null)`, with its callback.
    Logout(Option<Func<H>>),
    /// `consent`: granted or denied.
    Consent(Consent),
    OptOut,
    OptIn,
}

impl<H: Host> Command<H> {
    /// The command that the `command` export's arguments describe: `which`
    /// (`COMMAND_*`), then a number, a handle and two texts, whose meaning depends on
    /// the command:
    /// - init: the session timeout in ms, 1 when page views are off, the deployment id
    ///   as a JSON string, the site's consent (`'granted'`, `'pending'`, `'denied'`);
    /// - pageview: -, -, its facts, its attributes;
    /// - record: -, the callback's handle (0 for none), the name, the attributes;
    /// - identify: -, the callback's handle, the login id, the traits;
    /// - logout: -, the callback's handle;
    /// - consent: -, -, `'granted'` or `'denied'`.
    ///
    /// `None` for a number that names no command (`host.js` sends none).
    pub fn read(which: u32, number: f64, handle: u32, a: &str, b: &str) -> Option<Command<H>> {
        // Made only for the commands that take one: init's `handle` is a flag.
        let callback = || (handle > 0).then(|| Func::new(handle));
        Some(match which {
            COMMAND_INIT => Command::Init(Options {
                deployment_id: a.to_owned(),
                session_timeout_ms: number as i64,
                pageview: if handle == 1 {
                    PageviewMode::Off
                } else {
                    PageviewMode::Auto
                },
                consent: Consent::parse(b).unwrap_or(Consent::Granted),
            }),
            COMMAND_PAGEVIEW => Command::Pageview(a.to_owned(), b.to_owned()),
            COMMAND_RECORD => Command::Record(a.to_owned(), b.to_owned(), callback()),
            COMMAND_IDENTIFY => Command::Identify(a.to_owned(), b.to_owned(), callback()),
            COMMAND_LOGOUT => Command::Logout(callback()),
            COMMAND_CONSENT => Command::Consent(Consent::parse(a).unwrap_or(Consent::Denied)),
            COMMAND_OPT_OUT => Command::OptOut,
            COMMAND_OPT_IN => Command::OptIn,
            _ => return None,
        })
    }
}

/// What a tracking command records.
enum What {
    Event(EventKind, String, String),
    Identify(String, String),
    Logout,
}

pub struct Sdk<H: Host> {
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
    /// Whether `host.js` was told to store and send (at the first grant, so that
    /// nothing is read from or written to its queue before).
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
            set_up: false,
        }
    }

    /// The tracker, once `init` has made it: the visitor and session, for the test hook.
    pub fn tracker(&self) -> Option<&Tracker<H>> {
        self.tracker.as_ref()
    }

    /// One `ac(...)` call. Gives whether it took effect: `host.js` keeps the identity
    /// it hands over ([`Command::Identify`]) only then, and calls `init`'s `ready`
    /// handlers. `host.js` sends `init` once and the others only after it; should it
    /// not, nothing happens.
    #[inline]
    pub fn command(&mut self, command: Command<H>) -> bool {
        if let Command::Init(options) = command {
            return self.init(options);
        }
        if self.tracker.is_none() {
            return false;
        }
        let (what, callback) = match command {
            Command::Consent(_) | Command::OptOut | Command::OptIn => {
                let (cookie, value) = match command {
                    Command::Consent(consent) => {
                        self.signals.site = consent;
                        (
                            CONSENT_COOKIE,
                            if consent == Consent::Granted {
                                "granted"
                            } else {
                                "denied"
                            },
                        )
                    }
                    Command::OptOut => {
                        self.signals.opted_out = true;
                        (OPT_OUT_COOKIE, "1")
                    }
                    _ => {
                        self.signals.opted_out = false;
                        (OPT_OUT_COOKIE, "")
                    }
                };
                // Remembered for the next pages; only the answer, no identifier.
                H::set_cookie(cookie, value);
                self.decide();
                return true;
            }
            Command::Pageview(facts, attributes) => {
                // An explicit page view cancels the automatic one.
                self.pageview_timer = None;
                let what = What::Event(EventKind::Pageview, PAGE_VIEWED.into(), attributes);
                return self.track(what, Some(facts), None);
            }
            Command::Record(name, attributes, callback) => {
                (What::Event(EventKind::Record, name, attributes), callback)
            }
            Command::Identify(login, traits, callback) => (What::Identify(login, traits), callback),
            Command::Logout(callback) => (What::Logout, callback),
            Command::Init(_) => return false,
        };
        if self.pageview_timer.take().is_some() {
            self.auto_pageview();
        }
        self.track(what, None, callback)
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

    fn notices(&mut self, notices: Vec<Notice>) {
        for notice in notices {
            let (event, id) = match notice {
                Notice::SessionStarted(id) => (SESSION_STARTED, id),
                Notice::SessionEnded(id) => (SESSION_ENDED, id),
            };
            H::emit(event, &id);
        }
    }

    #[inline]
    fn init(&mut self, options: Options) -> bool {
        if self.tracker.is_some() {
            return false;
        }
        let pageview = options.pageview;
        self.signals = signals::<H>(&options);
        self.tracker = Some(Tracker::new(H::default(), options, visitor_id::<H>()));
        self.decide();
        if pageview == PageviewMode::Auto {
            self.pageview_timer = Some(Timer::new(WAKE_PAGEVIEW, 0.0));
        }
        true
    }

    /// The page view `init` promised.
    fn auto_pageview(&mut self) {
        let what = What::Event(EventKind::Pageview, PAGE_VIEWED.into(), String::new());
        self.track(what, None, None);
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
                H::set_cookie(VISITOR_COOKIE, tracker.visitor_id());
                if !self.set_up {
                    self.set_up = true;
                    H::setup();
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
                H::set_cookie(VISITOR_COOKIE, "");
                self.retry_timer = None;
                H::release(NO_CONSENT);
            }
        }
    }

    /// Queues an event with the facts of the page (those given, or the current page's),
    /// remembers its callback, emits session notices and re-arms the inactivity timer;
    /// `host.js` sends it. Gives whether it was recorded: not once consent is denied.
    fn track(&mut self, what: What, facts: Option<String>, callback: Option<Func<H>>) -> bool {
        let Some(tracker) = self.tracker.as_mut() else {
            return false;
        };
        if self.consent == Consent::Denied {
            // Not an error of the page's: nothing is reported, only the callback hears.
            if let Some(callback) = callback {
                H::fail(callback.into_handle(), NO_CONSENT);
            }
            return false;
        }
        let facts = facts.unwrap_or_else(H::page);
        let tracked: Tracked = match what {
            What::Event(kind, name, attributes) => tracker.track(kind, &name, &facts, &attributes),
            What::Identify(login, traits) => tracker.identify(login, traits, &facts),
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
            H::report("record", TOO_BIG, &tracked.event_id);
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
        true
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
            let (how, text) = match error {
                None => (CALL_OK, pair[0]),
                Some(message) => (CALL_FAILED, message),
            };
            H::settle(pair[0], how, text);
            if let Some(error) = error.filter(|e| *e != last) {
                H::report("record", error, "");
                last = error;
            }
        }
    }
}

/// Reads the visitor cookie (once per page, at init), or makes a new id for it. The
/// cookie is (re)written, renewing its lifetime, only once consent is granted.
#[inline]
fn visitor_id<H: Host>() -> String {
    let values = H::cookie(VISITOR_COOKIE);
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

/// What decides whether this visitor may be tracked, as the page stands now: the
/// remembered answers in their cookies and the privacy signals the site honours.
#[inline]
fn signals<H: Host>(options: &Options) -> Signals {
    let browser = H::signals();
    let consent = H::cookie(CONSENT_COOKIE);
    Signals {
        site: options.consent,
        remembered: split(&consent, 1).into_iter().find_map(Consent::parse),
        opted_out: !H::cookie(OPT_OUT_COOKIE).is_empty(),
        privacy_control: browser & 1 != 0,
        do_not_track: browser & 2 != 0,
    }
}

#[cfg(test)]
mod tests;
