//! Turning the page's `ac(...)` arguments into checked Rust values. Every refusal is a
//! sentence that names the offending argument.
//!
//! The arguments arrive as [`Val`]s: `web` reads them from what `host.js` flattened,
//! the native tests build them by hand.

use footpath_protocol::v1::{
    validate_attribute_name, validate_event_name, AttributeValue, Map, Number, MAX_ATTRIBUTES,
    MAX_VALUE_BYTES,
};

use super::{cat, Consent, Func, Host, Options, PageviewMode};

/// One argument as `host.js` flattened it (see `fpPut` there).
pub enum Val<H: Host> {
    Undefined,
    Null,
    Bool(bool),
    /// The value and JavaScript's own text for it (`String(n)`).
    Number(f64, String),
    Str(String),
    Func(Func<H>),
    /// An array of strings, each followed by `\x01` (as `fp_page` takes them), and
    /// their count; `host.js` gives other arrays as [`Val::Other`].
    List(String, u32),
    Object(Vec<(String, Val<H>)>),
    /// Symbols, bigints, functions inside objects, arrays of anything but strings,
    /// deeper nesting.
    Other,
}

/// The arguments of one command.
pub struct Args<H: Host>(Vec<Val<H>>);

impl<H: Host> Args<H> {
    pub fn new(list: Vec<Val<H>>) -> Args<H> {
        Args(list)
    }

    pub fn get(&self, i: usize) -> &Val<H> {
        self.0.get(i).unwrap_or(&Val::Undefined)
    }

    /// The last function among the arguments not taken yet: the callback of a
    /// command that was refused.
    pub fn callback(&mut self) -> Option<Func<H>> {
        self.0
            .iter_mut()
            .rev()
            .find(|value| matches!(value, Val::Func(_)))
            .and_then(|value| match std::mem::replace(value, Val::Undefined) {
                Val::Func(function) => Some(function),
                _ => None,
            })
    }

    pub fn take(&mut self, i: usize) -> Val<H> {
        match self.0.get_mut(i) {
            Some(value) => std::mem::replace(value, Val::Undefined),
            None => Val::Undefined,
        }
    }
}

type Result<T> = std::result::Result<T, String>;

/// The entries of a plain object (not an array, function or null); none for `undefined`.
fn entries<H: Host>(value: Val<H>, what: &str) -> Result<Vec<(String, Val<H>)>> {
    match value {
        Val::Undefined => Ok(Vec::new()),
        Val::Object(entries) => Ok(entries),
        _ => Err(cat(&[what, " must be an object"])),
    }
}

/// The options `ac('init')` knows, and what each must be.
const OPTIONS: [(&str, &str); 13] = [
    ("collectorUrl", "must be an http(s) URL"),
    ("cookieDomain", "must be a string"),
    ("cookieExpiryDays", "must be 1 to 3650"),
    ("sessionTimeoutMinutes", "must be above 0, at most 1440"),
    ("searchQueryParameters", "must be an array of strings"),
    ("excludedQueryParameters", "must be an array of strings"),
    ("keepUrlFragment", "must be true or false"),
    ("pageview", "must be 'auto', 'once' or 'off'"),
    ("consent", "must be 'pending', 'granted' or 'denied'"),
    ("honorGlobalPrivacyControl", "must be true or false"),
    ("honorDoNotTrack", "must be true or false"),
    // Accepted for compatibility with existing snippets; trait mapping from event
    // attributes is not implemented yet, so it has no effect.
    ("globalTraitsMapper", ""),
    // The Journey SDK's data-centre region: one collector serves here, named by the
    // script's URL or `collectorUrl`. Accepted so that its pages work unchanged.
    ("region", ""),
];

