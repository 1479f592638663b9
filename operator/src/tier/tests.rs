//! Data-driven snapshot tests of the rollout groups: roles in, each group's units, budget and members out
//! (`UPDATE_EXPECT=1` to refresh).
//!
//! Fixture lines: `role NAME hosts=N [group=G] [max=COUNT|PERCENT%] [gen=N] [retry=N]`.
//! Output: one line a group, `GROUP: units U, budget B: ROLE (gen N, retry N), ...`, in a stable order.

use std::collections::BTreeMap;

use ballast_specs::{MaxUnavailable, Role, RoleControl};
use expect_test::{expect, Expect};

use super::*;

fn check(fixture: &str, expect: Expect) {
    let (roles, controls) = parse_fixture(fixture);
    let tiers = tiers(7, &roles, &controls);
    let mut out = String::new();
    for (group, tier) in tiers.groups() {
        let members: Vec<String> = tier
            .members
            .iter()
            .map(|m| format!("{} (gen {}, retry {})", m.role, m.generation, m.retry))
            .collect();
        out.push_str(&format!(
            "{group}: units {}, budget {}: {}\n",
            tier.units,
            tier.budget,
            members.join(", ")
        ));
    }
    expect.assert_eq(&out);
}

fn parse_fixture(fixture: &str) -> (Vec<Role>, Vec<(String, RoleControl)>) {
    let mut roles = Vec::new();
    let mut controls = Vec::new();
    for line in fixture.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut words = line.split_whitespace();
        assert_eq!(words.next(), Some("role"), "{line}");
        let name = words.next().unwrap();
        let fields: BTreeMap<&str, &str> = words.map(|w| w.split_once('=').unwrap()).collect();
        roles.push(role(name, &fields));
        if let Some(retry) = fields.get("retry") {
            controls.push((
                name.to_string(),
                RoleControl { retry: retry.parse().unwrap(), ..Default::default() },
            ));
        }
    }
    (roles, controls)
}

fn role(name: &str, fields: &BTreeMap<&str, &str>) -> Role {
    let hosts: usize = fields["hosts"].parse().unwrap();
    let mut role: Role = serde_json::from_value(serde_json::json!({
        "apiVersion": "ballast/v1",
        "metadata": {"name": name},
        "spec": {"hosts": (0..hosts).map(|i| format!("{name}-h{i}")).collect::<Vec<_>>(), "image": "app:v1"},
    }))
    .unwrap();
    role.metadata.generation = fields.get("gen").map_or(1, |g| g.parse().unwrap());
    role.spec.rollout.group = fields.get("group").map(|g| g.to_string());
    role.spec.rollout.max_unavailable = fields.get("max").map(|m| MaxUnavailable::parse(m).unwrap());
    role
}

#[test]
fn a_role_without_a_group_rolls_one_unit_at_a_time() {
    check(
        "role web hosts=3
         role job hosts=1",
        expect![[r#"
            role job: units 1, budget 1: job (gen 1, retry 0)
            role web: units 3, budget 1: web (gen 1, retry 0)
        "#]],
    );
}

#[test]
fn roles_of_a_group_share_one_budget() {
    check(
        "role web hosts=1 group=web gen=3
         role web_replica hosts=1 group=web retry=2
         role job hosts=1",
        expect![[r#"
            group web: units 2, budget 1: web (gen 3, retry 0), web_replica (gen 1, retry 2)
            role job: units 1, budget 1: job (gen 1, retry 0)
        "#]],
    );
}

#[test]
fn a_group_is_never_joined_by_a_role_of_its_name_without_a_group() {
    check(
        "role web hosts=2
         role web_replica hosts=2 group=web max=2",
        expect![[r#"
            group web: units 2, budget 2: web_replica (gen 1, retry 0)
            role web: units 2, budget 1: web (gen 1, retry 0)
        "#]],
    );
}

#[test]
fn a_percentage_is_of_the_whole_group_rounded_down_at_least_one() {
    check(
        "role api hosts=1000 max=10%
         role small hosts=9 max=10%
         role half hosts=3 max=50%
         role count hosts=4 max=2",
        expect![[r#"
            role api: units 1000, budget 100: api (gen 1, retry 0)
            role count: units 4, budget 2: count (gen 1, retry 0)
            role half: units 3, budget 1: half (gen 1, retry 0)
            role small: units 9, budget 1: small (gen 1, retry 0)
        "#]],
    );
    // 10% of the group's 20 units, not of each role's 10.
    check(
        "role a hosts=10 group=g max=10%
         role b hosts=10 group=g max=10%",
        expect![[r#"
            group g: units 20, budget 2: a (gen 1, retry 0), b (gen 1, retry 0)
        "#]],
    );
}

#[test]
fn when_the_roles_of_a_group_disagree_the_smallest_budget_wins() {
    check(
        "role a hosts=10 group=g max=50%
         role b hosts=10 group=g max=3
         role c hosts=10 group=g",
        expect![[r#"
            group g: units 30, budget 1: a (gen 1, retry 0), b (gen 1, retry 0), c (gen 1, retry 0)
        "#]],
    );
    check(
        "role a hosts=10 group=g max=50%
         role b hosts=10 group=g max=3",
        expect![[r#"
            group g: units 20, budget 3: a (gen 1, retry 0), b (gen 1, retry 0)
        "#]],
    );
}

#[test]
fn lookups_by_role() {
    fn fields(group: &'static str, max: &'static str) -> BTreeMap<&'static str, &'static str> {
        BTreeMap::from([("hosts", "2"), ("group", group), ("max", max)])
    }
    let web = role("web", &fields("web", "1"));
    let replica = role("web_replica", &fields("web", "1"));
    let tiers = tiers(7, &[web.clone(), replica.clone()], &[]);
    assert_eq!(tiers.revision(), 7);
    assert_eq!(tiers.budget(&web), (Group::Named("web".into()), 1));
    let peers: Vec<&str> = tiers.peers("web").map(|m| m.role.as_str()).collect();
    assert_eq!(peers, ["web_replica"]);
    assert_eq!(tiers.peers("unknown").count(), 0);

    // A role newer than the tiers counts alone, within its named group's budget when that is known.
    let newer = role("worker", &fields("web", "4"));
    assert_eq!(tiers.budget(&newer), (Group::Named("web".into()), 1));
    let alone = role("cron", &BTreeMap::from([("hosts", "8"), ("max", "50%")]));
    assert_eq!(tiers.budget(&alone), (Group::Role("cron".into()), 4));
}
