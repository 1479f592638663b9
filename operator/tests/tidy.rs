//! Tidy: the operator's source keeps the shape ARCHITECTURE.md gives it, checked on every test run.
//!
//! It reads the files under `operator/src` (not `tests.rs`, not files under a `tests/` folder, and in each file
//! nothing from its top-level `#[cfg(test)]` on: inline test modules sit at the end of files) and checks that
//! - every module of `lib.rs` has a layer in ARCHITECTURE.md's `## Layers` list, and the list names no other;
//! - a module names only modules of lower layers, in `use` declarations and in paths such as `crate::api::Plans`;
//! - the files do not import each other in a cycle (a file naming its parent module, which declares it, is no edge);
//! - no source file is longer than 600 lines.
//!
//! Paths are read with plain string handling: `use` trees (nested braces, `self`, `as`, globs, `pub(crate) use`,
//! several lines) and `crate::`/`super::`/`self::` paths in code. A path names the file of its longest prefix
//! that is a module file (`foo.rs` or `foo/mod.rs`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 600;

#[test]
fn layers_name_every_module() {
    let layers = layers(&architecture()).unwrap_or_else(|e| panic!("{e}"));
    let lib = fs::read_to_string(src().join("lib.rs")).expect("read operator/src/lib.rs");
    let modules = declared_modules(&lib);
    let mut listed = BTreeSet::new();
    let mut problems = Vec::new();
    for name in layers.iter().flatten() {
        if !listed.insert(name.as_str()) {
            problems.push(format!("`{name}` is in more than one layer"));
        }
    }
    for name in &modules {
        if !listed.contains(name.as_str()) {
            problems.push(format!(
                "`{name}` (a module of operator/src/lib.rs) has no layer: place it in the list"
            ));
        }
    }
    for name in &listed {
        if !modules.iter().any(|m| m == name) {
            problems.push(format!("`{name}` is in the list but is not a module of operator/src/lib.rs"));
        }
    }
    report("ARCHITECTURE.md `## Layers` does not match operator/src/lib.rs", problems);
}

#[test]
fn imports_follow_the_layers() {
    let layers = layers(&architecture()).unwrap_or_else(|e| panic!("{e}"));
    let crate_ = Crate::read();
    let mut problems = Vec::new();
    for file in &crate_.files {
        let Some(from) = file.module.first() else { continue };
        for import in crate_.imports(file) {
            let Some(to) = import.path.first().filter(|to| *to != from) else { continue };
            if let Some(problem) = layer_violation(&layers, from, to) {
                problems.push(format!("operator/src/{}:{}: {problem}", file.rel, import.line));
            }
        }
    }
    report("a module names a module of its own or a higher layer (ARCHITECTURE.md, `## Layers`)", problems);
}

#[test]
fn no_import_cycles() {
    let crate_ = Crate::read();
    let mut edges: Edges = BTreeMap::new();
    for file in &crate_.files {
        for import in crate_.imports(file) {
            let Some(target) = crate_.file_of(&import.path) else { continue };
            let ancestor = crate_.module_of_file(target).is_some_and(|m| file.module.starts_with(m));
            if target != file.rel && !ancestor {
                edges.entry(file.rel.clone()).or_default().entry(target.to_string()).or_insert(import.line);
            }
        }
    }
    let problems = cycles(&edges).iter().map(|cycle| describe_cycle(cycle, &edges)).collect();
    report("import cycles among the files of operator/src (FILE:LINE → the next file it names)", problems);
}

#[test]
fn source_files_are_short() {
    let problems = Crate::read()
        .files
        .iter()
        .map(|file| (file, file.code.lines().count()))
        .filter(|(_, lines)| *lines > MAX_LINES)
        .map(|(file, lines)| format!("operator/src/{}: {lines} lines (its tests not counted)", file.rel))
        .collect();
    report(&format!("source files over {MAX_LINES} lines: split them"), problems);
}

