//! ballast when etcd fails, on the rig: etcd stopped for 30 s (containers untouched, `ballastd` alive and live,
//! reads answer "etcd unavailable", everything resumes by itself once etcd is back), and a 3-member etcd cluster
//! that loses its leader member while ballast keeps working.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use ballast_e2e::stage::{get, tail, text, web_tier, Setup, Stage, WAIT};
use ballast_e2e::{until, Rig};
use ballast_specs::wire::UnitState;
use ballast_tests::{process, TestEtcd, TestEtcdCluster};

/// How long etcd stays down.
const OUTAGE: Duration = Duration::from_secs(30);

/// A short lease, so a leadership lost with etcd is taken back soon after etcd returns.
fn setup() -> Setup {
    Setup {
        args: vec!["--lease-ttl".into(), "3s".into(), "--resync".into(), "2s".into()],
        ..Setup::default()
    }
}

/// `GET /up` of ballastd itself: its liveness.
fn live(stage: &Stage) -> Result<()> {
    let (status, _) = get(&stage.ballastd, "/up")?;
    ensure!(status.contains(" 200"), "GET /up: {status}");
    Ok(())
}

/// (id, StartedAt) of the one container of `role` on host `i`.
fn container(rig: &Rig, i: usize, role: &str) -> Result<(String, String)> {
    let id = rig.container_of(i, role)?;
    let started = rig.inspect(i, &id, "{{.State.StartedAt}}")?;
    Ok((id, started))
}

#[tokio::test]
async fn etcd_down_for_30s_leaves_the_hosts_alone_and_ballast_resumes_by_itself() -> Result<()> {
    let rig = Rig::acquire()?;
    let mut etcd = TestEtcd::start().await?;
    let stage = Stage::start(&rig, etcd.endpoints(), &setup()).await?;
    stage.apply_yaml("roles.yaml", &web_tier(&rig, &rig.image("v1")))?;
    stage.converge()?;
    let web = container(&rig, 1, "web")?;
    let replica = container(&rig, 2, "web_replica")?;
    let pid = stage.ballastd.pid().context("ballastd pid")?;

    etcd.kill();
    let down = Instant::now();
    // Drift while etcd is away: with no lease ballastd may not act, so this waits for etcd to come back.
    rig.docker(2, &["rm", "-f", &replica.0])?;
    let mut checks = 0;
    let mut unavailable = String::new();
    while down.elapsed() < OUTAGE {
        ensure!(
            process::is_running(pid),
            "ballastd exited while etcd was down:\n{}",
            tail(&stage.ballastd.log())
        );
        live(&stage).context("ballastd's liveness while etcd is down")?;
        assert_eq!(container(&rig, 1, "web")?, web, "web was touched while etcd was down");
        assert_eq!(rig.curl(1, 3000, "/up")?, "v1");
        let out = stage.ballastd.ballast(&["status"]);
        unavailable = text(&out);
        ensure!(!out.status.success(), "status succeeded with etcd down: {unavailable}");
        ensure!(
            unavailable.contains("etcd") && unavailable.contains("unavailable"),
            "status with etcd down does not say etcd is unavailable: {unavailable}"
        );
        checks += 1;
        std::thread::sleep(Duration::from_secs(2));
    }
    println!(
        "rig: {checks} checks over {OUTAGE:?} without etcd; `ballast status` said: {}",
        unavailable.trim()
    );

    etcd.restart().await?;
    let back = Instant::now();
    let recreated = until(WAIT, "web_replica recreated after etcd came back", || {
        let (id, _) = container(&rig, 2, "web_replica").ok()?;
        (id != replica.0).then_some(id)
    })
    .with_context(|| format!("ballastd log tail:\n{}", tail(&stage.ballastd.log())))?;
    println!("rig: the drift was corrected {:?} after etcd came back", back.elapsed());
    stage.converge()?;
    assert_eq!(container(&rig, 1, "web")?, web, "web was replaced");
    ensure!(rig.inspect(2, &recreated, "{{.State.Running}}")? == "true", "web_replica not running");

    // And it acts on new specs again.
    stage.ok(&["set", "image", "web", &rig.image("v2")])?;
    stage.converge()?;
    assert_eq!(rig.curl(1, 3000, "/up")?, "v2");
    Ok(())
}

#[tokio::test]
async fn a_three_member_etcd_cluster_loses_its_leader_and_ballast_keeps_working() -> Result<()> {
    let rig = Rig::acquire()?;
    let mut cluster = TestEtcdCluster::start(3).await?;
    let stage = Stage::start(&rig, cluster.endpoints(), &setup()).await?;
    stage.apply_yaml("roles.yaml", &web_tier(&rig, &rig.image("v1")))?;
    stage.converge()?;
    let replica = container(&rig, 2, "web_replica")?;

    let leader = cluster.leader().await?;
    cluster.member(leader).kill();
    let killed = Instant::now();
    println!("rig: killed etcd member m{leader}, the cluster's leader");

    // Reads, writes and reconciles go on with two members of three.
    stage.ok(&["status"]).context("status after the etcd leader died")?;
    stage.ok(&["set", "image", "web", &rig.image("v2")])?;
    stage.converge()?;
    assert_eq!(rig.curl(1, 3000, "/up")?, "v2");
    rig.docker(2, &["rm", "-f", &replica.0])?;
    stage
        .wait("web_replica", "h2", "web_replica recreated", |s| {
            s.state == UnitState::Converged
                && !s.container_id.is_empty()
                && !replica.0.starts_with(&s.container_id)
        })
        .with_context(|| format!("ballastd log tail:\n{}", tail(&stage.ballastd.log())))?;
    println!("rig: rolled web and corrected a drift {:?} after the etcd leader died", killed.elapsed());
    let web = stage.status("web", "h1").context("web status")?;
    ensure!(web.state == UnitState::Converged && web.image == rig.image("v2"), "{web:?}");
    Ok(())
}
