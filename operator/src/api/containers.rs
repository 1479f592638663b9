//! Handlers for a role's containers: `logs` (an NDJSON stream of `LogEntry`) and `exec` (`ExecRequest` →
//! `ExecResponse`). Both record an event naming the actor, the role, the host and, for exec, the command;
//! never the output.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use ballast_specs::wire::{self, Event, ExecRequest, ExecResponse, LogEntry};
use ballast_specs::{Problem, Role};
use futures::stream::{self, StreamExt};
use serde::Deserialize;

use super::body::JsonBody;
use super::error::ApiError;
use super::objects::find_role;
use super::{AppState, ContainerError, Containers};
use crate::hosts::{HostError, LogLine, LogStream};
use crate::store::{Actor, SpecStore};

/// The media type of the logs stream: one JSON object a line.
pub const NDJSON: &str = "application/x-ndjson";

/// `?host=H&follow=true&tail=N`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// Only this host's container; default: every host of the role.
    pub host: Option<String>,
    #[serde(default)]
    pub follow: bool,
    /// The last N lines of each container; default: all.
    pub tail: Option<u64>,
}

/// `GET /api/v1/roles/{name}/logs`: the log lines of the role's container on each of its hosts (or on
/// `host`), merged as they come. A host that fails while others answer gets an `error` entry; when every
/// host fails, the answer is the first host's error.
pub async fn logs(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
    let containers = containers(&state)?;
    let role = find_role(state.store.as_ref(), &name).await?;
    let hosts = match &query.host {
        Some(host) => vec![role_host(&role, host)?],
        None => role.spec.hosts.clone(),
    };
    if hosts.is_empty() {
        return Err(ApiError::Conflict(format!("role {name:?} has no hosts")));
    }
    let opened = futures::future::join_all(
        hosts.iter().map(|host| containers.logs(&name, host, query.follow, query.tail)),
    )
    .await;
    let mut streams = Vec::new();
    let mut failures = Vec::new();
    for (host, result) in hosts.iter().zip(opened) {
        match result {
            Ok(lines) => {
                let host = host.clone();
                streams.push(lines.map(move |line| entry(&host, line)).boxed());
            }
            Err(err) => failures.push((host.clone(), err)),
        }
    }
    if streams.is_empty() {
        let (_, first) = failures.swap_remove(0);
        return Err(first.into());
    }
    let served: Vec<&String> = hosts.iter().filter(|h| !failures.iter().any(|(f, _)| f == *h)).collect();
    let mut what = Vec::new();
    if query.follow {
        what.push("follow".to_string());
    }
    if let Some(n) = query.tail {
        what.push(format!("tail {n}"));
    }
    let what = if what.is_empty() { String::new() } else { format!(" ({})", what.join(", ")) };
    let message = format!("{} read the logs of {name} on {}{what}", actor.0, join(&served));
    let host = (served.len() == 1).then(|| served[0].clone());
    record(state.store.as_ref(), &actor, &name, host, "Logs", message).await;

    let failed = failures.into_iter().map(|(host, err)| LogEntry {
        host,
        stream: None,
        time: None,
        line: String::new(),
        error: Some(ApiError::from(err).to_string()),
    });
    let body = stream::iter(failed)
        .chain(stream::select_all(streams))
        .map(|entry| Ok::<Bytes, Infallible>(ndjson_line(&entry)));
    Ok(([(header::CONTENT_TYPE, NDJSON)], Body::from_stream(body)).into_response())
}

/// `POST /api/v1/roles/{name}/exec`: runs the command in the role's running container on `host` (default:
/// the role's first host) and answers with its output and exit code.
pub async fn exec(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    JsonBody(request): JsonBody<ExecRequest>,
) -> Result<Json<ExecResponse>, ApiError> {
    if request.command.first().is_none_or(|program| program.is_empty()) {
        return Err(ApiError::invalid(vec![Problem::new("command", "must name the program to run")]));
    }
    let containers = containers(&state)?;
    let role = find_role(state.store.as_ref(), &name).await?;
    let host = match &request.host {
        Some(host) => role_host(&role, host)?,
        None => role
            .spec
            .hosts
            .first()
            .cloned()
            .ok_or_else(|| ApiError::Conflict(format!("role {name:?} has no hosts")))?,
    };
    let result = containers.exec(&name, &host, &request.command).await;
    let outcome = match &result {
        Ok(output) => format!("exit code {}", output.exit_code),
        Err(err) => format!("failed: {err}"),
    };
    let message =
        format!("{} ran `{}` in {name} on {host}: {outcome}", actor.0, shell_words(&request.command));
    record(state.store.as_ref(), &actor, &name, Some(host.clone()), "Exec", message).await;
    let output = result?;
    Ok(Json(ExecResponse {
        host,
        exit_code: output.exit_code,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        truncated: output.truncated,
    }))
}

