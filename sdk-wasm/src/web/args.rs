//! Turning the page's `ac(...)` arguments into checked Rust values. Every refusal is a
//! sentence that names the offending argument.



use footpath_protocol::v1::{
    validate_attribute_name, validate_event_name, AttributeValue, Map, Number, MAX_ATTRIBUTES,
    MAX_VALUE_BYTES,
};
use js_sys::{Array, Function, Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};

use crate::core::{Options, PageviewMode};

pub struct PageviewRequest {
    pub location: Option<String>,
    pub title: Option<String>,
    pub attributes: Map<AttributeValue>,
}

pub struct RecordRequest {
    pub name: String,
    pub attributes: Map<AttributeValue>,
    pub callback: Option<Function>,
}

pub struct IdentifyRequest {
    pub logout: bool,
    pub login_id: Option<String>,
    pub traits: Map<AttributeValue>,
    pub callback: Option<Function>,
}

type Result<T> = std::result::Result<T, String>;

fn join(parts: &[&str]) -> String {
    parts.concat()
}

/// A plain object (not an array, function or null), or `None` for `undefined`.
fn plain_object(value: &JsValue, what: &str) -> Result<Option<Object>> {
    if value.is_undefined() {
        return Ok(None);
    }
    if value.is_object() && !Array::is_array(value) && !value.is_function() {
        return Ok(Some(value.clone().unchecked_into()));
    }
    Err(join(&[what, " must be an object"]))
}

fn keys(object: &Object) -> Vec<String> {
    Object::keys(object).iter().filter_map(|k| k.as_string()).collect()
}

/// `ac('init')` options. Problems with single options do not stop the SDK: they are
/// returned as messages to report, and the option keeps its default.
pub fn options(deployment_id: String, default_collector: String, value: &JsValue) -> Result<(Options, Vec<String>)> {
    let mut options = Options::new(deployment_id, default_collector);
    let mut problems = Vec::new();
    let Some(object) = plain_object(value, "options")? else {
        return Ok((options, problems));
    };
    for key in keys(&object) {
        let value = Reflect::get(&object, &JsValue::from_str(&key)).unwrap_or(JsValue::UNDEFINED);
        let outcome: Result<()> = match key.as_str() {
            "collectorUrl" => value
                .as_string()
                .filter(|url| url.starts_with("https://") || url.starts_with("http://"))
                .map(|url| options.collector_url = url)
                .ok_or_else(|| "must be an http(s) URL".to_owned()),
            "cookieDomain" => value
                .as_string()
                .map(|domain| options.cookie_domain = Some(domain))
                .ok_or_else(|| "must be a string".to_owned()),
            "cookieExpiryDays" => value
                .as_f64()
                .filter(|days| *days >= 1.0 && *days <= 3650.0)
                .map(|days| options.cookie_expiry_days = days as u32)
                .ok_or_else(|| "must be a number of days from 1 to 3650".to_owned()),
            "sessionTimeoutMinutes" => value
                .as_f64()
                .filter(|minutes| *minutes > 0.0 && *minutes <= 1440.0)
                .map(|minutes| options.session_timeout_ms = (minutes * 60_000.0) as i64)
                .ok_or_else(|| "must be a number of minutes above 0 and at most 1440".to_owned()),
            "searchQueryParameters" => string_list(&value).map(|list| options.search_query_parameters = list),
            "excludedQueryParameters" => string_list(&value).map(|list| options.excluded_query_parameters = list),
            "keepUrlFragment" => value
                .as_bool()
                .map(|keep| options.keep_url_fragment = keep)
                .ok_or_else(|| "must be true or false".to_owned()),
            "pageview" => match value.as_string().as_deref() {
                Some("auto" | "once") => Ok(options.pageview = PageviewMode::Auto),
                Some("off") => Ok(options.pageview = PageviewMode::Off),
                _ => Err("must be 'auto', 'once' or 'off'".to_owned()),
            },
            // Accepted for compatibility with existing snippets; trait mapping from
            // event attributes is not implemented yet, so it has no effect.
            "globalTraitsMapper" => Ok(()),
            _ => Err("is not an option".to_owned()),
        };
        if let Err(reason) = outcome {
            problems.push(join(&["option '", &key, "' ", &reason]));
        }
    }
    Ok((options, problems))
}

fn string_list(value: &JsValue) -> Result<Vec<String>> {
    if !Array::is_array(value) {
        return Err("must be an array of strings".into());
    }
    let array: &Array = value.unchecked_ref();
    array.iter().map(|item| item.as_string().ok_or_else(|| "must be an array of strings".to_owned())).collect()
}

