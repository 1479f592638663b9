//! Spec files in: `-f FILE|DIR` read and parsed whole, every problem of every file collected.

use std::path::{Path, PathBuf};

use ballast_specs::{parse_documents, Object, Problem};

use crate::client::{mebibytes, BODY_LIMIT};
use crate::error::CliError;

/// The objects of all given files, in order, with where each came from.
#[derive(Debug, Default)]
pub struct SpecFiles {
    pub objects: Vec<Object>,
    pub origins: Vec<Origin>,
}

/// Where an object was written: its file and its place among the file's objects (1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub document: usize,
}

/// Reads every file named (a directory: its `.yaml` and `.yml` files, sorted by name, not recursive) and parses
/// them all. Any problem in any file: `CliError::Invalid` with all of them; `what` ends the summary line.
pub fn read(paths: &[PathBuf], what: &str) -> Result<SpecFiles, CliError> {
    let mut files = Vec::new();
    for path in paths {
        files.extend(expand(path)?);
    }
    let mut specs = SpecFiles::default();
    let mut problems = Vec::new();
    for file in &files {
        let shown = file.display().to_string();
        let whole_file = |message: String| Problem::new("", message).located(Some(&shown), None);
        let bytes = match std::fs::read(file) {
            Ok(bytes) => bytes,
            Err(err) => {
                problems.push(whole_file(format!("cannot read: {err}")));
                continue;
            }
        };
        if bytes.len() > BODY_LIMIT {
            problems.push(whole_file(format!(
                "the file is {}, more than the limit of {} for spec files",
                mebibytes(bytes.len()),
                mebibytes(BODY_LIMIT)
            )));
            continue;
        }
        let Ok(text) = String::from_utf8(bytes) else {
            problems.push(whole_file("the file is not UTF-8 text".to_string()));
            continue;
        };
        match parse_documents(&text, Some(&shown)) {
            Ok(objects) => {
                for (index, object) in objects.into_iter().enumerate() {
                    specs.origins.push(Origin { file: shown.clone(), document: index + 1 });
                    specs.objects.push(object);
                }
            }
            Err(found) => problems.extend(found.into_iter().map(|p| p.located(Some(&shown), None))),
        }
    }
    if !problems.is_empty() {
        return Err(CliError::invalid(problems, what));
    }
    if specs.objects.is_empty() {
        return Err(CliError::Failed(format!("no objects found in {}", shown_paths(paths))));
    }
    Ok(specs)
}

impl SpecFiles {
    /// Puts a problem ballastd reported for `objects[i]...` back at its file and document.
    pub fn locate(&self, mut problem: Problem) -> Problem {
        let Some(rest) = problem.path.strip_prefix("objects[") else {
            return problem;
        };
        let Some((index, path)) = rest.split_once(']') else {
            return problem;
        };
        let Some(origin) = index.parse::<usize>().ok().and_then(|i| self.origins.get(i)) else {
            return problem;
        };
        problem.path = path.strip_prefix('.').unwrap_or(path).to_string();
        problem.file = Some(origin.file.clone());
        problem.document = Some(origin.document);
        problem
    }
}

/// A file as itself; a directory as its YAML files, sorted.
fn expand(path: &Path) -> Result<Vec<PathBuf>, CliError> {
    let shown = path.display();
    let metadata =
        std::fs::metadata(path).map_err(|err| CliError::Failed(format!("cannot read {shown}: {err}")))?;
    if !metadata.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path)
        .map_err(|err| CliError::Failed(format!("cannot read directory {shown}: {err}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| CliError::Failed(format!("cannot read directory {shown}: {err}")))?;
        let file = entry.path();
        let is_yaml = matches!(file.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"));
        if is_yaml && file.is_file() {
            files.push(file);
        }
    }
    if files.is_empty() {
        return Err(CliError::Failed(format!("{shown} has no .yaml or .yml files")));
    }
    files.sort();
    Ok(files)
}

fn shown_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_server_problems() {
        let specs = SpecFiles {
            objects: Vec::new(),
            origins: vec![
                Origin { file: "a.yaml".to_string(), document: 1 },
                Origin { file: "b.yaml".to_string(), document: 2 },
            ],
        };
        let p = specs.locate(Problem::new("objects[1].spec.hosts[0]", "host \"x\" does not exist"));
        assert_eq!(p.to_string(), "b.yaml: document 2: spec.hosts[0]: host \"x\" does not exist");
        let p = specs.locate(Problem::new("objects[0]", "duplicate"));
        assert_eq!(p.to_string(), "a.yaml: document 1: duplicate");
        let p = specs.locate(Problem::new("spec", "other"));
        assert_eq!(p.to_string(), "spec: other");
    }
}
