//! A seeded fault suite on the rig: rollouts (images set back and forth between v1, v2 and v3 on roles spanning
//! both hosts) hit at random moments by `kill -9` of `ballastd`, cut host links, etcd restarts and out-of-band
//! Docker changes. After each fault, within a bound: every unit `Converged` at its generation, exactly one
//! container per (role, host) with the desired image and limits, running, and every unlabelled container still
//! running.
//!
//! The seed comes from `BALLAST_FAULT_SEED` or the clock and is printed first; it decides which fault, which
//! roles and images, and the delays, so a failure can be replayed (timing on a real rig still varies).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use ballast_e2e::stage::{leads, tail, text, Setup};
use ballast_e2e::{ballastd_options, fault_seed, until, Rig, Rng};
use ballast_specs::wire::{UnitState, UnitStatus};
use ballast_tests::ballastd::Ballastd;
use ballast_tests::{process, TestEtcd};

/// How long the fleet may take to converge after a fault.
const WAIT: Duration = Duration::from_secs(90);
const HOSTS: [usize; 2] = [1, 2];
const TAGS: [&str; 3] = ["v1", "v2", "v3"];

/// The roles, each on both hosts: name and memory limit in bytes.
const ROLES: [(&str, i64); 3] = [("web", 256 << 20), ("api", 128 << 20), ("job", 64 << 20)];

/// web: stop-first with a published port and a health check; api: start-first, health-checked on its container
/// port only; job: no health check (it must stay up for the settle time), its own command.
fn roles_yaml(rig: &Rig, images: &BTreeMap<&str, &str>) -> String {
    let image = |role: &str| rig.image(images.get(role).copied().unwrap_or("v1"));
    format!(
        r#"apiVersion: ballast/v1
kind: Role
metadata: {{name: web}}
spec:
  hosts: [h1, h2]
  image: {web}
  resources: {{cpus: 0.5, memory: 256m}}
  env: {{RAILS_ENV: production}}
  ports: ["3000:3000"]
  health: {{http: {{path: /up, port: 3000}}, interval: 1s, timeout: 5s}}
  deployTimeout: 30s
---
apiVersion: ballast/v1
kind: Role
metadata: {{name: api}}
spec:
  hosts: [h1, h2]
  image: {api}
  resources: {{memory: 128m}}
  health: {{http: {{path: /up, port: 3000}}, interval: 1s, timeout: 5s}}
  deployTimeout: 30s
  strategy: start-first
---
apiVersion: ballast/v1
kind: Role
metadata: {{name: job}}
spec:
  hosts: [h1, h2]
  image: {job}
  command: [sh, -c, "trap 'exit 0' TERM; while true; do sleep 1 & wait $!; done"]
  resources: {{cpus: 0.25, memory: 64m}}
  deployTimeout: 30s
"#,
        web = image("web"),
        api = image("api"),
        job = image("job"),
    )
}

/// What can go wrong during a rollout.
#[derive(Clone, Debug)]
enum Fault {
    /// `kill -9` of ballastd, restarted after `down`; `twice`: killed again soon after the restart.
    Kill { down: Duration, twice: Option<Duration> },
    /// Two ballastd: `kill -9` of the one that leads, a new one started after `down` (it stands by).
    KillLeader { down: Duration },
    /// Host `host`'s link cut for `down`, then restored.
    Link { host: usize, down: Duration },
    /// etcd killed, started again after `down` on the same ports and data.
    Etcd { down: Duration },
    /// A change made by hand on a host.
    OutOfBand(Change),
}

#[derive(Clone, Debug)]
enum Change {
    Remove {
        host: usize,
        role: &'static str,
        pick: u64,
    },
    Stop {
        host: usize,
        role: &'static str,
        pick: u64,
    },
    Memory {
        host: usize,
        role: &'static str,
        pick: u64,
    },
    Rename {
        host: usize,
        role: &'static str,
        pick: u64,
    },
    /// An unlabelled container of someone else's.
    Bystander {
        host: usize,
    },
}

/// A real etcd, a real ballastd on it for the rig, the hosts and roles applied, and what the suite expects.
struct Stage {
    run: ballast_e2e::stage::Stage,
    /// A second ballastd on the same etcd (the leader-kill test): one of the two leads.
    standby: Option<Ballastd>,
    /// The arguments both get.
    setup: Setup,
    etcd: TestEtcd,
    /// The tag each role should run.
    images: BTreeMap<&'static str, &'static str>,
    /// Unlabelled containers that must keep running: (host, id).
    bystanders: Vec<(usize, String)>,
    /// How many ballastd processes were killed with SIGKILL.
    kills: usize,
}

