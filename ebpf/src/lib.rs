//! herald-ebpf: the XDP/TC programs (C, built by `build.rs`) and their Rust loader.
//!
//! The C sources are `src/bpf/*.bpf.c`; everything they share with user space is in
//! `include/herald.h`, mirrored here in [`abi`]. `build.rs` compiles them with
//! `clang -O2 -g -target bpf` and the objects are embedded in this crate.
//!
//! # Layout
//! - [`abi`]: `#[repr(C)]` mirrors of the shared structs, constants and map names.
//! - [`hash`]: the flow hash the XDP program computes, to predict its choices.
//! - [`balancer`]: loads the XDP balancer, pins maps, attaches/detaches it, programs VIPs,
//!   backends and Maglev tables, reads counters.
//! - [`decap`]: the TC ingress decapsulation program for backend hosts.
//! - [`bpffs`]: preparing the bpf filesystem for pins.
//! - [`error`]: the crate's error type.

pub mod abi;
pub mod balancer;
pub mod bpffs;
pub mod decap;
pub mod error;
pub mod hash;

pub use aya::programs::XdpMode;
pub use balancer::{Balancer, LoadOptions, Variant};
pub use decap::Decap;
pub use error::Error;
