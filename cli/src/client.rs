//! The HTTP client of ballastd's `/api/v1/`: JSON in and out, bearer token, errors turned into [`CliError`]s.
//!
//! `https://` servers are verified with rustls: against the CA certificates of `--ca` only when it is given,
//! else against the system's roots. No OpenSSL.

use std::path::Path;
use std::time::Duration;

use ballast_specs::wire::{ApiError, ErrorBody};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::CliError;

/// The largest request body ballastd reads (its `BODY_LIMIT`).
pub const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// Talks to one ballastd.
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    /// For answers that last as long as they need (followed logs): no overall timeout.
    streaming: reqwest::Client,
}

/// A failed call, before it becomes a [`CliError`]: callers branch on `Api` (a conflict is retried, a 404 may
/// mean "new").
#[derive(Debug)]
pub enum ClientError {
    /// No HTTP answer at all.
    Unreachable { server: String, reason: String },
    /// The TLS handshake failed: the server's certificate is not trusted, or it does not speak TLS.
    Tls { server: String, reason: String },
    /// ballastd answered with an error body.
    Api { status: StatusCode, error: ApiError },
    /// ballastd answered something this CLI does not understand.
    Protocol(String),
}

impl Client {
    /// A client of `server` (`http://` or `https://`); `ca`: the CA certificates (PEM) an `https://` server's
    /// certificate must chain to, instead of the system's roots.
    pub fn new(server: &str, token: Option<String>, ca: Option<&Path>) -> Result<Client, CliError> {
        let base = server.trim_end_matches('/').to_string();
        let https = base.starts_with("https://");
        if !https && !base.starts_with("http://") {
            return Err(CliError::Failed(format!(
                "--server {server:?} must be an http:// or https:// URL (for example http://127.0.0.1:7373)"
            )));
        }
        let roots = match ca {
            Some(path) if https => Some(read_ca(path)?),
            _ => None,
        };
        let builder = || {
            let builder = reqwest::Client::builder().no_proxy().connect_timeout(Duration::from_secs(5));
            match &roots {
                Some(roots) => builder.tls_certs_only(roots.iter().cloned()),
                None => builder,
            }
        };
        let failed = |err: reqwest::Error| CliError::Failed(format!("cannot set up the HTTP client: {err}"));
        let http = builder().timeout(Duration::from_secs(60)).build().map_err(failed)?;
        let streaming = builder().build().map_err(failed)?;
        Ok(Client { base, token: token.filter(|t| !t.is_empty()), http, streaming })
    }

    /// `POST` whose answer may take up to `timeout` (a command run on a host).
    pub async fn post_slow<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let request = self.request(&self.http, Method::POST, path, Some(body))?.timeout(timeout);
        let bytes = check(self.execute(request).await?).await?;
        decode(&bytes)
    }

    /// `GET` of a stream: the answer once its status is a success, its body still to read (as long as it lasts).
    pub async fn stream(&self, path: &str) -> Result<reqwest::Response, ClientError> {
        let request = self.request(&self.streaming, Method::GET, path, None::<&()>)?;
        let response = self.execute(request).await?;
        if response.status().is_success() {
            return Ok(response);
        }
        match check(response).await {
            Err(err) => Err(err),
            Ok(_) => Err(ClientError::Protocol("ballastd changed its answer while sending it".to_string())),
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None::<&()>).await
    }

    /// `GET`, with 404 as `None`.
    pub async fn get_optional<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, ClientError> {
        match self.get(path).await {
            Ok(value) => Ok(Some(value)),
            Err(ClientError::Api { status: StatusCode::NOT_FOUND, .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<(), ClientError> {
        let response = self.send(Method::DELETE, path, None::<&()>).await?;
        check(response).await.map(drop)
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let response = self.send(method, path, body).await?;
        let bytes = check(response).await?;
        decode(&bytes)
    }

    async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<reqwest::Response, ClientError> {
        let request = self.request(&self.http, method, path, body)?;
        self.execute(request).await
    }

    fn request<B: Serialize>(
        &self,
        http: &reqwest::Client,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<reqwest::RequestBuilder, ClientError> {
        let mut request = http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            let bytes = serde_json::to_vec(body)
                .map_err(|err| ClientError::Protocol(format!("cannot encode the request: {err}")))?;
            if bytes.len() > BODY_LIMIT {
                return Err(ClientError::Api {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    error: ApiError {
                        code: "too_large".to_string(),
                        message: format!(
                            "the request is {}, more than ballastd's limit of {}",
                            mebibytes(bytes.len()),
                            mebibytes(BODY_LIMIT)
                        ),
                        problems: Vec::new(),
                    },
                });
            }
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(bytes);
        }
        Ok(request)
    }

    async fn execute(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        request.send().await.map_err(|err| match tls_failure(&err) {
            Some(reason) => ClientError::Tls { server: self.base.clone(), reason },
            None => ClientError::Unreachable { server: self.base.clone(), reason: reason(&err) },
        })
    }
}

/// The CA certificates of `--ca`: a PEM file of one or more certificates.
fn read_ca(path: &Path) -> Result<Vec<reqwest::Certificate>, CliError> {
    let shown = path.display();
    let pem =
        std::fs::read(path).map_err(|err| CliError::Failed(format!("cannot read --ca {shown}: {err}")))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|err| CliError::Failed(format!("--ca {shown} is not a PEM file of certificates: {err}")))?;
    if certs.is_empty() {
        return Err(CliError::Failed(format!("--ca {shown} holds no certificate (PEM `CERTIFICATE`)")));
    }
    Ok(certs)
}

/// What went wrong in a TLS handshake, for people; `None` when `err` is no TLS failure.
fn tls_failure(err: &reqwest::Error) -> Option<String> {
    use rustls::CertificateError as Cert;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        // An `io::Error`'s `source()` skips the error it wraps: go through that one.
        let wrapped = cause.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref());
        source = match wrapped {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => cause.source(),
        };
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return Some(match tls {
                rustls::Error::InvalidCertificate(Cert::UnknownIssuer) => {
                    "its certificate is not signed by a trusted authority: give the CA certificate that signed it \
                     with --ca or BALLAST_CA"
                        .to_string()
                }
                rustls::Error::InvalidCertificate(Cert::NotValidForName | Cert::NotValidForNameContext { .. }) => {
                    "its certificate is not valid for the name in --server".to_string()
                }
                rustls::Error::InvalidCertificate(Cert::Expired | Cert::ExpiredContext { .. }) => {
                    "its certificate has expired".to_string()
                }
                rustls::Error::InvalidCertificate(other) => format!("its certificate is refused: {other:?}"),
                rustls::Error::InvalidMessage(_) => {
                    "the TLS handshake failed: does it serve https:// (ballastd --tls-cert)?".to_string()
                }
                other => format!("the TLS handshake failed: {other}"),
            });
        }
    }
    None
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(bytes)
        .map_err(|err| ClientError::Protocol(format!("ballastd sent an answer this CLI cannot read: {err}")))
}

