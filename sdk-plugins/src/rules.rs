//! What the plugins decide without a browser: the options a page may pass (read and
//! checked here, with the path of a bad value in the error), which form fields may leave the page, how a field's name
//! becomes an attribute name, and how deep a page is scrolled. Tested natively below;
//! `web` only reads the DOM into these shapes and acts on the answers.

use footpath_protocol::v1::{
    validate_attribute_name, validate_event_name, MAX_ATTRIBUTES, MAX_NAME_BYTES, MAX_VALUE_BYTES,
};

/// A value the page passed, read once from JavaScript (`web`), so that the options
/// are checked here, natively testable. Objects that are neither lists nor plain
/// objects, and values nested too deep, read as `Other`.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Undefined,
    Null,
    Bool(bool),
    Number(f64),
    Str(String),
    List(Vec<Val>),
    Object(Vec<(String, Val)>),
    /// A function: the rules only check that one was given where one is wanted;
    /// `web` takes it from the page's value.
    Function,
    Other,
}

/// An attribute value as `record` takes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Number(f64),
    Flag(bool),
    /// `{ dataType, value }`.
    Typed(String, Box<Value>),
}

/// `customAttributes`: sent with every event the rule records.
pub type Attributes = Vec<(String, Value)>;

/// A rule of one of the autotrack plugins that take rules: `clickEvents` and
/// `inViewportEvents` (`selector`), `idleEvents` (`idleAfter`, in `threshold`) and
/// `scrollDepthEvents` (`percentage`, in `threshold`). One type for the four, so that
/// their reader and what handles them are in the module once.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Empty for the rules that take a number.
    pub selector: String,
    /// Seconds without interaction (above 0, at most [`MAX_IDLE_SECONDS`]), or how
    /// much of the page has been on screen (above 0, at most 100); 0 for selectors.
    pub threshold: f64,
    pub event_name: String,
    pub custom_attributes: Attributes,
}

/// The options of `ac('forms:track', selector, options)`.
#[derive(Debug, Clone, PartialEq)]
pub struct FormOptions {
    pub form_name: String,
    pub capture_form_data_on_submit: bool,
    pub capture_form_data_on_abandon: bool,
    pub custom_attributes: Attributes,
    /// `traitsMapper`: the form field `fieldName` becomes trait `traitName`.
    pub traits_mapper: Vec<(String, String)>,
}

/// Most rules one plugin takes: each is work on every click or scroll.
pub const MAX_RULES: usize = 50;

/// The longest `idleAfter`, in seconds: a day.
pub const MAX_IDLE_SECONDS: f64 = 86_400.0;

/// The events form tracking records.
pub const FORM_SUBMITTED: &str = "form_submitted";
pub const FORM_ABANDONED: &str = "form_abandoned";

/// The attribute that names the form in both events.
pub const FORM_NAME_ATTRIBUTE: &str = "formName";

/// Marks a field (or a part of a form) that is never captured.
pub const EXCLUDE_ATTRIBUTE: &str = "data-footpath-exclude";

/// The selector of what [`EXCLUDE_ATTRIBUTE`] marks.
pub const EXCLUDED: &str = "[data-footpath-exclude]";

type Result<T> = std::result::Result<T, String>;

/// Concatenates, without `format!`: the formatting machinery would be a large part of
/// the module. A loop, not `concat`: `join`'s generic code is larger (measured).
pub fn cat(parts: &[&str]) -> String {
    let mut text = String::new();
    for part in parts {
        text.push_str(part);
    }
    text
}

/// `n` in decimal, without the UTF-8 check that `String::from_utf8` would bring.
pub fn decimal(n: usize) -> String {
    let mut unit = 1;
    while n / unit >= 10 {
        unit *= 10;
    }
    let mut text = String::new();
    while unit > 0 {
        text.push(char::from(b'0' + (n / unit % 10) as u8));
        unit /= 10;
    }
    text
}

/// Whether `text` is empty or only whitespace (`trim().is_empty()`, smaller).
pub fn blank(text: &str) -> bool {
    text.chars().all(char::is_whitespace)
}

