//! The in-memory index of the active definitions, and the values that criteria test.
//!
//! The index is built from the stored definitions whenever they change (the store keeps
//! a generation number that every change moves) and is shared until the next change.
//! It answers, for one event, which journey patterns might match it, without looking
//! at the others:
//! - patterns with an `eventName` are filed under that name, patterns without one
//!   under "pageview";
//! - a pattern with criteria is filed, under that, by the key of one of its criteria
//!   (its "filing criterion": an `equal` one if it has one, else a `containsAny` /
//!   `containsAll` one, else any; attribute keys first). A criterion never matches an
//!   event without a value for its key, so the pattern is only a candidate for events
//!   that have one;
//! - within a key, patterns filed by an `equal` criterion are found by the event's
//!   value (a hash map of the values, numbers apart since `"10"` equals `"10.0"`), and
//!   patterns filed by a `containsAny` / `containsAll` criterion by one Aho-Corasick
//!   pass over the event's value that finds every listed text at once; patterns filed
//!   by `startsWith` / `endsWith` by looking up the value's beginnings / endings of
//!   the listed texts' lengths; patterns filed by an ordering operator on a number by
//!   a binary search of the sorted bounds (all of them for a value that is not a
//!   number, which compares as text). Only the other operators (`notEqual`,
//!   `notContains*`, ordering on a text) are visited one by one.
//!
//! So the work per event grows with the patterns that could match its name, attributes
//! and values, not with every definition of the collector. Candidates are then tested
//! in full with criteria compiled when the index is built (values lowercased and parsed
//! as numbers once; see [`CompiledCriterion`]), on event values prepared once per key.
//! Definitions without journey patterns (context only) are listed apart: they are
//! evaluated when the visit changes (see `crate::ingest::segments`), not per event.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt};

use aho_corasick::AhoCorasick;
use footpath_protocol::v1::{AttributeValue, Context, EventKind, Page};

use super::criteria::{Actual, CompiledCriterion, Criterion, Operator};
use super::definition::{attribute_of_key, Details, Scope};
use super::StoredDefinition;
use crate::enrich::geo::Geolocation;
use crate::enrich::referrer::ReferrerInfo;
use crate::enrich::user_agent::UserAgentInfo;
use crate::journey;
use crate::model::NewEvent;

/// One journey pattern of one definition: `definitions[definition].journey[pattern]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PatternRef {
    pub definition: usize,
    pub pattern: usize,
}

/// A journey pattern's criteria, compiled, each with the id of its key (see
/// [`Index::keys`]).
#[derive(Debug)]
struct CompiledPattern {
    criteria: Vec<(usize, CompiledCriterion)>,
}

/// Texts to look for in one pass, and the patterns each one files.
#[derive(Debug)]
struct Needles {
    automaton: AhoCorasick,
    patterns: Vec<Vec<PatternRef>>,
}

impl Needles {
    fn build(
        needles: BTreeMap<String, Vec<PatternRef>>,
    ) -> Result<Option<Needles>, Vec<PatternRef>> {
        if needles.is_empty() {
            return Ok(None);
        }
        match AhoCorasick::new(needles.keys()) {
            Ok(automaton) => Ok(Some(Needles {
                automaton,
                patterns: needles.into_values().collect(),
            })),
            // Too many texts for an automaton: test those patterns one by one.
            Err(_) => Err(needles.into_values().flatten().collect()),
        }
    }

    fn collect(&self, text: &str, found: &mut Vec<PatternRef>) {
        // Few texts are found in one value: a list, allocated only on a first hit.
        let mut seen: Vec<usize> = Vec::new();
        for hit in self.automaton.find_overlapping_iter(text) {
            let needle = hit.pattern().as_usize();
            if !seen.contains(&needle) {
                seen.push(needle);
                found.extend_from_slice(&self.patterns[needle]);
            }
        }
    }
}

/// The patterns filed under one event selector and one key.
#[derive(Debug, Default)]
struct Bucket {
    /// Filed by `equal`, by each listed value that is not a number, as written.
    equal_text: HashMap<String, Vec<PatternRef>>,
    /// The same, lowercased, for criteria that ignore case.
    equal_lowercase: HashMap<String, Vec<PatternRef>>,
    /// Filed by `equal`, by each listed value that is a number (its bits, zero
    /// unsigned).
    equal_number: HashMap<u64, Vec<PatternRef>>,
    /// Filed by `containsAny` / `containsAll`, by each listed text.
    contains_text: Option<Needles>,
    contains_lowercase: Option<Needles>,
    /// Filed by `startsWith`, by each listed text (as written, and lowercased).
    starts_text: Affixes,
    starts_lowercase: Affixes,
    /// Filed by `endsWith`, the same.
    ends_text: Affixes,
    ends_lowercase: Affixes,
    /// Filed by an ordering operator whose value is a number, by that number.
    ordered: Thresholds,
    /// Filed by any other criterion: tested one by one.
    rest: Vec<PatternRef>,
}

