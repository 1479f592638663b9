//! The store's behaviour, written once and run against a real etcd and against the in-memory store.

use std::sync::Arc;
use std::time::Duration;

use ballast_operator::store::etcd::EtcdStore;
use ballast_operator::store::memory::MemoryStore;
use ballast_operator::store::{Actor, SpecStore, StatusStore, StoreError, HISTORY_LIMIT};
use ballast_specs::wire::{ApplyOutcome, ApplyResult};
use ballast_specs::{Kind, Object, RoleControl, Selector};
use ballast_tests::objects::{event, host, host_object, role, role_object, status, with_label, with_memory};
use ballast_tests::TestEtcd;
use futures::StreamExt;

/// Each case runs twice: `on_etcd::NAME` against a fresh etcd, `in_memory::NAME` against a `MemoryStore`.
macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        mod on_etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let etcd = ballast_tests::TestEtcd::start().await.expect("starting etcd");
                    super::$name(super::etcd_store(&etcd).await).await;
                }
            )*
        }
        mod in_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::memory_store()).await;
                }
            )*
        }
    };
}

cases!(
    apply_reports_created_configured_unchanged,
    apply_is_all_or_nothing,
    dry_run_writes_nothing,
    stale_update_role_conflicts,
    update_role_checks_its_input,
    concurrent_updates_one_wins,
    concurrent_applies_all_land,
    history_keeps_the_last_twenty,
    delete_host_still_referenced_conflicts,
    delete_role_removes_everything,
    watch_yields_after_a_write,
    events_are_listed_oldest_first,
    controls_do_not_bump_generation,
    status_round_trips,
    cluster_key_is_made_once,
    set_image_by_selector_is_one_transaction,
    set_image_refuses_unknown_selectors_and_bad_images,
    set_image_goes_around_a_concurrent_edit,
);

const WAIT: Duration = Duration::from_secs(10);

/// One store as its two users see it: the API's [`SpecStore`] and the reconciler's [`StatusStore`] (unfenced
/// here: the fence has its own tests in `ha_etcd`).
#[derive(Clone)]
struct Views {
    api: Arc<dyn SpecStore>,
    reconciler: Arc<dyn StatusStore>,
}

impl Views {
    fn of<S: SpecStore + StatusStore>(store: Arc<S>) -> Views {
        Views { api: store.clone(), reconciler: store }
    }
}

async fn etcd_store(etcd: &TestEtcd) -> Views {
    Views::of(Arc::new(EtcdStore::connect(&etcd.endpoints()).await.expect("connecting to etcd")))
}

fn memory_store() -> Views {
    Views::of(Arc::new(MemoryStore::new()))
}

fn actor() -> Actor {
    Actor("alice".to_string())
}

fn result(kind: Kind, name: &str, outcome: ApplyOutcome, generation: u64) -> ApplyResult {
    ApplyResult { kind, name: name.to_string(), outcome, generation }
}

async fn apply(store: &Views, objects: Vec<Object>) -> Vec<ApplyResult> {
    store.api.apply(objects, false, &actor()).await.expect("apply")
}

/// A host `h1` and a role `web` on it, stored.
async fn seed(store: &Views) {
    apply(store, vec![host_object("h1"), role_object("web", &["h1"], "app:v1")]).await;
}

