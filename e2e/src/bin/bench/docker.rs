//! The Docker API of a rig host, straight on its socket (no SSH): what an engineer replacing a container by
//! hand would call, and what the bench uses to make drift and to observe containers.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use bollard::models::{ContainerCreateBody, ContainerUpdateBody, HostConfig, PortBinding, RestartPolicy};
use bollard::models::{RestartPolicyNameEnum, ServiceUpdateStatusStateEnum};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, InspectContainerOptions, ListContainersOptions,
    RemoveContainerOptions, RemoveImageOptions, StopContainerOptions,
};
use bollard::{ClientVersion, Docker};
use futures::TryStreamExt;

use crate::stats::ms;

/// The rig's dockerd is 20.10 (API 1.41).
const API: ClientVersion = ClientVersion { major_version: 1, minor_version: 41 };

/// What the bench needs to know of a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    pub id: String,
    pub running: bool,
    pub memory: i64,
    pub started_at: String,
    pub restart_count: i64,
}

/// A client of the engine behind `socket`.
pub fn connect(socket: &Path) -> Result<Docker> {
    let path = socket.to_str().context("socket path is not UTF-8")?;
    Docker::connect_with_unix(path, 120, &API).with_context(|| format!("connecting to {path}"))
}

/// Runs one API call and measures it in ms.
pub async fn timed<T>(call: impl std::future::Future<Output = Result<T>>) -> Result<(T, f64)> {
    let t = Instant::now();
    let value = call.await?;
    Ok((value, ms(t.elapsed())))
}

