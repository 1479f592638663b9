//! ballast as it runs for real: a throwaway etcd, the release `ballastd` on it reaching rig hosts over SSH,
//! and the `ballast` CLI. Each host's Docker socket is reached through a recording [`Proxy`], so every
//! Docker API call ballastd makes is counted and timed.
//!
//! The binaries are the release build next to the bench's own (`target/release/`): ballastd starts with
//! `--listen 127.0.0.1:0 --ready-file F` and is ready once F holds its URL; it gets SIGTERM (then SIGKILL) by
//! its PID when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ballast_tests::TestEtcd;

use crate::{output, text, Bench};
use ballast_tests::docker_proxy::Proxy;

/// A running ballast: etcd, ballastd, and the proxies of its hosts.
pub struct Stage {
    pub etcd: TestEtcd,
    pub ballastd: Ballastd,
    /// The proxy of host `hosts[i]` is `proxies[i]`.
    pub proxies: Vec<Proxy>,
    pub hosts: Vec<usize>,
    specs: tempfile::TempDir,
}

/// The shape of a bench role: the app, health `/up` on 3000 every `1s` (first probes after 25 ms, doubling),
/// memory 256m, and either stop-first with `3000:3000` published (the seed's shape) or start-first unpublished.
pub fn role_yaml(name: &str, hosts: &[usize], image: &str, publish: bool) -> String {
    let hosts: Vec<String> = hosts.iter().map(|i| format!("h{i}")).collect();
    let (ports, strategy) =
        if publish { ("\n  ports: [\"3000:3000\"]", "stop-first") } else { ("", "start-first") };
    format!(
        "apiVersion: ballast/v1
kind: Role
metadata: {{name: {name}}}
spec:
  hosts: [{}]
  image: {image}
  resources: {{memory: 256m}}{ports}
  health: {{http: {{path: /up, port: 3000}}, interval: 1s, timeout: 5s}}
  deployTimeout: 60s
  strategy: {strategy}
",
        hosts.join(", ")
    )
}

/// Memory of the bench roles, in bytes.
pub const ROLE_MEMORY: i64 = 256 << 20;

impl Stage {
    /// Starts etcd, the proxies of `hosts`, and ballastd with `--resync RESYNC`; applies the hosts.
    pub async fn start(bench: &Bench, hosts: &[usize], resync: &str) -> Result<Stage> {
        let etcd = TestEtcd::start().await.context("starting etcd")?;
        let specs = tempfile::Builder::new().prefix("ballast-bench-specs-").tempdir()?;
        let mut proxies = Vec::new();
        let mut yaml = String::new();
        for &i in hosts {
            let proxy =
                Proxy::start(&bench.rig.dir.join(format!("h{i}")).join("bench.sock"), &bench.socket(i))?;
            if !yaml.is_empty() {
                yaml.push_str("---\n");
            }
            yaml.push_str(&format!(
                "apiVersion: ballast/v1\nkind: Host\nmetadata: {{name: h{i}}}\nspec:\n  address: {}\n  user: root\n  \
                 port: 22\n  dockerSocket: {}\n",
                bench.rig.addr(i)?,
                text(proxy.path())?
            ));
            proxies.push(proxy);
        }
        let args = vec![
            "--ssh-key".to_string(),
            text(&bench.rig.ssh_key())?.to_string(),
            "--known-hosts".to_string(),
            text(&bench.rig.known_hosts())?.to_string(),
            "--resync".to_string(),
            resync.to_string(),
            // The rig's proxy image (Caddy built FROM scratch), for the roles behind ballast's proxy (row 7).
            "--proxy-image".to_string(),
            bench.rig.var("RIG_PROXY_IMAGE")?.to_string(),
        ];
        let mut args = args;
        args.extend(["--etcd".to_string(), etcd.endpoint()]);
        let ballastd = Ballastd::start(&args).await.context("starting ballastd")?;
        let stage = Stage { etcd, ballastd, proxies, hosts: hosts.to_vec(), specs };
        stage.apply("hosts.yaml", &yaml).await?;
        Ok(stage)
    }

