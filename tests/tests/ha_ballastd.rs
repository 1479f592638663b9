//! Two real `ballastd` processes on one etcd (`--lease-ttl 3s`), the local Docker engine as their host:
//! exactly one reconciles; after `kill -9` of the leader the other corrects a drift within TTL + 2 s; after
//! `kill -TERM` a standby leads within 2 s; and no drift is ever corrected twice (one container create per
//! drift, counted from Docker's own event log). Hand-over times are printed (`--nocapture`).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context as _, Result};
use ballast_operator::store::etcd::EtcdStore;
use ballast_operator::store::{Actor, SpecStore};
use ballast_specs::wire::UnitState;
use ballast_specs::Object;
use ballast_tests::ballastd::{Ballastd, Options};
use ballast_tests::docker::HostCleanup;
use ballast_tests::docker::{self, docker, ensure_image, unique_name};
use ballast_tests::process;
use ballast_tests::wait::until;
use ballast_tests::TestEtcd;
use serde_json::json;

const IMAGE: &str = "ballast-test/app:v1";
const TTL: Duration = Duration::from_secs(3);
const WAIT: Duration = Duration::from_secs(60);

/// One sample of the Prometheus text: name, labels, value.
#[derive(Clone, Debug, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

async fn start(etcd: &TestEtcd) -> Result<Ballastd> {
    let args = ["--lease-ttl", "3s", "--resync", "2s"].map(String::from).to_vec();
    Ballastd::start_with(Options { etcd: etcd.endpoints(), args, ..Options::default() }).await
}

/// `GET /metrics`, parsed: every line but comments is `name{labels} value` or `name value`.
async fn metrics(ballastd: &Ballastd) -> Result<Vec<Sample>> {
    let url = format!("{}/metrics", ballastd.url());
    let response = reqwest::get(&url).await.with_context(|| format!("GET {url}"))?;
    ensure!(response.status().is_success(), "GET {url}: {}", response.status());
    parse(&response.text().await?)
}

fn parse(text: &str) -> Result<Vec<Sample>> {
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').with_context(|| format!("no value: {line:?}"))?;
        let value: f64 = value.parse().with_context(|| format!("not a number: {line:?}"))?;
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').with_context(|| format!("unclosed labels: {line:?}"))?;
                (name, parse_labels(body).with_context(|| format!("bad labels: {line:?}"))?)
            }
            None => (series, BTreeMap::new()),
        };
        let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
        ensure!(!name.is_empty() && name.chars().all(valid), "bad metric name: {line:?}");
        samples.push(Sample { name: name.to_string(), labels, value });
    }
    ensure!(text.trim_end().ends_with("# EOF"), "the exposition does not end with # EOF");
    Ok(samples)
}

/// `a="x",b="y"` (values without escapes, as ballast's are).
fn parse_labels(body: &str) -> Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    for pair in body.split(',').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').context("no =")?;
        let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).context("unquoted value")?;
        labels.insert(key.to_string(), value.to_string());
    }
    Ok(labels)
}

/// The value of `name` with `labels` (all of them matching), or 0 when there is no such sample.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| {
            s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
        })
        .map(|s| s.value)
        .sum()
}

async fn leads(ballastd: &Ballastd) -> Option<bool> {
    let samples = metrics(ballastd).await.ok()?;
    Some(value(&samples, "ballast_leader", &[]) == 1.0)
}

/// Waits until `ballastd` says it leads.
async fn until_leading(ballastd: &Ballastd, what: &str) -> Result<()> {
    until(WAIT, what, || async { leads(ballastd).await.filter(|l| *l).map(|_| ()) }).await
}

/// The only container of `role` on `host`, when it runs.
fn running(role: &str, host: &str) -> Option<String> {
    let ids = docker(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label=ballast.host={host}"),
        "--filter",
        &format!("label=ballast.role={role}"),
        "--filter",
        "status=running",
    ])
    .ok()?;
    let ids: Vec<&str> = ids.split_whitespace().collect();
    (ids.len() == 1).then(|| ids[0].to_string())
}

