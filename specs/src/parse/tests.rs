//! Tests of the YAML reader: problems collected with their paths, positions and documents.

use super::*;

const HOST: &str = "apiVersion: ballast/v1\nkind: Host\nmetadata: {name: web-1}\nspec: {address: 10.0.0.1}\n";

fn problems(text: &str) -> Vec<String> {
    match parse_file(text, Some("f.yaml")) {
        Ok(documents) => panic!("expected problems, parsed {documents:?}"),
        Err(problems) => problems.iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn empty_documents_are_skipped_but_counted() {
    let text = format!("# hosts\n---\n---\n# nothing here\n---\n{HOST}---\n");
    let documents = parse_file(&text, Some("f.yaml")).unwrap();
    assert_eq!(documents.len(), 1);
    assert_eq!((documents[0].file.as_deref(), documents[0].number), (Some("f.yaml"), 3));
    assert_eq!(parse_documents("", None), Ok(vec![]));
    assert_eq!(parse_documents("# only a comment\n", None), Ok(vec![]));
}

#[test]
fn null_optionals_are_absent_and_scalars_are_text() {
    let text = "apiVersion: ballast/v1\nkind: Role\nmetadata: {name: web, labels: {tier: 1}}\n\
                spec:\n  hosts: [web-1]\n  image: app:v1\n  command: [sleep, 3600]\n  env: {WORKERS: 4, DEBUG: false}\n  \
                ports: [3000]\n  secrets: ~\n  health:\n";
    let objects = parse_documents(text, None).unwrap();
    let Object::Role(role) = &objects[0] else { panic!("a role") };
    assert_eq!(role.spec.command, ["sleep", "3600"]);
    assert_eq!(role.spec.env.get("WORKERS").map(String::as_str), Some("4"));
    assert_eq!(role.spec.env.get("DEBUG").map(String::as_str), Some("false"));
    assert_eq!(role.spec.ports, ["3000"]);
    assert_eq!(role.metadata.labels.get("tier").map(String::as_str), Some("1"));
    assert_eq!((&role.spec.secrets, &role.spec.health), (&None, &None));
    assert_eq!(role.spec.deploy_timeout.as_millis(), 600_000, "default deploy timeout");
}

#[test]
fn yaml_level_problems() {
    assert_eq!(
        problems(&format!("{HOST}metadata: {{name: web-2}}\n")),
        ["f.yaml: document 1: invalid yaml: duplicate entry with key \"metadata\""]
    );
    assert_eq!(
        problems("apiVersion: ballast/v1\nkind: !Role Role\n"),
        [
            "f.yaml: document 1: kind: expected a string, got a value tagged !Role",
            "f.yaml: document 1: metadata: missing required field",
        ]
    );
    assert_eq!(
        problems("apiVersion: ballast/v1\nkind: Host\nmetadata:\n  name: h\n  labels: {\"a b\": x, 1: y}\nspec: {address: h}\n"),
        [
            "f.yaml: document 1: metadata.labels[\"a b\"]: \"a b\" is not a valid label key (letters, digits, '.', '_', '-', '/', starting and ending with a letter or digit)",
            "f.yaml: document 1: metadata.labels.1: a key must be a string, got number 1",
        ]
    );
}

#[test]
fn merge_keys_are_applied() {
    let text = "apiVersion: ballast/v1\nkind: Role\nmetadata: {name: web}\n\
                spec:\n  <<: {image: \"app:v1\", hosts: [web-1]}\n  deployTimeout: 30s\n";
    let objects = parse_documents(text, None).unwrap();
    let Object::Role(role) = &objects[0] else { panic!("a role") };
    assert_eq!(
        (role.spec.image.as_str(), role.spec.hosts.as_slice()),
        ("app:v1", ["web-1".to_string()].as_slice())
    );
}

#[test]
fn source_positions_follow_the_text() {
    let value: Value = serde_yaml::from_str("b: 1\na: {y: [p, q], x: 2}\nc: {\"k.1\": 3}\n").unwrap();
    assert_eq!(source_position(&value, "a.y[1]"), [1, 0, 1]);
    assert_eq!(source_position(&value, "a.x"), [1, 1]);
    assert_eq!(source_position(&value, "c[\"k.1\"]"), [2, 0]);
    assert_eq!(source_position(&value, "a.z.w"), [1, usize::MAX, usize::MAX]);
    assert_eq!(source_position(&value, ""), Vec::<usize>::new());
}

#[test]
fn rollout_group_and_budget() {
    let text = "apiVersion: ballast/v1\nkind: Role\nmetadata: {name: web, labels: {app: datalake}}\n\
                spec:\n  hosts: [web-1]\n  image: app:v1\n  rollout: {group: web, maxUnavailable: 10%}\n---\n\
                apiVersion: ballast/v1\nkind: Role\nmetadata: {name: job}\nspec: {hosts: [web-1], image: app:v1, \
                rollout: {maxUnavailable: 2}}\n---\n\
                apiVersion: ballast/v1\nkind: Role\nmetadata: {name: cron}\nspec: {hosts: [web-1], image: app:v1}\n";
    let objects = parse_documents(text, None).unwrap();
    let rollouts: Vec<&Rollout> = objects
        .iter()
        .map(|o| match o {
            Object::Role(role) => &role.spec.rollout,
            Object::Host(_) => panic!("roles only"),
        })
        .collect();
    let web = Rollout { group: Some("web".into()), max_unavailable: Some(MaxUnavailable::Percent(10)) };
    let job = Rollout { group: None, max_unavailable: Some(MaxUnavailable::Count(2)) };
    assert_eq!(rollouts, [&web, &job, &Rollout::default()]);
    assert_eq!(rollouts[2].max_unavailable(), MaxUnavailable::Count(1), "one at a time by default");

    // Stored as JSON the way it was written; a role stored before `rollout` existed reads with the defaults and
    // is written back without it.
    let json = serde_json::to_value(&objects[0]).unwrap();
    assert_eq!(json["spec"]["rollout"], serde_json::json!({"group": "web", "maxUnavailable": "10%"}));
    let json = serde_json::to_value(&objects[2]).unwrap();
    assert!(json["spec"].get("rollout").is_none(), "{json}");
    let old: Object = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(old, objects[2]);
}
