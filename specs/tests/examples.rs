//! The example specs in `specs/examples/` parse, pass every check, and say what the seed deployment says.

use std::path::Path;

use ballast_specs::{
    parse_documents, parse_file, parse_port, validate_set, Host, Object, Protocol, Role, Strategy,
};

const IMAGE: &str = "211125575460.dkr.ecr.us-east-1.amazonaws.com/bioloupe/datalake:latest";
const SECRET_KEYS: [&str; 5] = ["DB_HOST", "DB_PASSWORD", "REDIS_URL", "SECRET_KEY_BASE", "RAILS_MASTER_KEY"];
const MIB: u64 = 1024 * 1024;

#[test]
fn datalake_is_the_seed_deployment() {
    let objects = load("datalake");
    let names: Vec<String> = objects.iter().map(|o| format!("{} {}", o.kind(), o.name())).collect();
    assert_eq!(names, ["Host web-1", "Host web-2", "Role web", "Role web_replica", "Role job"]);

    let web_1 = host(&objects, "web-1");
    assert_eq!(
        (web_1.spec.address.as_str(), web_1.spec.user.as_str(), web_1.spec.port),
        ("98.93.194.3", "ubuntu", 22)
    );
    assert_eq!(web_1.spec.docker_socket, "/var/run/docker.sock");
    let web_2 = host(&objects, "web-2");
    assert_eq!((web_2.spec.address.as_str(), web_2.spec.user.as_str()), ("34.227.74.245", "ubuntu"));

    let web = role(&objects, "web");
    assert_eq!(web.spec.hosts, ["web-1"]);
    assert_eq!(web.spec.resources.cpus.map(|c| c.nanos()), Some(1_500_000_000));
    assert_eq!(web.spec.resources.memory.as_ref().map(|m| m.bytes()), Some(1_879_048_192));
    assert_eq!(web.spec.resources.memory.as_ref().map(|m| m.as_str()), Some("1.75g"));
    assert!(web.spec.command.is_empty(), "web runs the image's default command");

    let replica = role(&objects, "web_replica");
    assert_eq!(replica.spec.hosts, ["web-2"]);
    assert_eq!(replica.spec.resources.cpus, None);
    assert_eq!(replica.spec.resources.memory.as_ref().map(|m| m.bytes()), Some(2048 * MIB));

    let job = role(&objects, "job");
    assert_eq!(job.spec.hosts, ["web-1"]);
    assert_eq!(job.spec.resources.cpus.map(|c| c.nanos()), Some(250_000_000));
    assert_eq!(job.spec.resources.memory.as_ref().map(|m| m.bytes()), Some(512 * MIB));
    assert_eq!(job.spec.command, ["bundle", "exec", "sidekiq", "-C", "./config/sidekiq.yml"]);
    assert!(job.spec.ports.is_empty() && job.spec.health.is_none());

    for role in [web, replica, job] {
        let name = &role.metadata.name;
        assert_eq!(role.metadata.labels.get("app").map(String::as_str), Some("datalake"), "{name}");
        assert_eq!(role.spec.image, IMAGE, "{name}");
        assert_eq!(role.spec.env.get("RAILS_ENV").map(String::as_str), Some("production"), "{name}");
        let secrets = role.spec.secrets.as_ref().expect("secrets");
        assert_eq!(secrets.source, "aws-secretsmanager:data-lake/prod", "{name}");
        assert_eq!(secrets.keys, SECRET_KEYS, "{name}");
        assert_eq!(role.spec.deploy_timeout.as_millis(), 1_200_000, "{name}");
        assert_eq!(role.spec.strategy, Strategy::StopFirst, "{name}");
        let logging = role.spec.logging.as_ref().expect("logging");
        assert_eq!(logging.driver, "awslogs", "{name}");
        assert_eq!(logging.options.get("awslogs-group").map(String::as_str), Some("/bioloupe/data-lake"));
        assert_eq!(logging.options.get("awslogs-region").map(String::as_str), Some("us-east-1"));
    }
    for role in [web, replica] {
        assert_eq!(role.spec.ports, ["3000:3000"]);
        let health = role.spec.health.as_ref().expect("health");
        assert_eq!((health.http.path.as_str(), health.http.port), ("/up", 3000));
        assert_eq!((health.interval.as_millis(), health.timeout.as_millis()), (1000, 5000));
    }
}

