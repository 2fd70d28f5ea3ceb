//! API Boundary: the only module that knows JavaScript exists.
//!
//! The loader calls [`start`] once with the URL the SDK was loaded from, then hands
//! every `ac(...)` call to [`command`], its arguments flattened by `fp_args` first;
//! timers and the send queue call [`wake`]. Each goes to the core's [`Sdk`], which
//! decides everything; this module only reads the arguments and binds `host.js`, the
//! browser's side of the core's [`crate::core::Host`]. No JavaScript value crosses into
//! the shipped module, only numbers and strings: an `externref` argument or result
//! would bring wasm-bindgen's reference table (its allocator in the module and its
//! set-up in the glue) for nothing else.
//!
//! The browser is reached through `host.js`, a few functions that take and return
//! strings and numbers (page facts, storage, cookie, timers, requests): one binding
//! each instead of one per DOM call keeps both the module and its glue small. The
//! page's arguments arrive flattened by `host.js` into core `Val`s; the page's
//! functions stay on the JavaScript side and are held by handle.

mod args;
mod browser;

use std::cell::RefCell;

use wasm_bindgen::prelude::*;

use crate::core::Sdk;
use browser::Browser;

#[wasm_bindgen(module = "/src/web/host.js")]
extern "C" {
    fn fp_init(wake: &JsValue);
    fn fp_args(list: &JsValue) -> u32;
    // `i32`, not `u32`, for indexes, handles, call and timer kinds (all far below
    // 2^31): the glue passes them to `host.js` as they are, where a `u32` needs a shim
    // (`>>> 0`). Not for timer ids, which the browser chooses.
    fn fp_kind(index: i32) -> u32;
    fn fp_text(index: i32);
    fn fp_number(index: i32) -> f64;
    fn fp_call(handle: i32, how: i32, a: &str, b: &str);
    fn fp_run();
    fn fp_free(handle: i32);
    // `once` as 0 or 1 (`host.js` only tests it).
    fn fp_on(event: i32, handle: i32, once: i32);
    fn fp_off(event: i32, handle: i32);
    fn fp_emit(event: i32, how: i32, a: &str, b: &str);
    fn fp_wait(id: &str, handle: i32);
    fn fp_settle(id: &str, how: i32, text: &str);
    fn fp_hold(id: &str, text: &str, refusal: &str);
    fn fp_release(refusal: &str);
    fn fp_state(visitor_id: &str, session_id: &str, deployment_id: &str, started: bool);
    fn fp_state_value() -> JsValue;
    fn fp_now() -> f64;
    fn fp_random() -> u32;
    fn fp_load(key: &str);
    fn fp_save(key: &str, value: &str);
    fn fp_error(text: &str);
    fn fp_origin(url: &str);
    fn fp_cookie(name: &str, set: &str);
    // The flags as `i32` too (0 or 1; `host.js` only tests them): no `!== 0` shim.
    fn fp_page(
        location: &str,
        names: &str,
        searched: i32,
        excluded: &str,
        keep_fragment: i32,
        title: &str,
        own_title: i32,
    );
    /// What the last of `fp_text`, `fp_origin`, `fp_load`, `fp_cookie` and `fp_page`
    /// gave: one import that returns a string, so one shim in the glue, not five.
    fn fp_result() -> Option<String>;
    fn fp_setup(batch_url: &str);
    fn fp_signals() -> u32;
    fn fp_wipe();
    fn fp_queue(text: &str);
    fn fp_flush();
    fn fp_ping(deployment_id: &str, visitor_id: &str, session_id: &str);
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
#[wasm_bindgen]
pub fn start(script_url: &str) {
    with_sdk(&mut |sdk| sdk.start(script_url.to_owned()));
}

/// One `ac(...)` call, whose `count` arguments `fp_args` has just flattened.
#[wasm_bindgen]
pub fn command(count: u32) {
    let mut args = args::read_args(count);
    with_sdk(&mut |sdk| sdk.command(&mut args));
}

/// Timers and the send queue's news: `host.js` calls this export (the loader hands it
/// over with `fp_init`), which costs far less glue than a `Closure` would.
#[wasm_bindgen]
pub fn wake(kind: u32, text: &str) {
    with_sdk(&mut |sdk| sdk.wake(kind, text));
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
    SDK.with(|sdk| match sdk.borrow().tracker() {
        Some(tracker) => fp_state(
            tracker.visitor_id(),
            tracker.session_id().unwrap_or(""),
            &tracker.options().deployment_id,
            true,
        ),
        None => fp_state("", "", "", false),
    })
}
