//! The Service index: key -> record id.
//!
//! Entries are 8 bytes, the id and 32 bits of the key's hash; the key itself lives in the
//! record only. Compared to a map keyed by a clone of the key (24-byte entries), the table
//! is a third the size, so more of it stays in cache (its probes are random by nature),
//! and indexing a Service neither touches its key's shared allocation nor drops it later.

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use super::{Record, Slab};
use crate::service::ServiceKey;

#[derive(Debug, Default)]
pub(super) struct Index {
    /// (record id, low 32 bits of the key's hash).
    table: HashTable<(u32, u32)>,
}

/// The table's hash of a stored 32-bit hash. Duplicated into both halves: hashbrown takes
/// the bucket from the low bits and a 7-bit tag from the top ones, and the key's hash is
/// already well mixed.
fn spread(h: u32) -> u64 {
    u64::from(h) * 0x0000_0001_0000_0001
}

fn short(key: &ServiceKey) -> u32 {
    key.hash_u64() as u32
}

fn rehash(&(_, h): &(u32, u32)) -> u64 {
    spread(h)
}

impl Index {
    /// The id of `key`'s record.
    pub fn get(&self, records: &Slab<Record>, key: &ServiceKey) -> Option<u32> {
        let h = short(key);
        self.table
            .find(spread(h), |&(id, eh)| eh == h && is_key(records, id, key))
            .map(|&(id, _)| id)
    }

    /// Stores `rec` and indexes it under its key, in one probe, unless the key is indexed
    /// already: then `rec` comes back.
    pub fn insert(&mut self, records: &mut Slab<Record>, rec: Record) -> Result<u32, Record> {
        let key = &rec.svc.key;
        let h = short(key);
        let eq = |&(id, eh): &(u32, u32)| eh == h && is_key(records, id, key);
        match self.table.entry(spread(h), eq, rehash) {
            Entry::Occupied(_) => Err(rec),
            Entry::Vacant(v) => {
                let id = records.insert(rec);
                v.insert((id, h));
                Ok(id)
            }
        }
    }

    /// Indexes record `id` under `key`, which is not indexed (the caller just looked).
    pub fn insert_unique(&mut self, key: &ServiceKey, id: u32) {
        let h = short(key);
        self.table.insert_unique(spread(h), (id, h), rehash);
    }

    /// Removes `key`; returns its record id.
    pub fn remove(&mut self, records: &Slab<Record>, key: &ServiceKey) -> Option<u32> {
        let h = short(key);
        let entry = self
            .table
            .find_entry(spread(h), |&(id, eh)| eh == h && is_key(records, id, key))
            .ok()?;
        let ((id, _), _) = entry.remove();
        Some(id)
    }
}

fn is_key(records: &Slab<Record>, id: u32, key: &ServiceKey) -> bool {
    records.get(id).is_some_and(|r| r.svc.key == *key)
}
