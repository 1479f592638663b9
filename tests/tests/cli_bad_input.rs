//! Bad input through the real `ballast` and `ballastd` on a real etcd: each case gets a clear message and a
//! non-zero exit, and the stored state stays as it was (checked through `ballast get roles -o json`).

use std::process::Output;

use ballast_tests::ballastd::{ballast_command, closed_port, datalake_dir, run, Stack};
use ballast_tests::wait;

/// A valid change to `job` that must not be stored when anything else in the same apply is wrong.
const JOB_CHANGE: &str = "\
apiVersion: ballast/v1
kind: Role
metadata: {name: job, labels: {app: datalake}}
spec:
  hosts: [web-1]
  image: registry.local/datalake:v2
  resources: {cpus: 0.5, memory: 1g}
";

/// Applies `yaml` (written to `bad.yaml`, after a valid change to `job`) to a seeded stack; checks that the
/// apply failed with exit 1, that nothing changed, and returns stderr.
async fn refused(yaml: &str) -> String {
    let stack = Stack::seeded().await.expect("stack");
    let before = stack.roles().expect("roles");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("a-job.yaml"), JOB_CHANGE).expect("write");
    std::fs::write(dir.path().join("bad.yaml"), yaml).expect("write");
    let out = stack.ballast(&["apply", "-f", dir.path().to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&format!("{}/", dir.path().display()), "");
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(out.stdout.is_empty(), "stdout: {}", String::from_utf8_lossy(&out.stdout));
    assert!(!stderr.contains("panicked") && !stderr.contains("Error {"), "{stderr}");
    assert_eq!(stack.roles().expect("roles"), before, "the stored roles changed");
    stderr
}

#[tokio::test]
async fn invalid_yaml() {
    let stderr =
        refused("apiVersion: ballast/v1\nkind: Role\nmetadata: {name: web\nspec:\n  hosts: [web-1]\n").await;
    assert!(stderr.starts_with("bad.yaml: document 1: invalid yaml: did not find expected ','"), "{stderr}");
    assert!(stderr.ends_with("error: 1 problem found, nothing was applied\n"), "{stderr}");
}

#[tokio::test]
async fn unknown_field() {
    let stderr = refused(
        "apiVersion: ballast/v1\nkind: Role\nmetadata: {name: web}\nspec:\n  hosts: [web-1]\n  image: a:1\n  replicas: 3\n",
    )
    .await;
    assert!(
        stderr.starts_with("bad.yaml: document 1: spec.replicas: unknown field (expected one of: "),
        "{stderr}"
    );
}

#[tokio::test]
async fn unknown_kind_and_api_version() {
    let stderr = refused(
        "apiVersion: ballast/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {}\n---\n\
         apiVersion: apps/v1\nkind: Host\nmetadata: {name: web-9}\nspec: {address: 192.0.2.9}\n",
    )
    .await;
    assert_eq!(
        stderr,
        "bad.yaml: document 1: kind: unknown kind \"Deployment\" (expected Host or Role)\n\
         bad.yaml: document 2: apiVersion: unsupported apiVersion \"apps/v1\" (expected ballast/v1)\n\
         error: 2 problems found, nothing was applied\n"
    );
}

#[tokio::test]
async fn memory_with_an_unknown_unit() {
    let stderr = refused(
        "apiVersion: ballast/v1\nkind: Role\nmetadata: {name: web}\nspec:\n  hosts: [web-1]\n  image: a:1\n  \
         resources: {cpus: 1.5, memory: 1.75XB}\n",
    )
    .await;
    assert_eq!(
        stderr,
        "bad.yaml: document 1: spec.resources.memory: \"1.75XB\" is not a memory quantity (examples: 512m, 1.75g, \
         2GiB)\nerror: 1 problem found, nothing was applied\n"
    );
}

#[tokio::test]
async fn cpus_zero_and_negative() {
    let stderr = refused(
        "apiVersion: ballast/v1\nkind: Role\nmetadata: {name: web}\nspec: {hosts: [web-1], image: a:1, resources: {cpus: 0}}\n\
         ---\napiVersion: ballast/v1\nkind: Role\nmetadata: {name: job}\nspec: {hosts: [web-1], image: a:1, resources: {cpus: -1}}\n",
    )
    .await;
    assert_eq!(
        stderr,
        "bad.yaml: document 1: spec.resources.cpus: cpus must be greater than 0, got 0\n\
         bad.yaml: document 2: spec.resources.cpus: cpus must be greater than 0, got -1\n\
         error: 2 problems found, nothing was applied\n"
    );
}

