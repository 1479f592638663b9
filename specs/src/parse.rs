//! YAML in: every document of a file turned into [`Object`]s, or every problem found, each with its YAML path.
//!
//! serde stops at the first error, so documents are first read as plain YAML values and then walked by
//! `Reader`, which records each unknown key, wrong type, missing field and bad quantity with its path
//! and goes on. The objects built that way are then checked by [`validate_object`]; a semantic problem
//! at or inside a path that already has a structural one is dropped, since it would only repeat it.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml::{Mapping, Value};

use crate::model::{
    default_deploy_timeout, default_docker_socket, default_drain_timeout, default_interval, default_port,
    default_timeout, default_user, Health, Host, HostSpec, HttpCheck, Logging, Metadata, Object, Proxy,
    Resources, Role, RoleSpec, Rollout, Secrets, Strategy,
};
use crate::problem::{field_path, index_path, is_within, Problem};
use crate::quantity::{Cpus, Duration, Memory};
use crate::rollout::MaxUnavailable;
use crate::validate::{check_api_version, validate_object};

/// Spec files larger than this are refused before they are parsed.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// An object read from a file, with where it came from (to locate problems found later, e.g. by
/// [`crate::validate_set`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub file: Option<String>,
    /// 1-based position among the file's YAML documents; empty documents count.
    pub number: usize,
    pub object: Object,
}

/// Parses all YAML documents of `text` (`---` separated); empty documents are skipped. `file` only labels
/// the problems. Returns the objects, or every problem found (structural and semantic), never just the first.
pub fn parse_documents(text: &str, file: Option<&str>) -> Result<Vec<Object>, Vec<Problem>> {
    parse_file(text, file).map(|documents| documents.into_iter().map(|d| d.object).collect())
}

/// Like [`parse_documents`], keeping each object's file and document number.
pub fn parse_file(text: &str, file: Option<&str>) -> Result<Vec<Document>, Vec<Problem>> {
    if text.len() > MAX_FILE_BYTES {
        let message = format!(
            "file has {} bytes, more than the {MAX_FILE_BYTES} bytes (1 MiB) a spec file may have",
            text.len()
        );
        return Err(vec![Problem::new("", message).located(file, None)]);
    }
    let mut documents = Vec::new();
    let mut problems = Vec::new();
    for (index, yaml) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let number = index + 1;
        let located = |p: Problem| p.located(file, Some(number));
        let value = match Value::deserialize(yaml) {
            Ok(value) => value,
            Err(error) => {
                // The YAML stream cannot be read past a syntax error.
                problems.push(located(Problem::new("", format!("invalid yaml: {error}"))));
                break;
            }
        };
        if value.is_null() {
            continue;
        }
        match read_object(value) {
            Ok(object) => documents.push(Document { file: file.map(str::to_string), number, object }),
            Err(found) => problems.extend(found.into_iter().map(located)),
        }
    }
    if problems.is_empty() {
        Ok(documents)
    } else {
        Err(problems)
    }
}

/// Walks YAML values into model types, collecting every problem instead of stopping at the first.
#[derive(Default)]
struct Reader {
    problems: Vec<Problem>,
}

/// The fields of one YAML mapping whose unknown keys have been reported. `map` is `None` when the value
/// was not a mapping (also reported): then every field reads as absent, and missing ones are not reported.
struct Fields<'v> {
    map: Option<&'v Mapping>,
    path: String,
}

const OBJECT_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec"];
const METADATA_FIELDS: &[&str] = &["name", "labels"];
/// Metadata the store sets; a file may not.
const STORE_FIELDS: &[&str] = &["generation", "revision", "creationTimestamp"];
const HOST_FIELDS: &[&str] = &["address", "user", "port", "dockerSocket"];
const ROLE_FIELDS: &[&str] = &[
    "hosts",
    "image",
    "command",
    "resources",
    "env",
    "secrets",
    "ports",
    "health",
    "deployTimeout",
    "strategy",
    "logging",
    "rollout",
    "proxy",
];
const RESOURCES_FIELDS: &[&str] = &["cpus", "memory"];
const SECRETS_FIELDS: &[&str] = &["source", "keys"];
const HEALTH_FIELDS: &[&str] = &["http", "interval", "timeout"];
const HTTP_FIELDS: &[&str] = &["path", "port"];
const LOGGING_FIELDS: &[&str] = &["driver", "options"];
const ROLLOUT_FIELDS: &[&str] = &["group", "maxUnavailable"];
const PROXY_FIELDS: &[&str] = &["port", "containerPort", "drainTimeout", "hosts"];

