//! Row 1, the floor, on host 1: `docker run` to the first `/up` 200, and a replacement by hand through the
//! Docker API (stop, remove, create, start) to the first 200 of the new version, with its downtime; the time
//! of each API call. Nothing can replace a container faster than these calls.

use std::time::Instant;

use anyhow::{ensure, Result};

use crate::docker::{self, app_body, timed};
use crate::poller::Poller;
use crate::stage::ROLE_MEMORY;
use crate::stats::ms;
use crate::{log, Bench, WAIT};

const HOST: usize = 1;
const LABEL: &str = "bench.floor";

pub async fn run(bench: &mut Bench) -> Result<()> {
    let docker = bench.docker(HOST)?;
    docker::remove_labelled(&docker, LABEL).await?;
    let result = measure(bench, &docker).await;
    docker::remove_labelled(&docker, LABEL).await?;
    result
}

async fn measure(bench: &mut Bench, docker: &bollard::Docker) -> Result<()> {
    let poller = Poller::start(bench.up_addr(HOST)?);
    let n = bench.n;
    let socket = format!("unix://{}", bench.socket(HOST).display());

    // docker run -d -p 3000:3000 → first 200.
    let mut run = Vec::new();
    for i in 0..n {
        let name = format!("bench-floor-run-{i}");
        let t0 = Instant::now();
        let id = crate::output(tokio::process::Command::new("/usr/bin/docker").args([
            "-H",
            &socket,
            "run",
            "-d",
            "--name",
            &name,
            "--label",
            LABEL,
            "-p",
            "3000:3000",
            "--memory",
            "256m",
            &bench.image("v1"),
        ]))
        .await?;
        let t1 = poller.first_ok(t0, Some("v1"), WAIT).await?;
        run.push(ms(t1 - t0));
        docker::remove(docker, id.trim()).await?;
    }
    bench.results.add("floor.run", "`docker run -d -p 3000:3000` → first `/up` 200", "ms", run);

    // By hand through the API: stop, remove, create, start; v1 → v2 → v1 ...
    let mut old = docker::create(
        docker,
        "bench-floor-a0",
        app_body(&bench.image("v1"), true, ROLE_MEMORY, &[(LABEL, "1")]),
    )
    .await?;
    docker::start(docker, &old).await?;
    poller.first_ok(Instant::now() - crate::poller::PERIOD, Some("v1"), WAIT).await?;
    let by_hand = replace(bench, docker, &poller, &mut old, "a").await?;
    let r = &mut bench.results;
    r.add(
        "floor.replace",
        "replacement by hand (stop, remove, create, start) → first 200 of the new version",
        "ms",
        by_hand.total,
    );
    r.add(
        "floor.replace.gap",
        "downtime of that replacement (longest window with no 200)",
        "ms",
        by_hand.gap,
    );
    r.add("floor.api.stop", "API `POST /containers/{id}/stop` (app exits on SIGTERM)", "ms", by_hand.stop);
    r.add("floor.api.remove", "API `DELETE /containers/{id}`", "ms", by_hand.remove);
    r.add("floor.api.create", "API `POST /containers/create`", "ms", by_hand.create);
    r.add("floor.api.start", "API `POST /containers/{id}/start`", "ms", by_hand.start);

    // The same with the kernel's default ARP retransmit time (1 s).
    bench.set_arp_retransmit(HOST, 1000).await?;
    let default_arp = replace(bench, docker, &poller, &mut old, "b").await;
    bench.set_arp_retransmit(HOST, crate::ARP_RETRANSMIT_MS).await?;
    let default_arp = default_arp?;
    let r = &mut bench.results;
    r.add(
        "floor.replace.arp",
        "the same replacement with the kernel's default ARP retransmit (1 s)",
        "ms",
        default_arp.total,
    );
    r.add("floor.replace.arp.gap", "its downtime", "ms", default_arp.gap);

    // In-place memory update, inspect and list.
    let (mut update, mut inspect, mut list) = (Vec::new(), Vec::new(), Vec::new());
    let started = docker::state(docker, &old).await?;
    for i in 0..n {
        let memory = if i % 2 == 0 { 2 * ROLE_MEMORY } else { ROLE_MEMORY };
        let ((), t) = timed(docker::update_memory(docker, &old, memory)).await?;
        update.push(t);
        let (_, t) = timed(docker::state(docker, &old)).await?;
        inspect.push(t);
        let (_, t) = timed(docker::ids(docker, "ballast.role", true)).await?;
        list.push(t);
    }
    let after = docker::state(docker, &old).await?;
    ensure!(
        started.as_ref().map(|s| &s.started_at) == after.as_ref().map(|s| &s.started_at),
        "docker update restarted the container"
    );
    let r = &mut bench.results;
    r.add("floor.api.update", "API `POST /containers/{id}/update` (memory, in place)", "ms", update);
    r.add("floor.api.inspect", "API `GET /containers/{id}/json`", "ms", inspect);
    r.add("floor.api.list", "API `GET /containers/json` (label filter, all)", "ms", list);
    log("floor measured");
    Ok(())
}

/// The times of n replacements by hand.
#[derive(Default)]
struct Replacements {
    total: Vec<f64>,
    gap: Vec<f64>,
    stop: Vec<f64>,
    remove: Vec<f64>,
    create: Vec<f64>,
    start: Vec<f64>,
}

/// Replaces `old` n times through the API (v2, v1, v2 ...): stop, remove, create, start; `old` ends as the
/// last container made. Names are `bench-floor-SERIESi`.
async fn replace(
    bench: &Bench,
    docker: &bollard::Docker,
    poller: &Poller,
    old: &mut String,
    series: &str,
) -> Result<Replacements> {
    let mut r = Replacements::default();
    for i in 0..bench.n {
        let tag = if i % 2 == 0 { "v2" } else { "v1" };
        let body = app_body(&bench.image(tag), true, ROLE_MEMORY, &[(LABEL, "1")]);
        let t0 = Instant::now();
        let ((), t_stop) = timed(docker::stop(docker, old)).await?;
        let ((), t_remove) = timed(docker::remove(docker, old)).await?;
        let (id, t_create) =
            timed(docker::create(docker, &format!("bench-floor-{series}{}", i + 1), body)).await?;
        let ((), t_start) = timed(docker::start(docker, &id)).await?;
        let t1 = poller.first_ok(t0, Some(tag), WAIT).await?;
        r.total.push(ms(t1 - t0));
        r.gap.push(ms(poller.longest_gap(t0, t1)));
        r.stop.push(t_stop);
        r.remove.push(t_remove);
        r.create.push(t_create);
        r.start.push(t_start);
        *old = id;
    }
    // Back at v1 for whoever comes next.
    if bench.n % 2 == 1 {
        docker::stop(docker, old).await?;
        docker::remove(docker, old).await?;
        let body = app_body(&bench.image("v1"), true, ROLE_MEMORY, &[(LABEL, "1")]);
        *old = docker::create(docker, &format!("bench-floor-{series}0"), body).await?;
        docker::start(docker, old).await?;
        poller.first_ok(Instant::now(), Some("v1"), WAIT).await?;
    }
    Ok(r)
}
