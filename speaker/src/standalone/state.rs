//! The last applied assignments, persisted under `--state-dir`.
//!
//! Addresses are a function of the configuration (see [`super::allocate`]), so this file
//! decides nothing: it is read at start to report Services whose address differs from the
//! previous run (the file changed while the host was down, or an upgrade from a version
//! that placed by history), and written after every applied configuration.
//!
//! One JSON file, `assignments.json`, written crash-safely: the new content goes to a
//! temporary file which is fsynced, the current file is kept as `assignments.json.prev`,
//! the temporary file is renamed over the current one and the directory is fsynced. A
//! reader therefore sees either the old or the new file, never a mix.
//!
//! If the current file cannot be read (edited by hand, disk damage), it is moved aside as
//! `assignments.json.corrupt-<unix seconds>` — never deleted — and the previous generation
//! is used if it is readable. Both outcomes are reported to the caller, which logs them and
//! shows them in `/status`.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use thiserror::Error;

const FILE: &str = "assignments.json";
const PREV: &str = "assignments.json.prev";
const TMP: &str = "assignments.json.tmp";
const VERSION: u32 = 1;

/// The persisted assignments: Service `namespace/name` -> its addresses, primary family
/// first, sorted by Service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Services with their addresses.
    pub services: Vec<(String, Vec<IpAddr>)>,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    services: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    service: String,
    addresses: Vec<IpAddr>,
}

/// A state file that could not be used.
#[derive(Debug, Error)]
pub enum StateError {
    /// Reading, writing or renaming failed.
    #[error("state file {path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The content is not a state file Herald can read.
    #[error("state file {path}: {message}")]
    Corrupt {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// How loading went, besides the state itself.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// The current file was unreadable and moved here, with the reason.
    pub moved_aside: Option<(PathBuf, StateError)>,
    /// The state came from the previous generation (`.prev`).
    pub used_previous: bool,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_owned(),
        source,
    }
}

fn read(path: &Path) -> Result<Option<State>, StateError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    let corrupt = |message: String| StateError::Corrupt {
        path: path.to_owned(),
        message,
    };
    let disk: OnDisk = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if disk.version != VERSION {
        return Err(corrupt(format!(
            "version {} is not {VERSION}",
            disk.version
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for e in &disk.services {
        if !seen.insert(e.service.as_str()) {
            return Err(corrupt(format!("service {:?} listed twice", e.service)));
        }
    }
    Ok(Some(State {
        services: disk
            .services
            .into_iter()
            .map(|e| (e.service, e.addresses))
            .collect(),
    }))
}

/// Loads the state from `dir` (created if missing). A missing file is an empty state.
pub fn load(dir: &Path) -> Result<(State, LoadReport), StateError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let current = dir.join(FILE);
    let mut report = LoadReport::default();
    match read(&current) {
        Ok(Some(state)) => return Ok((state, report)),
        Ok(None) => {}
        Err(err @ StateError::Corrupt { .. }) => {
            let secs = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let aside = dir.join(format!("{FILE}.corrupt-{secs}"));
            fs::rename(&current, &aside).map_err(io(&current))?;
            report.moved_aside = Some((aside, err));
        }
        Err(err) => return Err(err),
    }
    // No usable current file: the previous generation, if any, is the best knowledge.
    match read(&dir.join(PREV)) {
        Ok(Some(state)) => {
            report.used_previous = true;
            Ok((state, report))
        }
        Ok(None) | Err(StateError::Corrupt { .. }) => Ok((State::default(), report)),
        Err(err) => Err(err),
    }
}

/// Writes `state` to `dir` crash-safely (see the module docs).
pub fn save(dir: &Path, state: &State) -> Result<(), StateError> {
    let disk = OnDisk {
        version: VERSION,
        services: state
            .services
            .iter()
            .map(|(service, addresses)| Entry {
                service: service.clone(),
                addresses: addresses.clone(),
            })
            .collect(),
    };
    let bytes = serde_json::to_vec_pretty(&disk).expect("state serialises");
    let (tmp, current, prev) = (dir.join(TMP), dir.join(FILE), dir.join(PREV));
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(&bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    if current.exists() {
        // A hard link keeps the current generation as .prev without a moment where
        // neither name holds it.
        let _ = fs::remove_file(&prev);
        fs::hard_link(&current, &prev).map_err(io(&prev))?;
    }
    fs::rename(&tmp, &current).map_err(io(&current))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(())
}

impl State {
    /// The addresses per Service, for look-ups.
    pub fn by_service(&self) -> BTreeMap<&str, &[IpAddr]> {
        self.services
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect()
    }
}
