//! Access to the e2e rig for scenarios: its hosts' Docker engines, links and keys, through `e2e/rig/ctl.sh`.
//!
//! A scenario takes the rig with [`Rig::acquire`]: the one named by `RIG_DIR` (brought up by `.ci/run`), or else a
//! private one brought up for the test and torn down when the guard drops. One scenario uses the rig at a time
//! (the rig's names and addresses are fixed): a process-wide lock, and nextest's `rig` test group across processes.
//! Every scenario starts and ends with no ballast container on any rig host.
//!
//! A rig may keep its registry behind auth (`RIG_REGISTRY_AUTH=1`, the credentials of moto's fake ECR token; a
//! private rig is brought up that way unless `RIG_REGISTRY_AUTH=0` is set): then `ballastd` pulls through ECR
//! credentials from a moto ([`ballastd_options`] with an AWS endpoint) and scenarios pull by hand with [`Rig::pull`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ballast_tests::ballastd::Options;
use ballast_tests::moto::REGION;

pub mod load;
pub mod stage;

static RIG_LOCK: Mutex<()> = Mutex::new(());

/// A rig in use by one scenario.
pub struct Rig {
    pub dir: PathBuf,
    env: BTreeMap<String, String>,
    /// The rig was brought up for this scenario: tear it down on drop.
    owned: bool,
    _lock: MutexGuard<'static, ()>,
}

