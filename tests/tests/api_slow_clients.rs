//! Slow and many clients against the real `ballastd`: half-open connections are closed after the header
//! timeout and, a thousand of them held open, block neither the API nor a rollout on the local Docker engine;
//! past `--max-connections` a new connection gets `503 busy` at once; a request whose body never comes gets
//! `503 timeout`; past `--max-heavy-requests` a heavy request (plan, logs, exec) gets `503 busy`.

use std::process::{Child, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use ballast_specs::wire::{ErrorBody, Event, List};
use ballast_tests::ballastd::{ballast_command, Ballastd, Options};
use ballast_tests::docker::{ensure_image, unique_name, HostCleanup, APP_V1, SOCKET};
use ballast_tests::raw_http::{address, exchange, Answer};
use ballast_tests::{wait, TestEtcd};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Half-open connections held at once.
const FLOOD: usize = 1000;
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn code(answer: &Answer) -> String {
    serde_json::from_str::<ErrorBody>(&answer.body)
        .unwrap_or_else(|e| panic!("not an error body ({e}): {answer:?}"))
        .error
        .code
}

/// A host on the local engine and a role `app` of the test app on it, with `V=version` in its env.
fn specs(host: &str, version: u32) -> String {
    format!(
        "apiVersion: ballast/v1\nkind: Host\nmetadata: {{name: {host}}}\nspec: {{address: \"unix://{SOCKET}\"}}\n---\n\
         apiVersion: ballast/v1\nkind: Role\nmetadata: {{name: app}}\nspec:\n  hosts: [{host}]\n  image: {APP_V1}\n  \
         env: {{V: \"{version}\"}}\n"
    )
}

/// Applies `specs` through the CLI and waits until the role has converged at it.
fn apply_and_wait(ballastd: &Ballastd, dir: &std::path::Path, specs: &str) -> anyhow::Result<Duration> {
    let file = dir.join("app.yaml");
    std::fs::write(&file, specs)?;
    let applied = ballastd.ballast(&["apply", "-f", file.to_str().context("utf-8 path")?]);
    anyhow::ensure!(applied.status.success(), "apply: {}", stderr(&applied));
    let started = Instant::now();
    let waited = ballastd.ballast(&["status", "app", "--wait", "--timeout", "120s"]);
    anyhow::ensure!(waited.status.success(), "status --wait: {}\n{}", stderr(&waited), ballastd.log());
    Ok(started.elapsed())
}

/// Connections that each send half a request line and wait; one closed by the server is opened again while
/// the flood lasts. How long the server held each one is recorded.
struct Flood {
    stop: CancellationToken,
    open: Arc<AtomicUsize>,
    held: Arc<Mutex<Vec<Duration>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Flood {
    async fn start(address: &str, count: usize) -> Flood {
        let flood = Flood {
            stop: CancellationToken::new(),
            open: Arc::new(AtomicUsize::new(0)),
            held: Arc::new(Mutex::new(Vec::new())),
            tasks: Vec::new(),
        };
        let mut tasks = Vec::with_capacity(count);
        for _ in 0..count {
            let (address, stop) = (address.to_string(), flood.stop.clone());
            let (open, held) = (flood.open.clone(), flood.held.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.is_cancelled() {
                    let Ok(mut stream) = TcpStream::connect(&address).await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    if stream.write_all(b"GET /api/v1/sta").await.is_err() {
                        continue;
                    }
                    open.fetch_add(1, Ordering::SeqCst);
                    let opened = Instant::now();
                    let mut buffer = [0u8; 512];
                    let closed = tokio::select! {
                        () = stop.cancelled() => false,
                        () = async { while !matches!(stream.read(&mut buffer).await, Ok(0) | Err(_)) {} } => true,
                    };
                    open.fetch_sub(1, Ordering::SeqCst);
                    if closed {
                        held.lock().expect("lock").push(opened.elapsed());
                    }
                }
            }));
        }
        let open = flood.open.clone();
        wait::until(Duration::from_secs(30), "the flood's connections to open", || async {
            (open.load(Ordering::SeqCst) >= count).then_some(())
        })
        .await
        .expect("flood");
        Flood { tasks, ..flood }
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// How many connections the server has closed so far.
    fn closed(&self) -> usize {
        self.held.lock().expect("lock").len()
    }

    async fn stop(self) -> Vec<Duration> {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        Arc::try_unwrap(self.held).expect("tasks ended").into_inner().expect("lock")
    }
}

/// `GET /up` on a new connection: its answer and how long it took.
async fn up(address: &str) -> (Answer, Duration) {
    let started = Instant::now();
    let answer =
        exchange(address, &format!("GET /up HTTP/1.1\r\nHost: {address}\r\n\r\n")).await.expect("up");
    (answer, started.elapsed())
}

// Several threads, and the CLI run with `block_in_place`: the flood's tasks see ballastd close their connections
// while the test waits for a command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_half_open_connections_block_neither_the_api_nor_a_rollout() {
    // This test's own connections need file descriptors too.
    ballast_operator::api::serve::raise_file_limit();
    ensure_image(APP_V1, "v1", "good").expect("image");
    let host = unique_name("flood");
    let _cleanup = HostCleanup(host.clone());
    let etcd = TestEtcd::start().await.expect("etcd");
    let header_timeout = format!("{}s", HEADER_TIMEOUT.as_secs());
    let args = ["--header-timeout", &header_timeout, "--resync", "2s"].map(String::from).to_vec();
    let ballastd = Ballastd::start_with(Options { etcd: etcd.endpoints(), args, ..Options::default() })
        .await
        .expect("ballastd");
    let dir = tempfile::tempdir().expect("tempdir");
    apply_and_wait(&ballastd, dir.path(), &specs(&host, 1)).expect("first rollout");
    let url = ballastd.url().to_string();
    let at = address(&url);
    let (_, quiet) = up(at).await;

    // A thousand half-open connections: /up and `ballast status` answer meanwhile.
    let flood = Flood::start(at, FLOOD).await;
    let (answer, loaded) = up(at).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "ok"), "{answer:?}");
    let started = Instant::now();
    let status = tokio::task::block_in_place(|| ballastd.ballast(&["status"]));
    let status_took = started.elapsed();
    assert_eq!(status.status.code(), Some(0), "{}", stderr(&status));
    assert!(
        loaded < Duration::from_secs(2) && status_took < Duration::from_secs(5),
        "{loaded:?} {status_took:?}"
    );
    eprintln!(
        "GET /up: {quiet:?} alone, {loaded:?} with {} half-open connections; ballast status: {status_took:?}",
        flood.open()
    );

    // A rollout (a new env: the container is replaced) finishes while the flood is kept up.
    let rollout = tokio::task::block_in_place(|| apply_and_wait(&ballastd, dir.path(), &specs(&host, 2)))
        .expect("rollout under the flood");
    assert!(flood.open() >= FLOOD * 9 / 10, "the flood thinned out: {} open", flood.open());
    // ballastd closes each after the header timeout; the flood opens it again.
    wait::until(HEADER_TIMEOUT * 4, "ballastd to close the first thousand half-open connections", || async {
        (flood.closed() >= FLOOD).then_some(())
    })
    .await
    .expect("closed");
    let (answer, churning) = up(at).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let held = flood.stop().await;
    eprintln!(
        "rollout under the flood: {rollout:?}; GET /up while they are closed and opened again: {churning:?}; \
         {} half-open connections were closed by ballastd",
        held.len()
    );

    // ballastd closed them, each after the header timeout (a little later under load).
    assert!(held.len() >= FLOOD, "only {} connections were closed by ballastd", held.len());
    let (shortest, longest) = (held.iter().min().copied(), held.iter().max().copied());
    eprintln!("held by ballastd: {shortest:?} to {longest:?}");
    assert!(shortest >= Some(HEADER_TIMEOUT - Duration::from_millis(500)), "{shortest:?}");
    assert!(longest <= Some(HEADER_TIMEOUT + Duration::from_secs(3)), "{longest:?}");
    let (answer, _) = up(at).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

