//! `ballast plan`: what the reconciler would do right now on every host, planned against the hosts' listings
//! and the statuses in the store. It reads and never writes: not the store, not the hosts, and not the
//! leader's memory (it builds its own index of the stored statuses), so any `ballastd` can answer it.

use std::collections::BTreeMap;
use std::sync::Arc;

use ballast_specs::wire::UnitPlan;

use super::host_pass::{containers_of, units_on_host};
use super::memory::Statuses;
use super::switch::routed;
use super::{proxy, Specs, Unit};
use crate::aws::SecretSource;
use crate::hosts::{Container, HostPool};
use crate::labels;
use crate::plan::{self, Plan};
use crate::proxy::Settings;
use crate::store::{SpecStore, StoreError};
use crate::tier::{self, Tiers};

/// Plans every unit without acting, over the shared host pool.
pub struct Preview {
    store: Arc<dyn SpecStore>,
    hosts: Arc<HostPool>,
    secrets: Arc<dyn SecretSource>,
    proxy: Settings,
}

impl Preview {
    pub fn new(store: Arc<dyn SpecStore>, hosts: Arc<HostPool>, secrets: Arc<dyn SecretSource>) -> Preview {
        Preview { store, hosts, secrets, proxy: Settings::default() }
    }

    /// Plans the hosts' proxies with these settings (`ballastd --proxy-image`, `--proxy-admin-port`).
    pub fn with_proxy(mut self, settings: Settings) -> Preview {
        self.proxy = settings;
        self
    }

    /// The plans of every unit (or of one role's units). An unknown role gives `NotFound`.
    pub async fn plan(&self, role: Option<&str>) -> Result<Vec<UnitPlan>, StoreError> {
        let specs = Specs::new(self.store.snapshot().await?);
        if let Some(role) = role {
            if role != labels::PROXY_ROLE && specs.role(role).is_none() {
                return Err(StoreError::NotFound { kind: "role", name: role.to_string() });
            }
        }
        // The stored statuses say which rollouts failed (the planner's halt check) and where units converged.
        let mut statuses = Statuses::default();
        for s in self.store.list_status().await? {
            statuses.insert(Unit { role: s.role.clone(), host: s.host.clone() }, s);
        }
        let snapshot = specs.snapshot();
        let tiers = tier::tiers(snapshot.revision, &snapshot.roles, &snapshot.controls);
        let mut out = Vec::new();
        for host in specs.hosts() {
            let name = &host.metadata.name;
            let listing = match self.hosts.client(host).list().await {
                Ok(listing) => listing,
                Err(e) => {
                    for unit in units_on_host(&specs, name, &[]) {
                        if role.is_none_or(|r| r == unit.role) {
                            let message = format!("host unreachable: {e}");
                            out.push(UnitPlan {
                                role: unit.role,
                                host: unit.host,
                                actions: Vec::new(),
                                message,
                            });
                        }
                    }
                    continue;
                }
            };
            let client = self.hosts.client(host);
            for unit in units_on_host(&specs, name, &listing) {
                if role.is_some_and(|r| r != unit.role) {
                    continue;
                }
                if proxy::is_proxy(&unit) {
                    // The proxy's last switches are the leader's memory: a preview plans without them.
                    let none = BTreeMap::new();
                    let plan = proxy::plan_on(&self.proxy, &specs, name, &*client, &listing, &none).await;
                    let actions = plan.actions.iter().map(ToString::to_string).collect();
                    out.push(UnitPlan { role: unit.role, host: unit.host, actions, message: plan.message });
                    continue;
                }
                let planned = self.plan_unit(&specs, &statuses, &tiers, &unit, &listing).await;
                let (actions, message) = match planned {
                    Ok(plan) => (plan.actions.iter().map(ToString::to_string).collect(), plan.message),
                    Err(e) => (Vec::new(), e),
                };
                out.push(UnitPlan { role: unit.role, host: unit.host, actions, message });
            }
        }
        Ok(out)
    }

    /// The plan of one unit against its host's listing; `Err` says why it cannot be planned.
    async fn plan_unit(
        &self,
        specs: &Specs,
        statuses: &Statuses,
        tiers: &Tiers,
        unit: &Unit,
        listing: &[Container],
    ) -> Result<Plan, String> {
        let observed = containers_of(listing, unit);
        let Some(role) = specs.desired_role(unit) else { return Ok(plan::plan(None, &observed)) };
        let control = specs.control(&role.metadata.name);
        let secrets = match &role.spec.secrets {
            Some(s) => Some(
                self.secrets
                    .resolve(&s.source, &s.keys)
                    .await
                    .map_err(|e| format!("secrets of role {}: {e}", role.metadata.name))?,
            ),
            None => None,
        };
        let mut desired = statuses.desired(role, unit, &control, secrets.as_ref(), tiers);
        if let Some(proxied) = &mut desired.proxy {
            let host = specs.host(&unit.host).ok_or("host not found")?;
            let client = self.hosts.client(host);
            proxied.routed = routed(&*client, &self.proxy, listing, &unit.host, role, &observed).await;
        }
        Ok(plan::plan(Some(&desired), &observed))
    }
}
