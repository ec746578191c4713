//! A fake Kubernetes API server that behaves like a real one where Herald's controller can
//! tell the difference, behind a real `kube::Client`.
//!
//! The scripted mock in `apiserver/` answers requests a test names in advance; that cannot
//! show what goes wrong against a real server, whose answers depend on its state. This one
//! keeps state:
//!
//! - objects by resource, each with a `resourceVersion` from one global counter, `uid`,
//!   `creationTimestamp` and `generation` (bumped on a `spec` change only, never by status);
//! - lists honour `limit` and `continue` (kube-runtime's watcher asks for pages of 500);
//!   without `limit` a list returns everything, as a real server does;
//! - watches stream every change after the requested `resourceVersion` as JSON lines and
//!   stay open; a `resourceVersion` older than the last compaction gets an `ERROR` event with
//!   `410 Gone` (as after etcd compaction), and [`FakeApi::end_watches`] closes them all (as
//!   a server's watch timeout does);
//! - server-side apply owns fields per manager: fields a manager applied before and leaves
//!   out are removed, lists are atomic, an apply that changes nothing writes nothing (no new
//!   `resourceVersion`, no watch event); the `status` subresource writes only `status` and
//!   the main resource never writes `status`;
//! - `PUT` checks the `resourceVersion` it carries (`409 Conflict`, which leader election
//!   relies on), `POST` refuses an existing name (`409 AlreadyExists`) and fills
//!   `generateName`;
//! - every request waits [`FakeApi::set_latency`] before it is answered, concurrently with
//!   the others, as a remote server does.
//!
//! Resources it knows: Services, Namespaces, IPPools, Leases, Events (`events.k8s.io/v1`),
//! and for the speaker Nodes, Secrets, EndpointSlices and Herald's other kinds.
//! It does not validate schemas: the CRD tests in `api/` do that.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, StreamBody};
use kube::Client;
use kube::client::Body;
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, watch};

/// What a resource is: where it lives and what it is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Kind {
    /// `/api/v1` or `/apis/GROUP/VERSION`.
    pub prefix: &'static str,
    /// Plural path segment.
    pub plural: &'static str,
    /// `kind`.
    pub kind: &'static str,
    /// `apiVersion`.
    pub api_version: &'static str,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
}

/// Services.
pub const SERVICES: Kind = Kind {
    prefix: "/api/v1",
    plural: "services",
    kind: "Service",
    api_version: "v1",
    namespaced: true,
};
/// Namespaces.
pub const NAMESPACES: Kind = Kind {
    prefix: "/api/v1",
    plural: "namespaces",
    kind: "Namespace",
    api_version: "v1",
    namespaced: false,
};
/// Herald's pools.
pub const IPPOOLS: Kind = Kind {
    prefix: "/apis/herald.dev/v1alpha1",
    plural: "ippools",
    kind: "IPPool",
    api_version: "herald.dev/v1alpha1",
    namespaced: false,
};
/// Leader-election Leases.
pub const LEASES: Kind = Kind {
    prefix: "/apis/coordination.k8s.io/v1",
    plural: "leases",
    kind: "Lease",
    api_version: "coordination.k8s.io/v1",
    namespaced: true,
};
/// Events as kube-runtime's recorder writes them.
pub const EVENTS: Kind = Kind {
    prefix: "/apis/events.k8s.io/v1",
    plural: "events",
    kind: "Event",
    api_version: "events.k8s.io/v1",
    namespaced: true,
};

