//! The autotrack plugins: clicks, idleness, elements coming into view, scroll depth and
//! a single-page app's URL changes.

use std::cell::Cell;

use super::{
    attributes, callback, check_selector, document, fp_click, fp_history, fp_idle, fp_number,
    fp_on_scroll, fp_scroll, fp_seen, fp_text, handler_boxed, on_new_page, record, window,
};
use crate::rules::{cat, decimal, scroll_depth as depth, Rule, MAX_RULES};

/// `autotrackClick`: a click on (or inside) an element matching a rule's selector
/// records the rule's event.
pub fn click(rules: Vec<Rule>) -> Result<(), String> {
    for (i, rule) in rules.iter().enumerate() {
        check_selector(&cat(&["clickEvents[", &decimal(i), "]"]), &rule.selector)?;
    }
    document().ok_or("needs a document")?;
    // One listener on the document for every rule, in `dom.js` (`fp_click`).
    for rule in rules {
        let selector = rule.selector.clone();
        fp_click(&selector, &callback(move || fire(&rule)));
    }
    Ok(())
}

/// Records `rule`'s event with its custom attributes: one copy of this for the
/// four plugins (measured).
fn fire(rule: &Rule) {
    record(&rule.event_name, &attributes(&rule.custom_attributes));
}

/// `autotrackIdle`: a rule's event once the visitor has not interacted for its
/// `idleAfter` seconds; again only after the visitor has been active since. The
/// timers and what counts as activity are `dom.js`'s (`fp_idle`): wiring, smaller
/// there than through bindings (measured).
pub fn idle(rules: Vec<Rule>) {
    for rule in rules {
        let ms = (rule.threshold * 1000.0) as i32;
        fp_idle(&callback(move || fire(&rule)), ms);
    }
}

/// `autotrackInViewport`: a rule's event the first time each matching element (present
/// when the plugin loads) comes into view.
pub fn in_viewport(rules: Vec<Rule>) -> Result<(), String> {
    for (i, rule) in rules.iter().enumerate() {
        check_selector(
            &cat(&["inViewportEvents[", &decimal(i), "]"]),
            &rule.selector,
        )?;
    }
    document().ok_or("needs a document")?;
    for rule in rules {
        // Cloned: taking it (`mem::take`) is larger (measured).
        let selector = rule.selector.clone();
        if !fp_seen(&selector, &callback(move || fire(&rule))) {
            return Err("this browser has no IntersectionObserver".into());
        }
    }
    Ok(())
}

/// `autotrackScrollDepth`: each rule's event once per page view, when the bottom of
/// the viewport first reaches its percentage of the page.
pub fn scroll_depth(rules: Vec<Rule>) {
    // A bit per rule (at most `MAX_RULES`, 50): no `vec![false; n]` code (measured).
    // In a static rather than an `Rc` shared by the two closures (its drop code,
    // measured): the plugin is set up once a page (`LOADED`).
    const _: () = assert!(MAX_RULES <= 64);
    thread_local! {
        static REACHED: Cell<u64> = const { Cell::new(0) };
    }
    on_new_page(|| REACHED.set(0));
    if window().is_none() {
        return;
    }
    fp_on_scroll(&handler_boxed(Box::new(move || {
        if !fp_scroll() {
            return;
        }
        let percent = depth(fp_number(0), fp_number(1), fp_number(2));
        for (i, rule) in rules.iter().enumerate() {
            let bit = 1u64 << i;
            if REACHED.get() & bit == 0 && percent >= rule.threshold {
                REACHED.set(REACHED.get() | bit);
                fire(rule);
            }
        }
    })));
}

/// `autotrackUrlChange`: a page view each time a single-page app changes the URL
/// (`history.pushState`, `replaceState`, back and forward), or, when the page gives
/// `onUrlChange(url)`, a call of that instead (the page then records its own page
/// view, with the title it has after rendering; see [`crate::rules::url_change_options`]).
/// Whether the page gave `onUrlChange` is decided here (`hooked`); `dom.js` calls it,
/// or `ac('pageview')`, with the new URL after the task that changed it: by then a
/// router has usually rendered the new page and set its title.
pub fn url_change(hooked: bool) -> Result<(), String> {
    window().ok_or("needs a window")?;
    if fp_history(hooked) {
        Ok(())
    } else {
        Err(fp_text(0))
    }
}
