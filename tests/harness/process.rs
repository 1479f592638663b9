//! Processes by PID: whether one still runs (a zombie counts as gone), and killing one.

use anyhow::{bail, Context};

/// True while `pid` exists and is not a zombie waiting to be reaped.
pub fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name: `PID (comm) S ...`.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// Sends SIGKILL to `pid` (a process this test started, named by its PID).
pub fn kill(pid: u32) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .context("running kill")?;
    if !status.success() {
        bail!("kill -KILL {pid} failed: {status}");
    }
    Ok(())
}
