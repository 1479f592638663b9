//! Docker-compatible quantities: memory (`512m`, `1.75g`, `2GiB`), cpus (`1.5`) and durations (`1s`, `20m`).
//!
//! Each keeps the text the user wrote (so a stored spec reads as it was applied) and compares by value
//! (so `1.75g` and `1792m` are the same spec).

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The most CPUs a role may ask for.
pub const MAX_CPUS: f64 = 256.0;
/// Docker refuses memory limits below 6 MiB.
pub const MIN_MEMORY: u64 = 6 * 1024 * 1024;
/// Docker keeps a memory limit as a signed 64-bit number of bytes.
pub const MAX_MEMORY: u64 = i64::MAX as u64;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
const TIB: u64 = 1024 * GIB;

/// A memory size in bytes. Units are binary, as in `docker run --memory`: `k`, `m`, `g`, `t`
/// (also `kb`, `mb`, `KiB`, `MiB`, ...), case-insensitive; a bare number is bytes.
#[derive(Clone, Debug)]
pub struct Memory {
    bytes: u64,
    text: String,
}

/// A CPU count as Docker's `--cpus`, kept as nano-CPUs (Docker's `NanoCpus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cpus {
    nanos: u64,
}

/// A duration: `500ms`, `1s`, `20m`, `1h`, `1m30s`.
#[derive(Clone, Debug)]
pub struct Duration {
    millis: u64,
    text: String,
}

impl Memory {
    /// Parses a Docker memory quantity; the error says what is wrong, without the field's path.
    pub fn parse(text: &str) -> Result<Memory, String> {
        let bytes = parse_bytes(text)
            .ok_or_else(|| format!("{text:?} is not a memory quantity (examples: 512m, 1.75g, 2GiB)"))?;
        if bytes < MIN_MEMORY {
            return Err(format!("{text:?} is below docker's minimum of 6m"));
        }
        if bytes > MAX_MEMORY {
            return Err(format!("{text:?} is above docker's maximum of {MAX_MEMORY} bytes"));
        }
        Ok(Memory { bytes, text: text.trim().to_string() })
    }

    pub fn from_bytes(bytes: u64) -> Memory {
        Memory { bytes, text: format_bytes(bytes) }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Formats a byte count the short way Docker users write it: `512m`, `1.75g`, `6291456`.
pub fn format_bytes(bytes: u64) -> String {
    for (unit, suffix) in [(TIB, "t"), (GIB, "g"), (MIB, "m"), (KIB, "k")] {
        if bytes >= unit {
            if bytes % unit == 0 {
                return format!("{}{suffix}", bytes / unit);
            }
            // Two decimals when exact (1.75g), else fall to the next unit. In u128: `bytes * 100` may not fit a u64.
            let (bytes, unit) = (u128::from(bytes), u128::from(unit));
            if (bytes * 100) % unit == 0 {
                let hundredths = bytes * 100 / unit;
                let s = format!("{}.{:02}", hundredths / 100, hundredths % 100);
                return format!("{}{suffix}", s.trim_end_matches('0'));
            }
        }
    }
    bytes.to_string()
}

fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    if number.is_empty()
        || number.starts_with('.')
        || number.ends_with('.')
        || number.matches('.').count() > 1
    {
        return None;
    }
    let multiplier = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => KIB,
        "m" | "mb" | "mib" => MIB,
        "g" | "gb" | "gib" => GIB,
        "t" | "tb" | "tib" => TIB,
        _ => return None,
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if fraction.len() > 9 {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let mut bytes = whole.checked_mul(multiplier)?;
    if !fraction.is_empty() {
        let digits: u64 = fraction.parse().ok()?;
        let scale = 10u64.pow(fraction.len() as u32);
        let part = (digits as u128 * multiplier as u128) / scale as u128;
        if multiplier == 1 && digits != 0 {
            return None; // fractional bytes
        }
        bytes = bytes.checked_add(u64::try_from(part).ok()?)?;
    }
    Some(bytes)
}

impl Cpus {
    /// Parses a CPU count: a decimal greater than 0 and at most [`MAX_CPUS`], at most 9 decimals.
    pub fn parse(text: &str) -> Result<Cpus, String> {
        let t = text.trim();
        let value: f64 =
            t.parse().map_err(|_| format!("{text:?} is not a number of cpus (examples: 0.25, 1.5, 2)"))?;
        Cpus::from_f64(value)
    }

    pub fn from_f64(value: f64) -> Result<Cpus, String> {
        if !value.is_finite() || value <= 0.0 {
            return Err(format!("cpus must be greater than 0, got {value}"));
        }
        if value > MAX_CPUS {
            return Err(format!("cpus must be at most {MAX_CPUS}, got {value}"));
        }
        let nanos = (value * 1e9).round() as u64;
        if nanos == 0 {
            return Err(format!("cpus must be greater than 0, got {value}"));
        }
        Ok(Cpus { nanos })
    }

    pub fn from_nanos(nanos: u64) -> Cpus {
        Cpus { nanos }
    }

    pub fn nanos(self) -> u64 {
        self.nanos
    }

    pub fn as_f64(self) -> f64 {
        self.nanos as f64 / 1e9
    }
}

impl Duration {
    pub fn parse(text: &str) -> Result<Duration, String> {
        let millis = parse_millis(text)
            .ok_or_else(|| format!("{text:?} is not a duration (examples: 500ms, 1s, 20m, 1h)"))?;
        Ok(Duration { millis, text: text.trim().to_string() })
    }

    pub fn from_secs(secs: u64) -> Duration {
        Duration { millis: secs * 1000, text: format!("{secs}s") }
    }

    pub fn from_millis(millis: u64) -> Duration {
        let text = if millis % 1000 == 0 { format!("{}s", millis / 1000) } else { format!("{millis}ms") };
        Duration { millis, text }
    }

    pub fn as_millis(&self) -> u64 {
        self.millis
    }

    pub fn as_std(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.millis)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

fn parse_millis(text: &str) -> Option<u64> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let split = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (number, tail) = rest.split_at(split);
        let unit_len = tail.find(|c: char| c.is_ascii_digit()).unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let scale: f64 = match unit {
            "ms" => 1.0,
            "s" => 1_000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            _ => return None,
        };
        let value: f64 = number.parse().ok()?;
        if !value.is_finite() || value < 0.0 {
            return None;
        }
        let millis = (value * scale).round();
        // `as` would saturate: a duration beyond u64 milliseconds is refused, not cut short.
        if millis >= u64::MAX as f64 {
            return None;
        }
        total = total.checked_add(millis as u64)?;
        rest = next;
    }
    Some(total)
}

impl PartialEq for Memory {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl PartialEq for Duration {
    fn eq(&self, other: &Self) -> bool {
        self.millis == other.millis
    }
}

impl fmt::Display for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Display for Cpus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_f64())
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Memory {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Memory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match StringOrNumber::deserialize(d)? {
            StringOrNumber::String(s) => Memory::parse(&s),
            StringOrNumber::Number(n) => Memory::parse(&n.to_string()),
        }
        .map_err(serde::de::Error::custom)
    }
}

