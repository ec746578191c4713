//! Errors of the pure parts. Drivers translate them exactly once (a log line, a status entry).

use std::net::IpAddr;

use thiserror::Error;

/// Why a Maglev table could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TableError {
    /// The table size is not a prime (this includes 0 and 1), so some permutations would not
    /// cover the table.
    #[error("maglev table size {size} is not a prime")]
    NotPrime {
        /// The rejected size.
        size: u32,
    },
    /// The table size is above [`MAX_TABLE_SIZE`](crate::maglev::MAX_TABLE_SIZE).
    #[error("maglev table size {size} exceeds the maximum {max}")]
    TooLarge {
        /// The rejected size.
        size: u32,
        /// The largest accepted size.
        max: u32,
    },
    /// No backend has a non-zero weight. There is no table to build: the caller decides what
    /// the VIP does with no backend (the table's length invariant would otherwise break).
    #[error("no backend with a non-zero weight")]
    NoBackends,
    /// Two backends share a key; they would get identical permutations and an order that
    /// depends on the input.
    #[error("backend key {key} appears more than once")]
    DuplicateKey {
        /// The repeated key.
        key: IpAddr,
    },
    /// Two backends share an id, so the table could not tell them apart.
    #[error("backend id {id} appears more than once")]
    DuplicateId {
        /// The repeated id.
        id: u32,
    },
}
