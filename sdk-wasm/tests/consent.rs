//! Consent in a real browser: while it is pending nothing is stored or sent and events
//! wait in memory; granting sends them exactly once, with the visitor cookie set from
//! then on; denying drops what is held and removes the cookie and the stored queue.
#![cfg(target_arch = "wasm32")]

mod consent_support;

use consent_support::*;
use js_sys::{Object, Reflect};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn options(entries: &[(&str, JsValue)]) -> JsValue {
    let object = Object::new();
    for (key, value) in entries {
        Reflect::set(&object, &s(key), value).unwrap();
    }
    object.into()
}

/// The value of cookie `name`, if set.
fn cookie(name: &str) -> Option<String> {
    cookies()
        .split("; ")
        .find_map(|pair| pair.strip_prefix(&format!("{name}=")).map(str::to_owned))
}

#[wasm_bindgen_test]
async fn pending_then_granted_then_denied() {
    connect_and_watch();
    call(&[
        s("init"),
        s("demo"),
        options(&[
            ("collectorUrl", s("http://127.0.0.1:9")),
            ("consent", s("pending")),
        ]),
    ]);
    call(&[s("record"), s("before_consent"), options(&[]), answer()]);
    // Longer than the send delay (a second), and the page hidden and left: the events
    // would have gone by request and by beacon by now.
    pause(1_500).await;
    hide_page();
    pause(50).await;
    assert_eq!(strings("__sent"), Vec::<String>::new(), "nothing sent");
    assert_eq!(strings("__writes"), Vec::<String>::new(), "nothing written");
    assert_eq!(stored_keys(), Vec::<String>::new(), "nothing stored");
    assert!(!cookies().contains("_footpath"), "no cookie: {}", cookies());
    assert_eq!(strings("__answers"), Vec::<String>::new(), "no verdict yet");

    // Granted: the visitor cookie is set and the held events go, exactly once.
    call(&[s("consent"), s("granted")]);
    let visitor = cookie("_footpath_vid").expect("the visitor cookie after granting");
    assert_eq!(cookie("_footpath_consent").as_deref(), Some("granted"));
    pause(1_500).await;
    let sent = strings("__sent");
    let all = sent.join("\n");
    for name in ["page_viewed", "before_consent"] {
        assert_eq!(
            all.matches(&format!("\"name\":\"{name}\"")).count(),
            1,
            "{name} sent exactly once: {sent:?}"
        );
    }
    assert!(
        sent.iter()
            .all(|body| body.contains(&format!("\"visitorId\":\"{visitor}\""))),
        "with the cookie's visitor id: {sent:?}"
    );
    let answers = strings("__answers");
    assert!(
        answers.len() == 1 && answers[0].starts_with("ok "),
        "{answers:?}"
    );

    // Events recorded after the grant are stored until judged; a denial in the same
    // task drops them, removes the cookie and every stored queue (another page's
    // too), and remembers the answer without an identifier.
    web_sys::window()
        .unwrap()
        .local_storage()
        .unwrap()
        .unwrap()
        .set_item("_footpath_q42.0", "{}")
        .unwrap();
    call(&[s("record"), s("after_consent")]);
    pause(0).await;
    assert!(
        stored_keys()
            .iter()
            .any(|key| key.starts_with("_footpath_q")),
        "queued while granted: {:?}",
        stored_keys()
    );
    // The collector is unreachable now: the send fails and sending waits for a retry,
    // which the denial cancels; a later grant must not find sending stuck.
    eval("window.__answering = fetch; window.fetch = () => Promise.reject(new TypeError('down'))");
    pause(1_500).await;
    let sent_before = strings("__sent").len();
    call(&[s("record"), s("just_before_denial")]);
    call(&[s("consent"), s("denied")]);
    eval("window.fetch = __answering");
    pause(0).await;
    assert_eq!(stored_keys(), Vec::<String>::new(), "storage wiped");
    assert_eq!(cookie("_footpath_vid"), None, "{}", cookies());
    assert_eq!(cookie("_footpath_consent").as_deref(), Some("denied"));

    // Denied: nothing recorded, stored or sent; callbacks hear why.
    let writes_before = strings("__writes").len();
    call(&[s("record"), s("after_denial"), options(&[]), answer()]);
    pause(1_500).await;
    hide_page();
    pause(50).await;
    let sent = strings("__sent");
    assert_eq!(
        sent.len(),
        sent_before,
        "nothing sent after the denial: {sent:?}"
    );
    assert_eq!(strings("__writes").len(), writes_before, "nothing written");
    assert_eq!(stored_keys(), Vec::<String>::new());
    assert!(!cookies().contains("_footpath_vid"), "{}", cookies());
    let answers = strings("__answers");
    assert!(
        answers.len() == 2 && answers[1].contains("no consent"),
        "{answers:?}"
    );

    // Granted again: a new visitor, not the one who said no.
    call(&[s("consent"), s("granted")]);
    let again = cookie("_footpath_vid").expect("a visitor cookie again");
    assert_ne!(again, visitor);
    call(&[s("record"), s("after_regrant")]);
    pause(1_500).await;
    let sent = strings("__sent");
    assert!(
        sent[sent_before..]
            .iter()
            .any(|body| body.contains("after_regrant")
                && body.contains(&format!("\"visitorId\":\"{again}\""))),
        "sent after the new grant, as the new visitor: {sent:?}"
    );
}