fn report(title: &str, problems: Vec<String>) {
    if !problems.is_empty() {
        panic!("{title}:\n  {}\n", problems.join("\n  "));
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn architecture() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ARCHITECTURE.md");
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The non-test source files of operator/src.
struct Crate {
    files: Vec<SourceFile>,
    /// Module path → file, for every file of the library (`[]` is `lib.rs`).
    modules: BTreeMap<Vec<String>, String>,
}

struct SourceFile {
    /// Relative to operator/src: `hosts/ssh.rs`.
    rel: String,
    /// The module the file is (`["hosts", "ssh"]`); empty for `lib.rs` and `main.rs`.
    module: Vec<String>,
    /// The text before the file's top-level `#[cfg(test)]`.
    code: String,
}

/// A path a file names, made absolute (`["reconcile", "Context"]`).
struct Import {
    line: usize,
    path: Vec<String>,
}

impl Crate {
    fn read() -> Crate {
        let mut rels = Vec::new();
        walk(&src(), "", &mut rels);
        rels.sort();
        let files: Vec<SourceFile> = rels
            .into_iter()
            .map(|rel| {
                let text = fs::read_to_string(src().join(&rel)).expect("read a source file");
                SourceFile { module: module_of(&rel), code: code_part(&text).to_string(), rel }
            })
            .collect();
        // main.rs is the binary's own crate: its `crate::` is not the library.
        let modules =
            files.iter().filter(|f| f.rel != "main.rs").map(|f| (f.module.clone(), f.rel.clone())).collect();
        Crate { files, modules }
    }

    /// The paths `file` names into the library; none for `main.rs`.
    fn imports(&self, file: &SourceFile) -> Vec<Import> {
        if file.rel == "main.rs" {
            return Vec::new();
        }
        let is_module = |path: &[String]| self.modules.contains_key(path);
        references(&file.code)
            .into_iter()
            .filter_map(|(line, path)| {
                Some(Import { line, path: absolute(&file.module, &path, &is_module)? })
            })
            .collect()
    }

    /// The file an absolute path resolves to: that of its longest prefix that is a module.
    fn file_of(&self, path: &[String]) -> Option<&str> {
        (0..=path.len()).rev().find_map(|n| self.modules.get(&path[..n])).map(String::as_str)
    }

    fn module_of_file(&self, rel: &str) -> Option<&Vec<String>> {
        self.modules.iter().find(|(_, file)| *file == rel).map(|(module, _)| module)
    }
}

/// Collects the `.rs` files under `dir` that are not tests, as paths relative to operator/src.
fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).expect("read a source folder") {
        let entry = entry.expect("read a source folder");
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = format!("{rel}{name}");
        if entry.file_type().expect("file type").is_dir() {
            if name != "tests" {
                walk(&entry.path(), &format!("{path}/"), out);
            }
        } else if name.ends_with(".rs") && name != "tests.rs" {
            out.push(path);
        }
    }
}

/// `hosts/ssh.rs` → `["hosts", "ssh"]`, `hosts/mod.rs` → `["hosts"]`, `lib.rs` → `[]`.
fn module_of(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel.trim_end_matches(".rs").split('/').map(String::from).collect();
    let crate_root = rel == "lib.rs" || rel == "main.rs";
    if crate_root || parts.last().unwrap() == "mod" {
        parts.pop();
    }
    parts
}

/// The file up to its top-level `#[cfg(test)]` (an indented one marks a test-only item, not the tests).
fn code_part(text: &str) -> &str {
    let end = text.find("\n#[cfg(test)]\n").map_or(text.len(), |i| i + 1);
    &text[..end]
}

/// The modules `lib.rs` declares (`mod x;`, `pub mod x;`).
fn declared_modules(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line.strip_prefix("pub ").unwrap_or(line).strip_prefix("mod ")?;
            Some(rest.trim_end_matches(';').trim().to_string())
        })
        .collect()
}

/// The `## Layers` list of ARCHITECTURE.md: one entry per numbered item, top first, the backquoted names of each.
fn layers(architecture: &str) -> Result<Vec<Vec<String>>, String> {
    let (_, section) = architecture
        .split_once("\n## Layers\n")
        .ok_or("ARCHITECTURE.md has no `## Layers` section (a numbered list of modules, top layer first)")?;
    let layers: Vec<Vec<String>> = section
        .lines()
        .take_while(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (number, rest) = line.split_once(". ")?;
            number.parse::<u32>().ok()?;
            Some(rest.split('`').skip(1).step_by(2).map(String::from).collect())
        })
        .collect();
    if layers.is_empty() {
        return Err("ARCHITECTURE.md's `## Layers` has no numbered list".into());
    }
    Ok(layers)
}

/// Why `from` may not name `to`, or `None` when `to` is in a lower layer (or either has no layer).
fn layer_violation(layers: &[Vec<String>], from: &str, to: &str) -> Option<String> {
    let layer = |name: &str| layers.iter().position(|layer| layer.iter().any(|m| m == name)).map(|i| i + 1);
    let (from_layer, to_layer) = (layer(from)?, layer(to)?);
    let which = if to_layer == from_layer { "its own" } else { "a higher" };
    (to_layer <= from_layer)
        .then(|| format!("`{from}` (layer {from_layer}) uses `{to}` (layer {to_layer}), {which} layer"))
}