#[derive(Debug, Default)]
struct BucketBuilder {
    equal_text: HashMap<String, Vec<PatternRef>>,
    equal_lowercase: HashMap<String, Vec<PatternRef>>,
    equal_number: HashMap<u64, Vec<PatternRef>>,
    contains_text: BTreeMap<String, Vec<PatternRef>>,
    contains_lowercase: BTreeMap<String, Vec<PatternRef>>,
    starts_text: Affixes,
    starts_lowercase: Affixes,
    ends_text: Affixes,
    ends_lowercase: Affixes,
    ordered: Thresholds,
    rest: Vec<PatternRef>,
}

/// Patterns filed by texts that must begin (or end) the event's value: found by
/// looking up the value's beginnings (or endings) of the listed texts' lengths.
#[derive(Debug, Default)]
struct Affixes {
    by_text: HashMap<String, Vec<PatternRef>>,
    /// The listed texts' lengths in bytes, each once, shortest first.
    lengths: Vec<usize>,
}

impl Affixes {
    fn file(&mut self, text: &str, reference: PatternRef) {
        self.by_text
            .entry(text.to_owned())
            .or_default()
            .push(reference);
        if let Err(at) = self.lengths.binary_search(&text.len()) {
            self.lengths.insert(at, text.len());
        }
    }

    /// The patterns of the listed texts that `text` starts with (`prefix`) or ends
    /// with.
    fn collect(&self, text: &str, prefix: bool, found: &mut Vec<PatternRef>) {
        for &length in &self.lengths {
            if length > text.len() {
                break;
            }
            let part = if prefix {
                text.get(..length)
            } else {
                text.get(text.len() - length..)
            };
            if let Some(list) = part.and_then(|part| self.by_text.get(part)) {
                found.extend_from_slice(list);
            }
        }
    }
}

/// Patterns filed by an ordering criterion whose value is a number: against an event
/// value that is a number too, only those whose bound it passes are candidates (the
/// comparison is numeric then); against any other value, all of them (the comparison
/// is textual).
#[derive(Debug, Default)]
struct Thresholds {
    /// By operator (`greaterThan`, `greaterThanOrEqual`, `lessThan`,
    /// `lessThanOrEqual`), sorted by the number.
    lists: [Vec<(f64, PatternRef)>; 4],
}

impl Thresholds {
    fn slot(operator: Operator) -> Option<usize> {
        match operator {
            Operator::GreaterThan => Some(0),
            Operator::GreaterThanOrEqual => Some(1),
            Operator::LessThan => Some(2),
            Operator::LessThanOrEqual => Some(3),
            _ => None,
        }
    }

    fn sort(&mut self) {
        for list in &mut self.lists {
            list.sort_by(|left, right| left.0.total_cmp(&right.0));
        }
    }

    fn collect(&self, actual: Option<f64>, found: &mut Vec<PatternRef>) {
        let [greater, greater_or_equal, less, less_or_equal] = &self.lists;
        fn references(list: &[(f64, PatternRef)]) -> impl Iterator<Item = PatternRef> + '_ {
            list.iter().map(|(_, reference)| *reference)
        }
        let Some(actual) = actual else {
            for list in &self.lists {
                found.extend(references(list));
            }
            return;
        };
        // `actual > bound`: the bounds below it.
        let end = greater.partition_point(|(bound, _)| *bound < actual);
        found.extend(references(&greater[..end]));
        let end = greater_or_equal.partition_point(|(bound, _)| *bound <= actual);
        found.extend(references(&greater_or_equal[..end]));
        // `actual < bound`: the bounds above it.
        let start = less.partition_point(|(bound, _)| *bound <= actual);
        found.extend(references(&less[start..]));
        let start = less_or_equal.partition_point(|(bound, _)| *bound < actual);
        found.extend(references(&less_or_equal[start..]));
    }
}

fn number_key(number: f64) -> u64 {
    // `-0.0 == 0.0`: one key for both.
    if number == 0.0 {
        0.0_f64.to_bits()
    } else {
        number.to_bits()
    }
}

impl BucketBuilder {
    fn file(&mut self, reference: PatternRef, criterion: &CompiledCriterion) {
        match criterion.operator {
            Operator::Equal => {
                for value in &criterion.values {
                    let list = match value.number {
                        Some(number) => self.equal_number.entry(number_key(number)).or_default(),
                        None if criterion.should_ignore_case => {
                            self.equal_lowercase.entry(value.text.clone()).or_default()
                        }
                        None => self.equal_text.entry(value.text.clone()).or_default(),
                    };
                    list.push(reference);
                }
            }
            Operator::ContainsAny | Operator::ContainsAll
                if criterion.values.iter().all(|value| !value.text.is_empty()) =>
            {
                let needles = if criterion.should_ignore_case {
                    &mut self.contains_lowercase
                } else {
                    &mut self.contains_text
                };
                for value in &criterion.values {
                    needles
                        .entry(value.text.clone())
                        .or_default()
                        .push(reference);
                }
            }
            Operator::StartsWith | Operator::EndsWith => {
                let affixes = match (criterion.operator, criterion.should_ignore_case) {
                    (Operator::StartsWith, false) => &mut self.starts_text,
                    (Operator::StartsWith, true) => &mut self.starts_lowercase,
                    (_, false) => &mut self.ends_text,
                    (_, true) => &mut self.ends_lowercase,
                };
                for value in &criterion.values {
                    affixes.file(&value.text, reference);
                }
            }
            operator => match (
                Thresholds::slot(operator),
                criterion.values.first().and_then(|value| value.number),
            ) {
                (Some(slot), Some(bound)) => self.ordered.lists[slot].push((bound, reference)),
                _ => self.rest.push(reference),
            },
        }
    }

