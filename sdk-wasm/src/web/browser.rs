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
    fn fail(handle: u32, text: &str) {
        fp_fail(handle as i32, text);
    }
    fn emit(event: u32, session_id: &str) {
        fp_emit(event as i32, session_id);
    }
    fn wait(id: &str, handle: u32) {
        fp_wait(id, handle as i32);
    }
    fn settle(id: &str, how: u32, text: &str) {
        fp_settle(id, how as i32, text);
    }
    fn report(command: &str, message: &str, id: &str) {
        fp_report(command, message, id);
    }
    fn cookie(name: &str) -> String {
        fp_cookie(name, 0, "");
        fp_result().unwrap_or_default()
    }
    fn set_cookie(name: &str, value: &str) {
        fp_cookie(name, 1, value);
    }
    fn signals() -> u32 {
        fp_signals()
    }
    fn page() -> String {
        fp_page();
        fp_result().unwrap_or_default()
    }
    fn setup() {
        fp_setup();
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
    fn ping(visitor_id: &str, session_id: &str) {
        fp_ping(visitor_id, session_id);
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
