//! The desk's settings: the `[desk]` section of the configuration file, and the part of
//! it that the admin API can replace at runtime (the [`Presentation`]).
//!
//! ```toml
//! [desk]
//! title = "Web Visit"                 # the title of every session card
//! agent_tokens = ["at-least-32-random-characters-each"]  # desk-only sign-in tokens (secret)
//! sign_in_minutes = 480                # how long an agent stays signed in
//! secure_cookie = false                # true when the desk is served over HTTPS
//! sign_in_attempts_per_minute = 10     # per client address; 0: no limit
//! public_origin = "https://desk.example"  # optional: the desk's origin as browsers see it
//!
//! [[desk.events]]
//! name = "cart_added"                  # the event name the site records
//! display_name = "Added to cart"       # what agents read instead
//! icon = "cart"                        # one of BUILT_IN_ICONS
//!
//! [[desk.events.attributes]]
//! name = "sku"
//! label = "Product code"
//! order = 1                            # lower first; unconfigured attributes last
//!
//! [[desk.events.attributes]]
//! name = "price"
//! hidden = true                        # never sent to agents' browsers
//! ```

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

/// The default title of session cards, as in the reference product.
pub const DEFAULT_TITLE: &str = "Web Visit";
/// Longest title, display name or label, in characters.
const MAX_TEXT_CHARS: usize = 100;
/// The icons that `desk.js` draws (its `ICONS` table; a unit test keeps the two in
/// step). A configured icon must be one of them: anything else would reach agents'
/// browsers as text chosen by whoever holds an API token.
pub const BUILT_IN_ICONS: &[&str] = &[
    "web", "start", "end", "page", "search", "custom", "form", "identify", "logout", "segment",
    "outcome", "cart", "order", "star", "video", "alert", "check",
];

/// `[desk]`: every field is optional.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeskConfig {
    /// The title shown on every web session card.
    pub title: String,
    /// Tokens that let agents sign in to the desk and nothing else. The read API's
    /// `api_tokens` sign in too. At least 32 characters each
    /// ([`crate::config::MIN_TOKEN_CHARS`]). Removing a token ends, at the next
    /// start, every desk session that was signed in with it. Secret: never printed.
    pub agent_tokens: Vec<String>,
    /// How long a desk sign-in lasts; the agent signs in again afterwards.
    pub sign_in_minutes: u64,
    /// Adds `Secure` to the desk's session cookie: set it when the desk is reached
    /// over HTTPS (browsers drop a `Secure` cookie sent over plain HTTP).
    pub secure_cookie: bool,
    /// Sign-in attempts (`POST /desk/signin`, right token or wrong) one client address
    /// (after `trusted_proxies`) may make per minute; a minute's allowance may come at
    /// once, then it refills evenly. More are answered 429 with `Retry-After`, even
    /// with a valid token. Agents behind one NAT address share it. The same number, as
    /// an allowance of its own, bounds the desk session cookies per address that name
    /// no stored sign-in; past it, such an address's cookies that the sign-in cache
    /// does not hold are taken as none, without a store read. 0: no limit (both).
    pub sign_in_attempts_per_minute: u32,
    /// The desk's origin as agents' browsers see it (`https://desk.example`, no path),
    /// for the cross-site check of sign-in and sign-out: a request's `Origin` header
    /// must equal it. Unset: the origin is rebuilt from the request, `Host` (or, from a
    /// trusted proxy, `X-Forwarded-Host`) with `http` (or, from a trusted proxy,
    /// `X-Forwarded-Proto`). Set it when a proxy rewrites the host and is not trusted.
    pub public_origin: Option<String>,
    /// How events and their attributes are shown to agents.
    pub events: Vec<EventDisplay>,
}

impl Default for DeskConfig {
    fn default() -> DeskConfig {
        DeskConfig {
            title: DEFAULT_TITLE.to_owned(),
            agent_tokens: Vec::new(),
            sign_in_minutes: 8 * 60,
            secure_cookie: false,
            sign_in_attempts_per_minute: 10,
            public_origin: None,
            events: Vec::new(),
        }
    }
}

