//! Identity resolution: which external contact a web session belongs to.
//!
//! The rules run during ingest, per event in time-of-arrival order, inside the
//! transaction that stores the batch, so that a batch is resolved all or nothing. They
//! are kept here as pure functions; the store looks identifiers up and applies the
//! [`Decision`].
//!
//! Nothing a page says on its own may change who a customer is. A page can *claim* an
//! identity (traits typed into a form); only the site's server can *prove* one, with an
//! identity token (see [`verify_identity_token`] and `docs/identity.md`). The rules:
//!
//! 1. **Cookie first.** A visitor whose cookie (visitor id) is a `Cookie` identifier of
//!    a contact is that contact: the session is linked to it ("recognised browser").
//!    Cookie identifiers are put on contacts only by a verified identity (rule 3) or
//!    through the contacts API.
//! 2. **Unverified claims link a session, and nothing else.** Without a token, the
//!    event's `email` trait (compared with [`EmailAddress::normalized`]) and then a
//!    phone trait (`cellPhone`, `phone`, `mobilePhone`, strict E.164 only) may link the
//!    *session* to the contact they match, marked [`LinkKind::Unverified`] so agents see
//!    that it is a claim. An unverified claim never adds, moves or removes an
//!    identifier (no cookie is put on the contact), never writes a contact field, and
//!    never replaces a cookie or verified link of the session; it replaces only an
//!    earlier unverified claim. A deployment with `require_verified_identity` ignores
//!    unverified claims altogether. An event that carries an identity token that is
//!    not valid claims nothing: a failed proof does not fall back to a weaker one.
//! 3. **A verified identity is the site's word.** An event with a valid identity token
//!    resolves only from the token's signed claims (`email`, `phone_number`; `sub` must
//!    equal the event's `loginId` when it has one): identifiers in the traits beside a
//!    valid token are ignored, so an unsigned extra identifier can link, move or modify
//!    nothing. On a match the session is linked ([`LinkKind::Verified`]), the cookie is
//!    put on the contact when the token is bound to the visitor (`vid`: a token
//!    without it could be someone's own, replayed with another visitor's id), and the
//!    signed claims update the contact: `given_name` →
//!    `firstName`, `family_name` → `lastName`, `email` → `personalEmail` unless it is
//!    already one of its emails, `phone_number` → `cellPhone` unless already one of its
//!    phones. Unsigned traits are stored with the event and never written to a contact.
//! 4. **The latest verified identity wins.** A cookie on contact A whose visitor then
//!    identifies (an `identify` event) with a valid token matching contact B follows B:
//!    the session links to B and the `Cookie` identifier moves from A to B. Only an
//!    `identify` event with a valid token bound to the visitor moves a cookie; an
//!    unbound token neither overrides a recognised browser nor takes a linked session
//!    over from another contact. "Authenticated" belongs to the current link
//!    ([`authenticated_after`]).
//! 5. **Logout ends the identified journey.** A `logout` event closes the session it
//!    lands in at the logout's time and removes the visitor's `Cookie` identifier, so
//!    that the next event starts a new, unlinked session. Where the deployment requires
//!    verified identity, a logout of a recognised cookie (or of a session verified by a
//!    token that put no cookie anywhere) needs the same proof as the link: a valid
//!    token that resolves to that contact. Without it the logout
//!    is stored as an event and changes nothing, so whoever knows only a visitor id
//!    cannot sign a customer out or split their session.
//!
//! When the identifiers match several contacts (two contacts may share an email), the
//! contact the cookie is already on wins, then the one created first. An email match
//! is preferred to a phone match. A contact is never created from a cookie, a claim or
//! a token: a visitor who matches nobody stays unknown (agents see "Unknown").

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use footpath_protocol::v1::{AttributeValue, EventKind};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::contacts::{same_email, ContactFields, EmailAddress, PhoneNumber};

/// The trait that carries the identity token; stripped before events are stored.
pub const IDENTITY_TOKEN_TRAIT: &str = "identityToken";
/// The trait of the scheme before identity tokens (an HMAC of the `loginId` alone). It
/// proved too little (see `docs/identity.md`); it is stripped, never stored, and an
/// event that carries it is treated like one with an invalid token.
pub const LEGACY_SIGNATURE_TRAIT: &str = "identitySignature";
/// The longest identity token that is checked at all.
pub const MAX_IDENTITY_TOKEN_BYTES: usize = 4_096;
/// How far a token's `exp` (and `nbf`) may be off the collector's clock, for clock
/// skew between the site's server and the collector.
pub const TOKEN_CLOCK_LEEWAY_MS: i64 = 60_000;
/// The longest text of a signed name claim.
const MAX_NAME_CLAIM_BYTES: usize = 256;

/// Phone traits, in order of preference.
const PHONE_TRAITS: [&str; 3] = ["cellPhone", "phone", "mobilePhone"];

/// What an event's traits claim about who the visitor is (unverified).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraitIdentity {
    pub email: Option<EmailAddress>,
    pub phone: Option<PhoneNumber>,
}

