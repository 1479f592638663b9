//! Rows 2, 3 and 4 for Docker Swarm on host 2: `docker swarm init` on the host's dockerd, one service of the
//! app with `3000:3000` published in host mode (this kernel has no IPVS, so the ingress routing mesh does not
//! answer), memory limited to 256m.
//!
//! - Row 2: `docker service update --image` with Swarm's defaults (stop-first, delay 0, parallelism 1);
//!   start-first with the same published port cannot be placed on one node (the new task stays Pending:
//!   "host-mode port already in use"), so it is measured without a published port instead.
//! - Row 3: `docker rm -f` of the task's container → the replacement answers, default restart delay (5 s)
//!   and `--restart-delay 0s`.
//! - Row 4: Swarm does not see a `docker update --memory`; restoring it takes a service update, which
//!   recreates the task (`--force --limit-memory 256m`).
//! - Row 7: image changes of the slowly booting app under load (see `downtime.rs`), stop-first: start-first
//!   through the routing mesh needs IPVS, which this kernel lacks.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::ballast::{first_ok_after_failure, replaced_by};
use crate::docker;
use crate::downtime;
use crate::poller::Poller;
use crate::stage::ROLE_MEMORY;
use crate::stats::ms;
use crate::{log, until, Bench, WAIT};

const HOST: usize = 2;
const SERVICE: &str = "bench";
const LABEL: &str = "com.docker.swarm.service.name=bench";

pub async fn run(bench: &mut Bench) -> Result<()> {
    ensure!(bench.rig.hosts() >= HOST, "the swarm section needs a rig of at least {HOST} hosts");
    let docker = bench.docker(HOST)?;
    let state = bench.docker_cli(HOST, &["info", "--format", "{{.Swarm.LocalNodeState}}"]).await?;
    if state.trim() != "inactive" {
        bail!("host {HOST}'s dockerd is already in a swarm ({}); the bench makes its own", state.trim());
    }
    let addr = bench.rig.addr(HOST)?.to_string();
    bench.docker_cli(HOST, &["swarm", "init", "--advertise-addr", &addr]).await?;
    let result = measure(bench, &docker).await;
    let left = async {
        let _ = bench.docker_cli(HOST, &["service", "rm", SERVICE]).await;
        bench.docker_cli(HOST, &["swarm", "leave", "--force"]).await?;
        until(WAIT, Duration::from_millis(100), "the swarm's containers to go", || async {
            Ok(docker::ids(&docker, "com.docker.swarm.service.name", true).await?.is_empty().then_some(()))
        })
        .await
    };
    let left = left.await;
    result.and(left)
}

