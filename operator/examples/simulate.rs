//! Scale by simulation: the whole reconciler (event loop, host passes, rollouts) against N in-memory hosts that
//! answer every Docker call after a fixed latency, with the in-memory store. Prints a table of wall time, operator
//! CPU time, host calls and store writes for: creating 3 roles on every host, changing their image, and each
//! resync of the converged fleet; and the peak RSS.
//!
//! `cargo run --release -p ballast-operator --example simulate -- --hosts 1000 [--latency 1ms] [--resync 5s]
//! [--max-unavailable 10%]`
//!
//! The hosts are `ballast_operator::hosts::fake::FakeHost`s behind the same `DockerHost` trait the SSH hosts
//! implement; the three roles all carry an HTTP health check, which the fake answers at once, so what is measured
//! is the operator and the modelled round trips, not a container's start-up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use ballast_operator::aws::NoAws;
use ballast_operator::hosts::fake::{FakeConnector, FakeHost};
use ballast_operator::hosts::{ContainerState, HostPool};
use ballast_operator::labels;
use ballast_operator::reconcile::{Config, Context, Unit};
use ballast_operator::runtime::{self, RuntimeConfig};
use ballast_operator::store::memory::MemoryStore;
use ballast_operator::store::{Actor, SpecStore};
use ballast_specs::wire::UnitState;
use ballast_specs::{MaxUnavailable, Object};
use clap::Parser;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const V1: &str = "registry.test/app:v1";
const V2: &str = "registry.test/app:v2";
/// The roles, each on every host, each with its own published port.
const ROLES: [(&str, u16); 3] = [("web", 3000), ("web_replica", 3001), ("job", 3002)];

/// Options of one simulation run.
#[derive(Clone, Debug, Parser)]
#[command(about = "the reconciler against simulated hosts: time, CPU and memory to converge")]
pub struct Args {
    /// How many simulated hosts.
    #[arg(long, default_value_t = 1000)]
    pub hosts: usize,
    /// The round trip of every Docker call (e.g. 1ms, 500us).
    #[arg(long, default_value = "1ms", value_parser = parse_duration)]
    pub latency: Duration,
    /// The operator's periodic resync.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub resync: Duration,
    /// How many resyncs of the converged fleet to measure.
    #[arg(long, default_value_t = 3)]
    pub resyncs: u32,
    /// How long each convergence may take before the run fails.
    #[arg(long, default_value = "600s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// The roles' `spec.rollout.maxUnavailable` (a count or a percentage, e.g. 10%); absent: one host at a time.
    #[arg(long, value_parser = MaxUnavailable::parse)]
    pub max_unavailable: Option<MaxUnavailable>,
}

/// What one phase cost.
#[derive(Clone, Debug, Default)]
pub struct Phase {
    pub name: String,
    pub wall: Duration,
    /// User + system CPU time of the whole process.
    pub cpu: Duration,
    /// Docker calls served by all hosts, by method.
    pub calls: BTreeMap<&'static str, u64>,
    /// Store revisions consumed (every write is one).
    pub writes: i64,
}

/// The results of a run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub phases: Vec<Phase>,
    /// CPU time per resync of the converged fleet.
    pub resync_cpu: Duration,
    /// List calls per host per resync (1 when nothing but the host pass runs).
    pub resync_lists_per_host: f64,
    /// `VmHWM`, bytes.
    pub peak_rss: u64,
}

/// The simulated fleet and the running reconciler.
struct Fleet {
    store: Arc<MemoryStore>,
    hosts: Vec<FakeHost>,
    ctx: Arc<Context>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!(
        "simulating {} hosts x {} roles ({} units), {:?} per docker call, resync {:?}, maxUnavailable {}",
        args.hosts,
        ROLES.len(),
        args.hosts * ROLES.len(),
        args.latency,
        args.resync,
        args.max_unavailable.unwrap_or_default()
    );
    let report = simulate(&args).await?;
    print!("{}", table(&report, args.hosts));
    Ok(())
}

/// Runs the three phases and checks the fleet after each.
pub async fn simulate(args: &Args) -> anyhow::Result<Report> {
    let fleet = Fleet::start(args);
    let mut report = Report::default();

    let mut objects: Vec<Object> = (0..args.hosts).map(|i| host(&name(i))).collect();
    objects.extend(ROLES.iter().map(|(r, port)| role(r, args.hosts, V1, *port, args.max_unavailable)));
    let phase = fleet
        .measure("create: apply hosts + roles", args.timeout, || async {
            fleet.store.apply(objects, false, &actor()).await.context("apply")?;
            Ok(())
        })
        .await?;
    report.phases.push(phase);
    fleet.check(V1)?;

    let phase = fleet
        .measure("image change v1 -> v2", args.timeout, || async {
            for (r, _) in ROLES {
                let mut role = fleet.store.get_role(r).await?.context("role")?;
                role.spec.image = V2.to_string();
                fleet.store.update_role(role, &actor()).await?;
            }
            Ok(())
        })
        .await?;
    report.phases.push(phase);
    fleet.check(V2)?;

    // A converged fleet: let the last triggers die down, then measure whole resync periods.
    tokio::time::sleep(args.resync / 2).await;
    let lists = fleet.calls().get("list").copied().unwrap_or(0);
    let started = cpu_time();
    tokio::time::sleep(args.resync * args.resyncs).await;
    report.resync_cpu = cpu_time().saturating_sub(started) / args.resyncs.max(1);
    let lists = fleet.calls().get("list").copied().unwrap_or(0) - lists;
    report.resync_lists_per_host = lists as f64 / (args.hosts as f64 * f64::from(args.resyncs.max(1)));
    fleet.check(V2)?;

    report.peak_rss = peak_rss();
    fleet.stop().await;
    Ok(report)
}

