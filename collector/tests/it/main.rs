//! Integration tests of the collector, as one binary so that they link once.
//!
//! They drive the real router (`router(state)` with `tower::ServiceExt::oneshot`) over
//! a temporary SQLite database, with a `ManualClock` so that sessions expire without
//! sleeping. `serve_loop` additionally runs the real server on a loopback port.
//! `postgres` and `several_collectors` run on a throwaway PostgreSQL cluster.

mod bad_input;
mod contacts_api;
mod contract;
mod desk;
mod durability;
mod enrichment;
mod geolocation;
mod hostile_desk;
mod hostile_identity;
mod hostile_limits;
mod identity;
mod identity_docs;
mod ingest;
mod limits;
mod mmdb;
mod openapi;
mod operations;
mod postgres;
mod privacy;
mod read_api;
mod segments;
mod serve_loop;
mod session_lifecycle;
mod several_collectors;
mod static_files;
mod support;
mod usage;
mod webevents;
