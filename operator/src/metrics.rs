//! The operator's Prometheus metrics: one [`Metrics`] holding every family, registered once in the registry
//! `GET /metrics` renders. Label values come from `kind()` methods and fixed names, never from `Debug`.
//!
//! | name | type | labels |
//! |---|---|---|
//! | `ballast_leader` | gauge 0/1 | |
//! | `ballast_reconciles_total` | counter | `result`: `ok` or the error's kind (`unreachable`, `docker`, `not_leader`, ...) |
//! | `ballast_reconcile_duration_seconds` | histogram | |
//! | `ballast_drift_corrections_total` | counter | `kind`: `recreate_missing`, `restart_stopped`, `resources_restored`, `duplicate_removed` |
//! | `ballast_units` | gauge | `state`: `Converged`, `Progressing`, `Degraded`, `Failed`, `Unreachable`, `Paused` |
//! | `ballast_host_up` | gauge 0/1 | `host` |
//! | `ballast_host_recoveries_total` | counter | `host`: host passes that succeeded after the host was unreachable |
//! | `ballast_converge_seconds` | histogram | |

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use ballast_specs::wire::UnitState;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Every metric of the operator. Cheap to share behind an `Arc`; a standby keeps its families (at 0).
pub struct Metrics {
    leader: Gauge,
    reconciles: Family<ResultLabel, Counter>,
    reconcile_duration: Histogram,
    drift_corrections: Family<KindLabel, Counter>,
    units: Family<StateLabel, Gauge>,
    host_up: Family<HostLabel, Gauge>,
    host_recoveries: Family<HostLabel, Counter>,
    converge: Histogram,
    /// Whether each host was up at its last pass, to count recoveries.
    hosts: Mutex<HashMap<String, bool>>,
}

