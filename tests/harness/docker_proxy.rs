//! A recording proxy in front of a Docker socket: every HTTP request that passes is logged with its method,
//! path and the times its request line and its answer's status line went through. That counts the Docker API
//! calls a client makes (ballastd reaches the proxy's socket over SSH like any other), and times them: the
//! benchmark's breakdowns and the tests that count calls both use it.
//!
//! Each direction is followed as HTTP/1.1 messages (start line, headers, a body of `Content-Length` bytes or
//! chunks), so a request line right after a body without a final newline is still seen. Without pipelining,
//! the n-th final status line on a connection answers its n-th request. Bytes are passed on untouched.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

/// One Docker API call seen by the proxy.
#[derive(Clone, Debug)]
pub struct Call {
    /// When its request line went through.
    pub at: Instant,
    /// When the status line of its answer went through.
    pub answered: Option<Instant>,
    pub method: String,
    /// The path without API version and query, ids replaced by `{id}`: `/containers/{id}/json`.
    pub path: String,
    /// The request target as sent: `/v1.41/containers/4f1c…/json`.
    pub target: String,
}

impl Call {
    /// `GET /containers/{id}/json`
    pub fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// How long the call took, in ms (`None` while unanswered).
    pub fn ms(&self) -> Option<f64> {
        self.answered.map(|a| (a - self.at).as_secs_f64() * 1e3)
    }
}

type Log = Arc<Mutex<Vec<Call>>>;

/// A running proxy; it stops listening and removes its socket when dropped.
pub struct Proxy {
    path: PathBuf,
    log: Log,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Listens on `path` and forwards every connection to the socket `target`.
    pub fn start(path: &Path, target: &Path) -> Result<Proxy> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)
            .with_context(|| format!("binding the proxy socket {}", path.display()))?;
        let log: Log = Arc::default();
        let task = {
            let log = log.clone();
            let target = target.to_path_buf();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let log = log.clone();
                    let target = target.clone();
                    tokio::spawn(async move {
                        if let Ok(server) = UnixStream::connect(&target).await {
                            relay(client, server, log).await;
                        }
                    });
                }
            })
        };
        Ok(Proxy { path: path.to_path_buf(), log, task })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The calls whose request went through after `since`.
    pub fn since(&self, since: Instant) -> Vec<Call> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.iter().filter(|c| c.at > since).cloned().collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn relay(client: UnixStream, server: UnixStream, log: Log) {
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // Indices in `log` of this connection's calls not answered yet, oldest first.
    let pending: Arc<Mutex<VecDeque<usize>>> = Arc::default();
    let up = pump(client_read, server_write, Scanner::new(Side::Request), {
        let log = log.clone();
        let pending = pending.clone();
        move |line| {
            if let Some((method, path)) = request_line(line) {
                let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                let target = String::from_utf8_lossy(line).split(' ').nth(1).unwrap_or_default().to_string();
                log.push(Call { at: Instant::now(), answered: None, method, path, target });
                pending.lock().unwrap_or_else(|e| e.into_inner()).push_back(log.len() - 1);
            }
        }
    });
    let down = pump(server_read, client_write, Scanner::new(Side::Response), move |line| {
        if status_code(line).is_some_and(|code| code >= 200) {
            if let Some(i) = pending.lock().unwrap_or_else(|e| e.into_inner()).pop_front() {
                let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(call) = log.get_mut(i) {
                    call.answered = Some(Instant::now());
                }
            }
        }
    });
    // Either side closing ends the connection.
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

/// Copies `from` to `to`, showing `on_start` the start line of every HTTP message that passes.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut scanner: Scanner,
    mut on_start: impl FnMut(&[u8]),
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Look at the bytes before passing them on: a request's time is when it arrived.
        scanner.feed(&buf[..n], &mut on_start);
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Which way the messages go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Request,
    Response,
}

/// Where the scanner is in the current message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Start,
    Headers,
    Body(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailers,
    /// A body that lasts until the connection closes (or an upgraded connection): nothing more to see.
    Opaque,
}

/// Follows HTTP/1.1 messages through a byte stream.
#[derive(Debug)]
struct Scanner {
    side: Side,
    part: Part,
    line: Vec<u8>,
    length: Option<u64>,
    chunked: bool,
    status: u16,
}

