//! Data-driven snapshot tests of the proxy's planner: a readable fixture in, the rendered plan out
//! (`UPDATE_EXPECT=1` to refresh). The desired proxy has hash `p1`, image `caddy:2`, on host `h1`.
//!
//! Fixture lines:
//! `role ROLE port=P target=T [hosts=A,B] [drain=SECONDS]` (a proxied role on the host; none: the proxy goes);
//! `proxy ID hash=H STATE` (a proxy container); `container ID role=R gen=N STATE [ip=IP]` (an app container);
//! `config notread|fresh|exact|changed` (what the admin API showed; with `exact` or `changed`, the routes of the
//! `route ROLE port=P [hosts=A,B]` lines, and grace of the `grace MS` line);
//! `upstream ROLE ADDRESS|-` (a role's upstream file, `-` empty; with no such line, the files were not read);
//! `switched ROLE=ID` (the container a role's last switch chose).

use std::collections::BTreeMap;
use std::time::Duration;

use expect_test::{expect, Expect};

use super::*;
use crate::hosts::ContainerState;

fn check(fixture: &str, expect: Expect) {
    let (desired, proxies, listing, seen, switched) = parse_fixture(fixture);
    let plan = plan_proxy(&desired, &proxies, &listing, &seen, &switched);
    let mut out = String::new();
    if !plan.message.is_empty() {
        out.push_str(&format!("message: {}\n", plan.message));
    }
    for action in &plan.actions {
        out.push_str(&format!("{action}\n"));
    }
    expect.assert_eq(&out);
}

type Fixture = (ProxyDesired, Vec<Container>, Vec<Container>, ProxySeen, BTreeMap<String, String>);

fn parse_fixture(fixture: &str) -> Fixture {
    let mut desired =
        ProxyDesired { host: "h1".into(), hash: "p1".into(), image: "caddy:2".into(), roles: Vec::new() };
    let (mut proxies, mut listing, mut switched) = (Vec::new(), Vec::new(), BTreeMap::new());
    let mut config = "notread".to_string();
    let mut routes = Routes::default();
    let mut upstreams: Option<BTreeMap<String, String>> = None;
    for line in fixture.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut words = line.split_whitespace();
        let head = words.next().unwrap();
        let subject = words.next().unwrap();
        let mut fields = BTreeMap::new();
        let mut flags = Vec::new();
        for w in words {
            match w.split_once('=') {
                Some((k, v)) => {
                    fields.insert(k, v);
                }
                None => flags.push(w),
            }
        }
        let hosts =
            || fields.get("hosts").map(|h| h.split(',').map(str::to_string).collect()).unwrap_or_default();
        match head {
            "role" => desired.roles.push(ProxiedRole {
                role: subject.into(),
                port: fields["port"].parse().unwrap(),
                hosts: hosts(),
                target_port: fields["target"].parse().unwrap(),
                drain: Duration::from_secs(fields.get("drain").map_or(30, |d| d.parse().unwrap())),
            }),
            "proxy" => proxies.push(container(
                subject,
                labels::PROXY_ROLE,
                BTreeMap::from([(labels::HASH, fields["hash"])]),
                flags[0],
                Some("10.0.0.1"),
            )),
            "container" => listing.push(container(
                subject,
                fields["role"],
                BTreeMap::from([(labels::GENERATION, fields["gen"])]),
                flags[0],
                fields.get("ip").copied(),
            )),
            "config" => config = subject.to_string(),
            "grace" => routes.grace = Duration::from_millis(subject.parse().unwrap()),
            "route" => routes.routes.push(Route {
                role: subject.into(),
                port: fields["port"].parse().unwrap(),
                hosts: hosts(),
            }),
            "upstream" => {
                let address = if flags[0] == "-" { "" } else { flags[0] };
                upstreams.get_or_insert_with(BTreeMap::new).insert(subject.to_string(), address.to_string());
            }
            "switched" => {
                let (role, id) = subject.split_once('=').unwrap();
                switched.insert(role.to_string(), id.to_string());
            }
            other => panic!("unknown fixture line {other}"),
        }
    }
    let config = match config.as_str() {
        "notread" => ConfigSeen::NotRead,
        "fresh" => ConfigSeen::Fresh,
        "exact" => ConfigSeen::Seen(Observed { routes, exact: true }),
        "changed" => ConfigSeen::Seen(Observed { routes, exact: false }),
        other => panic!("unknown config {other}"),
    };
    (desired, proxies, listing, ProxySeen { config, upstreams }, switched)
}

