//! `ac('forms:track', selector, options)`: `form_submitted` when a matching form is
//! submitted, `form_abandoned` when a visitor who started filling one leaves without
//! submitting it: the page is left or closed (`pagehide`), or a single-page app moves on
//! and the form is gone. Listeners sit on the document, so forms rendered later count too.
//!
//! What is captured is decided by [`may_capture`]: never passwords, payment card
//! fields, hidden or file inputs, or what the site marks `data-footpath-exclude`.

use std::cell::RefCell;
use std::rc::Rc;

use super::{
    ac, arg, attributes, check_selector, document, fp_fields, fp_form, fp_has, fp_match, fp_number,
    fp_text, listen, on_new_page, record, set, text, window, HtmlFormElement, Object,
};
use crate::rules::{
    attribute_name, blank, clip, form_options, may_capture, Field, FormOptions, Val,
    FORM_ABANDONED, FORM_NAME_ATTRIBUTE, FORM_SUBMITTED,
};
use footpath_protocol::v1::MAX_ATTRIBUTES;

struct Tracked {
    selector: String,
    options: Rc<FormOptions>,
}

struct Forms {
    tracked: Vec<Tracked>,
    /// Forms the visitor has typed into and not submitted, with their rule.
    started: Vec<(HtmlFormElement, usize)>,
    listening: bool,
}

thread_local! {
    // Initialised as a constant: no lazy initialisation code.
    static FORMS: RefCell<Forms> = const {
        RefCell::new(Forms {
            tracked: Vec::new(),
            started: Vec::new(),
            listening: false,
        })
    };
}

pub fn track(args: &[Val]) -> Result<(), String> {
    let selector = text(arg(args, 1))
        .filter(|s| !blank(s))
        .ok_or("needs a form selector")?
        .to_owned();
    check_selector("form", &selector)?;
    let options = form_options(arg(args, 2))?;
    let listen_now = FORMS.with(|forms| {
        let mut forms = forms.borrow_mut();
        forms.tracked.push(Tracked {
            selector,
            options: Rc::new(options),
        });
        !std::mem::replace(&mut forms.listening, true)
    });
    if listen_now {
        start_listening()?;
    }
    Ok(())
}

fn start_listening() -> Result<(), String> {
    let page = document().ok_or("needs a document")?;
    // One handler for the three: its code is in the module once.
    for kind in ["input", "change", "submit"] {
        let submit = kind == "submit";
        listen(&page, kind, move |event| {
            let Some((form, rule)) = tracked_form(fp_form(&event, submit)) else {
                return;
            };
            FORMS.with(|forms| {
                let started = &mut forms.borrow_mut().started;
                // A form is in `started` at most once.
                let at = started.iter().position(|(f, _)| *f == form);
                match at {
                    Some(at) if submit => {
                        started.remove(at);
                    }
                    None if !submit => started.push((form.clone(), rule)),
                    _ => {}
                }
            });
            if submit {
                report(&form, rule, FORM_SUBMITTED);
            }
        });
    }
    let window = window().ok_or("needs a window")?;
    // Leaving the page, not only hiding it (a visitor who switches tabs comes back to
    // the form). Before the SDK's own handler (capturing listeners run first), so
    // that the event goes out in the page's last beacon.
    listen(&window, "pagehide", |_| abandon(&|_| true));
    on_new_page(|| abandon(&|form| !form.is_connected()));
    Ok(())
}

/// The tracked form, if `form` is one, with the index of its rule.
fn tracked_form(form: Option<HtmlFormElement>) -> Option<(HtmlFormElement, usize)> {
    let form = form?;
    let rule = FORMS.with(|forms| {
        forms
            .borrow()
            .tracked
            .iter()
            .position(|tracked| fp_match(&form, &tracked.selector, true))
    })?;
    Some((form, rule))
}

/// Records `form_abandoned` for the started forms that `gone` picks. Not generic:
/// its code is in the module once for its three callers (measured).
fn abandon(gone: &dyn Fn(&HtmlFormElement) -> bool) {
    let mut left = Vec::new();
    FORMS.with(|forms| {
        let started = &mut forms.borrow_mut().started;
        let mut i = 0;
        while i < started.len() {
            if gone(&started[i].0) {
                left.push(started.remove(i));
            } else {
                i += 1;
            }
        }
    });
    for (form, rule) in left {
        report(&form, rule, FORM_ABANDONED);
    }
}

/// Records `event` for `form`: its name, the captured fields (when the options ask
/// for them) and the custom attributes; the mapped fields first become traits.
fn report(form: &HtmlFormElement, rule: usize, event: &str) {
    // The options are shared (`Rc`), not cloned: no clone code for their lists.
    let Some(options) = FORMS.with(|forms| {
        let forms = forms.borrow();
        Some(Rc::clone(&forms.tracked.get(rule)?.options))
    }) else {
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
    for (field_name, value) in fields_of(form) {
        for (field, trait_name) in mapper.iter() {
            if *field == field_name {
                set(&traits, trait_name, &value.as_str().into());
                any_trait = true;
            }
        }
        if !capture || count >= MAX_ATTRIBUTES {
            continue;
        }
        if let Some(key) = attribute_name(&field_name) {
            // The custom attributes win over a field of the same name.
            if !fp_has(&fields, &key) {
                set(&fields, &key, &value.into());
                count += 1;
            }
        }
    }
    set(&fields, FORM_NAME_ATTRIBUTE, &name.as_str().into());
    if any_trait {
        ac(&["identify".into(), traits.into()]);
    }
    record(event, &fields);
}

/// The form's fields that may be captured and hold a value: name (or id) and value.
/// A checkbox or radio button counts when checked; a multiple select gives its chosen
/// values joined with commas.
fn fields_of(form: &HtmlFormElement) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    // Read in `dom.js`, six entries a control; decided here.
    let count = fp_fields(form);
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
