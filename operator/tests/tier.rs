//! Rollout groups and budgets (`spec.rollout`) through the whole reconciler, against the in-memory store and fake
//! hosts: how many units are being replaced at once, a failure halting a tier, and a retry resuming it.
//!
//! "Being replaced" is seen from the hosts, as a person would: a unit whose host shows not exactly one running
//! container of its role (the old one stopped, or old and new side by side). A sampler looks at every host
//! each millisecond; the fakes answer each call after 5 ms, so a replacement lasts tens of samples.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ballast_operator::aws::{AwsError, NoAws, ResolvedSecrets, SecretSource};
use ballast_operator::hosts::fake::{FakeConnector, FakeHost};
use ballast_operator::hosts::{Container, ContainerState, HostPool};
use ballast_operator::labels;
use ballast_operator::reconcile::{Config, Context};
use ballast_operator::runtime::{self, RuntimeConfig};
use ballast_operator::store::memory::MemoryStore;
use ballast_operator::store::{Actor, SpecStore};
use ballast_specs::wire::{UnitState, UnitStatus};
use ballast_specs::{Object, Role};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const V1: &str = "registry.test/app:v1";
const V2: &str = "registry.test/app:v2";
/// Not in the registry until a test publishes it: its pull fails.
const V3: &str = "registry.test/app:v3";
const BAD: &str = "registry.test/app:bad";

#[tokio::test]
async fn a_tier_of_two_roles_never_has_both_replaced_at_once() {
    let rig = Rig::start(2).await;
    rig.apply(vec![web("web", "h1", Some("web")), web("web_replica", "h2", Some("web"))]).await;
    let units = [("web", "h1"), ("web_replica", "h2")];
    rig.converged(&units).await;

    // An image change of both roles, stored back to back.
    let sampler = rig.sample(&units);
    for role in ["web", "web_replica"] {
        rig.update(role, |r| r.spec.image = V2.into()).await;
    }
    rig.converged(&units).await;
    let peak = sampler.stop().await;
    assert_eq!(peak, 1, "at most one unit of the tier replaced at any sample");
    assert_eq!(
        (only(&rig.host("h1"), "web").image, only(&rig.host("h2"), "web_replica").image),
        (V2.into(), V2.into())
    );

    // A secret rotation: the value changes under both roles at once, no spec changes.
    let before = (only(&rig.host("h1"), "web").id, only(&rig.host("h2"), "web_replica").id);
    let sampler = rig.sample(&units);
    rig.secrets.rotate();
    rig.wait("both replaced with the new value", |_| {
        let now = (only_maybe(&rig.host("h1"), "web"), only_maybe(&rig.host("h2"), "web_replica"));
        matches!(now, (Some(a), Some(b)) if a.id != before.0 && b.id != before.1
            && a.state == ContainerState::Running && b.state == ContainerState::Running)
    })
    .await;
    rig.converged(&units).await;
    assert_eq!(sampler.stop().await, 1, "a rotation rolls the tier one unit at a time too");
    rig.stop().await;
}

#[tokio::test]
async fn roles_without_a_group_roll_side_by_side() {
    // What the tier prevents, and proof that the sampler sees two replacements at once when they happen.
    let rig = Rig::start(2).await;
    rig.apply(vec![web("web", "h1", None), web("web_replica", "h2", None)]).await;
    let units = [("web", "h1"), ("web_replica", "h2")];
    rig.converged(&units).await;
    let sampler = rig.sample(&units);
    for role in ["web", "web_replica"] {
        rig.update(role, |r| r.spec.image = V2.into()).await;
    }
    rig.converged(&units).await;
    assert_eq!(sampler.stop().await, 2);
    rig.stop().await;
}