/// Longer lines are not HTTP framing: give up on the stream.
const MAX_LINE: usize = 16 * 1024;

impl Scanner {
    fn new(side: Side) -> Scanner {
        Scanner { side, part: Part::Start, line: Vec::new(), length: None, chunked: false, status: 0 }
    }

    fn feed(&mut self, mut data: &[u8], on_start: &mut impl FnMut(&[u8])) {
        while !data.is_empty() {
            match self.part {
                Part::Opaque => return,
                Part::Body(left) | Part::ChunkData(left) => {
                    let take = left.min(data.len() as u64);
                    data = &data[take as usize..];
                    let left = left - take;
                    self.part = match (self.part, left) {
                        (Part::Body(_), 0) => Part::Start,
                        (Part::Body(_), _) => Part::Body(left),
                        (_, 0) => Part::ChunkEnd,
                        _ => Part::ChunkData(left),
                    };
                }
                _ => {
                    let Some(end) = data.iter().position(|&b| b == b'\n') else {
                        self.line.extend_from_slice(data);
                        if self.line.len() > MAX_LINE {
                            self.part = Part::Opaque;
                        }
                        return;
                    };
                    self.line.extend_from_slice(&data[..end]);
                    data = &data[end + 1..];
                    let line = std::mem::take(&mut self.line);
                    let line = line.strip_suffix(b"\r").unwrap_or(&line);
                    self.on_line(line, on_start);
                }
            }
        }
    }

    fn on_line(&mut self, line: &[u8], on_start: &mut impl FnMut(&[u8])) {
        match self.part {
            Part::Start if line.is_empty() => {}
            Part::Start => {
                on_start(line);
                self.length = None;
                self.chunked = false;
                self.status = if self.side == Side::Response { status_code(line).unwrap_or(0) } else { 0 };
                self.part = Part::Headers;
            }
            Part::Headers if line.is_empty() => self.part = self.body(),
            Part::Headers => {
                let text = String::from_utf8_lossy(line).to_ascii_lowercase();
                if let Some((name, value)) = text.split_once(':') {
                    match name.trim() {
                        "content-length" => self.length = value.trim().parse().ok(),
                        "transfer-encoding" => self.chunked = value.contains("chunked"),
                        _ => {}
                    }
                }
            }
            Part::ChunkSize => {
                let text = String::from_utf8_lossy(line);
                let size = text.split(';').next().unwrap_or("").trim();
                self.part = match u64::from_str_radix(size, 16) {
                    Ok(0) => Part::Trailers,
                    Ok(n) => Part::ChunkData(n),
                    Err(_) => Part::Opaque,
                };
            }
            Part::ChunkEnd => self.part = Part::ChunkSize,
            Part::Trailers if line.is_empty() => self.part = Part::Start,
            _ => {}
        }
    }

    /// What follows the headers of the current message.
    fn body(&self) -> Part {
        let response = self.side == Side::Response;
        if response && self.status == 101 {
            return Part::Opaque;
        }
        if response && (self.status < 200 || self.status == 204 || self.status == 304) {
            return Part::Start;
        }
        match (self.chunked, self.length) {
            (true, _) => Part::ChunkSize,
            (false, Some(0)) => Part::Start,
            (false, Some(n)) => Part::Body(n),
            (false, None) if response => Part::Opaque,
            (false, None) => Part::Start,
        }
    }
}

