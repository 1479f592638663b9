//! The local Docker engine for tests: test app images, a guard that removes what a test created, and a
//! throwaway registry (`docker-registry`) on loopback.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use ballast_operator::hosts::ContainerConfig;

/// The engine the tests use.
pub const SOCKET: &str = "/var/run/docker.sock";
/// The test app (busybox httpd on :3000; `GET /up` answers `v1`).
pub const APP_V1: &str = "ballast-test/app:v1";

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// Builds `tag` with `e2e/images/build.sh` unless the engine already has it.
pub fn ensure_image(tag: &str, version: &str, kind: &str) -> Result<()> {
    static BUILDING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    if docker(&["image", "inspect", "--format", "{{.Id}}", tag]).is_ok() {
        return Ok(());
    }
    let script = repo_root().join("e2e/images/build.sh");
    let output = Command::new(&script)
        .args([&format!("unix://{SOCKET}"), tag, version, kind])
        .output()
        .with_context(|| format!("run {}", script.display()))?;
    if !output.status.success() {
        bail!("{} {tag} failed: {}", script.display(), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

/// The test app image, built if missing.
pub fn app_image() -> Result<&'static str> {
    ensure_image(APP_V1, "v1", "good")?;
    Ok(APP_V1)
}

/// Runs the docker CLI against `SOCKET`; returns its trimmed stdout, or an error with its stderr.
pub fn docker(args: &[&str]) -> Result<String> {
    let output = Command::new("docker")
        .arg("-H")
        .arg(format!("unix://{SOCKET}"))
        .args(args)
        .output()
        .context("run docker")?;
    if !output.status.success() {
        bail!("docker {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// A name no other test (or test run) uses.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{prefix}-{}-{nanos:x}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The labels of a container a test creates: `ballast.test=1` and `ballast.role=ROLE`.
pub fn test_labels(role: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("ballast.test".to_string(), "1".to_string()),
        ("ballast.role".to_string(), role.to_string()),
    ])
}

/// A container of the test app: no limits, no ports, labelled for tests.
pub fn app_config(name: &str, role: &str) -> Result<ContainerConfig> {
    Ok(ContainerConfig {
        name: name.to_string(),
        image: app_image()?.to_string(),
        command: vec![],
        env: vec![],
        labels: test_labels(role),
        nano_cpus: 0,
        memory: 0,
        ports: vec![],
        logging: None,
        network: None,
    })
}

/// One field of `docker inspect` (a Go template such as `{{.State.StartedAt}}`).
pub fn inspect_field(container: &str, template: &str) -> Result<String> {
    docker(&["inspect", "--format", template, container])
}

/// Whether a container (name or id) exists.
pub fn container_exists(container: &str) -> bool {
    docker(&["inspect", "--format", "{{.Id}}", container]).is_ok()
}

/// Removes, on drop, every container and image tag it was told about. Keeps nothing else.
#[derive(Default)]
pub struct Cleanup {
    containers: Mutex<Vec<String>>,
    images: Mutex<Vec<String>>,
}

impl Cleanup {
    pub fn new() -> Cleanup {
        Cleanup::default()
    }

    /// A container name or id to force-remove at the end.
    pub fn container(&self, name: &str) -> String {
        self.containers.lock().unwrap_or_else(|e| e.into_inner()).push(name.to_string());
        name.to_string()
    }

    /// An image tag to untag at the end.
    pub fn image(&self, tag: &str) -> String {
        self.images.lock().unwrap_or_else(|e| e.into_inner()).push(tag.to_string());
        tag.to_string()
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let containers = std::mem::take(&mut *self.containers.lock().unwrap_or_else(|e| e.into_inner()));
        for name in containers {
            if container_exists(&name) {
                if let Err(e) = docker(&["rm", "--force", "--volumes", &name]) {
                    eprintln!("cleanup: {e:#}");
                }
            }
        }
        let images = std::mem::take(&mut *self.images.lock().unwrap_or_else(|e| e.into_inner()));
        for tag in images {
            let _ = docker(&["image", "rm", &tag]);
        }
    }
}

/// A `docker-registry` on 127.0.0.1 (an insecure registry by Docker's default), killed on drop.
pub struct TestRegistry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl TestRegistry {
    /// Serves the images under `storage`; with `htpasswd` (bcrypt entries) every request needs basic auth.
    pub fn start(storage: &Path, htpasswd: Option<&Path>) -> Result<TestRegistry> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let auth = match htpasswd {
            Some(path) => {
                format!("auth:\n  htpasswd:\n    realm: ballast-test\n    path: {}\n", path.display())
            }
            None => String::new(),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{auth}",
            storage.display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start docker-registry")?;
        let mut registry = TestRegistry { addr, child, _dir: dir };
        wait_for_port(port, &mut registry.child, Duration::from_secs(10))?;
        Ok(registry)
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bcrypt htpasswd file with one user.
pub fn write_htpasswd(path: &Path, user: &str, password: &str) -> Result<()> {
    let output = Command::new("htpasswd").args(["-Bbn", user, password]).output().context("run htpasswd")?;
    if !output.status.success() {
        bail!("htpasswd: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    std::fs::write(path, output.stdout)?;
    Ok(())
}

/// Pushes the test app to `registry` as `repository:tag`, then drops the local tag; returns the reference.
pub fn push_app(registry: &str, repository: &str, tag: &str) -> Result<String> {
    let reference = format!("{registry}/{repository}:{tag}");
    docker(&["tag", app_image()?, &reference])?;
    let pushed = docker(&["push", &reference]);
    docker(&["image", "rm", &reference])?;
    pushed?;
    Ok(reference)
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Polls until something accepts connections on 127.0.0.1:`port`; fails if `child` exits first.
pub fn wait_for_port(port: u16, child: &mut Child, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            bail!("process exited with {status} before listening on {port} {stderr}");
        }
        if Instant::now() > deadline {
            bail!("nothing listens on 127.0.0.1:{port} after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Output of a command that must succeed.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {program}"))?;
    if !output.status.success() {
        bail!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Removes, on drop, every container labelled with the given test host name (`ballast.host=NAME`), whatever
/// the test did. Tests give each host a unique name, so they never touch each other's containers.
pub struct HostCleanup(pub String);

impl Drop for HostCleanup {
    fn drop(&mut self) {
        if let Ok(ids) = docker(&["ps", "-aq", "--filter", &format!("label=ballast.host={}", self.0)]) {
            for id in ids.split_whitespace() {
                let _ = docker(&["rm", "-f", id]);
            }
        }
    }
}
