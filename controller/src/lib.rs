//! herald-controller: allocates addresses for `type: LoadBalancer` Services, in a cluster.
//!
//! The Kubernetes half of allocation: the allocator itself is `herald-ipam` (pure, shared with
//! standalone mode); this crate watches the API server, feeds it, and writes what it decides
//! (Service status, pool status, conditions, Events), with leader election. It announces
//! nothing (the speakers do) and has no protocol code; [`announced`] only reports, per
//! Service, where the speakers say they announce it.
//!
//! # Layout
//! - [`announced`]: the `herald.dev/Announced` condition and `BGPPeer` sessions, from the
//!   speakers' `HeraldNode`s.
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
