//! Segment and outcome definitions: parsed from the Journey API's JSON shapes
//! (`JourneySegment`, `Outcome`) with errors that name the offending field, and
//! written back in the same shapes.
//!
//! The same parser reads request bodies, `[[segments]]` / `[[outcomes]]` entries of the
//! configuration file (TOML tables with the JSON field names) and the definitions the
//! store keeps (stored as the JSON this module writes), so that there is one notion of
//! a valid definition.

use serde_json::{json, Map, Value};

use super::criteria::{Criterion, Operator};

/// Most context patterns, journey patterns, criteria per pattern and values per
/// criterion of one definition.
pub const MAX_PATTERNS: usize = 20;
pub const MAX_CRITERIA: usize = 20;
pub const MAX_VALUES: usize = 100;
pub const MAX_VALUE_CHARS: usize = 1024;
pub const MAX_DISPLAY_NAME_CHARS: usize = 100;
pub const MAX_DESCRIPTION_CHARS: usize = 1000;
pub const MAX_COUNT: u64 = 1000;
pub const MAX_EXPIRATION_DAYS: u64 = 3650;

/// Fields that a client may send back unchanged (from a GET) and that are ignored.
const READ_ONLY_FIELDS: [&str; 5] = ["id", "version", "createdDate", "modifiedDate", "selfUri"];

/// The visit attributes that context criteria (`entityType: visit`) can test.
pub const VISIT_KEYS: [&str; 27] = [
    "device.category",
    "device.type",
    "device.isMobile",
    "device.osFamily",
    "device.osVersion",
    "device.manufacturer",
    "browser.family",
    "browser.version",
    "browser.lang",
    "geolocation.country",
    "geolocation.countryName",
    "geolocation.region",
    "geolocation.regionName",
    "geolocation.locality",
    "geolocation.postalCode",
    "referrer.medium",
    "referrer.name",
    "referrer.hostname",
    "referrer.domain",
    "referrer.url",
    "mktCampaign.source",
    "mktCampaign.medium",
    "mktCampaign.name",
    "mktCampaign.term",
    "mktCampaign.content",
    "authenticated",
    "customerIdType",
];

/// The event values that journey criteria can test, besides `attributes.<name>.value`.
pub const EVENT_KEYS: [&str; 10] = [
    "page.url",
    "page.title",
    "page.domain",
    "page.hostname",
    "page.pathname",
    "page.queryString",
    "page.fragment",
    "page.keywords",
    "page.lang",
    "searchQuery",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DefinitionKind {
    Segment,
    Outcome,
}

impl DefinitionKind {
    /// The word used in messages and stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            DefinitionKind::Segment => "segment",
            DefinitionKind::Outcome => "outcome",
        }
    }

    /// "a segment", "an outcome".
    pub fn with_article(self) -> &'static str {
        match self {
            DefinitionKind::Segment => "a segment",
            DefinitionKind::Outcome => "an outcome",
        }
    }

    pub fn parse(text: &str) -> Option<DefinitionKind> {
        [DefinitionKind::Segment, DefinitionKind::Outcome]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The assignment ends with the session.
    Session,
    /// The assignment is kept for the visitor (or their contact) across sessions until
    /// `assignmentExpirationDays` have passed.
    Customer,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Session => "Session",
            Scope::Customer => "Customer",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    Number,
    Integer,
}

/// `AssociatedValueField`: which attribute of the achieving event carries the outcome's
/// value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueField {
    pub data_type: ValueType,
    pub name: String,
}

/// A `JourneyPattern`: events of the session (or customer) that must occur `count`
/// times. Web stream only: with `event_name`, events of that name; without, pageviews.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JourneyPattern {
    pub event_name: Option<String>,
    pub criteria: Vec<Criterion>,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Details {
    Segment {
        /// `#rrggbb`.
        color: String,
        scope: Scope,
        should_display_to_agent: bool,
        /// Customer scope only; `None`: the assignment does not expire.
        assignment_expiration_days: Option<u64>,
    },
    Outcome {
        is_positive: bool,
        associated_value_field: Option<ValueField>,
    },
}

