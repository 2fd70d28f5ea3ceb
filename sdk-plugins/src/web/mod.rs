//! API Boundary: the plugin module's browser side. The loader calls [`run`] with the
//! page's `ac`, its `refuse(command, message)` and the arguments of one `load`, `forms:track` or `session` call.
//!
//! Nothing here throws into the page: every DOM call that can fail is checked, page
//! functions are called by `dom.js`, which catches what they throw, and a refused
//! call is reported through the core (the loader's `refuse`).
//!
//! The command's arguments are walked once by `dom.js` ([`read`]) into [`Val`]s, the
//! rules' own type; `dom.js` calls the page's functions among them (`fp_loaded`,
//! `fp_session`, `fp_history`) only once the rules have accepted them.

mod autotrack;
mod forms;
mod session;

use std::cell::{Cell, RefCell};

use wasm_bindgen::prelude::*;

use crate::rules::{self, cat, Attributes, Val, Value};

thread_local! {
    /// The plugins loaded on this page, a bit each (see `load`): a second `load` of
    /// one only checks its options and calls its callback.
    static LOADED: Cell<u8> = const { Cell::new(0) };
}

/// One `ac('load' | 'forms:track' | 'session', ...)` call; `args` holds the command
/// name first, as the page passed it.
#[wasm_bindgen]
pub fn run(ac: JsValue, refuse: JsValue, args: JsValue) {
    fp_start(&ac, &refuse);
    let args = match read(&args) {
        Val::List(list) => list,
        _ => Vec::new(),
    };
    let command = text(arg(&args, 0)).unwrap_or_default();
    let done = match command {
        "load" => load(&args),
        "forms:track" => forms::track(&args),
        "session" => session::ask(&args),
        _ => Err("is not a command".into()),
    };
    if let Err(message) = done {
        self::refuse(command, &message);
    }
}

/// The command's argument `i`, as [`read`] found it.
fn arg(args: &[Val], i: usize) -> &Val {
    args.get(i).unwrap_or(&Val::Undefined)
}

fn text(value: &Val) -> Option<&str> {
    match value {
        Val::Str(text) => Some(text),
        _ => None,
    }
}

fn load(args: &[Val]) -> Result<(), String> {
    let name = text(arg(args, 1)).ok_or("needs a plugin name")?;
    let options = arg(args, 2);
    let callback = match arg(args, 3) {
        Val::Undefined => false,
        Val::Function => true,
        _ => return Err("loadedCallback must be a function".into()),
    };
    // Options are checked on every call; a plugin already running (its bit in
    // `LOADED`) is not set up again.
    let fresh = |bit: u8| LOADED.get() & bit == 0;
    let bit = match name {
        "autotrackClick" => {
            let rules = rules::click_options(options)?;
            if fresh(1) {
                autotrack::click(rules)?;
            }
            1
        }
        "autotrackIdle" => {
            let rules = rules::idle_options(options)?;
            if fresh(2) {
                autotrack::idle(rules);
            }
            2
        }
        "autotrackInViewport" => {
            let rules = rules::in_viewport_options(options)?;
            if fresh(4) {
                autotrack::in_viewport(rules)?;
            }
            4
        }
        "autotrackScrollDepth" => {
            let rules = rules::scroll_depth_options(options)?;
            if fresh(8) {
                autotrack::scroll_depth(rules);
            }
            8
        }
        "autotrackUrlChange" => {
            let hooked = rules::url_change_options(options)?;
            if fresh(16) {
                autotrack::url_change(hooked)?;
            }
            16
        }
        _ => {
            return Err(cat(&[
                "unknown plugin '",
                name,
                "': autotrackClick, autotrackIdle, autotrackInViewport, autotrackScrollDepth or autotrackUrlChange",
            ]))
        }
    };
    LOADED.set(LOADED.get() | bit);
    if callback {
        fp_loaded();
    }
    Ok(())
}

/// The command's arguments, as [`Val`]s for the rules. `fp_read` in `dom.js` walks
/// them once into a list, a number (kind and count) and a string or number for each
/// value, which this reads back: one binding per value rather than a handle and
/// several type checks (measured, see BENCHMARKS.md). It stops at a depth of 6 and
/// at lists and objects of more than 1,000 entries (read as `Other`): a page's
/// mistake (a DOM node, a huge array) must not make the read take long.
fn read(value: &JsValue) -> Val {
    fp_read(value);
    read_next(&mut 0)
}

