//! The flow tables: one LRU hash per CPU, the slots of the `herald_flows` array of maps.
//!
//! The program stores a new flow in the table of the CPU it runs on (`bpf_get_smp_processor_id`
//! modulo [`MAX_CPUS`]) and looks flows up there; RSS keeps a flow's packets on one CPU. A
//! table serves one CPU, so it uses the kernel's common LRU (no `BPF_F_NO_COMMON_LRU`): its lock
//! is uncontended and an insert is cheaper than with per-CPU LRU lists in one shared table.
//!
//! User space creates the tables at load, one per possible CPU up to [`MAX_CPUS`] (CPUs with
//! higher ids share table `id % MAX_CPUS`), each with [`MAX_FLOWS`] / tables entries rounded
//! up: the same capacity per CPU as the single table with per-CPU LRU lists had before. The
//! tables live as long as the outer map: a pinned `herald_flows` keeps them, so a restarted
//! loader finds every CPU's flows and only creates tables for slots still empty.
//!
//! In front of each table is its CPU's flow cache (`herald_fcache`, a per-CPU array of
//! [`FLOW_CACHE_SLOTS`](crate::abi::FLOW_CACHE_SLOTS) slots, direct-mapped by [`crate::hash::flow_cache_slot`]). A flow's
//! first packet (a SYN) only caches it, as pending; its second packet stores it in the table.
//! So a flow that never gets past one packet (a SYN flood, a one-packet UDP query) is never
//! in a table, and [`Balancer::flows_by_cpu`] shows a flow from its second packet on
//! ([`Balancer::cached_flows`] shows the caches).
//!
//! Upgrading from a build with the single shared table (an LRU hash pinned as `herald_flows`):
//! the loader reads its flows, removes that pin, and writes every flow into every CPU's new
//! table, since which CPU saw a flow is not known; copies a CPU never uses age out of its LRU.

use std::path::Path;

use aya::maps::{ArrayOfMaps, HashMap, Map, MapData, MapError, MapInfo, MapType, PerCpuArray};

use super::{Balancer, map_err};
use crate::abi::{Flow, FlowCached, FlowKey, MAX_CPUS, MAX_FLOWS, map_name};
use crate::error::Error;
use crate::hash::flow_cache_slot;

/// `BPF_MAP_TYPE_LRU_HASH`.
const LRU_HASH: u32 = 9;

/// Number of flow tables this machine needs: one per possible CPU, at most [`MAX_CPUS`].
pub fn table_count() -> Result<u32, Error> {
    let cpus = aya::util::nr_cpus().map_err(|(path, source)| Error::PossibleCpus {
        path: path.into(),
        source,
    })?;
    Ok(u32::try_from(cpus).unwrap_or(u32::MAX).clamp(1, MAX_CPUS))
}

/// Entries of each of `tables` flow tables: [`MAX_FLOWS`] shared out, rounded up.
pub fn table_capacity(tables: u32) -> u32 {
    MAX_FLOWS.div_ceil(tables.max(1))
}

/// The (key size, value size, type) every flow table must have, as in `struct
/// herald_flow_table` (maps.h).
pub(super) fn table_shape() -> (u32, u32, u32) {
    (
        size_of::<FlowKey>() as u32,
        size_of::<Flow>() as u32,
        LRU_HASH,
    )
}

fn create_table(index: u32, entries: u32) -> Result<MapData, Error> {
    let (key, value, kind) = table_shape();
    let def = aya_obj::Map::new_from_params(kind, key, value, entries, 0);
    // Kernel map names keep 15 bytes: "herald_flow_127" fits.
    MapData::create(def, &format!("herald_flow_{index}"), None)
        .map_err(map_err(map_name::FLOWS, "create a CPU's flow table"))
}

type Outer<T> = ArrayOfMaps<T, MapData>;
/// One CPU's flow table, opened from user space.
type Table = HashMap<MapData, FlowKey, Flow>;

impl Balancer {
    fn flows_outer(&self) -> Result<Outer<&MapData>, Error> {
        ArrayOfMaps::try_from(self.map(map_name::FLOWS)?).map_err(map_err(map_name::FLOWS, "open"))
    }

