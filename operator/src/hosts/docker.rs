//! The Docker Engine API calls behind `DockerHost`, written once for the local socket and the SSH tunnel.
//!
//! bollard types stop here: callers get `Container`, `HostEvent` and `HostError`.

use std::collections::{BTreeMap, HashMap};
use std::future::{ready, Future};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummaryStateEnum,
    ContainerUpdateBody, EventMessage, ExecConfig, HostConfig, HostConfigLogConfig, PortMap, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, EventsOptions, InspectContainerOptions,
    ListContainersOptions, LogsOptions, RemoveContainerOptions, StopContainerOptions,
};
use bollard::{BollardRequest, ClientVersion, Docker};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use hyper_util::client::legacy::connect::Connect;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{
    Container, ContainerConfig, ContainerState, ExecOutput, HostError, HostEvent, LogLine, LogStream,
    RegistryAuth, EXEC_OUTPUT_LIMIT,
};

/// The label every ballast container carries; only containers with it are listed or reported.
pub(super) const ROLE_LABEL: &str = "ballast.role";

/// Docker 20.10 speaks API 1.41; newer engines accept older clients.
const API_VERSION: ClientVersion = ClientVersion { major_version: 1, minor_version: 41 };
/// Bound of one ordinary API call (list, inspect, create, start, update, remove).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound of one image pull.
const PULL_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// How many containers `list` inspects at once.
const INSPECT_CONCURRENCY: usize = 4;
/// Idle pooled HTTP connections (for SSH: open channels) are closed after this.
const POOL_IDLE: Duration = Duration::from_secs(30);
/// Bound of one exec, from its start to its exit.
const EXEC_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// How long an exec may still show as running after its output ended.
const EXEC_EXIT_WAIT: Duration = Duration::from_secs(5);
/// The container actions that may need a reconcile.
const ACTIONS: [&str; 8] = ["create", "start", "die", "stop", "oom", "update", "rename", "destroy"];
/// Event attributes that Docker adds next to the container's labels.
const EVENT_ATTRIBUTES: [&str; 6] = ["image", "name", "exitCode", "signal", "oldName", "execID"];

/// A bollard client whose HTTP connections come from `connector`. hyper pools them (HTTP/1.1: one request at
/// a time per connection); a streaming response (events) keeps its connection to itself.
pub(super) fn client<C>(connector: C) -> Docker
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let http = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .pool_max_idle_per_host(16)
        .build(connector);
    let transport = move |request: BollardRequest| {
        let http = http.clone();
        async move { http.request(request).await.map_err(DockerError::from) }
    };
    // The timeout given to bollard bounds only the wait for response headers; every call here is bounded
    // by its own deadline, so bollard's is set out of the way.
    let bollard_timeout = 24 * 3600;
    Docker::connect_with_custom_transport(
        transport,
        Some("http://docker.invalid"),
        bollard_timeout,
        &API_VERSION,
    )
    .expect("a custom transport client is built without I/O")
}

/// Inspected containers of one host, reused by `list` while an open events stream of that host vouches that
/// nothing changed them: every event naming a container drops its entry, and the whole cache is dropped when
/// the last stream ends (a broken stream may have missed anything). With no stream open nothing is reused.
#[derive(Clone, Default)]
pub(super) struct InspectCache(Arc<Mutex<CacheState>>);

#[derive(Default)]
struct CacheState {
    /// Open events streams.
    streams: usize,
    /// Bumped by every event and every stream opened or closed.
    epoch: u64,
    /// The epoch of the last stream opened or closed: an inspect begun before it is not kept.
    reset_at: u64,
    entries: HashMap<String, Entry>,
}

enum Entry {
    Inspected(Container),
    /// An event named the container at this epoch: an inspect begun before it is not kept.
    Changed(u64),
}

