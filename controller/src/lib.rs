//! herald-controller: allocates addresses for `type: LoadBalancer` Services.
//!
//! # Layout
//! - [`ipam`]: the address allocator. Pure: no Kubernetes, no async runtime, no I/O.
//!   It takes pools and services and returns assignments or reasons why not.
//! - [`convert`]: `IPPool`s and core `v1` Services as the allocator's plain inputs; shared
//!   by the Kubernetes reconciler and standalone mode.

pub mod convert;
pub mod ipam;
