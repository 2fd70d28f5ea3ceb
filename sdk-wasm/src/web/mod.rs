//! API Boundary: the only module that knows JavaScript exists.
//!
//! The loader calls [`start`] once with the URL the SDK was loaded from, then hands
//! every `ac(...)` call to [`command`] as an array of its arguments. Nothing here may
//! panic on bad input: every argument is checked and refused with a message.
//!
//! Page callbacks (`on` handlers, `record` callbacks) may call `ac(...)` again, so they
//! are never invoked while the SDK's state is borrowed: state changes collect the calls
//! to make in a [`Calls`] list, which runs after the borrow ends.

mod args;
mod browser;

use std::cell::RefCell;


use footpath_protocol::v1::{encode_batch, AttributeValue, Batch, EventKind, Map, BATCH_PATH, PAGE_VIEWED};
use js_sys::{Array, Function, Object, Reflect};
use wasm_bindgen::prelude::*;

use crate::core::{Flush, Notice, PageviewMode, Tracked, Tracker};
use browser::Browser;

/// Most events in one request; the collector accepts up to 100.
const MAX_EVENTS_PER_REQUEST: usize = 50;
/// Retry delays double from the first to the last.
const FIRST_RETRY_MS: u32 = 1_000;
const MAX_RETRY_MS: u32 = 60_000;

struct Handler {
    event: String,
    function: Function,
    once: bool,
}

#[derive(Default)]
struct Sdk {
    /// Where the SDK was loaded from: the default collector.
    script_url: String,
    tracker: Option<Tracker<Browser>>,
    handlers: Vec<Handler>,
    /// `record`/`identify` callbacks waiting for the collector's answer, by event id.
    callbacks: Vec<(String, Function)>,
    /// Timers cannot be cancelled by dropping them from inside their own callback, so
    /// each schedule bumps a generation and a stale timer does nothing when it fires.
    flush_generation: u32,
    idle_generation: u32,
    /// Sends are strictly one at a time, which keeps events in order.
    in_flight: bool,
    retry_ms: u32,
}

thread_local! {
    static SDK: RefCell<Sdk> = RefCell::new(Sdk::default());
}

/// Functions to call, with their arguments, once the state is no longer borrowed.
type Calls = Vec<(Function, Array)>;

fn run(calls: Calls) {
    for (function, arguments) in calls {
        // A throwing page callback must not stop the SDK, nor the other callbacks.
        let _ = function.apply(&JsValue::UNDEFINED, &arguments);
    }
}

fn with_sdk<R>(f: impl FnOnce(&mut Sdk) -> R) -> R {
    SDK.with(|sdk| f(&mut sdk.borrow_mut()))
}

#[wasm_bindgen]
pub fn start(script_url: String) {
    with_sdk(|sdk| sdk.script_url = script_url);
    browser::listen_for_page_hide(|| {
        let calls = with_sdk(|sdk| sdk.flush(true));
        run(calls);
    });
}

/// One `ac(...)` call.
#[wasm_bindgen]
pub fn command(arguments: Array) {
    let calls = with_sdk(|sdk| {
        let name = arguments.get(0).as_string().unwrap_or_default();
        match sdk.command(&name, &arguments) {
            Ok(calls) => calls,
            Err(message) => sdk.report(&name, message),
        }
    });
    run(calls);
}

impl Sdk {
    fn command(&mut self, name: &str, arguments: &Array) -> Result<Calls, String> {
        match name {
            "init" => self.init(arguments),
            "on" | "once" | "off" => self.subscribe(name, arguments),
            "pageview" | "record" | "identify" => {
                if self.tracker.is_none() {
                    return Err("call ac('init', deploymentId) first".into());
                }
                match name {
                    "pageview" => self.pageview(arguments),
                    "record" => self.record(arguments),
                    _ => self.identify(arguments),
                }
            }
            "load" | "forms:track" => Err("is not supported by this version of the SDK".into()),
            "" => Err("the first argument must be a command name such as 'record'".into()),
            _ => Err("is not a command".into()),
        }
    }

    /// Logs the problem once on the console and tells the page's `error` handlers.
    fn report(&mut self, command: &str, message: String) -> Calls {
        let mut text = String::from("[footpath] ac('");
        text.push_str(command);
        text.push_str("'): ");
        text.push_str(&message);
        web_sys::console::error_1(&JsValue::from_str(&text));
        let detail = Object::new();
        let _ = Reflect::set(&detail, &"command".into(), &command.into());
        let _ = Reflect::set(&detail, &"message".into(), &text.into());
        self.emit("error", detail.into())
    }

    fn emit(&mut self, event: &str, detail: JsValue) -> Calls {
        let mut calls = Calls::new();
        self.handlers.retain(|handler| {
            if handler.event != event {
                return true;
            }
            calls.push((handler.function.clone(), Array::of1(&detail)));
            !handler.once
        });
        calls
    }

