//! `status [--wait]`, `plan` and `events [-f]`: what ballastd sees and would do.

use std::collections::HashSet;
use std::io::IsTerminal as _;
use std::time::Duration as StdDuration;

use ballast_specs::wire::{Event, List, RoleView, UnitPlan, UnitState, UnitStatus};
use ballast_specs::Duration;
use chrono::Utc;
use tokio::time::Instant;

use super::{fetch_role, role_query, Context, Selection};
use crate::error::{CliError, Result};
use crate::render::{age, or_dash, print_data, table, timestamp, Output};

/// How often `status --wait` and `events -f` ask again.
const POLL: StdDuration = StdDuration::from_millis(500);

/// Prints the status of the selected roles' units; with `wait`, first waits until they settle (see [`settle`]).
pub async fn status(cx: &Context, selection: &Selection, wait: Option<&Duration>) -> Result<()> {
    let Some(timeout) = wait else {
        let list = match selection {
            Selection::All | Selection::Role(_) => statuses(cx, selection).await?,
            _ => only(selection, &selected(cx, selection).await?, statuses(cx, selection).await?),
        };
        return print_status(cx.output, &list);
    };
    let deadline = Instant::now() + timeout.as_std();
    // Table output on a terminal redraws a live table; elsewhere each change is one plain line.
    let live = cx.output.is_table() && std::io::stdout().is_terminal();
    let mut progress = Progress::default();
    loop {
        let roles = selected(cx, selection).await?;
        let list = only(selection, &roles, statuses(cx, selection).await?);
        let verdict = settle(&roles, &list.items);
        let timed_out = Instant::now() >= deadline;
        if cx.output.is_table() {
            if live {
                progress.redraw(&status_table(&list, cx.output == Output::Wide));
            } else if verdict.is_none() && !timed_out {
                progress.changes(&list.items);
            }
        }
        if (verdict.is_some() || timed_out) && !live {
            print_status(cx.output, &list)?;
        }
        match verdict {
            Some(Ok(())) => return Ok(()),
            Some(Err(failure)) => return Err(CliError::Failed(failure)),
            None if timed_out => {
                let pending = pending(&roles, &list.items);
                return Err(CliError::Timeout(format!(
                    "timed out after {timeout} waiting for {} to converge",
                    pending.join(", ")
                )));
            }
            None => tokio::time::sleep(POLL).await,
        }
    }
}

/// The selected roles. A selector that matches no role is an error.
async fn selected(cx: &Context, selection: &Selection) -> Result<Vec<RoleView>> {
    let all = || async { Ok::<_, CliError>(cx.client.get::<List<RoleView>>("/api/v1/roles").await?.items) };
    match selection {
        Selection::All => all().await,
        Selection::Role(name) => Ok(vec![fetch_role(cx, name).await?]),
        Selection::Labels(selector) => {
            let roles: Vec<RoleView> =
                all().await?.into_iter().filter(|v| selector.matches(&v.role.metadata.labels)).collect();
            if roles.is_empty() {
                return Err(CliError::Failed(format!("no role has the labels {selector}")));
            }
            Ok(roles)
        }
        Selection::Roles(names) => {
            Ok(all().await?.into_iter().filter(|v| names.contains(&v.role.metadata.name)).collect())
        }
    }
}

/// The stored statuses: of one role, or of every role.
async fn statuses(cx: &Context, selection: &Selection) -> Result<List<UnitStatus>> {
    let role = match selection {
        Selection::Role(name) => Some(name.as_str()),
        _ => None,
    };
    Ok(cx.client.get(&format!("/api/v1/status{}", role_query(role))).await?)
}

/// The statuses of `roles`' units when roles were picked by labels or by name (ballastd already lists one
/// role's, or every unit's, itself).
fn only(selection: &Selection, roles: &[RoleView], list: List<UnitStatus>) -> List<UnitStatus> {
    if matches!(selection, Selection::All | Selection::Role(_)) {
        return list;
    }
    let names: HashSet<&str> = roles.iter().map(|v| v.role.metadata.name.as_str()).collect();
    List { items: list.items.into_iter().filter(|s| names.contains(s.role.as_str())).collect() }
}

/// What `status --wait` has shown so far: the live table's height, or each unit's last printed state.
#[derive(Default)]
struct Progress {
    lines: usize,
    seen: std::collections::BTreeMap<(String, String), (UnitState, String)>,
}

impl Progress {
    /// Replaces the table drawn last time (cursor up, clear to the end of the screen) with `table`.
    fn redraw(&mut self, table: &str) {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        if self.lines > 0 {
            let _ = write!(out, "\x1b[{}A\x1b[J", self.lines);
        }
        let _ = write!(out, "{table}");
        let _ = out.flush();
        self.lines = table.lines().count();
    }

