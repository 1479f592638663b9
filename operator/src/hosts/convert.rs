//! Conversions at the Docker edge: bollard's models and errors to ballast's types and back, and the small
//! text formats of the calls (image references, event times, HTTP status lines, `ip:port`).
//!
//! Pure: no I/O. bollard types stop here and in `docker.rs`.

use std::collections::BTreeMap;

use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummaryStateEnum,
    EventMessage, HostConfig, HostConfigLogConfig, PortMap, RestartPolicy, RestartPolicyNameEnum,
};
use bytes::Bytes;

use super::{
    Container, ContainerConfig, ContainerState, ExecOutput, HostError, HostEvent, LogLine, LogStream,
    PortBinding, EXEC_OUTPUT_LIMIT,
};

/// The label every ballast container carries; only containers with it are listed or reported.
pub(super) const ROLE_LABEL: &str = "ballast.role";
/// The container actions that may need a reconcile.
pub(super) const ACTIONS: [&str; 8] =
    ["create", "start", "die", "stop", "oom", "update", "rename", "destroy"];
/// Event attributes that Docker adds next to the container's labels.
const EVENT_ATTRIBUTES: [&str; 6] = ["image", "name", "exitCode", "signal", "oldName", "execID"];

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

/// A failed pull: the registry's or Docker's message; a failure to reach the host stays what it is.
pub(super) fn pull_error(image: &str, error: DockerError) -> HostError {
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

/// The create request of a container: limits, ports, logging, and the restart policy `unless-stopped`.
pub(super) fn create_body(config: &ContainerConfig) -> ContainerCreateBody {
    let port_key = |p: &PortBinding| format!("{}/{}", p.container_port, p.protocol);
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
        network_mode: config.network.clone(),
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

/// An inspected container; its IP is the first non-empty one of its networks, sorted by name.
pub(super) fn container(response: ContainerInspectResponse) -> Container {
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
        network: host_config.network_mode.filter(|n| !n.is_empty()),
    }
}

/// The state in Docker's list answer, as the inspect would report it (`None`: not said).
pub(super) fn summary_state(state: ContainerSummaryStateEnum) -> Option<ContainerState> {
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

/// The event of a ballast-labelled container, with its labels (without Docker's own attributes); `None` for
/// other events.
pub(super) fn host_event(message: EventMessage) -> Option<HostEvent> {
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

/// The lines of one log frame: `TIMESTAMP TEXT\n` (a frame is normally one line; a TTY's may hold several).
pub(super) fn log_lines(output: LogOutput) -> Vec<LogLine> {
    let Some((stream, bytes)) = log_frame(output) else {
        return Vec::new();
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

/// The stream and bytes of one frame of a log or of an exec's output (a TTY's counts as stdout); `None` for
/// stdin, which is never attached.
pub(super) fn log_frame(output: LogOutput) -> Option<(LogStream, Bytes)> {
    match output {
        LogOutput::StdErr { message } => Some((LogStream::Stderr, message)),
        LogOutput::StdOut { message } | LogOutput::Console { message } => Some((LogStream::Stdout, message)),
        LogOutput::StdIn { .. } => None,
    }
}

/// RFC 3339 (Docker's `SystemTime`) → `seconds.nanoseconds`, the form the events `since` parameter takes.
pub(super) fn unix_timestamp(rfc3339: &str) -> Option<String> {
    let time = chrono::DateTime::parse_from_rfc3339(rfc3339).ok()?;
    Some(format!("{}.{:09}", time.timestamp(), time.timestamp_subsec_nanos()))
}

/// `name:tag` or `name@digest`; a `:` before the last `/` is a registry port.
pub(super) fn has_tag_or_digest(image: &str) -> bool {
    let last = image.rsplit('/').next().unwrap_or(image);
    image.contains('@') || last.contains(':')
}

/// The status code of an HTTP/1.x status line (`None`: not one, or not yet complete).
pub(super) fn parse_status_line(head: &[u8]) -> Option<u16> {
    let line_end = head.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&head[..line_end]).ok()?;
    let mut parts = line.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// `ip:port`, with brackets around an IPv6 address.
pub(super) fn authority(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

impl ExecOutput {
    /// Appends output while under [`EXEC_OUTPUT_LIMIT`] (both streams together); marks the rest as dropped.
    pub(super) fn keep(&mut self, stream: LogStream, bytes: &[u8]) {
        let room = EXEC_OUTPUT_LIMIT.saturating_sub(self.stdout.len() + self.stderr.len());
        let kept = &bytes[..bytes.len().min(room)];
        self.truncated |= kept.len() < bytes.len();
        match stream {
            LogStream::Stdout => self.stdout.extend_from_slice(kept),
            LogStream::Stderr => self.stderr.extend_from_slice(kept),
        }
    }
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
    fn authorities_bracket_ipv6() {
        assert_eq!(authority("172.17.0.2", 80), "172.17.0.2:80");
        assert_eq!(authority("fd00::2", 8080), "[fd00::2]:8080");
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
            ports: vec![PortBinding {
                host_ip: None,
                host_port: 8080,
                container_port: 3000,
                protocol: "tcp".into(),
            }],
            logging: Some(("json-file".into(), BTreeMap::from([("max-size".into(), "10m".into())]))),
            network: Some("ballast".into()),
        };
        let body = serde_json::to_value(create_body(&config)).unwrap();
        let host = &body["HostConfig"];
        assert_eq!(host["NanoCpus"], 1_500_000_000i64);
        assert_eq!(host["Memory"], 512i64 << 20);
        assert_eq!(host["MemorySwap"], 1024i64 << 20);
        assert_eq!(host["PortBindings"]["3000/tcp"][0]["HostPort"], "8080");
        assert_eq!(host["LogConfig"]["Type"], "json-file");
        assert_eq!(host["RestartPolicy"]["Name"], "unless-stopped");
        assert_eq!(host["NetworkMode"], "ballast");
        assert_eq!(body["ExposedPorts"], serde_json::json!({"3000/tcp": {}}));
        assert_eq!(body["Env"], serde_json::json!(["A=1"]));
        assert!(body.get("Cmd").is_none());
    }
}
