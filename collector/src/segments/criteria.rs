//! Criteria: one key, one operator, a list of values, and how a value of a visit or an
//! event is tested against them.
//!
//! Rules (the same for context and journey criteria):
//! - A criterion on a value that the visit or event does not have (no referrer, no such
//!   attribute, an empty search query) never matches, whatever its operator. To require
//!   that a value be present, use `notEqual` with `[""]`.
//! - `shouldIgnoreCase` compares the lowercased texts.
//! - `equal`, `notEqual` and the four ordering operators compare numerically when both
//!   sides parse as finite numbers (`"10"` equals `"10.0"`, `"9" < "10"`), and as text
//!   otherwise (ordering then is by Unicode code points).
//! - `containsAll`: the value contains every listed text; `containsAny`: at least one;
//!   `notContainsAll`: not every one (the negation of `containsAll`); `notContainsAny`:
//!   none of them. `equal`, `startsWith`, `endsWith`: against any listed value;
//!   `notEqual`: equal to none. The ordering operators take exactly one value.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::cmp::Ordering;

/// The twelve operators of the Journey API's `Criteria.operator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    ContainsAll,
    ContainsAny,
    NotContainsAll,
    NotContainsAny,
    Equal,
    NotEqual,
    GreaterThan,
    GreaterThanOrEqual,
    LessThan,
    LessThanOrEqual,
    StartsWith,
    EndsWith,
}

impl Operator {
    pub const ALL: [Operator; 12] = [
        Operator::ContainsAll,
        Operator::ContainsAny,
        Operator::NotContainsAll,
        Operator::NotContainsAny,
        Operator::Equal,
        Operator::NotEqual,
        Operator::GreaterThan,
        Operator::GreaterThanOrEqual,
        Operator::LessThan,
        Operator::LessThanOrEqual,
        Operator::StartsWith,
        Operator::EndsWith,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operator::ContainsAll => "containsAll",
            Operator::ContainsAny => "containsAny",
            Operator::NotContainsAll => "notContainsAll",
            Operator::NotContainsAny => "notContainsAny",
            Operator::Equal => "equal",
            Operator::NotEqual => "notEqual",
            Operator::GreaterThan => "greaterThan",
            Operator::GreaterThanOrEqual => "greaterThanOrEqual",
            Operator::LessThan => "lessThan",
            Operator::LessThanOrEqual => "lessThanOrEqual",
            Operator::StartsWith => "startsWith",
            Operator::EndsWith => "endsWith",
        }
    }

    pub fn parse(text: &str) -> Option<Operator> {
        Operator::ALL
            .into_iter()
            .find(|operator| operator.as_str() == text)
    }

    /// The ordering operators compare with exactly one value.
    pub fn is_ordering(self) -> bool {
        matches!(
            self,
            Operator::GreaterThan
                | Operator::GreaterThanOrEqual
                | Operator::LessThan
                | Operator::LessThanOrEqual
        )
    }
}

/// One criterion, validated (see `definition`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Criterion {
    pub key: String,
    pub operator: Operator,
    pub values: Vec<String>,
    pub should_ignore_case: bool,
}

impl Criterion {
    /// Whether `actual` (the visit's or event's value of `key`, if it has one)
    /// satisfies the criterion.
    pub fn matches(&self, actual: Option<&str>) -> bool {
        let Some(actual) = actual else {
            return false;
        };
        let fold = |text: &str| {
            if self.should_ignore_case {
                text.to_lowercase()
            } else {
                text.to_owned()
            }
        };
        let actual = fold(actual);
        let values: Vec<String> = self.values.iter().map(|value| fold(value)).collect();
        let contains = |value: &String| actual.contains(value.as_str());
        let equal = |value: &String| compare(&actual, value) == Ordering::Equal;
        match self.operator {
            Operator::ContainsAll => values.iter().all(contains),
            Operator::ContainsAny => values.iter().any(contains),
            Operator::NotContainsAll => !values.iter().all(contains),
            Operator::NotContainsAny => !values.iter().any(contains),
            Operator::Equal => values.iter().any(equal),
            Operator::NotEqual => !values.iter().any(equal),
            Operator::StartsWith => values
                .iter()
                .any(|value| actual.starts_with(value.as_str())),
            Operator::EndsWith => values.iter().any(|value| actual.ends_with(value.as_str())),
            Operator::GreaterThan => ordering(&actual, &values).is_some_and(Ordering::is_gt),
            Operator::GreaterThanOrEqual => ordering(&actual, &values).is_some_and(Ordering::is_ge),
            Operator::LessThan => ordering(&actual, &values).is_some_and(Ordering::is_lt),
            Operator::LessThanOrEqual => ordering(&actual, &values).is_some_and(Ordering::is_le),
        }
    }
}