#[tokio::test]
async fn past_the_connection_cap_a_new_connection_gets_503_at_once() {
    let etcd = TestEtcd::start().await.expect("etcd");
    let args =
        ["--no-reconcile", "--max-connections", "20", "--header-timeout", "30s"].map(String::from).to_vec();
    let ballastd = Ballastd::start_with(Options { etcd: etcd.endpoints(), args, ..Options::default() })
        .await
        .expect("ballastd");
    let url = ballastd.url().to_string();
    let at = address(&url);
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(TcpStream::connect(at).await.expect("connect"));
    }
    // Accepted after the twenty (the listen queue is first in, first out): no place is left.
    let busy = "ballastd is busy: 20 connections are open (--max-connections); try again shortly";
    let (answer, took) = up(at).await;
    assert_eq!((answer.status, code(&answer).as_str()), (503, "busy"), "{answer:?}");
    assert!(answer.body.contains(busy) && took < Duration::from_secs(2), "{answer:?} after {took:?}");
    let status = ballastd.ballast(&["status"]);
    assert_eq!((status.status.code(), stderr(&status)), (Some(3), format!("error: {busy}\n")));

    drop(idle);
    wait::until(Duration::from_secs(10), "/up to answer once the idle connections closed", || async {
        (up(at).await.0.status == 200).then_some(())
    })
    .await
    .expect("/up");
    let log = ballastd.log();
    assert!(log.contains("connections refused: too many open"), "{log}");
}

