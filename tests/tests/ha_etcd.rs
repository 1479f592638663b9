//! Leader election and the fence on a real etcd: two stores (two connections, as two `ballastd` would have)
//! campaign on one etcd. Hand-over times are printed (`--nocapture`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ballast_operator::store::etcd::EtcdStore;
use ballast_operator::store::{Election, Leadership, SpecStore, StoreError, LEADER_KEY};
use ballast_tests::etcd::base64;
use ballast_tests::objects::{event, status};
use ballast_tests::TestEtcd;
use serde_json::json;

const TTL: Duration = Duration::from_secs(3);
const WAIT: Duration = Duration::from_secs(20);

async fn connect(etcd: &TestEtcd) -> Arc<EtcdStore> {
    Arc::new(EtcdStore::connect(&etcd.endpoints()).await.expect("connecting to etcd"))
}

/// Campaigns in a task of its own: the handle resolves once `identity` leads.
fn campaign(store: &Arc<EtcdStore>, identity: &str) -> tokio::task::JoinHandle<Leadership> {
    let (store, identity) = (store.clone(), identity.to_string());
    tokio::spawn(async move { store.campaign(&identity, TTL).await.expect("campaign") })
}

async fn led_within(candidate: tokio::task::JoinHandle<Leadership>, within: Duration) -> Leadership {
    tokio::time::timeout(within, candidate).await.expect("took over in time").expect("campaign task")
}

/// The leader key's value and lease, as etcd shows them.
async fn leader_key(etcd: &TestEtcd) -> Option<(String, String)> {
    let kvs = etcd.range(LEADER_KEY).await.unwrap();
    let entries = etcd.entries(LEADER_KEY).await.unwrap();
    let lease = kvs.first()?.get("lease")?.as_str()?.to_string();
    entries.into_iter().find(|(k, _)| k == LEADER_KEY).map(|(_, v)| (v, lease))
}

#[tokio::test]
async fn one_of_two_leads_and_a_resign_hands_over_at_once() {
    let etcd = TestEtcd::start().await.unwrap();
    let (one, two) = (connect(&etcd).await, connect(&etcd).await);
    let a = one.campaign("a", TTL).await.unwrap();
    let b = campaign(&two, "b");
    // Several TTLs: a keeps renewing its lease, b keeps waiting.
    tokio::time::sleep(TTL * 2).await;
    assert!(a.is_leading());
    assert!(!b.is_finished());
    let (value, lease) = leader_key(&etcd).await.expect("a leader key");
    assert_eq!(value, "a");
    assert_ne!(lease, "0", "the leader key is attached to a lease");

    let resigned = Instant::now();
    a.resign().await.unwrap();
    let b = led_within(b, Duration::from_secs(2)).await;
    let took = resigned.elapsed();
    println!("etcd: hand-over after a resign took {took:?}");
    assert!(took < Duration::from_secs(1), "hand-over took {took:?}");
    assert!(b.is_leading());
    assert_eq!(leader_key(&etcd).await.map(|(v, _)| v).as_deref(), Some("b"));
}

#[tokio::test]
async fn a_vanished_leader_is_replaced_once_its_lease_expires() {
    let etcd = TestEtcd::start().await.unwrap();
    let (one, two) = (connect(&etcd).await, connect(&etcd).await);
    let a = one.campaign("a", TTL).await.unwrap();
    let b = campaign(&two, "b");
    tokio::time::sleep(TTL).await;
    // Like `kill -9`: the renewals stop, nobody resigns.
    drop(a);
    let vanished = Instant::now();
    let b = led_within(b, TTL + Duration::from_secs(3)).await;
    let took = vanished.elapsed();
    println!("etcd: take-over after the leader vanished took {took:?} (TTL {TTL:?})");
    // The lease was last renewed at most TTL/3 before; etcd checks expiry about every 500 ms.
    assert!(
        took >= TTL - TTL / 3 - Duration::from_millis(200),
        "took over after {took:?}, before the lease ended"
    );
    assert!(took <= TTL + Duration::from_secs(2), "took over after {took:?}");
    assert!(b.is_leading());
}

