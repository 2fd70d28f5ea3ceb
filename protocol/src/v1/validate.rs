//! Rules for names and sizes that the SDK checks before sending and the collector
//! checks again on arrival (it cannot trust that the sender is our SDK).

/// Longest event, attribute or trait name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Longest string value of an attribute or trait, in bytes.
pub const MAX_VALUE_BYTES: usize = 1024;
/// Most attributes (or traits) on one event.
pub const MAX_ATTRIBUTES: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    Empty,
    TooLong,
    /// A character other than ASCII letters, digits and `_`.
    BadCharacter,
}

impl NameError {
    /// A short English reason, for error messages on both sides.
    pub fn reason(self) -> &'static str {
        match self {
            NameError::Empty => "is empty",
            NameError::TooLong => "is longer than 64 bytes",
            NameError::BadCharacter => "may contain only letters, digits and _",
        }
    }
}

/// Event names: ASCII letters, digits and `_` only, as in `order_completed`.
pub fn validate_event_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong);
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(NameError::BadCharacter);
    }
    Ok(())
}

/// Attribute and trait names follow the event-name rule, so that segment criteria such
/// as `attributes.<name>.value` can name them unambiguously.
pub fn validate_attribute_name(name: &str) -> Result<(), NameError> {
    validate_event_name(name)
}
