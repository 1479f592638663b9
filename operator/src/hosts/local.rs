//! A Docker engine on this machine, reached through its unix socket (`unix://` hosts).

use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use super::convert::authority;
use super::engine::Engine;
use super::tunnel::Tunnel;
use super::HostError;

/// The engine behind a local socket. Every HTTP connection is a new socket connection, pooled by hyper;
/// nothing is dialled until the first call, so a missing socket shows as `Unreachable` on each call.
pub type LocalHost = Engine<LocalTunnel>;

/// This machine's sockets: the Docker socket at a path, and plain TCP to containers.
pub struct LocalTunnel {
    socket: PathBuf,
}

impl LocalHost {
    pub fn new(socket: impl AsRef<Path>) -> LocalHost {
        Engine::through(LocalTunnel { socket: socket.as_ref().to_path_buf() })
    }
}

impl Tunnel for LocalTunnel {
    type Socket = UnixStream;

    /// Always: each connection finds out for itself whether the socket is there.
    async fn ready(&self) -> Result<(), HostError> {
        Ok(())
    }

    async fn docker_socket(&self) -> Result<UnixStream, HostError> {
        UnixStream::connect(&self.socket)
            .await
            .map_err(|e| HostError::Unreachable(format!("docker socket {}: {e}", self.socket.display())))
    }

    /// A plain TCP connection from this machine to `ip:port`.
    async fn tcp(
        &self,
        ip: &str,
        port: u16,
    ) -> Result<impl AsyncRead + AsyncWrite + Unpin + Send, HostError> {
        let stream = TcpStream::connect((ip, port))
            .await
            .map_err(|e| HostError::Http(format!("connect to {}: {e}", authority(ip, port))))?;
        // Best effort: only latency depends on it.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}
