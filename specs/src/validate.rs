//! Semantic checks of objects, on their own and as a set to be stored.
//!
//! Used on parsed YAML (by [`crate::parse`]) and on JSON the API receives. Every problem is collected;
//! paths are relative to the object (`spec.hosts[1]`), messages name the offending value.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;

use crate::host_ports;
use crate::model::{HostSpec, Kind, Metadata, Object, Proxy, Role, RoleSpec, Strategy, API_VERSION};
use crate::ports::{parse_port, PortMapping};
use crate::problem::{field_path, index_path, Problem};

/// Checks one object: names, labels, address, image, env, secrets, ports, health, timeouts, strategy, logging,
/// rollout group.
pub fn validate_object(object: &Object) -> Vec<Problem> {
    let mut problems = Vec::new();
    match object {
        Object::Host(host) => {
            check_header(&mut problems, &host.api_version, &host.metadata);
            check_host(&mut problems, &host.spec);
        }
        Object::Role(role) => {
            check_header(&mut problems, &role.api_version, &role.metadata);
            check_role(&mut problems, &role.spec);
        }
    }
    problems
}

/// Checks a set of objects about to be stored together: duplicate (kind, name), roles naming hosts that
/// are neither in the set nor in `stored_hosts`, and host ports taken twice on a host: published ports and
/// proxy ports of the set's roles, against each other and against `stored_roles` (a stored role of the same
/// name as one in the set is replaced by it). Each problem comes with the index of its object in `objects`.
pub fn validate_set(
    objects: &[Object],
    stored_hosts: &[String],
    stored_roles: &[Role],
) -> Vec<(usize, Problem)> {
    let mut problems = Vec::new();

    let mut first_of: BTreeMap<(Kind, &str), usize> = BTreeMap::new();
    for (index, object) in objects.iter().enumerate() {
        match first_of.entry((object.kind(), object.name())) {
            Entry::Vacant(entry) => {
                entry.insert(index);
            }
            Entry::Occupied(_) => {
                let kind = object.kind().as_str().to_lowercase();
                let message = format!("{kind} {:?} is defined more than once", object.name());
                problems.push((index, Problem::new("metadata.name", message)));
            }
        }
    }
    // Later duplicates are reported above; the checks below look at each name's first definition only.
    let mut roles: Vec<_> = first_of
        .values()
        .filter_map(|&index| match &objects[index] {
            Object::Role(role) => Some((index, role)),
            Object::Host(_) => None,
        })
        .collect();
    roles.sort_by_key(|(index, _)| *index);

    let known_hosts: BTreeSet<&str> = objects
        .iter()
        .filter(|o| o.kind() == Kind::Host)
        .map(Object::name)
        .chain(stored_hosts.iter().map(String::as_str))
        .collect();
    for (index, role) in &roles {
        for (i, host) in role.spec.hosts.iter().enumerate() {
            if !known_hosts.contains(host.as_str()) {
                let message = format!("host {host:?} is neither in this set nor stored");
                problems.push((*index, Problem::new(index_path("spec.hosts", i), message)));
            }
        }
    }

    problems.extend(host_ports::check(&roles, stored_roles));
    problems.sort_by_key(|(index, _)| *index);
    problems
}

/// Checks an object name: `[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?`.
pub fn check_name(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let inner = |b: &u8| edge(b) || *b == b'-' || *b == b'_';
    let valid = !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.first().is_some_and(edge)
        && bytes.last().is_some_and(edge)
        && bytes.iter().all(inner);
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid name (1 to 63 lowercase letters, digits, '-' or '_', \
             starting and ending with a letter or digit)"
        ))
    }
}

