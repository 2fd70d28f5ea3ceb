//! What the SDK's command logic ([`super::Sdk`]) needs from the page beyond the
//! [`Platform`]'s clock, randomness and storage: cookies, the page's facts, the send
//! queue of `host.js`, the Journey API's ping, timers, reports and the page's
//! functions.
//!
//! The effects are associated functions rather than methods: the browser's host is
//! `host.js` itself, with no state on the Rust side, and a held page function or a
//! pending timer can then let go of itself on drop ([`Func`], [`Timer`]) without
//! holding a reference to anything. The native tests implement it with a fake that
//! writes every effect to a log (`super::sdk`'s tests).

use std::marker::PhantomData;

use super::Platform;

pub trait Host: Platform + Default + 'static {
    /// Lets go of the page function with this handle.
    fn free(handle: u32);
    /// Calls the page function with this handle with an `Error(text)` and lets it go,
    /// once the SDK's state is no longer borrowed: the page's function may call
    /// `ac(...)` again. The browser's host holds the calls until the export returns.
    fn fail(handle: u32, text: &str);
    /// Calls the page's handlers of `session:started` or `session:ended` (`event`, an
    /// index in `host.js`'s `EVENTS`) with the session's id, as [`Host::fail`] does.
    fn emit(event: u32, session_id: &str);
    /// Holds the page function with this handle as the callback of event `id`, until
    /// [`Host::settle`].
    fn wait(id: &str, handle: u32);
    /// Calls the callback of event `id`, if it has one waiting, as [`Host::fail`] does:
    /// `how` says with what (`CALL_OK`: `(null, { id })`; `CALL_FAILED`: an `Error`
    /// of `text`).
    fn settle(id: &str, how: u32, text: &str);
    /// Reports a refusal of the page's `command`: on the console and to the page's
    /// `error` handlers, as `host.js` reports the refusals it finds itself; with the
    /// callback of event `id` (if it is not empty) told the same.
    fn report(command: &str, message: &str, id: &str);
    /// The values of the cookies called `name`, joined by `\x01`.
    fn cookie(name: &str) -> String;
    /// Sets first-party cookie `name` for the visitor's lifetime (with the domain and
    /// lifetime the page's options gave), or removes it when `value` is empty.
    fn set_cookie(name: &str, value: &str);
    /// The browser's privacy signals that the site honours: 1 Global Privacy Control,
    /// 2 Do Not Track.
    fn signals() -> u32;
    /// `,"page":{…},"context":{…}`, the JSON of the current page and of the browser.
    fn page() -> String;
    /// Lets the send queue store and send.
    fn setup();
    /// Forgets the send queue and removes everything Footpath stored.
    fn wipe();
    /// Hands an encoded event to the send queue.
    fn queue(text: &str);
    /// Keeps event `id`, `text` while consent is pending, oldest first, at most 200:
    /// beyond that new ones are dropped (the first, such as the page view, matter
    /// most), their callbacks settled with `refusal` (see [`Host::settle`]), so that a
    /// page left open for hours without an answer does not grow without bound.
    fn hold(id: &str, text: &str, refusal: &str);
    /// Hands the held events to the send queue (a grant: `refusal` empty), or drops
    /// them, settling their callbacks with `refusal` (a denial).
    fn release(refusal: &str);
    /// Resumes sending at once.
    fn flush();
    /// Sends the Journey API's ping for this visitor and session to the collector that
    /// the page's options named (a GET; its answer is not read).
    fn ping(visitor_id: &str, session_id: &str);
    /// Calls the module's `wake(which, '')` after `ms`; gives the timer's id.
    fn timer(which: u32, ms: f64) -> u32;
    fn clear(timer: u32);
    /// A random number, for the retry jitter.
    fn random() -> u32;
}

/// A page function the SDK holds, by handle; let go on drop.
#[must_use]
pub struct Func<H: Host>(u32, PhantomData<H>);

impl<H: Host> Func<H> {
    pub fn new(handle: u32) -> Func<H> {
        Func(handle, PhantomData)
    }

    /// The handle, for a call that lets the function go after running it.
    pub fn into_handle(self) -> u32 {
        let handle = self.0;
        std::mem::forget(self);
        handle
    }
}

impl<H: Host> Drop for Func<H> {
    fn drop(&mut self) {
        H::free(self.0);
    }
}

/// A pending timer, cancelled on drop.
#[must_use]
pub struct Timer<H: Host>(u32, PhantomData<H>);

impl<H: Host> Timer<H> {
    pub fn new(which: u32, ms: f64) -> Timer<H> {
        Timer(H::timer(which, ms), PhantomData)
    }
}

impl<H: Host> Drop for Timer<H> {
    fn drop(&mut self) {
        H::clear(self.0);
    }
}