    fn emit_notices(&mut self, notices: Vec<Notice>) -> Calls {
        let mut calls = Calls::new();
        for notice in notices {
            let (event, id) = match notice {
                Notice::SessionStarted(id) => ("session:started", id),
                Notice::SessionEnded(id) => ("session:ended", id),
            };
            let detail = Object::new();
            let _ = Reflect::set(&detail, &"sessionId".into(), &id.into());
            calls.extend(self.emit(event, detail.into()));
        }
        calls
    }

    fn init(&mut self, arguments: &Array) -> Result<Calls, String> {
        if self.tracker.is_some() {
            return Err("the SDK is already initialised on this page".into());
        }
        let deployment_id = arguments
            .get(1)
            .as_string()
            .filter(|id| !id.is_empty())
            .ok_or("the deployment id (second argument) must be a non-empty string")?;
        let default_collector = browser::origin_of(&self.script_url).unwrap_or_default();
        let (options, problems) = args::options(deployment_id, default_collector, &arguments.get(2))?;
        if options.collector_url.is_empty() {
            return Err("no collectorUrl option, and the SDK's own origin is unknown".into());
        }
        let pageview = options.pageview;
        let platform = Browser::new().ok_or("this page has no window or document")?;
        let visitor_id = platform.visitor_id(&options);
        self.tracker = Some(Tracker::new(platform, options, visitor_id));
        let mut calls = Calls::new();
        for problem in problems {
            calls.extend(self.report("init", problem));
        }
        if pageview == PageviewMode::Auto {
            calls.extend(self.track_pageview(None, None, Map::new())?);
        }
        // `ready` is for handlers registered before init; later ones are called at once.
        calls.extend(self.emit("ready", JsValue::UNDEFINED));
        Ok(calls)
    }

    fn subscribe(&mut self, how: &str, arguments: &Array) -> Result<Calls, String> {
        let event = arguments.get(1).as_string().ok_or("the event name must be a string")?;
        if !matches!(event.as_str(), "ready" | "session:started" | "session:ended" | "error") {
            return Err("unknown event; use ready, session:started, session:ended or error".into());
        }
        let function: Function = arguments.get(2).dyn_into().map_err(|_| "the handler must be a function")?;
        if how == "off" {
            self.handlers.retain(|h| !(h.event == event && h.function == function));
            return Ok(Calls::new());
        }
        if event == "ready" && self.tracker.is_some() {
            return Ok(vec![(function, Array::new())]);
        }
        self.handlers.push(Handler { event, function, once: how == "once" });
        Ok(Calls::new())
    }

    fn pageview(&mut self, arguments: &Array) -> Result<Calls, String> {
        let request = args::pageview(&arguments.get(1))?;
        self.track_pageview(request.location, request.title, request.attributes)
    }

    fn track_pageview(
        &mut self,
        location: Option<String>,
        title: Option<String>,
        attributes: Map<AttributeValue>,
    ) -> Result<Calls, String> {
        let tracker = self.tracker.as_mut().ok_or("not initialised")?;
        let page = browser::page(tracker.options(), location.as_deref(), title)?;
        let tracked =
            tracker.track(EventKind::Pageview, PAGE_VIEWED.into(), Some(page), Some(browser::context()), attributes);
        Ok(self.after_track(tracked, None))
    }

    fn record(&mut self, arguments: &Array) -> Result<Calls, String> {
        let request = args::record(arguments)?;
        let tracker = self.tracker.as_mut().ok_or("not initialised")?;
        let page = browser::page(tracker.options(), None, None)?;
        let tracked =
            tracker.track(EventKind::Record, request.name, Some(page), Some(browser::context()), request.attributes);
        Ok(self.after_track(tracked, request.callback))
    }

    fn identify(&mut self, arguments: &Array) -> Result<Calls, String> {
        let request = args::identify(arguments)?;
        let tracker = self.tracker.as_mut().ok_or("not initialised")?;
        let page = browser::page(tracker.options(), None, None)?;
        let tracked = if request.logout {
            tracker.logout(Some(page), Some(browser::context()))
        } else {
            tracker.identify(request.login_id, request.traits, Some(page), Some(browser::context()))
        };
        Ok(self.after_track(tracked, request.callback))
    }

    /// Remembers the callback, emits session notices, re-arms the inactivity timer and
    /// schedules the send the tracker asked for.
    fn after_track(&mut self, tracked: Tracked, callback: Option<Function>) -> Calls {
        if let Some(callback) = callback {
            self.callbacks.push((tracked.event_id, callback));
        }
        let mut calls = self.emit_notices(tracked.notices);
        if let Some(timeout) = self.tracker.as_ref().map(|t| t.options().session_timeout_ms) {
            schedule_idle_check(self, timeout);
        }
        match tracked.flush {
            Flush::Now => calls.extend(self.flush(false)),
            Flush::After(ms) => schedule_flush(self, ms as u32),
            Flush::Scheduled => {}
        }
        calls
    }