/// A criterion prepared for testing many values: its values folded (when it ignores
/// case) and parsed as numbers once, when the index is built, so that a test allocates
/// nothing. [`CompiledCriterion::matches`] agrees with [`Criterion::matches`] (the
/// data-driven tests check both).
#[derive(Debug, Clone)]
pub struct CompiledCriterion {
    pub operator: Operator,
    pub should_ignore_case: bool,
    pub values: Vec<CompiledValue>,
}

/// One value of a [`CompiledCriterion`].
#[derive(Debug, Clone)]
pub struct CompiledValue {
    /// Lowercased when the criterion ignores case.
    pub text: String,
    pub number: Option<f64>,
}

impl CompiledCriterion {
    pub fn new(criterion: &Criterion) -> CompiledCriterion {
        let values = criterion
            .values
            .iter()
            .map(|value| {
                let text = if criterion.should_ignore_case {
                    value.to_lowercase()
                } else {
                    value.clone()
                };
                let number = number(&text);
                CompiledValue { text, number }
            })
            .collect();
        CompiledCriterion {
            operator: criterion.operator,
            should_ignore_case: criterion.should_ignore_case,
            values,
        }
    }

    /// Whether `actual` (the visit's or event's value, if it has one) satisfies the
    /// criterion.
    pub fn matches(&self, actual: Option<&Actual<'_>>) -> bool {
        let Some(actual) = actual else {
            return false;
        };
        let text = actual.text(self.should_ignore_case);
        let compare = |value: &CompiledValue| match (actual.number, value.number) {
            (Some(left), Some(right)) => left.partial_cmp(&right).unwrap_or(Ordering::Equal),
            _ => text.cmp(value.text.as_str()),
        };
        let contains = |value: &CompiledValue| text.contains(value.text.as_str());
        let equal = |value: &CompiledValue| compare(value) == Ordering::Equal;
        let first = || self.values.first().map(compare);
        match self.operator {
            Operator::ContainsAll => self.values.iter().all(contains),
            Operator::ContainsAny => self.values.iter().any(contains),
            Operator::NotContainsAll => !self.values.iter().all(contains),
            Operator::NotContainsAny => !self.values.iter().any(contains),
            Operator::Equal => self.values.iter().any(equal),
            Operator::NotEqual => !self.values.iter().any(equal),
            Operator::StartsWith => self
                .values
                .iter()
                .any(|value| text.starts_with(value.text.as_str())),
            Operator::EndsWith => self
                .values
                .iter()
                .any(|value| text.ends_with(value.text.as_str())),
            Operator::GreaterThan => first().is_some_and(Ordering::is_gt),
            Operator::GreaterThanOrEqual => first().is_some_and(Ordering::is_ge),
            Operator::LessThan => first().is_some_and(Ordering::is_lt),
            Operator::LessThanOrEqual => first().is_some_and(Ordering::is_le),
        }
    }
}

/// A value under test, prepared once for all the criteria on its key: parsed as a
/// number once, lowercased at most once (and only when a criterion ignores case).
#[derive(Debug)]
pub struct Actual<'a> {
    text: Cow<'a, str>,
    lowercase: OnceCell<Option<String>>,
    /// The value as a number, when it is one. Lowercasing never changes whether or how
    /// a text parses as a number.
    pub number: Option<f64>,
}

