//! A small, bounded HTTP load generator for scenarios and benchmarks: GETs sent at a steady rate (open loop: a
//! slow answer never slows the sending), every answer counted by status and body, every failed connection counted.
//!
//! It runs on its own thread and runtime, so a scenario may block (on `ballast`, on `docker`) while it runs:
//! [`Load::start`] begins, [`Running::finish`] stops it and waits for the answers still in flight.
//!
//! ```no_run
//! # use std::time::Duration;
//! # use ballast_e2e::load::Load;
//! let running = Load::new("http://10.212.0.11:80/version").rate(200).duration(Duration::from_secs(30)).start();
//! // ... change the deployment ...
//! let report = running.finish();
//! assert_eq!((report.non_200, report.failed), (0, 0), "{report}");
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// The longest a load may run, whatever it is asked.
pub const MAX_DURATION: Duration = Duration::from_secs(60);
/// The most requests a second it sends.
pub const MAX_RATE: u32 = 2_000;
/// How many failures a report keeps the details of (all are counted).
const KEPT_FAILURES: usize = 50;

/// What to send: `rate` GETs a second to `url`, for `duration`.
#[derive(Clone, Debug)]
pub struct Load {
    url: String,
    rate: u32,
    duration: Duration,
    /// The `Host` header, when it is not the URL's.
    host: Option<String>,
    /// Each request's bound, from its sending to the end of its answer.
    timeout: Duration,
    /// Requests reuse connections (HTTP keep-alive), as browsers and most clients do.
    keep_alive: bool,
}

/// A load under way on its own thread.
pub struct Running {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Report>,
}

/// What a load saw.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Requests sent.
    pub sent: u64,
    /// Answers with status 200, by body (trimmed): the app's version.
    pub versions: BTreeMap<String, u64>,
    /// Answers of another status.
    pub non_200: u64,
    /// Requests with no answer: refused or broken connections, timeouts.
    pub failed: u64,
    /// The first failures (non-200 or failed), with when they happened after the start.
    pub failures: Vec<Failure>,
    /// When the first and the last failure happened, after the start.
    pub first_failure: Option<Duration>,
    pub last_failure: Option<Duration>,
    /// Latencies of the 200 answers, sorted.
    pub latencies: Vec<Duration>,
    /// How long the load ran.
    pub ran: Duration,
}

/// One request that did not get a 200.
#[derive(Clone, Debug)]
pub struct Failure {
    /// When it was sent, after the start.
    pub at: Duration,
    pub what: String,
}

impl Load {
    /// 100 GETs a second to `url` for 10 s, keep-alive, each bounded by 10 s.
    pub fn new(url: &str) -> Load {
        Load {
            url: url.to_string(),
            rate: 100,
            duration: Duration::from_secs(10),
            host: None,
            timeout: Duration::from_secs(10),
            keep_alive: true,
        }
    }

    /// Requests a second (at most [`MAX_RATE`]).
    pub fn rate(mut self, rate: u32) -> Load {
        self.rate = rate.clamp(1, MAX_RATE);
        self
    }

    /// How long to send (at most [`MAX_DURATION`]); [`Running::finish`] may stop it earlier.
    pub fn duration(mut self, duration: Duration) -> Load {
        self.duration = duration.min(MAX_DURATION);
        self
    }

    /// The `Host` header to send.
    pub fn host(mut self, host: &str) -> Load {
        self.host = Some(host.to_string());
        self
    }

    /// Each request's bound.
    pub fn timeout(mut self, timeout: Duration) -> Load {
        self.timeout = timeout;
        self
    }

    /// A new connection for every request (`Connection: close`) instead of reused ones.
    pub fn no_keep_alive(mut self) -> Load {
        self.keep_alive = false;
        self
    }

    /// Starts sending on a thread of its own.
    pub fn start(self) -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime for the load");
            runtime.block_on(self.run(flag))
        });
        Running { stop, thread }
    }

    /// Sends until the duration is over or `stop` is set, then waits for the answers in flight.
    async fn run(self, stop: Arc<AtomicBool>) -> Report {
        let mut client = reqwest::Client::builder().timeout(self.timeout).pool_max_idle_per_host(64);
        if !self.keep_alive {
            client = client.pool_max_idle_per_host(0);
        }
        let client = client.build().expect("an http client");
        let report = Arc::new(Mutex::new(Report::default()));
        let started = Instant::now();
        let every = Duration::from_secs_f64(1.0 / f64::from(self.rate));
        let mut tasks = tokio::task::JoinSet::new();
        let mut next = started;
        while !stop.load(Ordering::Relaxed) && next.duration_since(started) < self.duration {
            tokio::time::sleep_until(next).await;
            let mut request = client.get(&self.url);
            if let Some(host) = &self.host {
                request = request.header(reqwest::header::HOST, host);
            }
            if !self.keep_alive {
                request = request.header(reqwest::header::CONNECTION, "close");
            }
            let report = report.clone();
            let at = started.elapsed();
            tasks.spawn(async move {
                let sent = Instant::now();
                let outcome = match request.send().await {
                    Ok(answer) => {
                        let status = answer.status().as_u16();
                        match answer.text().await {
                            Ok(body) => Ok((status, body)),
                            Err(e) => Err(describe(&e)),
                        }
                    }
                    Err(e) => Err(describe(&e)),
                };
                record(&report, at, sent.elapsed(), outcome);
            });
            next += every;
            // Reap what is done, so a long load does not keep every finished task.
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
        let mut report = std::mem::take(&mut *report.lock().unwrap_or_else(|e| e.into_inner()));
        report.ran = started.elapsed();
        report.latencies.sort();
        report
    }
}