/// Every unit state, in the order `ballast_units` lists them.
pub const UNIT_STATES: [UnitState; 6] = [
    UnitState::Converged,
    UnitState::Progressing,
    UnitState::Degraded,
    UnitState::Failed,
    UnitState::Unreachable,
    UnitState::Paused,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostLabel {
    host: String,
}

impl Metrics {
    /// The metrics, registered in `registry`.
    pub fn register(registry: &mut Registry) -> Metrics {
        let metrics = Metrics::unregistered();
        registry.register(
            "ballast_leader",
            "1 while this ballastd leads and reconciles",
            metrics.leader.clone(),
        );
        registry.register(
            "ballast_reconciles",
            "Unit reconciles by result (ok, or the error's kind)",
            metrics.reconciles.clone(),
        );
        registry.register(
            "ballast_reconcile_duration_seconds",
            "Time of one unit reconcile",
            metrics.reconcile_duration.clone(),
        );
        registry.register(
            "ballast_drift_corrections",
            "Drift corrected, by kind",
            metrics.drift_corrections.clone(),
        );
        registry.register("ballast_units", "Units by state (leader only)", metrics.units.clone());
        registry.register(
            "ballast_host_up",
            "1 when the host's last pass listed it",
            metrics.host_up.clone(),
        );
        registry.register(
            "ballast_host_recoveries",
            "Host passes that succeeded after the host was unreachable",
            metrics.host_recoveries.clone(),
        );
        registry.register(
            "ballast_converge_seconds",
            "From a role's new generation first seen to all its units converged at it",
            metrics.converge.clone(),
        );
        metrics
    }

    /// Metrics nobody renders (tests, or a context built without a registry).
    pub fn unregistered() -> Metrics {
        Metrics {
            leader: Gauge::default(),
            reconciles: Family::default(),
            // 5 ms to about 80 s.
            reconcile_duration: Histogram::new(exponential_buckets(0.005, 2.0, 15)),
            drift_corrections: Family::default(),
            units: Family::default(),
            host_up: Family::default(),
            host_recoveries: Family::default(),
            // 100 ms to about 55 min (a deploy timeout may be 20 min).
            converge: Histogram::new(exponential_buckets(0.1, 2.0, 16)),
            hosts: Mutex::default(),
        }
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    pub fn is_leader(&self) -> bool {
        self.leader.get() == 1
    }

    /// One unit reconcile ended with `result` (`ok` or an error's `kind()`) after `elapsed`.
    pub fn reconciled(&self, result: &'static str, elapsed: Duration) {
        self.reconciles.get_or_create(&ResultLabel { result }).inc();
        self.reconcile_duration.observe(elapsed.as_secs_f64());
    }

    /// How many reconciles ended with `result` so far.
    pub fn reconciles(&self, result: &'static str) -> u64 {
        self.reconciles.get(&ResultLabel { result }).map_or(0, |c| c.get())
    }

    pub fn drift_corrected(&self, kind: &'static str) {
        self.drift_corrections.get_or_create(&KindLabel { kind }).inc();
    }

    pub fn drift_corrections(&self, kind: &'static str) -> u64 {
        self.drift_corrections.get(&KindLabel { kind }).map_or(0, |c| c.get())
    }

    /// Sets `ballast_units` from the number of units in each state (each state listed, 0 included).
    pub fn set_units(&self, counts: &HashMap<UnitState, i64>) {
        for state in UNIT_STATES {
            let count = counts.get(&state).copied().unwrap_or(0);
            self.units.get_or_create(&StateLabel { state: state_name(state) }).set(count);
        }
    }

    /// A pass of `host` listed it (`up`) or found it unreachable. A host that comes back counts a recovery.
    pub fn host_seen(&self, host: &str, up: bool) {
        let was = self.lock_hosts().insert(host.to_string(), up);
        self.host_up.get_or_create(&HostLabel { host: host.to_string() }).set(i64::from(up));
        if up && was == Some(false) {
            self.host_recoveries.get_or_create(&HostLabel { host: host.to_string() }).inc();
        }
    }

    /// Drops `ballast_host_up` of hosts no longer in the spec: those whose name `keep` refuses.
    pub fn retain_hosts(&self, keep: impl Fn(&str) -> bool) {
        self.lock_hosts().retain(|host, _| {
            let keep = keep(host);
            if !keep {
                self.host_up.remove(&HostLabel { host: host.clone() });
            }
            keep
        });
    }

    /// A role converged at a new generation `elapsed` after it was first seen.
    pub fn converged(&self, elapsed: Duration) {
        self.converge.observe(elapsed.as_secs_f64());
    }

    /// Forgets what only the leader knows (units by state, hosts up), when leading ends.
    pub fn step_down(&self) {
        self.set_leader(false);
        self.set_units(&HashMap::new());
        let mut hosts = self.lock_hosts();
        for host in hosts.keys() {
            self.host_up.remove(&HostLabel { host: host.clone() });
        }
        hosts.clear();
    }

    fn lock_hosts(&self) -> std::sync::MutexGuard<'_, HashMap<String, bool>> {
        self.hosts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A unit state's stable label value (the same word as in status JSON).
pub fn state_name(state: UnitState) -> &'static str {
    match state {
        UnitState::Converged => "Converged",
        UnitState::Progressing => "Progressing",
        UnitState::Degraded => "Degraded",
        UnitState::Failed => "Failed",
        UnitState::Unreachable => "Unreachable",
        UnitState::Paused => "Paused",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    }

    #[test]
    fn renders_every_family_under_its_name() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        metrics.set_leader(true);
        metrics.reconciled("ok", Duration::from_millis(12));
        metrics.reconciled("unreachable", Duration::from_millis(3));
        metrics.drift_corrected("recreate_missing");
        metrics.set_units(&HashMap::from([(UnitState::Converged, 2), (UnitState::Failed, 1)]));
        metrics.host_seen("web-1", false);
        metrics.host_seen("web-1", true);
        metrics.converged(Duration::from_secs(3));
        let text = render(&registry);
        for line in [
            "ballast_leader 1",
            "ballast_reconciles_total{result=\"ok\"} 1",
            "ballast_reconciles_total{result=\"unreachable\"} 1",
            "ballast_reconcile_duration_seconds_count 2",
            "ballast_drift_corrections_total{kind=\"recreate_missing\"} 1",
            "ballast_units{state=\"Converged\"} 2",
            "ballast_units{state=\"Failed\"} 1",
            "ballast_units{state=\"Paused\"} 0",
            "ballast_host_up{host=\"web-1\"} 1",
            "ballast_host_recoveries_total{host=\"web-1\"} 1",
            "ballast_converge_seconds_count 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing from:\n{text}");
        }
    }

    #[test]
    fn stepping_down_forgets_units_and_hosts() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        metrics.set_leader(true);
        metrics.set_units(&HashMap::from([(UnitState::Converged, 1)]));
        metrics.host_seen("web-1", true);
        metrics.step_down();
        let text = render(&registry);
        assert!(text.contains("ballast_leader 0"), "{text}");
        assert!(text.contains("ballast_units{state=\"Converged\"} 0"), "{text}");
        assert!(!text.contains("ballast_host_up{"), "{text}");
    }

    #[test]
    fn a_host_that_stays_up_does_not_count_recoveries() {
        let metrics = Metrics::unregistered();
        metrics.host_seen("a", true);
        metrics.host_seen("a", true);
        metrics.retain_hosts(|_| false);
        metrics.host_seen("a", false);
        metrics.host_seen("a", true);
        let recovered = metrics.host_recoveries.get(&HostLabel { host: "a".into() }).map(|c| c.get());
        assert_eq!(recovered, Some(1));
    }
}