/// Where a value sits in the page's options (`clickEvents[0].eventName`). A chain of
/// borrowed links, written out only by [`fail`]: good options are read without
/// building a string for any path (measured: smaller than a `String` per level).
enum At<'a> {
    /// `options`, a rule list's name, or nothing (a form option's name is its path).
    Root(&'a str),
    Key(&'a At<'a>, &'a str),
    Index(&'a At<'a>, usize),
}

impl At<'_> {
    fn write(&self, out: &mut String) {
        match *self {
            At::Root(name) => out.push_str(name),
            At::Key(parent, key) => {
                parent.write(out);
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            At::Index(parent, i) => {
                parent.write(out);
                out.push('[');
                out.push_str(&decimal(i));
                out.push(']');
            }
        }
    }
}

/// The refusal of the value at `at`: its path, then `message`. Every option error is
/// made here, from static pieces.
fn fail(at: &At, message: &[&str]) -> String {
    let mut text = String::new();
    at.write(&mut text);
    for part in message {
        text.push_str(part);
    }
    text
}

/// The entries of an options object; any key not in `known` is refused. `undefined`
/// and `null` read as `{}`, so that the error names what is missing.
fn object<'v>(value: &'v Val, at: &At, known: &[&str]) -> Result<&'v [(String, Val)]> {
    let entries: &[(String, Val)] = match value {
        Val::Object(entries) => entries,
        Val::Undefined | Val::Null => &[],
        _ => return Err(fail(at, &[": must be an object"])),
    };
    for (key, _) in entries {
        if !known.contains(&key.as_str()) {
            let mut list = String::new();
            for known in known {
                if !list.is_empty() {
                    list.push_str(", ");
                }
                list.push_str(known);
            }
            return Err(fail(
                &At::Key(at, key),
                &[": is not an option (", &list, ")"],
            ));
        }
    }
    Ok(entries)
}

fn field<'v>(entries: &'v [(String, Val)], key: &str) -> &'v Val {
    entries
        .iter()
        .find(|(k, _)| k == key)
        .map_or(&Val::Undefined, |(_, v)| v)
}

/// The string option `key` of the object at `at`.
fn text(entries: &[(String, Val)], at: &At, key: &str) -> Result<String> {
    match field(entries, key) {
        Val::Str(text) => Ok(text.clone()),
        Val::Undefined => Err(fail(&At::Key(at, key), &[": is needed"])),
        _ => Err(fail(&At::Key(at, key), &[": must be a string"])),
    }
}

/// The number option `key`, above 0 and at most `max` (`range` says so otherwise).
fn number(entries: &[(String, Val)], at: &At, key: &str, max: f64, range: &str) -> Result<f64> {
    let at = At::Key(at, key);
    match field(entries, key) {
        // `!(x > 0)` also refuses NaN.
        Val::Number(number) if !(*number > 0.0 && *number <= max) => Err(fail(&at, &[range])),
        Val::Number(number) => Ok(*number),
        Val::Undefined => Err(fail(&at, &[": is needed"])),
        _ => Err(fail(&at, &[": must be a number"])),
    }
}

fn flag(entries: &[(String, Val)], key: &str) -> Result<bool> {
    match field(entries, key) {
        Val::Bool(flag) => Ok(*flag),
        Val::Undefined => Ok(true),
        _ => Err(fail(&At::Root(key), &[": must be true or false"])),
    }
}

/// A name as the protocol takes it (`eventName`, `traitName`).
fn name(entries: &[(String, Val)], at: &At, key: &str) -> Result<String> {
    let name = text(entries, at, key)?;
    validate_event_name(&name).map_err(|e| fail(&At::Key(at, key), &[": ", e.reason()]))?;
    Ok(name)
}

/// A string, number or boolean; `None` for anything else and for a string longer
/// than an attribute value may be.
fn scalar(value: &Val) -> Option<Value> {
    match value {
        Val::Str(text) if text.len() <= MAX_VALUE_BYTES => Some(Value::Text(text.clone())),
        Val::Number(number) => Some(Value::Number(*number)),
        Val::Bool(flag) => Some(Value::Flag(*flag)),
        _ => None,
    }
}