    /// Creates the flow table of every slot up to [`table_count`] that has none (all of them
    /// on a fresh load, none after a restart on the same machine).
    pub(super) fn ensure_flow_tables(&mut self) -> Result<(), Error> {
        let tables = table_count()?;
        let entries = table_capacity(tables);
        let mut outer: Outer<&mut MapData> = ArrayOfMaps::try_from(self.map_mut(map_name::FLOWS)?)
            .map_err(map_err(map_name::FLOWS, "open"))?;
        for index in 0..tables {
            match outer.get(&index, 0) {
                Ok(_) => continue,
                Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err(map_name::FLOWS, "read")(e)),
            }
            let table = create_table(index, entries)?;
            outer
                .set(index, &table, 0)
                .map_err(map_err(map_name::FLOWS, "install a CPU's flow table"))?;
        }
        Ok(())
    }

    /// The flow tables' maps in slot order, with their slot (the CPU id for CPUs below
    /// [`MAX_CPUS`]). Slots are filled from 0 without gaps.
    fn flow_table_data(&self) -> Result<Vec<(u32, MapData)>, Error> {
        let outer = self.flows_outer()?;
        let mut tables = Vec::new();
        for index in 0..MAX_CPUS {
            match outer.get(&index, 0) {
                Ok(data) => tables.push((index, data)),
                Err(MapError::KeyNotFound) => break,
                Err(e) => return Err(map_err(map_name::FLOWS, "read")(e)),
            }
        }
        Ok(tables)
    }

    /// The flow tables in slot order, opened as hash maps.
    fn flow_table_handles(&self) -> Result<Vec<(u32, Table)>, Error> {
        let open = map_err(map_name::FLOWS, "open a table");
        self.flow_table_data()?
            .into_iter()
            .map(|(index, data)| {
                let map = Map::from_map_data(data).map_err(&open)?;
                Ok((index, Table::try_from(map).map_err(&open)?))
            })
            .collect()
    }

    /// Writes `flows` (read from a pre-per-CPU table) into every CPU's table.
    pub(super) fn restore_flows(&mut self, flows: &[(FlowKey, Flow)]) -> Result<(), Error> {
        if flows.is_empty() {
            return Ok(());
        }
        for (_, mut table) in self.flow_table_handles()? {
            for (key, flow) in flows {
                table
                    .insert(key, flow, 0)
                    .map_err(map_err(map_name::FLOWS, "restore a flow"))?;
            }
        }
        Ok(())
    }

    /// How many flow tables the program has (one per possible CPU, at most [`MAX_CPUS`]).
    pub fn flow_tables(&self) -> Result<u32, Error> {
        Ok(self.flow_table_handles()?.len() as u32)
    }

    /// The entries stored for `key`, with the table (CPU) each is in. Usually one; a flow
    /// whose packets moved to another CPU is stored again there.
    pub fn flows_by_cpu(&self, key: &FlowKey) -> Result<Vec<(u32, Flow)>, Error> {
        let mut found = Vec::new();
        for (index, table) in self.flow_table_handles()? {
            match table.get(key, 0) {
                Ok(flow) => found.push((index, flow)),
                Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err(map_name::FLOWS, "read")(e)),
            }
        }
        Ok(found)
    }

    /// The flow caches' entries for `key`, with the CPU each is on: the slot `key` falls in
    /// ([`flow_cache_slot`], below [`FLOW_CACHE_SLOTS`](crate::abi::FLOW_CACHE_SLOTS)) of every CPU whose slot holds it.
    pub fn cached_flows(&self, key: &FlowKey) -> Result<Vec<(u32, FlowCached)>, Error> {
        let name = map_name::FLOW_CACHE;
        let map = self.ebpf.map(name).ok_or(Error::MissingMap { map: name })?;
        let cache: PerCpuArray<_, FlowCached> =
            PerCpuArray::try_from(map).map_err(map_err(name, "open"))?;
        let values = cache
            .get(&flow_cache_slot(key), 0)
            .map_err(map_err(name, "read"))?;
        Ok(values
            .iter()
            .enumerate()
            .filter(|(_, c)| c.key == *key)
            .map(|(cpu, c)| (cpu as u32, *c))
            .collect())
    }

    /// The flow table's entry for `key`, if any (the lowest CPU's if several tables have one).
    pub fn flow(&self, key: &FlowKey) -> Result<Option<Flow>, Error> {
        Ok(self.flows_by_cpu(key)?.into_iter().next().map(|(_, f)| f))
    }

    /// Number of flows stored, over every CPU's table (walks the maps).
    pub fn flow_count(&self) -> Result<usize, Error> {
        Ok(self
            .flow_table_handles()?
            .iter()
            .map(|(_, table)| table.keys().filter(Result::is_ok).count())
            .sum())
    }

    /// Capacity (entries) of each flow table, in slot order.
    pub fn flow_table_capacities(&self) -> Result<Vec<u32>, Error> {
        self.flow_table_data()?
            .iter()
            .map(|(_, data)| data.info().map(|info| info.max_entries()))
            .collect::<Result<_, MapError>>()
            .map_err(map_err(map_name::FLOWS, "read a table's info"))
    }

    /// Flows stored per table (CPU), in slot order (walks the maps).
    pub fn flow_counts_by_cpu(&self) -> Result<Vec<usize>, Error> {
        Ok(self
            .flow_table_handles()?
            .iter()
            .map(|(_, table)| table.keys().filter(Result::is_ok).count())
            .collect())
    }
}

