//! `SshHost` against a real sshd: host key checks, authentication, reconnects, timeouts, concurrency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use ballast_operator::hosts::ssh::SshHost;
use ballast_operator::hosts::{DockerHost, HostError, SshConfig};
use ballast_tests::docker::{app_config, container_exists, free_port, run, unique_name, Cleanup};
use ballast_tests::sshd::TestSshd;
use futures::StreamExt as _;

/// An ed25519 key that no test server has.
const STRANGER_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB7Bpf924aKbDSk6VxpcXIFOXNN3TSs8RI+KbYUcEBvU";
/// An ecdsa key that no test server has.
const STRANGER_ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBJprjoYgUWf5xY5A55iGz1nCUTWlVJ0Y5Ch0Ct0rMRhaJ28UY4fRCc53znyprPUYeH+8c3oaGj64uKNIulvURdI=";

fn host_with(sshd: &TestSshd, config: SshConfig) -> Result<SshHost> {
    Ok(SshHost::new("ssh-test", &sshd.host_spec()?, config))
}

/// A known_hosts file (in the sshd's folder) with the given lines.
fn known_hosts_file(sshd: &TestSshd, file: &str, lines: &[String]) -> Result<std::path::PathBuf> {
    let path = sshd.dir().join(file);
    std::fs::write(&path, lines.join("\n") + "\n")?;
    Ok(path)
}

fn host_key_error(result: Result<impl std::fmt::Debug, HostError>) -> Result<String> {
    match result {
        Err(HostError::HostKey(message)) => Ok(message),
        other => bail!("expected a host key error, got {other:?}"),
    }
}

#[tokio::test]
async fn unknown_host_key_is_refused_on_every_call_and_nothing_is_done() -> Result<()> {
    let sshd = TestSshd::start()?;
    let other =
        known_hosts_file(&sshd, "other_hosts", &[format!("[127.0.0.1]:{} {STRANGER_KEY}", sshd.port + 1)])?;
    let host = host_with(&sshd, SshConfig { known_hosts: Some(other), ..sshd.ssh_config() })?;
    let cleanup = Cleanup::new();
    let name = cleanup.container(&unique_name("hosts-refused"));

    let message = host_key_error(host.create(&app_config(&name, "refused")?).await)?;
    assert!(message.contains("is not in known_hosts"), "{message}");
    assert!(message.contains(&format!("[127.0.0.1]:{}", sshd.port)), "{message}");
    host_key_error(host.list().await)?;
    host_key_error(host.start(&name).await)?;
    host_key_error(host.remove(&name).await)?;
    host_key_error(host.events().await.map(|_| ()))?;
    host_key_error(host.http_get("127.0.0.1", sshd.port, "/", Duration::from_secs(1)).await)?;
    assert!(!container_exists(&name), "nothing was created");
    assert_eq!(sshd.logins(), 0);
    Ok(())
}