impl InspectCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached inspect of `id`, if it may be reused and Docker's list shows it in the same state.
    fn get(&self, id: &str, listed: Option<ContainerState>) -> Option<Container> {
        let state = self.lock();
        if state.streams == 0 {
            return None;
        }
        match state.entries.get(id) {
            Some(Entry::Inspected(cached)) if listed.is_none_or(|s| s == cached.state) => {
                Some(cached.clone())
            }
            _ => None,
        }
    }

    fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Keeps an inspect begun at `epoch`, unless a stream opened or closed, or an event named the
    /// container, since.
    fn put(&self, epoch: u64, container: &Container) {
        let mut state = self.lock();
        let changed_since =
            matches!(state.entries.get(&container.id), Some(Entry::Changed(at)) if *at > epoch);
        if state.streams > 0 && epoch >= state.reset_at && !changed_since {
            state.entries.insert(container.id.clone(), Entry::Inspected(container.clone()));
        }
    }

    /// Drops entries of containers no longer listed.
    fn retain(&self, listed: &[String]) {
        self.lock().entries.retain(|id, _| listed.contains(id));
    }

    fn forget(&self, id: &str) {
        let mut state = self.lock();
        state.epoch += 1;
        let epoch = state.epoch;
        state.entries.insert(id.to_string(), Entry::Changed(epoch));
    }

    fn reset(&self, streams: impl FnOnce(usize) -> usize) {
        let mut state = self.lock();
        state.streams = streams(state.streams);
        state.epoch += 1;
        state.reset_at = state.epoch;
        state.entries.clear();
    }

    fn stream_opened(&self) {
        self.reset(|n| n + 1);
    }

    fn stream_closed(&self) {
        self.reset(|n| n.saturating_sub(1));
    }
}

/// Containers carrying `ballast.role`, in any state, with their resource limits.
///
/// Docker's list does not report limits or the image reference as given at create, so each listed
/// container is inspected (a few at a time), unless `cache` holds it: on a host whose events stream is open,
/// a converged host costs one list call.
pub(super) async fn list(docker: &Docker, cache: &InspectCache) -> Result<Vec<Container>, HostError> {
    let filters = HashMap::from([("label".to_string(), vec![ROLE_LABEL.to_string()])]);
    let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
    let epoch = cache.epoch();
    let summaries = bounded(CALL_TIMEOUT, docker.list_containers(Some(options))).await?;
    let listed: Vec<(String, Option<ContainerState>)> =
        summaries.into_iter().filter_map(|s| Some((s.id?, s.state.and_then(summary_state)))).collect();
    cache.retain(&listed.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>());
    let inspected: Vec<Result<Option<Container>, HostError>> = stream::iter(listed)
        .map(|(id, state)| async move {
            if let Some(cached) = cache.get(&id, state) {
                return Ok(Some(cached));
            }
            let container = inspect(docker, &id).await?;
            if let Some(c) = &container {
                cache.put(epoch, c);
            }
            Ok(container)
        })
        .buffered(INSPECT_CONCURRENCY)
        .collect()
        .await;
    let mut containers = Vec::with_capacity(inspected.len());
    for result in inspected {
        // `None`: removed between the list and the inspect.
        if let Some(container) = result? {
            containers.push(container);
        }
    }
    Ok(containers)
}

/// The state in Docker's list answer, as the inspect would report it (`None`: not said).
fn summary_state(state: ContainerSummaryStateEnum) -> Option<ContainerState> {
    Some(match state {
        ContainerSummaryStateEnum::EMPTY => return None,
        ContainerSummaryStateEnum::CREATED => ContainerState::Created,
        ContainerSummaryStateEnum::RUNNING | ContainerSummaryStateEnum::STOPPING => ContainerState::Running,
        ContainerSummaryStateEnum::PAUSED => ContainerState::Paused,
        ContainerSummaryStateEnum::RESTARTING => ContainerState::Restarting,
        ContainerSummaryStateEnum::REMOVING => ContainerState::Removing,
        ContainerSummaryStateEnum::EXITED => ContainerState::Exited,
        ContainerSummaryStateEnum::DEAD => ContainerState::Dead,
    })
}

