//! Identity resolution: which external contact a web session belongs to.
//!
//! The rules run during ingest, per event in time-of-arrival order, inside the
//! transaction that stores the batch, so that a batch is resolved all or nothing. They
//! are kept here as pure functions; the store looks identifiers up and applies the
//! [`Decision`].
//!
//! 1. **Cookie first.** A visitor whose cookie (visitor id) is already a `Cookie`
//!    identifier of a contact is that contact: the session is linked to it.
//! 2. **Then what the site collected.** Otherwise the event's traits are tried: `email`
//!    (compared lowercased with every email of every contact) and then a phone trait
//!    (`cellPhone`, `phone`, `mobilePhone`), which counts only as strict, valid E.164.
//!    On a match the cookie is added to that contact's identifiers and the session is
//!    linked. A contact is never created from a cookie or from traits alone: a visitor
//!    who matches nobody stays unknown (agents see "Unknown").
//! 3. **The latest identity wins.** A cookie linked to contact A whose visitor then
//!    identifies (an `identify` event) with traits that match contact B follows B: the
//!    session is linked to B from that event on, and the `Cookie` identifier moves from
//!    A to B. A shared browser belongs to whoever last proved who they are; keeping it
//!    on A would show an agent the wrong customer.
//! 4. **Newer traits overwrite older fields** of the linked contact: `givenName` or
//!    `firstName` → `firstName`, `familyName` or `lastName` → `lastName`, `email` →
//!    `personalEmail` unless it already is one of the contact's emails, a valid E.164
//!    phone trait → `cellPhone` unless it already is one of its phones.
//! 5. **Logout ends the identified journey.** A `logout` event closes the session it
//!    lands in at the logout's time (no later event can join that session) and removes
//!    the visitor's `Cookie` identifier from the contact, so that the next event starts
//!    a new session that is not linked. On a shared computer the next person must not
//!    be recognised, and shown to an agent, as the previous one.
//! 6. **Verified identity.** A deployment may have an identity secret. The site's server
//!    signs the `loginId` (or, without one, the `email` trait) with HMAC-SHA256 under
//!    that secret and the page passes the lowercase hex digest as the trait
//!    `identitySignature`. An event with a valid signature marks its session
//!    `authenticated`. A deployment with `require_verified_identity` trusts traits only
//!    from events with a valid signature: others never link, move or update a contact
//!    (they are stored all the same). The signature itself is never stored.
//!
//! When the traits match several contacts (two contacts may share an email), the
//! contact the cookie is already on wins, then the one created first. An email match
//! is preferred to a phone match.

use std::collections::BTreeMap;

use footpath_protocol::v1::{AttributeValue, EventKind};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::contacts::{same_email, ContactFields, EmailAddress, PhoneNumber};

/// The trait that carries the identity signature; stripped before events are stored.
pub const IDENTITY_SIGNATURE_TRAIT: &str = "identitySignature";

/// Phone traits, in order of preference.
const PHONE_TRAITS: [&str; 3] = ["cellPhone", "phone", "mobilePhone"];

/// What an event's traits say about who the visitor is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraitIdentity {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<EmailAddress>,
    pub phone: Option<PhoneNumber>,
}

impl TraitIdentity {
    /// Reads the identity traits. Only string values count; an email that is not one,
    /// or a phone that is not strict E.164, is ignored rather than guessed at.
    pub fn from_traits(traits: &BTreeMap<String, AttributeValue>) -> TraitIdentity {
        let text = |name: &str| match traits.get(name) {
            Some(AttributeValue::String(value)) if !value.trim().is_empty() => {
                Some(value.trim().to_owned())
            }
            _ => None,
        };
        TraitIdentity {
            first_name: text("firstName").or_else(|| text("givenName")),
            last_name: text("lastName").or_else(|| text("familyName")),
            email: text("email").and_then(|email| EmailAddress::parse(&email)),
            phone: PHONE_TRAITS
                .iter()
                .find_map(|name| text(name).and_then(|phone| PhoneNumber::parse_e164(&phone))),
        }
    }