impl Stage {
    async fn start(rig: &Rig) -> Result<Stage> {
        Stage::start_with(rig, Setup::default(), false).await
    }

    /// With `pair`, a second ballastd stands by; both get `setup`.
    async fn start_with(rig: &Rig, setup: Setup, pair: bool) -> Result<Stage> {
        let etcd = TestEtcd::start().await?;
        let run = ballast_e2e::stage::Stage::start(rig, etcd.endpoints(), &setup).await?;
        let images = ROLES.iter().map(|(r, _)| (*r, "v1")).collect();
        let mut stage = Stage { run, standby: None, setup, etcd, images, bystanders: Vec::new(), kills: 0 };
        if pair {
            stage.standby = Some(stage.another_ballastd(rig).await?);
        }
        for host in HOSTS {
            stage.add_bystander(rig, host)?;
        }
        let yaml = roles_yaml(rig, &stage.images_map());
        stage.apply_yaml("roles.yaml", &yaml)?;
        stage.converge(rig, false)?;
        Ok(stage)
    }

    fn images_map(&self) -> BTreeMap<&str, &str> {
        self.images.iter().map(|(r, t)| (*r, *t)).collect()
    }

    fn ok(&self, args: &[&str]) -> Result<String> {
        self.run.ok(args)
    }

    fn apply_yaml(&self, name: &str, yaml: &str) -> Result<String> {
        self.run.apply_yaml(name, yaml)
    }

    fn statuses(&self) -> Result<Vec<UnitStatus>> {
        self.run.statuses()
    }

    /// Kills ballastd with SIGKILL (by its PID) and starts a new one on the same etcd after `down`.
    async fn kill_and_restart(&mut self, rig: &Rig, down: Duration) -> Result<()> {
        kill(self.run.ballastd.pid().context("ballastd pid")?)?;
        self.kills += 1;
        tokio::time::sleep(down).await;
        self.run.replace(rig, None, &self.setup.clone()).await?;
        Ok(())
    }

    /// A ballastd like the stage's, on the same etcd and moto.
    async fn another_ballastd(&self, rig: &Rig) -> Result<Ballastd> {
        let aws = self.run.moto.as_ref().map(|m| m.endpoint());
        let args: Vec<&str> = self.setup.args.iter().map(String::as_str).collect();
        Ballastd::start_with(ballastd_options(rig, &self.etcd.endpoints(), aws.as_deref(), &args)?).await
    }

    /// Kills whichever of the two ballastd leads (SIGKILL, by PID) and, after `down`, starts a new one in its place.
    async fn kill_leader(&mut self, rig: &Rig, down: Duration) -> Result<()> {
        let standby = self.standby.as_ref().context("the stage has one ballastd")?;
        let first = until(Duration::from_secs(30), "one of the two to lead", || {
            match (leads(&self.run.ballastd)?, leads(standby)?) {
                (true, false) => Some(true),
                (false, true) => Some(false),
                _ => None,
            }
        })?;
        let leader = if first { &self.run.ballastd } else { standby };
        kill(leader.pid().context("ballastd pid")?)?;
        self.kills += 1;
        tokio::time::sleep(down).await;
        if first {
            self.run.replace(rig, None, &self.setup.clone()).await?;
        } else {
            self.standby = Some(self.another_ballastd(rig).await?);
        }
        Ok(())
    }

    fn add_bystander(&mut self, rig: &Rig, host: usize) -> Result<()> {
        let image = rig.image("v1");
        rig.pull(host, &image)?;
        let name = format!("bystander-{}", self.bystanders.len() + 1);
        let id = rig.docker(host, &["run", "-d", "--name", &name, "--label", "e2e.bystander=1", &image])?;
        self.bystanders.push((host, id));
        Ok(())
    }

    /// `ballast status --wait`, then every invariant, within [`WAIT`]. A unit whose rollout failed because the
    /// fault stopped or removed its new container before it was healthy is `Failed` by design (the rollout
    /// halts): with `may_fail`, such units get one `ballast rollout retry` and must then converge.
    fn converge(&self, rig: &Rig, may_fail: bool) -> Result<Duration> {
        let started = Instant::now();
        let out = self.run.ballastd.ballast(&["status", "--wait", "--timeout", "90s"]);
        let retried = !out.status.success() && may_fail && self.retry_failed_by_the_fault()?;
        if !out.status.success() && !retried {
            bail!(
                "status --wait failed ({}): {}\nstatuses: {:#?}\nevents:\n{}\nballastd log tail:\n{}",
                out.status,
                text(&out),
                self.statuses().ok(),
                tail(&self.ok(&["events"]).unwrap_or_default()),
                tail(&self.run.ballastd.log())
            );
        }
        let mut last = String::new();
        let checked =
            until(WAIT.saturating_sub(started.elapsed()), "every invariant", || match self.check(rig) {
                Ok(()) => Some(()),
                Err(e) => {
                    last = format!("{e:#}");
                    None
                }
            });
        checked.with_context(|| {
            format!("last: {last}\nballastd log tail:\n{}", tail(&self.run.ballastd.log()))
        })?;
        Ok(started.elapsed())
    }

