//! `ballast status --wait` through the real binaries, on a real etcd and the local Docker engine: a live table on a
//! terminal, plain lines elsewhere; exit 0 once converged, 1 on Failed, 2 on timeout.

use std::process::Command;

use anyhow::{ensure, Result};
use ballast_tests::ballastd::{ballast_command, Stack};
use ballast_tests::docker::HostCleanup;
use ballast_tests::docker::{ensure_image, unique_name};

fn spec(host: &str, image: &str) -> String {
    spec_with_timeout(host, image, "5s")
}

fn spec_with_timeout(host: &str, image: &str, deploy_timeout: &str) -> String {
    format!(
        "apiVersion: ballast/v1\nkind: Host\nmetadata: {{name: {host}}}\nspec: {{address: 'unix:///var/run/docker.sock'}}\n\
         ---\napiVersion: ballast/v1\nkind: Role\nmetadata: {{name: web}}\nspec:\n  hosts: [{host}]\n  image: {image}\n  \
         health: {{http: {{path: /up, port: 3000}}, interval: 200ms, timeout: 1s}}\n  deployTimeout: {deploy_timeout}\n"
    )
}

fn apply(stack: &Stack, dir: &tempfile::TempDir, yaml: &str) -> Result<()> {
    let path = dir.path().join("spec.yaml");
    std::fs::write(&path, yaml)?;
    let out = stack.ballast(&["apply", "-f", path.to_str().unwrap_or_default()]);
    ensure!(out.status.success(), "apply: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

#[tokio::test]
async fn status_wait_draws_live_on_a_terminal_and_plain_lines_elsewhere() -> Result<()> {
    ensure_image("ballast-test/app:v1", "v1", "good")?;
    ensure_image("ballast-test/app:v2", "v2", "good")?;
    ensure_image("ballast-test/app:bad", "bad", "bad")?;
    let host = unique_name("wait");
    let _cleanup = HostCleanup(host.clone());
    let stack = Stack::reconciling().await?;
    let dir = tempfile::tempdir()?;

    // Not a terminal: one plain line per change, then the table; exit 0.
    apply(&stack, &dir, &spec(&host, "ballast-test/app:v1"))?;
    let out = stack.ballast(&["status", "--wait", "--timeout", "60s"]);
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.code() == Some(0),
        "exit {:?}: {text}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(!text.contains('\x1b'), "no escape sequences without a terminal: {text:?}");
    ensure!(text.contains("Converged"), "{text}");

    // A terminal (a pty from `script`): the table is redrawn in place with cursor movements.
    apply(&stack, &dir, &spec(&host, "ballast-test/app:v2"))?;
    let ballast = ballast_command().get_program().to_string_lossy().to_string();
    let out = Command::new("script")
        .args(["-qec", &format!("{ballast} status --wait --timeout 60s"), "/dev/null"])
        .env("BALLAST_SERVER", stack.ballastd.url())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.code() == Some(0), "exit {:?}: {text}", out.status.code());
    ensure!(text.contains("ROLE") && text.contains("Converged"), "{text}");
    ensure!(text.contains("\x1b[") && text.contains("A\x1b[J"), "the table is redrawn in place: {text:?}");

    // Failed: exit 1.
    apply(&stack, &dir, &spec(&host, "ballast-test/app:bad"))?;
    let out = stack.ballast(&["status", "--wait", "--timeout", "60s"]);
    ensure!(
        out.status.code() == Some(1),
        "exit {:?} on Failed: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        String::from_utf8_lossy(&out.stderr).contains("rollout failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Timeout: exit 2. A new generation that cannot get healthy within the wait (its deploy timeout is long).
    apply(&stack, &dir, &spec_with_timeout(&host, "ballast-test/app:bad", "60s"))?;
    let out = stack.ballast(&["status", "--wait", "--timeout", "1s"]);
    ensure!(
        out.status.code() == Some(2),
        "exit {:?} on timeout: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
