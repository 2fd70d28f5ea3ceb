//! A referrer URL → who sent the visitor (name), how (medium), and the search terms.
//!
//! The known referrers come from a [`ReferrerList`]: the list that Footpath writes and
//! ships itself, `data/referrers/referrers.json` (Apache-2.0 like the rest of the
//! project; see `data/referrers/README.md`), compiled in, plus, when the operator sets
//! `referrer_list_path`, a fuller file of the same shape read at startup. Lookup: host
//! and full path, then host and first path segment, then host, then the same with
//! leading labels removed one at a time (`www.linkedin.com` finds `linkedin.com`), so
//! the list names registrable domains and only the subdomains that mean something
//! else (`mail.google.com` is Gmail, not Google's search).
//!
//! The medium, in order of precedence (see [`classify`]):
//! 1. `internal`: the referrer's registrable domain is the page's (`www.shop.example`
//!    → `checkout.shop.example`).
//! 2. `paid`: the page URL carries an ad click id ([`PAID_CLICK_IDS`]) or a
//!    `utm_medium` of `cpc`, `ppc`, or starting with `paid` (`paidsearch`,
//!    `paid_social`). `fbclid` does not count: Facebook adds it to organic links too.
//! 3. `email`: `utm_medium=email`, or a known webmail host.
//! 4. `search` / `social` / `email` / `paid` / `unknown` from the list; a host not on
//!    the list is `unknown`.
//!
//! `name` is the list's name of the referrer (Google, Bing, Facebook, Gmail) whatever
//! the medium, and is absent for unknown and internal referrers. `keywords` are the
//! search terms when the referrer is a search engine whose URL carries them (Google
//! has not, for most searches, since 2011).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::LazyLock;

use footpath_protocol::v1::Page;
use serde::{Deserialize, Serialize};

use super::registrable_domain;

/// The list compiled into the collector.
const EMBEDDED_LIST_JSON: &str = include_str!("../../data/referrers/referrers.json");

/// Click-id parameters that only ad clicks set.
pub const PAID_CLICK_IDS: &[&str] = &["gclid", "gbraid", "wbraid", "dclid", "msclkid", "ttclid"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Medium {
    Internal,
    Search,
    Social,
    Email,
    Paid,
    Unknown,
}

/// The classification of a referrer, as stored with each event; the URL parts are
/// computed from the URL when read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferrerInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub medium: Medium,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keywords: Option<String>,
}

#[derive(Debug, Clone)]
struct KnownReferrer {
    name: String,
    medium: Medium,
    parameters: Vec<String>,
}

/// One referrer of a list file. Other keys are ignored, so that lists written for
/// other tools in this shape load as they are.
#[derive(Deserialize)]
struct ListEntry {
    domains: Vec<String>,
    #[serde(default)]
    parameters: Vec<String>,
}

/// A list file: medium → referrer name → its hosts and search-term parameters.
type ListFile = BTreeMap<String, BTreeMap<String, ListEntry>>;

/// A list file that cannot be used; the collector refuses to start with it.
#[derive(Debug, thiserror::Error)]
#[error("cannot load the referrer list {path}: {problem}")]
pub struct ReferrerListError {
    path: String,
    problem: String,
}

/// Known referrers by host, or `host/path` for the entries that need a path.
///
/// The file format, shared by the embedded list and an operator's file:
///
/// ```json
/// { "search": { "Bing": { "domains": ["bing.com"], "parameters": ["q"] } },
///   "social": { "LinkedIn": { "domains": ["linkedin.com", "lnkd.in"] } },
///   "email": { "Gmail": { "domains": ["mail.google.com"] } },
///   "unknown": { "Google": { "domains": ["maps.google.com", "google.com/maps"] } } }
/// ```
///
/// The media are `search`, `social`, `email`, `paid` and `unknown`; `parameters` (the
/// query parameters that carry search terms, first found wins) matter for `search`
/// only. Host names are matched without case and without a trailing dot.
#[derive(Debug, Clone, Default)]
pub struct ReferrerList {
    known: HashMap<String, KnownReferrer>,
}

