//! The addresses standalone mode gives a configuration: the embedded allocator run on the
//! same text, so end-to-end tests expect exactly what every standalone host computes (the
//! placement is a function of the configuration, not of history).

use std::collections::BTreeMap;
use std::path::Path;

use herald_speaker::standalone::allocate::Embedded;
use herald_speaker::standalone::state::State;

/// Per Service (`namespace/name`): its addresses, primary family first, for the standalone
/// configuration `yaml`. Panics when the text does not load (a test bug).
pub fn standalone_addresses(yaml: &str) -> BTreeMap<String, Vec<String>> {
    let config = herald_api::standalone::load_str(Path::new("test.yaml"), yaml)
        .unwrap_or_else(|e| panic!("test config: {e}"));
    let outcome = Embedded::new(State::default())
        .apply(&config)
        .unwrap_or_else(|e| panic!("test config: {e:?}"));
    outcome
        .assigned
        .into_iter()
        .map(|(k, a)| (k, a.into_iter().map(|(ip, _)| ip.to_string()).collect()))
        .collect()
}

/// The first address of Service `key` in `yaml` (see [`standalone_addresses`]).
pub fn standalone_address(yaml: &str, key: &str) -> String {
    standalone_addresses(yaml)
        .remove(key)
        .and_then(|a| a.into_iter().next())
        .unwrap_or_else(|| panic!("{key} gets no address"))
}