    /// Whether the traits carry anything that can identify a contact.
    pub fn has_identifiers(&self) -> bool {
        self.email.is_some() || self.phone.is_some()
    }
}

/// Rule 4: the contact's fields after the traits overwrote them, or `None` when the
/// traits change nothing (so that `modifyDate` moves only on a real change).
pub fn apply_traits(fields: &ContactFields, traits: &TraitIdentity) -> Option<ContactFields> {
    let mut updated = fields.clone();
    if let Some(first_name) = &traits.first_name {
        updated.first_name = Some(first_name.clone());
    }
    if let Some(last_name) = &traits.last_name {
        updated.last_name = Some(last_name.clone());
    }
    if let Some(email) = &traits.email {
        let known = fields
            .emails()
            .any(|known| same_email(known, email.as_str()));
        if !known {
            updated.personal_email = Some(email.as_str().to_owned());
        }
    }
    if let Some(phone) = &traits.phone {
        let known = fields.phones().any(|known| known.e164 == phone.e164);
        if !known {
            updated.cell_phone = Some(phone.clone());
        }
    }
    (updated != *fields).then_some(updated)
}

/// Which contact the traits point at, among the contacts whose emails (`by_email`) and
/// phones (`by_phone`) matched, each list oldest contact first.
pub fn choose_claimed_contact<'a>(
    cookie_contact: Option<&str>,
    by_email: &'a [String],
    by_phone: &'a [String],
) -> Option<&'a str> {
    let pick = |candidates: &'a [String]| {
        candidates
            .iter()
            .find(|candidate| Some(candidate.as_str()) == cookie_contact)
            .or_else(|| candidates.first())
            .map(String::as_str)
    };
    pick(by_email).or_else(|| pick(by_phone))
}

/// What the store looked up for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolutionInput<'a> {
    pub kind: EventKind,
    /// The contact that has the visitor's cookie as an identifier.
    pub cookie_contact: Option<&'a str>,
    /// The contact the event's traits match (see [`choose_claimed_contact`]).
    pub claimed_contact: Option<&'a str>,
    /// Whether the traits may be acted on: always, unless the deployment requires
    /// verified identity and the event's signature is not valid.
    pub traits_trusted: bool,
}

/// What happens to the visitor's `Cookie` identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieChange {
    Keep,
    AddTo(String),
    Move { from: String, to: String },
    RemoveFrom(String),
}

/// The outcome of the rules for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Link the event's session to this contact; `None` leaves the session's link as
    /// it is.
    pub link_session_to: Option<String>,
    pub cookie: CookieChange,
    /// Overwrite this contact's fields with the event's traits (rule 4).
    pub apply_traits_to: Option<String>,
    /// Close the session at the event's time (rule 5).
    pub close_session: bool,
}

impl Decision {
    fn nothing() -> Decision {
        Decision {
            link_session_to: None,
            cookie: CookieChange::Keep,
            apply_traits_to: None,
            close_session: false,
        }
    }
}

