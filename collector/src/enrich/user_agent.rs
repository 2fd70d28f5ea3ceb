//! The `User-Agent` header → browser, operating system and device.
//!
//! Why `ua-parser` and uap-core: uap-core is the de-facto shared database of
//! user-agent rules (ports exist for most languages, and it is updated as browsers and
//! devices appear), and `ua-parser` is the Rust port maintained by the same
//! organisation. It evaluates the rules with a prefilter (`regex-filtered`), so that a
//! lookup tries only the few regexes whose literals occur in the string. The crate
//! ships no data on purpose; `data/uap-core/regexes.json` is the vendored copy.
//! (`woothee` has its own smaller database and no device brand; `uaparser` is an older,
//! less active port of the same rules.)
//!
//! uap-core says what the browser, OS and device are, but not the Journey API's device
//! category; [`device_category`] derives it from them.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

/// The uap-core rules, converted from `regexes.yaml` to JSON (see `data/README.md`).
const UAP_REGEXES_JSON: &str = include_str!("../../data/uap-core/regexes.json");

/// The compiled rules, built on first use and shared by every request (compiling a
/// thousand regexes takes a while). An error here is a broken data file: the
/// collector refuses to start (see [`check_rules`]).
static EXTRACTOR: LazyLock<Result<ua_parser::Extractor<'static>, String>> = LazyLock::new(|| {
    let regexes: ua_parser::Regexes<'static> = serde_json::from_str(UAP_REGEXES_JSON)
        .map_err(|error| format!("uap-core rules are not valid JSON: {error}"))?;
    ua_parser::Extractor::try_from(regexes)
        .map_err(|error| format!("uap-core rules do not compile: {error:?}"))
});

/// Compiles the rules now, so that startup fails on a broken data file rather than
/// every request going without user-agent data.
pub fn check_rules() -> Result<(), String> {
    EXTRACTOR.as_ref().map(|_| ()).map_err(Clone::clone)
}

/// The Journey API's device categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceCategory {
    Desktop,
    Mobile,
    Tablet,
    /// Bots, TVs, consoles, and whatever cannot be told.
    Other,
}

/// What a user agent string says, as stored with each event. Absent values are
/// left out; uap-core's `Other` (no rule matched) is kept, as its ports all report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserAgentInfo {
    pub browser_family: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser_version: Option<String>,
    pub os_family: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    pub device_category: DeviceCategory,
    /// uap-core's device family: `iPhone`, `iPad`, `Samsung SM-S911B`, `Spider` (a
    /// bot), or `Other` (typically a computer).
    pub device_type: String,
    /// The device brand when known (`Apple`, `Samsung`, `Google`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    /// True for phones and tablets: the device is handheld.
    pub is_mobile: bool,
}

/// Parses a user agent string. `None` for an empty string, or when the rules failed to
/// load (which [`check_rules`] turns into a startup error).
pub fn parse_user_agent(user_agent: &str) -> Option<UserAgentInfo> {
    let user_agent = user_agent.trim();
    if user_agent.is_empty() {
        return None;
    }
    // Running uap-core's few hundred rules costs tens of microseconds, and a site's
    // traffic comes from a few thousand distinct browsers: the answers are cached by
    // the exact string (bounded, so varied strings cannot grow memory).
    if let Some(cached) = PARSED.get(user_agent) {
        return cached;
    }
    let parsed = parse_uncached(user_agent);
    PARSED.insert(user_agent.to_owned(), parsed.clone());
    parsed
}

/// Parsed user agents by their text (see [`parse_user_agent`]).
static PARSED: LazyLock<quick_cache::sync::Cache<String, Option<UserAgentInfo>>> =
    LazyLock::new(|| quick_cache::sync::Cache::new(10_000));

