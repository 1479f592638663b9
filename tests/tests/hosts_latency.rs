//! The cost of `list` through the local socket and over SSH: median of 200 calls each, printed for the record.
//!
//! Run with `--nocapture` to see the numbers; the bounds only catch a broken connection reuse (a fresh SSH
//! session or a new socket handshake per call would blow them).

use std::time::{Duration, Instant};

use anyhow::Result;
use ballast_operator::hosts::local::LocalHost;
use ballast_operator::hosts::ssh::SshHost;
use ballast_operator::hosts::DockerHost;
use ballast_tests::docker::{app_config, unique_name, Cleanup, SOCKET};
use ballast_tests::sshd::TestSshd;

const CALLS: usize = 200;

async fn median_list(host: &dyn DockerHost) -> Result<(Duration, usize)> {
    let mut listed = 0;
    for _ in 0..10 {
        listed = host.list().await?.len();
    }
    let mut times = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let started = Instant::now();
        host.list().await?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok((times[CALLS / 2], listed))
}

#[tokio::test]
async fn list_latency_local_and_over_ssh() -> Result<()> {
    let cleanup = Cleanup::new();
    let name = cleanup.container(&unique_name("hosts-latency"));
    let local = LocalHost::new(SOCKET);
    local.create(&app_config(&name, "latency")?).await?;
    let sshd = TestSshd::start()?;
    let ssh = SshHost::new("latency", &sshd.host_spec()?, sshd.ssh_config());

    let (local_median, listed) = median_list(&local).await?;
    let (ssh_median, _) = median_list(&ssh).await?;
    println!(
        "list (1 list + {listed} inspects), median of {CALLS}: local socket {local_median:?}, ssh {ssh_median:?}"
    );
    assert!(local_median < Duration::from_millis(250), "local {local_median:?}");
    assert!(ssh_median < Duration::from_millis(250), "ssh {ssh_median:?}");
    assert_eq!(sshd.logins(), 1, "one ssh session for all calls");
    Ok(())
}
