//! Footpath's browser SDK.
//!
//! Architecture Invariant: `core` is plain Rust. It knows nothing of JavaScript, takes
//! its clock, randomness and storage through the [`core::Platform`] trait and every
//! other effect (cookies, page facts, the send queue, timers, console, page functions)
//! through [`core::Host`], and is unit tested natively: the commands and callbacks too.
//! `web` is the only module that touches `wasm_bindgen` or `JsValue` (the module links
//! neither `web_sys` nor `js_sys`: `host.js` is its browser, and reads and checks the
//! page's `ac(...)` arguments); it implements the host on `host.js` and hands every
//! command to the core's `Sdk`.
//!
//! Architecture Invariant: nothing panics across the JS boundary. Bad calls are reported
//! on the console and through `on('error')`; the loader also wraps every call in
//! `try`/`catch`, so that even a trap in the module cannot break the page.

pub mod core;

#[cfg(target_arch = "wasm32")]
mod web;

/// The functions the loader calls; public so that the browser tests drive the SDK
/// exactly as a page does.
#[cfg(target_arch = "wasm32")]
pub use web::{
    __footpath_command, __footpath_connect, __footpath_state, __footpath_state_value, command, wake,
};

/// The standard wasm allocator (dlmalloc) is tuned for speed and costs several KB of
/// code; the SDK allocates little, so a small free-list allocator serves it better.
// SAFETY: wasm32-unknown-unknown without the atomics feature runs on one thread only,
// which is what `AssumeSingleThreaded` requires.
#[cfg(target_arch = "wasm32")]
#[global_allocator]
#[allow(unsafe_code)]
static ALLOCATOR: lol_alloc::AssumeSingleThreaded<lol_alloc::FreeListAllocator> =
    unsafe { lol_alloc::AssumeSingleThreaded::new(lol_alloc::FreeListAllocator::new()) };
