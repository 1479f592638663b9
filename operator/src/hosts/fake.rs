//! An in-memory Docker host for fast tests of the reconciler: containers, images, events and health, with
//! switches to make it unreachable, fail pulls or serve unhealthy images, and counters of every call.
//! Containers log a few lines when started ([`FakeHost::print`] adds more); exec understands `echo` and `false`.
//! A running container on the host's network answers HTTP on the host's loopback as a document store, enough to
//! stand in for the proxy's admin API: `POST /load` keeps the body, `GET /config/` returns it, other `GET`s `[]`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use ballast_specs::HostSpec;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

use super::{
    Connector, Container, ContainerConfig, ContainerState, DockerHost, ExecOutput, HostError, HostEvent,
    HttpRequest, HttpResponse, LogLine, LogStream, RegistryAuth, HOST_NETWORK,
};
use crate::labels;

/// Events a fake host keeps for a slow reader.
const EVENT_BUFFER: usize = 64;

/// One fake host. Cheap to clone (shared state).
#[derive(Clone)]
pub struct FakeHost {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    state: Mutex<State>,
    events: broadcast::Sender<HostEvent>,
    /// Lines printed by containers (container id, line), for followers; made for the first follower.
    printed: OnceLock<broadcast::Sender<(String, LogLine)>>,
    /// Added to every call, to model a real host's round trip.
    latency: Duration,
}

#[derive(Default)]
struct State {
    containers: BTreeMap<String, FakeContainer>,
    /// Images present on the host.
    images: BTreeSet<String>,
    /// Images a pull can fetch.
    registry: BTreeSet<String>,
    /// Images whose containers never answer their health check.
    unhealthy: BTreeSet<String>,
    unreachable: bool,
    next_id: u64,
    calls: HashMap<&'static str, u64>,
    /// Every command run with `exec`: (container id, command).
    execs: Vec<(String, Vec<String>)>,
    /// Networks made with `ensure_network`.
    networks: BTreeSet<String>,
}

#[derive(Clone, Debug)]
struct FakeContainer {
    container: Container,
    config: Option<ContainerConfig>,
    /// How many times it was started.
    starts: u64,
    log: Vec<LogLine>,
    /// The document a container on the host's network was given with `POST /load`.
    loaded: Option<Vec<u8>>,
    /// Files written with `put_files`, by path.
    files: BTreeMap<String, Vec<u8>>,
}

impl FakeHost {
    pub fn new(name: &str) -> FakeHost {
        FakeHost::with_latency(name, Duration::ZERO)
    }

    pub fn with_latency(name: &str, latency: Duration) -> FakeHost {
        // A broadcast channel allocates all its slots at once (~100 bytes each): kept small, and the one for log
        // followers made only for the first of them, so that a simulation of thousands of hosts measures the
        // operator's memory rather than the fakes'. The reconciler reads the stream at once; a lagging reader would
        // only miss triggers that the resync makes up for.
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        FakeHost {
            inner: Arc::new(Inner {
                name: name.to_string(),
                state: Mutex::default(),
                events,
                printed: OnceLock::new(),
                latency,
            }),
        }
    }

    /// Makes `image` pullable from the fake registry.
    pub fn publish_image(&self, image: &str) {
        self.state().registry.insert(image.to_string());
    }

    /// Makes containers of `image` fail their health check.
    pub fn set_unhealthy(&self, image: &str) {
        self.state().unhealthy.insert(image.to_string());
    }

    pub fn set_unreachable(&self, unreachable: bool) {
        self.state().unreachable = unreachable;
    }

    /// All containers, ballast's or not, sorted by id.
    pub fn containers(&self) -> Vec<Container> {
        self.state().containers.values().map(|c| c.container.clone()).collect()
    }

    /// The config a container was created with (`None` for ones added with [`FakeHost::add_unlabelled`]).
    pub fn config_of(&self, id: &str) -> Option<ContainerConfig> {
        self.state().containers.get(id).and_then(|c| c.config.clone())
    }

    /// How many times a container was started.
    pub fn starts_of(&self, id: &str) -> u64 {
        self.state().containers.get(id).map(|c| c.starts).unwrap_or(0)
    }

