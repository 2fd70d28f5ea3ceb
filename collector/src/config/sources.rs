//! Settings from the environment and from flags, under one naming rule.
//!
//! Every setting of the configuration file can also be given as an environment
//! variable or a flag, and the name is derived the same way for each of them:
//!
//! | file (TOML)                | environment variable              | flag                        |
//! |----------------------------|-----------------------------------|-----------------------------|
//! | `session_timeout_seconds`  | `FOOTPATH_SESSION_TIMEOUT_SECONDS` | `--session-timeout-seconds` |
//! | `[desk]` `title`           | `FOOTPATH_DESK__TITLE`            | `--desk.title`              |
//!
//! The environment variable is `FOOTPATH_` and the setting's name in capitals, a
//! nested table's key joined by two underscores; the flag is the name with dashes (or
//! underscores), a nested key joined by a dot. Later sources win: file, then
//! environment, then flags.
//!
//! A value is read as what the setting holds, without quoting: text for text
//! (`FOOTPATH_DESK__TITLE=2024` is the title "2024"), a number, `true`/`false`, and for
//! a list either comma-separated text (`FOOTPATH_TRUSTED_PROXIES=10.0.0.0/8,::1`) or a
//! TOML array. Settings that are lists of tables (`deployments`, `segments`...) take an
//! inline TOML array: `--deployments '[{ id = "shop", allowed_origins = ["*"] }]'`.
//! The value is decoded by trying, in order, the text itself, a whole number, a
//! boolean, a decimal number, a TOML value and a comma-separated list, and keeping the
//! first that the setting accepts; when none does, the error is the setting's own
//! complaint about the text.

use std::ffi::OsString;
use std::path::Path;

use super::{Config, ConfigError};

/// Every top-level setting of [`Config`], in the order of its fields. A unit test
/// checks this list against the struct, so the two cannot drift apart.
pub const SETTING_NAMES: &[&str] = &[
    "listen_addr",
    "database_path",
    "database_url",
    "sdk_dir",
    "session_timeout_seconds",
    "sweep_interval_seconds",
    "max_body_bytes",
    "max_events_per_batch",
    "max_event_age_hours",
    "api_tokens",
    "deployments",
    "default_phone_region",
    "identity_verification",
    "geoip_database_path",
    "referrer_list_path",
    "trusted_proxies",
    "deployment_privacy",
    "ping_poll_interval_milliseconds",
    "desk",
    "segments",
    "outcomes",
    "max_attributes_per_event",
    "max_name_bytes",
    "max_value_bytes",
    "max_json_nesting_levels",
    "visitor_rate_limit_events_per_minute",
    "client_ip_rate_limit_events_per_minute",
    "header_read_timeout_seconds",
    "body_read_timeout_seconds",
    "max_concurrent_ingest_requests",
    "ingest_queue_capacity_batches",
    "max_batches_per_transaction",
    "postgres_writers",
    "postgres_read_connections",
    "shutdown_grace_seconds",
    "max_user_agent_bytes",
    "max_page_url_bytes",
    "max_page_text_bytes",
    "max_events_per_session",
    "max_search_terms_per_session",
    "visitor_ping_rate_limit_per_minute",
    "client_ip_ping_rate_limit_per_minute",
    "max_open_connections",
    "max_connections_per_address",
    "max_request_head_bytes",
    "metrics_require_token",
    "log_format",
    "shutdown_drain_seconds",
];

/// The prefix of every environment variable the collector reads.
pub const ENV_PREFIX: &str = "FOOTPATH_";

/// `FOOTPATH_*` variables that are not settings but are still the collector's own: the
/// file to read (`--config`) and the older, comma-separated spelling of `api_tokens`
/// (`--api-token`). Neither is reported as unknown.
const ENV_NOT_SETTINGS: &[&str] = &["FOOTPATH_CONFIG", "FOOTPATH_API_TOKEN"];

/// One setting given outside the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// Where it came from, as the user wrote it (`FOOTPATH_DESK__TITLE`, `--desk.title`),
    /// so that an error points at it.
    pub source: String,
    /// The setting's path in the file: `["desk", "title"]`.
    pub path: Vec<String>,
    /// The text as given.
    pub value: String,
}

