//! A TCP server inside a namespace that answers every line (and the connection itself) with
//! its name, so a client learns which backend it reached, and the client side of it; or, as
//! [`NameServer::http`], an HTTP/1.0 server whose every response body is its name.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::Netns;

/// The server; stopped and joined on drop.
pub struct NameServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl NameServer {
    /// Listens on `addr` inside `ns`; greets each connection with `name\n` and answers each
    /// line it receives with `name\n`.
    pub fn spawn(ns: &Netns, addr: SocketAddr, name: &str) -> Self {
        Self::start(ns, addr, name, serve)
    }

    /// Listens on `addr` inside `ns` and answers each HTTP request with `200 OK` and `name`
    /// as the body, then closes the connection.
    pub fn http(ns: &Netns, addr: SocketAddr, name: &str) -> Self {
        Self::start(ns, addr, name, serve_http)
    }

    fn start(ns: &Netns, addr: SocketAddr, name: &str, serve: fn(TcpStream, &str)) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let ns_path = format!("/run/netns/{}", ns.name());
        let name = name.to_owned();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let file = std::fs::File::open(&ns_path).expect("opening the namespace");
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let listener = TcpListener::bind(addr).expect("binding the name server");
            listener
                .set_nonblocking(true)
                .expect("nonblocking listener");
            ready_tx.send(()).expect("signalling readiness");
            let mut conns = Vec::new();
            // Bounded by the stop flag, which the owner sets on drop.
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let name = name.clone();
                        conns.push(std::thread::spawn(move || serve(stream, &name)));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
            drop(listener);
            for c in conns {
                let _ = c.join();
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("name server ready");
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

fn serve_http(stream: TcpStream, name: &str) {
    stream.set_nonblocking(false).ok();
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    // The request head ends with an empty line; bounded in lines.
    for _ in 0..100 {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line.trim_end().is_empty() => {
                let response = format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{name}",
                    name.len()
                );
                let _ = writer.write_all(response.as_bytes());
                return;
            }
            Ok(_) => {}
        }
    }
}

fn serve(stream: TcpStream, name: &str) {
    stream.set_nonblocking(false).ok();
    // Bounded: a silent client is dropped after the timeout.
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    if writer.write_all(format!("{name}\n").as_bytes()).is_err() {
        return;
    }
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    for _ in 0..10_000 {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if writer.write_all(format!("{name}\n").as_bytes()).is_err() {
                    return;
                }
            }
        }
    }
}

impl Drop for NameServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A client connection to a [`NameServer`] (through a VIP, say), greeted by it.
pub struct Conn {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    /// Connects from inside `ns` to `addr` and reads the greeting; each step has a 2 s
    /// timeout, so a path that drops packets fails here instead of hanging.
    pub fn open(ns: &Netns, addr: SocketAddr) -> Result<Self, String> {
        ns.run_in(|| {
            let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                .map_err(|e| format!("connect to {addr}: {e}"))?;
            stream
                .set_read_timeout(Some(Duration::from_secs(2)))
                .map_err(|e| e.to_string())?;
            let mut conn = Conn {
                reader: BufReader::new(stream.try_clone().map_err(|e| e.to_string())?),
                stream,
            };
            conn.read_line()?;
            Ok(conn)
        })
    }

    fn read_line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .map_err(|e| format!("read: {e}"))?;
        Ok(line.trim().to_owned())
    }

    /// Asks the server its name again over this connection.
    pub fn ask(&mut self) -> Result<String, String> {
        self.stream
            .write_all(b"who\n")
            .map_err(|e| format!("write: {e}"))?;
        self.read_line()
    }
}