/// Checks that an image reference is plausible: `[REGISTRY/]REPOSITORY[:TAG][@sha256:DIGEST]`,
/// no whitespace, a lowercase repository.
pub fn check_image(image: &str) -> Result<(), String> {
    let invalid = |why: String| Err(format!("{image:?} is not an image reference: {why}"));
    if image.is_empty() {
        return Err("must not be empty".to_string());
    }
    if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return invalid("it contains whitespace".to_string());
    }
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    if let Some(digest) = digest {
        let hex_len = match digest.split_once(':') {
            Some(("sha256", hex))
                if hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) =>
            {
                hex.len()
            }
            _ => 0,
        };
        if hex_len != 64 {
            return invalid(format!("digest {digest:?} is not \"sha256:\" and 64 lowercase hex digits"));
        }
    }
    // A ':' after the last '/' starts the tag; one before it belongs to a registry's port.
    let (repository, tag) = match name.rfind(':') {
        Some(at) if !name[at..].contains('/') => (&name[..at], Some(&name[at + 1..])),
        _ => (name, None),
    };
    if let Some(tag) = tag {
        let valid = tag.len() <= 128
            && tag.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
            && tag.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !valid {
            return invalid(format!(
                "tag {tag:?} is not valid (letters, digits, '_', '.', '-', at most 128)"
            ));
        }
    }
    let mut components: Vec<&str> = repository.split('/').collect();
    let has_registry =
        components.len() > 1 && (components[0].contains(['.', ':']) || components[0] == "localhost");
    if has_registry {
        let registry = components.remove(0);
        let (domain, port) = registry.split_once(':').unwrap_or((registry, "1"));
        let domain_ok =
            !domain.is_empty() && domain.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !domain_ok || port.parse::<u16>().is_err() {
            return invalid(format!("registry {registry:?} is not a host name with an optional port"));
        }
    }
    let path = components.join("/");
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return invalid(format!("repository {path:?} must be lowercase"));
    }
    for component in &components {
        let bytes = component.as_bytes();
        let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let valid = bytes.first().is_some_and(alnum)
            && bytes.last().is_some_and(alnum)
            && bytes.iter().all(|b| alnum(b) || matches!(b, b'.' | b'_' | b'-'))
            && !component.contains("..");
        if !valid {
            return invalid(format!(
                "repository part {component:?} is not valid (lowercase letters and digits, \
                 separated by '.', '_' or '-')"
            ));
        }
    }
    Ok(())
}

/// Checks an environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn check_env_name(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    let valid = bytes.first().is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_');
    if valid {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)"))
    }
}

/// The `apiVersion` check, shared with the parser (which checks it even when `kind` is unknown).
pub(crate) fn check_api_version(api_version: &str) -> Result<(), String> {
    if api_version == API_VERSION {
        Ok(())
    } else {
        Err(format!("unsupported apiVersion {api_version:?} (expected {API_VERSION})"))
    }
}

/// The prefix of container labels ballast sets itself; users may not set labels under it.
const RESERVED_LABEL_PREFIX: &str = "ballast.";

fn add(problems: &mut Vec<Problem>, path: impl Into<String>, message: impl Into<String>) {
    problems.push(Problem::new(path, message));
}

fn add_err(problems: &mut Vec<Problem>, path: impl Into<String>, result: Result<(), String>) {
    if let Err(message) = result {
        add(problems, path, message);
    }
}

fn check_header(problems: &mut Vec<Problem>, api_version: &str, metadata: &Metadata) {
    add_err(problems, "apiVersion", check_api_version(api_version));
    add_err(problems, "metadata.name", check_name(&metadata.name));
    for (key, value) in &metadata.labels {
        let path = field_path("metadata.labels", key);
        add_err(problems, &path, check_label_key(key));
        if value.len() > 253 || value.chars().any(char::is_control) {
            add(
                problems,
                path,
                format!(
                    "{value:?} is not a valid label value (at most 253 characters, no control characters)"
                ),
            );
        }
    }
}

/// Checks a label key (of `metadata.labels`, or of a selector).
pub(crate) fn check_label_key(key: &str) -> Result<(), String> {
    let bytes = key.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= 253
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'));
    if !valid {
        return Err(format!(
            "{key:?} is not a valid label key (letters, digits, '.', '_', '-', '/', \
             starting and ending with a letter or digit)"
        ));
    }
    if key.starts_with(RESERVED_LABEL_PREFIX) {
        return Err(format!(
            "label key {key:?} is reserved: keys starting with {RESERVED_LABEL_PREFIX:?} are ballast's own"
        ));
    }
    Ok(())
}