/// Rules 1–3 and 5 for one event; see the module documentation.
///
/// Rule 3, the move: a cookie linked to contact A whose visitor identifies (verified,
/// or unverified where the deployment does not require verification) with traits
/// matching contact B follows the latest identity: the session links to B from then
/// on, and the `Cookie` identifier moves from A to B. Only an `identify` event moves a
/// cookie; on other events the cookie's contact wins (rule 1), and the traits, which
/// belong to someone else, are not written onto it.
///
/// Rule 5, logout: the session is closed and the `Cookie` identifier removed, so that
/// the next event starts a new, unlinked session — a shared computer must not keep
/// recognising the previous person.
pub fn decide(input: ResolutionInput<'_>) -> Decision {
    let owned = |id: &str| id.to_owned();
    if input.kind == EventKind::Logout {
        return Decision {
            cookie: match input.cookie_contact {
                Some(contact) => CookieChange::RemoveFrom(owned(contact)),
                None => CookieChange::Keep,
            },
            close_session: true,
            ..Decision::nothing()
        };
    }
    let claimed = input.claimed_contact.filter(|_| input.traits_trusted);
    match (input.cookie_contact, claimed) {
        (Some(cookie), Some(claimed)) if cookie == claimed => Decision {
            link_session_to: Some(owned(cookie)),
            apply_traits_to: Some(owned(cookie)),
            ..Decision::nothing()
        },
        (Some(cookie), Some(claimed)) if input.kind == EventKind::Identify => Decision {
            link_session_to: Some(owned(claimed)),
            cookie: CookieChange::Move {
                from: owned(cookie),
                to: owned(claimed),
            },
            apply_traits_to: Some(owned(claimed)),
            close_session: false,
        },
        (Some(cookie), Some(_)) => Decision {
            link_session_to: Some(owned(cookie)),
            ..Decision::nothing()
        },
        (Some(cookie), None) => Decision {
            link_session_to: Some(owned(cookie)),
            apply_traits_to: input.traits_trusted.then(|| owned(cookie)),
            ..Decision::nothing()
        },
        (None, Some(claimed)) => Decision {
            link_session_to: Some(owned(claimed)),
            cookie: CookieChange::AddTo(owned(claimed)),
            apply_traits_to: Some(owned(claimed)),
            close_session: false,
        },
        (None, None) => Decision::nothing(),
    }
}

/// The result of checking an event's identity signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureCheck {
    Valid,
    /// A signature that does not match, is not hex, or signs nothing (no `loginId`
    /// and no `email` trait).
    Invalid,
    /// The event carries no signature.
    Missing,
    /// The deployment has no identity secret, so nothing can be verified.
    NoSecret,
}

/// Checks `signature` (lowercase hex of HMAC-SHA256 under `secret`) over the `loginId`,
/// or over the `email` trait as sent when there is no `loginId`. The comparison is
/// constant-time (`Mac::verify_slice`), so response times reveal nothing about how
/// much of a forged signature was right.
pub fn verify_identity_signature(
    secret: Option<&str>,
    login_id: Option<&str>,
    email: Option<&str>,
    signature: Option<&str>,
) -> SignatureCheck {
    let Some(secret) = secret else {
        return SignatureCheck::NoSecret;
    };
    let Some(signature) = signature else {
        return SignatureCheck::Missing;
    };
    let signed = login_id.filter(|id| !id.is_empty()).or(email);
    let Some(signed) = signed.filter(|text| !text.is_empty()) else {
        return SignatureCheck::Invalid;
    };
    let Ok(signature) = hex::decode(signature.trim()) else {
        return SignatureCheck::Invalid;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return SignatureCheck::Invalid;
    };
    mac.update(signed.as_bytes());
    match mac.verify_slice(&signature) {
        Ok(()) => SignatureCheck::Valid,
        Err(_) => SignatureCheck::Invalid,
    }
}