#[tokio::test]
async fn empty_image() {
    let stderr = refused(
        "apiVersion: ballast/v1\nkind: Role\nmetadata: {name: web}\nspec: {hosts: [web-1], image: \"\"}\n",
    )
    .await;
    assert_eq!(
        stderr,
        "bad.yaml: document 1: spec.image: must not be empty\nerror: 1 problem found, nothing was applied\n"
    );
}

#[tokio::test]
async fn role_naming_a_missing_host() {
    // Valid on its own: only ballastd knows which hosts are stored.
    let stderr = refused(
        "apiVersion: ballast/v1\nkind: Role\nmetadata: {name: web}\nspec: {hosts: [web-1, web-3], image: a:1}\n",
    )
    .await;
    assert_eq!(
        stderr,
        "bad.yaml: document 1: spec.hosts[1]: host \"web-3\" is neither in this set nor stored\n\
         error: 1 problem found, nothing was applied\n"
    );
}

#[tokio::test]
async fn duplicate_names_in_one_apply() {
    // The second definition of job is in another file than the first, after a valid host.
    let stderr = refused(
        "apiVersion: ballast/v1\nkind: Host\nmetadata: {name: web-9}\nspec: {address: 192.0.2.9}\n---\n\
         apiVersion: ballast/v1\nkind: Role\nmetadata: {name: job}\nspec: {hosts: [web-9], image: a:2}\n",
    )
    .await;
    assert_eq!(
        stderr,
        "bad.yaml: document 2: metadata.name: role \"job\" is defined more than once\n\
         error: 1 problem found, nothing was applied\n"
    );
}

#[tokio::test]
async fn a_spec_file_of_five_megabytes() {
    let mut yaml = String::from("apiVersion: ballast/v1\nkind: Role\nmetadata: {name: web}\nspec:\n  hosts: [web-1]\n  image: a:1\n  env:\n");
    let mut i = 0;
    while yaml.len() < 5_000_000 {
        yaml.push_str(&format!("    K{i}: \"{}\"\n", "x".repeat(100)));
        i += 1;
    }
    let stderr = refused(&yaml).await;
    assert_eq!(
        stderr,
        "bad.yaml: the file is 4.8 MiB, more than the 1 MiB a spec file may have; nothing was read\n\
         error: 1 problem found, nothing was applied\n"
    );
}

#[tokio::test]
async fn every_problem_of_every_file_at_once() {
    let stack = Stack::seeded().await.expect("stack");
    let before = stack.roles().expect("roles");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("one.yml"),
        "kind: Role\napiVersion: ballast/v1\nmetadata: {name: x}\nspec: {hosts: [], image: \"\"}\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("two.yaml"),
        "apiVersion: ballast/v1\nkind: Host\nmetadata: {name: h}\nspec: {port: 0}\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("notes.txt"), "not a spec").expect("write");
    let out = stack.ballast(&["apply", "-f", dir.path().to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&format!("{}/", dir.path().display()), "");
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.iter().any(|l| l.starts_with("one.yml: document 1: spec.image: ")), "{stderr}");
    assert!(
        lines.iter().any(|l| l.starts_with("two.yaml: document 1: spec.address: missing required field")),
        "{stderr}"
    );
    assert!(!stderr.contains("notes.txt"), "{stderr}");
    assert!(lines
        .last()
        .is_some_and(|l| l.starts_with("error: ") && l.ends_with("problems found, nothing was applied")));
    assert_eq!(stack.roles().expect("roles"), before);
}