/// `ac('pageview' [, { location, title, customAttributes, traitsMapper }])`.
pub fn pageview(value: &JsValue) -> Result<PageviewRequest> {
    let mut request = PageviewRequest { location: None, title: None, attributes: Map::new() };
    let Some(object) = plain_object(value, "the page view options")? else {
        return Ok(request);
    };
    for key in keys(&object) {
        let value = Reflect::get(&object, &JsValue::from_str(&key)).unwrap_or(JsValue::UNDEFINED);
        match key.as_str() {
            "location" => request.location = Some(value.as_string().ok_or("location must be a string")?),
            "title" => request.title = Some(value.as_string().ok_or("title must be a string")?),
            "customAttributes" => request.attributes = attributes(&value, "customAttributes")?,
            "traitsMapper" => {}
            _ => return Err(join(&["'", &key, "' is not a page view option"])),
        }
    }
    Ok(request)
}

/// `ac('record', eventName [, attributes] [, callback])`.
pub fn record(arguments: &Array) -> Result<RecordRequest> {
    let name = arguments.get(1).as_string().ok_or("the event name (second argument) must be a string")?;
    if let Err(error) = validate_event_name(&name) {
        return Err(join(&["event name '", &name, "' ", error.reason()]));
    }
    let (attributes, callback) = match (arguments.get(2), arguments.get(3)) {
        (first, _) if first.is_function() => (Map::new(), Some(first.unchecked_into())),
        (first, second) => (attributes(&first, "attributes")?, callback(&second)?),
    };
    Ok(RecordRequest { name, attributes, callback })
}

/// `ac('identify' [, loginId] [, traits] [, callback])`; `loginId === null` logs out.
pub fn identify(arguments: &Array) -> Result<IdentifyRequest> {
    let mut request =
        IdentifyRequest { logout: false, login_id: None, traits: Map::new(), callback: None };
    let mut rest = arguments.iter().skip(1).peekable();
    match rest.peek() {
        Some(first) if first.is_null() => {
            request.logout = true;
            rest.next();
        }
        Some(first) if first.is_string() => {
            let login_id = first.as_string().unwrap_or_default();
            if login_id.is_empty() || login_id.len() > MAX_VALUE_BYTES {
                return Err("the login id must be a non-empty string of at most 1024 bytes".into());
            }
            request.login_id = Some(login_id);
            rest.next();
        }
        _ => {}
    }
    if let Some(next) = rest.peek() {
        if !next.is_function() && !next.is_undefined() {
            if request.logout {
                return Err("log-out takes no traits: call ac('identify', null)".into());
            }
            request.traits = attributes(next, "traits")?;
        }
        if !next.is_function() {
            rest.next();
        }
    }
    request.callback = callback(&rest.next().unwrap_or(JsValue::UNDEFINED))?;
    if rest.any(|extra| !extra.is_undefined()) {
        return Err("takes at most a login id, traits and a callback".into());
    }
    Ok(request)
}

fn callback(value: &JsValue) -> Result<Option<Function>> {
    if value.is_undefined() {
        Ok(None)
    } else if value.is_function() {
        Ok(Some(value.clone().unchecked_into()))
    } else {
        Err("the callback must be a function".into())
    }
}

/// A flat object of strings, numbers and booleans (or `{ dataType, value }` pairs).
pub fn attributes(value: &JsValue, what: &str) -> Result<Map<AttributeValue>> {
    let mut map = Map::new();
    let Some(object) = plain_object(value, what)? else {
        return Ok(map);
    };
    let names = keys(&object);
    if names.len() > MAX_ATTRIBUTES {
        return Err(join(&[what, " may have at most 50 entries"]));
    }
    for name in names {
        if let Err(error) = validate_attribute_name(&name) {
            return Err(join(&[what, ": name '", &name, "' ", error.reason()]));
        }
        let raw = Reflect::get(&object, &JsValue::from_str(&name)).unwrap_or(JsValue::UNDEFINED);
        let value = flat_value(&raw)
            .or_else(|| {
                // `{ dataType, value }`, the Journey API's own attribute shape.
                let inner = plain_object(&raw, "").ok().flatten()?;
                flat_value(&Reflect::get(&inner, &"value".into()).ok()?)
            })
            .ok_or_else(|| join(&[what, ".", &name, " must be a string, a finite number or a boolean"]))?;
        if let AttributeValue::String(text) = &value {
            if text.len() > MAX_VALUE_BYTES {
                return Err(join(&[what, ".", &name, " is longer than 1024 bytes"]));
            }
        }
        map.insert(name, value);
    }
    Ok(map)
}

fn flat_value(value: &JsValue) -> Option<AttributeValue> {
    if let Some(text) = value.as_string() {
        return Some(AttributeValue::String(text));
    }
    if let Some(flag) = value.as_bool() {
        return Some(AttributeValue::Bool(flag));
    }
    let number = value.as_f64()?;
    // JavaScript's own formatting gives the JSON text of a finite number.
    let text: String = js_sys::Number::from(number).to_string_with_radix(10).ok()?.into();
    Number::parse(&text).map(AttributeValue::Number)
}