impl Rig {
    /// The rig of `RIG_DIR`, or a private 2-host rig when it is not set.
    pub fn acquire() -> Result<Rig> {
        let lock = RIG_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let (dir, owned) = match std::env::var_os("RIG_DIR") {
            Some(dir) => (PathBuf::from(dir), false),
            None => {
                let dir = PathBuf::from(format!("/tmp/ballast-rig-{}", std::process::id()));
                let auth = std::env::var("RIG_REGISTRY_AUTH").unwrap_or_else(|_| "1".to_string());
                script_with("up.sh", &["2", path_str(&dir)?], &[("RIG_REGISTRY_AUTH", &auth)])
                    .context("bringing up a private rig (is this root?)")?;
                (dir, true)
            }
        };
        let text = std::fs::read_to_string(dir.join("rig.env"))
            .with_context(|| format!("no rig in {} (rig.env missing)", dir.display()))?;
        let env = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').trim_matches('\'').to_string()))
            .collect();
        let rig = Rig { dir, env, owned, _lock: lock };
        rig.clean()?;
        Ok(rig)
    }

    /// A `rig.env` variable.
    pub fn var(&self, name: &str) -> Result<&str> {
        self.env.get(name).map(String::as_str).with_context(|| format!("rig.env has no {name}"))
    }

    /// How many hosts the rig has.
    pub fn hosts(&self) -> usize {
        self.var("RIG_N").ok().and_then(|n| n.parse().ok()).unwrap_or(0)
    }

    /// `HOST:PORT` of the rig's registry.
    pub fn registry(&self) -> &str {
        self.var("RIG_REGISTRY").unwrap_or("10.211.0.1:5000")
    }

    /// Whether the registry asks for credentials (`RIG_REGISTRY_AUTH=1`): an anonymous pull then fails.
    pub fn registry_auth(&self) -> bool {
        self.var("RIG_REGISTRY_AUTH").is_ok_and(|v| v == "1")
    }

    /// Pulls `image` on host `i` with the docker CLI, with the registry's credentials when it asks for them
    /// (kept in a throwaway client config, never root's `~/.docker`).
    pub fn pull(&self, i: usize, image: &str) -> Result<String> {
        if !self.registry_auth() {
            return self.docker(i, &["pull", "-q", image]);
        }
        let dir = tempfile::Builder::new().prefix("ballast-e2e-docker-").tempdir()?;
        let config = path_str(dir.path())?;
        let (user, password) = (self.var("RIG_REGISTRY_USER")?, self.var("RIG_REGISTRY_PASSWORD")?);
        let login = ["--config", config, "login", "-u", user, "--password-stdin", self.registry()];
        self.docker_with_stdin(i, &login, password)?;
        self.docker(i, &["--config", config, "pull", "-q", image])
    }

    /// `REGISTRY/ballast/app:TAG`.
    pub fn image(&self, tag: &str) -> String {
        format!("{}:{tag}", self.var("RIG_APP_IMAGE").unwrap_or("10.211.0.1:5000/ballast/app"))
    }

    pub fn hosts_yaml(&self) -> PathBuf {
        self.dir.join("hosts.yaml")
    }

    pub fn ssh_key(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// The address of host `i`.
    pub fn addr(&self, i: usize) -> Result<&str> {
        self.var(&format!("RIG_H{i}_ADDR"))
    }

    /// The docker CLI against host `i`; its trimmed stdout.
    pub fn docker(&self, i: usize, args: &[&str]) -> Result<String> {
        let i = i.to_string();
        let mut all = vec!["docker", i.as_str()];
        all.extend_from_slice(args);
        self.ctl(&all)
    }

    /// The docker CLI against host `i`, `input` on its stdin; its trimmed stdout.
    fn docker_with_stdin(&self, i: usize, args: &[&str], input: &str) -> Result<String> {
        use std::io::Write;
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("rig/ctl.sh");
        let mut child = Command::new("bash")
            .arg(&path)
            .args([path_str(&self.dir)?, "docker", &i.to_string()])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("running ctl.sh docker")?;
        child.stdin.take().context("ctl.sh stdin")?.write_all(input.as_bytes())?;
        let output = child.wait_with_output().context("running ctl.sh docker")?;
        if !output.status.success() {
            bail!("docker {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// `ctl.sh DIR ARGS...`; its trimmed stdout.
    pub fn ctl(&self, args: &[&str]) -> Result<String> {
        let mut all = vec![path_str(&self.dir)?];
        all.extend_from_slice(args);
        script("ctl.sh", &all)
    }

    /// Ids of the containers on host `i` carrying `label` (`KEY` or `KEY=VALUE`), running or not.
    pub fn containers(&self, i: usize, label: &str) -> Result<Vec<String>> {
        let out = self.docker(i, &["ps", "-aq", "--no-trunc", "--filter", &format!("label={label}")])?;
        Ok(out.split_whitespace().map(str::to_string).collect())
    }

    /// The only container of `role` on host `i`.
    pub fn container_of(&self, i: usize, role: &str) -> Result<String> {
        let ids = self.containers(i, &format!("ballast.role={role}"))?;
        match ids.as_slice() {
            [id] => Ok(id.clone()),
            _ => bail!("expected one {role} container on host {i}, found {}", ids.len()),
        }
    }

    /// One `docker inspect --format` field of a container on host `i`.
    pub fn inspect(&self, i: usize, id: &str, template: &str) -> Result<String> {
        self.docker(i, &["inspect", "--format", template, id])
    }

    /// `GET http://HOST_i:PORT/PATH` from the root namespace: the body, or an error.
    pub fn curl(&self, i: usize, port: u16, path: &str) -> Result<String> {
        self.ctl(&["curl", &i.to_string(), &port.to_string(), path])
    }

    /// Removes every ballast container (label `ballast.role`) and every bystander the scenarios made
    /// (label `e2e.bystander`, no ballast label) on every host.
    pub fn clean(&self) -> Result<()> {
        for i in 1..=self.hosts() {
            for label in ["ballast.role", "e2e.bystander"] {
                for id in self.containers(i, label)? {
                    self.docker(i, &["rm", "-f", &id])?;
                }
            }
        }
        Ok(())
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if self.owned {
            if let Ok(dir) = path_str(&self.dir) {
                let _ = script("down.sh", &[dir]);
            }
        } else {
            let _ = self.clean();
        }
    }
}

/// How a scenario's `ballastd` runs on the rig: its SSH key and known_hosts, `--resync 5s` unless `extra` sets
/// one, and `extra`. With `aws` (an AWS endpoint URL: a moto's, or a dead one), the AWS configuration of the
/// environment points at it and the rig's registry is ECR (`--ecr-registry`); without it, a rig whose registry
/// asks for credentials is refused (ballastd could not pull).
pub fn ballastd_options(rig: &Rig, etcd: &[String], aws: Option<&str>, extra: &[&str]) -> Result<Options> {
    let mut args = vec![
        "--ssh-key".to_string(),
        path_str(&rig.ssh_key())?.to_string(),
        "--known-hosts".to_string(),
        path_str(&rig.known_hosts())?.to_string(),
    ];
    if !extra.contains(&"--resync") {
        args.extend(["--resync".to_string(), "5s".to_string()]);
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    let mut env = Vec::new();
    match aws {
        Some(endpoint) => {
            args.extend(["--ecr-registry".to_string(), rig.registry().to_string()]);
            env = aws_env(endpoint);
        }
        None if rig.registry_auth() => {
            bail!("the rig's registry asks for credentials: ballastd needs an AWS endpoint (a moto) for ECR tokens")
        }
        None => {}
    }
    Ok(Options { etcd: etcd.to_vec(), args, env, ..Options::default() })
}

/// The standard AWS configuration of a process that talks to the AWS API at `endpoint` with test credentials.
pub fn aws_env(endpoint: &str) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_REGION", REGION),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Runs `e2e/rig/NAME ARGS...`; its trimmed stdout, or an error with its stderr.
fn script(name: &str, args: &[&str]) -> Result<String> {
    script_with(name, args, &[])
}

/// [`script`] with more environment variables.
fn script_with(name: &str, args: &[&str], env: &[(&str, &str)]) -> Result<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("rig").join(name);
    let output = Command::new("bash")
        .arg(&path)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .with_context(|| format!("running {name}"))?;
    if !output.status.success() {
        bail!("{name} {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str().context("rig path is not UTF-8")
}

/// Polls `check` every 100 ms until it gives `Some`, or fails after `timeout` naming what was awaited.
pub fn until<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if std::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The seed of a randomised suite: `BALLAST_FAULT_SEED` when set (to replay a run), else one taken from the clock.
pub fn fault_seed() -> Result<u64> {
    match std::env::var("BALLAST_FAULT_SEED") {
        Ok(text) => {
            text.trim().parse().with_context(|| format!("BALLAST_FAULT_SEED={text:?} is not a number"))
        }
        Err(_) => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
            // Small enough to type back in.
            Ok(now.as_nanos() as u64 % 1_000_000_000)
        }
    }
}

/// A small seeded random generator (SplitMix64): the same seed gives the same decisions, on every machine and
/// whatever crate versions are in use.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        let r = self.next_u64();
        if n == 0 {
            0
        } else {
            r % n
        }
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high.saturating_sub(low) + 1)
    }

    /// One of `items` (which must not be empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}