    /// Prints one line per unit whose state or message changed since the last poll.
    fn changes(&mut self, statuses: &[UnitStatus]) {
        for s in statuses {
            let key = (s.role.clone(), s.host.clone());
            let now = (s.state, s.message.clone());
            if self.seen.get(&key) != Some(&now) {
                let message = if s.message.is_empty() { String::new() } else { format!(": {}", s.message) };
                println!("{}@{} {} (generation {}){message}", s.role, s.host, s.state, s.generation);
                self.seen.insert(key, now);
            }
        }
    }
}

pub async fn plan(cx: &Context, role: Option<&str>) -> Result<()> {
    let list: List<UnitPlan> = cx.client.get(&format!("/api/v1/plan{}", role_query(role))).await?;
    if print_data(cx.output, &list)? {
        return Ok(());
    }
    if list.items.is_empty() {
        eprintln!("no units found");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = list
        .items
        .iter()
        .map(|p| {
            let actions =
                if p.actions.is_empty() { "nothing to do".to_string() } else { p.actions.join("; ") };
            vec![p.role.clone(), p.host.clone(), actions, or_dash(p.message.clone())]
        })
        .collect();
    print!("{}", table(&["ROLE", "HOST", "ACTIONS", "MESSAGE"], &rows));
    Ok(())
}

/// Prints the stored events; with `follow`, keeps asking and prints the new ones (JSON: one object a line).
pub async fn events(cx: &Context, role: Option<&str>, follow: bool) -> Result<()> {
    let path = format!("/api/v1/events{}", role_query(role));
    let list: List<Event> = cx.client.get(&path).await?;
    if !follow {
        if print_data(cx.output, &list)? {
            return Ok(());
        }
        if list.items.is_empty() {
            eprintln!("no events found");
            return Ok(());
        }
        print!("{}", table(EVENT_HEADERS, &list.items.iter().map(event_row).collect::<Vec<_>>()));
        return Ok(());
    }
    let mut seen = HashSet::new();
    let mut first = true;
    let mut items = list.items;
    loop {
        let fresh: Vec<&Event> = items.iter().filter(|e| seen.insert(event_key(e))).collect();
        print_events_line(cx.output, &fresh, first)?;
        first = false;
        tokio::time::sleep(POLL).await;
        items = cx.client.get::<List<Event>>(&path).await?.items;
    }
}

const EVENT_HEADERS: &[&str] = &["TIME", "ROLE", "HOST", "REASON", "ACTOR", "MESSAGE"];

fn print_events_line(output: Output, events: &[&Event], header: bool) -> Result<()> {
    match output {
        Output::Table | Output::Wide => {
            let rows: Vec<Vec<String>> = events.iter().map(|e| event_row(e)).collect();
            let text = table(EVENT_HEADERS, &rows);
            // Fixed-width columns across polls would need every row up front; keep the header once.
            let body =
                if header { text.as_str() } else { text.split_once('\n').map_or("", |(_, rest)| rest) };
            print!("{body}");
        }
        Output::Json => {
            for event in events {
                let line = serde_json::to_string(event)
                    .map_err(|err| CliError::Failed(format!("cannot print JSON: {err}")))?;
                println!("{line}");
            }
        }
        Output::Yaml => {
            for event in events {
                print!("---\n{}", crate::render::yaml(event)?);
            }
        }
    }
    Ok(())
}

fn event_row(e: &Event) -> Vec<String> {
    vec![
        timestamp(e.time),
        or_dash(e.role.clone().unwrap_or_default()),
        or_dash(e.host.clone().unwrap_or_default()),
        e.reason.clone(),
        or_dash(e.actor.clone().unwrap_or_default()),
        e.message.clone(),
    ]
}

fn event_key(e: &Event) -> String {
    format!("{}|{:?}|{:?}|{}|{}", e.time.to_rfc3339(), e.role, e.host, e.reason, e.message)
}

fn print_status(output: Output, list: &List<UnitStatus>) -> Result<()> {
    if print_data(output, list)? {
        return Ok(());
    }
    if list.items.is_empty() {
        eprintln!("no units found");
        return Ok(());
    }
    print!("{}", status_table(list, output == Output::Wide));
    Ok(())
}

/// The status table: one row per unit; `wide` adds the proxy's route of proxied units.
fn status_table(list: &List<UnitStatus>, wide: bool) -> String {
    let now = Utc::now();
    let rows: Vec<Vec<String>> = list
        .items
        .iter()
        .map(|s| {
            let mut row = vec![
                s.role.clone(),
                s.host.clone(),
                s.state.to_string(),
                format!("{}/{}", s.generation, s.observed_generation),
                or_dash(s.image.clone()),
                s.cpus.map(|c| c.to_string()).unwrap_or_else(|| "-".to_string()),
                or_dash(s.memory.clone().unwrap_or_default()),
                or_dash(s.message.clone()),
                age(s.since, now),
            ];
            if wide {
                let proxy =
                    s.proxy.as_ref().map(|p| format!(":{} → {}", p.port, or_dash(p.routes_to.clone())));
                row.insert(7, proxy.unwrap_or_else(|| "-".to_string()));
            }
            row
        })
        .collect();
    let mut headers =
        vec!["ROLE", "HOST", "STATE", "GEN/OBSERVED", "IMAGE", "CPUS", "MEMORY", "MESSAGE", "SINCE"];
    if wide {
        headers.insert(7, "PROXY");
    }
    table(&headers, &rows)
}

/// `Some(Ok)` when every unit of `roles` is Converged at its role's generation; `Some(Err)` naming the units
/// that Failed at the current generation, or the paused roles (they never converge); `None` while waiting.
fn settle(roles: &[RoleView], statuses: &[UnitStatus]) -> Option<Result<(), String>> {
    let paused: Vec<&str> =
        roles.iter().filter(|v| v.control.paused).map(|v| v.role.metadata.name.as_str()).collect();
    if !paused.is_empty() {
        return Some(Err(format!(
            "paused roles do not converge: {} (ballast resume ROLE)",
            paused.join(", ")
        )));
    }
    let mut failed = Vec::new();
    let mut waiting = false;
    for view in roles {
        let generation = view.role.metadata.generation;
        for host in &view.role.spec.hosts {
            match find(statuses, &view.role.metadata.name, host) {
                Some(s) if s.state == UnitState::Failed && s.generation == generation => {
                    failed.push(format!("{}@{host}: {}", s.role, or_dash(s.message.clone())))
                }
                Some(s) if converged(s, generation) => {}
                _ => waiting = true,
            }
        }
    }
    if !failed.is_empty() {
        return Some(Err(format!("rollout failed: {}", failed.join("; "))));
    }
    (!waiting).then_some(Ok(()))
}

/// The units not yet converged, with their state: `web@web-1 (Progressing)`.
fn pending(roles: &[RoleView], statuses: &[UnitStatus]) -> Vec<String> {
    let mut out = Vec::new();
    for view in roles {
        let name = &view.role.metadata.name;
        for host in &view.role.spec.hosts {
            match find(statuses, name, host) {
                Some(s) if converged(s, view.role.metadata.generation) => {}
                Some(s) => out.push(format!("{name}@{host} ({})", s.state)),
                None => out.push(format!("{name}@{host} (no status yet)")),
            }
        }
    }
    out
}

fn find<'a>(statuses: &'a [UnitStatus], role: &str, host: &str) -> Option<&'a UnitStatus> {
    statuses.iter().find(|s| s.role == role && s.host == host)
}

