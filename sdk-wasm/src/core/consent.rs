//! Whether the SDK may track this visitor, from the site's word, the visitor's
//! remembered choices and the browser's privacy signals.
//!
//! The decision is made once at `init` and again after every `ac('consent')`,
//! `ac('optOut')` and `ac('optIn')`. Only a granted decision lets the SDK set its
//! visitor cookie, write `localStorage` or send anything; while it is pending, events
//! wait in memory (held by the host, see `Host::hold`); a denial drops them.

/// The first-party cookie that remembers `ac('consent', ...)`: `granted` or `denied`,
/// never an identifier, so that the next page knows the visitor's answer.
pub const CONSENT_COOKIE: &str = "_footpath_consent";
/// The first-party cookie that remembers `ac('optOut')`: `1`, never an identifier.
pub const OPT_OUT_COOKIE: &str = "_footpath_optout";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consent {
    Pending,
    Granted,
    Denied,
}

impl Consent {
    /// `'pending'`, `'granted'` or `'denied'`, as the page and the cookie spell them.
    pub fn parse(text: &str) -> Option<Consent> {
        match text {
            "pending" => Some(Consent::Pending),
            "granted" => Some(Consent::Granted),
            "denied" => Some(Consent::Denied),
            _ => None,
        }
    }
}

/// Everything the decision depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signals {
    /// The `consent` option of `init`; `Granted` when the site gave none, so that
    /// sites without a consent banner track as before.
    pub site: Consent,
    /// The visitor's last `ac('consent', ...)` answer, remembered in [`CONSENT_COOKIE`].
    pub remembered: Option<Consent>,
    /// `ac('optOut')`, remembered in [`OPT_OUT_COOKIE`].
    pub opted_out: bool,
    /// `navigator.globalPrivacyControl` is on and the site honours it.
    pub privacy_control: bool,
    /// Do Not Track is on and the site honours it.
    pub do_not_track: bool,
}

/// The visitor's opt-out and an honoured browser signal deny whatever else was said.
/// Otherwise a remembered answer settles a page that says `pending`, so that a visitor
/// is asked once, not on every page; a site that states `granted` or `denied` at
/// `init` (its own consent tool knows) is taken at its word.
pub fn decide(signals: Signals) -> Consent {
    if signals.opted_out || signals.privacy_control || signals.do_not_track {
        return Consent::Denied;
    }
    match (signals.site, signals.remembered) {
        (Consent::Pending, Some(remembered)) => remembered,
        (site, _) => site,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Consent::*;

    fn signals(site: Consent, remembered: Option<Consent>) -> Signals {
        Signals {
            site,
            remembered,
            opted_out: false,
            privacy_control: false,
            do_not_track: false,
        }
    }

    #[test]
    fn decisions() {
        let opted_out = Signals {
            opted_out: true,
            ..signals(Granted, Some(Granted))
        };
        let privacy_control = Signals {
            privacy_control: true,
            ..signals(Granted, None)
        };
        let do_not_track = Signals {
            do_not_track: true,
            ..signals(Pending, Some(Granted))
        };
        let table = [
            (
                signals(Granted, None),
                Granted,
                "no consent option: as before",
            ),
            (signals(Pending, None), Pending, "asked, no answer yet"),
            (
                signals(Pending, Some(Granted)),
                Granted,
                "answered on an earlier page",
            ),
            (
                signals(Pending, Some(Denied)),
                Denied,
                "denied on an earlier page",
            ),
            (
                signals(Granted, Some(Denied)),
                Granted,
                "the site's own tool says granted",
            ),
            (
                signals(Denied, Some(Granted)),
                Denied,
                "the site's own tool says denied",
            ),
            (opted_out, Denied, "the visitor opted out"),
            (privacy_control, Denied, "Global Privacy Control"),
            (do_not_track, Denied, "Do Not Track"),
        ];
        for (input, expected, why) in table {
            assert_eq!(decide(input), expected, "{why}: {input:?}");
        }
    }

    #[test]
    fn consent_parses_the_three_words_only() {
        for (text, expected) in [
            ("pending", Some(Pending)),
            ("granted", Some(Granted)),
            ("denied", Some(Denied)),
            ("Granted", None),
            ("", None),
            ("yes", None),
        ] {
            assert_eq!(Consent::parse(text), expected, "{text:?}");
        }
    }
}