/// `customAttributes`: names as the protocol allows them, values as `record` takes
/// them (a string, number, boolean or `{ dataType, value }`).
fn attributes(entries: &[(String, Val)], at: &At) -> Result<Attributes> {
    let at = At::Key(at, "customAttributes");
    let entries = match field(entries, "customAttributes") {
        Val::Undefined => return Ok(Vec::new()),
        Val::Object(entries) => entries,
        _ => return Err(fail(&at, &[": must be an object"])),
    };
    if entries.len() > MAX_ATTRIBUTES {
        return Err(fail(&at, &[": more than ", &decimal(MAX_ATTRIBUTES)]));
    }
    let mut attributes = Vec::new();
    for (key, value) in entries {
        let at = At::Key(&at, key);
        validate_attribute_name(key).map_err(|e| fail(&at, &[": the name ", e.reason()]))?;
        let value = match value {
            Val::Object(_) => {
                let typed = object(value, &at, &["dataType", "value"])?;
                let data_type = text(typed, &at, "dataType")?;
                let value = field(typed, "value");
                let Some(value) = scalar(value) else {
                    return Err(fail(
                        &At::Key(&at, "value"),
                        &[if let Val::Str(_) = value {
                            LONGER
                        } else {
                            ": must be a string, number or boolean"
                        }],
                    ));
                };
                Value::Typed(data_type, Box::new(value))
            }
            _ => scalar(value).ok_or_else(|| {
                fail(
                    &at,
                    &[": must be a string, number, boolean or { dataType, value }"],
                )
            })?,
        };
        attributes.push((key.clone(), value));
    }
    Ok(attributes)
}

/// The refusal of a text longer than [`MAX_VALUE_BYTES`] (a test checks the figure).
const LONGER: &str = ": longer than 1024 bytes";

/// The list of rules under `option`. Each has `first` (a selector when `max` is
/// `None`, else a number above 0 and at most `max`, refused with the message that
/// comes with it), an event name and custom attributes. One reader for the four
/// plugins: one copy of its code rather than one per rule type.
fn rules(options: &Val, option: &str, first: &str, max: Option<(f64, &str)>) -> Result<Vec<Rule>> {
    let entries = object(options, &At::Root("options"), &[option])?;
    let at = At::Root(option);
    let list = match field(entries, option) {
        Val::List(list) => list,
        Val::Undefined => return Err(fail(&at, &[": is needed"])),
        _ => return Err(fail(&at, &[": must be an array"])),
    };
    if list.is_empty() || list.len() > MAX_RULES {
        return Err(fail(&at, &[": needs 1 to ", &decimal(MAX_RULES), " rules"]));
    }
    let mut rules = Vec::new();
    for (i, rule) in list.iter().enumerate() {
        let at = At::Index(&at, i);
        let rule = object(rule, &at, &[first, "eventName", "customAttributes"])?;
        let (selector, threshold) = match max {
            None => {
                let selector = text(rule, &at, first)?;
                if blank(&selector) {
                    return Err(fail(&At::Key(&at, first), &[": must not be empty"]));
                }
                (selector, 0.0)
            }
            Some((max, range)) => (String::new(), number(rule, &at, first, max, range)?),
        };
        rules.push(Rule {
            selector,
            threshold,
            event_name: name(rule, &at, "eventName")?,
            custom_attributes: attributes(rule, &at)?,
        });
    }
    Ok(rules)
}

/// `autotrackClick`'s options.
pub fn click_options(options: &Val) -> Result<Vec<Rule>> {
    rules(options, "clickEvents", "selector", None)
}

/// `autotrackInViewport`'s options.
pub fn in_viewport_options(options: &Val) -> Result<Vec<Rule>> {
    rules(options, "inViewportEvents", "selector", None)
}

