//! External contacts: the customer records that identity resolution links web sessions
//! to, their domain types (emails, phone numbers), the parsing of the API's request
//! bodies and the API's JSON shapes (`ExternalContact`, `ContactListing`).
//!
//! Parse, don't validate: an [`EmailAddress`] or a [`PhoneNumber`] exists only once its
//! text was checked, so the store and the identity rules never see a raw string.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::StoredContact;
use crate::timefmt::format_ms;

/// The `type` of every contact created through the API.
pub const CURATED: &str = "Curated";

/// An email address, checked loosely: one `@` with something on both sides and no
/// whitespace. Mail servers accept far more shapes than any stricter rule would allow,
/// and a wrong address costs only a failed match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(text: &str) -> Option<EmailAddress> {
        let text = text.trim();
        let (local, domain) = text.split_once('@')?;
        let well_formed = !local.is_empty()
            && !domain.is_empty()
            && !domain.contains('@')
            && !text.chars().any(char::is_whitespace);
        well_formed.then(|| EmailAddress(text.to_owned()))
    }

    /// The address as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form in which addresses are compared and kept as identifiers.
    ///
    /// Only ASCII letters are folded. Unicode case folding would let a visitor spoof an
    /// address: the Kelvin sign `\u{212A}` lowercases to `k`, so `\u{212A}im@example.com`
    /// would match `kim@example.com`. Non-ASCII characters therefore match only
    /// themselves.
    pub fn normalized(&self) -> String {
        email_identifier(&self.0)
    }
}

/// The form in which an address is kept as a contact's `Email` identifier and looked
/// up: ASCII letters lowercased, nothing else changed (see [`EmailAddress::normalized`]).
/// Identifiers and look-ups must share it, or a claim could match what it is not.
pub fn email_identifier(address: &str) -> String {
    address.to_ascii_lowercase()
}

/// Whether two stored addresses are the same for matching purposes (see
/// [`EmailAddress::normalized`]: ASCII letters fold, nothing else does).
pub fn same_email(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// A phone number normalised to E.164 (`+442079460018`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhoneNumber {
    pub e164: String,
    /// The international format, such as `+44 20 7946 0018`.
    pub display: String,
    /// The ISO 3166 region of the number (`GB`), when the numbering plan tells it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_code: Option<String>,
    /// The text the number was parsed from, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_input: Option<String>,
}

impl PhoneNumber {
    /// Parses a number written any usual way. A number with a leading `+` carries its
    /// country code; any other needs `default_region` (an ISO 3166 code such as `GB`),
    /// and without one it is refused, because guessing the country would link
    /// customers to the wrong people. The number must be valid for its numbering plan.
    pub fn parse(text: &str, default_region: Option<&str>) -> Option<PhoneNumber> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return None;
        }
        let region = if trimmed.starts_with('+') {
            None
        } else {
            Some(default_region?.parse::<phonenumber::country::Id>().ok()?)
        };
        let number = phonenumber::parse(region, trimmed).ok()?;
        if !phonenumber::is_valid(&number) {
            return None;
        }
        let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
        let display = number
            .format()
            .mode(phonenumber::Mode::International)
            .to_string();
        let country_code = number
            .country()
            .id()
            .map(|id| AsRef::<str>::as_ref(&id).to_owned());
        Some(PhoneNumber {
            e164,
            display,
            country_code,
            user_input: Some(text.to_owned()),
        })
    }

    /// Accepts only strict E.164 text: `+` and digits, nothing else, valid for its
    /// numbering plan. This is the bar for a phone number collected on a website to
    /// identify a visitor: a national number could belong to anyone in any country.
    pub fn parse_e164(text: &str) -> Option<PhoneNumber> {
        let digits = text.strip_prefix('+')?;
        if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        PhoneNumber::parse(text, None).filter(|number| number.e164 == text)
    }
}

/// The writable fields of a contact: what POST and PUT set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactFields {
    pub first_name: Option<String>,
    pub middle_name: Option<String>,
    pub last_name: Option<String>,
    pub salutation: Option<String>,
    pub title: Option<String>,
    pub work_email: Option<String>,
    pub personal_email: Option<String>,
    pub other_email: Option<String>,
    pub work_phone: Option<PhoneNumber>,
    pub cell_phone: Option<PhoneNumber>,
    pub home_phone: Option<PhoneNumber>,
    pub other_phone: Option<PhoneNumber>,
}

impl ContactFields {
    /// The contact's emails, in field order.
    pub fn emails(&self) -> impl Iterator<Item = &str> {
        [&self.work_email, &self.personal_email, &self.other_email]
            .into_iter()
            .filter_map(|email| email.as_deref())
    }

    /// The contact's phone numbers, in field order.
    pub fn phones(&self) -> impl Iterator<Item = &PhoneNumber> {
        [
            &self.work_phone,
            &self.cell_phone,
            &self.home_phone,
            &self.other_phone,
        ]
        .into_iter()
        .filter_map(Option::as_ref)
    }