/// `ac('init')` options. Problems with single options do not stop the SDK: they are
/// returned as messages to report, and the option keeps its default.
#[inline]
pub fn options<H: Host>(
    deployment_id: String,
    default_collector: String,
    value: Val<H>,
) -> Result<(Options, Vec<String>)> {
    let mut options = Options::new(deployment_id, default_collector);
    let mut problems = Vec::new();
    for (key, value) in &entries(value, "options")? {
        let known = OPTIONS.iter().position(|(name, _)| name == key);
        let text = match value {
            Val::Str(text) => Some(text),
            _ => None,
        };
        let number = match value {
            Val::Number(number, _) => *number,
            _ => f64::NAN,
        };
        let accepted = match known {
            Some(0) => match text {
                Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
                    options.collector_url = url.clone();
                    true
                }
                _ => false,
            },
            Some(1) => text
                .map(|domain| options.cookie_domain = Some(domain.clone()))
                .is_some(),
            Some(2) => {
                let ok = (1.0..=3650.0).contains(&number);
                if ok {
                    options.cookie_expiry_days = number as u32;
                }
                ok
            }
            Some(3) => {
                let ok = number > 0.0 && number <= 1440.0;
                if ok {
                    options.session_timeout_ms = (number * 60_000.0) as i64;
                }
                ok
            }
            Some(4) => string_list(value)
                .map(|(list, count)| {
                    options.search_query_parameters = list;
                    options.searched = count;
                })
                .is_some(),
            Some(5) => string_list(value)
                .map(|(list, _)| options.excluded_query_parameters = list)
                .is_some(),
            Some(6 | 9 | 10) => match value {
                Val::Bool(flag) => {
                    let field = match known {
                        Some(6) => &mut options.keep_url_fragment,
                        Some(9) => &mut options.honor_global_privacy_control,
                        _ => &mut options.honor_do_not_track,
                    };
                    *field = *flag;
                    true
                }
                _ => false,
            },
            Some(7) => {
                let mode = text.map_or("", |mode| mode.as_str());
                if mode == "off" {
                    options.pageview = PageviewMode::Off;
                }
                mode == "auto" || mode == "once" || mode == "off"
            }
            Some(8) => text
                .and_then(|text| Consent::parse(text))
                .map(|consent| options.consent = consent)
                .is_some(),
            Some(_) => true,
            None => false,
        };
        if !accepted {
            let reason = known.map_or("is not an option", |i| OPTIONS[i].1);
            problems.push(cat(&["option '", key, "' ", reason]));
        }
    }
    Ok((options, problems))
}

/// An array of strings, as `fp_page` takes them, and their count.
fn string_list<H: Host>(value: &Val<H>) -> Option<(String, u32)> {
    match value {
        Val::List(list, count) => Some((list.clone(), *count)),
        _ => None,
    }
}

/// `ac('pageview' [, { location, title, customAttributes, traitsMapper }])`: the
/// location ('' for the current one), the title and the attributes.
#[inline]
pub fn pageview<H: Host>(value: Val<H>) -> Result<(String, Option<String>, Map<AttributeValue>)> {
    let mut location = String::new();
    let mut title = None;
    let mut attributes = Map::new();
    // In place, as in `attributes` (see there).
    for entry in &mut entries(value, "pageview options")? {
        let (key, value) = std::mem::replace(entry, (String::new(), Val::Undefined));
        match (key.as_str(), value) {
            ("location", Val::Str(text)) => location = text,
            ("title", Val::Str(text)) => title = Some(text),
            ("customAttributes", value) => {
                attributes = self::attributes(value, "customAttributes")?
            }
            ("traitsMapper", _) => {}
            ("location" | "title", _) => return Err(cat(&[&key, " must be a string"])),
            _ => return Err(cat(&["'", &key, "' is not a page view option"])),
        }
    }
    Ok((location, title, attributes))
}

/// `ac('record', eventName [, attributes] [, callback])`.
#[inline]
pub fn record<H: Host>(
    args: &mut Args<H>,
) -> Result<(String, Map<AttributeValue>, Option<Func<H>>)> {
    let Val::Str(name) = args.take(1) else {
        return Err("needs an event name".into());
    };
    if let Err(error) = validate_event_name(&name) {
        return Err(cat(&["event name '", &name, "' ", error.reason()]));
    }
    Ok(match args.take(2) {
        Val::Func(callback) => (name, Map::new(), Some(callback)),
        first => (
            name,
            attributes(first, "attributes")?,
            callback(args.take(3))?,
        ),
    })
}

