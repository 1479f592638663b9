//! Secrets in files, with the real binaries: the CLI reads its token from a file (`--token-file`,
//! `BALLAST_TOKEN_FILE`), so `ps` does not show it; the command line wins over the environment; a token file,
//! SSH key or TLS key open to other users is used with a warning, by the CLI and by ballastd.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use ballast_tests::ballastd::{ballast_command, run, Ballastd, Options};
use ballast_tests::TestEtcd;

const TOKENS: &str = "alice write alice-secret-token\nci read ci-secret-token-1\n";

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn the_cli_reads_its_token_from_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("tokens");
    let ssh_key = dir.path().join("id_ed25519");
    write(&tokens, TOKENS, 0o644);
    write(&ssh_key, "not read before a host is dialled\n", 0o640);
    let etcd = TestEtcd::start().await.expect("etcd");
    let args = ["--no-reconcile", "--token-file", path(&tokens), "--ssh-key", path(&ssh_key)];
    let options =
        Options { etcd: etcd.endpoints(), args: args.map(String::from).to_vec(), ..Options::default() };
    let ballastd = Ballastd::start_with(options).await.expect("ballastd");
    // ballastd's own secrets: used, with a warning each.
    let log = ballastd.log();
    for (what, file, mode) in [("token file", &tokens, "0644"), ("SSH key", &ssh_key, "0640")] {
        let warning = format!("the {what} {} is open to other users (mode {mode})", file.display());
        assert!(log.contains(&warning), "{warning:?} not in {log}");
    }

    let cli = |env: &[(&str, &str)], args: &[&str]| {
        let mut command = ballast_command();
        command.env("BALLAST_SERVER", ballastd.url()).env_remove("BALLAST_TOKEN_FILE");
        for (key, value) in env {
            command.env(key, value);
        }
        run(&mut command, args)
    };
    let alice = dir.path().join("alice.token");
    let ci = dir.path().join("ci.token");
    write(&alice, "alice-secret-token\n", 0o600);
    write(&ci, "  ci-secret-token-1  \n", 0o644);

    // A private file: no warning; the token is the file's content, trimmed.
    let out = cli(&[], &["--token-file", path(&alice), "pause", "job"]);
    assert_eq!((out.status.code(), stderr(&out)), (Some(1), "error: role \"job\" not found\n".to_string()));
    let out = cli(&[("BALLAST_TOKEN_FILE", path(&alice))], &["get", "roles", "-o", "json"]);
    assert_eq!((out.status.code(), stderr(&out)), (Some(0), String::new()));
    // A file others can read: used, with a warning.
    let out = cli(&[], &["--token-file", path(&ci), "get", "roles", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "warning: the token file {} is open to other users (mode 0644): `chmod 600 {}`\n",
            ci.display(),
            ci.display()
        )
    );
    // The command line wins over the environment, whichever flag it gives.
    let out = cli(&[("BALLAST_TOKEN", "not-a-token")], &["--token-file", path(&alice), "get", "roles"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = cli(&[("BALLAST_TOKEN_FILE", path(&ci))], &["--token", "alice-secret-token", "pause", "job"]);
    assert_eq!(
        stderr(&out),
        "error: role \"job\" not found\n",
        "the read-only token of the environment was used"
    );

    // What cannot be used: a clear line, nothing sent.
    let missing = dir.path().join("missing.token");
    let empty = dir.path().join("empty.token");
    let two = dir.path().join("two.token");
    write(&empty, "\n", 0o600);
    write(&two, "alice-secret-token\nci-secret-token-1\n", 0o600);
    let cases = [
        (
            vec!["--token-file", path(&missing)],
            vec![],
            1,
            format!(
                "error: cannot read the token file {}: No such file or directory (os error 2)\n",
                missing.display()
            ),
        ),
        (
            vec!["--token-file", path(&empty)],
            vec![],
            1,
            format!("error: the token file {} is empty\n", empty.display()),
        ),
        (
            vec!["--token-file", path(&two)],
            vec![],
            1,
            format!("error: the token file {} must hold the token alone, on one line\n", two.display()),
        ),
        (
            vec!["--token-file", path(&alice), "--token", "alice-secret-token"],
            vec![],
            2,
            "error: give --token or --token-file, not both\n".to_string(),
        ),
        (
            vec![],
            vec![("BALLAST_TOKEN", "alice-secret-token"), ("BALLAST_TOKEN_FILE", path(&alice))],
            2,
            "error: BALLAST_TOKEN and BALLAST_TOKEN_FILE are both set: unset one\n".to_string(),
        ),
    ];
    for (flags, env, code, message) in cases {
        let mut args = flags.clone();
        args.extend(["get", "roles"]);
        let out = cli(&env, &args);
        assert_eq!((out.status.code(), stderr(&out)), (Some(code), message), "{flags:?} {env:?}");
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