/// How many containers of `host` Docker created since `since` (from its event log).
fn creates(host: &str, since: f64) -> Result<usize> {
    let until = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64() + 1.0;
    let out = docker(&[
        "events",
        "--since",
        &format!("{since:.3}"),
        "--until",
        &format!("{until:.3}"),
        "--filter",
        "type=container",
        "--filter",
        "event=create",
        "--filter",
        &format!("label=ballast.host={host}"),
        "--format",
        "{{.ID}}",
    ])?;
    Ok(out.lines().filter(|l| !l.trim().is_empty()).count())
}

async fn converged(store: &EtcdStore, role: &str, host: &str, not: Option<&str>) -> Result<String> {
    until(WAIT, &format!("{role} on {host} converged"), || async {
        let statuses = store.list_status().await.ok()?;
        let status = statuses.into_iter().find(|s| s.role == role && s.host == host)?;
        let id = running(role, host)?;
        (status.state == UnitState::Converged
            && id.starts_with(&status.container_id)
            && Some(id.as_str()) != not)
            .then_some(id)
    })
    .await
}

fn objects(host: &str) -> Result<Vec<Object>> {
    let host_object = json!({
        "kind": "Host", "apiVersion": "ballast/v1", "metadata": {"name": host},
        "spec": {"address": format!("unix://{}", docker::SOCKET)}
    });
    let role = json!({
        "kind": "Role", "apiVersion": "ballast/v1", "metadata": {"name": "web"},
        "spec": {
            "hosts": [host], "image": IMAGE, "deployTimeout": "20s",
            "health": {"http": {"path": "/up", "port": 3000}, "interval": "200ms", "timeout": "2s"}
        }
    });
    Ok(vec![serde_json::from_value(host_object)?, serde_json::from_value(role)?])
}

fn signal(name: &str, ballastd: &Ballastd) -> Result<()> {
    let pid = ballastd.pid().context("ballastd is not running")?;
    let status = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status()?;
    ensure!(status.success(), "kill -{name} {pid}: {status}");
    Ok(())
}

/// Of two, the one that leads and the other, once exactly one says it leads.
async fn leader_of(a: Ballastd, b: Ballastd) -> Result<(Ballastd, Ballastd)> {
    let (la, lb) = until(WAIT, "exactly one leader", || async {
        let (la, lb) = (leads(&a).await?, leads(&b).await?);
        (la != lb).then_some((la, lb))
    })
    .await?;
    Ok(if la && !lb { (a, b) } else { (b, a) })
}