/// Reads one non-empty document. Fields that fail to read get placeholders, so that the semantic checks
/// still run on the rest of the object.
fn read_object(mut value: Value) -> Result<Object, Vec<Problem>> {
    let mut r = Reader::default();
    if let Err(error) = value.apply_merge() {
        return Err(vec![Problem::new("", format!("invalid yaml merge key: {error}"))]);
    }
    if !value.is_mapping() {
        let message =
            format!("expected a mapping with apiVersion, kind, metadata and spec, got {}", describe(&value));
        return Err(vec![Problem::new("", message)]);
    }
    let f = r.fields(&value, "", OBJECT_FIELDS);
    let api_version = r.required(&f, "apiVersion", Reader::string);
    if let Some(Err(message)) = api_version.as_deref().map(check_api_version) {
        r.report("apiVersion", message);
    }
    let api_version = api_version.unwrap_or_default();
    let kind = r.required(&f, "kind", Reader::string);
    let metadata = r.required(&f, "metadata", read_metadata).unwrap_or_default();
    let object = match kind.as_deref() {
        Some("Host") => {
            let spec = r.required(&f, "spec", read_host_spec).unwrap_or_else(empty_host_spec);
            Object::Host(Host { api_version, metadata, spec })
        }
        Some("Role") => {
            let spec = r.required(&f, "spec", read_role_spec).unwrap_or_else(empty_role_spec);
            Object::Role(Role { api_version, metadata, spec })
        }
        Some(other) => {
            r.report("kind", format!("unknown kind {other:?} (expected Host or Role)"));
            return Err(r.problems);
        }
        None => return Err(r.problems),
    };

    let structural = r.problems;
    let semantic = validate_object(&object)
        .into_iter()
        .filter(|semantic| !structural.iter().any(|s| is_within(&semantic.path, &s.path)));
    let mut problems: Vec<Problem> = structural.iter().cloned().chain(semantic).collect();
    if problems.is_empty() {
        return Ok(object);
    }
    // In the order the user wrote the fields (stable: structural before semantic at one place).
    problems.sort_by_cached_key(|p| source_position(&value, &p.path));
    Err(problems)
}

/// Where `path` is in `value`: the index of each key or item along it, in the order of the YAML text.
/// A path that leaves the document (a missing field) sorts after its present siblings.
fn source_position(value: &Value, path: &str) -> Vec<usize> {
    let mut position = Vec::new();
    let mut node = Some(value);
    let mut rest = path;
    while !rest.is_empty() {
        let (segment, tail) = next_segment(rest);
        rest = tail;
        let found = match (node, segment) {
            (Some(Value::Mapping(map)), Segment::Key(key)) => {
                map.iter().enumerate().find(|(_, (k, _))| k.as_str() == Some(&key)).map(|(i, (_, v))| (i, v))
            }
            (Some(Value::Sequence(items)), Segment::Index(i)) => items.get(i).map(|v| (i, v)),
            _ => None,
        };
        position.push(found.map_or(usize::MAX, |(i, _)| i));
        node = found.map(|(_, v)| v);
    }
    position
}

enum Segment {
    Key(String),
    Index(usize),
}

/// Splits the first segment off a path written by [`field_path`] and [`index_path`]: `key`, `[3]`, `["a.b"]`.
fn next_segment(path: &str) -> (Segment, &str) {
    let path = path.strip_prefix('.').unwrap_or(path);
    if let Some(quoted) = path.strip_prefix("[\"") {
        let end = quoted.find("\"]").unwrap_or(quoted.len());
        let tail = quoted.get(end + 2..).unwrap_or("");
        return (Segment::Key(quoted[..end].replace("\\\"", "\"")), tail);
    }
    if let Some(indexed) = path.strip_prefix('[') {
        let end = indexed.find(']').unwrap_or(indexed.len());
        let tail = indexed.get(end + 1..).unwrap_or("");
        return (Segment::Index(indexed[..end].parse().unwrap_or(usize::MAX)), tail);
    }
    let end = path.find(['.', '[']).unwrap_or(path.len());
    (Segment::Key(path[..end].to_string()), &path[end..])
}

fn read_metadata(r: &mut Reader, value: &Value, path: &str) -> Option<Metadata> {
    let f = r.fields(value, path, METADATA_FIELDS);
    f.map?;
    Some(Metadata {
        name: r.required(&f, "name", Reader::string).unwrap_or_default(),
        labels: r.optional(&f, "labels", Reader::text_map).unwrap_or_default(),
        ..Metadata::default()
    })
}

