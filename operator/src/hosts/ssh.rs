//! A Docker host reached over SSH, with nothing installed on it: one persistent russh session per host.
//!
//! bollard speaks HTTP through `direct-streamlocal` channels to the host's Docker socket (one channel per
//! pooled HTTP connection; an events stream holds its own); health checks go through `direct-tcpip` channels,
//! so no port has to be open to the operator. The server's host key must be in known_hosts.
//! The session is dialled lazily and re-dialled when it breaks, with backoff between failed dials.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex as SyncMutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use ballast_specs::HostSpec;
use bollard::Docker;
use futures::stream::BoxStream;
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use russh::client::{self, AuthResult, Handle};
use russh::keys::{load_secret_key, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{AlgorithmKind, ChannelStream, Preferred};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::convert::authority;
use super::inspect_cache::InspectCache;
use super::known_hosts::{self, KnownHosts};
use super::{
    docker, Container, ContainerConfig, DockerHost, ExecOutput, HostError, HostEvent, LogLine, RegistryAuth,
    SshConfig,
};

/// Bound of one dial: TCP connect, SSH handshake and authentication.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// SSH keepalives; a peer silent for `KEEPALIVE_INTERVAL * KEEPALIVE_MAX` ends the session.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_MAX: usize = 3;
/// Wait after the first failed dial; doubled after each further failure, up to `BACKOFF_MAX`.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// One Docker host over SSH. Cheap to create: nothing is dialled until the first call.
pub struct SshHost {
    link: Arc<Link>,
    docker: Docker,
    /// Inspects reused while this host's events stream is open.
    inspected: InspectCache,
}

/// The SSH connection to one host, re-dialled when broken.
struct Link {
    address: String,
    port: u16,
    user: String,
    docker_socket: String,
    config: SshConfig,
    state: Mutex<LinkState>,
}

#[derive(Default)]
struct LinkState {
    session: Option<Arc<Handle<Verifier>>>,
    /// Dials failed in a row.
    failures: u32,
    /// No dial before this; until then calls get `last_error` at once.
    retry_at: Option<Instant>,
    last_error: Option<HostError>,
}

/// The russh client handler: checks the server's key against known_hosts.
struct Verifier {
    address: String,
    port: u16,
    known_hosts: KnownHosts,
    /// Why the key was refused, for the dial's error (russh itself only says "unknown key").
    rejection: Arc<SyncMutex<Option<HostError>>>,
}

/// A channel as the byte stream of one HTTP connection.
struct Tunnel(ChannelStream<client::Msg>);

/// The hyper connector: each new HTTP connection is a new `direct-streamlocal` channel to the Docker socket.
#[derive(Clone)]
struct SocketChannels {
    link: Arc<Link>,
}

impl SshHost {
    /// `name` is the host's name in the spec; the SSH target comes from `spec`.
    pub fn new(name: &str, spec: &HostSpec, config: SshConfig) -> SshHost {
        tracing::debug!(host = name, address = %spec.address, port = spec.port, "ssh host");
        let link = Arc::new(Link {
            address: spec.address.clone(),
            port: spec.port,
            user: spec.user.clone(),
            docker_socket: spec.docker_socket.clone(),
            config,
            state: Mutex::new(LinkState::default()),
        });
        let docker = docker::client(SocketChannels { link: link.clone() });
        SshHost { link, docker, inspected: InspectCache::default() }
    }
}

#[async_trait]
impl DockerHost for SshHost {
    async fn list(&self) -> Result<Vec<Container>, HostError> {
        self.link.session().await?;
        docker::list(&self.docker, &self.inspected).await
    }

    async fn inspect(&self, id: &str) -> Result<Option<Container>, HostError> {
        self.link.session().await?;
        docker::inspect(&self.docker, id).await
    }

    async fn image_present(&self, image: &str) -> Result<bool, HostError> {
        self.link.session().await?;
        docker::image_present(&self.docker, image).await
    }

    async fn pull(&self, image: &str, auth: Option<&RegistryAuth>) -> Result<(), HostError> {
        self.link.session().await?;
        docker::pull(&self.docker, image, auth).await
    }

    async fn create(&self, config: &ContainerConfig) -> Result<String, HostError> {
        self.link.session().await?;
        docker::create(&self.docker, config).await
    }

    async fn start(&self, id: &str) -> Result<(), HostError> {
        self.link.session().await?;
        docker::start(&self.docker, id).await
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<(), HostError> {
        self.link.session().await?;
        docker::stop(&self.docker, id, grace).await
    }

    async fn remove(&self, id: &str) -> Result<(), HostError> {
        self.link.session().await?;
        docker::remove(&self.docker, id).await
    }

    async fn update_resources(&self, id: &str, nano_cpus: i64, memory: i64) -> Result<(), HostError> {
        self.link.session().await?;
        docker::update_resources(&self.docker, id, nano_cpus, memory).await
    }

    /// Through a `direct-tcpip` channel: the host connects to `ip:port`.
    async fn http_get(&self, ip: &str, port: u16, path: &str, timeout: Duration) -> Result<u16, HostError> {
        let session = self.link.session().await?;
        let authority = authority(ip, port);
        let check = async {
            let channel = session
                .channel_open_direct_tcpip(ip, u32::from(port), "127.0.0.1", 0)
                .await
                .map_err(|e| match e {
                    russh::Error::ChannelOpenFailure(reason) => HostError::Http(format!(
                        "connect to {authority} from {}: {reason:?}",
                        self.link.address
                    )),
                    other => self.link.session_error(other),
                })?;
            docker::http_status(channel.into_stream(), &authority, path).await
        };
        tokio::time::timeout(timeout, check).await.unwrap_or(Err(HostError::Timeout(timeout)))
    }

    async fn events(&self) -> Result<BoxStream<'static, HostEvent>, HostError> {
        self.link.session().await?;
        docker::events(&self.docker, &self.inspected).await
    }

    /// A follow holds its own channel, like the events stream.
    async fn logs(
        &self,
        id: &str,
        follow: bool,
        tail: Option<u64>,
    ) -> Result<BoxStream<'static, Result<LogLine, HostError>>, HostError> {
        self.link.session().await?;
        docker::logs(&self.docker, id, follow, tail).await
    }

    /// The exec's attach is an upgraded HTTP connection: a channel of its own until the command ends.
    async fn exec(&self, id: &str, cmd: &[String]) -> Result<ExecOutput, HostError> {
        self.link.session().await?;
        docker::exec(&self.docker, id, cmd).await
    }
}

