//! The `ballast` CLI on a real `ballastd` and etcd: apply, get, set, rollout, diff, edit, pause, status, events.

use std::process::Output;

use ballast_operator::store::etcd::EtcdStore;
use ballast_operator::store::StatusStore;
use ballast_specs::wire::{ApplyResponse, List, RoleRevision, RoleView, UnitState, UnitStatus};
use ballast_specs::Object;
use ballast_tests::ballastd::{ballast_command, closed_port, datalake_dir, run, Stack};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: Output) -> String {
    assert_eq!(out.status.code(), Some(0), "stderr: {}\nstdout: {}", stderr(&out), stdout(&out));
    stdout(&out)
}

fn generations(roles: &[RoleView]) -> Vec<(String, u64)> {
    roles.iter().map(|v| (v.role.metadata.name.clone(), v.role.metadata.generation)).collect()
}

#[tokio::test]
async fn apply_get_set_undo_diff() {
    let stack = Stack::start().await.expect("stack");
    let dir = datalake_dir().display().to_string();

    let applied = ok(stack.ballast(&["apply", "-f", &dir]));
    assert_eq!(
        applied,
        "host/web-1 created\nhost/web-2 created\nrole/web created\nrole/web_replica created\nrole/job created\n"
    );

    let roles = stack.roles().expect("roles");
    type Summary = (String, Vec<String>, Option<String>, Option<String>, Vec<String>);
    let summary: Vec<Summary> = roles
        .iter()
        .map(|v| {
            let spec = &v.role.spec;
            (
                v.role.metadata.name.clone(),
                spec.hosts.clone(),
                spec.resources.cpus.map(|c| c.to_string()),
                spec.resources.memory.as_ref().map(|m| m.to_string()),
                spec.command.clone(),
            )
        })
        .collect();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        summary,
        vec![
            (
                "job".to_string(),
                s(&["web-1"]),
                Some("0.25".to_string()),
                Some("512m".to_string()),
                s(&["bundle", "exec", "sidekiq", "-C", "./config/sidekiq.yml"])
            ),
            ("web".to_string(), s(&["web-1"]), Some("1.5".to_string()), Some("1.75g".to_string()), vec![]),
            ("web_replica".to_string(), s(&["web-2"]), None, Some("2g".to_string()), vec![]),
        ]
    );
    for view in &roles {
        let health = view.role.spec.health.as_ref();
        assert_eq!(view.role.spec.deploy_timeout.as_millis(), 1_200_000);
        if view.role.metadata.name != "job" {
            let health = health.expect("health");
            assert_eq!(
                (health.http.path.as_str(), health.interval.as_millis(), health.timeout.as_millis()),
                ("/up", 1000, 5000)
            );
        }
    }

    // A second apply changes nothing; its JSON output is the wire type.
    let again = ok(stack.ballast(&["apply", "-f", &dir]));
    assert_eq!(
        again,
        "host/web-1 unchanged\nhost/web-2 unchanged\nrole/web unchanged\nrole/web_replica unchanged\nrole/job unchanged\n"
    );
    let response: ApplyResponse =
        serde_json::from_str(&ok(stack.ballast(&["apply", "-f", &dir, "--dry-run", "-o", "json"])))
            .expect("json");
    assert_eq!(response.results.len(), 5);
    assert_eq!(ok(stack.ballast(&["diff", "-f", &dir])), "");

    // The table.
    let table = ok(stack.ballast(&["get", "roles"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "HOSTS", "IMAGE", "CPUS", "MEMORY", "GENERATION", "PAUSED"]
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        [
            "job",
            "web-1",
            "211125575460.dkr.ecr.us-east-1.amazonaws.com/bioloupe/datalake:latest",
            "0.25",
            "512m",
            "1",
            "no"
        ]
    );
    let hosts = ok(stack.ballast(&["get", "hosts"]));
    assert_eq!(
        hosts.lines().nth(1).map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["web-1", "98.93.194.3", "ubuntu", "22"])
    );
    let single: RoleView =
        serde_json::from_str(&ok(stack.ballast(&["get", "role", "job", "-o", "json"]))).expect("json");
    assert_eq!(single.role.metadata.name, "job");
    let host: Object =
        serde_json::from_str(&ok(stack.ballast(&["get", "host", "web-2", "-o", "json"]))).expect("json");
    assert_eq!(host.name(), "web-2");
    let yaml = ok(stack.ballast(&["get", "roles", "web", "-o", "yaml"]));
    assert!(
        yaml.starts_with("apiVersion: ballast/v1\nmetadata:\n  name: web\n")
            && yaml.contains("\n    memory: 1.75g\n"),
        "{yaml}"
    );

    // set resources bumps only job's generation.
    assert_eq!(
        ok(stack.ballast(&["set", "resources", "job", "--memory", "768m"])),
        "role/job resources updated (generation 2)\n"
    );
    let roles = stack.roles().expect("roles");
    assert_eq!(
        generations(&roles),
        [("job".to_string(), 2), ("web".to_string(), 1), ("web_replica".to_string(), 1)]
    );
    assert_eq!(roles[0].role.spec.resources.memory.as_ref().map(|m| m.to_string()), Some("768m".to_string()));
    assert_eq!(roles[0].role.spec.resources.cpus.map(|c| c.to_string()), Some("0.25".to_string()));

    // diff now shows the change and exits 1.
    let diff = stack.ballast(&["diff", "-f", &dir]);
    assert_eq!(diff.status.code(), Some(1), "{}", stderr(&diff));
    let text = stdout(&diff);
    assert!(text.starts_with("diff role/job\n--- role/job (stored)\n+++ role/job ("), "{text}");
    assert!(text.contains("\n-    memory: 768m\n+    memory: 512m\n"), "{text}");
    assert!(!text.contains("role/web"), "{text}");

    // undo restores 512m as generation 3.
    assert_eq!(ok(stack.ballast(&["rollout", "undo", "job"])), "role/job rolled back (generation 3)\n");
    let job = stack.role("job").expect("job");
    assert_eq!(job.role.metadata.generation, 3);
    assert_eq!(job.role.spec.resources.memory.as_ref().map(|m| m.to_string()), Some("512m".to_string()));
    assert_eq!(ok(stack.ballast(&["diff", "-f", &dir])), "");

    let history = ok(stack.ballast(&["rollout", "history", "job"]));
    let rows: Vec<Vec<&str>> = history.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["REVISION", "CREATED", "ACTOR", "IMAGE", "CPUS", "MEMORY"]);
    assert_eq!(rows.len(), 4);
    // CREATED is a date and a time: two words.
    assert_eq!((rows[2][0], rows[2][3], *rows[2].last().expect("memory")), ("2", "anonymous", "768m"));
    assert_eq!((rows[3][0], rows[3][1], *rows[3].last().expect("memory")), ("3", "(current)", "512m"));
    let revisions: List<RoleRevision> =
        serde_json::from_str(&ok(stack.ballast(&["rollout", "history", "job", "-o", "json"]))).expect("json");
    assert_eq!(revisions.items.iter().map(|r| r.revision).collect::<Vec<_>>(), [1, 2, 3]);

    assert_eq!(
        ok(stack.ballast(&["rollout", "undo", "job", "--to-revision", "2"])),
        "role/job rolled back to revision 2 (generation 4)\n"
    );
    let missing = stack.ballast(&["rollout", "undo", "job", "--to-revision", "42"]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(stderr(&missing), "error: role \"job\" has no revision 42 (kept: 1, 2, 3, 4)\n");

    // set image; the same value again is unchanged.
    assert_eq!(
        ok(stack.ballast(&["set", "image", "web", "registry.local/datalake:v2"])),
        "role/web image updated (generation 2)\n"
    );
    assert_eq!(
        ok(stack.ballast(&["set", "image", "web", "registry.local/datalake:v2"])),
        "role/web unchanged\n"
    );
    let bad = stack.ballast(&["set", "image", "web", "Not An Image"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).starts_with("spec.image: "), "{}", stderr(&bad));
    assert_eq!(stack.role("web").expect("web").role.spec.image, "registry.local/datalake:v2");
}