impl Fleet {
    fn start(args: &Args) -> Fleet {
        let store = Arc::new(MemoryStore::new());
        let connector = FakeConnector::with_latency(args.latency);
        let hosts: Vec<FakeHost> = (0..args.hosts)
            .map(|i| {
                let host = connector.host(&name(i));
                host.publish_image(V1);
                host.publish_image(V2);
                host
            })
            .collect();
        // The production knobs (`ballastd`'s defaults); only the resync is the run's.
        let ctx = Arc::new(Context::new(
            store.clone(),
            Arc::new(HostPool::new(Arc::new(connector))),
            Arc::new(NoAws),
            Arc::new(NoAws),
            Config::default(),
        ));
        let config = RuntimeConfig { resync: args.resync, ..RuntimeConfig::default() };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(runtime::run(ctx.clone(), config, shutdown.clone()));
        Fleet { store, hosts, ctx, shutdown, task }
    }

    /// Runs `change`, then waits until every unit is converged at its role's generation; what it cost.
    async fn measure<F, Fut>(&self, name: &str, timeout: Duration, change: F) -> anyhow::Result<Phase>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>>,
    {
        let calls = self.calls();
        let revision = self.store.snapshot().await?.revision;
        let (wall, cpu) = (Instant::now(), cpu_time());
        change().await?;
        let snapshot = self.store.snapshot().await?;
        let units = units(&snapshot);
        // `units[..seen]` were converged when last asked: each check asks from there on, so polling costs O(units)
        // over the phase rather than O(units) every time. A full check confirms the end.
        let mut seen = 0;
        let deadline = Instant::now() + timeout;
        loop {
            while seen < units.len() && self.converged(&units[seen]) {
                seen += 1;
            }
            if seen == units.len() {
                if units.iter().all(|unit| self.converged(unit)) {
                    break;
                }
                seen = 0;
            }
            if Instant::now() >= deadline {
                bail!("{name}: not converged after {timeout:?}: {}", self.summary(&snapshot));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (wall, cpu) = (wall.elapsed(), cpu_time().saturating_sub(cpu));
        let mut after = self.calls();
        for (method, n) in calls {
            *after.entry(method).or_default() -= n;
        }
        let writes = self.store.snapshot().await?.revision - revision;
        Ok(Phase { name: name.to_string(), wall, cpu, calls: after, writes })
    }

    /// The unit converged at its role's generation `.1` (the operator's own view of status).
    fn converged(&self, (unit, generation): &(Unit, u64)) -> bool {
        self.ctx
            .status(unit)
            .is_some_and(|s| s.state == UnitState::Converged && s.observed_generation == *generation)
    }

    /// How many units are in each state, for a failure message.
    fn summary(&self, snapshot: &ballast_operator::store::Snapshot) -> String {
        let mut states: BTreeMap<String, usize> = BTreeMap::new();
        for role in &snapshot.roles {
            for host in &role.spec.hosts {
                let unit = Unit { role: role.metadata.name.clone(), host: host.clone() };
                let state = match self.ctx.status(&unit) {
                    Some(s) if s.observed_generation == role.metadata.generation => format!("{:?}", s.state),
                    Some(s) => format!("{:?} (older generation)", s.state),
                    None => "no status".to_string(),
                };
                *states.entry(state).or_default() += 1;
            }
        }
        format!("{states:?}")
    }

    /// Exactly one running container of each role on each host, of `image`; the stored statuses agree.
    fn check(&self, image: &str) -> anyhow::Result<()> {
        for host in &self.hosts {
            let containers = host.containers();
            for (r, _) in ROLES {
                let of_role: Vec<_> = containers
                    .iter()
                    .filter(|c| c.labels.get(labels::ROLE).map(String::as_str) == Some(r))
                    .collect();
                ensure!(of_role.len() == 1, "{} containers of {r} on a host: {of_role:?}", of_role.len());
                let c = of_role[0];
                ensure!(c.image == image && c.state == ContainerState::Running, "{r}: {c:?}");
            }
        }
        Ok(())
    }

    /// Docker calls served so far by all hosts, by method.
    fn calls(&self) -> BTreeMap<&'static str, u64> {
        let mut calls = BTreeMap::new();
        for host in &self.hosts {
            for method in METHODS {
                *calls.entry(method).or_default() += host.calls(method);
            }
        }
        calls
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

/// Every unit of the snapshot, with its role's generation.
fn units(snapshot: &ballast_operator::store::Snapshot) -> Vec<(Unit, u64)> {
    let mut units = Vec::new();
    for role in &snapshot.roles {
        for host in &role.spec.hosts {
            units.push((
                Unit { role: role.metadata.name.clone(), host: host.clone() },
                role.metadata.generation,
            ));
        }
    }
    units
}

/// The `DockerHost` methods the fake counts.
const METHODS: [&str; 11] = [
    "list",
    "inspect",
    "image_present",
    "pull",
    "create",
    "start",
    "stop",
    "remove",
    "update_resources",
    "http_get",
    "events",
];

/// The report as a small table.
pub fn table(report: &Report, hosts: usize) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<30} {:>9} {:>9} {:>11} {:>8}   {}\n",
        "phase", "wall", "cpu", "host calls", "writes", "calls by method"
    ));
    for phase in &report.phases {
        let total: u64 = phase.calls.values().sum();
        let by: Vec<String> =
            phase.calls.iter().filter(|(_, n)| **n > 0).map(|(m, n)| format!("{m} {n}")).collect();
        out.push_str(&format!(
            "{:<30} {:>8.2}s {:>8.2}s {:>11} {:>8}   {}\n",
            phase.name,
            phase.wall.as_secs_f64(),
            phase.cpu.as_secs_f64(),
            total,
            phase.writes,
            by.join(", ")
        ));
        out.push_str(&format!(
            "{:<30} {:>8.2}ms per host\n",
            "",
            phase.wall.as_secs_f64() * 1000.0 / hosts.max(1) as f64
        ));
    }
    out.push_str(&format!(
        "{:<30} {:>9} {:>8.3}s   {:.2} list calls per host per resync\n",
        "resync of the converged fleet",
        "-",
        report.resync_cpu.as_secs_f64(),
        report.resync_lists_per_host
    ));
    out.push_str(&format!("peak RSS {:.1} MB\n", report.peak_rss as f64 / 1e6));
    out
}

