//! The identity docs' examples: the Python, Node and PHP code of `docs/identity.md`
//! (kept runnable in `docs/identity/`) prints the token that the collector makes and
//! accepts for the worked example, and the docs show that token.

use std::path::Path;
use std::process::Command;

use footpath_collector::identity::sign_identity_token;
use serde_json::json;

const WORKED_EXAMPLE_SECRET: &str = "change-me-to-32-random-bytes-hex";

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn expected_token() -> String {
    let claims =
        json!({"aud": "shop", "email": "ann@example.com", "exp": 1795504514, "sub": "user-42"});
    sign_identity_token(WORKED_EXAMPLE_SECRET, claims.as_object().unwrap())
}

#[test]
fn the_docs_show_the_worked_examples_token() {
    let docs = std::fs::read_to_string(repository().join("docs/identity.md")).unwrap();
    let token = expected_token();
    assert!(docs.contains(&token), "docs/identity.md must show {token}");
    let (header, rest) = token.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    for part in [header, payload, signature] {
        assert!(
            docs.contains(&format!("`{part}`")),
            "docs/identity.md must show {part}"
        );
    }
}

#[test]
fn the_python_node_and_php_examples_print_the_same_token() {
    let expected = expected_token();
    let examples = [
        ("python3", "sign.py"),
        ("node", "sign.mjs"),
        ("php", "sign.php"),
    ];
    for (program, file) in examples {
        let path = repository().join("docs/identity").join(file);
        let output = Command::new(program)
            .arg(&path)
            .output()
            .unwrap_or_else(|error| {
                panic!("{program} {file}: {error} (cargo xtask setup installs it)")
            });
        assert!(output.status.success(), "{program} {file}: {output:?}");
        let printed = String::from_utf8(output.stdout).unwrap();
        assert_eq!(printed.trim(), expected, "{program} {file}");
    }
}
