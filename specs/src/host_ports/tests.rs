//! [`check`] keeps the claims taken by host; on random sets of roles (hosts, published ports and proxies drawn
//! from small pools, so that they clash often) it reports exactly what a scan of every claim taken reports, in
//! the same order.

use proptest::prelude::*;
use serde_json::json;

use super::{check, claims, clash, Claim};
use crate::model::Role;
use crate::problem::Problem;

/// The check as a scan of every claim taken so far, for each claim of each role of the set.
fn check_by_scan(roles: &[(usize, &Role)], stored: &[Role]) -> Vec<(usize, Problem)> {
    let in_set: Vec<&str> = roles.iter().map(|(_, r)| r.metadata.name.as_str()).collect();
    let mut taken: Vec<Claim<'_>> = stored
        .iter()
        .filter(|r| !in_set.contains(&r.metadata.name.as_str()))
        .flat_map(|r| claims(r, true))
        .collect();
    let mut problems = Vec::new();
    for (index, role) in roles {
        let mine = claims(role, false);
        for claim in &mine {
            for other in taken.iter().filter(|t| t.host == claim.host) {
                if let Some(problem) = clash(claim, other) {
                    problems.push((*index, problem));
                }
            }
        }
        taken.extend(mine);
    }
    problems
}

/// Which of the hosts `h0`..`h3` a role is on, which of a few ports it publishes, and its proxy if any: on port 80
/// (else 3000), routing which of two host names.
type Drawn = (Vec<bool>, Vec<bool>, Option<(bool, Vec<bool>)>);

fn role() -> impl Strategy<Value = Drawn> {
    (
        proptest::collection::vec(any::<bool>(), 4),
        proptest::collection::vec(any::<bool>(), 4),
        proptest::option::of((any::<bool>(), proptest::collection::vec(any::<bool>(), 2))),
    )
}

/// The role `name` as drawn.
fn make(name: &str, (hosts, ports, proxy): &Drawn) -> Role {
    const PORTS: [&str; 4] = ["3000:3000", "80:3000", "127.0.0.1:3000:3000", "3000:3000/udp"];
    let pick = |on: &[bool], from: &[String]| -> Vec<String> {
        on.iter().zip(from).filter(|(on, _)| **on).map(|(_, v)| v.clone()).collect()
    };
    let hosts = pick(hosts, &(0..4).map(|i| format!("h{i}")).collect::<Vec<_>>());
    let ports = pick(ports, &PORTS.map(String::from));
    let mut spec = json!({"hosts": hosts, "image": "app:v1", "ports": ports});
    if let Some((at_80, names)) = proxy {
        let names = pick(names, &["a.test".to_string(), "b.test".to_string()]);
        spec["proxy"] = json!({"port": if *at_80 { 80 } else { 3000 }, "hosts": names});
    }
    serde_json::from_value(json!({"apiVersion": "ballast/v1", "metadata": {"name": name}, "spec": spec}))
        .expect("a role")
}

proptest! {
    #[test]
    fn by_host_reports_what_a_scan_reports(
        set in proptest::collection::vec(role(), 0..4),
        stored in proptest::collection::vec(role(), 0..4),
    ) {
        // The set's roles `s0`.. and the stored roles `s0`.. too, so some stored roles are replaced by the set's.
        let set: Vec<Role> = set.iter().enumerate().map(|(i, r)| make(&format!("s{i}"), r)).collect();
        let stored: Vec<Role> =
            stored.iter().enumerate().map(|(i, r)| make(&format!("s{}", i + 2), r)).collect();
        let roles: Vec<(usize, &Role)> = set.iter().enumerate().collect();
        prop_assert_eq!(check(&roles, &stored), check_by_scan(&roles, &stored));
    }
}
