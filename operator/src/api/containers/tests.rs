//! The logs and exec routes in-process: the real router and `ContainerAccess` over the in-memory store and fake
//! hosts. Status codes, the NDJSON stream, hosts that fail, the write token, and the events recorded.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use ballast_specs::wire::{ErrorBody, Event, ExecResponse, LogEntry, LogStream};
use ballast_specs::Object;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::access::ContainerAccess;
use crate::api::tests::call_as as call;
use crate::api::{router, AppState, Auth};
use crate::hosts::fake::{FakeConnector, FakeHost};
use crate::hosts::{self, ContainerConfig, DockerHost, HostPool};
use crate::labels;
use crate::store::memory::MemoryStore;
use crate::store::{Actor, SpecStore};

const IMAGE: &str = "app:v1";
const TOKENS: &str = "alice write alice-write-token\nci read ci-read-token-1\n";

struct Fixture {
    app: Router,
    store: Arc<MemoryStore>,
    hosts: FakeConnector,
    stop: CancellationToken,
}

/// Hosts `a` and `b`, role `web` on both (running on each), role `job` on `a` with no container yet.
async fn fixture(tokens: Option<&str>) -> Fixture {
    let store = Arc::new(MemoryStore::new());
    let objects: Vec<Object> = vec![
        object(json!({"kind": "Host", "metadata": {"name": "a"}, "spec": {"address": "10.0.0.1"}})),
        object(json!({"kind": "Host", "metadata": {"name": "b"}, "spec": {"address": "10.0.0.2"}})),
        object(
            json!({"kind": "Role", "metadata": {"name": "web"}, "spec": {"hosts": ["a", "b"], "image": IMAGE}}),
        ),
        object(
            json!({"kind": "Role", "metadata": {"name": "job"}, "spec": {"hosts": ["a"], "image": IMAGE}}),
        ),
    ];
    store.apply(objects, false, &Actor("test".into())).await.expect("apply");
    let hosts = FakeConnector::default();
    for host in ["a", "b"] {
        run_container(&hosts.host(host), "web", host, "1").await;
    }
    let pool = Arc::new(HostPool::new(Arc::new(hosts.clone())));
    let stop = CancellationToken::new();
    let auth = match tokens {
        Some(text) => Auth::parse(text, "tokens").expect("token file"),
        None => Auth::open(),
    };
    let mut state = AppState::new(store.clone(), auth);
    state.hosts = Some(Arc::new(ContainerAccess::new(store.clone(), pool, stop.clone())));
    Fixture { app: router(state), store, hosts, stop }
}

fn object(mut value: Value) -> Object {
    value["apiVersion"] = json!("ballast/v1");
    serde_json::from_value(value).expect("object")
}

/// Creates and starts a container of `role` on the fake host; returns its id.
async fn run_container(host: &FakeHost, role: &str, host_name: &str, generation: &str) -> String {
    host.publish_image(IMAGE);
    host.pull(IMAGE, None).await.expect("pull");
    let config = ContainerConfig {
        name: format!("{role}-{generation}"),
        image: IMAGE.to_string(),
        command: Vec::new(),
        env: Vec::new(),
        labels: BTreeMap::from([
            (labels::ROLE.to_string(), role.to_string()),
            (labels::HOST.to_string(), host_name.to_string()),
            (labels::GENERATION.to_string(), generation.to_string()),
        ]),
        nano_cpus: 0,
        memory: 0,
        ports: Vec::new(),
        logging: None,
        network: None,
    };
    let id = host.create(&config).await.expect("create");
    host.start(&id).await.expect("start");
    id
}

fn request(method: Method, path: &str, body: Option<Value>, token: Option<&str>) -> Request<Body> {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = body.map(|b| Body::from(serde_json::to_vec(&b).expect("json"))).unwrap_or_else(Body::empty);
    request.body(body).expect("request")
}

fn entries(bytes: &[u8]) -> Vec<LogEntry> {
    let text = std::str::from_utf8(bytes).expect("utf-8");
    assert!(text.ends_with('\n'), "{text:?}");
    text.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))).collect()
}

fn error(bytes: &[u8]) -> (String, String) {
    let body: ErrorBody =
        serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)));
    (body.error.code, body.error.message)
}

async fn events(store: &MemoryStore, reason: &str) -> Vec<Event> {
    store.list_events().await.expect("events").into_iter().filter(|e| e.reason == reason).collect()
}