    fn build(self) -> Bucket {
        let mut rest = self.rest;
        let mut needles = |texts| match Needles::build(texts) {
            Ok(needles) => needles,
            Err(patterns) => {
                rest.extend(patterns);
                None
            }
        };
        let contains_text = needles(self.contains_text);
        let contains_lowercase = needles(self.contains_lowercase);
        rest.sort_unstable();
        rest.dedup();
        let mut ordered = self.ordered;
        ordered.sort();
        Bucket {
            equal_text: self.equal_text,
            equal_lowercase: self.equal_lowercase,
            equal_number: self.equal_number,
            contains_text,
            contains_lowercase,
            starts_text: self.starts_text,
            starts_lowercase: self.starts_lowercase,
            ends_text: self.ends_text,
            ends_lowercase: self.ends_lowercase,
            ordered,
            rest,
        }
    }
}

impl Bucket {
    /// The patterns that might match an event whose value of the bucket's key is
    /// `actual`. Lists may repeat a pattern.
    fn collect(&self, actual: &Actual<'_>, found: &mut Vec<PatternRef>) {
        match actual.number {
            // A number never equals a text that is not one, and the other way round.
            Some(number) => {
                if let Some(list) = self.equal_number.get(&number_key(number)) {
                    found.extend_from_slice(list);
                }
            }
            None => {
                if let Some(list) = self.equal_text.get(actual.text(false)) {
                    found.extend_from_slice(list);
                }
                if !self.equal_lowercase.is_empty() {
                    if let Some(list) = self.equal_lowercase.get(actual.text(true)) {
                        found.extend_from_slice(list);
                    }
                }
            }
        }
        if let Some(needles) = &self.contains_text {
            needles.collect(actual.text(false), found);
        }
        if let Some(needles) = &self.contains_lowercase {
            needles.collect(actual.text(true), found);
        }
        self.starts_text.collect(actual.text(false), true, found);
        self.ends_text.collect(actual.text(false), false, found);
        if !self.starts_lowercase.lengths.is_empty() || !self.ends_lowercase.lengths.is_empty() {
            self.starts_lowercase
                .collect(actual.text(true), true, found);
            self.ends_lowercase.collect(actual.text(true), false, found);
        }
        self.ordered.collect(actual.number, found);
        found.extend_from_slice(&self.rest);
    }
}

/// The patterns that look at one kind of event (one name, or pageviews).
#[derive(Debug, Default)]
struct SelectorPatterns {
    /// Patterns without criteria: candidates for every such event.
    always: Vec<PatternRef>,
    /// By key id.
    by_key: Vec<(usize, Bucket)>,
}

#[derive(Debug, Default)]
struct SelectorBuilder {
    always: Vec<PatternRef>,
    by_key: BTreeMap<usize, BucketBuilder>,
}

impl SelectorBuilder {
    fn build(self) -> SelectorPatterns {
        SelectorPatterns {
            always: self.always,
            by_key: self
                .by_key
                .into_iter()
                .map(|(key, bucket)| (key, bucket.build()))
                .collect(),
        }
    }
}

impl SelectorPatterns {
    fn collect(&self, values: &EventValues<'_>, found: &mut Vec<PatternRef>) {
        found.extend_from_slice(&self.always);
        for (key, bucket) in &self.by_key {
            if let Some(actual) = values.prepared(*key) {
                bucket.collect(actual, found);
            }
        }
    }
}

/// How well a criterion narrows the candidates when a pattern is filed by it.
fn filing_rank(criterion: &Criterion) -> (u8, bool) {
    // (Ordering criteria on a number and affixes are found by value too, but rank
    // below `equal` and `contains*`, which narrow more.)
    let operator = match criterion.operator {
        Operator::Equal => 3,
        Operator::ContainsAny | Operator::ContainsAll
            if criterion.values.iter().all(|value| !value.is_empty()) =>
        {
            2
        }
        Operator::StartsWith
        | Operator::EndsWith
        | Operator::GreaterThan
        | Operator::GreaterThanOrEqual
        | Operator::LessThan
        | Operator::LessThanOrEqual => 1,
        _ => 0,
    };
    (operator, attribute_of_key(&criterion.key).is_some())
}