static EMBEDDED_LIST: LazyLock<ReferrerList> = LazyLock::new(|| {
    // The embedded file is tested to load (see the tests below); were it broken, every
    // referrer would be unknown rather than the collector stopped.
    ReferrerList::parse(EMBEDDED_LIST_JSON).unwrap_or_default()
});

impl ReferrerList {
    /// The list compiled into the collector.
    pub fn embedded() -> &'static ReferrerList {
        &EMBEDDED_LIST
    }

    /// The embedded list with the referrers of the file at `path` added; where both
    /// know a host, the file's entry wins. Fails, naming the file, when it cannot be
    /// read, is not JSON of the list's shape, names an unknown medium, has an empty
    /// host, or names no referrer at all.
    pub fn embedded_with_file(path: &Path) -> Result<ReferrerList, ReferrerListError> {
        let error = |problem: String| ReferrerListError {
            path: path.display().to_string(),
            problem,
        };
        let text = std::fs::read_to_string(path).map_err(|source| error(source.to_string()))?;
        let from_file = ReferrerList::parse(&text).map_err(error)?;
        if from_file.known.is_empty() {
            return Err(error("it names no referrer".to_owned()));
        }
        let mut list = ReferrerList::embedded().clone();
        list.known.extend(from_file.known);
        Ok(list)
    }

    /// Reads a list in the file format; the error says what is wrong and where.
    pub fn parse(json: &str) -> Result<ReferrerList, String> {
        let file: ListFile = serde_json::from_str(json).map_err(|error| {
            format!("it is not a referrer list (an object of media, each an object of referrers with their \"domains\"): {error}")
        })?;
        let mut known = HashMap::new();
        for (medium_name, entries) in file {
            let medium = match medium_name.as_str() {
                "search" => Medium::Search,
                "social" => Medium::Social,
                "email" => Medium::Email,
                "paid" => Medium::Paid,
                "unknown" => Medium::Unknown,
                _ => {
                    return Err(format!(
                        "unknown medium {medium_name:?} (expected search, social, email, paid or unknown)"
                    ))
                }
            };
            for (name, entry) in entries {
                if entry.domains.is_empty() {
                    return Err(format!("{name:?} ({medium_name}) lists no domains"));
                }
                for domain in entry.domains {
                    let domain = domain.trim().to_ascii_lowercase();
                    let domain = domain.trim_end_matches('.');
                    if domain.is_empty() || domain.starts_with('/') {
                        return Err(format!("{name:?} ({medium_name}) has an empty host"));
                    }
                    known.insert(
                        domain.to_owned(),
                        KnownReferrer {
                            name: name.clone(),
                            medium,
                            parameters: entry.parameters.clone(),
                        },
                    );
                }
            }
        }
        Ok(ReferrerList { known })
    }

    /// How many hosts (and host/path entries) the list knows.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    fn lookup(&self, host: &str, path: &str) -> Option<&KnownReferrer> {
        let known = &self.known;
        let first_segment = path.split('/').find(|segment| !segment.is_empty());
        let mut host = host.trim_end_matches('.');
        loop {
            let found = known
                .get(&format!("{host}{path}"))
                .filter(|_| path.len() > 1)
                .or_else(|| {
                    first_segment.and_then(|segment| known.get(&format!("{host}/{segment}")))
                })
                .or_else(|| known.get(host));
            if found.is_some() {
                return found;
            }
            // Drop the leading label, keeping at least two.
            let (_, rest) = host.split_once('.')?;
            if !rest.contains('.') {
                return None;
            }
            host = rest;
        }
    }
}

/// How many referrers the embedded list knows; for the tests and the startup log.
pub fn known_referrer_count() -> usize {
    ReferrerList::embedded().len()
}

/// Classifies the page's referrer by the embedded list; `None` when the page has none
/// or it is not an absolute URL with a host.
pub fn classify(page: &Page) -> Option<ReferrerInfo> {
    ReferrerCache::default().classify(page, None)
}

/// What [`classify`] learns from a referrer URL alone, kept per referrer text.
#[derive(Debug)]
struct ReferrerSide<'list> {
    /// The registrable domain of the referrer's host.
    domain: String,
    known: Option<&'list KnownReferrer>,
    keywords: Option<String>,
}

