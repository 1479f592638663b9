//! Rows 6 and 5 on every rig host: ballastd (`--resync 1s`) with each host's Docker socket behind a recording
//! proxy.
//!
//! - Row 6, scale: from empty hosts (no container, app image not pulled) to every `/up` answering: one role on
//!   host 1, one role on each of the N hosts (hosts work in parallel), one role spanning the N hosts (rolled
//!   one host at a time by design).
//! - Row 5, no-op cost of the converged fleet (one role per host): Docker API calls per host per resync (the
//!   proxies' log, grouped into resync bursts), etcd writes (the revision), ballastd's CPU per resync
//!   (`/proc/PID/task/*/schedstat`, cross-checked with `/proc/PID/stat`).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::docker;
use crate::poller::Poller;
use crate::stage::{role_yaml, Stage};
use crate::stats::ms;
use crate::{log, until, Bench, WAIT};

/// The resync period of this section.
const RESYNC: Duration = Duration::from_secs(1);
/// Calls further apart than this belong to different resyncs.
const BURST_GAP: Duration = Duration::from_millis(300);

pub async fn run(bench: &mut Bench) -> Result<()> {
    let hosts: Vec<usize> = (1..=bench.rig.hosts()).collect();
    let dockers = hosts.iter().map(|&i| bench.docker(i)).collect::<Result<Vec<_>>>()?;
    for docker in &dockers {
        docker::remove_labelled(docker, "ballast.role").await?;
    }
    let stage = Stage::start(bench, &hosts, "1s").await?;
    let result = measure(bench, &stage, &dockers).await;
    let mut cleaned = Ok(());
    for role in roles_of(&stage).await.unwrap_or_default() {
        if let Err(e) = stage.ballast(&["delete", "role", &role]).await {
            cleaned = Err(e);
        }
    }
    let gone = empty(&dockers).await;
    drop(stage);
    for docker in &dockers {
        docker::remove_labelled(docker, "ballast.role").await?;
    }
    result.and(cleaned).and(gone)
}