async fn apply_reports_created_configured_unchanged(store: Views) {
    let objects = vec![host_object("h1"), Object::Role(with_memory(role("web", &["h1"], "app:v1"), "1.75g"))];
    assert_eq!(
        apply(&store, objects.clone()).await,
        vec![
            result(Kind::Host, "h1", ApplyOutcome::Created, 1),
            result(Kind::Role, "web", ApplyOutcome::Created, 1)
        ]
    );
    let created = store.api.get_role("web").await.unwrap().expect("web stored");
    assert_eq!(created.metadata.generation, 1);
    assert!(created.metadata.revision > 0);
    let born = created.metadata.creation_timestamp.expect("creation timestamp set");

    assert_eq!(
        apply(&store, objects).await,
        vec![
            result(Kind::Host, "h1", ApplyOutcome::Unchanged, 1),
            result(Kind::Role, "web", ApplyOutcome::Unchanged, 1)
        ]
    );
    assert_eq!(
        store.api.get_role("web").await.unwrap().unwrap().metadata.revision,
        created.metadata.revision
    );

    let v2 = with_memory(role("web", &["h1"], "app:v2"), "1.75g");
    assert_eq!(
        apply(&store, vec![Object::Role(v2)]).await,
        vec![result(Kind::Role, "web", ApplyOutcome::Configured, 2)]
    );

    // The same memory by value, written differently: no change.
    let same = with_memory(role("web", &["h1"], "app:v2"), "1792m");
    assert_eq!(
        apply(&store, vec![Object::Role(same.clone())]).await,
        vec![result(Kind::Role, "web", ApplyOutcome::Unchanged, 2)]
    );

    // Labels are metadata: rewritten, generation kept.
    let labelled = with_label(same, "app", "datalake");
    assert_eq!(
        apply(&store, vec![Object::Role(labelled)]).await,
        vec![result(Kind::Role, "web", ApplyOutcome::Configured, 2)]
    );
    let stored = store.api.get_role("web").await.unwrap().unwrap();
    assert_eq!(stored.metadata.generation, 2);
    assert_eq!(stored.metadata.labels.get("app").map(String::as_str), Some("datalake"));
    assert_eq!(stored.metadata.creation_timestamp, Some(born));
    assert_eq!(stored.spec.image, "app:v2");
    assert!(stored.metadata.revision > created.metadata.revision);
    assert_eq!(store.api.history("web").await.unwrap().len(), 2, "a label change is no new revision");

    let stored_host = store.api.get_host("h1").await.unwrap().expect("h1 stored");
    assert_eq!(stored_host.metadata.generation, 1);
    assert_eq!(stored_host.spec, host("h1").spec);
}

async fn apply_is_all_or_nothing(store: Views) {
    apply(&store, vec![host_object("h1")]).await;
    let before = store.api.snapshot().await.unwrap();
    let objects = vec![
        host_object("h2"),
        role_object("web", &["h1"], "app:v1"),
        role_object("job", &["missing"], "app:v1"),
        role_object("cron", &["h2", "gone"], "app:v1"),
    ];
    let Err(StoreError::Invalid(problems)) = store.api.apply(objects, false, &actor()).await else {
        panic!("an apply naming missing hosts must be invalid");
    };
    let documents: Vec<Option<usize>> = problems.iter().map(|p| p.document).collect();
    assert!(documents.contains(&Some(3)), "problem of the 3rd object reported: {problems:?}");
    assert!(documents.contains(&Some(4)), "problem of the 4th object reported: {problems:?}");
    assert!(problems.iter().any(|p| p.message.contains("missing")), "{problems:?}");
    assert!(problems.iter().any(|p| p.message.contains("gone")), "{problems:?}");

    let after = store.api.snapshot().await.unwrap();
    assert_eq!(after.hosts, before.hosts);
    assert!(after.roles.is_empty(), "nothing stored: {:?}", after.roles);
    assert_eq!(after.revision, before.revision);
    assert!(store.api.get_host("h2").await.unwrap().is_none());
}

async fn dry_run_writes_nothing(store: Views) {
    seed(&store).await;
    let before = store.api.snapshot().await.unwrap();
    let results = store
        .api
        .apply(vec![role_object("web", &["h1"], "app:v2"), host_object("h2")], true, &actor())
        .await
        .unwrap();
    assert_eq!(
        results,
        vec![
            result(Kind::Role, "web", ApplyOutcome::Configured, 2),
            result(Kind::Host, "h2", ApplyOutcome::Created, 1)
        ]
    );
    assert_eq!(store.api.snapshot().await.unwrap(), before);
}

async fn stale_update_role_conflicts(store: Views) {
    seed(&store).await;
    let read = store.api.get_role("web").await.unwrap().unwrap();

    let mut first = read.clone();
    first.spec.image = "app:v2".to_string();
    let stored = store.api.update_role(first, &actor()).await.unwrap();
    assert_eq!(stored.metadata.generation, 2);
    assert_eq!(stored.spec.image, "app:v2");
    assert_eq!(store.api.get_role("web").await.unwrap().unwrap().metadata.revision, stored.metadata.revision);

    let mut stale = read.clone();
    stale.spec.image = "app:v3".to_string();
    match store.api.update_role(stale, &actor()).await {
        Err(StoreError::Conflict(message)) => {
            assert!(message.contains("changed since it was read"), "{message}");
            assert!(message.contains(&format!("revision {}", read.metadata.revision)), "{message}");
            assert!(message.contains(&format!("now {}", stored.metadata.revision)), "{message}");
        }
        other => panic!("a stale update must conflict, got {other:?}"),
    }
    let now = store.api.get_role("web").await.unwrap().unwrap();
    assert_eq!(now, stored, "nothing changed by the stale update");
    assert_eq!(store.api.history("web").await.unwrap().len(), 2);

    // An update that changes nothing stores nothing.
    let same = store.api.update_role(now.clone(), &actor()).await.unwrap();
    assert_eq!(same, now);
}

