//! Errors of the Kubernetes glue. Each names the object concerned; Display is short and
//! lowercase. They are translated once: to an Event on the object, a metric label
//! ([`Error::metric_label`]) and a log line in the reconciler's `error_policy`.

use thiserror::Error;

use herald_ipam::convert::ConvertError;

/// A failure of the controller's glue.
#[derive(Debug, Error)]
pub enum Error {
    /// An API call about one object failed.
    #[error("{object}: {action}: {source}")]
    Api {
        /// `Service default/web`, `IPPool pool-a`, `Lease herald/herald-controller`.
        object: String,
        /// What the call was for (`write status`, `list services`).
        action: &'static str,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// An object that cannot be turned into allocator input.
    #[error(transparent)]
    Convert(#[from] ConvertError),
}

impl Error {
    /// A bounded label for `herald_controller_reconcile_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Api { .. } => "api",
            Error::Convert(_) => "invalid_object",
        }
    }
}

/// Builds an [`Error::Api`] mapper: `.map_err(api_err("Service default/web", "write status"))`.
pub(crate) fn api_err(
    object: impl Into<String>,
    action: &'static str,
) -> impl FnOnce(kube::Error) -> Error {
    let object = object.into();
    move |source| Error::Api {
        object,
        action,
        source,
    }
}