pub(super) async fn inspect(docker: &Docker, id: &str) -> Result<Option<Container>, HostError> {
    match bounded(CALL_TIMEOUT, docker.inspect_container(id, None::<InspectContainerOptions>)).await {
        Ok(response) => Ok(Some(container(response))),
        Err(HostError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

pub(super) async fn image_present(docker: &Docker, image: &str) -> Result<bool, HostError> {
    match bounded(CALL_TIMEOUT, docker.inspect_image(image)).await {
        Ok(_) => Ok(true),
        Err(HostError::NotFound(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

pub(super) async fn pull(docker: &Docker, image: &str, auth: Option<&RegistryAuth>) -> Result<(), HostError> {
    // Without a tag or digest Docker would pull every tag of the repository.
    let tag = (!has_tag_or_digest(image)).then(|| "latest".to_string());
    let options = CreateImageOptions { from_image: Some(image.to_string()), tag, ..Default::default() };
    let credentials = auth.map(|a| DockerCredentials {
        username: Some(a.username.clone()),
        password: Some(a.password.clone()),
        serveraddress: Some(a.server.clone()),
        ..Default::default()
    });
    let progress = docker.create_image(Some(options), None, credentials);
    match tokio::time::timeout(PULL_TIMEOUT, progress.try_for_each(|_| ready(Ok(())))).await {
        Err(_) => Err(HostError::Timeout(PULL_TIMEOUT)),
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(pull_error(image, e)),
    }
}

/// Creates (does not start) a container; returns its id.
pub(super) async fn create(docker: &Docker, config: &ContainerConfig) -> Result<String, HostError> {
    let options = CreateContainerOptions { name: Some(config.name.clone()), ..Default::default() };
    let created = bounded(CALL_TIMEOUT, docker.create_container(Some(options), create_body(config))).await?;
    Ok(created.id)
}

pub(super) async fn start(docker: &Docker, id: &str) -> Result<(), HostError> {
    bounded(CALL_TIMEOUT, docker.start_container(id, None)).await
}

pub(super) async fn stop(docker: &Docker, id: &str, grace: Duration) -> Result<(), HostError> {
    let seconds = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
    let options = StopContainerOptions { t: Some(seconds), signal: None };
    bounded(CALL_TIMEOUT + grace, docker.stop_container(id, Some(options))).await
}

pub(super) async fn remove(docker: &Docker, id: &str) -> Result<(), HostError> {
    let options = RemoveContainerOptions { force: true, ..Default::default() };
    match bounded(CALL_TIMEOUT, docker.remove_container(id, Some(options))).await {
        Ok(()) | Err(HostError::NotFound(_)) => Ok(()),
        Err(HostError::Docker { status: 409, message }) if message.contains("already in progress") => Ok(()),
        Err(e) => Err(e),
    }
}

/// Sets cpus and memory in place. Memory-swap is always sent with memory (2× memory, Docker's own default
/// at create), so raising memory above the old swap limit works.
///
/// Docker's update treats 0 as "leave unchanged" and rejects -1, so a limit cannot be lifted in place:
/// asking for 0 where the container has a limit fails with `Docker { status: 409 }` (recreate instead).
pub(super) async fn update_resources(
    docker: &Docker,
    id: &str,
    nano_cpus: i64,
    memory: i64,
) -> Result<(), HostError> {
    let current =
        inspect(docker, id).await?.ok_or_else(|| HostError::NotFound(format!("no such container: {id}")))?;
    if (nano_cpus == 0 && current.nano_cpus != 0) || (memory == 0 && current.memory != 0) {
        return Err(HostError::Docker {
            status: 409,
            message: format!(
                "a cpu or memory limit cannot be removed in place (container {id}); recreate it"
            ),
        });
    }
    if nano_cpus == current.nano_cpus && memory == current.memory {
        return Ok(());
    }
    let body = ContainerUpdateBody {
        nano_cpus: (nano_cpus > 0).then_some(nano_cpus),
        memory: (memory > 0).then_some(memory),
        memory_swap: (memory > 0).then(|| memory.saturating_mul(2)),
        ..Default::default()
    };
    bounded(CALL_TIMEOUT, docker.update_container(id, body)).await
}

/// Container events of ballast-labelled containers. Subscribes from the engine's current time, so an
/// event that happens between this call and the stream's first poll is still delivered.
pub(super) async fn events(
    docker: &Docker,
    cache: &InspectCache,
) -> Result<BoxStream<'static, HostEvent>, HostError> {
    let info = bounded(CALL_TIMEOUT, docker.info()).await?;
    let since = info.system_time.as_deref().and_then(unix_timestamp);
    let filters = HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        ("label".to_string(), vec![ROLE_LABEL.to_string()]),
        ("event".to_string(), ACTIONS.iter().map(|a| a.to_string()).collect()),
    ]);
    let options = EventsOptions { since, until: None, filters: Some(filters) };
    let events = docker
        .events(Some(options))
        .take_while(|item| {
            if let Err(e) = item {
                tracing::debug!(error = %e, "docker events stream ended");
            }
            ready(item.is_ok())
        })
        .filter_map(|item| ready(item.ok().and_then(host_event)));
    cache.stream_opened();
    Ok(Watched { events: events.boxed(), cache: Some(cache.clone()) }.boxed())
}

/// An events stream that keeps the host's [`InspectCache`] honest: each event drops the entry of its
/// container before it is passed on, and the end (or drop) of the stream drops the whole cache.
struct Watched {
    events: BoxStream<'static, HostEvent>,
    /// `None` once the stream ended.
    cache: Option<InspectCache>,
}

impl futures::Stream for Watched {
    type Item = HostEvent;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<HostEvent>> {
        let polled = self.events.poll_next_unpin(cx);
        match &polled {
            std::task::Poll::Ready(Some(event)) => {
                if let Some(cache) = &self.cache {
                    cache.forget(&event.container_id);
                }
            }
            std::task::Poll::Ready(None) => {
                if let Some(cache) = self.cache.take() {
                    cache.stream_closed();
                }
            }
            std::task::Poll::Pending => {}
        }
        polled
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(cache) = self.cache.take() {
            cache.stream_closed();
        }
    }
}

/// A container's log lines. Docker is asked for timestamps, which become `LogLine::time`. A stream error
/// (connection broken) is the stream's last item.
pub(super) async fn logs(
    docker: &Docker,
    id: &str,
    follow: bool,
    tail: Option<u64>,
) -> Result<BoxStream<'static, Result<LogLine, HostError>>, HostError> {
    // Fails fast (404, unreachable) before the stream starts, so callers can answer with a status code.
    if inspect(docker, id).await?.is_none() {
        return Err(HostError::NotFound(format!("no such container: {id}")));
    }
    let options = LogsOptions {
        follow,
        stdout: true,
        stderr: true,
        timestamps: true,
        tail: tail.map(|n| n.to_string()).unwrap_or_else(|| "all".to_string()),
        ..Default::default()
    };
    let mut failed = false;
    let lines = docker
        .logs(id, Some(options))
        .take_while(move |item| {
            // Pass the first error on, then stop.
            let go_on = !failed;
            failed |= item.is_err();
            ready(go_on)
        })
        .flat_map(|item| {
            let lines: Vec<Result<LogLine, HostError>> = match item {
                Ok(output) => log_lines(output).into_iter().map(Ok).collect(),
                Err(e) => vec![Err(host_error(e))],
            };
            stream::iter(lines)
        });
    Ok(lines.boxed())
}

/// Runs `cmd` in a running container and collects its output (up to [`EXEC_OUTPUT_LIMIT`]) and exit code.
pub(super) async fn exec(docker: &Docker, id: &str, cmd: &[String]) -> Result<ExecOutput, HostError> {
    let config = ExecConfig {
        attach_stdin: Some(false),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        cmd: Some(cmd.to_vec()),
        ..Default::default()
    };
    let created = bounded(CALL_TIMEOUT, docker.create_exec(id, config)).await?;
    let options = StartExecOptions { detach: false, tty: false, output_capacity: None };
    let started = bounded(CALL_TIMEOUT, docker.start_exec(&created.id, Some(options))).await?;
    let StartExecResults::Attached { mut output, input } = started else {
        return Err(HostError::Docker { status: 0, message: "exec started detached".to_string() });
    };
    // Nothing is written: stdin is not attached.
    drop(input);
    let mut collected = ExecOutput::default();
    let read_all = async {
        while let Some(item) = output.next().await {
            let (stream, bytes) = match item.map_err(host_error)? {
                LogOutput::StdErr { message } => (LogStream::Stderr, message),
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    (LogStream::Stdout, message)
                }
                LogOutput::StdIn { .. } => continue,
            };
            collected.keep(stream, &bytes);
        }
        Ok::<(), HostError>(())
    };
    match tokio::time::timeout(EXEC_TIMEOUT, read_all).await {
        Err(_) => return Err(HostError::Timeout(EXEC_TIMEOUT)),
        Ok(result) => result?,
    }
    collected.exit_code = exit_code(docker, &created.id).await?;
    Ok(collected)
}

/// `GET path` over an open byte stream to `authority` (`ip:port`); returns the status code.
/// `HostError::Http` when the peer does not answer HTTP.
pub(super) async fn http_status<S>(mut stream: S, authority: &str, path: &str) -> Result<u16, HostError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: ballast\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    let failed = |e: std::io::Error| HostError::Http(format!("GET http://{authority}{path}: {e}"));
    stream.write_all(request.as_bytes()).await.map_err(failed)?;
    stream.flush().await.map_err(failed)?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        let n = stream.read(&mut buf).await.map_err(failed)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    parse_status_line(&head).ok_or_else(|| {
        let answer = String::from_utf8_lossy(&head[..head.len().min(64)]).into_owned();
        HostError::Http(format!("GET http://{authority}{path}: no http answer (got {answer:?})"))
    })
}

/// Turns a bollard error into a `HostError`: 404 → `NotFound`, other statuses → `Docker`, a failure to reach
/// the engine → `Unreachable` (or the connector's own `HostError`, such as `HostKey`, when it made the failure).
pub(super) fn host_error(error: DockerError) -> HostError {
    match error {
        DockerError::DockerResponseServerError { status_code: 404, message } => HostError::NotFound(message),
        DockerError::DockerResponseServerError { status_code, message } => {
            HostError::Docker { status: status_code, message }
        }
        DockerError::HyperLegacyError { .. }
        | DockerError::HyperResponseError { .. }
        | DockerError::IOError { .. }
        | DockerError::RequestTimeoutError => connector_error(&error)
            .unwrap_or_else(|| HostError::Unreachable(format!("docker api: {}", root_cause(&error)))),
        other => HostError::Docker { status: 0, message: other.to_string() },
    }
}

/// Runs a bollard call with a deadline.
async fn bounded<T>(
    limit: Duration,
    call: impl Future<Output = Result<T, DockerError>>,
) -> Result<T, HostError> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result.map_err(host_error),
        Err(_) => Err(HostError::Timeout(limit)),
    }
}