    /// Asks `rollout retry` of every role with a unit that failed because its new container was stopped or
    /// removed by hand before it was healthy (the role's other units are then halted as `Failed` too); false
    /// when some role failed otherwise (or none failed).
    fn retry_failed_by_the_fault(&self) -> Result<bool> {
        let failed: Vec<UnitStatus> =
            self.statuses()?.into_iter().filter(|s| s.state == UnitState::Failed).collect();
        let by_the_fault = |m: &str| {
            ["during its health check", "start failed", "disappeared"].iter().any(|cause| m.contains(cause))
        };
        let mut roles: Vec<&str> =
            failed.iter().filter(|s| by_the_fault(&s.message)).map(|s| s.role.as_str()).collect();
        roles.sort();
        roles.dedup();
        if roles.is_empty() || failed.iter().any(|s| !roles.contains(&s.role.as_str())) {
            return Ok(false);
        }
        for s in &failed {
            println!(
                "  {}/{} failed after the change made by hand ({:?}): rollout retry",
                s.role, s.host, s.message
            );
        }
        for role in roles {
            self.ok(&["rollout", "retry", role])?;
        }
        Ok(true)
    }

    /// Every unit converged at its generation on the desired image; one container per (role, host), running,
    /// with the role's image and memory; no other ballast container; every bystander running.
    fn check(&self, rig: &Rig) -> Result<()> {
        let statuses = self.statuses()?;
        ensure!(statuses.len() == ROLES.len() * HOSTS.len(), "{} statuses: {statuses:#?}", statuses.len());
        for s in &statuses {
            let want = rig.image(self.images.get(s.role.as_str()).context("unknown role in status")?);
            ensure!(
                s.state == UnitState::Converged && s.observed_generation == s.generation && s.image == want,
                "{}/{}: {:?} at {}/{} on {:?}: {}",
                s.role,
                s.host,
                s.state,
                s.observed_generation,
                s.generation,
                s.image,
                s.message
            );
        }
        for host in HOSTS {
            let all = rig.containers(host, "ballast.role")?;
            ensure!(all.len() == ROLES.len(), "{} ballast containers on h{host}", all.len());
            for (role, memory) in ROLES {
                let ids = rig.containers(host, &format!("ballast.role={role}"))?;
                ensure!(ids.len() == 1, "{} {role} containers on h{host}", ids.len());
                let shape = rig.inspect(
                    host,
                    &ids[0],
                    "{{.Config.Image}} {{.State.Running}} {{.HostConfig.Memory}} {{index .Config.Labels \"ballast.host\"}}",
                )?;
                let want = format!("{} true {memory} h{host}", rig.image(self.images[role]));
                ensure!(shape == want, "{role} on h{host}: {shape}, expected {want}");
            }
        }
        for (host, id) in &self.bystanders {
            let running = rig.inspect(*host, id, "{{.State.Running}}")?;
            ensure!(running == "true", "the unlabelled container {id} on h{host} was touched");
        }
        Ok(())
    }
}

/// `kill -9` of a process by PID, and waits until it is gone.
fn kill(pid: u32) -> Result<()> {
    process::kill(pid)?;
    until(Duration::from_secs(10), "the killed ballastd to be gone", || {
        (!process::is_running(pid)).then_some(())
    })
}

/// The seed of this test: the suite's seed mixed with the test's name, so tests differ but replay together.
fn seeded(test: &str) -> Result<Rng> {
    let seed = fault_seed()?;
    println!("fault seed {seed} (replay: BALLAST_FAULT_SEED={seed} cargo nextest run -p ballast-e2e --test faults {test})");
    let salt =
        test.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    Ok(Rng::new(seed ^ salt))
}