impl Link {
    /// The live session, dialling one if there is none (or it broke). While in backoff after a failed dial,
    /// returns that dial's error at once.
    async fn session(&self) -> Result<Arc<Handle<Verifier>>, HostError> {
        let mut state = self.state.lock().await;
        if let Some(session) = &state.session {
            if !session.is_closed() {
                return Ok(session.clone());
            }
            tracing::info!(address = %self.address, port = self.port, "ssh session closed; dialling again");
            state.session = None;
        }
        if let (Some(retry_at), Some(error)) = (state.retry_at, &state.last_error) {
            if Instant::now() < retry_at {
                return Err(error.clone());
            }
        }
        match self.dial().await {
            Ok(handle) => {
                let handle = Arc::new(handle);
                *state = LinkState { session: Some(handle.clone()), ..LinkState::default() };
                Ok(handle)
            }
            Err(error) => {
                state.failures = state.failures.saturating_add(1);
                let backoff = backoff(state.failures);
                tracing::warn!(address = %self.address, port = self.port, %error, ?backoff, "ssh dial failed");
                state.retry_at = Some(Instant::now() + backoff);
                state.last_error = Some(error.clone());
                Err(error)
            }
        }
    }

    /// TCP connect, SSH handshake (host key checked against known_hosts) and public-key authentication.
    async fn dial(&self) -> Result<Handle<Verifier>, HostError> {
        let known_hosts_path = self.config.known_hosts.as_ref().ok_or_else(|| {
            HostError::HostKey(format!("no known_hosts file configured: refusing ssh to {}", self.address))
        })?;
        let known_hosts = KnownHosts::load(known_hosts_path)?;
        let algorithms = known_hosts.algorithms(&self.address, self.port, &Preferred::DEFAULT.key)?;
        let key_path = self
            .config
            .key_path
            .as_ref()
            .ok_or_else(|| HostError::Unreachable("no ssh private key configured".to_string()))?;
        let key = load_secret_key(key_path, None).map_err(|e| {
            HostError::Unreachable(format!("cannot load ssh key {}: {e}", key_path.display()))
        })?;
        let config = Arc::new(client::Config {
            keepalive_interval: Some(KEEPALIVE_INTERVAL),
            keepalive_max: KEEPALIVE_MAX,
            nodelay: true,
            preferred: Preferred { key: Cow::Owned(algorithms), ..Preferred::DEFAULT },
            ..client::Config::default()
        });
        let rejection = Arc::new(SyncMutex::new(None));
        let verifier = Verifier {
            address: self.address.clone(),
            port: self.port,
            known_hosts,
            rejection: rejection.clone(),
        };
        let target = format!("{}:{}", self.address, self.port);
        let dial = async {
            let tcp = TcpStream::connect((self.address.as_str(), self.port))
                .await
                .map_err(|e| HostError::Unreachable(format!("connect to {target}: {e}")))?;
            // Best effort: only latency depends on it.
            let _ = tcp.set_nodelay(true);
            let mut handle = client::connect_stream(config, tcp, verifier).await.map_err(|e| {
                let refused = rejection.lock().ok().and_then(|mut r| r.take());
                refused.unwrap_or_else(|| self.handshake_error(e))
            })?;
            let key = Arc::new(key);
            let hash = if key.algorithm().is_rsa() {
                handle.best_supported_rsa_hash().await.ok().flatten().flatten()
            } else {
                None
            };
            let auth = handle
                .authenticate_publickey(self.user.clone(), PrivateKeyWithHashAlg::new(key, hash))
                .await
                .map_err(|e| HostError::Unreachable(format!("ssh authentication to {target}: {e}")))?;
            match auth {
                AuthResult::Success => Ok(handle),
                AuthResult::Failure { .. } => Err(HostError::Unreachable(format!(
                    "ssh public key authentication as {} to {target} failed (key {})",
                    self.user,
                    key_path.display()
                ))),
            }
        };
        tokio::time::timeout(CONNECT_TIMEOUT, dial).await.unwrap_or_else(|_| {
            Err(HostError::Unreachable(format!("ssh to {target} timed out after {CONNECT_TIMEOUT:?}")))
        })
    }

