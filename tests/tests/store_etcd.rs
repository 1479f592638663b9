//! What only the etcd store has: the key layout on disk, leases, compaction, restarts and an unreachable etcd.

use std::time::{Duration, Instant};

use ballast_operator::store::etcd::EtcdStore;
use ballast_operator::store::{Actor, Changed, SpecStore, StatusStore, StoreError};
use ballast_specs::RoleControl;
use ballast_tests::etcd::free_ports;
use ballast_tests::objects::{event, host_object, role_object, status};
use ballast_tests::{wait, TestEtcd};
use futures::stream::BoxStream;
use futures::StreamExt;

const WAIT: Duration = Duration::from_secs(15);

fn actor() -> Actor {
    Actor("alice".to_string())
}

async fn connect(etcd: &TestEtcd) -> EtcdStore {
    EtcdStore::connect(&etcd.endpoints()).await.expect("connecting to etcd")
}

async fn next(changes: &mut BoxStream<'static, Changed>) -> Changed {
    tokio::time::timeout(WAIT, changes.next()).await.expect("a change in time").expect("the watch goes on")
}

/// Applies `web` with `image`, retrying while the store is (still) unavailable; the revision written.
async fn apply_image(store: &EtcdStore, image: &str) -> i64 {
    let objects = vec![host_object("h1"), role_object("web", &["h1"], image)];
    wait::until(WAIT, "an apply to succeed", || async {
        match store.apply(objects.clone(), false, &actor()).await {
            Ok(_) => Some(()),
            Err(e) if e.is_retryable() => None,
            Err(e) => panic!("apply failed: {e}"),
        }
    })
    .await
    .unwrap();
    store.get_role("web").await.unwrap().unwrap().metadata.revision
}

#[tokio::test]
async fn keys_follow_the_documented_layout() {
    let etcd = TestEtcd::start().await.unwrap();
    let store = connect(&etcd).await;
    store
        .apply(vec![host_object("h1"), role_object("web", &["h1"], "app:v1")], false, &actor())
        .await
        .unwrap();
    store.apply(vec![role_object("web", &["h1"], "app:v2")], false, &actor()).await.unwrap();
    store.put_control("web", &RoleControl { paused: true, ..RoleControl::default() }).await.unwrap();
    store.put_status(&status("web", "h1")).await.unwrap();
    store.add_event(&event("2024-05-01T10:00:00Z", "web", "Created")).await.unwrap();

    let entries = etcd.entries("/ballast/").await.unwrap();
    let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys.len(), 7, "{keys:?}");
    assert!(keys[0].starts_with("/ballast/v1/events/01714557600000000000-"), "{keys:?}");
    assert_eq!(
        &keys[1..],
        &[
            "/ballast/v1/history/web/00000000000000000001",
            "/ballast/v1/history/web/00000000000000000002",
            "/ballast/v1/specs/controls/web",
            "/ballast/v1/specs/hosts/h1",
            "/ballast/v1/specs/roles/web",
            "/ballast/v1/status/web/h1",
        ]
    );
    let role: serde_json::Value = serde_json::from_str(&entries[5].1).unwrap();
    assert_eq!(role["kind"], "Role");
    assert_eq!(role["metadata"]["generation"], 2);
    assert!(role["metadata"].get("revision").is_none(), "the revision is etcd's, not stored: {role}");
    assert!(role["metadata"]["creationTimestamp"].is_string());
    assert_eq!(role["spec"]["image"], "app:v2");
    let revision: serde_json::Value = serde_json::from_str(&entries[2].1).unwrap();
    assert_eq!(revision["revision"], 2);
    assert_eq!(revision["actor"], "alice");
    assert_eq!(revision["spec"]["image"], "app:v2");
}

#[tokio::test]
async fn events_share_a_lease_of_over_an_hour() {
    let etcd = TestEtcd::start().await.unwrap();
    let store = connect(&etcd).await;
    for second in 1..=3 {
        store.add_event(&event(&format!("2024-05-01T10:00:0{second}Z"), "web", "Created")).await.unwrap();
    }
    let kvs = etcd.range("/ballast/v1/events/").await.unwrap();
    assert_eq!(kvs.len(), 3);
    let leases: Vec<&str> = kvs.iter().map(|kv| kv["lease"].as_str().unwrap_or("0")).collect();
    assert!(leases[0] != "0", "events are attached to a lease: {kvs:?}");
    assert!(leases.iter().all(|l| *l == leases[0]), "one lease for all: {leases:?}");
    let ttl = etcd.post("/v3/lease/timetolive", serde_json::json!({"ID": leases[0]})).await.unwrap();
    let granted: i64 = ttl["grantedTTL"].as_str().and_then(|t| t.parse().ok()).unwrap_or(0);
    assert!(granted >= 3600, "events live at least an hour: {ttl}");

    // The lease gone (revoked, expired, or etcd restored): the next event takes a new one.
    etcd.post("/v3/lease/revoke", serde_json::json!({"ID": leases[0]})).await.unwrap();
    assert!(etcd.range("/ballast/v1/events/").await.unwrap().is_empty(), "revoking drops its events");
    store.add_event(&event("2024-05-01T10:00:04Z", "web", "Created")).await.unwrap();
    let kvs = etcd.range("/ballast/v1/events/").await.unwrap();
    assert_eq!(kvs.len(), 1);
    let lease = kvs[0]["lease"].as_str().unwrap_or("0");
    assert!(lease != "0" && lease != leases[0], "a new lease: {kvs:?}");
}