/// The body of a container like a bench role's: the app image, `3000:3000` published when `publish`, the memory
/// limit (swap twice that, as ballast sets it), restart unless-stopped, and `labels`.
pub fn app_body(image: &str, publish: bool, memory: i64, labels: &[(&str, &str)]) -> ContainerCreateBody {
    let port_bindings = publish.then(|| {
        HashMap::from([(
            "3000/tcp".to_string(),
            Some(vec![PortBinding { host_ip: None, host_port: Some("3000".to_string()) }]),
        )])
    });
    ContainerCreateBody {
        image: Some(image.to_string()),
        labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        exposed_ports: publish.then(|| vec!["3000/tcp".to_string()]),
        host_config: Some(HostConfig {
            memory: Some(memory),
            memory_swap: Some(memory * 2),
            port_bindings,
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub async fn create(docker: &Docker, name: &str, body: ContainerCreateBody) -> Result<String> {
    let options = CreateContainerOptions { name: Some(name.to_string()), ..Default::default() };
    let created =
        docker.create_container(Some(options), body).await.with_context(|| format!("creating {name}"))?;
    Ok(created.id)
}

pub async fn start(docker: &Docker, id: &str) -> Result<()> {
    docker.start_container(id, None).await.with_context(|| format!("starting {id}"))
}

/// `docker stop -t 10`.
pub async fn stop(docker: &Docker, id: &str) -> Result<()> {
    let options = StopContainerOptions { t: Some(10), signal: None };
    docker.stop_container(id, Some(options)).await.with_context(|| format!("stopping {id}"))
}

/// `docker rm -f`.
pub async fn remove(docker: &Docker, id: &str) -> Result<()> {
    let options = RemoveContainerOptions { force: true, ..Default::default() };
    docker.remove_container(id, Some(options)).await.with_context(|| format!("removing {id}"))
}

/// `docker update --memory M --memory-swap 2M`.
pub async fn update_memory(docker: &Docker, id: &str, memory: i64) -> Result<()> {
    let body =
        ContainerUpdateBody { memory: Some(memory), memory_swap: Some(memory * 2), ..Default::default() };
    docker.update_container(id, body).await.with_context(|| format!("updating {id}"))
}

/// The state of a container, `None` when it does not exist.
pub async fn state(docker: &Docker, id: &str) -> Result<Option<State>> {
    match docker.inspect_container(id, None::<InspectContainerOptions>).await {
        Ok(c) => {
            let s = c.state.unwrap_or_default();
            Ok(Some(State {
                id: c.id.unwrap_or_default(),
                running: s.running.unwrap_or(false),
                memory: c.host_config.and_then(|h| h.memory).unwrap_or(0),
                started_at: s.started_at.unwrap_or_default(),
                restart_count: c.restart_count.unwrap_or(0),
            }))
        }
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("inspecting {id}")),
    }
}

/// The container's address on its first network that has one.
pub async fn ip(docker: &Docker, id: &str) -> Result<Option<String>> {
    let c = docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .with_context(|| format!("inspecting {id}"))?;
    let networks = c.network_settings.and_then(|n| n.networks).unwrap_or_default();
    Ok(networks.into_values().filter_map(|n| n.ip_address).find(|ip| !ip.is_empty()))
}

/// Ids of the containers carrying `label` (`KEY` or `KEY=VALUE`); only running ones unless `all`.
pub async fn ids(docker: &Docker, label: &str, all: bool) -> Result<Vec<String>> {
    let filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
    let options = ListContainersOptions { all, filters: Some(filters), ..Default::default() };
    let list = docker.list_containers(Some(options)).await.context("listing containers")?;
    Ok(list.into_iter().filter_map(|c| c.id).collect())
}

/// Removes every container carrying `label`.
pub async fn remove_labelled(docker: &Docker, label: &str) -> Result<()> {
    for id in ids(docker, label, true).await? {
        remove(docker, &id).await?;
    }
    Ok(())
}

pub async fn pull(docker: &Docker, image: &str) -> Result<()> {
    let options = CreateImageOptions { from_image: Some(image.to_string()), ..Default::default() };
    docker
        .create_image(Some(options), None, None)
        .try_for_each(|_| async { Ok(()) })
        .await
        .with_context(|| format!("pulling {image}"))
}

/// Removes an image if it is there.
pub async fn remove_image(docker: &Docker, image: &str) -> Result<()> {
    let options = RemoveImageOptions { force: true, ..Default::default() };
    match docker.remove_image(image, Some(options), None).await {
        Ok(_) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing image {image}")),
    }
}

/// Whether the last update of a Swarm service has completed (a service never updated counts as completed).
pub async fn service_settled(docker: &Docker, name: &str) -> Result<bool> {
    let service =
        docker.inspect_service(name, None).await.with_context(|| format!("inspecting service {name}"))?;
    Ok(match service.update_status.and_then(|u| u.state) {
        None | Some(ServiceUpdateStatusStateEnum::EMPTY) | Some(ServiceUpdateStatusStateEnum::COMPLETED) => {
            true
        }
        Some(ServiceUpdateStatusStateEnum::UPDATING) => false,
        Some(other) => anyhow::bail!("the update of service {name} is {other}"),
    })
}

/// A live subscription to the `update` events of some containers: each arrives with dockerd's time.
pub struct Updates {
    rx: tokio::sync::mpsc::UnboundedReceiver<Update>,
    task: tokio::task::JoinHandle<()>,
}

/// One `update` event.
#[derive(Clone, Debug)]
pub struct Update {
    pub id: String,
    /// dockerd's clock, ns since the epoch.
    pub time_nano: i64,
}

impl Updates {
    /// Subscribes to the update events of containers carrying `label`. The subscription is live once an event
    /// made after this call has arrived (see [`Updates::next`]).
    pub fn subscribe(docker: &Docker, label: &str) -> Updates {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("event".to_string(), vec!["update".to_string()]),
            ("label".to_string(), vec![label.to_string()]),
        ]);
        let options =
            bollard::query_parameters::EventsOptions { since: None, until: None, filters: Some(filters) };
        let mut events = docker.events(Some(options));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            use futures::StreamExt;
            while let Some(Ok(event)) = events.next().await {
                let id = event.actor.and_then(|a| a.id).unwrap_or_default();
                let update = Update { id, time_nano: event.time_nano.unwrap_or(0) };
                if tx.send(update).is_err() {
                    break;
                }
            }
        });
        Updates { rx, task }
    }

    /// The next event, waiting up to `timeout`.
    pub async fn next(&mut self, timeout: std::time::Duration) -> Result<Update> {
        match tokio::time::timeout(timeout, self.rx.recv()).await {
            Ok(Some(update)) => Ok(update),
            Ok(None) => anyhow::bail!("the docker events stream ended"),
            Err(_) => anyhow::bail!("no container update event within {timeout:?}"),
        }
    }

    /// Forgets the events received so far.
    pub fn drain(&mut self) {
        while self.rx.try_recv().is_ok() {}
    }
}

impl Drop for Updates {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Subscribes to the update events of containers carrying `label` and makes sure the subscription is live:
/// updates `id` to the memory it has and waits for that event.
pub async fn live_updates(docker: &Docker, label: &str, id: &str) -> Result<Updates> {
    let mut updates = Updates::subscribe(docker, label);
    let memory = state(docker, id).await?.map(|s| s.memory).context("the container to watch is gone")?;
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    loop {
        update_memory(docker, id, memory).await?;
        if updates.next(std::time::Duration::from_millis(500)).await.is_ok() {
            updates.drain();
            return Ok(updates);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("the docker events subscription did not start");
        }
    }
}
