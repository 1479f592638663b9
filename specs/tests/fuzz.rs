//! Fuzzing of spec input with proptest: arbitrary and YAML-ish text, the example specs mutated (as YAML text, as
//! YAML trees, and as the API's JSON), and quantity-like strings, through the parser, both validators and the
//! quantity parsers.
//!
//! Properties: nothing panics; every problem and every error has a message; whatever parses passes
//! `validate_object` again unchanged and survives the JSON round trip the store makes. About 2,000 cases in
//! all (a few seconds in a debug build); `PROPTEST_CASES=N` scales every test, `PROPTEST_RNG_SEED` replays one.

use ballast_specs::{
    check_env_name, check_image, check_name, format_bytes, parse_documents, parse_port, validate_object,
    validate_set, Cpus, Duration, Memory, Object, Problem,
};
use proptest::prelude::*;
use proptest::sample::Index;
use serde::Deserialize;
use serde_yaml::{Mapping, Value};

/// The example specs, the starting points of the mutations.
const EXAMPLES: [&str; 4] = [
    include_str!("../examples/datalake/hosts.yaml"),
    include_str!("../examples/datalake/roles.yaml"),
    include_str!("../examples/local/hosts.yaml"),
    include_str!("../examples/local/roles.yaml"),
];

/// Pieces of YAML and of spec values that the text strategies are built from.
const TOKENS: &[&str] = &[
    "apiVersion",
    "ballast/v1",
    "ballast/v2",
    "kind",
    "Host",
    "Role",
    "metadata",
    "name",
    "labels",
    "spec",
    "hosts",
    "image",
    "command",
    "resources",
    "cpus",
    "memory",
    "env",
    "secrets",
    "source",
    "keys",
    "ports",
    "health",
    "http",
    "path",
    "port",
    "interval",
    "timeout",
    "deployTimeout",
    "strategy",
    "stop-first",
    "start-first",
    "logging",
    "driver",
    "options",
    "address",
    "user",
    "dockerSocket",
    "generation",
    "revision",
    "creationTimestamp",
    ": ",
    ":",
    "- ",
    "-",
    "\n",
    "\n  ",
    "\n    ",
    "\n      ",
    "---\n",
    "...\n",
    "{",
    "}",
    "[",
    "]",
    ", ",
    ",",
    "\"",
    "'",
    "\\",
    "&a ",
    "*a",
    "&b ",
    "*b",
    "<<: ",
    "<<: *a",
    "!!str ",
    "!!int ",
    "!!float ",
    "!!binary ",
    "!!map ",
    "!!seq ",
    "!tag ",
    "? ",
    "|\n",
    ">-\n",
    "#",
    " # c",
    "~",
    "null",
    "true",
    "no",
    "0",
    "-1",
    "1.5",
    "0.000000001",
    "1e400",
    "-0",
    "0x1F",
    "0o17",
    ".inf",
    "-.inf",
    ".nan",
    "18446744073709551616",
    "9223372036854775807",
    "65536",
    "512m",
    "1.75g",
    "2GiB",
    "6m",
    "5m",
    "99999999999t",
    "16777216t",
    "1.999999999g",
    "1s",
    "1m30s",
    "500ms",
    "1h",
    "0s",
    "1.5.5s",
    "99999999999999999999999h",
    "3000:3000",
    "3000",
    "127.0.0.1::80/udp",
    "[::1]:80:80",
    "0:0",
    "80/sctp",
    "aws-secretsmanager:data-lake/prod",
    "aws-secretsmanager:",
    "unix:///var/run/docker.sock",
    "unix://",
    "98.93.194.3",
    "web-1",
    "web_1",
    "Web",
    "a.b",
    "RAILS_ENV",
    "1A",
    "localhost:5000/app:v1",
    "app@sha256:",
    "/up",
    "\t",
    " ",
    "é",
    "\u{feff}",
    "\u{0}",
    "\r\n",
    "%YAML 1.2\n",
    "%TAG ! tag:x:\n",
];

/// The quantity parsers and string checks on one input; every error must have a message.
fn check_quantities(text: &str) -> Result<(), TestCaseError> {
    let errors = [
        Memory::parse(text).err(),
        Cpus::parse(text).err(),
        Duration::parse(text).err(),
        parse_port(text).err(),
        check_image(text).err(),
        check_name(text).err(),
        check_env_name(text).err(),
    ];
    for message in errors.into_iter().flatten() {
        prop_assert!(!message.trim().is_empty(), "an empty error message for {text:?}");
    }
    if let Ok(memory) = Memory::parse(text) {
        // The short form the operator shows must read back as the same size.
        let shown = format_bytes(memory.bytes());
        let again = Memory::parse(&shown).map(|m| m.bytes());
        prop_assert_eq!(again, Ok(memory.bytes()), "{:?} shown as {:?}", text, shown);
    }
    if let Ok(duration) = Duration::parse(text) {
        let _ = duration.as_std();
    }
    Ok(())
}

