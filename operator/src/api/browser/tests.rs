//! The browser checks as data: each case is a request (method, target, headers) on a connection to a local
//! address, and the line says whether it passes or why it is refused.
//!
//! Fixture: `METHOD TARGET [| Name: value]... @LOCAL`, LOCAL being the connection's local address; each test
//! gives the listen address, and the API has `--api-name ballast.example.com --api-name proxy.example.com:443`.

use std::net::SocketAddr;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use expect_test::{expect, Expect};

use super::{check, ApiName, ApiNames};

fn names(listen: &str) -> ApiNames {
    let names = ["ballast.example.com", "proxy.example.com:443"].map(|n| n.parse::<ApiName>().expect("name"));
    ApiNames::new(listen.parse().expect("listen"), names.to_vec())
}

/// Runs every case against the API listening on `listen`; one line each.
fn run(listen: &str, cases: &str) -> String {
    let names = names(listen);
    let mut out = String::new();
    for case in cases.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (request, local) = case.rsplit_once(" @").expect("a case ends with @LOCAL");
        let local: SocketAddr = local.parse().expect("local address");
        let mut parts = request.split(" | ");
        let mut first = parts.next().expect("method and target").split(' ');
        let method: Method = first.next().expect("method").parse().expect("method");
        let uri: Uri = first.next().expect("target").parse().expect("target");
        let mut headers = HeaderMap::new();
        for header in parts {
            let (name, value) = header.split_once(": ").expect("Name: value");
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                HeaderValue::from_str(value).expect("header value"),
            );
        }
        let outcome = match check(&names, &method, &uri, &headers, Some(local)) {
            Ok(()) => "ok".to_string(),
            Err(refusal) => {
                let error = crate::api::ApiError::from(refusal);
                format!("{} {}", error.status().as_u16(), error.code())
            }
        };
        out.push_str(&format!("{case} => {outcome}\n"));
    }
    out
}

fn check_cases(listen: &str, cases: &str, expect: Expect) {
    expect.assert_eq(&run(listen, cases));
}

