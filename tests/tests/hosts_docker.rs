//! `DockerHost` against the real local engine, each case both through the unix socket (`LocalHost`) and
//! over SSH through a real sshd (`SshHost`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use ballast_operator::hosts::local::LocalHost;
use ballast_operator::hosts::ssh::SshHost;
use ballast_operator::hosts::{
    Connector, ContainerConfig, ContainerState, DockerHost, HostError, HttpRequest, PortBinding,
    RealConnector, RegistryAuth,
};
use ballast_specs::HostSpec;
use ballast_tests::docker::{
    app_config, app_image, container_exists, docker, inspect_field, push_app, unique_name, write_htpasswd,
    Cleanup, TestRegistry, SOCKET,
};
use ballast_tests::docker_proxy::Proxy;
use ballast_tests::sshd::TestSshd;
use ballast_tests::wait::until;
use futures::StreamExt as _;

/// Hosts to run a case on, each with a name for messages.
type Hosts = Vec<(&'static str, Arc<dyn DockerHost>)>;

/// The local engine twice: directly and over SSH. The sshd lives as long as the returned value.
fn both_hosts() -> Result<(TestSshd, Hosts)> {
    let sshd = TestSshd::start()?;
    let ssh = SshHost::new("ssh-test", &sshd.host_spec()?, sshd.ssh_config());
    let hosts: Hosts = vec![("local", Arc::new(LocalHost::new(SOCKET))), ("ssh", Arc::new(ssh))];
    Ok((sshd, hosts))
}

async fn for_both<F, Fut>(case: F) -> Result<()>
where
    F: Fn(&'static str, Arc<dyn DockerHost>) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    app_image()?;
    let (_sshd, hosts) = both_hosts()?;
    for (kind, host) in hosts {
        case(kind, host).await.with_context(|| format!("on the {kind} host"))?;
    }
    Ok(())
}

#[tokio::test]
async fn lifecycle_with_in_place_resource_updates() -> Result<()> {
    for_both(|kind, host| async move {
        let cleanup = Cleanup::new();
        let name = cleanup.container(&unique_name(&format!("hosts-life-{kind}")));
        let config =
            ContainerConfig { nano_cpus: 500_000_000, memory: 64 << 20, ..app_config(&name, "life")? };
        let id = host.create(&config).await?;

        let listed = host.list().await?;
        let mine =
            listed.iter().find(|c| c.id == id).ok_or_else(|| anyhow!("created container not listed"))?;
        assert_eq!(mine.name, name);
        assert_eq!(mine.image, config.image);
        assert_eq!(mine.state, ContainerState::Created);
        assert_eq!((mine.nano_cpus, mine.memory), (500_000_000, 64 << 20));
        assert_eq!(mine.labels.get("ballast.role").map(String::as_str), Some("life"));
        assert!(
            listed.iter().all(|c| c.labels.contains_key("ballast.role")),
            "list returns only labelled containers"
        );

        host.start(&id).await?;
        host.start(&id).await.context("starting a running container is fine")?;
        let running = host.inspect(&id).await?.ok_or_else(|| anyhow!("inspect after start"))?;
        assert_eq!(running.state, ContainerState::Running);
        assert!(running.ip.is_some(), "a running container has an ip");
        assert_eq!(host.inspect(&name).await?.map(|c| c.id), Some(id.clone()), "inspect by name");
        let started_at = inspect_field(&id, "{{.State.StartedAt}}")?;

        // Up above the old memory-swap (128m), then back down: in place, no restart.
        host.update_resources(&id, 1_500_000_000, 256 << 20).await?;
        let updated = host.inspect(&id).await?.ok_or_else(|| anyhow!("inspect after update"))?;
        assert_eq!(
            (updated.id.as_str(), updated.nano_cpus, updated.memory),
            (id.as_str(), 1_500_000_000, 256 << 20)
        );
        assert_eq!(updated.state, ContainerState::Running);
        assert_eq!(inspect_field(&id, "{{.HostConfig.MemorySwap}}")?, (512i64 << 20).to_string());
        host.update_resources(&id, 250_000_000, 32 << 20).await?;
        let lowered = host.inspect(&id).await?.ok_or_else(|| anyhow!("inspect after second update"))?;
        assert_eq!((lowered.nano_cpus, lowered.memory), (250_000_000, 32 << 20));
        assert_eq!(inspect_field(&id, "{{.State.StartedAt}}")?, started_at, "not restarted by the updates");

        // Docker cannot lift a limit in place.
        match host.update_resources(&id, 0, 32 << 20).await {
            Err(HostError::Docker { status: 409, .. }) => {}
            other => bail!("lifting the cpu limit: expected a 409, got {other:?}"),
        }

        host.stop(&id, Duration::from_secs(10)).await?;
        assert_eq!(host.inspect(&id).await?.map(|c| c.state), Some(ContainerState::Exited));
        host.stop(&id, Duration::from_secs(10)).await.context("stopping a stopped container is fine")?;
        host.remove(&id).await?;
        assert_eq!(host.inspect(&id).await?, None);
        assert!(!container_exists(&id));
        host.remove(&id).await.context("removing a removed container is fine")?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn create_applies_the_whole_config() -> Result<()> {
    for_both(|kind, host| async move {
        let cleanup = Cleanup::new();
        let name = cleanup.container(&unique_name(&format!("hosts-config-{kind}")));
        let config = ContainerConfig {
            command: vec!["sh".into(), "-c".into(), "exec sleep 600".into()],
            env: vec![("GREETING".into(), "hello world".into())],
            ports: vec![PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: 0,
                container_port: 3000,
                protocol: "tcp".into(),
            }],
            logging: Some(("json-file".into(), [("max-size".to_string(), "1m".to_string())].into())),
            memory: 48 << 20,
            ..app_config(&name, "config")?
        };
        let id = host.create(&config).await?;
        assert_eq!(inspect_field(&id, "{{json .Config.Cmd}}")?, r#"["sh","-c","exec sleep 600"]"#);
        assert!(inspect_field(&id, "{{json .Config.Env}}")?.contains(r#""GREETING=hello world""#));
        assert_eq!(inspect_field(&id, r#"{{index .Config.Labels "ballast.test"}}"#)?, "1");
        assert_eq!(inspect_field(&id, "{{.HostConfig.RestartPolicy.Name}}")?, "unless-stopped");
        assert_eq!(inspect_field(&id, "{{.HostConfig.LogConfig.Type}}")?, "json-file");
        assert_eq!(inspect_field(&id, r#"{{index .HostConfig.LogConfig.Config "max-size"}}"#)?, "1m");
        assert_eq!(inspect_field(&id, "{{.HostConfig.MemorySwap}}")?, (96i64 << 20).to_string());
        assert_eq!(
            inspect_field(&id, "{{json .HostConfig.PortBindings}}")?,
            r#"{"3000/tcp":[{"HostIp":"127.0.0.1","HostPort":"0"}]}"#
        );

        match host.create(&config).await {
            Err(HostError::Docker { status: 409, .. }) => {}
            other => bail!("a second container with the same name: expected a 409, got {other:?}"),
        }
        let missing_image = ContainerConfig {
            name: cleanup.container(&unique_name("hosts-noimage")),
            image: "ballast-test/absent:v0".into(),
            ..config.clone()
        };
        match host.create(&missing_image).await {
            Err(HostError::NotFound(message)) => {
                assert!(message.contains("ballast-test/absent"), "{message}")
            }
            other => bail!("create from a missing image: expected NotFound, got {other:?}"),
        }
        host.remove(&id).await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn missing_things_are_reported_as_such() -> Result<()> {
    for_both(|_, host| async move {
        assert_eq!(host.inspect("ballast-no-such-container").await?, None);
        assert!(matches!(host.start("ballast-no-such-container").await, Err(HostError::NotFound(_))));
        assert!(matches!(
            host.stop("ballast-no-such-container", Duration::from_secs(1)).await,
            Err(HostError::NotFound(_))
        ));
        host.remove("ballast-no-such-container").await?;
        assert!(host.image_present(app_image()?).await?);
        assert!(!host.image_present("ballast-test/absent:v0").await?);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn pulls_from_a_registry_with_and_without_auth() -> Result<()> {
    let storage = tempfile::tempdir()?;
    let open = TestRegistry::start(storage.path(), None)?;
    let reference = push_app(&open.addr, "ballast-test/pulled", "v1")?;
    let htpasswd = storage.path().join("htpasswd");
    write_htpasswd(&htpasswd, "AWS", "123456789012-auth-token")?;
    let locked = TestRegistry::start(storage.path(), Some(&htpasswd))?;
    let locked_ref = reference.replace(&open.addr, &locked.addr);
    let cleanup = Cleanup::new();
    cleanup.image(&reference);
    cleanup.image(&locked_ref);
    let (open_addr, locked_addr) = (open.addr.clone(), locked.addr.clone());

    for_both(|kind, host| {
        let (reference, locked_ref, open_addr, locked_addr) =
            (reference.clone(), locked_ref.clone(), open_addr.clone(), locked_addr.clone());
        async move {
            let _ = docker(&["image", "rm", &reference]);
            let _ = docker(&["image", "rm", &locked_ref]);
            assert!(!host.image_present(&reference).await?);
            host.pull(&reference, None).await?;
            assert!(host.image_present(&reference).await?, "{kind}: present after the pull");

            let missing = format!("{open_addr}/ballast-test/pulled:nope");
            match host.pull(&missing, None).await {
                Err(HostError::Pull { image, message }) => {
                    assert_eq!(image, missing);
                    assert!(message.contains("not found") || message.contains("unknown"), "{message}");
                }
                other => bail!("pull of a missing tag: expected a Pull error, got {other:?}"),
            }

            match host.pull(&locked_ref, None).await {
                Err(HostError::Pull { message, .. }) => {
                    assert!(message.contains("auth") || message.contains("unauthorized"), "{message}")
                }
                other => bail!("pull without credentials: expected a Pull error, got {other:?}"),
            }
            let wrong = RegistryAuth {
                username: "AWS".into(),
                password: "wrong".into(),
                server: locked_addr.clone(),
            };
            assert!(matches!(host.pull(&locked_ref, Some(&wrong)).await, Err(HostError::Pull { .. })));
            let right = RegistryAuth {
                username: "AWS".into(),
                password: "123456789012-auth-token".into(),
                server: locked_addr,
            };
            host.pull(&locked_ref, Some(&right)).await?;
            assert!(host.image_present(&locked_ref).await?);
            Ok(())
        }
    })
    .await
}

#[tokio::test]
async fn events_of_labelled_containers_only() -> Result<()> {
    for_both(|kind, host| async move {
        let cleanup = Cleanup::new();
        let mut events = host.events().await?;

        // An unlabelled container first: Docker delivers events in order, so had any of its events passed the
        // filter, it would arrive before the labelled container's.
        let plain = cleanup.container(&unique_name(&format!("hosts-plain-{kind}")));
        let plain_id = docker(&["run", "-d", "--name", &plain, "--label", "ballast.test=1", app_image()?])?;
        docker(&["rm", "--force", &plain_id])?;

        let name = cleanup.container(&unique_name(&format!("hosts-events-{kind}")));
        let id = host.create(&app_config(&name, "events")?).await?;
        host.start(&id).await?;
        host.remove(&id).await?;

        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !seen.iter().any(|(cid, action): &(String, String)| cid == &id && action == "destroy") {
            let event = tokio::time::timeout_at(deadline, events.next())
                .await
                .map_err(|_| anyhow!("no destroy event within 30s; saw {seen:?}"))?
                .ok_or_else(|| anyhow!("events stream ended; saw {seen:?}"))?;
            assert_ne!(event.container_id, plain_id, "an unlabelled container's event: {event:?}");
            if event.container_id == id {
                assert_eq!(event.labels.get("ballast.role").map(String::as_str), Some("events"));
                assert!(!event.labels.contains_key("image"), "docker's attributes are not labels");
            }
            seen.push((event.container_id, event.action));
        }
        let actions: Vec<&str> = seen.iter().filter(|(cid, _)| cid == &id).map(|(_, a)| a.as_str()).collect();
        assert_eq!(actions, ["create", "start", "die", "destroy"]);
        Ok(())
    })
    .await
}

/// How many times the proxy saw `id` inspected since `since`.
fn inspects(proxy: &Proxy, since: Instant, id: &str) -> usize {
    proxy
        .since(since)
        .iter()
        .filter(|c| c.method == "GET" && c.target.contains(&format!("/containers/{id}/json")))
        .count()
}

/// `list` reuses a container's inspect while the host's events stream is open and says nothing about it, and
/// inspects again after an event names it (an out-of-band `docker update` is seen); with no stream it
/// inspects every time. Calls are counted by a recording proxy in front of the real engine.
#[tokio::test]
async fn list_reuses_inspects_only_while_the_events_stream_vouches_for_them() -> Result<()> {
    app_image()?;
    let dir = tempfile::tempdir()?;
    let proxy = Proxy::start(&dir.path().join("docker.sock"), std::path::Path::new(SOCKET))?;
    let host = LocalHost::new(proxy.path());
    let cleanup = Cleanup::new();
    let name = cleanup.container(&unique_name("hosts-cache"));
    let id = host.create(&ContainerConfig { memory: 64 << 20, ..app_config(&name, "cache")? }).await?;
    host.start(&id).await?;
    let listed = |containers: Vec<ballast_operator::hosts::Container>| {
        containers.into_iter().find(|c| c.id == id).ok_or_else(|| anyhow!("{id} not listed"))
    };

    // No events stream: every list inspects.
    let t = Instant::now();
    listed(host.list().await?)?;
    listed(host.list().await?)?;
    assert_eq!(inspects(&proxy, t, &id), 2, "no stream: one inspect per list");

    // Stream open: the first list inspects, the next ones reuse it.
    let mut events = host.events().await?;
    let t = Instant::now();
    for _ in 0..3 {
        assert_eq!(listed(host.list().await?)?.memory, 64 << 20);
    }
    assert_eq!(inspects(&proxy, t, &id), 1, "stream open: inspected once for three lists");

    // A change made behind ballast's back arrives as an event; after it, the list shows the new limit.
    docker(&["update", "--memory", "96m", "--memory-swap", "-1", &id])?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .map_err(|_| anyhow!("no update event within 30s"))?
            .ok_or_else(|| anyhow!("events stream ended"))?;
        if event.container_id == id && event.action == "update" {
            break;
        }
    }
    assert_eq!(listed(host.list().await?)?.memory, 96 << 20, "the update event dropped the cached inspect");

    // The stream gone: back to inspecting on every list.
    drop(events);
    let t = Instant::now();
    listed(host.list().await?)?;
    listed(host.list().await?)?;
    assert_eq!(inspects(&proxy, t, &id), 2, "stream closed: one inspect per list");
    Ok(())
}

#[tokio::test]
async fn http_get_reaches_a_container_from_the_host() -> Result<()> {
    for_both(|kind, host| async move {
        let cleanup = Cleanup::new();
        let name = cleanup.container(&unique_name(&format!("hosts-http-{kind}")));
        let id = host.create(&app_config(&name, "http")?).await?;
        host.start(&id).await?;
        let ip = host.inspect(&id).await?.and_then(|c| c.ip).ok_or_else(|| anyhow!("no ip"))?;
        let timeout = Duration::from_secs(2);
        let status = until(Duration::from_secs(20), "the app to answer GET /up", || {
            let (host, ip) = (host.clone(), ip.clone());
            async move {
                match host.http_get(&ip, 3000, "/up", timeout).await {
                    Err(HostError::Http(_)) => None,
                    answer => Some(answer),
                }
            }
        })
        .await??;
        assert_eq!(status, 200);
        assert_eq!(host.http_get(&ip, 3000, "/nothing-here", timeout).await?, 404);
        match host.http_get(&ip, 3999, "/up", timeout).await {
            Err(HostError::Http(_)) => {}
            other => bail!("a closed port: expected an Http error, got {other:?}"),
        }
        host.remove(&id).await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn real_connector_picks_local_or_ssh() -> Result<()> {
    let sshd = TestSshd::start()?;
    let connector = RealConnector { ssh: sshd.ssh_config() };
    let local_spec = HostSpec { address: format!("unix://{SOCKET}"), ..sshd.host_spec()? };
    connector.connect("local", &local_spec).list().await?;
    connector.connect("ssh", &sshd.host_spec()?).list().await?;
    let missing = HostSpec { address: "unix:///nonexistent/docker.sock".into(), ..local_spec };
    match connector.connect("gone", &missing).list().await {
        Err(HostError::Unreachable(message)) => {
            assert!(message.contains("/nonexistent/docker.sock"), "{message}")
        }
        other => bail!("a missing socket: expected Unreachable, got {other:?}"),
    }
    Ok(())
}

/// What the proxy needs of a host: files written into a container and read back (the archive API), a network made
/// once, and an HTTP exchange with an address the host reaches (here a container's).
#[tokio::test]
async fn files_networks_and_http_exchanges() -> Result<()> {
    for_both(|kind, host| async move {
        let cleanup = Cleanup::new();
        let name = cleanup.container(&unique_name(&format!("hosts-files-{kind}")));
        let id = host.create(&app_config(&name, "files")?).await?;
        // Before the first start, as a new proxy gets its config.
        host.put_files(&id, &[("/ballast/upstreams/web", b"10.0.0.9:3000"), ("/ballast/upstreams/api", b"")])
            .await?;
        let read = host.files(&id, "/ballast/upstreams").await?;
        let shown: Vec<(&str, &[u8])> = read.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
        assert_eq!(shown, [("api", &b""[..]), ("web", &b"10.0.0.9:3000"[..])]);
        assert!(host.files(&id, "/nowhere").await?.is_empty(), "a missing folder has no files");
        host.start(&id).await?;
        host.put_files(&id, &[("/ballast/upstreams/web", b"10.0.0.7:3000")]).await?;
        assert_eq!(host.files(&id, "/ballast/upstreams").await?["web"], b"10.0.0.7:3000");

        let network = unique_name("ballast-test-net");
        let labels = std::collections::BTreeMap::from([("ballast.test".to_string(), "1".to_string())]);
        host.ensure_network(&network, &labels).await?;
        let made = docker(&[
            "network",
            "inspect",
            "--format",
            "{{.Driver}} {{index .Labels \"ballast.test\"}}",
            &network,
        ]);
        host.ensure_network(&network, &labels).await.context("a network that exists is fine")?;
        docker(&["network", "rm", &network])?;
        assert_eq!(made?, "bridge 1");

        let ip = host.inspect(&id).await?.and_then(|c| c.ip).ok_or_else(|| anyhow!("no ip"))?;
        let request = HttpRequest { method: "GET", path: "/up".into(), json: None };
        let answer = until(Duration::from_secs(20), "the app to answer GET /up", || {
            let (host, ip, request) = (host.clone(), ip.clone(), request.clone());
            async move {
                match host.http(&ip, 3000, &request, Duration::from_secs(2)).await {
                    Err(HostError::Http(_)) => None,
                    answer => Some(answer),
                }
            }
        })
        .await??;
        assert_eq!((answer.status, String::from_utf8_lossy(&answer.body).trim()), (200, "v1"));
        let post = HttpRequest { method: "POST", path: "/version".into(), json: Some(b"{}".to_vec()) };
        let refused = host.http(&ip, 3000, &post, Duration::from_secs(2)).await?;
        assert!(refused.status >= 400, "busybox httpd refuses a POST to a file: {}", refused.status);
        host.remove(&id).await?;
        Ok(())
    })
    .await
}
