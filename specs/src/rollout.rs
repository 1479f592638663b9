//! `spec.rollout.maxUnavailable`: how many units of a rollout group may be replaced at once, as a count (`2`) or
//! a percentage of the group's units (`10%`), and the budget it gives for a group of a given size.
//!
//! As a Kubernetes Deployment's `maxUnavailable`: a percentage is rounded down, but never below 1 (ballast has
//! no surge, so a budget of 0 would never roll anything).

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// At most this many units of a group are being replaced at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MaxUnavailable {
    /// A number of units, at least 1.
    Count(u32),
    /// A whole percentage of the group's units, 1 to 100.
    Percent(u8),
}

impl MaxUnavailable {
    /// One unit at a time: the default.
    pub const ONE: MaxUnavailable = MaxUnavailable::Count(1);

    /// Parses `3` or `10%`; the error says what is wrong, without the field's path.
    pub fn parse(text: &str) -> Result<MaxUnavailable, String> {
        let t = text.trim();
        let wrong = || format!("{text:?} is not a count or a percentage (examples: 1, 3, 10%)");
        if let Some(number) = t.strip_suffix('%') {
            if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
                return Err(if number.contains('.') {
                    format!("{text:?} is not a whole percentage (examples: 10%, 25%)")
                } else {
                    wrong()
                });
            }
            return match number.parse::<u64>() {
                Ok(0) => Err(format!("{text:?} must be more than 0%")),
                Ok(percent @ 1..=100) => Ok(MaxUnavailable::Percent(percent as u8)),
                _ => Err(format!("{text:?} is more than 100%")),
            };
        }
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(wrong());
        }
        match t.parse::<u64>() {
            Ok(0) => Err(format!("{text:?} must be at least 1: a budget of 0 would never roll anything")),
            Ok(count) => Ok(MaxUnavailable::Count(u32::try_from(count).unwrap_or(u32::MAX))),
            Err(_) => Err(wrong()),
        }
    }

    /// The budget for a group of `units` units: a count as it is; a percentage of `units`, rounded down,
    /// at least 1.
    pub fn of(self, units: usize) -> usize {
        match self {
            MaxUnavailable::Count(count) => count as usize,
            MaxUnavailable::Percent(percent) => (units * percent as usize / 100).max(1),
        }
    }
}

impl Default for MaxUnavailable {
    fn default() -> MaxUnavailable {
        MaxUnavailable::ONE
    }
}

impl fmt::Display for MaxUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxUnavailable::Count(count) => write!(f, "{count}"),
            MaxUnavailable::Percent(percent) => write!(f, "{percent}%"),
        }
    }
}

/// A count is stored as a number, a percentage as its text (`"10%"`).
impl Serialize for MaxUnavailable {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MaxUnavailable::Count(count) => s.serialize_u32(*count),
            MaxUnavailable::Percent(_) => s.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for MaxUnavailable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum CountOrText {
            Count(u64),
            Text(String),
            Other(serde_json::Value),
        }
        match CountOrText::deserialize(d)? {
            CountOrText::Count(n) => MaxUnavailable::parse(&n.to_string()),
            CountOrText::Text(s) => MaxUnavailable::parse(&s),
            CountOrText::Other(v) => Err(format!("{v} is not a count or a percentage (examples: 1, 3, 10%)")),
        }
        .map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for MaxUnavailable {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "MaxUnavailable".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Units of the rollout group replaced at once: a count (at least 1) or a whole \
                            percentage of the group's units (rounded down, at least 1)",
            "oneOf": [
                {"type": "integer", "minimum": 1},
                {"type": "string", "pattern": "^([1-9][0-9]?|100)%$"}
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counts_and_percentages() {
        assert_eq!(MaxUnavailable::parse("1"), Ok(MaxUnavailable::Count(1)));
        assert_eq!(MaxUnavailable::parse(" 25 "), Ok(MaxUnavailable::Count(25)));
        assert_eq!(MaxUnavailable::parse("10%"), Ok(MaxUnavailable::Percent(10)));
        assert_eq!(MaxUnavailable::parse("100%"), Ok(MaxUnavailable::Percent(100)));
        let refused = [
            ("0", "\"0\" must be at least 1: a budget of 0 would never roll anything"),
            ("0%", "\"0%\" must be more than 0%"),
            ("101%", "\"101%\" is more than 100%"),
            ("12.5%", "\"12.5%\" is not a whole percentage (examples: 10%, 25%)"),
            ("-1", "\"-1\" is not a count or a percentage (examples: 1, 3, 10%)"),
            ("ten", "\"ten\" is not a count or a percentage (examples: 1, 3, 10%)"),
            ("%", "\"%\" is not a count or a percentage (examples: 1, 3, 10%)"),
            ("", "\"\" is not a count or a percentage (examples: 1, 3, 10%)"),
        ];
        for (text, message) in refused {
            assert_eq!(MaxUnavailable::parse(text), Err(message.to_string()), "{text}");
        }
    }

    #[test]
    fn a_percentage_rounds_down_but_not_below_one() {
        let ten = MaxUnavailable::Percent(10);
        assert_eq!([ten.of(1000), ten.of(19), ten.of(9), ten.of(0)], [100, 1, 1, 1]);
        assert_eq!(MaxUnavailable::Percent(50).of(3), 1);
        assert_eq!(MaxUnavailable::Percent(100).of(7), 7);
        assert_eq!(MaxUnavailable::Count(3).of(2), 3, "a count is not capped by the group's size");
    }

    #[test]
    fn json_keeps_counts_as_numbers_and_percentages_as_text() {
        for (value, json) in [(MaxUnavailable::Count(2), "2"), (MaxUnavailable::Percent(10), "\"10%\"")] {
            assert_eq!(serde_json::to_string(&value).unwrap(), json);
            assert_eq!(serde_json::from_str::<MaxUnavailable>(json).unwrap(), value);
        }
        assert_eq!(serde_json::from_str::<MaxUnavailable>("\"3\"").unwrap(), MaxUnavailable::Count(3));
        let error = serde_json::from_str::<MaxUnavailable>("0").unwrap_err().to_string();
        assert!(error.contains("must be at least 1"), "{error}");
        let error = serde_json::from_str::<MaxUnavailable>("1.5").unwrap_err().to_string();
        assert!(error.contains("1.5 is not a count or a percentage"), "{error}");
    }
}