/// [`classify`] for the events of one batch, which nearly always share their referrer
/// and page host: the referrer's parsing, list lookup and public-suffix lookup, and
/// the page host's public-suffix lookup, are done once per distinct text. It lives as
/// long as the batch, so it holds at most one entry per event. `default()` classifies
/// by the embedded list; [`ReferrerCache::new`] by the collector's own list.
#[derive(Debug)]
pub struct ReferrerCache<'list> {
    list: &'list ReferrerList,
    referrers: HashMap<String, Option<ReferrerSide<'list>>>,
    page_domains: HashMap<String, String>,
}

impl Default for ReferrerCache<'static> {
    fn default() -> ReferrerCache<'static> {
        ReferrerCache::new(ReferrerList::embedded())
    }
}

impl<'list> ReferrerCache<'list> {
    /// A cache that classifies by `list`.
    pub fn new(list: &'list ReferrerList) -> ReferrerCache<'list> {
        ReferrerCache {
            list,
            referrers: HashMap::new(),
            page_domains: HashMap::new(),
        }
    }

    /// Same result as [`classify`]. `page_url`, when given, must be `page.url` parsed
    /// (the caller often has it already); otherwise it is parsed here.
    pub fn classify(&mut self, page: &Page, page_url: Option<&url::Url>) -> Option<ReferrerInfo> {
        if !self.referrers.contains_key(&page.referrer) {
            let side = referrer_side(self.list, &page.referrer);
            self.referrers.insert(page.referrer.clone(), side);
        }
        let referrer = self.referrers.get(&page.referrer)?.as_ref()?;

        let parsed_here;
        let page_url = match page_url {
            Some(url) => Some(url),
            None => {
                parsed_here = url::Url::parse(&page.url).ok();
                parsed_here.as_ref()
            }
        };
        let page_domain = page_url.and_then(|url| url.host_str()).map(|host| {
            if !self.page_domains.contains_key(host) {
                self.page_domains
                    .insert(host.to_owned(), registrable_domain(host));
            }
            self.page_domains[host].as_str()
        });

        // The page's query is decoded once, not once per parameter looked up.
        let query_pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> = page_url
            .filter(|url| url.query().is_some())
            .map(|url| url.query_pairs().collect())
            .unwrap_or_default();
        let campaign_value = |name: &str| -> Option<String> {
            page.campaign
                .get(name)
                .cloned()
                .or_else(|| {
                    query_pairs
                        .iter()
                        .find(|(key, _)| key == name)
                        .map(|(_, value)| value.clone().into_owned())
                })
                .filter(|value| !value.is_empty())
        };
        let utm_medium = campaign_value("utm_medium").map(|medium| medium.to_ascii_lowercase());
        let has_paid_click_id = PAID_CLICK_IDS
            .iter()
            .any(|parameter| campaign_value(parameter).is_some());
        let utm_says_paid = utm_medium
            .as_deref()
            .is_some_and(|medium| matches!(medium, "cpc" | "ppc") || medium.starts_with("paid"));

        let known = referrer.known;
        let medium = if page_domain == Some(referrer.domain.as_str()) {
            Medium::Internal
        } else if has_paid_click_id || utm_says_paid {
            Medium::Paid
        } else if utm_medium.as_deref() == Some("email") {
            Medium::Email
        } else {
            known.map_or(Medium::Unknown, |known| known.medium)
        };
        let internal = medium == Medium::Internal;
        Some(ReferrerInfo {
            name: known.map(|known| known.name.clone()).filter(|_| !internal),
            medium,
            keywords: referrer.keywords.clone().filter(|_| !internal),
        })
    }
}

/// The part of the classification that depends on the referrer only; `None` when it
/// is not an absolute URL with a host.
fn referrer_side<'list>(
    list: &'list ReferrerList,
    referrer_text: &str,
) -> Option<ReferrerSide<'list>> {
    let referrer = url::Url::parse(referrer_text.trim()).ok()?;
    let referrer_host = referrer.host_str()?.to_ascii_lowercase();
    let known = list.lookup(&referrer_host, referrer.path());
    let keywords = known
        .filter(|known| known.medium == Medium::Search)
        .and_then(|known| search_terms(&referrer, &known.parameters));
    Some(ReferrerSide {
        domain: registrable_domain(&referrer_host),
        known,
        keywords,
    })
}

