//! A bounded load generator: `GET` requests on one address at a fixed rate for at most a fixed time, each on a
//! new connection, and a count of every answer: 200s by body (the app answers its version), other statuses, and
//! failed connections or requests. Open loop: a slow answer never delays the next request, so a gap in service
//! shows as failures, not as fewer requests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The most a load may run, whatever it is asked for: load generators here are bounded in rate and time.
pub const MAX_DURATION: Duration = Duration::from_secs(60);
/// The most requests a second a load may send.
pub const MAX_RATE: u32 = 500;

/// What to send.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub addr: SocketAddr,
    /// The request's path, e.g. `/up`.
    pub path: String,
    /// The `Host` header (the address when `None`).
    pub host: Option<String>,
    /// Requests a second (at most [`MAX_RATE`]).
    pub rate: u32,
    /// Send `rate × duration` requests (`duration` at most [`MAX_DURATION`]) unless stopped before.
    pub duration: Duration,
    /// Bound of one request, connect to last byte.
    pub timeout: Duration,
}

impl LoadConfig {
    /// `GET /up` on `addr`, 200 a second, for at most 60 s, each request bounded by 10 s.
    pub fn new(addr: SocketAddr) -> LoadConfig {
        LoadConfig {
            addr,
            path: "/up".into(),
            host: None,
            rate: 200,
            duration: MAX_DURATION,
            timeout: Duration::from_secs(10),
        }
    }
}

/// One failed request: when it was sent and why it failed.
#[derive(Clone, Debug)]
pub struct Failure {
    pub sent: Duration,
    pub what: String,
}

/// What a load saw.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    pub sent: u64,
    /// 200 answers by body (trimmed).
    pub ok: BTreeMap<String, u64>,
    /// Every request that did not end in a 200: another status, a refused or reset connection, a timeout.
    pub failures: Vec<Failure>,
    /// Latency of each 200, in the order they completed.
    pub latencies: Vec<Duration>,
    /// How long the load ran.
    pub ran: Duration,
}

impl LoadReport {
    pub fn failed(&self) -> u64 {
        self.failures.len() as u64
    }

    /// The time from the first failure to the last (zero without failures): the outage as clients saw it.
    pub fn failure_window(&self) -> Duration {
        match (self.failures.iter().map(|f| f.sent).min(), self.failures.iter().map(|f| f.sent).max()) {
            (Some(first), Some(last)) => last - first,
            _ => Duration::ZERO,
        }
    }

    /// One line for a log: sent, 200s by version, failures and their kinds.
    pub fn summary(&self) -> String {
        let mut kinds: BTreeMap<&str, u64> = BTreeMap::new();
        for f in &self.failures {
            *kinds.entry(f.what.split(':').next().unwrap_or("")).or_default() += 1;
        }
        format!(
            "{} sent in {:.1}s; 200 by body {:?}; {} failed {:?} over {} ms",
            self.sent,
            self.ran.as_secs_f64(),
            self.ok,
            self.failed(),
            kinds,
            self.failure_window().as_millis()
        )
    }
}

/// A running load; [`Load::stop`] ends it and waits for the requests in flight.
pub struct Load {
    stop: watch::Sender<bool>,
    report: Arc<Mutex<LoadReport>>,
    task: JoinHandle<LoadReport>,
}

impl Load {
    /// Starts sending. Fails on a rate or duration over the bounds.
    pub fn start(config: LoadConfig) -> Result<Load> {
        ensure!(config.rate > 0 && config.rate <= MAX_RATE, "rate must be 1..={MAX_RATE}: {}", config.rate);
        ensure!(config.duration <= MAX_DURATION, "a load runs at most {MAX_DURATION:?}");
        let (stop, stopped) = watch::channel(false);
        let report = Arc::new(Mutex::new(LoadReport::default()));
        let task = tokio::spawn(run(config, report.clone(), stopped));
        Ok(Load { stop, report, task })
    }

    /// Whether a 200 with this body has come back yet.
    pub fn seen(&self, body: &str) -> bool {
        self.report.lock().unwrap_or_else(|e| e.into_inner()).ok.contains_key(body)
    }

    /// Stops sending, waits for every request in flight, and returns the report.
    pub async fn stop(self) -> Result<LoadReport> {
        let _ = self.stop.send(true);
        Ok(self.task.await?)
    }
}

