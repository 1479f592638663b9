//! The indexes of [`Statuses`] against a plain scan of the statuses, after random inserts and removals: whether a
//! role is converged at its generation, its failed rollouts, and the units per state.

use std::collections::HashMap;

use ballast_specs::wire::{FailedRollout, UnitState, UnitStatus};
use ballast_specs::Role;
use chrono::{TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::Statuses;
use crate::reconcile::Unit;

const STATES: [UnitState; 6] = [
    UnitState::Converged,
    UnitState::Progressing,
    UnitState::Degraded,
    UnitState::Failed,
    UnitState::Unreachable,
    UnitState::Paused,
];

#[test]
fn indexes_match_a_scan_after_random_changes() {
    let mut rng = StdRng::seed_from_u64(10);
    // How often a role with hosts was found converged, and not: both must be tried.
    let mut outcomes = [0; 2];
    for _ in 0..20 {
        let mut statuses = Statuses::default();
        // What the indexes must agree with: the statuses themselves.
        let mut plain: HashMap<Unit, UnitStatus> = HashMap::new();
        for _ in 0..300 {
            let unit = Unit {
                role: format!("r{}", rng.random_range(0..3)),
                host: format!("h{}", rng.random_range(0..6)),
            };
            if rng.random_bool(0.2) {
                assert_eq!(statuses.remove(&unit), plain.remove(&unit), "{unit:?}");
            } else {
                let status = random_status(&mut rng, &unit);
                statuses.insert(unit.clone(), status.clone());
                plain.insert(unit, status);
            }
            for role in random_roles(&mut rng) {
                let scanned = role.spec.hosts.iter().all(|host| {
                    let unit = Unit { role: role.metadata.name.clone(), host: host.clone() };
                    plain.get(&unit).is_some_and(|s| {
                        s.state == UnitState::Converged && s.observed_generation == role.metadata.generation
                    })
                });
                assert_eq!(statuses.all_converged(&role), scanned, "{role:?} in {plain:#?}");
                if !role.spec.hosts.is_empty() {
                    outcomes[usize::from(scanned)] += 1;
                }
                let mut failed: Vec<&UnitStatus> = statuses.failures(&role.metadata.name).collect();
                let mut scanned: Vec<&UnitStatus> =
                    plain.values().filter(|s| s.role == role.metadata.name && s.failed.is_some()).collect();
                failed.sort_by_key(|s| &s.host);
                scanned.sort_by_key(|s| &s.host);
                assert_eq!(failed, scanned);
            }
            for state in STATES {
                let scanned = plain.values().filter(|s| s.state == state).count() as i64;
                assert_eq!(statuses.counts().get(&state).copied().unwrap_or(0), scanned, "{state:?}");
            }
        }
    }
    assert!(outcomes.iter().all(|&n| n > 100), "converged and not: {outcomes:?}");
}

/// A status of `unit`: mostly converged, at generation 1 or 2, now and then with a failed rollout.
fn random_status(rng: &mut StdRng, unit: &Unit) -> UnitStatus {
    let generation = rng.random_range(1..3);
    let state =
        if rng.random_bool(0.6) { UnitState::Converged } else { STATES[rng.random_range(0..STATES.len())] };
    let failed = rng.random_bool(0.1).then(|| FailedRollout { hash: "abc".into(), retry: 0, generation });
    UnitStatus {
        role: unit.role.clone(),
        host: unit.host.clone(),
        generation,
        observed_generation: if rng.random_bool(0.8) { generation } else { 0 },
        state,
        image: String::new(),
        container_id: String::new(),
        cpus: None,
        memory: None,
        message: String::new(),
        since: Utc.timestamp_opt(0, 0).unwrap(),
        failed,
        proxy: None,
    }
}

/// Each of the roles `r0`..`r2` at generation 1 or 2 on a random choice of the hosts `h0`..`h5`.
fn random_roles(rng: &mut StdRng) -> Vec<Role> {
    (0..3)
        .map(|i| {
            let hosts: Vec<String> =
                (0..6).filter(|_| rng.random_bool(0.5)).map(|h| format!("h{h}")).collect();
            let mut role: Role = serde_json::from_value(json!({
                "apiVersion": "ballast/v1", "metadata": {"name": format!("r{i}")},
                "spec": {"hosts": hosts, "image": "app:v1"}
            }))
            .expect("a role");
            role.metadata.generation = rng.random_range(1..3);
            role
        })
        .collect()
}