/// `HTTP/1.1 204 No Content` → 204.
fn status_code(line: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(line).ok()?;
    let mut parts = text.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// `GET /v1.41/containers/abc/json?x=1 HTTP/1.1` → (`GET`, `/containers/{id}/json`).
fn request_line(line: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(line).ok()?;
    let mut parts = text.split(' ');
    let method = parts.next()?;
    let target = parts.next()?;
    let version = parts.next()?;
    if parts.next().is_some()
        || !version.starts_with("HTTP/1.")
        || !["GET", "POST", "PUT", "DELETE", "HEAD"].contains(&method)
        || !target.starts_with('/')
    {
        return None;
    }
    let path = target.split('?').next().unwrap_or(target);
    let mut segments: Vec<&str> = path.split('/').skip(1).collect();
    if segments.first().is_some_and(|s| s.starts_with('v') && s[1..].contains('.')) {
        segments.remove(0);
    }
    Some((method.to_string(), normalize(&segments)))
}

/// `containers/abc/json` → `/containers/{id}/json`; image names may hold slashes: `images/a/b:c/json` →
/// `/images/{id}/json`.
fn normalize(segments: &[&str]) -> String {
    const OBJECTS: [&str; 4] = ["containers", "images", "services", "tasks"];
    const COLLECTION: [&str; 3] = ["json", "create", "prune"];
    const ACTIONS: [&str; 14] = [
        "json", "start", "stop", "update", "wait", "kill", "restart", "logs", "exec", "pause", "unpause",
        "rename", "tag", "history",
    ];
    match segments {
        [object, first, ..] if OBJECTS.contains(object) && !COLLECTION.contains(first) => {
            match segments.last() {
                Some(last) if segments.len() >= 3 && ACTIONS.contains(last) => {
                    format!("/{object}/{{id}}/{last}")
                }
                _ => format!("/{object}/{{id}}"),
            }
        }
        _ => format!("/{}", segments.join("/")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            request_line(b"GET /v1.41/containers/abc123/json HTTP/1.1"),
            Some(("GET".into(), "/containers/{id}/json".into()))
        );
        assert_eq!(
            request_line(b"GET /v1.41/containers/json?all=true&filters=x HTTP/1.1"),
            Some(("GET".into(), "/containers/json".into()))
        );
        assert_eq!(
            request_line(b"POST /v1.41/containers/create?name=a HTTP/1.1"),
            Some(("POST".into(), "/containers/create".into()))
        );
        assert_eq!(
            request_line(b"GET /v1.41/images/10.211.0.1:5000/ballast/app:v1/json HTTP/1.1"),
            Some(("GET".into(), "/images/{id}/json".into()))
        );
        assert_eq!(
            request_line(b"DELETE /v1.41/containers/abc?force=true HTTP/1.1"),
            Some(("DELETE".into(), "/containers/{id}".into()))
        );
        assert_eq!(request_line(b"GET /_ping HTTP/1.1"), Some(("GET".into(), "/_ping".into())));
        assert_eq!(request_line(b"{\"Image\": \"GET / HTTP/1.1\"}"), None);
        assert_eq!(request_line(b"HTTP/1.1 200 OK"), None);
    }

    fn starts(side: Side, chunks: &[&[u8]]) -> Vec<String> {
        let mut scanner = Scanner::new(side);
        let mut seen = Vec::new();
        for chunk in chunks {
            scanner.feed(chunk, &mut |line: &[u8]| seen.push(String::from_utf8_lossy(line).into_owned()));
        }
        seen
    }

    #[test]
    fn requests_after_bodies_without_newline() {
        let create = b"POST /v1.41/containers/create HTTP/1.1\r\nContent-Length: 13\r\n\r\n{\"Image\":\"a\"}";
        let start = b"POST /v1.41/containers/x/start HTTP/1.1\r\nHost: d\r\n\r\n";
        let all = [create.as_slice(), start.as_slice()].concat();
        let expected =
            vec!["POST /v1.41/containers/create HTTP/1.1", "POST /v1.41/containers/x/start HTTP/1.1"];
        assert_eq!(starts(Side::Request, &[&all]), expected);
        // Split anywhere.
        for cut in 1..all.len() {
            assert_eq!(starts(Side::Request, &[&all[..cut], &all[cut..]]), expected, "cut at {cut}");
        }
    }

    #[test]
    fn responses_with_chunks_and_empty_bodies() {
        let stream = b"HTTP/1.1 204 No Content\r\nServer: d\r\n\r\n\
HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n[1,2]\r\n0\r\n\r\n\
HTTP/1.1 201 Created\r\nContent-Length: 8\r\n\r\n{\"Id\":1}\
HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(
            starts(Side::Response, &[stream]),
            vec!["HTTP/1.1 204 No Content", "HTTP/1.1 200 OK", "HTTP/1.1 201 Created", "HTTP/1.1 200 OK"]
        );
    }
}