/// `autotrackIdle`'s options: `threshold` is `idleAfter`.
pub fn idle_options(options: &Val) -> Result<Vec<Rule>> {
    rules(
        options,
        "idleEvents",
        "idleAfter",
        Some((MAX_IDLE_SECONDS, ": must be above 0, at most 86400 seconds")),
    )
}

/// `autotrackScrollDepth`'s options: `threshold` is `percentage`.
pub fn scroll_depth_options(options: &Val) -> Result<Vec<Rule>> {
    rules(
        options,
        "scrollDepthEvents",
        "percentage",
        Some((100.0, ": must be above 0, at most 100")),
    )
}

/// `autotrackUrlChange`'s options: `{ onUrlChange }` only, a function when given.
/// Whether it was given.
pub fn url_change_options(options: &Val) -> Result<bool> {
    let root = At::Root("options");
    let entries = object(options, &root, &["onUrlChange"])?;
    match field(entries, "onUrlChange") {
        Val::Undefined => Ok(false),
        Val::Function => Ok(true),
        _ => Err(fail(
            &At::Key(&root, "onUrlChange"),
            &[": must be a function"],
        )),
    }
}

/// `ac('forms:track', selector, options)`'s options.
pub fn form_options(options: &Val) -> Result<FormOptions> {
    let entries = object(
        options,
        &At::Root("options"),
        &[
            "formName",
            "captureFormDataOnSubmit",
            "captureFormDataOnAbandon",
            "customAttributes",
            "traitsMapper",
        ],
    )?;
    // A form option's path is its name.
    let root = At::Root("");
    let form_name = text(entries, &root, "formName")?;
    if blank(&form_name) || form_name.len() > MAX_VALUE_BYTES {
        return Err("formName: must be a text of 1 to 1024 bytes".into());
    }
    let mut traits_mapper = Vec::new();
    match field(entries, "traitsMapper") {
        Val::Undefined => {}
        Val::List(list) if list.len() <= MAX_ATTRIBUTES => {
            let mapper = At::Root("traitsMapper");
            for (i, rule) in list.iter().enumerate() {
                let at = At::Index(&mapper, i);
                let rule = object(rule, &at, &["fieldName", "traitName"])?;
                let field_name = text(rule, &at, "fieldName")?;
                traits_mapper.push((field_name, name(rule, &at, "traitName")?));
            }
        }
        _ => {
            return Err(
                "traitsMapper: must be an array of at most 50 { fieldName, traitName }".into(),
            )
        }
    }
    Ok(FormOptions {
        form_name,
        capture_form_data_on_submit: flag(entries, "captureFormDataOnSubmit")?,
        capture_form_data_on_abandon: flag(entries, "captureFormDataOnAbandon")?,
        custom_attributes: attributes(entries, &root)?,
        traits_mapper,
    })
}

/// A form control as the DOM shows it, lower-cased where HTML is case-insensitive.
#[derive(Debug, Clone, Copy, Default)]
pub struct Field<'a> {
    /// `input`, `select`, `textarea`, ...
    pub tag: &'a str,
    /// The `type` attribute (`text` when absent).
    pub kind: &'a str,
    /// The `name` attribute, or the `id` when there is none.
    pub name: &'a str,
    /// The `autocomplete` attribute.
    pub autocomplete: &'a str,
    /// Inside an element marked [`EXCLUDE_ATTRIBUTE`] (or marked itself).
    pub excluded: bool,
}

/// Input types whose values are never captured: secrets, files, and what is no data.
const NEVER_TYPES: [&str; 7] = [
    "password", "hidden", "file", "submit", "button", "reset", "image",
];

/// `autocomplete` tokens of secrets: payment cards (`cc-*`) and credentials.
const SECRET_AUTOCOMPLETE: [&str; 3] = ["current-password", "new-password", "one-time-code"];

/// Names (letters and digits only, lower case) that are secrets wherever they appear
/// in a field's name.
const SECRET_PARTS: [&str; 14] = [
    "password",
    "passwd",
    "passcode",
    "cardnumber",
    "ccnumber",
    "creditcard",
    "debitcard",
    "cardholder",
    "securitycode",
    "cardverification",
    "cardexp",
    "iban",
    "socialsecurity",
    "secret",
];

