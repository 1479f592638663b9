//! End-to-end rollout groups (issue 10, item 3) on the rig, with the real binaries: a tier of two roles (`web` on h1,
//! `web_replica` on h2, `rollout: {group: web, maxUnavailable: 1}`) through an image change by label selector and a
//! secret rotation, while both hosts' Docker engines are sampled every 20 ms: at no sample are both units being
//! replaced. A failed rollout halts the whole tier; an unknown selector is refused and changes nothing.
//!
//! "Being replaced": the host does not show exactly one running container of the unit's role (the old one is
//! stopped, the new one created but not started, or old and new side by side). Before issue 10 each role had its
//! own rollout lock, so an image change of both roles replaced both at once: this check failed on that code.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use ballast_e2e::stage::{tail, text, Setup, Stage, WAIT};
use ballast_e2e::{until, Rig};
use ballast_specs::wire::UnitState;
use ballast_tests::TestEtcd;
use bollard::query_parameters::ListContainersOptions;
use bollard::{ClientVersion, Docker};

/// The secret both roles read, as in the seed deployment.
const SECRET: &str = "data-lake/prod";
/// How often the sampler looks at both hosts.
const EVERY: Duration = Duration::from_millis(20);
/// The two units of the tier: (host index, role).
const TIER: [(usize, &str); 2] = [(1, "web"), (2, "web_replica")];

#[tokio::test]
async fn a_tier_rolls_one_unit_at_a_time_through_an_image_change_and_a_secret_rotation() -> Result<()> {
    let rig = Rig::acquire()?;
    let etcd = TestEtcd::start().await?;
    let setup = Setup {
        aws: true,
        args: ["--secrets-refresh", "2s", "--resync", "1s"].iter().map(|a| a.to_string()).collect(),
        ..Setup::default()
    };
    let stage = Stage::start(&rig, etcd.endpoints(), &setup).await?;
    stage.moto()?.create_secret(SECRET, &secret("first")).await?;
    stage.apply_yaml("tier.yaml", &tier(&rig.image("v1"), "30s"))?;
    stage.converge()?;

    // An image change of the whole tier, by its label, waited for.
    let sampler = Sampler::start(&rig)?;
    let started = Instant::now();
    let v2 = rig.image("v2");
    let out = stage.ok(&["set", "image", "--selector", "app=datalake", &v2, "--wait", "--timeout", "90s"])?;
    let took = started.elapsed();
    ensure!(
        out.starts_with(
            "role/web image updated (generation 2)\nrole/web_replica image updated (generation 2)\n"
        ),
        "{out}"
    );
    let windows = sampler.stop()?.one_at_a_time()?;
    for (i, _) in TIER {
        ensure!(rig.curl(i, 3000, "/up")? == "v2", "h{i} does not answer v2");
    }
    eprintln!(
        "image change of the tier: set image --wait took {:.2} s; replaced for {windows}",
        took.as_secs_f64()
    );

    // A rotation of the secret both roles read: each is replaced by itself, one at a time.
    let before: Vec<String> =
        TIER.iter().map(|(i, role)| rig.container_of(*i, role)).collect::<Result<_>>()?;
    let sampler = Sampler::start(&rig)?;
    let rotated = Instant::now();
    stage.moto()?.put_secret_value(SECRET, &secret("second")).await?;
    for ((i, role), old) in TIER.iter().zip(&before) {
        until(WAIT, &format!("{role} replaced on h{i} with the new value"), || {
            let id = rig.container_of(*i, role).ok()?;
            let running = rig.inspect(*i, &id, "{{.State.Running}}").ok()? == "true";
            let env = rig.docker(*i, &["exec", &id, "env"]).ok()?;
            (id != *old && running && env.lines().any(|l| l == "SECRET_KEY_BASE=second")).then_some(())
        })
        .with_context(|| format!("ballastd log tail:\n{}", tail(&stage.ballastd.log())))?;
    }
    stage.converge()?;
    let took = rotated.elapsed();
    let windows = sampler.stop()?.one_at_a_time()?;
    eprintln!(
        "secret rotation of the tier: both replaced {:.2} s after it; replaced for {windows}",
        took.as_secs_f64()
    );
    Ok(())
}