/// Sizes as people read them: `4 MiB`, `5.2 MiB`.
pub fn mebibytes(bytes: usize) -> String {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    if mib.fract() == 0.0 {
        format!("{mib:.0} MiB")
    } else {
        format!("{mib:.1} MiB")
    }
}

impl From<ClientError> for CliError {
    fn from(err: ClientError) -> CliError {
        match err {
            ClientError::Unreachable { server, reason } => CliError::Server(format!(
                "cannot reach ballastd at {server}: {reason} (is it running? set --server or BALLAST_SERVER)"
            )),
            ClientError::Tls { server, reason } => {
                CliError::Server(format!("cannot trust ballastd at {server}: {reason}"))
            }
            ClientError::Protocol(message) => CliError::Server(message),
            ClientError::Api { status, error } => api_error(status, error),
        }
    }
}

fn api_error(status: StatusCode, error: ApiError) -> CliError {
    let message = error.message;
    match status {
        StatusCode::UNAUTHORIZED => {
            CliError::Failed(format!("unauthorized: {message} (set --token or BALLAST_TOKEN)"))
        }
        StatusCode::FORBIDDEN => CliError::Failed(format!("forbidden: {message}")),
        StatusCode::CONFLICT => CliError::Failed(format!("conflict: {message}")),
        StatusCode::UNPROCESSABLE_ENTITY => CliError::Invalid { problems: error.problems, summary: message },
        StatusCode::SERVICE_UNAVAILABLE if error.code != "unavailable" => CliError::Server(message),
        StatusCode::SERVICE_UNAVAILABLE => {
            let detail = message.strip_prefix("the store is unavailable: ").unwrap_or(&message);
            CliError::Server(format!("the store (etcd) is unavailable: {detail}"))
        }
        StatusCode::BAD_GATEWAY if error.code == "host_failed" => CliError::Server(message),
        StatusCode::NOT_IMPLEMENTED => CliError::Server(format!("not supported by this ballastd: {message}")),
        s if s.is_server_error() => CliError::Server(format!("ballastd failed ({}): {message}", s.as_u16())),
        _ => CliError::Failed(message),
    }
}

/// The body of a 2xx answer, or the error ballastd sent.
async fn check(response: reqwest::Response) -> Result<Vec<u8>, ClientError> {
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|err| ClientError::Protocol(format!("cannot read ballastd's answer: {}", reason(&err))))?;
    if status.is_success() {
        return Ok(bytes.to_vec());
    }
    match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(body) => Err(ClientError::Api { status, error: body.error }),
        Err(_) => {
            let text = String::from_utf8_lossy(&bytes);
            let text = text.trim();
            let message = if text.is_empty() || text.len() > 200 {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {text}")
            };
            Err(ClientError::Api {
                status,
                error: ApiError { code: "http".to_string(), message, problems: Vec::new() },
            })
        }
    }
}

/// The innermost cause of a transport error, in a few words.
pub fn reason(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        return "no answer in time".to_string();
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut innermost = err.to_string();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return "connection refused".to_string(),
                std::io::ErrorKind::ConnectionReset => return "connection reset".to_string(),
                _ => {}
            }
        }
        innermost = cause.to_string();
        source = cause.source();
    }
    innermost
}

/// A path segment or query value, percent-encoded.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_segments() {
        assert_eq!(encode("web_replica"), "web_replica");
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn sizes() {
        assert_eq!(mebibytes(4 * 1024 * 1024), "4 MiB");
        assert_eq!(mebibytes(5 * 1000 * 1000), "4.8 MiB");
    }
}
