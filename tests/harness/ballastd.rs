//! The real `ballastd` and `ballast` binaries for tests.
//!
//! Binaries: cargo sets `CARGO_BIN_EXE_*` only for a crate's own binaries, so the harness runs
//! `cargo build --workspace --all-targets` (the suite's own build) once per test process (cheap when
//! nothing changed) and takes them from the target directory the test executable itself lives in
//! (`target/debug/deps/TEST` → `target/debug/`).
//!
//! Readiness: `ballastd` is started with `--listen 127.0.0.1:0 --ready-file FILE`; once it listens it writes its
//! base URL to FILE (atomically), which the harness polls for with a deadline. Its stderr goes to a log file in
//! its temporary directory ([`Ballastd::log`]). On drop it gets SIGTERM, then SIGKILL if it has not exited
//! within a few seconds, by its PID.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ballast_specs::wire::{List, RoleView};
use tempfile::TempDir;

use crate::etcd::TestEtcd;

/// How long `ballastd` may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long it may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The example specs of the seed deployment (`specs/examples/datalake/`).
pub fn datalake_dir() -> PathBuf {
    workspace_root().join("specs/examples/datalake")
}

/// A running `ballastd` with its own temporary directory.
pub struct Ballastd {
    child: Option<Child>,
    url: String,
    dir: TempDir,
}

/// How to start `ballastd`.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `--etcd`; empty: the embedded etcd under the temporary directory.
    pub etcd: Vec<String>,
    /// Content of a token file passed as `--token-file`.
    pub tokens: Option<String>,
    /// `--listen`; default `127.0.0.1:0`.
    pub listen: Option<String>,
    /// More arguments.
    pub args: Vec<String>,
    /// More environment variables (on top of the test's own environment).
    pub env: Vec<(String, String)>,
}

/// A real etcd with a real `ballastd` on it.
pub struct Stack {
    pub ballastd: Ballastd,
    pub etcd: TestEtcd,
}

impl Ballastd {
    /// `ballastd --etcd ENDPOINTS` on a free loopback port, without tokens.
    pub async fn start(etcd: &[String]) -> anyhow::Result<Ballastd> {
        Ballastd::start_with(Options { etcd: etcd.to_vec(), ..Options::default() }).await
    }

    pub async fn start_with(options: Options) -> anyhow::Result<Ballastd> {
        let dir = tempfile::Builder::new().prefix("ballastd-").tempdir().context("creating a temp dir")?;
        let mut command = ballastd_command(dir.path(), &options)?;
        let child = command.spawn().context("starting ballastd")?;
        let mut ballastd = Ballastd { child: Some(child), url: String::new(), dir };
        ballastd.url = ballastd.wait_ready().await?;
        Ok(ballastd)
    }

    /// Runs `ballastd` with `options` to its end (for flags it must refuse); its exit status and stderr.
    pub fn run_to_exit(options: Options) -> anyhow::Result<(ExitStatus, String)> {
        let dir = tempfile::Builder::new().prefix("ballastd-").tempdir().context("creating a temp dir")?;
        let mut command = ballastd_command(dir.path(), &options)?;
        let mut child = command.spawn().context("starting ballastd")?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().context("waiting for ballastd")? {
                let log = std::fs::read_to_string(dir.path().join("ballastd.log")).unwrap_or_default();
                return Ok((status, log));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("ballastd did not exit within {START_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The API's base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The temporary directory (the embedded etcd's `--data-dir` is `DIR/data`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What `ballastd` wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ballastd.log")).unwrap_or_default()
    }

    /// The `ballast` CLI pointed at this server (`BALLAST_SERVER`), without a token.
    pub fn ballast(&self, args: &[&str]) -> Output {
        run(ballast_command().env("BALLAST_SERVER", &self.url), args)
    }

