//! What the consent tests share: each is its own binary, so its own page with its own
//! SDK, since `init` happens once per page. Every request, beacon and storage write
//! the page makes is recorded (`window.__sent`, `__writes`); requests are answered as
//! the collector would, accepting every event.
#![allow(dead_code)]

use footpath_sdk::__footpath_command;
use js_sys::{Array, Function, Promise};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

pub async fn pause(ms: i32) {
    JsFuture::from(Promise::new(&mut |resolve, _| {
        web_sys::window()
            .unwrap()
            .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms)
            .unwrap();
    }))
    .await
    .unwrap();
}

pub fn call(args: &[JsValue]) {
    __footpath_command(&args.iter().cloned().collect::<Array>().into());
}

pub fn s(text: &str) -> JsValue {
    JsValue::from_str(text)
}

/// Evaluates `script`, an expression whose value is an array of strings.
pub fn strings(script: &str) -> Vec<String> {
    js_sys::eval(script)
        .unwrap()
        .dyn_into::<Array>()
        .unwrap()
        .iter()
        .map(|item| item.as_string().unwrap())
        .collect()
}

pub fn eval(script: &str) -> JsValue {
    js_sys::eval(script).unwrap()
}

pub fn cookies() -> String {
    web_sys::window()
        .unwrap()
        .document()
        .unwrap()
        .dyn_into::<web_sys::HtmlDocument>()
        .unwrap()
        .cookie()
        .unwrap()
}

/// The keys of `localStorage` and `sessionStorage` that are Footpath's.
pub fn stored_keys() -> Vec<String> {
    strings(
        "Object.keys(localStorage).concat(Object.keys(sessionStorage)) \
         .filter((key) => key.startsWith('_footpath'))",
    )
}

/// Connects the SDK as the loader does, then records what leaves the page and what it
/// stores. Compression is turned off so that the bodies can be read.
pub fn connect_and_watch() {
    let wake = wasm_bindgen::closure::Closure::<dyn Fn(u32, String)>::new(|kind, text: String| {
        footpath_sdk::wake(kind, &text)
    });
    let command =
        wasm_bindgen::closure::Closure::<dyn Fn(u32, f64, u32, String, String) -> u32>::new(
            |which, number, handle, a: String, b: String| {
                footpath_sdk::command(which, number, handle, &a, &b)
            },
        );
    footpath_sdk::__footpath_connect(wake.as_ref(), command.as_ref());
    wake.forget();
    command.forget();
    // Another test binary may have run in this browser profile before.
    eval(
        "for (const pair of document.cookie.split('; ')) \
           if (pair.startsWith('_footpath')) document.cookie = pair.split('=')[0] + '=; Max-Age=0; Path=/'; \
         for (const key of Object.keys(localStorage)) localStorage.removeItem(key);",
    );
    eval(
        "window.CompressionStream = undefined; \
         window.__sent = []; window.__writes = []; window.__answers = []; \
         window.fetch = function (url, init) { \
           __sent.push(init.body); \
           const ids = JSON.parse(init.body).events.map((e) => ({ id: e.id })); \
           return Promise.resolve(new Response(JSON.stringify({ results: ids }))); \
         }; \
         navigator.sendBeacon = (url, body) => (__sent.push('beacon ' + body), true); \
         const setItem = Storage.prototype.setItem; \
         Storage.prototype.setItem = function (k, v) { __writes.push(k); return setItem.call(this, k, v); };",
    );
}

/// A `record` callback that notes its answer in `window.__answers`.
pub fn answer() -> JsValue {
    Function::new_with_args(
        "e, ok",
        "window.__answers.push(e ? e.message : 'ok ' + ok.id)",
    )
    .into()
}

/// The page is hidden and left: where the SDK would beacon what it holds.
pub fn hide_page() {
    eval("dispatchEvent(new Event('pagehide'))");
}

const EARLIER_VISITOR: &str = "0b7c3a52-1f0e-4c9a-8d3e-5a6b7c8d9e0f";

/// A page on which the visitor is not to be tracked: an earlier page left a visitor
/// cookie, a stored queue and a session record; `setup` (a script) says why this one
/// may not track, and `consent` is the site's `init` option ('' for none). Records an
/// event, lets the send delay pass and leaves the page; then checks that nothing was
/// sent or written, that the cookie and stored data are gone, and that the event's
/// callback heard why.
pub async fn untracked_page(setup: &str, consent: &str) {
    connect_and_watch();
    eval(&format!(
        "document.cookie = '_footpath_vid={EARLIER_VISITOR}; Path=/'; \
         localStorage.setItem('_footpath_q7.0', '{{}}'); \
         localStorage.setItem('_footpath_session', 'earlier|1'); \
         {setup}; \
         window.__writes = [];"
    ));
    let options = js_sys::Object::new();
    let set = |key: &str, value: &str| {
        js_sys::Reflect::set(&options, &s(key), &s(value)).unwrap();
    };
    set("collectorUrl", "http://127.0.0.1:9");
    if !consent.is_empty() {
        set("consent", consent);
    }
    call(&[s("init"), s("demo"), options.clone().into()]);
    call(&[
        s("record"),
        s("untracked"),
        js_sys::Object::new().into(),
        answer(),
    ]);
    pause(1_500).await;
    hide_page();
    pause(50).await;
    assert_eq!(strings("__sent"), Vec::<String>::new(), "nothing sent");
    assert_eq!(strings("__writes"), Vec::<String>::new(), "nothing written");
    assert_eq!(
        stored_keys(),
        Vec::<String>::new(),
        "the stored data removed"
    );
    assert!(!cookies().contains("_footpath_vid"), "{}", cookies());
    let answers = strings("__answers");
    assert!(
        answers.len() == 1 && answers[0].contains("no consent"),
        "{answers:?}"
    );
}
