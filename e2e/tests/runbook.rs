//! RUNBOOK.md tried for real on the rig: each row about the app's containers, the `ballast` command the runbook
//! gives for it, and what the on-call engineer should then see (real ballastd, etcd, hosts over SSH).

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use ballast_e2e::stage::{text, web_role, Setup, Stage, WAIT};
use ballast_e2e::{until, Rig};
use ballast_specs::wire::UnitState;
use ballast_tests::TestEtcd;

/// `web` (health-checked, deploy timeout 5 s) and `job` (Sidekiq-like: its own command, 512m) on h1.
fn roles(rig: &Rig) -> String {
    let web = web_role("web", "h1", &rig.image("v1"), "5s", "  resources: {cpus: 1.5, memory: 1.75g}\n");
    format!(
        r#"{web}---
apiVersion: ballast/v1
kind: Role
metadata: {{name: job}}
spec:
  hosts: [h1]
  image: {v1}
  command: [sh, -c, "trap 'exit 0' TERM; echo job started; while true; do sleep 1 & wait $!; done"]
  resources: {{cpus: 0.25, memory: 512m}}
  deployTimeout: 20s
"#,
        v1 = rig.image("v1")
    )
}

#[tokio::test]
async fn every_runbook_row_about_containers_works_as_written() -> Result<()> {
    let rig = Rig::acquire()?;
    let etcd = TestEtcd::start().await?;
    let setup = Setup { args: vec!["--resync".into(), "2s".into()], ..Setup::default() };
    let stage = Stage::start(&rig, etcd.endpoints(), &setup).await?;
    stage.apply_yaml("roles.yaml", &roles(&rig))?;
    stage.converge()?;
    let web = rig.container_of(1, "web")?;

    // Deploy hangs (health check failing): Failed with the reason, the old container keeps serving.
    stage.ok(&["set", "image", "web", &rig.image("bad")])?;
    let failed = stage.wait("web", "h1", "web failed", |s| s.state == UnitState::Failed)?;
    ensure!(failed.message.contains("not healthy within deployTimeout 5s"), "{}", failed.message);
    assert_eq!(rig.curl(1, 3000, "/up")?, "v1", "the old container does not answer");
    assert_eq!(rig.container_of(1, "web")?, web);
    // The status is written before the event: wait for it.
    until(WAIT, "RolloutFailed in `ballast events web`", || {
        stage.ok(&["events", "web"]).ok()?.contains("RolloutFailed").then_some(())
    })?;
    stage.ok(&["logs", "web", "--tail", "20"])?;
    // `rollout retry` tries the same spec again (and fails again); `rollout undo` goes back.
    stage.ok(&["rollout", "retry", "web"])?;
    stage.wait("web", "h1", "the retry failed too", |s| {
        s.state == UnitState::Failed && s.failed.as_ref().is_some_and(|f| f.retry == 1)
    })?;
    let history = stage.ok(&["rollout", "history", "web"])?;
    ensure!(history.contains(":bad") && history.contains(":v1"), "rollout history web: {history}");
    stage.ok(&["rollout", "undo", "web"])?;
    stage.converge()?;
    assert_eq!(rig.container_of(1, "web")?, web, "undo to the running spec replaced the container");

    // Jobs not running (Sidekiq container stopped): ballast starts it again by itself.
    let job = rig.container_of(1, "job")?;
    rig.docker(1, &["stop", "-t", "1", &job])?;
    until(WAIT, "job running again", || {
        (rig.inspect(1, &job, "{{.State.Running}}").ok()? == "true").then_some(())
    })?;
    // The event is written right after the start returns: wait for it too.
    until(WAIT, "the start in `ballast events job`", || {
        stage.ok(&["events", "job"]).ok()?.contains("started job").then_some(())
    })?;

    // Sidekiq OOM-killed: more memory in place, same container, visible in the history.
    let started = rig.inspect(1, &job, "{{.State.StartedAt}}")?;
    stage.ok(&["set", "resources", "job", "--memory", "768m"])?;
    stage.converge()?;
    assert_eq!(rig.container_of(1, "job")?, job, "the memory change replaced the container");
    assert_eq!(
        rig.inspect(1, &job, "{{.HostConfig.Memory}} {{.State.StartedAt}}")?,
        format!("805306368 {started}")
    );
    let history = stage.ok(&["rollout", "history", "job"])?;
    ensure!(history.contains("768m") && history.contains("512m"), "rollout history job: {history}");
    let status = stage.ok(&["status", "job"])?;
    ensure!(status.contains("768m"), "status job: {status}");

    // Duplicate job execution: a second container with job's labels, started by hand, is removed.
    let labels = rig.inspect(1, &job, "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}}\n{{end}}")?;
    let mut create = vec!["create", "--name", "job-by-hand"];
    for label in labels.lines().filter(|l| l.starts_with("ballast.")) {
        create.extend(["--label", label]);
    }
    let image = rig.image("v1");
    create.extend([image.as_str(), "sleep", "600"]);
    let twin = rig.docker(1, &create)?;
    // ballast may see the created twin and remove it before it starts: then the start fails, and that is the
    // runbook row working too. Any other failure of the start is the test's own.
    if let Err(e) = rig.docker(1, &["start", &twin]) {
        let message = format!("{e:#}");
        ensure!(
            message.contains("marked for removal") || message.contains("No such container"),
            "starting the duplicate by hand: {message}"
        );
    }
    until(WAIT, "the duplicate removed", || rig.inspect(1, &twin, "{{.Id}}").is_err().then_some(()))?;
    assert_eq!(rig.container_of(1, "job")?, job, "the duplicate was kept instead");
    until(WAIT, "the removal in `ballast events job`", || {
        stage.ok(&["events", "job"]).ok()?.contains("duplicate container").then_some(())
    })?;

    // Work by hand on a host: pause, and ballast observes without changing anything; resume puts it back.
    stage.ok(&["pause", "job"])?;
    stage.wait("job", "h1", "job paused", |s| s.state == UnitState::Paused)?;
    rig.docker(1, &["stop", "-t", "1", &job])?;
    std::thread::sleep(Duration::from_secs(5)); // two resync periods
    assert_eq!(rig.inspect(1, &job, "{{.State.Running}}")?, "false", "a paused role was changed");
    stage.ok(&["resume", "job"])?;
    stage.converge()?;
    assert_eq!(rig.inspect(1, &job, "{{.State.Running}}")?, "true");

    // Restart a single role: every container of it replaced, health-gated.
    stage.ok(&["rollout", "restart", "job"])?;
    until(WAIT, "job replaced", || (rig.container_of(1, "job").ok()? != job).then_some(()))?;
    stage.converge()?;

    // Console and diagnostics: exec returns output and exit code; logs show the app's output.
    let out = stage.ballastd.ballast(&["exec", "web", "--", "cat", "/www/up"]);
    ensure!(out.status.success() && text(&out).contains("v1"), "exec web: {}", text(&out));
    let out = stage.ballastd.ballast(&["exec", "web", "--", "sh", "-c", "echo to-stderr >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "exec exit code: {}", text(&out));
    ensure!(text(&out).contains("to-stderr"), "exec output: {}", text(&out));
    let logs = stage.ok(&["logs", "job", "--tail", "5", "--host", "h1"])?;
    ensure!(logs.contains("job started"), "logs job: {logs}");
    let events = stage.ok(&["events", "web"])?;
    ensure!(
        events.contains("Exec") && events.contains("ran `cat /www/up` in web on h1"),
        "no exec event: {events}"
    );

    // Is what runs what should run?
    let plan = stage.ok(&["plan"])?;
    let status = stage.ok(&["status"])?;
    ensure!(status.contains("Converged") && !status.contains("Failed"), "status: {status}");
    println!("runbook: plan says\n{plan}\nstatus says\n{status}");
    let web_status = stage.status("web", "h1").context("web status")?;
    ensure!(web_status.image == rig.image("v1"), "{web_status:?}");
    Ok(())
}