#[derive(Debug, Default)]
pub struct Index {
    /// Changes whenever a definition is created, changed or deleted.
    pub generation: i64,
    /// The active definitions.
    pub definitions: Vec<StoredDefinition>,
    /// Their positions, by id.
    pub by_id: HashMap<String, usize>,
    /// Every key that journey criteria test; criteria refer to them by position.
    keys: Vec<String>,
    /// The journey patterns of each definition, compiled.
    patterns: Vec<Vec<CompiledPattern>>,
    /// The context criteria of each definition, compiled, with their keys.
    context: Vec<Vec<(String, CompiledCriterion)>>,
    /// Patterns with an `eventName`, by it.
    named: HashMap<String, SelectorPatterns>,
    /// Patterns without an `eventName` (pageviews).
    pageviews: SelectorPatterns,
    /// Definitions without journey patterns.
    pub context_only: Vec<usize>,
    /// Active Customer-scope segments, by id.
    pub customer_segments: HashMap<String, usize>,
}

impl Index {
    /// Indexes the active ones of `definitions`.
    pub fn build(generation: i64, definitions: Vec<StoredDefinition>) -> Index {
        let mut index = Index {
            generation,
            ..Index::default()
        };
        let mut key_ids: HashMap<String, usize> = HashMap::new();
        let mut named: HashMap<String, SelectorBuilder> = HashMap::new();
        let mut pageviews = SelectorBuilder::default();
        for stored in definitions
            .into_iter()
            .filter(|stored| stored.definition.is_active)
        {
            let position = index.definitions.len();
            let definition = &stored.definition;
            if definition.journey.is_empty() {
                index.context_only.push(position);
            }
            if let Details::Segment {
                scope: Scope::Customer,
                ..
            } = definition.details
            {
                index.customer_segments.insert(stored.id.clone(), position);
            }
            let mut compiled_patterns = Vec::with_capacity(definition.journey.len());
            for (pattern_index, pattern) in definition.journey.iter().enumerate() {
                let reference = PatternRef {
                    definition: position,
                    pattern: pattern_index,
                };
                let criteria: Vec<(usize, CompiledCriterion)> = pattern
                    .criteria
                    .iter()
                    .map(|criterion| {
                        let next = key_ids.len();
                        let key = *key_ids.entry(criterion.key.clone()).or_insert(next);
                        if key == index.keys.len() {
                            index.keys.push(criterion.key.clone());
                        }
                        (key, CompiledCriterion::new(criterion))
                    })
                    .collect();
                let selector = match &pattern.event_name {
                    Some(name) => named.entry(name.clone()).or_default(),
                    None => &mut pageviews,
                };
                // The first of the best-ranked criteria.
                let filing = pattern
                    .criteria
                    .iter()
                    .enumerate()
                    .rev()
                    .max_by_key(|(_, criterion)| filing_rank(criterion))
                    .map(|(position, _)| position);
                match filing {
                    Some(filing) => {
                        let (key, criterion) = &criteria[filing];
                        selector
                            .by_key
                            .entry(*key)
                            .or_default()
                            .file(reference, criterion);
                    }
                    None => selector.always.push(reference),
                }
                compiled_patterns.push(CompiledPattern { criteria });
            }
            index.patterns.push(compiled_patterns);
            index.context.push(
                definition
                    .context_criteria()
                    .map(|criterion| (criterion.key.clone(), CompiledCriterion::new(criterion)))
                    .collect(),
            );
            index.by_id.insert(stored.id.clone(), position);
            index.definitions.push(stored);
        }
        index.named = named
            .into_iter()
            .map(|(name, selector)| (name, selector.build()))
            .collect();
        index.pageviews = pageviews.build();
        index
    }

    /// Whether no event can match anything.
    pub fn is_empty(&self) -> bool {
        self.definitions.is_empty()
    }

    /// The values of `event` that this index's criteria test.
    pub fn values<'a>(&'a self, event: &'a NewEvent) -> EventValues<'a> {
        EventValues::new(event, &self.keys)
    }

    /// The journey patterns that might match the event, in order: those filed under
    /// its name (or "pageview") and found by its values (see the module's comment).
    /// Every pattern that matches is among them.
    pub fn candidates(&self, values: &EventValues<'_>) -> Vec<PatternRef> {
        let mut found = Vec::new();
        self.collect_candidates(values, &mut found);
        found
    }

    /// [`Index::candidates`], into `found` (cleared first), so that a caller can keep
    /// one buffer for many events.
    pub fn collect_candidates(&self, values: &EventValues<'_>, found: &mut Vec<PatternRef>) {
        found.clear();
        if let Some(selector) = self.named.get(values.event.name.as_str()) {
            selector.collect(values, found);
        }
        if values.event.kind == EventKind::Pageview {
            self.pageviews.collect(values, found);
        }
        if found.len() > 1 {
            found.sort_unstable();
            found.dedup();
        }
    }

    pub fn definition(&self, reference: PatternRef) -> &StoredDefinition {
        &self.definitions[reference.definition]
    }

    /// Whether every criterion of the pattern matches the event.
    pub fn pattern_matches(&self, reference: PatternRef, values: &EventValues<'_>) -> bool {
        self.patterns[reference.definition][reference.pattern]
            .criteria
            .iter()
            .all(|(key, criterion)| criterion.matches(values.prepared(*key)))
    }

