//! What the plugins decide without a browser: the options a page may pass (read and
//! checked here, with the path of a bad value in the error), which form fields may leave the page, how a field's name
//! becomes an attribute name, and how deep a page is scrolled. Tested natively below;
//! `web` only reads the DOM into these shapes and acts on the answers.

use footpath_protocol::v1::{
    validate_attribute_name, validate_event_name, MAX_ATTRIBUTES, MAX_NAME_BYTES, MAX_VALUE_BYTES,
};

/// A value the page passed, read once from JavaScript (`web`), so that the options
/// are checked here, natively testable. Functions and other objects read as `Other`.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Undefined,
    Null,
    Bool(bool),
    Number(f64),
    Str(String),
    List(Vec<Val>),
    Object(Vec<(String, Val)>),
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

/// A rule that records `eventName` for elements matching `selector`
/// (`autotrackClick`'s `clickEvents`, `autotrackInViewport`'s `inViewportEvents`).
#[derive(Debug, Clone, PartialEq)]
pub struct ElementRule {
    pub selector: String,
    pub event_name: String,
    pub custom_attributes: Attributes,
}

/// `autotrackIdle`'s `idleEvents`.
#[derive(Debug, Clone, PartialEq)]
pub struct IdleRule {
    /// Seconds without interaction.
    pub idle_after: f64,
    pub event_name: String,
    pub custom_attributes: Attributes,
}

/// `autotrackScrollDepth`'s `scrollDepthEvents`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrollRule {
    /// How much of the page has been on screen, above 0 and at most 100.
    pub percentage: f64,
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

