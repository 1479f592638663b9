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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::hosts::DockerHost;

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_missing_socket_is_unreachable_on_each_call() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let host = LocalHost::new(&socket);
        let expected = format!("docker socket {}: ", socket.display());
        for _ in 0..2 {
            let error = host.list().await.unwrap_err();
            assert!(matches!(&error, HostError::Unreachable(m) if m.starts_with(&expected)), "{error}");
        }
    }

    #[tokio::test]
    async fn http_get_sends_a_get_over_plain_tcp_and_reads_the_status() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 256];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "the request ended early");
                request.extend_from_slice(&buf[..n]);
            }
            stream.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await.unwrap();
            String::from_utf8(request).unwrap()
        });
        let host = LocalHost::new("/nonexistent/docker.sock");
        assert_eq!(host.http_get("127.0.0.1", port, "/up", WAIT).await.unwrap(), 204);
        let request = server.await.unwrap();
        assert!(request.starts_with(&format!("GET /up HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n")), "{request}");
    }

    #[tokio::test]
    async fn http_get_of_a_refused_port_is_an_http_failure_and_silence_a_timeout() {
        let host = LocalHost::new("/nonexistent/docker.sock");
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let error = host.http_get("127.0.0.1", port, "/", WAIT).await.unwrap_err();
        let expected = format!("connect to 127.0.0.1:{port}: ");
        assert!(matches!(&error, HostError::Http(m) if m.starts_with(&expected)), "{error}");

        // Connected (the listener's backlog) but never answered.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let limit = Duration::from_millis(50);
        let error = host.http_get("127.0.0.1", port, "/", limit).await.unwrap_err();
        assert!(matches!(error, HostError::Timeout(d) if d == limit), "{error}");
    }
}