/// Nodes (the speaker's).
pub const NODES: Kind = Kind {
    prefix: "/api/v1",
    plural: "nodes",
    kind: "Node",
    api_version: "v1",
    namespaced: false,
};
/// Secrets (BGP passwords).
pub const SECRETS: Kind = Kind {
    prefix: "/api/v1",
    plural: "secrets",
    kind: "Secret",
    api_version: "v1",
    namespaced: true,
};
/// EndpointSlices.
pub const ENDPOINTSLICES: Kind = Kind {
    prefix: "/apis/discovery.k8s.io/v1",
    plural: "endpointslices",
    kind: "EndpointSlice",
    api_version: "discovery.k8s.io/v1",
    namespaced: true,
};
/// Herald's BGP peers.
pub const BGPPEERS: Kind = Kind {
    prefix: "/apis/herald.dev/v1alpha1",
    plural: "bgppeers",
    kind: "BGPPeer",
    api_version: "herald.dev/v1alpha1",
    namespaced: false,
};
/// Herald's BGP advertisements.
pub const BGPADVERTISEMENTS: Kind = Kind {
    prefix: "/apis/herald.dev/v1alpha1",
    plural: "bgpadvertisements",
    kind: "BGPAdvertisement",
    api_version: "herald.dev/v1alpha1",
    namespaced: false,
};
/// Herald's layer-2 advertisements.
pub const L2ADVERTISEMENTS: Kind = Kind {
    prefix: "/apis/herald.dev/v1alpha1",
    plural: "l2advertisements",
    kind: "L2Advertisement",
    api_version: "herald.dev/v1alpha1",
    namespaced: false,
};
/// Herald's BFD profiles.
pub const BFDPROFILES: Kind = Kind {
    prefix: "/apis/herald.dev/v1alpha1",
    plural: "bfdprofiles",
    kind: "BFDProfile",
    api_version: "herald.dev/v1alpha1",
    namespaced: false,
};

/// The nodes' reports.
pub const HERALDNODES: Kind = Kind {
    prefix: "/apis/herald.dev/v1alpha1",
    plural: "heraldnodes",
    kind: "HeraldNode",
    api_version: "herald.dev/v1alpha1",
    namespaced: false,
};

const KINDS: [Kind; 13] = [
    SERVICES,
    NAMESPACES,
    IPPOOLS,
    LEASES,
    EVENTS,
    NODES,
    SECRETS,
    ENDPOINTSLICES,
    BGPPEERS,
    BGPADVERTISEMENTS,
    L2ADVERTISEMENTS,
    BFDPROFILES,
    HERALDNODES,
];

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `GET`, `PATCH`, ...
    pub method: String,
    /// The path.
    pub path: String,
    /// The query string.
    pub query: String,
    /// The status code answered.
    pub code: u16,
}

impl Seen {
    /// Whether this was a watch.
    pub fn is_watch(&self) -> bool {
        self.query.contains("watch=true") || self.query.contains("watch=1")
    }
}

/// One change, as a watch reports it.
#[derive(Debug, Clone)]
struct Change {
    rv: u64,
    kind: Kind,
    namespace: String,
    type_: &'static str,
    object: Arc<Value>,
}

type Key = (String, String);

#[derive(Default)]
struct State {
    rv: u64,
    objects: BTreeMap<Kind, BTreeMap<Key, Value>>,
    /// Fields each manager owns: (kind, key, manager, subresource) -> leaf paths.
    owned: BTreeMap<(Kind, Key, String, bool), BTreeSet<Vec<String>>>,
    log: Vec<Change>,
    /// Changes at or below this resourceVersion are gone (410 for a watch from before it).
    compacted: u64,
    seen: Vec<Seen>,
    latency: Duration,
    uid: u64,
    /// Incremented to close every open watch.
    watch_epoch: u64,
}

/// The fake server. Clones share it.
#[derive(Clone)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
    /// The newest resourceVersion and the watch epoch, for watch tasks to wait on.
    tick: Arc<watch::Sender<(u64, u64)>>,
}

pub type RespBody = UnsyncBoxBody<Bytes, Infallible>;

impl Default for FakeApi {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeApi {
    /// An empty server.
    pub fn new() -> Self {
        FakeApi {
            state: Arc::new(Mutex::new(State::default())),
            tick: Arc::new(watch::channel((0, 0)).0),
        }
    }

    /// A client of this server (default namespace `default`).
    pub fn client(&self) -> Client {
        let api = self.clone();
        let svc = tower::service_fn(move |req: Request<Body>| {
            let api = api.clone();
            async move { Ok::<_, Infallible>(api.handle(req).await) }
        });
        Client::new(svc, "default")
    }

    /// Every request answers after `latency`.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// Requests seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    /// Forgets the requests seen so far.
    pub fn clear_seen(&self) {
        self.lock().seen.clear();
    }

    /// Stores an object as if created (metadata filled in), without a request.
    pub fn insert(&self, kind: Kind, object: Value) -> Value {
        let mut st = self.lock();
        let out = st.create(kind, object).expect("insert");
        self.notify(&st);
        out
    }

    /// Stores many objects with one lock (10 000 Services before a controller starts).
    pub fn insert_all(&self, kind: Kind, objects: impl IntoIterator<Item = Value>) {
        let mut st = self.lock();
        for o in objects {
            st.create(kind, o).expect("insert");
        }
        self.notify(&st);
    }