/// The entries of an options object; any key not in `known` is refused. `undefined`
/// and `null` read as `{}`, so that the error names what is missing.
fn object<'v>(value: &'v Val, at: &str, known: &[&str]) -> Result<&'v [(String, Val)]> {
    let entries: &[(String, Val)] = match value {
        Val::Object(entries) => entries,
        Val::Undefined | Val::Null => &[],
        _ => return Err(cat(&[at, ": must be an object"])),
    };
    for (key, _) in entries {
        if !known.contains(&key.as_str()) {
            let mut message = cat(&[at, ".", key, ": is not an option ("]);
            for (i, known) in known.iter().enumerate() {
                if i > 0 {
                    message.push_str(", ");
                }
                message.push_str(known);
            }
            message.push(')');
            return Err(message);
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

fn path(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_owned()
    } else {
        cat(&[at, ".", key])
    }
}

fn text(value: &Val, at: &str) -> Result<String> {
    match value {
        Val::Str(text) => Ok(text.clone()),
        Val::Undefined => Err(cat(&[at, ": is needed"])),
        _ => Err(cat(&[at, ": must be a string"])),
    }
}

fn number(value: &Val, at: &str) -> Result<f64> {
    match value {
        Val::Number(number) => Ok(*number),
        Val::Undefined => Err(cat(&[at, ": is needed"])),
        _ => Err(cat(&[at, ": must be a number"])),
    }
}

fn flag(value: &Val, at: &str, default: bool) -> Result<bool> {
    match value {
        Val::Bool(flag) => Ok(*flag),
        Val::Undefined => Ok(default),
        _ => Err(cat(&[at, ": must be true or false"])),
    }
}

fn event_name(value: &Val, at: &str) -> Result<String> {
    let at = path(at, "eventName");
    let name = text(value, &at)?;
    validate_event_name(&name).map_err(|e| cat(&[&at, ": ", e.reason()]))?;
    Ok(name)
}

fn scalar(value: &Val, at: &str) -> Result<Value> {
    match value {
        Val::Str(text) if text.len() > MAX_VALUE_BYTES => Err(cat(&[
            at,
            ": longer than ",
            &decimal(MAX_VALUE_BYTES),
            " bytes",
        ])),
        Val::Str(text) => Ok(Value::Text(text.clone())),
        Val::Number(number) => Ok(Value::Number(*number)),
        Val::Bool(flag) => Ok(Value::Flag(*flag)),
        _ => Err(cat(&[at, ": must be a string, number or boolean"])),
    }
}

/// `customAttributes`: names as the protocol allows them, values as `record` takes
/// them (a string, number, boolean or `{ dataType, value }`).
fn attributes(value: &Val, at: &str) -> Result<Attributes> {
    let at = path(at, "customAttributes");
    let entries = match value {
        Val::Undefined => return Ok(Vec::new()),
        Val::Object(entries) => entries,
        _ => return Err(cat(&[&at, ": must be an object"])),
    };
    if entries.len() > MAX_ATTRIBUTES {
        return Err(cat(&[&at, ": more than ", &decimal(MAX_ATTRIBUTES)]));
    }
    let mut attributes = Vec::new();
    for (key, value) in entries {
        let at = cat(&[&at, ".", key]);
        validate_attribute_name(key).map_err(|e| cat(&[&at, ": the name ", e.reason()]))?;
        let value = match value {
            Val::Object(_) => {
                let typed = object(value, &at, &["dataType", "value"])?;
                Value::Typed(
                    text(field(typed, "dataType"), &path(&at, "dataType"))?,
                    Box::new(scalar(field(typed, "value"), &path(&at, "value"))?),
                )
            }
            _ => scalar(value, &at).map_err(|_| {
                cat(&[
                    &at,
                    ": must be a string, number, boolean or { dataType, value }",
                ])
            })?,
        };
        attributes.push((key.clone(), value));
    }
    Ok(attributes)
}

/// The list of rules under `option`, each read by `each` (given its path).
fn rules<T>(
    options: &Val,
    option: &str,
    known: &[&str],
    each: impl Fn(&[(String, Val)], &str) -> Result<T>,
) -> Result<Vec<T>> {
    let entries = object(options, "options", &[option])?;
    let list = match field(entries, option) {
        Val::List(list) => list,
        Val::Undefined => return Err(cat(&[option, ": is needed"])),
        _ => return Err(cat(&[option, ": must be an array"])),
    };
    if list.is_empty() || list.len() > MAX_RULES {
        return Err(cat(&[
            option,
            ": needs 1 to ",
            &decimal(MAX_RULES),
            " rules",
        ]));
    }
    let mut rules = Vec::new();
    for (i, rule) in list.iter().enumerate() {
        let at = cat(&[option, "[", &decimal(i), "]"]);
        rules.push(each(object(rule, &at, known)?, &at)?);
    }
    Ok(rules)
}

const ELEMENT_RULE: [&str; 3] = ["selector", "eventName", "customAttributes"];

fn element_rule(rule: &[(String, Val)], at: &str) -> Result<ElementRule> {
    let selector = text(field(rule, "selector"), &path(at, "selector"))?;
    if blank(&selector) {
        return Err(cat(&[at, ".selector: must not be empty"]));
    }
    Ok(ElementRule {
        selector,
        event_name: event_name(field(rule, "eventName"), at)?,
        custom_attributes: attributes(field(rule, "customAttributes"), at)?,
    })
}

/// `autotrackClick`'s options.
pub fn click_options(options: &Val) -> Result<Vec<ElementRule>> {
    rules(options, "clickEvents", &ELEMENT_RULE, element_rule)
}

/// `autotrackInViewport`'s options.
pub fn in_viewport_options(options: &Val) -> Result<Vec<ElementRule>> {
    rules(options, "inViewportEvents", &ELEMENT_RULE, element_rule)
}

/// `autotrackIdle`'s options.
pub fn idle_options(options: &Val) -> Result<Vec<IdleRule>> {
    rules(
        options,
        "idleEvents",
        &["idleAfter", "eventName", "customAttributes"],
        |rule, at| {
            let idle_after = number(field(rule, "idleAfter"), &path(at, "idleAfter"))?;
            // `!(x > 0)` also refuses NaN.
            if !(idle_after > 0.0 && idle_after <= MAX_IDLE_SECONDS) {
                return Err(cat(&[
                    at,
                    ".idleAfter: must be above 0, at most 86400 seconds",
                ]));
            }
            Ok(IdleRule {
                idle_after,
                event_name: event_name(field(rule, "eventName"), at)?,
                custom_attributes: attributes(field(rule, "customAttributes"), at)?,
            })
        },
    )
}

/// `autotrackScrollDepth`'s options.
pub fn scroll_depth_options(options: &Val) -> Result<Vec<ScrollRule>> {
    rules(
        options,
        "scrollDepthEvents",
        &["percentage", "eventName", "customAttributes"],
        |rule, at| {
            let percentage = number(field(rule, "percentage"), &path(at, "percentage"))?;
            if !(percentage > 0.0 && percentage <= 100.0) {
                return Err(cat(&[at, ".percentage: must be above 0, at most 100"]));
            }
            Ok(ScrollRule {
                percentage,
                event_name: event_name(field(rule, "eventName"), at)?,
                custom_attributes: attributes(field(rule, "customAttributes"), at)?,
            })
        },
    )
}

/// `ac('forms:track', selector, options)`'s options.
pub fn form_options(options: &Val) -> Result<FormOptions> {
    let entries = object(
        options,
        "options",
        &[
            "formName",
            "captureFormDataOnSubmit",
            "captureFormDataOnAbandon",
            "customAttributes",
            "traitsMapper",
        ],
    )?;
    let form_name = text(field(entries, "formName"), "formName")?;
    if blank(&form_name) || form_name.len() > MAX_VALUE_BYTES {
        return Err("formName: must be a text of 1 to 1024 bytes".into());
    }
    let mut traits_mapper = Vec::new();
    match field(entries, "traitsMapper") {
        Val::Undefined => {}
        Val::List(list) if list.len() <= MAX_ATTRIBUTES => {
            for (i, rule) in list.iter().enumerate() {
                let at = cat(&["traitsMapper[", &decimal(i), "]"]);
                let rule = object(rule, &at, &["fieldName", "traitName"])?;
                let field_name = text(field(rule, "fieldName"), &path(&at, "fieldName"))?;
                let trait_at = path(&at, "traitName");
                let trait_name = text(field(rule, "traitName"), &trait_at)?;
                validate_attribute_name(&trait_name)
                    .map_err(|e| cat(&[&trait_at, ": ", e.reason()]))?;
                traits_mapper.push((field_name, trait_name));
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
        capture_form_data_on_submit: flag(
            field(entries, "captureFormDataOnSubmit"),
            "captureFormDataOnSubmit",
            true,
        )?,
        capture_form_data_on_abandon: flag(
            field(entries, "captureFormDataOnAbandon"),
            "captureFormDataOnAbandon",
            true,
        )?,
        custom_attributes: attributes(field(entries, "customAttributes"), "")?,
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
    for token in field.autocomplete.split_ascii_whitespace() {
        let token = token.to_ascii_lowercase();
        if token.starts_with("cc-") || SECRET_AUTOCOMPLETE.contains(&token.as_str()) {
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
    !words(field.name)
        .iter()
        .any(|word| SECRET_WORDS.contains(&word.as_str()))
}

/// The words of a name, lower-cased: split at anything not a letter or digit and
/// where a lower-case letter meets an upper-case one (`cardCvc` is `card`, `cvc`).
fn words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        let boundary = !c.is_ascii_alphanumeric() || (previous_lower && c.is_ascii_uppercase());
        if boundary && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        if c.is_ascii_alphanumeric() {
            word.push(c.to_ascii_lowercase());
        }
        previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
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