async fn measure(bench: &mut Bench, docker: &bollard::Docker) -> Result<()> {
    let boot = format!("BOOT_DELAY={}", downtime::BOOT);
    let poller = Poller::start(bench.up_addr(HOST)?);
    let n = bench.n;
    bench
        .docker_cli(
            HOST,
            &[
                "service",
                "create",
                "--detach",
                "--name",
                SERVICE,
                "--publish",
                "mode=host,target=3000,published=3000",
                "--limit-memory",
                "256m",
                &bench.image("v1"),
            ],
        )
        .await?;
    poller.first_ok(Instant::now() - crate::poller::PERIOD, Some("v1"), WAIT).await?;
    settled(docker).await?;

    // Row 2: image change with the defaults.
    let (mut total, mut gap) = (Vec::new(), Vec::new());
    let mut tag = "v1";
    for i in 0..n {
        tag = if i % 2 == 0 { "v2" } else { "v1" };
        let t0 = Instant::now();
        bench
            .docker_cli(HOST, &["service", "update", "--detach", "--image", &bench.image(tag), SERVICE])
            .await?;
        let t1 = poller.first_ok(t0, Some(tag), WAIT).await?;
        total.push(ms(t1 - t0));
        gap.push(ms(poller.longest_gap(t0, t1)));
        settled(docker).await?;
    }
    let r = &mut bench.results;
    r.add(
        "swarm.image",
        "`docker service update --image` (defaults) → first 200 of the new version",
        "ms",
        total,
    );
    r.add("swarm.image.gap", "downtime (defaults)", "ms", gap);
    log("swarm row 2 measured");

    // Row 3: out-of-band removal, default restart delay and none.
    for (key, how) in [("default", "default restart delay 5 s"), ("tuned", "`--restart-delay 0s`")] {
        if key == "tuned" {
            bench
                .docker_cli(HOST, &["service", "update", "--detach", "--restart-delay", "0s", SERVICE])
                .await?;
            settled(docker).await?;
            poller.first_ok(Instant::now(), Some(tag), WAIT).await?;
        }
        let (mut total, mut gap) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let id = single(docker).await?;
            let before = Instant::now();
            docker::remove(docker, &id).await?;
            let t0 = Instant::now();
            let t1 = first_ok_after_failure(&poller, before, tag).await?;
            total.push(ms(t1 - t0));
            gap.push(ms(poller.longest_gap(before, t1)));
            until(WAIT, Duration::from_millis(20), "a new task container", || async {
                let ids = docker::ids(docker, LABEL, false).await?;
                Ok((ids.len() == 1 && ids[0] != id).then_some(()))
            })
            .await?;
        }
        let r = &mut bench.results;
        r.add(
            &format!("swarm.rm.{key}"),
            &format!("`docker rm -f` → the replacement answers ({how})"),
            "ms",
            total,
        );
        r.add(&format!("swarm.rm.{key}.gap"), &format!("downtime ({how})"), "ms", gap);
    }
    log("swarm row 3 measured");

    // Row 4: memory drift, restored by a service update (a recreate).
    let (mut restored, mut restarts, mut gap) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let id = single(docker).await?;
        docker::update_memory(docker, &id, 2 * ROLE_MEMORY).await?;
        let t0 = Instant::now();
        bench
            .docker_cli(
                HOST,
                &["service", "update", "--detach", "--force", "--limit-memory", "256m", SERVICE],
            )
            .await?;
        let new = until(WAIT, Duration::from_millis(10), "the recreated task", || async {
            let ids = docker::ids(docker, LABEL, false).await?;
            Ok((ids.len() == 1 && ids[0] != id).then(|| ids[0].clone()))
        })
        .await?;
        let t1 = first_ok_after_failure(&poller, t0, tag).await?;
        let state = docker::state(docker, &new).await?.context("the new task container vanished")?;
        ensure!(state.memory == ROLE_MEMORY, "memory is {} after the service update", state.memory);
        restored.push(ms(t1 - t0));
        restarts.push(1.0);
        gap.push(ms(poller.longest_gap(t0, t1)));
        settled(docker).await?;
    }
    let r = &mut bench.results;
    r.add(
        "swarm.mem",
        "`docker service update --force --limit-memory 256m` → the new task answers",
        "ms",
        restored,
    );
    r.add("swarm.mem.restarts", "restarts (the task is recreated)", "restarts", restarts);
    r.add("swarm.mem.gap", "downtime", "ms", gap);
    log("swarm row 4 measured");

    // Row 7: the app booting slowly, image changes under load. Start-first through the routing mesh, the way
    // Swarm serves without a gap, needs IPVS, which this kernel lacks; stop-first on the host-mode port it is.
    bench.docker_cli(HOST, &["service", "update", "--detach", "--env-add", &boot, SERVICE]).await?;
    settled(docker).await?;
    let addr = bench.up_addr(HOST)?;
    let mut failed = Vec::new();
    for _ in 0..n.min(5) {
        tag = if tag == "v2" { "v1" } else { "v2" };
        let load = downtime::start(addr);
        tokio::time::sleep(Duration::from_millis(500)).await;
        bench
            .docker_cli(HOST, &["service", "update", "--detach", "--image", &bench.image(tag), SERVICE])
            .await?;
        let report = downtime::served(load, addr, tag).await?;
        log(&format!("downtime: swarm → {tag}: {report}"));
        failed.push(downtime::failures(&report));
        settled(docker).await?;
    }
    bench.results.add(
        "swarm.downtime",
        "Docker Swarm stop-first (host-mode port): failed requests during an image change",
        "requests",
        failed,
    );
    log("swarm row 7 measured");

    // Start-first without a published port (the ballast figure's counterpart): a service made so.
    bench.docker_cli(HOST, &["service", "rm", SERVICE]).await?;
    until(WAIT, Duration::from_millis(50), "the service's containers to go", || async {
        Ok(docker::ids(docker, LABEL, true).await?.is_empty().then_some(()))
    })
    .await?;
    bench
        .docker_cli(
            HOST,
            &[
                "service",
                "create",
                "--detach",
                "--name",
                SERVICE,
                "--update-order",
                "start-first",
                "--update-delay",
                "0s",
                "--limit-memory",
                "256m",
                &bench.image("v1"),
            ],
        )
        .await?;
    single(docker).await?;
    settled(docker).await?;
    let mut replaced = Vec::new();
    for i in 0..n {
        let tag = if i % 2 == 0 { "v3" } else { "v1" };
        let old = single(docker).await?;
        let t0 = Instant::now();
        bench
            .docker_cli(HOST, &["service", "update", "--detach", "--image", &bench.image(tag), SERVICE])
            .await?;
        replaced_by(docker, LABEL, &old).await?;
        replaced.push(ms(t0.elapsed()));
        settled(docker).await?;
    }
    bench.results.add(
        "swarm.startfirst",
        "start-first, `--update-delay 0s`, no published port: `docker service update --image` → only the new task runs",
        "ms",
        replaced,
    );
    log("swarm start-first measured");
    Ok(())
}

/// The one running task container of the service.
async fn single(docker: &bollard::Docker) -> Result<String> {
    until(WAIT, Duration::from_millis(20), "exactly one running task container", || async {
        let ids = docker::ids(docker, LABEL, false).await?;
        Ok((ids.len() == 1).then(|| ids[0].clone()))
    })
    .await
}

/// Waits until the service's last update has completed.
async fn settled(docker: &bollard::Docker) -> Result<()> {
    until(WAIT, Duration::from_millis(20), "the service update to complete", || async {
        Ok(docker::service_settled(docker, SERVICE).await?.then_some(()))
    })
    .await
}