impl TraitIdentity {
    /// Reads the identifying traits. Only string values count; an email that is not
    /// one, or a phone that is not strict E.164, is ignored rather than guessed at.
    pub fn from_traits(traits: &BTreeMap<String, AttributeValue>) -> TraitIdentity {
        let text = |name: &str| match traits.get(name) {
            Some(AttributeValue::String(value)) if !value.trim().is_empty() => {
                Some(value.trim().to_owned())
            }
            _ => None,
        };
        TraitIdentity {
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

/// What a valid identity token vouches for: the signed claims, and nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifiedIdentity {
    /// `sub`: the site's own id of the user (the SDK's `loginId`).
    pub login_id: Option<String>,
    pub email: Option<EmailAddress>,
    pub phone: Option<PhoneNumber>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// Whether the token named this visitor (`vid`): only such a token may put the
    /// visitor's cookie on a contact or move it, since a token without it could be
    /// replayed with anyone's visitor id.
    pub bound_to_visitor: bool,
}

impl VerifiedIdentity {
    /// Whether the claims carry anything that can identify a contact.
    pub fn has_identifiers(&self) -> bool {
        self.email.is_some() || self.phone.is_some()
    }
}

/// What an event proved about who the visitor is, on the ingest path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum IdentityProof {
    /// No identity token: the traits are claims (rule 2).
    #[default]
    Absent,
    /// A token that is not valid: the event claims nothing (rule 2).
    Invalid,
    /// A valid token: only its claims count (rule 3).
    Valid(VerifiedIdentity),
}

impl IdentityProof {
    pub fn verified(&self) -> Option<&VerifiedIdentity> {
        match self {
            IdentityProof::Valid(identity) => Some(identity),
            _ => None,
        }
    }
}

/// Rule 3: the contact's fields after the signed claims updated them, or `None` when
/// they change nothing (so that `modifyDate` moves only on a real change).
pub fn apply_verified_claims(
    fields: &ContactFields,
    claims: &VerifiedIdentity,
) -> Option<ContactFields> {
    let mut updated = fields.clone();
    if let Some(first_name) = &claims.first_name {
        updated.first_name = Some(first_name.clone());
    }
    if let Some(last_name) = &claims.last_name {
        updated.last_name = Some(last_name.clone());
    }
    if let Some(email) = &claims.email {
        let known = fields
            .emails()
            .any(|known| same_email(known, email.as_str()));
        if !known {
            updated.personal_email = Some(email.as_str().to_owned());
        }
    }
    if let Some(phone) = &claims.phone {
        let known = fields.phones().any(|known| known.e164 == phone.e164);
        if !known {
            updated.cell_phone = Some(phone.clone());
        }
    }
    (updated != *fields).then_some(updated)
}

/// Which contact the identifiers point at, among the contacts whose emails
/// (`by_email`) and phones (`by_phone`) matched, each list oldest contact first.
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

/// How a session's contact link was established, weakest first. Agents are shown it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LinkKind {
    /// Traits typed into the page matched the contact: a claim, not a proof.
    Unverified,
    /// The visitor's cookie is an identifier of the contact (put there by a verified
    /// identity or through the contacts API).
    Cookie,
    /// An event of the session carried a valid identity token for the contact.
    Verified,
}