/// Every path named in `code`, with its line (1-based): the leaves of `use` trees, and `crate::`, `super::`
/// and `self::` paths elsewhere. Paths are as written (relative); `self` segments are dropped.
fn references(code: &str) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    let mut open_use: Option<(usize, String)> = None;
    for (i, line) in code.lines().enumerate() {
        let line = line.split("//").next().unwrap();
        if let Some((start, mut tree)) = open_use.take() {
            tree.push(' ');
            tree.push_str(line);
            match tree.split_once(';') {
                Some((tree, _)) => out.extend(use_paths(tree).into_iter().map(|p| (start, p))),
                None => open_use = Some((start, tree)),
            }
            continue;
        }
        let trimmed = line.trim_start();
        let visibility_end =
            if trimmed.starts_with("pub(") { trimmed.find(')').map_or(0, |i| i + 1) } else { 0 };
        let after_pub = trimmed[visibility_end..].trim_start();
        let after_pub = after_pub.strip_prefix("pub ").unwrap_or(after_pub);
        if let Some(tree) = after_pub.strip_prefix("use ") {
            match tree.split_once(';') {
                Some((tree, _)) => out.extend(use_paths(tree).into_iter().map(|p| (i + 1, p))),
                None => open_use = Some((i + 1, tree.to_string())),
            }
        } else {
            out.extend(code_paths(line).into_iter().map(|p| (i + 1, p)));
        }
    }
    out
}

/// The paths of a use tree: `crate::a::{self, b as c, d::{e, f}}` → `crate::a`, `crate::a::b`, `crate::a::d::e`,
/// `crate::a::d::f`. A glob names its module.
fn use_paths(tree: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    expand(tree, &[], &mut out);
    out
}

fn expand(tree: &str, prefix: &[String], out: &mut Vec<Vec<String>>) {
    for item in split_top_level(tree) {
        let item = item.split_whitespace().collect::<Vec<_>>().join(" ");
        if item.is_empty() {
            continue;
        }
        match (item.find('{'), item.rfind('}')) {
            (Some(open), Some(close)) => expand(&item[open + 1..close], &join(prefix, &item[..open]), out),
            _ => out.push(join(prefix, item.split(" as ").next().unwrap())),
        }
    }
}

/// Splits at the commas outside braces.
fn split_top_level(tree: &str) -> Vec<&str> {
    let (mut depth, mut start, mut items) = (0, 0, Vec::new());
    for (i, c) in tree.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&tree[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&tree[start..]);
    items
}

fn join(prefix: &[String], path: &str) -> Vec<String> {
    let segments = path.split("::").map(str::trim).filter(|s| !s.is_empty() && *s != "self" && *s != "*");
    prefix.iter().cloned().chain(segments.map(String::from)).collect()
}

/// `crate::`, `super::` and `self::` paths in a line of code: `impl crate::api::Plans for X` → `crate::api::Plans`.
fn code_paths(line: &str) -> Vec<Vec<String>> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = Vec::new();
    for root in ["crate::", "super::", "self::"] {
        for (at, _) in line.match_indices(root) {
            if line[..at].ends_with(|c: char| is_ident(c) || c == '$' || c == ':') {
                continue;
            }
            let rest = &line[at..];
            let end = rest.find(|c: char| !is_ident(c) && c != ':').unwrap_or(rest.len());
            out.push(join(&[], &rest[..end]));
        }
    }
    out
}

/// An import written in `module` made absolute from the crate root: `crate::` drops, `super::` climbs, and a
/// bare first segment is a child module of `module` (else the path is another crate's and `None`).
fn absolute(
    module: &[String],
    path: &[String],
    is_module: &dyn Fn(&[String]) -> bool,
) -> Option<Vec<String>> {
    let (first, rest) = path.split_first()?;
    match first.as_str() {
        "crate" => Some(rest.to_vec()),
        "super" => {
            let supers = path.iter().take_while(|s| *s == "super").count();
            let base = module.get(..module.len().checked_sub(supers)?)?;
            Some(base.iter().chain(&path[supers..]).cloned().collect())
        }
        _ => {
            let child: Vec<String> = module.iter().chain([first]).cloned().collect();
            is_module(&child).then(|| child.into_iter().chain(rest.iter().cloned()).collect())
        }
    }
}

/// File → the files it names, each with the first line that names it.
type Edges = BTreeMap<String, BTreeMap<String, usize>>;

