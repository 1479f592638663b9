//! The stage of a scenario: a real `ballastd` configured for the rig on a given etcd, a moto when AWS is needed,
//! the rig's hosts applied, and the `ballast` calls scenarios make against it.

use std::process::Output;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use ballast_specs::wire::{List, UnitStatus};
use ballast_tests::ballastd::Ballastd;
use ballast_tests::moto::TestMoto;

use crate::{ballastd_options, until, Rig};

/// How long a scenario waits for a state before it fails.
pub const WAIT: Duration = Duration::from_secs(90);

/// What a stage's `ballastd` gets beyond the rig's settings.
#[derive(Clone, Debug, Default)]
pub struct Setup {
    /// Start a moto and give its endpoint to ballastd even when the rig's registry needs no credentials.
    pub aws: bool,
    /// More ballastd arguments.
    pub args: Vec<String>,
    /// More ballastd environment.
    pub env: Vec<(String, String)>,
}

/// A running `ballastd` for a scenario; the etcd it uses belongs to the scenario.
pub struct Stage {
    pub ballastd: Ballastd,
    /// Present when the rig's registry needs credentials or [`Setup::aws`] asked for it.
    pub moto: Option<TestMoto>,
    etcd: Vec<String>,
    specs: tempfile::TempDir,
}

impl Stage {
    /// Starts ballastd on the etcd at `etcd` (one or more endpoints) and applies the rig's hosts.
    pub async fn start(rig: &Rig, etcd: Vec<String>, setup: &Setup) -> Result<Stage> {
        let moto = if setup.aws || rig.registry_auth() { Some(TestMoto::start().await?) } else { None };
        let endpoint = moto.as_ref().map(TestMoto::endpoint);
        let ballastd = start(rig, &etcd, endpoint.as_deref(), setup).await?;
        let stage = Stage { ballastd, moto, etcd, specs: tempfile::tempdir()? };
        stage.ok(&["apply", "-f", rig.hosts_yaml().to_str().context("path")?])?;
        Ok(stage)
    }

    /// The moto, which the scenario asked for with [`Setup::aws`].
    pub fn moto(&self) -> Result<&TestMoto> {
        self.moto.as_ref().context("this stage has no moto (Setup::aws)")
    }

    /// Stops ballastd (SIGTERM) and starts another one on the same etcd, with `aws` as its AWS endpoint (the
    /// stage's moto when `None`) and `setup`.
    pub async fn restart(&mut self, rig: &Rig, aws: Option<&str>, setup: &Setup) -> Result<()> {
        self.ballastd.terminate()?;
        self.replace(rig, aws, setup).await
    }

    /// Starts another ballastd on the same etcd in place of the current one, which must be gone already
    /// (killed by the scenario).
    pub async fn replace(&mut self, rig: &Rig, aws: Option<&str>, setup: &Setup) -> Result<()> {
        let moto = self.moto.as_ref().map(TestMoto::endpoint);
        self.ballastd = start(rig, &self.etcd, aws.or(moto.as_deref()), setup).await?;
        Ok(())
    }

    /// `ballast ARGS...`, which must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.ballastd.ballast(args);
        ensure!(out.status.success(), "ballast {} failed: {}", args.join(" "), text(&out));
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }

    /// Writes `yaml` to a file called `name` and applies it.
    pub fn apply_yaml(&self, name: &str, yaml: &str) -> Result<String> {
        let path = self.specs.path().join(name);
        std::fs::write(&path, yaml)?;
        self.ok(&["apply", "-f", path.to_str().context("path")?])
    }

    pub fn statuses(&self) -> Result<Vec<UnitStatus>> {
        let out = self.ok(&["status", "-o", "json"])?;
        let list: List<UnitStatus> = serde_json::from_str(&out).context("status -o json")?;
        Ok(list.items)
    }

    pub fn status(&self, role: &str, host: &str) -> Option<UnitStatus> {
        self.statuses().ok()?.into_iter().find(|s| s.role == role && s.host == host)
    }

    /// Waits until the unit's status satisfies `check`.
    pub fn wait(
        &self,
        role: &str,
        host: &str,
        what: &str,
        check: impl Fn(&UnitStatus) -> bool,
    ) -> Result<UnitStatus> {
        until(WAIT, what, || self.status(role, host).filter(|s| check(s))).with_context(|| {
            format!(
                "last status: {:?}\nballastd log tail:\n{}",
                self.status(role, host),
                tail(&self.ballastd.log())
            )
        })
    }

    /// `ballast status --wait`: every unit converged at its generation.
    pub fn converge(&self) -> Result<()> {
        let out = self.ballastd.ballast(&["status", "--wait", "--timeout", "90s"]);
        ensure!(
            out.status.success(),
            "status --wait failed ({}): {}\nballastd log tail:\n{}",
            out.status,
            text(&out),
            tail(&self.ballastd.log())
        );
        Ok(())
    }
}

async fn start(rig: &Rig, etcd: &[String], aws: Option<&str>, setup: &Setup) -> Result<Ballastd> {
    let extra: Vec<&str> = setup.args.iter().map(String::as_str).collect();
    let mut options = ballastd_options(rig, etcd, aws, &extra)?;
    options.env.extend(setup.env.iter().cloned());
    Ballastd::start_with(options).await
}

/// A `Role` document: `name` on `hosts` (comma separated) running `image`, publishing port 3000 with an HTTP health
/// check on `/up` every second (5 s timeout), a `deploy_timeout`, and `more` spec lines (each `  key: value\n`).
pub fn web_role(name: &str, hosts: &str, image: &str, deploy_timeout: &str, more: &str) -> String {
    format!(
        r#"apiVersion: ballast/v1
kind: Role
metadata: {{name: {name}}}
spec:
  hosts: [{hosts}]
  image: {image}
{more}  ports: ["3000:3000"]
  health: {{http: {{path: /up, port: 3000}}, interval: 1s, timeout: 5s}}
  deployTimeout: {deploy_timeout}
"#
    )
}

/// `web` on h1 (1.5 cpus, 1.75g) running `web`, and `web_replica` on h2 (2g) running v1: the seed's web tier.
pub fn web_tier(rig: &Rig, web: &str) -> String {
    format!(
        "{}---\n{}",
        web_role("web", "h1", web, "30s", "  resources: {cpus: 1.5, memory: 1.75g}\n"),
        web_role("web_replica", "h2", &rig.image("v1"), "30s", "  resources: {memory: 2g}\n")
    )
}

/// `GET PATH` of a ballastd's own HTTP server, as a plain HTTP/1.0 request (no client library needed): the
/// status line and the body.
pub fn get(ballastd: &Ballastd, path: &str) -> Result<(String, String)> {
    use std::io::{Read, Write};
    let address = ballastd.url().strip_prefix("http://").context("ballastd url")?;
    let mut stream = std::net::TcpStream::connect(address).context("connecting to ballastd")?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    Ok((head.lines().next().unwrap_or_default().to_string(), body.to_string()))
}

/// Whether `ballastd` leads (`ballast_leader` of its `GET /metrics`); `None` when it does not answer.
pub fn leads(ballastd: &Ballastd) -> Option<bool> {
    let (_, body) = get(ballastd, "/metrics").ok()?;
    let line = body.lines().find(|l| l.starts_with("ballast_leader "))?;
    Some(line.trim_end().ends_with(" 1"))
}

/// A command's stdout and stderr, for messages.
pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The last 30 lines of a log.
pub fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
