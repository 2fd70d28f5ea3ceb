//! The browser underneath: clock, randomness, storage, cookie, page facts, requests.

use std::cell::RefCell;
use std::rc::Rc;

use footpath_protocol::v1::{Context, Page, CAMPAIGN_PARAMETERS};
use js_sys::{Array, Promise, Reflect};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{HtmlDocument, RequestCredentials, RequestInit, RequestMode, Response, Storage, Url, Window};

use crate::core::{is_uuid, uuid_v4, Options, Platform};

/// The first-party cookie that holds the visitor id.
pub const VISITOR_COOKIE: &str = "_footpath_vid";
/// Browsers refuse `keepalive` requests whose bodies add up to more than 64 KiB.
const KEEPALIVE_LIMIT_BYTES: usize = 60_000;

pub struct Browser {
    window: Window,
    document: HtmlDocument,
    storage: Option<Storage>,
}

impl Browser {
    pub fn new() -> Option<Browser> {
        let window = web_sys::window()?;
        let document = window.document()?.unchecked_into();
        // `localStorage` throws in some privacy modes; the SDK then works per tab.
        let storage = window.local_storage().ok().flatten();
        Some(Browser { window, document, storage })
    }

    /// Reads the visitor cookie once per page, creating it if absent, and renews its
    /// lifetime. Later calls use the id kept in memory.
    pub fn visitor_id(&self, options: &Options) -> String {
        let cookies = self.document.cookie().unwrap_or_default();
        let existing = cookies.split(';').find_map(|pair| {
            let (name, value) = pair.trim_ascii_start().split_once('=')?;
            (name == VISITOR_COOKIE && is_uuid(value)).then(|| value.to_owned())
        });
        let id = existing.unwrap_or_else(|| {
            let mut random = [0u8; 16];
            self.fill_random(&mut random);
            uuid_v4(random)
        });
        let mut cookie = String::with_capacity(128);
        cookie.push_str(VISITOR_COOKIE);
        cookie.push('=');
        cookie.push_str(&id);
        cookie.push_str("; Max-Age=");
        crate::core::push_u64(&mut cookie, options.cookie_expiry_days as u64 * 86_400);
        cookie.push_str("; Path=/; SameSite=Lax");
        if let Some(domain) = &options.cookie_domain {
            cookie.push_str("; Domain=");
            cookie.push_str(domain);
        }
        if self.window.location().protocol().is_ok_and(|p| p == "https:") {
            cookie.push_str("; Secure");
        }
        let _ = self.document.set_cookie(&cookie);
        id
    }
}

impl Platform for Browser {
    fn now_ms(&self) -> i64 {
        js_sys::Date::now() as i64
    }

    fn fill_random(&self, buf: &mut [u8]) {
        let filled = self.window.crypto().and_then(|crypto| crypto.get_random_values_with_u8_array(buf));
        if filled.is_err() {
            // Only very old browsers lack crypto; ids then are merely unlikely to clash.
            for b in buf.iter_mut() {
                *b = (js_sys::Math::random() * 256.0) as u8;
            }
        }
    }

    fn load(&self, key: &str) -> Option<String> {
        self.storage.as_ref()?.get_item(key).ok().flatten()
    }

    fn save(&self, key: &str, value: &str) {
        if let Some(storage) = &self.storage {
            let _ = storage.set_item(key, value);
        }
    }

    fn remove(&self, key: &str) {
        if let Some(storage) = &self.storage {
            let _ = storage.remove_item(key);
        }
    }
}

pub fn origin_of(url: &str) -> Option<String> {
    Url::new(url).ok().map(|url| url.origin())
}

/// The page an event happened on: the current one, or `location` resolved against it.
pub fn page(options: &Options, location: Option<&str>, title: Option<String>) -> Result<Page, String> {
    let window = web_sys::window().ok_or("no window")?;
    let document = window.document().ok_or("no document")?;
    let href = window.location().href().unwrap_or_default();
    let url = match location {
        Some(location) => Url::new_with_base(location, &href).map_err(|_| "location is not a URL")?,
        None => Url::new(&href).map_err(|_| "the page's URL cannot be parsed")?,
    };
    let params = url.search_params();
    let search_query = options
        .search_query_parameters
        .iter()
        .find_map(|name| params.get(name).filter(|value| !value.is_empty()));
    let campaign = CAMPAIGN_PARAMETERS
        .iter()
        .filter_map(|&name| Some((name.to_owned(), params.get(name).filter(|v| !v.is_empty())?)))
        .collect();
    for name in &options.excluded_query_parameters {
        params.delete(name);
    }
    if !options.keep_url_fragment {
        url.set_hash("");
    }
    let root = document.document_element();
    let keywords = document
        .query_selector("meta[name=keywords]")
        .ok()
        .flatten()
        .and_then(|meta| meta.get_attribute("content"));
    Ok(Page {
        url: url.href(),
        title: title.unwrap_or_else(|| document.title()),
        referrer: document.referrer(),
        lang: root.and_then(|html| html.get_attribute("lang")).unwrap_or_default(),
        keywords: keywords.unwrap_or_default(),
        search_query,
        campaign,
    })
}

/// Screen, viewport and language: where a card says "desktop, 1920×1080".
pub fn context() -> Context {
    let Some(window) = web_sys::window() else {
        return Context::default();
    };
    let size = |value: Result<JsValue, JsValue>| value.ok().and_then(|v| v.as_f64()).unwrap_or(0.0) as u32;
    let screen = window.screen().ok();
    Context {
        browser_lang: window.navigator().language().unwrap_or_default(),
        screen_width: screen.as_ref().and_then(|s| s.width().ok()).unwrap_or(0) as u32,
        screen_height: screen.as_ref().and_then(|s| s.height().ok()).unwrap_or(0) as u32,
        screen_density: (window.device_pixel_ratio() * 100.0).round() as u32,
        viewport_width: size(window.inner_width()),
        viewport_height: size(window.inner_height()),
    }
}

