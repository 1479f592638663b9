//! Row 7, zero downtime, on host 1: failed requests during an image change under load, with an app that boots
//! slowly (nothing listens for [`BOOT`] s after its start, as a Rails app binding Puma late). A bounded load
//! ([`ballast_e2e::load`]: [`RATE`] `GET /up` a second, keep-alive as browsers and load balancers do) runs from
//! before the change until the new version serves; every answer that is not a 200, and every failed connection,
//! counts.
//!
//! - ballast with its proxy: the role behind the host's Caddy (`proxy: {port: 80}`), start-first;
//! - ballast stop-first: the same role publishing `3000:3000`, as the seed's web role is today;
//! - the stop-first floor by hand: stop, remove, create, start through the Docker API.
//!
//! (Docker Swarm's figure is taken in the swarm section.) And what the proxy costs: the latency of `GET /up`
//! through the proxy against straight to the container, both sent from inside the host's network namespace
//! ([`crate::probe`]).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use ballast_e2e::load::{Load, Report, Running, MAX_DURATION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::docker::{self, app_body};
use crate::stage::{Stage, ROLE_MEMORY};
use crate::stats::ms;
use crate::{log, probe, until, Bench, WAIT};

const HOST: usize = 1;
const ROLE: &str = "web";
/// How long the app takes to listen after its start, in seconds (the image's `BOOT_DELAY`).
pub const BOOT: u32 = 5;
/// Requests a second of the load.
pub const RATE: u32 = 200;
/// The port the proxy serves.
const PROXY_PORT: u16 = 80;
/// The floor's containers carry this label.
const FLOOR_LABEL: &str = "bench.downtime";

pub async fn run(bench: &mut Bench) -> Result<()> {
    let docker = bench.docker(HOST)?;
    docker::remove_labelled(&docker, "ballast.role").await?;
    docker::remove_labelled(&docker, FLOOR_LABEL).await?;
    let stage = Stage::start(bench, &[HOST], "30s").await?;
    let result = with_ballast(bench, &docker, &stage).await;
    let cleanup = async {
        let _ = stage.ballast(&["delete", "role", ROLE]).await;
        until(WAIT, Duration::from_millis(50), "ballast's containers to go (the proxy's too)", || async {
            Ok(docker::ids(&docker, "ballast.schema", true).await?.is_empty().then_some(()))
        })
        .await
    };
    let cleaned = cleanup.await;
    drop(stage);
    docker::remove_labelled(&docker, "ballast.schema").await?;
    let floor = by_hand(bench, &docker).await;
    docker::remove_labelled(&docker, FLOOR_LABEL).await?;
    result.and(cleaned).and(floor)
}