async fn update_role_checks_its_input(store: Views) {
    seed(&store).await;
    let read = store.api.get_role("web").await.unwrap().unwrap();

    let mut unknown_host = read.clone();
    unknown_host.spec.hosts = vec!["h1".to_string(), "nowhere".to_string()];
    match store.api.update_role(unknown_host, &actor()).await {
        Err(StoreError::Invalid(problems)) => {
            assert!(problems.iter().any(|p| p.message.contains("nowhere")), "{problems:?}")
        }
        other => panic!("a role naming a missing host must be invalid, got {other:?}"),
    }

    let mut no_revision = read.clone();
    no_revision.metadata.revision = 0;
    no_revision.spec.image = "app:v2".to_string();
    assert!(matches!(store.api.update_role(no_revision, &actor()).await, Err(StoreError::Invalid(_))));

    let mut missing = role("api", &["h1"], "app:v1");
    missing.metadata.revision = read.metadata.revision;
    assert!(matches!(
        store.api.update_role(missing, &actor()).await,
        Err(StoreError::NotFound { kind: "role", .. })
    ));

    assert_eq!(store.api.get_role("web").await.unwrap().unwrap(), read, "nothing changed");
}

async fn concurrent_updates_one_wins(store: Views) {
    seed(&store).await;
    for round in 0..10 {
        let read = store.api.get_role("web").await.unwrap().unwrap();
        let mut a = read.clone();
        a.spec.image = format!("app:a{round}");
        let mut b = read.clone();
        b.spec.image = format!("app:b{round}");
        let (store_a, store_b) = (store.clone(), store.clone());
        let task_a = tokio::spawn(async move { store_a.api.update_role(a, &actor()).await });
        let task_b = tokio::spawn(async move { store_b.api.update_role(b, &actor()).await });
        let (a, b) = (task_a.await.unwrap(), task_b.await.unwrap());
        let winner = match (a, b) {
            (Ok(role), Err(StoreError::Conflict(_))) | (Err(StoreError::Conflict(_)), Ok(role)) => role,
            other => panic!("exactly one of two updates of one revision must win, got {other:?}"),
        };
        let stored = store.api.get_role("web").await.unwrap().unwrap();
        assert_eq!(stored, winner);
        assert_eq!(stored.metadata.generation, read.metadata.generation + 1);
    }
    assert_eq!(store.api.get_role("web").await.unwrap().unwrap().metadata.generation, 11);
}

/// Applies race on the same role: each is retried on a fresh read, so every change lands exactly once.
async fn concurrent_applies_all_land(store: Views) {
    seed(&store).await;
    let tasks: Vec<_> = (0..4)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let objects = vec![role_object("web", &["h1"], &format!("app:c{n}"))];
                store.api.apply(objects, false, &actor()).await
            })
        })
        .collect();
    let mut generations = Vec::new();
    for task in tasks {
        let results = task.await.unwrap().expect("a racing apply is retried, not refused");
        assert_eq!(results[0].outcome, ApplyOutcome::Configured);
        generations.push(results[0].generation);
    }
    generations.sort();
    assert_eq!(generations, vec![2, 3, 4, 5], "each apply got its own generation");
    let stored = store.api.get_role("web").await.unwrap().unwrap();
    assert_eq!(stored.metadata.generation, 5);
    let history = store.api.history("web").await.unwrap();
    assert_eq!(history.iter().map(|r| r.revision).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    assert_eq!(history[4].spec.image, stored.spec.image);
}

