//! The SDK's wiring in a real browser (headless Chromium through chromedriver): the
//! visitor cookie, the session shared with other tabs through `localStorage`, the
//! inactivity timer, the send queue and error reporting. The session and queue *rules*
//! are tested natively in `core` with an injected clock; these tests check that the
//! browser parts are connected to them.
//!
//! The SDK keeps one state per page and every test of this binary runs in the same
//! page, so the whole story is one test, in order.
//!
//! Run with `cargo xtask test` (it builds for wasm32 and sets CHROMEDRIVER).
#![cfg(target_arch = "wasm32")]

use footpath_sdk::command;
use js_sys::{Array, Function, Object, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn call(args: &[JsValue]) {
    command(args.iter().cloned().collect::<Array>());
}

fn s(text: &str) -> JsValue {
    JsValue::from_str(text)
}

fn object(entries: &[(&str, JsValue)]) -> JsValue {
    let object = Object::new();
    for (key, value) in entries {
        Reflect::set(&object, &s(key), value).unwrap();
    }
    object.into()
}

fn state(key: &str) -> JsValue {
    Reflect::get(&footpath_sdk::__footpath_state(), &s(key)).unwrap()
}

fn errors() -> Vec<String> {
    let list = Reflect::get(&js_sys::global(), &s("__footpath_errors")).unwrap();
    list.dyn_into::<Array>().unwrap().iter().map(|e| e.as_string().unwrap()).collect()
}

fn document() -> web_sys::HtmlDocument {
    web_sys::window().unwrap().document().unwrap().dyn_into().unwrap()
}

fn storage() -> web_sys::Storage {
    web_sys::window().unwrap().local_storage().unwrap().unwrap()
}

fn is_uuid(text: &str) -> bool {
    text.len() == 36 && text.chars().enumerate().all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() })
}

/// Waits for the page's SDK to emit `event` and returns the handler's argument.
async fn next(event: &str, within_ms: i32) -> JsValue {
    let promise = Promise::new(&mut |resolve, reject| {
        call(&[s("once"), s(event), resolve.into()]);
        let window = web_sys::window().unwrap();
        let timeout = Function::new_with_args("reject", "reject(new Error('timed out waiting for an SDK event'))");
        let bound = timeout.bind1(&JsValue::NULL, &reject);
        window.set_timeout_with_callback_and_timeout_and_arguments_0(bound.unchecked_ref(), within_ms).unwrap();
    });
    JsFuture::from(promise).await.expect("the SDK event arrived in time")
}

#[wasm_bindgen_test]
async fn cookie_cross_tab_session_queue_timer_and_errors() {
    // The page's error log, filled by an `error` handler.
    Function::new_no_args("window.__footpath_errors = [];").call0(&JsValue::NULL).unwrap();
    let on_error = Function::new_with_args("e", "window.__footpath_errors.push(e.message)");
    call(&[s("on"), s("error"), on_error.into()]);

    // Before init, tracking calls are refused with one message each.
    call(&[s("record"), s("too_early")]);
    assert_eq!(errors().len(), 1);
    assert!(errors()[0].contains("init"), "{:?}", errors());

    // A cookie that is not ours (not a UUID) is replaced; another tab was active one
    // second ago in session "other-tab".
    document().set_cookie("_footpath_vid=not-a-uuid; Path=/").unwrap();
    let now = js_sys::Date::now() as i64;
    storage().set_item("_footpath_session", &format!("other-tab|{}", now - 1000)).unwrap();

    call(&[
        s("init"),
        s("demo"),
        object(&[
            // Port 9 (discard) refuses connections: sends fail and are retried later,
            // which keeps the queue observable here.
            ("collectorUrl", s("http://127.0.0.1:9")),
            ("pageview", s("off")),
            ("sessionTimeoutMinutes", JsValue::from_f64(0.02)),
        ]),
    ]);
    assert_eq!(errors().len(), 1, "init reported nothing: {:?}", errors());
    let visitor = state("visitorId").as_string().expect("a visitor id after init");
    assert!(is_uuid(&visitor), "{visitor}");
    let cookies = document().cookie().unwrap();
    assert!(cookies.contains(&format!("_footpath_vid={visitor}")), "{cookies}");
    assert!(!cookies.contains("not-a-uuid"), "{cookies}");
    assert!(state("sessionId").is_undefined(), "no session before the first event");

    // The first event joins the other tab's live session and records the activity.
    call(&[s("record"), s("first")]);
    assert_eq!(state("sessionId").as_string().as_deref(), Some("other-tab"));
    let shared = storage().get_item("_footpath_session").unwrap().unwrap();
    assert!(shared.starts_with("other-tab|") && shared != format!("other-tab|{}", now - 1000), "{shared}");
    assert_eq!(state("queued").as_f64(), Some(1.0));

    // Bad calls: one error each, nothing queued.
    call(&[s("record"), s("bad-name")]);
    call(&[s("record"), s("nested"), object(&[("a", object(&[("b", s("c"))]))])]);
    call(&[s("record"), s("infinite"), object(&[("n", JsValue::from_f64(f64::INFINITY))])]);
    call(&[s("shout")]);
    let reported = errors();
    assert_eq!(reported.len(), 5, "{reported:?}");
    assert!(reported[1].contains("bad-name"), "{reported:?}");
    assert!(reported[2].contains("attributes.a"), "{reported:?}");
    assert!(reported[3].contains("attributes.n"), "{reported:?}");
    assert!(reported[4].contains("shout"), "{reported:?}");
    assert_eq!(state("queued").as_f64(), Some(1.0));

    // The tenth queued event sends the queue at once.
    for i in 0..8 {
        call(&[s("record"), s("filler"), object(&[("i", JsValue::from_f64(i as f64))])]);
    }
    assert_eq!(state("queued").as_f64(), Some(9.0));
    call(&[s("record"), s("tenth")]);
    assert_eq!(state("queued").as_f64(), Some(0.0), "the full queue went out");

    // With a 1.2 s timeout and no more activity, the timer ends the session.
    let ended = next("session:ended", 5_000).await;
    assert_eq!(Reflect::get(&ended, &s("sessionId")).unwrap().as_string().as_deref(), Some("other-tab"));
    assert!(state("sessionId").is_undefined());

    // The next activity starts a new session, announced to the page.
    let started = Promise::new(&mut |resolve, _| call(&[s("once"), s("session:started"), resolve.into()]));
    call(&[s("record"), s("after_timeout")]);
    let started = JsFuture::from(started).await.unwrap();
    let new_session = Reflect::get(&started, &s("sessionId")).unwrap().as_string().unwrap();
    assert_ne!(new_session, "other-tab");
    assert!(is_uuid(&new_session), "{new_session}");
    assert_eq!(state("sessionId").as_string(), Some(new_session));
}
