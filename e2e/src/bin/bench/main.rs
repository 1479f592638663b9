//! `bench`: the benchmark of issues 3 and 6. On a running e2e rig it measures ballast (the release `ballastd`
//! over SSH, a real etcd) against its floor (the Docker API by hand), Docker Swarm and Ansible, and writes
//! BENCHMARKS.md. Run it through `e2e/bench/run.sh`, which builds it, installs Ansible, brings the rig up and
//! takes it down again.
//!
//! Every figure that compares tools is measured in the same run, on the same kind of rig host, with a poller
//! on the host's `GET /up` every 10 ms all the while ([`poller`]).

mod ansible;
mod ballast;
mod docker;
mod downtime;
mod fleet;
mod floor;
mod poller;
mod probe;
mod report;
mod stage;
mod stats;
mod swarm;
mod timeline;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ballast_e2e::Rig;
use clap::Parser;
use tempfile::TempDir;

use crate::stats::Results;

/// The benchmark of ballast against its floor, Docker Swarm and Ansible on the e2e rig.
#[derive(Debug, Parser)]
#[command(name = "bench")]
struct Args {
    /// The rig to run on (brought up by e2e/rig/up.sh; e2e/bench/run.sh does that).
    #[arg(long, value_name = "DIR", required_unless_present_any = ["render", "probe"])]
    rig: Option<PathBuf>,
    /// Iterations per figure.
    #[arg(long, default_value_t = 10)]
    n: usize,
    /// Where to write the report.
    #[arg(long, value_name = "PATH")]
    out: PathBuf,
    /// A Python venv with ansible and the docker package (e2e/bench/run.sh makes it).
    #[arg(long, value_name = "DIR", required_unless_present_any = ["render", "probe"])]
    venv: Option<PathBuf>,
    /// Where to save the measurements (JSON), to write the report again later.
    #[arg(long, value_name = "PATH")]
    results: Option<PathBuf>,
    /// Measure nothing: write the report again from saved measurements (with the current analysis.md).
    #[arg(long, value_name = "PATH")]
    render: Option<PathBuf>,
    /// Sections to run, comma separated (default: all).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "LIST",
        default_value = "floor,ballast,ansible,swarm,downtime,fleet"
    )]
    only: Vec<String>,
    /// Measure nothing: `--n` rounds of `GET /up` to each address, latencies printed as JSON (the bench runs
    /// itself so inside a host's network namespace, see `probe.rs`).
    #[arg(long, value_delimiter = ',', value_name = "ADDR,...", hide = true)]
    probe: Vec<SocketAddr>,
    /// A line on how the run was made, for the report (e.g. the command and the commit).
    #[arg(long, default_value = "")]
    provenance: String,
}

/// What every section shares: the rig, the iteration count, the results so far, a scratch folder.
pub struct Bench {
    pub rig: Rig,
    pub n: usize,
    pub results: Results,
    pub venv: PathBuf,
    pub work: TempDir,
}

/// How long a single awaited thing may take before a section gives up.
pub const WAIT: Duration = Duration::from_secs(90);

/// ARP retransmit time on the hosts' `docker0` for the whole bench (see [`Bench::set_arp_retransmit`]).
pub const ARP_RETRANSMIT_MS: u32 = 10;

