//! Timing breakdowns: where the time of one change goes, from the Docker API calls the recording proxy saw,
//! as medians over the iterations that made the same sequence of calls.

use std::time::Instant;

use crate::stats::ms;
use ballast_tests::docker_proxy::Call;

/// One iteration, times in ms after its start (the command, or the drift).
#[derive(Clone, Debug, Default)]
pub struct Run {
    /// Marks before the calls (e.g. "the CLI returned") with their time.
    pub marks: Vec<(String, f64)>,
    /// Docker API calls: name, start, duration.
    pub calls: Vec<(String, f64, Option<f64>)>,
    /// The end (e.g. the first 200 of the new version).
    pub end: f64,
}

impl Run {
    /// The calls of `calls` that started between `t0` and `end`.
    pub fn new(t0: Instant, end: Instant, calls: &[Call]) -> Run {
        let calls = calls
            .iter()
            .filter(|c| c.at >= t0 && c.at <= end)
            .map(|c| (c.name(), ms(c.at - t0), c.ms()))
            .collect();
        Run { marks: Vec::new(), calls, end: ms(end - t0) }
    }

    pub fn mark(mut self, name: &str, at: Instant, t0: Instant) -> Run {
        self.marks.push((name.to_string(), ms(at.saturating_duration_since(t0))));
        self
    }

    fn sequence(&self) -> Vec<&str> {
        self.calls.iter().map(|(n, _, _)| n.as_str()).collect()
    }
}

/// A markdown table: each step with its median start and duration over the runs that made the most common
/// sequence of calls.
pub fn render(runs: &[Run], end_label: &str) -> String {
    let Some(common) = most_common(runs) else { return "no runs recorded\n".to_string() };
    let same: Vec<&Run> = runs.iter().filter(|r| r.sequence() == common.sequence()).collect();
    let mut out = String::from("| step | starts at (ms after t0) | takes (ms) |\n|---|---:|---:|\n");
    for (k, (name, _)) in common.marks.iter().enumerate() {
        let at = median(same.iter().filter_map(|r| r.marks.get(k).map(|m| m.1)).collect());
        out.push_str(&format!("| {name} | {at:.1} | |\n"));
    }
    for (k, (name, _, _)) in common.calls.iter().enumerate() {
        let at = median(same.iter().map(|r| r.calls[k].1).collect());
        let took = median(same.iter().filter_map(|r| r.calls[k].2).collect());
        out.push_str(&format!("| `{name}` | {at:.1} | {took:.1} |\n"));
    }
    let end = median(same.iter().map(|r| r.end).collect());
    out.push_str(&format!("| {end_label} | {end:.1} | |\n"));
    out.push_str(&format!(
        "\n{} of {} iterations made this sequence of Docker calls; medians over those.\n",
        same.len(),
        runs.len()
    ));
    out
}

fn most_common(runs: &[Run]) -> Option<&Run> {
    runs.iter().max_by_key(|r| runs.iter().filter(|o| o.sequence() == r.sequence()).count())
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}
