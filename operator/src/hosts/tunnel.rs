//! The way to one host's engine and containers (this machine's sockets, or channels of an SSH session),
//! and the hyper connector that gives bollard its HTTP connections through it.

use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::HostError;

/// What the engine needs from the way to a host: `local::LocalTunnel` or `ssh::SshTunnel`.
pub trait Tunnel: Send + Sync + 'static {
    /// A byte stream to the host's Docker socket.
    type Socket: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Ok when calls can go through (for SSH: the session is up, dialled if need be); otherwise the reason
    /// the host cannot be reached, so a call fails at once with it.
    fn ready(&self) -> impl Future<Output = Result<(), HostError>> + Send;

    /// A new stream to the Docker socket: one per pooled HTTP connection of bollard's client.
    fn docker_socket(&self) -> impl Future<Output = Result<Self::Socket, HostError>> + Send;

    /// A TCP connection from the host to `ip:port`. `HostError::Http` when the target refuses: the host
    /// itself is fine.
    fn tcp(
        &self,
        ip: &str,
        port: u16,
    ) -> impl Future<Output = Result<impl AsyncRead + AsyncWrite + Unpin + Send, HostError>> + Send;
}

/// The hyper connector of a tunnel: each new HTTP connection is a new stream to the Docker socket.
pub(super) struct DockerSocket<T>(pub(super) Arc<T>);

/// A stream through a tunnel as a hyper connection (every call passed on as it is).
pub(super) struct Io<S>(S);

impl<T> Clone for DockerSocket<T> {
    fn clone(&self) -> Self {
        DockerSocket(self.0.clone())
    }
}

impl<T: Tunnel> tower::Service<Uri> for DockerSocket<T> {
    type Response = TokioIo<Io<T::Socket>>;
    type Error = HostError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, HostError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), HostError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let tunnel = self.0.clone();
        Box::pin(async move { Ok(TokioIo::new(Io(tunnel.docker_socket().await?))) })
    }
}

impl<S> Connection for Io<S> {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Io<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Io<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
