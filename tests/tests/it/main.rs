//! End-to-end tests of Footpath: the demo shop with the SDK in headless Chromium, the
//! collector in-process, checked through the collector's read API.
//!
//! Run with `cargo test -p footpath-e2e -- --test-threads=1` (or `cargo xtask test`).

mod consent;
mod cors;
mod delivery;
mod desk;
mod desk_restart;
mod identify;
mod identity_e2e;
mod journey_page;
mod plugins;
mod reading;
mod segments_e2e;
mod several_collectors;
mod size;
mod support;
mod timeout;
mod visit;
