//! The desk's settings: the `[desk]` section of the configuration file, and the part of
//! it that the admin API can replace at runtime (the [`Presentation`]).
//!
//! ```toml
//! [desk]
//! title = "Web Visit"                 # the title of every session card
//! agent_tokens = ["a-long-random-token"]  # desk-only sign-in tokens (secret)
//! sign_in_minutes = 480                # how long an agent stays signed in
//! secure_cookie = false                # true when the desk is served over HTTPS
//!
//! [[desk.events]]
//! name = "cart_added"                  # the event name the site records
//! display_name = "Added to cart"       # what agents read instead
//! icon = "cart"                        # a built-in icon name, or one Unicode symbol
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
/// Longest icon value: a built-in name or a short Unicode symbol.
const MAX_ICON_CHARS: usize = 32;

/// `[desk]`: every field is optional.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeskConfig {
    /// The title shown on every web session card.
    pub title: String,
    /// Tokens that let agents sign in to the desk and nothing else. The read API's
    /// `api_tokens` sign in too. Secret: never printed.
    pub agent_tokens: Vec<String>,
    /// How long a desk sign-in lasts; the agent signs in again afterwards.
    pub sign_in_minutes: u64,
    /// Adds `Secure` to the desk's session cookie: set it when the desk is reached
    /// over HTTPS (browsers drop a `Secure` cookie sent over plain HTTP).
    pub secure_cookie: bool,
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
        if self.agent_tokens.iter().any(|token| token.len() < 16) {
            return Err("desk.agent_tokens: every token needs at least 16 characters".to_owned());
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
    /// A built-in icon name (see `desk.js`: `cart`, `order`, `star`, `video`,
    /// `alert`, `page`, `search`, `form`, `identify`, ...) or a short Unicode symbol.
    /// Unset: the icon of the event's kind.
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
                check_text(&format!("{field}.icon"), icon, MAX_ICON_CHARS)?;
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

        let config = parse(
            r#"
            title = "Shop visit"
            agent_tokens = ["0123456789abcdef-agent"]
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
        assert!(!debug.contains("0123456789abcdef-agent"), "{debug}");
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
            "agent_tokens = [\"short\"]",
            "desk.agent_tokens: every token needs at least 16 characters",
        );
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
}
