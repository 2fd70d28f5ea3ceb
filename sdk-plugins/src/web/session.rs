//! `ac('session', callback)`: the web session as the collector knows it, so that a
//! site can tell a visitor on the phone their reference ("482 913"). The callback gets
//! `{ id, shortId }` from `GET /sdk/v1/session`, or `null` when the collector has no
//! live session for the visitor (nothing stored yet, after a few tries while the first
//! events are on their way; or tracking is off). The request and its retries are in
//! `dom.js` (`fp_session`): promise callbacks cost more through wasm-bindgen.

use js_sys::{Array, Function, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use super::{fp_session, page_function, AC};
use crate::rules::cat;

pub fn ask(args: &Array) -> Result<(), String> {
    let callback: Function = args
        .get(1)
        .dyn_into()
        .map_err(|_| "needs a callback function")?;
    // `ac.state()`: the visitor, the deployment and where batches go.
    let state = page_function(&AC)
        .and_then(|ac| {
            let state: Function = Reflect::get(&ac, &"state".into()).ok()?.dyn_into().ok()?;
            state.call0(&ac).ok()
        })
        .unwrap_or(JsValue::UNDEFINED);
    let text = |key: &str| {
        Reflect::get(&state, &key.into())
            .ok()
            .and_then(|v| v.as_string())
            .unwrap_or_default()
    };
    let (visitor, deployment, batch_url) = (text("visitorId"), text("deploymentId"), text("url"));
    let Some(base) = batch_url
        .strip_suffix("batch")
        .filter(|_| !visitor.is_empty())
    else {
        // Init not done, or nothing may be sent (consent): no session to tell.
        return Err("call init first, and have consent to track".into());
    };
    let url = cat(&[
        base,
        "session?deploymentId=",
        &String::from(js_sys::encode_uri_component(&deployment)),
        "&visitorId=",
        &String::from(js_sys::encode_uri_component(&visitor)),
    ]);
    fp_session(&url, &callback);
    Ok(())
}