/// A validated segment or outcome definition, without its id, version and dates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    pub display_name: String,
    pub description: Option<String>,
    pub is_active: bool,
    /// Context patterns, each a list of criteria on the visit; all must match.
    pub context: Vec<Vec<Criterion>>,
    /// Journey patterns; all must reach their count.
    pub journey: Vec<JourneyPattern>,
    pub details: Details,
}

impl Definition {
    pub fn kind(&self) -> DefinitionKind {
        match self.details {
            Details::Segment { .. } => DefinitionKind::Segment,
            Details::Outcome { .. } => DefinitionKind::Outcome,
        }
    }

    /// Every context criterion, of every context pattern.
    pub fn context_criteria(&self) -> impl Iterator<Item = &Criterion> {
        self.context.iter().flatten()
    }

    /// The definition in the Journey API's shape, without id, version and dates.
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        object.insert("displayName".into(), json!(self.display_name));
        if let Some(description) = &self.description {
            object.insert("description".into(), json!(description));
        }
        object.insert("isActive".into(), json!(self.is_active));
        match &self.details {
            Details::Segment {
                color,
                scope,
                should_display_to_agent,
                assignment_expiration_days,
            } => {
                object.insert("color".into(), json!(color));
                object.insert("scope".into(), json!(scope.as_str()));
                object.insert(
                    "shouldDisplayToAgent".into(),
                    json!(should_display_to_agent),
                );
                if let Some(days) = assignment_expiration_days {
                    object.insert("assignmentExpirationDays".into(), json!(days));
                }
            }
            Details::Outcome {
                is_positive,
                associated_value_field,
            } => {
                object.insert("isPositive".into(), json!(is_positive));
                if let Some(field) = associated_value_field {
                    let data_type = match field.data_type {
                        ValueType::Number => "Number",
                        ValueType::Integer => "Integer",
                    };
                    object.insert(
                        "associatedValueField".into(),
                        json!({"dataType": data_type, "name": field.name}),
                    );
                }
            }
        }
        let criterion_json = |criterion: &Criterion, entity_type: bool| {
            let mut value = json!({
                "key": criterion.key,
                "values": criterion.values,
                "shouldIgnoreCase": criterion.should_ignore_case,
                "operator": criterion.operator.as_str(),
            });
            if entity_type {
                value["entityType"] = json!("visit");
            }
            value
        };
        let context: Vec<Value> = self
            .context
            .iter()
            .map(|criteria| {
                json!({"criteria": criteria.iter().map(|c| criterion_json(c, true)).collect::<Vec<_>>()})
            })
            .collect();
        object.insert("context".into(), json!({ "patterns": context }));
        let journey: Vec<Value> = self
            .journey
            .iter()
            .map(|pattern| {
                let mut value = json!({
                    "criteria": pattern.criteria.iter().map(|c| criterion_json(c, false)).collect::<Vec<_>>(),
                    "count": pattern.count,
                    "streamType": "Web",
                    "sessionType": "web",
                });
                if let Some(name) = &pattern.event_name {
                    value["eventName"] = json!(name);
                }
                value
            })
            .collect();
        object.insert("journey".into(), json!({ "patterns": journey }));
        Value::Object(object)
    }
}

/// A validation error: `"<field path>: <what is wrong>"`.
pub type FieldError = String;

