//! Data-driven snapshot tests of [`status`]: a readable fixture in, the rendered status out
//! (`UPDATE_EXPECT=1` to refresh). The clock reads 100 s.
//!
//! Fixture lines (`| TEXT` is a message, and may hold spaces and colons):
//! `unit ROLE@HOST gen=N` — the unit and its role's desired generation;
//! `previous STATE observed=N since=S [container=ID image=I] [cpus=C] [memory=M] [failed=HASH/RETRY/GEN]
//! [proxy=PORT:ID] [| MESSAGE]`;
//! `halted-by [ROLE@]HOST failed=HASH/RETRY/GEN | MESSAGE` — the status of another host of the role (or, with
//! `ROLE@`, of a unit of another role of its rollout group);
//! and one outcome:
//! `settled STATE [container=ID image=I] [cpus=C] [memory=M] [routing=unseen|PORT:ID|PORT:-] [| PLAN MESSAGE]`,
//! `acting STATE [routing=...] [| PLAN MESSAGE]` (without `routing` the role is not proxied), `rollout-failed HASH/RETRY/GEN | REASON`, `unreachable | MESSAGE`,
//! `error | MESSAGE`.

use std::collections::BTreeMap;

use ballast_specs::wire::{FailedRollout, UnitProxy, UnitState, UnitStatus};
use chrono::{DateTime, Utc};
use expect_test::{expect, Expect};

use super::{status, Outcome};
use crate::hosts::{Container, ContainerState};
use crate::plan::{Plan, Routing};
use crate::reconcile::Unit;

const NOW: i64 = 100;

fn check(fixture: &str, expect: Expect) {
    let fixture = Fixture::parse(fixture);
    let (plan, current, failed);
    let outcome = match fixture.outcome.0.as_str() {
        "settled" => {
            plan = fixture.plan();
            current = fixture.container(&fixture.outcome.1);
            Outcome::Settled { plan: &plan, current: current.as_ref(), halted_by: fixture.halted_by.as_ref() }
        }
        "acting" => {
            plan = fixture.plan();
            Outcome::Acting { plan: &plan }
        }
        "rollout-failed" => {
            failed = rollout(&fixture.outcome.1["state"]);
            Outcome::RolloutFailed { reason: &fixture.outcome.2, failed: &failed }
        }
        "unreachable" => Outcome::Unreachable { message: &fixture.outcome.2 },
        "error" => Outcome::Error { message: &fixture.outcome.2 },
        other => panic!("unknown outcome {other}"),
    };
    let got = status(&fixture.unit, fixture.generation, fixture.previous.as_ref(), outcome, time(NOW));
    expect.assert_eq(&render(&got));
}

/// One line a field; the container line only when there is one.
fn render(s: &UnitStatus) -> String {
    let mut out = format!("state: {}\n", s.state);
    out.push_str(&format!("generation: {} observed: {}\n", s.generation, s.observed_generation));
    if !s.container_id.is_empty() || !s.image.is_empty() {
        out.push_str(&format!("container: {} {}", s.container_id, s.image));
        if let Some(cpus) = s.cpus {
            out.push_str(&format!(" cpus={cpus}"));
        }
        if let Some(memory) = &s.memory {
            out.push_str(&format!(" memory={memory}"));
        }
        out.push('\n');
    }
    if !s.message.is_empty() {
        out.push_str(&format!("message: {}\n", s.message));
    }
    out.push_str(&format!("since: {}\n", s.since.timestamp()));
    if let Some(f) = &s.failed {
        out.push_str(&format!("failed: {}/{}/{}\n", f.hash, f.retry, f.generation));
    }
    if let Some(p) = &s.proxy {
        out.push_str(&format!(
            "proxy: :{} → {}\n",
            p.port,
            if p.routes_to.is_empty() { "none" } else { &p.routes_to }
        ));
    }
    out
}

struct Fixture {
    unit: Unit,
    generation: u64,
    previous: Option<UnitStatus>,
    halted_by: Option<UnitStatus>,
    /// The outcome's keyword, its `key=value` fields (the first bare word as `state`), and its message.
    outcome: (String, BTreeMap<String, String>, String),
}