    /// Sends what is queued. When the page is being hidden or unloaded everything goes
    /// out at once by beacon; otherwise one request at a time.
    fn flush(&mut self, page_hiding: bool) -> Calls {
        let Some(tracker) = self.tracker.as_mut() else {
            return Calls::new();
        };
        let url = {
            let mut url = tracker.options().collector_url.trim_end_matches('/').to_owned();
            url.push_str(BATCH_PATH);
            url
        };
        if page_hiding {
            while let Some(batch) = tracker.take_batch(MAX_EVENTS_PER_REQUEST) {
                if !browser::send_beacon(&url, &encode_batch(&batch)) {
                    // The beacon queue is full: keep the rest for a keepalive fetch.
                    tracker.requeue(batch.events);
                    break;
                }
            }
            if self.in_flight {
                return Calls::new();
            }
        }
        if self.in_flight {
            return Calls::new();
        }
        let Some(batch) = tracker.take_batch(MAX_EVENTS_PER_REQUEST) else {
            return Calls::new();
        };
        self.in_flight = true;
        let body = encode_batch(&batch);
        browser::post(&url, &body, move |outcome| {
            let calls = with_sdk(|sdk| sdk.sent(batch, outcome));
            run(calls);
        });
        Calls::new()
    }

    /// The collector answered (or the network failed) for `batch`.
    fn sent(&mut self, batch: Batch, outcome: browser::PostOutcome) -> Calls {
        self.in_flight = false;
        let mut calls = Calls::new();
        match outcome {
            browser::PostOutcome::Answered { results } => {
                self.retry_ms = 0;
                for result in results {
                    calls.extend(self.settle(&result.id, result.error.clone()));
                    if let Some(error) = result.error {
                        calls.extend(self.report("record", error));
                    }
                }
                // Events the collector did not mention are settled as failed.
                for event in &batch.events {
                    calls.extend(self.settle(&event.id, Some("no result from the collector".into())));
                }
            }
            browser::PostOutcome::Refused { status, message } => {
                self.retry_ms = 0;
                let mut text = String::from("the collector refused the events: ");
                text.push_str(&message);
                for event in &batch.events {
                    calls.extend(self.settle(&event.id, Some(text.clone())));
                }
                let _ = status;
                calls.extend(self.report("record", text));
            }
            browser::PostOutcome::Retry { after_ms } => {
                self.retry_ms = (self.retry_ms.saturating_mul(2)).clamp(FIRST_RETRY_MS, MAX_RETRY_MS);
                let delay = after_ms.unwrap_or(self.retry_ms).min(MAX_RETRY_MS);
                if let Some(tracker) = self.tracker.as_mut() {
                    tracker.requeue(batch.events);
                }
                schedule_flush(self, delay);
                return calls;
            }
        }
        if self.tracker.as_ref().is_some_and(|t| t.queued() > 0) {
            calls.extend(self.flush(false));
        }
        calls
    }

    /// Calls and forgets the callback of event `id`, if it has one.
    fn settle(&mut self, id: &str, error: Option<String>) -> Calls {
        let Some(index) = self.callbacks.iter().position(|(event_id, _)| event_id == id) else {
            return Calls::new();
        };
        let (_, callback) = self.callbacks.swap_remove(index);
        let arguments = match error {
            None => {
                let result = Object::new();
                let _ = Reflect::set(&result, &"id".into(), &id.into());
                Array::of2(&JsValue::NULL, &result)
            }
            Some(message) => Array::of1(&js_sys::Error::new(&message)),
        };
        vec![(callback, arguments)]
    }
}

fn schedule_flush(sdk: &mut Sdk, ms: u32) {
    sdk.flush_generation = sdk.flush_generation.wrapping_add(1);
    let generation = sdk.flush_generation;
    gloo_timers::callback::Timeout::new(ms, move || {
        let calls = with_sdk(|sdk| if sdk.flush_generation == generation { sdk.flush(false) } else { Calls::new() });
        run(calls);
    })
    .forget();
}

fn schedule_idle_check(sdk: &mut Sdk, ms: i64) {
    sdk.idle_generation = sdk.idle_generation.wrapping_add(1);
    let generation = sdk.idle_generation;
    let ms = ms.clamp(0, u32::MAX as i64) as u32;
    gloo_timers::callback::Timeout::new(ms, move || {
        let calls = with_sdk(|sdk| {
            if sdk.idle_generation != generation {
                return Calls::new();
            }
            let Some(tracker) = sdk.tracker.as_mut() else {
                return Calls::new();
            };
            let (notices, again) = tracker.check_idle();
            if let Some(wait) = again {
                schedule_idle_check(sdk, wait);
            }
            sdk.emit_notices(notices)
        });
        run(calls);
    })
    .forget();
}

/// Test hooks for the browser tests in `tests/`: not part of the page-facing API.
#[doc(hidden)]
#[wasm_bindgen]
pub fn __footpath_state() -> JsValue {
    with_sdk(|sdk| {
        let state = Object::new();
        if let Some(tracker) = &sdk.tracker {
            let _ = Reflect::set(&state, &"visitorId".into(), &tracker.visitor_id().into());
            if let Some(session) = tracker.session_id() {
                let _ = Reflect::set(&state, &"sessionId".into(), &session.into());
            }
            let _ = Reflect::set(&state, &"queued".into(), &(tracker.queued() as u32).into());
        }
        state.into()
    })
}