#[tokio::test]
async fn max_unavailable_replaces_that_many_at_once() {
    let rig = Rig::start(6).await;
    let hosts = ["h1", "h2", "h3", "h4", "h5", "h6"];
    rig.apply(vec![role("api", &hosts, V1, json!({"maxUnavailable": 2}))]).await;
    let units: Vec<(&str, &str)> = hosts.iter().map(|h| ("api", *h)).collect();
    rig.converged(&units).await;

    let sampler = rig.sample(&units);
    rig.update("api", |r| r.spec.image = V2.into()).await;
    rig.converged(&units).await;
    assert_eq!(sampler.stop().await, 2, "two of six at once");

    // Half of six: three at once. Changing the budget alone replaces nothing.
    let creates = rig.creates(&hosts);
    rig.update("api", |r| r.spec.rollout.max_unavailable = Some(ballast_specs::MaxUnavailable::Percent(50)))
        .await;
    rig.converged(&units).await;
    assert_eq!(rig.creates(&hosts), creates, "a new budget is no reason to replace anything");
    let sampler = rig.sample(&units);
    rig.update("api", |r| r.spec.image = V1.into()).await;
    rig.converged(&units).await;
    assert_eq!(sampler.stop().await, 3, "50% of six at once");
    rig.stop().await;
}

#[tokio::test]
async fn a_percentage_is_of_the_whole_group() {
    // Two roles of three hosts in one group at 50%: three units of the six at once, whichever role they are of.
    let rig = Rig::start(3).await;
    let hosts = ["h1", "h2", "h3"];
    let budget = json!({"group": "api", "maxUnavailable": "50%"});
    rig.apply(vec![role("api", &hosts, V1, budget.clone()), role("api_admin", &hosts, V1, budget)]).await;
    let units: Vec<(&str, &str)> = hosts.iter().flat_map(|h| [("api", *h), ("api_admin", *h)]).collect();
    rig.converged(&units).await;
    let sampler = rig.sample(&units);
    for name in ["api", "api_admin"] {
        rig.update(name, |r| r.spec.image = V2.into()).await;
    }
    rig.converged(&units).await;
    assert_eq!(sampler.stop().await, 3);
    rig.stop().await;
}

#[tokio::test]
async fn a_failure_halts_the_tier_until_its_role_is_retried() {
    let rig = Rig::start(2).await;
    rig.apply(vec![web("web", "h1", Some("web")), web("web_replica", "h2", Some("web"))]).await;
    let units = [("web", "h1"), ("web_replica", "h2")];
    rig.converged(&units).await;

    // web's new image cannot be pulled on h1: its rollout fails there.
    rig.update("web", |r| r.spec.image = V3.into()).await;
    rig.wait("web failed", |s| unit(s, "web", "h1").is_some_and(|s| s.state == UnitState::Failed)).await;
    let h2 = rig.host("h2");
    let (creates, old) = (h2.calls("create"), only(&h2, "web_replica"));

    // The other role of the tier starts no replacement, and says where and why.
    rig.update("web_replica", |r| r.spec.image = V2.into()).await;
    let statuses = rig
        .wait("web_replica halted", |s| {
            unit(s, "web_replica", "h2").is_some_and(|s| s.state == UnitState::Failed && s.generation == 2)
        })
        .await;
    let halted = unit(&statuses, "web_replica", "h2").unwrap();
    let failed = unit(&statuses, "web", "h1").unwrap();
    assert!(failed.message.contains("manifest unknown"), "{}", failed.message);
    assert_eq!(
        halted.message,
        format!(
            "halted: the rollout of web failed on h1: {}; `ballast rollout retry web` tries it again",
            failed.message
        )
    );
    tokio::time::sleep(Duration::from_millis(700)).await; // two resyncs
    assert_eq!(h2.calls("create"), creates, "nothing was tried on h2");
    assert_eq!(only(&h2, "web_replica").id, old.id);
    assert_eq!(only(&rig.host("h1"), "web").image, V1, "web still runs the old image");

    // The image appears; `rollout retry web` resumes the tier: web rolls, then web_replica.
    rig.host("h1").publish_image(V3);
    let mut control = rig.store.get_control("web").await.unwrap();
    control.retry += 1;
    rig.store.put_control("web", &control).await.unwrap();
    rig.converged(&units).await;
    assert_eq!((only(&rig.host("h1"), "web").image, only(&h2, "web_replica").image), (V3.into(), V2.into()));
    rig.stop().await;
}

