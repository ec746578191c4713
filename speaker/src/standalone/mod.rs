//! Standalone mode (DESIGN §4): the whole system on one host, from YAML files.
//!
//! # Layout
//! - [`state`]: assignments persisted crash-safely under `--state-dir`.
//! - [`allocate`]: the embedded allocator, restoring the persisted state first.
//! - [`daemon`]: the long-running loop: watch, reload, allocate, announce, publish.

pub mod allocate;
pub mod daemon;
pub mod state;