#[tokio::test]
async fn diff_exit_codes() {
    let stack = Stack::seeded().await.expect("stack");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("job.yaml");
    let path = file.display().to_string();
    let job = std::fs::read_to_string(datalake_dir().join("roles.yaml")).expect("roles.yaml");
    let job = job.split("---").last().expect("job document").to_string();

    std::fs::write(&file, &job).expect("write");
    let same = stack.ballast(&["diff", "-f", &path]);
    assert_eq!((same.status.code(), stdout(&same)), (Some(0), String::new()));

    // Equal by value is no change: 512m written as 0.5g.
    std::fs::write(&file, job.replace("memory: 512m", "memory: 0.5g")).expect("write");
    let same = stack.ballast(&["diff", "-f", &path]);
    assert_eq!((same.status.code(), stdout(&same)), (Some(0), String::new()));

    std::fs::write(&file, job.replace("cpus: 0.25", "cpus: 0.5")).expect("write");
    let changed = stack.ballast(&["diff", "-f", &path]);
    assert_eq!(changed.status.code(), Some(1));
    assert!(stdout(&changed).contains("-    cpus: 0.25\n+    cpus: 0.5\n"), "{}", stdout(&changed));

    std::fs::write(&file, job.replace("name: job", "name: job2")).expect("write");
    let new = stack.ballast(&["diff", "-f", &path]);
    assert_eq!(new.status.code(), Some(1));
    assert!(stdout(&new).starts_with("diff role/job2\n--- /dev/null\n+++ role/job2 ("), "{}", stdout(&new));

    std::fs::write(&file, job.replace("memory: 512m", "memory: 1.75XB")).expect("write");
    let invalid = stack.ballast(&["diff", "-f", &path]);
    assert_eq!(invalid.status.code(), Some(2));
    assert!(
        stderr(&invalid).contains("spec.resources.memory: \"1.75XB\" is not a memory quantity"),
        "{}",
        stderr(&invalid)
    );

    let missing = stack.ballast(&["diff", "-f", &path.replace("job.yaml", "none.yaml")]);
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
    assert!(stderr(&missing).starts_with("error: cannot read "), "{}", stderr(&missing));

    std::fs::write(&file, &job).expect("write");
    let server = format!("http://127.0.0.1:{}", closed_port().expect("port"));
    let down = run(ballast_command().env("BALLAST_SERVER", &server), &["diff", "-f", &path]);
    assert_eq!(down.status.code(), Some(3), "{}", stderr(&down));
}

