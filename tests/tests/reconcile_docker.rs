//! The reconciler in-process on a real etcd and the real local Docker engine, reached both directly (a `unix://`
//! host) and over SSH (a throwaway sshd on loopback forwarding to the same engine): convergence, drift, rollouts.
//!
//! Host names are unique per test, so the containers of tests running side by side never look like each other's.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use ballast_operator::aws::NoAws;
use ballast_operator::hosts::{HostPool, RealConnector};
use ballast_operator::reconcile::{Config, Context};
use ballast_operator::runtime::{self, RuntimeConfig};
use ballast_operator::store::etcd::EtcdStore;
use ballast_operator::store::{Actor, SpecStore};
use ballast_specs::wire::{UnitState, UnitStatus};
use ballast_specs::{Object, Role};
use ballast_tests::docker::HostCleanup;
use ballast_tests::docker::{self, docker, ensure_image, inspect_field, unique_name};
use ballast_tests::sshd::TestSshd;
use ballast_tests::wait::until;
use ballast_tests::TestEtcd;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const V1: &str = "ballast-test/app:v1";
const V2: &str = "ballast-test/app:v2";
const BAD: &str = "ballast-test/app:bad";
const WAIT: Duration = Duration::from_secs(60);

struct Operator {
    store: Arc<EtcdStore>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _etcd: TestEtcd,
}

