//! herald-ebpf: the XDP/TC programs (C, built by `build.rs`) and their Rust loader.
//!
//! # Layout
//! Nothing yet: the programs and loader arrive with the fast-path issue.