async fn measure(bench: &mut Bench, stage: &Stage, dockers: &[bollard::Docker]) -> Result<()> {
    let n = bench.n;
    let hosts = stage.hosts.clone();
    let count = hosts.len();
    let pollers = hosts.iter().map(|&i| Ok(Poller::start(bench.up_addr(i)?))).collect::<Result<Vec<_>>>()?;
    let image = bench.image("v1");

    // Row 6: from empty to converged.
    let one_each: Vec<(String, Vec<usize>)> = hosts.iter().map(|&i| (format!("s{i}"), vec![i])).collect();
    let scenarios = [
        ("fleet.scale.1", "1 host: one role on host 1".to_string(), vec![("s1".to_string(), vec![1])]),
        ("fleet.scale.n", format!("{count} hosts: one role on each"), one_each.clone()),
        (
            "fleet.scale.role",
            format!("{count} hosts: one role on all (created on all at once: there is nothing to roll)"),
            vec![("all".to_string(), hosts.clone())],
        ),
    ];
    for (key, label, roles) in &scenarios {
        let targets: Vec<usize> = roles.iter().flat_map(|(_, h)| h.iter().copied()).collect();
        let mut times = Vec::new();
        for _ in 0..n {
            for &i in &targets {
                docker::remove_image(&dockers[i - 1], &image).await?;
            }
            let yaml: Vec<String> = roles.iter().map(|(name, h)| role_yaml(name, h, &image, true)).collect();
            let t0 = Instant::now();
            stage.apply("scale.yaml", &yaml.join("---\n")).await?;
            let mut last = t0;
            for &i in &targets {
                last = last.max(pollers[i - 1].first_ok(t0, Some("v1"), WAIT).await?);
            }
            times.push(ms(last - t0));
            stage.converge(None).await?;
            for (name, _) in roles {
                stage.ballast(&["delete", "role", name]).await?;
            }
            empty(dockers).await?;
        }
        bench.results.add(key, &format!("{label}: apply → every `/up` answers"), "ms", times);
        log(&format!("{key} measured"));
    }

    // Row 5: the no-op cost of a converged fleet.
    let yaml: Vec<String> = one_each.iter().map(|(name, h)| role_yaml(name, h, &image, true)).collect();
    stage.apply("fleet.yaml", &yaml.join("---\n")).await?;
    stage.converge(None).await?;
    // Let the reconciles that converged the fleet finish their status writes: three quiet resyncs.
    let quiet = Instant::now();
    until(WAIT, Duration::from_millis(100), "three resyncs after converging", || async {
        Ok((quiet.elapsed() >= 3 * RESYNC).then_some(()))
    })
    .await?;
    let pid = stage.ballastd.pid().context("ballastd is not running")?;
    let windows = n.max(10) + 1;
    let t_start = Instant::now();
    let (mut revisions, mut cpu) = (vec![stage.etcd_revision().await?], vec![cpu_ns(pid)?]);
    let ticks0 = cpu_ticks(pid)?;
    for k in 1..=windows {
        let at = t_start + RESYNC * k as u32;
        tokio::time::sleep_until(at.into()).await;
        revisions.push(stage.etcd_revision().await?);
        cpu.push(cpu_ns(pid)?);
    }
    let ticks = cpu_ticks(pid)? - ticks0;
    let t_end = Instant::now();

    // Calls of each host, grouped into resync bursts.
    let mut calls: Vec<(Instant, usize, String)> = Vec::new();
    for (k, proxy) in stage.proxies.iter().enumerate() {
        calls.extend(proxy.since(t_start).into_iter().filter(|c| c.at <= t_end).map(|c| (c.at, k, c.name())));
    }
    calls.sort_by_key(|c| c.0);
    let mut bursts: Vec<Vec<(Instant, usize, String)>> = Vec::new();
    for call in calls {
        match bursts.last_mut() {
            Some(burst) if call.0 - burst.last().map_or(call.0, |c| c.0) < BURST_GAP => burst.push(call),
            _ => bursts.push(vec![call]),
        }
    }
    let (mut per_host, mut lists, mut others) = (Vec::new(), Vec::new(), Vec::new());
    let mut names = std::collections::BTreeMap::<String, usize>::new();
    for burst in &bursts {
        for k in 0..count {
            let mine: Vec<&String> = burst.iter().filter(|c| c.1 == k).map(|c| &c.2).collect();
            per_host.push(mine.len() as f64);
            lists.push(mine.iter().filter(|name| name.as_str() == "GET /containers/json").count() as f64);
            others.push(mine.iter().filter(|name| name.as_str() != "GET /containers/json").count() as f64);
            for name in mine {
                *names.entry(name.clone()).or_default() += 1;
            }
        }
    }
    let writes: Vec<f64> = revisions.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
    let cpu_ms: Vec<f64> = cpu.windows(2).map(|w| (w[1] - w[0]) as f64 / 1e6).collect();
    let r = &mut bench.results;
    r.add("fleet.noop.calls", "Docker API calls per host per resync", "calls", per_host);
    r.add("fleet.noop.list", "of which `GET /containers/json`", "calls", lists);
    r.add("fleet.noop.other", "of which other calls", "calls", others);
    r.add("fleet.noop.writes", "etcd writes per resync period (revision increase)", "writes", writes);
    r.add(
        "fleet.noop.cpu",
        &format!("ballastd CPU per resync period ({count} hosts, schedstat)"),
        "ms",
        cpu_ms,
    );
    let mix: Vec<String> = names.iter().map(|(name, c)| format!("`{name}` × {c}")).collect();
    r.note(
        "fleet.noop",
        format!(
            "{} resync bursts seen in {:.1} s ({windows} periods of {} s) on {count} hosts; calls: {}. \
             ballastd's CPU from /proc/PID/stat over the whole window: {ticks} ticks of 10 ms ({:.1} ms per period).",
            bursts.len(),
            (t_end - t_start).as_secs_f64(),
            RESYNC.as_secs(),
            if mix.is_empty() { "none".to_string() } else { mix.join(", ") },
            ticks as f64 * 10.0 / windows as f64,
        ),
    );
    log("fleet row 5 measured");
    Ok(())
}

/// Waits until no host has a ballast container left.
async fn empty(dockers: &[bollard::Docker]) -> Result<()> {
    until(WAIT, Duration::from_millis(50), "every host to have no ballast container", || async {
        for docker in dockers {
            if !docker::ids(docker, "ballast.role", true).await?.is_empty() {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .await
}

/// The roles stored now.
async fn roles_of(stage: &Stage) -> Result<Vec<String>> {
    let out = stage.ballast(&["get", "roles", "-o", "json"]).await?;
    let list: serde_json::Value = serde_json::from_str(&out).context("get roles -o json")?;
    Ok(list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.pointer("/metadata/name").and_then(|n| n.as_str()).map(String::from))
                .collect()
        })
        .unwrap_or_default())
}

/// CPU time of every thread of `pid`, in ns (`/proc/PID/task/*/schedstat`, first field).
fn cpu_ns(pid: u32) -> Result<u64> {
    let mut total = 0;
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .with_context(|| format!("reading /proc/{pid}/task"))?;
    for task in tasks.flatten() {
        let text = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        total += text.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    Ok(total)
}

/// utime + stime of `pid` in clock ticks (`/proc/PID/stat`).
fn cpu_ticks(pid: u32) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let after = text.rsplit_once(')').map(|(_, rest)| rest).context("bad /proc/PID/stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the command: state is field 3, utime 14, stime 15.
    let field =
        |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok()).context("bad /proc/PID/stat");
    Ok(field(14)? + field(15)?)
}