#[tokio::test]
async fn edit_through_an_editor() {
    let stack = Stack::seeded().await.expect("stack");
    let dir = tempfile::tempdir().expect("temp dir");
    let editor = |name: &str, script: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\nset -e\n{script}\n")).expect("write editor");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    };
    let edit = |editor: &std::path::Path| {
        run(
            ballast_command().env("BALLAST_SERVER", stack.ballastd.url()).env("EDITOR", editor),
            &["edit", "job"],
        )
    };

    // Saved unchanged: nothing happens.
    let out = edit(&editor("same.sh", "true"));
    assert_eq!(ok(out), "edit cancelled, no changes made\n");

    // Only a comment changed: still no change.
    let out = edit(&editor("comment.sh", "echo '# just a note' >> \"$1\""));
    assert_eq!(ok(out), "edit cancelled, no changes made\n");

    // An invalid edit: problems printed, the file kept, nothing stored.
    let out = edit(&editor("bad.sh", "sed -i 's/memory: 512m/memory: lots/' \"$1\""));
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(
        text.contains(": document 1: spec.resources.memory: \"lots\" is not a memory quantity"),
        "{text}"
    );
    let kept = text.rsplit("kept in ").next().expect("kept").trim().to_string();
    assert!(std::fs::read_to_string(&kept).expect("kept file").contains("memory: lots"));
    std::fs::remove_file(&kept).expect("remove");
    assert_eq!(stack.role("job").expect("job").role.metadata.generation, 1);

    // A good edit is stored as a new generation.
    let out = edit(&editor("good.sh", "sed -i 's/memory: 512m/memory: 640m/' \"$1\""));
    assert_eq!(ok(out), "role/job edited (generation 2)\n");
    let job = stack.role("job").expect("job");
    assert_eq!(job.role.spec.resources.memory.as_ref().map(|m| m.to_string()), Some("640m".to_string()));

    // Renaming is refused.
    let out = edit(&editor("rename.sh", "sed -i 's/name: job/name: jobs/' \"$1\""));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("metadata.name: cannot be changed"), "{}", stderr(&out));
    let kept = stderr(&out).rsplit("kept in ").next().expect("kept").trim().to_string();
    std::fs::remove_file(&kept).expect("remove");
}

