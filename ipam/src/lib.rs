//! herald-ipam, the address allocator: which `type: LoadBalancer` Service gets which address,
//! and [`convert`], which turns the API's objects (`IPPool`, core `Service`) into its inputs.
//!
//! It is not a controller: no kube client, no async runtime, no I/O. `herald-controller`
//! (in a cluster) and `herald-speaker` (standalone mode) both depend on it, and not on each
//! other.
//!
//! Pure: plain inputs ([`Pool`], [`Service`]) in, [`Assignment`]s and [`Error`]s out; no
//! Kubernetes types, no async runtime, no I/O. The Kubernetes glue (and the standalone
//! mode) convert CRDs and Services into these inputs and write the outputs to status,
//! Events and conditions.
//!
//! # Using it
//! 1. [`Allocator::set_pools`] with every pool;
//! 2. [`Allocator::restore`] with every existing Service, oldest first, **before** anything
//!    new is allocated, so that addresses already in use are never handed out again;
//! 3. [`Allocator::assign`] for each Service (idempotent, call it on every reconcile),
//!    [`Allocator::release`] when one is deleted or stops being `type: LoadBalancer`,
//!    [`Allocator::set_pools`] again when pools change.
//!
//! `assign` returns an [`Assignment`] borrowing pool names from the allocator: write it to
//! status (addresses, primary family first) and `herald.dev/allocated-from` (pools). On an
//! error other than [`Reason::Conflict`], write [`Allocator::assignment`] (what the Service
//! still holds); on a conflict leave status alone and raise an Event and a condition.
//!
//! The allocator keeps no history beyond its own state: a controller that restarts rebuilds
//! it with `set_pools` and `restore`, which is a fixed point of what it wrote before.
//!
//! # Pools
//! A pool holds inclusive ranges, IPv4 and IPv6 mixed (overlapping ranges are merged).
//! - `disabled`: hands out nothing, not even on request.
//! - `auto_assign: false`: only Services that request one of its addresses or its name get
//!   addresses from it.
//! - `avoid_buggy_ips`: IPv4 addresses ending in `.0` or `.255` are never handed out, not even
//!   on request, and are counted neither as assigned nor as available.
//!
//! # Which pools a Service may use
//! - `allocate_to` restricts every use of a pool, explicit requests included: the namespace
//!   must be listed in `namespaces` or match one of `namespace_selectors` (both empty = any
//!   namespace), and one of `service_selectors` must match the Service's labels (empty = any
//!   Service). A pool reserved for namespace A never serves namespace B.
//! - With `requested_pools`: only those pools, in the given order (names that do not exist
//!   are skipped; if none exists, the error names the first).
//! - Otherwise: every `auto_assign` pool that admits the Service, by `priority` ascending
//!   (lower first), pools without a priority after all pools with one, ties by name.
//! - A requested address may come from any pool that contains it and admits the Service
//!   (among `requested_pools` if given), `auto_assign` or not. One address per family.
//! - Within a pool the lowest free address is handed out first ([`Placement::LowestFree`],
//!   the default), or the address the Service's hash points at ([`Placement::Hashed`]).
//!
//! # Sharing
//! Services with the same `sharing_key` may hold the same address if their ports do not
//! overlap (same protocol and number) and either both use traffic policy `Cluster` or both
//! have the same `backend_key` (select the same pods). A requested address held by an
//! incompatible Service is refused, naming it and the reason
//! (`conflicts with default/web on TCP/80`). Automatic assignment for a Service with a key
//! first looks for an address its partners hold that it can share (in pool order, lowest
//! address first), and only then for a free one.
//!
//! # Placement
//! [`Allocator::with_placement`]`(`[`Placement::Hashed`]`)` is for allocators that must agree
//! without a shared history (standalone hosts reading the same file). Within a pool and
//! family, the Service's candidates are positions among the pool's usable addresses
//! (ranges in ascending order) derived from [`placement_hash`] of (pool name, family, the
//! sharing key if the Service has one, else `namespace/name`, attempt): the first free
//! candidate of [`HASH_CANDIDATES`] attempts is taken, else the first free address at or
//! after the first candidate (wrapping around), so a free address is found whenever one
//! exists. Services with one sharing key have the same candidates and so meet on the same
//! address. The result depends on which addresses are taken when the Service is assigned,
//! so callers that want a function of the configuration assign every Service into a fresh
//! allocator in an order computed from the configuration (see the standalone speaker).
//!
//! # Dual stack
//! The wanted families come from `ip_families` (empty = IPv4) and `family_policy`:
//! - `SingleStack`: the first family only.
//! - `PreferDualStack`: each listed family, as far as pools allow; at least one. A Service
//!   that got one family keeps exactly that until its request changes: a later `assign` does
//!   not add the second family when addresses free up, so that restoring stays a fixed point.
//! - `RequireDualStack`: both families or nothing: both are planned before any state changes,
//!   and a missing one fails with `family missing: IPv6: ...` without taking anything.
//!
//! A pool without a family is skipped for that family. Requested addresses must be of wanted
//! families; with requests, exactly the requested families are served (`RequireDualStack`
//! needs both requested).
//!
//! # Moves and conflicts
//! Herald never moves an address behind the user's back. A Service's fields are its
//! *request* (`requested_*`, sharing key, ports, traffic policy, backend key, families,
//! family policy) and its *context* (its labels, its namespace's labels); the pools are
//! context too.
//! - Unchanged request: a held address that is still valid is kept, always.
//! - Changed request: addresses that no longer fit are released and replaced; the user asked.
//! - Changed context (pool edits via [`Allocator::set_pools`], label changes seen by
//!   [`Allocator::assign`]): an address that no longer fits (not in any pool, in a pool the
//!   Service may no longer use, now disabled or avoided) becomes a **conflict**. The Service
//!   keeps the address reserved (nobody else gets it), `set_pools` returns every conflict,
//!   and `assign` returns [`Reason::Conflict`] for it (so the glue raises an Event and a
//!   condition and leaves status alone) until the pools or labels allow it again, the
//!   Service's request changes, or the Service is released.
//! - Restore: a status address that is not valid is a conflict in the same way. The one
//!   exception: an address that a Service restored earlier holds and cannot share is not
//!   restored (two Services cannot both keep it); `restore` reports it and the next `assign`
//!   gives the later Service a fresh address. The allocator never writes such a state, so
//!   restoring what it wrote is a fixed point.
//!
//! # Counts
//! [`Allocator::counts`] gives per pool and family the assigned (held, usable) and available
//! (free, usable; 0 if disabled) addresses, exactly, in `u128` from interval arithmetic: a
//! /48 costs what a /24 costs. A shared address counts once. Only the whole IPv6 space
//! (2^128 addresses) does not fit; counts saturate there.
//!
//! # Cost
//! Each pool range keeps its free addresses as disjoint intervals in a `BTreeMap`
//! (`range.rs`), so allocating, requesting and releasing cost O(log intervals) plus a walk over
//! the configured pools, independent of the pool's size and of the number of addresses in use.
//! Holders are a hash map per family with 8-byte (IPv4) or 24-byte (IPv6) entries whose
//! buckets follow the address (ascending allocation fills neighbouring buckets), Services
//! an 8-byte-entry index from a pre-hashed key to a record in a chunked slab. `set_pools`
//! re-checks every Service (O(services)); pools change rarely. `benches/ipam.rs` measures
//! 100k allocations and restores against a `BTreeSet<u128>` floor.
//!
//! # Determinism
//! The same call sequence gives the same results: hash maps are only looked up, never
//! iterated into results; lists are returned sorted.
//!
//! # Layout
//! - [`convert`]: `IPPool` and `Service` objects into [`Pool`] and [`Service`], with errors
//!   naming the field;
//! - [`service`]: Services and keys as plain data; [`selector`]: label selectors;
//! - [`pool`]: pools, `allocateTo`, counts; `range`: free-interval sets;
//! - `sharing`: the sharing rule; [`error`]: errors;
//! - [`allocator`]: the state and its public operations, with `plan` (choosing addresses,
//!   read-only), `holding` (holders and free sets), `index` (key -> record), `assignment`
//!   (results) and `slab` (record storage) beneath it.

pub mod allocator;
pub mod convert;
pub mod error;
mod hash;
pub mod pool;
mod range;
pub mod selector;
pub mod service;
mod sharing;

pub use allocator::{Allocated, Allocator, Assignment, Placement, placement_hash};
pub use error::{Clash, ConfigError, Denial, Error, Reason};
pub use pool::{AllocateTo, FamilyCounts, Pool, PoolCounts};
pub use selector::{Operator, Requirement, Selector};
pub use service::{Family, FamilyPolicy, Protocol, Service, ServiceKey, TrafficPolicy};
