//! Leadership of this `ballastd`: campaign on the store, run the reconciler while leading, stop it at once
//! when leading ends (and campaign again), and at shutdown drain it, resign and return.
//!
//! Every `ballastd` serves the API; only the leader reconciles. Each term gets a new reconciler context
//! whose store is fenced on that term's leader key and which checks leadership before each action.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::reconcile::Context;
use crate::runtime::{self, RuntimeConfig};
use crate::store::{Election, StatusStore};

/// How this process campaigns and reconciles.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    /// The value of the leader key while this process leads (`hostname:pid` by default).
    pub identity: String,
    /// TTL of the leader lease: a leader that vanishes is replaced after about this long.
    pub ttl: Duration,
    /// At shutdown, how long in-flight reconciles may take to finish before they are aborted.
    pub drain: Duration,
    pub runtime: RuntimeConfig,
}

/// Makes the reconciler's context of one term around the term's fenced store.
pub type MakeContext = dyn Fn(Arc<dyn StatusStore>) -> Context + Send + Sync;

/// The reconciler's task, aborted if this loop is dropped (its own task aborted) rather than stopped.
struct Reconciler(JoinHandle<()>);

/// First and longest wait before campaigning again after the store failed.
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Campaigns and reconciles while leading, until `shutdown` is cancelled. Then the reconciler stops
/// scheduling, in-flight reconciles get `config.drain`, and the lease is revoked so a standby takes over at
/// once. `ballast_leader` follows leadership.
pub async fn run(
    election: Arc<dyn Election>,
    config: LeaderConfig,
    metrics: Arc<Metrics>,
    make_context: Arc<MakeContext>,
    shutdown: CancellationToken,
) {
    let mut retry = RETRY_MIN;
    tracing::info!(identity = %config.identity, ttl = ?config.ttl, "campaigning for leadership");
    loop {
        let leadership = tokio::select! {
            () = shutdown.cancelled() => return,
            campaign = election.campaign(&config.identity, config.ttl) => campaign,
        };
        let leadership = match leadership {
            Ok(leadership) => {
                retry = RETRY_MIN;
                leadership
            }
            Err(e) => {
                tracing::warn!(error = %e, ?retry, "cannot campaign for leadership; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(RETRY_MAX);
                continue;
            }
        };
        metrics.set_leader(true);
        let ctx = make_context(election.fenced(&leadership))
            .with_metrics(metrics.clone())
            .with_leading(leadership.leading());
        let term = CancellationToken::new();
        let mut reconciler = Reconciler(tokio::spawn(runtime::run_draining(
            Arc::new(ctx),
            config.runtime.clone(),
            term.clone(),
            config.drain,
        )));
        tokio::select! {
            () = leadership.lost() => {
                // The reconciler sees it is no longer leading and aborts its in-flight work at once.
                metrics.step_down();
                term.cancel();
                let _ = (&mut reconciler.0).await;
                tracing::info!(identity = %config.identity, "reconciler stopped; campaigning again");
            }
            () = shutdown.cancelled() => {
                term.cancel();
                let _ = (&mut reconciler.0).await;
                metrics.step_down();
                match leadership.resign().await {
                    Ok(()) => tracing::info!("resigned: the leader lease is revoked"),
                    Err(e) => tracing::warn!(error = %e, "cannot revoke the leader lease; it expires by itself"),
                }
                return;
            }
            _ = &mut reconciler.0 => {
                // The reconciler runs until cancelled; ending otherwise is a bug (a panic): hand over.
                tracing::error!("the reconciler ended by itself; resigning");
                metrics.step_down();
                if let Err(e) = leadership.resign().await {
                    tracing::warn!(error = %e, "cannot revoke the leader lease; it expires by itself");
                }
            }
        }
    }
}

impl Drop for Reconciler {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `hostname:pid`: names this process in the leader key.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    format!("{host}:{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use ballast_specs::wire::UnitState;
    use ballast_specs::Object;
    use serde_json::json;
    use tokio::time::Instant;

    use super::*;
    use crate::aws::NoAws;
    use crate::hosts::fake::{FakeConnector, FakeHost};
    use crate::hosts::{ContainerState, HostPool};
    use crate::reconcile::{self, Config, ReconcileError, Specs, Unit};
    use crate::store::memory::MemoryStore;
    use crate::store::{Actor, SpecStore};

    const TTL: Duration = Duration::from_secs(3);
    const IMAGE: &str = "registry.test/app:v1";

    /// One `ballastd` of the cluster, in-process.
    struct Member {
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        task: JoinHandle<()>,
    }

    struct Cluster {
        store: Arc<MemoryStore>,
        hosts: FakeConnector,
    }

    impl Cluster {
        async fn new() -> Cluster {
            let cluster = Cluster { store: Arc::new(MemoryStore::new()), hosts: FakeConnector::default() };
            cluster.host().publish_image(IMAGE);
            let host: Object = serde_json::from_value(json!({
                "kind": "Host", "apiVersion": "ballast/v1", "metadata": {"name": "h1"},
                "spec": {"address": "h1.test"}
            }))
            .unwrap();
            cluster.store.apply(vec![host], false, &Actor("test".into())).await.unwrap();
            cluster
        }

        fn host(&self) -> FakeHost {
            self.hosts.host("h1")
        }

        async fn apply_role(&self) {
            let role: Object = serde_json::from_value(json!({
                "kind": "Role", "apiVersion": "ballast/v1", "metadata": {"name": "web"},
                "spec": {"hosts": ["h1"], "image": IMAGE, "deployTimeout": "60s"}
            }))
            .unwrap();
            self.store.apply(vec![role], false, &Actor("test".into())).await.unwrap();
        }

        /// A member that needs `settle` of running for a new container to count as healthy.
        fn member(&self, identity: &str, settle: Duration, drain: Duration) -> Member {
            let metrics = Arc::new(Metrics::unregistered());
            let hosts = Arc::new(HostPool::new(Arc::new(self.hosts.clone())));
            let make_context: Arc<MakeContext> = Arc::new(move |store| {
                let config = Config {
                    stop_grace: Duration::from_millis(10),
                    settle,
                    max_passes: 6,
                    ..Config::default()
                };
                Context::new(store, hosts.clone(), Arc::new(NoAws), Arc::new(NoAws), config)
            });
            let config = LeaderConfig {
                identity: identity.to_string(),
                ttl: TTL,
                drain,
                runtime: RuntimeConfig {
                    resync: Duration::from_secs(1),
                    retry_min: Duration::from_millis(50),
                    retry_max: Duration::from_secs(1),
                },
            };
            let shutdown = CancellationToken::new();
            let election: Arc<dyn Election> = self.store.clone();
            let task = tokio::spawn(run(election, config, metrics.clone(), make_context, shutdown.clone()));
            Member { metrics, shutdown, task }
        }

        /// The unit web/h1 converged at generation 1 with one running container.
        async fn converged(&self) {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let statuses = self.store.list_status().await.unwrap();
                let done =
                    statuses.iter().any(|s| s.state == UnitState::Converged && s.observed_generation == 1);
                let running =
                    self.host().containers().iter().filter(|c| c.state == ContainerState::Running).count();
                if done && running == 1 && self.host().containers().len() == 1 {
                    return;
                }
                assert!(Instant::now() < deadline, "not converged: {statuses:?}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    async fn leads(member: &Member) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !member.metrics.is_leader() {
            assert!(Instant::now() < deadline, "never led");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// `a` leads, `b` stands by, and the role has converged.
    async fn leader_and_standby_converged(cluster: &Cluster) -> (Member, Member) {
        let a = cluster.member("a", Duration::from_millis(500), runtime::DRAIN);
        leads(&a).await;
        let b = cluster.member("b", Duration::from_millis(500), runtime::DRAIN);
        cluster.apply_role().await;
        cluster.converged().await;
        (a, b)
    }

    /// `a` leads, `b` stands by (each with its (settle, drain)), and `a` has started the role's first container.
    async fn rollout_started(
        cluster: &Cluster,
        (a_settle, a_drain): (Duration, Duration),
        (b_settle, b_drain): (Duration, Duration),
    ) -> (Member, Member) {
        let a = cluster.member("a", a_settle, a_drain);
        leads(&a).await;
        let b = cluster.member("b", b_settle, b_drain);
        cluster.apply_role().await;
        while cluster.host().calls("start") == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        (a, b)
    }

    #[tokio::test(start_paused = true)]
    async fn one_member_leads_and_a_clean_shutdown_hands_over_at_once() {
        let cluster = Cluster::new().await;
        let (a, b) = leader_and_standby_converged(&cluster).await;
        tokio::time::sleep(TTL * 5).await;
        assert!(a.metrics.is_leader() && !b.metrics.is_leader());
        assert_eq!(cluster.host().calls("create"), 1);
        assert!(a.metrics.reconciles("ok") >= 1);
        assert_eq!(b.metrics.reconciles("ok"), 0);

        a.shutdown.cancel();
        let handing = Instant::now();
        a.task.await.unwrap();
        leads(&b).await;
        assert!(handing.elapsed() < Duration::from_millis(100), "hand-over took {:?}", handing.elapsed());
        assert!(!a.metrics.is_leader());

        let id = cluster.host().containers()[0].id.clone();
        cluster.host().remove_out_of_band(&id);
        cluster.converged().await;
        assert_eq!(cluster.host().calls("create"), 2);
        assert_eq!(b.metrics.drift_corrections("recreate_missing"), 1);
        assert_eq!(a.metrics.drift_corrections("recreate_missing"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_vanished_leader_is_replaced_once_its_lease_expires() {
        let cluster = Cluster::new().await;
        let (a, b) = leader_and_standby_converged(&cluster).await;

        // Like `kill -9`: the loop, its reconciler and its renewals vanish; nobody resigns.
        a.task.abort();
        let vanished = Instant::now();
        leads(&b).await;
        let waited = vanished.elapsed();
        assert!(
            waited >= TTL - TTL / 3 && waited <= TTL + Duration::from_millis(100),
            "took over after {waited:?}"
        );

        let id = cluster.host().containers()[0].id.clone();
        cluster.host().stop_out_of_band(&id);
        cluster.converged().await;
        assert_eq!(cluster.host().calls("create"), 1);
        assert_eq!(b.metrics.drift_corrections("restart_stopped"), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_lets_an_in_flight_rollout_finish_then_resigns() {
        let cluster = Cluster::new().await;
        let settle = Duration::from_secs(2);
        let (a, b) = rollout_started(&cluster, (settle, runtime::DRAIN), (settle, runtime::DRAIN)).await;
        let cancelled = Instant::now();
        a.shutdown.cancel();
        a.task.await.unwrap();
        let took = cancelled.elapsed();
        assert!(
            took >= settle - Duration::from_millis(100) && took < runtime::DRAIN,
            "stopped after {took:?}"
        );
        // a finished the rollout and reported it before resigning.
        let statuses = cluster.store.list_status().await.unwrap();
        assert!(statuses.iter().any(|s| s.state == UnitState::Converged), "{statuses:?}");
        leads(&b).await;
        cluster.converged().await;
        assert_eq!(cluster.host().calls("create"), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_aborts_in_flight_work_at_the_drain_deadline() {
        let cluster = Cluster::new().await;
        let drain = Duration::from_secs(1);
        let (a, b) =
            rollout_started(&cluster, (Duration::from_secs(30), drain), (Duration::from_millis(500), drain))
                .await;
        let cancelled = Instant::now();
        a.shutdown.cancel();
        a.task.await.unwrap();
        let took = cancelled.elapsed();
        assert!(took >= drain && took < drain + Duration::from_millis(100), "stopped after {took:?}");
        // b takes over the half-done rollout: the new container runs at the desired spec, nothing is recreated.
        leads(&b).await;
        cluster.converged().await;
        assert_eq!(cluster.host().calls("create"), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconcile_that_no_longer_leads_stops_before_acting() {
        let cluster = Cluster::new().await;
        cluster.apply_role().await;
        let (leading, not_leading) = tokio::sync::watch::channel(false);
        let ctx = Context::new(
            cluster.store.clone(),
            Arc::new(HostPool::new(Arc::new(cluster.hosts.clone()))),
            Arc::new(NoAws),
            Arc::new(NoAws),
            Config::default(),
        )
        .with_leading(not_leading);
        let specs = Specs::new(cluster.store.snapshot().await.unwrap());
        let unit = Unit { role: "web".to_string(), host: "h1".to_string() };
        let result = reconcile::reconcile(&ctx, &specs, &unit).await;
        assert!(matches!(result, Err(ReconcileError::NotLeader)), "{result:?}");
        assert_eq!(result.unwrap_err().kind(), "not_leader");
        assert_eq!(cluster.host().calls("create") + cluster.host().calls("pull"), 0);
        drop(leading);
    }
}