impl<'a> Actual<'a> {
    pub fn new(text: impl Into<Cow<'a, str>>) -> Actual<'a> {
        let text = text.into();
        let number = number(&text);
        Actual {
            text,
            lowercase: OnceCell::new(),
            number,
        }
    }

    /// The text, lowercased when `ignore_case`.
    pub fn text(&self, ignore_case: bool) -> &str {
        if !ignore_case {
            return &self.text;
        }
        let lowercase = self.lowercase.get_or_init(|| {
            let unchanged = self
                .text
                .bytes()
                .all(|byte| byte.is_ascii() && !byte.is_ascii_uppercase());
            (!unchanged).then(|| self.text.to_lowercase())
        });
        lowercase.as_deref().unwrap_or(&self.text)
    }
}

fn ordering(actual: &str, values: &[String]) -> Option<Ordering> {
    values.first().map(|value| compare(actual, value))
}

/// Numbers when both sides are numbers, text otherwise.
fn compare(left: &str, right: &str) -> Ordering {
    match (number(left), number(right)) {
        (Some(left), Some(right)) => left.partial_cmp(&right).unwrap_or(Ordering::Equal),
        _ => left.cmp(right),
    }
}

/// A finite number written the usual way (`12`, `-3.5`, `1e3`); not `inf` or `NaN`.
pub fn number(text: &str) -> Option<f64> {
    let text = text.trim();
    let plausible = !text.is_empty()
        && text
            .bytes()
            .all(|byte| byte.is_ascii_digit() || matches!(byte, b'+' | b'-' | b'.' | b'e' | b'E'));
    if !plausible {
        return None;
    }
    text.parse::<f64>().ok().filter(|value| value.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (operator, values, ignore case, actual, expected)
    type Row = (
        &'static str,
        &'static [&'static str],
        bool,
        Option<&'static str>,
        bool,
    );

    #[test]
    fn every_operator() {
        let table: &[Row] = &[
            (
                "containsAll",
                &["mort", "gage"],
                false,
                Some("mortgages"),
                true,
            ),
            (
                "containsAll",
                &["mort", "loan"],
                false,
                Some("mortgages"),
                false,
            ),
            ("containsAll", &["MORT"], false, Some("mortgages"), false),
            ("containsAll", &["MORT"], true, Some("Mortgages"), true),
            (
                "containsAny",
                &["loan", "gage"],
                false,
                Some("mortgages"),
                true,
            ),
            (
                "containsAny",
                &["loan", "car"],
                false,
                Some("mortgages"),
                false,
            ),
            (
                "notContainsAll",
                &["mort", "loan"],
                false,
                Some("mortgages"),
                true,
            ),
            (
                "notContainsAll",
                &["mort", "gage"],
                false,
                Some("mortgages"),
                false,
            ),
            (
                "notContainsAny",
                &["loan", "car"],
                false,
                Some("mortgages"),
                true,
            ),
            (
                "notContainsAny",
                &["loan", "MORT"],
                true,
                Some("mortgages"),
                false,
            ),
            ("equal", &["DE", "AT"], false, Some("AT"), true),
            ("equal", &["de"], false, Some("DE"), false),
            ("equal", &["de"], true, Some("DE"), true),
            ("equal", &["10"], false, Some("10.0"), true),
            ("equal", &["1e1"], false, Some("10"), true),
            ("notEqual", &["search"], false, Some("social"), true),
            (
                "notEqual",
                &["search", "social"],
                false,
                Some("social"),
                false,
            ),
            ("notEqual", &[""], false, Some("boots"), true),
            ("notEqual", &["10.00"], false, Some("10"), false),
            ("greaterThan", &["9"], false, Some("10"), true),
            ("greaterThan", &["10"], false, Some("10"), false),
            ("greaterThan", &["b"], false, Some("c"), true),
            ("greaterThanOrEqual", &["10"], false, Some("10.0"), true),
            ("greaterThanOrEqual", &["100"], false, Some("99.5"), false),
            ("lessThan", &["100"], false, Some("99.5"), true),
            ("lessThan", &["-1"], false, Some("0"), false),
            // Text order when one side is not a number: "9" > "10" as text.
            ("lessThan", &["10x"], false, Some("9"), false),
            ("lessThanOrEqual", &["139"], false, Some("139.00"), true),
            ("lessThanOrEqual", &["B"], true, Some("a"), true),
            (
                "startsWith",
                &["/checkout", "/cart"],
                false,
                Some("/cart/2"),
                true,
            ),
            ("startsWith", &["/Cart"], false, Some("/cart/2"), false),
            ("startsWith", &["/Cart"], true, Some("/cart/2"), true),
            ("endsWith", &[".pdf"], false, Some("/a/terms.pdf"), true),
            ("endsWith", &[".PDF"], false, Some("/a/terms.pdf"), false),
            ("endsWith", &[".PDF"], true, Some("/a/terms.pdf"), true),
            ("equal", &["straße"], true, Some("STRAßE"), true),
            ("containsAny", &["ÉTÉ"], true, Some("l'été"), true),
            ("equal", &["1E3"], true, Some("1000"), true),
            // A missing value matches nothing, negative operators included.
            ("equal", &["x"], false, None, false),
            ("notEqual", &["x"], false, None, false),
            ("notContainsAny", &["x"], false, None, false),
            ("notContainsAll", &["x"], false, None, false),
        ];
        for &(operator, values, ignore_case, actual, expected) in table {
            let criterion = Criterion {
                key: "k".to_owned(),
                operator: Operator::parse(operator).unwrap(),
                values: values.iter().map(|value| (*value).to_owned()).collect(),
                should_ignore_case: ignore_case,
            };
            assert_eq!(
                criterion.matches(actual),
                expected,
                "{operator} {values:?} ignore_case={ignore_case} on {actual:?}"
            );
            let prepared = actual.map(Actual::new);
            assert_eq!(
                CompiledCriterion::new(&criterion).matches(prepared.as_ref()),
                expected,
                "compiled: {operator} {values:?} ignore_case={ignore_case} on {actual:?}"
            );
        }
        // Every operator is in the table.
        for operator in Operator::ALL {
            assert!(
                table.iter().any(|row| row.0 == operator.as_str()),
                "{operator:?} is not tested"
            );
            assert_eq!(Operator::parse(operator.as_str()), Some(operator));
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(number(" 12 "), Some(12.0));
        assert_eq!(number("-3.5"), Some(-3.5));
        assert_eq!(number("1e3"), Some(1000.0));
        assert_eq!(number("inf"), None);
        assert_eq!(number("NaN"), None);
        assert_eq!(number("12 EUR"), None);
        assert_eq!(number(""), None);
    }
}