/// The settings among `vars` (the process environment), in a stable order, and the
/// names of `FOOTPATH_*` variables that are no setting (probably misspelt; the caller
/// warns about them rather than refusing to start, since other tools of the project
/// share the prefix).
pub fn env_overrides(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<(Vec<Override>, Vec<String>), ConfigError> {
    let mut overrides = Vec::new();
    let mut unknown = Vec::new();
    for (name, value) in vars {
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if ENV_NOT_SETTINGS.contains(&name) {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if !SETTING_NAMES.contains(&path[0].as_str()) {
            unknown.push(name.to_owned());
            continue;
        }
        let value = value
            .into_string()
            .map_err(|_| ConfigError::Invalid(format!("{name}: the value is not valid UTF-8")))?;
        overrides.push(Override {
            source: name.to_owned(),
            path,
            value,
        });
    }
    overrides.sort_by(|a, b| a.source.cmp(&b.source));
    unknown.sort();
    Ok((overrides, unknown))
}

/// Takes the setting flags (`--name value` or `--name=value`) out of `args` (which
/// start with the program's name) and returns them with what is left, for the command
/// line parser of the other flags (`--config`, `--help`...), which also reports any
/// flag that is neither.
pub fn flag_overrides(args: Vec<OsString>) -> Result<(Vec<Override>, Vec<OsString>), ConfigError> {
    let mut overrides = Vec::new();
    let mut rest = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else {
            rest.push(arg);
            continue;
        };
        if text == "--" {
            // Everything after `--` is positional; the parser complains about it.
            rest.push(arg);
            rest.extend(args.by_ref());
            break;
        }
        let Some(flag) = text.strip_prefix("--") else {
            rest.push(arg);
            continue;
        };
        let (name, inline_value) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (flag, None),
        };
        let path: Vec<String> = name.split('.').map(|part| part.replace('-', "_")).collect();
        if !SETTING_NAMES.contains(&path[0].as_str()) {
            rest.push(arg);
            continue;
        }
        let value = match inline_value {
            Some(value) => value,
            None => args
                .next()
                .and_then(|value| value.into_string().ok())
                .ok_or_else(|| ConfigError::Invalid(format!("--{name} needs a value")))?,
        };
        overrides.push(Override {
            source: format!("--{name}"),
            path,
            value,
        });
    }
    Ok((overrides, rest))
}

impl Config {
    /// The configuration from the file (if any) with `overrides` applied in order,
    /// then validated.
    pub fn from_sources(
        file: Option<&Path>,
        overrides: &[Override],
    ) -> Result<Config, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                text.parse::<toml::Table>()?
            }
            None => toml::Table::new(),
        };
        for setting in overrides {
            let value = decode(setting)?;
            insert(&mut table, &setting.path, value);
        }
        let config: Config = toml::Value::Table(table).try_into()?;
        config.validate()?;
        Ok(config)
    }
}