/// The (key, value, type) shape of the first flow table in a pinned `herald_flows`, if it
/// has one: a pinned outer map keeps the tables of the build that created them.
pub(super) fn pinned_table_shape(outer: MapData) -> Result<Option<(u32, u32, u32)>, Error> {
    let open = map_err(map_name::FLOWS, "open pinned map");
    let outer: Outer<MapData> =
        ArrayOfMaps::try_from(Map::from_map_data(outer).map_err(&open)?).map_err(&open)?;
    let table = match outer.get(&0, 0) {
        Ok(table) => table,
        Err(MapError::KeyNotFound) => return Ok(None),
        Err(e) => return Err(map_err(map_name::FLOWS, "read pinned map")(e)),
    };
    let info = table
        .info()
        .map_err(map_err(map_name::FLOWS, "read pinned table info"))?;
    let kind = info.map_type().map_or(u32::MAX, |t| t as u32);
    Ok(Some((info.key_size(), info.value_size(), kind)))
}

/// If `dir` holds the single flow table of a build before the per-CPU tables (an LRU hash
/// with this build's key and value layout pinned as `herald_flows`), reads its flows and
/// removes the pin so the array of tables can take its place. Anything else pinned there is
/// left for the layout check.
pub(super) fn take_legacy_table(dir: &Path) -> Result<Vec<(FlowKey, Flow)>, Error> {
    let path = dir.join(map_name::FLOWS);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let read = map_err(map_name::FLOWS, "read the pinned pre-per-CPU flow table");
    let info = MapInfo::from_pin(&path).map_err(&read)?;
    let (key, value, _) = table_shape();
    let legacy = matches!(info.map_type(), Ok(MapType::LruHash))
        && (info.key_size(), info.value_size()) == (key, value);
    if !legacy {
        return Ok(Vec::new());
    }
    let map = Map::from_map_data(MapData::from_pin(&path).map_err(&read)?).map_err(&read)?;
    let table: Table = HashMap::try_from(map).map_err(&read)?;
    let flows = table.iter().filter_map(Result::ok).collect();
    std::fs::remove_file(&path).map_err(|e| Error::Bpffs {
        path: path.clone(),
        reason: format!("removing the pre-per-CPU flow table's pin: {e}"),
    })?;
    Ok(flows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_share_the_capacity_rounded_up() {
        assert_eq!(table_capacity(1), MAX_FLOWS);
        assert_eq!(table_capacity(2), MAX_FLOWS / 2);
        assert_eq!(table_capacity(3), MAX_FLOWS / 3 + 1);
        assert_eq!(table_capacity(MAX_CPUS), MAX_FLOWS / MAX_CPUS);
        assert!((1..=MAX_CPUS).all(|n| {
            let per = table_capacity(n);
            per * n >= MAX_FLOWS && (per - 1) * n < MAX_FLOWS
        }));
    }

    #[test]
    fn table_count_is_between_one_and_max_cpus() {
        let n = table_count().unwrap();
        assert!((1..=MAX_CPUS).contains(&n), "{n}");
    }
}
