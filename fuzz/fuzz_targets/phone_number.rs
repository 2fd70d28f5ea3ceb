//! Phone numbers: the strict E.164 parse that identity resolution applies to phone
//! traits, the lenient parse of the contacts API (with a default region), and the
//! identity traits read from an event.
//!
//! Input: a phone number as text, optionally preceded by an ISO 3166 region code and a
//! line feed (`GB\n020 7946 0018`).
//!
//! Invariants: a number accepted as E.164 is its own E.164 form; every parsed number's
//! E.164 form is accepted as E.164 and parses back to the same E.164 form, and so does
//! its international display form; the identity traits hold the strict parse of the
//! `phone` trait.

#![no_main]

use std::collections::BTreeMap;

use footpath_collector::contacts::PhoneNumber;
use footpath_collector::identity::TraitIdentity;
use footpath_protocol::v1::AttributeValue;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    let (region, text) = match input.split_once('\n') {
        Some((region, text)) => (Some(region), text),
        None => (None, input),
    };

    let strict = PhoneNumber::parse_e164(text);
    if let Some(number) = &strict {
        assert_eq!(number.e164, text);
        check_round_trips(number);
    }
    if let Some(number) = PhoneNumber::parse(text, region) {
        check_round_trips(&number);
    }

    let traits = BTreeMap::from([("phone".to_owned(), AttributeValue::String(text.to_owned()))]);
    let identity = TraitIdentity::from_traits(&traits);
    let expected = PhoneNumber::parse_e164(text.trim());
    assert_eq!(
        identity.phone.as_ref().map(|phone| &phone.e164),
        expected.as_ref().map(|phone| &phone.e164),
        "phone trait {text:?}"
    );
});

fn check_round_trips(number: &PhoneNumber) {
    let again = PhoneNumber::parse_e164(&number.e164).unwrap_or_else(|| {
        panic!(
            "E.164 form {:?} is not accepted as E.164: {number:?}",
            number.e164
        )
    });
    assert_eq!(again.e164, number.e164);
    // Not `again.display == number.display`: the lenient parse keeps an extension
    // (`+226 71 15 55 37 ext. 7637735` from `+2267115553SX7637735`) in the display
    // form, which the E.164 form cannot carry.
    let from_display = PhoneNumber::parse(&number.display, None)
        .unwrap_or_else(|| panic!("display form does not parse: {number:?}"));
    assert_eq!(from_display.e164, number.e164, "{number:?}");
}
