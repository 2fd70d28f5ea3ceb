use super::*;

fn s(text: &str) -> Val {
    Val::Str(text.to_owned())
}

fn n(number: f64) -> Val {
    Val::Number(number)
}

fn obj(entries: Vec<(&str, Val)>) -> Val {
    Val::Object(
        entries
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect(),
    )
}

fn list(items: Vec<Val>) -> Val {
    Val::List(items)
}

fn click(rule: Vec<(&str, Val)>) -> Val {
    obj(vec![("clickEvents", list(vec![obj(rule)]))])
}

#[test]
fn good_options_are_read_with_their_defaults() {
    let rules = click_options(&click(vec![
        ("selector", s("#buy")),
        ("eventName", s("buy_clicked")),
        (
            "customAttributes",
            obj(vec![
                ("tier", s("gold")),
                ("n", n(2.0)),
                ("ok", Val::Bool(true)),
                (
                    "at",
                    obj(vec![("dataType", s("number")), ("value", n(3.0))]),
                ),
            ]),
        ),
    ]))
    .unwrap();
    assert_eq!(rules[0].selector, "#buy");
    assert_eq!(
        rules[0].custom_attributes,
        vec![
            ("tier".to_owned(), Value::Text("gold".into())),
            ("n".to_owned(), Value::Number(2.0)),
            ("ok".to_owned(), Value::Flag(true)),
            (
                "at".to_owned(),
                Value::Typed("number".into(), Box::new(Value::Number(3.0)))
            ),
        ]
    );
    let form = form_options(&obj(vec![("formName", s("contact"))])).unwrap();
    assert!(form.capture_form_data_on_submit && form.capture_form_data_on_abandon);
    assert!(form.traits_mapper.is_empty());
    let mapped = form_options(&obj(vec![
        ("formName", s("contact")),
        ("captureFormDataOnAbandon", Val::Bool(false)),
        (
            "traitsMapper",
            list(vec![obj(vec![
                ("fieldName", s("mail")),
                ("traitName", s("email")),
            ])]),
        ),
    ]))
    .unwrap();
    assert!(!mapped.capture_form_data_on_abandon);
    assert_eq!(
        mapped.traits_mapper,
        vec![("mail".to_owned(), "email".to_owned())]
    );
}