    /// Replaces an object wholesale (a `kubectl replace` by someone else).
    pub fn update(&self, kind: Kind, namespace: &str, name: &str, f: impl FnOnce(&mut Value)) {
        let mut st = self.lock();
        let key = (namespace.to_owned(), name.to_owned());
        let mut obj = st.objects[&kind][&key].clone();
        f(&mut obj);
        st.store(kind, key, obj, "MODIFIED");
        self.notify(&st);
    }

    /// Deletes an object.
    pub fn delete(&self, kind: Kind, namespace: &str, name: &str) {
        let mut st = self.lock();
        let key = (namespace.to_owned(), name.to_owned());
        st.remove(kind, &key);
        self.notify(&st);
    }

    /// An object as stored now.
    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&kind)
            .and_then(|m| m.get(&(namespace.to_owned(), name.to_owned())))
            .cloned()
    }

    /// Every object of a kind, in (namespace, name) order.
    pub fn all(&self, kind: Kind) -> Vec<Value> {
        self.lock()
            .objects
            .get(&kind)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Counts the objects of `kind` for which `f` holds.
    pub fn count(&self, kind: Kind, f: impl Fn(&Value) -> bool) -> usize {
        self.lock()
            .objects
            .get(&kind)
            .map(|m| m.values().filter(|v| f(v)).count())
            .unwrap_or(0)
    }

    /// The objects of `kind` written after `rv` (newest version of each, deletions left
    /// out), and the newest `resourceVersion`: a cursor for watching thousands of objects
    /// without scanning them all under the server's lock.
    pub fn changed_after(&self, kind: Kind, rv: u64) -> (Vec<Arc<Value>>, u64) {
        let st = self.lock();
        let first = st.log.partition_point(|c| c.rv <= rv);
        let changed = st.log[first..]
            .iter()
            .filter(|c| c.kind == kind && c.type_ != "DELETED")
            .map(|c| c.object.clone())
            .collect();
        (changed, st.rv)
    }

    /// Forgets the change log up to now: a watch resumed from an older resourceVersion gets
    /// `410 Gone`.
    pub fn compact(&self) {
        let mut st = self.lock();
        st.compacted = st.rv;
        st.log.clear();
    }

    /// Closes every open watch (the client re-watches from the last resourceVersion it saw).
    pub fn end_watches(&self) {
        let mut st = self.lock();
        st.watch_epoch += 1;
        self.notify(&st);
    }

    /// Polls `f` every 10 ms until it holds or `deadline` passes; returns whether it held.
    pub async fn wait_for(&self, deadline: Duration, f: impl Fn(&FakeApi) -> bool) -> bool {
        self.wait_for_every(deadline, Duration::from_millis(10), f)
            .await
    }

    /// [`FakeApi::wait_for`], looking every `period`: a check over thousands of objects
    /// holds the server's lock, and looking too often slows the server it measures.
    pub async fn wait_for_every(
        &self,
        deadline: Duration,
        period: Duration,
        f: impl Fn(&FakeApi) -> bool,
    ) -> bool {
        let end = tokio::time::Instant::now() + deadline;
        loop {
            if f(self) {
                return true;
            }
            if tokio::time::Instant::now() >= end {
                return false;
            }
            tokio::time::sleep(period).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fake api lock")
    }

    fn notify(&self, st: &State) {
        self.tick.send_replace((st.rv, st.watch_epoch));
    }

    /// Answers one request (what [`FakeApi::client`]'s service does; public so that a test
    /// can serve it over HTTP to another process).
    pub async fn handle(&self, req: Request<Body>) -> Response<RespBody> {
        let method = req.method().to_string();
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or_default().to_owned();
        let content_type = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = req.into_body().collect_bytes().await.unwrap_or_default();
        let latency = self.lock().latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let params = parse_query(&query);
        let (code, response) = match route(&path) {
            None => (
                404,
                plain(status_body(404, "NotFound", &format!("no route {path}"))),
            ),
            Some(target) => self.serve(&method, target, &params, &content_type, &body),
        };
        self.lock().seen.push(Seen {
            method,
            path,
            query,
            code,
        });
        response
    }

    fn serve(
        &self,
        method: &str,
        target: Target,
        params: &BTreeMap<String, String>,
        content_type: &str,
        body: &[u8],
    ) -> (u16, Response<RespBody>) {
        let Target {
            kind,
            namespace,
            name,
            status,
        } = target;
        let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let mut st = self.lock();
        let result = match (method, name) {
            ("GET", None) if params.get("watch").is_some_and(|w| w == "true" || w == "1") => {
                let from = params
                    .get("resourceVersion")
                    .and_then(|r| r.parse::<u64>().ok())
                    .unwrap_or(0);
                drop(st);
                return (200, self.watch(kind, namespace, from, params));
            }
            ("GET", None) => Ok(st.list(kind, namespace.as_deref(), params)),
            ("GET", Some(name)) => st.get(kind, &key(&namespace, &name)),
            ("POST", None) => {
                let mut obj = parsed;
                if let Some(ns) = &namespace {
                    obj["metadata"]["namespace"] = json!(ns);
                }
                st.create(kind, obj)
            }
            ("PUT", Some(name)) => st.replace(kind, key(&namespace, &name), parsed, status),
            ("PATCH", Some(name)) => {
                let manager = params.get("fieldManager").cloned().unwrap_or_default();
                if content_type.starts_with("application/apply-patch") {
                    st.apply(kind, key(&namespace, &name), parsed, &manager, status)
                } else {
                    st.merge(kind, key(&namespace, &name), &parsed, status)
                }
            }
            ("DELETE", Some(name)) => {
                let k = key(&namespace, &name);
                match st.remove(kind, &k) {
                    Some(o) => Ok(o),
                    None => Err((404, "NotFound", format!("{} {name} not found", kind.plural))),
                }
            }
            _ => Err((405, "MethodNotAllowed", format!("{method} not allowed"))),
        };
        self.notify(&st);
        match result {
            Ok(v) => (200, plain(v)),
            Err((code, reason, message)) => (code, plain(status_body(code, reason, &message))),
        }
    }

    fn watch(
        &self,
        kind: Kind,
        namespace: Option<String>,
        from: u64,
        params: &BTreeMap<String, String>,
    ) -> Response<RespBody> {
        let (tx, rx) = mpsc::channel::<Bytes>(256);
        let api = self.clone();
        let timeout = params
            .get("timeoutSeconds")
            .and_then(|t| t.parse::<u64>().ok())
            .map(Duration::from_secs);
        tokio::spawn(async move {
            let mut tick = api.tick.subscribe();
            let (start_epoch, compacted) = {
                let st = api.lock();
                (st.watch_epoch, st.compacted)
            };
            if from != 0 && from < compacted {
                let gone = json!({"type": "ERROR", "object": status_body(410, "Expired",
                    &format!("too old resource version: {from} ({compacted})"))});
                let _ = tx.send(line(&gone)).await;
                return;
            }
            // A watch from 0 starts now, as "any" does on a real server.
            let mut after = if from == 0 { api.lock().rv } else { from };
            let end = timeout.map(|t| tokio::time::Instant::now() + t);
            loop {
                let batch: Vec<Change> = {
                    let st = api.lock();
                    if st.watch_epoch != start_epoch {
                        return;
                    }
                    let first = st.log.partition_point(|c| c.rv <= after);
                    st.log[first..]
                        .iter()
                        .filter(|c| {
                            c.kind == kind && namespace.as_ref().is_none_or(|ns| *ns == c.namespace)
                        })
                        .cloned()
                        .collect()
                };
                for c in batch {
                    after = c.rv;
                    let event = json!({"type": c.type_, "object": &*c.object});
                    if tx.send(line(&event)).await.is_err() {
                        return;
                    }
                }
                // Everything up to the newest version has been looked at.
                // Not `borrow` and `lock` at once: `notify` takes them in the other order.
                let ticked = tick.borrow_and_update().0;
                after = after.max(ticked.min(api.lock().rv));
                let changed = tick.changed();
                match end {
                    Some(end) => {
                        if tokio::time::timeout_at(end, changed).await.is_err() {
                            return;
                        }
                    }
                    None => {
                        if changed.await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let stream = tokio_stream_of(rx).map(|b| Ok::<_, Infallible>(Frame::data(b)));
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(BodyExt::boxed_unsync(StreamBody::new(stream)))
            .unwrap()
    }
}

fn tokio_stream_of(mut rx: mpsc::Receiver<Bytes>) -> impl futures::Stream<Item = Bytes> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap();
    b.push(b'\n');
    Bytes::from(b)
}

fn plain(v: Value) -> Response<RespBody> {
    let code = v
        .get("kind")
        .filter(|k| *k == "Status")
        .and_then(|_| v.get("code"))
        .and_then(Value::as_u64)
        .unwrap_or(200);
    Response::builder()
        .status(StatusCode::from_u16(code as u16).unwrap())
        .header("content-type", "application/json")
        .body(BodyExt::boxed_unsync(http_body_util::Full::new(
            Bytes::from(serde_json::to_vec(&v).unwrap()),
        )))
        .unwrap()
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn key(namespace: &Option<String>, name: &str) -> Key {
    (namespace.clone().unwrap_or_default(), name.to_owned())
}

type Failure = (u16, &'static str, String);

impl State {
    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn list(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        params: &BTreeMap<String, String>,
    ) -> Value {
        let limit = params.get("limit").and_then(|l| l.parse::<usize>().ok());
        let start = params.get("continue").cloned().unwrap_or_default();
        let empty = BTreeMap::new();
        let objects = self.objects.get(&kind).unwrap_or(&empty);
        let mut items = Vec::new();
        let mut next = None;
        let after: Option<Key> = (!start.is_empty()).then(|| {
            let (ns, name) = start.split_once('/').unwrap_or(("", &start));
            (ns.to_owned(), name.to_owned())
        });
        let mut remaining = 0usize;
        for (k, v) in objects {
            if namespace.is_some_and(|ns| ns != k.0) {
                continue;
            }
            if after.as_ref().is_some_and(|a| k <= a) {
                continue;
            }
            if limit.is_some_and(|l| items.len() >= l) {
                if next.is_none() {
                    let last: &Value = items.last().unwrap();
                    next = Some(format!(
                        "{}/{}",
                        last["metadata"]["namespace"].as_str().unwrap_or_default(),
                        last["metadata"]["name"].as_str().unwrap_or_default()
                    ));
                }
                remaining += 1;
                continue;
            }
            items.push(v.clone());
        }
        let mut metadata = json!({"resourceVersion": self.rv.to_string()});
        if let Some(next) = next {
            metadata["continue"] = json!(next);
            metadata["remainingItemCount"] = json!(remaining);
        }
        json!({"apiVersion": kind.api_version, "kind": format!("{}List", kind.kind),
               "metadata": metadata, "items": items})
    }

    fn get(&self, kind: Kind, key: &Key) -> Result<Value, Failure> {
        self.objects
            .get(&kind)
            .and_then(|m| m.get(key))
            .cloned()
            .ok_or_else(|| {
                (
                    404,
                    "NotFound",
                    format!("{} \"{}\" not found", kind.plural, key.1),
                )
            })
    }

    fn create(&mut self, kind: Kind, mut obj: Value) -> Result<Value, Failure> {
        let meta =
            obj["metadata"]
                .as_object_mut()
                .ok_or((400, "BadRequest", "no metadata".to_owned()))?;
        if meta
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            let prefix = meta
                .get("generateName")
                .and_then(Value::as_str)
                .ok_or((
                    422,
                    "Invalid",
                    "name or generateName is required".to_owned(),
                ))?
                .to_owned();
            self.uid += 1;
            meta.insert("name".into(), json!(format!("{prefix}{:05x}", self.uid)));
        }
        let name = meta["name"].as_str().unwrap().to_owned();
        let namespace = if kind.namespaced {
            meta.entry("namespace")
                .or_insert(json!("default"))
                .as_str()
                .unwrap_or("default")
                .to_owned()
        } else {
            meta.remove("namespace");
            String::new()
        };
        let k = (namespace, name.clone());
        if self.objects.get(&kind).is_some_and(|m| m.contains_key(&k)) {
            return Err((
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", kind.plural),
            ));
        }
        self.uid += 1;
        let meta = obj["metadata"].as_object_mut().unwrap();
        meta.insert("uid".into(), json!(format!("uid-{}", self.uid)));
        meta.insert("generation".into(), json!(1));
        meta.entry("creationTimestamp")
            .or_insert(json!(k8s_openapi::jiff::Timestamp::now().to_string()));
        obj["apiVersion"] = json!(kind.api_version);
        obj["kind"] = json!(kind.kind);
        Ok(self.store(kind, k, obj, "ADDED"))
    }

    fn replace(
        &mut self,
        kind: Kind,
        key: Key,
        obj: Value,
        status: bool,
    ) -> Result<Value, Failure> {
        let current = self.get(kind, &key)?;
        let sent = obj["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default();
        if !sent.is_empty() && sent != current["metadata"]["resourceVersion"] {
            return Err((
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{}\": the object has been modified",
                    kind.plural, key.1
                ),
            ));
        }
        let mut next = current.clone();
        if status {
            next["status"] = obj["status"].clone();
        } else {
            for field in obj.as_object().into_iter().flatten() {
                if field.0 != "status" && field.0 != "metadata" {
                    next[field.0] = field.1.clone();
                }
            }
            for m in ["labels", "annotations"] {
                next["metadata"][m] = obj["metadata"][m].clone();
            }
        }
        Ok(self.write(kind, key, current, next))
    }

    /// JSON merge patch (RFC 7386); close enough to a strategic merge for what Herald sends.
    fn merge(
        &mut self,
        kind: Kind,
        key: Key,
        patch: &Value,
        status: bool,
    ) -> Result<Value, Failure> {
        let current = self.get(kind, &key)?;
        let mut next = current.clone();
        let patch = restrict(patch, status);
        merge_patch(&mut next, &patch);
        Ok(self.write(kind, key, current, next))
    }

    fn apply(
        &mut self,
        kind: Kind,
        key: Key,
        patch: Value,
        manager: &str,
        status: bool,
    ) -> Result<Value, Failure> {
        let current = match self.get(kind, &key) {
            Ok(c) => c,
            Err(e) if status => return Err(e),
            Err(_) => {
                let mut obj = restrict(&patch, false);
                obj["metadata"]["name"] = json!(key.1);
                if kind.namespaced {
                    obj["metadata"]["namespace"] = json!(key.0);
                }
                let created = self.create(kind, obj)?;
                let leaves = leaves_of(&restrict(&patch, false));
                self.owned
                    .insert((kind, key, manager.to_owned(), false), leaves);
                return Ok(created);
            }
        };
        let applied = restrict(&patch, status);
        let leaves = leaves_of(&applied);
        let slot = (kind, key.clone(), manager.to_owned(), status);
        let before = self.owned.get(&slot).cloned().unwrap_or_default();
        let mut next = current.clone();
        for gone in before.difference(&leaves) {
            remove_path(&mut next, gone);
        }
        set_leaves(&mut next, &applied, &mut Vec::new());
        self.owned.insert(slot, leaves);
        Ok(self.write(kind, key, current, next))
    }

    /// Stores `next` if it differs from `current` (new resourceVersion, generation bumped on
    /// a spec change, a MODIFIED event); else returns `current` untouched.
    fn write(&mut self, kind: Kind, key: Key, current: Value, mut next: Value) -> Value {
        if next == current {
            return current;
        }
        if next.get("spec") != current.get("spec") {
            let g = current["metadata"]["generation"].as_i64().unwrap_or(1);
            next["metadata"]["generation"] = json!(g + 1);
        }
        self.store(kind, key, next, "MODIFIED")
    }

    fn store(&mut self, kind: Kind, key: Key, mut obj: Value, type_: &'static str) -> Value {
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.objects
            .entry(kind)
            .or_default()
            .insert(key.clone(), obj.clone());
        self.log.push(Change {
            rv,
            kind,
            namespace: key.0,
            type_,
            object: Arc::new(obj.clone()),
        });
        obj
    }

    fn remove(&mut self, kind: Kind, key: &Key) -> Option<Value> {
        let mut obj = self.objects.get_mut(&kind)?.remove(key)?;
        self.owned
            .retain(|(k, o, _, _), _| !(*k == kind && o == key));
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.log.push(Change {
            rv,
            kind,
            namespace: key.0.clone(),
            type_: "DELETED",
            object: Arc::new(obj.clone()),
        });
        Some(obj)
    }
}

/// The part of a patch a subresource may write: only `status` on `/status`; everything
/// but `status` on the main resource. Identity fields are dropped.
fn restrict(patch: &Value, status: bool) -> Value {
    let mut out = Map::new();
    for (k, v) in patch.as_object().into_iter().flatten() {
        match (k.as_str(), status) {
            ("apiVersion" | "kind", _) => {}
            ("status", true) => {
                out.insert(k.clone(), v.clone());
            }
            ("metadata", false) => {
                let mut m = v.clone();
                if let Some(m) = m.as_object_mut() {
                    for id in [
                        "name",
                        "namespace",
                        "resourceVersion",
                        "uid",
                        "generation",
                        "creationTimestamp",
                        "managedFields",
                    ] {
                        m.remove(id);
                    }
                }
                out.insert(k.clone(), m);
            }
            (_, false) if k != "status" => {
                out.insert(k.clone(), v.clone());
            }
            _ => {}
        }
    }
    Value::Object(out)
}

/// The leaf paths of an applied object; objects are descended, lists are atomic leaves, an
/// empty object is a leaf of its own.
fn leaves_of(v: &Value) -> BTreeSet<Vec<String>> {
    fn walk(v: &Value, path: &mut Vec<String>, out: &mut BTreeSet<Vec<String>>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, c) in m {
                    path.push(k.clone());
                    walk(c, path, out);
                    path.pop();
                }
            }
            _ => {
                out.insert(path.clone());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

fn set_leaves(target: &mut Value, applied: &Value, path: &mut Vec<String>) {
    match applied {
        Value::Object(m) if !m.is_empty() => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            for (k, c) in m {
                let slot = target
                    .as_object_mut()
                    .unwrap()
                    .entry(k.clone())
                    .or_insert(Value::Null);
                path.push(k.clone());
                set_leaves(slot, c, path);
                path.pop();
            }
        }
        Value::Object(_) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
        }
        other => *target = other.clone(),
    }
}

/// Removes a field, and the objects it leaves empty on the way up.
fn remove_path(target: &mut Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let Some(m) = target.as_object_mut() else {
        return;
    };
    if rest.is_empty() {
        m.remove(first);
        return;
    }
    if let Some(child) = m.get_mut(first) {
        remove_path(child, rest);
        if child.as_object().is_some_and(Map::is_empty) {
            m.remove(first);
        }
    }
}

fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().unwrap();
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a path names.
struct Target {
    kind: Kind,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

fn route(path: &str) -> Option<Target> {
    for kind in KINDS {
        let Some(rest) = path.strip_prefix(kind.prefix) else {
            continue;
        };
        let parts: Vec<&str> = rest.trim_matches('/').split('/').collect();
        let (namespace, tail): (Option<String>, &[&str]) = if kind.namespaced {
            match parts.as_slice() {
                [p, tail @ ..] if *p == kind.plural => (None, tail),
                ["namespaces", ns, p, tail @ ..] if *p == kind.plural => {
                    (Some((*ns).to_owned()), tail)
                }
                _ => continue,
            }
        } else {
            match parts.as_slice() {
                [p, tail @ ..] if *p == kind.plural => (None, tail),
                _ => continue,
            }
        };
        // `/api/v1/namespaces/x/services` is a Service path, not a Namespace's subresource.
        if kind == NAMESPACES && tail.len() > 1 && tail[1] != "status" {
            continue;
        }
        return match tail {
            [] => Some(Target {
                kind,
                namespace,
                name: None,
                status: false,
            }),
            [name] => Some(Target {
                kind,
                namespace,
                name: Some((*name).to_owned()),
                status: false,
            }),
            [name, "status"] => Some(Target {
                kind,
                namespace,
                name: Some((*name).to_owned()),
                status: true,
            }),
            _ => None,
        };
    }
    None
}

/// A `type: LoadBalancer` Service object with one TCP port.
pub fn lb_service(namespace: &str, name: &str, port: u16) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": "LoadBalancer", "ports": [{"port": port, "protocol": "TCP"}],
                 "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"},
    })
}

/// An `IPPool` object.
pub fn ip_pool(name: &str, addresses: &[&str]) -> Value {
    json!({
        "apiVersion": "herald.dev/v1alpha1", "kind": "IPPool",
        "metadata": {"name": name},
        "spec": {"addresses": addresses},
    })
}

/// A Namespace object.
pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// The ingress IPs of a Service object.
pub fn ingress(svc: &Value) -> Vec<String> {
    svc["status"]["loadBalancer"]["ingress"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["ip"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a Service object has an address.
pub fn allocated(svc: &Value) -> bool {
    !ingress(svc).is_empty()
}

/// `object` with one more annotation.
pub fn annotate(mut object: Value, key: &str, value: &str) -> Value {
    let meta = &mut object["metadata"];
    if meta.get("annotations").is_none() {
        meta["annotations"] = json!({});
    }
    meta["annotations"][key] = json!(value);
    object
}