async fn run(
    config: LoadConfig,
    report: Arc<Mutex<LoadReport>>,
    mut stopped: watch::Receiver<bool>,
) -> LoadReport {
    let period = Duration::from_secs(1) / config.rate;
    let request = Arc::new(format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: ballast-e2e-load\r\n\r\n",
        config.path,
        config.host.clone().unwrap_or_else(|| config.addr.to_string())
    ));
    // The number of requests is fixed by rate × duration, so a busy machine that ticks late sends them late
    // (in a burst), never fewer.
    let total = (config.duration.as_secs_f64() * f64::from(config.rate)).ceil() as u64;
    let start = Instant::now();
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut inflight = Vec::new();
    let mut sent = 0u64;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped.changed() => break,
        }
        if sent == total {
            break;
        }
        sent += 1;
        let (report, request, addr, timeout) = (report.clone(), request.clone(), config.addr, config.timeout);
        let at = start.elapsed();
        inflight.push(tokio::spawn(async move {
            let began = Instant::now();
            let result = tokio::time::timeout(timeout, get(addr, &request)).await;
            let mut report = report.lock().unwrap_or_else(|e| e.into_inner());
            match result {
                Ok(Ok((200, body))) => {
                    *report.ok.entry(body).or_default() += 1;
                    report.latencies.push(began.elapsed());
                }
                Ok(Ok((status, _))) => {
                    report.failures.push(Failure { sent: at, what: format!("status: {status}") })
                }
                Ok(Err(e)) => report.failures.push(Failure { sent: at, what: e }),
                Err(_) => report.failures.push(Failure { sent: at, what: format!("timeout: {timeout:?}") }),
            }
        }));
        // Keep the list of handles short: drop those already done.
        if inflight.len() > 1000 {
            inflight.retain(|h| !h.is_finished());
        }
    }
    for handle in inflight {
        let _ = handle.await;
    }
    let mut report = std::mem::take(&mut *report.lock().unwrap_or_else(|e| e.into_inner()));
    report.sent = sent;
    report.ran = start.elapsed();
    report
}

/// One request on a new connection: the status and the trimmed body. An error names its kind first
/// (`connect: ...`, `io: ...`, `parse: ...`).
async fn get(addr: SocketAddr, request: &str) -> std::result::Result<(u16, String), String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("io: {e}"))?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.map_err(|e| format!("io: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) =
        text.split_once("\r\n\r\n").ok_or_else(|| format!("parse: no header end in {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("parse: no status in {head:?}"))?;
    Ok((status, body.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that answers `200 v1` to the first `ok` connections and closes the rest unanswered.
    async fn server(ok: usize) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut n = 0;
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                n += 1;
                let answer = n <= ok;
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    if answer {
                        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nv1\n").await;
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn counts_answers_and_failures() {
        let addr = server(10).await;
        let mut config = LoadConfig::new(addr);
        config.rate = 100;
        config.duration = Duration::from_millis(195);
        let report = Load::start(config).unwrap().stop_after(Duration::from_secs(1)).await;
        assert_eq!(report.sent, 20, "{}", report.summary());
        assert_eq!(report.ok.get("v1"), Some(&10), "{}", report.summary());
        assert_eq!(report.failed(), 10, "{}", report.summary());
        assert!(report.failures.iter().all(|f| f.what.starts_with("parse")), "{}", report.summary());
    }

    #[tokio::test]
    async fn a_closed_port_is_a_failed_connection() {
        let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let mut config = LoadConfig::new(port); // the listener is dropped: nothing listens
        config.rate = 50;
        config.duration = Duration::from_millis(90);
        let report = Load::start(config).unwrap().stop_after(Duration::from_secs(1)).await;
        assert_eq!((report.sent, report.failed()), (5, 5), "{}", report.summary());
        assert!(report.failures.iter().all(|f| f.what.starts_with("connect")), "{}", report.summary());
    }

    #[test]
    fn bounds_are_kept() {
        let mut config = LoadConfig::new("127.0.0.1:1".parse().unwrap());
        config.rate = MAX_RATE + 1;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _guard = rt.enter();
        assert!(Load::start(config.clone()).is_err());
        config.rate = 10;
        config.duration = MAX_DURATION + Duration::from_secs(1);
        assert!(Load::start(config).is_err());
    }

    impl Load {
        /// Lets the load end by its own duration (sleeping `wait`), then stops it.
        async fn stop_after(self, wait: Duration) -> LoadReport {
            tokio::time::sleep(wait).await;
            self.stop().await.unwrap()
        }
    }
}
