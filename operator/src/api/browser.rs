//! What keeps a web browser from driving the API: cross-site requests, DNS rebinding and form posts are refused.
//!
//! ballastd serves no web page, and its clients (the CLI, scripts, curl) never send `Origin` or fetch metadata;
//! browsers do. So, on every request ([`refuse_browsers`]; but `/up`, which reads and changes nothing):
//! - the `Host` (and the authority of an absolute request target) must name this API, else 421: the connection's
//!   local address, `localhost`/`127.0.0.1`/`[::1]` on a loopback connection, or an `--api-name`, each with the
//!   port ballastd listens on. A DNS-rebinding page reaches the API under its own name and is refused. A request
//!   without `Host` passes this check: browsers always send one;
//! - a request carrying `Origin` is refused (403): browsers send it on cross-origin requests and on writes;
//! - a request whose `Sec-Fetch-Site` is anything but `none` (typed in the address bar) or `same-origin` is
//!   refused (403): a page of another site, or of another port of the same host, asked for it;
//! - POST, PUT and PATCH need `Content-Type: application/json` (415): an HTML form cannot send it, and a page's
//!   script can only after a CORS preflight, which carries `Origin`.
//!
//! The decision is pure ([`check`]); the middleware only reads the request and logs what it refuses.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::extract::{Request, State};
use axum::http::uri::Authority;
use axum::http::{header, HeaderMap, Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::serve::Connection;
use super::AppState;

/// The names a loopback connection may use, besides its address.
const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// A name the API answers to (`--api-name NAME[:PORT]`): a DNS name or an IP address, and the port clients
/// use (default: the port ballastd listens on; another one when a proxy forwards to ballastd).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiName {
    /// Lowercase, without a trailing dot; an IPv6 address in brackets.
    host: String,
    port: Option<u16>,
}

/// Every name the API answers to, and the address it listens on.
#[derive(Clone, Debug)]
pub struct ApiNames {
    listen: SocketAddr,
    names: Vec<ApiName>,
}

/// Why a request was refused; each maps to one [`ApiError`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 421: the `Host` (or the request target's authority) is not a name of this API.
    Host(String),
    /// 403: the request carries `Origin`.
    Origin(String),
    /// 403: `Sec-Fetch-Site` says another site (or another port) sent it.
    FetchSite(String),
    /// 415: a write whose body is not declared `application/json`.
    ContentType(Option<String>),
}

impl FromStr for ApiName {
    type Err = String;

    fn from_str(text: &str) -> Result<ApiName, String> {
        let usage =
            || format!("{text:?} is not NAME or NAME:PORT (a DNS name or an IP address, IPv6 in brackets)");
        if text.contains(['@', '/', '?', '#']) || text.is_empty() {
            return Err(usage());
        }
        let authority = Authority::from_str(text).map_err(|_| usage())?;
        let host = normalize(authority.host());
        let valid = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            inner.parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            !host.is_empty()
                && host.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        };
        if !valid {
            return Err(usage());
        }
        let port = match authority.as_str()[authority.host().len()..].strip_prefix(':') {
            None => None,
            Some(port) => match port.parse::<u16>() {
                Ok(port) if port > 0 => Some(port),
                _ => return Err(format!("{text:?}: the port must be a number from 1 to 65535")),
            },
        };
        Ok(ApiName { host, port })
    }
}

impl std::fmt::Display for ApiName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

impl ApiNames {
    /// The API listening on `listen` (its bound address: the real port, not 0) under `names` besides its
    /// addresses.
    pub fn new(listen: SocketAddr, names: Vec<ApiName>) -> ApiNames {
        ApiNames { listen, names }
    }

