//! A throwaway moto server (the AWS API mock, `pip install 'moto[server]'`) on a free loopback port, killed
//! (by its PID, through the child handle) when dropped; and helpers that write Secrets Manager secrets into it.

use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use ballast_operator::aws::{AwsSettings, StaticCredentials};
use tempfile::TempDir;

use crate::etcd::{free_ports, tail};

/// How long moto may take to answer after it was started (a cold Python start takes a few seconds).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The region every test uses.
pub const REGION: &str = "us-east-1";

/// A running `moto_server`.
pub struct TestMoto {
    dir: TempDir,
    port: u16,
    child: Option<Child>,
    http: reqwest::Client,
}

impl TestMoto {
    /// Starts `moto_server -H 127.0.0.1 -p PORT` on a free port and waits until it answers.
    /// Fails with a clear message when `moto_server` is not installed (`e2e/moto.sh` or `pip install 'moto[server]'`).
    pub async fn start() -> anyhow::Result<TestMoto> {
        let dir =
            tempfile::Builder::new().prefix("ballast-moto-").tempdir().context("creating a temp dir")?;
        let [port] = free_ports()?;
        let mut moto = TestMoto { dir, port, child: None, http: reqwest::Client::new() };
        // A free port can be taken by someone else before moto binds it: then try another.
        let mut attempt = 1;
        loop {
            match moto.launch().await {
                Ok(()) => return Ok(moto),
                Err(e) if attempt == 3 || !is_installed() => return Err(e),
                Err(_) => {
                    moto.kill();
                    [moto.port] = free_ports()?;
                    attempt += 1;
                }
            }
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Settings that point the operator's AWS clients at this moto, with static test credentials and [`REGION`].
    pub fn settings(&self) -> AwsSettings {
        AwsSettings {
            region: Some(REGION.to_string()),
            endpoint_url: Some(self.endpoint()),
            credentials: Some(StaticCredentials {
                access_key_id: "testing".to_string(),
                secret_access_key: "testing".to_string(),
            }),
            ..AwsSettings::default()
        }
    }

    /// A Secrets Manager client of this moto, for the test's own writes.
    pub fn secrets_client(&self) -> aws_sdk_secretsmanager::Client {
        let config = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(self.endpoint())
            .credentials_provider(Credentials::new("testing", "testing", None, None, "ballast-tests"))
            .build();
        aws_sdk_secretsmanager::Client::from_conf(config)
    }

    /// Creates secret `name` holding `json` as its secret string.
    pub async fn create_secret(&self, name: &str, json: &str) -> anyhow::Result<()> {
        self.secrets_client()
            .create_secret()
            .name(name)
            .secret_string(json)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", aws_sdk_secretsmanager::error::DisplayErrorContext(e)))
            .with_context(|| format!("creating secret {name} in moto"))?;
        Ok(())
    }

    /// Stores a new version of secret `name` holding `json`; returns its version id.
    pub async fn put_secret_value(&self, name: &str, json: &str) -> anyhow::Result<String> {
        let output = self
            .secrets_client()
            .put_secret_value()
            .secret_id(name)
            .secret_string(json)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", aws_sdk_secretsmanager::error::DisplayErrorContext(e)))
            .with_context(|| format!("putting a value into secret {name} in moto"))?;
        Ok(output.version_id().unwrap_or_default().to_string())
    }

    /// Kills moto (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn launch(&mut self) -> anyhow::Result<()> {
        if !is_installed() {
            bail!(
                "moto_server is not on PATH: install it with `pip install 'moto[server]'` \
                 (or `e2e/moto.sh start DIR`, which installs it)"
            );
        }
        let log_path = self.dir.path().join("moto.log");
        let log =
            File::options().create(true).append(true).open(&log_path).context("opening the moto log")?;
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("opening the moto log")?)
            .stderr(log)
            .spawn()
            .context("starting moto_server")?;
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().context("checking on moto_server")? {
                    self.child = None;
                    bail!("moto_server exited with {status} while starting: {}", tail(&log_path));
                }
            }
            if self.answers().await {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("moto_server did not answer within {START_TIMEOUT:?}: {}", tail(&log_path));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn answers(&self) -> bool {
        let url = format!("{}/moto-api/", self.endpoint());
        match self.http.get(&url).timeout(Duration::from_secs(2)).send().await {
            Ok(response) => response.status().is_success(),
            Err(_) => false,
        }
    }
}

impl Drop for TestMoto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether `moto_server` is on PATH.
fn is_installed() -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join("moto_server").is_file())
}
