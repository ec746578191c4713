//! The standalone configuration: a YAML file, or a directory of them, each a multi-document
//! stream of Kubernetes-shaped objects (DESIGN §4).
//!
//! Accepted kinds: the `herald.dev/v1alpha1` kinds, `v1` `Service`, `discovery.k8s.io/v1`
//! `EndpointSlice` and `v1` `Node`. A directory is read non-recursively, files ending in
//! `.yaml` or `.yml` in name order, hidden files skipped. Empty documents are skipped.
//!
//! Loading is all-or-nothing: every problem found is reported (file, document number counted
//! from 1, kind and name of the object, field), and no partial configuration is returned, so a
//! caller can keep running its last good configuration.
//!
//! Unknown fields are errors here, unlike in a cluster, because a typo such as `autoAsign`
//! would otherwise silently change nothing. `metadata.namespace` on the cluster-scoped
//! `herald.dev` kinds is ignored (so that objects copied from MetalLB's namespaced kinds load).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::validate::{self, FieldError};
use crate::{BFDProfile, BGPAdvertisement, BGPPeer, IPPool, L2Advertisement, annotations};

/// Label of an EndpointSlice naming its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Everything a standalone configuration holds, validated.
#[derive(Clone, Debug, Default)]
pub struct StandaloneConfig {
    /// Address pools.
    pub ip_pools: Vec<IPPool>,
    /// BGP neighbours.
    pub bgp_peers: Vec<BGPPeer>,
    /// BGP announcement policies.
    pub bgp_advertisements: Vec<BGPAdvertisement>,
    /// Layer-2 announcement policies.
    pub l2_advertisements: Vec<L2Advertisement>,
    /// BFD timer profiles.
    pub bfd_profiles: Vec<BFDProfile>,
    /// The VIPs to serve (`type: LoadBalancer`); namespace defaulted to `default`. Shared,
    /// not copied: a cluster speaker takes a snapshot of 10 000 of them on every change.
    pub services: Vec<Arc<Service>>,
    /// Backends of the Services; namespace defaulted to `default`. Shared like `services`.
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    /// Nodes, for their labels.
    pub nodes: Vec<Node>,
}

/// Where an object was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub file: PathBuf,
    /// The document within the file, counted from 1.
    pub document: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.file.display(), self.document)
    }
}

/// One problem in a standalone configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file or directory could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not valid YAML.
    #[error("{}: {message}", file.display())]
    Yaml {
        /// The file.
        file: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A document that is not an object of a known kind.
    #[error("{at}: {message}")]
    Document {
        /// Where.
        at: Location,
        /// What is wrong.
        message: String,
    },
    /// A field of an object is wrong.
    #[error("{at}: {kind} {name:?}: {error}")]
    Field {
        /// Where.
        at: Location,
        /// Kind of the object.
        kind: String,
        /// Name of the object (`namespace/name` for namespaced kinds).
        name: String,
        /// The field and what is wrong with it.
        error: FieldError,
    },
}

/// All problems found while loading; never empty.
#[derive(Debug)]
pub struct LoadErrors(pub Vec<ConfigError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}

/// Loads and validates a file or a directory of files.
pub fn load(path: &Path) -> Result<StandaloneConfig, LoadErrors> {
    let io = |source| {
        LoadErrors(vec![ConfigError::Io {
            path: path.to_owned(),
            source,
        }])
    };
    let files = if std::fs::metadata(path).map_err(io)?.is_dir() {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(path).map_err(io)? {
            let p = entry.map_err(io)?.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml")) {
                files.push(p);
            }
        }
        files.sort();
        files
    } else {
        vec![path.to_owned()]
    };
    let mut loader = Loader::default();
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => loader.add_file(&file, &text),
            Err(source) => loader.errors.push(ConfigError::Io { path: file, source }),
        }
    }
    loader.finish()
}

/// Loads and validates YAML text as if read from `file`.
pub fn load_str(file: &Path, text: &str) -> Result<StandaloneConfig, LoadErrors> {
    let mut loader = Loader::default();
    loader.add_file(file, text);
    loader.finish()
}

#[derive(Default)]
struct Loader {
    config: StandaloneConfig,
    /// (kind, namespace/name) -> where it was first seen, for duplicates.
    seen: BTreeMap<(String, String), Location>,
    /// Where each object was read, to report cross-object errors.
    places: BTreeMap<(String, String), Location>,
    errors: Vec<ConfigError>,
}