impl std::fmt::Debug for DeskConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeskConfig")
            .field("title", &self.title)
            .field(
                "agent_tokens",
                &format_args!("[{} hidden]", self.agent_tokens.len()),
            )
            .field("sign_in_minutes", &self.sign_in_minutes)
            .field("secure_cookie", &self.secure_cookie)
            .field(
                "sign_in_attempts_per_minute",
                &self.sign_in_attempts_per_minute,
            )
            .field("public_origin", &self.public_origin)
            .field("events", &self.events)
            .finish()
    }
}

impl DeskConfig {
    /// Checks what serde cannot; the message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        if self.sign_in_minutes == 0 {
            return Err("desk.sign_in_minutes must be at least 1".to_owned());
        }
        crate::config::check_token_lengths("desk.agent_tokens", &self.agent_tokens)?;
        if let Some(origin) = &self.public_origin {
            public_origin(origin)?;
        }
        self.presentation()
            .validate()
            .map_err(|message| format!("desk.{message}"))
    }

    /// The part of the settings that the admin API shows and replaces.
    pub fn presentation(&self) -> Presentation {
        Presentation {
            title: self.title.clone(),
            events: self.events.clone(),
        }
    }
}

/// How sessions and events look to agents: the card title and, per event name, a
/// display name, an icon and the treatment of each attribute. This is the body of
/// `GET`/`PUT /api/v2/footpath/desk/config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Presentation {
    pub title: String,
    #[serde(default)]
    pub events: Vec<EventDisplay>,
}

/// `[[desk.events]]`: how events of one name are shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventDisplay {
    /// The event name, as recorded (`cart_added`, `page_viewed`).
    pub name: String,
    /// What agents read instead of the name. Unset: the name itself.
    #[serde(
        default,
        alias = "display_name",
        skip_serializing_if = "Option::is_none"
    )]
    pub display_name: Option<String>,
    /// One of the built-in icons, [`BUILT_IN_ICONS`] (`cart`, `order`, `star`,
    /// `video`, `alert`, `page`, `search`, `form`, `identify`, ...). Unset: the icon
    /// of the event's kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    #[serde(default)]
    pub attributes: Vec<AttributeDisplay>,
}

/// `[[desk.events.attributes]]`: how one attribute (or trait) of the event is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AttributeDisplay {
    pub name: String,
    /// What agents read instead of the name. Unset: the name itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Position in the tooltip, lower first. Configured attributes come before
    /// unconfigured ones, which follow by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<i64>,
    /// A hidden attribute is removed on the server: it never reaches an agent.
    #[serde(default)]
    pub hidden: bool,
}

impl Presentation {
    pub fn validate(&self) -> Result<(), String> {
        check_text("title", &self.title, MAX_TEXT_CHARS)?;
        let mut names = HashSet::new();
        for (index, event) in self.events.iter().enumerate() {
            let field = format!("events[{index}]");
            check_text(&format!("{field}.name"), &event.name, MAX_TEXT_CHARS)?;
            if !names.insert(event.name.as_str()) {
                return Err(format!(
                    "{field}.name: {:?} is configured twice",
                    event.name
                ));
            }
            if let Some(display_name) = &event.display_name {
                check_text(
                    &format!("{field}.displayName"),
                    display_name,
                    MAX_TEXT_CHARS,
                )?;
            }
            if let Some(icon) = &event.icon {
                if !BUILT_IN_ICONS.contains(&icon.as_str()) {
                    return Err(format!(
                        "{field}.icon: {:?} is not a built-in icon; use one of {}",
                        icon.chars().take(MAX_TEXT_CHARS).collect::<String>(),
                        BUILT_IN_ICONS.join(", ")
                    ));
                }
            }
            let mut attribute_names = HashSet::new();
            for (position, attribute) in event.attributes.iter().enumerate() {
                let field = format!("{field}.attributes[{position}]");
                check_text(&format!("{field}.name"), &attribute.name, MAX_TEXT_CHARS)?;
                if !attribute_names.insert(attribute.name.as_str()) {
                    return Err(format!(
                        "{field}.name: {:?} is configured twice",
                        attribute.name
                    ));
                }
                if let Some(label) = &attribute.label {
                    check_text(&format!("{field}.label"), label, MAX_TEXT_CHARS)?;
                }
            }
        }
        Ok(())
    }