#[tokio::test]
async fn logs_of_every_host_then_one_host_and_a_tail() {
    let f = fixture(None).await;
    let (status, body) = call(&f.app, Method::GET, "/api/v1/roles/web/logs", None, None).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let all = entries(&body);
    assert_eq!(all.len(), 6, "{all:#?}");
    for host in ["a", "b"] {
        let lines: Vec<(&str, Option<LogStream>)> =
            all.iter().filter(|e| e.host == host).map(|e| (e.line.as_str(), e.stream)).collect();
        assert_eq!(
            lines,
            [
                ("web-1: starting app:v1", Some(LogStream::Stdout)),
                ("web-1: no config file, using defaults", Some(LogStream::Stderr)),
                ("web-1: ready", Some(LogStream::Stdout)),
            ]
        );
    }
    assert!(all.iter().all(|e| e.time.is_some() && e.error.is_none()));

    let (_, body) = call(&f.app, Method::GET, "/api/v1/roles/web/logs?host=b&tail=1", None, None).await;
    let last = entries(&body);
    assert_eq!(
        last.iter().map(|e| (e.host.as_str(), e.line.as_str())).collect::<Vec<_>>(),
        [("b", "web-1: ready")]
    );

    let recorded = events(&f.store, "Logs").await;
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[0].message, "anonymous read the logs of web on a, b");
    assert_eq!(recorded[0].host, None);
    assert_eq!(recorded[1].message, "anonymous read the logs of web on b (tail 1)");
    assert_eq!(recorded[1].host.as_deref(), Some("b"));
    assert_eq!(recorded[1].actor.as_deref(), Some("anonymous"));
}

#[tokio::test]
async fn follow_streams_new_lines_until_shutdown() {
    let f = fixture(None).await;
    let response = f
        .app
        .clone()
        .oneshot(request(Method::GET, "/api/v1/roles/web/logs?host=a&follow=true&tail=0", None, None))
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/x-ndjson");
    let mut body = response.into_body();
    let id = f.hosts.host("a").containers()[0].id.clone();
    f.hosts.host("a").print(&id, hosts::LogStream::Stdout, "printed later");
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("a line in time")
        .expect("a frame")
        .expect("no error");
    let data = frame.into_data().expect("data");
    assert_eq!(entries(&data).iter().map(|e| e.line.as_str()).collect::<Vec<_>>(), ["printed later"]);
    f.stop.cancel();
    let rest = tokio::time::timeout(Duration::from_secs(5), body.collect()).await.expect("the stream ends");
    assert!(rest.expect("body").to_bytes().is_empty());
}

#[tokio::test]
async fn logs_report_each_failing_host_and_fail_when_all_do() {
    let f = fixture(None).await;
    f.hosts.host("b").set_unreachable(true);
    let (status, body) = call(&f.app, Method::GET, "/api/v1/roles/web/logs", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let all = entries(&body);
    assert_eq!(all[0].host, "b");
    assert_eq!(all[0].error.as_deref(), Some("host b is unavailable: unreachable: b: connection refused"));
    assert_eq!(all.iter().filter(|e| e.host == "a" && e.error.is_none()).count(), 3);

    let (status, body) = call(&f.app, Method::GET, "/api/v1/roles/web/logs?host=b", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        error(&body),
        (
            "host_unavailable".to_string(),
            "host b is unavailable: unreachable: b: connection refused".to_string()
        )
    );
    let (status, body) = call(&f.app, Method::GET, "/api/v1/roles/job/logs", None, None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error(&body).1, "role \"job\" has no container on host \"a\"");
}

#[tokio::test]
async fn exec_runs_on_the_first_host_or_the_one_asked() {
    let f = fixture(None).await;
    let command = json!({"command": ["echo", "hello world"]});
    let (status, body) = call(&f.app, Method::POST, "/api/v1/roles/web/exec", Some(command), None).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let answer: ExecResponse = serde_json::from_slice(&body).expect("answer");
    assert_eq!(
        answer,
        ExecResponse {
            host: "a".into(),
            exit_code: 0,
            stdout: "hello world\n".into(),
            stderr: String::new(),
            truncated: false
        }
    );
    assert_eq!(f.hosts.host("a").execs().len(), 1);
    assert!(f.hosts.host("b").execs().is_empty());

    let command = json!({"host": "b", "command": ["false"]});
    let (_, body) = call(&f.app, Method::POST, "/api/v1/roles/web/exec", Some(command), None).await;
    let answer: ExecResponse = serde_json::from_slice(&body).expect("answer");
    assert_eq!((answer.host.as_str(), answer.exit_code), ("b", 1));

    let recorded = events(&f.store, "Exec").await;
    let messages: Vec<&str> = recorded.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "anonymous ran `echo 'hello world'` in web on a: exit code 0",
            "anonymous ran `false` in web on b: exit code 1"
        ]
    );
    assert_eq!(recorded[1].host.as_deref(), Some("b"));
}

