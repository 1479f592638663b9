//! `logs ROLE [--host H] [-f] [--tail N]` and `exec ROLE [--host H] -- CMD...`: a role's containers through
//! ballastd's API, so nobody needs SSH access to the hosts.

use std::io::{ErrorKind, Write};
use std::time::Duration;

use ballast_specs::wire::{ExecRequest, ExecResponse, LogEntry, LogStream};
use chrono::SecondsFormat;
use futures::StreamExt;

use super::{fetch_role, role_path, Context};
use crate::client::{encode, reason};
use crate::error::{exit, CliError, Result};
use crate::render::{print_data, yaml, Output};

/// How long `exec` waits for its answer: ballastd gives a command 10 minutes.
const EXEC_WAIT: Duration = Duration::from_secs(11 * 60);

/// What `ballast logs` was asked for.
#[derive(Clone, Debug, Default)]
pub struct LogsRequest {
    pub host: Option<String>,
    pub follow: bool,
    pub tail: Option<u64>,
    pub timestamps: bool,
}

/// Prints the log lines as they come: stdout lines on stdout, stderr lines on stderr, each prefixed with
/// `[HOST] ` when the role runs on several hosts and no `--host` was given. `-o json`: one `LogEntry` a line.
/// Exit 1 when a host's log could not be read (the others are still printed).
pub async fn logs(cx: &Context, role: &str, request: &LogsRequest) -> Result<u8> {
    let prefix = match &request.host {
        Some(_) => false,
        None => fetch_role(cx, role).await?.role.spec.hosts.len() > 1,
    };
    let mut query = Vec::new();
    if let Some(host) = &request.host {
        query.push(format!("host={}", encode(host)));
    }
    if request.follow {
        query.push("follow=true".to_string());
    }
    if let Some(n) = request.tail {
        query.push(format!("tail={n}"));
    }
    let query = if query.is_empty() { String::new() } else { format!("?{}", query.join("&")) };
    let response = cx.client.stream(&format!("{}/logs{query}", role_path(role))).await?;
    let mut body = response.bytes_stream();
    let mut pending: Vec<u8> = Vec::new();
    let mut failed = false;
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|err| CliError::Server(format!("the log stream broke: {}", reason(&err))))?;
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let entry: LogEntry = serde_json::from_slice(&line[..end]).map_err(|err| {
                CliError::Server(format!("ballastd sent a log line this CLI cannot read: {err}"))
            })?;
            failed |= entry.error.is_some();
            match print_entry(cx.output, &entry, prefix, request.timestamps) {
                Ok(()) => {}
                // Whoever read our output has gone (`| head`): done.
                Err(err) if err.kind() == ErrorKind::BrokenPipe => return Ok(exit::OK),
                Err(err) => return Err(CliError::Failed(format!("cannot print: {err}"))),
            }
        }
    }
    Ok(if failed { exit::FAILED } else { exit::OK })
}

/// Runs the command in the role's container; prints its stdout and stderr and exits with its exit code
/// (255 for a code outside 0..=255). `-o json`: the `ExecResponse`.
pub async fn exec(cx: &Context, role: &str, host: Option<String>, command: Vec<String>) -> Result<u8> {
    let request = ExecRequest { host, command };
    let answer: ExecResponse =
        cx.client.post_slow(&format!("{}/exec", role_path(role)), &request, EXEC_WAIT).await?;
    let code = u8::try_from(answer.exit_code).unwrap_or(u8::MAX);
    if print_data(cx.output, &answer)? {
        return Ok(code);
    }
    let printed = std::io::stdout()
        .lock()
        .write_all(answer.stdout.as_bytes())
        .and_then(|()| std::io::stdout().flush())
        .and_then(|()| std::io::stderr().lock().write_all(answer.stderr.as_bytes()));
    match printed {
        Ok(()) => {}
        Err(err) if err.kind() == ErrorKind::BrokenPipe => {}
        Err(err) => return Err(CliError::Failed(format!("cannot print: {err}"))),
    }
    if answer.truncated {
        eprintln!("warning: the command printed more than 4 MiB; the rest was dropped");
    }
    Ok(code)
}

fn print_entry(output: Output, entry: &LogEntry, prefix: bool, timestamps: bool) -> std::io::Result<()> {
    let text = match output {
        Output::Json => serde_json::to_string(entry).map_err(std::io::Error::other)? + "\n",
        Output::Yaml => format!("---\n{}", yaml(entry).map_err(|e| std::io::Error::other(e.to_string()))?),
        Output::Table | Output::Wide => {
            if let Some(error) = &entry.error {
                return writeln!(std::io::stderr().lock(), "error: {error}");
            }
            let mut text = String::new();
            if prefix {
                text.push_str(&format!("[{}] ", entry.host));
            }
            if let (true, Some(time)) = (timestamps, entry.time) {
                text.push_str(&time.to_rfc3339_opts(SecondsFormat::Millis, true));
                text.push(' ');
            }
            text.push_str(&entry.line);
            text.push('\n');
            if entry.stream == Some(LogStream::Stderr) {
                return std::io::stderr().lock().write_all(text.as_bytes());
            }
            text
        }
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}
