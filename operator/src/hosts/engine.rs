//! `DockerHost` written once over a [`Tunnel`]: the Docker calls and health probes of one host, whatever the
//! way to it (a local socket, or an SSH session).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bytes::Bytes;
use futures::stream::BoxStream;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::convert::{authority, parse_status_line};
use super::inspect_cache::InspectCache;
use super::tunnel::{DockerSocket, Tunnel};
use super::{
    docker, Container, ContainerConfig, DockerHost, ExecOutput, HostError, HostEvent, HttpRequest,
    HttpResponse, LogLine, RegistryAuth, HTTP_BODY_LIMIT,
};

/// One host's Docker engine, reached through `T`. Cheap to create: nothing is dialled until the first call.
///
/// Every call first asks the tunnel whether it is ready, so a host that cannot be reached fails at once with
/// the reason (for SSH: the dial's error) rather than with bollard's view of a broken connection.
pub struct Engine<T> {
    tunnel: Arc<T>,
    docker: Docker,
    /// Inspects reused while this host's events stream is open.
    inspected: InspectCache,
}

impl<T: Tunnel> Engine<T> {
    pub(super) fn through(tunnel: T) -> Engine<T> {
        let tunnel = Arc::new(tunnel);
        let docker = docker::client(DockerSocket(tunnel.clone()));
        Engine { tunnel, docker, inspected: InspectCache::default() }
    }
}

#[async_trait]
impl<T: Tunnel> DockerHost for Engine<T> {
    async fn list(&self) -> Result<Vec<Container>, HostError> {
        self.tunnel.ready().await?;
        docker::list(&self.docker, &self.inspected).await
    }

    async fn inspect(&self, id: &str) -> Result<Option<Container>, HostError> {
        self.tunnel.ready().await?;
        docker::inspect(&self.docker, id).await
    }

    async fn image_present(&self, image: &str) -> Result<bool, HostError> {
        self.tunnel.ready().await?;
        docker::image_present(&self.docker, image).await
    }

    async fn pull(&self, image: &str, auth: Option<&RegistryAuth>) -> Result<(), HostError> {
        self.tunnel.ready().await?;
        docker::pull(&self.docker, image, auth).await
    }

    async fn create(&self, config: &ContainerConfig) -> Result<String, HostError> {
        self.tunnel.ready().await?;
        docker::create(&self.docker, config).await
    }

    async fn start(&self, id: &str) -> Result<(), HostError> {
        self.tunnel.ready().await?;
        docker::start(&self.docker, id).await
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<(), HostError> {
        self.tunnel.ready().await?;
        docker::stop(&self.docker, id, grace).await
    }

    async fn remove(&self, id: &str) -> Result<(), HostError> {
        self.tunnel.ready().await?;
        docker::remove(&self.docker, id).await
    }

    async fn update_resources(&self, id: &str, nano_cpus: i64, memory: i64) -> Result<(), HostError> {
        self.tunnel.ready().await?;
        docker::update_resources(&self.docker, id, nano_cpus, memory).await
    }

    /// Through a TCP stream of the tunnel: the host connects to `ip:port`. The timeout starts once the
    /// tunnel is ready.
    async fn http_get(&self, ip: &str, port: u16, path: &str, timeout: Duration) -> Result<u16, HostError> {
        self.tunnel.ready().await?;
        let authority = authority(ip, port);
        let check = async {
            let stream = self.tunnel.tcp(ip, port).await?;
            http_status(stream, &authority, path).await
        };
        tokio::time::timeout(timeout, check).await.unwrap_or(Err(HostError::Timeout(timeout)))
    }

    /// Through a TCP stream of the tunnel, one request per stream. The timeout starts once the tunnel is ready.
    async fn http(
        &self,
        ip: &str,
        port: u16,
        request: &HttpRequest,
        timeout: Duration,
    ) -> Result<HttpResponse, HostError> {
        self.tunnel.ready().await?;
        let authority = authority(ip, port);
        let exchange = async {
            let stream = self.tunnel.tcp(ip, port).await?;
            http_exchange(stream, &authority, request).await
        };
        tokio::time::timeout(timeout, exchange).await.unwrap_or(Err(HostError::Timeout(timeout)))
    }

    async fn ensure_network(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<(), HostError> {
        self.tunnel.ready().await?;
        docker::ensure_network(&self.docker, name, labels).await
    }

    async fn put_files(&self, id: &str, files: &[(&str, &[u8])]) -> Result<(), HostError> {
        self.tunnel.ready().await?;
        docker::put_files(&self.docker, id, files).await
    }

    async fn files(&self, id: &str, dir: &str) -> Result<BTreeMap<String, Vec<u8>>, HostError> {
        self.tunnel.ready().await?;
        docker::files(&self.docker, id, dir).await
    }

    async fn events(&self) -> Result<BoxStream<'static, HostEvent>, HostError> {
        self.tunnel.ready().await?;
        docker::events(&self.docker, &self.inspected).await
    }

    /// A follow holds its own connection (over SSH: a channel), like the events stream.
    async fn logs(
        &self,
        id: &str,
        follow: bool,
        tail: Option<u64>,
    ) -> Result<BoxStream<'static, Result<LogLine, HostError>>, HostError> {
        self.tunnel.ready().await?;
        docker::logs(&self.docker, id, follow, tail).await
    }

