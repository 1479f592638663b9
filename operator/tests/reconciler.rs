//! The whole reconciler (event loop, host passes, rollouts) against the in-memory store and fake hosts:
//! fast tests of behaviour above the edges. The same behaviours run on real hosts in `e2e/`.

use std::sync::Arc;
use std::time::Duration;

use ballast_operator::aws::{AwsError, NoAws, ResolvedSecrets, SecretSource};
use ballast_operator::hosts::fake::{FakeConnector, FakeHost};
use ballast_operator::hosts::{Container, ContainerState, HostPool};
use ballast_operator::labels;
use ballast_operator::reconcile::{self, Config, Context, Preview, Specs};
use ballast_operator::runtime::{self, RuntimeConfig};
use ballast_operator::store::memory::MemoryStore;
use ballast_operator::store::{Actor, SpecStore};
use ballast_specs::wire::{UnitState, UnitStatus};
use ballast_specs::{Object, Role};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const V1: &str = "registry.test/app:v1";
const V2: &str = "registry.test/app:v2";
const BAD: &str = "registry.test/app:bad";

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
        for h in ["h1", "h2"] {
            let host = hosts.host(h);
            for image in [V1, V2, BAD] {
                host.publish_image(image);
            }
            host.set_unhealthy(BAD);
        }
        let ctx = Context::new(
            store.clone(),
            Arc::new(HostPool::new(Arc::new(hosts.clone()))),
            Arc::new(NoAws),
            Arc::new(NoAws),
            Config {
                stop_grace: Duration::from_millis(10),
                settle: Duration::from_millis(30),
                max_passes: 6,
                ..Config::default()
            },
        );
        let config = RuntimeConfig {
            resync: Duration::from_millis(300),
            retry_min: Duration::from_millis(50),
            retry_max: Duration::from_millis(400),
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(runtime::run(Arc::new(ctx), config, shutdown.clone()));
        let rig = Rig { store, hosts, shutdown, task };
        rig.apply(vec![host("h1"), host("h2")]).await;
        rig
    }

    fn host(&self, name: &str) -> FakeHost {
        self.hosts.host(name)
    }

    async fn apply(&self, objects: Vec<Object>) {
        self.store.apply(objects, false, &Actor("test".into())).await.expect("apply");
    }

    async fn role(&self, name: &str) -> Role {
        self.store.get_role(name).await.unwrap().expect("role exists")
    }

    async fn update(&self, name: &str, change: impl FnOnce(&mut Role)) {
        let mut role = self.role(name).await;
        change(&mut role);
        self.store.update_role(role, &Actor("test".into())).await.expect("update");
    }

    /// Waits until `check` holds on the statuses, or fails with what they were.
    async fn wait_status(&self, what: &str, check: impl Fn(&[UnitStatus]) -> bool) -> Vec<UnitStatus> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let statuses = self.store.list_status().await.unwrap();
            if check(&statuses) {
                return statuses;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {what}; statuses: {statuses:#?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until every listed unit is Converged at its role's current generation.
    async fn converged(&self, units: &[(&str, &str)]) -> Vec<UnitStatus> {
        let mut generations = Vec::new();
        for (role, _) in units {
            generations.push(self.role(role).await.metadata.generation);
        }
        self.wait_status("convergence", |statuses| {
            units.iter().zip(&generations).all(|((role, host), generation)| {
                statuses.iter().any(|s| {
                    s.role == *role
                        && s.host == *host
                        && s.state == UnitState::Converged
                        && s.observed_generation == *generation
                })
            })
        })
        .await
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }
}

fn host(name: &str) -> Object {
    serde_json::from_value(json!({
        "kind": "Host", "apiVersion": "ballast/v1", "metadata": {"name": name},
        "spec": {"address": format!("{name}.test")}
    }))
    .unwrap()
}

fn role(name: &str, hosts: &[&str], image: &str, resources: serde_json::Value, health: bool) -> Object {
    let mut spec = json!({
        "hosts": hosts, "image": image, "resources": resources,
        "env": {"RAILS_ENV": "production"}, "deployTimeout": "2s",
    });
    if health {
        spec["health"] = json!({"http": {"path": "/up", "port": 3000}, "interval": "100ms", "timeout": "1s"});
        spec["ports"] = json!(["3000:3000"]);
    }
    serde_json::from_value(json!({
        "kind": "Role", "apiVersion": "ballast/v1", "metadata": {"name": name}, "spec": spec
    }))
    .unwrap()
}

/// The seed's three roles on two hosts.
fn datalake() -> Vec<Object> {
    vec![
        role("web", &["h1"], V1, json!({"cpus": 1.5, "memory": "1.75g"}), true),
        role("web_replica", &["h2"], V1, json!({"memory": "2g"}), true),
        role("job", &["h1"], V1, json!({"cpus": 0.25, "memory": "512m"}), false),
    ]
}

fn of_role(host: &FakeHost, role: &str) -> Vec<Container> {
    host.containers()
        .into_iter()
        .filter(|c| c.labels.get(labels::ROLE).map(String::as_str) == Some(role))
        .collect()
}

fn only(host: &FakeHost, role: &str) -> Container {
    let containers = of_role(host, role);
    assert_eq!(containers.len(), 1, "one {role} container expected: {containers:#?}");
    containers.into_iter().next().unwrap()
}

#[tokio::test]
async fn converges_the_datalake_roles_with_their_limits() {
    let rig = Rig::start().await;
    let foreign = rig.host("h1").add_unlabelled("someone-elses", "other:1");
    rig.apply(datalake()).await;
    let statuses = rig.converged(&[("web", "h1"), ("web_replica", "h2"), ("job", "h1")]).await;

    let web = only(&rig.host("h1"), "web");
    assert_eq!((web.image.as_str(), web.nano_cpus, web.memory), (V1, 1_500_000_000, 1792 << 20));
    assert_eq!(web.state, ContainerState::Running);
    let config = rig.host("h1").config_of(&web.id).unwrap();
    assert_eq!(config.env, vec![("RAILS_ENV".to_string(), "production".to_string())]);
    assert_eq!(config.ports.len(), 1);
    let job = only(&rig.host("h1"), "job");
    assert_eq!((job.nano_cpus, job.memory), (250_000_000, 512 << 20));
    let replica = only(&rig.host("h2"), "web_replica");
    assert_eq!((replica.nano_cpus, replica.memory), (0, 2 << 30));
    assert!(of_role(&rig.host("h2"), "web").is_empty(), "web is not wanted on h2");

    let web_status = statuses.iter().find(|s| s.role == "web").unwrap();
    assert_eq!(web_status.cpus, Some(1.5));
    assert_eq!(web_status.memory.as_deref(), Some("1.75g"));
    assert_eq!(web_status.image, V1);
    assert!(rig.host("h1").containers().iter().any(|c| c.id == foreign), "unlabelled container untouched");
    rig.stop().await;
}

#[tokio::test]
async fn image_change_rolls_and_removes_the_old_container() {
    let rig = Rig::start().await;
    rig.apply(datalake()).await;
    rig.converged(&[("web", "h1")]).await;
    let old = only(&rig.host("h1"), "web");

    rig.update("web", |r| r.spec.image = V2.into()).await;
    rig.converged(&[("web", "h1")]).await;
    let new = only(&rig.host("h1"), "web");
    assert_ne!(new.id, old.id);
    assert_eq!(new.image, V2);
    let events = rig.store.list_events().await.unwrap();
    assert!(
        events.iter().any(|e| e.reason == "Replaced" && e.message.contains(&format!("image {V1} → {V2}"))),
        "{events:#?}"
    );
    rig.stop().await;
}

#[tokio::test]
async fn out_of_band_removal_is_replaced_and_memory_is_restored_in_place() {
    let rig = Rig::start().await;
    rig.apply(datalake()).await;
    rig.converged(&[("web", "h1"), ("job", "h1")]).await;
    let h1 = rig.host("h1");

    let job = only(&h1, "job");
    h1.remove_out_of_band(&job.id);
    rig.wait_status("job replaced", |_| {
        of_role(&h1, "job").iter().any(|c| c.state == ContainerState::Running)
    })
    .await;
    rig.converged(&[("job", "h1")]).await;

    let web = only(&h1, "web");
    let starts = h1.starts_of(&web.id);
    h1.update_out_of_band(&web.id, web.nano_cpus, 1 << 30);
    rig.wait_status("memory restored", |_| only(&h1, "web").memory == 1792 << 20).await;
    let after = only(&h1, "web");
    assert_eq!(after.id, web.id, "same container");
    assert_eq!(h1.starts_of(&web.id), starts, "not restarted");
    let events = rig.store.list_events().await.unwrap();
    assert!(
        events.iter().any(|e| e.reason == "ResourcesRestored" && e.message.contains("was 1g")),
        "{events:#?}"
    );
    rig.stop().await;
}

#[tokio::test]
async fn stopped_container_is_started_again() {
    let rig = Rig::start().await;
    rig.apply(datalake()).await;
    rig.converged(&[("job", "h1")]).await;
    let h1 = rig.host("h1");
    let job = only(&h1, "job");
    h1.stop_out_of_band(&job.id);
    rig.wait_status("job running", |_| only(&h1, "job").state == ContainerState::Running).await;
    assert_eq!(only(&h1, "job").id, job.id);
    rig.stop().await;
}

#[tokio::test]
async fn failed_rollout_keeps_the_old_container_and_recovers_when_fixed() {
    let rig = Rig::start().await;
    rig.apply(datalake()).await;
    rig.converged(&[("web", "h1")]).await;
    let h1 = rig.host("h1");
    let old = only(&h1, "web");

    // An image that never gets healthy.
    rig.update("web", |r| r.spec.image = BAD.into()).await;
    let statuses = rig
        .wait_status("web failed", |s| s.iter().any(|s| s.role == "web" && s.state == UnitState::Failed))
        .await;
    let web = statuses.iter().find(|s| s.role == "web").unwrap();
    assert!(web.message.contains("not healthy within deployTimeout 2s"), "{}", web.message);
    let now = only(&h1, "web");
    assert_eq!((now.id.as_str(), now.state), (old.id.as_str(), ContainerState::Running), "old one back");

    // It stays halted: nothing new is tried on later passes.
    let creates = h1.calls("create");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(h1.calls("create"), creates, "a failed rollout is not retried by itself");

    // A tag that does not exist.
    rig.update("web", |r| r.spec.image = "registry.test/app:nope".into()).await;
    let statuses = rig
        .wait_status("pull failure", |s| {
            s.iter().any(|s| s.role == "web" && s.state == UnitState::Failed && s.message.contains("pull"))
        })
        .await;
    assert!(statuses.iter().any(|s| s.message.contains("manifest unknown")), "{statuses:#?}");
    assert_eq!(only(&h1, "web").id, old.id);

    rig.update("web", |r| r.spec.image = V2.into()).await;
    rig.converged(&[("web", "h1")]).await;
    assert_eq!(only(&h1, "web").image, V2);
    rig.stop().await;
}

#[tokio::test]
async fn a_rollout_that_fails_on_one_host_halts_the_others_and_says_where() {
    let rig = Rig::start().await;
    rig.apply(vec![role("api", &["h1", "h2"], V1, json!({"memory": "256m"}), true)]).await;
    rig.converged(&[("api", "h1"), ("api", "h2")]).await;
    rig.update("api", |r| r.spec.image = BAD.into()).await;
    let statuses = rig
        .wait_status("both failed", |s| {
            s.iter().filter(|s| s.role == "api" && s.state == UnitState::Failed).count() == 2
                && s.iter().all(|s| !s.message.is_empty())
        })
        .await;
    // One host tried and failed; the other was never tried and names it.
    let (tried, halted): (Vec<&UnitStatus>, Vec<&UnitStatus>) =
        statuses.iter().filter(|s| s.role == "api").partition(|s| s.failed.is_some());
    assert_eq!((tried.len(), halted.len()), (1, 1), "{statuses:#?}");
    assert!(tried[0].message.contains("not healthy"), "{}", tried[0].message);
    let expected = format!("halted: the rollout failed on {}: {}", tried[0].host, tried[0].message);
    assert!(halted[0].message.starts_with(&expected), "{}", halted[0].message);
    assert!(halted[0].message.contains("ballast rollout retry api"), "{}", halted[0].message);
    assert_eq!(rig.host(&halted[0].host).calls("create"), 1, "the halted host was never tried");
    rig.stop().await;
}

#[tokio::test]
async fn a_removed_container_comes_back_without_waiting_for_another_hosts_rollout() {
    let rig = Rig::start().await;
    rig.apply(vec![role("api", &["h1", "h2"], V1, json!({"memory": "256m"}), true)]).await;
    rig.converged(&[("api", "h1"), ("api", "h2")]).await;
    // V2 never gets healthy: the first host to roll holds the role's rollout for its deployTimeout (2 s).
    for h in ["h1", "h2"] {
        rig.host(h).set_unhealthy(V2);
    }
    rig.update("api", |r| r.spec.image = V2.into()).await;
    let (rolling, waiting) = loop {
        if of_role(&rig.host("h1"), "api").len() == 2 {
            break (rig.host("h1"), rig.host("h2"));
        }
        if of_role(&rig.host("h2"), "api").len() == 2 {
            break (rig.host("h2"), rig.host("h1"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // The waiting host loses its container: it is created again at once, not after the other host's rollout.
    let creates = waiting.calls("create");
    waiting.remove_out_of_band(&only(&waiting, "api").id);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
    while waiting.calls("create") == creates {
        assert!(tokio::time::Instant::now() < deadline, "the removed container waited for the rollout");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(of_role(&rolling, "api").len(), 2, "the other host's rollout is still under way");
    rig.stop().await;
}

#[tokio::test]
async fn retry_tries_a_failed_rollout_again() {
    let rig = Rig::start().await;
    rig.apply(datalake()).await;
    rig.converged(&[("web", "h1")]).await;
    rig.update("web", |r| r.spec.image = BAD.into()).await;
    rig.wait_status("web failed", |s| s.iter().any(|s| s.role == "web" && s.state == UnitState::Failed))
        .await;
    let h1 = rig.host("h1");
    let creates = h1.calls("create");
    let mut control = rig.store.get_control("web").await.unwrap();
    control.retry += 1;
    rig.store.put_control("web", &control).await.unwrap();
    rig.wait_status("retried", |_| h1.calls("create") > creates).await;
    rig.wait_status("failed again", |s| {
        s.iter()
            .any(|s| s.role == "web" && s.state == UnitState::Failed && s.failed.as_ref().unwrap().retry == 1)
    })
    .await;
    rig.stop().await;
}

#[tokio::test]
async fn unreachable_host_is_reported_and_converges_when_back() {
    let rig = Rig::start().await;
    rig.host("h2").set_unreachable(true);
    rig.apply(datalake()).await;
    rig.converged(&[("web", "h1"), ("job", "h1")]).await;
    let statuses = rig
        .wait_status("h2 unreachable", |s| {
            s.iter().any(|s| s.host == "h2" && s.state == UnitState::Unreachable)
        })
        .await;
    assert!(statuses.iter().find(|s| s.host == "h2").unwrap().message.contains("unreachable"));

    rig.host("h2").set_unreachable(false);
    rig.converged(&[("web_replica", "h2")]).await;
    assert_eq!(of_role(&rig.host("h2"), "web_replica").len(), 1, "no duplicates");
    rig.stop().await;
}

#[tokio::test]
async fn pause_observes_only_and_resume_converges() {
    let rig = Rig::start().await;
    rig.apply(datalake()).await;
    rig.converged(&[("job", "h1")]).await;
    let mut control = rig.store.get_control("job").await.unwrap();
    control.paused = true;
    rig.store.put_control("job", &control).await.unwrap();
    rig.wait_status("paused", |s| s.iter().any(|s| s.role == "job" && s.state == UnitState::Paused)).await;

    let h1 = rig.host("h1");
    let job = only(&h1, "job");
    h1.remove_out_of_band(&job.id);
    rig.update("job", |r| r.spec.image = V2.into()).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(of_role(&h1, "job").is_empty(), "a paused role is never changed");

    control.paused = false;
    rig.store.put_control("job", &control).await.unwrap();
    rig.converged(&[("job", "h1")]).await;
    assert_eq!(only(&h1, "job").image, V2);
    rig.stop().await;
}

#[tokio::test]
async fn deleting_a_role_or_dropping_a_host_removes_containers() {
    let rig = Rig::start().await;
    let mut objects = datalake();
    objects.push(role("worker", &["h1", "h2"], V1, json!({}), false));
    rig.apply(objects).await;
    rig.converged(&[("job", "h1"), ("worker", "h1"), ("worker", "h2")]).await;

    rig.update("worker", |r| r.spec.hosts = vec!["h1".into()]).await;
    rig.wait_status("worker gone from h2", |s| !s.iter().any(|s| s.role == "worker" && s.host == "h2")).await;
    rig.wait_status("container gone", |_| of_role(&rig.host("h2"), "worker").is_empty()).await;
    assert_eq!(of_role(&rig.host("h1"), "worker").len(), 1);

    rig.store.delete_role("job", &Actor("test".into())).await.unwrap();
    rig.wait_status("job removed", |_| of_role(&rig.host("h1"), "job").is_empty()).await;
    assert_eq!(of_role(&rig.host("h1"), "web").len(), 1, "other roles untouched");
    rig.stop().await;
}

#[tokio::test]
async fn restart_replaces_every_container() {
    let rig = Rig::start().await;
    rig.apply(vec![role("worker", &["h1", "h2"], V1, json!({}), false)]).await;
    rig.converged(&[("worker", "h1"), ("worker", "h2")]).await;
    let before = (only(&rig.host("h1"), "worker").id, only(&rig.host("h2"), "worker").id);
    let mut control = rig.store.get_control("worker").await.unwrap();
    control.restart += 1;
    rig.store.put_control("worker", &control).await.unwrap();
    rig.wait_status("both replaced", |_| {
        let h1 = of_role(&rig.host("h1"), "worker");
        let h2 = of_role(&rig.host("h2"), "worker");
        h1.len() == 1 && h2.len() == 1 && h1[0].id != before.0 && h2[0].id != before.1
    })
    .await;
    rig.converged(&[("worker", "h1"), ("worker", "h2")]).await;
    rig.stop().await;
}

#[tokio::test]
async fn a_converged_fleet_costs_one_list_per_host_per_resync_and_no_writes() {
    let rig = Rig::start().await;
    rig.apply(datalake()).await;
    rig.converged(&[("web", "h1"), ("web_replica", "h2"), ("job", "h1")]).await;
    // Let the triggers of the convergence itself die down.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (h1, h2) = (rig.host("h1"), rig.host("h2"));
    let calls_before = (h1.total_calls(), h2.total_calls(), h1.calls("list"), h2.calls("list"));
    let statuses_before = rig.store.list_status().await.unwrap();
    let revision_before = rig.store.snapshot().await.unwrap().revision;
    tokio::time::sleep(Duration::from_millis(1_000)).await; // about three resyncs at 300 ms
    let lists = (h1.calls("list") - calls_before.2, h2.calls("list") - calls_before.3);
    let others = (h1.total_calls() - calls_before.0 - lists.0, h2.total_calls() - calls_before.1 - lists.1);
    assert!((2..=4).contains(&lists.0) && (2..=4).contains(&lists.1), "lists per host: {lists:?}");
    assert_eq!(others, (0, 0), "nothing but list calls on a converged host");
    assert_eq!(rig.store.list_status().await.unwrap(), statuses_before);
    assert_eq!(rig.store.snapshot().await.unwrap().revision, revision_before, "no store writes");
    rig.stop().await;
}

#[tokio::test]
async fn plan_preview_shows_what_would_be_done_without_doing_it() {
    let store = Arc::new(MemoryStore::new());
    let hosts = FakeConnector::default();
    let mut objects = vec![host("h1"), host("h2")];
    objects.extend(datalake());
    store.apply(objects, false, &Actor("test".into())).await.unwrap();
    let preview =
        Preview::new(store.clone(), Arc::new(HostPool::new(Arc::new(hosts.clone()))), Arc::new(NoAws));
    let plans = preview.plan(Some("job")).await.unwrap();
    assert_eq!(plans.len(), 1);
    assert_eq!((plans[0].role.as_str(), plans[0].host.as_str()), ("job", "h1"));
    assert_eq!(plans[0].actions, vec!["create (creating container)".to_string()]);
    assert!(hosts.host("h1").containers().is_empty(), "a preview changes nothing");
}

/// A secret source that answers fixed values and counts the invalidations it was asked for, by source.
#[derive(Default)]
struct CountingSecrets {
    invalidated: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl SecretSource for CountingSecrets {
    async fn resolve(&self, _source: &str, keys: &[String]) -> Result<ResolvedSecrets, AwsError> {
        let env = keys.iter().map(|k| (k.clone(), format!("value of {k}"))).collect();
        Ok(ResolvedSecrets { env, hmac: "fixed".to_string() })
    }

    fn invalidate(&self, source: &str) {
        self.invalidated.lock().unwrap().push(source.to_string());
    }
}

#[tokio::test]
async fn a_role_seen_at_a_new_generation_reads_its_secret_anew() {
    let store = Arc::new(MemoryStore::new());
    let secrets = Arc::new(CountingSecrets::default());
    let with_secrets = serde_json::from_value(json!({
        "kind": "Role", "apiVersion": "ballast/v1", "metadata": {"name": "job"},
        "spec": {"hosts": ["h1"], "image": V1,
                 "secrets": {"source": "aws-secretsmanager:data-lake/prod", "keys": ["DB_PASSWORD"]}}
    }))
    .unwrap();
    let objects = vec![host("h1"), with_secrets, role("plain", &["h1"], V1, json!({}), false)];
    store.apply(objects, false, &Actor("test".into())).await.unwrap();
    let ctx = Context::new(
        store.clone(),
        Arc::new(HostPool::new(Arc::new(FakeConnector::default()))),
        secrets.clone(),
        Arc::new(NoAws),
        Config::default(),
    );
    let invalidated = || secrets.invalidated.lock().unwrap().clone();
    let source = "aws-secretsmanager:data-lake/prod".to_string();

    // First sight, then the same generation again: one invalidation.
    for _ in 0..2 {
        reconcile::host_pass(&ctx, &Specs::new(store.snapshot().await.unwrap()), "h1").await.unwrap();
    }
    assert_eq!(invalidated(), vec![source.clone()]);

    // A spec change (a new generation) reads the secret anew, once.
    let mut job = store.get_role("job").await.unwrap().unwrap();
    job.spec.env.insert("NEW".into(), "1".into());
    store.update_role(job, &Actor("test".into())).await.unwrap();
    for _ in 0..2 {
        reconcile::host_pass(&ctx, &Specs::new(store.snapshot().await.unwrap()), "h1").await.unwrap();
    }
    assert_eq!(invalidated(), vec![source.clone(), source]);
}
