//! A web page cannot drive the real `ballastd` (no token file, loopback: the case a page in the operator's own
//! browser could reach): requests shaped as a page's are sent byte for byte over TCP and refused, nothing is
//! stored, and the CLI still works.
//!
//! - a form or `fetch` with a "simple" content type (`text/plain`, form encodings) posting JSON: 415;
//! - a request carrying `Origin` (what a page's cross-origin request, or any page's POST, carries): 403;
//! - `Sec-Fetch-Site: cross-site` / `same-site` (a link, an image, a script tag of another site): 403;
//! - a foreign `Host` (a DNS-rebinding page reaching 127.0.0.1 under its own name): 421, on the streaming
//!   routes (logs, exec) too. `GET /up` answers whatever the `Host`: it reads and changes nothing.

use ballast_specs::wire::{ApplyRequest, ErrorBody};
use ballast_specs::{parse_documents, Object};
use ballast_tests::ballastd::{datalake_dir, Stack};
use ballast_tests::raw_http::{address, exchange, with_body, Answer};

/// The seed deployment as an apply request's JSON.
fn datalake_apply() -> String {
    let mut objects: Vec<Object> = Vec::new();
    for file in ["hosts.yaml", "roles.yaml"] {
        let text = std::fs::read_to_string(datalake_dir().join(file)).expect("example file");
        objects.extend(parse_documents(&text, Some(file)).expect("the example parses"));
    }
    serde_json::to_string(&ApplyRequest { objects, dry_run: false }).expect("json")
}

fn code(answer: &Answer) -> String {
    let body: ErrorBody =
        serde_json::from_str(&answer.body).unwrap_or_else(|e| panic!("not an error body ({e}): {answer:?}"));
    body.error.code
}