impl LinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Unverified => "Unverified",
            LinkKind::Cookie => "Cookie",
            LinkKind::Verified => "Verified",
        }
    }

    pub fn parse(text: &str) -> Option<LinkKind> {
        [LinkKind::Unverified, LinkKind::Cookie, LinkKind::Verified]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

/// What the store looked up for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolutionInput<'a> {
    pub kind: EventKind,
    /// The contact that has the visitor's cookie as an identifier.
    pub cookie_contact: Option<&'a str>,
    /// The session's link before this event.
    pub session_link: Option<(&'a str, LinkKind)>,
    /// Whether the event carried a valid identity token.
    pub verified: bool,
    /// Whether that token was bound to this visitor (`vid`), which a cookie change
    /// needs (rule 3).
    pub bound_to_visitor: bool,
    /// The contact the event's identifiers match (see [`choose_claimed_contact`]):
    /// from the token's claims when `verified`, else from the traits when the
    /// deployment lets unverified claims link (the caller decides; rule 2).
    pub claimed_contact: Option<&'a str>,
    /// Whether the deployment requires verified identity (rule 5's proof for logout).
    pub proof_required: bool,
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
    /// Link the event's session to this contact, this way; `None` leaves the session's
    /// link as it is.
    pub link_session_to: Option<(String, LinkKind)>,
    pub cookie: CookieChange,
    /// Update this contact's fields with the token's signed claims (rule 3).
    pub apply_claims_to: Option<String>,
    /// Close the session at the event's time (rule 5).
    pub close_session: bool,
}

impl Decision {
    fn nothing() -> Decision {
        Decision {
            link_session_to: None,
            cookie: CookieChange::Keep,
            apply_claims_to: None,
            close_session: false,
        }
    }
}

/// Rules 1–5 for one event; see the module documentation.
pub fn decide(input: ResolutionInput<'_>) -> Decision {
    let owned = |id: &str| id.to_owned();
    if input.kind == EventKind::Logout {
        return match input.cookie_contact {
            Some(contact) => {
                let proven = input.verified && input.claimed_contact == Some(contact);
                if input.proof_required && !proven {
                    Decision::nothing()
                } else {
                    Decision {
                        cookie: CookieChange::RemoveFrom(owned(contact)),
                        close_session: true,
                        ..Decision::nothing()
                    }
                }
            }
            // A session verified by a token that put no cookie anywhere (one not bound
            // to the visitor) needs the same proof to be signed out.
            None => match input.session_link {
                Some((contact, LinkKind::Verified))
                    if input.proof_required
                        && !(input.verified && input.claimed_contact == Some(contact)) =>
                {
                    Decision::nothing()
                }
                _ => Decision {
                    close_session: true,
                    ..Decision::nothing()
                },
            },
        };
    }
    // The link the rules want, before comparing it with the session's current one.
    let (wanted, cookie, apply_claims_to) = match (input.cookie_contact, input.claimed_contact) {
        (cookie, Some(claimed)) if input.verified => match cookie {
            // A token not bound to this visitor could be someone's own, replayed with
            // this visitor's id: it may link a session that is linked to no one, and
            // never take one over from another contact.
            None if !input.bound_to_visitor
                && input
                    .session_link
                    .is_some_and(|(current, _)| current != claimed) =>
            {
                (None, CookieChange::Keep, None)
            }
            None => (
                Some((claimed, LinkKind::Verified)),
                if input.bound_to_visitor {
                    CookieChange::AddTo(owned(claimed))
                } else {
                    CookieChange::Keep
                },
                Some(owned(claimed)),
            ),
            Some(cookie) if cookie == claimed => (
                Some((claimed, LinkKind::Verified)),
                CookieChange::Keep,
                Some(owned(claimed)),
            ),
            Some(cookie) if input.kind == EventKind::Identify && input.bound_to_visitor => (
                Some((claimed, LinkKind::Verified)),
                CookieChange::Move {
                    from: owned(cookie),
                    to: owned(claimed),
                },
                Some(owned(claimed)),
            ),
            // Traits ride on every event of a page; only an identify moves a cookie,
            // and only with a token bound to this visitor: an unbound token could be
            // someone's own, replayed with another visitor's id.
            Some(cookie) => (Some((cookie, LinkKind::Cookie)), CookieChange::Keep, None),
        },
        (Some(cookie), _) => (Some((cookie, LinkKind::Cookie)), CookieChange::Keep, None),
        (None, Some(claimed)) => {
            // An unverified claim replaces only an earlier unverified claim.
            let stronger_link = input
                .session_link
                .is_some_and(|(_, kind)| kind > LinkKind::Unverified);
            if stronger_link {
                (None, CookieChange::Keep, None)
            } else {
                (
                    Some((claimed, LinkKind::Unverified)),
                    CookieChange::Keep,
                    None,
                )
            }
        }
        (None, None) => (None, CookieChange::Keep, None),
    };
    // A link never weakens while it stays with the same contact, and a link that is
    // already in place is not written again.
    let link_session_to = wanted.and_then(|(contact, kind)| match input.session_link {
        Some((current, current_kind)) if current == contact && current_kind >= kind => None,
        _ => Some((owned(contact), kind)),
    });
    Decision {
        link_session_to,
        cookie,
        apply_claims_to,
        close_session: false,
    }
}

/// Whether the session is authenticated after the event, given whether it was before:
/// "Authenticated" belongs to the session's current contact link. A verified event
/// authenticates only when, after `decision`, the session is linked to the contact its
/// claims point at (or, for a signed-in user the contact centre does not know, to no
/// one): a valid token of someone else, replayed with this visitor's id, must not make
/// another customer's session read "Authenticated". And when the event moves the
/// session to another contact, what was proven for the old one no longer counts.
pub fn authenticated_after(
    input: &ResolutionInput<'_>,
    decision: &Decision,
    authenticated_before: bool,
) -> bool {
    let contact_before = input.session_link.map(|(contact, _)| contact);
    let contact_after = match &decision.link_session_to {
        Some((contact, _)) => Some(contact.as_str()),
        None => contact_before,
    };
    let proven_now = input.verified && contact_after == input.claimed_contact;
    if contact_after == contact_before {
        authenticated_before || proven_now
    } else {
        proven_now
    }
}

/// The result of checking an event's identity token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCheck {
    Valid(VerifiedIdentity),
    /// A token that is malformed, signed with another key or algorithm, expired, for
    /// another deployment or visitor, or whose `sub` is not the event's `loginId`. The
    /// reason is for logs and tests, never for the sender.
    Invalid(&'static str),
    /// The event carries no token.
    Missing,
    /// The deployment has no identity secret, so nothing can be verified.
    NoSecret,
}

/// What a token is checked against.
#[derive(Debug, Clone, Copy)]
pub struct TokenContext<'a> {
    /// The deployment's identity secret, if it has one.
    pub secret: Option<&'a str>,
    pub deployment_id: &'a str,
    pub visitor_id: &'a str,
    /// The event's `loginId`.
    pub login_id: Option<&'a str>,
    /// The collector's clock.
    pub now_ms: i64,
    /// The furthest in the future a token's `exp` may be.
    pub max_lifetime_ms: i64,
}

/// Checks an identity token: a JSON Web Token (RFC 7519) in compact form, signed with
/// HMAC-SHA256 (`alg` `HS256`, and no other) under the deployment's identity secret.
///
/// The signed bytes are the ASCII text `BASE64URL(header) "." BASE64URL(payload)` as
/// sent, so the collector never re-serialises JSON. The signature is checked (in
/// constant time) before the payload is parsed. The payload must have:
/// - `aud`: the deployment id (a string, or an array that contains it);
/// - `exp`: seconds since the epoch, in the future, and at most `max_lifetime_ms` away;
/// - at least one of `sub` (the site's user id), `email`, `phone_number` (E.164);
///
/// and may have `nbf`, `iat`, `given_name`, `family_name`, and `vid` (the visitor id,
/// which binds the token to one browser's cookie). When the event names a `loginId`,
/// `sub` must be present and equal to it.
pub fn verify_identity_token(context: TokenContext<'_>, token: Option<&str>) -> TokenCheck {
    let Some(secret) = context.secret else {
        return TokenCheck::NoSecret;
    };
    let Some(token) = token else {
        return TokenCheck::Missing;
    };
    match check_token(context, secret, token) {
        Ok(identity) => TokenCheck::Valid(identity),
        Err(reason) => TokenCheck::Invalid(reason),
    }
}