#[tokio::test]
async fn one_leader_reconciles_and_hands_over_on_kill_and_on_sigterm() -> Result<()> {
    ensure_image(IMAGE, "v1", "good")?;
    let host = unique_name("ha");
    let _cleanup = HostCleanup(host.clone());
    let since = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64() - 1.0;
    let etcd = TestEtcd::start().await?;
    let store = EtcdStore::connect(&etcd.endpoints()).await?;
    let (one, two) = (start(&etcd).await?, start(&etcd).await?);
    let (leader, standby) = leader_of(one, two).await?;

    store.apply(objects(&host)?, false, &Actor("test".into())).await?;
    let first = converged(&store, "web", &host, None).await?;
    assert_eq!(creates(&host, since)?, 1);
    let (on_leader, on_standby) = (metrics(&leader).await?, metrics(&standby).await?);
    assert_eq!(value(&on_leader, "ballast_leader", &[]), 1.0);
    assert_eq!(value(&on_standby, "ballast_leader", &[]), 0.0);
    assert!(value(&on_leader, "ballast_reconciles_total", &[("result", "ok")]) >= 1.0);
    assert_eq!(value(&on_standby, "ballast_reconciles_total", &[]), 0.0, "the standby reconciled");
    assert_eq!(value(&on_leader, "ballast_units", &[("state", "Converged")]), 1.0);
    assert_eq!(value(&on_leader, "ballast_host_up", &[("host", &host)]), 1.0);
    assert_eq!(value(&on_leader, "ballast_converge_seconds_count", &[]), 1.0);

    // kill -9 of the leader, and a drift at the same moment: the standby corrects it once its lease ends.
    let pid = leader.pid().context("leader pid")?;
    process::kill(pid)?;
    let killed = Instant::now();
    docker(&["rm", "-f", &first])?;
    until_leading(&standby, "the standby to lead after kill -9").await?;
    let lead_after = killed.elapsed();
    let second = converged(&store, "web", &host, Some(&first)).await?;
    let corrected = killed.elapsed();
    println!("kill -9: the standby led after {lead_after:?} and corrected the drift after {corrected:?} (TTL {TTL:?})");
    assert!(corrected <= TTL + Duration::from_secs(2), "drift corrected after {corrected:?}");
    drop(leader);
    let leader = standby;
    let on_leader = metrics(&leader).await?;
    assert_eq!(value(&on_leader, "ballast_drift_corrections_total", &[("kind", "recreate_missing")]), 1.0);
    assert_eq!(creates(&host, since)?, 2, "one create for the drift");

    // kill -TERM of the leader: a new standby leads within 2 s.
    let standby = start(&etcd).await?;
    until(WAIT, "the new standby to serve metrics", || async { leads(&standby).await.filter(|l| !l) })
        .await?;
    signal("TERM", &leader)?;
    let termed = Instant::now();
    until_leading(&standby, "the standby to lead after SIGTERM").await?;
    let handed = termed.elapsed();
    println!("kill -TERM: the standby led after {handed:?}");
    assert!(handed <= Duration::from_secs(2), "hand-over took {handed:?}");
    let mut leader = leader;
    let status = leader.terminate()?;
    assert!(status.success(), "ballastd exited with {status} after SIGTERM:\n{}", leader.log());
    assert!(leader.log().contains("resigned"), "{}", leader.log());

    // The new leader corrects a drift, once.
    docker(&["rm", "-f", &second])?;
    let removed = Instant::now();
    converged(&store, "web", &host, Some(&second)).await?;
    println!("after SIGTERM: the new leader corrected a drift after {:?}", removed.elapsed());
    assert_eq!(creates(&host, since)?, 3, "one create per drift");
    let samples = metrics(&standby).await?;
    assert_eq!(value(&samples, "ballast_drift_corrections_total", &[("kind", "recreate_missing")]), 1.0);
    assert_eq!(value(&samples, "ballast_drift_corrections_total", &[("kind", "duplicate_removed")]), 0.0);
    let events = store.list_events().await?;
    let duplicates = events.iter().filter(|e| e.message.contains("duplicate")).count();
    assert_eq!(duplicates, 0, "{events:#?}");
    Ok(())
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_on_a_standby_too() -> Result<()> {
    let etcd = TestEtcd::start().await?;
    let args = vec!["--no-reconcile".to_string()];
    let standby =
        Ballastd::start_with(Options { etcd: etcd.endpoints(), args, ..Options::default() }).await?;
    let samples = metrics(&standby).await?;
    assert_eq!(value(&samples, "ballast_leader", &[]), 0.0);
    assert!(samples.iter().any(|s| s.name == "ballast_reconcile_duration_seconds_count"));
    assert!(samples.iter().any(|s| s.name == "ballast_converge_seconds_bucket"));
    // The parser refuses what is not Prometheus text.
    for bad in
        ["ballast_leader\n# EOF\n", "ballast leader 1\n# EOF\n", "ballast_leader{a=b} 1\n# EOF\n", "x 1\n"]
    {
        if parse(bad).is_ok() {
            bail!("parsed {bad:?}");
        }
    }
    Ok(())
}

#[test]
fn a_lease_ttl_under_two_seconds_is_refused() -> Result<()> {
    let args = ["--lease-ttl", "1s"].map(String::from).to_vec();
    let (status, log) = Ballastd::run_to_exit(Options { args, ..Options::default() })?;
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("1s is too short: a lease lives at least 2s"), "{log}");
    Ok(())
}