fn error(path: &str, message: impl std::fmt::Display) -> FieldError {
    format!("{path}: {message}")
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

/// Parses a definition of `kind` from its JSON shape. Read-only fields (`id`,
/// `version`, dates) are ignored; unknown fields are refused.
pub fn parse(kind: DefinitionKind, value: &Value) -> Result<Definition, FieldError> {
    let Some(object) = value.as_object() else {
        return Err(format!(
            "body: {} must be a JSON object",
            kind.with_article()
        ));
    };
    let allowed: &[&str] = match kind {
        DefinitionKind::Segment => &[
            "displayName",
            "description",
            "isActive",
            "context",
            "journey",
            "color",
            "scope",
            "shouldDisplayToAgent",
            "assignmentExpirationDays",
        ],
        DefinitionKind::Outcome => &[
            "displayName",
            "description",
            "isActive",
            "context",
            "journey",
            "isPositive",
            "associatedValueField",
        ],
    };
    for name in object.keys() {
        if name == "externalSegment" && kind == DefinitionKind::Segment {
            return Err(error(name, "external segments are not supported"));
        }
        if !allowed.contains(&name.as_str()) && !READ_ONLY_FIELDS.contains(&name.as_str()) {
            return Err(error(
                name,
                format!("is not a field of {}", kind.with_article()),
            ));
        }
    }
    let display_name = required_text(object, "", "displayName", MAX_DISPLAY_NAME_CHARS)?;
    if display_name.trim().is_empty() {
        return Err(error("displayName", "must not be empty"));
    }
    let description = optional_text(object, "", "description", MAX_DESCRIPTION_CHARS)?;
    let is_active = optional_bool(object, "", "isActive")?.unwrap_or(true);
    let context = parse_context(object.get("context"))?;
    let journey = parse_journey(object.get("journey"))?;
    if context.is_empty() && journey.is_empty() {
        return Err(error(
            "journey.patterns",
            format!(
                "{} needs at least one context or journey pattern",
                kind.with_article()
            ),
        ));
    }
    let details = match kind {
        DefinitionKind::Segment => {
            let color = required_text(object, "", "color", 7)
                .map_err(|_| error("color", "is required: a color such as \"#1f77b4\""))?;
            let valid_color = color.len() == 7
                && color.starts_with('#')
                && color[1..].bytes().all(|byte| byte.is_ascii_hexdigit());
            if !valid_color {
                return Err(error("color", "must be a color such as \"#1f77b4\""));
            }
            let scope = match optional_text(object, "", "scope", 20)?.as_deref() {
                None | Some("Session") => Scope::Session,
                Some("Customer") => Scope::Customer,
                Some(other) => {
                    return Err(error(
                        "scope",
                        format!("must be Session or Customer, not {other:?}"),
                    ))
                }
            };
            let days = optional_integer(
                object,
                "",
                "assignmentExpirationDays",
                1,
                MAX_EXPIRATION_DAYS,
            )?;
            if days.is_some() && scope == Scope::Session {
                return Err(error(
                    "assignmentExpirationDays",
                    "applies to Customer scope only (a Session assignment ends with the session)",
                ));
            }
            Details::Segment {
                color: color.to_ascii_lowercase(),
                scope,
                should_display_to_agent: optional_bool(object, "", "shouldDisplayToAgent")?
                    .unwrap_or(true),
                assignment_expiration_days: days,
            }
        }
        DefinitionKind::Outcome => Details::Outcome {
            is_positive: optional_bool(object, "", "isPositive")?.unwrap_or(true),
            associated_value_field: parse_value_field(object.get("associatedValueField"))?,
        },
    };
    Ok(Definition {
        display_name,
        description,
        is_active,
        context,
        journey,
        details,
    })
}

fn parse_value_field(value: Option<&Value>) -> Result<Option<ValueField>, FieldError> {
    let path = "associatedValueField";
    let Some(value) = value else {
        return Ok(None);
    };
    let object = value
        .as_object()
        .ok_or_else(|| error(path, "must be an object {dataType, name}"))?;
    only_fields(object, path, &["dataType", "name"])?;
    let data_type = match required_text(object, path, "dataType", 20)?.as_str() {
        "Number" => ValueType::Number,
        "Integer" => ValueType::Integer,
        other => {
            return Err(error(
                &join(path, "dataType"),
                format!("must be Number or Integer, not {other:?}"),
            ))
        }
    };
    let name = required_text(object, path, "name", 64)?;
    footpath_protocol::v1::validate_attribute_name(&name)
        .map_err(|problem| error(&join(path, "name"), problem.reason()))?;
    Ok(Some(ValueField { data_type, name }))
}

fn patterns<'a>(value: Option<&'a Value>, path: &str) -> Result<Vec<&'a Value>, FieldError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let object = value
        .as_object()
        .ok_or_else(|| error(path, "must be an object {patterns}"))?;
    only_fields(object, path, &["patterns"])?;
    let path = join(path, "patterns");
    let Some(list) = object.get("patterns") else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or_else(|| error(&path, "must be a list"))?;
    if list.len() > MAX_PATTERNS {
        return Err(error(
            &path,
            format!("has more than {MAX_PATTERNS} patterns"),
        ));
    }
    Ok(list.iter().collect())
}