impl Fixture {
    fn parse(text: &str) -> Fixture {
        let mut fixture = Fixture {
            unit: Unit { role: String::new(), host: String::new() },
            generation: 0,
            previous: None,
            halted_by: None,
            outcome: (String::new(), BTreeMap::new(), String::new()),
        };
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (words, message) = match line.split_once(" | ") {
                Some((words, message)) => (words, message.to_string()),
                None => (line, String::new()),
            };
            let mut words = words.split_whitespace();
            let head = words.next().unwrap().to_string();
            let mut fields = BTreeMap::new();
            for word in words {
                match word.split_once('=') {
                    Some((k, v)) => fields.insert(k.to_string(), v.to_string()),
                    None if !fields.contains_key("state") => fields.insert("state".into(), word.to_string()),
                    None => fields.insert("subject".into(), word.to_string()),
                };
            }
            match head.as_str() {
                "unit" => {
                    let (role, host) = fields["state"].split_once('@').unwrap();
                    fixture.unit = Unit { role: role.into(), host: host.into() };
                    fixture.generation = fields["gen"].parse().unwrap();
                }
                "previous" => {
                    let mut s = fixture.blank(&fixture.unit.host, state(&fields["state"]), message);
                    s.observed_generation = fields["observed"].parse().unwrap();
                    s.since = time(fields["since"].parse().unwrap());
                    s.failed = fields.get("failed").map(|f| rollout(f));
                    s.proxy = fields.get("proxy").map(|p| {
                        let (port, to) = p.split_once(':').unwrap();
                        UnitProxy { port: port.parse().unwrap(), routes_to: to.to_string() }
                    });
                    if let Some(c) = fixture.container(&fields) {
                        s.container_id = c.id;
                        s.image = c.image;
                        s.cpus = (c.nano_cpus > 0).then(|| c.nano_cpus as f64 / 1e9);
                        s.memory = fields.get("memory").cloned();
                    }
                    fixture.previous = Some(s);
                }
                "halted-by" => {
                    let (role, host) = match fields["state"].split_once('@') {
                        Some((role, host)) => (role.to_string(), host.to_string()),
                        None => (fixture.unit.role.clone(), fields["state"].clone()),
                    };
                    let mut s = fixture.blank(&host, UnitState::Failed, message);
                    s.role = role;
                    s.failed = Some(rollout(&fields["failed"]));
                    fixture.halted_by = Some(s);
                }
                _ => fixture.outcome = (head, fields, message),
            }
        }
        fixture
    }

    fn blank(&self, host: &str, state: UnitState, message: String) -> UnitStatus {
        UnitStatus {
            role: self.unit.role.clone(),
            host: host.to_string(),
            generation: self.generation,
            observed_generation: 0,
            state,
            image: String::new(),
            container_id: String::new(),
            cpus: None,
            memory: None,
            message,
            since: time(0),
            failed: None,
            proxy: None,
        }
    }

    /// The plan of a `settled` or `acting` outcome: its state and message (actions do not matter here).
    fn plan(&self) -> Plan {
        Plan {
            state: state(&self.outcome.1["state"]),
            message: self.outcome.2.clone(),
            actions: Vec::new(),
            routing: match self.outcome.1.get("routing").map(String::as_str) {
                None => Routing::NotProxied,
                Some("unseen") => Routing::Unseen,
                Some(seen) => {
                    let (port, to) = seen.split_once(':').unwrap();
                    let to = (to != "-").then(|| format!("{to}{}", "0".repeat(20)));
                    Routing::Seen { port: port.parse().unwrap(), to }
                }
            },
        }
    }

    fn container(&self, fields: &BTreeMap<String, String>) -> Option<Container> {
        let id = fields.get("container")?;
        let cpus = fields.get("cpus").map(|c| (c.parse::<f64>().unwrap() * 1e9) as i64).unwrap_or(0);
        let memory = fields
            .get("memory")
            .map(|m| ballast_specs::Memory::parse(m).unwrap().bytes() as i64)
            .unwrap_or(0);
        Some(Container {
            id: format!("{id}{}", "0".repeat(20)),
            name: format!("{}-{id}", self.unit.role),
            image: fields["image"].clone(),
            labels: BTreeMap::new(),
            state: ContainerState::Running,
            nano_cpus: cpus,
            memory,
            ip: None,
            network: None,
        })
    }
}

