//! What makes `herald status` fail, as opposed to what it reports.

/// A failure to produce a report at all.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server could not be reached, or answered something that is not a Kubernetes
    /// status (a refused list of one kind is a note in the report, not this).
    #[error("listing {kind}: {source}")]
    List {
        /// The kind being listed, plural, as `Services`.
        kind: &'static str,
        /// What the client said.
        #[source]
        source: kube::Error,
    },
}