#[tokio::test]
async fn pause_resume_restart_retry_and_events() {
    let stack = Stack::seeded().await.expect("stack");
    assert_eq!(ok(stack.ballast(&["pause", "web"])), "role/web paused\n");
    let table = ok(stack.ballast(&["get", "roles", "web"]));
    assert!(table.lines().nth(1).is_some_and(|l| l.ends_with("yes")), "{table}");
    assert_eq!(ok(stack.ballast(&["rollout", "restart", "web"])), "role/web restart requested\n");
    assert_eq!(ok(stack.ballast(&["rollout", "retry", "web"])), "role/web retry requested\n");
    let view: RoleView =
        serde_json::from_str(&ok(stack.ballast(&["resume", "web", "-o", "json"]))).expect("json");
    assert_eq!((view.control.paused, view.control.restart, view.control.retry), (false, 1, 1));
    assert_eq!(view.role.metadata.generation, 1);

    let events = ok(stack.ballast(&["events", "web"]));
    let reasons: Vec<&str> = events.lines().skip(1).filter_map(|l| l.split_whitespace().nth(4)).collect();
    assert_eq!(reasons, ["Paused", "RestartRequested", "RetryRequested", "Resumed"], "{events}");
    assert!(ok(stack.ballast(&["events", "job"])).is_empty());

    let missing = stack.ballast(&["pause", "nope"]);
    assert_eq!(
        (missing.status.code(), stderr(&missing)),
        (Some(1), "error: role \"nope\" not found\n".to_string())
    );
}

#[tokio::test]
async fn delete_roles_and_hosts() {
    let stack = Stack::seeded().await.expect("stack");
    let used = stack.ballast(&["delete", "host", "web-2"]);
    assert_eq!(used.status.code(), Some(1));
    assert_eq!(stderr(&used), "error: conflict: host \"web-2\" is still used by role web_replica\n");
    assert_eq!(ok(stack.ballast(&["delete", "role", "web_replica"])), "role/web_replica deleted\n");
    assert_eq!(ok(stack.ballast(&["delete", "host", "web-2"])), "host/web-2 deleted\n");
    let gone = stack.ballast(&["delete", "role", "web_replica"]);
    assert_eq!(
        (gone.status.code(), stderr(&gone)),
        (Some(1), "error: role \"web_replica\" not found\n".to_string())
    );
    let names: Vec<String> =
        stack.roles().expect("roles").into_iter().map(|v| v.role.metadata.name).collect();
    assert_eq!(names, ["job", "web"]);
}