#[tokio::test]
async fn a_failure_on_one_host_keeps_the_hosts_that_rolled_meanwhile() {
    // Two at once: h1 rolls to v2, h2 fails it. h1 keeps v2 running; nothing is rolled back or removed there.
    let rig = Rig::start(2).await;
    rig.host("h2").set_unhealthy(V2);
    rig.apply(vec![role("api", &["h1", "h2"], V1, json!({"maxUnavailable": 2}))]).await;
    rig.converged(&[("api", "h1"), ("api", "h2")]).await;
    rig.update("api", |r| r.spec.image = V2.into()).await;
    rig.wait("h2 failed", |s| unit(s, "api", "h2").is_some_and(|s| s.state == UnitState::Failed)).await;
    tokio::time::sleep(Duration::from_millis(700)).await; // two resyncs
    let (h1, h2) = (only(&rig.host("h1"), "api"), only(&rig.host("h2"), "api"));
    assert_eq!((h1.image.as_str(), h1.state), (V2, ContainerState::Running), "h1 keeps what worked");
    assert_eq!((h2.image.as_str(), h2.state), (V1, ContainerState::Running), "h2 is back on v1");
    let statuses = rig.store.list_status().await.unwrap();
    assert_eq!(unit(&statuses, "api", "h1").map(|s| s.state), Some(UnitState::Converged));
    rig.stop().await;
}

