//! Rollout groups (tiers): which roles roll as one, and how many of their units may be replaced at once.
//! Pure: made once per snapshot from the roles and their control switches; snapshot tests in `tier/tests.rs`,
//! their fixture grammar in that file's `//!`.
//!
//! A role with `spec.rollout.group` belongs to that group; a role without one is a group of its own (it never
//! joins a named group, even one spelled like its name). A group's budget is each member's `maxUnavailable`
//! resolved against the group's units (all hosts of all its roles; a percentage rounded down, at least 1), the
//! smallest winning. A failed rollout of one member halts the others while it still halts its own role: while
//! that role keeps the generation and the retry counter the failure was recorded at.

use std::collections::HashMap;

use ballast_specs::{Role, RoleControl};

/// A rollout group: the key its units' budget is kept under.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    /// Roles naming this `spec.rollout.group`.
    Named(String),
    /// A role without a group.
    Role(String),
}

/// Every rollout group of one snapshot, indexed by role.
#[derive(Clone, Debug, Default)]
pub struct Tiers {
    /// The store revision of the snapshot these were made from.
    revision: i64,
    groups: HashMap<Group, Tier>,
    of_role: HashMap<String, Group>,
}

/// One rollout group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tier {
    /// The units of all its roles.
    pub units: usize,
    /// At most this many of them are being replaced at once.
    pub budget: usize,
    /// Its roles, by name.
    pub members: Vec<Member>,
}

/// A role of a group, with what a failure of its rollout must carry to halt the group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub role: String,
    pub generation: u64,
    /// The role's retry counter (`rollout retry`).
    pub retry: u64,
}

/// The rollout groups of `roles`, as stored at `revision`.
pub fn tiers(revision: i64, roles: &[Role], controls: &[(String, RoleControl)]) -> Tiers {
    let retries: HashMap<&str, u64> = controls.iter().map(|(role, c)| (role.as_str(), c.retry)).collect();
    let mut groups: HashMap<Group, Tier> = HashMap::new();
    let mut of_role = HashMap::new();
    for role in roles {
        let name = &role.metadata.name;
        let group = group_of(role);
        let tier =
            groups.entry(group.clone()).or_insert_with(|| Tier { units: 0, budget: 0, members: Vec::new() });
        tier.units += role.spec.hosts.len();
        tier.members.push(Member {
            role: name.clone(),
            generation: role.metadata.generation,
            retry: retries.get(name.as_str()).copied().unwrap_or(0),
        });
        of_role.insert(name.clone(), group);
    }
    for role in roles {
        if let Some(tier) = of_role.get(&role.metadata.name).and_then(|group| groups.get_mut(group)) {
            let budget = role.spec.rollout.max_unavailable().of(tier.units);
            tier.budget = if tier.budget == 0 { budget } else { tier.budget.min(budget) };
        }
    }
    for tier in groups.values_mut() {
        tier.members.sort_by(|a, b| a.role.cmp(&b.role));
    }
    Tiers { revision, groups, of_role }
}

/// The group a role's spec names: its `rollout.group`, or a group of its own.
pub fn group_of(role: &Role) -> Group {
    match &role.spec.rollout.group {
        Some(name) => Group::Named(name.clone()),
        None => Group::Role(role.metadata.name.clone()),
    }
}

impl Tiers {
    /// The store revision these were made at.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// `role`'s group and that group's budget. A role these tiers do not know (its snapshot is newer) counts
    /// alone, within the budget of the group it names if that is known.
    pub fn budget(&self, role: &Role) -> (Group, usize) {
        let known = self.of_role.get(&role.metadata.name);
        if let Some((group, tier)) = known.and_then(|group| Some((group, self.groups.get(group)?))) {
            return (group.clone(), tier.budget);
        }
        let group = group_of(role);
        let own = role.spec.rollout.max_unavailable().of(role.spec.hosts.len());
        let budget = self.groups.get(&group).map_or(own, |tier| tier.budget.min(own));
        (group, budget)
    }

    /// The other roles of `role`'s group (none for a role alone in its group, or unknown).
    pub fn peers<'a>(&'a self, role: &'a str) -> impl Iterator<Item = &'a Member> + 'a {
        self.of_role
            .get(role)
            .and_then(|group| self.groups.get(group))
            .into_iter()
            .flat_map(|tier| tier.members.iter())
            .filter(move |member| member.role != role)
    }

    /// Every group, in a stable order.
    pub fn groups(&self) -> Vec<(&Group, &Tier)> {
        let mut groups: Vec<(&Group, &Tier)> = self.groups.iter().collect();
        groups.sort_by(|a, b| a.0.cmp(b.0));
        groups
    }
}

impl std::fmt::Display for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Group::Named(name) => write!(f, "group {name}"),
            Group::Role(role) => write!(f, "role {role}"),
        }
    }
}

#[cfg(test)]
mod tests;
