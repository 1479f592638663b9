//! Rows 2, 3 and 4 for ballast on host 1: the release ballastd over SSH with a real etcd, one role in the seed's
//! shape (stop-first, `3000:3000`, health `/up` every 1s), and every Docker call it makes timed by the proxy.
//!
//! - Row 2: `ballast set image` (v1 → v2 → v1 ...) → the new version answers; longest window without a 200.
//! - Row 3: `docker rm -f` of the container (through the API) → the replacement answers.
//! - Row 4: `docker update --memory` of the container → restored (dockerd's update events), restarts, downtime.
//! - Row 2 start-first without a published port: `ballast set image` → `ballast status --wait` returns.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

use crate::docker::{self, live_updates};
use crate::poller::Poller;
use crate::stage::{role_yaml, Stage, ROLE_MEMORY};
use crate::stats::ms;
use crate::timeline::{self, Run};
use crate::{log, until, Bench, WAIT};

const HOST: usize = 1;
const ROLE: &str = "bench";

pub async fn run(bench: &mut Bench) -> Result<()> {
    let docker = bench.docker(HOST)?;
    docker::remove_labelled(&docker, "ballast.role").await?;
    // The seed's default resync (30 s): rows 3 and 4 are driven by Docker events, not by the resync.
    let stage = Stage::start(bench, &[HOST], "30s").await?;
    let result = measure(bench, &docker, &stage).await;
    let cleanup = async {
        stage.ballast(&["delete", "role", ROLE]).await?;
        until(WAIT, Duration::from_millis(50), "the bench role's containers to go", || async {
            Ok(docker::ids(&docker, "ballast.role", true).await?.is_empty().then_some(()))
        })
        .await
    };
    let cleaned = cleanup.await;
    drop(stage);
    docker::remove_labelled(&docker, "ballast.role").await?;
    result.and(cleaned)
}

