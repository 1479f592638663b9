//! The etcd key layout, in one place: every key prefix and key of `/ballast/v1/` (see ARCHITECTURE.md).
//!
//! A persisted format: changing a key here is a change of the stored API.

use std::time::Duration;

use ballast_specs::Kind;
use chrono::{DateTime, Utc};

/// The watched part: hosts, roles and controls.
pub(super) const SPECS: &str = "/ballast/v1/specs/";
pub(super) const HOSTS: &str = "/ballast/v1/specs/hosts/";
pub(super) const ROLES: &str = "/ballast/v1/specs/roles/";
pub(super) const CONTROLS: &str = "/ballast/v1/specs/controls/";
pub(super) const HISTORY: &str = "/ballast/v1/history/";
pub(super) const STATUS: &str = "/ballast/v1/status/";
pub(super) const EVENTS: &str = "/ballast/v1/events/";
/// The cluster's secret key for HMACs of secret values (32 random bytes, made once).
pub(super) const CLUSTER_KEY: &str = "/ballast/v1/cluster/secrets-key";
/// The key of the current leader: its value is the leader's identity; it lives as long as the leader's lease.
pub const LEADER_KEY: &str = "/ballast/v1/leader";

/// How long an event is kept at least.
pub(super) const EVENT_TTL: Duration = Duration::from_secs(3600);

pub(super) fn object_key(kind: Kind, name: &str) -> String {
    format!("{SPECS}{}/{name}", kind.plural())
}

pub(super) fn host_key(name: &str) -> String {
    format!("{HOSTS}{name}")
}

pub(super) fn role_key(name: &str) -> String {
    format!("{ROLES}{name}")
}

pub(super) fn control_key(role: &str) -> String {
    format!("{CONTROLS}{role}")
}

pub(super) fn history_prefix(role: &str) -> String {
    format!("{HISTORY}{role}/")
}

pub(super) fn history_key(role: &str, generation: u64) -> String {
    format!("{HISTORY}{role}/{generation:020}")
}

pub(super) fn status_prefix(role: &str) -> String {
    format!("{STATUS}{role}/")
}

pub(super) fn status_key(role: &str, host: &str) -> String {
    format!("{STATUS}{role}/{host}")
}

/// Events sort by time (then by a random suffix, so two events of one instant both stay).
pub(super) fn event_key(time: DateTime<Utc>, suffix: u32) -> String {
    let nanos = time.timestamp_nanos_opt().unwrap_or(0).max(0);
    format!("{EVENTS}{nanos:020}-{suffix:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keys_sort_by_generation() {
        assert!(history_key("web", 9) < history_key("web", 10));
        assert_eq!(history_key("web", 3), "/ballast/v1/history/web/00000000000000000003");
        assert!(history_key("web", 3).starts_with(&history_prefix("web")));
        assert!(!history_key("web2", 3).starts_with(&history_prefix("web")));
    }

    #[test]
    fn event_keys_sort_by_time() {
        let early = DateTime::from_timestamp(1_000, 0).unwrap_or_default();
        let late = DateTime::from_timestamp(1_000_000_000, 5).unwrap_or_default();
        assert!(event_key(early, u32::MAX) < event_key(late, 0));
    }
}