/// Parses `text` as a spec file and checks what comes out: problems with messages, or objects that validate
/// again without a problem and survive JSON; then `validate_set` on them.
fn check_text(text: &str, stored: &[String]) -> Result<(), TestCaseError> {
    match parse_documents(text, Some("fuzz.yaml")) {
        Ok(objects) => {
            for object in &objects {
                let problems = validate_object(object);
                prop_assert!(problems.is_empty(), "parsed, then invalid: {problems:?}\n{text}");
                let json = serde_json::to_string(object).map_err(fail)?;
                let back: Object = serde_json::from_str(&json).map_err(|e| fail(format!("{e}: {json}")))?;
                prop_assert_eq!(&back, object, "changed by the JSON round trip: {}", json);
            }
            check_set(&objects, stored)?;
        }
        Err(problems) => {
            prop_assert!(!problems.is_empty(), "an error without problems\n{text}");
            check_messages(&problems, text)?;
        }
    }
    Ok(())
}

/// Objects as the API receives them (JSON), validated one by one and as a set.
fn check_json(values: &[serde_json::Value], stored: &[String]) -> Result<(), TestCaseError> {
    let mut objects = Vec::new();
    for value in values {
        let Ok(object) = serde_json::from_value::<Object>(value.clone()) else { continue };
        check_messages(&validate_object(&object), &value.to_string())?;
        objects.push(object);
    }
    check_set(&objects, stored)
}

fn check_set(objects: &[Object], stored: &[String]) -> Result<(), TestCaseError> {
    for (index, problem) in validate_set(objects, stored, &[]) {
        prop_assert!(index < objects.len(), "problem of object {index} of {}", objects.len());
        prop_assert!(!problem.message.trim().is_empty(), "a set problem without a message: {problem:?}");
    }
    Ok(())
}

fn check_messages(problems: &[Problem], input: &str) -> Result<(), TestCaseError> {
    for problem in problems {
        prop_assert!(!problem.message.trim().is_empty(), "a problem without a message: {problem:?}\n{input}");
    }
    Ok(())
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

/// Text made of spec tokens, YAML punctuation and short words: up to `pieces` of them.
fn yamlish(pieces: usize) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        12 => prop::sample::select(TOKENS).prop_map(str::to_string),
        4 => "[a-zA-Z0-9_./:@-]{0,12}",
        2 => prop::char::range(' ', '~').prop_map(String::from),
        1 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..pieces).prop_map(|pieces| pieces.concat())
}

/// Strings shaped like quantities, ports and names, edge values included.
fn quantity_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ +-]?[0-9]{0,25}(\\.[0-9]{0,12})?[ ]?([kmgtbKMGTB]|[kmgKMG][iI]?[bB]|ms|s|m|h|e[0-9]|x)?",
        "([0-9]{1,6}(\\.[0-9]{1,3})?(ms|s|m|h)){1,4}",
        "(\\[?[0-9a-f:.]{0,20}\\]?:)?[0-9]{0,7}(:[0-9]{0,7})?(/(tcp|udp|sctp))?",
        "([a-z0-9.-]{1,12}(:[0-9]{1,6})?/)?[a-zA-Z0-9._/-]{0,20}(:[a-zA-Z0-9._-]{0,10})?(@sha256:[0-9a-f]{0,64})?",
        prop::sample::select(TOKENS).prop_map(str::to_string),
        any::<String>(),
    ]
}

/// One change to a YAML tree.
#[derive(Clone, Debug)]
enum Mutation {
    /// Replace the node by another value.
    Replace(Index, Value),
    /// Remove a key of a mapping or an item of a list.
    Remove(Index, Index),
    /// Add an entry to a mapping (often an unknown key) or an item to a list.
    Add(Index, String, Value),
    /// Give a key of a mapping another name.
    Rename(Index, Index, String),
    /// Put the node into a list or a mapping.
    Wrap(Index, bool),
    /// Copy another node of the tree here (structure from elsewhere).
    Graft(Index, Index),
    /// Change a scalar but keep its type: another string (often spec-shaped) or another number.
    Tweak(Index, String, serde_yaml::Number),
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(TOKENS).prop_map(str::to_string),
        1 => "[a-zA-Z_.\"/ -]{0,10}",
    ]
}