fn parse_context(value: Option<&Value>) -> Result<Vec<Vec<Criterion>>, FieldError> {
    let mut context = Vec::new();
    for (index, pattern) in patterns(value, "context")?.into_iter().enumerate() {
        let path = format!("context.patterns[{index}]");
        let object = pattern
            .as_object()
            .ok_or_else(|| error(&path, "must be an object {criteria}"))?;
        only_fields(object, &path, &["criteria"])?;
        let criteria = parse_criteria(object.get("criteria"), &join(&path, "criteria"), true)?;
        if criteria.is_empty() {
            return Err(error(&join(&path, "criteria"), "must not be empty"));
        }
        context.push(criteria);
    }
    Ok(context)
}

fn parse_journey(value: Option<&Value>) -> Result<Vec<JourneyPattern>, FieldError> {
    let mut journey = Vec::new();
    for (index, pattern) in patterns(value, "journey")?.into_iter().enumerate() {
        let path = format!("journey.patterns[{index}]");
        let object = pattern
            .as_object()
            .ok_or_else(|| error(&path, "must be an object {criteria, count, eventName}"))?;
        only_fields(
            object,
            &path,
            &[
                "criteria",
                "count",
                "streamType",
                "sessionType",
                "eventName",
            ],
        )?;
        match optional_text(object, &path, "streamType", 20)?.as_deref() {
            None | Some("Web") => {}
            Some(other) => {
                return Err(error(
                    &join(&path, "streamType"),
                    format!("only Web is supported, not {other:?}"),
                ))
            }
        }
        match optional_text(object, &path, "sessionType", 20)?.as_deref() {
            None | Some("web") => {}
            Some(other) => {
                return Err(error(
                    &join(&path, "sessionType"),
                    format!("only web is supported, not {other:?}"),
                ))
            }
        }
        let event_name = optional_text(object, &path, "eventName", 64)?;
        if let Some(name) = &event_name {
            footpath_protocol::v1::validate_event_name(name)
                .map_err(|problem| error(&join(&path, "eventName"), problem.reason()))?;
        }
        let count = optional_integer(object, &path, "count", 1, MAX_COUNT)?.unwrap_or(1);
        let criteria = parse_criteria(object.get("criteria"), &join(&path, "criteria"), false)?;
        journey.push(JourneyPattern {
            event_name,
            criteria,
            count,
        });
    }
    Ok(journey)
}