/// The signature a site's server computes: lowercase hex of HMAC-SHA256 of `message`
/// under `secret`. Used by tests and by tools that produce signatures.
pub fn sign_identity(secret: &str, message: &str) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use footpath_protocol::v1::Number;

    fn traits(pairs: &[(&str, &str)]) -> BTreeMap<String, AttributeValue> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), AttributeValue::String(value.to_string())))
            .collect()
    }

    #[test]
    fn identity_traits_table() {
        let check =
            |pairs: &[(&str, &str)],
             expected: (Option<&str>, Option<&str>, Option<&str>, Option<&str>)| {
                let identity = TraitIdentity::from_traits(&traits(pairs));
                let actual = (
                    identity.first_name.as_deref(),
                    identity.last_name.as_deref(),
                    identity.email.as_ref().map(EmailAddress::as_str),
                    identity.phone.as_ref().map(|phone| phone.e164.as_str()),
                );
                assert_eq!(actual, expected, "{pairs:?}");
            };
        check(&[], (None, None, None, None));
        check(
            &[
                ("givenName", "Ann"),
                ("familyName", "Lee"),
                ("email", "Ann@Example.com"),
            ],
            (Some("Ann"), Some("Lee"), Some("Ann@Example.com"), None),
        );
        check(
            &[
                ("firstName", "Anna"),
                ("givenName", "Ann"),
                ("lastName", "Li"),
                ("familyName", "Lee"),
            ],
            (Some("Anna"), Some("Li"), None, None),
        );
        check(&[("email", "not-an-email")], (None, None, None, None));
        check(
            &[("phone", "+442079460018")],
            (None, None, None, Some("+442079460018")),
        );
        check(
            &[("mobilePhone", "+12015550123")],
            (None, None, None, Some("+12015550123")),
        );
        check(
            &[("cellPhone", "+12015550123"), ("phone", "+442079460018")],
            (None, None, None, Some("+12015550123")),
        );
        // Not E.164: ignored rather than guessed.
        check(&[("phone", "020 7946 0018")], (None, None, None, None));
        check(&[("phone", "+44 20 7946 0018")], (None, None, None, None));
        // Only strings count.
        let mut numeric = BTreeMap::new();
        numeric.insert(
            "phone".to_owned(),
            AttributeValue::Number(Number::parse("442079460018").unwrap()),
        );
        assert_eq!(
            TraitIdentity::from_traits(&numeric),
            TraitIdentity::default()
        );
    }

    #[test]
    fn traits_to_contact_fields_table() {
        let contact = ContactFields {
            first_name: Some("Ann".into()),
            last_name: Some("Lee".into()),
            work_email: Some("ann@work.example".into()),
            home_phone: PhoneNumber::parse_e164("+442079460018"),
            ..ContactFields::default()
        };
        let check = |pairs: &[(&str, &str)], expected: Option<ContactFields>| {
            let identity = TraitIdentity::from_traits(&traits(pairs));
            assert_eq!(apply_traits(&contact, &identity), expected, "{pairs:?}");
        };
        check(&[], None);
        check(&[("firstName", "Ann"), ("lastName", "Lee")], None);
        // An email or phone the contact already has changes nothing.
        check(&[("email", "ANN@work.example")], None);
        check(&[("phone", "+442079460018")], None);
        check(
            &[("givenName", "Anna"), ("familyName", "Li")],
            Some(ContactFields {
                first_name: Some("Anna".into()),
                last_name: Some("Li".into()),
                ..contact.clone()
            }),
        );
        check(
            &[("email", "ann@home.example"), ("cellPhone", "+12015550123")],
            Some(ContactFields {
                personal_email: Some("ann@home.example".into()),
                cell_phone: PhoneNumber::parse_e164("+12015550123"),
                ..contact.clone()
            }),
        );
    }

    #[test]
    fn claimed_contact_prefers_the_cookie_then_email_then_oldest() {
        let ids = |list: &[&str]| list.iter().map(|id| id.to_string()).collect::<Vec<_>>();
        let (ab, c) = (ids(&["a", "b"]), ids(&["c"]));
        assert_eq!(choose_claimed_contact(None, &ab, &c), Some("a"));
        assert_eq!(choose_claimed_contact(Some("b"), &ab, &c), Some("b"));
        assert_eq!(choose_claimed_contact(Some("c"), &ab, &c), Some("a"));
        assert_eq!(choose_claimed_contact(Some("c"), &[], &c), Some("c"));
        assert_eq!(choose_claimed_contact(None, &[], &[]), None);
    }

    #[test]
    fn resolution_rules_table() {
        use CookieChange::*;
        let input = |kind, cookie, claimed, trusted| ResolutionInput {
            kind,
            cookie_contact: cookie,
            claimed_contact: claimed,
            traits_trusted: trusted,
        };
        let decision =
            |link: Option<&str>, cookie: CookieChange, traits: Option<&str>, close| Decision {
                link_session_to: link.map(str::to_owned),
                cookie,
                apply_traits_to: traits.map(str::to_owned),
                close_session: close,
            };
        let s = |id: &str| id.to_owned();
        let cases = [
            (
                "anonymous",
                input(EventKind::Pageview, None, None, true),
                decision(None, Keep, None, false),
            ),
            (
                "cookie known",
                input(EventKind::Pageview, Some("A"), None, true),
                decision(Some("A"), Keep, Some("A"), false),
            ),
            (
                "cookie known, traits untrusted",
                input(EventKind::Pageview, Some("A"), None, false),
                decision(Some("A"), Keep, None, false),
            ),
            (
                "traits match",
                input(EventKind::Identify, None, Some("B"), true),
                decision(Some("B"), AddTo(s("B")), Some("B"), false),
            ),
            (
                "traits match on a pageview",
                input(EventKind::Pageview, None, Some("B"), true),
                decision(Some("B"), AddTo(s("B")), Some("B"), false),
            ),
            (
                "untrusted traits never link",
                input(EventKind::Identify, None, Some("B"), false),
                decision(None, Keep, None, false),
            ),
            (
                "same contact both ways",
                input(EventKind::Identify, Some("A"), Some("A"), true),
                decision(Some("A"), Keep, Some("A"), false),
            ),
            (
                "A to B on identify",
                input(EventKind::Identify, Some("A"), Some("B"), true),
                decision(
                    Some("B"),
                    Move {
                        from: s("A"),
                        to: s("B"),
                    },
                    Some("B"),
                    false,
                ),
            ),
            (
                "A stays on a pageview",
                input(EventKind::Record, Some("A"), Some("B"), true),
                decision(Some("A"), Keep, None, false),
            ),
            (
                "A stays when B is unverified",
                input(EventKind::Identify, Some("A"), Some("B"), false),
                decision(Some("A"), Keep, None, false),
            ),
            (
                "logout",
                input(EventKind::Logout, Some("A"), Some("A"), true),
                decision(None, RemoveFrom(s("A")), None, true),
            ),
            (
                "anonymous logout",
                input(EventKind::Logout, None, None, true),
                decision(None, Keep, None, true),
            ),
        ];
        for (name, input, expected) in cases {
            assert_eq!(decide(input), expected, "{name}");
        }
    }

    #[test]
    fn signature_verification_table() {
        let secret = "site-secret";
        let good_login = sign_identity(secret, "user-42");
        let good_email = sign_identity(secret, "ann@example.com");
        // The example vector from the HMAC article of Wikipedia, so that the scheme itself is
        // pinned and not only round-tripped.
        assert_eq!(
            sign_identity("key", "The quick brown fox jumps over the lazy dog"),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
        let cases = [
            (
                "good over loginId",
                Some(secret),
                Some("user-42"),
                Some("ann@example.com"),
                Some(good_login.as_str()),
                SignatureCheck::Valid,
            ),
            (
                "good over email",
                Some(secret),
                None,
                Some("ann@example.com"),
                Some(good_email.as_str()),
                SignatureCheck::Valid,
            ),
            (
                "email signature when a loginId is present",
                Some(secret),
                Some("user-42"),
                Some("ann@example.com"),
                Some(good_email.as_str()),
                SignatureCheck::Invalid,
            ),
            (
                "wrong secret",
                Some("other-secret"),
                Some("user-42"),
                None,
                Some(good_login.as_str()),
                SignatureCheck::Invalid,
            ),
            (
                "tampered",
                Some(secret),
                Some("user-43"),
                None,
                Some(good_login.as_str()),
                SignatureCheck::Invalid,
            ),
            (
                "not hex",
                Some(secret),
                Some("user-42"),
                None,
                Some("zz"),
                SignatureCheck::Invalid,
            ),
            (
                "truncated",
                Some(secret),
                Some("user-42"),
                None,
                Some(&good_login[..62]),
                SignatureCheck::Invalid,
            ),
            (
                "nothing signed",
                Some(secret),
                None,
                None,
                Some(good_login.as_str()),
                SignatureCheck::Invalid,
            ),
            (
                "missing",
                Some(secret),
                Some("user-42"),
                None,
                None,
                SignatureCheck::Missing,
            ),
            (
                "no secret",
                None,
                Some("user-42"),
                None,
                Some(good_login.as_str()),
                SignatureCheck::NoSecret,
            ),
        ];
        for (name, secret, login_id, email, signature, expected) in cases {
            assert_eq!(
                verify_identity_signature(secret, login_id, email, signature),
                expected,
                "{name}"
            );
        }
    }
}