/// The import cycles of a graph: for each node the shortest cycle through it, each cycle once, starting at its
/// smallest node.
fn cycles(edges: &Edges) -> Vec<Vec<String>> {
    let mut found = BTreeSet::new();
    for start in edges.keys() {
        let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = VecDeque::from([start.as_str()]);
        'search: while let Some(node) = queue.pop_front() {
            for next in edges.get(node).into_iter().flat_map(BTreeMap::keys) {
                if next == start {
                    let mut cycle = vec![node.to_string()];
                    while let Some(prev) = came_from.get(cycle.last().unwrap().as_str()) {
                        cycle.push(prev.to_string());
                    }
                    cycle.reverse();
                    let smallest = (0..cycle.len()).min_by_key(|&i| &cycle[i]).unwrap();
                    cycle.rotate_left(smallest);
                    found.insert(cycle);
                    break 'search;
                }
                if !came_from.contains_key(next.as_str()) {
                    came_from.insert(next, node);
                    queue.push_back(next);
                }
            }
        }
    }
    found.into_iter().collect()
}

/// `a.rs:3 → b.rs:7 → a.rs`: each file with the line that names the next.
fn describe_cycle(cycle: &[String], edges: &Edges) -> String {
    let mut text = String::new();
    for (i, file) in cycle.iter().enumerate() {
        let next = &cycle[(i + 1) % cycle.len()];
        text.push_str(&format!("operator/src/{file}:{} → ", edges[file][next]));
    }
    text + "operator/src/" + &cycle[0]
}

#[test]
fn use_trees_are_expanded() {
    let code = "use std::sync::Arc;\n\
                pub(crate) use crate::reconcile::{self, status::{UnitStatus as Status, halt},\n    Context};\n\
                use super::*;\n\
                impl crate::api::Plans for X { fn f() { self::g(); Self::h(); $crate::no(); } }\n\
                // use crate::commented;\n\
                pub use kv::{Kv as _};\n";
    let paths: Vec<String> =
        references(code).iter().map(|(line, p)| format!("{line}: {}", p.join("::"))).collect();
    assert_eq!(
        paths,
        [
            "1: std::sync::Arc",
            "2: crate::reconcile",
            "2: crate::reconcile::status::UnitStatus",
            "2: crate::reconcile::status::halt",
            "2: crate::reconcile::Context",
            "4: super",
            "5: crate::api::Plans",
            "5: g",
            "7: kv::Kv",
        ]
    );
}

#[test]
fn paths_resolve_from_the_file_module() {
    let modules: BTreeSet<Vec<String>> =
        [vec![], vec!["hosts".to_string()], vec!["hosts".into(), "ssh".into()]].into_iter().collect();
    let is_module = |p: &[String]| modules.contains(p);
    let resolve = |module: &[&str], path: &str| {
        let module: Vec<String> = module.iter().map(|s| s.to_string()).collect();
        let path: Vec<String> = path.split("::").map(String::from).collect();
        absolute(&module, &path, &is_module).map(|p| p.join("::"))
    };
    assert_eq!(resolve(&["hosts", "ssh"], "super::HostError").as_deref(), Some("hosts::HostError"));
    assert_eq!(resolve(&["hosts"], "super::labels").as_deref(), Some("labels"));
    assert_eq!(resolve(&["hosts"], "ssh::Session").as_deref(), Some("hosts::ssh::Session"));
    assert_eq!(resolve(&["hosts"], "tokio::spawn"), None);
    assert_eq!(resolve(&[], "super::x"), None);
}

#[test]
fn a_cycle_is_found_once() {
    let mut edges: Edges = BTreeMap::new();
    for (from, to, line) in [("b", "c", 1), ("c", "a", 2), ("a", "b", 3), ("c", "d", 4), ("d", "e", 5)] {
        edges.entry(from.into()).or_default().insert(to.into(), line);
    }
    assert_eq!(cycles(&edges), [["a", "b", "c"]]);
    assert_eq!(
        describe_cycle(&cycles(&edges)[0], &edges),
        "operator/src/a:3 → operator/src/b:1 → operator/src/c:2 → operator/src/a"
    );
    edges.get_mut("c").unwrap().remove("a");
    assert!(cycles(&edges).is_empty());
}

#[test]
fn layering_violations_are_named() {
    let text = "# x\n\n## Layers\n\n1. `leader`, `access`\n2. `runtime`, `api`\n3. `reconcile`\n\nWhy.\n\n## Next\n\n4. `no`\n";
    let layers = layers(text).unwrap();
    assert_eq!(layers, [vec!["leader", "access"], vec!["runtime", "api"], vec!["reconcile"]]);
    assert_eq!(
        layer_violation(&layers, "reconcile", "api").as_deref(),
        Some("`reconcile` (layer 3) uses `api` (layer 2), a higher layer")
    );
    assert_eq!(
        layer_violation(&layers, "api", "runtime").as_deref(),
        Some("`api` (layer 2) uses `runtime` (layer 2), its own layer")
    );
    assert_eq!(layer_violation(&layers, "leader", "reconcile"), None);
}
