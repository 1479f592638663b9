//! A Docker engine on this machine, reached through its unix socket (`unix://` hosts).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use futures::stream::BoxStream;
use hyper::Uri;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpStream, UnixStream};

use super::convert::authority;
use super::inspect_cache::InspectCache;
use super::{
    docker, Container, ContainerConfig, DockerHost, ExecOutput, HostError, HostEvent, LogLine, RegistryAuth,
};

/// The engine behind a local socket. Every HTTP connection is a new socket connection, pooled by hyper;
/// nothing is dialled until the first call, so a missing socket shows as `Unreachable` on each call.
pub struct LocalHost {
    docker: Docker,
    /// Inspects reused while this host's events stream is open.
    inspected: InspectCache,
}

/// Opens one socket connection per pooled HTTP connection.
#[derive(Clone)]
struct Socket {
    path: Arc<PathBuf>,
}

impl LocalHost {
    pub fn new(socket: impl AsRef<Path>) -> LocalHost {
        let socket = Socket { path: Arc::new(socket.as_ref().to_path_buf()) };
        LocalHost { docker: docker::client(socket), inspected: InspectCache::default() }
    }
}

#[async_trait]
impl DockerHost for LocalHost {
    async fn list(&self) -> Result<Vec<Container>, HostError> {
        docker::list(&self.docker, &self.inspected).await
    }

    async fn inspect(&self, id: &str) -> Result<Option<Container>, HostError> {
        docker::inspect(&self.docker, id).await
    }

    async fn image_present(&self, image: &str) -> Result<bool, HostError> {
        docker::image_present(&self.docker, image).await
    }

    async fn pull(&self, image: &str, auth: Option<&RegistryAuth>) -> Result<(), HostError> {
        docker::pull(&self.docker, image, auth).await
    }

    async fn create(&self, config: &ContainerConfig) -> Result<String, HostError> {
        docker::create(&self.docker, config).await
    }

    async fn start(&self, id: &str) -> Result<(), HostError> {
        docker::start(&self.docker, id).await
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<(), HostError> {
        docker::stop(&self.docker, id, grace).await
    }

    async fn remove(&self, id: &str) -> Result<(), HostError> {
        docker::remove(&self.docker, id).await
    }

    async fn update_resources(&self, id: &str, nano_cpus: i64, memory: i64) -> Result<(), HostError> {
        docker::update_resources(&self.docker, id, nano_cpus, memory).await
    }

    /// A plain TCP connection from this machine to `ip:port`.
    async fn http_get(&self, ip: &str, port: u16, path: &str, timeout: Duration) -> Result<u16, HostError> {
        let authority = authority(ip, port);
        let check = async {
            let stream = TcpStream::connect((ip, port))
                .await
                .map_err(|e| HostError::Http(format!("connect to {authority}: {e}")))?;
            // Best effort: only latency depends on it.
            let _ = stream.set_nodelay(true);
            docker::http_status(stream, &authority, path).await
        };
        tokio::time::timeout(timeout, check).await.unwrap_or(Err(HostError::Timeout(timeout)))
    }

    async fn events(&self) -> Result<BoxStream<'static, HostEvent>, HostError> {
        docker::events(&self.docker, &self.inspected).await
    }

    async fn logs(
        &self,
        id: &str,
        follow: bool,
        tail: Option<u64>,
    ) -> Result<BoxStream<'static, Result<LogLine, HostError>>, HostError> {
        docker::logs(&self.docker, id, follow, tail).await
    }

    async fn exec(&self, id: &str, cmd: &[String]) -> Result<ExecOutput, HostError> {
        docker::exec(&self.docker, id, cmd).await
    }
}

impl tower::Service<Uri> for Socket {
    type Response = TokioIo<UnixStream>;
    type Error = HostError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, HostError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), HostError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let path = self.path.clone();
        Box::pin(async move {
            let stream = UnixStream::connect(path.as_path())
                .await
                .map_err(|e| HostError::Unreachable(format!("docker socket {}: {e}", path.display())))?;
            Ok(TokioIo::new(stream))
        })
    }
}
