//! herald-api: the `herald.dev/v1alpha1` API.
