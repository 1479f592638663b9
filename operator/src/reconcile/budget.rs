//! The rollout budgets of this leader's term: how many units of each rollout group are being replaced right
//! now, and the wake-ups of units that wait for a free slot.
//!
//! A unit about to replace its container takes a [`Slot`] of its group, and waits while the group already has
//! its budget's worth of replacements under way; dropping the slot frees it and wakes one waiter. The budget
//! is asked anew at each try, so a spec that raised it lets waiters in. Waking is one waiter a release (plus one
//! more when a taker leaves budget over), never every waiter: a thousand waiting units cost nothing per release.
//! Nothing here does I/O.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::tier::Group;

/// Replacements under way, per rollout group.
#[derive(Default)]
pub(super) struct Budgets {
    groups: Arc<Mutex<HashMap<Group, InUse>>>,
}

/// One group's replacements under way.
#[derive(Default)]
struct InUse {
    count: usize,
    /// Notified (one waiter at a time) when a slot frees or the budget may have grown.
    freed: Arc<Notify>,
}

/// A replacement under way in `group`: it counts against the group's budget until dropped.
pub(super) struct Slot {
    groups: Arc<Mutex<HashMap<Group, InUse>>>,
    group: Group,
}

impl Budgets {
    /// Waits until `group` has fewer replacements under way than `budget()` says, and takes a slot.
    pub async fn take(&self, group: &Group, budget: impl Fn() -> usize) -> Slot {
        loop {
            let freed = lock(&self.groups).entry(group.clone()).or_default().freed.clone();
            // Registered before the look, so that a slot freed in between wakes it.
            let notified = freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(slot) = self.try_take(group, budget()) {
                return slot;
            }
            notified.await;
        }
    }

    /// Wakes a waiter of every group: the budgets may have changed (a new spec).
    pub fn budgets_changed(&self) {
        for in_use in lock(&self.groups).values() {
            in_use.freed.notify_one();
        }
    }

    /// Replacements under way in `group`.
    #[cfg(test)]
    fn in_use(&self, group: &Group) -> usize {
        lock(&self.groups).get(group).map_or(0, |g| g.count)
    }

    fn try_take(&self, group: &Group, budget: usize) -> Option<Slot> {
        let mut groups = lock(&self.groups);
        let in_use = groups.entry(group.clone()).or_default();
        if in_use.count >= budget {
            return None;
        }
        in_use.count += 1;
        if in_use.count < budget {
            // Budget left over: the next waiter may take it too.
            in_use.freed.notify_one();
        }
        Some(Slot { groups: self.groups.clone(), group: group.clone() })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(in_use) = lock(&self.groups).get_mut(&self.group) {
            in_use.count = in_use.count.saturating_sub(1);
            in_use.freed.notify_one();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn group() -> Group {
        Group::Named("web".into())
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_the_budget_at_once_and_a_release_lets_the_next_in() {
        let budgets = Arc::new(Budgets::default());
        let first = budgets.take(&group(), || 2).await;
        let second = budgets.take(&group(), || 2).await;
        assert_eq!(budgets.in_use(&group()), 2);
        let waiter = {
            let budgets = budgets.clone();
            tokio::spawn(async move { budgets.take(&group(), || 2).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished(), "a third replacement waits for a slot");
        assert_eq!(budgets.in_use(&group()), 2);
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(1), waiter).await.unwrap().unwrap();
        assert_eq!(budgets.in_use(&group()), 2);
        // Other groups are not counted here.
        let other = budgets.take(&Group::Role("job".into()), || 1).await;
        drop((second, third, other));
        assert_eq!(budgets.in_use(&group()), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_grown_budget_lets_waiters_in_without_a_release() {
        let budgets = Arc::new(Budgets::default());
        let budget = Arc::new(std::sync::atomic::AtomicUsize::new(1));
        let current = {
            let budget = budget.clone();
            move || budget.load(std::sync::atomic::Ordering::SeqCst)
        };
        let held = budgets.take(&group(), current.clone()).await;
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let (budgets, current) = (budgets.clone(), current.clone());
                tokio::spawn(async move { budgets.take(&group(), current).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(waiters.iter().all(|w| !w.is_finished()));
        budget.store(3, std::sync::atomic::Ordering::SeqCst);
        budgets.budgets_changed();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let done = waiters.iter().filter(|w| w.is_finished()).count();
        assert_eq!((done, budgets.in_use(&group())), (2, 3), "two more fit in a budget of 3");
        drop(held);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(waiters.iter().all(|w| w.is_finished()), "the last one takes the freed slot");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_leaves_passes_its_wake_up_on() {
        let budgets = Arc::new(Budgets::default());
        let held = budgets.take(&group(), || 1).await;
        let leaving = {
            let budgets = budgets.clone();
            tokio::spawn(async move { budgets.take(&group(), || 1).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let staying = {
            let budgets = budgets.clone();
            tokio::spawn(async move { budgets.take(&group(), || 1).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        // The release wakes the first waiter, which leaves before it looks (as a poked unit does).
        drop(held);
        leaving.abort();
        let slot = tokio::time::timeout(Duration::from_secs(1), staying).await.unwrap().unwrap();
        assert_eq!(budgets.in_use(&group()), 1);
        drop(slot);
    }
}