#[test]
fn bad_options_are_refused_naming_the_option() {
    let clicks: Vec<(Val, &str)> = vec![
        (Val::Undefined, "clickEvents: is needed"),
        (s("x"), "options: must be an object"),
        (obj(vec![("clickEvents", list(vec![]))]), "clickEvents: needs 1 to 50 rules"),
        (
            obj(vec![("clickEvent", list(vec![]))]),
            "options.clickEvent: is not an option (clickEvents)",
        ),
        (
            click(vec![("selector", s("a")), ("eventName", n(5.0))]),
            "clickEvents[0].eventName: must be a string",
        ),
        (
            click(vec![("selector", s("a")), ("eventName", s("x-y"))]),
            "clickEvents[0].eventName: may contain only letters, digits and _",
        ),
        (
            click(vec![("selector", s(" ")), ("eventName", s("x"))]),
            "clickEvents[0].selector: must not be empty",
        ),
        (
            click(vec![("selector", s("a")), ("eventName", s("x")), ("colour", n(1.0))]),
            "clickEvents[0].colour: is not an option (selector, eventName, customAttributes)",
        ),
        (
            click(vec![
                ("selector", s("a")),
                ("eventName", s("x")),
                ("customAttributes", obj(vec![("k", list(vec![n(1.0)]))])),
            ]),
            "clickEvents[0].customAttributes.k: must be a string, number, boolean or { dataType, value }",
        ),
        (
            click(vec![
                ("selector", s("a")),
                ("eventName", s("x")),
                ("customAttributes", obj(vec![("a b", n(1.0))])),
            ]),
            "clickEvents[0].customAttributes.a b: the name may contain only letters, digits and _",
        ),
        (
            click(vec![
                ("selector", s("a")),
                ("eventName", s("x")),
                ("customAttributes", obj(vec![("k", obj(vec![("dataType", s("number"))]))])),
            ]),
            "clickEvents[0].customAttributes.k.value: must be a string, number or boolean",
        ),
        (
            click(vec![
                ("selector", s("a")),
                ("eventName", s("x")),
                ("customAttributes", obj(vec![("k", s(&"x".repeat(1025)))])),
            ]),
            "clickEvents[0].customAttributes.k: must be a string, number, boolean or { dataType, value }",
        ),
        (
            click(vec![
                ("selector", s("a")),
                ("eventName", s("x")),
                (
                    "customAttributes",
                    obj(vec![("k", obj(vec![("dataType", s("t")), ("value", s(&"x".repeat(1025)))]))]),
                ),
            ]),
            "clickEvents[0].customAttributes.k.value: longer than 1024 bytes",
        ),
        (
            click(vec![("selector", s("a")), ("eventName", s("x")), ("customAttributes", n(1.0))]),
            "clickEvents[0].customAttributes: must be an object",
        ),
    ];
    for (options, expected) in clicks {
        assert_eq!(click_options(&options).unwrap_err(), expected);
    }
    let scroll = scroll_depth_options(&obj(vec![(
        "scrollDepthEvents",
        list(vec![obj(vec![
            ("percentage", n(120.0)),
            ("eventName", s("x")),
        ])]),
    )]))
    .unwrap_err();
    assert_eq!(
        scroll,
        "scrollDepthEvents[0].percentage: must be above 0, at most 100"
    );
    for idle_after in [n(0.0), n(f64::NAN), n(86_401.0)] {
        let idle = idle_options(&obj(vec![(
            "idleEvents",
            list(vec![obj(vec![
                ("idleAfter", idle_after),
                ("eventName", s("x")),
            ])]),
        )]))
        .unwrap_err();
        assert_eq!(
            idle,
            "idleEvents[0].idleAfter: must be above 0, at most 86400 seconds"
        );
    }
    let forms: Vec<(Val, &str)> = vec![
        (obj(vec![]), "formName: is needed"),
        (
            obj(vec![("formName", s(""))]),
            "formName: must be a text of 1 to 1024 bytes",
        ),
        (
            obj(vec![
                ("formName", s("f")),
                ("captureFormDataOnSubmit", s("yes")),
            ]),
            "captureFormDataOnSubmit: must be true or false",
        ),
        (
            obj(vec![
                ("formName", s("f")),
                (
                    "traitsMapper",
                    list(vec![obj(vec![
                        ("fieldName", s("mail")),
                        ("traitName", s("e-mail")),
                    ])]),
                ),
            ]),
            "traitsMapper[0].traitName: may contain only letters, digits and _",
        ),
        (
            obj(vec![("formName", s("f")), ("traitsMapper", s("mail"))]),
            "traitsMapper: must be an array of at most 50 { fieldName, traitName }",
        ),
    ];
    for (options, expected) in forms {
        assert_eq!(form_options(&options).unwrap_err(), expected);
    }
}

#[test]
fn url_change_options_take_only_a_function() {
    let hook = |value| obj(vec![("onUrlChange", value)]);
    assert_eq!(url_change_options(&Val::Undefined), Ok(false));
    assert_eq!(url_change_options(&Val::Null), Ok(false));
    assert_eq!(url_change_options(&hook(Val::Undefined)), Ok(false));
    assert_eq!(url_change_options(&hook(Val::Function)), Ok(true));
    let refused: Vec<(Val, &str)> = vec![
        (s("x"), "options: must be an object"),
        (Val::Function, "options: must be an object"),
        (hook(s("f")), "options.onUrlChange: must be a function"),
        (hook(Val::Null), "options.onUrlChange: must be a function"),
        (
            obj(vec![("onUrlChange", Val::Function), ("x", n(1.0))]),
            "options.x: is not an option (onUrlChange)",
        ),
    ];
    for (options, expected) in refused {
        assert_eq!(url_change_options(&options).unwrap_err(), expected);
    }
}