#[tokio::test]
async fn changed_host_key_is_refused() -> Result<()> {
    let sshd = TestSshd::start()?;
    let changed =
        known_hosts_file(&sshd, "changed_hosts", &[format!("[127.0.0.1]:{} {STRANGER_KEY}", sshd.port)])?;
    let host = host_with(&sshd, SshConfig { known_hosts: Some(changed), ..sshd.ssh_config() })?;
    let message = host_key_error(host.list().await)?;
    assert_eq!(
        message,
        format!(
            "host key of [127.0.0.1]:{} does not match known_hosts (possible man-in-the-middle)",
            sshd.port
        )
    );
    // Backoff keeps the verdict; so does the next dial after it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sshd.connections() < 2 {
        host_key_error(host.list().await)?;
        assert!(Instant::now() < deadline, "no second dial within 10s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sshd.logins(), 0);
    Ok(())
}

#[tokio::test]
async fn only_other_key_types_on_record_is_a_mismatch() -> Result<()> {
    let sshd = TestSshd::start()?;
    let ecdsa =
        known_hosts_file(&sshd, "ecdsa_hosts", &[format!("[127.0.0.1]:{} {STRANGER_ECDSA}", sshd.port)])?;
    let host = host_with(&sshd, SshConfig { known_hosts: Some(ecdsa), ..sshd.ssh_config() })?;
    let message = host_key_error(host.list().await)?;
    assert!(message.contains("does not match known_hosts"), "{message}");
    assert!(message.contains("ssh-ed25519"), "names what the server offers: {message}");
    Ok(())
}

#[tokio::test]
async fn hashed_known_hosts_and_several_entries_work() -> Result<()> {
    let sshd = TestSshd::start()?;
    let mine = std::fs::read_to_string(sshd.known_hosts())?;
    let hashed = known_hosts_file(
        &sshd,
        "hashed_hosts",
        &[
            format!("# several hosts\n10.9.9.9 {STRANGER_KEY}\n[127.0.0.1]:{} {STRANGER_ECDSA}", sshd.port),
            mine,
        ],
    )?;
    run("ssh-keygen", &["-H", "-f", &hashed.display().to_string()])?;
    assert!(std::fs::read_to_string(&hashed)?.contains("|1|"));
    let host = host_with(&sshd, SshConfig { known_hosts: Some(hashed), ..sshd.ssh_config() })?;
    host.list().await?;
    Ok(())
}

#[tokio::test]
async fn no_known_hosts_file_refuses_every_ssh_host() -> Result<()> {
    let sshd = TestSshd::start()?;
    let host = host_with(&sshd, SshConfig { known_hosts: None, ..sshd.ssh_config() })?;
    let message = host_key_error(host.list().await)?;
    assert!(message.contains("no known_hosts file configured"), "{message}");
    Ok(())
}

#[tokio::test]
async fn a_key_the_server_does_not_know_is_unreachable() -> Result<()> {
    let sshd = TestSshd::start()?;
    let host = host_with(&sshd, SshConfig { key_path: Some(sshd.stranger_key()), ..sshd.ssh_config() })?;
    match host.list().await {
        Err(HostError::Unreachable(message)) => assert!(message.contains("authentication"), "{message}"),
        other => bail!("expected Unreachable, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn a_silent_server_times_out() -> Result<()> {
    let sshd = TestSshd::start()?;
    // Accepts TCP connections (the kernel does) but never speaks SSH.
    let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = silent.local_addr()?.port();
    let known = known_hosts_file(&sshd, "silent_hosts", &[format!("[127.0.0.1]:{port} {STRANGER_KEY}")])?;
    let spec = ballast_specs::HostSpec { port, ..sshd.host_spec()? };
    let host = SshHost::new("silent", &spec, SshConfig { known_hosts: Some(known), ..sshd.ssh_config() });
    let started = Instant::now();
    match host.list().await {
        Err(HostError::Unreachable(message)) => assert!(message.contains("timed out"), "{message}"),
        other => bail!("expected Unreachable, got {other:?}"),
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(4) && took < Duration::from_secs(8), "took {took:?}");
    Ok(())
}

#[tokio::test]
async fn reconnects_after_the_server_comes_back() -> Result<()> {
    let mut sshd = TestSshd::start()?;
    let host = host_with(&sshd, sshd.ssh_config())?;
    host.list().await?;
    let mut events = host.events().await?;
    assert_eq!(sshd.logins(), 1);

    sshd.stop();
    let ended = tokio::time::timeout(Duration::from_secs(20), events.next()).await;
    assert!(matches!(ended, Ok(None)), "the events stream ends with the connection: {ended:?}");
    match host.list().await {
        Err(HostError::Unreachable(_)) => {}
        other => bail!("server down: expected Unreachable, got {other:?}"),
    }
    let started = Instant::now();
    assert!(matches!(host.list().await, Err(HostError::Unreachable(_))));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a failed dial answers at once: {:?}",
        started.elapsed()
    );

    sshd.restart()?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match host.list().await {
            Ok(_) => break,
            Err(HostError::Unreachable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => bail!("after the restart: {e}"),
        }
    }
    assert_eq!(sshd.logins(), 2, "one new session after the restart");
    let _events = host.events().await?;
    Ok(())
}

#[tokio::test]
async fn a_refused_port_is_unreachable() -> Result<()> {
    let sshd = TestSshd::start()?;
    let spec = ballast_specs::HostSpec { port: free_port()?, ..sshd.host_spec()? };
    let known =
        known_hosts_file(&sshd, "closed_hosts", &[format!("[127.0.0.1]:{} {STRANGER_KEY}", spec.port)])?;
    let host = SshHost::new("closed", &spec, SshConfig { known_hosts: Some(known), ..sshd.ssh_config() });
    match host.list().await {
        Err(HostError::Unreachable(message)) => {
            assert!(message.contains("connect to 127.0.0.1"), "{message}")
        }
        other => bail!("expected Unreachable, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn many_concurrent_calls_share_one_session() -> Result<()> {
    let sshd = TestSshd::start()?;
    let host = Arc::new(host_with(&sshd, sshd.ssh_config())?);
    let calls = (0..32).map(|_| {
        let host = host.clone();
        async move { host.list().await }
    });
    let results = futures::future::join_all(calls).await;
    let failed: Vec<&HostError> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "failed calls: {failed:?}");
    assert_eq!(sshd.logins(), 1);
    Ok(())
}

#[tokio::test]
async fn a_missing_docker_socket_is_unreachable() -> Result<()> {
    let sshd = TestSshd::start()?;
    let spec =
        ballast_specs::HostSpec { docker_socket: "/nonexistent/docker.sock".into(), ..sshd.host_spec()? };
    let host = SshHost::new("nosocket", &spec, sshd.ssh_config());
    match host.list().await {
        Err(HostError::Unreachable(message)) => {
            assert!(message.contains("/nonexistent/docker.sock"), "{message}")
        }
        other => bail!("expected Unreachable, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn labelled_test_containers_are_cleaned_up() -> Result<()> {
    // The guard removes what it tracks, and only that.
    let name = unique_name("hosts-guard");
    {
        let cleanup = Cleanup::new();
        cleanup.container(&name);
        let sshd = TestSshd::start()?;
        let host = host_with(&sshd, sshd.ssh_config())?;
        host.create(&app_config(&name, "guard")?).await?;
        assert!(container_exists(&name));
    }
    if container_exists(&name) {
        return Err(anyhow!("{name} survived its cleanup guard"));
    }
    Ok(())
}
