//! `ballast logs` and `ballast exec` end to end: the real `ballastd` (on a real etcd, with a token file) whose
//! hosts are the local Docker engine, and the real `ballast` CLI. Logs of every host (prefixed) or one, a tail,
//! a follow that sees a line printed after it started, exec output and exit code, tokens, events.
//!
//! Below the API, `DockerHost::logs` and `exec` run against one container through both kinds of host: the local
//! socket and a throwaway sshd forwarding to the same engine (exec's attach is an upgraded HTTP connection, and
//! over SSH that connection is a streamlocal channel).
//!
//! Host names are unique per test, so containers of tests running side by side never look like each other's.

use std::io::{BufRead, BufReader};
use std::process::{Child, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ballast_operator::hosts::local::LocalHost;
use ballast_operator::hosts::ssh::SshHost;
use ballast_operator::hosts::{DockerHost, HostError, LogStream, EXEC_OUTPUT_LIMIT};
use ballast_specs::wire::{Event, ExecResponse, List};
use ballast_tests::ballastd::{ballast_command, Ballastd, Options};
use ballast_tests::docker::HostCleanup;
use ballast_tests::docker::{self, app_config, ensure_image, unique_name, Cleanup, APP_V1};
use ballast_tests::sshd::TestSshd;
use ballast_tests::wait::until;
use ballast_tests::TestEtcd;
use futures::StreamExt;

const TOKENS: &str = "alice write alice-secret-token\nci read ci-secret-token-1\n";
const WRITE: &str = "alice-secret-token";
const READ: &str = "ci-secret-token-1";
const ROLE: &str = "app";
const WAIT: Duration = Duration::from_secs(60);

/// A `ballast logs -f` running in the background, its stdout lines sent to a channel; killed on drop.
struct Follower {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Follower {
    fn start(ballastd: &Ballastd, args: &[&str]) -> Result<Follower> {
        let mut child = ballast_command()
            .env("BALLAST_SERVER", ballastd.url())
            .env("BALLAST_TOKEN", WRITE)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting ballast logs -f")?;
        let stdout = child.stdout.take().context("the follower's stdout")?;
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Follower { child, lines })
    }

    /// Waits (with a deadline) for a line equal to `wanted`; the lines before it are skipped.
    fn until(&self, wanted: &str) -> Result<()> {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line == wanted => return Ok(()),
                Ok(line) => seen.push(line),
                Err(_) => {
                    bail!("ballast logs -f did not print {wanted:?} within {WAIT:?}; it printed {seen:?}")
                }
            }
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn sorted_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    lines
}

/// The specs: two hosts on the local engine and a role on both whose command prints three lines (the third
/// on stderr) before it starts the test app.
fn specs(first: &str, second: &str) -> String {
    let host = |name: &str| {
        format!(
            "apiVersion: ballast/v1\nkind: Host\nmetadata: {{name: {name}}}\nspec: {{address: \"unix://{}\"}}\n",
            docker::SOCKET
        )
    };
    format!(
        "{}---\n{}---\napiVersion: ballast/v1\nkind: Role\nmetadata: {{name: {ROLE}}}\nspec:\n  hosts: [{first}, {second}]\n  \
         image: {APP_V1}\n  command: [sh, -c, 'echo line-one; echo line-two; echo line-three >&2; exec /start.sh']\n",
        host(first),
        host(second)
    )
}

#[tokio::test]
async fn logs_and_exec_through_the_api() -> Result<()> {
    ensure_image(APP_V1, "v1", "good")?;
    let (first, second) = (unique_name("logs"), unique_name("logs"));
    let _cleanup = (HostCleanup(first.clone()), HostCleanup(second.clone()));
    let etcd = TestEtcd::start().await?;
    let options = Options {
        etcd: etcd.endpoints(),
        tokens: Some(TOKENS.to_string()),
        args: vec!["--resync".into(), "2s".into()],
        ..Options::default()
    };
    let mut ballastd = Ballastd::start_with(options).await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("app.yaml");
    std::fs::write(&file, specs(&first, &second))?;
    let file = file.to_str().context("utf-8 path")?;
    let applied = ballastd.ballast_as(WRITE, &["apply", "-f", file]);
    assert!(applied.status.success(), "{}", stderr(&applied));
    let waited = ballastd.ballast_as(READ, &["status", ROLE, "--wait", "--timeout", "90s"]);
    assert!(waited.status.success(), "{}{}\n{}", stdout(&waited), stderr(&waited), ballastd.log());

    // Every host, each line prefixed with its host; stderr lines on stderr.
    let all = ballastd.ballast_as(WRITE, &["logs", ROLE]);
    assert_eq!(all.status.code(), Some(0), "{}", stderr(&all));
    let mut expected_out = Vec::new();
    for host in [&first, &second] {
        expected_out.push(format!("[{host}] line-one"));
        expected_out.push(format!("[{host}] line-two"));
    }
    expected_out.sort();
    assert_eq!(sorted_lines(&stdout(&all)), expected_out);
    let mut expected_err = vec![format!("[{first}] line-three"), format!("[{second}] line-three")];
    expected_err.sort();
    assert_eq!(sorted_lines(&stderr(&all)), expected_err);

    // One host: no prefix; each stream in order.
    let one = ballastd.ballast_as(WRITE, &["logs", ROLE, "--host", &first]);
    assert_eq!(
        (one.status.code(), stdout(&one), stderr(&one)),
        (Some(0), "line-one\nline-two\n".into(), "line-three\n".into())
    );
    // --tail 1: the last line only. Docker copies stdout and stderr separately, so which of the role's own
    // lines is last is a race; a line printed seconds later is last once Docker has logged it.
    let printed = ballastd.ballast_as(
        WRITE,
        &["exec", ROLE, "--host", &first, "--", "sh", "-c", "echo tail-$((1+1)) > /proc/1/fd/1"],
    );
    assert_eq!(printed.status.code(), Some(0), "{}", stderr(&printed));
    let tail = until(WAIT, "--tail 1 to show the printed line", || async {
        let tail = ballastd.ballast_as(WRITE, &["logs", ROLE, "--host", &first, "--tail", "1"]);
        (stdout(&tail) == "tail-2\n").then_some(tail)
    })
    .await?;
    assert_eq!((tail.status.code(), stderr(&tail)), (Some(0), String::new()));

    // -f: a line printed (to the container's own stdout) after the follow started comes through.
    let follower = Follower::start(&ballastd, &["logs", ROLE, "--host", &second, "-f"])?;
    follower.until("line-two")?;
    let printed = ballastd.ballast_as(
        WRITE,
        &["exec", ROLE, "--host", &second, "--", "sh", "-c", "echo printed-after-$((40+2)) > /proc/1/fd/1"],
    );
    assert_eq!(printed.status.code(), Some(0), "{}", stderr(&printed));
    follower.until("printed-after-42")?;
    drop(follower);

    // exec: stdout, stderr and the exit code of the command; by default on the role's first host.
    let exec = ballastd
        .ballast_as(WRITE, &["exec", ROLE, "--", "sh", "-c", "echo hi; echo oops-$((1+1)) >&2; exit 3"]);
    assert_eq!(
        (exec.status.code(), stdout(&exec), stderr(&exec)),
        (Some(3), "hi\n".into(), "oops-2\n".into())
    );
    let json = ballastd.ballast_as(WRITE, &["exec", ROLE, "-o", "json", "--", "cat", "/www/version"]);
    assert_eq!(json.status.code(), Some(0), "{}", stderr(&json));
    let answer: ExecResponse = serde_json::from_slice(&json.stdout)?;
    assert_eq!((answer.host.as_str(), answer.exit_code, answer.stdout.as_str()), (first.as_str(), 0, "v1\n"));
    // Docker's own answer to a program that is not there: exit code 126 and its message.
    let missing = ballastd.ballast_as(WRITE, &["exec", ROLE, "--", "no-such-program"]);
    assert_eq!(missing.status.code(), Some(126), "{}", stderr(&missing));
    assert!(stdout(&missing).contains("executable file not found"), "{}", stdout(&missing));

    // Tokens: a read token may not, no token may not.
    for args in [vec!["logs", ROLE, "--host", first.as_str()], vec!["exec", ROLE, "--", "true"]] {
        let read = ballastd.ballast_as(READ, &args);
        assert_eq!(
            (read.status.code(), stderr(&read)),
            (
                Some(1),
                "error: forbidden: container logs and exec need a write token (container output may hold secrets)\n"
                    .to_string()
            )
        );
        let anonymous = ballastd.ballast(&args);
        assert_eq!(
            (anonymous.status.code(), stderr(&anonymous)),
            (
                Some(1),
                "error: unauthorized: a bearer token is required (set --token or BALLAST_TOKEN)\n"
                    .to_string()
            )
        );
    }

    // Unknown role, unknown host: clear errors.
    let unknown = ballastd.ballast_as(WRITE, &["logs", "nope"]);
    assert_eq!(
        (unknown.status.code(), stderr(&unknown)),
        (Some(1), "error: role \"nope\" not found\n".into())
    );
    let unknown = ballastd.ballast_as(WRITE, &["exec", "nope", "--", "true"]);
    assert_eq!(
        (unknown.status.code(), stderr(&unknown)),
        (Some(1), "error: role \"nope\" not found\n".into())
    );
    let elsewhere = ballastd.ballast_as(WRITE, &["logs", ROLE, "--host", "elsewhere"]);
    assert_eq!(
        (elsewhere.status.code(), stderr(&elsewhere)),
        (
            Some(1),
            format!(
                "error: role \"{ROLE}\" does not run on host \"elsewhere\" (its hosts: {first}, {second})\n"
            )
        )
    );

    // Events: who ran what where, and who read which logs; never the output.
    let events = ballastd.ballast_as(READ, &["events", ROLE, "-o", "json"]);
    assert!(events.status.success(), "{}", stderr(&events));
    let events: List<Event> = serde_json::from_slice(&events.stdout)?;
    let exec = events
        .items
        .iter()
        .find(|e| e.reason == "Exec" && e.message.contains("echo hi"))
        .with_context(|| format!("no Exec event: {:#?}", events.items))?;
    assert_eq!(exec.actor.as_deref(), Some("alice"));
    assert_eq!(exec.host.as_deref(), Some(first.as_str()));
    assert_eq!(
        exec.message,
        format!(
            "alice ran `sh -c 'echo hi; echo oops-$((1+1)) >&2; exit 3'` in {ROLE} on {first}: exit code 3"
        )
    );
    let logs: Vec<&Event> = events.items.iter().filter(|e| e.reason == "Logs").collect();
    assert!(logs.len() >= 4, "{logs:#?}");
    assert!(logs.iter().all(|e| e.actor.as_deref() == Some("alice")));
    assert!(logs.iter().any(|e| e.message == format!("alice read the logs of {ROLE} on {first}, {second}")));
    assert!(logs.iter().any(|e| e.message == format!("alice read the logs of {ROLE} on {first} (tail 1)")));
    let follow = logs.last().context("a Logs event")?;
    assert_eq!(follow.message, format!("alice read the logs of {ROLE} on {second} (follow)"));
    for event in &events.items {
        for output in ["printed-after-42", "tail-2", "line-one", "line-three", "oops-2"] {
            assert!(!event.message.contains(output), "{event:#?} shows output {output:?}");
        }
    }

    // A follow in progress does not hold ballastd up at SIGTERM: the stream ends, the CLI with it.
    let mut follower = Follower::start(&ballastd, &["logs", ROLE, "--host", &first, "-f"])?;
    follower.until("line-two")?;
    let status = ballastd.terminate()?;
    assert!(status.success(), "{status}\n{}", ballastd.log());
    let deadline = Instant::now() + WAIT;
    let code = loop {
        if let Some(status) = follower.child.try_wait()? {
            break status.code();
        }
        anyhow::ensure!(Instant::now() < deadline, "ballast logs -f still runs after ballastd stopped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(code, Some(0));
    Ok(())
}

#[tokio::test]
async fn docker_hosts_read_logs_and_exec_locally_and_over_ssh() -> Result<()> {
    let sshd = TestSshd::start()?;
    let cleanup = Cleanup::new();
    let name = cleanup.container(&unique_name("logs-exec"));
    let mut config = app_config(&name, "logs-exec")?;
    config.command = ["sh", "-c", "echo one; echo two; exec /start.sh"].map(String::from).to_vec();
    let local = LocalHost::new(docker::SOCKET);
    let id = local.create(&config).await?;
    local.start(&id).await?;
    let ssh = SshHost::new("ssh-logs", &sshd.host_spec()?, sshd.ssh_config());
    let hosts: [(&str, &dyn DockerHost); 2] = [("local", &local), ("ssh", &ssh)];

    for (kind, host) in hosts {
        // The container's own lines, in order, with Docker's timestamps.
        let all: Vec<_> = until(WAIT, "the container's two lines", || async {
            let stream = host.logs(&id, false, None).await.ok()?;
            let all: Vec<_> = stream.collect().await;
            (all.len() >= 2).then_some(all)
        })
        .await?;
        let all: Vec<_> = all.into_iter().collect::<Result<_, HostError>>()?;
        let texts: Vec<&str> = all.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts[..2], ["one", "two"], "{kind}");
        assert!(all[..2].iter().all(|l| l.stream == LogStream::Stdout), "{kind}: {all:?}");
        assert!(all.iter().all(|l| l.time.is_some()), "{kind}: {all:?}");
        let last: Vec<_> = host.logs(&id, false, Some(1)).await?.collect().await;
        assert_eq!(last.len(), 1, "{kind}: {last:?}");

        // Follow: a line printed once the stream is under way (the container's own lines came) arrives.
        let mut follow = host.logs(&id, true, None).await?;
        let marker = format!("{kind}-5");
        let mut seen = Vec::new();
        let mut printed = false;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let next = tokio::time::timeout_at(deadline, follow.next())
                .await
                .with_context(|| format!("{kind}: {marker} did not come; seen {seen:?}"))?
                .with_context(|| format!("{kind}: the follow ended; seen {seen:?}"))??;
            if next.text == marker && printed {
                assert_eq!(next.stream, LogStream::Stderr, "{kind}");
                break;
            }
            if next.text == "two" && !printed {
                let script = format!("echo {kind}-$((2+3)) > /proc/1/fd/2");
                let output = host.exec(&id, &["sh".into(), "-c".into(), script]).await?;
                assert_eq!(output.exit_code, 0, "{kind}: {output:?}");
                printed = true;
            }
            seen.push(next.text);
        }
        drop(follow);

        // exec: output of both streams and the exit code.
        let script = "echo out; echo err >&2; exit 7";
        let output = host.exec(&id, &["sh".into(), "-c".into(), script.into()]).await?;
        assert_eq!(
            (output.stdout.as_slice(), output.stderr.as_slice(), output.exit_code, output.truncated),
            (b"out\n".as_slice(), b"err\n".as_slice(), 7, false),
            "{kind}"
        );
        // More than the limit: the first 4 MiB are kept, the rest read and dropped; the command still ends.
        let flood = "s=x; for i in 1 2 3 4 5 6 7 8 9 10; do s=$s$s; done; i=0; \
                     while [ $i -lt 5000 ]; do echo $s; i=$((i+1)); done; exit 4";
        let output = host.exec(&id, &["sh".into(), "-c".into(), flood.into()]).await?;
        assert_eq!(
            (output.stdout.len(), output.exit_code, output.truncated),
            (EXEC_OUTPUT_LIMIT, 4, true),
            "{kind}"
        );
        assert!(output.stdout.iter().all(|b| *b == b'x' || *b == b'\n'), "{kind}");
    }

    // A stopped container: its log still reads, exec is refused with Docker's 409.
    local.stop(&id, Duration::from_secs(5)).await?;
    for (kind, host) in hosts {
        let all: Vec<_> = host.logs(&id, false, None).await?.collect().await;
        assert!(all.len() >= 2, "{kind}: {all:?}");
        match host.exec(&id, &["true".into()]).await {
            Err(HostError::Docker { status: 409, message }) => {
                assert!(message.contains("is not running"), "{message}")
            }
            other => bail!("{kind}: exec in a stopped container: {other:?}"),
        }
        match host.logs("no-such-container-ballast", false, None).await {
            Err(HostError::NotFound(_)) => {}
            Err(other) => bail!("{kind}: logs of a missing container: {other:?}"),
            Ok(_) => bail!("{kind}: logs of a missing container answered"),
        }
    }
    Ok(())
}