fn name(i: usize) -> String {
    format!("h{:04}", i + 1)
}

fn actor() -> Actor {
    Actor("simulate".into())
}

fn host(name: &str) -> Object {
    serde_json::from_value(json!({
        "kind": "Host", "apiVersion": "ballast/v1", "metadata": {"name": name},
        "spec": {"address": format!("{name}.sim")}
    }))
    .expect("a valid host")
}

/// A role on every host, with resources and a health check (so no settle wait), rolling `max_unavailable` hosts
/// at once.
fn role(role: &str, hosts: usize, image: &str, port: u16, max_unavailable: Option<MaxUnavailable>) -> Object {
    let hosts: Vec<String> = (0..hosts).map(name).collect();
    let rollout = match max_unavailable {
        Some(max) => json!({"maxUnavailable": max}),
        None => json!({}),
    };
    serde_json::from_value(json!({
        "kind": "Role", "apiVersion": "ballast/v1", "metadata": {"name": role},
        "spec": {
            "hosts": hosts, "image": image, "resources": {"cpus": 0.5, "memory": "512m"},
            "env": {"RAILS_ENV": "production"}, "ports": [format!("{port}:3000")],
            "health": {"http": {"path": "/up", "port": 3000}, "interval": "1s", "timeout": "5s"},
            "deployTimeout": "60s", "rollout": rollout,
        }
    }))
    .expect("a valid role")
}

/// User + system CPU time of this process (all threads), from `/proc/self/stat`.
pub fn cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return Duration::ZERO };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15 (1-based).
    let Some((_, rest)) = stat.rsplit_once(')') else { return Duration::ZERO };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // `rest` starts at field 3 (state): utime is index 11, stime 12.
    Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / clock_ticks() as f64)
}

/// `VmHWM` of this process in bytes.
pub fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// `1ms`, `500us`, `5s`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration (as 1ms, 500us, 5s)"))?;
    match unit {
        "us" => Ok(Duration::from_micros(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        _ => Err(format!("{text:?} is not a duration (as 1ms, 500us, 5s)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The simulation's code path on a small fleet: everything converges, once created and once rolled, with one
    /// container per role and host; a converged fleet is listed about once per host per resync.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_fleet_converges_and_rolls() {
        let args = Args {
            hosts: 50,
            latency: Duration::from_millis(1),
            resync: Duration::from_millis(500),
            resyncs: 2,
            timeout: Duration::from_secs(60),
            max_unavailable: None,
        };
        let report = simulate(&args).await.expect("the simulation converges");
        assert_eq!(report.phases.len(), 2);
        let created = &report.phases[0];
        assert_eq!(created.calls.get("create"), Some(&(50 * 3)), "{created:?}");
        let rolled = &report.phases[1];
        assert_eq!(rolled.calls.get("create"), Some(&(50 * 3)), "{rolled:?}");
        assert_eq!(rolled.calls.get("remove"), Some(&(50 * 3)), "{rolled:?}");
        assert!(
            (0.5..=2.5).contains(&report.resync_lists_per_host),
            "list calls per host per resync: {}",
            report.resync_lists_per_host
        );
        assert!(report.peak_rss > 0);
        print!("{}", table(&report, args.hosts));
    }
}