async fn history_keeps_the_last_twenty(store: Views) {
    apply(&store, vec![host_object("h1")]).await;
    for n in 1..=25 {
        let results = apply(&store, vec![role_object("web", &["h1"], &format!("app:v{n}"))]).await;
        assert_eq!(results[0].generation, n);
    }
    let history = store.api.history("web").await.unwrap();
    assert_eq!(history.len(), HISTORY_LIMIT);
    let revisions: Vec<u64> = history.iter().map(|r| r.revision).collect();
    assert_eq!(revisions, (6..=25).collect::<Vec<u64>>(), "oldest first, the last twenty");
    for revision in &history {
        assert_eq!(revision.spec.image, format!("app:v{}", revision.revision));
        assert_eq!(revision.spec.hosts, vec!["h1".to_string()]);
        assert_eq!(revision.actor, "alice");
    }
    assert!(history.windows(2).all(|w| w[0].created <= w[1].created));
    assert!(matches!(store.api.history("nope").await, Err(StoreError::NotFound { .. })));
}

async fn delete_host_still_referenced_conflicts(store: Views) {
    seed(&store).await;
    apply(&store, vec![role_object("job", &["h1"], "app:v1")]).await;
    match store.api.delete_host("h1", &actor()).await {
        Err(StoreError::Conflict(message)) => {
            assert!(message.contains("web") && message.contains("job"), "names the roles: {message}")
        }
        other => panic!("deleting a host in use must conflict, got {other:?}"),
    }
    assert!(store.api.get_host("h1").await.unwrap().is_some());

    store.api.delete_role("web", &actor()).await.unwrap();
    store.api.delete_role("job", &actor()).await.unwrap();
    store.api.delete_host("h1", &actor()).await.unwrap();
    assert!(store.api.get_host("h1").await.unwrap().is_none());
    assert!(matches!(
        store.api.delete_host("h1", &actor()).await,
        Err(StoreError::NotFound { kind: "host", .. })
    ));
}

async fn delete_role_removes_everything(store: Views) {
    seed(&store).await;
    apply(&store, vec![role_object("web", &["h1"], "app:v2"), role_object("job", &["h1"], "app:v1")]).await;
    store.api.put_control("web", &RoleControl { paused: true, retry: 1, restart: 2 }).await.unwrap();
    store.reconciler.put_status(&status("web", "h1")).await.unwrap();
    store.reconciler.put_status(&status("job", "h1")).await.unwrap();

    store.api.delete_role("web", &actor()).await.unwrap();
    assert!(store.api.get_role("web").await.unwrap().is_none());
    assert!(matches!(store.api.history("web").await, Err(StoreError::NotFound { .. })));
    assert!(matches!(store.api.get_control("web").await, Err(StoreError::NotFound { .. })));
    let statuses = store.api.list_status().await.unwrap();
    assert_eq!(statuses.iter().map(|s| s.role.as_str()).collect::<Vec<_>>(), vec!["job"]);
    let snapshot = store.api.snapshot().await.unwrap();
    assert!(snapshot.controls.is_empty());
    assert_eq!(snapshot.roles.iter().map(|r| r.metadata.name.as_str()).collect::<Vec<_>>(), vec!["job"]);
    assert!(matches!(
        store.api.delete_role("web", &actor()).await,
        Err(StoreError::NotFound { kind: "role", .. })
    ));

    // Created again, it starts over.
    let results = apply(&store, vec![role_object("web", &["h1"], "app:v9")]).await;
    assert_eq!(results, vec![result(Kind::Role, "web", ApplyOutcome::Created, 1)]);
    assert_eq!(store.api.history("web").await.unwrap().len(), 1);
    assert_eq!(store.api.get_control("web").await.unwrap(), RoleControl::default());
}

async fn watch_yields_after_a_write(store: Views) {
    let start = store.reconciler.snapshot().await.unwrap().revision;
    let mut changes = store.reconciler.watch(start).await.unwrap();
    seed(&store).await;
    let changed = tokio::time::timeout(WAIT, changes.next()).await.expect("a change within 10s").unwrap();
    assert!(changed.revision > start);

    // Status is outside the watched specs; a control is inside.
    store.reconciler.put_status(&status("web", "h1")).await.unwrap();
    store.api.put_control("web", &RoleControl { paused: true, ..RoleControl::default() }).await.unwrap();
    let control_revision = store.reconciler.snapshot().await.unwrap().revision;
    let mut last = changed.revision;
    while last < control_revision {
        let changed = tokio::time::timeout(WAIT, changes.next()).await.expect("a change within 10s").unwrap();
        assert!(changed.revision > last, "revisions grow: {changed:?} after {last}");
        last = changed.revision;
    }
    assert_eq!(last, control_revision, "the control write is reported at its revision");

    // A watch from before the writes reports them at once.
    let mut late = store.reconciler.watch(start).await.unwrap();
    let changed = tokio::time::timeout(WAIT, late.next()).await.expect("a change within 10s").unwrap();
    assert!(changed.revision > start);
}