/// The value of the first of `parameters` that the referrer's query carries.
fn search_terms(referrer: &url::Url, parameters: &[String]) -> Option<String> {
    let pairs: Vec<(String, String)> = referrer.query_pairs().into_owned().collect();
    parameters.iter().find_map(|parameter| {
        pairs
            .iter()
            .find(|(key, value)| key == parameter && !value.trim().is_empty())
            .map(|(_, value)| value.trim().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "https://www.shop.example/shoes";

    /// The expected (name, medium, keywords), or `None` for "no referrer".
    type Expected = Option<(Option<&'static str>, Medium, Option<&'static str>)>;
    /// Page URL, referrer URL, the page's campaign parameters, and the expectation.
    type Row = (
        &'static str,
        &'static str,
        &'static [(&'static str, &'static str)],
        Expected,
    );

    /// Classifies `referrer` for a page at `page_url`, with `campaign` parameters as
    /// the SDK reports them.
    fn check(page_url: &str, referrer: &str, campaign: &[(&str, &str)], expected: Expected) {
        let page = Page {
            url: page_url.to_owned(),
            referrer: referrer.to_owned(),
            campaign: campaign
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
            ..Page::default()
        };
        let expected = expected.map(|(name, medium, keywords)| ReferrerInfo {
            name: name.map(str::to_owned),
            medium,
            keywords: keywords.map(str::to_owned),
        });
        assert_eq!(
            classify(&page),
            expected,
            "{referrer} → {page_url} {campaign:?}"
        );
        // A batch's cache gives the same answer, whether it has seen the referrer or
        // the page host before or not, and with the page URL parsed by the caller.
        let mut cache = ReferrerCache::default();
        let page_url = url::Url::parse(&page.url).ok();
        for _ in 0..2 {
            assert_eq!(
                cache.classify(&page, page_url.as_ref()),
                expected,
                "cached: {referrer} → {page_url:?} {campaign:?}"
            );
            assert_eq!(
                cache.classify(&page, None),
                expected,
                "cached, unparsed: {referrer} → {page_url:?} {campaign:?}"
            );
        }
    }

    /// Events of one batch that share a referrer but not their pages, or the reverse,
    /// are each classified by their own page and referrer.
    #[test]
    fn a_batch_cache_keeps_events_apart() {
        let page = |url: &str, referrer: &str| Page {
            url: url.to_owned(),
            referrer: referrer.to_owned(),
            ..Page::default()
        };
        let mut cache = ReferrerCache::default();
        let google = "https://www.google.com/search?q=boots";
        let medium = |cache: &mut ReferrerCache, page: &Page| {
            cache.classify(page, None).map(|info| info.medium)
        };
        let cases = [
            (page("https://shop.example/a", google), Some(Medium::Search)),
            (
                page("https://www.google.com/maps", google),
                Some(Medium::Internal),
            ),
            (
                page("https://shop.example/b?gclid=1", google),
                Some(Medium::Paid),
            ),
            (
                page("https://shop.example/c", "https://shop.example/a"),
                Some(Medium::Internal),
            ),
            (page("https://shop.example/d", "not a url"), None),
            (page("https://shop.example/e", google), Some(Medium::Search)),
        ];
        for (page, expected) in &cases {
            assert_eq!(medium(&mut cache, page), *expected, "{page:?}");
            assert_eq!(
                classify(page).map(|info| info.medium),
                *expected,
                "{page:?}"
            );
        }
    }

    #[test]
    fn referrers() {
        use Medium::*;
        let table: &[Row] = &[
            // Search engines, with and without search terms.
            (
                PAGE,
                "https://www.google.com/search?q=red+shoes&hl=en",
                &[],
                Some((Some("Google"), Search, Some("red shoes"))),
            ),
            (
                PAGE,
                "https://www.google.co.uk/",
                &[],
                Some((Some("Google"), Search, None)),
            ),
            (
                PAGE,
                "https://www.bing.com/search?q=running%20shoes&form=QBLH",
                &[],
                Some((Some("Bing"), Search, Some("running shoes"))),
            ),
            (
                PAGE,
                "https://duckduckgo.com/?q=shoes+uk&t=h_",
                &[],
                Some((Some("DuckDuckGo"), Search, Some("shoes uk"))),
            ),
            (
                PAGE,
                "https://search.yahoo.com/search?p=trainers",
                &[],
                Some((Some("Yahoo!"), Search, Some("trainers"))),
            ),
            (
                PAGE,
                "https://yandex.ru/search/?text=%D0%BE%D0%B1%D1%83%D0%B2%D1%8C",
                &[],
                Some((Some("Yandex"), Search, Some("обувь"))),
            ),
            // Social networks, including hosts found by removing leading labels.
            (
                PAGE,
                "https://www.facebook.com/",
                &[],
                Some((Some("Facebook"), Social, None)),
            ),
            (
                PAGE,
                "https://l.facebook.com/l.php?u=https%3A%2F%2Fwww.shop.example",
                &[],
                Some((Some("Facebook"), Social, None)),
            ),
            (
                PAGE,
                "https://t.co/AbCdEf",
                &[],
                Some((Some("Twitter"), Social, None)),
            ),
            (
                PAGE,
                "https://x.com/someone/status/1",
                &[],
                Some((Some("Twitter"), Social, None)),
            ),
            (
                PAGE,
                "https://www.linkedin.com/feed/",
                &[],
                Some((Some("LinkedIn"), Social, None)),
            ),
            // Webmail hosts, and utm_medium=email from an unknown host.
            (
                PAGE,
                "https://mail.google.com/mail/u/0/",
                &[],
                Some((Some("Gmail"), Email, None)),
            ),
            (
                PAGE,
                "https://outlook.live.com/mail/0/inbox",
                &[],
                Some((Some("Outlook.com"), Email, None)),
            ),
            (
                PAGE,
                "https://newsletter-tool.example/click",
                &[("utm_medium", "email")],
                Some((None, Email, None)),
            ),
            // Same registrable domain: internal, whatever the host or the parameters.
            (
                PAGE,
                "https://www.shop.example/cart",
                &[],
                Some((None, Internal, None)),
            ),
            (
                PAGE,
                "https://checkout.shop.example/pay",
                &[("gclid", "x")],
                Some((None, Internal, None)),
            ),
            (
                "https://www.example.co.uk/a",
                "https://blog.example.co.uk/",
                &[],
                Some((None, Internal, None)),
            ),
            (
                "https://www.example.co.uk/a",
                "https://www.other.co.uk/",
                &[],
                Some((None, Unknown, None)),
            ),
            // Unknown sites.
            (
                PAGE,
                "https://blog.someone.example/post",
                &[],
                Some((None, Unknown, None)),
            ),
            // Paid: a click id in the page's campaign parameters or its URL, or a paid
            // utm_medium; the referrer keeps its name.
            (
                PAGE,
                "https://www.google.com/",
                &[("gclid", "EAIaIQ")],
                Some((Some("Google"), Paid, None)),
            ),
            (
                "https://www.shop.example/shoes?msclkid=abc",
                "https://www.bing.com/",
                &[],
                Some((Some("Bing"), Paid, None)),
            ),
            (
                PAGE,
                "https://www.facebook.com/",
                &[("utm_medium", "paid_social")],
                Some((Some("Facebook"), Paid, None)),
            ),
            (
                PAGE,
                "https://blog.someone.example/",
                &[("utm_medium", "CPC")],
                Some((None, Paid, None)),
            ),
            // fbclid is set on organic Facebook links too.
            (
                PAGE,
                "https://www.facebook.com/",
                &[("fbclid", "IwAR0")],
                Some((Some("Facebook"), Social, None)),
            ),
            // No usable referrer.
            (PAGE, "", &[], None),
            (PAGE, "not a url", &[], None),
        ];
        for (page_url, referrer, campaign, expected) in table {
            check(page_url, referrer, campaign, *expected);
        }
    }

    /// The embedded list knows the major search engines (with their search terms),
    /// social networks and webmail hosts, under the hosts that people meet them at.
    #[test]
    fn the_embedded_list_knows_the_major_referrers() {
        // "referrer → name | medium | search terms", without search terms when the
        // referrer carries none.
        let table = [
            "https://www.google.com/search?q=red+shoes → Google | search | red shoes",
            "https://www.google.de/search?q=schuhe → Google | search | schuhe",
            "https://www.google.com.au/ → Google | search",
            "https://www.google.co.jp/search?q=kutsu → Google | search | kutsu",
            "https://google.fr/ → Google | search",
            "https://images.google.com/ → Google | search",
            "android-app://com.google.android.googlequicksearchbox/ → Google | search",
            "https://www.google.com/maps/place/x → Google | unknown",
            "https://docs.google.com/document/d/1 → Google | unknown",
            "https://www.bing.com/search?q=boots → Bing | search | boots",
            "https://cn.bing.com/search?q=boots → Bing | search | boots",
            "https://uk.search.yahoo.com/search?p=boots → Yahoo! | search | boots",
            "https://search.yahoo.co.jp/search?p=kutsu → Yahoo! | search | kutsu",
            "https://html.duckduckgo.com/html/?q=boots → DuckDuckGo | search | boots",
            "https://www.baidu.com/s?wd=xie → Baidu | search | xie",
            "https://m.baidu.com/s?word=xie → Baidu | search | xie",
            "https://yandex.com.tr/search/?text=ayakkabi → Yandex | search | ayakkabi",
            "https://www.ecosia.org/search?q=boots → Ecosia | search | boots",
            "https://www.qwant.com/?q=chaussures → Qwant | search | chaussures",
            "https://search.naver.com/search.naver?query=sinbal → Naver | search | sinbal",
            "https://search.seznam.cz/?q=boty → Seznam | search | boty",
            "https://www.startpage.com/do/search?query=boots → Startpage | search | boots",
            "https://search.brave.com/search?q=boots → Brave | search | boots",
            "https://www.ask.com/web?q=boots → Ask | search | boots",
            "https://search.aol.com/aol/search?q=boots → AOL | search | boots",
            "https://www.facebook.com/ → Facebook | social",
            "https://m.facebook.com/story.php → Facebook | social",
            "https://lm.facebook.com/l.php?u=x → Facebook | social",
            "https://l.instagram.com/?u=x → Instagram | social",
            "https://t.co/AbCdEf → Twitter | social",
            "https://twitter.com/someone → Twitter | social",
            "https://lnkd.in/abc → LinkedIn | social",
            "https://www.pinterest.co.uk/pin/1/ → Pinterest | social",
            "https://old.reddit.com/r/running/ → Reddit | social",
            "https://m.youtube.com/watch?v=1 → YouTube | social",
            "https://youtu.be/1 → YouTube | social",
            "https://www.tiktok.com/@someone → TikTok | social",
            "https://news.ycombinator.com/item?id=1 → Hacker News | social",
            "https://mail.google.com/mail/u/0/ → Gmail | email",
            "android-app://com.google.android.gm/ → Gmail | email",
            "https://outlook.live.com/mail/0/inbox → Outlook.com | email",
            "https://outlook.office365.com/mail/ → Outlook | email",
            "https://mail.yahoo.com/d/folders/1 → Yahoo Mail | email",
            "https://mail.aol.com/ → AOL Mail | email",
            "https://www.icloud.com/mail/ → iCloud Mail | email",
            "https://mail.proton.me/u/0/inbox → Proton Mail | email",
            "https://mail.yandex.ru/ → Yandex Mail | email",
        ];
        for row in table {
            let (referrer, expected) = row.split_once(" → ").unwrap();
            let mut parts = expected.split(" | ");
            let name = parts.next().unwrap();
            let medium: Medium = serde_json::from_value(parts.next().unwrap().into()).unwrap();
            check(
                PAGE,
                referrer,
                &[],
                Some((Some(name), medium, parts.next())),
            );
        }
    }

    #[test]
    fn the_embedded_list_loads_and_names_each_host_once() {
        let list = ReferrerList::parse(EMBEDDED_LIST_JSON).expect("the embedded list loads");
        let file: ListFile = serde_json::from_str(EMBEDDED_LIST_JSON).unwrap();
        let mut hosts = 0;
        for (medium, entries) in &file {
            for (name, entry) in entries {
                hosts += entry.domains.len();
                assert_eq!(
                    medium == "search",
                    !entry.parameters.is_empty(),
                    "{name}: search engines, and only they, have search parameters"
                );
                for domain in &entry.domains {
                    assert_eq!(domain, &domain.to_ascii_lowercase(), "{name}");
                    assert!(
                        !domain.starts_with("www."),
                        "{name}: {domain}: the lookup finds www. hosts"
                    );
                }
            }
        }
        assert_eq!(list.len(), hosts, "a host is listed twice");
        assert!(list.len() > 300, "{}", list.len());
        assert_eq!(known_referrer_count(), list.len());
    }

    #[test]
    fn a_list_file_adds_hosts_and_wins_over_the_embedded_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fuller.json");
        std::fs::write(
            &path,
            r#"{
                "search": { "Example Search": { "domains": ["Search.Example."], "parameters": ["k", "q"] } },
                "social": { "Bing Social": { "domains": ["bing.com"] } },
                "paid": { "Example Ads": { "domains": ["ads.example"] } }
            }"#,
        )
        .unwrap();
        let list = ReferrerList::embedded_with_file(&path).unwrap();
        assert_eq!(list.len(), ReferrerList::embedded().len() + 2);
        let classify_with = |referrer: &str| {
            let page = Page {
                url: PAGE.to_owned(),
                referrer: referrer.to_owned(),
                ..Page::default()
            };
            ReferrerCache::new(&list).classify(&page, None)
        };
        let info = |name: &str, medium, keywords: Option<&str>| ReferrerInfo {
            name: Some(name.to_owned()),
            medium,
            keywords: keywords.map(str::to_owned),
        };
        assert_eq!(
            classify_with("https://www.search.example/find?k=boots"),
            Some(info("Example Search", Medium::Search, Some("boots")))
        );
        assert_eq!(
            classify_with("https://ads.example/click"),
            Some(info("Example Ads", Medium::Paid, None))
        );
        assert_eq!(
            classify_with("https://www.bing.com/search?q=boots"),
            Some(info("Bing Social", Medium::Social, None))
        );
        assert_eq!(
            classify_with("https://www.facebook.com/"),
            Some(info("Facebook", Medium::Social, None))
        );
        // The embedded list itself is unchanged.
        assert_eq!(
            classify(&Page {
                url: PAGE.to_owned(),
                referrer: "https://www.search.example/find?k=boots".to_owned(),
                ..Page::default()
            }),
            Some(ReferrerInfo {
                name: None,
                medium: Medium::Unknown,
                keywords: None
            })
        );
    }

    /// A list file that cannot be used is refused with its path and what is wrong.
    #[test]
    fn an_unusable_list_file_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let table: &[(&str, Option<&str>, &str)] = &[
            ("missing.json", None, "No such file"),
            ("syntax.json", Some(r#"{"search": {"#), "EOF while parsing"),
            (
                "array.json",
                Some(r#"["google.com"]"#),
                "it is not a referrer list",
            ),
            (
                "no-domains-key.json",
                Some(r#"{"search": {"X": {"hosts": ["x.example"]}}}"#),
                "missing field `domains`",
            ),
            (
                "domain-number.json",
                Some(r#"{"social": {"X": {"domains": [42]}}}"#),
                "invalid type: integer `42`",
            ),
            (
                "medium.json",
                Some(r#"{"serch": {"X": {"domains": ["x.example"]}}}"#),
                r#"unknown medium "serch""#,
            ),
            (
                "internal.json",
                Some(r#"{"internal": {"X": {"domains": ["x.example"]}}}"#),
                r#"unknown medium "internal""#,
            ),
            (
                "empty-host.json",
                Some(r#"{"social": {"X": {"domains": [" "]}}}"#),
                r#""X" (social) has an empty host"#,
            ),
            (
                "no-domains.json",
                Some(r#"{"email": {"X": {"domains": []}}}"#),
                r#""X" (email) lists no domains"#,
            ),
            ("nothing.json", Some("{}"), "it names no referrer"),
        ];
        for &(file_name, contents, problem) in table {
            let path = dir.path().join(file_name);
            if let Some(contents) = contents {
                std::fs::write(&path, contents).unwrap();
            }
            let error = ReferrerList::embedded_with_file(&path)
                .expect_err(file_name)
                .to_string();
            let prefix = format!("cannot load the referrer list {}: ", path.display());
            assert!(error.starts_with(&prefix), "{error}");
            assert!(error.contains(problem), "{file_name}: {error}");
        }
    }
}
