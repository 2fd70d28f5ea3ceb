//! `User-Agent` headers → browser, operating system and device (`ua-parser` with the
//! vendored uap-core rules, and the collector's device category).
//!
//! Invariants: only an empty (or blank) header yields nothing; versions are dotted
//! numbers' text without empty parts; the category is the one `device_category` gives
//! for the parsed families, and "mobile" means a phone or a tablet.

#![no_main]

use footpath_collector::enrich::user_agent::{device_category, parse_user_agent, DeviceCategory};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|user_agent: &str| {
    let Some(info) = parse_user_agent(user_agent) else {
        assert!(user_agent.trim().is_empty(), "no result for {user_agent:?}");
        return;
    };
    assert!(!user_agent.trim().is_empty());
    for version in [&info.browser_version, &info.os_version]
        .into_iter()
        .flatten()
    {
        assert!(
            !version.is_empty() && version.split('.').all(|part| !part.is_empty()),
            "version {version:?} of {user_agent:?}"
        );
    }
    assert_eq!(
        info.device_category,
        device_category(user_agent.trim(), &info.os_family, &info.device_type),
        "{user_agent:?}"
    );
    assert_eq!(
        info.is_mobile,
        matches!(
            info.device_category,
            DeviceCategory::Mobile | DeviceCategory::Tablet
        )
    );
    if let Some(manufacturer) = &info.manufacturer {
        assert!(
            !manufacturer.is_empty() && !manufacturer.starts_with("Generic"),
            "{info:?}"
        );
    }
});