#[tokio::test]
async fn a_failed_rollout_halts_the_tier_and_an_unknown_selector_changes_nothing() -> Result<()> {
    let rig = Rig::acquire()?;
    let etcd = TestEtcd::start().await?;
    let setup = Setup { aws: true, args: vec!["--resync".into(), "1s".into()], ..Setup::default() };
    let stage = Stage::start(&rig, etcd.endpoints(), &setup).await?;
    stage.moto()?.create_secret(SECRET, &secret("first")).await?;
    stage.apply_yaml("tier.yaml", &tier(&rig.image("v1"), "5s"))?;
    stage.converge()?;
    let containers = || -> Result<Vec<(String, String)>> {
        TIER.iter()
            .map(|(i, role)| {
                let id = rig.container_of(*i, role)?;
                let started = rig.inspect(*i, &id, "{{.State.StartedAt}}")?;
                Ok((id, started))
            })
            .collect()
    };
    let before = containers()?;
    let roles = || stage.ok(&["get", "roles", "-o", "json"]);
    let stored = roles()?;

    // No role has the labels: refused, nothing stored, nothing touched.
    let out = stage.ballastd.ballast(&["set", "image", "--selector", "app=nope", &rig.image("v2")]);
    ensure!(
        out.status.code() == Some(1),
        "an unknown selector exited {:?}: {}",
        out.status.code(),
        text(&out)
    );
    ensure!(
        String::from_utf8_lossy(&out.stderr) == "error: role with labels \"app=nope\" not found\n",
        "{}",
        text(&out)
    );
    ensure!(roles()? == stored, "the roles changed");
    ensure!(containers()? == before, "a container changed");

    // An image that never answers its health check, for the whole tier: the first unit to roll fails, and the other
    // is never tried.
    let bad = rig.image("bad");
    let out =
        stage.ballastd.ballast(&["set", "image", "-l", "app=datalake", &bad, "--wait", "--timeout", "90s"]);
    ensure!(
        out.status.code() == Some(1),
        "set image --wait on a failing tier exited {:?}: {}",
        out.status.code(),
        text(&out)
    );
    let (mut tried, mut halted) = (None, None);
    until(WAIT, "both units Failed", || {
        let statuses = stage.statuses().ok()?;
        let failed: Vec<_> =
            statuses.into_iter().filter(|s| s.state == UnitState::Failed && s.generation == 2).collect();
        (failed.len() == 2).then(|| {
            for s in failed {
                if s.failed.is_some() {
                    tried = Some(s);
                } else {
                    halted = Some(s);
                }
            }
        })
    })
    .with_context(|| format!("statuses: {:?}", stage.statuses()))?;
    let (tried, halted) =
        (tried.context("no unit tried the rollout")?, halted.context("no unit was halted")?);
    ensure!(tried.message.contains("not healthy within deployTimeout 5s"), "{}", tried.message);
    let expected = format!(
        "halted: the rollout of {} failed on {}: {}; `ballast rollout retry {}` tries it again",
        tried.role, tried.host, tried.message, tried.role
    );
    ensure!(halted.message == expected, "halted unit's message: {}\nexpected: {expected}", halted.message);
    eprintln!(
        "{} failed on {}; {} on {}: {}",
        tried.role, tried.host, halted.role, halted.host, halted.message
    );

    // The halted unit's container was never stopped; both answer v1, for two resyncs and more.
    let after = Instant::now() + Duration::from_secs(3);
    while Instant::now() < after {
        for ((i, role), (id, started)) in TIER.iter().zip(&before) {
            if *role == halted.role {
                ensure!(rig.container_of(*i, role)? == *id, "the halted {role} was replaced");
                ensure!(
                    rig.inspect(*i, id, "{{.State.StartedAt}}")? == *started,
                    "the halted {role} was restarted"
                );
            }
            ensure!(rig.curl(*i, 3000, "/up")? == "v1", "h{i} does not answer v1");
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // A good image for the tier lifts the halt (a new generation of the role that failed) and rolls both.
    let v2 = rig.image("v2");
    stage.ok(&["set", "image", "-l", "app=datalake", &v2, "--wait", "--timeout", "90s"])?;
    for (i, _) in TIER {
        ensure!(rig.curl(i, 3000, "/up")? == "v2", "h{i} does not answer v2");
    }
    Ok(())
}

/// The tier at `image`: `web` on h1 and `web_replica` on h2, labelled `app: datalake`, in rollout group `web` with
/// `maxUnavailable: 1`, health-checked on `/up`, publishing 3000 (so stop-first), reading `SECRET_KEY_BASE`.
fn tier(image: &str, deploy_timeout: &str) -> String {
    let role = |name: &str, host: &str| {
        format!(
            r#"apiVersion: ballast/v1
kind: Role
metadata: {{name: {name}, labels: {{app: datalake}}}}
spec:
  hosts: [{host}]
  image: {image}
  env: {{RAILS_ENV: production}}
  secrets: {{source: 'aws-secretsmanager:{SECRET}', keys: [SECRET_KEY_BASE]}}
  ports: ["3000:3000"]
  health: {{http: {{path: /up, port: 3000}}, interval: 1s, timeout: 5s}}
  deployTimeout: {deploy_timeout}
  rollout: {{group: web, maxUnavailable: 1}}
"#
        )
    };
    format!("{}---\n{}", role("web", "h1"), role("web_replica", "h2"))
}

/// The secret's JSON with `value` as `SECRET_KEY_BASE`.
fn secret(value: &str) -> String {
    serde_json::json!({ "SECRET_KEY_BASE": value }).to_string()
}

/// Looks at both units of the tier every [`EVERY`], on a thread of its own, until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<Samples>>,
}

/// What the sampler saw: at each sample, each unit's containers (`state` of each) and whether it was being replaced.
struct Samples(Vec<(Duration, [Vec<String>; 2])>);

impl Sampler {
    fn start(rig: &Rig) -> Result<Sampler> {
        // The rig's dockerd is 20.10 (API 1.41); its sockets are reachable from the root namespace.
        let api = ClientVersion { major_version: 1, minor_version: 41 };
        let mut engines = Vec::new();
        for (i, _) in TIER {
            let socket = rig.var(&format!("RIG_H{i}_DOCKER"))?.to_string();
            engines.push(
                Docker::connect_with_unix(&socket, 10, &api)
                    .with_context(|| format!("connecting to {socket}"))?,
            );
        }
        let stop = Arc::new(AtomicBool::new(false));
        let done = stop.clone();
        let thread = std::thread::spawn(move || -> Result<Samples> {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async move {
                let started = Instant::now();
                let mut ticker = tokio::time::interval(EVERY);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut samples = Vec::new();
                while !done.load(Ordering::SeqCst) {
                    ticker.tick().await;
                    let (a, b) = tokio::join!(states(&engines[0], TIER[0].1), states(&engines[1], TIER[1].1));
                    samples.push((started.elapsed(), [a?, b?]));
                }
                Ok(Samples(samples))
            })
        });
        Ok(Sampler { stop, thread })
    }

    fn stop(self) -> Result<Samples> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().map_err(|_| anyhow::anyhow!("the sampler panicked"))?
    }
}

