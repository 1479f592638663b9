//! HA on the rig: two real `ballastd` on one etcd (`--lease-ttl 3s`), hosts reached over SSH. The leader is
//! killed (`kill -9`) in the middle of a rollout; the standby takes over, finishes the rollout without a second
//! new container, and every role ends with exactly one container.

use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use ballast_e2e::stage::{leads, web_tier};
use ballast_e2e::{ballastd_options, until, Rig};
use ballast_specs::wire::{List, UnitState, UnitStatus};
use ballast_tests::ballastd::Ballastd;
use ballast_tests::moto::TestMoto;
use ballast_tests::TestEtcd;

const WAIT: Duration = Duration::from_secs(90);
const TTL: Duration = Duration::from_secs(3);

/// A ballastd for the rig with `--lease-ttl 3s`; ECR credentials from `moto` when the rig's registry asks for them.
async fn start(rig: &Rig, etcd: &TestEtcd, moto: Option<&TestMoto>) -> Result<Ballastd> {
    let aws = moto.map(TestMoto::endpoint);
    Ballastd::start_with(ballastd_options(rig, &etcd.endpoints(), aws.as_deref(), &["--lease-ttl", "3s"])?)
        .await
}

fn ok(ballastd: &Ballastd, args: &[&str]) -> Result<String> {
    let out = ballastd.ballast(args);
    ensure!(out.status.success(), "ballast {} failed: {}", args.join(" "), text(&out));
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn statuses(ballastd: &Ballastd) -> Result<Vec<UnitStatus>> {
    let list: List<UnitStatus> = serde_json::from_str(&ok(ballastd, &["status", "-o", "json"])?)?;
    Ok(list.items)
}

/// Containers of `role` made from `image` that Docker on host `i` created since `since` (the daemon's own
/// RFC 3339 time, to the nanosecond: a whole second would also count the previous rollout's container when it
/// was created in the same second), from its event log.
fn creates(rig: &Rig, i: usize, role: &str, image: &str, since: &str) -> Result<usize> {
    let until = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() + 1;
    let out = rig.docker(
        i,
        &[
            "events",
            "--since",
            since,
            "--until",
            &until.to_string(),
            "--filter",
            "event=create",
            "--filter",
            &format!("label=ballast.role={role}"),
            "--filter",
            &format!("image={image}"),
            "--format",
            "{{.ID}}",
        ],
    )?;
    Ok(out.lines().filter(|l| !l.trim().is_empty()).count())
}

#[tokio::test]
async fn a_leader_killed_during_a_rollout_is_replaced_and_the_rollout_finishes_once() -> Result<()> {
    let rig = Rig::acquire()?;
    let etcd = TestEtcd::start().await?;
    let moto = if rig.registry_auth() { Some(TestMoto::start().await?) } else { None };
    let one = start(&rig, &etcd, moto.as_ref()).await?;
    let two = start(&rig, &etcd, moto.as_ref()).await?;
    let (leader, standby) = until(WAIT, "exactly one leader", || {
        let (a, b) = (leads(&one)?, leads(&two)?);
        (a != b).then_some(a)
    })
    .map(|one_leads| if one_leads { (one, two) } else { (two, one) })?;

    // Any ballastd serves the API: apply through the standby.
    let specs = tempfile::tempdir()?;
    let hosts = rig.hosts_yaml().display().to_string();
    ok(&standby, &["apply", "-f", &hosts])?;
    let file = specs.path().join("roles.yaml");
    std::fs::write(&file, web_tier(&rig, &rig.image("v1")))?;
    ok(&standby, &["apply", "-f", file.to_str().context("path")?])?;
    ok(&standby, &["status", "--wait", "--timeout", "90s"])?;
    ensure!(leads(&standby) == Some(false), "the standby leads");

    let since = rig.docker(1, &["info", "--format", "{{.SystemTime}}"])?.trim().to_string();
    std::fs::write(&file, web_tier(&rig, &rig.image("v2")))?;
    ok(&standby, &["apply", "-f", file.to_str().context("path")?])?;
    // Kill the leader in the middle of the rollout: once the new container exists.
    until(WAIT, "the new web container", || {
        (rig.containers(1, "ballast.role=web").ok()?.len() > 1).then_some(())
    })?;
    let pid = leader.pid().context("leader pid")?;
    ballast_tests::process::kill(pid)?;
    let killed = Instant::now();
    until(WAIT, "the standby to lead", || leads(&standby).filter(|l| *l))?;
    let took_over = killed.elapsed();
    ok(&standby, &["status", "--wait", "--timeout", "90s"])?;
    println!(
        "rig: the standby led {took_over:?} after kill -9 (TTL {TTL:?}); rollout done after {:?}",
        killed.elapsed()
    );
    ensure!(took_over <= TTL + Duration::from_secs(2), "take-over took {took_over:?}");

    assert_eq!(rig.curl(1, 3000, "/up")?, "v2");
    for (i, role) in [(1, "web"), (2, "web_replica")] {
        let ids = rig.containers(i, &format!("ballast.role={role}"))?;
        ensure!(ids.len() == 1, "{} containers of {role} on h{i}", ids.len());
    }
    ensure!(
        creates(&rig, 1, "web", &rig.image("v2"), &since)? == 1,
        "the rollout created more than one new container"
    );
    let web = statuses(&standby)?.into_iter().find(|s| s.role == "web").context("web status")?;
    ensure!(web.state == UnitState::Converged && web.image.ends_with(":v2"), "{web:?}");
    drop(leader);
    Ok(())
}