fn parse_uncached(user_agent: &str) -> Option<UserAgentInfo> {
    let extractor = EXTRACTOR.as_ref().ok()?;
    let (browser, os, device) = extractor.extract(user_agent);
    let (browser_family, browser_version) = match browser {
        Some(browser) => (
            browser.family.into_owned(),
            version([browser.major, browser.minor, browser.patch]),
        ),
        None => (OTHER.to_owned(), None),
    };
    let (os_family, os_version) = match os {
        Some(os) => {
            let parts = [os.major, os.minor, os.patch];
            let version = version(parts.each_ref().map(|part| part.as_deref()));
            (os.os.into_owned(), version)
        }
        None => (OTHER.to_owned(), None),
    };
    let (device_type, brand) = match device {
        Some(device) => (
            device.device.into_owned(),
            device.brand.map(|b| b.into_owned()),
        ),
        None => (OTHER.to_owned(), None),
    };
    // uap-core marks brandless Android devices "Generic_Android" and the like, and
    // gives bots the brand "Spider": neither is a manufacturer.
    let manufacturer = brand
        .filter(|brand| !brand.is_empty() && !brand.starts_with("Generic") && brand != "Spider");
    let device_category = device_category(user_agent, &os_family, &device_type);
    Some(UserAgentInfo {
        browser_family,
        browser_version,
        os_family,
        os_version,
        device_category,
        device_type,
        manufacturer,
        is_mobile: matches!(
            device_category,
            DeviceCategory::Mobile | DeviceCategory::Tablet
        ),
    })
}

/// What uap-core answers when no rule matches.
const OTHER: &str = "Other";

/// `major.minor.patch`, up to the first missing part; `None` without a major version.
fn version(parts: [Option<&str>; 3]) -> Option<String> {
    let parts: Vec<&str> = parts
        .into_iter()
        .map_while(|part| part.filter(|part| !part.is_empty()))
        .collect();
    (!parts.is_empty()).then(|| parts.join("."))
}

/// Operating systems of phones (and, for Android, tablets: see below).
const MOBILE_OS_FAMILIES: &[&str] = &[
    "iOS",
    "Android",
    "Windows Phone",
    "Windows Mobile",
    "BlackBerry OS",
    "BlackBerry Tablet OS",
    "Firefox OS",
    "KaiOS",
    "Symbian OS",
    "Symbian^3",
    "Tizen",
    "HarmonyOS",
    "webOS",
];

/// Operating systems of computers. Windows comes in many spellings ("Windows",
/// "Windows XP", ...) and is matched by prefix below.
const DESKTOP_OS_FAMILIES: &[&str] = &[
    "Mac OS X",
    "Mac OS",
    "Linux",
    "Ubuntu",
    "Debian",
    "Fedora",
    "Red Hat",
    "SUSE",
    "openSUSE",
    "Gentoo",
    "Mint",
    "Linux Mint",
    "Arch Linux",
    "Chrome OS",
    "ChromeOS",
    "FreeBSD",
    "OpenBSD",
    "NetBSD",
    "Solaris",
];

