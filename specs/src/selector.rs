//! Label selectors, as `kubectl -l` writes them: `app=datalake` or `app=datalake,tier=web` (every requirement
//! must hold). Only equality is supported; other kubectl operators are refused with a clear message.

use std::collections::BTreeMap;
use std::fmt;

use crate::validate::check_label_key;

/// Requirements on `metadata.labels`, all of which must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    /// `(key, value)`, in the order written.
    requirements: Vec<(String, String)>,
}

impl Selector {
    /// Parses `k=v[,k=v]` (`k==v` too); the error says what is wrong.
    pub fn parse(text: &str) -> Result<Selector, String> {
        if text.trim().is_empty() {
            return Err("an empty selector would match every role: write key=value".to_string());
        }
        let mut requirements: Vec<(String, String)> = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            if part.is_empty() {
                return Err(format!("{text:?} has an empty requirement (a comma too many)"));
            }
            let unsupported = || {
                format!(
                    "{part:?} is not a key=value requirement (only = and == are supported, \
                     as in app=datalake,tier=web)"
                )
            };
            if part.contains("!=") {
                return Err(unsupported());
            }
            let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) else {
                return Err(unsupported());
            };
            let (key, value) = (key.trim(), value.trim());
            check_label_key(key).map_err(|e| format!("in {part:?}: {e}"))?;
            if value.contains(['=', '(', ')', ' ']) || value.chars().any(char::is_control) {
                return Err(unsupported());
            }
            if requirements.iter().any(|(k, v)| k == key && v != value) {
                return Err(format!("{key:?} is required to be two values at once: no role can match"));
            }
            requirements.push((key.to_string(), value.to_string()));
        }
        Ok(Selector { requirements })
    }

    /// True when every requirement holds in `labels`.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|(key, value)| labels.get(key) == Some(value))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.requirements.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn every_requirement_must_hold() {
        let selector = Selector::parse("app=datalake, tier==web").unwrap();
        assert_eq!(selector.to_string(), "app=datalake,tier=web");
        assert!(selector.matches(&labels(&[("app", "datalake"), ("tier", "web"), ("x", "y")])));
        assert!(!selector.matches(&labels(&[("app", "datalake")])));
        assert!(!selector.matches(&labels(&[("app", "datalake"), ("tier", "job")])));
        let empty_value = Selector::parse("app=").unwrap();
        assert!(empty_value.matches(&labels(&[("app", "")])));
        assert!(!empty_value.matches(&labels(&[])));
    }

    #[test]
    fn other_operators_and_bad_keys_are_refused() {
        let refused = [
            ("", "an empty selector would match every role: write key=value"),
            ("app", "\"app\" is not a key=value requirement (only = and == are supported, as in app=datalake,tier=web)"),
            ("app!=web", "\"app!=web\" is not a key=value requirement (only = and == are supported, as in app=datalake,tier=web)"),
            ("app in (a,b)", "\"app in (a\" is not a key=value requirement (only = and == are supported, as in app=datalake,tier=web)"),
            ("app=a,", "\"app=a,\" has an empty requirement (a comma too many)"),
            ("=web", "in \"=web\": \"\" is not a valid label key (letters, digits, '.', '_', '-', '/', starting and ending with a letter or digit)"),
            ("app=a,app=b", "\"app\" is required to be two values at once: no role can match"),
        ];
        for (text, message) in refused {
            assert_eq!(Selector::parse(text), Err(message.to_string()), "{text:?}");
        }
    }
}