fn check_host(problems: &mut Vec<Problem>, spec: &HostSpec) {
    add_err(problems, "spec.address", check_address(&spec.address));
    let user_ok =
        !spec.user.is_empty() && !spec.user.contains(|c: char| c.is_whitespace() || c == '@' || c == ':');
    if !user_ok {
        add(problems, "spec.user", format!("{:?} is not a valid user name", spec.user));
    }
    if spec.port == 0 {
        add(problems, "spec.port", "0 is not a port number (1-65535)");
    }
    if !spec.docker_socket.starts_with('/') {
        add(problems, "spec.dockerSocket", format!("{:?} is not an absolute path", spec.docker_socket));
    }
}

fn check_address(address: &str) -> Result<(), String> {
    if address.is_empty() {
        return Err("must not be empty".to_string());
    }
    if let Some(path) = address.strip_prefix("unix://") {
        if path.starts_with('/') && path.len() > 1 && !path.contains(char::is_whitespace) {
            return Ok(());
        }
        return Err(format!("{address:?} must name an absolute socket path, as unix:///var/run/docker.sock"));
    }
    if address.contains('@') {
        return Err(format!("{address:?} must not contain a user: set spec.user"));
    }
    let unbracketed = address.strip_prefix('[').and_then(|a| a.strip_suffix(']')).unwrap_or(address);
    if unbracketed.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    if address.contains(':') {
        return Err(format!("{address:?} must not contain a port or scheme: set spec.port"));
    }
    let labels_ok = address.split('.').all(|label| {
        let bytes = label.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= 63
            && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
            && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
            && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
    });
    if address.len() <= 253 && labels_ok {
        Ok(())
    } else {
        Err(format!("{address:?} is not a host name, an IP address or unix:///path/to/docker.sock"))
    }
}

