//! `ac('session', callback)`: the web session as the collector knows it, so that a
//! site can tell a visitor on the phone their reference ("482 913"). The callback gets
//! `{ id, shortId }` from `GET /sdk/v1/session`, or `null` when the collector has no
//! live session for the visitor (nothing stored yet, after a few tries while the first
//! events are on their way; or tracking is off). The request and its retries are in
//! `dom.js` (`fp_session`), which reads where to ask from `ac.state()`: promise
//! callbacks and property reads cost more through wasm-bindgen.

use super::{arg, fp_session};
use crate::rules::Val;

pub fn ask(args: &[Val]) -> Result<(), String> {
    let Val::Function = arg(args, 1) else {
        return Err("needs a callback function".into());
    };
    // Init not done, or nothing may be sent (consent): no session to tell.
    if !fp_session() {
        return Err("call init first, and have consent to track".into());
    }
    Ok(())
}
