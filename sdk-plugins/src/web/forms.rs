//! `ac('forms:track', selector, options)`: `form_submitted` when a matching form is
//! submitted, `form_abandoned` when a visitor who started filling one leaves without
//! submitting it: the page is left or closed (`pagehide`), or a single-page app moves on
//! and the form is gone. Listeners sit on the document, so forms rendered later count too.
//!
//! What is captured is decided by [`may_capture`]: never passwords, payment card
//! fields, hidden or file inputs, or what the site marks `data-footpath-exclude`.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::JsValue;

use super::{
    ac, arg, attributes, check_selector, document, fp_fields, fp_number, fp_store, fp_text,
    fp_track, handler_boxed, record, text, window, Object,
};
use crate::rules::{
    attribute_name, blank, clip, form_options, may_capture, Field, FormOptions, Val,
    FORM_ABANDONED, FORM_NAME_ATTRIBUTE, FORM_SUBMITTED,
};
use footpath_protocol::v1::MAX_ATTRIBUTES;

thread_local! {
    /// The options of each `forms:track` call, by the index `dom.js` gives back as
    /// the form's rule. Shared (`Rc`) with a report under way, not cloned: no clone
    /// code for their lists; a page function that `report` calls may track more.
    static FORMS: RefCell<Vec<Rc<FormOptions>>> = const { RefCell::new(Vec::new()) };
}

/// Which forms are started, submitted and abandoned is `dom.js`'s wiring
/// (`fp_track`: the listeners, the started forms, `pagehide` and the new-page hook),
/// smaller there than through bindings (measured); what a report holds is decided
/// here ([`report`]).
pub fn track(args: &[Val]) -> Result<(), String> {
    let selector = text(arg(args, 1))
        .filter(|s| !blank(s))
        .ok_or("needs a form selector")?;
    check_selector("form", selector)?;
    let options = form_options(arg(args, 2))?;
    document().ok_or("needs a document")?;
    window().ok_or("needs a window")?;
    let first = FORMS.with(|forms| {
        let mut forms = forms.borrow_mut();
        forms.push(Rc::new(options));
        forms.len() == 1
    });
    // One report handler for every tracked form: `dom.js` keeps the form (for
    // `fp_fields`) and passes its rule and whether it was submitted as `fp_number(0)`
    // and `(1)`.
    let report_form = if first {
        handler_boxed(Box::new(|| {
            let (rule, submitted) = (fp_number(0) as usize, fp_number(1) != 0.0);
            let event = if submitted {
                FORM_SUBMITTED
            } else {
                FORM_ABANDONED
            };
            report(rule, event);
        }))
    } else {
        JsValue::UNDEFINED
    };
    fp_track(selector, &report_form);
    Ok(())
}

/// Records `event` for `form`: its name, the captured fields (when the options ask
/// for them) and the custom attributes; the mapped fields first become traits.
fn report(rule: usize, event: &str) {
    // The options are shared (`Rc`), not cloned: no clone code for their lists.
    let Some(options) = FORMS.with(|forms| forms.borrow().get(rule).cloned()) else {
        return;
    };
    let capture = if event == FORM_SUBMITTED {
        options.capture_form_data_on_submit
    } else {
        options.capture_form_data_on_abandon
    };
    let (name, custom, mapper) = (
        &options.form_name,
        &options.custom_attributes,
        &options.traits_mapper,
    );
    let fields = attributes(custom);
    let traits = Object::new();
    let mut any_trait = false;
    let mut count = custom.len() + 1;
    for (field_name, value) in fields_of() {
        for (field, trait_name) in mapper.iter() {
            if *field == field_name {
                fp_store(&traits, trait_name, &value, false);
                any_trait = true;
            }
        }
        if !capture || count >= MAX_ATTRIBUTES {
            continue;
        }
        if let Some(key) = attribute_name(&field_name) {
            // The custom attributes win over a field of the same name.
            if fp_store(&fields, &key, &value, true) {
                count += 1;
            }
        }
    }
    fp_store(&fields, FORM_NAME_ATTRIBUTE, name, false);
    if any_trait {
        ac(1, "", &traits);
    }
    record(event, &fields);
}

/// The form's fields that may be captured and hold a value: name (or id) and value.
/// A checkbox or radio button counts when checked; a multiple select gives its chosen
/// values joined with commas.
fn fields_of() -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    // Read in `dom.js`, six entries a control; decided here.
    let count = fp_fields();
    let mut at = 0;
    while at < count {
        let text = |i: i32| fp_text(at + i);
        let (tag, kind, name, autocomplete) = (text(0), text(1), text(2), text(3));
        let field = Field {
            tag: &tag,
            kind: &kind,
            name: &name,
            autocomplete: &autocomplete,
            excluded: fp_number(at + 4) != 0.0,
        };
        let value = text(5);
        at += 6;
        if name.is_empty() || value.is_empty() || !may_capture(&field) {
            continue;
        }
        // Checkboxes of one name: their values joined, as a multiple select's; cut in
        // place (`truncate`) rather than copied.
        let at = match fields.iter().position(|(n, _)| *n == name) {
            Some(at) => {
                fields[at].1.push(',');
                at
            }
            None => {
                fields.push((name, String::new()));
                fields.len() - 1
            }
        };
        let joined = &mut fields[at].1;
        joined.push_str(&value);
        joined.truncate(clip(joined).len());
    }
    fields
}
