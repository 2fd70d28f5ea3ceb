//! A referrer URL → who sent the visitor (name), how (medium), and the search terms.
//!
//! The known referrers come from Snowplow's referer-parser database, vendored as
//! `data/referer-parser/referers.json` (source and licence in `data/README.md`), plus
//! [`ADDITIONAL_REFERRERS`] for hosts that appeared after that release. Lookup follows
//! referer-parser's own algorithm: host and full path, then host and first path
//! segment, then host, then the same with leading labels removed one at a time
//! (`www.linkedin.com` finds `linkedin.com`).
//!
//! The medium, in order of precedence (see [`classify`]):
//! 1. `internal`: the referrer's registrable domain is the page's (`www.shop.example`
//!    → `checkout.shop.example`).
//! 2. `paid`: the page URL carries an ad click id ([`PAID_CLICK_IDS`]) or a
//!    `utm_medium` of `cpc`, `ppc`, or starting with `paid` (`paidsearch`,
//!    `paid_social`). `fbclid` does not count: Facebook adds it to organic links too.
//! 3. `email`: `utm_medium=email`, or a known webmail host.
//! 4. `search` / `social` / `email` / `unknown` from the list; a host not on the list
//!    is `unknown`.
//!
//! `name` is the list's name of the referrer (Google, Bing, Facebook, Gmail) whatever
//! the medium, and is absent for unknown and internal referrers. `keywords` are the
//! search terms when the referrer is a search engine whose URL carries them (Google
//! has not, for most searches, since 2011).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use footpath_protocol::v1::Page;
use serde::{Deserialize, Serialize};

use super::registrable_domain;

const REFERERS_JSON: &str = include_str!("../../data/referer-parser/referers.json");

/// Referrers missing from the vendored release: (medium, name, hosts, search-term
/// parameters). Names follow the list's own where it has the referrer already.
const ADDITIONAL_REFERRERS: &[(Medium, &str, &[&str], &[&str])] = &[
    (Medium::Social, "Twitter", &["x.com", "mobile.x.com"], &[]),
    (Medium::Social, "Bluesky", &["bsky.app"], &[]),
    (
        Medium::Social,
        "Threads",
        &["threads.net", "threads.com"],
        &[],
    ),
    (Medium::Social, "TikTok", &["tiktok.com"], &[]),
    (Medium::Social, "Mastodon", &["mastodon.social"], &[]),
    (Medium::Social, "WhatsApp", &["web.whatsapp.com"], &[]),
    (Medium::Email, "Outlook.com", &["outlook.live.com"], &[]),
    (
        Medium::Email,
        "Outlook",
        &["outlook.office.com", "outlook.office365.com"],
        &[],
    ),
    (Medium::Email, "Proton Mail", &["mail.proton.me"], &[]),
    (Medium::Search, "Brave", &["search.brave.com"], &["q"]),
    (
        Medium::Search,
        "Startpage",
        &["startpage.com"],
        &["query", "q"],
    ),
];

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

#[derive(Debug)]
struct KnownReferrer {
    name: String,
    medium: Medium,
    parameters: Vec<String>,
}

#[derive(Deserialize)]
struct ListEntry {
    domains: Vec<String>,
    #[serde(default)]
    parameters: Vec<String>,
}

/// Known referrers by host, or `host/path` for the entries that need a path.
static KNOWN_REFERRERS: LazyLock<HashMap<String, KnownReferrer>> = LazyLock::new(|| {
    let mut known = HashMap::new();
    // The file is tested to parse (see the tests below); an unparsable file would
    // leave every referrer unknown rather than stop the collector.
    let list: BTreeMap<String, BTreeMap<String, ListEntry>> =
        serde_json::from_str(REFERERS_JSON).unwrap_or_default();
    for (medium, entries) in list {
        let medium = match medium.as_str() {
            "search" => Medium::Search,
            "social" => Medium::Social,
            "email" => Medium::Email,
            _ => Medium::Unknown,
        };
        for (name, entry) in entries {
            for domain in entry.domains {
                known.insert(
                    domain,
                    KnownReferrer {
                        name: name.clone(),
                        medium,
                        parameters: entry.parameters.clone(),
                    },
                );
            }
        }
    }
    for &(medium, name, hosts, parameters) in ADDITIONAL_REFERRERS {
        for host in hosts {
            known
                .entry((*host).to_owned())
                .or_insert_with(|| KnownReferrer {
                    name: name.to_owned(),
                    medium,
                    parameters: parameters.iter().map(|p| (*p).to_owned()).collect(),
                });
        }
    }
    known
});

/// How many referrers the list knows; for the tests and the startup log.
pub fn known_referrer_count() -> usize {
    KNOWN_REFERRERS.len()
}

fn lookup(host: &str, path: &str) -> Option<&'static KnownReferrer> {
    let known = &*KNOWN_REFERRERS;
    let first_segment = path.split('/').find(|segment| !segment.is_empty());
    let mut host = host.trim_end_matches('.');
    loop {
        let found = known
            .get(&format!("{host}{path}"))
            .filter(|_| path.len() > 1)
            .or_else(|| first_segment.and_then(|segment| known.get(&format!("{host}/{segment}"))))
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

/// Classifies the page's referrer; `None` when the page has none or it is not an
/// absolute URL with a host.
pub fn classify(page: &Page) -> Option<ReferrerInfo> {
    ReferrerCache::default().classify(page, None)
}

/// What [`classify`] learns from a referrer URL alone, kept per referrer text.
#[derive(Debug)]
struct ReferrerSide {
    /// The registrable domain of the referrer's host.
    domain: String,
    known: Option<&'static KnownReferrer>,
    keywords: Option<String>,
}

/// [`classify`] for the events of one batch, which nearly always share their referrer
/// and page host: the referrer's parsing, list lookup and public-suffix lookup, and
/// the page host's public-suffix lookup, are done once per distinct text. It lives as
/// long as the batch, so it holds at most one entry per event.
#[derive(Debug, Default)]
pub struct ReferrerCache {
    referrers: HashMap<String, Option<ReferrerSide>>,
    page_domains: HashMap<String, String>,
}

impl ReferrerCache {
    /// Same result as [`classify`]. `page_url`, when given, must be `page.url` parsed
    /// (the caller often has it already); otherwise it is parsed here.
    pub fn classify(&mut self, page: &Page, page_url: Option<&url::Url>) -> Option<ReferrerInfo> {
        if !self.referrers.contains_key(&page.referrer) {
            let side = referrer_side(&page.referrer);
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
fn referrer_side(referrer_text: &str) -> Option<ReferrerSide> {
    let referrer = url::Url::parse(referrer_text.trim()).ok()?;
    let referrer_host = referrer.host_str()?.to_ascii_lowercase();
    let known = lookup(&referrer_host, referrer.path());
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

    #[test]
    fn the_vendored_list_loads() {
        // Over 300 referrers, each with several hosts.
        assert!(known_referrer_count() > 1_000, "{}", known_referrer_count());
    }
}
