//! The Docker Engine API calls behind `DockerHost`, written once for every way to reach an engine.
//!
//! bollard types stop here and in `convert.rs`: callers get `Container`, `HostEvent` and `HostError`.

use std::collections::{BTreeMap, HashMap};
use std::future::{ready, Future};
use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::errors::Error as DockerError;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{ContainerUpdateBody, ExecConfig, NetworkCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, DownloadFromContainerOptions, EventsOptions,
    InspectContainerOptions, InspectNetworkOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, StopContainerOptions, UploadToContainerOptions,
};
use bollard::{BollardRequest, ClientVersion, Docker};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use hyper_util::client::legacy::connect::Connect;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::convert::{
    container, create_body, has_tag_or_digest, host_error, host_event, log_frame, log_lines, pull_error,
    summary_state, unix_timestamp, ACTIONS, ROLE_LABEL,
};
use super::inspect_cache::InspectCache;
use super::tar;
use super::{
    Container, ContainerConfig, ContainerState, ExecOutput, HostError, HostEvent, LogLine, RegistryAuth,
};

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

/// Creates the bridge network `name` unless it exists (a creation that races with another counts as done).
pub(super) async fn ensure_network(
    docker: &Docker,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> Result<(), HostError> {
    match bounded(CALL_TIMEOUT, docker.inspect_network(name, None::<InspectNetworkOptions>)).await {
        Ok(_) => return Ok(()),
        Err(HostError::NotFound(_)) => {}
        Err(e) => return Err(e),
    }
    let request = NetworkCreateRequest {
        name: name.to_string(),
        driver: Some("bridge".to_string()),
        labels: Some(labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        ..Default::default()
    };
    match bounded(CALL_TIMEOUT, docker.create_network(request)).await {
        Ok(_) => Ok(()),
        Err(HostError::Docker { status: 409, .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes files into a container through the archive API (one tar extracted at `/`).
pub(super) async fn put_files(docker: &Docker, id: &str, files: &[(&str, &[u8])]) -> Result<(), HostError> {
    let relative: Vec<(&str, &[u8])> =
        files.iter().map(|(path, c)| (path.trim_start_matches('/'), *c)).collect();
    let archive = tar::archive(&relative);
    let options = UploadToContainerOptions { path: "/".to_string(), ..Default::default() };
    bounded(CALL_TIMEOUT, docker.upload_to_container(id, Some(options), bollard::body_full(archive.into())))
        .await
}

/// The files directly in a container's folder, by name, through the archive API.
pub(super) async fn files(
    docker: &Docker,
    id: &str,
    dir: &str,
) -> Result<BTreeMap<String, Vec<u8>>, HostError> {
    let options = DownloadFromContainerOptions { path: dir.to_string() };
    let download =
        docker.download_from_container(id, Some(options)).try_fold(Vec::new(), |mut all, chunk| {
            all.extend_from_slice(&chunk);
            ready(Ok(all))
        });
    let archive = match bounded(CALL_TIMEOUT, download).await {
        Ok(archive) => archive,
        Err(HostError::NotFound(_)) => return Ok(BTreeMap::new()),
        Err(e) => return Err(e),
    };
    let files = tar::files(&archive).map_err(|message| HostError::Docker { status: 0, message })?;
    // Entries are named from the folder's own name: `upstreams/web` for `/ballast/upstreams`.
    Ok(files
        .into_iter()
        .filter_map(|(path, content)| {
            let (_, name) = path.split_once('/')?;
            (!name.is_empty() && !name.contains('/')).then(|| (name.to_string(), content))
        })
        .collect())
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
    Ok(cache.watch(events.boxed()))
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
            let Some((stream, bytes)) = log_frame(item.map_err(host_error)?) else {
                continue;
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