    /// The exec's attach is an upgraded HTTP connection: a connection (over SSH: a channel) of its own until
    /// the command ends.
    async fn exec(&self, id: &str, cmd: &[String]) -> Result<ExecOutput, HostError> {
        self.tunnel.ready().await?;
        docker::exec(&self.docker, id, cmd).await
    }
}

/// One HTTP/1.1 request over an open byte stream to `authority`; the answer's body is read up to
/// [`HTTP_BODY_LIMIT`]. `HostError::Http` when the peer does not answer HTTP.
async fn http_exchange<S>(
    stream: S,
    authority: &str,
    request: &HttpRequest,
) -> Result<HttpResponse, HostError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let what = format!("{} http://{authority}{}", request.method, request.path);
    let failed = |e: &dyn std::fmt::Display| HostError::Http(format!("{what}: {e}"));
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| failed(&e))?;
    let body = Full::new(Bytes::from(request.json.clone().unwrap_or_default()));
    let mut builder = hyper::Request::builder()
        .method(request.method)
        .uri(&request.path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::USER_AGENT, "ballast");
    if request.json.is_some() {
        builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let outgoing = builder.body(body).map_err(|e| failed(&e))?;
    let exchange = async {
        let response = sender.send_request(outgoing).await.map_err(|e| failed(&e))?;
        let status = response.status().as_u16();
        let collected =
            Limited::new(response.into_body(), HTTP_BODY_LIMIT).collect().await.map_err(|e| failed(&*e))?;
        Ok(HttpResponse { status, body: collected.to_bytes().to_vec() })
    };
    // The connection is driven here, beside the exchange, until the answer is read: the stream need not
    // outlive this call. A connection that ends first leaves what it read to the exchange, or fails it.
    let mut connection = std::pin::pin!(connection);
    let mut exchange = std::pin::pin!(exchange);
    let mut connected = true;
    loop {
        tokio::select! {
            result = &mut exchange => return result,
            _ = &mut connection, if connected => connected = false,
        }
    }
}

/// `GET path` over an open byte stream to `authority` (`ip:port`); returns the status code.
/// `HostError::Http` when the peer does not answer HTTP.
async fn http_status<S>(mut stream: S, authority: &str, path: &str) -> Result<u16, HostError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: ballast\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    let failed = |e: std::io::Error| HostError::Http(format!("GET http://{authority}{path}: {e}"));
    stream.write_all(request.as_bytes()).await.map_err(failed)?;
    stream.flush().await.map_err(failed)?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        let n = stream.read(&mut buf).await.map_err(failed)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    parse_status_line(&head).ok_or_else(|| {
        let answer = String::from_utf8_lossy(&head[..head.len().min(64)]).into_owned();
        HostError::Http(format!("GET http://{authority}{path}: no http answer (got {answer:?})"))
    })
}