    /// Parses a POST or PUT body. Unknown fields (and the server-maintained `id`,
    /// `type`, `identifiers`, `createDate`, `modifyDate`) are ignored; `null` and empty
    /// strings count as absent. The error names the offending field.
    pub fn from_json(body: &Value, default_region: Option<&str>) -> Result<ContactFields, String> {
        let Value::Object(object) = body else {
            return Err("body: must be a JSON object".to_owned());
        };
        let phone = |name: &str| read_phone(object, name, default_region);
        Ok(ContactFields {
            first_name: read_text(object, "firstName")?,
            middle_name: read_text(object, "middleName")?,
            last_name: read_text(object, "lastName")?,
            salutation: read_text(object, "salutation")?,
            title: read_text(object, "title")?,
            work_email: read_email(object, "workEmail")?,
            personal_email: read_email(object, "personalEmail")?,
            other_email: read_email(object, "otherEmail")?,
            work_phone: phone("workPhone")?,
            cell_phone: phone("cellPhone")?,
            home_phone: phone("homePhone")?,
            other_phone: phone("otherPhone")?,
        })
    }
}

/// The longest text accepted in one field.
const MAX_FIELD_CHARS: usize = 1024;

fn read_text(object: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.chars().count() > MAX_FIELD_CHARS => Err(format!(
            "{name}: is longer than {MAX_FIELD_CHARS} characters"
        )),
        Some(Value::String(text)) => {
            let text = text.trim();
            Ok((!text.is_empty()).then(|| text.to_owned()))
        }
        Some(_) => Err(format!("{name}: must be a string")),
    }
}

fn read_email(object: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match read_text(object, name)? {
        None => Ok(None),
        Some(text) => EmailAddress::parse(&text)
            .map(|email| Some(email.as_str().to_owned()))
            .ok_or_else(|| format!("{name}: not a valid email address")),
    }
}

/// A phone may be given as an object with `e164`, `userInput` or `display` (tried in
/// that order), or as a plain string.
fn read_phone(
    object: &Map<String, Value>,
    name: &str,
    default_region: Option<&str>,
) -> Result<Option<PhoneNumber>, String> {
    let invalid = || format!("{name}: not a valid phone number");
    let text = match object.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Object(phone)) => {
            let mut given = None;
            for part in ["e164", "userInput", "display"] {
                match phone.get(part) {
                    None | Some(Value::Null) => {}
                    Some(Value::String(text)) if text.trim().is_empty() => {}
                    Some(Value::String(text)) => {
                        given = Some(text.clone());
                        break;
                    }
                    Some(_) => return Err(format!("{name}.{part}: must be a string")),
                }
            }
            match given {
                Some(text) => text,
                None => return Ok(None),
            }
        }
        Some(_) => return Err(invalid()),
    };
    if text.trim().is_empty() {
        return Ok(None);
    }
    if text.chars().count() > MAX_FIELD_CHARS {
        return Err(invalid());
    }
    PhoneNumber::parse(&text, default_region)
        .map(Some)
        .ok_or_else(invalid)
}

/// `ExternalContact` as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalContact {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub salutation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub work_email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub personal_email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub work_phone: Option<PhoneNumber>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cell_phone: Option<PhoneNumber>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub home_phone: Option<PhoneNumber>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_phone: Option<PhoneNumber>,
    pub identifiers: Vec<ContactIdentifier>,
    #[serde(rename = "type")]
    pub contact_type: String,
    pub create_date: String,
    pub modify_date: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactIdentifier {
    #[serde(rename = "type")]
    pub identifier_type: String,
    pub value: String,
    pub date_created: String,
}

impl ExternalContact {
    pub fn from_stored(contact: &StoredContact) -> ExternalContact {
        let fields = contact.fields.clone();
        ExternalContact {
            id: contact.id.clone(),
            first_name: fields.first_name,
            middle_name: fields.middle_name,
            last_name: fields.last_name,
            salutation: fields.salutation,
            title: fields.title,
            work_email: fields.work_email,
            personal_email: fields.personal_email,
            other_email: fields.other_email,
            work_phone: fields.work_phone,
            cell_phone: fields.cell_phone,
            home_phone: fields.home_phone,
            other_phone: fields.other_phone,
            identifiers: contact
                .identifiers
                .iter()
                .map(|identifier| ContactIdentifier {
                    identifier_type: identifier.kind.as_str().to_owned(),
                    value: identifier.value.clone(),
                    date_created: format_ms(identifier.created_ms),
                })
                .collect(),
            contact_type: contact.contact_type.clone(),
            create_date: format_ms(contact.create_ms),
            modify_date: format_ms(contact.modify_ms),
        }
    }
}

