//! API Boundary: the only module that knows JavaScript exists.
//!
//! The loader hands every `ac(...)` call to `fp_ac` in `host.js`, which reads and checks
//! the page's arguments, answers what needs no state of the module's (handlers,
//! refusals, the plugin commands) and calls [`command`] with the rest as a few numbers
//! and strings; timers and the send queue call [`wake`]. Each goes to the core's
//! [`Sdk`], which decides everything else. No JavaScript value crosses into the
//! shipped module, only numbers and strings: an `externref` argument or result would
//! bring wasm-bindgen's reference table (its allocator in the module and its set-up in
//! the glue) for nothing else.
//!
//! The browser is reached through `host.js`, a few functions that take and return
//! strings and numbers (page facts, storage, cookie, timers, requests): one binding
//! each instead of one per DOM call keeps both the module and its glue small. The
//! page's functions stay on the JavaScript side and are held by handle.

mod browser;

use std::cell::RefCell;

use wasm_bindgen::prelude::*;

use crate::core::{Command, Sdk};
use browser::Browser;

#[wasm_bindgen(module = "/src/web/host.js")]
extern "C" {
    fn fp_init(wake: &JsValue, command: &JsValue, script_url: &str);
    fn fp_ac(list: &JsValue);
    // `i32`, not `u32`, for handles, call and timer kinds (all far below 2^31): the
    // glue passes them to `host.js` as they are, where a `u32` needs a shim (`>>> 0`).
    // Not for timer ids, which the browser chooses.
    fn fp_run();
    fn fp_free(handle: i32);
    fn fp_fail(handle: i32, text: &str);
    fn fp_emit(event: i32, session_id: &str);
    fn fp_wait(id: &str, handle: i32);
    fn fp_settle(id: &str, how: i32, text: &str);
    fn fp_report(command: &str, message: &str, id: &str);
    fn fp_hold(id: &str, text: &str, refusal: &str);
    fn fp_release(refusal: &str);
    fn fp_state(visitor_id: &str, session_id: &str, started: i32);
    fn fp_state_value() -> JsValue;
    fn fp_now() -> f64;
    fn fp_random() -> u32;
    fn fp_load(key: &str);
    fn fp_save(key: &str, value: &str);
    /// Reads the cookies called `name` (`set` 0), or sets it to `value` (`set` 1).
    fn fp_cookie(name: &str, set: i32, value: &str);
    fn fp_page();
    /// What the last of `fp_load`, `fp_cookie` and `fp_page` gave: one import that
    /// returns a string, so one shim in the glue, not three.
    fn fp_result() -> Option<String>;
    fn fp_setup();
    fn fp_signals() -> u32;
    fn fp_wipe();
    fn fp_queue(text: &str);
    fn fp_flush();
    fn fp_ping(visitor_id: &str, session_id: &str);
    fn fp_timer(which: i32, ms: f64) -> u32;
    fn fp_clear(id: u32);
}

thread_local! {
    static SDK: RefCell<Sdk<Browser>> = const { RefCell::new(Sdk::new()) };
}

/// Runs `f` on the state, then the page callbacks it asked for (`host.js` holds them
/// until `fp_run`, so that none runs while the state is borrowed).
fn with_sdk(f: &mut dyn FnMut(&mut Sdk<Browser>)) {
    SDK.with(|sdk| f(&mut sdk.borrow_mut()));
    fp_run();
}

// `&str` rather than `String` for the exports' texts: the glue frees the copy after
// the call, and the module needs no code to take a JavaScript string's buffer over as
// a `String` (wasm-bindgen's `String::from_abi` path, ~100 B gzip).
/// One `ac(...)` call as `fp_ac` in `host.js` read it (see [`Command::read`]); 1 when
/// it took effect.
#[wasm_bindgen]
pub fn command(which: u32, number: f64, handle: u32, a: &str, b: &str) -> u32 {
    let mut command = Command::read(which, number, handle, a, b);
    let mut done = false;
    with_sdk(&mut |sdk| done = command.take().is_some_and(|command| sdk.command(command)));
    done as u32
}

/// Timers and the send queue's news: `host.js` calls this export (the loader hands it
/// over with `fp_init`), which costs far less glue than a `Closure` would.
#[wasm_bindgen]
pub fn wake(kind: u32, text: &str) {
    with_sdk(&mut |sdk| sdk.wake(kind, text));
}

/// For the browser tests, which have no loader: hands [`wake`] and [`command`], as
/// JavaScript functions, to `host.js`. Not exported to JavaScript, so not in the
/// shipped module.
#[doc(hidden)]
pub fn __footpath_connect(wake: &JsValue, command: &JsValue) {
    fp_init(wake, command, "");
}

/// For the browser tests, which have no loader: one `ac(...)` call as the loader makes
/// it. Not exported to JavaScript, so not in the shipped module.
#[doc(hidden)]
pub fn __footpath_command(arguments: &JsValue) {
    fp_ac(arguments);
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
    SDK.with(|sdk| match sdk.borrow().tracker() {
        Some(tracker) => fp_state(tracker.visitor_id(), tracker.session_id().unwrap_or(""), 1),
        None => fp_state("", "", 0),
    })
}
