//! The embedded etcd of `ballastd`: it starts, answers, comes back when killed, keeps its data and address
//! across restarts, and is killed when dropped.

use std::time::Duration;

use ballast_operator::etcd_local::EmbeddedEtcd;
use ballast_operator::store::etcd::EtcdStore;
use ballast_operator::store::{Actor, SpecStore};
use ballast_tests::objects::{host_object, role_object};
use ballast_tests::{process, wait};

const WAIT: Duration = Duration::from_secs(30);

/// One test on purpose: the first step changes PATH, which no other test of this binary may see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_etcd_lifecycle() {
    let dir = tempfile::tempdir().unwrap();

    // Without etcd on PATH: a clear error.
    let path = std::env::var_os("PATH").unwrap_or_default();
    let empty = tempfile::tempdir().unwrap();
    std::env::set_var("PATH", empty.path());
    let missing = EmbeddedEtcd::start(&dir.path().join("nothing")).await;
    std::env::set_var("PATH", &path);
    let message = format!("{:#}", missing.err().expect("no etcd on PATH must fail"));
    assert!(message.contains("`etcd` is not on PATH"), "{message}");

    // Starts and answers.
    let etcd = EmbeddedEtcd::start(dir.path()).await.unwrap();
    let endpoint = etcd.endpoint();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
    let store = EtcdStore::connect(std::slice::from_ref(&endpoint)).await.unwrap();
    let actor = Actor("test".to_string());
    store.apply(vec![host_object("h1"), role_object("web", &["h1"], "app:v1")], false, &actor).await.unwrap();

    // Killed behind its back: supervised back to life, same data.
    let first = etcd.pid().expect("a child runs");
    process::kill(first).unwrap();
    let second =
        wait::until(WAIT, "etcd to be restarted", || async { etcd.pid().filter(|pid| *pid != first) })
            .await
            .unwrap();
    let role = wait::until(WAIT, "the restarted etcd to answer", || async {
        store.get_role("web").await.ok().flatten()
    })
    .await
    .unwrap();
    assert_eq!(role.spec.image, "app:v1");
    assert!(!process::is_running(first));

    // Shut down: the child is gone.
    etcd.shutdown().await.unwrap();
    assert!(!process::is_running(second), "etcd {second} still runs after shutdown");

    // Started again on the same data dir: same address, same data.
    let again = EmbeddedEtcd::start(dir.path()).await.unwrap();
    assert_eq!(again.endpoint(), endpoint, "the port is kept under the data dir");
    let store = EtcdStore::connect(&[again.endpoint()]).await.unwrap();
    let role = store.get_role("web").await.unwrap().expect("data survives a restart");
    assert_eq!(role.metadata.generation, 1);

    // Dropped: the child is killed.
    let third = again.pid().expect("a child runs");
    drop(again);
    wait::until(WAIT, "etcd to be killed on drop", || async { (!process::is_running(third)).then_some(()) })
        .await
        .unwrap();
}