impl Serialize for Cpus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.as_f64())
    }
}

impl<'de> Deserialize<'de> for Cpus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match StringOrNumber::deserialize(d)? {
            StringOrNumber::String(s) => Cpus::parse(&s),
            StringOrNumber::Number(n) => Cpus::from_f64(n),
        }
        .map_err(serde::de::Error::custom)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Duration::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrNumber {
    String(String),
    Number(f64),
}

impl JsonSchema for Memory {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Memory".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Memory size as docker writes it: 512m, 1.75g, 2GiB, or bytes",
            "type": ["string", "integer"],
            "pattern": "^[0-9]+(\\.[0-9]+)?\\s*([kKmMgGtT]([iI]?[bB])?|[bB])?$"
        })
    }
}

impl JsonSchema for Cpus {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Cpus".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Number of CPUs, as docker --cpus",
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": MAX_CPUS
        })
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Duration: 500ms, 1s, 20m, 1h, 1m30s",
            "type": "string",
            "pattern": "^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_parses_docker_units() {
        let cases = [
            ("512m", 512 * MIB),
            ("1.75g", 1792 * MIB),
            ("2GiB", 2 * GIB),
            ("2gb", 2 * GIB),
            ("768M", 768 * MIB),
            ("6291456", 6 * MIB),
            ("1.5g", 1536 * MIB),
        ];
        for (text, bytes) in cases {
            assert_eq!(Memory::parse(text).map(|m| m.bytes()), Ok(bytes), "{text}");
        }
        assert_eq!(Memory::parse("8388607t").map(|m| m.bytes()), Ok(8_388_607 * TIB));
        for bad in
            ["1.75XB", "", "m", "1..5g", "-1g", "1.5", "5m", "g1", ".5g", "8388608t", "18446744073709551615"]
        {
            assert!(Memory::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn memory_formats_short() {
        assert_eq!(format_bytes(512 * MIB), "512m");
        assert_eq!(format_bytes(1792 * MIB), "1.75g");
        assert_eq!(format_bytes(2 * GIB), "2g");
        assert_eq!(format_bytes(1000), "1000");
        assert_eq!(format_bytes(u64::MAX), "18446744073709551615");
        assert_eq!(format_bytes(200_000_000_000_000_000), "190734863281.25m");
        assert_eq!(Memory::parse("1.75g").unwrap(), Memory::parse("1792m").unwrap());
    }

    #[test]
    fn cpus_bounds() {
        assert_eq!(Cpus::parse("1.5").unwrap().nanos(), 1_500_000_000);
        assert_eq!(Cpus::parse("0.25").unwrap().nanos(), 250_000_000);
        assert!(Cpus::parse("0").is_err());
        assert!(Cpus::parse("-1").is_err());
        assert!(Cpus::parse("1000").is_err());
        assert!(Cpus::parse("one").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(Duration::parse("1s").unwrap().as_millis(), 1000);
        assert_eq!(Duration::parse("1200s").unwrap().as_millis(), 1_200_000);
        assert_eq!(Duration::parse("20m").unwrap().as_millis(), 1_200_000);
        assert_eq!(Duration::parse("1m30s").unwrap().as_millis(), 90_000);
        assert_eq!(Duration::parse("500ms").unwrap().as_millis(), 500);
        assert!(Duration::parse("5124095576030h").is_ok(), "just below u64::MAX milliseconds");
        for bad in ["", "1", "s", "1x", "-1s", "5124095576031h", "99999999999999999999999h"] {
            assert!(Duration::parse(bad).is_err(), "{bad} should not parse");
        }
    }
}
