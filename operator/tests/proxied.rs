//! Proxied roles through the whole reconciler (event loop, host passes, the proxy's own unit, rollouts behind it)
//! against the in-memory store and fake hosts. A fake host's container on the host's network stands in for the
//! proxy's admin API (it keeps the config it is given); the real Caddy runs in `e2e/tests/proxy.rs`.

use std::sync::Arc;
use std::time::Duration;

use ballast_operator::aws::NoAws;
use ballast_operator::hosts::fake::{FakeConnector, FakeHost};
use ballast_operator::hosts::{Container, ContainerState, HostPool, HOST_NETWORK};
use ballast_operator::labels;
use ballast_operator::proxy::{self, Settings};
use ballast_operator::reconcile::{Config, Context};
use ballast_operator::runtime::{self, RuntimeConfig};
use ballast_operator::store::memory::MemoryStore;
use ballast_operator::store::{Actor, SpecStore};
use ballast_specs::wire::{UnitState, UnitStatus};
use ballast_specs::Object;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const V1: &str = "registry.test/app:v1";
const V2: &str = "registry.test/app:v2";
const BAD: &str = "registry.test/app:bad";
const CADDY: &str = "registry.test/caddy:2";
const ADMIN: u16 = 2019;

struct Rig {
    store: Arc<MemoryStore>,
    hosts: FakeConnector,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Rig {
    async fn start() -> Rig {
        let store = Arc::new(MemoryStore::new());
        let hosts = FakeConnector::default();
        let host = hosts.host("h1");
        for image in [V1, V2, BAD, CADDY] {
            host.publish_image(image);
        }
        host.set_unhealthy(BAD);
        let config = Config {
            stop_grace: Duration::from_millis(10),
            settle: Duration::from_millis(30),
            max_passes: 6,
            proxy: Settings { image: CADDY.to_string(), admin_port: ADMIN },
        };
        let ctx = Context::new(
            store.clone(),
            Arc::new(HostPool::new(Arc::new(hosts.clone()))),
            Arc::new(NoAws),
            Arc::new(NoAws),
            config,
        );
        let timing = RuntimeConfig {
            resync: Duration::from_millis(300),
            retry_min: Duration::from_millis(50),
            retry_max: Duration::from_millis(400),
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(runtime::run(Arc::new(ctx), timing, shutdown.clone()));
        let rig = Rig { store, hosts, shutdown, task };
        rig.apply(vec![object(
            json!({"kind": "Host", "metadata": {"name": "h1"}, "spec": {"address": "h1.test"}}),
        )])
        .await;
        rig
    }

    fn h1(&self) -> FakeHost {
        self.hosts.host("h1")
    }

    async fn apply(&self, objects: Vec<Object>) {
        self.store.apply(objects, false, &Actor("test".into())).await.expect("apply");
    }

    /// Waits until `check` holds, or fails saying what was awaited and what the statuses were.
    async fn until<T>(&self, what: &str, check: impl Fn(&Rig, &[UnitStatus]) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let statuses = self.store.list_status().await.unwrap();
            if let Some(found) = check(self, &statuses) {
                return found;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; statuses: {statuses:#?}\ncontainers: {:#?}",
                    self.h1().containers()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until web on h1 is converged at `generation` and the proxy routes it to its only container.
    async fn served(&self, generation: u64) -> Container {
        self.until("web converged and routed", |rig, statuses| {
            let status = statuses.iter().find(|s| s.role == "web" && s.host == "h1")?;
            let web = only(&rig.h1(), "web")?;
            let converged = status.state == UnitState::Converged && status.observed_generation == generation;
            (converged && routed(&rig.h1()).as_deref() == Some(web.id.as_str())).then_some(web)
        })
        .await
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }
}

fn object(mut value: serde_json::Value) -> Object {
    value["apiVersion"] = json!("ballast/v1");
    serde_json::from_value(value).unwrap()
}

/// web on h1, served by the proxy on port 80 (health on 3000, a 1 s drain).
fn web(image: &str) -> Object {
    object(json!({
        "kind": "Role", "metadata": {"name": "web"},
        "spec": {
            "hosts": ["h1"], "image": image, "deployTimeout": "2s",
            "health": {"http": {"path": "/up", "port": 3000}, "interval": "100ms", "timeout": "1s"},
            "proxy": {"port": 80, "drainTimeout": "1s"},
        }
    }))
}

fn of_role(host: &FakeHost, role: &str) -> Vec<Container> {
    host.containers()
        .into_iter()
        .filter(|c| c.labels.get(labels::ROLE).map(String::as_str) == Some(role))
        .collect()
}

fn only(host: &FakeHost, role: &str) -> Option<Container> {
    let mut containers = of_role(host, role);
    (containers.len() == 1).then(|| containers.remove(0))
}

/// The web container the proxy sends web's requests to, when its config serves web: the one whose address is in
/// web's upstream file.
fn routed(host: &FakeHost) -> Option<String> {
    let config: serde_json::Value = serde_json::from_slice(&host.loaded()?).ok()?;
    proxy::read(&config, ADMIN)?.routes.of("web")?;
    let proxy = only(host, labels::PROXY_ROLE)?;
    let address = String::from_utf8(host.file(&proxy.id, &proxy::upstream_file("web"))?).ok()?;
    let web = of_role(host, "web")
        .into_iter()
        .find(|c| c.ip.as_ref().map(|ip| format!("{ip}:3000")) == Some(address.clone()))?;
    Some(web.id)
}

#[tokio::test]
async fn a_proxied_role_is_served_by_a_proxy_and_publishes_nothing() {
    let rig = Rig::start().await;
    rig.apply(vec![web(V1)]).await;
    let web = rig.served(1).await;

    let proxy = only(&rig.h1(), labels::PROXY_ROLE).expect("one proxy container");
    assert_eq!(proxy.state, ContainerState::Running);
    let proxy_config = rig.h1().config_of(&proxy.id).unwrap();
    assert_eq!((proxy_config.image.as_str(), proxy_config.network.as_deref()), (CADDY, Some(HOST_NETWORK)));
    let web_config = rig.h1().config_of(&web.id).unwrap();
    assert_eq!(web_config.network.as_deref(), Some(proxy::NETWORK));
    assert!(web_config.ports.is_empty(), "a proxied role publishes nothing");
    assert_eq!(rig.h1().networks(), [proxy::NETWORK]);
    let status = rig.store.list_status().await.unwrap().into_iter().find(|s| s.role == "web").unwrap();
    let shown = status.proxy.expect("a proxied unit shows its proxy");
    assert_eq!((shown.port, shown.routes_to.as_str()), (80, &web.id[..12]));
    assert!(
        !rig.store.list_status().await.unwrap().iter().any(|s| s.role == labels::PROXY_ROLE),
        "the proxy has no status of its own"
    );
    rig.stop().await;
}

#[tokio::test]
async fn an_image_change_switches_the_proxy_then_retires_the_old_container() {
    let rig = Rig::start().await;
    rig.apply(vec![web(V1)]).await;
    let v1 = rig.served(1).await;
    rig.apply(vec![web(V2)]).await;
    let v2 = rig.served(2).await;
    assert_eq!(v2.image, V2);
    assert!(!rig.h1().containers().iter().any(|c| c.id == v1.id), "the old container is gone");
    let events = rig.store.list_events().await.unwrap();
    let reasons: Vec<&str> =
        events.iter().filter(|e| e.role.as_deref() == Some("web")).map(|e| e.reason.as_str()).collect();
    let at = |reason: &str| {
        reasons.iter().rposition(|r| *r == reason).unwrap_or_else(|| panic!("no {reason}: {reasons:?}"))
    };
    assert!(at("Launched") < at("Switched") && at("Switched") < at("Retired"), "in order: {reasons:?}");
    rig.stop().await;
}

#[tokio::test]
async fn a_failed_rollout_never_switches_and_the_old_container_serves_on() {
    let rig = Rig::start().await;
    rig.apply(vec![web(V1)]).await;
    let v1 = rig.served(1).await;
    rig.apply(vec![web(BAD)]).await;
    rig.until("web failed", |_, statuses| {
        statuses
            .iter()
            .any(|s| s.role == "web" && s.state == UnitState::Failed && s.failed.is_some())
            .then_some(())
    })
    .await;
    assert_eq!(routed(&rig.h1()).as_deref(), Some(v1.id.as_str()), "the proxy still routes to v1");
    let left = of_role(&rig.h1(), "web");
    assert_eq!(left.len(), 1, "the failed container is removed: {left:#?}");
    assert_eq!((left[0].id.as_str(), left[0].state), (v1.id.as_str(), ContainerState::Running));
    rig.stop().await;
}

#[tokio::test]
async fn a_proxy_removed_by_hand_comes_back_with_its_routes_and_goes_with_the_last_proxied_role() {
    let rig = Rig::start().await;
    rig.apply(vec![web(V1)]).await;
    let v1 = rig.served(1).await;
    let proxy = only(&rig.h1(), labels::PROXY_ROLE).unwrap();
    rig.h1().remove_out_of_band(&proxy.id);
    rig.until("a new proxy routing to v1", |rig, _| {
        let new = only(&rig.h1(), labels::PROXY_ROLE)?;
        (new.id != proxy.id && routed(&rig.h1()).as_deref() == Some(v1.id.as_str())).then_some(())
    })
    .await;

    rig.store.delete_role("web", &Actor("test".into())).await.unwrap();
    rig.until("no container left", |rig, _| rig.h1().containers().is_empty().then_some(())).await;
    rig.stop().await;
}
