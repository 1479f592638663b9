//! End-to-end scenarios of the reconciler: the real `ballastd` and `ballast` binaries, a real etcd, and the rig's
//! hosts (network namespaces with their own dockerd and sshd) reached over SSH.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use ballast_e2e::stage::{text, Setup, Stage, WAIT};
use ballast_e2e::{until, Rig};
use ballast_specs::wire::UnitState;
use ballast_tests::ballastd::Ballastd;
use ballast_tests::TestEtcd;

/// A datalake-shaped deployment on the rig: web (h1, 1.5 cpus, 1.75g), web_replica (h2, 2g), job (h1, 0.25 cpus,
/// 512m, its own command), health `/up` on the web roles.
fn datalake(rig: &Rig, web: &str, replica: &str) -> String {
    format!(
        r#"apiVersion: ballast/v1
kind: Role
metadata: {{name: web, labels: {{app: datalake}}}}
spec:
  hosts: [h1]
  image: {web}
  resources: {{cpus: 1.5, memory: 1.75g}}
  env: {{RAILS_ENV: production}}
  ports: ["3000:3000"]
  health: {{http: {{path: /up, port: 3000}}, interval: 1s, timeout: 5s}}
  deployTimeout: 20s
---
apiVersion: ballast/v1
kind: Role
metadata: {{name: web_replica, labels: {{app: datalake}}}}
spec:
  hosts: [h2]
  image: {replica}
  resources: {{memory: 2g}}
  env: {{RAILS_ENV: production}}
  ports: ["3000:3000"]
  health: {{http: {{path: /up, port: 3000}}, interval: 1s, timeout: 5s}}
  deployTimeout: 20s
---
apiVersion: ballast/v1
kind: Role
metadata: {{name: job, labels: {{app: datalake}}}}
spec:
  hosts: [h1]
  image: {v1}
  command: [sh, -c, "trap 'exit 0' TERM; while true; do sleep 1 & wait $!; done"]
  resources: {{cpus: 0.25, memory: 512m}}
  env: {{RAILS_ENV: production}}
  deployTimeout: 20s
"#,
        v1 = rig.image("v1")
    )
}

/// An unlabelled container of someone else's on host 1: ballast must never touch it.
fn bystander(rig: &Rig) -> Result<String> {
    rig.pull(1, &rig.image("v1"))?;
    rig.docker(1, &["run", "-d", "--name", "bystander", "--label", "e2e.bystander=1", &rig.image("v1")])
}

fn bystander_alive(rig: &Rig, id: &str) -> Result<()> {
    let running = rig.inspect(1, id, "{{.State.Running}}")?;
    ensure!(running == "true", "the unlabelled container was touched");
    Ok(())
}

/// A real etcd and a stage on it with the datalake roles at v1, converged.
async fn converged_datalake(rig: &Rig) -> Result<(TestEtcd, Stage)> {
    let etcd = TestEtcd::start().await?;
    let stage = Stage::start(rig, etcd.endpoints(), &Setup::default()).await?;
    stage.apply_yaml("roles.yaml", &datalake(rig, &rig.image("v1"), &rig.image("v1")))?;
    stage.converge()?;
    Ok((etcd, stage))
}