#[tokio::test]
async fn status_and_wait() {
    let stack = Stack::seeded().await.expect("stack");
    let store = EtcdStore::connect(&stack.etcd.endpoints()).await.expect("store");
    let unit = |role: &str, host: &str, state: UnitState, observed: u64| -> UnitStatus {
        serde_json::from_value(serde_json::json!({
            "role": role, "host": host, "generation": 1, "observedGeneration": observed, "state": state,
            "image": "registry.local/datalake:v1", "containerId": "c0ffee", "cpus": 0.25, "memory": "512m",
            "since": "2026-01-01T00:00:00Z"
        }))
        .expect("status")
    };
    store.put_status(&unit("job", "web-1", UnitState::Progressing, 0)).await.expect("status");

    let table = ok(stack.ballast(&["status", "job"]));
    let row: Vec<&str> = table.lines().nth(1).expect("row").split_whitespace().collect();
    assert_eq!(
        &row[..7],
        ["job", "web-1", "Progressing", "1/0", "registry.local/datalake:v1", "0.25", "512m"]
    );
    let listed: List<UnitStatus> =
        serde_json::from_str(&ok(stack.ballast(&["status", "-o", "json"]))).expect("json");
    assert_eq!(listed.items.len(), 1);

    // Not converged within the timeout: exit 2.
    let out = stack.ballast(&["status", "job", "--wait", "--timeout", "1s"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(stderr(&out), "error: timed out after 1s waiting for job@web-1 (Progressing) to converge\n");

    store.put_status(&unit("job", "web-1", UnitState::Converged, 1)).await.expect("status");
    let out = stack.ballast(&["status", "job", "--wait", "--timeout", "10s"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // The whole selection: web and web_replica have no status yet.
    let out = stack.ballast(&["status", "--wait", "--timeout", "1s"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("web@web-1 (no status yet), web_replica@web-2 (no status yet)"),
        "{}",
        stderr(&out)
    );

    let mut failed = unit("job", "web-1", UnitState::Failed, 0);
    failed.message = "health check did not pass within 1200s".to_string();
    store.put_status(&failed).await.expect("status");
    let out = stack.ballast(&["status", "job", "--wait", "--timeout", "10s"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "error: rollout failed: job@web-1: health check did not pass within 1200s\n");
}

#[tokio::test]
async fn usage_errors_exit_2() {
    for args in [
        vec!["set", "resources", "job"],
        vec!["set", "resources", "job", "--cpus", "0"],
        vec!["set", "resources", "job", "--memory", "1.75XB"],
        vec!["get", "things"],
        vec!["apply"],
    ] {
        let out = run(&mut ballast_command(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).starts_with("error: "), "{args:?}: {}", stderr(&out));
    }
}

#[tokio::test]
async fn events_follow_prints_new_events_as_json_lines() {
    use std::io::BufRead;
    let stack = Stack::seeded().await.expect("stack");
    assert_eq!(ok(stack.ballast(&["pause", "web"])), "role/web paused\n");
    let mut child = ballast_command()
        .env("BALLAST_SERVER", stack.ballastd.url())
        .args(["events", "web", "-f", "-o", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (lines, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let next = || {
        let line = receive.recv_timeout(std::time::Duration::from_secs(20)).expect("an event line");
        serde_json::from_str::<ballast_specs::wire::Event>(&line).expect("an Event")
    };
    assert_eq!(next().reason, "Paused");
    assert_eq!(ok(stack.ballast(&["resume", "web"])), "role/web resumed\n");
    let resumed = next();
    assert_eq!((resumed.reason.as_str(), resumed.actor.as_deref()), ("Resumed", Some("anonymous")));
    child.kill().expect("kill");
    child.wait().expect("wait");
}

#[tokio::test]
async fn set_image_by_selector_then_wait_for_every_role_it_changed() {
    let stack = Stack::seeded().await.expect("stack");
    let store = EtcdStore::connect(&stack.etcd.endpoints()).await.expect("store");
    let before = stack.roles().expect("roles");
    let v2 = "registry.local/datalake:v2";

    // Refused, changing nothing: no role matches; a selector that is not key=value; a bad image.
    let out = stack.ballast(&["set", "image", "--selector", "app=nope", v2]);
    assert_eq!(
        (out.status.code(), stderr(&out)),
        (Some(1), "error: role with labels \"app=nope\" not found\n".into())
    );
    let out = stack.ballast(&["set", "image", "-l", "app!=datalake", v2]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "--selector: \"app!=datalake\" is not a key=value requirement (only = and == are supported, as in \
         app=datalake,tier=web)\nerror: 1 problem found, nothing was done\n"
    );
    let out = stack.ballast(&["set", "image", "-l", "app=datalake", "Registry.local/Datalake:V2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("IMAGE: \"Registry.local/Datalake:V2\" is not an image reference"),
        "{}",
        stderr(&out)
    );
    let out = stack.ballast(&["set", "image", "-l", "app=datalake", "web", v2]);
    assert_eq!(out.status.code(), Some(2), "a role and a selector: usage error");
    assert!(stderr(&out).contains("with --selector, give IMAGE only"), "{}", stderr(&out));
    assert_eq!(stack.roles().expect("roles"), before, "nothing changed");

    // Every role labelled app=datalake, in one transaction (one etcd revision).
    let out = ok(stack.ballast(&["set", "image", "--selector", "app=datalake", v2]));
    assert_eq!(
        out,
        "role/job image updated (generation 2)\nrole/web image updated (generation 2)\n\
         role/web_replica image updated (generation 2)\n"
    );
    let after = stack.roles().expect("roles");
    assert!(after.iter().all(|v| v.role.spec.image == v2), "{after:#?}");
    let revisions: std::collections::BTreeSet<i64> = after.iter().map(|v| v.role.metadata.revision).collect();
    assert_eq!(revisions.len(), 1, "one transaction: {revisions:?}");
    let again: ApplyResponse =
        serde_json::from_str(&ok(stack.ballast(&["set", "image", "-l", "app=datalake", v2, "-o", "json"])))
            .expect("json");
    assert_eq!(again.results.len(), 3);
    assert!(again.results.iter().all(|r| r.outcome == ballast_specs::wire::ApplyOutcome::Unchanged));

    // --wait covers every role it changed: two converged at generation 3, web_replica not yet.
    let unit = |role: &str, host: &str, state: UnitState, observed: u64| -> UnitStatus {
        serde_json::from_value(serde_json::json!({
            "role": role, "host": host, "generation": 3, "observedGeneration": observed, "state": state,
            "message": "halted: the rollout of web failed on web-1: pull failed; `ballast rollout retry web` tries it again",
            "since": "2026-01-01T00:00:00Z"
        }))
        .expect("status")
    };
    store.put_status(&unit("job", "web-1", UnitState::Converged, 3)).await.expect("status");
    store.put_status(&unit("web", "web-1", UnitState::Converged, 3)).await.expect("status");
    let out = stack.ballast(&[
        "set",
        "image",
        "-l",
        "app=datalake",
        "registry.local/datalake:v3",
        "--wait",
        "--timeout",
        "1s",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "error: timed out after 1s waiting for web_replica@web-2 (no status yet) to converge\n"
    );
    assert!(stdout(&out).starts_with("role/job image updated (generation 3)\n"), "{}", stdout(&out));

    // `status --selector` waits for the same roles.
    store.put_status(&unit("web_replica", "web-2", UnitState::Failed, 2)).await.expect("status");
    let out = stack.ballast(&["status", "-l", "app=datalake", "--wait", "--timeout", "10s"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: rollout failed: web_replica@web-2: halted: the rollout of web"),
        "{}",
        stderr(&out)
    );
    store.put_status(&unit("web_replica", "web-2", UnitState::Converged, 3)).await.expect("status");
    let out =
        stack.ballast(&["status", "--selector", "app=datalake", "--wait", "--timeout", "10s", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let listed: List<UnitStatus> = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(listed.items.len(), 3);
    let out = stack.ballast(&["status", "-l", "app=nope"]);
    assert_eq!(
        (out.status.code(), stderr(&out)),
        (Some(1), "error: no role has the labels app=nope\n".into())
    );
}