/// Short names that are secrets only as a whole word of a field's name (`cvv`,
/// `card_cvc`), since as parts of words they are common (`shipping` holds `pin`).
const SECRET_WORDS: [&str; 9] = [
    "cc", "cvc", "cvv", "cvv2", "csc", "pan", "pin", "ssn", "pwd",
];

/// Whether the value of `field` may leave the page. Never: passwords and other
/// credentials, payment card fields (by `autocomplete` and by common names), hidden
/// and file inputs, buttons, and what the site excluded.
pub fn may_capture(field: &Field) -> bool {
    if field.excluded || !matches!(field.tag, "input" | "select" | "textarea") {
        return false;
    }
    if field.tag == "input" && NEVER_TYPES.contains(&field.kind) {
        return false;
    }
    // Compared without case rather than lower-cased: no string per token.
    for token in field.autocomplete.split_ascii_whitespace() {
        let token = token.as_bytes();
        if token
            .get(..3)
            .is_some_and(|start| start.eq_ignore_ascii_case(b"cc-"))
            || SECRET_AUTOCOMPLETE
                .iter()
                .any(|secret| token.eq_ignore_ascii_case(secret.as_bytes()))
        {
            return false;
        }
    }
    let mut squeezed = String::new();
    for c in field.name.chars() {
        if c.is_ascii_alphanumeric() {
            squeezed.push(c.to_ascii_lowercase());
        }
    }
    // Byte windows rather than `str::contains`, whose substring search is large.
    if SECRET_PARTS.iter().any(|part| {
        squeezed
            .as_bytes()
            .windows(part.len())
            .any(|window| window == part.as_bytes())
    }) {
        return false;
    }
    !has_secret_word(field.name)
}

/// Whether a word of the name, lower-cased, is one of [`SECRET_WORDS`]. Words are
/// split at anything not a letter or digit and where a lower-case letter meets an
/// upper-case one (`cardCvc` is `card`, `cvc`). Each word is checked as it ends,
/// rather than collected first.
fn has_secret_word(name: &str) -> bool {
    let mut word = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        let boundary = !c.is_ascii_alphanumeric() || (previous_lower && c.is_ascii_uppercase());
        if boundary && SECRET_WORDS.contains(&word.as_str()) {
            return true;
        }
        if boundary {
            word.clear();
        }
        if c.is_ascii_alphanumeric() {
            word.push(c.to_ascii_lowercase());
        }
        previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
    }
    SECRET_WORDS.contains(&word.as_str())
}

/// A field's name as an attribute name: what the protocol allows (ASCII letters,
/// digits and `_`, at most 64 bytes), anything else becoming `_` (`user[email]` is
/// `user_email_`); `None` when nothing usable is left.
pub fn attribute_name(name: &str) -> Option<String> {
    // A loop rather than `map`, `take` and `collect`: less code (measured).
    let mut mapped = String::new();
    let mut usable = false;
    for c in name.chars().take(MAX_NAME_BYTES) {
        if c.is_ascii_alphanumeric() {
            mapped.push(c);
            usable = true;
        } else {
            mapped.push('_');
        }
    }
    usable.then_some(mapped)
}

/// `text` cut to at most [`MAX_VALUE_BYTES`] bytes, at a character boundary.
pub fn clip(text: &str) -> &str {
    let mut end = text.len().min(MAX_VALUE_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// How much of the page has been on screen, in percent: the bottom of the viewport
/// against the document's height. A page that fits its viewport is seen whole.
pub fn scroll_depth(scroll_top: f64, viewport_height: f64, document_height: f64) -> f64 {
    if document_height <= viewport_height || document_height <= 0.0 {
        return 100.0;
    }
    ((scroll_top.max(0.0) + viewport_height) / document_height * 100.0).min(100.0)
}

#[cfg(test)]
mod tests;