#[test]
fn local_is_the_same_roles_on_one_engine() {
    let objects = load("local");
    let names: Vec<String> = objects.iter().map(|o| format!("{} {}", o.kind(), o.name())).collect();
    assert_eq!(names, ["Host local", "Role web", "Role web_replica", "Role job"]);
    assert_eq!(host(&objects, "local").spec.local_socket(), Some("/var/run/docker.sock"));

    let published = |name: &str| -> Vec<(Option<u16>, u16)> {
        let ports = &role(&objects, name).spec.ports;
        ports.iter().map(|p| parse_port(p).map(|m| (m.host_port, m.container_port)).unwrap()).collect()
    };
    assert_eq!(published("web"), [(Some(3000), 3000)]);
    assert_eq!(published("web_replica"), [(Some(3001), 3000)]);
    assert_eq!(published("job"), []);

    let datalake = load("datalake");
    for name in ["web", "web_replica", "job"] {
        let (local, seed) = (role(&objects, name), role(&datalake, name));
        assert_eq!(local.spec.hosts, ["local"], "{name}");
        assert_eq!(local.spec.image, "ballast-demo/app:v1", "{name}");
        assert_eq!(local.spec.resources, seed.spec.resources, "{name}: same limits as the seed");
        assert_eq!(local.spec.env, seed.spec.env, "{name}");
        assert_eq!(local.spec.deploy_timeout.as_millis(), 60_000, "{name}");
        assert_eq!(local.spec.secrets, None, "{name}");
        assert_eq!(local.spec.logging, None, "{name}: docker's default json-file driver");
        let health = local.spec.health.as_ref().map(|h| (h.http.path.as_str(), h.http.port));
        assert_eq!(health, (name != "job").then_some(("/up", 3000)), "{name}");
    }
    assert!(!role(&objects, "job").spec.command.is_empty(), "job runs something that stays up");
}

#[test]
fn objects_round_trip_through_json_and_yaml() {
    for folder in ["datalake", "local"] {
        for object in load(folder) {
            let name = object.name().to_string();
            let json = serde_json::to_string(&object).unwrap();
            let back: Object = serde_json::from_str(&json).unwrap();
            assert_eq!(back, object, "{name} through json");
            assert_eq!(serde_json::to_string(&back).unwrap(), json, "{name}: the user's text is kept");

            let yaml = serde_yaml::to_string(&object).unwrap();
            let reparsed = parse_documents(&yaml, None).unwrap_or_else(|p| panic!("{name}: {p:?}\n{yaml}"));
            assert_eq!(reparsed, [object], "{name} through yaml");
        }
    }
}

#[test]
fn json_input_is_checked_by_serde_and_validate() {
    let json = r#"{"kind": "Role", "apiVersion": "ballast/v1", "metadata": {"name": "web"},
        "spec": {"hosts": ["web-1"], "image": "app:v1", "resources": {"cpus": 0.5, "memory": "512m"},
                 "ports": ["3000:3000"], "strategy": "start-first"}}"#;
    let object: Object = serde_json::from_str(json).unwrap();
    let problems: Vec<String> =
        ballast_specs::validate_object(&object).iter().map(|p| p.to_string()).collect();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0]
        .starts_with("spec.strategy: start-first cannot be used with published host port 3000/tcp"));

    let unknown = json.replace("\"image\"", "\"replicas\": 2, \"image\"");
    let error = serde_json::from_str::<Object>(&unknown).unwrap_err().to_string();
    assert!(error.contains("unknown field `replicas`"), "{error}");
    assert_eq!(parse_port("3000:3000/udp").map(|m| m.protocol), Ok(Protocol::Udp));
}

/// Every object of an example folder, in file-name order; they must pass `validate_set` on their own.
fn load(folder: &str) -> Vec<Object> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(folder);
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut objects = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.display().to_string();
        let documents = parse_file(&text, Some(&name)).unwrap_or_else(|problems| {
            let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            panic!("example has problems:\n{}", shown.join("\n"))
        });
        objects.extend(documents.into_iter().map(|d| d.object));
    }
    assert_eq!(validate_set(&objects, &[], &[]), [], "{folder}");
    objects
}

fn host<'a>(objects: &'a [Object], name: &str) -> &'a Host {
    objects
        .iter()
        .find_map(|o| match o {
            Object::Host(h) if h.metadata.name == name => Some(h),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no host {name}"))
}

fn role<'a>(objects: &'a [Object], name: &str) -> &'a Role {
    objects
        .iter()
        .find_map(|o| match o {
            Object::Role(r) if r.metadata.name == name => Some(r),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no role {name}"))
}
