//! The wire format between the browser SDK and the collector.
//!
//! Architecture Invariant: this crate does no IO, depends on serde only (and only behind
//! the `serde` feature), and builds for `wasm32-unknown-unknown`. Every format version
//! lives in its own module; `latest` names the one the SDK sends today. A collector keeps
//! accepting older versions for as long as SDKs that speak them may still be cached.

pub mod v1;

pub use v1 as latest;
