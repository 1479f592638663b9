//! HTTP/1.1 by hand over a TCP socket: requests exactly as written (any `Host`, any header, half of one), for
//! tests of what ballastd accepts and refuses on the wire.

use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one exchange may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// An answer read to the connection's end.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// The head (status line and headers) as sent.
    pub head: String,
    pub body: String,
}

/// `host:port` of an `http://host:port` or `https://host:port` base URL.
pub fn address(url: &str) -> &str {
    url.trim_start_matches("http://").trim_start_matches("https://").trim_end_matches('/')
}

/// Sends `request` (written whole, `Connection: close` added to its head) to `address` and reads the answer
/// until the server closes the connection.
pub async fn exchange(address: &str, request: &str) -> anyhow::Result<Answer> {
    let (head, body) = request.split_once("\r\n\r\n").unwrap_or((request, ""));
    let request = format!("{head}\r\nConnection: close\r\n\r\n{body}");
    let read = async {
        let mut stream =
            TcpStream::connect(address).await.with_context(|| format!("connecting to {address}"))?;
        stream.write_all(request.as_bytes()).await.context("sending the request")?;
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).await.context("reading the answer")?;
        anyhow::Ok(bytes)
    };
    let bytes = tokio::time::timeout(EXCHANGE_TIMEOUT, read).await.context("no answer in time")??;
    parse(&String::from_utf8_lossy(&bytes))
}

/// A request with a JSON body: its `Content-Type` is `content_type`, its `Content-Length` the body's.
pub fn with_body(
    method: &str,
    path: &str,
    host: &str,
    content_type: &str,
    extra: &str,
    body: &str,
) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
}

fn parse(text: &str) -> anyhow::Result<Answer> {
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("not an HTTP answer: {text:?}");
    };
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    Ok(Answer { status, head: head.to_string(), body: body.to_string() })
}