fn parse_criteria(
    value: Option<&Value>,
    path: &str,
    visit: bool,
) -> Result<Vec<Criterion>, FieldError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let list = value
        .as_array()
        .ok_or_else(|| error(path, "must be a list"))?;
    if list.len() > MAX_CRITERIA {
        return Err(error(
            path,
            format!("has more than {MAX_CRITERIA} criteria"),
        ));
    }
    let mut criteria = Vec::with_capacity(list.len());
    for (index, item) in list.iter().enumerate() {
        let path = format!("{path}[{index}]");
        let object = item
            .as_object()
            .ok_or_else(|| error(&path, "must be an object {key, operator, values}"))?;
        let fields: &[&str] = if visit {
            &[
                "key",
                "values",
                "shouldIgnoreCase",
                "operator",
                "entityType",
            ]
        } else {
            &["key", "values", "shouldIgnoreCase", "operator"]
        };
        only_fields(object, &path, fields)?;
        if visit {
            match optional_text(object, &path, "entityType", 20)?.as_deref() {
                None | Some("visit") => {}
                Some(other) => {
                    return Err(error(
                        &join(&path, "entityType"),
                        format!("must be visit, not {other:?}"),
                    ))
                }
            }
        }
        let key = required_text(object, &path, "key", 200)?;
        let key_is_known = if visit {
            VISIT_KEYS.contains(&key.as_str())
        } else {
            EVENT_KEYS.contains(&key.as_str()) || attribute_of_key(&key).is_some()
        };
        if !key_is_known {
            let known = if visit {
                VISIT_KEYS.join(", ")
            } else {
                format!("{}, attributes.<name>.value", EVENT_KEYS.join(", "))
            };
            return Err(error(
                &join(&path, "key"),
                format!("{key:?} is not one of {known}"),
            ));
        }
        let operator_text = required_text(object, &path, "operator", 40)?;
        let operator = Operator::parse(&operator_text).ok_or_else(|| {
            let all: Vec<&str> = Operator::ALL
                .iter()
                .map(|operator| operator.as_str())
                .collect();
            error(
                &join(&path, "operator"),
                format!("{operator_text:?} is not one of {}", all.join(", ")),
            )
        })?;
        let values_path = join(&path, "values");
        let values = object
            .get("values")
            .ok_or_else(|| error(&values_path, "is required"))?
            .as_array()
            .ok_or_else(|| error(&values_path, "must be a list of strings"))?;
        if values.is_empty() {
            return Err(error(&values_path, "must not be empty"));
        }
        if values.len() > MAX_VALUES {
            return Err(error(
                &values_path,
                format!("has more than {MAX_VALUES} values"),
            ));
        }
        if operator.is_ordering() && values.len() != 1 {
            return Err(error(
                &values_path,
                format!("{} compares with exactly one value", operator.as_str()),
            ));
        }
        let mut texts = Vec::with_capacity(values.len());
        for (value_index, value) in values.iter().enumerate() {
            let value_path = format!("{values_path}[{value_index}]");
            let text = value
                .as_str()
                .ok_or_else(|| error(&value_path, "must be a string"))?;
            if text.chars().count() > MAX_VALUE_CHARS {
                return Err(error(
                    &value_path,
                    format!("is longer than {MAX_VALUE_CHARS} characters"),
                ));
            }
            texts.push(text.to_owned());
        }
        let should_ignore_case = optional_bool(object, &path, "shouldIgnoreCase")?.unwrap_or(false);
        criteria.push(Criterion {
            key,
            operator,
            values: texts,
            should_ignore_case,
        });
    }
    Ok(criteria)
}

/// `attributes.<name>.value` → `<name>`.
pub fn attribute_of_key(key: &str) -> Option<&str> {
    let name = key.strip_prefix("attributes.")?.strip_suffix(".value")?;
    footpath_protocol::v1::validate_attribute_name(name).ok()?;
    Some(name)
}

fn only_fields(
    object: &Map<String, Value>,
    path: &str,
    allowed: &[&str],
) -> Result<(), FieldError> {
    match object.keys().find(|name| !allowed.contains(&name.as_str())) {
        Some(name) => Err(error(&join(path, name), "is not a known field here")),
        None => Ok(()),
    }
}

fn required_text(
    object: &Map<String, Value>,
    path: &str,
    field: &str,
    max_chars: usize,
) -> Result<String, FieldError> {
    optional_text(object, path, field, max_chars)?
        .ok_or_else(|| error(&join(path, field), "is required"))
}

