//! Identity tokens: the check of the token a site's server signs (`identity`).
//!
//! Input: a claims text, a line feed, and a token text (`{"aud":"shop",...}\n<token>`).
//!
//! Invariants: checking any token never panics, and a valid one vouches only for
//! parsed identifiers (an address, an E.164 number) and names someone; a token that
//! the collector's own signer made from any JSON object of claims always passes the
//! signature check, and the same token with one bit of its signature flipped never
//! passes it.

#![no_main]

use footpath_collector::contacts::{EmailAddress, PhoneNumber};
use footpath_collector::identity::{
    sign_identity_token, verify_identity_token, TokenCheck, TokenContext,
};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "fuzzing-secret-fuzzing-secret-0123";
/// 2026-11-24T06:15:14Z.
const NOW_MS: i64 = 1_795_500_914_000;

fn context() -> TokenContext<'static> {
    TokenContext {
        secret: Some(SECRET),
        deployment_id: "shop",
        visitor_id: "0b7e0c2a-5b9e-4a57-9f3e-1c2d3e4f5a6b",
        login_id: None,
        now_ms: NOW_MS,
        max_lifetime_ms: 24 * 3_600_000,
    }
}

fn check_valid(check: &TokenCheck) {
    if let TokenCheck::Valid(identity) = check {
        assert!(identity.login_id.is_some() || identity.has_identifiers(), "{identity:?}");
        if let Some(email) = &identity.email {
            assert!(EmailAddress::parse(email.as_str()).is_some(), "{identity:?}");
        }
        if let Some(phone) = &identity.phone {
            assert!(PhoneNumber::parse_e164(&phone.e164).is_some(), "{identity:?}");
        }
    }
}

fuzz_target!(|input: &str| {
    let (claims, token) = input.split_once('\n').unwrap_or((input, input));
    check_valid(&verify_identity_token(context(), Some(token)));

    let Ok(serde_json::Value::Object(claims)) = serde_json::from_str(claims) else {
        return;
    };
    let signed = sign_identity_token(SECRET, &claims);
    let check = verify_identity_token(context(), Some(&signed));
    assert_ne!(check, TokenCheck::Invalid("signature does not match"), "{signed}");
    check_valid(&check);

    // One flipped bit in the signature's last full byte (its final base64 character
    // carries padding bits only partly, so flip an earlier one).
    let mut tampered = signed.into_bytes();
    let index = tampered.len() - 2;
    tampered[index] = match tampered[index] {
        b'A' => b'B',
        _ => b'A',
    };
    let tampered = String::from_utf8(tampered).expect("base64url is ASCII");
    assert_eq!(
        verify_identity_token(context(), Some(&tampered)),
        TokenCheck::Invalid("signature does not match"),
        "{tampered}"
    );
});