    /// Networks made with `ensure_network`.
    pub fn networks(&self) -> Vec<String> {
        self.state().networks.iter().cloned().collect()
    }

    /// A file written into a container with `put_files`.
    pub fn file(&self, id: &str, path: &str) -> Option<Vec<u8>> {
        self.state().find(id).and_then(|c| c.files.get(path).cloned())
    }

    /// The document the running container on the host's network was last given (`POST /load`).
    pub fn loaded(&self) -> Option<Vec<u8>> {
        self.state().host_network_container().and_then(|c| c.loaded.clone())
    }

    /// How many calls of `method` (`list`, `create`, ...) the host has served.
    pub fn calls(&self, method: &str) -> u64 {
        self.state().calls.get(method).copied().unwrap_or(0)
    }

    pub fn total_calls(&self) -> u64 {
        self.state().calls.values().sum()
    }

    /// Every command run with `exec`, as (container id, command).
    pub fn execs(&self) -> Vec<(String, Vec<String>)> {
        self.state().execs.clone()
    }

    /// Makes a container print a line (followers of its log see it).
    pub fn print(&self, id: &str, stream: LogStream, text: &str) {
        let mut state = self.state();
        if let Some(c) = state.find_mut(id) {
            let id = c.container.id.clone();
            c.print(stream, text);
            let line = c.log.last().cloned();
            // Sent under the lock, so a follower subscribing under it misses nothing and sees nothing twice.
            if let (Some(line), Some(printed)) = (line, self.inner.printed.get()) {
                let _ = printed.send((id, line));
            }
        }
    }

    /// Adds a running container without ballast's labels (someone else's).
    pub fn add_unlabelled(&self, name: &str, image: &str) -> String {
        let mut state = self.state();
        let id = state.new_id();
        let container = Container {
            id: id.clone(),
            name: name.to_string(),
            image: image.to_string(),
            labels: BTreeMap::new(),
            state: ContainerState::Running,
            nano_cpus: 0,
            memory: 0,
            ip: Some(format!("172.17.0.{}", state.next_id)),
            network: None,
        };
        state.containers.insert(
            id.clone(),
            FakeContainer {
                container,
                config: None,
                starts: 1,
                log: Vec::new(),
                loaded: None,
                files: BTreeMap::new(),
            },
        );
        id
    }

    /// Out-of-band `docker rm -f`.
    pub fn remove_out_of_band(&self, id: &str) {
        let removed = self.state().containers.remove(id);
        if let Some(c) = removed {
            self.emit(&c.container, "destroy");
        }
    }

    /// Out-of-band `docker stop` (or a crash).
    pub fn stop_out_of_band(&self, id: &str) {
        let stopped = {
            let mut state = self.state();
            state.containers.get_mut(id).map(|c| {
                c.container.state = ContainerState::Exited;
                c.container.clone()
            })
        };
        if let Some(c) = stopped {
            self.emit(&c, "die");
        }
    }

