//! The browser underneath: the core's [`Platform`] and [`Host`] on the string-and-number
//! functions of `host.js`.

use super::*;
use crate::core::{Host, Platform};

#[derive(Default)]
pub struct Browser;

impl Platform for Browser {
    fn now_ms(&self) -> i64 {
        fp_now() as i64
    }

    fn fill_random(&self, buf: &mut [u8]) {
        let mut random = 0;
        for (i, b) in buf.iter_mut().enumerate() {
            if i % 4 == 0 {
                random = fp_random();
            }
            *b = (random >> (8 * (i % 4))) as u8;
        }
    }

    fn load(&self, key: &str) -> Option<String> {
        fp_load(key);
        fp_result()
    }

    fn save(&self, key: &str, value: &str) {
        fp_save(key, value);
    }

    fn remove(&self, key: &str) {
        fp_save(key, "");
    }
}

impl Host for Browser {
    fn free(handle: u32) {
        fp_free(handle as i32);
    }
    fn call(handle: u32, how: u32, a: &str, b: &str) {
        fp_call(handle as i32, how as i32, a, b);
    }
    fn on(event: u32, handle: u32, once: bool) {
        fp_on(event as i32, handle as i32, once as i32);
    }
    fn off(event: u32, handle: u32) {
        fp_off(event as i32, handle as i32);
    }
    fn emit(event: u32, how: u32, a: &str, b: &str) {
        fp_emit(event as i32, how as i32, a, b);
    }
    fn wait(id: &str, handle: u32) {
        fp_wait(id, handle as i32);
    }
    fn settle(id: &str, how: u32, text: &str) {
        fp_settle(id, how as i32, text);
    }
    fn error(text: &str) {
        fp_error(text);
    }
    fn cookie(name: &str, set: &str) -> String {
        fp_cookie(name, set);
        fp_result().unwrap_or_default()
    }
    fn signals() -> u32 {
        fp_signals()
    }
    fn origin(url: &str) -> String {
        fp_origin(url);
        fp_result().unwrap_or_default()
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
        fp_page(
            location,
            names,
            searched as i32,
            excluded,
            keep_fragment as i32,
            title,
            own_title as i32,
        );
        fp_result()
    }
    fn setup(batch_url: &str) {
        fp_setup(batch_url);
    }
    fn wipe() {
        fp_wipe();
    }
    fn queue(text: &str) {
        fp_queue(text);
    }
    fn hold(id: &str, text: &str, refusal: &str) {
        fp_hold(id, text, refusal);
    }
    fn release(refusal: &str) {
        fp_release(refusal);
    }
    fn flush() {
        fp_flush();
    }
    fn ping(deployment_id: &str, visitor_id: &str, session_id: &str) {
        fp_ping(deployment_id, visitor_id, session_id);
    }
    fn timer(which: u32, ms: f64) -> u32 {
        fp_timer(which as i32, ms)
    }
    fn clear(timer: u32) {
        fp_clear(timer);
    }
    fn random() -> u32 {
        fp_random()
    }
}