/// The sections in the order they run.
const SECTIONS: [&str; 6] = ["floor", "ballast", "ansible", "swarm", "downtime", "fleet"];

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.probe.is_empty() {
        return match probe::run(&args.probe, args.n) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench --probe: error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("bench: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            result = run(args) => result,
            signal = stop_signal() => Err(anyhow::anyhow!("stopped by {signal}")),
        }
    });
    // Children (etcd, ballastd, ansible) were stopped as their guards dropped with the future.
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("bench: some sections failed (see the report)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the sections asked for, writes the report; `false` when a section failed.
async fn run(args: Args) -> Result<bool> {
    if let Some(saved) = &args.render {
        let text = std::fs::read_to_string(saved).with_context(|| format!("reading {}", saved.display()))?;
        let run: report::Run =
            serde_json::from_str(&text).with_context(|| format!("reading {}", saved.display()))?;
        std::fs::write(&args.out, report::render(&run))
            .with_context(|| format!("writing {}", args.out.display()))?;
        log(&format!("wrote {} from {}", args.out.display(), saved.display()));
        return Ok(true);
    }
    let (Some(rig), Some(venv)) = (&args.rig, &args.venv) else {
        bail!("--rig and --venv are needed to measure")
    };
    for section in &args.only {
        if !SECTIONS.contains(&section.as_str()) {
            bail!("unknown section {section} (sections: {})", SECTIONS.join(", "));
        }
    }
    if args.n == 0 {
        bail!("--n must be at least 1");
    }
    // Rig::acquire takes the rig named by RIG_DIR and never tears it down (run.sh owns it).
    std::env::set_var("RIG_DIR", rig);
    let rig = Rig::acquire().context("taking the rig")?;
    let work = tempfile::Builder::new().prefix("ballast-bench-").tempdir().context("creating a temp dir")?;
    let mut bench = Bench { rig, n: args.n, results: Results::default(), venv: venv.clone(), work };
    let machine = report::Machine::gather(&bench).await;
    let started = Instant::now();
    log(&format!("rig {} with {} hosts; n = {}", bench.rig.dir.display(), bench.rig.hosts(), bench.n));
    bench.prepare().await.context("pulling the app images on hosts 1 and 2")?;
    for section in SECTIONS.iter().filter(|s| args.only.iter().any(|o| o == *s)) {
        let t = Instant::now();
        log(&format!("section {section}"));
        let result = match *section {
            "floor" => floor::run(&mut bench).await,
            "ballast" => ballast::run(&mut bench).await,
            "ansible" => ansible::run(&mut bench).await,
            "swarm" => swarm::run(&mut bench).await,
            "downtime" => downtime::run(&mut bench).await,
            _ => fleet::run(&mut bench).await,
        };
        match result {
            Ok(()) => log(&format!("section {section} done in {:.0} s", t.elapsed().as_secs_f64())),
            Err(e) => {
                log(&format!("section {section} failed: {e:#}"));
                bench.results.errors.push((section.to_string(), format!("{e:#}")));
            }
        }
    }
    let ok = bench.results.errors.is_empty();
    let run = report::Run {
        machine,
        results: bench.results,
        n: bench.n,
        provenance: args.provenance.clone(),
        seconds: started.elapsed().as_secs_f64(),
    };
    if let Some(path) = &args.results {
        let json = serde_json::to_string_pretty(&run).context("saving the measurements")?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    std::fs::write(&args.out, report::render(&run))
        .with_context(|| format!("writing {}", args.out.display()))?;
    log(&format!("wrote {} after {:.0} s", args.out.display(), run.seconds));
    Ok(ok)
}

impl Bench {
    /// Host `i`'s Docker socket.
    pub fn socket(&self, i: usize) -> PathBuf {
        self.rig.dir.join(format!("h{i}")).join("docker.sock")
    }

    /// A Docker API client of host `i`, straight on its socket.
    pub fn docker(&self, i: usize) -> Result<bollard::Docker> {
        docker::connect(&self.socket(i))
    }

    /// `HOST_i:3000`, where the apps answer `/up`.
    pub fn up_addr(&self, i: usize) -> Result<SocketAddr> {
        let addr = self.rig.addr(i)?;
        format!("{addr}:3000").parse().with_context(|| format!("bad address of host {i}: {addr}"))
    }

    pub fn image(&self, tag: &str) -> String {
        self.rig.image(tag)
    }

    /// `docker -H unix://SOCKET ARGS...` against host `i` (the CLI an engineer types); its stdout.
    pub async fn docker_cli(&self, i: usize, args: &[&str]) -> Result<String> {
        let mut command = tokio::process::Command::new("/usr/bin/docker");
        command.arg("-H").arg(format!("unix://{}", self.socket(i).display())).args(args);
        output(&mut command).await
    }

    /// Sets how often host `i`'s kernel resends an unanswered ARP request on `docker0` (default 1000 ms).
    ///
    /// With the default, a request that reaches a published port while a new container's address is not yet
    /// reachable makes the kernel wait up to 1 s before it asks for that address again: every stop-first
    /// replacement probed all the while (as here) would show up to 1 s more downtime, for every tool alike.
    pub async fn set_arp_retransmit(&self, i: usize, ms: u32) -> Result<()> {
        let netns = self.rig.var(&format!("RIG_H{i}_NETNS"))?;
        let mut command = tokio::process::Command::new("nsenter");
        command.arg(format!("--net=/var/run/netns/{netns}")).args([
            "sysctl",
            "-q",
            "-w",
            &format!("net.ipv4.neigh.docker0.retrans_time_ms={ms}"),
        ]);
        output(&mut command).await.map(drop)
    }

    /// The app images on hosts 1 and 2, so that no tool's first change pays for a pull; ARP resent after
    /// [`ARP_RETRANSMIT_MS`] on every host.
    async fn prepare(&self) -> Result<()> {
        for i in 1..=self.rig.hosts() {
            self.set_arp_retransmit(i, ARP_RETRANSMIT_MS).await?;
        }
        for i in 1..=self.rig.hosts().min(2) {
            let docker = self.docker(i)?;
            for tag in ["v1", "v2", "v3"] {
                docker::pull(&docker, &self.image(tag)).await?;
            }
        }
        Ok(())
    }
}

/// Runs a command to its end (killed if the future is dropped); its stdout, or an error with its output.
pub async fn output(command: &mut tokio::process::Command) -> Result<String> {
    command.stdin(std::process::Stdio::null()).kill_on_drop(true);
    let program = format!("{:?}", command.as_std().get_program());
    let out = command.output().await.with_context(|| format!("running {program}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let args: Vec<String> =
            command.as_std().get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        bail!("{program} {} failed ({}): {}{}", args.join(" "), out.status, tail(&stdout), tail(&stderr));
    }
    Ok(stdout)
}

/// The last lines of a long output.
pub fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.trim().lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Polls `check` every `every` until it gives `Some`; fails after `timeout` naming `what`.
pub async fn until<T, F, Fut>(timeout: Duration, every: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(every).await;
    }
}

/// A progress line on stderr with the time of day.
pub fn log(message: &str) {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    eprintln!("[{h:02}:{m:02}:{s:02}] bench: {message}");
}

/// A path as UTF-8 text.
pub fn text(path: &Path) -> Result<&str> {
    path.to_str().with_context(|| format!("{} is not UTF-8", path.display()))
}

async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
