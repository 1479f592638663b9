//! Output: aligned tables for people, the API's wire types as JSON or YAML for scripts.

use chrono::{DateTime, Utc};
use clap::ValueEnum;
use serde::Serialize;

use crate::error::CliError;

/// `-o`: how results are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    #[default]
    Table,
    /// The table with more columns (`get roles`: ports and proxy; `status`: the proxy's route).
    Wide,
    /// The API's wire types, exactly (a stable format).
    Json,
    /// The same as YAML.
    Yaml,
}

impl Output {
    /// A table for people (plain or wide), not data.
    pub fn is_table(self) -> bool {
        matches!(self, Output::Table | Output::Wide)
    }
}

/// Prints `value` as JSON or YAML; `false` for table output (the caller prints its table).
pub fn print_data<T: Serialize>(output: Output, value: &T) -> Result<bool, CliError> {
    match output {
        Output::Table | Output::Wide => Ok(false),
        Output::Json => {
            let text = serde_json::to_string_pretty(value)
                .map_err(|err| CliError::Failed(format!("cannot print JSON: {err}")))?;
            println!("{text}");
            Ok(true)
        }
        Output::Yaml => {
            print!("{}", yaml(value)?);
            Ok(true)
        }
    }
}

/// `value` as YAML text.
pub fn yaml<T: Serialize>(value: &T) -> Result<String, CliError> {
    serde_yaml::to_string(value).map_err(|err| CliError::Failed(format!("cannot print YAML: {err}")))
}

/// Columns padded to their widest cell; the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i < last {
                let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(cell.chars().count());
                line.push_str(&" ".repeat(pad + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// How long ago `since` was, the short way: `45s`, `12m`, `3h`, `2d`.
pub fn age(since: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (now - since).num_seconds().max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// A point in time for tables: `2026-05-01 12:00:00Z`.
pub fn timestamp(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// `value`, or `-` when empty.
pub fn or_dash(value: impl Into<String>) -> String {
    let value = value.into();
    if value.is_empty() {
        "-".to_string()
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let rows = vec![
            vec!["web".to_string(), "1.5".to_string(), "x".to_string()],
            vec!["web_replica".to_string(), "-".to_string(), "".to_string()],
        ];
        let text = table(&["NAME", "CPUS", "NOTE"], &rows);
        assert_eq!(text, "NAME          CPUS   NOTE\nweb           1.5    x\nweb_replica   -\n");
    }

    #[test]
    fn ages() {
        let now = Utc::now();
        assert_eq!(age(now - chrono::Duration::seconds(45), now), "45s");
        assert_eq!(age(now - chrono::Duration::minutes(12), now), "12m");
        assert_eq!(age(now - chrono::Duration::hours(3), now), "3h");
        assert_eq!(age(now - chrono::Duration::days(2), now), "2d");
    }
}