async fn events_are_listed_oldest_first(store: Views) {
    let events = [
        event("2024-05-01T10:00:02Z", "web", "Second"),
        event("2024-05-01T10:00:03Z", "web", "Third"),
        event("2024-05-01T10:00:01Z", "web", "First"),
        event("2024-05-01T10:00:03Z", "job", "AlsoThird"),
    ];
    // Both users add events: the API for people's actions, the reconciler for its own.
    for e in &events[..2] {
        store.api.add_event(e).await.unwrap();
    }
    for e in &events[2..] {
        store.reconciler.add_event(e).await.unwrap();
    }
    let listed = store.api.list_events().await.unwrap();
    assert_eq!(listed.len(), 4, "events at the same instant are both kept");
    let reasons: Vec<&str> = listed.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(&reasons[..2], &["First", "Second"]);
    assert!(listed.windows(2).all(|w| w[0].time <= w[1].time), "{reasons:?}");
    assert!(listed.contains(&events[1]) && listed.contains(&events[3]));
}

async fn controls_do_not_bump_generation(store: Views) {
    seed(&store).await;
    let before = store.api.get_role("web").await.unwrap().unwrap();
    assert_eq!(store.api.get_control("web").await.unwrap(), RoleControl::default());

    let control = RoleControl { paused: true, retry: 0, restart: 3 };
    store.api.put_control("web", &control).await.unwrap();
    assert_eq!(store.api.get_control("web").await.unwrap(), control);
    let after = store.api.get_role("web").await.unwrap().unwrap();
    assert_eq!(after, before, "generation and revision untouched");
    assert_eq!(store.api.history("web").await.unwrap().len(), 1);
    assert_eq!(store.api.snapshot().await.unwrap().controls, vec![("web".to_string(), control)]);

    assert!(matches!(
        store.api.put_control("nope", &RoleControl::default()).await,
        Err(StoreError::NotFound { kind: "role", .. })
    ));
    assert!(matches!(store.api.get_control("nope").await, Err(StoreError::NotFound { .. })));
}

async fn status_round_trips(store: Views) {
    let mut web = status("web", "h1");
    store.reconciler.put_status(&web).await.unwrap();
    store.reconciler.put_status(&status("web", "h2")).await.unwrap();
    web.message = "pulling".to_string();
    store.reconciler.put_status(&web).await.unwrap();
    let listed = store.reconciler.list_status().await.unwrap();
    assert_eq!(listed, vec![web.clone(), status("web", "h2")]);
    store.reconciler.delete_status("web", "h2").await.unwrap();
    store.reconciler.delete_status("web", "h2").await.unwrap();
    assert_eq!(store.reconciler.list_status().await.unwrap(), vec![web]);
}

async fn cluster_key_is_made_once(store: Views) {
    let (first, second) = tokio::join!(store.api.cluster_key(), store.api.cluster_key());
    let first = first.unwrap();
    assert_eq!(first.len(), 32);
    assert_eq!(second.unwrap(), first, "of two operators starting at once, one key wins");
    assert_eq!(store.api.cluster_key().await.unwrap(), first, "the same key ever after");
}

/// Hosts `h1`, `h2`; roles `web` (h1) and `web_replica` (h2) labelled `app: datalake`, `job` (h1) `app: other`.
async fn seed_datalake(store: &Views) {
    let labelled = |name: &str, host: &str, app: &str| {
        Object::Role(with_label(role(name, &[host], "app:v1"), "app", app))
    };
    let objects = vec![
        host_object("h1"),
        host_object("h2"),
        labelled("web", "h1", "datalake"),
        labelled("web_replica", "h2", "datalake"),
        labelled("job", "h1", "other"),
    ];
    apply(store, objects).await;
}