    /// Whether `authority` (a `Host` value) names this API, for a connection whose local address is `local`
    /// (`None`: not known, the listen address stands for it).
    pub fn allows(&self, authority: &str, local: Option<SocketAddr>) -> bool {
        let Ok(parsed) = Authority::from_str(authority) else { return false };
        if authority.contains('@') {
            return false;
        }
        let host = normalize(parsed.host());
        let port = parsed.port_u16();
        let local = local.unwrap_or(self.listen);
        let local_ip = local.ip().to_canonical();
        // A `Host` without a port: the client used its scheme's default port (80 or 443).
        let on = |expected: u16| port.map_or(expected == 80 || expected == 443, |p| p == expected);
        if host == ip_name(local_ip) && on(local.port()) {
            return true;
        }
        if local_ip.is_loopback() && LOOPBACK_NAMES.contains(&host.as_str()) && on(local.port()) {
            return true;
        }
        // A name may be reached through a proxy on 443: without a port it matches whatever its port.
        self.names
            .iter()
            .any(|name| host == name.host && port.is_none_or(|p| p == name.port.unwrap_or(local.port())))
    }
}

/// The decision: `Ok` when the request may go on.
pub fn check(
    names: &ApiNames,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    local: Option<SocketAddr>,
) -> Result<(), Refusal> {
    let hosts = headers.get_all(header::HOST).iter().map(|v| v.to_str().unwrap_or("\u{fffd}").to_string());
    let target = uri.authority().map(|a| a.as_str().to_string());
    for authority in hosts.chain(target) {
        if !names.allows(&authority, local) {
            return Err(Refusal::Host(authority));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        return Err(Refusal::Origin(shown(origin.as_bytes())));
    }
    for site in headers.get_all("sec-fetch-site") {
        if !matches!(site.as_bytes(), b"none" | b"same-origin") {
            return Err(Refusal::FetchSite(shown(site.as_bytes())));
        }
    }
    if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        let declared = headers.get(header::CONTENT_TYPE).map(|v| shown(v.as_bytes()));
        let json = declared.as_deref().is_some_and(|value| {
            let media = value.split(';').next().unwrap_or("").trim();
            media.eq_ignore_ascii_case("application/json")
        });
        if !json || headers.get_all(header::CONTENT_TYPE).iter().count() > 1 {
            return Err(Refusal::ContentType(declared));
        }
    }
    Ok(())
}

/// Middleware: refuses what [`check`] refuses, with a log line saying why.
pub async fn refuse_browsers(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.uri().path() == "/up" {
        return next.run(request).await;
    }
    let connection = request.extensions().get::<Connection>().copied();
    let local = connection.map(|c| c.local);
    let Err(refusal) = check(&state.names, request.method(), request.uri(), request.headers(), local) else {
        return next.run(request).await;
    };
    let remote = connection.map(|c| c.remote.to_string()).unwrap_or_default();
    let error = ApiError::from(refusal);
    tracing::warn!(
        method = %request.method(),
        path = %request.uri().path(),
        %remote,
        status = error.status().as_u16(),
        reason = %error,
        "request refused"
    );
    error.into_response()
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> ApiError {
        match refusal {
            Refusal::Host(host) => ApiError::Misdirected(format!(
                "Host {host:?} is not a name of this API: use its listen address, a loopback name on a loopback \
                 address, or a name given to ballastd with --api-name"
            )),
            Refusal::Origin(origin) => ApiError::Forbidden(format!(
                "requests sent by web pages are refused (Origin {origin:?}): the API is for the ballast CLI and \
                 scripts"
            )),
            Refusal::FetchSite(site) => ApiError::Forbidden(format!(
                "requests sent by web pages are refused (Sec-Fetch-Site {site:?}): the API is for the ballast CLI \
                 and scripts"
            )),
            Refusal::ContentType(declared) => ApiError::UnsupportedMediaType(match declared {
                Some(value) => format!("a write needs Content-Type: application/json, not {value:?}"),
                None => "a write needs Content-Type: application/json".to_string(),
            }),
        }
    }
}

/// Lowercase, without the trailing dot of a fully qualified name.
fn normalize(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn ip_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// A header value for a message or a log: text, at most 100 characters.
fn shown(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).chars().take(100).collect()
}

#[cfg(test)]
mod tests;