fn check_role(problems: &mut Vec<Problem>, spec: &RoleSpec) {
    if spec.hosts.is_empty() {
        add(problems, "spec.hosts", "a role needs at least one host");
    }
    // The hosts seen so far: a role on every host of a large fleet is checked in time proportional to its hosts.
    let mut seen: HashSet<&str> = HashSet::with_capacity(spec.hosts.len());
    for (i, host) in spec.hosts.iter().enumerate() {
        let path = index_path("spec.hosts", i);
        add_err(problems, &path, check_name(host));
        if !seen.insert(host.as_str()) {
            add(problems, path, format!("host {host:?} is listed more than once"));
        }
    }

    add_err(problems, "spec.image", check_image(&spec.image));

    for name in spec.env.keys() {
        add_err(problems, field_path("spec.env", name), check_env_name(name));
    }

    if let Some(secrets) = &spec.secrets {
        match secrets.source.strip_prefix("aws-secretsmanager:") {
            Some(name) if !name.is_empty() && !name.contains(char::is_whitespace) => {}
            Some(_) => add(
                problems,
                "spec.secrets.source",
                format!("{:?} does not name a secret (expected aws-secretsmanager:NAME)", secrets.source),
            ),
            None => add(
                problems,
                "spec.secrets.source",
                format!("unknown secret source {:?} (expected aws-secretsmanager:NAME)", secrets.source),
            ),
        }
        if secrets.keys.is_empty() {
            add(problems, "spec.secrets.keys", "at least one key is needed");
        }
        for (i, key) in secrets.keys.iter().enumerate() {
            let path = index_path("spec.secrets.keys", i);
            add_err(problems, &path, check_env_name(key));
            if secrets.keys[..i].contains(key) {
                add(problems, &path, format!("key {key:?} is listed more than once"));
            }
            if spec.env.contains_key(key) {
                add(problems, &path, format!("{key:?} is also set in spec.env: set it in one place only"));
            }
        }
    }

    let mut mappings: Vec<(usize, PortMapping)> = Vec::new();
    for (i, port) in spec.ports.iter().enumerate() {
        let path = index_path("spec.ports", i);
        match parse_port(port) {
            Ok(mapping) => {
                if let Some((j, _)) = mappings.iter().find(|(_, m)| m.conflicts_with(&mapping)) {
                    let message =
                        format!("host port {} is already published by spec.ports[{j}]", host_port(&mapping));
                    add(problems, path, message);
                }
                mappings.push((i, mapping));
            }
            Err(message) => add(problems, path, message),
        }
    }

    if let Some(health) = &spec.health {
        let path = &health.http.path;
        if !path.starts_with('/') || path.contains(char::is_whitespace) {
            add(problems, "spec.health.http.path", format!("{path:?} is not an absolute URL path (as /up)"));
        }
        if health.http.port == 0 {
            add(problems, "spec.health.http.port", "0 is not a port number (1-65535)");
        }
        if health.interval.as_millis() == 0 {
            add(
                problems,
                "spec.health.interval",
                format!("{:?} must be greater than 0", health.interval.as_str()),
            );
        }
        if health.timeout.as_millis() == 0 {
            add(
                problems,
                "spec.health.timeout",
                format!("{:?} must be greater than 0", health.timeout.as_str()),
            );
        } else if health.timeout.as_millis() > spec.deploy_timeout.as_millis() {
            let message = format!(
                "{:?} is longer than deployTimeout {:?}",
                health.timeout.as_str(),
                spec.deploy_timeout.as_str()
            );
            add(problems, "spec.health.timeout", message);
        }
    }

    if spec.deploy_timeout.as_millis() == 0 {
        add(
            problems,
            "spec.deployTimeout",
            format!("{:?} must be greater than 0", spec.deploy_timeout.as_str()),
        );
    }

    if spec.strategy == Strategy::StartFirst {
        if let Some((i, mapping)) = mappings.iter().find(|(_, m)| m.host_port.is_some()) {
            let message = format!(
                "start-first cannot be used with published host port {} (spec.ports[{i}]): the new container \
                 could not bind it while the old one holds it; use stop-first or publish only a container port",
                host_port(mapping)
            );
            add(problems, "spec.strategy", message);
        }
    }

    if let Some(group) = &spec.rollout.group {
        add_err(problems, "spec.rollout.group", check_name(group));
    }

    if let Some(proxy) = &spec.proxy {
        check_proxy(problems, spec, proxy);
    }

    if let Some(logging) = &spec.logging {
        if logging.driver.is_empty() || logging.driver.contains(char::is_whitespace) {
            add(
                problems,
                "spec.logging.driver",
                format!("{:?} is not a logging driver name", logging.driver),
            );
        }
        for key in logging.options.keys() {
            if key.is_empty() || key.contains(char::is_whitespace) {
                add(
                    problems,
                    field_path("spec.logging.options", key),
                    format!("{key:?} is not an option name"),
                );
            }
        }
    }
}

/// The proxy block: a health check to switch on, nothing published, a drain within the deploy timeout, and
/// host names to route on.
fn check_proxy(problems: &mut Vec<Problem>, spec: &RoleSpec, proxy: &Proxy) {
    if spec.health.is_none() {
        add(
            problems,
            "spec.proxy",
            "a proxied role needs spec.health: the proxy switches to a new container only once its health \
             check passes",
        );
    }
    if proxy.port == 0 {
        add(problems, "spec.proxy.port", "0 is not a port number (1-65535)");
    }
    if proxy.container_port == Some(0) {
        add(problems, "spec.proxy.containerPort", "0 is not a port number (1-65535)");
    }
    if !spec.ports.is_empty() {
        add(
            problems,
            "spec.ports",
            format!(
                "a proxied role publishes nothing: the proxy serves port {} and forwards to the container; \
                 remove spec.ports",
                proxy.port
            ),
        );
    }
    if proxy.drain_timeout.as_millis() > spec.deploy_timeout.as_millis() {
        let message = format!(
            "{:?} is longer than deployTimeout {:?}",
            proxy.drain_timeout.as_str(),
            spec.deploy_timeout.as_str()
        );
        add(problems, "spec.proxy.drainTimeout", message);
    }
    for (i, name) in proxy.hosts.iter().enumerate() {
        let path = index_path("spec.proxy.hosts", i);
        add_err(problems, &path, check_route_host(name));
        if proxy.hosts[..i].contains(name) {
            add(problems, path, format!("host name {name:?} is listed more than once"));
        }
    }
}

