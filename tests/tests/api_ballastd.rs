//! The real `ballastd` binary: raw HTTP against its API on a real etcd, tokens, refused configurations,
//! shutdown, the embedded etcd and JSON logs.

use std::process::Output;
use std::time::Duration;

use ballast_specs::wire::{ErrorBody, List, RoleRevision, RoleView};
use ballast_specs::Object;
use ballast_tests::ballastd::{children, closed_port, datalake_dir, Ballastd, Options, Stack};
use ballast_tests::process::is_running;
use ballast_tests::{wait, TestEtcd};
use reqwest::StatusCode;
use serde_json::json;

const TOKENS: &str =
    "# who may do what\nalice write alice-secret-token\n\nci read ci-secret-token-1  # dashboards\n";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn error_body(response: reqwest::Response) -> (StatusCode, ErrorBody) {
    let status = response.status();
    let body: ErrorBody = response.json().await.expect("error body");
    (status, body)
}

#[tokio::test]
async fn tokens_over_http() {
    let etcd = TestEtcd::start().await.expect("etcd");
    let options = Options { etcd: etcd.endpoints(), tokens: Some(TOKENS.to_string()), ..Options::default() };
    let ballastd = Ballastd::start_with(options).await.expect("ballastd");
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", ballastd.url());

    let up = http.get(url("/up")).send().await.expect("up");
    assert_eq!(up.status(), StatusCode::OK);
    assert_eq!(up.text().await.expect("text"), "ok");

    let (status, body) = error_body(http.get(url("/api/v1/roles")).send().await.expect("get")).await;
    assert_eq!((status, body.error.code.as_str()), (StatusCode::UNAUTHORIZED, "unauthorized"));
    let (status, _) =
        error_body(http.get(url("/api/v1/roles")).bearer_auth("guess-guess").send().await.expect("get"))
            .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let read = http.get(url("/api/v1/roles")).bearer_auth("ci-secret-token-1").send().await.expect("get");
    assert_eq!(read.status(), StatusCode::OK);

    let apply = json!({"objects": []});
    let (status, body) = error_body(
        http.post(url("/api/v1/apply"))
            .bearer_auth("ci-secret-token-1")
            .json(&apply)
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!(
        (status, body.error.message.as_str()),
        (StatusCode::FORBIDDEN, "token \"ci\" is read-only and cannot change anything")
    );
    let written = http
        .post(url("/api/v1/apply"))
        .bearer_auth("alice-secret-token")
        .json(&apply)
        .send()
        .await
        .expect("post");
    assert_eq!(written.status(), StatusCode::OK);
}

#[tokio::test]
async fn tokens_through_the_cli() {
    let etcd = TestEtcd::start().await.expect("etcd");
    let options = Options { etcd: etcd.endpoints(), tokens: Some(TOKENS.to_string()), ..Options::default() };
    let ballastd = Ballastd::start_with(options).await.expect("ballastd");
    let dir = datalake_dir().display().to_string();

    let none = ballastd.ballast(&["apply", "-f", &dir]);
    assert_eq!(none.status.code(), Some(1));
    assert_eq!(
        stderr(&none),
        "error: unauthorized: a bearer token is required (set --token or BALLAST_TOKEN)\n"
    );
    let unknown = ballastd.ballast_as("not-a-token", &["get", "roles"]);
    assert_eq!(stderr(&unknown), "error: unauthorized: unknown token (set --token or BALLAST_TOKEN)\n");
    let read_only = ballastd.ballast_as("ci-secret-token-1", &["apply", "-f", &dir]);
    assert_eq!(read_only.status.code(), Some(1));
    assert_eq!(
        stderr(&read_only),
        "error: forbidden: token \"ci\" is read-only and cannot change anything\n"
    );
    let empty = ballastd.ballast_as("ci-secret-token-1", &["get", "roles", "-o", "json"]);
    let list: List<RoleView> = serde_json::from_slice(&empty.stdout).expect("json");
    assert!(list.items.is_empty(), "the refused applies stored something");

    let applied = ballastd.ballast_as("alice-secret-token", &["apply", "-f", &dir]);
    assert_eq!(applied.status.code(), Some(0), "{}", stderr(&applied));
    let set =
        ballastd.ballast(&["--token", "alice-secret-token", "set", "resources", "job", "--cpus", "0.5"]);
    assert_eq!(set.status.code(), Some(0), "{}", stderr(&set));
    let history = ballastd.ballast_as("ci-secret-token-1", &["rollout", "history", "job", "-o", "json"]);
    let history: List<RoleRevision> = serde_json::from_slice(&history.stdout).expect("json");
    let actors: Vec<&str> = history.items.iter().map(|r| r.actor.as_str()).collect();
    assert_eq!(actors, ["alice", "alice"]);
}

#[tokio::test]
async fn raw_http_errors() {
    let stack = Stack::seeded().await.expect("stack");
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", stack.ballastd.url());

    let (status, body) = error_body(
        http.post(url("/api/v1/apply"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body("{\"objects\": [")
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!((status, body.error.code.as_str()), (StatusCode::BAD_REQUEST, "bad_request"));

    let unknown = json!({"objects": [{"kind": "Role", "apiVersion": "ballast/v1", "metadata": {"name": "x"},
        "spec": {"hosts": ["web-1"], "image": "a:1", "replicas": 3}}]});
    let (status, body) =
        error_body(http.post(url("/api/v1/apply")).json(&unknown).send().await.expect("post")).await;
    assert_eq!((status, body.error.code.as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid"));
    assert!(body.error.problems[0].message.contains("unknown field `replicas`"), "{body:?}");

    let missing_host = json!({"objects": [{"kind": "Role", "apiVersion": "ballast/v1", "metadata": {"name": "x"},
        "spec": {"hosts": ["web-7"], "image": "a:1"}}]});
    let (status, body) =
        error_body(http.post(url("/api/v1/apply")).json(&missing_host).send().await.expect("post")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body.error.problems[0].path, "objects[0].spec.hosts[0]");

    // A stale revision.
    let view: RoleView =
        http.get(url("/api/v1/roles/job")).send().await.expect("get").json().await.expect("json");
    let mut role = view.role.clone();
    role.metadata.revision -= 1;
    let (status, body) =
        error_body(http.put(url("/api/v1/roles/job")).json(&Object::Role(role)).send().await.expect("put"))
            .await;
    assert_eq!((status, body.error.code.as_str()), (StatusCode::CONFLICT, "conflict"));

    let (status, body) = error_body(http.get(url("/api/v1/roles/nope")).send().await.expect("get")).await;
    assert_eq!((status, body.error.message.as_str()), (StatusCode::NOT_FOUND, "role \"nope\" not found"));

    let after: RoleView =
        http.get(url("/api/v1/roles/job")).send().await.expect("get").json().await.expect("json");
    assert_eq!(after, view);
    let roles = stack.roles().expect("roles");
    assert_eq!(roles.len(), 3);
}

#[tokio::test]
async fn refuses_a_public_address_without_tokens() {
    let options = Options {
        etcd: vec!["http://127.0.0.1:9".to_string()],
        listen: Some("0.0.0.0:0".to_string()),
        ..Options::default()
    };
    let (status, log) = Ballastd::run_to_exit(options).expect("run");
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains(
            "refusing to listen on 0.0.0.0:0 without TLS (--tls-cert, --tls-key) and tokens (--token-file); listen \
             on a loopback address (127.0.0.1, ::1), give them, or pass --insecure"
        ),
        "{log}"
    );
}

#[tokio::test]
async fn refuses_a_resync_under_a_second() {
    for (flag, value) in [("--resync", "0s"), ("--resync", "500ms"), ("--header-timeout", "0s")] {
        let options = Options {
            etcd: vec!["http://127.0.0.1:9".to_string()],
            args: vec![flag.to_string(), value.to_string()],
            ..Options::default()
        };
        let (status, log) = Ballastd::run_to_exit(options).expect("run");
        assert_eq!(status.code(), Some(2), "{log}");
        assert!(
            log.contains(&format!(
                "invalid value '{value}' for '{flag} <DUR>': {value} is too short: at least 1s"
            )),
            "{log}"
        );
    }
}

#[tokio::test]
async fn refuses_a_bad_token_file() {
    let options = Options {
        etcd: vec!["http://127.0.0.1:9".to_string()],
        tokens: Some("# ops\nalice admin alice-secret-token\n".to_string()),
        ..Options::default()
    };
    let (status, log) = Ballastd::run_to_exit(options).expect("run");
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("/tokens line 2: access must be `write` or `read`, not \"admin\""), "{log}");
}

#[tokio::test]
async fn fails_clearly_when_etcd_cannot_be_used() {
    let endpoint = format!("http://127.0.0.1:{}", closed_port().expect("port"));
    let options = Options { etcd: vec![endpoint.clone()], ..Options::default() };
    let (status, log) = Ballastd::run_to_exit(options).expect("run");
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains(&format!("cannot use etcd at {endpoint}")), "{log}");
}

#[tokio::test]
async fn stops_cleanly_on_sigterm() {
    let etcd = TestEtcd::start().await.expect("etcd");
    let mut ballastd = Ballastd::start(&etcd.endpoints()).await.expect("ballastd");
    assert!(ballastd.log().contains(&format!("listening address={}", ballastd.url())), "{}", ballastd.log());
    let status = ballastd.terminate().expect("terminate");
    assert_eq!(status.code(), Some(0), "{}", ballastd.log());
    assert!(ballastd.log().contains("SIGTERM received, shutting down"), "{}", ballastd.log());
}

#[tokio::test]
async fn runs_and_stops_its_own_etcd() {
    let mut ballastd = Ballastd::start_with(Options::default()).await.expect("ballastd");
    let pid = ballastd.pid().expect("pid");
    let etcd = children(pid);
    assert_eq!(etcd.len(), 1, "ballastd should have one child, etcd: {etcd:?}");
    assert!(ballastd.dir().join("data").is_dir());
    let applied = ballastd.ballast(&["apply", "-f", &datalake_dir().display().to_string()]);
    assert_eq!(applied.status.code(), Some(0), "{}", stderr(&applied));

    assert_eq!(ballastd.terminate().expect("terminate").code(), Some(0), "{}", ballastd.log());
    wait::until(Duration::from_secs(10), "the embedded etcd to exit", || async {
        (!is_running(etcd[0])).then_some(())
    })
    .await
    .expect("etcd stopped");
    assert!(ballastd.log().contains("embedded etcd stopped"), "{}", ballastd.log());
}

#[tokio::test]
async fn json_logs() {
    let etcd = TestEtcd::start().await.expect("etcd");
    let options = Options {
        etcd: etcd.endpoints(),
        args: vec!["--log-format".to_string(), "json".to_string()],
        ..Options::default()
    };
    let ballastd = Ballastd::start_with(options).await.expect("ballastd");
    let log = ballastd.log();
    let lines: Vec<serde_json::Value> =
        log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let listening = lines.iter().find(|l| l["fields"]["message"] == "listening").expect("listening line");
    assert_eq!(listening["fields"]["address"], ballastd.url());
}