fn optional_text(
    object: &Map<String, Value>,
    path: &str,
    field: &str,
    max_chars: usize,
) -> Result<Option<String>, FieldError> {
    let path = join(path, field);
    match object.get(field) {
        None => Ok(None),
        Some(Value::String(text)) if text.chars().count() > max_chars => Err(error(
            &path,
            format!("is longer than {max_chars} characters"),
        )),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(error(&path, "must be a string")),
    }
}

fn optional_bool(
    object: &Map<String, Value>,
    path: &str,
    field: &str,
) -> Result<Option<bool>, FieldError> {
    match object.get(field) {
        None => Ok(None),
        Some(Value::Bool(flag)) => Ok(Some(*flag)),
        Some(_) => Err(error(&join(path, field), "must be true or false")),
    }
}

fn optional_integer(
    object: &Map<String, Value>,
    path: &str,
    field: &str,
    min: u64,
    max: u64,
) -> Result<Option<u64>, FieldError> {
    match object.get(field) {
        None => Ok(None),
        Some(value) => match value.as_u64() {
            Some(number) if (min..=max).contains(&number) => Ok(Some(number)),
            _ => Err(error(
                &join(path, field),
                format!("must be a whole number from {min} to {max}"),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn searched_twice() -> Value {
        json!({
            "displayName": "Searched twice",
            "color": "#1F77B4",
            "scope": "Session",
            "journey": {"patterns": [{
                "streamType": "Web",
                "count": 2,
                "criteria": [{"key": "searchQuery", "operator": "notEqual", "values": [""]}],
            }]},
        })
    }

    #[test]
    fn round_trips_through_its_json() {
        let definition = parse(DefinitionKind::Segment, &searched_twice()).unwrap();
        assert_eq!(definition.journey[0].count, 2);
        assert_eq!(
            definition.details,
            Details::Segment {
                color: "#1f77b4".into(),
                scope: Scope::Session,
                should_display_to_agent: true,
                assignment_expiration_days: None
            }
        );
        let again = parse(DefinitionKind::Segment, &definition.to_json()).unwrap();
        assert_eq!(again, definition);

        let outcome = json!({
            "displayName": "Order completed",
            "isPositive": true,
            "journey": {"patterns": [{"eventName": "order_completed"}]},
            "associatedValueField": {"dataType": "Number", "name": "value"},
            "context": {"patterns": [{"criteria": [
                {"key": "device.category", "operator": "equal", "values": ["mobile"], "entityType": "visit"}
            ]}]},
        });
        let parsed = parse(DefinitionKind::Outcome, &outcome).unwrap();
        assert_eq!(
            parse(DefinitionKind::Outcome, &parsed.to_json()).unwrap(),
            parsed
        );
    }

    /// Each invalid body and the start of its message: the field path.
    #[test]
    fn errors_name_the_field() {
        let with = |patch: Value| {
            let mut body = searched_twice();
            for (name, value) in patch.as_object().unwrap() {
                if value.is_null() {
                    body.as_object_mut().unwrap().remove(name);
                } else {
                    body[name] = value.clone();
                }
            }
            body
        };
        let pattern = |criterion: Value| json!({"patterns": [{"criteria": [criterion]}]});
        let table: Vec<(Value, &str)> = vec![
            (
                with(json!({"displayName": null})),
                "displayName: is required",
            ),
            (
                with(json!({"displayName": " "})),
                "displayName: must not be empty",
            ),
            (
                with(json!({"displayName": 3})),
                "displayName: must be a string",
            ),
            (with(json!({"color": "blue"})), "color: must be a color"),
            (with(json!({"color": null})), "color: is required"),
            (
                with(json!({"scope": "Forever"})),
                "scope: must be Session or Customer",
            ),
            (
                with(json!({"assignmentExpirationDays": 3})),
                "assignmentExpirationDays: applies to Customer scope only",
            ),
            (
                with(json!({"scope": "Customer", "assignmentExpirationDays": 0})),
                "assignmentExpirationDays: must be a whole number",
            ),
            (
                with(json!({"isActive": "yes"})),
                "isActive: must be true or false",
            ),
            (
                with(json!({"colour": "#000000"})),
                "colour: is not a field of a segment",
            ),
            (
                with(json!({"externalSegment": {}})),
                "externalSegment: external segments are not supported",
            ),
            (
                with(json!({"journey": null})),
                "journey.patterns: a segment needs at least one context or journey pattern",
            ),
            (
                with(json!({"journey": {"patterns": [{"count": 0}]}})),
                "journey.patterns[0].count: must be a whole number from 1 to 1000",
            ),
            (
                with(json!({"journey": {"patterns": [{"streamType": "App"}]}})),
                "journey.patterns[0].streamType: only Web is supported",
            ),
            (
                with(json!({"journey": {"patterns": [{"eventName": "order completed"}]}})),
                "journey.patterns[0].eventName:",
            ),
            (
                with(json!({"journey": {"patterns": [{"colour": 1}]}})),
                "journey.patterns[0].colour: is not a known field here",
            ),
            (
                with(
                    json!({"journey": pattern(json!({"key": "page.color", "operator": "equal", "values": ["x"]}))}),
                ),
                "journey.patterns[0].criteria[0].key: \"page.color\" is not one of",
            ),
            (
                with(
                    json!({"journey": pattern(json!({"key": "page.url", "operator": "like", "values": ["x"]}))}),
                ),
                "journey.patterns[0].criteria[0].operator: \"like\" is not one of",
            ),
            (
                with(json!({"journey": pattern(json!({"key": "page.url", "operator": "equal"}))})),
                "journey.patterns[0].criteria[0].values: is required",
            ),
            (
                with(
                    json!({"journey": pattern(json!({"key": "page.url", "operator": "equal", "values": []}))}),
                ),
                "journey.patterns[0].criteria[0].values: must not be empty",
            ),
            (
                with(
                    json!({"journey": pattern(json!({"key": "page.url", "operator": "equal", "values": [1]}))}),
                ),
                "journey.patterns[0].criteria[0].values[0]: must be a string",
            ),
            (
                with(
                    json!({"journey": pattern(json!({"key": "page.url", "operator": "lessThan", "values": ["1", "2"]}))}),
                ),
                "journey.patterns[0].criteria[0].values: lessThan compares with exactly one value",
            ),
            (
                with(
                    json!({"journey": pattern(json!({"key": "attributes.a b.value", "operator": "equal", "values": ["x"]}))}),
                ),
                "journey.patterns[0].criteria[0].key:",
            ),
            (
                with(
                    json!({"context": pattern(json!({"key": "page.url", "operator": "equal", "values": ["x"]}))}),
                ),
                "context.patterns[0].criteria[0].key: \"page.url\" is not one of",
            ),
            (
                with(
                    json!({"context": pattern(json!({"key": "device.category", "operator": "equal", "values": ["x"], "entityType": "session"}))}),
                ),
                "context.patterns[0].criteria[0].entityType: must be visit",
            ),
            (
                with(json!({"context": {"patterns": [{"criteria": []}]}})),
                "context.patterns[0].criteria: must not be empty",
            ),
        ];
        for (body, expected) in table {
            let message = parse(DefinitionKind::Segment, &body).unwrap_err();
            assert!(
                message.starts_with(expected),
                "{message:?} should start with {expected:?}"
            );
        }
        let outcome = json!({
            "displayName": "Order", "journey": {"patterns": [{"eventName": "order_completed"}]},
            "associatedValueField": {"dataType": "Float", "name": "value"},
        });
        assert!(parse(DefinitionKind::Outcome, &outcome)
            .unwrap_err()
            .starts_with("associatedValueField.dataType: must be Number or Integer"));
        let outcome_with_color = json!({
            "displayName": "Order", "color": "#000000",
            "journey": {"patterns": [{"eventName": "order_completed"}]},
        });
        assert_eq!(
            parse(DefinitionKind::Outcome, &outcome_with_color).unwrap_err(),
            "color: is not a field of an outcome"
        );
    }
}
