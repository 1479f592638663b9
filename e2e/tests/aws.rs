//! End-to-end AWS scenarios (issue 4) on the rig with a moto: ECR pulls with the token moto hands out from the rig's
//! registry behind auth, Secrets Manager values injected as env, rotation rolling the role's containers by itself,
//! a missing key reported without touching anything, and no secret value anywhere ballast writes or shows.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use ballast_e2e::stage::{tail, text, web_role, Setup, Stage, WAIT};
use ballast_e2e::{until, Rig};
use ballast_specs::wire::UnitState;
use ballast_tests::ballastd::closed_port;
use ballast_tests::etcd::unbase64;
use ballast_tests::TestEtcd;
/// The secret every scenario reads, as in the seed deployment.
const SECRET: &str = "data-lake/prod";
/// `RUST_LOG` of the secrets scenario's ballastd: everything it logs is searched for secret values.
const LOG_LEVEL: &str = "trace";
/// `--secrets-refresh` of the secrets scenario.
const REFRESH: Duration = Duration::from_secs(3);

/// A stage whose ballastd has AWS (a moto), `args` and `env`.
fn setup(args: &[&str], env: &[(&str, &str)]) -> Setup {
    Setup {
        aws: true,
        args: args.iter().map(|a| a.to_string()).collect(),
        env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

/// Role `name` on `hosts` running `image`, health-checked on `/up`, with `secrets` (a YAML flow mapping) if given.
fn role(name: &str, hosts: &str, image: &str, secrets: Option<&str>) -> String {
    let secrets = secrets.map(|s| format!("  secrets: {s}\n")).unwrap_or_default();
    web_role(name, hosts, image, "30s", &format!("  env: {{RAILS_ENV: production}}\n{secrets}"))
}

/// Removes `image` from host `i` if it is there, so the next start must pull it.
fn forget_image(rig: &Rig, i: usize, image: &str) -> Result<()> {
    if rig.docker(i, &["image", "inspect", "--format", "{{.Id}}", image]).is_ok() {
        rig.docker(i, &["rmi", "-f", image])?;
    }
    Ok(())
}

/// A value nobody else could have written: `PREFIX-` and 16 random hex digits.
fn distinctive(prefix: &str) -> Result<String> {
    let mut bytes = [0u8; 8];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    Ok(format!("{prefix}-{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()))
}

/// The environment of a running container on host `i`, one `KEY=value` a line.
fn env_of(rig: &Rig, i: usize, id: &str) -> Result<Vec<String>> {
    Ok(rig.docker(i, &["exec", id, "env"])?.lines().map(str::to_string).collect())
}

/// Checks `check` every 200 ms for `period`: fails at the first time it does not hold.
fn holds_for(period: Duration, what: &str, mut check: impl FnMut() -> Result<()>) -> Result<()> {
    let end = Instant::now() + period;
    while Instant::now() < end {
        check().with_context(|| format!("{what} stopped holding"))?;
        std::thread::sleep(Duration::from_millis(200));
    }
    check().with_context(|| format!("{what} stopped holding"))
}

/// Every version of every key etcd holds, at every revision so far (nothing is compacted in a test): `(where, value)`.
async fn etcd_history(etcd: &TestEtcd) -> Result<Vec<(String, String)>> {
    let everything = |revision: i64| {
        // key "\0" with range_end "\0": every key.
        serde_json::json!({"key": "AA==", "range_end": "AA==", "revision": revision.to_string()})
    };
    let now = etcd.post("/v3/kv/range", everything(0)).await?;
    let head: i64 = now["header"]["revision"].as_str().context("etcd sent no revision")?.parse()?;
    let mut seen = std::collections::BTreeMap::new();
    for revision in 1..=head {
        let answer = etcd.post("/v3/kv/range", everything(revision)).await?;
        for kv in answer["kvs"].as_array().into_iter().flatten() {
            let field = |name: &str| {
                let text = kv[name].as_str().unwrap_or_default();
                unbase64(text).with_context(|| format!("etcd sent bad base64: {text:?}"))
            };
            let key = String::from_utf8_lossy(&field("key")?).to_string();
            let version = kv["mod_revision"].as_str().unwrap_or_default().to_string();
            let value = String::from_utf8_lossy(&field("value")?).to_string();
            seen.insert(format!("etcd {key} at revision {version}"), value);
        }
    }
    Ok(seen.into_iter().collect())
}

#[tokio::test]
async fn ecr_images_pull_with_the_token_and_a_dead_aws_endpoint_fails_readably() -> Result<()> {
    let rig = Rig::acquire()?;
    ensure!(
        rig.registry_auth(),
        "this scenario needs the rig's registry behind auth: bring the rig up with RIG_REGISTRY_AUTH=1"
    );
    let (v1, v2) = (rig.image("v1"), rig.image("v2"));
    // An anonymous pull is refused: only the ECR token opens the registry.
    let anonymous = rig.docker(2, &["pull", &v1]);
    let refused = anonymous.err().context("an anonymous pull from the rig's registry succeeded")?;
    let reason = format!("{refused:#}");
    ensure!(
        reason.contains("no basic auth credentials") || reason.contains("unauthorized"),
        "the anonymous pull failed for another reason: {reason}"
    );
    for image in [&v1, &v2] {
        forget_image(&rig, 1, image)?;
    }

    let etcd = TestEtcd::start().await?;
    let mut stage = Stage::start(&rig, etcd.endpoints(), &setup(&[], &[("RUST_LOG", LOG_LEVEL)])).await?;
    stage.apply_yaml("ecr.yaml", &role("ecr", "h1", &v1, None))?;
    stage.converge()?;
    assert_eq!(rig.curl(1, 3000, "/up")?, "v1");
    let old = rig.container_of(1, "ecr")?;
    let events = stage.ok(&["events", "ecr"])?;
    ensure!(events.contains("created ecr on h1"), "no creation event: {events}");
    // The token's password is a credential: it is in no log line.
    let password = rig.var("RIG_REGISTRY_PASSWORD")?;
    ensure!(!stage.ballastd.log().contains(password), "the ECR token's password is in the ballastd log");

    // The same role with AWS unreachable: a new tag cannot be pulled; the unit says why and the old container stays.
    let dead = format!("http://127.0.0.1:{}", closed_port()?);
    stage.restart(&rig, Some(&dead), &setup(&[], &[])).await?;
    stage.ok(&["set", "image", "ecr", &v2])?;
    let failed = stage.wait("ecr", "h1", "ecr failed or degraded without AWS", |s| {
        matches!(s.state, UnitState::Failed | UnitState::Degraded) && s.message.contains("credentials")
    })?;
    eprintln!("status with a dead AWS endpoint: {:?}: {}", failed.state, failed.message);
    ensure!(failed.message.contains(&v2), "the reason does not name the image: {}", failed.message);
    ensure!(failed.message.contains("aws"), "the reason does not say AWS failed: {}", failed.message);
    assert_eq!(rig.container_of(1, "ecr")?, old, "the old container was replaced");
    assert_eq!(rig.inspect(1, &old, "{{.State.Running}}")?, "true", "the old container is not running");
    assert_eq!(rig.curl(1, 3000, "/up")?, "v1");
    ensure!(rig.docker(1, &["image", "inspect", &v2]).is_err(), "v2 was pulled without credentials");

    // AWS back: a retry pulls and rolls.
    stage.restart(&rig, None, &setup(&[], &[])).await?;
    stage.ok(&["rollout", "retry", "ecr"])?;
    stage.wait("ecr", "h1", "ecr converged on v2", |s| s.state == UnitState::Converged && s.image == v2)?;
    assert_eq!(rig.curl(1, 3000, "/up")?, "v2");
    Ok(())
}

#[tokio::test]
async fn secrets_are_injected_rotated_reported_and_never_leaked() -> Result<()> {
    let rig = Rig::acquire()?;
    let refresh = format!("{}s", REFRESH.as_secs());
    let extra = ["--secrets-refresh", refresh.as_str(), "--resync", "2s"];
    let etcd = TestEtcd::start().await?;
    let mut stage = Stage::start(&rig, etcd.endpoints(), &setup(&extra, &[("RUST_LOG", LOG_LEVEL)])).await?;
    let (password1, password2) = (distinctive("pw1")?, distinctive("pw2")?);
    let redis = distinctive("redis")?;
    let (other1, other2) = (distinctive("other1")?, distinctive("other2")?);
    let secret = |password: &str, redis: Option<&str>, other: &str| {
        let mut object = serde_json::json!({"DB_PASSWORD": password, "UNLISTED": other});
        if let Some(redis) = redis {
            object["REDIS_URL"] = serde_json::Value::from(redis);
        }
        object.to_string()
    };
    stage.moto()?.create_secret(SECRET, &secret(&password1, Some(&redis), &other1)).await?;

    // Injected as env.
    let secrets = format!("{{source: 'aws-secretsmanager:{SECRET}', keys: [DB_PASSWORD, REDIS_URL]}}");
    stage.apply_yaml("app.yaml", &role("app", "h1, h2", &rig.image("v1"), Some(&secrets)))?;
    stage.converge()?;
    let mut ids = Vec::new();
    for i in [1, 2] {
        let id = rig.container_of(i, "app")?;
        let env = env_of(&rig, i, &id)?;
        for expected in [format!("DB_PASSWORD={password1}"), format!("REDIS_URL={redis}")] {
            ensure!(env.contains(&expected), "h{i}: {expected} is not in the container's env");
        }
        ensure!(!env.iter().any(|l| l.starts_with("UNLISTED=")), "h{i}: an unlisted key was injected");
        ids.push(id);
    }

    // Rotation of a listed key: both containers are recreated (one host at a time, health-gated), by themselves.
    let rotated = Instant::now();
    stage.moto()?.put_secret_value(SECRET, &secret(&password2, Some(&redis), &other1)).await?;
    let mut recreated = Vec::new();
    for i in [1, 2] {
        let old = &ids[i - 1];
        let new = until(WAIT, &format!("app recreated on h{i} with the new password"), || {
            let id = rig.container_of(i, "app").ok()?;
            let env = env_of(&rig, i, &id).ok()?;
            (id != *old && env.contains(&format!("DB_PASSWORD={password2}"))).then_some(id)
        })
        .with_context(|| format!("ballastd log tail:\n{}", tail(&stage.ballastd.log())))?;
        recreated.push(rotated.elapsed());
        ids[i - 1] = new;
    }
    stage.converge()?;
    eprintln!(
        "rotation -> recreated: h1 {:.1} s, h2 {:.1} s (refresh {refresh}, resync 2s)",
        recreated[0].as_secs_f64(),
        recreated[1].as_secs_f64()
    );
    let events = stage.ok(&["events", "app"])?;
    for host in ["h1", "h2"] {
        let line = events
            .lines()
            .find(|l| l.contains(&format!("recreated app on {host}: secret values changed")))
            .with_context(|| format!("no recreate event on {host}: {events}"))?;
        ensure!(line.contains("healthy after"), "the recreate on {host} was not health-gated: {line}");
    }

    // A change to a key the role does not list recreates nothing, once the operator has read it.
    let version = stage.moto()?.put_secret_value(SECRET, &secret(&password2, Some(&redis), &other2)).await?;
    until(WAIT, "ballastd reading the secret's new version", || {
        stage.ballastd.log().contains(&version).then_some(())
    })?;
    holds_for(REFRESH * 2 + Duration::from_secs(2), "no recreate on an unlisted key's change", || {
        for i in [1, 2] {
            let id = rig.container_of(i, "app")?;
            ensure!(id == ids[i - 1], "app on h{i} was recreated");
        }
        Ok(())
    })?;

    // A listed key missing from the secret: Degraded naming the key, an event, nothing recreated.
    stage.moto()?.put_secret_value(SECRET, &secret(&password2, None, &other2)).await?;
    for host in ["h1", "h2"] {
        let degraded = stage.wait("app", host, "app degraded on a missing key", |s| {
            s.state == UnitState::Degraded && s.message.contains("REDIS_URL")
        })?;
        eprintln!("status with a missing key: {}", degraded.message);
    }
    let events = stage.ok(&["events", "app"])?;
    ensure!(
        events.lines().any(|l| l.contains("REDIS_URL") && l.contains("no key")),
        "no event names the missing key: {events}"
    );
    holds_for(REFRESH + Duration::from_secs(2), "no recreate on a missing key", || {
        for i in [1, 2] {
            let id = rig.container_of(i, "app")?;
            ensure!(id == ids[i - 1], "app on h{i} was recreated");
            ensure!(rig.inspect(i, &id, "{{.State.Running}}")? == "true", "app on h{i} is not running");
        }
        Ok(())
    })?;
    // The key back with its old value: converged again with the very same containers.
    let restored = stage.moto()?.put_secret_value(SECRET, &secret(&password2, Some(&redis), &other2)).await?;
    stage.converge()?;
    for i in [1, 2] {
        assert_eq!(rig.container_of(i, "app")?, ids[i - 1], "app on h{i} was recreated");
    }

    // A spec change reads the secret anew even when its cached copy is fresh: with a refresh of 10 minutes, a
    // rotation goes unseen until the role's spec changes, and the rolled containers then carry the new value.
    let mut logs = vec![stage.ballastd.log()];
    let slow = ["--secrets-refresh", "10m", "--resync", "2s"];
    stage.restart(&rig, None, &setup(&slow, &[("RUST_LOG", LOG_LEVEL)])).await?;
    until(WAIT, "the new ballastd reading the secret", || {
        stage.ballastd.log().contains(&restored).then_some(())
    })?;
    stage.converge()?;
    let password3 = distinctive("pw3")?;
    stage.moto()?.put_secret_value(SECRET, &secret(&password3, Some(&redis), &other2)).await?;
    holds_for(Duration::from_secs(5), "no recreate while the cached copy is fresh", || {
        for i in [1, 2] {
            ensure!(rig.container_of(i, "app")? == ids[i - 1], "app on h{i} was recreated");
        }
        Ok(())
    })?;
    stage.ok(&["set", "image", "app", &rig.image("v2")])?;
    for host in ["h1", "h2"] {
        stage.wait("app", host, "app rolled to v2", |s| {
            s.state == UnitState::Converged && s.image == rig.image("v2")
        })?;
    }
    for i in [1, 2] {
        let id = rig.container_of(i, "app")?;
        let env = env_of(&rig, i, &id)?;
        ensure!(
            env.contains(&format!("DB_PASSWORD={password3}")),
            "h{i}: the spec change kept the cached value"
        );
        ids[i - 1] = id;
    }
    logs.push(stage.ballastd.log());
    let all_values = [&password1, &password2, &password3, &redis, &other1, &other2];

    // No value anywhere ballast writes or shows.
    let mut places = etcd_history(&etcd).await?;
    ensure!(
        places.iter().any(|(place, _)| place.contains("/ballast/v1/status/app/h2")),
        "the etcd dump has no status of app: {:?}",
        places.iter().map(|(place, _)| place).collect::<Vec<_>>()
    );
    let versions = places.iter().filter(|(place, _)| place.contains("/ballast/v1/status/app/h1 ")).count();
    ensure!(versions >= 3, "the etcd dump holds {versions} versions of app's status on h1: no history read");
    for (n, log) in logs.into_iter().enumerate() {
        places.push((format!("the log of ballastd {}", n + 1), log));
    }
    let commands: [&[&str]; 12] = [
        &["events"],
        &["events", "-o", "json"],
        &["status"],
        &["status", "-o", "json"],
        &["get", "role", "app", "-o", "yaml"],
        &["get", "role", "app", "-o", "json"],
        &["get", "roles", "-o", "json"],
        &["plan", "-o", "json"],
        &["rollout", "history", "app", "-o", "json"],
        &["get", "hosts", "-o", "json"],
        &["status", "app", "-o", "yaml"],
        &["events", "app", "-o", "yaml"],
    ];
    for args in commands {
        let out = stage.ballastd.ballast(args);
        ensure!(out.status.success(), "ballast {} failed: {}", args.join(" "), text(&out));
        places.push((format!("ballast {}", args.join(" ")), text(&out)));
    }
    for i in [1, 2] {
        let labels = rig.inspect(i, &ids[i - 1], "{{json .Config.Labels}}")?;
        ensure!(labels.contains("ballast.secrets"), "h{i}: no secrets fingerprint label: {labels}");
        places.push((format!("the labels of app on h{i}"), labels));
    }
    let log_bytes: usize = places.iter().filter(|(p, _)| p.contains(" log of ")).map(|(_, t)| t.len()).sum();
    eprintln!("leak check: {} places, ballastd logs ({LOG_LEVEL}) {log_bytes} bytes", places.len());
    for (place, content) in &places {
        for value in all_values {
            if let Some(line) = content.lines().find(|l| l.contains(value.as_str())) {
                let line = line.replace(value.as_str(), "<SECRET VALUE>");
                let line: String = line.chars().take(2000).collect();
                bail!("a secret value leaked into {place}: {line}");
            }
        }
    }
    Ok(())
}