/// The value at `*at`, moving `*at` past it and what it holds.
fn read_next(at: &mut i32) -> Val {
    let here = *at;
    *at += 1;
    let kind = fp_kind(here);
    let count = kind >> 4;
    match kind & 15 {
        0 => Val::Undefined,
        1 => Val::Null,
        2 => Val::Bool(false),
        3 => Val::Bool(true),
        4 => Val::Number(fp_number(here)),
        5 => Val::Str(fp_text(here)),
        6 => {
            let mut list = Vec::new();
            for _ in 0..count {
                list.push(read_next(at));
            }
            Val::List(list)
        }
        7 => {
            let mut entries = Vec::new();
            for _ in 0..count {
                // The key, then its value.
                let key = fp_text(*at);
                *at += 1;
                entries.push((key, read_next(at)));
            }
            Val::Object(entries)
        }
        9 => Val::Function,
        _ => Val::Other,
    }
}

/// Calls the page's `ac` (the loader's `ac` never throws): `ac('identify', value)` or
/// `ac('record', name, value)` for `command` 1 or 2, the command's name written in
/// `dom.js` rather than passed as a string each time, the event's name passed as it
/// is (measured).
fn ac(command: i32, name: &str, value: &JsValue) {
    fp_ac(command, name, value);
}

/// Has the core report `message` about `command`, as it reports its own refusals.
fn refuse(command: &str, message: &str) {
    fp_refuse(command, message);
}

/// `ac('record', name, attributes)`.
fn record(name: &str, attributes: &Object) {
    ac(2, name, attributes);
}

/// The attributes as the object `record` takes.
fn attributes(attributes: &Attributes) -> Object {
    let object = Object::new();
    for (key, value) in attributes {
        set(&object, key, &value_of(value));
    }
    object
}

fn value_of(value: &Value) -> JsValue {
    match value {
        Value::Text(text) => text.into(),
        Value::Number(number) => (*number).into(),
        Value::Flag(flag) => (*flag).into(),
        Value::Typed(data_type, value) => {
            let object = Object::new();
            set(&object, "dataType", &data_type.as_str().into());
            set(&object, "value", &value_of(value));
            object.into()
        }
    }
}

fn set(object: &Object, key: &str, value: &JsValue) {
    fp_set(object, key, value);
}

/// `Some` when the page has a `window` (`dom.js` uses it as it is, not through a
/// handle from here: an optional handle costs a table slot and glue, measured).
fn window() -> Option<()> {
    fp_there(0).then_some(())
}

/// `Some` when the page has a document.
fn document() -> Option<()> {
    fp_there(1).then_some(())
}

// The DOM and JavaScript types and calls the module uses, declared here rather than
// taken from js-sys and web-sys: linking js-sys brings code nothing here calls (its
// futures' task wakers; measured, see BENCHMARKS.md).
#[wasm_bindgen]
extern "C" {

    pub type Object;
    #[wasm_bindgen(constructor)]
    fn new() -> Object;

}

/// Refuses a selector the browser cannot parse, naming the option that holds it.
fn check_selector(at: &str, selector: &str) -> Result<(), String> {
    document().ok_or("needs a document")?;
    if fp_valid(selector) {
        return Ok(());
    }
    Err(cat(&[
        at,
        ".selector: '",
        selector,
        "' is not a valid CSS selector",
    ]))
}

type Handler = Box<dyn FnMut()>;

thread_local! {
    /// What the page's events, timers and callbacks call, by the number that
    /// [`handler_boxed`] gave them: the JavaScript function calls [`fp_fire`] with it.
    /// Rather than wasm-bindgen's `Closure`, whose glue (a `FinalizationRegistry`, a
    /// wrapper per closure) and destructors cost more (measured, see BENCHMARKS.md).
    /// Handlers live as long as the page: none is ever removed, so a number always
    /// means the same handler.
    static HANDLERS: RefCell<Vec<Option<Handler>>> = const { RefCell::new(Vec::new()) };
}

/// A JavaScript function that calls `handler` with its first argument. Generic
/// helpers (`callback`) only box their closure and call this: its body is
/// then in the module once (measured).
fn handler_boxed(handler: Handler) -> JsValue {
    let id = HANDLERS.with(|handlers| {
        let mut handlers = handlers.borrow_mut();
        handlers.push(Some(handler));
        handlers.len() - 1
    });
    fp_handler(id as i32)
}

/// Runs handler `id` (see [`HANDLERS`]); called by the functions of `fp_handler`. The
/// handler is taken out while it runs, so that what it does (a page function that
/// changes the URL) may run other handlers; it does not run within itself.
#[wasm_bindgen]
pub fn fp_fire(id: u32) {
    let Some(mut handler) = swap_handler(id, None) else {
        return;
    };
    handler();
    // The slot was emptied above: nothing to drop.
    std::mem::forget(swap_handler(id, Some(handler)));
}

/// Puts `handler` in slot `id` (if there is one) and gives what was there.
fn swap_handler(id: u32, handler: Option<Handler>) -> Option<Handler> {
    HANDLERS.with(|handlers| {
        let mut handlers = handlers.borrow_mut();
        let slot = handlers.get_mut(id as usize)?;
        std::mem::replace(slot, handler)
    })
}

