//! The embedded etcd of `ballastd` without `--etcd`: the `etcd` binary from PATH as a supervised child.
//!
//! Data lives in `DATA_DIR/etcd`, etcd's output in `DATA_DIR/etcd.log`. Client and peer URLs are on
//! 127.0.0.1, on ports picked free at the first start and kept in `DATA_DIR/etcd-ports.json`, so a
//! restarted `ballastd` finds the same etcd at the same address. If the child dies it is started again
//! (with backoff); it is killed (through its `Child` handle, by PID) on [`EmbeddedEtcd::shutdown`] or drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long etcd may take to answer after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often readiness is polled while starting.
const READY_POLL: Duration = Duration::from_millis(100);
/// Restarts of a dead etcd wait between these bounds, doubling after each quick death.
const RESTART_BACKOFF_MIN: Duration = Duration::from_millis(500);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A child that ran this long before dying counts as healthy: the backoff starts over.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// A running, supervised etcd.
pub struct EmbeddedEtcd {
    endpoint: String,
    /// PID of the current child; 0 while none runs.
    pid: Arc<AtomicU32>,
    stop: CancellationToken,
    supervisor: Option<JoinHandle<()>>,
}

/// Where and how the child runs.
#[derive(Clone, Debug)]
struct Launch {
    data_dir: PathBuf,
    log: PathBuf,
    ports: Ports,
}

/// The ports of the embedded etcd, kept in `DATA_DIR/etcd-ports.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Ports {
    client: u16,
    peer: u16,
}

impl EmbeddedEtcd {
    /// Starts etcd under `data_dir` and waits until it answers. Fails clearly when `etcd` is not on PATH.
    pub async fn start(data_dir: &Path) -> anyhow::Result<EmbeddedEtcd> {
        std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
        let ports_file = data_dir.join("etcd-ports.json");
        let persisted = read_ports(&ports_file)?;
        let mut launch = Launch {
            data_dir: data_dir.join("etcd"),
            log: data_dir.join("etcd.log"),
            ports: match persisted {
                Some(ports) => ports,
                None => free_ports()?,
            },
        };
        let mut attempt = 1;
        let child = loop {
            let mut child = launch.spawn()?;
            match launch.wait_ready(&mut child).await {
                Ok(()) => break child,
                Err(e) => {
                    let _ = child.kill().await;
                    // Fresh ports may have been taken meanwhile: try others. Persisted ones are the address
                    // clients know, so they are not changed behind anyone's back.
                    if persisted.is_some() || attempt == 3 {
                        return Err(e);
                    }
                    tracing::warn!(error = %e, "embedded etcd did not start; trying other ports");
                    launch.ports = free_ports()?;
                    attempt += 1;
                }
            }
        };
        if persisted.is_none() {
            let json = serde_json::to_vec(&launch.ports).context("encoding the etcd ports")?;
            std::fs::write(&ports_file, json).with_context(|| format!("writing {}", ports_file.display()))?;
        }
        let pid = Arc::new(AtomicU32::new(child.id().unwrap_or(0)));
        let stop = CancellationToken::new();
        let endpoint = launch.endpoint();
        tracing::info!(%endpoint, data_dir = %launch.data_dir.display(), "embedded etcd is up");
        let supervisor = tokio::spawn(supervise(launch, child, pid.clone(), stop.clone()));
        Ok(EmbeddedEtcd { endpoint, pid, stop, supervisor: Some(supervisor) })
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// The PID of the running child, if one runs right now.
    pub fn pid(&self) -> Option<u32> {
        match self.pid.load(Ordering::SeqCst) {
            0 => None,
            pid => Some(pid),
        }
    }

    /// Stops supervising and kills etcd, waiting until it is gone.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        if let Some(supervisor) = self.supervisor.take() {
            supervisor.await.context("the etcd supervisor failed")?;
        }
        Ok(())
    }
}