async fn measure(bench: &mut Bench, docker: &bollard::Docker, stage: &Stage) -> Result<()> {
    let poller = Poller::start(bench.up_addr(HOST)?);
    let proxy = &stage.proxies[0];
    let n = bench.n;
    stage.apply("bench.yaml", &role_yaml(ROLE, &[HOST], &bench.image("v1"), true)).await?;
    stage.converge(Some(ROLE)).await?;
    poller.first_ok(Instant::now() - crate::poller::PERIOD, Some("v1"), WAIT).await?;

    // Row 2: image change.
    let (mut total, mut gap, mut cli, mut runs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut tag = "v1";
    for i in 0..n {
        tag = if i % 2 == 0 { "v2" } else { "v1" };
        let t0 = Instant::now();
        stage.ballast(&["set", "image", ROLE, &bench.image(tag)]).await?;
        let t_cli = Instant::now();
        let t1 = poller.first_ok(t0, Some(tag), WAIT).await?;
        total.push(ms(t1 - t0));
        gap.push(ms(poller.longest_gap(t0, t1)));
        cli.push(ms(t_cli - t0));
        runs.push(Run::new(t0, t1, &proxy.since(t0)).mark("`ballast set image` returned", t_cli, t0));
        stage.converge(Some(ROLE)).await?;
    }
    let r = &mut bench.results;
    r.add("ballast.image", "`ballast set image` → first 200 of the new version", "ms", total);
    r.add("ballast.image.gap", "downtime (longest window with no 200)", "ms", gap);
    r.add("ballast.image.cli", "`ballast set image` returns (GET + PUT, compare-and-swap)", "ms", cli);
    r.note("ballast.image.timeline", timeline::render(&runs, "first `/up` 200 of the new version"));
    log("ballast row 2 measured");

    // Row 3: out-of-band removal.
    let (mut total, mut gap, mut runs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let id = single(docker).await?;
        let before = Instant::now();
        docker::remove(docker, &id).await?;
        let t0 = Instant::now();
        let t1 = first_ok_after_failure(&poller, before, tag).await?;
        total.push(ms(t1 - t0));
        gap.push(ms(poller.longest_gap(before, t1)));
        runs.push(Run::new(t0, t1, &proxy.since(t0)));
        stage.converge(Some(ROLE)).await?;
    }
    let r = &mut bench.results;
    r.add("ballast.rm", "`docker rm -f` → the replacement answers", "ms", total);
    r.add("ballast.rm.gap", "downtime (longest window with no 200, from the removal)", "ms", gap);
    r.note("ballast.rm.timeline", timeline::render(&runs, "first `/up` 200 of the replacement"));
    log("ballast row 3 measured");

    // Row 4: out-of-band memory change.
    let id = single(docker).await?;
    let mut updates = live_updates(docker, "ballast.role", &id).await?;
    stage.converge(Some(ROLE)).await?;
    let (mut restored, mut restarts, mut gap, mut runs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let id = single(docker).await?;
        let was = docker::state(docker, &id).await?.context("the container vanished")?;
        updates.drain();
        let before = Instant::now();
        docker::update_memory(docker, &id, 2 * ROLE_MEMORY).await?;
        let t0 = Instant::now();
        let drift = updates.next(WAIT).await?;
        let restore = updates.next(WAIT).await.context("ballast did not restore the memory")?;
        ensure!(
            drift.id == id && restore.id == id,
            "update events of another container: {drift:?} {restore:?}"
        );
        let t1 = Instant::now();
        let now = docker::state(docker, &id).await?.context("the container was removed")?;
        ensure!(
            now.memory == ROLE_MEMORY,
            "memory is {} after ballast's update, not {ROLE_MEMORY}",
            now.memory
        );
        restored.push((restore.time_nano - drift.time_nano) as f64 / 1e6);
        restarts.push(restart_count(&was, &now, single(docker).await? != id));
        let end = wait_past(&poller, t1.max(t0 + Duration::from_millis(200))).await;
        gap.push(ms(poller.longest_gap(before, end)));
        runs.push(Run::new(t0, t1, &proxy.since(t0)));
    }
    let r = &mut bench.results;
    r.add("ballast.mem", "`docker update --memory` → restored (dockerd's update events)", "ms", restored);
    r.add(
        "ballast.mem.restarts",
        "restarts while restoring (StartedAt, RestartCount, id unchanged = 0)",
        "restarts",
        restarts,
    );
    r.add(
        "ballast.mem.gap",
        "downtime (longest window with no 200 from the drift to 200 ms after)",
        "ms",
        gap,
    );
    r.note("ballast.mem.timeline", timeline::render(&runs, "restoring update event received"));
    log("ballast row 4 measured");
    drop(updates);

    // Start-first without a published port: the new container is created beside the old one.
    stage.apply("bench.yaml", &role_yaml(ROLE, &[HOST], &bench.image(tag), false)).await?;
    stage.converge(Some(ROLE)).await?;
    let (mut replaced, mut overlap) = (Vec::new(), Vec::new());
    for i in 0..n {
        let tag = if i % 2 == 0 { "v3" } else { "v1" };
        let old = single(docker).await?;
        let t0 = Instant::now();
        stage.ballast(&["set", "image", ROLE, &bench.image(tag)]).await?;
        replaced_by(docker, &format!("ballast.role={ROLE}"), &old).await?;
        replaced.push(ms(t0.elapsed()));
        // The old container ran until the new one was healthy: both ran at once for this long.
        let calls = proxy.since(t0);
        let start_new = calls.iter().find(|c| c.name() == "POST /containers/{id}/start").map(|c| c.at);
        let stop_old = calls.iter().rev().find(|c| c.name() == "POST /containers/{id}/stop").map(|c| c.at);
        if let (Some(start), Some(stop)) = (start_new, stop_old) {
            overlap.push(ms(stop.saturating_duration_since(start)));
        }
        stage.converge(Some(ROLE)).await?;
    }
    let r = &mut bench.results;
    r.add(
        "ballast.startfirst",
        "start-first, no published port: `ballast set image` → only the new container runs",
        "ms",
        replaced,
    );
    r.add(
        "ballast.startfirst.overlap",
        "start-first: old and new both running (new started → old stopped)",
        "ms",
        overlap,
    );
    log("ballast start-first measured");
    Ok(())
}

/// The one running container of the bench role on the host.
async fn single(docker: &bollard::Docker) -> Result<String> {
    until(WAIT, Duration::from_millis(20), "exactly one running bench container", || async {
        let ids = docker::ids(docker, &format!("ballast.role={ROLE}"), false).await?;
        Ok((ids.len() == 1).then(|| ids[0].clone()))
    })
    .await
}

/// Waits until the only running container carrying `label` is another than `old`.
pub async fn replaced_by(docker: &bollard::Docker, label: &str, old: &str) -> Result<String> {
    until(WAIT, Duration::from_millis(10), "the old container to stop and the new one to run", || async {
        let ids = docker::ids(docker, label, false).await?;
        Ok((ids.len() == 1 && ids[0] != old).then(|| ids[0].clone()))
    })
    .await
}

/// 0 when the container is the same one, not restarted; else 1.
pub fn restart_count(was: &docker::State, now: &docker::State, replaced: bool) -> f64 {
    let same = !replaced && was.started_at == now.started_at && was.restart_count == now.restart_count;
    if same {
        0.0
    } else {
        1.0
    }
}

/// The first 200 answering `tag` after a failed request, both after `after`: the replacement's first answer.
pub async fn first_ok_after_failure(poller: &Poller, after: Instant, tag: &str) -> Result<Instant> {
    until(WAIT, Duration::from_millis(5), "the replacement to answer /up", || async {
        let samples = poller.since(after);
        let Some(failed) = samples.iter().position(|s| s.body.is_none()) else { return Ok(None) };
        Ok(samples[failed..].iter().find(|s| s.body.as_deref() == Some(tag)).map(|s| s.at))
    })
    .await
}

/// Waits until the poller has a sample past `t`; returns `t`.
pub async fn wait_past(poller: &Poller, t: Instant) -> Instant {
    let _ = until(WAIT, Duration::from_millis(5), "the poller to pass a moment", || async {
        Ok(poller.since(t).first().map(|_| ()))
    })
    .await;
    t
}
