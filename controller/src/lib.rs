//! herald-controller: allocates addresses for `type: LoadBalancer` Services.
//!
//! # Layout
//! - [`ipam`]: the address allocator. Pure: no Kubernetes, no async runtime, no I/O.
//!   It takes pools and services and returns assignments or reasons why not.

pub mod ipam;