fn check_token(
    context: TokenContext<'_>,
    secret: &str,
    token: &str,
) -> Result<VerifiedIdentity, &'static str> {
    if token.len() > MAX_IDENTITY_TOKEN_BYTES {
        return Err("token too long");
    }
    let mut parts = token.split('.');
    let (Some(header_part), Some(payload_part), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not three dot-separated parts");
    };
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| "not base64url");
    let header: Value =
        serde_json::from_slice(&decode(header_part)?).map_err(|_| "header is not JSON")?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err("alg is not HS256");
    }
    // A critical extension the collector does not know must not be ignored (RFC 7515).
    if header.get("crit").is_some() {
        return Err("crit is not supported");
    }
    let signing_input = &token[..header_part.len() + 1 + payload_part.len()];
    let signature = decode(signature)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(signing_input.as_bytes());
    mac.verify_slice(&signature)
        .map_err(|_| "signature does not match")?;

    let claims: Value =
        serde_json::from_slice(&decode(payload_part)?).map_err(|_| "payload is not JSON")?;
    let claims = claims.as_object().ok_or("payload is not an object")?;
    let audience_ok = match claims.get("aud") {
        Some(Value::String(audience)) => audience == context.deployment_id,
        Some(Value::Array(audiences)) => audiences
            .iter()
            .any(|audience| audience.as_str() == Some(context.deployment_id)),
        _ => false,
    };
    if !audience_ok {
        return Err("aud is not the deployment");
    }
    let seconds = |name: &str| -> Result<Option<i64>, &'static str> {
        match claims.get(name) {
            None => Ok(None),
            Some(value) => value
                .as_i64()
                .filter(|seconds| (0..=253_402_300_799).contains(seconds))
                .map(|seconds| Some(seconds * 1_000))
                .ok_or("a time claim is not whole seconds"),
        }
    };
    let expires_ms = seconds("exp")?.ok_or("exp is missing")?;
    if expires_ms + TOKEN_CLOCK_LEEWAY_MS <= context.now_ms {
        return Err("expired");
    }
    if expires_ms - context.now_ms > context.max_lifetime_ms {
        return Err("exp is further away than the deployment allows");
    }
    if let Some(not_before_ms) = seconds("nbf")? {
        if not_before_ms - TOKEN_CLOCK_LEEWAY_MS > context.now_ms {
            return Err("not valid yet");
        }
    }
    seconds("iat")?;
    let text = |name: &str| -> Result<Option<&str>, &'static str> {
        match claims.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) if !text.trim().is_empty() => Ok(Some(text.trim())),
            Some(_) => Err("a claim is not a non-empty string"),
        }
    };
    let bound_to_visitor = match text("vid")? {
        Some(visitor) if visitor.eq_ignore_ascii_case(context.visitor_id) => true,
        Some(_) => return Err("vid is another visitor"),
        None => false,
    };
    let login_id = text("sub")?;
    if let Some(event_login_id) = context.login_id.filter(|id| !id.is_empty()) {
        if login_id != Some(event_login_id) {
            return Err("loginId is not the token's sub");
        }
    }
    let email = match text("email")? {
        Some(email) => Some(EmailAddress::parse(email).ok_or("email is not an address")?),
        None => None,
    };
    let phone = match text("phone_number")? {
        Some(phone) => Some(PhoneNumber::parse_e164(phone).ok_or("phone_number is not E.164")?),
        None => None,
    };
    let name = |claim: &str| -> Result<Option<String>, &'static str> {
        match text(claim)? {
            Some(name) if name.len() > MAX_NAME_CLAIM_BYTES => Err("a name claim is too long"),
            name => Ok(name.map(str::to_owned)),
        }
    };
    let identity = VerifiedIdentity {
        login_id: login_id.map(str::to_owned),
        email,
        phone,
        first_name: name("given_name")?,
        last_name: name("family_name")?,
        bound_to_visitor,
    };
    if identity.login_id.is_none() && !identity.has_identifiers() {
        return Err("names no one: no sub, email or phone_number");
    }
    Ok(identity)
}