fn converged(s: &UnitStatus, generation: u64) -> bool {
    s.state == UnitState::Converged && s.generation == generation && s.observed_generation == generation
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballast_specs::{Metadata, Role, RoleSpec};

    fn role(name: &str, hosts: &[&str], generation: u64) -> RoleView {
        let spec: RoleSpec = serde_json::from_value(serde_json::json!({
            "hosts": hosts, "image": "app:1"
        }))
        .unwrap();
        RoleView {
            role: Role {
                api_version: "ballast/v1".to_string(),
                metadata: Metadata { name: name.to_string(), generation, ..Metadata::default() },
                spec,
            },
            control: Default::default(),
        }
    }

    fn unit(role: &str, host: &str, state: UnitState, generation: u64, observed: u64) -> UnitStatus {
        UnitStatus {
            role: role.to_string(),
            host: host.to_string(),
            generation,
            observed_generation: observed,
            state,
            image: String::new(),
            container_id: String::new(),
            cpus: None,
            memory: None,
            message: "boom".to_string(),
            since: Utc::now(),
            failed: None,
            proxy: None,
        }
    }

    #[test]
    fn settles_only_when_every_unit_converged_at_its_generation() {
        let roles = [role("web", &["a", "b"], 2)];
        assert_eq!(settle(&roles, &[]), None);
        let half =
            [unit("web", "a", UnitState::Converged, 2, 2), unit("web", "b", UnitState::Progressing, 2, 1)];
        assert_eq!(settle(&roles, &half), None);
        let stale =
            [unit("web", "a", UnitState::Converged, 2, 2), unit("web", "b", UnitState::Converged, 1, 1)];
        assert_eq!(settle(&roles, &stale), None);
        let done =
            [unit("web", "a", UnitState::Converged, 2, 2), unit("web", "b", UnitState::Converged, 2, 2)];
        assert_eq!(settle(&roles, &done), Some(Ok(())));
        let failed =
            [unit("web", "a", UnitState::Converged, 2, 2), unit("web", "b", UnitState::Failed, 2, 1)];
        assert_eq!(settle(&roles, &failed), Some(Err("rollout failed: web@b: boom".to_string())));
        let old_failure =
            [unit("web", "a", UnitState::Converged, 2, 2), unit("web", "b", UnitState::Failed, 1, 1)];
        assert_eq!(settle(&roles, &old_failure), None);
    }

    #[test]
    fn paused_roles_do_not_settle() {
        let mut view = role("job", &["a"], 1);
        view.control.paused = true;
        assert!(matches!(settle(&[view], &[]), Some(Err(_))));
    }
}