#[test]
fn hosts_on_a_loopback_listener() {
    check_cases(
        "127.0.0.1:7373",
        "
        GET /api/v1/roles | Host: 127.0.0.1:7373 @127.0.0.1:7373
        GET /api/v1/roles | Host: localhost:7373 @127.0.0.1:7373
        GET /api/v1/roles | Host: LOCALHOST.:7373 @127.0.0.1:7373
        GET /api/v1/roles | Host: [::1]:7373 @127.0.0.1:7373
        GET /api/v1/roles @127.0.0.1:7373
        GET /api/v1/roles | Host: localhost:8080 @127.0.0.1:7373
        GET /api/v1/roles | Host: localhost @127.0.0.1:7373
        GET /api/v1/roles | Host: evil.example:7373 @127.0.0.1:7373
        GET /api/v1/roles | Host: evil.example @127.0.0.1:7373
        GET /api/v1/roles | Host: alice@localhost:7373 @127.0.0.1:7373
        GET /api/v1/roles | Host: localhost:7373 | Host: evil.example:7373 @127.0.0.1:7373
        GET http://evil.example:7373/api/v1/roles | Host: localhost:7373 @127.0.0.1:7373
        GET http://localhost:7373/api/v1/roles | Host: localhost:7373 @127.0.0.1:7373
        ",
        expect![[r#"
            GET /api/v1/roles | Host: 127.0.0.1:7373 @127.0.0.1:7373 => ok
            GET /api/v1/roles | Host: localhost:7373 @127.0.0.1:7373 => ok
            GET /api/v1/roles | Host: LOCALHOST.:7373 @127.0.0.1:7373 => ok
            GET /api/v1/roles | Host: [::1]:7373 @127.0.0.1:7373 => ok
            GET /api/v1/roles @127.0.0.1:7373 => ok
            GET /api/v1/roles | Host: localhost:8080 @127.0.0.1:7373 => 421 misdirected
            GET /api/v1/roles | Host: localhost @127.0.0.1:7373 => 421 misdirected
            GET /api/v1/roles | Host: evil.example:7373 @127.0.0.1:7373 => 421 misdirected
            GET /api/v1/roles | Host: evil.example @127.0.0.1:7373 => 421 misdirected
            GET /api/v1/roles | Host: alice@localhost:7373 @127.0.0.1:7373 => 421 misdirected
            GET /api/v1/roles | Host: localhost:7373 | Host: evil.example:7373 @127.0.0.1:7373 => 421 misdirected
            GET http://evil.example:7373/api/v1/roles | Host: localhost:7373 @127.0.0.1:7373 => 421 misdirected
            GET http://localhost:7373/api/v1/roles | Host: localhost:7373 @127.0.0.1:7373 => ok
        "#]],
    );
}

#[test]
fn hosts_on_every_address() {
    check_cases(
        "0.0.0.0:7373",
        "
        GET /api/v1/roles | Host: 10.0.0.5:7373 @10.0.0.5:7373
        GET /api/v1/roles | Host: 10.0.0.6:7373 @10.0.0.5:7373
        GET /api/v1/roles | Host: localhost:7373 @10.0.0.5:7373
        GET /api/v1/roles | Host: localhost:7373 @127.0.0.1:7373
        GET /api/v1/roles | Host: [fd00::5]:7373 @[fd00::5]:7373
        GET /api/v1/roles | Host: 10.0.0.5:7373 @[::ffff:10.0.0.5]:7373
        GET /api/v1/roles | Host: ballast.example.com:7373 @10.0.0.5:7373
        GET /api/v1/roles | Host: Ballast.Example.Com @10.0.0.5:7373
        GET /api/v1/roles | Host: ballast.example.com:8443 @10.0.0.5:7373
        GET /api/v1/roles | Host: proxy.example.com @127.0.0.1:7373
        GET /api/v1/roles | Host: proxy.example.com:443 @127.0.0.1:7373
        GET /api/v1/roles | Host: proxy.example.com:7373 @127.0.0.1:7373
        GET /api/v1/roles | Host: rebound.attacker.example:7373 @10.0.0.5:7373
        ",
        expect![[r#"
            GET /api/v1/roles | Host: 10.0.0.5:7373 @10.0.0.5:7373 => ok
            GET /api/v1/roles | Host: 10.0.0.6:7373 @10.0.0.5:7373 => 421 misdirected
            GET /api/v1/roles | Host: localhost:7373 @10.0.0.5:7373 => 421 misdirected
            GET /api/v1/roles | Host: localhost:7373 @127.0.0.1:7373 => ok
            GET /api/v1/roles | Host: [fd00::5]:7373 @[fd00::5]:7373 => ok
            GET /api/v1/roles | Host: 10.0.0.5:7373 @[::ffff:10.0.0.5]:7373 => ok
            GET /api/v1/roles | Host: ballast.example.com:7373 @10.0.0.5:7373 => ok
            GET /api/v1/roles | Host: Ballast.Example.Com @10.0.0.5:7373 => ok
            GET /api/v1/roles | Host: ballast.example.com:8443 @10.0.0.5:7373 => 421 misdirected
            GET /api/v1/roles | Host: proxy.example.com @127.0.0.1:7373 => ok
            GET /api/v1/roles | Host: proxy.example.com:443 @127.0.0.1:7373 => ok
            GET /api/v1/roles | Host: proxy.example.com:7373 @127.0.0.1:7373 => 421 misdirected
            GET /api/v1/roles | Host: rebound.attacker.example:7373 @10.0.0.5:7373 => 421 misdirected
        "#]],
    );
}

#[test]
fn pages_and_forms() {
    check_cases(
        "127.0.0.1:7373",
        "
        POST /api/v1/apply | Content-Type: application/json @127.0.0.1:7373
        POST /api/v1/apply | Content-Type: Application/JSON; charset=utf-8 @127.0.0.1:7373
        POST /api/v1/apply | Content-Type: text/plain @127.0.0.1:7373
        POST /api/v1/apply | Content-Type: application/x-www-form-urlencoded @127.0.0.1:7373
        POST /api/v1/apply | Content-Type: multipart/form-data; boundary=x @127.0.0.1:7373
        POST /api/v1/apply | Content-Type: application/jsonp @127.0.0.1:7373
        POST /api/v1/apply | Content-Type: text/plain | Content-Type: application/json @127.0.0.1:7373
        POST /api/v1/roles/web/pause @127.0.0.1:7373
        PUT /api/v1/roles/web | Content-Type: text/plain @127.0.0.1:7373
        DELETE /api/v1/roles/web @127.0.0.1:7373
        GET /api/v1/roles @127.0.0.1:7373
        POST /api/v1/apply | Content-Type: application/json | Origin: http://evil.example @127.0.0.1:7373
        POST /api/v1/apply | Content-Type: application/json | Origin: http://127.0.0.1:7373 @127.0.0.1:7373
        GET /api/v1/roles | Origin: null @127.0.0.1:7373
        OPTIONS /api/v1/apply | Origin: http://evil.example | Access-Control-Request-Method: POST @127.0.0.1:7373
        GET /api/v1/roles | Sec-Fetch-Site: none @127.0.0.1:7373
        GET /api/v1/roles | Sec-Fetch-Site: same-origin @127.0.0.1:7373
        GET /api/v1/roles | Sec-Fetch-Site: same-site @127.0.0.1:7373
        GET /api/v1/roles | Sec-Fetch-Site: cross-site @127.0.0.1:7373
        GET /api/v1/roles/web/logs | Sec-Fetch-Site: cross-site | Sec-Fetch-Mode: no-cors @127.0.0.1:7373
        ",
        expect![[r#"
            POST /api/v1/apply | Content-Type: application/json @127.0.0.1:7373 => ok
            POST /api/v1/apply | Content-Type: Application/JSON; charset=utf-8 @127.0.0.1:7373 => ok
            POST /api/v1/apply | Content-Type: text/plain @127.0.0.1:7373 => 415 unsupported_media_type
            POST /api/v1/apply | Content-Type: application/x-www-form-urlencoded @127.0.0.1:7373 => 415 unsupported_media_type
            POST /api/v1/apply | Content-Type: multipart/form-data; boundary=x @127.0.0.1:7373 => 415 unsupported_media_type
            POST /api/v1/apply | Content-Type: application/jsonp @127.0.0.1:7373 => 415 unsupported_media_type
            POST /api/v1/apply | Content-Type: text/plain | Content-Type: application/json @127.0.0.1:7373 => 415 unsupported_media_type
            POST /api/v1/roles/web/pause @127.0.0.1:7373 => 415 unsupported_media_type
            PUT /api/v1/roles/web | Content-Type: text/plain @127.0.0.1:7373 => 415 unsupported_media_type
            DELETE /api/v1/roles/web @127.0.0.1:7373 => ok
            GET /api/v1/roles @127.0.0.1:7373 => ok
            POST /api/v1/apply | Content-Type: application/json | Origin: http://evil.example @127.0.0.1:7373 => 403 forbidden
            POST /api/v1/apply | Content-Type: application/json | Origin: http://127.0.0.1:7373 @127.0.0.1:7373 => 403 forbidden
            GET /api/v1/roles | Origin: null @127.0.0.1:7373 => 403 forbidden
            OPTIONS /api/v1/apply | Origin: http://evil.example | Access-Control-Request-Method: POST @127.0.0.1:7373 => 403 forbidden
            GET /api/v1/roles | Sec-Fetch-Site: none @127.0.0.1:7373 => ok
            GET /api/v1/roles | Sec-Fetch-Site: same-origin @127.0.0.1:7373 => ok
            GET /api/v1/roles | Sec-Fetch-Site: same-site @127.0.0.1:7373 => 403 forbidden
            GET /api/v1/roles | Sec-Fetch-Site: cross-site @127.0.0.1:7373 => 403 forbidden
            GET /api/v1/roles/web/logs | Sec-Fetch-Site: cross-site | Sec-Fetch-Mode: no-cors @127.0.0.1:7373 => 403 forbidden
        "#]],
    );
}

#[test]
fn api_names_are_checked_when_given() {
    let ok = ["ballast.example.com", "Ballast.Example.COM.", "10.0.0.5:8443", "[fd00::5]", "a-b.c:1"];
    let shown: Vec<String> = ok.iter().map(|t| t.parse::<ApiName>().expect(t).to_string()).collect();
    assert_eq!(
        shown,
        ["ballast.example.com", "ballast.example.com", "10.0.0.5:8443", "[fd00::5]", "a-b.c:1"]
    );
    for bad in
        ["", "fd00::5", "http://x", "a@b", "x:0", "x:", "x:99999", "under_score.example", "a..b", "[zz]"]
    {
        assert!(bad.parse::<ApiName>().is_err(), "{bad:?} was taken");
    }
    assert_eq!(
        "a@b".parse::<ApiName>().unwrap_err(),
        "\"a@b\" is not NAME or NAME:PORT (a DNS name or an IP address, IPv6 in brackets)"
    );
}