    pub fn event(&self, name: &str) -> Option<&EventDisplay> {
        self.events.iter().find(|event| event.name == name)
    }
}

/// The origin that `public_origin` names: `http` or `https`, a host, and no path,
/// query or credentials.
pub fn public_origin(text: &str) -> Result<url::Origin, String> {
    let invalid = || {
        format!("desk.public_origin: {text:?} is not an origin such as \"https://desk.example\"")
    };
    let url = url::Url::parse(text).map_err(|_| invalid())?;
    let bare = url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() || !bare {
        return Err(invalid());
    }
    Ok(url.origin())
}

fn check_text(field: &str, text: &str, max_chars: usize) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err(format!("{field}: must not be empty"));
    }
    if text.chars().count() > max_chars {
        return Err(format!("{field}: must be at most {max_chars} characters"));
    }
    if text.chars().any(char::is_control) {
        return Err(format!("{field}: must not contain control characters"));
    }
    Ok(())
}

/// What the desk shows at startup, from the file's `[desk]` presentation and the one
/// saved through `PUT /api/v2/footpath/desk/config` (with the file's presentation at
/// the time it was saved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPresentation {
    /// Nothing saved: the file's.
    File,
    /// The saved one: the file is as it was when it was saved, so the later change is
    /// the API's.
    Saved(Presentation),
    /// The file was edited after the API's change: the later change is the file's,
    /// and the saved one is to be forgotten.
    FileEditedSinceSaved,
    /// The saved text cannot be used any more (written by another version, or
    /// damaged): the file's, and the saved one is to be forgotten. The reason, for the
    /// log.
    SavedUnusable(String),
}