fn state(word: &str) -> UnitState {
    serde_json::from_value(serde_json::Value::String(word.to_string())).unwrap()
}

fn rollout(text: &str) -> FailedRollout {
    let parts: Vec<&str> = text.split('/').collect();
    FailedRollout {
        hash: parts[0].into(),
        retry: parts[1].parse().unwrap(),
        generation: parts[2].parse().unwrap(),
    }
}

fn time(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap()
}

#[test]
fn first_create_shows_progress_with_nothing_seen_yet() {
    check(
        "unit web@h1 gen=1
         acting Progressing | creating container",
        expect![[r#"
            state: Progressing
            generation: 1 observed: 0
            message: creating container
            since: 100
        "#]],
    );
}

#[test]
fn progressing_keeps_the_container_last_seen_and_the_time_it_started() {
    check(
        "unit web@h1 gen=2
         previous Progressing observed=1 since=40 container=c1 image=app:v1 cpus=1.5 memory=1.75g | replacing container
         acting Progressing | replacing container",
        expect![[r#"
            state: Progressing
            generation: 2 observed: 1
            container: c100000000000000000000 app:v1 cpus=1.5 memory=1.75g
            message: replacing container
            since: 40
        "#]],
    );
}

#[test]
fn converged_shows_the_container_and_raises_observed_generation() {
    check(
        "unit web@h1 gen=2
         previous Progressing observed=1 since=40 container=c1 image=app:v1 | replacing container
         settled Converged container=c2 image=app:v2 cpus=1.5 memory=1.75g",
        expect![[r#"
            state: Converged
            generation: 2 observed: 2
            container: c20000000000 app:v2 cpus=1.5 memory=1.75g
            since: 100
        "#]],
    );
}

#[test]
fn converged_again_keeps_its_since() {
    check(
        "unit web@h1 gen=2
         previous Converged observed=2 since=40 container=c2 image=app:v2
         settled Converged container=c2 image=app:v2",
        expect![[r#"
            state: Converged
            generation: 2 observed: 2
            container: c20000000000 app:v2
            since: 40
        "#]],
    );
}

#[test]
fn a_rollout_that_failed_here_records_what_failed() {
    check(
        "unit web@h1 gen=2
         previous Progressing observed=1 since=40 container=c1 image=app:v1 | replacing container
         rollout-failed bb/0/2 | not healthy within deployTimeout 2s",
        expect![[r#"
            state: Failed
            generation: 2 observed: 1
            message: not healthy within deployTimeout 2s
            since: 100
            failed: bb/0/2
        "#]],
    );
}

#[test]
fn a_failed_rollout_is_carried_over_on_the_next_pass() {
    check(
        "unit web@h1 gen=2
         previous Failed observed=1 since=60 failed=bb/0/2 | not healthy within deployTimeout 2s
         settled Failed container=c1 image=app:v1 | rollout halted",
        expect![[r#"
            state: Failed
            generation: 2 observed: 1
            container: c10000000000 app:v1
            message: not healthy within deployTimeout 2s
            since: 60
            failed: bb/0/2
        "#]],
    );
}

#[test]
fn halted_by_another_host_says_where_and_why() {
    check(
        "unit web@h2 gen=2
         previous Converged observed=1 since=10 container=c9 image=app:v1
         halted-by h1 failed=bb/0/2 | not healthy within deployTimeout 2s
         settled Failed container=c9 image=app:v1 | rollout halted",
        expect![[r#"
            state: Failed
            generation: 2 observed: 1
            container: c90000000000 app:v1
            message: halted: the rollout failed on h1: not healthy within deployTimeout 2s; `ballast rollout retry web` tries it again
            since: 100
        "#]],
    );
}

#[test]
fn halted_by_another_role_of_the_group_names_the_role_and_the_host() {
    check(
        "unit web_replica@h2 gen=4
         previous Converged observed=3 since=10 container=c9 image=app:v1
         halted-by web@h1 failed=bb/0/2 | not healthy within deployTimeout 2s
         settled Failed container=c9 image=app:v1 | rollout halted",
        expect![[r#"
            state: Failed
            generation: 4 observed: 3
            container: c90000000000 app:v1
            message: halted: the rollout of web failed on h1: not healthy within deployTimeout 2s; `ballast rollout retry web` tries it again
            since: 100
        "#]],
    );
}

#[test]
fn a_new_generation_that_converges_clears_the_failure() {
    check(
        "unit web@h1 gen=3
         previous Failed observed=1 since=60 failed=bb/0/2 | not healthy within deployTimeout 2s
         settled Converged container=c3 image=app:v3",
        expect![[r#"
            state: Converged
            generation: 3 observed: 3
            container: c30000000000 app:v3
            since: 100
        "#]],
    );
}

#[test]
fn unreachable_keeps_what_was_last_seen() {
    check(
        "unit web@h1 gen=2
         previous Converged observed=2 since=40 container=c2 image=app:v2 memory=512m
         unreachable | unreachable: connect to 10.0.0.1:22: connection refused",
        expect![[r#"
            state: Unreachable
            generation: 2 observed: 2
            container: c200000000000000000000 app:v2 memory=512m
            message: unreachable: connect to 10.0.0.1:22: connection refused
            since: 100
        "#]],
    );
}

#[test]
fn paused_shows_what_runs_and_keeps_observed_generation() {
    check(
        "unit web@h1 gen=3
         previous Converged observed=2 since=40 container=c2 image=app:v2
         settled Paused container=c2 image=app:v2 | paused: spec changes are not applied",
        expect![[r#"
            state: Paused
            generation: 3 observed: 2
            container: c20000000000 app:v2
            message: paused: spec changes are not applied
            since: 100
        "#]],
    );
}

#[test]
fn observed_generation_lags_until_the_unit_converges() {
    check(
        "unit web@h1 gen=5
         previous Converged observed=2 since=40 container=c2 image=app:v2
         settled Degraded container=c2 image=app:v2 | waiting",
        expect![[r#"
            state: Degraded
            generation: 5 observed: 2
            container: c20000000000 app:v2
            message: waiting
            since: 100
        "#]],
    );
}

#[test]
fn an_error_keeps_the_container_and_a_failure_recorded_earlier() {
    check(
        "unit web@h1 gen=2
         previous Failed observed=1 since=60 container=c1 image=app:v1 failed=bb/0/2 | not healthy
         error | host h1: docker error 500: boom",
        expect![[r#"
            state: Degraded
            generation: 2 observed: 1
            container: c100000000000000000000 app:v1
            message: host h1: docker error 500: boom
            since: 100
            failed: bb/0/2
        "#]],
    );
}

#[test]
fn a_proxied_unit_shows_where_the_proxy_routes_and_keeps_it_while_the_proxy_is_not_read() {
    check(
        "unit web@h1 gen=2
         previous Progressing observed=1 since=50 proxy=80:c1
         settled Converged container=c2 image=app:v2 routing=80:c2",
        expect![[r#"
            state: Converged
            generation: 2 observed: 2
            container: c20000000000 app:v2
            since: 100
            proxy: :80 → c20000000000
        "#]],
    );
    check(
        "unit web@h1 gen=1
         previous Converged observed=1 since=50 container=c1 image=app:v1 proxy=80:c1
         settled Converged container=c1 image=app:v1 routing=unseen",
        expect![[r#"
            state: Converged
            generation: 1 observed: 1
            container: c10000000000 app:v1
            since: 50
            proxy: :80 → c1
        "#]],
    );
    check(
        "unit web@h1 gen=1
         previous Converged observed=1 since=50 container=c1 image=app:v1 proxy=80:c1
         acting Degraded routing=80:- | the proxy does not route to c1",
        expect![[r#"
            state: Degraded
            generation: 1 observed: 1
            container: c100000000000000000000 app:v1
            message: the proxy does not route to c1
            since: 100
            proxy: :80 → none
        "#]],
    );
    check(
        "unit web@h1 gen=2
         previous Converged observed=1 since=50 container=c1 image=app:v1 proxy=80:c1
         settled Converged container=c1 image=app:v1",
        expect![[r#"
            state: Converged
            generation: 2 observed: 2
            container: c10000000000 app:v1
            since: 50
        "#]],
    );
}