#[tokio::test]
async fn exec_refuses_clearly() {
    let f = fixture(None).await;
    let cases = [
        (
            "/api/v1/roles/nope/exec",
            json!({"command": ["ls"]}),
            StatusCode::NOT_FOUND,
            "role \"nope\" not found",
        ),
        (
            "/api/v1/roles/web/exec",
            json!({"host": "c", "command": ["ls"]}),
            StatusCode::NOT_FOUND,
            "role \"web\" does not run on host \"c\" (its hosts: a, b)",
        ),
        (
            "/api/v1/roles/web/exec",
            json!({"command": []}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "1 problem found, nothing was stored",
        ),
        (
            "/api/v1/roles/job/exec",
            json!({"command": ["ls"]}),
            StatusCode::CONFLICT,
            "role \"job\" has no container on host \"a\"",
        ),
    ];
    for (path, body, status, message) in cases {
        let (got, answer) = call(&f.app, Method::POST, path, Some(body.clone()), None).await;
        assert_eq!((got, error(&answer).1.as_str()), (status, message), "{path} {body}");
    }
    let a = f.hosts.host("a");
    let id = a.containers()[0].id.clone();
    a.stop_out_of_band(&id);
    let (status, body) =
        call(&f.app, Method::POST, "/api/v1/roles/web/exec", Some(json!({"command": ["ls"]})), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        error(&body).1,
        "role \"web\" has no running container on host \"a\" (container web-1 is exited)"
    );
    // The logs of a stopped container still show.
    let (status, body) = call(&f.app, Method::GET, "/api/v1/roles/web/logs?host=a", None, None).await;
    assert_eq!((status, entries(&body).len()), (StatusCode::OK, 3));
    // A failed attempt is recorded too; refusals before a host is asked are not.
    let recorded = events(&f.store, "Exec").await;
    assert_eq!(recorded.len(), 2, "{recorded:#?}");
    assert!(
        recorded[0].message.ends_with("failed: role \"job\" has no container on host \"a\""),
        "{recorded:#?}"
    );
}

#[tokio::test]
async fn logs_and_exec_need_a_write_token() {
    let f = fixture(Some(TOKENS)).await;
    let exec = json!({"command": ["echo", "hi"]});
    for (method, path, body) in [
        (Method::GET, "/api/v1/roles/web/logs", None),
        (Method::POST, "/api/v1/roles/web/exec", Some(exec.clone())),
    ] {
        let (status, answer) = call(&f.app, method.clone(), path, body.clone(), None).await;
        assert_eq!((status, error(&answer).0.as_str()), (StatusCode::UNAUTHORIZED, "unauthorized"));
        let (status, answer) =
            call(&f.app, method.clone(), path, body.clone(), Some("ci-read-token-1")).await;
        assert_eq!(
            (status, error(&answer)),
            (
                StatusCode::FORBIDDEN,
                (
                    "forbidden".to_string(),
                    "container logs and exec need a write token (container output may hold secrets)"
                        .to_string()
                )
            )
        );
        let (status, _) = call(&f.app, method, path, body, Some("alice-write-token")).await;
        assert_eq!(status, StatusCode::OK);
    }
    let recorded = f.store.list_events().await.expect("events");
    assert_eq!(recorded.len(), 2);
    assert!(recorded.iter().all(|e| e.actor.as_deref() == Some("alice")));
    assert!(!recorded[1].message.contains("hi\n"));
}

#[tokio::test]
async fn without_host_access_the_routes_answer_501() {
    let app = router(AppState::new(Arc::new(MemoryStore::new()), Auth::open()));
    let (status, body) = call(&app, Method::GET, "/api/v1/roles/web/logs", None, None).await;
    assert_eq!((status, error(&body).0.as_str()), (StatusCode::NOT_IMPLEMENTED, "not_implemented"));
    let (status, _) = call(&app, Method::GET, "/api/v1/roles/web/logs?bogus=1", None, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
