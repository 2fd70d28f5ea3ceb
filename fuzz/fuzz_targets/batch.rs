//! `POST /sdk/v1/batch` bodies, along the path the batch handler takes
//! (`collector/src/app/batch.rs`): the nesting pre-scan, serde's decoding into the
//! protocol's `Batch`, the envelope checks, then per event the configured size limits,
//! `validate_event` and the identity traits the store reads.
//!
//! Invariants: the pre-scan agrees with a real JSON parser about the nesting depth; a
//! decoded batch re-encodes (with the SDK's own encoder) to a body that decodes to the
//! same batch; an accepted event keeps a canonical id and its skew-corrected time; a
//! rejection names the event's field.

#![no_main]

use footpath_collector::config::Config;
use footpath_collector::identity::TraitIdentity;
use footpath_collector::limits::{check_json_depth, EventLimits};
use footpath_collector::validate::{canonical_uuid, validate_event};
use footpath_fuzz::{batch_context, check_page_parts};
use footpath_protocol::v1::{encode_batch, Batch, VERSION};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|body: &[u8]| {
    let config = Config::default();
    let max_depth = config.max_json_nesting_levels;
    let depth_checked = check_json_depth(body, max_depth);
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        assert_eq!(
            depth_checked.is_ok(),
            nesting_depth(&value) <= max_depth,
            "the pre-scan disagrees with the parser about the depth"
        );
    }
    if depth_checked.is_err() {
        return;
    }
    let Ok(batch) = serde_json::from_slice::<Batch>(body) else {
        return;
    };

    let encoded = encode_batch(&batch);
    let decoded: Batch = serde_json::from_str(&encoded)
        .unwrap_or_else(|error| panic!("re-encoded batch does not decode ({error}): {encoded}"));
    assert_eq!(decoded, batch, "re-encoded: {encoded}");

    if batch.v != VERSION
        || canonical_uuid(&batch.visitor_id).is_none()
        || batch.events.len() > config.max_events_per_batch
    {
        return;
    }
    let context = batch_context(&config, batch.sent_at);
    let limits = EventLimits::from_config(&config);
    for (index, event) in batch.events.iter().enumerate() {
        let checked = limits
            .check_event(index, event)
            .and_then(|()| validate_event(index, event, &context));
        match checked {
            Ok(stored) => {
                assert_eq!(
                    canonical_uuid(&stored.id).as_deref(),
                    Some(stored.id.as_str())
                );
                assert_eq!(
                    stored.time_ms,
                    event.time.saturating_add(context.skew_correction_ms())
                );
                assert!(stored.attributes.len() <= config.max_attributes_per_event);
                assert!(stored.traits.len() <= config.max_attributes_per_event);
                let identity = TraitIdentity::from_traits(&stored.traits);
                if let Some(phone) = &identity.phone {
                    assert!(phone.e164.starts_with('+'), "{phone:?}");
                }
                if let Some(page) = &stored.page {
                    check_page_parts(page);
                }
            }
            Err(error) => {
                assert_eq!(error.index, index, "rejection of another event: {error}");
                assert!(!error.path.is_empty(), "rejection without a field: {error}");
            }
        }
    }
});

/// Levels of arrays and objects; the top-level object is level 1.
fn nesting_depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(nesting_depth).max().unwrap_or(0),
        Value::Object(members) => 1 + members.values().map(nesting_depth).max().unwrap_or(0),
        _ => 0,
    }
}