#[tokio::test]
async fn a_deposed_leaders_fenced_writes_fail() {
    let etcd = TestEtcd::start().await.unwrap();
    let (one, two) = (connect(&etcd).await, connect(&etcd).await);
    let a = one.campaign("a", TTL).await.unwrap();
    let a_store = one.fenced(&a);
    a_store.put_status(&status("web", "h1")).await.unwrap();
    a_store.add_event(&event("2024-05-01T10:00:00Z", "web", "Created")).await.unwrap();

    // a's lease goes as if a had been cut off long enough; b leads. a's view still carries the old fence.
    drop(a);
    let b = led_within(campaign(&two, "b"), TTL + Duration::from_secs(3)).await;
    let b_store = two.fenced(&b);

    let written = etcd.entries("/ballast/v1/status/").await.unwrap();
    let err = a_store.put_status(&status("web", "h2")).await.unwrap_err();
    assert!(matches!(err, StoreError::NotLeader(_)), "{err}");
    let err = a_store.add_event(&event("2024-05-01T10:00:01Z", "web", "Replaced")).await.unwrap_err();
    assert!(matches!(err, StoreError::NotLeader(_)), "{err}");
    assert!(matches!(a_store.delete_status("web", "h1").await, Err(StoreError::NotLeader(_))));
    assert_eq!(etcd.entries("/ballast/v1/status/").await.unwrap(), written, "a deposed write changed etcd");
    assert_eq!(one.list_events().await.unwrap().len(), 1);

    b_store.put_status(&status("web", "h2")).await.unwrap();
    b_store.add_event(&event("2024-05-01T10:00:02Z", "web", "Replaced")).await.unwrap();
    // API writes are not fenced: a standby serves them.
    one.add_event(&event("2024-05-01T10:00:03Z", "web", "Paused")).await.unwrap();
    assert_eq!(one.list_events().await.unwrap().len(), 3);
    assert_eq!(one.list_status().await.unwrap().len(), 2);
}

#[tokio::test]
async fn leading_ends_when_the_key_is_deleted() {
    let etcd = TestEtcd::start().await.unwrap();
    let store = connect(&etcd).await;
    let a = store.campaign("a", TTL).await.unwrap();
    let fenced = store.fenced(&a);
    let key = base64(LEADER_KEY.as_bytes());
    etcd.post("/v3/kv/deleterange", json!({"key": key})).await.unwrap();
    let deleted = Instant::now();
    tokio::time::timeout(WAIT, a.lost()).await.expect("leading ended");
    println!("etcd: a deleted leader key was noticed after {:?}", deleted.elapsed());
    assert!(deleted.elapsed() < Duration::from_secs(1));
    assert!(matches!(fenced.put_status(&status("web", "h1")).await, Err(StoreError::NotLeader(_))));
    // The same process may lead again, with a new fence; the old view stays deposed.
    let again = store.campaign("a", TTL).await.unwrap();
    assert!(again.revision() > a.revision());
    assert!(matches!(fenced.put_status(&status("web", "h1")).await, Err(StoreError::NotLeader(_))));
    store.fenced(&again).put_status(&status("web", "h1")).await.unwrap();
}

#[tokio::test]
async fn a_leader_cut_off_from_etcd_steps_down_within_its_ttl() {
    let mut etcd = TestEtcd::start().await.unwrap();
    let store = connect(&etcd).await;
    let a = store.campaign("a", TTL).await.unwrap();
    tokio::time::sleep(TTL / 2).await;
    etcd.kill();
    let cut = Instant::now();
    tokio::time::timeout(WAIT, a.lost()).await.expect("leading ended");
    let took = cut.elapsed();
    println!("etcd: a leader cut off from etcd stepped down after {took:?} (TTL {TTL:?})");
    // Before the lease can have expired on etcd's side (at least TTL after the last renewal).
    assert!(took < TTL, "stepped down after {took:?}");

    etcd.restart().await.unwrap();
    let b = tokio::time::timeout(WAIT, store.campaign("b", TTL)).await.expect("someone leads again").unwrap();
    assert!(b.is_leading());
}