    /// Whether every context criterion of the definition at `position` matches the
    /// visit.
    pub fn context_matches(&self, position: usize, visit: &Visit) -> bool {
        self.context[position]
            .iter()
            .all(|(key, criterion)| criterion.matches(visit.get(key).map(Actual::new).as_ref()))
    }

    /// Whether the definition at `position` has context criteria.
    pub fn has_context(&self, position: usize) -> bool {
        !self.context[position].is_empty()
    }
}

/// The values of one event that journey criteria test.
pub struct EventValues<'a> {
    event: &'a NewEvent,
    /// The page's parts, worked out when a `page.*` key is first asked for.
    page: OnceCell<Option<journey::JourneyPage>>,
    /// The index's keys, and their values once asked for.
    keys: &'a [String],
    prepared: Vec<OnceCell<Option<Actual<'a>>>>,
}

impl<'a> EventValues<'a> {
    /// `keys`: the keys that [`EventValues::prepared`] is asked for, by position.
    pub fn new(event: &'a NewEvent, keys: &'a [String]) -> EventValues<'a> {
        EventValues {
            event,
            page: OnceCell::new(),
            keys,
            prepared: keys.iter().map(|_| OnceCell::new()).collect(),
        }
    }

    /// The value of the key at position `key`, prepared for testing once.
    fn prepared(&self, key: usize) -> Option<&Actual<'a>> {
        self.prepared[key]
            .get_or_init(|| self.value(&self.keys[key]).map(Actual::new))
            .as_ref()
    }

    /// The value of a journey criterion's key; `None` when the event has none (empty
    /// texts count as none, except for attributes).
    fn value(&self, key: &str) -> Option<Cow<'a, str>> {
        if let Some(name) = attribute_of_key(key) {
            return self.event.attributes.get(name).map(|value| match value {
                AttributeValue::Bool(true) => Cow::Borrowed("true"),
                AttributeValue::Bool(false) => Cow::Borrowed("false"),
                AttributeValue::Number(number) => Cow::Borrowed(number.as_str()),
                AttributeValue::String(text) => Cow::Borrowed(text.as_str()),
            });
        }
        // The page's own texts, without working out the URL's parts.
        let page = self.event.page.as_ref();
        let text = match key {
            "page.url" => page.map(|page| page.url.as_str()),
            "page.title" => page.map(|page| page.title.as_str()),
            "page.keywords" => page.map(|page| page.keywords.as_str()),
            "page.lang" => page.map(|page| page.lang.as_str()),
            _ => return self.get(key).map(Cow::Owned),
        };
        text.filter(|text| !text.is_empty()).map(Cow::Borrowed)
    }

    /// The value of a journey criterion's key; `None` when the event has none (empty
    /// texts count as none).
    pub fn get(&self, key: &str) -> Option<String> {
        if let Some(name) = attribute_of_key(key) {
            return self.event.attributes.get(name).map(AttributeValue::to_text);
        }
        let page = self
            .page
            .get_or_init(|| self.event.page.as_ref().map(journey::journey_page))
            .as_ref();
        let value = match key {
            "page.url" => page.map(|page| page.url.clone()),
            "page.title" => page.and_then(|page| page.title.clone()),
            "page.domain" => page.and_then(|page| page.domain.clone()),
            "page.hostname" => page.and_then(|page| page.hostname.clone()),
            "page.pathname" => page.and_then(|page| page.pathname.clone()),
            "page.queryString" => page.and_then(|page| page.query_string.clone()),
            "page.fragment" => page.and_then(|page| page.fragment.clone()),
            "page.keywords" => page.and_then(|page| page.keywords.clone()),
            "page.lang" => page.and_then(|page| page.lang.clone()),
            "searchQuery" => self
                .event
                .page
                .as_ref()
                .and_then(|page| page.search_query.clone()),
            _ => None,
        };
        value.filter(|value| !value.is_empty())
    }

    /// The attribute as a number of the given kind, for an outcome's associated value.
    pub fn attribute(&self, name: &str) -> Option<String> {
        self.event.attributes.get(name).map(AttributeValue::to_text)
    }
}

/// What is known about the visit (the session) that context criteria test: one text
/// per key of [`super::definition::VISIT_KEYS`] that has a value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Visit {
    values: BTreeMap<&'static str, String>,
}

/// The session's data that a [`Visit`] is made of.
#[derive(Debug, Clone, Default)]
pub struct VisitSources {
    /// The parsed user agent of the session's first event that has one.
    pub user_agent: Option<UserAgentInfo>,
    /// The context of the session's latest event that has one.
    pub context: Option<Context>,
    pub geolocation: Option<Geolocation>,
    /// The session's first pageview, and its stored referrer classification.
    pub landing_page: Option<Page>,
    pub landing_referrer: Option<ReferrerInfo>,
    pub authenticated: bool,
}

