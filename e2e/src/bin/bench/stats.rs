//! Measured figures: named series of values, summarised as median, min and max.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One measured quantity: every value taken, in `unit`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Figure {
    pub key: String,
    pub label: String,
    pub unit: String,
    pub values: Vec<f64>,
}

/// Median, min, max and count of a figure's values.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

/// Everything measured in one run, in the order it was measured, with what went wrong.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Results {
    pub figures: Vec<Figure>,
    /// Section name and the error that stopped it.
    pub errors: Vec<(String, String)>,
    /// Free-form facts found on the way (key, text), e.g. a breakdown of calls.
    pub notes: Vec<(String, String)>,
}

impl Figure {
    pub fn summary(&self) -> Option<Summary> {
        if self.values.is_empty() {
            return None;
        }
        let mut sorted = self.values.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
        Some(Summary { median, min: sorted[0], max: sorted[n - 1], n })
    }
}

impl Results {
    /// Adds a figure; values are appended when the key exists already.
    pub fn add(&mut self, key: &str, label: &str, unit: &str, values: Vec<f64>) {
        match self.figures.iter_mut().find(|f| f.key == key) {
            Some(figure) => figure.values.extend(values),
            None => self.figures.push(Figure {
                key: key.to_string(),
                label: label.to_string(),
                unit: unit.to_string(),
                values,
            }),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Figure> {
        self.figures.iter().find(|f| f.key == key && !f.values.is_empty())
    }

    pub fn median(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(Figure::summary).map(|s| s.median)
    }

    pub fn note(&mut self, key: &str, text: String) {
        self.notes.push((key.to_string(), text));
    }

    pub fn notes_of(&self, key: &str) -> Vec<&str> {
        self.notes.iter().filter(|(k, _)| k == key).map(|(_, t)| t.as_str()).collect()
    }
}

/// A duration in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        let f = |values: Vec<f64>| Figure { key: "k".into(), label: "l".into(), unit: "ms".into(), values };
        let s = f(vec![3.0, 1.0, 2.0]).summary().unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        let s = f(vec![4.0, 1.0, 2.0, 3.0]).summary().unwrap();
        assert_eq!(s.median, 2.5);
        assert!(f(vec![]).summary().is_none());
    }
}