    /// Out-of-band `docker update --cpus/--memory`.
    pub fn update_out_of_band(&self, id: &str, nano_cpus: i64, memory: i64) {
        let updated = {
            let mut state = self.state();
            state.containers.get_mut(id).map(|c| {
                c.container.nano_cpus = nano_cpus;
                c.container.memory = memory;
                c.container.clone()
            })
        };
        if let Some(c) = updated {
            self.emit(&c, "update");
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn emit(&self, c: &Container, action: &str) {
        if c.labels.contains_key(labels::ROLE) {
            let _ = self.inner.events.send(HostEvent {
                container_id: c.id.clone(),
                action: action.to_string(),
                labels: c.labels.clone(),
            });
        }
    }

    /// Counts the call, waits the latency, and fails when unreachable.
    async fn enter(&self, method: &'static str) -> Result<(), HostError> {
        if !self.inner.latency.is_zero() {
            tokio::time::sleep(self.inner.latency).await;
        }
        let mut state = self.state();
        *state.calls.entry(method).or_default() += 1;
        if state.unreachable {
            return Err(HostError::Unreachable(format!("{}: connection refused", self.inner.name)));
        }
        Ok(())
    }
}

impl FakeContainer {
    fn print(&mut self, stream: LogStream, text: &str) {
        self.log.push(LogLine { stream, text: text.to_string(), time: Some(chrono::Utc::now()) });
    }
}

impl State {
    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("{:012x}{:052x}", self.next_id, 0)
    }

    fn find(&self, id: &str) -> Option<&FakeContainer> {
        self.containers.get(id).or_else(|| self.containers.values().find(|c| c.container.name == id))
    }

    fn host_network_container(&self) -> Option<&FakeContainer> {
        self.containers.values().find(|c| {
            c.container.state == ContainerState::Running
                && c.config.as_ref().and_then(|config| config.network.as_deref()) == Some(HOST_NETWORK)
        })
    }

    fn find_mut(&mut self, id: &str) -> Option<&mut FakeContainer> {
        let key = self.find(id).map(|c| c.container.id.clone())?;
        self.containers.get_mut(&key)
    }
}

#[async_trait]
impl DockerHost for FakeHost {
    async fn list(&self) -> Result<Vec<Container>, HostError> {
        self.enter("list").await?;
        let state = self.state();
        Ok(state
            .containers
            .values()
            .filter(|c| c.container.labels.contains_key(labels::ROLE))
            .map(|c| c.container.clone())
            .collect())
    }

    async fn inspect(&self, id: &str) -> Result<Option<Container>, HostError> {
        self.enter("inspect").await?;
        Ok(self.state().find(id).map(|c| c.container.clone()))
    }

    async fn image_present(&self, image: &str) -> Result<bool, HostError> {
        self.enter("image_present").await?;
        Ok(self.state().images.contains(image))
    }

    async fn pull(&self, image: &str, _auth: Option<&RegistryAuth>) -> Result<(), HostError> {
        self.enter("pull").await?;
        let mut state = self.state();
        if !state.registry.contains(image) {
            return Err(HostError::Pull {
                image: image.to_string(),
                message: format!("manifest for {image} not found: manifest unknown"),
            });
        }
        state.images.insert(image.to_string());
        Ok(())
    }

    async fn create(&self, config: &ContainerConfig) -> Result<String, HostError> {
        self.enter("create").await?;
        let mut state = self.state();
        if !state.images.contains(&config.image) {
            return Err(HostError::NotFound(format!("no such image: {}", config.image)));
        }
        if state.containers.values().any(|c| c.container.name == config.name) {
            return Err(HostError::Docker {
                status: 409,
                message: format!("the container name {:?} is already in use", config.name),
            });
        }
        let id = state.new_id();
        let container = Container {
            id: id.clone(),
            name: config.name.clone(),
            image: config.image.clone(),
            labels: config.labels.clone(),
            state: ContainerState::Created,
            nano_cpus: config.nano_cpus,
            memory: config.memory,
            ip: None,
            network: config.network.clone(),
        };
        state.containers.insert(
            id.clone(),
            FakeContainer {
                container,
                config: Some(config.clone()),
                starts: 0,
                log: Vec::new(),
                loaded: None,
                files: BTreeMap::new(),
            },
        );
        Ok(id)
    }

    async fn start(&self, id: &str) -> Result<(), HostError> {
        self.enter("start").await?;
        let started = {
            let mut state = self.state();
            let n = state.next_id;
            let c = state.find_mut(id).ok_or_else(|| HostError::NotFound(id.to_string()))?;
            if c.container.state == ContainerState::Running {
                return Ok(());
            }
            c.container.state = ContainerState::Running;
            c.container.ip = Some(format!("172.17.{}.{}", n / 250, n % 250 + 2));
            c.starts += 1;
            let (name, image) = (c.container.name.clone(), c.container.image.clone());
            c.print(LogStream::Stdout, &format!("{name}: starting {image}"));
            c.print(LogStream::Stderr, &format!("{name}: no config file, using defaults"));
            c.print(LogStream::Stdout, &format!("{name}: ready"));
            c.container.clone()
        };
        self.emit(&started, "start");
        Ok(())
    }

