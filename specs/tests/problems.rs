//! Data-driven tests of bad input: each `invalid/NAME.yaml` is checked the way `ballast apply -f` checks a file
//! (parse, then `validate_set` against what is stored); the problems must equal the snapshot
//! `invalid/NAME.expected`. The store is empty, or holds the objects of `invalid/stored/NAME.yaml` when there is
//! one. `UPDATE_EXPECT=1 cargo test -p ballast-specs` rewrites the snapshots.

use std::path::{Path, PathBuf};

use ballast_specs::{parse_documents, parse_file, validate_set, Object, Role, MAX_FILE_BYTES};
use expect_test::{expect, expect_file};

#[test]
fn invalid_fixtures() {
    let fixtures = fixtures_dir();
    let mut checked = 0;
    for path in files_ending(&fixtures, ".yaml") {
        let name = file_name(&path);
        let text = std::fs::read_to_string(&path).unwrap();
        let stored = match std::fs::read_to_string(fixtures.join("stored").join(&name)) {
            Ok(stored) => parse_documents(&stored, None).expect("stored objects of a fixture are valid"),
            Err(_) => Vec::new(),
        };
        let report = check_against(&text, &name, &stored);
        assert!(!report.is_empty(), "{name}: a fixture of bad input reported no problem");
        expect_file![path.with_extension("expected")].assert_eq(&report);
        checked += 1;
    }
    assert!(checked >= 16, "only {checked} fixtures found in {}", fixtures.display());
    for snapshot in files_ending(&fixtures, ".expected") {
        assert!(snapshot.with_extension("yaml").exists(), "{} has no fixture", snapshot.display());
    }
    for stored in files_ending(&fixtures.join("stored"), ".yaml") {
        assert!(fixtures.join(file_name(&stored)).exists(), "{} has no fixture", stored.display());
    }
}

#[test]
fn oversized_file_fails_fast() {
    let document =
        "apiVersion: ballast/v1\nkind: Host\nmetadata: {name: web-1}\nspec: {address: 98.93.194.3}\n---\n";
    let text = document.repeat(5 * 1024 * 1024 / document.len() + 1);
    assert!(text.len() > 5 * MAX_FILE_BYTES);
    let started = std::time::Instant::now();
    let report = check(&text, "huge.yaml");
    assert!(started.elapsed() < std::time::Duration::from_secs(1), "took {:?}", started.elapsed());
    expect![[r#"
        huge.yaml: file has 5242965 bytes, more than the 1048576 bytes (1 MiB) a spec file may have
    "#]]
    .assert_eq(&report);

    // Just under the limit, a file parses (and takes far longer than refusing the big one).
    let mut fits = String::new();
    for n in 0.. {
        let document = format!("apiVersion: ballast/v1\nkind: Host\nmetadata: {{name: host-{n}}}\nspec: {{address: 10.0.0.1}}\n---\n");
        if fits.len() + document.len() > MAX_FILE_BYTES {
            break;
        }
        fits.push_str(&document);
    }
    let started = std::time::Instant::now();
    assert_eq!(check(&fits, "fits.yaml"), "");
    println!("parsed {} bytes in {:?}", fits.len(), started.elapsed());
}

/// The problems `ballast apply -f FILE` would show for `text` against an empty store, one a line.
fn check(text: &str, file: &str) -> String {
    check_against(text, file, &[])
}

/// The problems `ballast apply -f FILE` would show for `text` against a store holding `stored`, one a line.
fn check_against(text: &str, file: &str, stored: &[Object]) -> String {
    let stored_hosts: Vec<String> =
        stored.iter().filter(|o| matches!(o, Object::Host(_))).map(|o| o.name().to_string()).collect();
    let stored_roles: Vec<Role> = stored
        .iter()
        .filter_map(|o| match o {
            Object::Role(role) => Some(role.clone()),
            Object::Host(_) => None,
        })
        .collect();
    let problems = match parse_file(text, Some(file)) {
        Err(problems) => problems,
        Ok(documents) => {
            let objects: Vec<Object> = documents.iter().map(|d| d.object.clone()).collect();
            let set = validate_set(&objects, &stored_hosts, &stored_roles);
            set.into_iter()
                .map(|(index, problem)| {
                    let document = &documents[index];
                    problem.located(document.file.as_deref(), Some(document.number))
                })
                .collect()
        }
    };
    problems.iter().map(|p| format!("{p}\n")).collect()
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid")
}

fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| file_name(path).ends_with(suffix))
        .collect();
    files.sort();
    files
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}
