use super::*;

fn sample_batch() -> Batch {
    let mut attributes = Map::new();
    attributes.insert(
        "sku".to_owned(),
        AttributeValue::String("A-1 \"quoted\" \\ \n\u{1}\u{2028}é😀".to_owned()),
    );
    attributes.insert(
        "price".to_owned(),
        AttributeValue::Number(Number::parse("19.99").unwrap()),
    );
    attributes.insert(
        "qty".to_owned(),
        AttributeValue::Number(Number::parse("-3").unwrap()),
    );
    attributes.insert("gift".to_owned(), AttributeValue::Bool(true));
    let mut traits = Map::new();
    traits.insert(
        "email".to_owned(),
        AttributeValue::String("ada@example.com".to_owned()),
    );
    let mut campaign = Map::new();
    campaign.insert("utm_source".to_owned(), "newsletter".to_owned());
    Batch {
        v: VERSION,
        deployment_id: "demo".to_owned(),
        visitor_id: "0b0f5f8e-6a57-4a8e-9b1e-3f3d2b1c0a99".to_owned(),
        sent_at: 1_764_000_000_123,
        events: vec![
            Event {
                id: "019ab000-0000-7000-8000-000000000001".to_owned(),
                kind: EventKind::Pageview,
                name: PAGE_VIEWED.to_owned(),
                time: 1_764_000_000_000,
                session_id: Some("s1".to_owned()),
                page: Some(Page {
                    url: "https://shop.example/products?q=shoes".to_owned(),
                    title: "Products".to_owned(),
                    referrer: String::new(),
                    lang: "en".to_owned(),
                    keywords: "shoes, boots".to_owned(),
                    search_query: Some("shoes".to_owned()),
                    campaign,
                }),
                context: Some(Context {
                    browser_lang: "en-GB".to_owned(),
                    screen_width: 1920,
                    screen_height: 1080,
                    screen_density: 200,
                    viewport_width: 1200,
                    viewport_height: 800,
                }),
                login_id: None,
                attributes: Map::new(),
                traits: Map::new(),
            },
            Event {
                id: "019ab000-0000-7000-8000-000000000002".to_owned(),
                kind: EventKind::Record,
                name: "cart_added".to_owned(),
                time: -5,
                session_id: None,
                page: None,
                context: None,
                login_id: Some("ada".to_owned()),
                attributes,
                traits,
            },
        ],
    }
}

#[test]
fn encoder_output_decodes_to_the_same_batch() {
    let batch = sample_batch();
    let json = encode_batch(&batch);
    let decoded: Batch = serde_json::from_str(&json).expect(&json);
    assert_eq!(decoded, batch);
}

#[test]
fn encoder_agrees_with_serde_on_every_field() {
    let batch = sample_batch();
    let ours: serde_json::Value = serde_json::from_str(&encode_batch(&batch)).unwrap();
    let theirs = serde_json::to_value(&batch).unwrap();
    assert_eq!(ours, theirs);
}