async fn set_image_by_selector_is_one_transaction(store: Views) {
    seed_datalake(&store).await;
    let selector = Selector::parse("app=datalake").unwrap();
    let results = store.api.set_image(&selector, "app:v2", &actor()).await.unwrap();
    assert_eq!(
        results,
        vec![
            result(Kind::Role, "web", ApplyOutcome::Configured, 2),
            result(Kind::Role, "web_replica", ApplyOutcome::Configured, 2)
        ]
    );
    let mut roles = Vec::new();
    for name in ["web", "web_replica", "job"] {
        roles.push(store.api.get_role(name).await.unwrap().unwrap());
    }
    let [web, replica, job] = <[_; 3]>::try_from(roles).unwrap();
    let images = [&web, &replica, &job].map(|r| r.spec.image.clone());
    assert_eq!(images, ["app:v2", "app:v2", "app:v1"]);
    assert_eq!(job.metadata.generation, 1, "a role the selector does not match is untouched");
    assert_eq!(web.metadata.revision, replica.metadata.revision, "both written by one transaction");
    let history = store.api.history("web_replica").await.unwrap();
    assert_eq!(
        (history.len(), history[1].actor.as_str(), history[1].spec.image.as_str()),
        (2, "alice", "app:v2")
    );

    // The same again changes nothing and writes nothing.
    let before = store.api.snapshot().await.unwrap();
    let results = store.api.set_image(&selector, "app:v2", &actor()).await.unwrap();
    let outcomes: Vec<(ApplyOutcome, u64)> = results.iter().map(|r| (r.outcome, r.generation)).collect();
    assert_eq!(outcomes, [(ApplyOutcome::Unchanged, 2), (ApplyOutcome::Unchanged, 2)]);
    assert_eq!(store.api.snapshot().await.unwrap(), before);

    // Every requirement must hold.
    let one = Selector::parse("app=other").unwrap();
    let results = store.api.set_image(&one, "app:v3", &actor()).await.unwrap();
    assert_eq!(results, vec![result(Kind::Role, "job", ApplyOutcome::Configured, 2)]);
}

async fn set_image_refuses_unknown_selectors_and_bad_images(store: Views) {
    seed_datalake(&store).await;
    let before = store.api.snapshot().await.unwrap();
    for text in ["app=nope", "app=datalake,tier=web", "team=datalake"] {
        match store.api.set_image(&Selector::parse(text).unwrap(), "app:v2", &actor()).await {
            Err(StoreError::NotFound { kind: "role with labels", name }) => assert_eq!(name, text),
            other => panic!("no role matches {text}: expected NotFound, got {other:?}"),
        }
    }
    let selector = Selector::parse("app=datalake").unwrap();
    match store.api.set_image(&selector, "App:V2 ", &actor()).await {
        Err(StoreError::Invalid(problems)) => {
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].path, "image");
            assert!(problems[0].message.contains("whitespace"), "{problems:?}");
        }
        other => panic!("a bad image must be invalid, got {other:?}"),
    }
    assert_eq!(store.api.snapshot().await.unwrap(), before, "nothing stored");
}

async fn set_image_goes_around_a_concurrent_edit(store: Views) {
    seed_datalake(&store).await;
    let (selector, alice) = (Selector::parse("app=datalake").unwrap(), actor());
    for round in 0..10 {
        let mut edit = store.api.get_role("web").await.unwrap().unwrap();
        edit.spec.env.insert("ROUND".to_string(), round.to_string());
        let image = format!("app:r{round}");
        let (edited, set) =
            tokio::join!(store.api.update_role(edit, &alice), store.api.set_image(&selector, &image, &alice));
        set.expect("set image retries around the edit");
        let web = store.api.get_role("web").await.unwrap().unwrap();
        let replica = store.api.get_role("web_replica").await.unwrap().unwrap();
        assert_eq!((web.spec.image.as_str(), replica.spec.image.as_str()), (image.as_str(), image.as_str()));
        match edited {
            // The edit landed first and set image went around it (both kept), or set image landed first and
            // the edit, read before, conflicted.
            Ok(_) => assert_eq!(web.spec.env.get("ROUND"), Some(&round.to_string()), "round {round}"),
            Err(StoreError::Conflict(_)) => {}
            Err(other) => panic!("round {round}: {other:?}"),
        }
    }
}