/// `ContactListing`: one page of a page-numbered listing. The URIs are present only
/// where they lead somewhere: `firstUri` always, `lastUri` when there is a page,
/// `previousUri` after the first page, `nextUri` before the last one.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactListing {
    pub entities: Vec<ExternalContact>,
    pub page_size: usize,
    pub page_number: usize,
    pub total: u64,
    pub page_count: u64,
    pub first_uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_uri: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn email_parsing_table() {
        let check = |input: &str, expected: Option<(&str, &str)>| {
            let parsed = EmailAddress::parse(input);
            let actual = parsed
                .as_ref()
                .map(|email| (email.as_str(), email.normalized()));
            let actual = actual.as_ref().map(|(text, lower)| (*text, lower.as_str()));
            assert_eq!(actual, expected, "{input:?}");
        };
        check(
            "ann@example.com",
            Some(("ann@example.com", "ann@example.com")),
        );
        check(
            "  Ann.Lee@Example.COM ",
            Some(("Ann.Lee@Example.COM", "ann.lee@example.com")),
        );
        check("a@b", Some(("a@b", "a@b")));
        check("", None);
        check("ann", None);
        check("@example.com", None);
        check("ann@", None);
        check("ann@@example.com", None);
        check("ann@ex@ample.com", None);
        check("ann lee@example.com", None);
        assert!(same_email("ANN@example.com", "ann@EXAMPLE.com"));
        assert!(!same_email("ann@example.com", "anna@example.com"));
        // Unicode case folding would make these equal; they are different addresses.
        assert!(!same_email("\u{212A}im@example.com", "kim@example.com"));
        let kelvin = EmailAddress::parse("\u{212A}IM@Example.com").unwrap();
        assert_eq!(kelvin.normalized(), "\u{212A}im@example.com");
    }

    #[test]
    fn phone_normalization_table() {
        // (input, default region, expected E.164 or None for "invalid")
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            ("+442079460018", None, Some("+442079460018")),
            ("+44 20 7946 0018", None, Some("+442079460018")),
            ("+1 (201) 555-0123", None, Some("+12015550123")),
            ("020 7946 0018", Some("GB"), Some("+442079460018")),
            ("(201) 555-0123", Some("US"), Some("+12015550123")),
            ("+12015550123", Some("GB"), Some("+12015550123")),
            ("020 7946 0018", None, None),
            ("2015550123", None, None),
            ("not a phone", Some("US"), None),
            ("+1 123", None, None),
            ("", Some("US"), None),
            ("12", Some("US"), None),
        ];
        for &(input, region, expected) in cases {
            let actual = PhoneNumber::parse(input, region);
            assert_eq!(
                actual.as_ref().map(|number| number.e164.as_str()),
                expected,
                "{input:?} in {region:?}"
            );
        }
        let london = PhoneNumber::parse("020 7946 0018", Some("GB")).unwrap();
        assert_eq!(
            london,
            PhoneNumber {
                e164: "+442079460018".into(),
                display: "+44 20 7946 0018".into(),
                country_code: Some("GB".into()),
                user_input: Some("020 7946 0018".into()),
            }
        );
    }

    #[test]
    fn strict_e164_table() {
        let check = |input: &str, expected: Option<&str>| {
            let actual = PhoneNumber::parse_e164(input);
            assert_eq!(
                actual.as_ref().map(|number| number.e164.as_str()),
                expected,
                "{input:?}"
            );
        };
        check("+442079460018", Some("+442079460018"));
        check("+12015550123", Some("+12015550123"));
        check("442079460018", None);
        check("+44 20 7946 0018", None);
        check("+44-20-7946-0018", None);
        check("+", None);
        check("+1123", None);
        check("02079460018", None);
    }

    #[test]
    fn contact_body_parsing_names_the_field() {
        let check = |body: Value, expected: Result<ContactFields, &str>| {
            let actual = ContactFields::from_json(&body, Some("GB"));
            assert_eq!(actual, expected.map_err(str::to_owned), "{body}");
        };
        check(
            json!({
                "firstName": " Ann ", "lastName": "Lee", "workEmail": "Ann@Example.com",
                "cellPhone": { "display": "020 7946 0018" },
                "homePhone": { "e164": "+12015550123" },
                "otherPhone": "07911 123456",
                "id": "ignored", "type": "Ephemeral", "unknownField": 1,
                "middleName": null, "title": ""
            }),
            Ok(ContactFields {
                first_name: Some("Ann".into()),
                last_name: Some("Lee".into()),
                work_email: Some("Ann@Example.com".into()),
                cell_phone: PhoneNumber::parse("020 7946 0018", Some("GB")),
                home_phone: PhoneNumber::parse("+12015550123", None),
                other_phone: PhoneNumber::parse("07911 123456", Some("GB")),
                ..ContactFields::default()
            }),
        );
        check(json!([]), Err("body: must be a JSON object"));
        check(json!({"firstName": 3}), Err("firstName: must be a string"));
        check(
            json!({"personalEmail": "nope"}),
            Err("personalEmail: not a valid email address"),
        );
        check(
            json!({"cellPhone": {"userInput": "call me"}}),
            Err("cellPhone: not a valid phone number"),
        );
        check(
            json!({"workPhone": 12}),
            Err("workPhone: not a valid phone number"),
        );
        check(
            json!({"homePhone": {"e164": 44}}),
            Err("homePhone.e164: must be a string"),
        );
        // Without a default region, a national number cannot be placed.
        assert_eq!(
            ContactFields::from_json(&json!({"cellPhone": "020 7946 0018"}), None),
            Err("cellPhone: not a valid phone number".to_owned())
        );
    }
}
