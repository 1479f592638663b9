//! Caddy's JSON config for a host's routes, and the routes read back from it. Pure: no I/O.
//!
//! One HTTP server per proxied port (`ballast-PORT`, automatic HTTPS off), one route per role (`@id` `ballast.ROLE`)
//! matching its host names if it has any, those with host names first. A role's route forwards to the address
//! written in its upstream file (`{file./ballast/upstreams/ROLE}`, read by Caddy for each request), holding
//! requests up to [`HOLD`] while it cannot be dialled (no file yet, or a container restarting). So a switch
//! writes a file and never reloads the config: a reload would close every idle keep-alive connection of the
//! proxy's clients, and a client sending on one at that moment would see it fail. A port where no role takes
//! every host name ends with a 404 route. `apps.http.grace_period` bounds how long the requests in flight at a
//! config change (roles or ports changed) may take on the old config.

use serde_json::{json, Map, Value};

use super::{Observed, Route, Routes, HOLD};

/// How often a held request tries its upstream again.
const RETRY_EVERY_MS: u64 = 25;
/// The folder of the proxy container where each role's upstream file is.
pub const UPSTREAMS: &str = "/ballast/upstreams";
/// The prefix of every `@id` and server name ballast writes.
const PREFIX: &str = "ballast";

/// The whole Caddy config for `routes`, its admin API on `127.0.0.1:admin_port`.
pub fn build(routes: &Routes, admin_port: u16) -> Value {
    let mut ordered: Vec<&Route> = routes.routes.iter().collect();
    ordered.sort_by(|a, b| (a.port, a.hosts.is_empty(), &a.role).cmp(&(b.port, b.hosts.is_empty(), &b.role)));
    let mut servers = Map::new();
    for route in ordered {
        let server = servers.entry(server_name(route.port)).or_insert_with(|| {
            json!({"listen": [format!(":{}", route.port)], "automatic_https": {"disable": true}, "routes": []})
        });
        if let Some(list) = server["routes"].as_array_mut() {
            list.push(role_route(route));
        }
    }
    for (name, server) in servers.iter_mut() {
        let Some(list) = server["routes"].as_array_mut() else { continue };
        let catch_all = list.iter().any(|r| r.get("match").is_none());
        if !catch_all {
            let port = name.trim_start_matches(&format!("{PREFIX}-"));
            list.push(json!({
                "@id": format!("{PREFIX}.unrouted.{port}"),
                "handle": [{
                    "handler": "static_response",
                    "status_code": 404,
                    "body": format!("no role is served for this host name on port {port}\n"),
                }],
            }));
        }
    }
    json!({
        "admin": {"listen": format!("127.0.0.1:{admin_port}")},
        "apps": {"http": {"grace_period": duration(routes.grace.as_millis() as u64), "servers": servers}},
    })
}

/// The routes in a Caddy config, and whether the config is exactly what [`build`] writes for them. `None` when
/// the proxy has no config at all (`null`: a new proxy).
pub fn read(config: &Value, admin_port: u16) -> Option<Observed> {
    if config.is_null() {
        return None;
    }
    let http = &config["apps"]["http"];
    let mut routes = Routes {
        routes: Vec::new(),
        grace: std::time::Duration::from_millis(http["grace_period"].as_str().and_then(millis).unwrap_or(0)),
    };
    for (name, server) in http["servers"].as_object().into_iter().flatten() {
        let Some(port) = name.strip_prefix(&format!("{PREFIX}-")).and_then(|p| p.parse::<u16>().ok()) else {
            continue;
        };
        for route in server["routes"].as_array().into_iter().flatten() {
            if let Some(route) = read_route(route, port) {
                routes.routes.push(route);
            }
        }
    }
    let exact = build(&routes, admin_port) == *config;
    Some(Observed { routes, exact })
}

fn server_name(port: u16) -> String {
    format!("{PREFIX}-{port}")
}

/// Where Caddy keeps the config it serves again after a restart (`caddy run --resume`), with the container's
/// `XDG_CONFIG_HOME` of `/config`.
pub const AUTOSAVE: &str = "/config/caddy/autosave.json";

/// The upstream file of `role` in the proxy container.
pub fn upstream_file(role: &str) -> String {
    format!("{UPSTREAMS}/{role}")
}

fn role_route(route: &Route) -> Value {
    let handle = json!({
        "handler": "reverse_proxy",
        "upstreams": [{"dial": format!("{{file.{}}}", upstream_file(&route.role))}],
        "load_balancing": {
            "try_duration": duration(HOLD.as_millis() as u64),
            "try_interval": duration(RETRY_EVERY_MS),
        },
    });
    let mut value = json!({"@id": format!("{PREFIX}.{}", route.role), "handle": [handle], "terminal": true});
    if !route.hosts.is_empty() {
        value["match"] = json!([{"host": route.hosts}]);
    }
    value
}

/// A role's route: its `@id` names the role.
fn read_route(route: &Value, port: u16) -> Option<Route> {
    let role = route["@id"].as_str()?.strip_prefix(&format!("{PREFIX}."))?;
    if role.contains('.') {
        return None;
    }
    let hosts = route["match"][0]["host"]
        .as_array()
        .map(|hosts| hosts.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    Some(Route { role: role.to_string(), port, hosts })
}

/// A Caddy duration: `30s`, `250ms` (Go's syntax, which ballast's durations share).
fn duration(ms: u64) -> String {
    ballast_specs::Duration::from_millis(ms).as_str().to_string()
}

/// The milliseconds of a duration [`duration`] wrote.
fn millis(text: &str) -> Option<u64> {
    ballast_specs::Duration::parse(text).ok().map(|d| d.as_millis())
}

#[cfg(test)]
mod tests;