impl Operator {
    async fn start(ssh: Option<&TestSshd>) -> Result<Operator> {
        let etcd = TestEtcd::start().await?;
        let store = Arc::new(EtcdStore::connect(&[etcd.endpoint()]).await?);
        let connector = RealConnector { ssh: ssh.map(|s| s.ssh_config()).unwrap_or_default() };
        let ctx = Context::new(
            store.clone(),
            Arc::new(HostPool::new(Arc::new(connector))),
            Arc::new(NoAws),
            Arc::new(NoAws),
            Config {
                stop_grace: Duration::from_secs(2),
                settle: Duration::from_millis(500),
                max_passes: 6,
                ..Config::default()
            },
        );
        let config = RuntimeConfig {
            resync: Duration::from_secs(2),
            retry_min: Duration::from_millis(200),
            retry_max: Duration::from_secs(2),
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(runtime::run(Arc::new(ctx), config, shutdown.clone()));
        Ok(Operator { store, shutdown, task, _etcd: etcd })
    }

    async fn apply(&self, objects: Vec<Object>) -> Result<()> {
        self.store.apply(objects, false, &Actor("test".into())).await?;
        Ok(())
    }

    async fn update(&self, name: &str, change: impl FnOnce(&mut Role)) -> Result<()> {
        let mut role = self.store.get_role(name).await?.expect("role exists");
        change(&mut role);
        self.store.update_role(role, &Actor("test".into())).await?;
        Ok(())
    }

    async fn status(
        &self,
        role: &str,
        host: &str,
        what: &str,
        check: impl Fn(&UnitStatus) -> bool,
    ) -> Result<UnitStatus> {
        let store = self.store.clone();
        until(WAIT, what, || {
            let store = store.clone();
            let check = &check;
            async move {
                let statuses = store.list_status().await.ok()?;
                statuses.into_iter().find(|s| s.role == role && s.host == host && check(s))
            }
        })
        .await
    }

    async fn converged(&self, role: &str, host: &str) -> Result<UnitStatus> {
        let generation = self.store.get_role(role).await?.expect("role").metadata.generation;
        self.status(role, host, &format!("{role} on {host} converged at generation {generation}"), |s| {
            s.state == UnitState::Converged && s.observed_generation == generation
        })
        .await
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

fn images() -> Result<()> {
    ensure_image(V1, "v1", "good")?;
    ensure_image(V2, "v2", "good")?;
    ensure_image(BAD, "bad", "bad")
}

fn local_host(name: &str) -> Object {
    serde_json::from_value(json!({
        "kind": "Host", "apiVersion": "ballast/v1", "metadata": {"name": name},
        "spec": {"address": format!("unix://{}", docker::SOCKET)}
    }))
    .unwrap()
}

fn role(name: &str, host: &str, image: &str, resources: serde_json::Value, health: bool) -> Object {
    let mut spec = json!({
        "hosts": [host], "image": image, "resources": resources, "env": {"RAILS_ENV": "production"},
        "deployTimeout": "6s",
    });
    if health {
        spec["health"] = json!({"http": {"path": "/up", "port": 3000}, "interval": "200ms", "timeout": "2s"});
    }
    serde_json::from_value(
        json!({"kind": "Role", "apiVersion": "ballast/v1", "metadata": {"name": name}, "spec": spec}),
    )
    .unwrap()
}

/// The id of the only container of `role` on test host `host`.
fn container_of(role: &str, host: &str) -> Result<String> {
    let ids = docker(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &format!("label=ballast.host={host}"),
        "--filter",
        &format!("label=ballast.role={role}"),
    ])?;
    let ids: Vec<&str> = ids.split_whitespace().collect();
    anyhow::ensure!(ids.len() == 1, "expected one {role} container on {host}, found {ids:?}");
    Ok(ids[0].to_string())
}

#[tokio::test]
async fn converges_corrects_drift_and_rolls_on_the_local_engine() -> Result<()> {
    images()?;
    let host = unique_name("local");
    let _cleanup = HostCleanup(host.clone());
    let op = Operator::start(None).await?;
    op.apply(vec![
        local_host(&host),
        role("web", &host, V1, json!({"cpus": 1.5, "memory": "1.75g"}), true),
        role("job", &host, V1, json!({"cpus": 0.25, "memory": "512m"}), false),
    ])
    .await?;
    let web = op.converged("web", &host).await?;
    op.converged("job", &host).await?;
    let web_id = container_of("web", &host)?;
    assert!(web_id.starts_with(&web.container_id));
    assert_eq!(
        inspect_field(&web_id, "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}")?,
        "1500000000 1879048192"
    );
    assert_eq!(
        inspect_field(&container_of("job", &host)?, "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}")?,
        "250000000 536870912"
    );

    // Out of band: memory changed on web → restored in place, same container, not restarted.
    let started = inspect_field(&web_id, "{{.State.StartedAt}}")?;
    docker(&["update", "--memory", "1g", "--memory-swap", "2g", &web_id])?;
    until(WAIT, "web memory restored", || async {
        (inspect_field(&web_id, "{{.HostConfig.Memory}}").ok()? == "1879048192").then_some(())
    })
    .await?;
    assert_eq!(inspect_field(&web_id, "{{.State.StartedAt}}")?, started, "not restarted");
    assert_eq!(container_of("web", &host)?, web_id, "same container");

    // Out of band: job removed → replaced without any command.
    let job_id = container_of("job", &host)?;
    docker(&["rm", "-f", &job_id])?;
    until(WAIT, "job replaced", || async {
        let id = container_of("job", &host).ok()?;
        (id != job_id && inspect_field(&id, "{{.State.Running}}").ok()? == "true").then_some(())
    })
    .await?;

    // Image change: a new container answers, the old one is gone.
    op.update("web", |r| r.spec.image = V2.into()).await?;
    let web = op.converged("web", &host).await?;
    assert_eq!(web.image, V2);
    let new_id = container_of("web", &host)?;
    assert_ne!(new_id, web_id);
    assert!(!docker::container_exists(&web_id), "old container removed");
    let events = op.store.list_events().await?;
    assert!(events.iter().any(|e| e.reason == "ResourcesRestored"), "{events:#?}");
    assert!(events.iter().any(|e| e.reason == "Replaced" && e.message.contains(V2)), "{events:#?}");

    // A bad image: the rollout fails, the previous container is running again.
    op.update("web", |r| r.spec.image = BAD.into()).await?;
    let failed = op.status("web", &host, "web failed", |s| s.state == UnitState::Failed).await?;
    assert!(failed.message.contains("not healthy within deployTimeout"), "{}", failed.message);
    assert_eq!(container_of("web", &host)?, new_id);
    assert_eq!(inspect_field(&new_id, "{{.State.Running}}")?, "true");

    // Deleting the role removes its container.
    op.store.delete_role("web", &Actor("test".into())).await?;
    until(WAIT, "web removed", || async { (!docker::container_exists(&new_id)).then_some(()) }).await?;
    op.stop().await;
    Ok(())
}

#[tokio::test]
async fn converges_over_ssh_and_refuses_an_unknown_host_key() -> Result<()> {
    images()?;
    let sshd = TestSshd::start()?;
    let host = unique_name("ssh");
    let stranger = unique_name("stranger");
    let _cleanup = (HostCleanup(host.clone()), HostCleanup(stranger.clone()));
    let op = Operator::start(Some(&sshd)).await?;
    let mut spec = serde_json::to_value(sshd.host_spec()?)?;
    let ssh_host: Object = serde_json::from_value(json!({
        "kind": "Host", "apiVersion": "ballast/v1", "metadata": {"name": host}, "spec": spec.clone()
    }))?;
    // The same sshd under a name known_hosts does not list (localhost instead of 127.0.0.1).
    spec["address"] = json!("localhost");
    let unknown: Object = serde_json::from_value(json!({
        "kind": "Host", "apiVersion": "ballast/v1", "metadata": {"name": stranger}, "spec": spec
    }))?;
    op.apply(vec![
        ssh_host,
        unknown,
        role("web", &host, V1, json!({"memory": "256m"}), true),
        role("other", &stranger, V1, json!({}), false),
    ])
    .await?;
    op.converged("web", &host).await?;
    let id = container_of("web", &host)?;
    assert_eq!(inspect_field(&id, "{{.HostConfig.Memory}}")?, "268435456");
    let refused =
        op.status("other", &stranger, "stranger unreachable", |s| s.state == UnitState::Unreachable).await?;
    assert!(refused.message.contains("known_hosts"), "{}", refused.message);
    assert!(container_of("other", &stranger).is_err(), "nothing done on a host with an unknown key");
    op.stop().await;
    Ok(())
}