/// One cycle: start a rollout of 1 to 3 roles to other tags, wait a seeded moment, inject the fault, recover,
/// and require every invariant within the bound.
async fn cycle(rig: &Rig, stage: &mut Stage, rng: &mut Rng, n: usize, fault: Fault) -> Result<()> {
    // Decisions first, all from the seed, whatever happens on the rig.
    let count = rng.between(1, ROLES.len() as u64) as usize;
    let mut roles: Vec<&'static str> = ROLES.iter().map(|(r, _)| *r).collect();
    for i in (1..roles.len()).rev() {
        roles.swap(i, rng.below(i as u64 + 1) as usize);
    }
    roles.truncate(count);
    let mut changes = Vec::new();
    for role in &roles {
        let others: Vec<&'static str> = TAGS.iter().copied().filter(|t| *t != stage.images[role]).collect();
        changes.push((*role, *rng.pick(&others)));
    }
    // A leader's rollouts are short (TTL-bound take-overs are not): kill it early, while they still run.
    let latest = if matches!(fault, Fault::KillLeader { .. }) { 1000 } else { 3000 };
    let delay = Duration::from_millis(rng.between(0, latest));

    let started = Instant::now();
    for (role, tag) in &changes {
        stage.ok(&["set", "image", role, &rig.image(tag)])?;
        stage.images.insert(role, tag);
    }
    tokio::time::sleep(delay).await;
    let rolling = stage
        .statuses()
        .map(|s| {
            s.iter()
                .filter(|s| s.state != UnitState::Converged || s.observed_generation != s.generation)
                .count()
        })
        .unwrap_or(0);
    inject(rig, stage, &fault).await.with_context(|| format!("injecting {fault:?}"))?;
    let may_fail = matches!(fault, Fault::OutOfBand(Change::Remove { .. } | Change::Stop { .. }));
    let converged = stage.converge(rig, may_fail).with_context(|| format!("cycle {n}: after {fault:?}"));
    let changes: Vec<String> = changes.iter().map(|(r, t)| format!("{r}={t}")).collect();
    println!(
        "cycle {n:>2}: set {:<20} after {:>4} ms ({rolling} units not converged): {fault:?}; converged after {:.1} s",
        changes.join(" "),
        delay.as_millis(),
        started.elapsed().as_secs_f64()
    );
    converged.map(|_| ())
}

async fn inject(rig: &Rig, stage: &mut Stage, fault: &Fault) -> Result<()> {
    match fault {
        Fault::Kill { down, twice } => {
            stage.kill_and_restart(rig, *down).await?;
            if let Some(after) = twice {
                tokio::time::sleep(*after).await;
                stage.kill_and_restart(rig, *down).await?;
            }
        }
        Fault::KillLeader { down } => stage.kill_leader(rig, *down).await?,
        Fault::Link { host, down } => {
            let link = LinkCut::new(rig, *host)?;
            tokio::time::sleep(*down).await;
            link.restore()?;
        }
        Fault::Etcd { down } => {
            stage.etcd.kill();
            tokio::time::sleep(*down).await;
            stage.etcd.restart().await?;
        }
        Fault::OutOfBand(change) => out_of_band(rig, stage, change)?,
    }
    Ok(())
}

/// Makes a change by hand. The container it hits may be gone already (the rollout removed it): that is no error.
fn out_of_band(rig: &Rig, stage: &mut Stage, change: &Change) -> Result<()> {
    let target = |host: usize, role: &str, pick: u64| -> Result<Option<String>> {
        let mut ids = rig.containers(host, &format!("ballast.role={role}"))?;
        ids.sort();
        Ok((!ids.is_empty()).then(|| ids[(pick % ids.len() as u64) as usize].clone()))
    };
    let by_hand = |host: usize, args: &[&str]| {
        if let Err(e) = rig.docker(host, args) {
            println!("  by hand on h{host}: docker {}: {e:#}", args.join(" "));
        }
    };
    match change {
        Change::Remove { host, role, pick } => {
            if let Some(id) = target(*host, role, *pick)? {
                by_hand(*host, &["rm", "-f", &id]);
            }
        }
        Change::Stop { host, role, pick } => {
            if let Some(id) = target(*host, role, *pick)? {
                by_hand(*host, &["stop", "-t", "1", &id]);
            }
        }
        Change::Memory { host, role, pick } => {
            if let Some(id) = target(*host, role, *pick)? {
                by_hand(*host, &["update", "--memory", "200m", "--memory-swap", "400m", &id]);
            }
        }
        Change::Rename { host, role, pick } => {
            if let Some(id) = target(*host, role, *pick)? {
                let name = format!("renamed-{}", &id[..12]);
                by_hand(*host, &["rename", &id, &name]);
            }
        }
        Change::Bystander { host } => stage.add_bystander(rig, *host)?,
    }
    Ok(())
}

/// A cut link, restored on drop if not before.
struct LinkCut<'r> {
    rig: &'r Rig,
    host: usize,
    restored: bool,
}