/// The exit code of a finished exec. The output can end a moment before Docker records the exit: ask again
/// for a little while.
async fn exit_code(docker: &Docker, exec_id: &str) -> Result<i64, HostError> {
    let deadline = tokio::time::Instant::now() + EXEC_EXIT_WAIT;
    loop {
        let inspected = bounded(CALL_TIMEOUT, docker.inspect_exec(exec_id)).await?;
        if inspected.running != Some(true) {
            if let Some(code) = inspected.exit_code {
                return Ok(code);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(HostError::Timeout(EXEC_EXIT_WAIT));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl ExecOutput {
    /// Appends output while under [`EXEC_OUTPUT_LIMIT`] (both streams together); marks the rest as dropped.
    fn keep(&mut self, stream: LogStream, bytes: &[u8]) {
        let room = EXEC_OUTPUT_LIMIT.saturating_sub(self.stdout.len() + self.stderr.len());
        let kept = &bytes[..bytes.len().min(room)];
        self.truncated |= kept.len() < bytes.len();
        match stream {
            LogStream::Stdout => self.stdout.extend_from_slice(kept),
            LogStream::Stderr => self.stderr.extend_from_slice(kept),
        }
    }
}

/// The lines of one log frame: `TIMESTAMP TEXT\n` (a frame is normally one line; a TTY's may hold several).
fn log_lines(output: LogOutput) -> Vec<LogLine> {
    let (stream, bytes) = match output {
        LogOutput::StdErr { message } => (LogStream::Stderr, message),
        LogOutput::StdOut { message } | LogOutput::Console { message } => (LogStream::Stdout, message),
        LogOutput::StdIn { .. } => return Vec::new(),
    };
    let text = String::from_utf8_lossy(&bytes);
    let (time, text) = match text.split_once(' ') {
        Some((stamp, rest)) => match chrono::DateTime::parse_from_rfc3339(stamp) {
            Ok(time) => (Some(time.with_timezone(&chrono::Utc)), rest),
            Err(_) => (None, text.as_ref()),
        },
        None => (None, text.as_ref()),
    };
    let text = text.strip_suffix('\n').unwrap_or(text);
    text.split('\n').map(|line| LogLine { stream, text: line.to_string(), time }).collect()
}

fn pull_error(image: &str, error: DockerError) -> HostError {
    let message = match error {
        DockerError::DockerStreamError { error } => error,
        DockerError::DockerResponseServerError { message, .. } => message,
        other => match host_error(other) {
            e @ (HostError::Unreachable(_) | HostError::HostKey(_) | HostError::Timeout(_)) => return e,
            e => e.to_string(),
        },
    };
    HostError::Pull { image: image.to_string(), message }
}

/// The `HostError` a connector returned, if it is somewhere in the error's source chain.
fn connector_error(error: &(dyn std::error::Error + 'static)) -> Option<HostError> {
    let mut source = error.source();
    while let Some(e) = source {
        if let Some(host_error) = e.downcast_ref::<HostError>() {
            return Some(host_error.clone());
        }
        source = e.source();
    }
    None
}

/// The innermost cause's message: that is the one that says what went wrong (e.g. "connection refused").
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn create_body(config: &ContainerConfig) -> ContainerCreateBody {
    let port_key = |p: &super::PortBinding| format!("{}/{}", p.container_port, p.protocol);
    let mut port_bindings = PortMap::new();
    for p in &config.ports {
        let binding = bollard::models::PortBinding {
            host_ip: p.host_ip.clone(),
            host_port: Some(p.host_port.to_string()),
        };
        port_bindings
            .entry(port_key(p))
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(binding);
    }
    let exposed: Vec<String> = port_bindings.keys().cloned().collect();
    let host_config = HostConfig {
        nano_cpus: (config.nano_cpus > 0).then_some(config.nano_cpus),
        memory: (config.memory > 0).then_some(config.memory),
        memory_swap: (config.memory > 0).then(|| config.memory.saturating_mul(2)),
        port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
        log_config: config.logging.as_ref().map(|(driver, options)| HostConfigLogConfig {
            typ: Some(driver.clone()),
            config: Some(options.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        }),
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
            maximum_retry_count: None,
        }),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(config.image.clone()),
        cmd: (!config.command.is_empty()).then(|| config.command.clone()),
        env: Some(config.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(config.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        host_config: Some(host_config),
        ..Default::default()
    }
}

fn container(response: ContainerInspectResponse) -> Container {
    let config = response.config.unwrap_or_default();
    let host_config = response.host_config.unwrap_or_default();
    let state = response.state.and_then(|s| s.status).map(container_state).unwrap_or(ContainerState::Created);
    let mut networks: Vec<(String, Option<String>)> = response
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, endpoint)| (name, endpoint.ip_address))
        .collect();
    networks.sort();
    let ip = networks.into_iter().filter_map(|(_, ip)| ip).find(|ip| !ip.is_empty());
    Container {
        id: response.id.unwrap_or_default(),
        name: response.name.unwrap_or_default().trim_start_matches('/').to_string(),
        image: config.image.unwrap_or_default(),
        labels: config.labels.unwrap_or_default().into_iter().collect(),
        state,
        nano_cpus: host_config.nano_cpus.unwrap_or(0),
        memory: host_config.memory.unwrap_or(0),
        ip,
    }
}

fn container_state(status: ContainerStateStatusEnum) -> ContainerState {
    match status {
        ContainerStateStatusEnum::CREATED | ContainerStateStatusEnum::EMPTY => ContainerState::Created,
        // Still running until it has stopped.
        ContainerStateStatusEnum::RUNNING | ContainerStateStatusEnum::STOPPING => ContainerState::Running,
        ContainerStateStatusEnum::PAUSED => ContainerState::Paused,
        ContainerStateStatusEnum::RESTARTING => ContainerState::Restarting,
        ContainerStateStatusEnum::REMOVING => ContainerState::Removing,
        ContainerStateStatusEnum::EXITED => ContainerState::Exited,
        ContainerStateStatusEnum::DEAD => ContainerState::Dead,
    }
}

fn host_event(message: EventMessage) -> Option<HostEvent> {
    let action = message.action?;
    if !ACTIONS.contains(&action.as_str()) {
        return None;
    }
    let actor = message.actor?;
    let labels: BTreeMap<String, String> = actor
        .attributes
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !EVENT_ATTRIBUTES.contains(&k.as_str()))
        .collect();
    if !labels.contains_key(ROLE_LABEL) {
        return None;
    }
    Some(HostEvent { container_id: actor.id?, action, labels })
}

/// RFC 3339 (Docker's `SystemTime`) → `seconds.nanoseconds`, the form the events `since` parameter takes.
fn unix_timestamp(rfc3339: &str) -> Option<String> {
    let time = chrono::DateTime::parse_from_rfc3339(rfc3339).ok()?;
    Some(format!("{}.{:09}", time.timestamp(), time.timestamp_subsec_nanos()))
}

/// `name:tag` or `name@digest`; a `:` before the last `/` is a registry port.
fn has_tag_or_digest(image: &str) -> bool {
    let last = image.rsplit('/').next().unwrap_or(image);
    image.contains('@') || last.contains(':')
}

fn parse_status_line(head: &[u8]) -> Option<u16> {
    let line_end = head.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&head[..line_end]).ok()?;
    let mut parts = line.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_digests() {
        assert!(has_tag_or_digest("ballast-test/app:v1"));
        assert!(has_tag_or_digest("127.0.0.1:5000/app:v1"));
        assert!(has_tag_or_digest("app@sha256:0123"));
        assert!(!has_tag_or_digest("127.0.0.1:5000/app"));
        assert!(!has_tag_or_digest("211125575460.dkr.ecr.us-east-1.amazonaws.com/bioloupe/datalake"));
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 404 Not Found\r\n"), Some(404));
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK"), None);
    }

    #[test]
    fn log_frames_become_lines_with_their_time() {
        let frame = |text: &str| LogOutput::StdErr { message: bytes::Bytes::from(text.to_string()) };
        let lines = log_lines(frame("2026-11-27T22:24:55.128666172Z boom\n"));
        assert_eq!(lines.len(), 1);
        assert_eq!((lines[0].stream, lines[0].text.as_str()), (LogStream::Stderr, "boom"));
        assert_eq!(lines[0].time.map(|t| t.timestamp_subsec_nanos()), Some(128666172));
        let texts = |lines: Vec<LogLine>| lines.into_iter().map(|l| l.text).collect::<Vec<_>>();
        assert_eq!(texts(log_lines(frame("2026-11-27T22:24:55Z a\nb\n"))), ["a", "b"]);
        assert_eq!(texts(log_lines(frame("2026-11-27T22:24:55Z \n"))), [""]);
        let untimed = log_lines(LogOutput::StdOut { message: bytes::Bytes::from_static(b"no time here") });
        assert_eq!((untimed[0].text.as_str(), untimed[0].time), ("no time here", None));
    }

    #[test]
    fn exec_output_keeps_the_first_four_mebibytes_of_both_streams() {
        let mut output = ExecOutput::default();
        output.keep(LogStream::Stderr, &vec![b'e'; 1024]);
        output.keep(LogStream::Stdout, &vec![b'o'; EXEC_OUTPUT_LIMIT - 1024 - 8]);
        output.keep(LogStream::Stdout, b"01234567");
        assert!(!output.truncated, "exactly the limit");
        output.keep(LogStream::Stderr, b"more");
        assert!(output.truncated);
        assert_eq!(
            (output.stdout.len() + output.stderr.len(), output.stderr.len()),
            (EXEC_OUTPUT_LIMIT, 1024)
        );
        let mut output = ExecOutput::default();
        output.keep(LogStream::Stdout, &vec![b'o'; EXEC_OUTPUT_LIMIT - 2]);
        output.keep(LogStream::Stdout, b"abcd");
        assert!(output.truncated);
        assert!(output.stdout.ends_with(b"oab"));
    }

    #[test]
    fn docker_time_to_since() {
        assert_eq!(unix_timestamp("2026-11-27T22:24:55.128666172Z").as_deref(), Some("1795818295.128666172"));
        assert_eq!(unix_timestamp("garbage"), None);
    }

    #[test]
    fn events_keep_labels_and_drop_docker_attributes() {
        let message: EventMessage = serde_json::from_value(serde_json::json!({
            "Type": "container", "Action": "die",
            "Actor": {"ID": "abc", "Attributes": {"ballast.role": "web", "image": "app:v1", "name": "web-1", "exitCode": "0"}}
        }))
        .unwrap();
        let event = host_event(message).unwrap();
        assert_eq!(event.container_id, "abc");
        assert_eq!(event.action, "die");
        assert_eq!(event.labels, BTreeMap::from([("ballast.role".to_string(), "web".to_string())]));
        let exec: EventMessage = serde_json::from_value(serde_json::json!({
            "Type": "container", "Action": "exec_start: sh", "Actor": {"ID": "abc", "Attributes": {"ballast.role": "web"}}
        }))
        .unwrap();
        assert_eq!(host_event(exec), None);
    }

    #[test]
    fn create_body_sets_swap_ports_logging_and_restart_policy() {
        let config = ContainerConfig {
            name: "web".into(),
            image: "app:v1".into(),
            command: vec![],
            env: vec![("A".into(), "1".into())],
            labels: BTreeMap::from([("ballast.role".into(), "web".into())]),
            nano_cpus: 1_500_000_000,
            memory: 512 << 20,
            ports: vec![super::super::PortBinding {
                host_ip: None,
                host_port: 8080,
                container_port: 3000,
                protocol: "tcp".into(),
            }],
            logging: Some(("json-file".into(), BTreeMap::from([("max-size".into(), "10m".into())]))),
        };
        let body = serde_json::to_value(create_body(&config)).unwrap();
        let host = &body["HostConfig"];
        assert_eq!(host["NanoCpus"], 1_500_000_000i64);
        assert_eq!(host["Memory"], 512i64 << 20);
        assert_eq!(host["MemorySwap"], 1024i64 << 20);
        assert_eq!(host["PortBindings"]["3000/tcp"][0]["HostPort"], "8080");
        assert_eq!(host["LogConfig"]["Type"], "json-file");
        assert_eq!(host["RestartPolicy"]["Name"], "unless-stopped");
        assert_eq!(body["ExposedPorts"], serde_json::json!({"3000/tcp": {}}));
        assert_eq!(body["Env"], serde_json::json!(["A=1"]));
        assert!(body.get("Cmd").is_none());
    }
}
