//! Footpath's plugin module: `ac('load', plugin, options, loadedCallback)`,
//! `ac('forms:track', selector, options)` and `ac('session', callback)`.
//!
//! The SDK's loader fetches this module (`footpath-plugins.js` and its wasm) only when
//! a page first makes one of these calls, so that a page that makes none downloads
//! nothing more. It is a client of the page's own `ac`: what it observes becomes
//! `ac('record', ...)`, `ac('pageview')` and `ac('identify', ...)` calls, which the
//! core checks, queues and delivers like any other; its refusals go back to the core
//! through the loader's `refuse(command, message)`, and the core reports them on the
//! console and to `on('error')` handlers.
//!
//! Architecture Invariant: `rules` is plain Rust, tested natively: the options a page
//! may pass, which form fields may leave the page, attribute names, scroll depth.
//! `web` reads the DOM into those shapes and acts on the answers.

pub mod rules;

#[cfg(target_arch = "wasm32")]
mod web;

#[cfg(target_arch = "wasm32")]
pub use web::run;

// SAFETY: wasm32-unknown-unknown without the atomics feature runs on one thread only,
// which is what `AssumeSingleThreaded` requires.
#[cfg(target_arch = "wasm32")]
#[global_allocator]
#[allow(unsafe_code)]
static ALLOCATOR: lol_alloc::AssumeSingleThreaded<lol_alloc::FreeListAllocator> =
    unsafe { lol_alloc::AssumeSingleThreaded::new(lol_alloc::FreeListAllocator::new()) };
