//! Data-driven snapshot tests of the planner: a readable fixture in, the rendered plan out (`UPDATE_EXPECT=1` to refresh).
//! An action that corrects drift shows its kind (`[drift: KIND]`, see [`drift_kind`]).
//!
//! Fixture lines:
//! `desired ROLE@HOST gen=N hash=H image=I [cpus=C] [memory=M] [converged=N] [paused] [halted]` or `desired none`;
//! `container ID gen=N hash=H image=I STATE [cpus=C] [memory=M]`.

use std::collections::BTreeMap;

use expect_test::{expect, Expect};

use super::*;

fn check(fixture: &str, expect: Expect) {
    let (desired, observed) = parse_fixture(fixture);
    let plan = plan(desired.as_ref(), &observed);
    let mut out = format!("state: {}\n", plan.state);
    if !plan.message.is_empty() {
        out.push_str(&format!("message: {}\n", plan.message));
    }
    for action in &plan.actions {
        match drift_kind(action, plan.state) {
            Some(kind) => out.push_str(&format!("{action} [drift: {kind}]\n")),
            None => out.push_str(&format!("{action}\n")),
        }
    }
    expect.assert_eq(&out);
}

fn parse_fixture(fixture: &str) -> (Option<Desired>, Vec<Container>) {
    let mut desired = None;
    let mut observed = Vec::new();
    for line in fixture.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut words = line.split_whitespace();
        let head = words.next().unwrap();
        let subject = words.next().unwrap();
        let mut fields = BTreeMap::new();
        let mut flags = Vec::new();
        for w in words {
            match w.split_once('=') {
                Some((k, v)) => {
                    fields.insert(k, v);
                }
                None => flags.push(w),
            }
        }
        let cpus = fields.get("cpus").map(|c| (c.parse::<f64>().unwrap() * 1e9) as i64).unwrap_or(0);
        let memory = fields
            .get("memory")
            .map(|m| ballast_specs::Memory::parse(m).unwrap().bytes() as i64)
            .unwrap_or(0);
        match head {
            "desired" if subject == "none" => {}
            "desired" => {
                let (role, host) = subject.split_once('@').unwrap();
                desired = Some(Desired {
                    role: role.into(),
                    host: host.into(),
                    generation: fields["gen"].parse().unwrap(),
                    image: fields["image"].into(),
                    hash: fields["hash"].into(),
                    nano_cpus: cpus,
                    memory,
                    paused: flags.contains(&"paused"),
                    halted: flags.contains(&"halted"),
                    converged_generation: fields.get("converged").map(|g| g.parse().unwrap()).unwrap_or(0),
                });
            }
            "container" => {
                let state = match flags[0] {
                    "running" => ContainerState::Running,
                    "exited" => ContainerState::Exited,
                    "created" => ContainerState::Created,
                    "dead" => ContainerState::Dead,
                    "removing" => ContainerState::Removing,
                    other => panic!("unknown state {other}"),
                };
                let labels = BTreeMap::from([
                    (labels::ROLE.to_string(), "web".to_string()),
                    (labels::GENERATION.to_string(), fields["gen"].to_string()),
                    (labels::HASH.to_string(), fields["hash"].to_string()),
                ]);
                observed.push(Container {
                    id: subject.into(),
                    name: format!("web-{subject}"),
                    image: fields["image"].into(),
                    labels,
                    state,
                    nano_cpus: cpus,
                    memory,
                    ip: None,
                });
            }
            other => panic!("unknown fixture line {other}"),
        }
    }
    (desired, observed)
}

