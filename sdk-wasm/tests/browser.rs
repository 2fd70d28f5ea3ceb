//! The SDK's wiring in a real browser (headless Chromium through chromedriver): the
//! visitor cookie, the session shared with other tabs through `localStorage`, the
//! inactivity timer, the send queue (its bound, beacons, the adoption of a closed
//! page's queue, and what keeps sending from stalling: request timeouts, answers that
//! are not the collector's, beacons the browser refused; with more copies of `host.js`
//! standing for other pages, and stubbed `fetch`/`sendBeacon`) and error
//! reporting. The session and queue *rules*
//! are tested natively in `core` with an injected clock; these tests check that the
//! browser parts are connected to them.
//!
//! The SDK keeps one state per page and every test of this binary runs in the same
//! page, so the whole story is one test, in order.
//!
//! Run with `cargo xtask test` (it builds for wasm32 and sets CHROMEDRIVER).
#![cfg(target_arch = "wasm32")]

use footpath_sdk::__footpath_command;
use js_sys::{Array, Function, Object, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// Lets the browser run timers, promises and lock callbacks for `ms`.
async fn pause(ms: i32) {
    JsFuture::from(Promise::new(&mut |resolve, _| {
        web_sys::window()
            .unwrap()
            .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms)
            .unwrap();
    }))
    .await
    .unwrap();
}

/// Evaluates `script` and gives its value as a number.
fn number(script: &str) -> f64 {
    js_sys::eval(script).unwrap().as_f64().unwrap()
}

/// The session another tab of the site began (the SDK reads only UUIDs there).
const OTHER_TAB: &str = "0193a5b0-0000-4000-8000-00000000a7ab";

fn call(args: &[JsValue]) {
    __footpath_command(&args.iter().cloned().collect::<Array>().into());
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
    Reflect::get(&footpath_sdk::__footpath_state_value(), &s(key)).unwrap()
}

fn errors() -> Vec<String> {
    let list = Reflect::get(&js_sys::global(), &s("__footpath_errors")).unwrap();
    list.dyn_into::<Array>()
        .unwrap()
        .iter()
        .map(|e| e.as_string().unwrap())
        .collect()
}

fn document() -> web_sys::HtmlDocument {
    web_sys::window()
        .unwrap()
        .document()
        .unwrap()
        .dyn_into()
        .unwrap()
}

fn storage() -> web_sys::Storage {
    web_sys::window().unwrap().local_storage().unwrap().unwrap()
}

fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.chars().enumerate().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// The queue keys in `localStorage` (`_footpath_q<page>.<chunk>`), in their pages'
/// chunk order.
fn queue_keys() -> Vec<String> {
    let storage = storage();
    let mut keys: Vec<String> = (0..storage.length().unwrap())
        .map(|i| storage.key(i).unwrap().unwrap())
        .filter(|key| key.starts_with("_footpath_q"))
        .collect();
    let chunk = |key: &String| -> (String, i64) {
        match key.split_once('.') {
            Some((page, n)) => (page.to_owned(), n.parse().unwrap()),
            None => (key.clone(), -1),
        }
    };
    keys.sort_by_key(chunk);
    keys
}