    /// `ballast ARGS...` against this ballastd; its stdout.
    pub async fn ballast(&self, args: &[&str]) -> Result<String> {
        let mut command = tokio::process::Command::new(binaries()?.join("ballast"));
        command.env("BALLAST_SERVER", self.ballastd.url()).env_remove("BALLAST_TOKEN").args(args);
        output(&mut command).await.with_context(|| format!("ballastd log tail:\n{}", self.log_tail()))
    }

    /// Writes `yaml` to a file and `ballast apply -f` it.
    pub async fn apply(&self, name: &str, yaml: &str) -> Result<()> {
        let path = self.specs.path().join(name);
        std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
        self.ballast(&["apply", "-f", text(&path)?]).await.map(drop)
    }

    /// `ballast status [ROLE] --wait`: every unit converged at its generation.
    pub async fn converge(&self, role: Option<&str>) -> Result<()> {
        let mut args = vec!["status"];
        args.extend(role);
        args.extend(["--wait", "--timeout", "120s"]);
        self.ballast(&args).await.map(drop)
    }

    /// The etcd revision (every write bumps it).
    pub async fn etcd_revision(&self) -> Result<i64> {
        let answer = self
            .etcd
            .post("/v3/kv/range", serde_json::json!({"key": "AA==", "limit": "1"}))
            .await
            .context("reading etcd's revision")?;
        let revision = answer.pointer("/header/revision").context("etcd answered no revision")?;
        match revision {
            serde_json::Value::String(s) => s.parse().context("etcd sent a bad revision"),
            other => other.as_i64().context("etcd sent a bad revision"),
        }
    }

    fn log_tail(&self) -> String {
        crate::tail(&self.ballastd.log())
    }
}

/// A running `ballastd` with its own temporary directory (ready file, log).
pub struct Ballastd {
    child: Option<Child>,
    url: String,
    dir: tempfile::TempDir,
}

impl Ballastd {
    /// `ballastd --listen 127.0.0.1:0 --ready-file F ARGS...`, waiting until it listens.
    async fn start(args: &[String]) -> Result<Ballastd> {
        let dir = tempfile::Builder::new().prefix("ballast-bench-ballastd-").tempdir()?;
        let log =
            std::fs::File::create(dir.path().join("ballastd.log")).context("creating the ballastd log")?;
        let ready = dir.path().join("ready");
        let child = Command::new(binaries()?.join("ballastd"))
            .args(["--listen", "127.0.0.1:0", "--ready-file"])
            .arg(&ready)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting ballastd")?;
        let mut ballastd = Ballastd { child: Some(child), url: String::new(), dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(url) = std::fs::read_to_string(&ready) {
                ballastd.url = url.trim().to_string();
                return Ok(ballastd);
            }
            if let Some(status) = ballastd.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                ballastd.child = None;
                bail!("ballastd exited ({status}) before it was ready:\n{}", crate::tail(&ballastd.log()));
            }
            if Instant::now() >= deadline {
                bail!("ballastd was not ready within 30 s:\n{}", crate::tail(&ballastd.log()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The API's base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What ballastd wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ballastd.log")).unwrap_or_default()
    }
}

impl Drop for Ballastd {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The folder of the release `ballastd` and `ballast`: the bench binary's own (`target/release/`).
fn binaries() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the bench binary")?;
    let dir = exe.parent().map(Path::to_path_buf).context("the bench binary has no folder")?;
    for binary in ["ballastd", "ballast"] {
        if !dir.join(binary).is_file() {
            bail!(
                "{binary} is not in {} (build it: cargo build --release -p ballast-operator -p ballast-cli)",
                dir.display()
            );
        }
    }
    Ok(dir)
}
