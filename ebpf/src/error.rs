//! Errors of the loader and map handles. Each variant names the interface, map or object
//! concerned; aya's errors are kept as sources.

use std::path::PathBuf;

/// What can go wrong loading, attaching or programming the eBPF fast path.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The embedded object could not be loaded (verifier, map creation, pinned map reuse).
    #[error("loading eBPF object {object}")]
    Load {
        /// Which object (`herald_xdp`, `herald_decap`...).
        object: &'static str,
        /// aya's error.
        #[source]
        source: Box<aya::EbpfError>,
    },
    /// A program was rejected by the kernel or could not be attached/detached.
    #[error(
        "program {program}{}",
        if interface.is_empty() { String::new() } else { format!(" on {interface}") }
    )]
    Program {
        /// Program name.
        program: &'static str,
        /// Interface concerned, empty when none.
        interface: String,
        /// aya's error.
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// Another XDP program is attached to the interface; Herald never displaces it.
    #[error(
        "interface {interface} already has XDP program {program} attached; \
         detach it first (e.g. `ip link set dev {interface} xdp off`)"
    )]
    ForeignXdp {
        /// Interface concerned.
        interface: String,
        /// The other program, as `name (id N)` when known.
        program: String,
    },
    /// A map operation failed.
    #[error("map {map}: {what}")]
    Map {
        /// Map name.
        map: &'static str,
        /// What was being done.
        what: String,
        /// aya's error.
        #[source]
        source: Box<aya::maps::MapError>,
    },
    /// A map the object must contain is missing (object and loader out of step).
    #[error("map {map} missing from the eBPF object")]
    MissingMap {
        /// Map name.
        map: &'static str,
    },
    /// A program the object must contain is missing (object and loader out of step).
    #[error("program {program} missing from the eBPF object")]
    MissingProgram {
        /// Program name.
        program: &'static str,
    },
    /// An id or size outside what the maps hold.
    #[error("{what} {value} out of range (limit {limit})")]
    OutOfRange {
        /// What was out of range (`VIP id`, `backend id`, `table size`).
        what: &'static str,
        /// The value given.
        value: u64,
        /// The limit it must stay below or equal to.
        limit: u64,
    },
    /// The bpf filesystem or the pin directory could not be prepared.
    #[error("bpf filesystem at {path}: {reason}")]
    Bpffs {
        /// Path concerned.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A map pinned by another (older or newer) build has a different layout.
    #[error(
        "map {path} was pinned by an incompatible build of Herald ({found}; this build needs \
         {wanted}): stop the speaker, remove the pinned maps (rm {dir}/herald_*) and start again"
    )]
    IncompatiblePin {
        /// The pinned map.
        path: std::path::PathBuf,
        /// Its pin directory.
        dir: std::path::PathBuf,
        /// What it has: key, value size and entries.
        found: String,
        /// What this build needs.
        wanted: String,
    },
    /// The possible CPUs (how many flow tables to create) could not be read.
    #[error("reading the possible CPUs from {path}")]
    PossibleCpus {
        /// The file read.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// Pinning or unpinning a link failed.
    #[error("pinned link {path}")]
    Link {
        /// Pin path.
        path: PathBuf,
        /// What failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
