//! In-process tests of the router on the in-memory store: routes, status codes, error bodies, auth, undo.

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use ballast_specs::wire::{
    ApplyOutcome, ApplyRequest, ApplyResponse, ErrorBody, Event, List, RoleRevision, RoleView, UnitStatus,
};
use ballast_specs::{parse_documents, Host, Object, Role, RoleControl};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::{router, AppState, Auth};
use crate::store::memory::MemoryStore;
use crate::store::{Actor, Snapshot, SpecStore, StatusStore, StoreError};

const TOKENS: &str = "alice write alice-write-token\nci read ci-read-token-1\n";

fn app() -> (Router, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    (router(AppState::new(store.clone(), Auth::open())), store)
}

fn app_with_tokens() -> Router {
    let auth = Auth::parse(TOKENS, "tokens").expect("token file");
    router(AppState::new(Arc::new(MemoryStore::new()), auth))
}

/// The datalake example, as objects.
fn datalake() -> Vec<Object> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../specs/examples/datalake");
    let mut objects = Vec::new();
    for file in ["hosts.yaml", "roles.yaml"] {
        let text = std::fs::read_to_string(format!("{dir}/{file}")).expect("example file");
        objects.extend(parse_documents(&text, Some(file)).expect("example parses"));
    }
    objects
}

async fn call(app: &Router, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Vec<u8>) {
    call_as(app, method, path, body, None).await
}