/// A YAML value: scalars of every type (spec-shaped strings often), small lists and mappings.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        any::<u64>().prop_map(|n| Value::Number(n.into())),
        any::<f64>().prop_map(|n| Value::Number(n.into())),
        prop::sample::select(&[0.0, -0.0, 0.25, 1.5, 256.0, 256.000000001, 1e-10, 1e300][..])
            .prop_map(|n: f64| Value::Number(n.into())),
        quantity_like().prop_map(Value::String),
        key().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Sequence),
            prop::collection::vec((key(), inner), 0..4).prop_map(|entries| {
                Value::Mapping(entries.into_iter().map(|(k, v)| (Value::String(k), v)).collect::<Mapping>())
            }),
        ]
    })
}

fn number() -> impl Strategy<Value = serde_yaml::Number> {
    prop_oneof![
        any::<i64>().prop_map(serde_yaml::Number::from),
        any::<u64>().prop_map(serde_yaml::Number::from),
        any::<f64>().prop_map(serde_yaml::Number::from),
        (0u64..70_000).prop_map(serde_yaml::Number::from),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), value()).prop_map(|(at, v)| Mutation::Replace(at, v)),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(at, which)| Mutation::Remove(at, which)),
        2 => (any::<Index>(), key(), value()).prop_map(|(at, k, v)| Mutation::Add(at, k, v)),
        1 => (any::<Index>(), any::<Index>(), key()).prop_map(|(at, which, k)| Mutation::Rename(at, which, k)),
        1 => (any::<Index>(), any::<bool>()).prop_map(|(at, list)| Mutation::Wrap(at, list)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(at, from)| Mutation::Graft(at, from)),
        4 => (any::<Index>(), quantity_like(), number()).prop_map(|(at, text, n)| Mutation::Tweak(at, text, n)),
    ]
}

/// The example documents as YAML trees, all files in one list.
fn example_documents() -> Vec<Value> {
    let mut documents = Vec::new();
    for text in EXAMPLES {
        for document in serde_yaml::Deserializer::from_str(text) {
            let value = Value::deserialize(document).expect("the examples are valid yaml");
            if !value.is_null() {
                documents.push(value);
            }
        }
    }
    documents
}

/// How many nodes a tree has (itself included), in the order [`node_mut`] counts them.
fn count(value: &Value) -> usize {
    1 + match value {
        Value::Sequence(items) => items.iter().map(count).sum(),
        Value::Mapping(map) => map.values().map(count).sum(),
        Value::Tagged(tagged) => count(&tagged.value),
        _ => 0,
    }
}

/// The node at pre-order position `n`.
fn node_mut(value: &mut Value, mut n: usize) -> Option<&mut Value> {
    if n == 0 {
        return Some(value);
    }
    n -= 1;
    let children: Vec<&mut Value> = match value {
        Value::Sequence(items) => items.iter_mut().collect(),
        Value::Mapping(map) => map.values_mut().collect(),
        Value::Tagged(tagged) => vec![&mut tagged.value],
        _ => return None,
    };
    for child in children {
        let size = count(child);
        if n < size {
            return node_mut(child, n);
        }
        n -= size;
    }
    None
}