impl Running {
    /// Stops sending (if the duration is not over yet), waits for the answers in flight, and reports.
    pub fn finish(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_else(|_| panic!("the load generator's thread panicked"))
    }

    /// Waits until the duration is over, then reports.
    pub fn wait(self) -> Report {
        self.thread.join().unwrap_or_else(|_| panic!("the load generator's thread panicked"))
    }
}

impl Report {
    /// Every request got a 200.
    pub fn clean(&self) -> bool {
        self.non_200 == 0 && self.failed == 0
    }

    /// How long requests failed: from the first failure to the last (zero with one or none).
    pub fn failure_window(&self) -> Duration {
        match (self.first_failure, self.last_failure) {
            (Some(first), Some(last)) => last.saturating_sub(first),
            _ => Duration::ZERO,
        }
    }

    /// The latency at `percent` (0-100) of the 200 answers.
    pub fn percentile(&self, percent: f64) -> Option<Duration> {
        if self.latencies.is_empty() {
            return None;
        }
        let at = ((percent / 100.0) * (self.latencies.len() - 1) as f64).round() as usize;
        self.latencies.get(at.min(self.latencies.len() - 1)).copied()
    }
}

fn record(report: &Mutex<Report>, at: Duration, took: Duration, outcome: Result<(u16, String), String>) {
    let mut report = report.lock().unwrap_or_else(|e| e.into_inner());
    report.sent += 1;
    let failure = match outcome {
        Ok((200, body)) => {
            *report.versions.entry(body.trim().to_string()).or_default() += 1;
            report.latencies.push(took);
            return;
        }
        Ok((status, body)) => {
            report.non_200 += 1;
            let line = body.trim().lines().next().unwrap_or_default().chars().take(120).collect::<String>();
            format!("{status}: {line}")
        }
        Err(what) => {
            report.failed += 1;
            what
        }
    };
    report.first_failure = Some(report.first_failure.map_or(at, |first| first.min(at)));
    report.last_failure = Some(report.last_failure.map_or(at, |last| last.max(at)));
    if report.failures.len() < KEPT_FAILURES {
        report.failures.push(Failure { at, what: failure });
    }
}

/// A reqwest error with its causes: `error sending request: connection refused`.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms =
            |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.1} ms", d.as_secs_f64() * 1e3));
        write!(
            f,
            "{} sent in {:.1} s: 200 by version {:?}, {} other statuses, {} failed; p50 {}, p99 {}",
            self.sent,
            self.ran.as_secs_f64(),
            self.versions,
            self.non_200,
            self.failed,
            ms(self.percentile(50.0)),
            ms(self.percentile(99.0)),
        )?;
        if !self.failures.is_empty() {
            write!(f, "; failures from {} to {}:", ms(self.first_failure), ms(self.last_failure))?;
            for failure in &self.failures {
                write!(f, "\n  at {}: {}", ms(Some(failure.at)), failure.what)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    /// A server on a free port of 127.0.0.1 that answers every request with `status` and `body`, one connection
    /// at a time (no keep-alive).
    fn serve(status: &'static str, body: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/version", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request);
                let answer = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        url
    }

    #[test]
    fn counts_answers_by_version_at_the_rate_asked() {
        let url = serve("200 OK", "v1\n");
        let report = Load::new(&url).rate(100).duration(Duration::from_secs(1)).start().wait();
        assert!((95..=101).contains(&report.sent), "{report}");
        assert_eq!(report.versions.get("v1"), Some(&report.sent), "{report}");
        assert!(report.clean(), "{report}");
        assert!(report.percentile(99.0).is_some());
    }

    #[test]
    fn counts_other_statuses_and_failed_connections() {
        let url = serve("503 Service Unavailable", "busy");
        let report = Load::new(&url).rate(50).duration(Duration::from_millis(200)).start().wait();
        assert_eq!((report.non_200, report.failed), (report.sent, 0), "{report}");
        assert!(report.failures[0].what.starts_with("503: busy"), "{report}");

        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/version", closed.local_addr().unwrap());
        drop(closed);
        let report = Load::new(&url).rate(50).duration(Duration::from_millis(200)).start().wait();
        assert!(report.sent > 0 && report.failed == report.sent, "{report}");
        assert!(report.failure_window() > Duration::ZERO, "{report}");
    }

    #[test]
    fn is_bounded_and_stops_early() {
        let load = Load::new("http://127.0.0.1:9/").rate(u32::MAX).duration(Duration::from_secs(3600));
        assert_eq!((load.rate, load.duration), (MAX_RATE, MAX_DURATION));
        let url = serve("200 OK", "v1");
        let running = Load::new(&url).rate(100).duration(Duration::from_secs(30)).start();
        std::thread::sleep(Duration::from_millis(300));
        let report = running.finish();
        assert!(report.ran < Duration::from_secs(2) && report.sent < 50, "{report}");
    }
}
