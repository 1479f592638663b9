//! Data-driven snapshot tests of the planner: a readable fixture in, the rendered plan out (`UPDATE_EXPECT=1` to refresh).
//! An action that corrects drift shows its kind (`[drift: KIND]`, see [`drift_kind`]).
//!
//! Fixture lines:
//! `desired ROLE@HOST gen=N hash=H image=I [cpus=C] [memory=M] [converged=N] [paused] [halted]
//! [proxy=PORT [routed=ID|nothing]]` or `desired none` (a proxied unit drains for 30 s; without `routed` the
//! proxy was not read);
//! `container ID gen=N hash=H image=I STATE [cpus=C] [memory=M] [published]` (a proxied unit's containers are on the
//! proxy's network, unless `published`: one from before the role was proxied);

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
    match &plan.routing {
        Routing::NotProxied => {}
        Routing::Unseen => out.push_str("routing: not read\n"),
        Routing::Seen { port, to } => {
            out.push_str(&format!("routing: :{port} → {}\n", to.as_deref().unwrap_or("none")))
        }
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
                    proxy: fields.get("proxy").map(|port| Proxied {
                        port: port.parse().unwrap(),
                        drain: std::time::Duration::from_secs(30),
                        routed: match fields.get("routed") {
                            None => Routed::Unknown,
                            Some(&"nothing") => Routed::Nothing,
                            Some(id) => Routed::To(id.to_string()),
                        },
                    }),
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
                    network: desired
                        .as_ref()
                        .filter(|d| d.proxy.is_some() && !flags.contains(&"published"))
                        .map(|_| crate::proxy::NETWORK.to_string()),
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

#[test]
fn proxied_image_change_launches_switches_then_retires() {
    check(
        "desired web@h1 gen=2 hash=bb image=app:v2 converged=1 proxy=80 routed=c1
         container c1 gen=1 hash=aa image=app:v1 running",
        expect![[r#"
            state: Progressing
            message: image app:v1 → app:v2
            routing: :80 → c1
            start a new container beside c1 and health-check it (image app:v1 → app:v2)
            switch the proxy's :80 from c1 to the new container
            drain c1 (requests in flight, at most 30s), then stop and remove it
        "#]],
    );
}

#[test]
fn proxied_first_container_is_launched_and_routed() {
    check(
        "desired web@h1 gen=1 hash=aa image=app:v1 proxy=80 routed=nothing",
        expect![[r#"
            state: Progressing
            message: creating container
            routing: :80 → none
            start a new container and health-check it (creating container)
            route the proxy's :80 to the new container
        "#]],
    );
}

#[test]
fn proxied_rollout_cut_before_the_switch_is_verified_and_switched() {
    check(
        "desired web@h1 gen=2 hash=bb image=app:v2 converged=1 proxy=80 routed=c1
         container c1 gen=1 hash=aa image=app:v1 running
         container c2 gen=2 hash=bb image=app:v2 running",
        expect![[r#"
            state: Progressing
            message: finishing rollout
            routing: :80 → c1
            health-check c2
            switch the proxy's :80 from c1 to c2
            drain c1 (requests in flight, at most 30s), then stop and remove it
        "#]],
    );
}

#[test]
fn proxied_rollout_cut_after_the_switch_only_retires() {
    check(
        "desired web@h1 gen=2 hash=bb image=app:v2 converged=1 proxy=80 routed=c2
         container c1 gen=1 hash=aa image=app:v1 running
         container c2 gen=2 hash=bb image=app:v2 running",
        expect![[r#"
            state: Progressing
            message: draining the old container
            routing: :80 → c2
            drain c1 (requests in flight, at most 30s), then stop and remove it
        "#]],
    );
}

#[test]
fn proxied_failed_rollout_never_switches_and_keeps_the_old_serving() {
    check(
        "desired web@h1 gen=2 hash=bb image=app:bad converged=1 halted proxy=80 routed=c1
         container c1 gen=1 hash=aa image=app:v1 running
         container c2 gen=2 hash=bb image=app:bad running",
        expect![[r#"
            state: Failed
            routing: :80 → c1
            remove c2 (rollout failed)
        "#]],
    );
}

#[test]
fn proxied_route_lost_is_restored() {
    check(
        "desired web@h1 gen=1 hash=aa image=app:v1 converged=1 proxy=80 routed=nothing
         container c1 gen=1 hash=aa image=app:v1 running",
        expect![[r#"
            state: Degraded
            message: the proxy does not route to c1
            routing: :80 → none
            route the proxy's :80 to c1 [drift: route_restored]
        "#]],
    );
}

#[test]
fn proxied_converged_without_reading_the_proxy_does_nothing() {
    check(
        "desired web@h1 gen=1 hash=aa image=app:v1 converged=1 proxy=80
         container c1 gen=1 hash=aa image=app:v1 running",
        expect![[r#"
            state: Converged
            routing: not read
        "#]],
    );
}

#[test]
fn proxied_lifting_a_limit_replaces_behind_the_proxy() {
    check(
        "desired web@h1 gen=2 hash=aa image=app:v1 converged=1 proxy=80 routed=c1
         container c1 gen=1 hash=aa image=app:v1 running memory=1g",
        expect![[r#"
            state: Progressing
            message: update memory unlimited (was 1g); docker cannot lift a limit in place
            routing: :80 → c1
            start a new container beside c1 and health-check it (update memory unlimited (was 1g); docker cannot lift a limit in place)
            switch the proxy's :80 from c1 to the new container
            drain c1 (requests in flight, at most 30s), then stop and remove it
        "#]],
    );
}

#[test]
fn proxied_removed_container_is_launched_as_drift() {
    check(
        "desired web@h1 gen=1 hash=aa image=app:v1 converged=1 proxy=80 routed=c1",
        expect![[r#"
            state: Degraded
            message: container missing, recreating
            routing: :80 → c1
            start a new container and health-check it (container missing, recreating) [drift: recreate_missing]
            switch the proxy's :80 from c1 to the new container [drift: route_restored]
        "#]],
    );
}

#[test]
fn moving_behind_the_proxy_retires_the_published_container_without_a_drain() {
    check(
        "desired web@h1 gen=2 hash=bb image=app:v1 converged=1 proxy=80 routed=nothing
         container c1 gen=1 hash=aa image=app:v1 running published",
        expect![[r#"
            state: Progressing
            message: moving behind the proxy (spec changed (generation 1 → 2))
            routing: :80 → none
            start a new container beside c1 and health-check it (moving behind the proxy (spec changed (generation 1 → 2)))
            stop and remove c1 (no drain)
        "#]],
    );
    check(
        "desired web@h1 gen=2 hash=bb image=app:v1 converged=1 proxy=80 routed=nothing
         container c1 gen=1 hash=aa image=app:v1 running published
         container c2 gen=2 hash=bb image=app:v1 running",
        expect![[r#"
            state: Progressing
            message: moving behind the proxy
            routing: :80 → none
            stop and remove c1 (no drain)
            route the proxy's :80 to c2
        "#]],
    );
}
