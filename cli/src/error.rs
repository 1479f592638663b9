//! What can go wrong in a `ballast` command, and the exit code each failure gives.

use ballast_specs::Problem;

/// Exit codes of `ballast` (also listed in `ballast --help` and docs/reference.md, "CLI contract").
pub mod exit {
    /// Success; for `diff`, no changes.
    pub const OK: u8 = 0;
    /// The command ran and the answer is no: invalid input, conflict, not found, unauthorized or forbidden,
    /// a `Failed` unit under `status --wait`; for `diff`, there are changes.
    pub const FAILED: u8 = 1;
    /// Usage error (bad flags or arguments), `status --wait` timed out; for `diff`, any error.
    pub const USAGE: u8 = 2;
    /// ballastd cannot be reached or failed: connection refused, timeout, etcd unavailable (503), 5xx.
    pub const SERVER: u8 = 3;
}

/// A failed command. Displayed as one line after `error: `.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A user-level failure (exit 1).
    #[error("{0}")]
    Failed(String),
    /// Input problems (exit 1): each is printed on its own line, then the summary.
    #[error("{summary}")]
    Invalid { problems: Vec<Problem>, summary: String },
    /// Waited too long (exit 2).
    #[error("{0}")]
    Timeout(String),
    /// Flags that cannot go together (exit 2).
    #[error("{0}")]
    Usage(String),
    /// ballastd or its store failed, or cannot be reached (exit 3).
    #[error("{0}")]
    Server(String),
}

pub type Result<T, E = CliError> = std::result::Result<T, E>;

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Failed(_) | CliError::Invalid { .. } => exit::FAILED,
            CliError::Timeout(_) | CliError::Usage(_) => exit::USAGE,
            CliError::Server(_) => exit::SERVER,
        }
    }

    /// Input problems, with a summary that counts them.
    pub fn invalid(problems: Vec<Problem>, what: &str) -> CliError {
        let summary = match problems.len() {
            1 => format!("1 problem found, {what}"),
            n => format!("{n} problems found, {what}"),
        };
        CliError::Invalid { problems, summary }
    }
}
