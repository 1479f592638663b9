//! JSON Schema of the spec documents (`Host` and `Role`), for editors and `ballast` to print.

use crate::model::Object;

/// The JSON Schema of one spec document: a `Host` or a `Role`, told apart by `kind`.
pub fn json_schema() -> serde_json::Value {
    schemars::schema_for!(Object).to_value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_both_kinds() {
        let schema = json_schema();
        let text = schema.to_string();
        for needle in [
            "\"Host\"",
            "\"Role\"",
            "deployTimeout",
            "dockerSocket",
            "Memory",
            "Cpus",
            "maxUnavailable",
            "drainTimeout",
        ] {
            assert!(text.contains(needle), "schema lacks {needle}: {text}");
        }
        let variants = schema["oneOf"].as_array().expect("a oneOf of the two kinds");
        let kinds: Vec<&str> =
            variants.iter().filter_map(|v| v["properties"]["kind"]["const"].as_str()).collect();
        assert_eq!(kinds, ["Host", "Role"]);
    }
}