struct Rig {
    store: Arc<MemoryStore>,
    hosts: FakeConnector,
    secrets: Arc<RotatingSecrets>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Rig {
    /// The reconciler running over `n` fake hosts `h1`..`hn` (each call answered after 5 ms), with `h1`..`hn` stored.
    async fn start(n: usize) -> Rig {
        let store = Arc::new(MemoryStore::new());
        let hosts = FakeConnector::with_latency(Duration::from_millis(5));
        let names: Vec<String> = (1..=n).map(|i| format!("h{i}")).collect();
        for name in &names {
            let host = hosts.host(name);
            for image in [V1, V2, BAD] {
                host.publish_image(image);
            }
            host.set_unhealthy(BAD);
        }
        let secrets = Arc::new(RotatingSecrets::default());
        let ctx = Context::new(
            store.clone(),
            Arc::new(HostPool::new(Arc::new(hosts.clone()))),
            secrets.clone(),
            Arc::new(NoAws),
            Config {
                stop_grace: Duration::from_millis(10),
                settle: Duration::from_millis(30),
                max_passes: 6,
                proxy: Default::default(),
            },
        );
        let config = RuntimeConfig {
            resync: Duration::from_millis(300),
            retry_min: Duration::from_millis(50),
            retry_max: Duration::from_millis(400),
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(runtime::run(Arc::new(ctx), config, shutdown.clone()));
        let rig = Rig { store, hosts, secrets, shutdown, task };
        rig.apply(names.iter().map(|n| host(n)).collect()).await;
        rig
    }

    fn host(&self, name: &str) -> FakeHost {
        self.hosts.host(name)
    }

    async fn apply(&self, objects: Vec<Object>) {
        self.store.apply(objects, false, &Actor("test".into())).await.expect("apply");
    }

    async fn update(&self, name: &str, change: impl FnOnce(&mut Role)) {
        let mut role = self.store.get_role(name).await.unwrap().expect("role exists");
        change(&mut role);
        self.store.update_role(role, &Actor("test".into())).await.expect("update");
    }

    fn creates(&self, hosts: &[&str]) -> u64 {
        hosts.iter().map(|h| self.host(h).calls("create")).sum()
    }

    /// Waits until `check` holds on the statuses (10 s at most), and returns them.
    async fn wait(&self, what: &str, check: impl Fn(&[UnitStatus]) -> bool) -> Vec<UnitStatus> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let statuses = self.store.list_status().await.unwrap();
            if check(&statuses) {
                return statuses;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; statuses: {statuses:#?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until every listed unit is Converged at its role's current generation.
    async fn converged(&self, units: &[(&str, &str)]) {
        let mut generations = Vec::new();
        for (role, _) in units {
            generations.push(self.store.get_role(role).await.unwrap().unwrap().metadata.generation);
        }
        self.wait("convergence", |statuses| {
            units.iter().zip(&generations).all(|((role, host), generation)| {
                unit(statuses, role, host)
                    .is_some_and(|s| s.state == UnitState::Converged && s.observed_generation == *generation)
            })
        })
        .await;
    }

    /// Starts counting, every millisecond, the units being replaced (see the file's `//!`).
    fn sample(&self, units: &[(&str, &str)]) -> Sampler {
        let hosts: Vec<(String, FakeHost)> =
            units.iter().map(|(role, host)| (role.to_string(), self.host(host))).collect();
        let (peak, done) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let task = {
            let (peak, done) = (peak.clone(), done.clone());
            tokio::spawn(async move {
                while !done.load(Ordering::SeqCst) {
                    let replaced = hosts.iter().filter(|(role, host)| being_replaced(host, role)).count();
                    peak.fetch_max(replaced, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        };
        Sampler { peak, done, task }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }
}

/// Counts units being replaced until stopped.
struct Sampler {
    peak: Arc<AtomicUsize>,
    done: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// The most units seen being replaced at one sample.
    async fn stop(self) -> usize {
        self.done.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        self.peak.load(Ordering::SeqCst)
    }
}

/// Not exactly one running container of `role` on the host: the old one is stopped, or old and new coexist.
fn being_replaced(host: &FakeHost, role: &str) -> bool {
    let containers = of_role(host, role);
    containers.len() != 1 || containers[0].state != ContainerState::Running
}

/// Secret values that change when [`RotatingSecrets::rotate`] is called (a rotation in Secrets Manager).
#[derive(Default)]
struct RotatingSecrets {
    version: Mutex<u32>,
}

impl RotatingSecrets {
    fn rotate(&self) {
        *self.version.lock().unwrap() += 1;
    }
}

#[async_trait::async_trait]
impl SecretSource for RotatingSecrets {
    async fn resolve(&self, _source: &str, keys: &[String]) -> Result<ResolvedSecrets, AwsError> {
        let version = *self.version.lock().unwrap();
        let env = keys.iter().map(|k| (k.clone(), format!("{k} version {version}"))).collect();
        Ok(ResolvedSecrets { env, hmac: format!("hmac of version {version}") })
    }

    fn invalidate(&self, _source: &str) {}
}

fn host(name: &str) -> Object {
    serde_json::from_value(json!({
        "kind": "Host", "apiVersion": "ballast/v1", "metadata": {"name": name},
        "spec": {"address": format!("{name}.test")}
    }))
    .unwrap()
}

/// A web role on one host: a health check, a secret, and a rollout group if given.
fn web(name: &str, on: &str, group: Option<&str>) -> Object {
    let rollout = match group {
        Some(group) => json!({"group": group}),
        None => json!({}),
    };
    let mut object = role(name, &[on], V1, rollout);
    if let Object::Role(role) = &mut object {
        role.metadata.labels.insert("app".into(), "datalake".into());
        role.spec.secrets = Some(ballast_specs::Secrets {
            source: "aws-secretsmanager:data-lake/prod".into(),
            keys: vec!["SECRET_KEY_BASE".into()],
        });
    }
    object
}

/// A role with a health check on `hosts`, with `rollout` as its `spec.rollout`.
fn role(name: &str, hosts: &[&str], image: &str, rollout: serde_json::Value) -> Object {
    serde_json::from_value(json!({
        "kind": "Role", "apiVersion": "ballast/v1", "metadata": {"name": name},
        "spec": {
            "hosts": hosts, "image": image, "deployTimeout": "2s", "rollout": rollout,
            "health": {"http": {"path": "/up", "port": 3000}, "interval": "100ms", "timeout": "1s"},
        }
    }))
    .unwrap()
}

fn unit<'a>(statuses: &'a [UnitStatus], role: &str, host: &str) -> Option<&'a UnitStatus> {
    statuses.iter().find(|s| s.role == role && s.host == host)
}

fn of_role(host: &FakeHost, role: &str) -> Vec<Container> {
    host.containers()
        .into_iter()
        .filter(|c| c.labels.get(labels::ROLE).map(String::as_str) == Some(role))
        .collect()
}

fn only_maybe(host: &FakeHost, role: &str) -> Option<Container> {
    let containers = of_role(host, role);
    (containers.len() == 1).then(|| containers.into_iter().next().unwrap())
}

fn only(host: &FakeHost, role: &str) -> Container {
    only_maybe(host, role)
        .unwrap_or_else(|| panic!("one {role} container expected: {:#?}", of_role(host, role)))
}
