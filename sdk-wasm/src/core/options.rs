//! The options of `ac('init', deploymentId, options)`, with their defaults.

use super::Consent;

/// When page views are recorded without an explicit `ac('pageview')`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageviewMode {
    /// One page view right after `init` (the default). `'once'` means the same.
    Auto,
    /// Only explicit `ac('pageview')` calls record page views.
    Off,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub deployment_id: String,
    /// Where batches go; by default the origin the SDK was loaded from.
    pub collector_url: String,
    pub cookie_domain: Option<String>,
    pub cookie_expiry_days: u32,
    pub session_timeout_ms: i64,
    /// The names of the search and excluded query parameters, each followed by `\x01`,
    /// as `fp_page` takes them (joined once, at `init`, rather than at every event);
    /// and how many search parameters there are.
    pub search_query_parameters: String,
    pub searched: u32,
    pub excluded_query_parameters: String,
    pub keep_url_fragment: bool,
    pub pageview: PageviewMode,
    /// `consent`: `Granted` unless the site asks for its visitors' consent first.
    pub consent: Consent,
    /// `honorGlobalPrivacyControl` (default on) and `honorDoNotTrack` (default off):
    /// whether the browser's signal counts as a denial.
    pub honor_global_privacy_control: bool,
    pub honor_do_not_track: bool,
}

impl Options {
    pub const DEFAULT_COOKIE_EXPIRY_DAYS: u32 = 365;
    pub const DEFAULT_SESSION_TIMEOUT_MS: i64 = 20 * 60 * 1000;

    pub fn new(deployment_id: String, collector_url: String) -> Options {
        Options {
            deployment_id,
            collector_url,
            cookie_domain: None,
            cookie_expiry_days: Self::DEFAULT_COOKIE_EXPIRY_DAYS,
            session_timeout_ms: Self::DEFAULT_SESSION_TIMEOUT_MS,
            search_query_parameters: "q\x01".to_owned(),
            searched: 1,
            excluded_query_parameters: String::new(),
            keep_url_fragment: false,
            pageview: PageviewMode::Auto,
            consent: Consent::Granted,
            honor_global_privacy_control: true,
            honor_do_not_track: false,
        }
    }
}