#[test]
fn empty_host_creates() {
    check(
        "desired web@h1 gen=1 hash=aa image=app:v1 cpus=1.5 memory=1.75g",
        expect![[r#"
            state: Progressing
            message: creating container
            create (creating container)
        "#]],
    );
}

#[test]
fn converged_does_nothing() {
    check(
        "desired web@h1 gen=1 hash=aa image=app:v1 cpus=1.5 memory=1.75g converged=1
         container c1 gen=1 hash=aa image=app:v1 running cpus=1.5 memory=1.75g",
        expect![[r#"
            state: Converged
        "#]],
    );
}

#[test]
fn image_change_replaces() {
    check(
        "desired web@h1 gen=2 hash=bb image=app:v2 cpus=1.5 memory=1.75g converged=1
         container c1 gen=1 hash=aa image=app:v1 running cpus=1.5 memory=1.75g",
        expect![[r#"
            state: Progressing
            message: image app:v1 → app:v2
            replace c1 (image app:v1 → app:v2)
        "#]],
    );
}

#[test]
fn other_recreate_change_names_the_generation() {
    check(
        "desired web@h1 gen=3 hash=bb image=app:v1 converged=2
         container c1 gen=2 hash=aa image=app:v1 running",
        expect![[r#"
            state: Progressing
            message: spec changed (generation 2 → 3)
            replace c1 (spec changed (generation 2 → 3))
        "#]],
    );
}

#[test]
fn secret_rotation_at_same_generation_replaces() {
    check(
        "desired web@h1 gen=2 hash=cc image=app:v1 converged=2
         container c1 gen=2 hash=bb image=app:v1 running",
        expect![[r#"
            state: Progressing
            message: secret values changed or restart requested
            replace c1 (secret values changed or restart requested)
        "#]],
    );
}

#[test]
fn memory_drift_is_restored_in_place() {
    check(
        "desired web@h1 gen=1 hash=aa image=app:v1 cpus=1.5 memory=1.75g converged=1
         container c1 gen=1 hash=aa image=app:v1 running cpus=1.5 memory=1g",
        expect![[r#"
            state: Degraded
            message: restore memory 1.75g (was 1g, changed outside ballast)
            update c1 in place: restore memory 1.75g (was 1g, changed outside ballast) [drift: resources_restored]
        "#]],
    );
}

#[test]
fn resources_spec_change_is_progress_in_place() {
    check(
        "desired job@h1 gen=2 hash=aa image=app:v1 cpus=0.5 memory=768m converged=1
         container c1 gen=1 hash=aa image=app:v1 running cpus=0.25 memory=512m",
        expect![[r#"
            state: Progressing
            message: update cpus 0.5, memory 768m (was cpus 0.25, memory 512m)
            update c1 in place: update cpus 0.5, memory 768m (was cpus 0.25, memory 512m)
        "#]],
    );
}

#[test]
fn lifting_a_limit_replaces_the_container() {
    check(
        "desired web@h1 gen=2 hash=aa image=app:v1 converged=1
         container c1 gen=1 hash=aa image=app:v1 running cpus=1 memory=1g",
        expect![[r#"
            state: Progressing
            message: update cpus unlimited, memory unlimited (was cpus 1, memory 1g); docker cannot lift a limit in place
            replace c1 (update cpus unlimited, memory unlimited (was cpus 1, memory 1g); docker cannot lift a limit in place)
        "#]],
    );
}

#[test]
fn a_limit_added_outside_ballast_is_lifted_by_replacing() {
    check(
        "desired web@h1 gen=1 hash=aa image=app:v1 converged=1
         container c1 gen=1 hash=aa image=app:v1 running memory=1g",
        expect![[r#"
            state: Degraded
            message: restore memory unlimited (was 1g, changed outside ballast); docker cannot lift a limit in place
            replace c1 (restore memory unlimited (was 1g, changed outside ballast); docker cannot lift a limit in place) [drift: resources_restored]
        "#]],
    );
}

#[test]
fn exited_container_is_started() {
    check(
        "desired job@h1 gen=1 hash=aa image=app:v1 converged=1
         container c1 gen=1 hash=aa image=app:v1 exited",
        expect![[r#"
            state: Degraded
            message: container c1 is exited
            start c1 (container c1 is exited) [drift: restart_stopped]
        "#]],
    );
}

#[test]
fn removed_container_is_recreated_as_drift() {
    check(
        "desired job@h1 gen=1 hash=aa image=app:v1 converged=1",
        expect![[r#"
            state: Degraded
            message: container missing, recreating
            create (container missing, recreating) [drift: recreate_missing]
        "#]],
    );
}

#[test]
fn duplicates_are_removed_keeping_the_running_one() {
    check(
        "desired web@h1 gen=1 hash=aa image=app:v1 converged=1
         container c2 gen=1 hash=aa image=app:v1 exited
         container c1 gen=1 hash=aa image=app:v1 running",
        expect![[r#"
            state: Converged
            message: removing duplicates
            remove c2 (duplicate container) [drift: duplicate_removed]
        "#]],
    );
}

#[test]
fn stale_duplicates_are_removed_before_replacing() {
    check(
        "desired web@h1 gen=3 hash=cc image=app:v3 converged=2
         container c1 gen=1 hash=aa image=app:v1 exited
         container c2 gen=2 hash=bb image=app:v2 running",
        expect![[r#"
            state: Progressing
            message: image app:v2 → app:v3
            remove c1 (duplicate container) [drift: duplicate_removed]
            replace c2 (image app:v2 → app:v3)
        "#]],
    );
}

#[test]
fn interrupted_rollout_is_finished() {
    check(
        "desired web@h1 gen=2 hash=bb image=app:v2 converged=1
         container c1 gen=1 hash=aa image=app:v1 exited
         container c2 gen=2 hash=bb image=app:v2 running",
        expect![[r#"
            state: Progressing
            message: finishing rollout
            finish rollout: health-check c2, then remove c1
        "#]],
    );
}

#[test]
fn halted_rollout_waits_and_keeps_old_running() {
    check(
        "desired web@h1 gen=2 hash=bb image=app:bad converged=1 halted
         container c1 gen=1 hash=aa image=app:v1 running",
        expect![[r#"
            state: Failed
        "#]],
    );
}

#[test]
fn halted_rollout_restarts_a_stopped_old_container() {
    check(
        "desired web@h1 gen=2 hash=bb image=app:bad converged=1 halted
         container c1 gen=1 hash=aa image=app:v1 exited",
        expect![[r#"
            state: Failed
            start c1 (restore previous container)
        "#]],
    );
}

#[test]
fn halted_rollout_removes_a_leftover_new_container() {
    check(
        "desired web@h1 gen=2 hash=bb image=app:bad converged=1 halted
         container c1 gen=1 hash=aa image=app:v1 exited
         container c2 gen=2 hash=bb image=app:bad running",
        expect![[r#"
            state: Failed
            remove c2 (rollout failed)
            start c1 (restore previous container)
        "#]],
    );
}

#[test]
fn halted_rollout_keeps_a_host_where_it_succeeded() {
    // This host rolled to bb before another host failed bb: it keeps what works, and rolls nothing back.
    check(
        "desired web@h1 gen=2 hash=bb image=app:v2 converged=2 halted
         container c2 gen=2 hash=bb image=app:v2 running",
        expect![[r#"
            state: Converged
        "#]],
    );
}

#[test]
fn paused_is_observed_only() {
    check(
        "desired web@h1 gen=2 hash=bb image=app:v2 converged=1 paused
         container c1 gen=1 hash=aa image=app:v1 exited",
        expect![[r#"
            state: Paused
            message: paused: observed only; not at the desired spec
        "#]],
    );
}

#[test]
fn unit_no_longer_desired_removes_everything() {
    check(
        "desired none
         container c1 gen=1 hash=aa image=app:v1 running
         container c2 gen=1 hash=aa image=app:v1 exited",
        expect![[r#"
            state: Converged
            message: removing containers of a unit no longer desired
            remove c1 (no longer desired)
            remove c2 (no longer desired)
        "#]],
    );
}

#[test]
fn nothing_desired_nothing_observed() {
    check(
        "desired none",
        expect![[r#"
            state: Converged
        "#]],
    );
}

#[test]
fn a_container_being_removed_counts_as_gone() {
    check(
        "desired job@h1 gen=1 hash=aa image=app:v1 converged=1
         container c1 gen=1 hash=aa image=app:v1 removing",
        expect![[r#"
            state: Degraded
            message: container missing, recreating
            create (container missing, recreating) [drift: recreate_missing]
        "#]],
    );
}
