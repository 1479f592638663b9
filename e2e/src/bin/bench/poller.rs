//! A poller of `GET /up` on one address, every 10 ms all the while, on its own thread (the async runtime's load
//! never delays it). It keeps every answer with its time: the first 200 of a version after a moment, and the
//! longest window without a 200, are read from that record.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// Time between the starts of two requests.
pub const PERIOD: Duration = Duration::from_millis(10);
/// Bound of a connect. Short: a SYN sent while a container's port is being wired up may go unanswered, and the
/// kernel would resend it only after 1 s; a new connection on the next tick is the better probe.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(100);
/// Bound of each read and write of a request.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);

/// One answer (or its absence) of `GET /up`.
#[derive(Clone, Debug)]
pub struct Sample {
    /// When the answer was complete (or the request failed).
    pub at: Instant,
    /// The body of a 200 answer, trimmed; `None` for anything else (refused, timeout, another status).
    pub body: Option<String>,
}

/// A running poller; it stops when dropped.
pub struct Poller {
    addr: SocketAddr,
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Poller {
    /// Starts polling `http://ADDR/up`.
    pub fn start(addr: SocketAddr) -> Poller {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let samples = samples.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let body = get_up(addr);
                    let sample = Sample { at: Instant::now(), body };
                    samples.lock().unwrap_or_else(|e| e.into_inner()).push(sample);
                    next += PERIOD;
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else {
                        next = now;
                    }
                }
            })
        };
        Poller { addr, samples, stop, thread: Some(thread) }
    }

    /// The samples taken after `since`.
    pub fn since(&self, since: Instant) -> Vec<Sample> {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let start = samples.partition_point(|s| s.at <= since);
        samples[start..].to_vec()
    }

    /// The first 200 answering `want` (any body when `None`) after `after`; waits for it up to `timeout`.
    pub async fn first_ok(&self, after: Instant, want: Option<&str>, timeout: Duration) -> Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self
                .since(after)
                .into_iter()
                .find(|s| s.body.as_deref().is_some_and(|b| want.is_none_or(|w| w == b)));
            if let Some(sample) = found {
                return Ok(sample.at);
            }
            if Instant::now() >= deadline {
                let last = self.since(after).last().cloned();
                bail!(
                    "http://{}/up did not answer {} within {timeout:?} (last answer: {:?})",
                    self.addr,
                    want.unwrap_or("200"),
                    last.map(|s| s.body)
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The longest window without a 200 that overlaps `[from, to]`: between two successive 200 answers, the
    /// first being the last one at or before `from` (or `from` itself when there was none), up to `to`.
    pub fn longest_gap(&self, from: Instant, to: Instant) -> Duration {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let mut prev = samples.iter().rev().find(|s| s.at <= from && s.body.is_some()).map_or(from, |s| s.at);
        let mut longest = Duration::ZERO;
        for sample in samples.iter().filter(|s| s.at > from && s.at <= to && s.body.is_some()) {
            longest = longest.max(sample.at - prev);
            prev = sample.at;
        }
        // A window still open at `to`.
        longest.max(to.saturating_duration_since(prev))
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `GET /up` over HTTP/1.0: the body of a 200, or `None`.
fn get_up(addr: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).ok()?;
    stream.set_nodelay(true).ok()?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT)).ok()?;
    stream.write_all(b"GET /up HTTP/1.0\r\nHost: bench\r\n\r\n").ok()?;
    let mut answer = Vec::with_capacity(512);
    stream.take(64 * 1024).read_to_end(&mut answer).ok()?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.lines().next()?;
    let mut parts = status.split(' ');
    let ok = parts.next()?.starts_with("HTTP/1.") && parts.next()? == "200";
    ok.then(|| body.trim().to_string())
}