impl Visit {
    pub fn new(sources: &VisitSources) -> Visit {
        let mut values: BTreeMap<&'static str, String> = BTreeMap::new();
        let mut put = |key: &'static str, value: Option<String>| {
            if let Some(value) = value.filter(|value| !value.is_empty()) {
                values.insert(key, value);
            }
        };
        if let Some(ua) = &sources.user_agent {
            let category = serde_json::to_value(ua.device_category)
                .ok()
                .and_then(|value| value.as_str().map(str::to_owned));
            put("device.category", category);
            put("device.type", Some(ua.device_type.clone()));
            put("device.isMobile", Some(ua.is_mobile.to_string()));
            put("device.osFamily", Some(ua.os_family.clone()));
            put("device.osVersion", ua.os_version.clone());
            put("device.manufacturer", ua.manufacturer.clone());
            put("browser.family", Some(ua.browser_family.clone()));
            put("browser.version", ua.browser_version.clone());
        }
        put(
            "browser.lang",
            sources
                .context
                .as_ref()
                .map(|context| context.browser_lang.clone()),
        );
        if let Some(geo) = &sources.geolocation {
            put("geolocation.country", geo.country.clone());
            put("geolocation.countryName", geo.country_name.clone());
            put("geolocation.region", geo.region.clone());
            put("geolocation.regionName", geo.region_name.clone());
            put("geolocation.locality", geo.locality.clone());
            put("geolocation.postalCode", geo.postal_code.clone());
        }
        if let Some(page) = &sources.landing_page {
            if let Some(referrer) = journey::referrer(page, sources.landing_referrer.as_ref()) {
                let medium = referrer
                    .medium
                    .as_ref()
                    .and_then(|medium| serde_json::to_value(medium).ok())
                    .and_then(|value| value.as_str().map(str::to_owned));
                put("referrer.medium", medium);
                put("referrer.name", referrer.name.clone());
                put("referrer.hostname", referrer.hostname.clone());
                put("referrer.domain", referrer.domain.clone());
                put("referrer.url", Some(referrer.url.clone()));
            }
            if let Some(campaign) = journey::campaign(page) {
                put("mktCampaign.source", campaign.source);
                put("mktCampaign.medium", campaign.medium);
                put("mktCampaign.name", campaign.name);
                put("mktCampaign.term", campaign.term);
                put("mktCampaign.content", campaign.content);
            }
        }
        put("authenticated", Some(sources.authenticated.to_string()));
        put("customerIdType", Some("cookie".to_owned()));
        Visit { values }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// A text that changes whenever a value changes.
    pub fn fingerprint(&self) -> String {
        self.values
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join("\u{1f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segments::definition::{parse, DefinitionKind};
    use serde_json::json;

    fn stored(id: &str, body: serde_json::Value) -> StoredDefinition {
        StoredDefinition {
            id: id.to_owned(),
            version: 1,
            definition: parse(DefinitionKind::Segment, &body).unwrap(),
            created_ms: 0,
            modified_ms: 0,
        }
    }

    fn event(kind: EventKind, name: &str, attributes: &[&str]) -> NewEvent {
        NewEvent {
            id: "e".into(),
            kind,
            name: name.into(),
            time_ms: 0,
            client_time_ms: 0,
            received_ms: 0,
            page: None,
            context: None,
            login_id: None,
            attributes: attributes
                .iter()
                .map(|name| ((*name).to_owned(), AttributeValue::String("x".into())))
                .collect(),
            traits: BTreeMap::new(),
            user_agent: None,
            ip_address: None,
            user_agent_info: None,
            geolocation: None,
            referrer_info: None,
            identity_verified: false,
            identity_proof: Default::default(),
        }
    }

    #[test]
    fn candidates_come_from_the_event_name_and_attributes_only() {
        let mut definitions = vec![
            stored(
                "pages",
                json!({"displayName": "p", "color": "#000000",
                "journey": {"patterns": [{"count": 3}]}}),
            ),
            stored(
                "orders",
                json!({"displayName": "o", "color": "#000000",
                "journey": {"patterns": [{"eventName": "order_completed"}]}}),
            ),
            stored(
                "big-orders",
                json!({"displayName": "b", "color": "#000000",
                "journey": {"patterns": [{"eventName": "order_completed", "criteria": [
                    {"key": "attributes.value.value", "operator": "greaterThan", "values": ["100"]}]}]}}),
            ),
            stored(
                "mobile",
                json!({"displayName": "m", "color": "#000000",
                "context": {"patterns": [{"criteria": [
                    {"key": "device.category", "operator": "equal", "values": ["mobile"]}]}]}}),
            ),
            stored(
                "inactive",
                json!({"displayName": "i", "color": "#000000", "isActive": false,
                "journey": {"patterns": [{"count": 1}]}}),
            ),
        ];
        // Many unrelated definitions do not change what an event looks at.
        for n in 0..300 {
            definitions.push(stored(
                &format!("other-{n}"),
                json!({"displayName": "x", "color": "#000000",
                "journey": {"patterns": [{"eventName": format!("event_{n}")}]}}),
            ));
        }
        let index = Index::build(7, definitions);
        let ids = |event: &NewEvent| -> Vec<String> {
            let values = index.values(event);
            index
                .candidates(&values)
                .into_iter()
                .map(|reference| index.definition(reference).id.clone())
                .collect()
        };
        assert_eq!(
            ids(&event(EventKind::Pageview, "page_viewed", &[])),
            ["pages"]
        );
        assert_eq!(
            ids(&event(EventKind::Record, "order_completed", &[])),
            ["orders"]
        );
        assert_eq!(
            ids(&event(EventKind::Record, "order_completed", &["value"])),
            ["orders", "big-orders"]
        );
        assert_eq!(
            ids(&event(EventKind::Record, "cart_added", &["value"])),
            Vec::<String>::new()
        );
        assert_eq!(
            ids(&event(EventKind::Record, "event_42", &[])),
            ["other-42"]
        );
        assert_eq!(index.context_only.len(), 1);
        assert_eq!(index.definitions.len(), 304, "the inactive one is left out");
    }

    /// An event with the given attribute values (texts, or JSON numbers when they parse
    /// as one) and, for a pageview, a page at `url`.
    fn valued_event(
        kind: EventKind,
        name: &str,
        attributes: &[(&str, &str)],
        url: Option<&str>,
    ) -> NewEvent {
        let mut event = event(kind, name, &[]);
        for (key, value) in attributes {
            let value = match footpath_protocol::v1::Number::parse(value) {
                Some(number) if key.starts_with("n") => AttributeValue::Number(number),
                _ => AttributeValue::String((*value).to_owned()),
            };
            event.attributes.insert((*key).to_owned(), value);
        }
        event.page = url.map(|url| Page {
            url: url.to_owned(),
            ..Page::default()
        });
        event
    }

    /// Every operator, with and without case folding, on attribute and page keys, alone
    /// and combined: the index finds every pattern that matches (checked against
    /// `Criterion::matches`, the reference), and its compiled test agrees.
    #[test]
    fn candidates_include_every_match_and_compiled_tests_agree() {
        let value_lists: &[&[&str]] = &[
            &["shoes"],
            &["SHOES", "bags"],
            &["10"],
            &["1e1", "x"],
            &["blue"],
            &["-42", "42"],
            &[""],
            &["ÉTÉ"],
        ];
        let mut definitions = Vec::new();
        for operator in Operator::ALL {
            for ignore_case in [false, true] {
                for (list_index, values) in value_lists.iter().enumerate() {
                    if operator.is_ordering() && values.len() != 1 {
                        continue;
                    }
                    let criterion = |key: &str| {
                        json!({"key": key, "operator": operator.as_str(),
                            "values": values, "shouldIgnoreCase": ignore_case})
                    };
                    let id = |shape: &str| {
                        format!("{}-{ignore_case}-{list_index}-{shape}", operator.as_str())
                    };
                    definitions.push(stored(
                        &id("attribute"),
                        json!({"displayName": "a", "color": "#000000",
                            "journey": {"patterns": [{"eventName": "product_viewed",
                                "criteria": [criterion("attributes.a.value")]}]}}),
                    ));
                    definitions.push(stored(
                        &id("number"),
                        json!({"displayName": "n", "color": "#000000",
                            "journey": {"patterns": [{"eventName": "product_viewed",
                                "criteria": [criterion("attributes.n.value")]}]}}),
                    ));
                    definitions.push(stored(
                        &id("url"),
                        json!({"displayName": "u", "color": "#000000",
                            "journey": {"patterns": [{"criteria": [criterion("page.url")]}]}}),
                    ));
                    definitions.push(stored(
                        &id("both"),
                        json!({"displayName": "b", "color": "#000000",
                            "journey": {"patterns": [{"eventName": "page_viewed", "criteria": [
                                criterion("page.url"),
                                {"key": "attributes.a.value", "operator": "notEqual",
                                    "values": ["none"]}]}]}}),
                    ));
                }
            }
        }
        let index = Index::build(1, definitions);
        let texts = [
            "shoes",
            "SHOES",
            "Shoes and bags",
            "10",
            "10.0",
            "1E1",
            "-42",
            "42",
            "9",
            "blue-42",
            "x",
            "",
            "l'été",
            "https://shop.example/shoes?size=42",
        ];
        let mut events = Vec::new();
        for text in texts {
            events.push(valued_event(
                EventKind::Record,
                "product_viewed",
                &[("a", text), ("n", text)],
                None,
            ));
            events.push(valued_event(
                EventKind::Pageview,
                "page_viewed",
                &[("a", text)],
                Some(text),
            ));
        }
        events.push(valued_event(EventKind::Record, "product_viewed", &[], None));
        events.push(valued_event(EventKind::Pageview, "page_viewed", &[], None));
        let mut matches = 0;
        for event in &events {
            let values = index.values(event);
            let candidates = index.candidates(&values);
            for (position, stored) in index.definitions.iter().enumerate() {
                let pattern = &stored.definition.journey[0];
                let selected = match &pattern.event_name {
                    Some(name) => *name == event.name,
                    None => event.kind == EventKind::Pageview,
                };
                let expected = selected
                    && pattern
                        .criteria
                        .iter()
                        .all(|criterion| criterion.matches(values.get(&criterion.key).as_deref()));
                let reference = PatternRef {
                    definition: position,
                    pattern: 0,
                };
                let candidate = candidates.contains(&reference);
                if expected {
                    matches += 1;
                    assert!(candidate, "{} is not a candidate for {event:?}", stored.id);
                }
                if candidate {
                    assert_eq!(
                        index.pattern_matches(reference, &values),
                        expected,
                        "{} on {event:?}",
                        stored.id
                    );
                }
            }
        }
        assert!(matches > 100, "the table matches something: {matches}");
    }

    /// Patterns filed by `equal` or `containsAny` are not even candidates for events
    /// whose value cannot match them, however many there are.
    #[test]
    fn equal_and_contains_patterns_are_found_by_value() {
        let mut definitions = Vec::new();
        for n in 0..200 {
            definitions.push(stored(
                &format!("category-{n}"),
                json!({"displayName": "c", "color": "#000000",
                "journey": {"patterns": [{"eventName": "page_viewed", "criteria": [
                    {"key": "attributes.category.value", "operator": "equal",
                        "values": [format!("bags-{n}")]}]}]}}),
            ));
            definitions.push(stored(
                &format!("url-{n}"),
                json!({"displayName": "u", "color": "#000000",
                "journey": {"patterns": [{"criteria": [
                    {"key": "page.url", "operator": "containsAny", "shouldIgnoreCase": true,
                        "values": [format!("/Basket/{n}/"), format!("/checkout/{n}/")]}]}]}}),
            ));
            definitions.push(stored(
                &format!("price-{n}"),
                json!({"displayName": "p", "color": "#000000",
                "journey": {"patterns": [{"eventName": "page_viewed", "criteria": [
                    {"key": "attributes.price.value", "operator": "equal",
                        "values": [format!("{n}.0")]}]}]}}),
            ));
        }
        let index = Index::build(1, definitions);
        let ids = |event: &NewEvent| -> Vec<String> {
            let values = index.values(event);
            index
                .candidates(&values)
                .into_iter()
                .map(|reference| index.definition(reference).id.clone())
                .collect()
        };
        let event = valued_event(
            EventKind::Pageview,
            "page_viewed",
            &[("category", "bags-7"), ("price", "12")],
            Some("https://shop.example/BASKET/42/"),
        );
        assert_eq!(ids(&event), ["category-7", "price-12", "url-42"]);
        let event = valued_event(
            EventKind::Pageview,
            "page_viewed",
            &[("category", "shoes")],
            Some("https://shop.example/products/1"),
        );
        assert_eq!(ids(&event), Vec::<String>::new());
    }

    /// Patterns filed by `startsWith`, `endsWith` or an ordering operator on a number
    /// are candidates only for events whose value can pass them; against a value that
    /// is not a number, ordering ones compare texts, so they all are.
    #[test]
    fn affix_and_ordering_patterns_are_found_by_value() {
        let mut definitions = Vec::new();
        for n in 0..100 {
            let criterion = |key: &str, operator: &str, value: String| {
                json!({"displayName": "x", "color": "#000000",
                "journey": {"patterns": [{"eventName": "page_viewed", "criteria": [
                    {"key": key, "operator": operator, "values": [value],
                        "shouldIgnoreCase": n % 2 == 0}]}]}})
            };
            definitions.push(stored(
                &format!("starts-{n}"),
                criterion(
                    "attributes.variant.value",
                    "startsWith",
                    format!("Red-{n}-"),
                ),
            ));
            definitions.push(stored(
                &format!("ends-{n}"),
                criterion("attributes.variant.value", "endsWith", format!("-{n}x")),
            ));
            definitions.push(stored(
                &format!("above-{n}"),
                criterion(
                    "attributes.price.value",
                    "greaterThan",
                    format!("{}", 1000 + n),
                ),
            ));
            definitions.push(stored(
                &format!("below-{n}"),
                criterion("attributes.price.value", "lessThanOrEqual", format!("{n}")),
            ));
        }
        let index = Index::build(1, definitions);
        let ids = |event: &NewEvent| -> Vec<String> {
            let values = index.values(event);
            index
                .candidates(&values)
                .into_iter()
                .map(|reference| index.definition(reference).id.clone())
                .collect()
        };
        let event = valued_event(
            EventKind::Record,
            "page_viewed",
            &[("variant", "red-4-big-7x"), ("price", "1002")],
            None,
        );
        assert_eq!(ids(&event), ["above-0", "above-1", "starts-4", "ends-7"]);
        let event = valued_event(
            EventKind::Record,
            "page_viewed",
            &[("variant", "Red-5-"), ("price", "98.5")],
            None,
        );
        assert_eq!(ids(&event), ["starts-5", "below-99"]);
        let event = valued_event(
            EventKind::Record,
            "page_viewed",
            &[("price", "cheap")],
            None,
        );
        assert_eq!(ids(&event).len(), 200);
    }
}