    async fn stop(&self, id: &str, _grace: Duration) -> Result<(), HostError> {
        self.enter("stop").await?;
        let stopped = {
            let mut state = self.state();
            let c = state.find_mut(id).ok_or_else(|| HostError::NotFound(id.to_string()))?;
            if c.container.state != ContainerState::Running {
                return Ok(());
            }
            c.container.state = ContainerState::Exited;
            c.container.ip = None;
            c.container.clone()
        };
        self.emit(&stopped, "die");
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<(), HostError> {
        self.enter("remove").await?;
        let removed = {
            let mut state = self.state();
            let key = state.find(id).map(|c| c.container.id.clone());
            key.and_then(|k| state.containers.remove(&k))
        };
        if let Some(c) = removed {
            self.emit(&c.container, "destroy");
        }
        Ok(())
    }

    async fn update_resources(&self, id: &str, nano_cpus: i64, memory: i64) -> Result<(), HostError> {
        self.enter("update_resources").await?;
        let updated = {
            let mut state = self.state();
            let c = state.find_mut(id).ok_or_else(|| HostError::NotFound(id.to_string()))?;
            if (nano_cpus == 0 && c.container.nano_cpus != 0) || (memory == 0 && c.container.memory != 0) {
                // Like Docker: 0 means "unchanged" to its update API, so a limit cannot be lifted in place.
                return Err(HostError::Docker {
                    status: 409,
                    message: "cannot lift a limit in place".into(),
                });
            }
            c.container.nano_cpus = nano_cpus;
            c.container.memory = memory;
            c.container.clone()
        };
        self.emit(&updated, "update");
        Ok(())
    }

    async fn http_get(&self, ip: &str, _port: u16, path: &str, _timeout: Duration) -> Result<u16, HostError> {
        self.enter("http_get").await?;
        let state = self.state();
        let Some(c) = state
            .containers
            .values()
            .find(|c| c.container.state == ContainerState::Running && c.container.ip.as_deref() == Some(ip))
        else {
            return Err(HostError::Http(format!("connect to {ip}: connection refused")));
        };
        if state.unhealthy.contains(&c.container.image) || path != "/up" {
            return Ok(404);
        }
        Ok(200)
    }

    async fn http(
        &self,
        ip: &str,
        port: u16,
        request: &HttpRequest,
        _timeout: Duration,
    ) -> Result<HttpResponse, HostError> {
        self.enter("http").await?;
        let mut state = self.state();
        let refused = || HostError::Http(format!("connect to {ip}:{port}: connection refused"));
        if ip != "127.0.0.1" {
            return Err(refused());
        }
        let id = state.host_network_container().map(|c| c.container.id.clone()).ok_or_else(refused)?;
        let c = state.containers.get_mut(&id).ok_or_else(refused)?;
        let ok = |body: &[u8]| HttpResponse { status: 200, body: body.to_vec() };
        Ok(match (request.method, request.path.as_str()) {
            ("POST", "/load") => {
                c.loaded = request.json.clone();
                ok(b"")
            }
            ("GET", "/config/") => ok(c.loaded.as_deref().unwrap_or(b"null")),
            ("GET", _) => ok(b"[]"),
            _ => HttpResponse { status: 405, body: b"method not allowed".to_vec() },
        })
    }

    async fn ensure_network(&self, name: &str, _labels: &BTreeMap<String, String>) -> Result<(), HostError> {
        self.enter("ensure_network").await?;
        self.state().networks.insert(name.to_string());
        Ok(())
    }

    async fn put_files(&self, id: &str, files: &[(&str, &[u8])]) -> Result<(), HostError> {
        self.enter("put_files").await?;
        let mut state = self.state();
        let c = state.find_mut(id).ok_or_else(|| HostError::NotFound(format!("no such container: {id}")))?;
        for (path, content) in files {
            c.files.insert(path.to_string(), content.to_vec());
        }
        // A file where the proxy resumes its config from is what it serves once started.
        if let Some(config) = files.iter().find(|(path, _)| path.ends_with("/caddy/autosave.json")) {
            c.loaded = Some(config.1.to_vec());
        }
        Ok(())
    }

    async fn files(&self, id: &str, dir: &str) -> Result<BTreeMap<String, Vec<u8>>, HostError> {
        self.enter("files").await?;
        let state = self.state();
        let c = state.find(id).ok_or_else(|| HostError::NotFound(format!("no such container: {id}")))?;
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        Ok(c.files
            .iter()
            .filter_map(|(path, content)| {
                let name = path.strip_prefix(&prefix)?;
                (!name.contains('/')).then(|| (name.to_string(), content.clone()))
            })
            .collect())
    }

    async fn events(&self) -> Result<BoxStream<'static, HostEvent>, HostError> {
        self.enter("events").await?;
        let rx = self.inner.events.subscribe();
        Ok(BroadcastStream::new(rx).filter_map(|e| async move { e.ok() }).boxed())
    }