fn apply(documents: &mut Vec<Value>, mutation: &Mutation) {
    let sizes: Vec<usize> = documents.iter().map(count).collect();
    let total: usize = sizes.iter().sum();
    if total == 0 {
        return;
    }
    let locate = |at: &Index| {
        let mut n = at.index(total);
        for (doc, size) in sizes.iter().enumerate() {
            if n < *size {
                return (doc, n);
            }
            n -= size;
        }
        (0, 0)
    };
    let graft_source = |from: &Index, documents: &mut Vec<Value>| {
        let (doc, n) = locate(from);
        node_mut(&mut documents[doc], n).cloned()
    };
    let (doc, n) = match mutation {
        Mutation::Replace(at, _)
        | Mutation::Remove(at, _)
        | Mutation::Add(at, _, _)
        | Mutation::Rename(at, _, _)
        | Mutation::Wrap(at, _)
        | Mutation::Graft(at, _)
        | Mutation::Tweak(at, _, _) => locate(at),
    };
    let grafted = match mutation {
        Mutation::Graft(_, from) => graft_source(from, documents),
        _ => None,
    };
    let Some(node) = node_mut(&mut documents[doc], n) else { return };
    match mutation {
        Mutation::Replace(_, v) => *node = v.clone(),
        Mutation::Remove(_, which) => match node {
            Value::Mapping(map) if !map.is_empty() => {
                let key = map.keys().nth(which.index(map.len())).cloned();
                if let Some(key) = key {
                    map.remove(&key);
                }
            }
            Value::Sequence(items) if !items.is_empty() => {
                items.remove(which.index(items.len()));
            }
            _ => *node = Value::Null,
        },
        Mutation::Add(_, k, v) => match node {
            Value::Mapping(map) => {
                map.insert(Value::String(k.clone()), v.clone());
            }
            Value::Sequence(items) => items.push(v.clone()),
            _ => *node = Value::String(k.clone()),
        },
        Mutation::Rename(_, which, k) => {
            if let Value::Mapping(map) = node {
                if !map.is_empty() {
                    let old = map.keys().nth(which.index(map.len())).cloned();
                    if let Some(v) = old.and_then(|old| map.remove(&old)) {
                        map.insert(Value::String(k.clone()), v);
                    }
                }
            }
        }
        Mutation::Wrap(_, list) => {
            let inner = std::mem::take(node);
            *node = if *list {
                Value::Sequence(vec![inner])
            } else {
                Value::Mapping(Mapping::from_iter([(Value::String("value".into()), inner)]))
            };
        }
        Mutation::Graft(_, _) => {
            if let Some(v) = grafted {
                *node = v;
            }
        }
        Mutation::Tweak(_, text, n) => match node {
            Value::String(s) => *s = text.clone(),
            Value::Number(old) => *old = n.clone(),
            _ => {}
        },
    }
}

/// The documents as one multi-document YAML file.
fn to_yaml(documents: &[Value]) -> String {
    documents.iter().filter_map(|d| serde_yaml::to_string(d).ok()).collect::<Vec<_>>().join("---\n")
}

/// Text edits of an example file: ranges of characters replaced by tokens.
fn splice(text: &str, edits: &[(Index, usize, String)]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for (at, len, insert) in edits {
        let start = at.index(chars.len() + 1);
        let end = (start + len).min(chars.len());
        chars.splice(start..end, insert.chars());
    }
    chars.into_iter().collect()
}

fn stored_hosts() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(prop::sample::select(&["web-1", "web-2", "local", "h1", "", "Web"][..]), 0..3)
        .prop_map(|names| names.into_iter().map(str::to_string).collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_is_parsed_or_refused_with_problems(text in any::<String>(), stored in stored_hosts()) {
        check_text(&text, &stored)?;
    }

    #[test]
    fn arbitrary_bytes_are_parsed_or_refused_with_problems(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        check_text(&String::from_utf8_lossy(&bytes), &[])?;
    }

    #[test]
    fn yamlish_text_is_parsed_or_refused_with_problems(text in yamlish(60), stored in stored_hosts()) {
        check_text(&text, &stored)?;
    }

    #[test]
    fn edited_example_text_is_parsed_or_refused_with_problems(
        file in 0..EXAMPLES.len(),
        edits in prop::collection::vec((any::<Index>(), 0usize..40, yamlish(6)), 1..4),
        stored in stored_hosts(),
    ) {
        check_text(&splice(EXAMPLES[file], &edits), &stored)?;
    }

    #[test]
    fn mutated_example_trees_are_parsed_or_refused_with_problems(
        mutations in prop::collection::vec(mutation(), 1..6),
        stored in stored_hosts(),
    ) {
        let mut documents = example_documents();
        for m in &mutations {
            apply(&mut documents, m);
        }
        check_text(&to_yaml(&documents), &stored)?;
        // The same trees as the API's JSON (`ApplyRequest` objects), where they can be JSON at all.
        let json: Vec<serde_json::Value> =
            documents.iter().filter_map(|d| serde_json::to_value(d).ok()).collect();
        check_json(&json, &stored)?;
    }

    #[test]
    fn quantity_parsers_never_panic_and_explain_errors(text in quantity_like()) {
        check_quantities(&text)?;
    }

    #[test]
    fn quantity_constructors_never_panic(bytes in any::<u64>(), cpus in any::<f64>(), millis in any::<u64>()) {
        prop_assert!(!format_bytes(bytes).is_empty());
        let _ = Memory::from_bytes(bytes);
        if let Err(message) = Cpus::from_f64(cpus) {
            prop_assert!(!message.is_empty());
        }
        let _ = Duration::from_millis(millis).as_std();
    }
}