/// Whether to log out, the login id, the traits and the callback of `ac('identify')`.
pub type Identify<H> = (bool, Option<String>, Map<AttributeValue>, Option<Func<H>>);

/// `ac('identify' [, loginId] [, traits] [, callback])`; `loginId === null` logs out.
/// Gives whether to log out, the login id, the traits and the callback.
#[inline]
pub fn identify<H: Host>(args: &mut Args<H>) -> Result<Identify<H>> {
    let mut logout = false;
    let mut login_id = None;
    let mut traits = Map::new();
    let mut next = 2;
    match args.get(1) {
        Val::Null => logout = true,
        Val::Str(id) if id.is_empty() || id.len() > MAX_VALUE_BYTES => {
            return Err("bad login id".into())
        }
        Val::Str(id) => login_id = Some(id.clone()),
        _ => next = 1,
    }
    match args.get(next) {
        Val::Func(_) => {}
        Val::Undefined => next += 1,
        _ if logout => return Err("log-out takes no traits".into()),
        _ => {
            traits = attributes(args.take(next), "traits")?;
            next += 1;
        }
    }
    // Checked before the callback is taken, so that a refusal still reaches it.
    if args
        .0
        .iter()
        .skip(next + 1)
        .any(|value| !matches!(value, Val::Undefined))
    {
        return Err("too many arguments".into());
    }
    Ok((logout, login_id, traits, callback(args.take(next))?))
}

fn callback<H: Host>(value: Val<H>) -> Result<Option<Func<H>>> {
    match value {
        Val::Undefined => Ok(None),
        Val::Func(function) => Ok(Some(function)),
        _ => Err("bad callback".into()),
    }
}

/// A flat object of strings, numbers and booleans (or `{ dataType, value }` pairs).
pub fn attributes<H: Host>(value: Val<H>, what: &str) -> Result<Map<AttributeValue>> {
    let mut map = Map::new();
    let mut entries = entries(value, what)?;
    if entries.len() > MAX_ATTRIBUTES {
        return Err(cat(&[what, " may have at most 50 entries"]));
    }
    // Taken out in place rather than by a consuming `for`: with `pageview`'s loop, that
    // spares the module a vector iterator of entries and its drop (11 B).
    for entry in &mut entries {
        let (name, raw) = std::mem::replace(entry, (String::new(), Val::Undefined));
        if let Err(error) = validate_attribute_name(&name) {
            return Err(cat(&[what, ": name '", &name, "' ", error.reason()]));
        }
        let value = match raw {
            // `{ dataType, value }`, the Journey API's own attribute shape.
            Val::Object(mut inner) => match inner.iter().position(|(key, _)| key == "value") {
                Some(at) => flat(inner.swap_remove(at).1),
                None => None,
            },
            raw => flat(raw),
        };
        let Some(value) = value else {
            return Err(cat(&[
                what,
                ".",
                &name,
                " must be a string, finite number or boolean",
            ]));
        };
        if let AttributeValue::String(text) = &value {
            if text.len() > MAX_VALUE_BYTES {
                return Err(cat(&[what, ".", &name, " is longer than 1024 bytes"]));
            }
        }
        map.insert(name, value);
    }
    Ok(map)
}

fn flat<H: Host>(value: Val<H>) -> Option<AttributeValue> {
    match value {
        Val::Str(text) => Some(AttributeValue::String(text)),
        Val::Bool(flag) => Some(AttributeValue::Bool(flag)),
        // JavaScript's own formatting gives the JSON text of a finite number.
        Val::Number(value, text) => Number::from_js(value, text).map(AttributeValue::Number),
        _ => None,
    }
}