impl From<ContainerError> for ApiError {
    fn from(err: ContainerError) -> ApiError {
        match err {
            ContainerError::NoContainer(message) => ApiError::Conflict(message),
            ContainerError::UnknownHost(host) => ApiError::NotFound(format!("host {host:?} not found")),
            ContainerError::Host { host, error } => match error {
                e if e.is_unreachable() => {
                    ApiError::HostUnavailable(format!("host {host} is unavailable: {e}"))
                }
                e @ HostError::Timeout(_) => ApiError::HostUnavailable(format!("host {host}: {e}")),
                HostError::NotFound(message) => {
                    ApiError::Conflict(format!("host {host}: the container went away: {message}"))
                }
                HostError::Docker { status: 409, message } => {
                    ApiError::Conflict(format!("host {host}: {message}"))
                }
                e => ApiError::HostFailed(format!("host {host}: {e}")),
            },
            ContainerError::Store(err) => err.into(),
        }
    }
}

fn containers(state: &AppState) -> Result<&dyn Containers, ApiError> {
    state.hosts.as_deref().ok_or_else(|| {
        ApiError::NotImplemented("this ballastd does not reach the hosts' containers".to_string())
    })
}

/// `host` when it is one of the role's hosts.
fn role_host(role: &Role, host: &str) -> Result<String, ApiError> {
    if role.spec.hosts.iter().any(|h| h == host) {
        return Ok(host.to_string());
    }
    Err(ApiError::NotFound(format!(
        "role {:?} does not run on host {host:?} (its hosts: {})",
        role.metadata.name,
        role.spec.hosts.join(", ")
    )))
}

fn entry(host: &str, line: Result<LogLine, HostError>) -> LogEntry {
    match line {
        Ok(line) => LogEntry {
            host: host.to_string(),
            stream: Some(match line.stream {
                LogStream::Stdout => wire::LogStream::Stdout,
                LogStream::Stderr => wire::LogStream::Stderr,
            }),
            time: line.time,
            line: line.text,
            error: None,
        },
        Err(err) => LogEntry {
            host: host.to_string(),
            stream: None,
            time: None,
            line: String::new(),
            error: Some(format!("host {host}: the log stream broke: {err}")),
        },
    }
}

fn ndjson_line(entry: &LogEntry) -> Bytes {
    let mut line = serde_json::to_vec(entry).unwrap_or_else(|err| {
        // A struct of strings always serialises; keep the stream going regardless.
        tracing::error!(%err, "cannot encode a log entry");
        b"{}".to_vec()
    });
    line.push(b'\n');
    Bytes::from(line)
}

/// Records a user's access to a role's containers; a lost event is logged, not an error.
async fn record(
    store: &dyn SpecStore,
    actor: &Actor,
    role: &str,
    host: Option<String>,
    reason: &str,
    message: String,
) {
    let event = Event {
        time: chrono::Utc::now(),
        role: Some(role.to_string()),
        host,
        reason: reason.to_string(),
        message,
        actor: Some(actor.0.clone()),
    };
    tracing::info!(role, reason, "{}", event.message);
    if let Err(err) = store.add_event(&event).await {
        tracing::warn!(role, reason, %err, "cannot record event");
    }
}

fn join(names: &[&String]) -> String {
    names.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

/// A command as a shell would need it typed: words with anything unusual single-quoted.
fn shell_words(command: &[String]) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c);
    command
        .iter()
        .map(|word| {
            if !word.is_empty() && word.chars().all(plain) {
                word.clone()
            } else {
                format!("'{}'", word.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests;
