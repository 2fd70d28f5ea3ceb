//! `ac('session', callback)`: the web session as the collector knows it, so that a
//! site can tell a visitor on the phone their reference ("482 913"). The callback gets
//! `{ id, shortId }` from `GET /sdk/v1/session`, or `null` when the collector has no
//! live session for the visitor (nothing stored yet, after a few tries while the first
//! events are on their way; or tracking is off).

use js_sys::{Array, Function, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::Response;

use super::{once, page_function, set, timeout, window, AC};
use crate::rules::cat;

/// Tries while the collector has no session yet (the first page view may still be on
/// its way), a second apart.
const ATTEMPTS: u32 = 10;
const RETRY_MS: u32 = 1_000;

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
    fetch(url, callback, 1);
    Ok(())
}

fn fetch(url: String, callback: Function, attempt: u32) {
    let Some(window) = window() else {
        return answer(&callback, JsValue::NULL);
    };
    let again = {
        let (url, callback) = (url.clone(), callback.clone());
        move || {
            if attempt < ATTEMPTS {
                timeout(RETRY_MS, move || fetch(url, callback, attempt + 1)).forget();
            } else {
                answer(&callback, JsValue::NULL);
            }
        }
    };
    let failed = again.clone();
    let got = once(move |response: JsValue| {
        let response: Response = response.unchecked_into();
        let status = response.status();
        let json = (status == 200).then(|| response.json().ok()).flatten();
        match json {
            Some(json) => {
                let read = once(move |body: JsValue| {
                    let session = Object::new();
                    for key in ["id", "shortId"] {
                        set(
                            &session,
                            key,
                            &Reflect::get(&body, &key.into()).unwrap_or_default(),
                        );
                    }
                    answer(&callback, session.into());
                });
                then(&json, read, JsValue::UNDEFINED);
            }
            // No session yet, or busy: ask again. Anything else will not change.
            None if status == 404 || status == 429 || status >= 500 => again(),
            None => answer(&callback, JsValue::NULL),
        }
    });
    let lost = once(move |_: JsValue| failed());
    then(&window.fetch_with_str(&url), got, lost);
}

/// `promise.then(resolved, rejected)`, with functions that free themselves once
/// called.
fn then(promise: &Promise, resolved: JsValue, rejected: JsValue) {
    if let Ok(then) = Reflect::get(promise, &"then".into()).and_then(|f| f.dyn_into::<Function>()) {
        let _ = then.call2(promise, &resolved, &rejected);
    }
}

fn answer(callback: &Function, session: JsValue) {
    let _ = callback.call1(&JsValue::UNDEFINED, &session);
}
