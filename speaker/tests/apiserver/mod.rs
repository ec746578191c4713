//! A mocked API server for cluster mode: a `tower-test` mock behind a real `kube::Client`,
//! answering by path as a real one would, in whatever order the watch tasks ask.
//!
//! - `GET <collection>` (a list): the list given for that path; a path without one is held
//!   until [`ApiServer::list`] provides it (to test readiness).
//! - `GET <collection>?watch=true`: held open; [`ApiServer::push`] answers it with watch
//!   events (the stream then ends and the watcher watches again, as after a timeout).
//! - anything else (Event creation): answered with its own body and recorded in
//!   [`ApiServer::writes`]; writes of `HeraldNode`s go to [`ApiServer::node_writes`].

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::time::Duration;

use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tower_test::mock::{self, Handle, SendResponse};

/// A request other than a list or a watch.
#[derive(Debug, Clone)]
pub struct Write {
    /// `POST`, `PATCH`, ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The body.
    pub body: Value,
}

enum Cmd {
    List(String, Value),
    Push(String, Vec<Value>),
}

/// The server task and its controls.
pub struct ApiServer {
    cmds: mpsc::UnboundedSender<Cmd>,
    /// Every write, in order, but those of `HeraldNode`s.
    pub writes: mpsc::UnboundedReceiver<Write>,
    /// Every write of a `HeraldNode` (object or status), in order, with when it arrived.
    pub node_writes: mpsc::UnboundedReceiver<(tokio::time::Instant, Write)>,
    /// Every list and watch request as `LIST <path>` / `WATCH <path>`, in order.
    pub reads: mpsc::UnboundedReceiver<String>,
    task: JoinHandle<()>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn reply(status: u16, body: Vec<u8>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap()
}

type Pending = SendResponse<Response<Body>>;

impl ApiServer {
    /// Starts a server answering `lists` (path -> list object); returns it with a client.
    pub fn start(lists: BTreeMap<String, Value>) -> (Client, ApiServer) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let (cmds, cmd_rx) = mpsc::unbounded_channel();
        let (write_tx, writes) = mpsc::unbounded_channel();
        let (read_tx, reads) = mpsc::unbounded_channel();
        let (node_tx, node_writes) = mpsc::unbounded_channel();
        let task = tokio::spawn(serve(handle, lists, cmd_rx, write_tx, read_tx, node_tx));
        (
            Client::new(service, "default"),
            ApiServer {
                cmds,
                writes,
                node_writes,
                reads,
                task,
            },
        )
    }

    /// Provides (or replaces) the list at `path`, answering a held list request.
    pub fn list(&self, path: &str, list: Value) {
        let _ = self.cmds.send(Cmd::List(path.to_owned(), list));
    }

    /// Sends watch events (`{"type": ..., "object": ...}`) on the watch of `path`.
    pub fn push(&self, path: &str, events: Vec<Value>) {
        let _ = self.cmds.send(Cmd::Push(path.to_owned(), events));
    }

    /// The next write, within `deadline`.
    pub async fn next_write(&mut self, deadline: Duration) -> Write {
        tokio::time::timeout(deadline, self.writes.recv())
            .await
            .expect("no write within the deadline")
            .expect("server gone")
    }
}

async fn serve(
    mut handle: Handle<Request<Body>, Response<Body>>,
    mut lists: BTreeMap<String, Value>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    writes: mpsc::UnboundedSender<Write>,
    reads: mpsc::UnboundedSender<String>,
    node_writes: mpsc::UnboundedSender<(tokio::time::Instant, Write)>,
) {
    let mut held_lists: BTreeMap<String, Vec<Pending>> = BTreeMap::new();
    let mut watches: BTreeMap<String, VecDeque<Pending>> = BTreeMap::new();
    let mut queued: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut node_objects: BTreeMap<String, Value> = BTreeMap::new();
    let stream = |events: &[Value]| {
        let mut body = Vec::new();
        for e in events {
            body.extend(serde_json::to_vec(e).unwrap());
            body.push(b'\n');
        }
        reply(200, body)
    };
    loop {
        tokio::select! {
            next = handle.next_request() => {
                let Some((req, send)) = next else { return };
                let method = req.method().to_string();
                let uri = req.uri().to_string();
                let path = uri.split('?').next().unwrap().to_owned();
                let bytes = req.into_body().collect_bytes().await.unwrap();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                if method == "GET" && uri.contains("watch=true") {
                    let _ = reads.send(format!("WATCH {path}"));
                    match queued.remove(&path) {
                        Some(events) => send.send_response(stream(&events)),
                        None => watches.entry(path).or_default().push_back(send),
                    }
                } else if method == "GET" {
                    let _ = reads.send(format!("LIST {path}"));
                    match lists.get(&path) {
                        Some(list) => send.send_response(reply(200, serde_json::to_vec(list).unwrap())),
                        None => held_lists.entry(path).or_default().push(send),
                    }
                } else {
                    let write = Write { method, path, body };
                    if write.path.contains("/heraldnodes/") {
                        // As a real server: an apply of the object creates or replaces it;
                        // one of its status answers the whole object, or 404 without one.
                        let at = tokio::time::Instant::now();
                        match write.path.strip_suffix("/status") {
                            Some(object) => match node_objects.get_mut(object) {
                                Some(o) => {
                                    o["status"] = write.body["status"].clone();
                                    send.send_response(reply(200, serde_json::to_vec(o).unwrap()));
                                }
                                None => send.send_response(reply(404, serde_json::to_vec(&json!({
                                    "kind": "Status", "apiVersion": "v1", "status": "Failure",
                                    "reason": "NotFound", "code": 404,
                                    "message": format!("{object} not found"),
                                })).unwrap())),
                            },
                            None => {
                                node_objects.insert(write.path.clone(), write.body.clone());
                                send.send_response(reply(201, bytes.to_vec()));
                            }
                        }
                        let _ = node_writes.send((at, write));
                    } else {
                        send.send_response(reply(201, bytes.to_vec()));
                        let _ = writes.send(write);
                    }
                }
            }
            cmd = cmds.recv() => match cmd {
                None => return,
                Some(Cmd::List(path, list)) => {
                    for send in held_lists.remove(&path).unwrap_or_default() {
                        send.send_response(reply(200, serde_json::to_vec(&list).unwrap()));
                    }
                    lists.insert(path, list);
                }
                Some(Cmd::Push(path, events)) => {
                    match watches.get_mut(&path).and_then(VecDeque::pop_front) {
                        Some(send) => send.send_response(stream(&events)),
                        None => queued.entry(path).or_default().extend(events),
                    }
                }
            },
        }
    }
}

/// A list object.
pub fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": { "resourceVersion": "1" },
        "items": items,
    })
}

/// Polls `probe` until it gives `Some`, at most `deadline`; panics naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "{what}: not within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
