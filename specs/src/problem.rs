//! A problem found in user input: where it is (file, document, YAML path) and what is wrong.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One thing wrong with user input. Displayed as `FILE: document N: PATH: MESSAGE`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// 1-based index of the YAML document in its file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<usize>,
    /// Dotted YAML path inside the document: `spec.resources.memory`, `spec.hosts[1]`; empty for the whole document.
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem { file: None, document: None, path: path.into(), message: message.into() }
    }

    /// The same problem, located in `file` at document `document` (1-based).
    pub fn located(mut self, file: Option<&str>, document: Option<usize>) -> Problem {
        if self.file.is_none() {
            self.file = file.map(str::to_string);
        }
        if self.document.is_none() {
            self.document = document;
        }
        self
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}: ")?;
        }
        if let Some(doc) = self.document {
            write!(f, "document {doc}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// The path of `key` inside the mapping at `base`: `spec.env.RAILS_ENV`, or `metadata.labels["app.kubernetes.io/name"]`
/// when the key is not a plain word.
pub(crate) fn field_path(base: &str, key: &str) -> String {
    let plain = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    match (base.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{base}.{key}"),
        (_, false) => format!("{base}[{key:?}]"),
    }
}

/// The path of item `index` (0-based) of the list at `base`: `spec.hosts[1]`.
pub(crate) fn index_path(base: &str, index: usize) -> String {
    format!("{base}[{index}]")
}

/// True when `path` is `base` or lies inside it (`spec.ports[0]` is inside `spec.ports` and `spec`).
pub(crate) fn is_within(path: &str, base: &str) -> bool {
    base.is_empty()
        || path == base
        || (path.starts_with(base) && matches!(path.as_bytes().get(base.len()), Some(b'.' | b'[')))
}