impl Drop for EmbeddedEtcd {
    /// The supervisor kills the child when told to stop; should the runtime go away first, the child
    /// handle (made with `kill_on_drop`) kills it as it is dropped with the task.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Launch {
    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.client)
    }

    fn spawn(&self) -> anyhow::Result<Child> {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let err_log = log.try_clone().with_context(|| format!("opening {}", self.log.display()))?;
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.ports.peer);
        let spawned = Command::new("etcd")
            .arg("--name=ballast")
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=ballast={peer}"))
            // Keep an hour of history for watches; older revisions are compacted away.
            .arg("--auto-compaction-mode=periodic")
            .arg("--auto-compaction-retention=1h")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err_log))
            .kill_on_drop(true)
            .spawn();
        match spawned {
            Ok(child) => Ok(child),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("`etcd` is not on PATH: install etcd, or point ballastd at a cluster with --etcd URL")
            }
            Err(e) => Err(e).context("starting etcd"),
        }
    }

    /// Polls etcd's `/health` until it answers, the child exits, or [`START_TIMEOUT`] passes.
    async fn wait_ready(&self, child: &mut Child) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().context("checking on etcd")? {
                bail!(
                    "etcd exited with {status} while starting (see {}): {}",
                    self.log.display(),
                    tail(&self.log)
                );
            }
            if healthy(self.ports.client).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("etcd did not answer within {START_TIMEOUT:?} (see {})", self.log.display());
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }
}

/// Keeps etcd running until `stop`: a dead child is started again after a backoff.
async fn supervise(launch: Launch, child: Child, pid: Arc<AtomicU32>, stop: CancellationToken) {
    let mut child = Some(child);
    let mut started = Instant::now();
    let mut backoff = RESTART_BACKOFF_MIN;
    loop {
        if let Some(running) = child.as_mut() {
            tokio::select! {
                status = running.wait() => {
                    tracing::warn!(status = ?status, "embedded etcd exited; starting it again");
                    pid.store(0, Ordering::SeqCst);
                    child = None;
                    if started.elapsed() >= STABLE_AFTER {
                        backoff = RESTART_BACKOFF_MIN;
                    }
                }
                _ = stop.cancelled() => {
                    if let Err(e) = running.kill().await {
                        tracing::warn!(error = %e, "cannot kill the embedded etcd");
                    }
                    pid.store(0, Ordering::SeqCst);
                    return;
                }
            }
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
        let mut restarted = match launch.spawn() {
            Ok(restarted) => restarted,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the embedded etcd");
                continue;
            }
        };
        pid.store(restarted.id().unwrap_or(0), Ordering::SeqCst);
        let ready = tokio::select! {
            ready = launch.wait_ready(&mut restarted) => ready,
            _ = stop.cancelled() => {
                let _ = restarted.kill().await;
                pid.store(0, Ordering::SeqCst);
                return;
            }
        };
        match ready {
            Ok(()) => tracing::info!(endpoint = %launch.endpoint(), "embedded etcd is up again"),
            Err(e) => tracing::warn!(error = %e, "the restarted etcd is not ready yet"),
        }
        started = Instant::now();
        child = Some(restarted);
    }
}

/// True when etcd at `127.0.0.1:port` says it is healthy (a plain HTTP/1.1 `GET /health`).
async fn healthy(port: u16) -> bool {
    let check = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let request = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok()?;
        let answer = String::from_utf8_lossy(&answer);
        Some(answer.starts_with("HTTP/1.1 200") && answer.contains("\"health\":\"true\""))
    };
    matches!(tokio::time::timeout(Duration::from_secs(2), check).await, Ok(Some(true)))
}

fn read_ports(path: &Path) -> anyhow::Result<Option<Ports>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("{} is not a ports file; remove it to pick new ports", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Two loopback ports nobody listens on right now.
fn free_ports() -> anyhow::Result<Ports> {
    let client = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    let peer = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(Ports {
        client: client.local_addr().context("finding a free port")?.port(),
        peer: peer.local_addr().context("finding a free port")?.port(),
    })
}

/// The last lines of etcd's log, for an error message.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(3)..].join("\n")
}