/// The first reading of the text that the setting accepts on its own.
fn decode(setting: &Override) -> Result<toml::Value, ConfigError> {
    let mut first_error = None;
    for candidate in candidates(&setting.value) {
        let mut probe = toml::Table::new();
        insert(&mut probe, &setting.path, candidate.clone());
        match toml::Value::Table(probe).try_into::<Config>() {
            Ok(_) => return Ok(candidate),
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    let error = first_error
        .map(|error| error.message().to_owned())
        .unwrap_or_default();
    Err(ConfigError::Invalid(format!("{}: {error}", setting.source)))
}

/// The readings of `text`, most literal first.
fn candidates(text: &str) -> Vec<toml::Value> {
    let mut candidates = vec![toml::Value::String(text.to_owned())];
    if let Ok(number) = text.parse::<i64>() {
        candidates.push(toml::Value::Integer(number));
    }
    if let Ok(boolean) = text.parse::<bool>() {
        candidates.push(toml::Value::Boolean(boolean));
    }
    if let Ok(number) = text.parse::<f64>() {
        candidates.push(toml::Value::Float(number));
    }
    if let Ok(mut table) = format!("value = {text}").parse::<toml::Table>() {
        if let Some(value) = table.remove("value") {
            candidates.push(value);
        }
    }
    let items: Vec<toml::Value> = if text.trim().is_empty() {
        Vec::new()
    } else {
        text.split(',')
            .map(|item| toml::Value::String(item.trim().to_owned()))
            .collect()
    };
    candidates.push(toml::Value::Array(items));
    candidates
}

/// Sets `path` in `table`, creating (or replacing with) tables on the way.
fn insert(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let (last, parents) = path.split_last().expect("a setting's path is never empty");
    let mut table = table;
    for key in parents {
        let entry = table
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        table = entry.as_table_mut().expect("made a table above");
    }
    table.insert(last.clone(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(name, value)| (OsString::from(name), OsString::from(value)))
            .collect()
    }

    fn args(list: &[&str]) -> Vec<OsString> {
        std::iter::once("footpath-collector")
            .chain(list.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn load(vars: &[(&str, &str)], flags: &[&str]) -> Result<Config, String> {
        let (mut overrides, _) = env_overrides(env(vars)).map_err(|e| e.to_string())?;
        let (flags, rest) = flag_overrides(args(flags)).map_err(|e| e.to_string())?;
        assert_eq!(rest.len(), 1, "left over: {rest:?}");
        overrides.extend(flags);
        Config::from_sources(None, &overrides).map_err(|e| e.to_string())
    }

    #[test]
    fn setting_names_match_the_struct() {
        // serde lists every field of a `deny_unknown_fields` struct, in order, when it
        // refuses an unknown one.
        let error = Config::from_toml_str("no_such_setting = 1")
            .unwrap_err()
            .to_string();
        let listed: Vec<&str> = error
            .split("expected one of ")
            .nth(1)
            .unwrap_or_else(|| panic!("{error}"))
            .split(", ")
            .map(|name| name.trim().trim_matches('`'))
            .collect();
        assert_eq!(listed, SETTING_NAMES, "{error}");
    }

    #[test]
    fn environment_names_follow_the_rule() {
        let (overrides, unknown) = env_overrides(env(&[
            ("FOOTPATH_SESSION_TIMEOUT_SECONDS", "60"),
            ("FOOTPATH_DESK__TITLE", "Visit"),
            ("FOOTPATH_FUZZ_SECONDS", "5"),
            ("FOOTPATH_CONFIG", "/etc/footpath.toml"),
            ("FOOTPATH_API_TOKEN", "x"),
            ("HOME", "/root"),
        ]))
        .unwrap();
        let paths: Vec<(String, Vec<String>)> =
            overrides.into_iter().map(|o| (o.source, o.path)).collect();
        assert_eq!(
            paths,
            [
                (
                    "FOOTPATH_DESK__TITLE".to_owned(),
                    vec!["desk".to_owned(), "title".to_owned()]
                ),
                (
                    "FOOTPATH_SESSION_TIMEOUT_SECONDS".to_owned(),
                    vec!["session_timeout_seconds".to_owned()]
                ),
            ]
        );
        assert_eq!(unknown, ["FOOTPATH_FUZZ_SECONDS"]);
    }

    #[test]
    fn flags_follow_the_rule_and_leave_the_rest() {
        let (overrides, rest) = flag_overrides(args(&[
            "--config",
            "f.toml",
            "--session-timeout-seconds",
            "60",
            "--desk.sign-in-minutes=30",
            "--max_body_bytes=1000",
            "--no-such-flag",
        ]))
        .unwrap();
        let got: Vec<(&str, Vec<&str>, &str)> = overrides
            .iter()
            .map(|o| {
                (
                    o.source.as_str(),
                    o.path.iter().map(String::as_str).collect(),
                    o.value.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "--session-timeout-seconds",
                    vec!["session_timeout_seconds"],
                    "60"
                ),
                (
                    "--desk.sign-in-minutes",
                    vec!["desk", "sign_in_minutes"],
                    "30"
                ),
                ("--max_body_bytes", vec!["max_body_bytes"], "1000"),
            ]
        );
        assert_eq!(rest, args(&["--config", "f.toml", "--no-such-flag"]));
        assert_eq!(
            flag_overrides(args(&["--log-format"]))
                .unwrap_err()
                .to_string(),
            "invalid configuration: --log-format needs a value"
        );
    }

    #[test]
    fn values_are_read_as_what_the_setting_holds() {
        let config = load(
            &[
                ("FOOTPATH_DESK__TITLE", "2024"),
                ("FOOTPATH_SESSION_TIMEOUT_SECONDS", "60"),
                ("FOOTPATH_METRICS_REQUIRE_TOKEN", "false"),
                ("FOOTPATH_TRUSTED_PROXIES", "10.0.0.0/8, ::1"),
                ("FOOTPATH_LISTEN_ADDR", "127.0.0.1:9000"),
                ("FOOTPATH_LOG_FORMAT", "json"),
                ("FOOTPATH_DEFAULT_PHONE_REGION", "GB"),
            ],
            &[
                "--deployments",
                r#"[{ id = "shop", allowed_origins = ["https://shop.example"] }]"#,
                "--api-tokens",
                r#"["0123456789abcdef0123456789abcdef"]"#,
                "--desk.agent-tokens",
                "fedcba9876543210fedcba9876543210,00000000000000000000000000000000",
            ],
        )
        .unwrap();
        assert_eq!(config.desk.title, "2024");
        assert_eq!(config.session_timeout_seconds, 60);
        assert!(!config.metrics_require_token);
        let proxies: Vec<String> = config
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(proxies, ["10.0.0.0/8", "::1/128"]);
        assert_eq!(config.listen_addr.to_string(), "127.0.0.1:9000");
        assert_eq!(config.log_format, crate::config::LogFormat::Json);
        assert_eq!(config.default_phone_region.as_deref(), Some("GB"));
        assert_eq!(config.deployments.len(), 1);
        assert!(config.deployments[0].allows_origin(Some("https://shop.example")));
        assert_eq!(config.api_tokens, ["0123456789abcdef0123456789abcdef"]);
        assert_eq!(config.desk.agent_tokens.len(), 2);
    }

    #[test]
    fn later_sources_win() {
        let dir = std::env::temp_dir().join(format!("footpath-sources-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("footpath.toml");
        std::fs::write(
            &file,
            "session_timeout_seconds = 10\nmax_body_bytes = 2000\nmax_events_per_batch = 7\n[desk]\ntitle = \"File\"\nsign_in_minutes = 5\n",
        )
        .unwrap();
        let (mut overrides, _) = env_overrides(env(&[
            ("FOOTPATH_SESSION_TIMEOUT_SECONDS", "20"),
            ("FOOTPATH_MAX_BODY_BYTES", "3000"),
            ("FOOTPATH_DESK__TITLE", "Environment"),
        ]))
        .unwrap();
        let (flags, _) = flag_overrides(args(&["--session-timeout-seconds", "30"])).unwrap();
        overrides.extend(flags);
        let config = Config::from_sources(Some(&file), &overrides).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(config.session_timeout_seconds, 30, "flag over environment");
        assert_eq!(config.max_body_bytes, 3000, "environment over file");
        assert_eq!(config.max_events_per_batch, 7, "file over default");
        // A nested key replaces that key only: the file's other desk settings stay.
        assert_eq!(config.desk.title, "Environment");
        assert_eq!(config.desk.sign_in_minutes, 5);
    }

    #[test]
    fn errors_name_the_source() {
        // (environment, flags, the error's beginning)
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a str);
        let cases: &[Case] = &[
            (
                &[("FOOTPATH_SESSION_TIMEOUT_SECONDS", "soon")],
                &[],
                "invalid configuration: FOOTPATH_SESSION_TIMEOUT_SECONDS: invalid type: string \"soon\", expected u64",
            ),
            (
                &[],
                &["--desk.no-such-key", "1"],
                "invalid configuration: --desk.no-such-key: unknown field `no_such_key`",
            ),
            (
                &[],
                &["--log-format", "xml"],
                "invalid configuration: --log-format: unknown variant `xml`, expected `text` or `json`",
            ),
            // Decoded values still go through the same validation as the file's.
            (
                &[("FOOTPATH_SESSION_TIMEOUT_SECONDS", "0")],
                &[],
                "invalid configuration: session_timeout_seconds must be at least 1",
            ),
            (
                &[],
                &["--api-tokens", "short"],
                "invalid configuration: api_tokens: token 1 of 1 is shorter than 32 characters",
            ),
        ];
        for (vars, flags, expected) in cases {
            let error = load(vars, flags).unwrap_err();
            assert!(error.starts_with(expected), "{vars:?} {flags:?}: {error}");
        }
    }
}
