//! Serving the API on a TCP listener: HTTP/1.1, over TLS (rustls) when configured, with a cap on open
//! connections, a header-read timeout and a graceful stop. axum's own `serve` has neither a timer (so no header
//! timeout) nor a cap, and no TLS.
//!
//! - Each accepted connection holds one of `max_connections` places for its lifetime. Past the cap, a plain
//!   connection gets `503 busy` to its first request and is closed; a TLS one is closed at once (no handshake
//!   is spent on it).
//!   Accepting goes on meanwhile, so the listen backlog never fills with connections nobody reads.
//! - The TLS handshake, and the head of every request (the first one, and each one after an idle keep-alive),
//!   must arrive within `header_timeout`, or the connection is closed: a client that connects and sends half a
//!   request holds its place that long at most. Bodies and answers are bounded by the router's
//!   [`super::limits`].
//! - When accepting fails (too many open files), the loop waits a moment and goes on; it never spins. Refusals
//!   are logged at most once every 10 s, with their count.
//! - On `stop`: nothing new is accepted, idle connections close, busy ones finish their request; [`serve`]
//!   returns once every connection is closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::Router;
use ballast_specs::wire::{ApiError as WireError, ErrorBody};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How the API is served.
#[derive(Clone)]
pub struct ServeConfig {
    /// `Some`: HTTPS only.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// How long a TLS handshake, or a request's head, may take to arrive.
    pub header_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
}

/// The addresses of the connection a request came on: a request extension, for the `Host` check and logs.
#[derive(Clone, Copy, Debug)]
pub struct Connection {
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// How many refused connections may be answered at once; past it they are closed without an answer.
const REFUSALS: usize = 64;
/// How long a refused connection may take to send its request's head, and then to read its answer.
const REFUSAL_TIME: Duration = Duration::from_secs(1);
/// How long to wait after accepting failed (out of file descriptors) before trying again.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Refusals and failures are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `stop`, then waits for the open connections to close.
pub async fn serve(listener: TcpListener, app: Router, config: ServeConfig, stop: CancellationToken) {
    let max = u32::try_from(config.max_connections).unwrap_or(u32::MAX).min(Semaphore::MAX_PERMITS as u32);
    let open = Arc::new(Semaphore::new(max as usize));
    let refusing = Arc::new(Semaphore::new(REFUSALS));
    let acceptor = config.tls.clone().map(TlsAcceptor::from);
    let (mut refused, mut failed) = (Throttled::default(), Throttled::default());
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                if let Some(count) = failed.due() {
                    tracing::warn!(error = %err, count, "cannot accept connections");
                }
                // Out of file descriptors: give the open connections a moment to close.
                tokio::time::sleep(ACCEPT_PAUSE).await;
                continue;
            }
        };
        let Ok(place) = open.clone().try_acquire_owned() else {
            if let Some(count) = refused.due() {
                tracing::warn!(max = config.max_connections, count, "connections refused: too many open");
            }
            match refusing.clone().try_acquire_owned() {
                Ok(answering) if acceptor.is_none() => {
                    tokio::spawn(async move {
                        refuse(stream, config.max_connections).await;
                        drop(answering);
                    });
                }
                _ => drop(stream),
            }
            continue;
        };
        let Ok(local) = stream.local_addr() else { continue };
        let _ = stream.set_nodelay(true);
        let connection = Connection { local, remote };
        let (app, acceptor, stop) = (app.clone(), acceptor.clone(), stop.clone());
        let header_timeout = config.header_timeout;
        tokio::spawn(async move {
            match acceptor {
                None => run(stream, app, connection, header_timeout, stop).await,
                Some(acceptor) => match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => run(tls, app, connection, header_timeout, stop).await,
                    Ok(Err(err)) => tracing::debug!(%remote, error = %err, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                },
            }
            drop(place);
        });
    }
    drop(listener);
    // Every place back: every connection closed.
    let _ = open.acquire_many(max).await;
}

/// Serves the requests of one connection until it closes, fails, times out, or `stop` (then gracefully).
async fn run<I>(io: I, app: Router, connection: Connection, header_timeout: Duration, stop: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(connection);
        app.clone().oneshot(request)
    });
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let served = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(served);
    let result = tokio::select! {
        result = served.as_mut() => result,
        () = stop.cancelled() => {
            served.as_mut().graceful_shutdown();
            served.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(remote = %connection.remote, error = %err, "connection closed");
    }
}

/// Answers a connection past the cap with `503 busy` (once its request's head has come, within
/// [`REFUSAL_TIME`]) and closes it.
async fn refuse(stream: TcpStream, max: usize) {
    let body = ErrorBody {
        error: WireError {
            code: "busy".to_string(),
            message: format!(
                "ballastd is busy: {max} connections are open (--max-connections); try again shortly"
            ),
            problems: Vec::new(),
        },
    };
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let service = hyper::service::service_fn(move |_: Request<Incoming>| {
        let answer = axum::http::Response::builder()
            .status(axum::http::StatusCode::SERVICE_UNAVAILABLE)
            .header(axum::http::header::CONTENT_TYPE, "application/json")
            .header(axum::http::header::RETRY_AFTER, "1")
            .body(http_body_util::Full::new(bytes::Bytes::from(body.clone())));
        std::future::ready(answer)
    });
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(REFUSAL_TIME).keep_alive(false);
    let served = builder.serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(REFUSAL_TIME * 2, served).await;
}

/// Counts an event that is logged at most once every [`LOG_EVERY`].
#[derive(Default)]
struct Throttled {
    last: Option<Instant>,
    since: u64,
}

impl Throttled {
    /// Counts one; `Some(how many since the last log, this one included)` when a log is due.
    fn due(&mut self) -> Option<u64> {
        self.since += 1;
        if self.last.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.since))
    }
}

/// Raises this process's soft limit of open files to its hard limit (as Go programs do) and gives the limit now
/// in force.
pub fn raise_file_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = Rlimit { current: limit.maximum, maximum: limit.maximum };
    let current = match limit.current != limit.maximum && setrlimit(Resource::Nofile, raised).is_ok() {
        true => limit.maximum,
        false => limit.current,
    };
    current.unwrap_or(u64::MAX)
}