impl Samples {
    /// Fails at the first sample where both units were being replaced, or when a unit was never seen being replaced
    /// (nothing was measured); else how long each was seen being replaced.
    fn one_at_a_time(&self) -> Result<String> {
        ensure!(self.0.len() >= 10, "only {} samples", self.0.len());
        if let Some((at, states)) = self.0.iter().find(|(_, s)| replaced(&s[0]) && replaced(&s[1])) {
            bail!(
                "at {:.3} s both units were being replaced: h1 {:?}, h2 {:?}",
                at.as_secs_f64(),
                states[0],
                states[1]
            );
        }
        let mut windows = Vec::new();
        for (n, (i, role)) in TIER.iter().enumerate() {
            let seen = self.0.iter().filter(|(_, s)| replaced(&s[n])).count();
            ensure!(seen > 0, "{role} on h{i} was never seen being replaced in {} samples", self.0.len());
            windows.push(format!("{role} ~{} ms", seen as u128 * EVERY.as_millis()));
        }
        Ok(format!("{} ({} samples, none with both)", windows.join(", "), self.0.len()))
    }
}

/// Not exactly one running container.
fn replaced(states: &[String]) -> bool {
    !(states.len() == 1 && states[0] == "running")
}

/// The states of every container of `role` on an engine (`running`, `exited`, `created`, ...).
async fn states(docker: &Docker, role: &str) -> Result<Vec<String>> {
    let filters = HashMap::from([("label".to_string(), vec![format!("ballast.role={role}")])]);
    let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
    let listed = docker.list_containers(Some(options)).await.context("listing containers")?;
    Ok(listed.into_iter().map(|c| c.state.map(|s| s.to_string()).unwrap_or_default()).collect())
}