    /// The stored lines; with `follow`, then every line printed later, until the stream is dropped.
    async fn logs(
        &self,
        id: &str,
        follow: bool,
        tail: Option<u64>,
    ) -> Result<BoxStream<'static, Result<LogLine, HostError>>, HostError> {
        self.enter("logs").await?;
        let state = self.state();
        let c = state.find(id).ok_or_else(|| HostError::NotFound(format!("no such container: {id}")))?;
        let skip = tail.map_or(0, |n| c.log.len().saturating_sub(usize::try_from(n).unwrap_or(usize::MAX)));
        let stored: Vec<Result<LogLine, HostError>> = c.log[skip..].iter().cloned().map(Ok).collect();
        let stored = futures::stream::iter(stored);
        if !follow {
            return Ok(stored.boxed());
        }
        let id = c.container.id.clone();
        // Subscribed under the state lock, as lines are sent (see `print`).
        let printed = self.inner.printed.get_or_init(|| broadcast::channel(EVENT_BUFFER).0);
        let later = BroadcastStream::new(printed.subscribe()).filter_map(move |printed| {
            let line = match printed {
                Ok((from, line)) if from == id => Some(Ok(line)),
                _ => None,
            };
            async move { line }
        });
        Ok(stored.chain(later).boxed())
    }

    /// `echo ARGS` prints ARGS; `false` exits 1; anything else is "not found" (127).
    async fn exec(&self, id: &str, cmd: &[String]) -> Result<ExecOutput, HostError> {
        self.enter("exec").await?;
        let mut state = self.state();
        let c = state.find(id).ok_or_else(|| HostError::NotFound(format!("no such container: {id}")))?;
        if c.container.state != ContainerState::Running {
            return Err(HostError::Docker { status: 409, message: format!("container {id} is not running") });
        }
        let id = c.container.id.clone();
        state.execs.push((id, cmd.to_vec()));
        let output = match cmd.split_first() {
            Some((program, args)) if program == "echo" => {
                ExecOutput { stdout: format!("{}\n", args.join(" ")).into_bytes(), ..ExecOutput::default() }
            }
            Some((program, _)) if program == "false" => ExecOutput { exit_code: 1, ..ExecOutput::default() },
            Some((program, _)) => ExecOutput {
                stderr: format!("fake: {program}: not found\n").into_bytes(),
                exit_code: 127,
                ..ExecOutput::default()
            },
            None => {
                return Err(HostError::Docker { status: 400, message: "no command specified".to_string() })
            }
        };
        Ok(output)
    }
}

/// Hands out fake hosts by name, creating them on first use.
#[derive(Clone, Default)]
pub struct FakeConnector {
    hosts: Arc<Mutex<BTreeMap<String, FakeHost>>>,
    latency: Duration,
}

impl FakeConnector {
    pub fn with_latency(latency: Duration) -> FakeConnector {
        FakeConnector { hosts: Arc::default(), latency }
    }

    /// The fake host of that name (created if new).
    pub fn host(&self, name: &str) -> FakeHost {
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        hosts.entry(name.to_string()).or_insert_with(|| FakeHost::with_latency(name, self.latency)).clone()
    }
}

impl Connector for FakeConnector {
    fn connect(&self, name: &str, _spec: &HostSpec) -> Arc<dyn DockerHost> {
        Arc::new(self.host(name))
    }
}