/// The events this page keeps in `localStorage`, oldest first: its chunks in order.
fn stored_queue() -> Vec<String> {
    let keys = queue_keys();
    let pages: std::collections::BTreeSet<&str> = keys
        .iter()
        .map(|key| key.split('.').next().unwrap())
        .collect();
    assert_eq!(pages.len(), 1, "one page's stored queue: {keys:?}");
    keys.iter()
        .flat_map(|key| {
            storage()
                .get_item(key)
                .unwrap()
                .unwrap()
                .split('\n')
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Evaluates `script` and gives its value, an array of strings.
fn strings(script: &str) -> Vec<String> {
    js_sys::eval(script)
        .unwrap()
        .dyn_into::<Array>()
        .unwrap()
        .iter()
        .map(|item| item.as_string().unwrap())
        .collect()
}

/// Waits up to five seconds for `script` to be true; gives whether it became so.
async fn until(script: &str) -> bool {
    for _ in 0..100 {
        if js_sys::eval(script).unwrap().is_truthy() {
            return true;
        }
        pause(50).await;
    }
    false
}

/// Starts another copy of `host.js` (its own state: another page of the site) that
/// sends to `http://127.0.0.1:9/{name}`, as `window[name]`: `page` (its functions) and
/// `wakes` (what it told the module, as `kind text`). `__entry(visitor, n)` gives the
/// text of an event for it: visitor `…00000000000{visitor}`, id `…{n}` on 12 digits.
async fn start_page(name: &str) {
    JsFuture::from(Promise::from(
        js_sys::eval(&format!(
            "window.__entry = (visitor, n) => '{{\"v\":1,\"deploymentId\":\"demo\",\"visitorId\":\"00000000-0000-4000-8000-00000000000' + visitor \
               + '\",\"sentAt\":0,\"events\":[{{\"id\":\"' + __id(n) + '\",\"kind\":\"record\",\"name\":\"t\",\"time\":1}}]}}'; \
             window.__id = (n) => '00000000-0000-7000-8000-' + String(n).padStart(12, '0'); \
             import(performance.getEntriesByType('resource').map((r) => r.name).find((n) => n.endsWith('/host.js')) + '?{name}') \
             .then((page) => {{ \
               const copy = (window['{name}'] = {{ page, wakes: [] }}); \
               page.fp_init((kind, text) => copy.wakes.push(kind + ' ' + text)); \
               page.fp_setup('http://127.0.0.1:9/{name}'); \
             }})"
        ))
        .unwrap(),
    ))
    .await
    .unwrap();
}

/// Waits for the page's SDK to emit `event` and returns the handler's argument.
async fn next(event: &str, within_ms: i32) -> JsValue {
    let promise = Promise::new(&mut |resolve, reject| {
        call(&[s("once"), s(event), resolve.into()]);
        let window = web_sys::window().unwrap();
        let timeout = Function::new_with_args(
            "reject",
            "reject(new Error('timed out waiting for an SDK event'))",
        );
        let bound = timeout.bind1(&JsValue::NULL, &reject);
        window
            .set_timeout_with_callback_and_timeout_and_arguments_0(bound.unchecked_ref(), within_ms)
            .unwrap();
    });
    JsFuture::from(promise)
        .await
        .expect("the SDK event arrived in time")
}

#[wasm_bindgen_test]
async fn cookie_cross_tab_session_queue_timer_and_errors() {
    // What the loader does on a page: `host.js` calls the module back through `wake`,
    // and hands it the commands it read through `command`.
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
    // Requests go uncompressed, so that the stubs below can read their bodies and
    // see them leave in the same task (compressing is asynchronous). Compressed
    // requests are proved end to end against the collector (tests/, delivery).
    js_sys::eval("window.CompressionStream = undefined").unwrap();
    // The page's error log, filled by an `error` handler.
    Function::new_no_args("window.__footpath_errors = [];")
        .call0(&JsValue::NULL)
        .unwrap();
    let on_error = Function::new_with_args("e", "window.__footpath_errors.push(e.message)");
    call(&[s("on"), s("error"), on_error.into()]);

    // Before init, tracking calls are refused with one message each.
    call(&[s("record"), s("too_early")]);
    assert_eq!(errors().len(), 1);
    assert!(errors()[0].contains("init"), "{:?}", errors());

    // A cookie that is not ours (not a UUID) is replaced; another tab was active one
    // second ago in session OTHER_TAB.
    document()
        .set_cookie("_footpath_vid=not-a-uuid; Path=/")
        .unwrap();
    let now = js_sys::Date::now() as i64;
    storage()
        .set_item("_footpath_session", &format!("{OTHER_TAB}|{}", now - 1000))
        .unwrap();

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
    let visitor = state("visitorId")
        .as_string()
        .expect("a visitor id after init");
    assert!(is_uuid(&visitor), "{visitor}");
    let cookies = document().cookie().unwrap();
    assert!(
        cookies.contains(&format!("_footpath_vid={visitor}")),
        "{cookies}"
    );
    assert!(!cookies.contains("not-a-uuid"), "{cookies}");
    assert!(
        state("sessionId").is_undefined(),
        "no session before the first event"
    );

    // The first event joins the other tab's live session and records the activity.
    call(&[s("record"), s("first")]);
    assert_eq!(state("sessionId").as_string().as_deref(), Some(OTHER_TAB));
    let shared = storage().get_item("_footpath_session").unwrap().unwrap();
    assert!(
        shared.starts_with(&format!("{OTHER_TAB}|"))
            && shared != format!("{OTHER_TAB}|{}", now - 1000),
        "{shared}"
    );
    assert_eq!(state("queued").as_f64(), Some(1.0));

    // Bad calls: one error each, nothing queued.
    call(&[s("record"), s("bad-name")]);
    call(&[
        s("record"),
        s("nested"),
        object(&[("a", object(&[("b", s("c"))]))]),
    ]);
    call(&[
        s("record"),
        s("infinite"),
        object(&[("n", JsValue::from_f64(f64::INFINITY))]),
    ]);
    call(&[s("shout")]);
    let reported = errors();
    assert_eq!(reported.len(), 5, "{reported:?}");
    assert!(reported[1].contains("bad-name"), "{reported:?}");
    assert!(reported[2].contains("attributes.a"), "{reported:?}");
    assert!(reported[3].contains("attributes.n"), "{reported:?}");
    assert!(reported[4].contains("shout"), "{reported:?}");
    assert_eq!(state("queued").as_f64(), Some(1.0));

    // The queue is kept in `localStorage` under this page's key, one event per line,
    // each with its id; saved once at the end of the task (a microtask), not per call.
    pause(0).await;
    let stored = stored_queue();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(stored[0].contains("\"name\":\"first\""), "{stored:?}");

    // A refused `record` or `identify` answers its callback once, with the error.
    Function::new_no_args("window.__footpath_answers = [];")
        .call0(&JsValue::NULL)
        .unwrap();
    let answer = Function::new_with_args(
        "e, ok",
        "window.__footpath_answers.push(e ? e.message : 'ok')",
    );
    call(&[
        s("record"),
        s("bad name"),
        object(&[]),
        answer.clone().into(),
    ]);
    call(&[
        s("identify"),
        s("ada"),
        object(&[]),
        answer.clone().into(),
        s("extra"),
    ]);
    // Other refused commands do not call the functions they were given.
    call(&[s("on"), s("no_such_event"), answer.clone().into()]);
    let answers = js_sys::eval("window.__footpath_answers")
        .unwrap()
        .dyn_into::<Array>()
        .unwrap();
    let answers: Vec<String> = answers.iter().map(|a| a.as_string().unwrap()).collect();
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert!(
        answers[0].contains("bad name") && answers[1].contains("too many"),
        "{answers:?}"
    );
    assert_eq!(errors().len(), 8, "{:?}", errors());

    // The queue saves at most 4,000 events and holds at most 20,000: past the first
    // bound a burst waits in memory, past the second the oldest go, and one report
    // says how many; the callbacks of dropped events get the error.
    call(&[s("record"), s("doomed"), answer.clone().into()]);
    let dropped = Promise::new(&mut |resolve, _| call(&[s("once"), s("error"), resolve.into()]));
    // One report per task, by one timer, however many events go in that task.
    js_sys::eval(
        "window.__dropTimers = 0; window.__setTimeout = setTimeout; \
         window.setTimeout = function (f) { if (String(f).includes('fpDropped')) __dropTimers++; return __setTimeout.apply(this, arguments); }",
    )
    .unwrap();
    for i in 0..4_005 {
        call(&[
            s("record"),
            s("filler"),
            object(&[("i", JsValue::from_f64(i as f64))]),
        ]);
    }
    JsFuture::from(Promise::resolve(&JsValue::NULL))
        .await
        .unwrap();
    assert_eq!(
        errors().len(),
        8,
        "nothing dropped at 4,007: {:?}",
        errors()
    );
    assert_eq!(state("queued").as_f64(), Some(4007.0));
    let stored = stored_queue();
    assert_eq!(stored.len(), 4000, "the saved part stays within its bound");
    assert!(stored[3999].contains("\"i\":3997}"), "{}", stored[3999]);
    for i in 4_005..20_005 {
        call(&[
            s("record"),
            s("filler"),
            object(&[("i", JsValue::from_f64(i as f64))]),
        ]);
    }
    let dropped = JsFuture::from(dropped).await.unwrap();
    let message = Reflect::get(&dropped, &s("message"))
        .unwrap()
        .as_string()
        .unwrap();
    assert!(message.contains("dropped 7 oldest"), "{message}");
    assert_eq!(
        number("setTimeout = __setTimeout; __dropTimers"),
        1.0,
        "timers for one report"
    );
    let answers = js_sys::eval("window.__footpath_answers")
        .unwrap()
        .dyn_into::<Array>()
        .unwrap();
    assert_eq!(answers.length(), 3, "{answers:?}");
    assert!(answers
        .get(2)
        .as_string()
        .unwrap()
        .contains("dropped 7 oldest"));
    assert_eq!(state("queued").as_f64(), Some(20000.0));
    let stored = stored_queue();
    assert_eq!(stored.len(), 4000);
    assert!(
        stored[0].contains("\"i\":5}"),
        "the oldest left is filler 5 (first, doomed and 0 to 4 went): {}",
        stored[0]
    );
    // The room the dropped ones left went to the oldest waiting in memory.
    assert!(stored[3999].contains("\"i\":4004}"), "{}", stored[3999]);

    // And at most about 2 MB saved and 10 MB held: big events push out many small ones.
    let big: Vec<(String, JsValue)> = (0..50)
        .map(|i| (format!("k{i}"), s(&"x".repeat(1000))))
        .collect();
    let big = object(
        &big.iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect::<Vec<_>>(),
    );
    let dropped = Promise::new(&mut |resolve, _| call(&[s("once"), s("error"), resolve.into()]));
    for _ in 0..210 {
        call(&[s("record"), s("big"), big.clone()]);
    }
    // The session ends 1.2 s after this last activity, maybe before the beacons and
    // sends below are done with a queue this size: listened for now.
    let ended =
        Promise::new(&mut |resolve, _| call(&[s("once"), s("session:ended"), resolve.into()]));
    let dropped = JsFuture::from(dropped).await.unwrap();
    let message = Reflect::get(&dropped, &s("message"))
        .unwrap()
        .as_string()
        .unwrap();
    assert!(message.contains("dropped"), "{message}");
    let stored = stored_queue();
    let size: usize = stored.iter().map(|entry| entry.len() + 1).sum();
    assert!(size <= 2_000_001, "{size}");
    assert!(
        stored.len() < 4000 && stored.len() >= 38,
        "{}",
        stored.len()
    );
    assert!(stored.last().unwrap().contains("\"name\":\"big\""));
    let held = state("queued").as_f64().unwrap();
    assert!((190.0..=800.0).contains(&held), "{held} held");

    // When the page is hidden, what is not on its way already leaves by beacon, split
    // so that no beacon is over 60,000 bytes; the events stay queued.
    let beacons = js_sys::eval(
        "window.__beacons = []; navigator.sendBeacon = (url, body) => (window.__beacons.push(body), true); \
         dispatchEvent(new Event('pagehide')); window.__beacons",
    )
    .unwrap()
    .dyn_into::<Array>()
    .unwrap();
    let beacons: Vec<String> = beacons.iter().map(|b| b.as_string().unwrap()).collect();
    let stored = stored_queue();
    let held = state("queued").as_f64().unwrap() as usize;
    assert!(beacons.len() > 1, "{} beacons", beacons.len());
    let mut beaconed = Vec::new();
    for body in &beacons {
        assert!(body.len() <= 60_000, "a beacon of {} bytes", body.len());
        assert!(
            body.starts_with("{\"v\":1,\"deploymentId\":\"demo\",\"visitorId\":")
                && body.ends_with("}]}"),
            "{}",
            &body[..100]
        );
        beaconed.extend(
            body.match_indices("{\"id\":\"")
                .map(|(at, _)| body[at + 7..at + 43].to_owned()),
        );
    }
    let ids: Vec<String> = stored
        .iter()
        .map(|entry| {
            let at = entry.find("{\"id\":\"").unwrap() + 7;
            entry[at..at + 36].to_owned()
        })
        .collect();
    let unique: std::collections::BTreeSet<&String> = beaconed.iter().collect();
    assert_eq!(unique.len(), beaconed.len(), "no event twice");
    // Saved or waiting in memory, every event goes, but for at most six requests (of
    // at most 100 events) on their way, which are left alone.
    assert!(
        beaconed.len() <= held && beaconed.len() + 600 >= held && held > ids.len(),
        "{} of {held}",
        beaconed.len(),
    );
    assert!(
        ids.iter().filter(|id| !unique.contains(id)).count() <= 600,
        "saved events not beaconed"
    );
    assert_eq!(
        stored_queue().len(),
        stored.len(),
        "beaconed events stay queued"
    );
    assert_eq!(state("queued").as_f64(), Some(held as f64));
    // Leaving a page hides it, then fires `pagehide`: no event goes twice.
    let again =
        js_sys::eval("dispatchEvent(new Event('pagehide')); window.__beacons.length").unwrap();
    assert_eq!(again.as_f64(), Some(beacons.len() as f64), "beaconed again");
    // Back from the back/forward cache, the page holds its key's lock again (another
    // page started below must not take its events).
    js_sys::eval("dispatchEvent(new PageTransitionEvent('pageshow', { persisted: true }))")
        .unwrap();

    // Coming back online sends at once, without waiting out the retry delay. Sends
    // fail here (port 9); once none is on its way, the `online` event starts one
    // before it returns.
    js_sys::eval(
        "window.__fetches = [0, 0]; const realFetch = fetch; \
         window.fetch = function () { __fetches[0]++; const p = realFetch.apply(this, arguments); p.then(() => __fetches[1]++, () => __fetches[1]++); return p; }",
    )
    .unwrap();
    // A first `online` event ends the wait for the retry timer, unless a request
    // from before the counter is still on its way.
    js_sys::eval("dispatchEvent(new Event('online'))").unwrap();
    let fetches = || {
        js_sys::eval("window.__fetches")
            .unwrap()
            .dyn_into::<Array>()
            .unwrap()
            .iter()
            .map(|n| n.as_f64().unwrap())
            .collect::<Vec<f64>>()
    };
    loop {
        let counts = fetches();
        if counts[0] > 0.0 && counts[0] == counts[1] {
            break;
        }
        JsFuture::from(Promise::new(&mut |resolve, _| {
            web_sys::window()
                .unwrap()
                .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 50)
                .unwrap();
        }))
        .await
        .unwrap();
    }
    let before = fetches()[0];
    js_sys::eval("dispatchEvent(new Event('online'))").unwrap();
    // A backlog of full requests goes several at once (at most six).
    let sent = fetches()[0] - before;
    assert!(
        (1.0..=6.0).contains(&sent),
        "the online event sent at once: {sent} requests"
    );

    // With a 1.2 s timeout and no more activity, the timer ends the session.
    let ended = JsFuture::from(ended).await.unwrap();
    assert_eq!(
        Reflect::get(&ended, &s("sessionId"))
            .unwrap()
            .as_string()
            .as_deref(),
        Some(OTHER_TAB)
    );
    assert!(state("sessionId").is_undefined());

    // The next activity starts a new session, announced to the page.
    let started =
        Promise::new(&mut |resolve, _| call(&[s("once"), s("session:started"), resolve.into()]));
    call(&[s("record"), s("after_timeout")]);
    let started = JsFuture::from(started).await.unwrap();
    let new_session = Reflect::get(&started, &s("sessionId"))
        .unwrap()
        .as_string()
        .unwrap();
    assert_ne!(new_session, OTHER_TAB);
    assert!(is_uuid(&new_session), "{new_session}");
    assert_eq!(state("sessionId").as_string(), Some(new_session));

    // Another page of the site starts: it adopts the queue of a page that is gone (no
    // lock on its key), but not this live page's queue. The dead page's events are
    // saved under the new page's key before the dead key goes (a crash in between
    // loses nothing), and sent in one request per visitor, even with a deployment id
    // that contains the texts the queue looks for in an event's JSON.
    let url = "http://127.0.0.1:9/sdk/v1/batch";
    let entry = |visitor: &str, id: &str| {
        format!(
            r#"{{"v":1,"deploymentId":"x\"events\":[\"sentAt","visitorId":"{visitor}","sentAt":0,"events":[{{"id":"{id}","kind":"record","name":"adopted","time":1}}]}}"#
        )
    };
    let visitors = [
        "00000000-0000-4000-8000-00000000000a",
        "00000000-0000-4000-8000-00000000000b",
    ];
    let ids = [
        "00000000-0000-7000-8000-000000000001",
        "00000000-0000-7000-8000-000000000002",
    ];
    let dead = "_footpath_qdead";
    // The live page's chunks.
    let live = queue_keys();
    let live_queue: Vec<Option<String>> = live
        .iter()
        .map(|key| storage().get_item(key).unwrap())
        .collect();
    assert!(!live.is_empty());
    storage()
        .set_item(
            dead,
            &format!(
                "{}\n{}",
                entry(visitors[0], ids[0]),
                entry(visitors[1], ids[1])
            ),
        )
        .unwrap();
    // Storage writes in order, and the other page's requests (answered here).
    js_sys::eval(
        "window.__writes = []; \
         const setItem = Storage.prototype.setItem, removeItem = Storage.prototype.removeItem; \
         window.__storage = [setItem, removeItem]; \
         Storage.prototype.setItem = function (k, v) { __writes.push([k, v]); return setItem.call(this, k, v); }; \
         Storage.prototype.removeItem = function (k) { __writes.push([k, null]); return removeItem.call(this, k); }; \
         window.__bodies = []; const pageFetch = fetch; \
         window.fetch = function (url, init) { \
           if (!init.body.includes('adopted')) return pageFetch.apply(this, arguments); \
           __bodies.push(init.body); \
           return Promise.resolve(new Response('{\"results\":[]}')); \
         };",
    )
    .unwrap();
    // Another copy of `host.js` (another URL, so its own state) stands for the page.
    JsFuture::from(Promise::from(
        js_sys::eval(&format!(
            "import(performance.getEntriesByType('resource').map((r) => r.name).find((n) => n.endsWith('/host.js')) + '?other-page') \
             .then((page) => {{ page.fp_init(() => {{}}); page.fp_setup('{url}'); }})"
        ))
        .unwrap(),
    ))
    .await
    .unwrap();
    for _ in 0..100 {
        if number("__bodies.length") >= 2.0 {
            break;
        }
        pause(50).await;
    }
    let bodies: Vec<String> = js_sys::eval("__bodies")
        .unwrap()
        .dyn_into::<Array>()
        .unwrap()
        .iter()
        .map(|b| b.as_string().unwrap())
        .collect();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    for (i, body) in bodies.iter().enumerate() {
        let batch = js_sys::JSON::parse(body).unwrap_or_else(|_| panic!("JSON: {body}"));
        let field = |name: &str| Reflect::get(&batch, &s(name)).unwrap();
        assert_eq!(
            field("deploymentId").as_string().as_deref(),
            Some(r#"x"events":["sentAt"#)
        );
        assert_eq!(field("visitorId").as_string().as_deref(), Some(visitors[i]));
        let events = field("events").dyn_into::<Array>().unwrap();
        assert_eq!(events.length(), 1, "{body}");
        let id = Reflect::get(&events.get(0), &s("id")).unwrap();
        assert_eq!(id.as_string().as_deref(), Some(ids[i]));
    }
    let writes: Vec<(String, Option<String>)> = js_sys::eval("__writes")
        .unwrap()
        .dyn_into::<Array>()
        .unwrap()
        .iter()
        .map(|w| {
            let w = w.dyn_into::<Array>().unwrap();
            (w.get(0).as_string().unwrap(), w.get(1).as_string())
        })
        .collect();
    let saved = writes.iter().position(|(key, value)| {
        key.starts_with("_footpath_q")
            && !live.contains(key)
            && *key != dead
            && value
                .as_deref()
                .is_some_and(|v| v.contains(ids[0]) && v.contains(ids[1]))
    });
    let removed = writes
        .iter()
        .position(|(key, value)| *key == dead && value.is_none());
    assert!(
        saved.is_some() && removed.is_some() && saved < removed,
        "saved at {saved:?}, the dead key removed at {removed:?}: {writes:?}"
    );
    assert!(
        writes.iter().all(|(key, _)| !live.contains(key)),
        "{writes:?}"
    );
    let live_now: Vec<Option<String>> = live
        .iter()
        .map(|key| storage().get_item(key).unwrap())
        .collect();
    assert_eq!(live_now, live_queue);
    assert!(storage().get_item(dead).unwrap().is_none());

    // A full queue drops its oldest events, but not those on their way: the collector's
    // verdict on them is coming, and their callbacks must hear it, not "dropped". A
    // third page sends its first event (the request hangs until answered here), then
    // queues 20,000 more (whose requests hang too).
    let hanging = "00000000-0000-7000-8000-000000000000";
    let oldest_waiting = "00000000-0000-7000-8000-000000000001";
    JsFuture::from(Promise::from(
        js_sys::eval(
            "[Storage.prototype.setItem, Storage.prototype.removeItem] = __storage; \
             window.__third = { wakes: [] }; const thirdFetch = fetch; \
             window.fetch = function (url) { \
               if (!url.endsWith('/third')) return thirdFetch.apply(this, arguments); \
               return new Promise((answer) => (__third.answers = __third.answers || []).push(answer)); \
             }; \
             import(performance.getEntriesByType('resource').map((r) => r.name).find((n) => n.endsWith('/host.js')) + '?third-page') \
             .then((page) => { \
               page.fp_init((kind, text) => __third.wakes.push(kind + ' ' + text)); \
               page.fp_setup('http://127.0.0.1:9/third'); \
               const entry = (i) => '{\"v\":1,\"deploymentId\":\"demo\",\"visitorId\":\"00000000-0000-4000-8000-00000000000c\",\"sentAt\":0,' \
                 + '\"events\":[{\"id\":\"00000000-0000-7000-8000-' + String(i).padStart(12, '0') + '\",\"kind\":\"record\",\"name\":\"third\",\"time\":1}]}'; \
               page.fp_queue(entry(0)); \
               page.fp_flush(); \
               for (let i = 1; i <= 20000; i++) page.fp_queue(entry(i)); \
             })",
        )
        .unwrap(),
    ))
    .await
    .unwrap();
    let wakes = || -> Vec<String> {
        js_sys::eval("__third.wakes")
            .unwrap()
            .dyn_into::<Array>()
            .unwrap()
            .iter()
            .map(|w| w.as_string().unwrap())
            .collect()
    };
    for _ in 0..100 {
        if !wakes().is_empty() {
            break;
        }
        pause(50).await;
    }
    assert_eq!(
        wakes(),
        [format!(
            "7 {oldest_waiting}\u{1}!queue full: dropped 1 oldest events"
        )]
    );
    js_sys::eval(&format!(
        "__third.answers[0](new Response('{{\"results\":[{{\"id\":\"{hanging}\",\"status\":\"accepted\"}}]}}'))"
    ))
    .unwrap();
    for _ in 0..100 {
        if wakes().len() > 1 {
            break;
        }
        pause(50).await;
    }
    assert_eq!(wakes()[1], format!("4 {hanging}\u{1}"), "accepted");
    a_hung_request_times_out().await;
    answers_without_usable_results_never_stall_sending().await;
    beacons_the_browser_refused_go_at_the_next_hide().await;
    interaction_wakes_the_module_while_the_page_is_visible().await;
}

/// A request that is never answered would hold up every later one: after 30 s (the
/// request's timeout signal, stubbed here so that the test need not wait) it counts as
/// a network failure, the module is asked for a retry delay, and the next flush sends
/// the event again.
async fn a_hung_request_times_out() {
    js_sys::eval(
        "window.__hung = { fetches: 0 }; \
         const timeout = AbortSignal.timeout, hungFetch = fetch; \
         window.__unstubHung = () => { AbortSignal.timeout = timeout; window.fetch = hungFetch; }; \
         AbortSignal.timeout = (ms) => { \
           const controller = new AbortController(); \
           controller.signal.__ms = ms; \
           controller.signal.__expire = () => controller.abort(new DOMException('signal timed out', 'TimeoutError')); \
           return controller.signal; \
         }; \
         window.fetch = function (url, init) { \
           if (!url.endsWith('/hung')) return hungFetch.apply(this, arguments); \
           __hung.fetches++; \
           __hung.signal = init.signal; \
           return new Promise((_, reject) => init.signal && init.signal.addEventListener('abort', () => reject(init.signal.reason))); \
         };",
    )
    .unwrap();
    start_page("hung").await;
    js_sys::eval("hung.page.fp_queue(__entry(1, 1)); hung.page.fp_flush()").unwrap();
    assert_eq!(number("__hung.fetches"), 1.0);
    assert_eq!(
        number("__hung.signal ? __hung.signal.__ms : 0"),
        30_000.0,
        "the request gives up after 30 s"
    );
    js_sys::eval("__hung.signal.__expire()").unwrap();
    assert!(
        until("hung.wakes.length").await,
        "no news of the hung request"
    );
    assert_eq!(
        strings("hung.wakes"),
        ["6 "],
        "a retry, without Retry-After"
    );
    assert_eq!(
        number("(hung.page.fp_state('', '', 1), hung.page.fp_state_value()).queued"),
        1.0
    );
    js_sys::eval("hung.page.fp_flush()").unwrap();
    assert_eq!(
        number("__hung.fetches"),
        2.0,
        "sending again after the retry delay"
    );
    js_sys::eval("__unstubHung()").unwrap();
}

/// A proxy or a captive portal may answer 200 with anything. Answers without a list
/// of results settle the events with "no verdict", like any other answer without a
/// verdict; a body cut off, anything that throws while an answer is read, and a 408
/// (the collector's body read timeout, even with a JSON error body) count as a
/// failure to retry. Either way the next request goes: sending never stalls.
async fn answers_without_usable_results_never_stall_sending() {
    js_sys::eval(
        "window.__odd = { fetches: 0, answers: [ \
           () => new Response('{\"results\":\"x\"}'), \
           () => new Response('<html>Sign in to the Wi-Fi</html>', { headers: { 'Content-Type': 'text/html' } }), \
           () => ({ status: 200, headers: new Headers(), json() { throw new TypeError('not a Response'); } }), \
           () => new Response(new ReadableStream({ pull(body) { body.error(new TypeError('connection reset')); } })), \
           () => new Response('{\"status\":408,\"code\":\"request.timeout\",\"message\":\"body too slow\"}', { status: 408 }), \
           () => new Response('{\"results\":[{\"id\":\"' + __id(3) + '\",\"status\":\"accepted\"}]}'), \
         ] }; \
         const oddFetch = fetch; \
         window.fetch = function (url) { \
           if (!url.endsWith('/odd')) return oddFetch.apply(this, arguments); \
           __odd.fetches++; \
           return Promise.resolve(__odd.answers.shift()()); \
         };",
    )
    .unwrap();
    start_page("odd").await;
    let id = |n: u32| format!("00000000-0000-7000-8000-{n:012}");
    // What the page does (each time, one request goes), then what it hears of the answer.
    let queue_and_flush =
        |n: u32| format!("odd.page.fp_queue(__entry(2, {n})); odd.page.fp_flush()");
    // The module's retry timer fired: the same event again.
    let flush = || "odd.page.fp_flush()".to_owned();
    let steps = [
        (queue_and_flush(1), format!("4 {}\u{1}!no verdict", id(1))),
        (queue_and_flush(2), format!("4 {}\u{1}!no verdict", id(2))),
        (queue_and_flush(3), "6 ".to_owned()),
        (flush(), "6 ".to_owned()),
        // The collector timed out reading the body (408): the events were not judged.
        (flush(), "6 ".to_owned()),
        (flush(), format!("4 {}\u{1}", id(3))),
    ];
    for (i, (action, heard)) in steps.iter().enumerate() {
        let n = i + 1;
        js_sys::eval(action).unwrap();
        assert_eq!(number("__odd.fetches"), n as f64, "request {n} sent");
        assert!(
            until(&format!("odd.wakes.length == {n}")).await,
            "answer {n}: {:?}",
            strings("odd.wakes")
        );
        assert_eq!(&strings("odd.wakes")[i], heard, "answer {n}");
    }
    assert_eq!(
        number("(odd.page.fp_state('', '', 1), odd.page.fp_state_value()).queued"),
        0.0
    );
}

/// `sendBeacon` returns false when the browser will not take a beacon (over its
/// keepalive quota, for one): those events are not on their way, and the next hide
/// (leaving the page fires `pagehide` after hiding it) tries them again. What a beacon
/// took does not go twice.
async fn beacons_the_browser_refused_go_at_the_next_hide() {
    start_page("refused").await;
    // Every page copy of this test hears the events; only this one's beacons count.
    let hides = js_sys::eval(
        "window.__refused = []; \
         navigator.sendBeacon = (url, body) => { \
           if (!url.endsWith('/refused')) return true; \
           const taken = !__refused.refuse.shift(); \
           __refused.push((taken ? 'taken ' : 'refused ') + (body.match(/\"id\"/g) || []).length + ' from ' + body.match(/\"id\":\"([^\"]*)/)[1]); \
           return taken; \
         }; \
         for (let n = 1; n <= 120; n++) refused.page.fp_queue(__entry(3, n)); \
         const hides = []; \
         for (const refuse of [[0, 1], [], []]) { \
           __refused.refuse = refuse; \
           __refused.length = 0; \
           dispatchEvent(new Event('pagehide')); \
           hides.push(__refused.join()); \
         } \
         dispatchEvent(new PageTransitionEvent('pageshow', { persisted: true })); \
         hides",
    )
    .unwrap()
    .dyn_into::<Array>()
    .unwrap();
    let hides: Vec<String> = hides.iter().map(|h| h.as_string().unwrap()).collect();
    let id = |n: u32| format!("00000000-0000-7000-8000-{n:012}");
    assert_eq!(
        hides,
        [
            format!("taken 100 from {},refused 20 from {}", id(1), id(101)),
            format!("taken 20 from {}", id(101)),
            String::new(),
        ],
        "beacons at each of three hides"
    );
}

/// Interaction keeps a reader's session alive: a scroll (also one inside an element,
/// which does not bubble), a click or a key on the visible page wakes the module (3),
/// at most once a minute, and never while the page is hidden; whether to tell the
/// collector is the module's decision (tested natively). `fp_ping` sends the Journey
/// API's ping to the collector that `fp_setup` named, and a failed one is let go.
async fn interaction_wakes_the_module_while_the_page_is_visible() {
    JsFuture::from(Promise::from(
        js_sys::eval(
            "window.__alive = { fetches: [], offset: 0 }; \
             const aliveFetch = fetch, realNow = Date.now; \
             window.fetch = function (url, init) { \
               if (!String(url).includes('/alive/')) return aliveFetch.apply(this, arguments); \
               __alive.fetches.push(url + ' ' + init.credentials); \
               return Promise.reject(new TypeError('offline')); \
             }; \
             Date.now = () => realNow() + __alive.offset; \
             __alive.restore = () => { Date.now = realNow; window.fetch = aliveFetch; delete document.visibilityState; }; \
             __alive.hide = () => Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' }); \
             __alive.scrollInside = () => { const box = document.createElement('div'); document.body.append(box); box.dispatchEvent(new Event('scroll')); box.remove(); }; \
             import(performance.getEntriesByType('resource').map((r) => r.name).find((n) => n.endsWith('/host.js')) + '?alive') \
             .then((page) => { \
               const copy = (window.alive = { page, wakes: [] }); \
               page.fp_init((kind, text) => copy.wakes.push(kind + ' ' + text), () => 1, ''); \
               page.fp_ac(['init', 'demo/1', { collectorUrl: 'http://127.0.0.1:9/alive' }]); \
               page.fp_setup(); \
             })",
        )
        .unwrap(),
    ))
    .await
    .unwrap();
    assert_eq!(
        js_sys::eval("document.visibilityState")
            .unwrap()
            .as_string()
            .as_deref(),
        Some("visible"),
        "the test page is visible"
    );
    // What happens, and how many wakes there have been since this page started.
    let steps = [
        ("dispatchEvent(new Event('scroll'))", 1, "a scroll wakes the module"),
        (
            "__alive.offset += 30000; document.body.dispatchEvent(new KeyboardEvent('keydown', { bubbles: true }))",
            1,
            "within a minute of the last wake, nothing",
        ),
        (
            "__alive.offset += 30000; __alive.scrollInside()",
            2,
            "a minute later, a scroll inside an element",
        ),
        (
            "__alive.offset += 6e5; __alive.hide(); dispatchEvent(new Event('pointerdown'))",
            2,
            "a hidden page, however long after",
        ),
        (
            "delete document.visibilityState; dispatchEvent(new Event('pointerdown'))",
            3,
            "visible again: a click",
        ),
    ];
    for (action, wakes, why) in steps {
        js_sys::eval(action).unwrap();
        assert_eq!(
            strings("alive.wakes"),
            vec!["3 ".to_owned(); wakes],
            "{why}"
        );
    }
    js_sys::eval("alive.page.fp_ping('visitor', 'session')").unwrap();
    pause(10).await;
    // The deployment id is escaped in the path.
    assert_eq!(
        strings("__alive.fetches"),
        ["http://127.0.0.1:9/alive/api/v2/journey/deployments/demo%2F1/customers/visitor/ping?sessionId=session omit"]
    );
    js_sys::eval("__alive.restore()").unwrap();
}