fn read_host_spec(r: &mut Reader, value: &Value, path: &str) -> Option<HostSpec> {
    let f = r.fields(value, path, HOST_FIELDS);
    f.map?;
    Some(HostSpec {
        address: r.required(&f, "address", Reader::string).unwrap_or_default(),
        user: r.optional(&f, "user", Reader::string).unwrap_or_else(default_user),
        port: r.optional(&f, "port", Reader::port).unwrap_or_else(default_port),
        docker_socket: r.optional(&f, "dockerSocket", Reader::string).unwrap_or_else(default_docker_socket),
    })
}

fn read_role_spec(r: &mut Reader, value: &Value, path: &str) -> Option<RoleSpec> {
    let f = r.fields(value, path, ROLE_FIELDS);
    f.map?;
    Some(RoleSpec {
        hosts: r.required(&f, "hosts", |r, v, p| r.list(v, p, Reader::string)).unwrap_or_default(),
        image: r.required(&f, "image", Reader::string).unwrap_or_default(),
        command: r.optional(&f, "command", read_command).unwrap_or_default(),
        resources: r.optional(&f, "resources", read_resources).unwrap_or_default(),
        env: r.optional(&f, "env", Reader::text_map).unwrap_or_default(),
        secrets: r.optional(&f, "secrets", read_secrets),
        ports: r.optional(&f, "ports", |r, v, p| r.list(v, p, Reader::text)).unwrap_or_default(),
        health: r.optional(&f, "health", read_health),
        deploy_timeout: r
            .optional(&f, "deployTimeout", Reader::duration)
            .unwrap_or_else(default_deploy_timeout),
        strategy: r.optional(&f, "strategy", Reader::strategy).unwrap_or_default(),
        logging: r.optional(&f, "logging", read_logging),
        rollout: r.optional(&f, "rollout", read_rollout).unwrap_or_default(),
        proxy: r.optional(&f, "proxy", read_proxy),
    })
}

/// A command is a list of arguments; a single string gets a hint, since splitting it would guess at quoting.
fn read_command(r: &mut Reader, value: &Value, path: &str) -> Option<Vec<String>> {
    if let Value::String(line) = value {
        let words: Vec<String> = line.split_whitespace().map(|w| format!("{w:?}")).collect();
        let message =
            format!("expected a list of arguments, got string {line:?} (write it as [{}])", words.join(", "));
        r.report(path, message);
        return None;
    }
    r.list(value, path, Reader::text)
}

fn read_resources(r: &mut Reader, value: &Value, path: &str) -> Option<Resources> {
    let f = r.fields(value, path, RESOURCES_FIELDS);
    f.map?;
    Some(Resources {
        cpus: r.optional(&f, "cpus", Reader::cpus),
        memory: r.optional(&f, "memory", Reader::memory),
    })
}

fn read_secrets(r: &mut Reader, value: &Value, path: &str) -> Option<Secrets> {
    let f = r.fields(value, path, SECRETS_FIELDS);
    f.map?;
    let source = r.required(&f, "source", Reader::string);
    let keys = r.required(&f, "keys", |r, v, p| r.list(v, p, Reader::string));
    Some(Secrets { source: source.unwrap_or_default(), keys: keys.unwrap_or_default() })
}

fn read_health(r: &mut Reader, value: &Value, path: &str) -> Option<Health> {
    let f = r.fields(value, path, HEALTH_FIELDS);
    f.map?;
    let http = r.required(&f, "http", read_http_check);
    let http = http.unwrap_or_else(|| HttpCheck { path: String::new(), port: 0 });
    let interval = r.optional(&f, "interval", Reader::duration).unwrap_or_else(default_interval);
    let timeout = r.optional(&f, "timeout", Reader::duration).unwrap_or_else(default_timeout);
    Some(Health { http, interval, timeout })
}

fn read_http_check(r: &mut Reader, value: &Value, path: &str) -> Option<HttpCheck> {
    let f = r.fields(value, path, HTTP_FIELDS);
    f.map?;
    let check_path = r.required(&f, "path", Reader::string);
    let port = r.required(&f, "port", Reader::port);
    Some(HttpCheck { path: check_path.unwrap_or_default(), port: port.unwrap_or_default() })
}