#[tokio::test]
async fn requests_shaped_as_a_web_pages_are_refused_and_change_nothing() {
    let stack = Stack::start().await.expect("stack");
    let url = stack.ballastd.url().to_string();
    let at = address(&url);
    let apply = datalake_apply();
    let send = |request: String| async move { exchange(at, &request).await.expect("exchange") };

    // A form post (text/plain carries JSON just as well) and a urlencoded one: 415, nothing stored.
    for content_type in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
    {
        let answer = send(with_body("POST", "/api/v1/apply", at, content_type, "", &apply)).await;
        assert_eq!((answer.status, code(&answer).as_str()), (415, "unsupported_media_type"), "{answer:?}");
        assert!(answer.body.contains("a write needs Content-Type: application/json"), "{answer:?}");
    }
    // A page's script with the right content type sends Origin: 403.
    let origin = "Origin: http://evil.example\r\n";
    let answer = send(with_body("POST", "/api/v1/apply", at, "application/json", origin, &apply)).await;
    assert_eq!((answer.status, code(&answer).as_str()), (403, "forbidden"), "{answer:?}");
    assert!(answer.body.contains("requests sent by web pages are refused"), "{answer:?}");
    // A DNS-rebinding page: its own name as Host.
    let rebound = "evil.example:7373";
    let answer = send(with_body("POST", "/api/v1/apply", rebound, "application/json", "", &apply)).await;
    assert_eq!((answer.status, code(&answer).as_str()), (421, "misdirected"), "{answer:?}");
    assert!(stack.roles().expect("roles").is_empty(), "a refused apply stored something");

    // Stored through the CLI, then reads and writes shaped as a page's are refused too.
    let applied = stack.ballast(&["apply", "-f", &datalake_dir().display().to_string()]);
    assert_eq!(applied.status.code(), Some(0), "{}", String::from_utf8_lossy(&applied.stderr));
    let reads = [
        (format!("GET /api/v1/roles HTTP/1.1\r\nHost: {rebound}\r\n\r\n"), 421),
        (format!("GET /api/v1/roles/web/logs?follow=true HTTP/1.1\r\nHost: {rebound}\r\n\r\n"), 421),
        (format!("GET /api/v1/roles HTTP/1.1\r\nHost: {at}\r\nSec-Fetch-Site: cross-site\r\n\r\n"), 403),
        (format!("GET /api/v1/roles/web/logs HTTP/1.1\r\nHost: {at}\r\nSec-Fetch-Site: same-site\r\n\r\n"), 403),
        (format!("GET /api/v1/status HTTP/1.1\r\nHost: {at}\r\nOrigin: null\r\n\r\n"), 403),
        (format!("OPTIONS /api/v1/apply HTTP/1.1\r\nHost: {at}\r\n{origin}Access-Control-Request-Method: POST\r\n\r\n"), 403),
        (with_body("POST", "/api/v1/roles/web/exec", at, "application/json", origin, "{\"command\":[\"id\"]}"), 403),
        (with_body("POST", "/api/v1/roles/web/exec", at, "text/plain", "", "{\"command\":[\"id\"]}"), 415),
        (with_body("POST", "/api/v1/roles/job/pause", at, "text/plain", "", ""), 415),
        (with_body("PUT", "/api/v1/roles/job", at, "text/plain", "", "{}"), 415),
        (format!("DELETE /api/v1/roles/job HTTP/1.1\r\nHost: {at}\r\n{origin}\r\n"), 403),
        (format!("DELETE /api/v1/roles/job HTTP/1.1\r\nHost: {rebound}\r\n\r\n"), 421),
    ];
    for (request, status) in reads {
        let answer = send(request.clone()).await;
        assert_eq!(answer.status, status, "{request:?} → {answer:?}");
    }
    let roles = stack.roles().expect("roles");
    assert_eq!(roles.len(), 3, "a refused request changed the roles");
    assert!(roles.iter().all(|r| !r.control.paused), "a refused pause paused a role");

    // What the CLI and scripts send passes: the right Host, JSON, no Origin.
    let answer = send(format!("GET /api/v1/roles/job HTTP/1.1\r\nHost: {at}\r\n\r\n")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let local = at.replace("127.0.0.1", "localhost");
    let answer = send(with_body("POST", "/api/v1/roles/job/pause", &local, "application/json", "", "")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let answer = send(format!("GET /up HTTP/1.1\r\nHost: {rebound}\r\n\r\n")).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "ok"), "{answer:?}");
    let status = stack.ballast(&["get", "roles", "job"]);
    assert_eq!(status.status.code(), Some(0), "{}", String::from_utf8_lossy(&status.stderr));

    // Each refusal is logged with its reason.
    let log = stack.ballastd.log();
    assert!(
        log.contains("request refused")
            && log.contains("Host \"evil.example:7373\" is not a name of this API"),
        "{log}"
    );
}

#[tokio::test]
async fn api_names_let_other_hosts_through() {
    let etcd = ballast_tests::TestEtcd::start().await.expect("etcd");
    let options = ballast_tests::ballastd::Options {
        etcd: etcd.endpoints(),
        args: ["--no-reconcile", "--api-name", "ballast.internal", "--api-name", "api.example.com:443"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    };
    let ballastd = ballast_tests::ballastd::Ballastd::start_with(options).await.expect("ballastd");
    let url = ballastd.url().to_string();
    let at = address(&url);
    let port = at.rsplit(':').next().expect("port");
    for (host, status) in [
        (format!("ballast.internal:{port}"), 200),
        ("Ballast.Internal".to_string(), 200),
        ("api.example.com".to_string(), 200),
        ("api.example.com:443".to_string(), 200),
        (format!("api.example.com:{port}"), 421),
        (format!("other.internal:{port}"), 421),
    ] {
        let answer =
            exchange(at, &format!("GET /api/v1/roles HTTP/1.1\r\nHost: {host}\r\n\r\n")).await.expect("get");
        assert_eq!(answer.status, status, "Host {host}: {answer:?}");
    }
}