impl Loader {
    fn add_file(&mut self, file: &Path, text: &str) {
        let docs: Vec<Value> = match serde_saphyr::from_multiple(text) {
            Ok(docs) => docs,
            Err(e) => {
                self.errors.push(ConfigError::Yaml {
                    file: file.to_owned(),
                    message: e.to_string(),
                });
                return;
            }
        };
        for (i, doc) in docs.into_iter().enumerate() {
            let at = Location {
                file: file.to_owned(),
                document: i + 1,
            };
            if !doc.is_null() {
                self.add_document(at, doc);
            }
        }
    }

    fn add_document(&mut self, at: Location, mut doc: Value) {
        // Advertisements whose fields are all optional may omit `spec` (MetalLB's docs show
        // `BGPAdvertisement` and `L2Advertisement` without one: "announce everything").
        let spec_optional = matches!(
            doc.get("kind").and_then(Value::as_str),
            Some("BGPAdvertisement" | "L2Advertisement")
        );
        if let Some(obj) = doc
            .as_object_mut()
            .filter(|o| spec_optional && !o.contains_key("spec"))
        {
            obj.insert("spec".to_owned(), Value::Object(Default::default()));
        }
        let field = |k: &str| {
            doc.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let (api_version, kind) = (field("apiVersion"), field("kind"));
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if api_version.is_empty() || kind.is_empty() {
            let message = "not an object: apiVersion and kind are required".to_owned();
            return self.errors.push(ConfigError::Document { at, message });
        }
        if name.is_empty() {
            let (kind, name) = (kind.clone(), String::new());
            let error = FieldError::new("metadata.name", "is required");
            return self.errors.push(ConfigError::Field {
                at,
                kind,
                name,
                error,
            });
        }
        let namespaced = matches!(kind.as_str(), "Service" | "EndpointSlice");
        let namespace = doc.pointer("/metadata/namespace").and_then(Value::as_str);
        let id = match (namespaced, namespace) {
            (true, ns) => format!("{}/{name}", ns.unwrap_or("default")),
            (false, _) => name.to_owned(),
        };
        if let Some(first) = self.seen.get(&(kind.clone(), id.clone())) {
            let error = FieldError::new("metadata.name", format!("also defined at {first}"));
            return self.errors.push(ConfigError::Field {
                at,
                kind,
                name: id,
                error,
            });
        }
        self.seen.insert((kind.clone(), id.clone()), at.clone());
        self.places.insert((kind.clone(), id.clone()), at.clone());

        let herald = format!("{}/{}", crate::GROUP, crate::VERSION);
        let errors = match (api_version.as_str(), kind.as_str()) {
            (v, "IPPool") if v == herald => self.typed(doc, |c, o: IPPool| {
                let e = validate::ip_pool(&o.spec);
                c.ip_pools.push(o);
                e
            }),
            (v, "BGPPeer") if v == herald => self.typed(doc, |c, o: BGPPeer| {
                let mut e = validate::bgp_peer(&o.spec);
                if o.spec.password_secret.is_some() {
                    e.push(FieldError::new(
                        "spec.passwordSecret",
                        "there are no Secrets in standalone mode; use spec.password",
                    ));
                }
                c.bgp_peers.push(o);
                e
            }),
            (v, "BGPAdvertisement") if v == herald => self.typed(doc, |c, o: BGPAdvertisement| {
                let e = validate::bgp_advertisement(&o.spec);
                c.bgp_advertisements.push(o);
                e
            }),
            (v, "L2Advertisement") if v == herald => self.typed(doc, |c, o: L2Advertisement| {
                let e = validate::l2_advertisement(&o.spec);
                c.l2_advertisements.push(o);
                e
            }),
            (v, "BFDProfile") if v == herald => self.typed(doc, |c, o: BFDProfile| {
                let e = validate::bfd_profile(&o.spec);
                c.bfd_profiles.push(o);
                e
            }),
            ("v1", "Service") => self.typed(doc, |c, mut o: Service| {
                o.metadata
                    .namespace
                    .get_or_insert_with(|| "default".to_owned());
                let e = check_service(&o);
                c.services.push(Arc::new(o));
                e
            }),
            ("discovery.k8s.io/v1", "EndpointSlice") => {
                self.typed(doc, |c, mut o: EndpointSlice| {
                    o.metadata
                        .namespace
                        .get_or_insert_with(|| "default".to_owned());
                    c.endpoint_slices.push(Arc::new(o));
                    Vec::new()
                })
            }
            ("v1", "Node") => self.typed(doc, |c, o: Node| {
                c.nodes.push(o);
                Vec::new()
            }),
            _ => {
                let message = format!(
                    "{kind:?} of {api_version:?} is not a kind Herald reads (herald.dev/v1alpha1 \
                     IPPool, BGPPeer, BGPAdvertisement, L2Advertisement, BFDProfile; v1 Service, \
                     Node; discovery.k8s.io/v1 EndpointSlice)"
                );
                return self.errors.push(ConfigError::Document { at, message });
            }
        };
        for error in errors {
            self.errors.push(ConfigError::Field {
                at: at.clone(),
                kind: kind.clone(),
                name: id.clone(),
                error,
            });
        }
    }

    /// Deserialises `doc` as `T`, reporting the path of a bad or unknown field, then hands it
    /// to `keep`, which stores it and returns its validation errors.
    fn typed<T: DeserializeOwned>(
        &mut self,
        doc: Value,
        keep: impl FnOnce(&mut StandaloneConfig, T) -> Vec<FieldError>,
    ) -> Vec<FieldError> {
        let mut unknown = Vec::new();
        let mut track = serde_path_to_error::Track::new();
        let de = serde_path_to_error::Deserializer::new(doc, &mut track);
        let result: Result<T, _> = serde_ignored::deserialize(de, |path| {
            unknown.push(path.to_string());
        });
        match result {
            Err(e) => {
                let path = track.path().to_string();
                let field = if path == "." {
                    String::from("(object)")
                } else {
                    path
                };
                vec![FieldError::new(field, e.to_string())]
            }
            Ok(object) => {
                let mut errors: Vec<FieldError> = unknown
                    .into_iter()
                    // The kube-derived root types read apiVersion and kind without storing them.
                    .filter(|p| !matches!(p.as_str(), "apiVersion" | "kind" | "status"))
                    .filter(|p| !p.starts_with("metadata.namespace"))
                    .map(|p| FieldError::new(p, "unknown field"))
                    .collect();
                errors.extend(keep(&mut self.config, object));
                errors
            }
        }
    }

    /// Cross-object checks, then the result.
    fn finish(mut self) -> Result<StandaloneConfig, LoadErrors> {
        self.check_references();
        if self.errors.is_empty() {
            Ok(self.config)
        } else {
            Err(LoadErrors(self.errors))
        }
    }

    fn check_references(&mut self) {
        let c = &self.config;
        // Names come from every object seen, parsed or not, so that one bad object does not
        // also make every reference to it an error.
        let names = |kind: &str| -> BTreeSet<String> {
            self.seen
                .keys()
                .filter(|(k, _)| k == kind)
                .map(|(_, n)| n.clone())
                .collect()
        };
        let (pools, peers) = (names("IPPool"), names("BGPPeer"));
        let (profiles, services) = (names("BFDProfile"), names("Service"));
        let mut found: Vec<(&str, String, FieldError)> = Vec::new();

        // Two pools must not share an address: the allocator would otherwise see one address
        // with two sets of rules. In file order: the later pool is at fault.
        let pools_in_order: Vec<&IPPool> = c.ip_pools.iter().collect();
        let peers_in_order: Vec<&BGPPeer> = c.bgp_peers.iter().collect();
        let bgp: Vec<&BGPAdvertisement> = c.bgp_advertisements.iter().collect();
        let l2: Vec<&L2Advertisement> = c.l2_advertisements.iter().collect();
        let names = validate::Names {
            pools,
            peers,
            profiles,
        };
        for f in validate::pool_overlaps(&pools_in_order).into_iter().chain(
            validate::missing_references(&peers_in_order, &bgp, &l2, &names),
        ) {
            found.push((f.kind, f.name, f.error));
        }
        for slice in &c.endpoint_slices {
            let ns = slice.metadata.namespace.as_deref().unwrap_or("default");
            let field = format!("metadata.labels[{SERVICE_NAME_LABEL:?}]");
            let error = match slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
            {
                None => Some(FieldError::new(field, "is required: it names the Service")),
                Some(svc) if !services.contains(&format!("{ns}/{svc}")) => {
                    Some(FieldError::new(field, format!("no Service {ns}/{svc}")))
                }
                Some(_) => None,
            };
            if let Some(error) = error {
                found.push(("EndpointSlice", namespaced(&slice.metadata), error));
            }
        }
        for (kind, name, error) in found {
            let at = self.places[&(kind.to_owned(), name.clone())].clone();
            self.errors.push(ConfigError::Field {
                at,
                kind: kind.to_owned(),
                name,
                error,
            });
        }
    }
}

fn check_service(svc: &Service) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let spec = svc.spec.clone().unwrap_or_default();
    if spec.type_.as_deref() != Some("LoadBalancer") {
        errors.push(FieldError::new(
            "spec.type",
            "standalone mode serves Services of type LoadBalancer only",
        ));
    }
    let empty = BTreeMap::new();
    let ann = svc.metadata.annotations.as_ref().unwrap_or(&empty);
    if let Err(e) = annotations::lb_request(ann, spec.load_balancer_ip.as_deref()) {
        errors.push(e);
    }
    errors
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

fn namespaced(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or("default"),
        name_of(meta)
    )
}