/// The rules, in order:
/// 1. uap-core's `Spider` device (crawlers, monitors, link previews) is `other`.
/// 2. iPads, Kindles, and UAs that say `Tablet` are tablets; so is Android without the
///    `Mobile` token, which Android browsers send on phones only (Google's convention).
/// 3. Mobile operating systems, and any UA with a `Mobi` token, are mobile.
/// 4. Desktop operating systems are desktop.
/// 5. Anything else (TVs, consoles, unknown) is `other`.
pub fn device_category(user_agent: &str, os_family: &str, device_type: &str) -> DeviceCategory {
    if device_type == "Spider" {
        return DeviceCategory::Other;
    }
    let says_tablet = (user_agent.contains("Tablet") && !user_agent.contains("Tablet PC"))
        || user_agent.contains("Kindle")
        || user_agent.contains("Silk/");
    if device_type == "iPad"
        || says_tablet
        || (os_family == "Android" && !user_agent.contains("Mobile"))
    {
        return DeviceCategory::Tablet;
    }
    let is_windows_desktop = os_family.starts_with("Windows")
        && !matches!(os_family, "Windows Phone" | "Windows Mobile" | "Windows RT");
    if MOBILE_OS_FAMILIES.contains(&os_family) || user_agent.contains("Mobi") {
        return DeviceCategory::Mobile;
    }
    if is_windows_desktop || DESKTOP_OS_FAMILIES.contains(&os_family) {
        return DeviceCategory::Desktop;
    }
    DeviceCategory::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.109 Safari/537.36";
    const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1.2 Mobile/15E148 Safari/604.1";
    const CHROME_ANDROID_PHONE: &str = "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.6045.163 Mobile Safari/537.36";
    const CHROME_ANDROID_REDUCED: &str = "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36";
    const SAFARI_IPAD: &str = "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1";
    const ANDROID_TABLET: &str = "Mozilla/5.0 (Linux; Android 12; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.5993.111 Safari/537.36";
    const FIREFOX_LINUX: &str =
        "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
    const SAFARI_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15";
    const GOOGLEBOT: &str =
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    const CURL: &str = "curl/8.5.0";

    struct Expected {
        browser: (&'static str, Option<&'static str>),
        os: (&'static str, Option<&'static str>),
        category: DeviceCategory,
        device_type: &'static str,
        manufacturer: Option<&'static str>,
    }

    fn check(user_agent: &str, expected: Expected) {
        let parsed = parse_user_agent(user_agent).expect(user_agent);
        let wanted = UserAgentInfo {
            browser_family: expected.browser.0.to_owned(),
            browser_version: expected.browser.1.map(str::to_owned),
            os_family: expected.os.0.to_owned(),
            os_version: expected.os.1.map(str::to_owned),
            device_category: expected.category,
            device_type: expected.device_type.to_owned(),
            manufacturer: expected.manufacturer.map(str::to_owned),
            is_mobile: matches!(
                expected.category,
                DeviceCategory::Mobile | DeviceCategory::Tablet
            ),
        };
        assert_eq!(parsed, wanted, "{user_agent}");
    }

    #[test]
    fn user_agents() {
        use DeviceCategory::*;
        check(
            CHROME_WINDOWS,
            Expected {
                browser: ("Chrome", Some("120.0.6099")),
                os: ("Windows", Some("10")),
                category: Desktop,
                device_type: "Other",
                manufacturer: None,
            },
        );
        check(
            SAFARI_IPHONE,
            Expected {
                browser: ("Mobile Safari", Some("17.1.2")),
                os: ("iOS", Some("17.1.2")),
                category: Mobile,
                device_type: "iPhone",
                manufacturer: Some("Apple"),
            },
        );
        check(
            CHROME_ANDROID_PHONE,
            Expected {
                browser: ("Chrome Mobile", Some("119.0.6045")),
                os: ("Android", Some("13")),
                category: Mobile,
                device_type: "Samsung SM-S911B",
                manufacturer: Some("Samsung"),
            },
        );
        check(
            CHROME_ANDROID_REDUCED,
            Expected {
                browser: ("Chrome Mobile", Some("126.0.0")),
                os: ("Android", Some("10")),
                category: Mobile,
                device_type: "K",
                manufacturer: None,
            },
        );
        check(
            SAFARI_IPAD,
            Expected {
                browser: ("Mobile Safari", Some("16.6")),
                os: ("iOS", Some("16.6")),
                category: Tablet,
                device_type: "iPad",
                manufacturer: Some("Apple"),
            },
        );
        check(
            ANDROID_TABLET,
            Expected {
                browser: ("Chrome", Some("118.0.5993")),
                os: ("Android", Some("12")),
                category: Tablet,
                // uap-core does not know this model's brand.
                device_type: "SM-X700",
                manufacturer: None,
            },
        );
        check(
            FIREFOX_LINUX,
            Expected {
                browser: ("Firefox", Some("121.0")),
                os: ("Linux", None),
                category: Desktop,
                device_type: "Other",
                manufacturer: None,
            },
        );
        check(
            SAFARI_MAC,
            Expected {
                browser: ("Safari", Some("17.1")),
                os: ("Mac OS X", Some("10.15.7")),
                category: Desktop,
                device_type: "Mac",
                manufacturer: Some("Apple"),
            },
        );
        check(
            GOOGLEBOT,
            Expected {
                browser: ("Googlebot", Some("2.1")),
                os: ("Other", None),
                category: Other,
                device_type: "Spider",
                manufacturer: None,
            },
        );
        // No device rule matches curl; its unknown OS makes it "other".
        check(
            CURL,
            Expected {
                browser: ("curl", Some("8.5.0")),
                os: ("Other", None),
                category: Other,
                device_type: "Other",
                manufacturer: None,
            },
        );
        check(
            "SomethingNobodyKnows/1.0",
            Expected {
                browser: ("Other", None),
                os: ("Other", None),
                category: Other,
                device_type: "Other",
                manufacturer: None,
            },
        );
    }

    #[test]
    fn empty_user_agent_is_absent() {
        assert_eq!(parse_user_agent(""), None);
        assert_eq!(parse_user_agent("   "), None);
    }

    #[test]
    fn rules_load() {
        check_rules().unwrap();
    }

    #[test]
    fn versions_stop_at_the_first_missing_part() {
        assert_eq!(version([Some("1"), None, Some("3")]), Some("1".into()));
        assert_eq!(
            version([Some("1"), Some("2"), Some("3")]),
            Some("1.2.3".into())
        );
        assert_eq!(version([None, Some("2"), None]), None);
        assert_eq!(version([Some(""), None, None]), None);
    }
}