    /// The `ballast` CLI pointed at this server with `token`.
    pub fn ballast_as(&self, token: &str, args: &[&str]) -> Output {
        run(ballast_command().env("BALLAST_SERVER", &self.url).env("BALLAST_TOKEN", token), args)
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> anyhow::Result<ExitStatus> {
        let Some(mut child) = self.child.take() else { bail!("ballastd is not running") };
        signal("TERM", child.id())?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().context("waiting for ballastd")? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("ballastd did not exit within {STOP_TIMEOUT:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    async fn wait_ready(&mut self) -> anyhow::Result<String> {
        let ready = self.dir.path().join("ready");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                return Ok(text.trim().to_string());
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().context("waiting for ballastd")? {
                    self.child = None;
                    bail!("ballastd exited ({status}) before it was ready:\n{}", self.log());
                }
            }
            if Instant::now() >= deadline {
                bail!("ballastd was not ready within {START_TIMEOUT:?}:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Ballastd {
    fn drop(&mut self) {
        if self.child.is_some() {
            if let Err(err) = self.terminate() {
                eprintln!("stopping ballastd: {err:#}");
            }
        }
    }
}

impl Stack {
    /// A fresh etcd and a `ballastd` on it (no tokens) that serves the API but does not reconcile
    /// (`--no-reconcile`): for tests of specs, the API and the CLI, whose hosts (the seed's) are not reachable.
    pub async fn start() -> anyhow::Result<Stack> {
        Stack::start_with(vec!["--no-reconcile".to_string()]).await
    }

    /// A fresh etcd and a reconciling `ballastd` on it (no tokens).
    pub async fn reconciling() -> anyhow::Result<Stack> {
        Stack::start_with(Vec::new()).await
    }

    async fn start_with(args: Vec<String>) -> anyhow::Result<Stack> {
        let etcd = TestEtcd::start().await?;
        let ballastd =
            Ballastd::start_with(Options { etcd: etcd.endpoints(), args, ..Options::default() }).await?;
        Ok(Stack { ballastd, etcd })
    }

    /// Like [`Stack::start`], with the seed deployment applied.
    pub async fn seeded() -> anyhow::Result<Stack> {
        let stack = Stack::start().await?;
        let dir = datalake_dir();
        let out = stack.ballast(&["apply", "-f", path_str(&dir)?]);
        if !out.status.success() {
            bail!("seeding failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(stack)
    }

    pub fn ballast(&self, args: &[&str]) -> Output {
        self.ballastd.ballast(args)
    }

    /// The stored roles, read through `ballast get roles -o json`.
    pub fn roles(&self) -> anyhow::Result<Vec<RoleView>> {
        let out = self.ballast(&["get", "roles", "-o", "json"]);
        if !out.status.success() {
            bail!("get roles failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let list: List<RoleView> =
            serde_json::from_slice(&out.stdout).context("reading get roles -o json")?;
        Ok(list.items)
    }

    /// The stored role `name`.
    pub fn role(&self, name: &str) -> anyhow::Result<RoleView> {
        self.roles()?
            .into_iter()
            .find(|v| v.role.metadata.name == name)
            .with_context(|| format!("no role {name}"))
    }
}

/// A `ballast` command (the real binary) with no server or token from the environment.
pub fn ballast_command() -> Command {
    let mut command = Command::new(binaries().join("ballast"));
    command.env_remove("BALLAST_SERVER").env_remove("BALLAST_TOKEN").env_remove("EDITOR");
    command
}

/// Runs a command to its end with empty stdin.
pub fn run(command: &mut Command, args: &[&str]) -> Output {
    command
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", command.get_program()))
}

/// A loopback port nobody listens on (bound, then released).
pub fn closed_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The PIDs of `pid`'s children (from `/proc/PID/task/PID/children`).
pub fn children(pid: u32) -> Vec<u32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn ballastd_command(dir: &Path, options: &Options) -> anyhow::Result<Command> {
    let log = std::fs::File::create(dir.join("ballastd.log")).context("creating the ballastd log")?;
    let mut command = Command::new(binaries().join("ballastd"));
    command
        .arg("--listen")
        .arg(options.listen.as_deref().unwrap_or("127.0.0.1:0"))
        .arg("--ready-file")
        .arg(dir.join("ready"))
        .arg("--data-dir")
        .arg(dir.join("data"));
    if !options.etcd.is_empty() {
        command.arg("--etcd").arg(options.etcd.join(","));
    }
    if let Some(tokens) = &options.tokens {
        let path = dir.join("tokens");
        std::fs::write(&path, tokens).context("writing the token file")?;
        command.arg("--token-file").arg(path);
    }
    command
        .args(&options.args)
        .envs(options.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    Ok(command)
}

/// The directory holding freshly built `ballastd` and `ballast`. Panics (failing the test) when they cannot be built.
fn binaries() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT.get_or_init(|| build().map_err(|e| format!("{e:#}"))).clone().unwrap_or_else(|e| panic!("{e}"))
}

fn build() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test executable")?;
    // target/PROFILE/deps/TEST
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the test executable is not in target/PROFILE/deps")?
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut command = Command::new(&cargo);
    // The same build as the suite's own (`cargo build --workspace --all-targets`): any narrower selection unifies
    // dependency features differently, rebuilds half the tree and overwrites the binaries.
    command.current_dir(workspace_root()).args(["build", "--quiet", "--workspace", "--all-targets"]);
    if dir.file_name().is_some_and(|name| name == "release") {
        command.arg("--release");
    }
    let status = command.status().with_context(|| format!("running {cargo} build"))?;
    if !status.success() {
        bail!("cargo build of ballastd and ballast failed ({status})");
    }
    for binary in ["ballastd", "ballast"] {
        if !dir.join(binary).is_file() {
            bail!("{binary} is not in {} after cargo build", dir.display());
        }
    }
    Ok(dir)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

fn signal(name: &str, pid: u32) -> anyhow::Result<()> {
    let status =
        Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status().context("running kill")?;
    if !status.success() {
        bail!("kill -{name} {pid} failed: {status}");
    }
    Ok(())
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str().with_context(|| format!("{} is not UTF-8", path.display()))
}
