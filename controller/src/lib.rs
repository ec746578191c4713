//! herald-controller: allocates addresses for `type: LoadBalancer` Services.
//!
//! # Layout
//! - [`ipam`]: the address allocator. Pure: no Kubernetes, no async runtime, no I/O.
//!   It takes pools and services and returns assignments or reasons why not.
//! - [`convert`]: `IPPool`s and core `v1` Services as the allocator's plain inputs; shared
//!   by the Kubernetes reconciler and standalone mode.
//! - [`status`]: what the controller writes (apply patches, pool status), as plain values.
//! - [`context`]: what the reconcilers share (client, allocator, caches, metrics).
//! - [`reconcile`]: the Service reconciler, release on deletion; [`pools`]: `IPPool`
//!   status and pool changes; [`restore`]: restore before allocate.
//! - [`checks`]: the checks across configuration objects (references, overlapping pools)
//!   as conditions, pure; [`objects`]: writes them to each object's status, with Events.
//! - [`election`]: leader election on a Lease (pure decision + driver).
//! - [`run`]: wiring of watches, controller and election; [`admin`]: `/metrics`,
//!   `/healthz`, `/readyz`; [`metrics`]; [`error`].

pub mod admin;
pub mod announced;
pub mod checks;
pub mod context;
pub mod election;
pub mod error;
pub mod metrics;
pub mod objects;
pub mod pools;
pub mod reconcile;
pub mod restore;
pub mod run;
pub mod status;

pub use error::Error;