#[wasm_bindgen(module = "/src/web/dom.js")]
extern "C" {
    /// A form's controls, six entries each (see `dom.js`), for `fp_text` and
    /// `fp_number`; returns how many entries.
    fn fp_fields() -> i32;
    /// Calls the options' `onUrlChange` with the new URL when `hooked`, else the
    /// page's `ac('pageview')`, after each History API navigation and on `popstate`,
    /// once the task that changed it is done and the new-page hooks have run (what
    /// `onUrlChange` throws stays with it); false when refused, the refusal then
    /// `fp_text(0)`.
    fn fp_history(hooked: bool) -> bool;
    /// Calls `scrolled` on each scroll of the page (capturing and passive, as
    /// `dom.js`'s other listeners).
    fn fp_on_scroll(scrolled: &JsValue);
    /// Form tracking's listeners (see `dom.js`), and a selector to track; `report`
    /// (given with the first) reports a form.
    fn fp_track(selector: &str, report: &JsValue);
    /// Whether the browser can parse `selector`.
    fn fp_valid(selector: &str) -> bool;
    /// `object[key] = value` (`Reflect::set` has a catch shim).
    fn fp_set(object: &Object, key: &str, value: &JsValue);
    /// Whether the page has a `window` (0) or a document (1). The module runs only in
    /// pages (the loader imports it there), so `web_sys::window`'s search of
    /// `globalThis`, `self`, `window` and `global` is not needed (measured).
    fn fp_there(what: i32) -> bool;
    /// `object[key] = value` for a text value, unless `keep` and the object has
    /// `key` already; whether it set it. One binding for the form report's sets and
    /// checks, the value passed as it is rather than made a `JsValue` first.
    fn fp_store(object: &Object, key: &str, value: &str, keep: bool) -> bool;
    /// Calls `clicked` on each click on (or inside) an element matching `selector`.
    fn fp_click(selector: &str, clicked: &JsValue);
    /// Calls `seen` the first time each element matching `selector` comes into view;
    /// false without IntersectionObserver.
    fn fp_seen(selector: &str, seen: &JsValue) -> bool;
    /// `scrollY`, `innerHeight` and the document's height as `fp_number(0)` to `(2)`;
    /// false if the document has no element.
    fn fp_scroll() -> bool;
    /// Walks a value the page passed for [`read`]; `fp_kind`, `fp_number` and
    /// `fp_text` then tell what the walk found at an index.
    fn fp_read(args: &JsValue);
    /// Calls `load`'s `loadedCallback` (the command's argument 3, which the rules
    /// have seen as a function); what it throws stays with it.
    fn fp_loaded();
    fn fp_kind(at: i32) -> u32;
    #[wasm_bindgen(js_name = fp_value)]
    fn fp_number(at: i32) -> f64;
    #[wasm_bindgen(js_name = fp_value)]
    fn fp_text(at: i32) -> String;
    /// A function that calls the module's [`fp_fire`] with `id` and its argument
    /// (`i32`: a `u32` would cost a shim in the glue).
    fn fp_handler(id: i32) -> JsValue;
    /// Asks the collector for the web session (where, from `ac.state()`), with
    /// retries, and calls the command's callback (argument 1, which the rules have
    /// seen as a function) with it; false before init or without consent.
    fn fp_session() -> bool;
    /// Keeps the page's `ac` and the loader's `refuse(command, message)` in `dom.js`
    /// for [`fp_ac`] and [`fp_refuse`]: held there rather than in thread-locals here
    /// (measured).
    fn fp_start(ac: &JsValue, refuse: &JsValue);
    /// Calls `ring` once the visitor has not interacted for `ms` milliseconds (at
    /// most a day: an `i32`, as the counts and indexes given to `dom.js`, since a
    /// `u32` costs a shim in the glue); again only after the visitor has been active
    /// since.
    fn fp_idle(ring: &JsValue, ms: i32);
    /// See [`on_new_page`].
    fn fp_on_new_page(hook: &JsValue);
    /// The loader's `refuse(command, message)`, which does not throw.
    fn fp_refuse(command: &str, message: &str);
    /// See [`ac`].
    fn fp_ac(command: i32, name: &str, value: &JsValue);

}

/// A function for the page that calls `f` (its argument, if any, unused), of the
/// listeners' handler type.
fn callback(f: impl FnMut() + 'static) -> JsValue {
    handler_boxed(Box::new(f))
}

#[wasm_bindgen]
extern "C" {}

/// Runs `hook` when the single-page app moves to another URL (`dom.js` keeps the
/// hooks, run by the URL-change plugin's wrapper): plugins whose state belongs to one
/// page view (scroll depth, started forms) start again.
fn on_new_page(hook: impl FnMut() + 'static) {
    fp_on_new_page(&callback(hook));
}