#[tokio::test]
async fn watch_from_a_compacted_revision_starts_over() {
    let etcd = TestEtcd::start().await.unwrap();
    let store = connect(&etcd).await;
    let start = store.snapshot().await.unwrap().revision;
    for n in 1..=5 {
        apply_image(&store, &format!("app:v{n}")).await;
    }
    let compacted = store.snapshot().await.unwrap().revision;
    etcd.compact(compacted).await.unwrap();

    let mut changes = store.watch(start).await.unwrap();
    let first = next(&mut changes).await;
    assert!(first.revision >= compacted, "reports the current revision: {first:?}, compacted at {compacted}");

    let written = apply_image(&store, "app:v6").await;
    let mut last = first;
    while last.revision < written {
        last = next(&mut changes).await;
    }
    assert_eq!(last.revision, written, "goes on watching after starting over");
}

#[tokio::test]
async fn watch_survives_an_etcd_restart() {
    let mut etcd = TestEtcd::start().await.unwrap();
    let store = connect(&etcd).await;
    let first = apply_image(&store, "app:v1").await;
    let mut changes = store.watch(first).await.unwrap();

    etcd.restart().await.unwrap();
    let written = apply_image(&store, "app:v2").await;
    let mut last = next(&mut changes).await;
    while last.revision < written {
        last = next(&mut changes).await;
    }
    assert!(last.revision >= written, "the write after the restart is seen: {last:?}, wrote {written}");

    let again = apply_image(&store, "app:v3").await;
    while last.revision < again {
        last = next(&mut changes).await;
    }
    assert_eq!(last.revision, again);
}

#[tokio::test]
async fn unreachable_etcd_is_unavailable_within_seconds() {
    let [port] = free_ports().unwrap();
    let started = Instant::now();
    let result = EtcdStore::connect(&[format!("http://127.0.0.1:{port}")]).await;
    let elapsed = started.elapsed();
    eprintln!(
        "connect to a closed port: {} after {elapsed:?}",
        result.as_ref().err().map_or("ok".into(), |e| e.to_string())
    );
    assert!(matches!(result, Err(StoreError::Unavailable(_))), "a closed port is unavailable");
    assert!(elapsed < Duration::from_secs(6), "took {elapsed:?}");

    // Something listens but never answers: the deadline, not the kernel, ends the wait.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let started = Instant::now();
    let result = EtcdStore::connect(&[format!("http://{}", silent.local_addr().unwrap())]).await;
    let elapsed = started.elapsed();
    eprintln!(
        "connect to a silent port: {} after {elapsed:?}",
        result.as_ref().err().map_or("ok".into(), |e| e.to_string())
    );
    assert!(matches!(result, Err(StoreError::Unavailable(_))), "a silent port is unavailable");
    assert!(elapsed < Duration::from_secs(7), "took {elapsed:?}");
    drop(silent);

    // Reachable at first, then gone.
    let mut etcd = TestEtcd::start().await.unwrap();
    let store = connect(&etcd).await;
    apply_image(&store, "app:v1").await;
    etcd.kill();
    let started = Instant::now();
    let result = store.snapshot().await;
    let elapsed = started.elapsed();
    eprintln!(
        "snapshot after etcd died: {} after {elapsed:?}",
        result.as_ref().err().map_or("ok".into(), |e| e.to_string())
    );
    assert!(matches!(result, Err(StoreError::Unavailable(_))), "got {result:?}");
    assert!(elapsed < Duration::from_secs(6), "took {elapsed:?}");
    let started = Instant::now();
    let result = store.apply(vec![role_object("web", &["h1"], "app:v2")], false, &actor()).await;
    assert!(matches!(result, Err(StoreError::Unavailable(_))), "got {result:?}");
    assert!(started.elapsed() < Duration::from_secs(6), "took {:?}", started.elapsed());
    assert!(store.watch(0).await.is_err(), "no watch without etcd");
}