#[test]
fn encoder_escapes_control_and_separator_characters() {
    let json = encode_batch(&sample_batch());
    assert!(
        json.contains(r#"\"quoted\" \\ \n\u0001\u2028é😀"#),
        "{json}"
    );
}

#[test]
fn decoding_rejects_malformed_batches() {
    let cases = [
        (
            r#"{"v":1,"deploymentId":"d","visitorId":"x","events":[]}"#,
            "sentAt",
        ),
        (
            r#"{"v":1,"deploymentId":"d","visitorId":"x","sentAt":"soon","events":[]}"#,
            "invalid type",
        ),
        (
            r#"{"v":1,"deploymentId":"d","visitorId":"x","sentAt":1,"events":[{"id":"a","kind":"shout","name":"n","time":1}]}"#,
            "unknown variant",
        ),
        (
            r#"{"v":1,"deploymentId":"d","visitorId":"x","sentAt":1,"events":[{"id":"a","kind":"record","name":"n","time":1,"attributes":{"a":{"nested":1}}}]}"#,
            "did not match any variant",
        ),
        (
            r#"{"v":1,"deploymentId":"d","visitorId":"x","sentAt":1,"events":[{"id":"a","kind":"record","name":"n","time":1,"attributes":{"a":[1]}}]}"#,
            "did not match any variant",
        ),
        (
            r#"{"v":1,"deploymentId":"d","visitorId":"x","sentAt":1,"events":[{"id":"a","kind":"record","time":1}]}"#,
            "name",
        ),
    ];
    for (input, expected) in cases {
        let err = serde_json::from_str::<Batch>(input)
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{input}: {err}");
    }
}

#[test]
fn numbers_accept_json_grammar_only() {
    let cases = [
        ("0", true),
        ("-0", true),
        ("12", true),
        ("1.5", true),
        ("1e+21", true),
        ("2E-7", true),
        ("-12.25e3", true),
        ("", false),
        ("-", false),
        ("01", false),
        ("1.", false),
        (".5", false),
        ("NaN", false),
        ("Infinity", false),
        ("1e", false),
        ("0x10", false),
        (" 1", false),
        ("1 ", false),
    ];
    for (text, ok) in cases {
        assert_eq!(Number::parse(text).is_some(), ok, "{text:?}");
    }
}

#[test]
fn numbers_from_javascript_are_kept_when_finite() {
    // The texts JavaScript gives for these values (`'' + n`).
    let cases = [
        (1.5, "1.5", true),
        (-0.0, "0", true),
        (1e21, "1e+21", true),
        (2e-7, "2e-7", true),
        (f64::NAN, "NaN", false),
        (f64::INFINITY, "Infinity", false),
        (f64::NEG_INFINITY, "-Infinity", false),
    ];
    for (value, text, ok) in cases {
        let number = Number::from_js(value, text.to_owned());
        assert_eq!(number.is_some(), ok, "{text}");
        if ok {
            // What JavaScript writes for a finite number is JSON.
            assert!(Number::parse(text).is_some(), "{text}");
        }
    }
}

#[test]
fn event_names_follow_the_letters_digits_underscore_rule() {
    let long = "a".repeat(MAX_NAME_BYTES + 1);
    let cases: [(&str, Result<(), NameError>); 8] = [
        ("order_completed", Ok(())),
        ("A1_b2", Ok(())),
        ("_", Ok(())),
        ("", Err(NameError::Empty)),
        ("order-completed", Err(NameError::BadCharacter)),
        ("order completed", Err(NameError::BadCharacter)),
        ("café", Err(NameError::BadCharacter)),
        (&long, Err(NameError::TooLong)),
    ];
    for (name, expected) in cases {
        assert_eq!(validate_event_name(name), expected, "{name}");
    }
}

#[test]
fn attribute_values_name_their_journey_api_data_type() {
    assert_eq!(AttributeValue::Bool(false).data_type(), "Boolean");
    assert_eq!(AttributeValue::Bool(false).to_text(), "false");
    let n = AttributeValue::Number(Number::parse("2.5").unwrap());
    assert_eq!((n.data_type(), n.to_text().as_str()), ("Number", "2.5"));
    assert_eq!(AttributeValue::String("x".into()).data_type(), "String");
}

/// The deserialiser `AttributeValue` had before it was hand-written: serde's `untagged`
/// derive over the same variants. The hand-written one must accept exactly what this one
/// accepts and produce the same values.
#[derive(Debug, PartialEq, serde::Deserialize)]
#[serde(untagged)]
enum UntaggedReference {
    Bool(bool),
    Number(Number),
    String(String),
}

impl From<UntaggedReference> for AttributeValue {
    fn from(value: UntaggedReference) -> AttributeValue {
        match value {
            UntaggedReference::Bool(b) => AttributeValue::Bool(b),
            UntaggedReference::Number(n) => AttributeValue::Number(n),
            UntaggedReference::String(s) => AttributeValue::String(s),
        }
    }
}

#[test]
fn attribute_values_deserialise_every_variant_like_the_untagged_derive() {
    let number = |text: &str| AttributeValue::Number(Number(text.to_owned()));
    let cases = [
        ("true", AttributeValue::Bool(true)),
        ("false", AttributeValue::Bool(false)),
        (r#""shoes""#, AttributeValue::String("shoes".to_owned())),
        (r#""""#, AttributeValue::String(String::new())),
        (
            r#""a\"b\\c\u00e9\n""#,
            AttributeValue::String("a\"b\\c\u{e9}\n".to_owned()),
        ),
        (r#""12""#, AttributeValue::String("12".to_owned())),
        (r#""true""#, AttributeValue::String("true".to_owned())),
        ("0", number("0")),
        ("-7", number("-7")),
        ("9223372036854775807", number("9223372036854775807")),
        ("-9223372036854775808", number("-9223372036854775808")),
        // Beyond i64::MAX: serde_json hands over a u64.
        ("9223372036854775808", number("9223372036854775808")),
        ("18446744073709551615", number("18446744073709551615")),
        // Beyond u64::MAX: serde_json hands over an f64.
        ("18446744073709551616", number("18446744073709552000")),
        ("19.99", number("19.99")),
        ("-0", number("-0")),
        ("-0.0", number("-0")),
        ("0.0", number("0")),
        ("1e3", number("1000")),
        ("2.5E-3", number("0.0025")),
        ("1e308", number(&1e308_f64.to_string())),
        ("-1.7976931348623157e308", number(&(-f64::MAX).to_string())),
        ("5e-324", number(&5e-324_f64.to_string())),
        ("1e-400", number("0")),
    ];
    for (input, expected) in cases {
        let value: AttributeValue =
            serde_json::from_str(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(value, expected, "{input}");
        let reference: UntaggedReference = serde_json::from_str(input).unwrap();
        assert_eq!(
            AttributeValue::from(reference),
            expected,
            "{input} (untagged reference)"
        );
    }
}

#[test]
fn attribute_values_refuse_what_is_not_a_flat_value() {
    let cases = [
        (r#"{"nested":1}"#, "found an object"),
        ("{}", "found an object"),
        ("[1]", "found an array"),
        ("[]", "found an array"),
        ("null", "found null"),
    ];
    for (input, expected) in cases {
        let err = serde_json::from_str::<AttributeValue>(input)
            .unwrap_err()
            .to_string();
        assert!(err.contains("did not match any variant"), "{input}: {err}");
        assert!(
            err.contains("expected a string, number or boolean"),
            "{input}: {err}"
        );
        assert!(err.contains(expected), "{input}: {err}");
        assert!(
            serde_json::from_str::<UntaggedReference>(input).is_err(),
            "{input} (untagged reference)"
        );
    }
    // Huge exponents overflow f64; serde_json refuses them before any visitor sees them.
    for input in ["1e400", "-1e400"] {
        assert!(
            serde_json::from_str::<AttributeValue>(input).is_err(),
            "{input}"
        );
        assert!(
            serde_json::from_str::<UntaggedReference>(input).is_err(),
            "{input} (untagged reference)"
        );
    }
}

#[test]
fn attribute_values_refuse_non_finite_floats_from_other_formats() {
    use serde::de::IntoDeserializer;
    let deserializer: serde::de::value::F64Deserializer<serde::de::value::Error> =
        f64::NAN.into_deserializer();
    let err = <AttributeValue as serde::Deserialize>::deserialize(deserializer)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("did not match any variant") && err.contains("non-finite"),
        "{err}"
    );
}

#[test]
fn attribute_values_round_trip_through_serde_json() {
    let text = r#"{"a":true,"b":12,"c":-1.5,"d":"x","e":-0,"f":9223372036854775808}"#;
    let map: Map<AttributeValue> = serde_json::from_str(text).unwrap();
    // `Number`'s serialiser (unchanged) writes integers that fit i64 as such and the
    // rest as f64: "-0" comes back as 0, and u64 beyond i64::MAX loses precision.
    assert_eq!(
        serde_json::to_string(&map).unwrap(),
        r#"{"a":true,"b":12,"c":-1.5,"d":"x","e":0,"f":9.223372036854776e+18}"#
    );
}