fn container(id: &str, role: &str, more: BTreeMap<&str, &str>, state: &str, ip: Option<&str>) -> Container {
    let state = match state {
        "running" => ContainerState::Running,
        "exited" => ContainerState::Exited,
        "removing" => ContainerState::Removing,
        other => panic!("unknown state {other}"),
    };
    let mut labels = BTreeMap::from([
        (labels::ROLE.to_string(), role.to_string()),
        (labels::HOST.to_string(), "h1".to_string()),
    ]);
    labels.extend(more.into_iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Container {
        id: id.into(),
        name: format!("{role}-{id}"),
        image: "img".into(),
        labels,
        state,
        nano_cpus: 0,
        memory: 0,
        ip: ip.filter(|_| state == ContainerState::Running).map(str::to_string),
        network: None,
    }
}

#[test]
fn a_host_with_a_proxied_role_gets_a_proxy_pointing_at_its_container() {
    check(
        "role web port=80 target=3000
         container c1 role=web gen=1 running ip=172.18.0.2",
        expect![[r#"
            message: no proxy container (caddy:2)
            create the proxy serving web on :80 (web → c1): no proxy container (caddy:2)
        "#]],
    );
}

#[test]
fn a_converged_proxy_does_nothing() {
    check(
        "role web port=80 target=3000
         proxy p-a hash=p1 running
         container c1 role=web gen=1 running ip=172.18.0.2
         config exact
         grace 30000
         route web port=80
         upstream web 172.18.0.2:3000",
        expect![[r#""#]],
    );
}

#[test]
fn a_fresh_proxy_points_at_the_oldest_running_container_during_a_rollout() {
    check(
        "role web port=80 target=3000
         proxy p-a hash=p1 running
         container c1 role=web gen=1 running ip=172.18.0.2
         container c2 role=web gen=2 running ip=172.18.0.3
         config fresh
         upstream web -",
        expect![[r#"
            message: the proxy has no config; pointing roles at their containers
            load the proxy's config: web on :80 (the proxy has no config)
            point web at c1 (172.18.0.2:3000; web is pointed nowhere)
        "#]],
    );
}

#[test]
fn an_upstream_keeps_its_running_container_and_follows_the_last_switch_when_it_is_gone() {
    check(
        "role web port=80 target=3000
         role api port=80 target=8080 hosts=api.example.com
         proxy p-a hash=p1 running
         container c1 role=web gen=1 running ip=172.18.0.2
         container c2 role=web gen=2 running ip=172.18.0.3
         container a1 role=api gen=1 running ip=172.18.0.4
         container a2 role=api gen=2 running ip=172.18.0.5
         config exact
         grace 30000
         route api port=80 hosts=api.example.com
         route web port=80
         upstream web 172.18.0.3:3000
         upstream api 172.18.0.9:8080
         switched api=a2",
        expect![[r#"
            message: pointing roles at their containers
            point api at a2 (172.18.0.5:8080; 172.18.0.9:8080 is no running container of api)
        "#]],
    );
}

#[test]
fn a_config_changed_by_hand_or_a_new_role_is_loaded_again() {
    check(
        "role web port=80 target=3000
         proxy p-a hash=p1 running
         container c1 role=web gen=1 running ip=172.18.0.2
         config changed
         grace 30000
         route web port=80
         upstream web 172.18.0.2:3000",
        expect![[r#"
            message: the proxy's config was changed outside ballast
            load the proxy's config: web on :80 (the proxy's config was changed outside ballast)
        "#]],
    );
    check(
        "role web port=80 target=3000
         role api port=8080 target=3000
         proxy p-a hash=p1 running
         container c1 role=web gen=1 running ip=172.18.0.2
         config exact
         grace 30000
         route web port=80
         upstream web 172.18.0.2:3000",
        expect![[r#"
            message: routes: api on :8080 added
            load the proxy's config: web on :80, api on :8080 (routes: api on :8080 added)
        "#]],
    );
}

#[test]
fn a_stopped_proxy_is_started_and_a_stale_one_replaced() {
    check(
        "role web port=80 target=3000
         proxy p-a hash=p1 exited
         container c1 role=web gen=1 running ip=172.18.0.2",
        expect![[r#"
            message: proxy container p-a is exited
            start the proxy p-a (proxy container p-a is exited)
            load the proxy's config: web on :80 (routes of a restarted proxy)
        "#]],
    );
    check(
        "role web port=80 target=3000
         proxy p-old hash=p0 running
         container c1 role=web gen=1 running ip=172.18.0.2",
        expect![[r#"
            message: no proxy container (caddy:2)
            remove the proxy p-old (proxy of other settings (img))
            create the proxy serving web on :80 (web → c1): no proxy container (caddy:2)
        "#]],
    );
}

#[test]
fn a_stopped_container_keeps_its_upstream_and_a_role_with_none_running_is_left_alone() {
    check(
        "role web port=80 target=3000 drain=0
         role api port=8080 target=3000
         proxy p-a hash=p1 running
         container c1 role=web gen=1 exited
         config exact
         grace 30000
         route web port=80
         route api port=8080
         upstream web 172.18.0.2:3000
         upstream api 172.18.0.3:3000",
        expect![[r#""#]],
    );
}

#[test]
fn no_proxied_role_left_removes_the_proxy() {
    check(
        "proxy p-a hash=p1 running
         container c1 role=web gen=1 running ip=172.18.0.2",
        expect![[r#"
            message: removing the proxy: no proxied role is left
            remove the proxy p-a (no proxied role on this host)
        "#]],
    );
}
