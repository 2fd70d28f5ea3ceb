//! What the module keeps of `ac('init', deploymentId, options)`. `host.js` reads and
//! checks the options (`fpOptions`) and keeps those only it needs: the collector's URL,
//! the cookie's domain and lifetime, the page's search and excluded query parameters,
//! the URL fragment, and which privacy signals count.

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
    /// The deployment id as a JSON string, quoted and escaped by `host.js`, as every
    /// event carries it.
    pub deployment_id: String,
    pub session_timeout_ms: i64,
    pub pageview: PageviewMode,
    /// `consent`: `Granted` unless the site asks for its visitors' consent first.
    pub consent: Consent,
}

impl Options {
    pub const DEFAULT_SESSION_TIMEOUT_MS: i64 = 20 * 60 * 1000;

    /// The defaults, for the deployment whose JSON string is `deployment_id`.
    pub fn new(deployment_id: String) -> Options {
        Options {
            deployment_id,
            session_timeout_ms: Self::DEFAULT_SESSION_TIMEOUT_MS,
            pageview: PageviewMode::Auto,
            consent: Consent::Granted,
        }
    }
}