/// The role of this section, slow to boot; behind the proxy or publishing `3000:3000` stop-first.
fn role_yaml(bench: &Bench, tag: &str, proxied: bool) -> String {
    let image = bench.image(tag);
    let shape = if proxied {
        format!("proxy: {{port: {PROXY_PORT}}}\n  strategy: start-first")
    } else {
        "ports: [\"3000:3000\"]\n  strategy: stop-first".to_string()
    };
    format!(
        "apiVersion: ballast/v1
kind: Role
metadata: {{name: {ROLE}}}
spec:
  hosts: [h{HOST}]
  image: {image}
  env: {{BOOT_DELAY: \"{BOOT}\"}}
  resources: {{memory: 256m}}
  {shape}
  health: {{http: {{path: /up, port: 3000}}, interval: 1s, timeout: 5s}}
  deployTimeout: 60s
"
    )
}

async fn with_ballast(bench: &mut Bench, docker: &bollard::Docker, stage: &Stage) -> Result<()> {
    let n = bench.n.min(5);
    let host = bench.rig.addr(HOST)?;
    let proxied: SocketAddr = format!("{host}:{PROXY_PORT}").parse()?;

    stage.apply("web.yaml", &role_yaml(bench, "v1", true)).await?;
    stage.converge(Some(ROLE)).await?;
    let (failed, total) = changes(bench, stage, proxied, n).await?;
    let r = &mut bench.results;
    r.add(
        "downtime.proxy",
        "ballast with its proxy: failed requests during an image change",
        "requests",
        failed,
    );
    r.add("downtime.proxy.time", "ballast with its proxy: `ballast set image` → converged", "ms", total);
    log("downtime: ballast with its proxy measured");

    // What the proxy adds: the same GET through it and straight to the container, from the host's namespace.
    let id = docker::ids(docker, "ballast.role", false).await?;
    let id = id.first().context("the role has no running container")?;
    let ip = docker::ip(docker, id).await?.context("the role's container has no address")?;
    let direct: SocketAddr = format!("{ip}:3000").parse()?;
    let netns = bench.rig.var(&format!("RIG_H{HOST}_NETNS"))?.to_string();
    let (mut p50, mut p99, mut d50, mut d99) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let [through, straight] = probe::latencies(&netns, [proxied, direct], 500).await?;
        p50.push(ms(probe::quantile(&through, 0.5)));
        p99.push(ms(probe::quantile(&through, 0.99)));
        d50.push(ms(probe::quantile(&straight, 0.5)));
        d99.push(ms(probe::quantile(&straight, 0.99)));
    }
    let r = &mut bench.results;
    r.add("proxy.latency.p50", "`GET /up` through the proxy, p50 of 500", "ms", p50);
    r.add("proxy.latency.p99", "`GET /up` through the proxy, p99 of 500", "ms", p99);
    r.add("proxy.latency.direct.p50", "`GET /up` straight to the container, p50 of 500", "ms", d50);
    r.add("proxy.latency.direct.p99", "`GET /up` straight to the container, p99 of 500", "ms", d99);
    log("downtime: the proxy's latency measured");

    // The same role stop-first, publishing its port.
    stage.ballast(&["delete", "role", ROLE]).await?;
    until(WAIT, Duration::from_millis(50), "the proxied role to go", || async {
        Ok(docker::ids(docker, "ballast.schema", true).await?.is_empty().then_some(()))
    })
    .await?;
    stage.apply("web.yaml", &role_yaml(bench, "v1", false)).await?;
    stage.converge(Some(ROLE)).await?;
    let published = bench.up_addr(HOST)?;
    let (failed, total) = changes(bench, stage, published, n).await?;
    let r = &mut bench.results;
    r.add(
        "downtime.stopfirst",
        "ballast stop-first: failed requests during an image change",
        "requests",
        failed,
    );
    r.add("downtime.stopfirst.time", "ballast stop-first: `ballast set image` → converged", "ms", total);
    log("downtime: ballast stop-first measured");
    Ok(())
}

/// `n` image changes (v2, v1, v2 ...) under load on `addr`: the failed requests and the time to converge of each.
async fn changes(bench: &Bench, stage: &Stage, addr: SocketAddr, n: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let (mut failed, mut total) = (Vec::new(), Vec::new());
    for i in 0..n {
        let tag = if i % 2 == 0 { "v2" } else { "v1" };
        let load = start(addr);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t0 = Instant::now();
        stage.ballast(&["set", "image", ROLE, &bench.image(tag)]).await?;
        stage.converge(Some(ROLE)).await?;
        total.push(ms(t0.elapsed()));
        let report = served(load, addr, tag).await?;
        log(&format!("downtime: {addr} → {tag}: {report}"));
        failed.push(failures(&report));
    }
    Ok((failed, total))
}

/// The load of this row on `addr`: [`RATE`] `GET /up` a second, for at most a minute.
pub fn start(addr: SocketAddr) -> Running {
    Load::new(&format!("http://{addr}/up")).rate(RATE).duration(MAX_DURATION).start()
}

/// Every request of a report that did not get a 200.
pub fn failures(report: &Report) -> f64 {
    (report.failed + report.non_200) as f64
}

/// Lets the load run until `tag` answers `GET /up` on `addr`, and half a second more; then stops it.
pub async fn served(load: Running, addr: SocketAddr, tag: &str) -> Result<Report> {
    let seen = until(WAIT, Duration::from_millis(20), &format!("{tag} to answer on {addr}"), || async {
        Ok(answers(addr).await.is_some_and(|body| body == tag).then_some(()))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = tokio::task::spawn_blocking(move || load.finish()).await?;
    seen.with_context(|| report.to_string())?;
    ensure!(report.versions.contains_key(tag), "{tag} never answered under load: {report}");
    Ok(report)
}

/// The body of a 200 to `GET /up` on `addr` (a new connection), trimmed; `None` for anything else.
async fn answers(addr: SocketAddr) -> Option<String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET /up HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.ok()?;
        let (head, body) = answer.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200").then(|| body.trim().to_string())
    };
    tokio::time::timeout(Duration::from_secs(1), exchange).await.ok().flatten()
}

/// The stop-first floor: stop, remove, create, start through the Docker API, under the same load.
async fn by_hand(bench: &mut Bench, docker: &bollard::Docker) -> Result<()> {
    let n = bench.n.min(5);
    let body = |tag: &str| {
        let mut body = app_body(&bench.image(tag), true, ROLE_MEMORY, &[(FLOOR_LABEL, "1")]);
        body.env = Some(vec![format!("BOOT_DELAY={BOOT}")]);
        body
    };
    let mut old = docker::create(docker, "bench-downtime-0", body("v1")).await?;
    docker::start(docker, &old).await?;
    let addr = bench.up_addr(HOST)?;
    served(start(addr), addr, "v1").await?;
    let mut failed = Vec::new();
    for i in 0..n {
        let tag = if i % 2 == 0 { "v2" } else { "v1" };
        let load = start(addr);
        tokio::time::sleep(Duration::from_millis(500)).await;
        docker::stop(docker, &old).await?;
        docker::remove(docker, &old).await?;
        let new = docker::create(docker, &format!("bench-downtime-{}", i + 1), body(tag)).await?;
        docker::start(docker, &new).await?;
        old = new;
        let report = served(load, addr, tag).await?;
        log(&format!("downtime: floor → {tag}: {report}"));
        failed.push(failures(&report));
    }
    docker::remove(docker, &old).await?;
    bench.results.add(
        "downtime.floor",
        "stop-first by hand (stop, remove, create, start): failed requests during the change",
        "requests",
        failed,
    );
    log("downtime: the floor measured");
    Ok(())
}
