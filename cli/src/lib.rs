//! herald-cli: `herald status`, one cluster-wide report of what Herald does and what is
//! wrong, also run by kubectl as the plugin `kubectl-herald status`.
//!
//! # Layout
//! - [`inputs`]: the objects read from the API server, each kind listed or unreadable.
//! - [`report`]: the [`inputs::Inputs`] turned into a [`report::Report`]: problems first,
//!   then Services, nodes and pools. Pure: no client.
//! - [`render`]: the report as aligned text; `--json` prints the report's serde form.
//! - [`table`]: the small column aligner the text uses.
//! - [`fetch`]: the kube glue: paginated lists of each kind, a kind the user may not read
//!   becoming a note in the report rather than a failure.
//! - [`error`]: what can make the command fail.
//!
//! Only get and list are used: the command needs nothing beyond the chart's optional
//! `herald-viewer` ClusterRole.

pub mod error;
pub mod fetch;
pub mod inputs;
pub mod render;
pub mod report;
pub mod table;
