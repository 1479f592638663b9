//! Wire types of the `/api/v1/` JSON API, shared by `ballastd` and the `ballast` CLI.
//!
//! These are a persisted format too (`-o json` prints them): add fields, never rename or remove them.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::{Kind, Object, Role, RoleControl, RoleSpec};
use crate::problem::Problem;

/// `GET` of a collection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct List<T> {
    pub items: Vec<T>,
}

/// `POST /api/v1/apply`: all objects or none, in one etcd transaction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplyRequest {
    pub objects: Vec<Object>,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplyResponse {
    pub results: Vec<ApplyResult>,
}

/// `POST /api/v1/set-image`: the image of every role whose labels match `selector` (`app=datalake`), in one
/// transaction; answered with an `ApplyResponse` (one result a matching role).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetImageRequest {
    pub selector: String,
    pub image: String,
}

/// What an apply did (or would do, on a dry run) to one object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplyResult {
    pub kind: Kind,
    pub name: String,
    pub outcome: ApplyOutcome,
    pub generation: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ApplyOutcome {
    Created,
    Configured,
    Unchanged,
}

/// A role as `GET /api/v1/roles` returns it: the stored object plus its control switches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleView {
    #[serde(flatten)]
    pub role: Role,
    #[serde(default)]
    pub control: RoleControl,
}

/// One numbered revision of a role's spec (`ballast rollout history`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleRevision {
    /// The role's `metadata.generation` when this spec was stored.
    pub revision: u64,
    pub spec: RoleSpec,
    pub created: DateTime<Utc>,
    /// Who stored it (the token's name; `anonymous` without tokens).
    #[serde(default)]
    pub actor: String,
}

/// `POST /api/v1/roles/{name}/undo`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UndoRequest {
    /// Absent: the revision before the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_revision: Option<u64>,
}

/// The observed state of one (role, host) unit, written only by the operator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnitStatus {
    pub role: String,
    pub host: String,
    /// The role's desired generation.
    pub generation: u64,
    /// The last generation this unit converged at (0: never). Equal to `generation` once converged.
    pub observed_generation: u64,
    pub state: UnitState,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub container_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Docker-style memory quantity (`512m`, `1.75g`) of the running container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default)]
    pub message: String,
    /// When `state` last changed.
    pub since: DateTime<Utc>,
    /// Set while a rollout is stopped: which container hash failed, at which retry count. The unit does not try
    /// that hash again until the spec changes (new hash) or `rollout retry` bumps the role's retry counter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<FailedRollout>,
    /// A proxied unit: how the host's proxy serves it, as last read from the proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<UnitProxy>,
}

/// How the host's proxy serves a proxied unit (see [`UnitStatus::proxy`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnitProxy {
    /// The host port the proxy serves the role on.
    pub port: u16,
    /// The container the proxy routes the role's requests to (12 characters, as `containerId`); empty when it
    /// routes to none (it answers 503).
    #[serde(default)]
    pub routes_to: String,
}

/// The rollout that failed (see [`UnitStatus::failed`]). The hash is a digest: it reveals no value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailedRollout {
    pub hash: String,
    pub retry: u64,
    /// The role generation the rollout failed at: any later spec change tries again.
    #[serde(default)]
    pub generation: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum UnitState {
    Converged,
    Progressing,
    /// Drift being corrected, or retrying after an error.
    Degraded,
    /// Rollout stopped until the spec changes or a retry is asked for.
    Failed,
    Unreachable,
    Paused,
}

/// Something the operator or a user did, kept for a while (`ballast events`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// A stable, machine-readable word: `Created`, `Recreated`, `ResourcesRestored`, `PullFailed`, ...
    pub reason: String,
    pub message: String,
    /// The token name of the user who caused it; absent for the operator's own actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

/// What the operator would do for one unit right now (`ballast plan`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnitPlan {
    pub role: String,
    pub host: String,
    /// Human-readable actions, in order; empty when nothing is to be done.
    pub actions: Vec<String>,
    #[serde(default)]
    pub message: String,
}

/// One line of `GET /api/v1/roles/{name}/logs`, sent as NDJSON (one JSON object a line). An entry with
/// `error` says that host's log stream could not be opened or broke; no more lines come from that host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<LogStream>,
    /// When Docker received the line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<DateTime<Utc>>,
    /// The line without its newline (invalid UTF-8 replaced).
    #[serde(default)]
    pub line: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// `POST /api/v1/roles/{name}/exec`: a command (not run through a shell) for the role's container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecRequest {
    /// Default: the first of the role's hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub command: Vec<String>,
}

/// What the command printed (invalid UTF-8 replaced) and how it ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecResponse {
    /// Where it ran.
    pub host: String,
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
    /// True when the output went over 4 MiB (stdout and stderr together); the rest was dropped.
    #[serde(default)]
    pub truncated: bool,
}

/// Every error the API returns has this body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    pub error: ApiError,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApiError {
    /// `invalid`, `not_found`, `conflict`, `unauthorized`, `forbidden`, `unavailable`, `internal`.
    pub code: String,
    pub message: String,
    /// For `invalid`: every problem found, each with its path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
}

impl std::fmt::Display for UnitState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            UnitState::Converged => "Converged",
            UnitState::Progressing => "Progressing",
            UnitState::Degraded => "Degraded",
            UnitState::Failed => "Failed",
            UnitState::Unreachable => "Unreachable",
            UnitState::Paused => "Paused",
        };
        f.write_str(s)
    }
}