#[tokio::test]
async fn datalake_converges_rolls_and_corrects_drift() -> Result<()> {
    let rig = Rig::acquire()?;
    let bystander = bystander(&rig)?;
    let (_etcd, stage) = converged_datalake(&rig).await?;

    // docker inspect on each host: image, NanoCpus, Memory.
    let web = rig.container_of(1, "web")?;
    let job = rig.container_of(1, "job")?;
    let replica = rig.container_of(2, "web_replica")?;
    let shape = "{{.Config.Image}} {{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}";
    assert_eq!(rig.inspect(1, &web, shape)?, format!("{} 1500000000 1879048192", rig.image("v1")));
    assert_eq!(rig.inspect(1, &job, shape)?, format!("{} 250000000 536870912", rig.image("v1")));
    assert_eq!(rig.inspect(2, &replica, shape)?, format!("{} 0 2147483648", rig.image("v1")));
    assert_eq!(rig.curl(1, 3000, "/up")?, "v1");
    assert_eq!(rig.curl(2, 3000, "/up")?, "v1");

    // Image change: web rolls, /up answers v2, the old container is gone.
    stage.ok(&["set", "image", "web", &rig.image("v2")])?;
    stage.converge()?;
    assert_eq!(rig.curl(1, 3000, "/up")?, "v2");
    let web2 = rig.container_of(1, "web")?;
    ensure!(web2 != web, "web was not replaced");
    ensure!(rig.inspect(1, &web, "{{.Id}}").is_err(), "the old web container is still there");

    // Out-of-band removal of job: replaced without any command.
    rig.docker(1, &["rm", "-f", &job])?;
    until(WAIT, "job replaced", || {
        let id = rig.container_of(1, "job").ok()?;
        (id != job && rig.inspect(1, &id, "{{.State.Running}}").ok()? == "true").then_some(())
    })?;

    // Out-of-band memory change of web: restored in place, same container, not restarted.
    let started = rig.inspect(1, &web2, "{{.State.StartedAt}}")?;
    rig.docker(1, &["update", "--memory", "1g", "--memory-swap", "2g", &web2])?;
    until(WAIT, "web memory restored", || {
        (rig.inspect(1, &web2, "{{.HostConfig.Memory}}").ok()? == "1879048192").then_some(())
    })?;
    assert_eq!(rig.container_of(1, "web")?, web2);
    assert_eq!(rig.inspect(1, &web2, "{{.State.StartedAt}}")?, started, "web was restarted");
    // The event is written right after the update returns: wait for it too.
    until(WAIT, "the restore in `ballast events web`", || {
        stage.ok(&["events", "web"]).ok()?.contains("restored memory 1.75g").then_some(())
    })?;

    bystander_alive(&rig, &bystander)?;
    Ok(())
}

#[tokio::test]
async fn failed_rollouts_keep_the_old_container_answering_and_recover() -> Result<()> {
    let rig = Rig::acquire()?;
    let bystander = bystander(&rig)?;
    let (_etcd, stage) = converged_datalake(&rig).await?;
    let web = rig.container_of(1, "web")?;

    // A tag that does not exist.
    stage.ok(&["set", "image", "web", &rig.image("nope")])?;
    let failed = stage.wait("web", "h1", "web failed on a bad tag", |s| s.state == UnitState::Failed)?;
    ensure!(failed.message.contains("pull"), "reason: {}", failed.message);
    assert_eq!(rig.curl(1, 3000, "/up")?, "v1");
    let out = stage.ballastd.ballast(&["status", "web", "--wait", "--timeout", "30s"]);
    assert_eq!(out.status.code(), Some(1), "status --wait exits 1 on Failed: {}", text(&out));

    // An image that never answers /up.
    stage.ok(&["set", "image", "web", &rig.image("bad")])?;
    let failed = stage.wait("web", "h1", "web failed on an unhealthy image", |s| {
        s.state == UnitState::Failed && s.message.contains("not healthy")
    })?;
    ensure!(failed.message.contains("/up"), "reason: {}", failed.message);
    assert_eq!(rig.curl(1, 3000, "/up")?, "v1", "the old container answers again");
    assert_eq!(rig.container_of(1, "web")?, web);

    // Fixing the spec recovers.
    stage.ok(&["set", "image", "web", &rig.image("v3")])?;
    stage.converge()?;
    assert_eq!(rig.curl(1, 3000, "/up")?, "v3");
    bystander_alive(&rig, &bystander)?;
    Ok(())
}