impl<'r> LinkCut<'r> {
    fn new(rig: &'r Rig, host: usize) -> Result<LinkCut<'r>> {
        rig.ctl(&["link", &host.to_string(), "down"])?;
        Ok(LinkCut { rig, host, restored: false })
    }

    fn restore(mut self) -> Result<()> {
        self.restored = true;
        self.rig.ctl(&["link", &self.host.to_string(), "up"]).map(|_| ())
    }
}

impl Drop for LinkCut<'_> {
    fn drop(&mut self) {
        if !self.restored {
            let _ = self.rig.ctl(&["link", &self.host.to_string(), "up"]);
        }
    }
}

fn random_change(rng: &mut Rng) -> Change {
    let host = *rng.pick(&HOSTS);
    let role = rng.pick(&ROLES).0;
    let pick = rng.next_u64();
    match rng.below(5) {
        0 => Change::Remove { host, role, pick },
        1 => Change::Stop { host, role, pick },
        2 => Change::Memory { host, role, pick },
        3 => Change::Rename { host, role, pick },
        _ => Change::Bystander { host },
    }
}

/// About 20 `kill -9` of ballastd at random moments of rollouts, sometimes twice in a row.
#[tokio::test]
async fn ballastd_killed_during_rollouts() -> Result<()> {
    let mut rng = seeded("ballastd_killed_during_rollouts")?;
    let rig = Rig::acquire()?;
    let mut stage = Stage::start(&rig).await?;
    let started = Instant::now();
    let mut n = 0;
    while stage.kills < 20 {
        n += 1;
        let down = Duration::from_millis(rng.between(0, 1000));
        let twice = rng.chance(30).then(|| Duration::from_millis(rng.between(200, 2000)));
        cycle(&rig, &mut stage, &mut rng, n, Fault::Kill { down, twice }).await?;
    }
    println!("{} kills in {n} cycles, {:.0} s", stage.kills, started.elapsed().as_secs_f64());
    Ok(())
}

/// Two ballastd (lease 3 s): the one that leads is killed at random moments of rollouts, 6 times; the other
/// takes over and finishes what was started, with one container per (role, host) in the end.
#[tokio::test]
async fn leader_killed_during_rollouts() -> Result<()> {
    let mut rng = seeded("leader_killed_during_rollouts")?;
    let rig = Rig::acquire()?;
    let setup = Setup { args: vec!["--lease-ttl".into(), "3s".into()], ..Setup::default() };
    let mut stage = Stage::start_with(&rig, setup, true).await?;
    let started = Instant::now();
    for n in 1..=6 {
        let down = Duration::from_millis(rng.between(0, 1000));
        cycle(&rig, &mut stage, &mut rng, n, Fault::KillLeader { down }).await?;
    }
    println!("{} leaders killed, {:.0} s", stage.kills, started.elapsed().as_secs_f64());
    Ok(())
}

/// Host links cut and restored, and etcd restarted, at random moments of rollouts.
#[tokio::test]
async fn links_cut_and_etcd_restarted_during_rollouts() -> Result<()> {
    let mut rng = seeded("links_cut_and_etcd_restarted_during_rollouts")?;
    let rig = Rig::acquire()?;
    let mut stage = Stage::start(&rig).await?;
    let started = Instant::now();
    // Three of each, in a seeded order.
    let mut links = [true, true, true, false, false, false];
    for i in (1..links.len()).rev() {
        links.swap(i, rng.below(i as u64 + 1) as usize);
    }
    for (n, link) in links.into_iter().enumerate() {
        let fault = if link {
            Fault::Link { host: *rng.pick(&HOSTS), down: Duration::from_millis(rng.between(1000, 5000)) }
        } else {
            Fault::Etcd { down: Duration::from_millis(rng.between(0, 3000)) }
        };
        cycle(&rig, &mut stage, &mut rng, n + 1, fault).await?;
    }
    println!("6 cycles, {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// `docker rm -f`, `docker stop`, `docker update --memory`, `docker rename` of ballast's containers and new
/// unlabelled containers, at random moments of rollouts.
#[tokio::test]
async fn out_of_band_changes_during_rollouts() -> Result<()> {
    let mut rng = seeded("out_of_band_changes_during_rollouts")?;
    let rig = Rig::acquire()?;
    let mut stage = Stage::start(&rig).await?;
    let started = Instant::now();
    for n in 1..=10 {
        let change = random_change(&mut rng);
        cycle(&rig, &mut stage, &mut rng, n, Fault::OutOfBand(change)).await?;
    }
    println!("10 cycles, {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
