//! One SSH connection per host: while the leader reconciles and serves `ballast logs -f` and `ballast exec` at
//! the same time, each host's sshd sees exactly one connection, and it is ballastd's (the reconciler, logs,
//! exec and `ballast plan` share one host pool).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use ballast_e2e::stage::{Setup, Stage, WAIT};
use ballast_e2e::{until, Rig};
use ballast_tests::ballastd::ballast_command;
use ballast_tests::TestEtcd;

/// `chatty` on h1 and h2: prints a line every 200 ms, so a followed log shows both hosts at once.
fn chatty(rig: &Rig) -> String {
    format!(
        r#"apiVersion: ballast/v1
kind: Role
metadata: {{name: chatty}}
spec:
  hosts: [h1, h2]
  image: {v1}
  command: [sh, -c, "trap 'exit 0' TERM; while true; do echo tick; sleep 0.2 & wait $!; done"]
  deployTimeout: 20s
"#,
        v1 = rig.image("v1")
    )
}

#[tokio::test]
async fn logs_exec_and_the_reconciler_share_one_ssh_connection_per_host() -> Result<()> {
    let rig = Rig::acquire()?;
    let etcd = TestEtcd::start().await?;
    let setup = Setup { args: vec!["--resync".into(), "1s".into()], ..Setup::default() };
    let stage = Stage::start(&rig, etcd.endpoints(), &setup).await?;
    stage.apply_yaml("chatty.yaml", &chatty(&rig))?;
    stage.converge()?;
    let pid = stage.ballastd.pid().context("ballastd's pid")?;
    let ballast = || {
        let mut command = ballast_command();
        command.env("BALLAST_SERVER", stage.ballastd.url()).stdin(Stdio::null());
        command
    };

    // `ballast logs -f` of both hosts; its lines arrive through a reader thread.
    let mut logs = Running(ballast().args(["logs", "chatty", "-f"]).stdout(Stdio::piped()).spawn()?);
    let (lines, received) = mpsc::channel();
    let stdout = logs.0.stdout.take().context("logs stdout")?;
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let seen = |host: &str| -> Result<()> {
        let tag = format!("[{host}] ");
        until(WAIT, &format!("a followed log line from {host}"), || {
            received.recv_timeout(Duration::from_millis(100)).ok().filter(|l| l.contains(&tag)).map(|_| ())
        })
    };
    seen("h1")?;
    seen("h2")?;

    // A `ballast exec` on each host, running for 4 s, while the logs are followed.
    let command = ["sh", "-c", "sleep 4; echo done"];
    let started = Instant::now();
    let mut execs = Vec::new();
    for host in ["h1", "h2"] {
        let mut exec = ballast();
        exec.args(["exec", "chatty", "--host", host, "--"]).args(command).stdout(Stdio::piped());
        execs.push(Running(exec.spawn()?));
    }
    let mut samples = 0;
    while started.elapsed() < Duration::from_millis(3000) {
        std::thread::sleep(Duration::from_millis(500));
        for i in 1..=2 {
            let seen_by_sshd = rig.ctl(&["sshconns", &i.to_string()])?;
            let lines: Vec<&str> = seen_by_sshd.lines().collect();
            ensure!(lines.len() == 1, "host h{i}'s sshd has {} connections: {lines:?}", lines.len());
            let ours = ballastd_connections(pid, rig.addr(i)?)?;
            ensure!(ours == 1, "ballastd has {ours} connections to h{i}'s sshd");
        }
        samples += 1;
    }
    for (exec, host) in execs.iter_mut().zip(["h1", "h2"]) {
        let output = exec.wait_output()?;
        ensure!(output.0, "ballast exec on {host} failed");
        ensure!(output.1.trim() == "done", "ballast exec on {host} printed {:?}", output.1);
    }
    ensure!(started.elapsed() >= Duration::from_secs(4), "the execs did not overlap the samples");
    // The followed log was still streaming during and after the samples.
    seen("h1")?;
    seen("h2")?;
    ensure!(samples >= 4, "only {samples} samples were taken while logs and exec ran");
    Ok(())
}

/// How many established TCP connections ballastd (`pid`) holds to `address:22`, from the root namespace's `ss`.
fn ballastd_connections(pid: u32, address: &str) -> Result<usize> {
    let out = Command::new("ss").args(["-Htnp", "state", "established", "( dport = :22 )"]).output()?;
    ensure!(out.status.success(), "ss failed: {}", String::from_utf8_lossy(&out.stderr));
    let peer = format!("{address}:22");
    let process = format!("pid={pid},");
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| line.split_whitespace().nth(3) == Some(peer.as_str()) && line.contains(&process))
        .count())
}

/// A child process of this test, killed (by its own PID) if the test ends before it does.
struct Running(Child);

impl Running {
    /// Waits for the process: whether it succeeded, and its stdout.
    fn wait_output(&mut self) -> Result<(bool, String)> {
        let mut stdout = String::new();
        if let Some(mut out) = self.0.stdout.take() {
            std::io::Read::read_to_string(&mut out, &mut stdout)?;
        }
        Ok((self.0.wait()?.success(), stdout))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