#[tokio::test]
async fn a_cut_link_during_a_rollout_leaves_the_other_host_converging() -> Result<()> {
    let rig = Rig::acquire()?;
    let (_etcd, stage) = converged_datalake(&rig).await?;

    rig.ctl(&["link", "2", "down"])?;
    let result = (|| -> Result<()> {
        stage.apply_yaml("roles.yaml", &datalake(&rig, &rig.image("v2"), &rig.image("v2")))?;
        stage.wait("web", "h1", "web converged on h1", |s| {
            s.state == UnitState::Converged && s.image.ends_with(":v2")
        })?;
        let cut = stage.wait("web_replica", "h2", "h2 unreachable", |s| s.state == UnitState::Unreachable)?;
        ensure!(!cut.message.is_empty(), "no reason given");
        Ok(())
    })();
    rig.ctl(&["link", "2", "up"])?;
    result?;
    stage.converge()?;
    assert_eq!(rig.curl(2, 3000, "/up")?, "v2");
    ensure!(rig.containers(2, "ballast.role=web_replica")?.len() == 1, "duplicates on h2");
    Ok(())
}

#[tokio::test]
async fn a_killed_operator_resumes_without_duplicates() -> Result<()> {
    let rig = Rig::acquire()?;
    let bystander = bystander(&rig)?;
    let (_etcd, mut stage) = converged_datalake(&rig).await?;

    stage.ok(&["set", "image", "web", &rig.image("v2")])?;
    // Kill it in the middle of the rollout: once the new container exists.
    until(WAIT, "the new web container", || {
        (rig.containers(1, "ballast.role=web").ok()?.len() > 1).then_some(())
    })?;
    let pid = stage.ballastd.pid().context("ballastd pid")?;
    std::process::Command::new("kill").args(["-9", &pid.to_string()]).status()?;
    stage.replace(&rig, None, &Setup::default()).await?;
    stage.converge()?;
    for (i, role) in [(1, "web"), (1, "job"), (2, "web_replica")] {
        let ids = rig.containers(i, &format!("ballast.role={role}"))?;
        ensure!(ids.len() == 1, "{} containers of {role} on h{i}", ids.len());
    }
    assert_eq!(rig.curl(1, 3000, "/up")?, "v2");
    bystander_alive(&rig, &bystander)?;
    Ok(())
}

#[tokio::test]
async fn a_changed_host_key_is_refused_and_nothing_is_done() -> Result<()> {
    let rig = Rig::acquire()?;
    let (_etcd, mut stage) = converged_datalake(&rig).await?;

    // The host gets a new key; an SSH session made before stays trusted, so the operator restarts and dials anew.
    rig.ctl(&["rekey", "2"])?;
    stage.ballastd.terminate()?;
    let result = async {
        let replica = rig.container_of(2, "web_replica")?;
        rig.docker(2, &["rm", "-f", &replica])?;
        stage.replace(&rig, None, &Setup::default()).await?;
        let refused = stage.wait("web_replica", "h2", "h2 refused", |s| s.state == UnitState::Unreachable)?;
        ensure!(refused.message.contains("host key"), "reason: {}", refused.message);
        // h1 is still served.
        stage.wait("web", "h1", "h1 still converged", |s| s.state == UnitState::Converged)?;
        // Nothing may be created on a host whose key does not match, resync after resync.
        std::thread::sleep(Duration::from_secs(8));
        ensure!(rig.containers(2, "ballast.role")?.is_empty(), "ballast acted on a host with a changed key");
        Ok(())
    }
    .await;
    rig.ctl(&["trust", "2"])?;
    result?;
    stage.converge()?;
    Ok(())
}

/// The example in `specs/examples/local/` must at least parse and validate through the real CLI.
#[tokio::test]
async fn example_specs_validate_with_the_cli() -> Result<()> {
    let etcd = TestEtcd::start().await?;
    let ballastd = Ballastd::start(&[etcd.endpoint()]).await?;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs/examples/local");
    let out = ballastd.ballast(&["apply", "--dry-run", "-f", dir.to_str().context("path")?]);
    ensure!(out.status.success(), "{}", text(&out));
    Ok(())
}
