//! Leadership of this `ballastd`: campaign on the store, run the reconciler while leading, stop it at once
//! when leading ends (and campaign again), and at shutdown drain it, resign and return.
//!
//! Every `ballastd` serves the API; only the leader reconciles. Each term gets a new reconciler context
//! whose store is fenced on that term's leader key and which checks leadership before each action.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::reconcile::Context;
use crate::runtime::{self, RuntimeConfig};
use crate::store::{Election, Store};

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
pub type MakeContext = dyn Fn(Arc<dyn Store>) -> Context + Send + Sync;

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
        let mut reconciler = tokio::spawn(runtime::run_draining(
            Arc::new(ctx),
            config.runtime.clone(),
            term.clone(),
            config.drain,
        ));
        tokio::select! {
            () = leadership.lost() => {
                // The reconciler sees it is no longer leading and aborts its in-flight work at once.
                metrics.step_down();
                term.cancel();
                let _ = reconciler.await;
                tracing::info!(identity = %config.identity, "reconciler stopped; campaigning again");
            }
            () = shutdown.cancelled() => {
                term.cancel();
                let _ = reconciler.await;
                metrics.step_down();
                match leadership.resign().await {
                    Ok(()) => tracing::info!("resigned: the leader lease is revoked"),
                    Err(e) => tracing::warn!(error = %e, "cannot revoke the leader lease; it expires by itself"),
                }
                return;
            }
            _ = &mut reconciler => {
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

/// `hostname:pid`: names this process in the leader key.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    format!("{host}:{}", std::process::id())
}
