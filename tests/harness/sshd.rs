//! A real OpenSSH server on 127.0.0.1 for tests: its own host key, client key, known_hosts and config.
//!
//! OpenSSH forks a process per connection that leaves the listener's process group (`setsid`), so
//! stopping kills the listener's descendants by PID (found in /proc), then the listener.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result};
use ballast_operator::hosts::SshConfig;
use ballast_specs::HostSpec;

use crate::docker::{free_port, run, wait_for_port, SOCKET};

/// `sshd -D` on 127.0.0.1:`port`, allowing streamlocal and TCP forwarding for the generated client key.
pub struct TestSshd {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl TestSshd {
    pub fn start() -> Result<TestSshd> {
        let dir = tempfile::tempdir()?;
        let path = dir.path();
        keygen(&path.join("host_key"), "ballast-test-host")?;
        keygen(&path.join("client_key"), "ballast-test-client")?;
        std::fs::copy(path.join("client_key.pub"), path.join("authorized_keys"))?;
        let port = free_port()?;
        let config = format!(
            "Port {port}\n\
             ListenAddress 127.0.0.1\n\
             HostKey {dir}/host_key\n\
             AuthorizedKeysFile {dir}/authorized_keys\n\
             PidFile {dir}/sshd.pid\n\
             UsePAM no\n\
             StrictModes no\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\n\
             AllowStreamLocalForwarding yes\n\
             AllowTcpForwarding yes\n\
             LogLevel INFO\n",
            dir = path.display()
        );
        std::fs::write(path.join("sshd_config"), config)?;
        let mut known_hosts = std::fs::File::create(path.join("known_hosts"))?;
        writeln!(known_hosts, "[127.0.0.1]:{port} {}", read_public_key(&path.join("host_key.pub"))?)?;
        let mut sshd = TestSshd { port, dir, child: None };
        sshd.spawn()?;
        Ok(sshd)
    }

    /// Kills the server and every session process it forked (connections drop at once).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        for pid in descendants(child.id()) {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).stderr(Stdio::null()).status();
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the server again on the same port with the same keys.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.spawn()
    }

    /// A known_hosts file holding this server's key as `[127.0.0.1]:PORT`.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// The client's private key (in authorized_keys).
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    /// A private key that is not in authorized_keys.
    pub fn stranger_key(&self) -> PathBuf {
        self.dir.path().join("host_key")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn ssh_config(&self) -> SshConfig {
        SshConfig { key_path: Some(self.client_key()), known_hosts: Some(self.known_hosts()) }
    }

    /// This server as a ballast host whose Docker socket is the local engine's.
    pub fn host_spec(&self) -> Result<HostSpec> {
        Ok(HostSpec {
            address: "127.0.0.1".to_string(),
            user: run("id", &["-un"])?,
            port: self.port,
            docker_socket: SOCKET.to_string(),
        })
    }

    fn spawn(&mut self) -> Result<()> {
        if run("id", &["-u"])? == "0" {
            // sshd running as root wants its privilege separation directory.
            std::fs::create_dir_all("/run/sshd")?;
            std::fs::set_permissions("/run/sshd", std::fs::Permissions::from_mode(0o755))?;
        }
        let log = std::fs::File::create(self.dir.path().join("sshd.log"))?;
        let mut child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(self.dir.path().join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("start /usr/sbin/sshd")?;
        if let Err(e) = wait_for_port(self.port, &mut child, Duration::from_secs(10)) {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default();
            return Err(e.context(format!("sshd did not come up: {log}")));
        }
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for TestSshd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn keygen(path: &Path, comment: &str) -> Result<()> {
    run("ssh-keygen", &["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", &path.display().to_string()])?;
    Ok(())
}

/// `TYPE BASE64` of a `.pub` file (without the comment).
fn read_public_key(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)?;
    let fields: Vec<&str> = text.split_whitespace().take(2).collect();
    Ok(fields.join(" "))
}

/// Every process below `root`, from /proc (children before their own children).
fn descendants(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            // `pid (comm) state ppid ...`; comm may hold spaces, so split after the last `)`.
            let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else { continue };
            if let Some(ppid) = after.split_whitespace().nth(1).and_then(|s| s.parse::<u32>().ok()) {
                parents.push((pid, ppid));
            }
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid) in &parents {
            if ppid == parent && !found.contains(&pid) {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    found
}