#[test]
fn secrets_and_non_data_are_never_captured() {
    let input = |kind, name, autocomplete| Field {
        tag: "input",
        kind,
        name,
        autocomplete,
        excluded: false,
    };
    let refused = [
        input("password", "anything", ""),
        input("hidden", "csrf", ""),
        input("file", "cv", ""),
        input("submit", "send", ""),
        input("text", "pin", ""),
        input("text", "card_cvc", ""),
        input("text", "cardCvv", ""),
        input("text", "CC", ""),
        input("text", "card-number", ""),
        input("text", "creditCardNo", ""),
        input("text", "user_password_again", ""),
        input("text", "iban", ""),
        input("text", "x", "cc-number"),
        input("text", "x", "billing cc-exp"),
        input("text", "x", "new-password"),
        input("text", "x", "one-time-code"),
        input("text", "x", "CC-Number"),
        input("text", "x", "shipping New-Password"),
        input("text", "myPIN", ""),
        input("text", "CVV2", ""),
        Field {
            excluded: true,
            ..input("text", "notes", "")
        },
        Field {
            tag: "button",
            ..input("", "go", "")
        },
    ];
    for field in refused {
        assert!(!may_capture(&field), "{field:?}");
    }
    let allowed = [
        input("text", "shipping_address", ""),
        input("email", "email", "email"),
        input("text", "spinner", ""),
        input("checkbox", "newsletter", ""),
        input("text", "x", "c"),
        input("text", "opinion", "cc"),
        Field {
            tag: "select",
            ..input("", "topic", "")
        },
        Field {
            tag: "textarea",
            ..input("", "message", "")
        },
    ];
    for field in allowed {
        assert!(may_capture(&field), "{field:?}");
    }
}

#[test]
fn field_names_become_attribute_names() {
    assert_eq!(attribute_name("email").as_deref(), Some("email"));
    assert_eq!(
        attribute_name("user[email]").as_deref(),
        Some("user_email_")
    );
    assert_eq!(attribute_name("first-name").as_deref(), Some("first_name"));
    assert_eq!(attribute_name("[]"), None);
    assert_eq!(attribute_name(""), None);
    assert_eq!(attribute_name(&"a".repeat(100)).map(|n| n.len()), Some(64));
}

#[test]
fn values_are_clipped_at_a_character_boundary() {
    assert_eq!(clip("short"), "short");
    let long = "é".repeat(600);
    let clipped = clip(&long);
    assert_eq!(clipped.len(), 1024);
    assert!(clipped.chars().all(|c| c == 'é'));
    let odd = cat(&["a", &"é".repeat(600)]);
    assert_eq!(clip(&odd).len(), 1023);
}

#[test]
fn decimals() {
    for n in [0usize, 7, 10, 50, 1024, 86_400] {
        assert_eq!(decimal(n), n.to_string());
    }
}

#[test]
fn scroll_depth_is_the_bottom_of_the_viewport() {
    assert_eq!(scroll_depth(0.0, 800.0, 600.0), 100.0);
    assert_eq!(scroll_depth(0.0, 500.0, 2000.0), 25.0);
    assert_eq!(scroll_depth(1500.0, 500.0, 2000.0), 100.0);
    assert_eq!(scroll_depth(3000.0, 500.0, 2000.0), 100.0);
    assert_eq!(scroll_depth(-50.0, 500.0, 2000.0), 25.0);
}

#[test]
fn blank_is_trim_is_empty() {
    for text in ["", " ", "\t\n", "\u{a0}\u{2003}", "a", " #b ", "\u{a0}x"] {
        assert_eq!(blank(text), text.trim().is_empty(), "{text:?}");
    }
}

#[test]
fn the_excluded_selector_names_the_exclude_attribute() {
    assert_eq!(EXCLUDED, cat(&["[", EXCLUDE_ATTRIBUTE, "]"]));
}

#[test]
fn the_longer_message_names_the_value_limit() {
    assert_eq!(
        LONGER,
        cat(&[": longer than ", &decimal(MAX_VALUE_BYTES), " bytes"])
    );
}

#[test]
fn the_form_reader_skips_what_the_site_excludes() {
    // `web/dom.js` reads the form's controls; the selector there must be this one.
    let reader = include_str!("../web/dom.js");
    assert!(reader.contains(&cat(&["'", EXCLUDED, "'"])));
}
