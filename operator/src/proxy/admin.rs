//! Caddy's admin API on a host's loopback, reached through that host's connection (over SSH, a `direct-tcpip`
//! channel per request, like the health probes), and the upstream files in the proxy container (Docker's archive
//! API): the [`Proxy`] trait written once over [`DockerHost`].

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{caddy, Observed, Proxy, ProxyError, Routes};
use crate::hosts::{DockerHost, HostError, HttpRequest, HttpResponse};

/// The bound of one admin call. A config load returns once the new config serves (the old one drains behind).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The proxy container `container` of one host, and its admin API.
pub struct Admin<'a> {
    host: &'a dyn DockerHost,
    port: u16,
    container: &'a str,
}

/// One entry of `GET /reverse_proxy/upstreams`.
#[derive(Deserialize)]
struct UpstreamStatus {
    address: String,
    num_requests: u64,
}

impl<'a> Admin<'a> {
    /// The proxy container `container` on the host `host` reaches, its admin API on `127.0.0.1:port`.
    pub fn new(host: &'a dyn DockerHost, port: u16, container: &'a str) -> Admin<'a> {
        Admin { host, port, container }
    }

    async fn call(
        &self,
        method: &'static str,
        path: &str,
        json: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, ProxyError> {
        let request = HttpRequest { method, path: path.to_string(), json };
        let what = format!("{method} {path}");
        match self.host.http("127.0.0.1", self.port, &request, CALL_TIMEOUT).await {
            Ok(HttpResponse { status: 200, body }) => Ok(body),
            Ok(HttpResponse { status, body }) => Err(ProxyError::Refused {
                what,
                status,
                message: String::from_utf8_lossy(&body[..body.len().min(512)]).trim().to_string(),
            }),
            Err(e) => Err(ProxyError::Unreachable(e)),
        }
    }
}

#[async_trait]
impl Proxy for Admin<'_> {
    async fn observe(&self) -> Result<Option<Observed>, ProxyError> {
        let body = self.call("GET", "/config/", None).await?;
        let config: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| ProxyError::Garbled { what: "GET /config/".into(), message: e.to_string() })?;
        Ok(caddy::read(&config, self.port))
    }

    async fn load(&self, routes: &Routes) -> Result<(), ProxyError> {
        let body = caddy::build(routes, self.port).to_string().into_bytes();
        self.call("POST", "/load", Some(body)).await.map(|_| ())
    }

    async fn upstreams(&self) -> Result<BTreeMap<String, String>, ProxyError> {
        let files = self.host.files(self.container, caddy::UPSTREAMS).await?;
        Ok(files
            .into_iter()
            .map(|(role, address)| (role, String::from_utf8_lossy(&address).trim().to_string()))
            .collect())
    }

    async fn point(&self, role: &str, address: &str) -> Result<(), ProxyError> {
        let file = caddy::upstream_file(role);
        Ok(self.host.put_files(self.container, &[(&file, address.as_bytes())]).await?)
    }

    async fn in_flight(&self, address: &str) -> Result<u64, ProxyError> {
        let body = self.call("GET", "/reverse_proxy/upstreams", None).await?;
        let upstreams: Vec<UpstreamStatus> = serde_json::from_slice(&body).map_err(|e| {
            ProxyError::Garbled { what: "GET /reverse_proxy/upstreams".into(), message: e.to_string() }
        })?;
        Ok(upstreams.iter().filter(|u| u.address == address).map(|u| u.num_requests).sum())
    }
}

impl From<HostError> for ProxyError {
    fn from(e: HostError) -> ProxyError {
        ProxyError::Unreachable(e)
    }
}