/// `pagehide`, and `visibilitychange` to hidden: the last moments to send anything.
/// The listeners live as long as the page, so their closures are leaked on purpose.
pub fn listen_for_page_hide(on_hide: impl Fn() + 'static) {
    let Some(window) = web_sys::window() else { return };
    let on_hide = Rc::new(on_hide);
    let hide = on_hide.clone();
    let pagehide = Closure::<dyn Fn()>::new(move || hide());
    let _ = window.add_event_listener_with_callback("pagehide", pagehide.as_ref().unchecked_ref());
    pagehide.forget();
    if let Some(document) = window.document() {
        let doc = document.clone();
        let visibility = Closure::<dyn Fn()>::new(move || {
            if doc.visibility_state() == web_sys::VisibilityState::Hidden {
                on_hide();
            }
        });
        let _ = document.add_event_listener_with_callback("visibilitychange", visibility.as_ref().unchecked_ref());
        visibility.forget();
    }
}

/// Hands the body to the browser to deliver even after the page is gone. A string body
/// goes out as `text/plain`, which needs no CORS preflight.
pub fn send_beacon(url: &str, body: &str) -> bool {
    web_sys::window().is_some_and(|w| w.navigator().send_beacon_with_opt_str(url, Some(body)).unwrap_or(false))
}

pub struct EventOutcome {
    pub id: String,
    pub error: Option<String>,
}

pub enum PostOutcome {
    /// The collector judged each event (2xx, or 400 when it refused them all).
    Answered { results: Vec<EventOutcome> },
    /// Refused as a whole, not worth retrying (403, 404, 413, 415, ...).
    Refused { status: u16, message: String },
    /// Network failure, 429 or 5xx: send again later, after `Retry-After` if given.
    Retry { after_ms: Option<u32> },
}

/// `fetch` with `keepalive` (so that it survives a navigation), then `on_done` once.
pub fn post(url: &str, body: &str, on_done: impl FnOnce(PostOutcome) + 'static) {
    let on_done: Rc<RefCell<Option<Box<dyn FnOnce(PostOutcome)>>>> = Rc::new(RefCell::new(Some(Box::new(on_done))));
    let finish = move |outcome: PostOutcome| {
        let callback = on_done.borrow_mut().take();
        if let Some(callback) = callback {
            callback(outcome);
        }
    };
    let Some(window) = web_sys::window() else {
        finish(PostOutcome::Retry { after_ms: None });
        return;
    };
    let init = RequestInit::new();
    init.set_method("POST");
    init.set_body(&JsValue::from_str(body));
    init.set_mode(RequestMode::Cors);
    init.set_credentials(RequestCredentials::Omit);
    if body.len() < KEEPALIVE_LIMIT_BYTES {
        // web-sys has no setter for `keepalive`.
        let _ = Reflect::set(&init, &"keepalive".into(), &JsValue::TRUE);
    }
    let promise = window.fetch_with_str_and_init(url, &init);
    let finish = Rc::new(finish);
    let on_error = {
        let finish = finish.clone();
        Closure::once_into_js(move |_: JsValue| finish(PostOutcome::Retry { after_ms: None }))
    };
    let on_response = Closure::once_into_js(move |response: JsValue| {
        let response: Response = response.unchecked_into();
        let status = response.status();
        if status == 429 || status >= 500 {
            let after_ms = response
                .headers()
                .get("retry-after")
                .ok()
                .flatten()
                .and_then(|s| s.trim().parse::<u32>().ok())
                .map(|seconds| seconds.saturating_mul(1000));
            finish(PostOutcome::Retry { after_ms });
            return;
        }
        let body = response.json().unwrap_or_else(|_| Promise::resolve(&JsValue::NULL));
        let judged = (200..300).contains(&status) || status == 400;
        let read = Closure::once_into_js(move |json: JsValue| {
            let results = Reflect::get(&json, &"results".into()).ok().filter(|r| Array::is_array(r));
            match results {
                Some(results) if judged => {
                    let results: Array = results.unchecked_into();
                    let results = results
                        .iter()
                        .filter_map(|result| {
                            let id = Reflect::get(&result, &"id".into()).ok()?.as_string()?;
                            let error = Reflect::get(&result, &"error".into()).ok().and_then(|e| e.as_string());
                            Some(EventOutcome { id, error })
                        })
                        .collect();
                    finish(PostOutcome::Answered { results });
                }
                _ => {
                    let message = Reflect::get(&json, &"message".into())
                        .ok()
                        .and_then(|m| m.as_string())
                        .unwrap_or_else(|| "no details".into());
                    finish(PostOutcome::Refused { status, message });
                }
            }
        });
        then(&body, &read, &JsValue::UNDEFINED);
    });
    then(&promise, &on_response, &on_error);
}

/// `promise.then(on_ok, on_error)` with self-freeing `once_into_js` closures, which the
/// typed `Promise::then` (taking a borrowed `Closure`) would make us leak.
fn then(promise: &Promise, on_ok: &JsValue, on_error: &JsValue) {
    if let Ok(then) = Reflect::get(promise, &"then".into()) {
        let then: js_sys::Function = then.unchecked_into();
        let _ = then.call2(promise, on_ok, on_error);
    }
}