#[tokio::test]
async fn stale_revision_on_edit() {
    let stack = Stack::seeded().await.expect("stack");
    let before = stack.role("job").expect("job");
    let dir = tempfile::tempdir().expect("temp dir");
    // The "editor" lets someone else change job first, then makes its own change to the file it was given.
    let editor = dir.path().join("editor.sh");
    let ballast = ballast_binary();
    std::fs::write(
        &editor,
        format!(
            "#!/bin/sh\nset -e\n'{ballast}' set image job registry.local/datalake:other >/dev/null\n\
             sed -i 's/memory: 512m/memory: 640m/' \"$1\"\n"
        ),
    )
    .expect("write editor");
    make_executable(&editor);
    let out = run(
        ballast_command().env("BALLAST_SERVER", stack.ballastd.url()).env("EDITOR", &editor),
        &["edit", "job"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with(
            "error: conflict: role \"job\" was changed by someone else while you edited it; nothing was changed; \
             your edit is kept in "
        ),
        "{stderr}"
    );
    // The kept file has the edit.
    let kept = stderr.split("kept in ").nth(1).and_then(|s| s.split(':').next()).expect("kept path");
    assert!(std::fs::read_to_string(kept).expect("kept file").contains("memory: 640m"));
    std::fs::remove_file(kept).expect("remove kept file");
    // Only the other change is stored.
    let after = stack.role("job").expect("job");
    assert_eq!(after.role.spec.image, "registry.local/datalake:other");
    assert_eq!(after.role.spec.resources, before.role.spec.resources);
    assert_eq!(after.role.metadata.generation, before.role.metadata.generation + 1);
}

#[tokio::test]
async fn etcd_unreachable() {
    let mut stack = Stack::seeded().await.expect("stack");
    let before = stack.roles().expect("roles");
    stack.etcd.kill();
    let datalake = datalake_dir().display().to_string();
    for args in [
        vec!["get", "roles"],
        vec!["apply", "-f", datalake.as_str()],
        vec!["set", "resources", "job", "--memory", "1g"],
    ] {
        let out = stack.ballast(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {stderr}");
        assert_eq!(
            stderr,
            "error: the store (etcd) is unavailable: etcd cannot be reached or did not answer in time\n",
            "{args:?}"
        );
    }
    stack.etcd.restart().await.expect("etcd restart");
    let roles = wait::until(std::time::Duration::from_secs(30), "ballastd to reach etcd again", || async {
        stack.roles().ok()
    })
    .await
    .expect("roles");
    assert_eq!(roles, before);
}

#[tokio::test]
async fn ballastd_not_running() {
    let port = closed_port().expect("port");
    let server = format!("http://127.0.0.1:{port}");
    let out: Output = run(ballast_command().env("BALLAST_SERVER", &server), &["get", "roles"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "error: cannot reach ballastd at {server}: connection refused (is it running? set --server or \
             BALLAST_SERVER)\n"
        )
    );
    let out = run(
        &mut ballast_command(),
        &["--server", &server, "apply", "-f", &datalake_dir().display().to_string()],
    );
    assert_eq!(out.status.code(), Some(3));
}

fn ballast_binary() -> String {
    ballast_command().get_program().to_string_lossy().into_owned()
}

fn make_executable(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A proxied role on web-1, `more` its last spec lines.
fn proxied(more: &str) -> String {
    format!(
        "apiVersion: ballast/v1\nkind: Role\nmetadata: {{name: api}}\nspec:\n  hosts: [web-1]\n  image: a:1\n{more}"
    )
}

#[tokio::test]
async fn a_proxy_without_a_health_check() {
    let stderr = refused(&proxied("  proxy: {port: 80}\n")).await;
    assert!(
        stderr.starts_with(
            "bad.yaml: document 1: spec.proxy: a proxied role needs spec.health: the proxy switches to a new \
             container only once its health check passes\n"
        ),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_drain_longer_than_the_deploy_timeout() {
    let stderr = refused(&proxied(
        "  health: {http: {path: /up, port: 3000}}\n  deployTimeout: 20s\n  proxy: {port: 80, drainTimeout: 30s}\n",
    ))
    .await;
    assert!(
        stderr.starts_with(
            "bad.yaml: document 1: spec.proxy.drainTimeout: \"30s\" is longer than deployTimeout \"20s\"\n"
        ),
        "{stderr}"
    );
}

/// The stored `web` publishes 3000 on web-1: a proxy there on 3000 is refused by ballastd (the file alone is fine).
#[tokio::test]
async fn a_proxy_port_a_stored_role_publishes() {
    let stderr =
        refused(&proxied("  health: {http: {path: /up, port: 3000}}\n  proxy: {port: 3000}\n")).await;
    assert!(
        stderr.starts_with(
            "bad.yaml: document 1: spec.proxy.port: port 3000 on host \"web-1\" is already published by role \
             \"web\" (stored) (3000/tcp)\n"
        ),
        "{stderr}"
    );
}