/// A request with a JSON body (if any) and a bearer token (if any): the answer's status and bytes. Shared with
/// the tests of `api::containers`.
pub(super) async fn call_as(
    app: &Router,
    method: Method,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (StatusCode, Vec<u8>) {
    let bytes = body.map(|b| serde_json::to_vec(&b).expect("json")).unwrap_or_default();
    send(app, method, path, bytes, token).await
}

async fn send(
    app: &Router,
    method: Method,
    path: &str,
    body: Vec<u8>,
    token: Option<&str>,
) -> (StatusCode, Vec<u8>) {
    let mut request =
        Request::builder().method(method).uri(path).header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response =
        app.clone().oneshot(request.body(Body::from(body)).expect("request")).await.expect("answer");
    let status = response.status();
    let bytes = response.into_body().collect().await.expect("body").to_bytes().to_vec();
    (status, bytes)
}

fn read<T: DeserializeOwned>(bytes: &[u8]) -> T {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

fn error(bytes: &[u8]) -> ErrorBody {
    read(bytes)
}

async fn apply(app: &Router, objects: Vec<Object>) -> ApplyResponse {
    let request = ApplyRequest { objects, dry_run: false };
    let (status, body) = call(app, Method::POST, "/api/v1/apply", Some(json!(request))).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    read(&body)
}

async fn role(app: &Router, name: &str) -> RoleView {
    let (status, body) = call(app, Method::GET, &format!("/api/v1/roles/{name}"), None).await;
    assert_eq!(status, StatusCode::OK);
    read(&body)
}

#[tokio::test]
async fn up_answers_without_a_token() {
    let app = app_with_tokens();
    let (status, body) = call(&app, Method::GET, "/up", None).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, b"ok".as_slice()));
    let (status, _) = call(&app, Method::GET, "/metrics", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call_as(&app, Method::GET, "/metrics", None, Some("ci-read-token-1")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn apply_creates_then_reports_unchanged() {
    let (app, _) = app();
    let first = apply(&app, datalake()).await;
    assert_eq!(first.results.len(), 5);
    assert!(first.results.iter().all(|r| r.outcome == ApplyOutcome::Created && r.generation == 1));
    let second = apply(&app, datalake()).await;
    assert!(second.results.iter().all(|r| r.outcome == ApplyOutcome::Unchanged));

    let (_, body) = call(&app, Method::GET, "/api/v1/roles", None).await;
    let roles: List<RoleView> = read(&body);
    let names: Vec<&str> = roles.items.iter().map(|v| v.role.metadata.name.as_str()).collect();
    assert_eq!(names, ["job", "web", "web_replica"]);
    let (_, body) = call(&app, Method::GET, "/api/v1/hosts", None).await;
    let hosts: List<Object> = read(&body);
    assert_eq!(hosts.items.len(), 2);
    let (status, body) = call(&app, Method::GET, "/api/v1/hosts/web-2", None).await;
    assert_eq!(status, StatusCode::OK);
    let Object::Host(Host { spec, .. }) = read(&body) else { panic!("not a host") };
    assert_eq!(spec.address, "34.227.74.245");
}

#[tokio::test]
async fn apply_dry_run_stores_nothing() {
    let (app, store) = app();
    let request = ApplyRequest { objects: datalake(), dry_run: true };
    let (status, body) = call(&app, Method::POST, "/api/v1/apply", Some(json!(request))).await;
    assert_eq!(status, StatusCode::OK);
    let response: ApplyResponse = read(&body);
    assert!(response.results.iter().all(|r| r.outcome == ApplyOutcome::Created));
    assert_eq!(store.snapshot().await.expect("snapshot"), Snapshot { revision: 1, ..Snapshot::default() });
}

#[tokio::test]
async fn apply_reports_every_problem_with_its_object_and_stores_nothing() {
    let (app, store) = app();
    let mut objects = datalake();
    objects.retain(|o| matches!(o, Object::Role(_)));
    let mut bad = objects[0].clone();
    if let Object::Role(role) = &mut bad {
        role.spec.image = String::new();
    }
    objects.push(bad);
    let request = ApplyRequest { objects, dry_run: false };
    let (status, body) = call(&app, Method::POST, "/api/v1/apply", Some(json!(request))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let body = error(&body);
    assert_eq!(body.error.code, "invalid");
    let paths: Vec<&str> = body.error.problems.iter().map(|p| p.path.as_str()).collect();
    // Every role names a host that is not stored, the fourth is a duplicate with an empty image.
    assert!(paths.contains(&"objects[0].spec.hosts[0]"), "{paths:?}");
    assert!(paths.contains(&"objects[2].spec.hosts[0]"), "{paths:?}");
    assert!(paths.contains(&"objects[3].spec.image"), "{paths:?}");
    assert!(paths.contains(&"objects[3].metadata.name"), "{paths:?}");
    assert!(store.snapshot().await.expect("snapshot").roles.is_empty());
}

#[tokio::test]
async fn bad_bodies_get_clear_errors() {
    let (app, _) = app();
    let (status, body) = send(&app, Method::POST, "/api/v1/apply", b"{not json".to_vec(), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error(&body).error.code, "bad_request");

    let (status, body) =
        call(&app, Method::POST, "/api/v1/apply", Some(json!({"objects": [], "force": true}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let body = error(&body);
    assert!(body.error.problems[0].message.contains("unknown field `force`"), "{body:?}");

    let big = format!("{{\"objects\": [], \"pad\": \"{}\"}}", "x".repeat(super::BODY_LIMIT));
    let (status, body) = send(&app, Method::POST, "/api/v1/apply", big.into_bytes(), None).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let body = error(&body);
    assert_eq!(body.error.code, "too_large");
    assert_eq!(body.error.message, "request body is larger than the limit of 4 MiB");

    let (status, body) = call(&app, Method::GET, "/api/v1/status?rol=web", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error(&body).error.code, "bad_request");

    let (status, body) = call(&app, Method::GET, "/api/v1/nothing", None).await;
    assert_eq!((status, error(&body).error.code.as_str()), (StatusCode::NOT_FOUND, "not_found"));
    let (status, body) = call(&app, Method::PATCH, "/api/v1/roles/web", None).await;
    assert_eq!(
        (status, error(&body).error.code.as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
}

#[tokio::test]
async fn put_is_a_compare_and_swap() {
    let (app, _) = app();
    apply(&app, datalake()).await;
    let view = role(&app, "job").await;
    let mut changed = view.role.clone();
    changed.spec.image = "registry.local/datalake:2".to_string();
    let (status, body) =
        call(&app, Method::PUT, "/api/v1/roles/job", Some(json!(Object::Role(changed.clone())))).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let stored: RoleView = read(&body);
    assert_eq!(stored.role.metadata.generation, 2);

    // The same old revision again: someone else's change came first.
    let (status, body) =
        call(&app, Method::PUT, "/api/v1/roles/job", Some(json!(Object::Role(changed.clone())))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error(&body).error.code, "conflict");

    let mut unversioned = changed.clone();
    unversioned.metadata.revision = 0;
    let (status, body) =
        call(&app, Method::PUT, "/api/v1/roles/job", Some(json!(Object::Role(unversioned)))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error(&body).error.problems[0].path, "metadata.revision");

    let (status, body) =
        call(&app, Method::PUT, "/api/v1/roles/web", Some(json!(Object::Role(changed)))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error(&body).error.problems[0].path, "metadata.name");

    let mut missing = stored.role.clone();
    missing.spec.hosts = vec!["nowhere".to_string()];
    let (status, body) =
        call(&app, Method::PUT, "/api/v1/roles/job", Some(json!(Object::Role(missing)))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error(&body).error.problems[0].path, "spec.hosts[0]");
    assert_eq!(role(&app, "job").await, stored);
}

#[tokio::test]
async fn undo_restores_the_previous_spec_as_a_new_generation() {
    let (app, _) = app();
    apply(&app, datalake()).await;
    let original = role(&app, "job").await.role;
    let mut bigger = original.clone();
    bigger.spec.resources.memory = Some(ballast_specs::Memory::parse("768m").expect("memory"));
    let (status, _) = call(&app, Method::PUT, "/api/v1/roles/job", Some(json!(Object::Role(bigger)))).await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = call(&app, Method::POST, "/api/v1/roles/job/undo", None).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let undone: RoleView = read(&body);
    assert_eq!(undone.role.metadata.generation, 3);
    assert_eq!(undone.role.spec, original.spec);

    let (_, body) = call(&app, Method::GET, "/api/v1/roles/job/revisions", None).await;
    let history: List<RoleRevision> = read(&body);
    let revisions: Vec<u64> = history.items.iter().map(|r| r.revision).collect();
    assert_eq!(revisions, [1, 2, 3]);
    assert_eq!(history.items[2].actor, "anonymous");

    // Back to revision 2 explicitly, then a revision that is not kept.
    let (status, body) =
        call(&app, Method::POST, "/api/v1/roles/job/undo", Some(json!({"toRevision": 2}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read::<RoleView>(&body).role.metadata.generation, 4);
    let (status, body) =
        call(&app, Method::POST, "/api/v1/roles/job/undo", Some(json!({"toRevision": 9}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error(&body).error.message, "role \"job\" has no revision 9 (kept: 1, 2, 3, 4)");
    let (status, _) = call(&app, Method::POST, "/api/v1/roles/nope/undo", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn control_switches_change_without_a_new_generation() {
    let (app, store) = app();
    apply(&app, datalake()).await;
    for (action, expected) in [
        ("pause", RoleControl { paused: true, retry: 0, restart: 0 }),
        ("restart", RoleControl { paused: true, retry: 0, restart: 1 }),
        ("retry", RoleControl { paused: true, retry: 1, restart: 1 }),
        ("resume", RoleControl { paused: false, retry: 1, restart: 1 }),
    ] {
        let (status, body) = call(&app, Method::POST, &format!("/api/v1/roles/web/{action}"), None).await;
        assert_eq!(status, StatusCode::OK, "{action}");
        let view: RoleView = read(&body);
        assert_eq!(view.control, expected, "{action}");
        assert_eq!(view.role.metadata.generation, 1);
    }
    let events = store.list_events().await.expect("events");
    let reasons: Vec<&str> = events.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(reasons, ["Paused", "RestartRequested", "RetryRequested", "Resumed"]);
    assert!(events.iter().all(|e| e.actor.as_deref() == Some("anonymous")));
    let (status, _) = call(&app, Method::POST, "/api/v1/roles/nope/pause", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn deletes_and_their_conflicts() {
    let (app, _) = app();
    apply(&app, datalake()).await;
    let (status, body) = call(&app, Method::DELETE, "/api/v1/hosts/web-1", None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(error(&body).error.message.contains("job"));
    let (status, _) = call(&app, Method::DELETE, "/api/v1/roles/web_replica", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&app, Method::DELETE, "/api/v1/hosts/web-2", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = call(&app, Method::DELETE, "/api/v1/roles/web_replica", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error(&body).error.message, "role \"web_replica\" not found");
}

#[tokio::test]
async fn status_events_and_plan() {
    let (app, store) = app();
    apply(&app, datalake()).await;
    for (role, host) in [("web", "web-1"), ("job", "web-1")] {
        let status: UnitStatus = serde_json::from_value(json!({
            "role": role, "host": host, "generation": 1, "observedGeneration": 1, "state": "Converged",
            "since": "2026-01-01T00:00:00Z"
        }))
        .expect("status");
        store.put_status(&status).await.expect("put status");
    }
    let (_, body) = call(&app, Method::GET, "/api/v1/status", None).await;
    assert_eq!(read::<List<UnitStatus>>(&body).items.len(), 2);
    let (_, body) = call(&app, Method::GET, "/api/v1/status?role=job", None).await;
    let only: List<UnitStatus> = read(&body);
    assert_eq!(only.items.iter().map(|s| s.role.as_str()).collect::<Vec<_>>(), ["job"]);

    call(&app, Method::POST, "/api/v1/roles/web/pause", None).await;
    let (_, body) = call(&app, Method::GET, "/api/v1/events?role=job", None).await;
    assert!(read::<List<Event>>(&body).items.is_empty());
    let (_, body) = call(&app, Method::GET, "/api/v1/events?role=web", None).await;
    assert_eq!(read::<List<Event>>(&body).items.len(), 1);

    let (status, body) = call(&app, Method::GET, "/api/v1/plan", None).await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    assert_eq!(error(&body).error.code, "not_implemented");
}

#[tokio::test]
async fn tokens_decide_who_may_read_and_write() {
    let app = app_with_tokens();
    let request = json!(ApplyRequest { objects: datalake(), dry_run: false });
    let (status, body) = call_as(&app, Method::POST, "/api/v1/apply", Some(request.clone()), None).await;
    assert_eq!((status, error(&body).error.code.as_str()), (StatusCode::UNAUTHORIZED, "unauthorized"));
    let (status, _) =
        call_as(&app, Method::POST, "/api/v1/apply", Some(request.clone()), Some("wrong-token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) =
        call_as(&app, Method::POST, "/api/v1/apply", Some(request.clone()), Some("ci-read-token-1")).await;
    assert_eq!((status, error(&body).error.code.as_str()), (StatusCode::FORBIDDEN, "forbidden"));
    let (status, _) = call_as(&app, Method::GET, "/api/v1/roles", None, Some("ci-read-token-1")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) =
        call_as(&app, Method::POST, "/api/v1/apply", Some(request), Some("alice-write-token")).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) =
        call_as(&app, Method::GET, "/api/v1/roles/job/revisions", None, Some("ci-read-token-1")).await;
    assert_eq!(read::<List<RoleRevision>>(&body).items[0].actor, "alice");
}

#[tokio::test]
async fn set_image_by_selector_changes_every_matching_role_or_none() {
    let (app, store) = app();
    apply(&app, datalake()).await;
    let before = store.snapshot().await.unwrap();
    let set = |selector: &str, image: &str| json!({"selector": selector, "image": image});

    let (status, body) = call(&app, Method::POST, "/api/v1/set-image", Some(set("app!=x", "App V2"))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let paths: Vec<String> = error(&body).error.problems.into_iter().map(|p| p.path).collect();
    assert_eq!(paths, ["selector", "image"]);
    let (status, body) = call(&app, Method::POST, "/api/v1/set-image", Some(set("app=nope", "app:v2"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error(&body).error.message, "role with labels \"app=nope\" not found");
    assert_eq!(store.snapshot().await.unwrap(), before, "nothing stored");

    let (status, body) =
        call(&app, Method::POST, "/api/v1/set-image", Some(set("app=datalake", "app:v2"))).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let response: ApplyResponse = read(&body);
    let changed: Vec<(&str, u64)> =
        response.results.iter().map(|r| (r.name.as_str(), r.generation)).collect();
    assert_eq!(changed, [("job", 2), ("web", 2), ("web_replica", 2)]);
    assert_eq!(role(&app, "web_replica").await.role.spec.image, "app:v2");
}

/// A store whose etcd is gone: every call fails as unavailable.
struct DownStore;

#[async_trait]
impl SpecStore for DownStore {
    async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        Err(down())
    }
    async fn get_host(&self, _: &str) -> Result<Option<Host>, StoreError> {
        Err(down())
    }
    async fn get_role(&self, _: &str) -> Result<Option<Role>, StoreError> {
        Err(down())
    }
    async fn apply(
        &self,
        _: Vec<Object>,
        _: bool,
        _: &Actor,
    ) -> Result<Vec<ballast_specs::wire::ApplyResult>, StoreError> {
        Err(down())
    }
    async fn update_role(&self, _: Role, _: &Actor) -> Result<Role, StoreError> {
        Err(down())
    }
    async fn set_image(
        &self,
        _: &ballast_specs::Selector,
        _: &str,
        _: &Actor,
    ) -> Result<Vec<ballast_specs::wire::ApplyResult>, StoreError> {
        Err(down())
    }
    async fn delete_role(&self, _: &str, _: &Actor) -> Result<(), StoreError> {
        Err(down())
    }
    async fn delete_host(&self, _: &str, _: &Actor) -> Result<(), StoreError> {
        Err(down())
    }
    async fn history(&self, _: &str) -> Result<Vec<RoleRevision>, StoreError> {
        Err(down())
    }
    async fn get_control(&self, _: &str) -> Result<RoleControl, StoreError> {
        Err(down())
    }
    async fn put_control(&self, _: &str, _: &RoleControl) -> Result<(), StoreError> {
        Err(down())
    }
    async fn list_status(&self) -> Result<Vec<UnitStatus>, StoreError> {
        Err(down())
    }
    async fn list_events(&self) -> Result<Vec<Event>, StoreError> {
        Err(down())
    }
    async fn add_event(&self, _: &Event) -> Result<(), StoreError> {
        Err(down())
    }
    async fn cluster_key(&self) -> Result<Vec<u8>, StoreError> {
        Err(down())
    }
}

fn down() -> StoreError {
    StoreError::Unavailable("dial tcp 10.1.2.3:2379: connect: connection refused".to_string())
}

#[tokio::test]
async fn an_unavailable_store_is_a_503_without_internals() {
    let app = router(AppState::new(Arc::new(DownStore), Auth::open()));
    for (method, path) in [
        (Method::GET, "/api/v1/roles"),
        (Method::GET, "/api/v1/status"),
        (Method::POST, "/api/v1/roles/web/pause"),
    ] {
        let (status, body) = call(&app, method, path, None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        let body = error(&body);
        assert_eq!(body.error.code, "unavailable");
        assert_eq!(
            body.error.message,
            "the store is unavailable: etcd cannot be reached or did not answer in time"
        );
    }
    let (status, _) = call(&app, Method::GET, "/up", None).await;
    assert_eq!(status, StatusCode::OK);
}
