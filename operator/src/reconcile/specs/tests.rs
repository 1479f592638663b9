//! The indexes of [`Specs`] against a plain scan of the snapshot's lists, on random snapshots: every lookup
//! answers what the scan answers, for names that are in the snapshot and names that are not.

use ballast_specs::{Host, Role, RoleControl};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::Specs;
use crate::reconcile::Unit;
use crate::store::Snapshot;

#[test]
fn lookups_match_a_scan_of_random_snapshots() {
    let mut rng = StdRng::seed_from_u64(10);
    for _ in 0..200 {
        let snapshot = random_snapshot(&mut rng);
        let specs = Specs::new(snapshot.clone());
        assert_eq!(specs.snapshot(), &snapshot);
        assert_eq!(specs.hosts(), &snapshot.hosts[..]);
        // Names of the snapshot, names only roles use, and names nobody uses.
        let mut hosts: Vec<String> = (0..12).map(host_name).collect();
        hosts.push(String::new());
        let roles: Vec<String> = (0..6).map(role_name).collect();
        for host in &hosts {
            assert_eq!(specs.host(host), snapshot.hosts.iter().find(|h| h.metadata.name == *host), "{host}");
            let on_host: Vec<&str> = specs.roles_on(host).map(|r| r.metadata.name.as_str()).collect();
            let scanned: Vec<&str> = snapshot
                .roles
                .iter()
                .filter(|r| r.spec.hosts.iter().any(|h| h == host))
                .map(|r| r.metadata.name.as_str())
                .collect();
            assert_eq!(on_host, scanned, "roles on {host} in {snapshot:#?}");
            for role in &roles {
                let unit = Unit { role: role.clone(), host: host.clone() };
                let scanned =
                    snapshot.roles.iter().find(|r| r.metadata.name == *role && r.spec.hosts.contains(host));
                assert_eq!(specs.desired_role(&unit), scanned, "{unit:?}");
            }
        }
        for role in &roles {
            assert_eq!(specs.role(role), snapshot.roles.iter().find(|r| r.metadata.name == *role), "{role}");
            let scanned =
                snapshot.controls.iter().find(|(r, _)| r == role).map(|(_, c)| c.clone()).unwrap_or_default();
            assert_eq!(specs.control(role), scanned, "{role}");
        }
    }
}

#[test]
fn an_empty_snapshot_has_nothing() {
    let specs = Specs::default();
    assert!(specs.hosts().is_empty());
    assert_eq!(specs.host("h1"), None);
    assert_eq!(specs.roles_on("h1").count(), 0);
    assert_eq!(specs.desired_role(&Unit { role: "web".into(), host: "h1".into() }), None);
    assert_eq!(specs.control("web"), RoleControl::default());
}

/// Up to 10 of the hosts `h0`..`h9` and up to 5 of the roles `r0`..`r4` (unique names, in name order, as the
/// store gives them), each role on a random choice of `h0`..`h11` (so some name no host of the snapshot, and a
/// few name one host twice), and control switches for some roles (and for a role that does not exist).
fn random_snapshot(rng: &mut StdRng) -> Snapshot {
    let hosts = (0..10).filter(|_| rng.random_bool(0.7)).map(|i| host(&host_name(i))).collect();
    let mut roles = Vec::new();
    for i in 0..5 {
        if !rng.random_bool(0.7) {
            continue;
        }
        let mut on: Vec<String> = (0..12).filter(|_| rng.random_bool(0.4)).map(host_name).collect();
        // Now and then a host named twice, which validation refuses but a plain snapshot can hold.
        if rng.random_bool(0.1) {
            on.extend(on.first().cloned());
        }
        roles.push(role(&role_name(i), on));
    }
    let mut controls = Vec::new();
    for i in 0..6 {
        if rng.random_bool(0.4) {
            let control = RoleControl {
                paused: rng.random_bool(0.5),
                retry: rng.random_range(0..3),
                restart: rng.random_range(0..3),
            };
            controls.push((role_name(i), control));
        }
    }
    Snapshot { revision: rng.random_range(1..100), hosts, roles, controls }
}

fn host_name(i: usize) -> String {
    format!("h{i}")
}

fn role_name(i: usize) -> String {
    format!("r{i}")
}

fn host(name: &str) -> Host {
    serde_json::from_value(json!({
        "apiVersion": "ballast/v1", "metadata": {"name": name}, "spec": {"address": format!("{name}.test")}
    }))
    .expect("a host")
}

fn role(name: &str, hosts: Vec<String>) -> Role {
    serde_json::from_value(json!({
        "apiVersion": "ballast/v1", "metadata": {"name": name}, "spec": {"hosts": hosts, "image": "app:v1"}
    }))
    .expect("a role")
}
