//! A throwaway etcd for tests: the `etcd` binary in a temporary directory on free loopback ports, killed
//! (by its PID, through the child handle) when dropped; or a cluster of several such members.

use std::fs::File;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::json;
use tempfile::TempDir;

/// How long etcd may take to answer after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running etcd with its own data directory.
pub struct TestEtcd {
    dir: TempDir,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    http: reqwest::Client,
    /// `--name`.
    name: String,
    /// `--initial-cluster`; `None`: a cluster of this member alone.
    cluster: Option<String>,
}

impl TestEtcd {
    /// Starts etcd on free ports and waits until it answers.
    pub async fn start() -> anyhow::Result<TestEtcd> {
        let dir =
            tempfile::Builder::new().prefix("ballast-etcd-").tempdir().context("creating a temp dir")?;
        let [client_port, peer_port] = free_ports()?;
        let mut etcd = TestEtcd {
            dir,
            client_port,
            peer_port,
            child: None,
            http: reqwest::Client::new(),
            name: "test".to_string(),
            cluster: None,
        };
        // A free port can be taken by someone else before etcd binds it: then try other ports.
        let mut attempt = 1;
        loop {
            match etcd.launch().await {
                Ok(()) => return Ok(etcd),
                Err(e) if attempt == 3 => return Err(e),
                Err(_) => {
                    etcd.kill();
                    let _ = std::fs::remove_dir_all(etcd.dir.path().join("data"));
                    [etcd.client_port, etcd.peer_port] = free_ports()?;
                    attempt += 1;
                }
            }
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The endpoints as `EtcdStore::connect` takes them.
    pub fn endpoints(&self) -> Vec<String> {
        vec![self.endpoint()]
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills etcd (SIGKILL) and reaps it; its data stays for [`TestEtcd::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same ports with the same data.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.launch().await
    }

    /// Compacts etcd's history up to `revision` (through etcd's JSON gateway).
    pub async fn compact(&self, revision: i64) -> anyhow::Result<()> {
        let body = json!({"revision": revision.to_string(), "physical": true});
        self.post("/v3/kv/compaction", body).await?;
        Ok(())
    }

    /// The keys under `prefix` as etcd's JSON gateway shows them (`key` and `value` base64, `lease`, ...).
    pub async fn range(&self, prefix: &str) -> anyhow::Result<Vec<serde_json::Value>> {
        let body = json!({"key": base64(prefix.as_bytes()), "range_end": base64(&prefix_end(prefix))});
        let answer = self.post("/v3/kv/range", body).await?;
        Ok(answer.get("kvs").and_then(|kvs| kvs.as_array()).cloned().unwrap_or_default())
    }

    /// The keys and values under `prefix`, decoded, sorted by key.
    pub async fn entries(&self, prefix: &str) -> anyhow::Result<Vec<(String, String)>> {
        let mut entries = Vec::new();
        for kv in self.range(prefix).await? {
            let field = |name: &str| -> anyhow::Result<String> {
                let text = kv.get(name).and_then(|v| v.as_str()).unwrap_or_default();
                let bytes = unbase64(text).with_context(|| format!("etcd sent a bad {name}: {text:?}"))?;
                String::from_utf8(bytes).with_context(|| format!("etcd sent a non-utf-8 {name}"))
            };
            entries.push((field("key")?, field("value")?));
        }
        Ok(entries)
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A request to etcd's JSON gateway (`/v3/...`), for what the store does not expose.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}{path}", self.endpoint());
        let response =
            self.http.post(&url).json(&body).send().await.with_context(|| format!("POST {url}"))?;
        let status = response.status();
        let answer: serde_json::Value =
            response.json().await.with_context(|| format!("reading POST {url}"))?;
        if !status.is_success() {
            bail!("POST {url}: {status}: {answer}");
        }
        Ok(answer)
    }

    async fn launch(&mut self) -> anyhow::Result<()> {
        self.spawn()?;
        self.wait_healthy().await
    }

    /// Starts the etcd process (does not wait for it).
    fn spawn(&mut self) -> anyhow::Result<()> {
        let log_path = self.dir.path().join("etcd.log");
        let log =
            File::options().create(true).append(true).open(&log_path).context("opening the etcd log")?;
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let cluster = self.cluster.clone().unwrap_or_else(|| format!("{}={peer}", self.name));
        let child = Command::new("etcd")
            .arg(format!("--name={}", self.name))
            .arg(format!("--data-dir={}", self.dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={cluster}"))
            .arg("--initial-cluster-state=new")
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("opening the etcd log")?)
            .stderr(log)
            .spawn()
            .context("starting `etcd` (is it on PATH?)")?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until etcd answers healthy (for a member of a cluster: the cluster has a leader).
    async fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let log_path = self.dir.path().join("etcd.log");
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().context("checking on etcd")? {
                    self.child = None;
                    bail!("etcd exited with {status} while starting: {}", tail(&log_path));
                }
            }
            if self.healthy().await {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("etcd did not answer within {START_TIMEOUT:?}: {}", tail(&log_path));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn healthy(&self) -> bool {
        let url = format!("{}/health", self.endpoint());
        match self.http.get(&url).timeout(Duration::from_secs(2)).send().await {
            Ok(response) => response.text().await.is_ok_and(|body| body.contains("\"health\":\"true\"")),
            Err(_) => false,
        }
    }
}

/// A cluster of etcd members on loopback, each a [`TestEtcd`] with its own ports, data and process.
pub struct TestEtcdCluster {
    members: Vec<TestEtcd>,
}

impl TestEtcdCluster {
    /// Starts `size` members together and waits until each answers healthy.
    pub async fn start(size: usize) -> anyhow::Result<TestEtcdCluster> {
        let mut ports = Vec::with_capacity(size);
        for _ in 0..size {
            ports.push(free_ports::<2>()?);
        }
        let cluster: Vec<String> =
            ports.iter().enumerate().map(|(i, [_, peer])| format!("m{i}=http://127.0.0.1:{peer}")).collect();
        let cluster = cluster.join(",");
        let mut members = Vec::with_capacity(size);
        for (i, [client_port, peer_port]) in ports.into_iter().enumerate() {
            let dir = tempfile::Builder::new()
                .prefix(&format!("ballast-etcd-m{i}-"))
                .tempdir()
                .context("creating a temp dir")?;
            let mut member = TestEtcd {
                dir,
                client_port,
                peer_port,
                child: None,
                http: reqwest::Client::new(),
                name: format!("m{i}"),
                cluster: Some(cluster.clone()),
            };
            member.spawn()?;
            members.push(member);
        }
        for member in &mut members {
            member.wait_healthy().await.with_context(|| format!("etcd member {}", member.name))?;
        }
        Ok(TestEtcdCluster { members })
    }

    /// Every member's client endpoint.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(TestEtcd::endpoint).collect()
    }

    pub fn member(&mut self, i: usize) -> &mut TestEtcd {
        &mut self.members[i]
    }

    /// The index of the member that leads the cluster now, as the first answering member sees it.
    pub async fn leader(&self) -> anyhow::Result<usize> {
        for member in self.members.iter().filter(|m| m.child.is_some()) {
            let Ok(answer) = member.post("/v3/maintenance/status", json!({})).await else { continue };
            let leader = answer.get("leader").and_then(|l| l.as_str()).unwrap_or_default().to_string();
            for (i, m) in self.members.iter().enumerate() {
                let Ok(own) = m.post("/v3/maintenance/status", json!({})).await else { continue };
                let id = own.pointer("/header/member_id").and_then(|v| v.as_str()).unwrap_or_default();
                if !leader.is_empty() && id == leader {
                    return Ok(i);
                }
            }
        }
        bail!("no member of the cluster names a leader")
    }
}

impl Drop for TestEtcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `N` different loopback ports nobody listens on right now.
pub fn free_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    let mut listeners = Vec::with_capacity(N);
    let mut ports = [0; N];
    for port in &mut ports {
        let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
        *port = listener.local_addr().context("finding a free port")?.port();
        listeners.push(listener);
    }
    Ok(ports)
}

/// The last lines of a log file, for error messages.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

/// The key after every key that starts with `prefix` (etcd's range end of a prefix).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Standard base64 with padding (etcd's JSON gateway takes keys this way).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 (padding optional) back to bytes, as etcd's JSON gateway sends them; `None` if malformed.
pub fn unbase64(text: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|&c| c != b'=') {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"/ballast/v1/"), "L2JhbGxhc3QvdjEv");
        for text in ["", "f", "fo", "foo", "/ballast/v1/specs/roles/web"] {
            assert_eq!(unbase64(&base64(text.as_bytes())), Some(text.as_bytes().to_vec()));
        }
    }

    #[test]
    fn prefix_end_is_the_next_key() {
        assert_eq!(prefix_end("/a/"), b"/a0".to_vec());
    }
}
