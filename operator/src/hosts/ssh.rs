//! A Docker host reached over SSH, with nothing installed on it: one persistent russh session per host.
//!
//! bollard speaks HTTP through `direct-streamlocal` channels to the host's Docker socket (one channel per
//! pooled HTTP connection; an events stream holds its own); health checks go through `direct-tcpip` channels,
//! so no port has to be open to the operator. The server's host key must be in known_hosts.
//! The session is dialled lazily and re-dialled when it breaks, with backoff between failed dials.

use std::borrow::Cow;
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Duration;

use ballast_specs::HostSpec;
use russh::client::{self, AuthResult, Handle};
use russh::keys::{load_secret_key, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{AlgorithmKind, ChannelStream, Preferred};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::convert::authority;
use super::engine::Engine;
use super::known_hosts::{self, KnownHosts};
use super::tunnel::Tunnel;
use super::{HostError, SshConfig};

/// Bound of one dial: TCP connect, SSH handshake and authentication.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// SSH keepalives; a peer silent for `KEEPALIVE_INTERVAL * KEEPALIVE_MAX` ends the session.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_MAX: usize = 3;
/// Wait after the first failed dial; doubled after each further failure, up to `BACKOFF_MAX`.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// One Docker host over SSH. Cheap to create: nothing is dialled until the first call.
pub type SshHost = Engine<SshTunnel>;

/// The SSH connection to one host, re-dialled when broken.
pub struct SshTunnel {
    address: String,
    port: u16,
    user: String,
    docker_socket: String,
    config: SshConfig,
    state: Mutex<SessionState>,
}

#[derive(Default)]
struct SessionState {
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

impl SshHost {
    /// `name` is the host's name in the spec; the SSH target comes from `spec`.
    pub fn new(name: &str, spec: &HostSpec, config: SshConfig) -> SshHost {
        tracing::debug!(host = name, address = %spec.address, port = spec.port, "ssh host");
        Engine::through(SshTunnel {
            address: spec.address.clone(),
            port: spec.port,
            user: spec.user.clone(),
            docker_socket: spec.docker_socket.clone(),
            config,
            state: Mutex::new(SessionState::default()),
        })
    }
}

impl Tunnel for SshTunnel {
    type Socket = ChannelStream<client::Msg>;

    /// The session is up (dialled if need be); while in backoff after a failed dial, that dial's error.
    async fn ready(&self) -> Result<(), HostError> {
        self.session().await.map(|_| ())
    }

    /// A `direct-streamlocal` channel to the host's Docker socket.
    async fn docker_socket(&self) -> Result<ChannelStream<client::Msg>, HostError> {
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
        Ok(channel.into_stream())
    }

    /// A `direct-tcpip` channel: the host connects to `ip:port`.
    async fn tcp(
        &self,
        ip: &str,
        port: u16,
    ) -> Result<impl AsyncRead + AsyncWrite + Unpin + Send, HostError> {
        let session = self.session().await?;
        let channel = session.channel_open_direct_tcpip(ip, u32::from(port), "127.0.0.1", 0).await.map_err(
            |e| match e {
                russh::Error::ChannelOpenFailure(reason) => HostError::Http(format!(
                    "connect to {} from {}: {reason:?}",
                    authority(ip, port),
                    self.address
                )),
                other => self.session_error(other),
            },
        )?;
        Ok(channel.into_stream())
    }
}

impl SshTunnel {
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
                *state = SessionState { session: Some(handle.clone()), ..SessionState::default() };
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