/// A host name the proxy routes on: lowercase DNS labels, the first one may be `*` (`*.example.com`).
fn check_route_host(name: &str) -> Result<(), String> {
    let rest = name.strip_prefix("*.").unwrap_or(name);
    let labels_ok = rest.split('.').all(|label| {
        let bytes = label.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= 63
            && bytes.first().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && bytes.last().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
    });
    if name.len() <= 253 && labels_ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a host name to route on (lowercase letters, digits, '-' and '.', \
             optionally starting with \"*.\")"
        ))
    }
}

/// `3000/tcp`, or `127.0.0.1:3000/tcp` when bound to one address.
pub(crate) fn host_port(mapping: &PortMapping) -> String {
    let port = mapping.host_port.unwrap_or_default();
    match mapping.host_ip {
        Some(IpAddr::V6(ip)) => format!("[{ip}]:{port}/{}", mapping.protocol),
        Some(ip) => format!("{ip}:{port}/{}", mapping.protocol),
        None => format!("{port}/{}", mapping.protocol),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["web", "web_replica", "web-1", "a", "0", &"a".repeat(63)] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in ["", "Web", "-web", "web-", "_web", "web_", "web.1", "web 1", &"a".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn images() {
        for good in [
            "211125575460.dkr.ecr.us-east-1.amazonaws.com/bioloupe/datalake:latest",
            "ballast-demo/app:v1",
            "busybox",
            "localhost:5000/app",
            "10.0.0.1:5000/team/app:1.2.3",
            "registry.example.com/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "app:v1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "My.Registry.com/app:V1",
            "a__b/c-d/e.f",
        ] {
            assert_eq!(check_image(good), Ok(()), "{good}");
        }
        let bad = [
            ("", "must not be empty"),
            ("app v1", "\"app v1\" is not an image reference: it contains whitespace"),
            ("Bioloupe/datalake", "\"Bioloupe/datalake\" is not an image reference: repository \"Bioloupe/datalake\" must be lowercase"),
            ("app:", "\"app:\" is not an image reference: tag \"\" is not valid (letters, digits, '_', '.', '-', at most 128)"),
            ("app@sha256:abc", "\"app@sha256:abc\" is not an image reference: digest \"sha256:abc\" is not \"sha256:\" and 64 lowercase hex digits"),
            ("app//x", "\"app//x\" is not an image reference: repository part \"\" is not valid (lowercase letters and digits, separated by '.', '_' or '-')"),
            ("reg.io:abc/app", "\"reg.io:abc/app\" is not an image reference: registry \"reg.io:abc\" is not a host name with an optional port"),
        ];
        for (image, message) in bad {
            assert_eq!(check_image(image), Err(message.to_string()), "{image}");
        }
    }

    #[test]
    fn addresses() {
        for good in
            ["98.93.194.3", "web-1.example.com", "localhost", "::1", "[::1]", "unix:///var/run/docker.sock"]
        {
            assert_eq!(check_address(good), Ok(()), "{good}");
        }
        for bad in
            ["", "ubuntu@1.2.3.4", "1.2.3.4:22", "unix://var/run/docker.sock", "ssh://web-1", "web_1", "-web"]
        {
            assert!(check_address(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn env_names() {
        for good in ["RAILS_ENV", "_x", "a1"] {
            assert_eq!(check_env_name(good), Ok(()));
        }
        for bad in ["", "1A", "A-B", "A B", "É"] {
            assert!(check_env_name(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