#[tokio::test]
async fn a_request_whose_body_never_comes_gets_503_after_the_request_timeout() {
    let etcd = TestEtcd::start().await.expect("etcd");
    let args = ["--no-reconcile", "--request-timeout", "2s"].map(String::from).to_vec();
    let ballastd = Ballastd::start_with(Options { etcd: etcd.endpoints(), args, ..Options::default() })
        .await
        .expect("ballastd");
    let url = ballastd.url().to_string();
    let at = address(&url);
    let started = Instant::now();
    let head = format!(
        "POST /api/v1/apply HTTP/1.1\r\nHost: {at}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    );
    let answer = exchange(at, &format!("{head}{{\"objects\": [")).await.expect("exchange");
    let took = started.elapsed();
    assert_eq!((answer.status, code(&answer).as_str()), (503, "timeout"), "{answer:?}");
    assert!(
        answer.body.contains("the request did not finish within 2s (ballastd --request-timeout)"),
        "{answer:?}"
    );
    assert!(took >= Duration::from_millis(1900) && took < Duration::from_secs(6), "{took:?}");
    let roles = ballastd.ballast(&["get", "roles", "-o", "json"]);
    assert_eq!(String::from_utf8_lossy(&roles.stdout).trim(), "{\n  \"items\": []\n}");
}

/// `ballast logs -f` in the background, killed on drop.
struct Follower(Child);

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn past_the_heavy_cap_plan_logs_and_exec_get_503() {
    ensure_image(APP_V1, "v1", "good").expect("image");
    let host = unique_name("heavy");
    let _cleanup = HostCleanup(host.clone());
    let etcd = TestEtcd::start().await.expect("etcd");
    let args = ["--max-heavy-requests", "2", "--resync", "2s"].map(String::from).to_vec();
    let ballastd = Ballastd::start_with(Options { etcd: etcd.endpoints(), args, ..Options::default() })
        .await
        .expect("ballastd");
    let dir = tempfile::tempdir().expect("tempdir");
    apply_and_wait(&ballastd, dir.path(), &specs(&host, 1)).expect("rollout");
    let plan = ballastd.ballast(&["plan"]);
    assert_eq!(plan.status.code(), Some(0), "{}", stderr(&plan));

    // Two followed logs hold both places for as long as they stream.
    let follow = || {
        let child = ballast_command()
            .env("BALLAST_SERVER", ballastd.url())
            .args(["logs", "app", "-f"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ballast logs -f");
        Follower(child)
    };
    let followers = [follow(), follow()];
    wait::until(Duration::from_secs(20), "both logs -f to stream (two Logs events)", || async {
        let events = ballastd.ballast(&["events", "app", "-o", "json"]);
        let events: List<Event> = serde_json::from_slice(&events.stdout).ok()?;
        (events.items.iter().filter(|e| e.reason == "Logs").count() >= 2).then_some(())
    })
    .await
    .expect("streams");
    let busy =
        "error: ballastd is busy: 2 heavy requests (plan, logs, exec) run already (--max-heavy-requests); \
                try again shortly\n";
    let refused = ballastd.ballast(&["plan"]);
    assert_eq!((refused.status.code(), stderr(&refused)), (Some(3), busy.to_string()));
    let exec = ballastd.ballast(&["exec", "app", "--", "true"]);
    assert_eq!((exec.status.code(), stderr(&exec)), (Some(3), busy.to_string()));
    // Light requests are not counted.
    let status = ballastd.ballast(&["status"]);
    assert_eq!(status.status.code(), Some(0), "{}", stderr(&status));

    drop(followers);
    wait::until(Duration::from_secs(20), "plan to answer once the streams ended", || async {
        (ballastd.ballast(&["plan"]).status.code() == Some(0)).then_some(())
    })
    .await
    .expect("plan again");
}
