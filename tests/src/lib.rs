//! herald-tests: network-namespace lab harness and real-peer wrappers for end-to-end tests.
//!
//! # Layout
//! Nothing yet: the harness arrives with the first end-to-end tests.