fn read_logging(r: &mut Reader, value: &Value, path: &str) -> Option<Logging> {
    let f = r.fields(value, path, LOGGING_FIELDS);
    f.map?;
    let driver = r.required(&f, "driver", Reader::string);
    let options = r.optional(&f, "options", Reader::text_map).unwrap_or_default();
    Some(Logging { driver: driver.unwrap_or_default(), options })
}

fn read_rollout(r: &mut Reader, value: &Value, path: &str) -> Option<Rollout> {
    let f = r.fields(value, path, ROLLOUT_FIELDS);
    f.map?;
    let group = r.optional(&f, "group", Reader::string);
    let max_unavailable = r.optional(&f, "maxUnavailable", Reader::max_unavailable);
    Some(Rollout { group, max_unavailable })
}

fn read_proxy(r: &mut Reader, value: &Value, path: &str) -> Option<Proxy> {
    let f = r.fields(value, path, PROXY_FIELDS);
    f.map?;
    let port = r.required(&f, "port", Reader::port);
    let container_port = r.optional(&f, "containerPort", Reader::port);
    let drain_timeout =
        r.optional(&f, "drainTimeout", Reader::duration).unwrap_or_else(default_drain_timeout);
    let hosts = r.optional(&f, "hosts", |r, v, p| r.list(v, p, Reader::string)).unwrap_or_default();
    Some(Proxy { port: port.unwrap_or_default(), container_port, drain_timeout, hosts })
}

fn empty_host_spec() -> HostSpec {
    HostSpec {
        address: String::new(),
        user: default_user(),
        port: default_port(),
        docker_socket: default_docker_socket(),
    }
}

fn empty_role_spec() -> RoleSpec {
    RoleSpec {
        hosts: Vec::new(),
        image: String::new(),
        command: Vec::new(),
        resources: Resources::default(),
        env: BTreeMap::new(),
        secrets: None,
        ports: Vec::new(),
        health: None,
        deploy_timeout: default_deploy_timeout(),
        strategy: Strategy::default(),
        logging: None,
        rollout: Rollout::default(),
        proxy: None,
    }
}

impl<'v> Fields<'v> {
    /// The field's value; absent and `null` are the same.
    fn get(&self, key: &str) -> Option<&'v Value> {
        self.map?.get(key).filter(|v| !v.is_null())
    }

    fn path(&self, key: &str) -> String {
        field_path(&self.path, key)
    }
}

impl Reader {
    fn report(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }

    /// Opens a mapping, reporting a value that is not one and every key not in `known`.
    fn fields<'v>(&mut self, value: &'v Value, path: &str, known: &[&str]) -> Fields<'v> {
        let Some(map) = value.as_mapping() else {
            self.report(path, format!("expected a mapping, got {}", describe(value)));
            return Fields { map: None, path: path.to_string() };
        };
        for key in map.keys() {
            match key.as_str() {
                Some(key) if known.contains(&key) => {}
                Some(key) if path == "metadata" && STORE_FIELDS.contains(&key) => {
                    self.report(field_path(path, key), "set by the store: remove it from the file");
                }
                Some(key) => {
                    let message = format!("unknown field (expected one of: {})", known.join(", "));
                    self.report(field_path(path, key), message);
                }
                None => self.non_string_key(path, key),
            }
        }
        Fields { map: Some(map), path: path.to_string() }
    }

    /// Reads a field that may be absent (or `null`).
    fn optional<'v, T>(
        &mut self,
        fields: &Fields<'v>,
        key: &str,
        read: impl FnOnce(&mut Reader, &'v Value, &str) -> Option<T>,
    ) -> Option<T> {
        let value = fields.get(key)?;
        read(self, value, &fields.path(key))
    }

    /// Reads a field that must be present, reporting it when absent.
    fn required<'v, T>(
        &mut self,
        fields: &Fields<'v>,
        key: &str,
        read: impl FnOnce(&mut Reader, &'v Value, &str) -> Option<T>,
    ) -> Option<T> {
        if fields.map.is_some() && fields.get(key).is_none() {
            self.report(fields.path(key), "missing required field");
        }
        self.optional(fields, key, read)
    }

    /// A string, and only a string: names, images, paths.
    fn string(&mut self, value: &Value, path: &str) -> Option<String> {
        match value {
            Value::String(s) => Some(s.clone()),
            other => self.wrong_type(path, "a string", other),
        }
    }

    /// A string, or a number or boolean taken as its text: env values, labels, arguments, ports.
    fn text(&mut self, value: &Value, path: &str) -> Option<String> {
        match value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            other => self.wrong_type(path, "a string", other),
        }
    }

    /// A list; items that fail to read are reported and kept as placeholders, so later indices stay right.
    fn list<T: Default>(
        &mut self,
        value: &Value,
        path: &str,
        item: impl Fn(&mut Reader, &Value, &str) -> Option<T>,
    ) -> Option<Vec<T>> {
        let Value::Sequence(items) = value else {
            return self.wrong_type(path, "a list", value);
        };
        let read =
            items.iter().enumerate().map(|(i, v)| item(self, v, &index_path(path, i)).unwrap_or_default());
        Some(read.collect())
    }

    /// A mapping of string keys to string-like values: env, labels, logging options.
    fn text_map(&mut self, value: &Value, path: &str) -> Option<BTreeMap<String, String>> {
        let Value::Mapping(map) = value else {
            return self.wrong_type(path, "a mapping", value);
        };
        let mut read = BTreeMap::new();
        for (key, value) in map {
            let Some(key) = key.as_str() else {
                self.non_string_key(path, key);
                continue;
            };
            if let Some(text) = self.text(value, &field_path(path, key)) {
                read.insert(key.to_string(), text);
            }
        }
        Some(read)
    }

    fn port(&mut self, value: &Value, path: &str) -> Option<u16> {
        let Value::Number(n) = value else {
            return self.wrong_type(path, "a port number", value);
        };
        match n.as_u64().and_then(|n| u16::try_from(n).ok()) {
            Some(port) => Some(port),
            None => {
                self.report(path, format!("{n} is not a port number (1-65535)"));
                None
            }
        }
    }

    fn memory(&mut self, value: &Value, path: &str) -> Option<Memory> {
        let parsed = match value {
            Value::String(s) => Memory::parse(s),
            Value::Number(n) => Memory::parse(&n.to_string()),
            other => return self.wrong_type(path, "a memory quantity (as 512m or 1.75g)", other),
        };
        self.quantity(path, parsed)
    }

    fn cpus(&mut self, value: &Value, path: &str) -> Option<Cpus> {
        let parsed = match value {
            Value::String(s) => Cpus::parse(s),
            Value::Number(n) => match n.as_f64() {
                Some(n) => Cpus::from_f64(n),
                None => Cpus::parse(&n.to_string()),
            },
            other => return self.wrong_type(path, "a number of cpus (as 0.25 or 1.5)", other),
        };
        self.quantity(path, parsed)
    }

    fn duration(&mut self, value: &Value, path: &str) -> Option<Duration> {
        let parsed = match value {
            Value::String(s) => Duration::parse(s),
            Value::Number(n) => Duration::parse(&n.to_string()),
            other => return self.wrong_type(path, "a duration (as 1s or 20m)", other),
        };
        self.quantity(path, parsed)
    }

    /// A count (`3`) or a percentage (`10%`).
    fn max_unavailable(&mut self, value: &Value, path: &str) -> Option<MaxUnavailable> {
        let parsed = match value {
            Value::String(s) => MaxUnavailable::parse(s),
            Value::Number(n) => MaxUnavailable::parse(&n.to_string()),
            other => return self.wrong_type(path, "a count or a percentage (as 1, 3 or 10%)", other),
        };
        self.quantity(path, parsed)
    }

    fn strategy(&mut self, value: &Value, path: &str) -> Option<Strategy> {
        match self.string(value, path)?.as_str() {
            "stop-first" => Some(Strategy::StopFirst),
            "start-first" => Some(Strategy::StartFirst),
            other => {
                self.report(path, format!("unknown strategy {other:?} (expected stop-first or start-first)"));
                None
            }
        }
    }

    fn quantity<T>(&mut self, path: &str, parsed: Result<T, String>) -> Option<T> {
        parsed.map_err(|message| self.report(path, message)).ok()
    }

    fn non_string_key(&mut self, path: &str, key: &Value) {
        let shown = match key {
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => "?".to_string(),
        };
        self.report(field_path(path, &shown), format!("a key must be a string, got {}", describe(key)));
    }

    fn wrong_type<T>(&mut self, path: &str, expected: &str, value: &Value) -> Option<T> {
        self.report(path, format!("expected {expected}, got {}", describe(value)));
        None
    }
}

/// A YAML value as a message names it: `number 3`, `string "web"`, `a list`.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Sequence(_) => "a list".to_string(),
        Value::Mapping(_) => "a mapping".to_string(),
        Value::Tagged(tagged) => format!("a value tagged {}", tagged.tag),
    }
}

#[cfg(test)]
mod tests;