/// The rule: the most recent change wins, the file's or the API's.
pub fn startup_presentation(
    file: &Presentation,
    saved: Option<&crate::store::SavedPresentation>,
) -> StartupPresentation {
    let Some(saved) = saved else {
        return StartupPresentation::File;
    };
    match serde_json::from_str::<Presentation>(&saved.file_presentation_json) {
        Ok(file_then) if &file_then == file => {}
        // A file presentation that no longer parses was written by another version:
        // whatever it said, the file is not provably unchanged.
        _ => return StartupPresentation::FileEditedSinceSaved,
    }
    match serde_json::from_str::<Presentation>(&saved.presentation_json) {
        Ok(presentation) => match presentation.validate() {
            Ok(()) => StartupPresentation::Saved(presentation),
            Err(message) => StartupPresentation::SavedUnusable(message),
        },
        Err(error) => StartupPresentation::SavedUnusable(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> DeskConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults_and_file_syntax() {
        let defaults = parse("");
        assert_eq!(defaults.title, "Web Visit");
        assert_eq!(defaults.sign_in_minutes, 480);
        assert!(defaults.validate().is_ok());
        assert_eq!(defaults.sign_in_attempts_per_minute, 10);

        let config = parse(
            r#"
            title = "Shop visit"
            agent_tokens = ["0123456789abcdef0123456789abcdef-agent"]
            [[events]]
            name = "cart_added"
            display_name = "Added to cart"
            icon = "cart"
            [[events.attributes]]
            name = "sku"
            label = "Product code"
            order = 1
            [[events.attributes]]
            name = "price"
            hidden = true
            "#,
        );
        assert!(config.validate().is_ok());
        let cart = config.presentation().event("cart_added").cloned().unwrap();
        assert_eq!(cart.display_name.as_deref(), Some("Added to cart"));
        assert_eq!(cart.attributes[0].label.as_deref(), Some("Product code"));
        assert!(cart.attributes[1].hidden);
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("0123456789abcdef0123456789abcdef-agent"),
            "{debug}"
        );
    }

    #[test]
    fn invalid_settings_are_named() {
        let check = |text: &str, expected: &str| {
            assert_eq!(parse(text).validate().unwrap_err(), expected, "{text}");
        };
        check(
            "sign_in_minutes = 0",
            "desk.sign_in_minutes must be at least 1",
        );
        check(
            "agent_tokens = [\"0123456789abcdef-agent\"]",
            "desk.agent_tokens: token 1 of 1 is shorter than 32 characters; every token needs at least 32 (for example the output of `openssl rand -hex 16`)",
        );
        check(
            "[[events]]\nname = \"a\"\nicon = \"rocket\"\n",
            "desk.events[0].icon: \"rocket\" is not a built-in icon; use one of web, start, end, page, search, custom, form, identify, logout, segment, outcome, cart, order, star, video, alert, check",
        );
        for origin in [
            "desk.example",
            "https://desk.example/desk",
            "javascript:alert(1)",
            "https://agent@desk.example",
        ] {
            let text = format!("public_origin = \"{origin}\"");
            assert!(
                parse(&text)
                    .validate()
                    .unwrap_err()
                    .starts_with("desk.public_origin: "),
                "{origin}"
            );
        }
        assert!(parse("public_origin = \"https://desk.example:8443\"")
            .validate()
            .is_ok());
        check("title = \" \"", "desk.title: must not be empty");
        check(
            "[[events]]\nname = \"a\"\n[[events]]\nname = \"a\"\n",
            "desk.events[1].name: \"a\" is configured twice",
        );
        check(
            "[[events]]\nname = \"a\"\n[[events.attributes]]\nname = \"x\"\n[[events.attributes]]\nname = \"x\"\n",
            "desk.events[0].attributes[1].name: \"x\" is configured twice",
        );
    }

    #[test]
    fn built_in_icons_are_the_ones_desk_js_draws() {
        let script = include_str!("../../desk/desk.js");
        let table = &script[script.find("var ICONS = {").unwrap()..];
        let table = &table[..table.find("};").unwrap()];
        let drawn: Vec<&str> = table
            .lines()
            .skip(1)
            .filter_map(|line| line.trim().split_once(": ["))
            .map(|(name, _)| name)
            .collect();
        assert_eq!(drawn, BUILT_IN_ICONS);
    }

    #[test]
    fn the_most_recent_change_wins_at_startup() {
        use crate::store::SavedPresentation;
        let file = Presentation {
            title: "From the file".to_owned(),
            events: Vec::new(),
        };
        let api = Presentation {
            title: "From the API".to_owned(),
            events: Vec::new(),
        };
        let edited_file = Presentation {
            title: "Edited file".to_owned(),
            events: Vec::new(),
        };
        let json = |presentation: &Presentation| serde_json::to_string(presentation).unwrap();
        let saved = |presentation: String, file_then: String| SavedPresentation {
            presentation_json: presentation,
            file_presentation_json: file_then,
            saved_ms: 1,
        };
        let invalid = Presentation {
            title: String::new(),
            events: Vec::new(),
        };
        let cases = [
            (None, StartupPresentation::File),
            (
                Some(saved(json(&api), json(&file))),
                StartupPresentation::Saved(api.clone()),
            ),
            // The file was edited after the API's change.
            (
                Some(saved(json(&api), json(&edited_file))),
                StartupPresentation::FileEditedSinceSaved,
            ),
            // Formatting of the stored text does not matter, only its meaning.
            (
                Some(saved(
                    json(&api),
                    "{ \"events\": [], \"title\": \"From the file\" }".to_owned(),
                )),
                StartupPresentation::Saved(api.clone()),
            ),
            (
                Some(saved(json(&api), "not json".to_owned())),
                StartupPresentation::FileEditedSinceSaved,
            ),
            (
                Some(saved("{\"title\": 3}".to_owned(), json(&file))),
                StartupPresentation::SavedUnusable(
                    "invalid type: integer `3`, expected a string at line 1 column 11".to_owned(),
                ),
            ),
            (
                Some(saved(json(&invalid), json(&file))),
                StartupPresentation::SavedUnusable(invalid.validate().unwrap_err()),
            ),
        ];
        for (saved, expected) in cases {
            assert_eq!(
                startup_presentation(&file, saved.as_ref()),
                expected,
                "{saved:?}"
            );
        }
    }
}