    /// A `direct-streamlocal` channel to the host's Docker socket, as a hyper connection.
    async fn docker_channel(&self) -> Result<TokioIo<Tunnel>, HostError> {
        let session = self.session().await?;
        let channel = session.channel_open_direct_streamlocal(self.docker_socket.clone()).await.map_err(
            |e| match e {
                russh::Error::ChannelOpenFailure(reason) => HostError::Unreachable(format!(
                    "{}: cannot open docker socket {}: {reason:?}",
                    self.address, self.docker_socket
                )),
                other => self.session_error(other),
            },
        )?;
        Ok(TokioIo::new(Tunnel(channel.into_stream())))
    }

    fn handshake_error(&self, error: russh::Error) -> HostError {
        match error {
            // We offer only the key types known_hosts has for this host: the server has none of them.
            russh::Error::NoCommonAlgo { kind: AlgorithmKind::Key, theirs, .. } => {
                let name = known_hosts::host_name(&self.address, self.port);
                HostError::HostKey(format!(
                    "{}: the server offers only {}",
                    known_hosts::mismatch(&name),
                    theirs.join(", ")
                ))
            }
            other => {
                HostError::Unreachable(format!("ssh handshake with {}:{}: {other}", self.address, self.port))
            }
        }
    }

    fn session_error(&self, error: russh::Error) -> HostError {
        HostError::Unreachable(format!("ssh session to {}:{}: {error}", self.address, self.port))
    }
}

/// The wait after `failures` failed dials in a row: 0.1 s, doubling, at most 5 s.
fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(10);
    BACKOFF_FIRST.saturating_mul(1 << doublings).min(BACKOFF_MAX)
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(&mut self, server_key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let verdict = match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                self.known_hosts.check(&self.address, self.port, key)
            }
            PublicKeyOrCertificate::Certificate(_) => Err(HostError::HostKey(format!(
                "{} presented a host certificate; only plain host keys in known_hosts are supported",
                self.address
            ))),
        };
        match verdict {
            Ok(()) => Ok(true),
            Err(error) => {
                tracing::warn!(address = %self.address, port = self.port, %error, "ssh host key refused");
                if let Ok(mut rejection) = self.rejection.lock() {
                    *rejection = Some(error);
                }
                Ok(false)
            }
        }
    }
}

impl tower::Service<Uri> for SocketChannels {
    type Response = TokioIo<Tunnel>;
    type Error = HostError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, HostError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), HostError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let link = self.link.clone();
        Box::pin(async move { link.docker_channel().await })
    }
}

impl Connection for Tunnel {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for Tunnel {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_seconds() {
        let waits: Vec<u128> = (1..=8).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }
}