/// An identity token as a site's server makes one (see `docs/identity.md`): the compact
/// JWT of `claims` (a JSON object) with the header `{"alg":"HS256","typ":"JWT"}`,
/// signed under `secret`. The `sign-identity` command of the collector and the tests
/// use it.
pub fn sign_identity_token(secret: &str, claims: &serde_json::Map<String, Value>) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string());
    let signing_input = format!("{header}.{payload}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use footpath_protocol::v1::Number;
    use serde_json::json;

    fn traits(pairs: &[(&str, &str)]) -> BTreeMap<String, AttributeValue> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), AttributeValue::String(value.to_string())))
            .collect()
    }

    #[test]
    fn identity_traits_table() {
        let check = |pairs: &[(&str, &str)], expected: (Option<&str>, Option<&str>)| {
            let identity = TraitIdentity::from_traits(&traits(pairs));
            let actual = (
                identity.email.as_ref().map(EmailAddress::as_str),
                identity.phone.as_ref().map(|phone| phone.e164.as_str()),
            );
            assert_eq!(actual, expected, "{pairs:?}");
        };
        check(&[], (None, None));
        check(
            &[("givenName", "Ann"), ("email", "Ann@Example.com")],
            (Some("Ann@Example.com"), None),
        );
        check(&[("email", "not-an-email")], (None, None));
        check(&[("phone", "+442079460018")], (None, Some("+442079460018")));
        check(
            &[("mobilePhone", "+12015550123")],
            (None, Some("+12015550123")),
        );
        check(
            &[("cellPhone", "+12015550123"), ("phone", "+442079460018")],
            (None, Some("+12015550123")),
        );
        // Not E.164: ignored rather than guessed.
        check(&[("phone", "020 7946 0018")], (None, None));
        check(&[("phone", "+44 20 7946 0018")], (None, None));
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
    fn verified_claims_to_contact_fields_table() {
        let contact = ContactFields {
            first_name: Some("Ann".into()),
            last_name: Some("Lee".into()),
            work_email: Some("ann@work.example".into()),
            home_phone: PhoneNumber::parse_e164("+442079460018"),
            ..ContactFields::default()
        };
        let claims =
            |first: Option<&str>, last: Option<&str>, email: Option<&str>, phone: Option<&str>| {
                VerifiedIdentity {
                    login_id: None,
                    email: email.and_then(EmailAddress::parse),
                    phone: phone.and_then(PhoneNumber::parse_e164),
                    first_name: first.map(str::to_owned),
                    last_name: last.map(str::to_owned),
                    bound_to_visitor: false,
                }
            };
        let check = |claims: VerifiedIdentity, expected: Option<ContactFields>| {
            assert_eq!(
                apply_verified_claims(&contact, &claims),
                expected,
                "{claims:?}"
            );
        };
        check(claims(None, None, None, None), None);
        check(claims(Some("Ann"), Some("Lee"), None, None), None);
        // An email or phone the contact already has changes nothing.
        check(claims(None, None, Some("ANN@work.example"), None), None);
        check(claims(None, None, None, Some("+442079460018")), None);
        check(
            claims(Some("Anna"), Some("Li"), None, None),
            Some(ContactFields {
                first_name: Some("Anna".into()),
                last_name: Some("Li".into()),
                ..contact.clone()
            }),
        );
        check(
            claims(None, None, Some("ann@home.example"), Some("+12015550123")),
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
        use EventKind::{Identify, Logout, Pageview, Record};
        use LinkKind::{Cookie, Unverified, Verified};
        // (kind, cookie contact, session link, token, claimed contact, proof required)
        type Input = (
            EventKind,
            Option<&'static str>,
            Option<(&'static str, LinkKind)>,
            (bool, bool),
            Option<&'static str>,
            bool,
        );
        // (valid token, bound to the visitor)
        const NO_TOKEN: (bool, bool) = (false, false);
        const UNBOUND: (bool, bool) = (true, false);
        const BOUND: (bool, bool) = (true, true);
        let s = |id: &str| id.to_owned();
        let decision =
            |link: Option<(&str, LinkKind)>, cookie, claims: Option<&str>, close| Decision {
                link_session_to: link.map(|(id, kind)| (id.to_owned(), kind)),
                cookie,
                apply_claims_to: claims.map(str::to_owned),
                close_session: close,
            };
        let cases: Vec<(&str, Input, Decision)> = vec![
            (
                "anonymous",
                (Pageview, None, None, NO_TOKEN, None, false),
                decision(None, Keep, None, false),
            ),
            (
                "recognised cookie links the session",
                (Pageview, Some("A"), None, NO_TOKEN, None, false),
                decision(Some(("A", Cookie)), Keep, None, false),
            ),
            (
                "a link in place is not written again",
                (
                    Pageview,
                    Some("A"),
                    Some(("A", Cookie)),
                    NO_TOKEN,
                    None,
                    false,
                ),
                decision(None, Keep, None, false),
            ),
            (
                "a verified link does not weaken to a cookie link",
                (
                    Record,
                    Some("A"),
                    Some(("A", Verified)),
                    NO_TOKEN,
                    None,
                    false,
                ),
                decision(None, Keep, None, false),
            ),
            (
                "unverified claim links the session only",
                (Identify, None, None, NO_TOKEN, Some("B"), false),
                decision(Some(("B", Unverified)), Keep, None, false),
            ),
            (
                "unverified claim on a pageview links the session only",
                (Pageview, None, None, NO_TOKEN, Some("B"), false),
                decision(Some(("B", Unverified)), Keep, None, false),
            ),
            (
                "a later unverified claim replaces an unverified one",
                (
                    Identify,
                    None,
                    Some(("B", Unverified)),
                    NO_TOKEN,
                    Some("C"),
                    false,
                ),
                decision(Some(("C", Unverified)), Keep, None, false),
            ),
            (
                "an unverified claim never replaces a verified link",
                (
                    Identify,
                    None,
                    Some(("B", Verified)),
                    NO_TOKEN,
                    Some("C"),
                    false,
                ),
                decision(None, Keep, None, false),
            ),
            (
                "an unverified claim never replaces a cookie: cookie first",
                (Identify, Some("A"), None, NO_TOKEN, Some("B"), false),
                decision(Some(("A", Cookie)), Keep, None, false),
            ),
            (
                "verified: cookie added, claims applied",
                (Identify, None, None, BOUND, Some("B"), true),
                decision(Some(("B", Verified)), AddTo(s("B")), Some("B"), false),
            ),
            (
                "verified upgrades an unverified link of the same contact",
                (
                    Identify,
                    None,
                    Some(("B", Unverified)),
                    BOUND,
                    Some("B"),
                    false,
                ),
                decision(Some(("B", Verified)), AddTo(s("B")), Some("B"), false),
            ),
            (
                "verified on a pageview (traits ride on every event)",
                (Pageview, None, None, BOUND, Some("B"), false),
                decision(Some(("B", Verified)), AddTo(s("B")), Some("B"), false),
            ),
            (
                "verified, same contact as the cookie",
                (
                    Identify,
                    Some("A"),
                    Some(("A", Cookie)),
                    BOUND,
                    Some("A"),
                    false,
                ),
                decision(Some(("A", Verified)), Keep, Some("A"), false),
            ),
            (
                "verified A to B on identify moves the cookie",
                (
                    Identify,
                    Some("A"),
                    Some(("A", Verified)),
                    BOUND,
                    Some("B"),
                    false,
                ),
                decision(
                    Some(("B", Verified)),
                    Move {
                        from: s("A"),
                        to: s("B"),
                    },
                    Some("B"),
                    false,
                ),
            ),
            (
                "verified B on a record event: A stays, nothing written",
                (
                    Record,
                    Some("A"),
                    Some(("A", Cookie)),
                    BOUND,
                    Some("B"),
                    false,
                ),
                decision(None, Keep, None, false),
            ),
            (
                "unbound token: the session is linked, no cookie is put on the contact",
                (Identify, None, None, UNBOUND, Some("B"), false),
                decision(Some(("B", Verified)), Keep, Some("B"), false),
            ),
            (
                "unbound token does not override a recognised browser",
                (
                    Identify,
                    Some("A"),
                    Some(("A", Cookie)),
                    UNBOUND,
                    Some("B"),
                    false,
                ),
                decision(None, Keep, None, false),
            ),
            (
                "unbound token of the cookie's own contact verifies the link",
                (
                    Identify,
                    Some("A"),
                    Some(("A", Cookie)),
                    UNBOUND,
                    Some("A"),
                    false,
                ),
                decision(Some(("A", Verified)), Keep, Some("A"), false),
            ),
            (
                "unbound token proves a logout of its own contact",
                (
                    Logout,
                    Some("A"),
                    Some(("A", Verified)),
                    UNBOUND,
                    Some("A"),
                    true,
                ),
                decision(None, RemoveFrom(s("A")), None, true),
            ),
            (
                "unbound token does not take a session over from another contact",
                (
                    Identify,
                    None,
                    Some(("A", Verified)),
                    UNBOUND,
                    Some("B"),
                    false,
                ),
                decision(None, Keep, None, false),
            ),
            (
                "bound token does",
                (
                    Identify,
                    None,
                    Some(("A", Verified)),
                    BOUND,
                    Some("B"),
                    false,
                ),
                decision(Some(("B", Verified)), AddTo(s("B")), Some("B"), false),
            ),
            (
                "logout of a session verified without a cookie needs proof where required",
                (Logout, None, Some(("A", Verified)), NO_TOKEN, None, true),
                decision(None, Keep, None, false),
            ),
            (
                "... and works with it",
                (
                    Logout,
                    None,
                    Some(("A", Verified)),
                    UNBOUND,
                    Some("A"),
                    true,
                ),
                decision(None, Keep, None, true),
            ),
            (
                "verified identity that matches nobody changes nothing",
                (Identify, None, None, BOUND, None, true),
                decision(None, Keep, None, false),
            ),
            (
                "logout without required proof",
                (
                    Logout,
                    Some("A"),
                    Some(("A", Cookie)),
                    NO_TOKEN,
                    None,
                    false,
                ),
                decision(None, RemoveFrom(s("A")), None, true),
            ),
            (
                "logout with proof where it is required",
                (
                    Logout,
                    Some("A"),
                    Some(("A", Verified)),
                    BOUND,
                    Some("A"),
                    true,
                ),
                decision(None, RemoveFrom(s("A")), None, true),
            ),
            (
                "logout without proof where it is required changes nothing",
                (
                    Logout,
                    Some("A"),
                    Some(("A", Verified)),
                    NO_TOKEN,
                    None,
                    true,
                ),
                decision(None, Keep, None, false),
            ),
            (
                "logout proven for another contact changes nothing",
                (
                    Logout,
                    Some("A"),
                    Some(("A", Verified)),
                    BOUND,
                    Some("B"),
                    true,
                ),
                decision(None, Keep, None, false),
            ),
            (
                "anonymous logout closes the session",
                (Logout, None, None, NO_TOKEN, None, true),
                decision(None, Keep, None, true),
            ),
        ];
        for (name, (kind, cookie, session_link, token, claimed, proof_required), expected) in cases
        {
            let (verified, bound_to_visitor) = token;
            let input = ResolutionInput {
                kind,
                cookie_contact: cookie,
                session_link,
                verified,
                bound_to_visitor,
                claimed_contact: claimed,
                proof_required,
            };
            assert_eq!(decide(input), expected, "{name}");
        }
    }

    const SECRET: &str = "site-secret-of-at-least-some-length";
    /// 2026-11-24T06:15:14Z.
    const NOW_MS: i64 = 1_795_500_914_000;
    const VISITOR: &str = "0b7e0c2a-5b9e-4a57-9f3e-1c2d3e4f5a6b";

    fn context(login_id: Option<&'static str>) -> TokenContext<'static> {
        TokenContext {
            secret: Some(SECRET),
            deployment_id: "shop",
            visitor_id: VISITOR,
            login_id,
            now_ms: NOW_MS,
            max_lifetime_ms: 24 * 3_600_000,
        }
    }

    fn claims(value: Value) -> serde_json::Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn good_claims() -> Value {
        json!({"aud": "shop", "exp": NOW_MS / 1000 + 3600, "sub": "user-42",
               "email": "ann@example.com", "phone_number": "+442079460018",
               "given_name": "Ann", "family_name": "Lee"})
    }

    /// Replaces the token's payload part without re-signing it.
    fn with_payload(token: &str, payload: &Value) -> String {
        let parts: Vec<&str> = token.split('.').collect();
        let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
        format!("{}.{payload}.{}", parts[0], parts[2])
    }

    /// A token signed by hand with another header (HMAC over the given header).
    fn with_header(header: &str, payload: &Value, key: &str) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(input.as_bytes());
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    #[test]
    fn the_worked_example_of_the_docs_is_pinned() {
        // docs/identity.md signs exactly these bytes; its Python, Node and PHP examples
        // print this token (checked by the integration test `identity_docs`).
        // The token was computed with Python's hmac module, not with this code.
        let claims = claims(
            json!({"aud": "shop", "email": "ann@example.com", "exp": 1795504514, "sub": "user-42"}),
        );
        let token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
            eyJhdWQiOiJzaG9wIiwiZW1haWwiOiJhbm5AZXhhbXBsZS5jb20iLCJleHAiOjE3OTU1MDQ1MTQsInN1YiI6InVzZXItNDIifQ.\
            tr2P8AFwTaLPSSDSMMe56YsGdFgMC3AxdDBf_CispIc";
        assert_eq!(
            sign_identity_token("change-me-to-32-random-bytes-hex", &claims),
            token
        );
        let context = TokenContext {
            secret: Some("change-me-to-32-random-bytes-hex"),
            login_id: Some("user-42"),
            now_ms: 1_795_500_914_000,
            ..context(None)
        };
        assert!(matches!(
            verify_identity_token(context, Some(token)),
            TokenCheck::Valid(_)
        ));
    }

    #[test]
    fn token_verification_table() {
        let good = sign_identity_token(SECRET, &claims(good_claims()));
        let sign = |value: Value| sign_identity_token(SECRET, &claims(value));
        let valid = TokenCheck::Valid(VerifiedIdentity {
            login_id: Some("user-42".into()),
            email: EmailAddress::parse("ann@example.com"),
            phone: PhoneNumber::parse_e164("+442079460018"),
            first_name: Some("Ann".into()),
            last_name: Some("Lee".into()),
            bound_to_visitor: false,
        });
        let mut other = good_claims();
        let exp = NOW_MS / 1000 + 3600;
        let invalid = |reason| TokenCheck::Invalid(reason);
        let long = "a".repeat(MAX_IDENTITY_TOKEN_BYTES + 1);
        other["email"] = json!("mallory@example.com");
        let cases: Vec<(&str, TokenContext<'static>, Option<String>, TokenCheck)> = vec![
            (
                "good",
                context(Some("user-42")),
                Some(good.clone()),
                valid.clone(),
            ),
            (
                "good without loginId on the event",
                context(None),
                Some(good.clone()),
                valid,
            ),
            ("missing", context(None), None, TokenCheck::Missing),
            (
                "no secret",
                TokenContext {
                    secret: None,
                    ..context(None)
                },
                Some(good.clone()),
                TokenCheck::NoSecret,
            ),
            (
                "wrong secret",
                TokenContext {
                    secret: Some("another-secret"),
                    ..context(None)
                },
                Some(good.clone()),
                invalid("signature does not match"),
            ),
            (
                "payload swapped for another email, signature kept",
                context(None),
                Some(with_payload(&good, &other)),
                invalid("signature does not match"),
            ),
            (
                "loginId on the event is not sub",
                context(Some("user-43")),
                Some(good.clone()),
                invalid("loginId is not the token's sub"),
            ),
            (
                "loginId on the event, no sub in the token",
                context(Some("user-42")),
                Some(sign(
                    json!({"aud": "shop", "exp": exp, "email": "ann@example.com"}),
                )),
                invalid("loginId is not the token's sub"),
            ),
            (
                "another deployment",
                context(None),
                Some(sign(json!({"aud": "other", "exp": exp, "sub": "u"}))),
                invalid("aud is not the deployment"),
            ),
            (
                "aud as an array",
                context(None),
                Some(sign(json!({"aud": ["x", "shop"], "exp": exp, "sub": "u"}))),
                TokenCheck::Valid(VerifiedIdentity {
                    login_id: Some("u".into()),
                    ..VerifiedIdentity::default()
                }),
            ),
            (
                "no aud",
                context(None),
                Some(sign(json!({"exp": exp, "sub": "u"}))),
                invalid("aud is not the deployment"),
            ),
            (
                "no exp",
                context(None),
                Some(sign(json!({"aud": "shop", "sub": "u"}))),
                invalid("exp is missing"),
            ),
            (
                "expired",
                context(None),
                Some(sign(
                    json!({"aud": "shop", "exp": NOW_MS / 1000 - 61, "sub": "u"}),
                )),
                invalid("expired"),
            ),
            (
                "exp as text",
                context(None),
                Some(sign(
                    json!({"aud": "shop", "exp": "9999999999", "sub": "u"}),
                )),
                invalid("a time claim is not whole seconds"),
            ),
            (
                "exp too far away",
                context(None),
                Some(sign(
                    json!({"aud": "shop", "exp": NOW_MS / 1000 + 25 * 3600, "sub": "u"}),
                )),
                invalid("exp is further away than the deployment allows"),
            ),
            (
                "not valid yet",
                context(None),
                Some(sign(
                    json!({"aud": "shop", "exp": exp, "nbf": NOW_MS / 1000 + 600, "sub": "u"}),
                )),
                invalid("not valid yet"),
            ),
            (
                "bound to this visitor",
                context(None),
                Some(sign(
                    json!({"aud": "shop", "exp": exp, "sub": "u", "vid": VISITOR.to_uppercase()}),
                )),
                TokenCheck::Valid(VerifiedIdentity {
                    login_id: Some("u".into()),
                    bound_to_visitor: true,
                    ..VerifiedIdentity::default()
                }),
            ),
            (
                "bound to another visitor",
                context(None),
                Some(sign(
                    json!({"aud": "shop", "exp": exp, "sub": "u", "vid": "5d3c1b2a-0000-4000-8000-00000000beef"}),
                )),
                invalid("vid is another visitor"),
            ),
            (
                "names no one",
                context(None),
                Some(sign(
                    json!({"aud": "shop", "exp": exp, "given_name": "Ann"}),
                )),
                invalid("names no one: no sub, email or phone_number"),
            ),
            (
                "email claim that is no address",
                context(None),
                Some(sign(json!({"aud": "shop", "exp": exp, "email": "nobody"}))),
                invalid("email is not an address"),
            ),
            (
                "phone claim that is not E.164",
                context(None),
                Some(sign(
                    json!({"aud": "shop", "exp": exp, "phone_number": "020 7946 0018"}),
                )),
                invalid("phone_number is not E.164"),
            ),
            (
                "alg none",
                context(None),
                Some(format!(
                    "{}.{}.",
                    URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
                    URL_SAFE_NO_PAD.encode(good_claims().to_string())
                )),
                invalid("alg is not HS256"),
            ),
            (
                "alg HS512",
                context(None),
                Some(with_header(r#"{"alg":"HS512"}"#, &good_claims(), SECRET)),
                invalid("alg is not HS256"),
            ),
            (
                "critical extension",
                context(None),
                Some(with_header(
                    r#"{"alg":"HS256","crit":["x"]}"#,
                    &good_claims(),
                    SECRET,
                )),
                invalid("crit is not supported"),
            ),
            (
                "two parts",
                context(None),
                Some("a.b".into()),
                invalid("not three dot-separated parts"),
            ),
            (
                "four parts",
                context(None),
                Some(format!("{good}.x")),
                invalid("not three dot-separated parts"),
            ),
            (
                "padded base64",
                context(None),
                Some(format!("{good}=")),
                invalid("not base64url"),
            ),
            (
                "too long",
                context(None),
                Some(long),
                invalid("token too long"),
            ),
            (
                "truncated signature",
                context(None),
                Some(good[..good.len() - 3].to_owned()),
                invalid("signature does not match"),
            ),
            (
                "the old scheme's hex signature",
                context(None),
                Some("f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8".into()),
                invalid("not three dot-separated parts"),
            ),
        ];
        for (name, context, token, expected) in cases {
            assert_eq!(
                verify_identity_token(context, token.as_deref()),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn authenticated_belongs_to_the_current_link() {
        use LinkKind::{Cookie, Unverified, Verified};
        // (cookie, session link, authenticated before, verified, bound, claimed, after)
        type Case<'a> = (
            Option<&'a str>,
            Option<(&'a str, LinkKind)>,
            bool,
            bool,
            bool,
            Option<&'a str>,
            bool,
        );
        #[rustfmt::skip]
        let cases: [Case<'_>; 10] = [
            (None, None, false, false, false, Some("A"), false),
            (None, None, false, true, true, Some("A"), true),
            (None, Some(("A", Unverified)), false, true, false, Some("A"), true),
            (Some("A"), Some(("A", Cookie)), false, true, false, Some("A"), true),
            // Someone else's unbound token on a recognised browser: A stays, unproven.
            (Some("A"), Some(("A", Cookie)), false, true, false, Some("B"), false),
            // A signed-in user the contact centre does not know.
            (None, None, false, true, false, None, true),
            (Some("A"), Some(("A", Verified)), false, true, false, None, false),
            // Still A, proven before: stays authenticated.
            (Some("A"), Some(("A", Verified)), true, false, false, None, true),
            // An unknown signed-in user then claims A by a typed email: not proven.
            (None, None, true, false, false, Some("A"), false),
            // A bound token of B moves the session: proven for B.
            (Some("A"), Some(("A", Verified)), true, true, true, Some("B"), true),
        ];
        for (cookie, session_link, before, verified, bound, claimed, expected) in cases {
            let input = ResolutionInput {
                kind: EventKind::Identify,
                cookie_contact: cookie,
                session_link,
                verified,
                bound_to_visitor: bound,
                claimed_contact: claimed,
                proof_required: false,
            };
            let decision = decide(input);
            assert_eq!(
                authenticated_after(&input, &decision, before),
                expected,
                "{input:?} before {before}: {decision:?}"
            );
        }
    }

    #[test]
    fn link_kinds_round_trip_and_order() {
        for kind in [LinkKind::Unverified, LinkKind::Cookie, LinkKind::Verified] {
            assert_eq!(LinkKind::parse(kind.as_str()), Some(kind));
        }
        assert!(LinkKind::Unverified < LinkKind::Cookie && LinkKind::Cookie < LinkKind::Verified);
        assert_eq!(LinkKind::parse("verified"), None);
    }
}
