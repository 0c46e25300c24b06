//! The `latency` cost model: op latencies looked up in a table measured on the target.
//!
//! Format (JSON; unknown fields are errors):
//!
//! ```json
//! {
//!   "description": "optional free text: runtime, machine, threads",
//!   "slice":  [ { "bytes": 0, "ns": 900 }, { "bytes": 65536, "ns": 6500 } ],
//!   "gather": [ { "bytes": 0, "ns": 1100 }, { "bytes": 65536, "ns": 9800 } ],
//!   "mac_ns": 0.05
//! }
//! ```
//!
//! `slice` and `gather` are measured points (bytes copied by one op, its latency in
//! nanoseconds), at least one each, `bytes` strictly increasing, `ns` finite and non-negative.
//! Between points the latency is interpolated linearly; below the first point it is the first
//! point's; above the last it grows at the slope of the last two points (with one point, in
//! proportion to the bytes, or constant if that point is at 0 bytes). A zero-copy slice is a table of zeros. `mac_ns` is the latency of
//! one extra multiply-add (a zero weight column). Costs are in picoseconds.
//! An illustrative table is test data (`tests/data/latency_example.json`); nothing falls back
//! to it: the `latency` model needs a table measured on the target.

use super::cost::Cost;
use super::model::CostModel;
use serde::Deserialize;
use std::fmt;

/// A latency table that failed to load: unreadable, not JSON of the format, or invalid values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyError(pub String);

impl fmt::Display for LatencyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "latency table: {}", self.0)
    }
}

impl std::error::Error for LatencyError {}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Point {
    bytes: u64,
    ns: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    #[serde(default)]
    description: Option<String>,
    slice: Vec<Point>,
    gather: Vec<Point>,
    mac_ns: f64,
}

/// Latencies from a measured table (see the module docs for the format).
///
/// ```
/// use nnirc::egraph::{Cost, CostModel, Latency};
/// let table = r#"{"slice": [{"bytes": 0, "ns": 0}], "gather": [{"bytes": 0, "ns": 1},
///                 {"bytes": 100, "ns": 2}], "mac_ns": 0.5}"#;
/// let model = Latency::from_json(table).unwrap();
/// assert_eq!(model.slice(10, 10), Cost::ZERO);
/// assert_eq!(model.gather(5, 10), Cost::new(1_500)); // 1.5 ns
/// assert_eq!(model.zero_columns(2, 3), Cost::new(3_000));
/// assert!(Latency::from_json("{}").is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Latency {
    pub description: Option<String>,
    slice: Vec<Point>,
    gather: Vec<Point>,
    mac_ns: f64,
}

impl Latency {
    /// Parses and checks a table.
    pub fn from_json(text: &str) -> Result<Latency, LatencyError> {
        let table: Table = serde_json::from_str(text).map_err(|e| LatencyError(e.to_string()))?;
        check_points("slice", &table.slice)?;
        check_points("gather", &table.gather)?;
        if !(table.mac_ns.is_finite() && table.mac_ns >= 0.0) {
            return Err(LatencyError(format!(
                "`mac_ns` must be finite and non-negative, not {}",
                table.mac_ns
            )));
        }
        Ok(Latency {
            description: table.description,
            slice: table.slice,
            gather: table.gather,
            mac_ns: table.mac_ns,
        })
    }
}

fn check_points(op: &str, points: &[Point]) -> Result<(), LatencyError> {
    if points.is_empty() {
        return Err(LatencyError(format!("`{op}` needs at least one point")));
    }
    if let Some(p) = points.iter().find(|p| !(p.ns.is_finite() && p.ns >= 0.0)) {
        return Err(LatencyError(format!(
            "`{op}`: ns must be finite and non-negative, not {} (at {} bytes)",
            p.ns, p.bytes
        )));
    }
    if let Some(w) = points.windows(2).find(|w| w[0].bytes >= w[1].bytes) {
        return Err(LatencyError(format!(
            "`{op}`: bytes must increase strictly ({} then {})",
            w[0].bytes, w[1].bytes
        )));
    }
    Ok(())
}

/// The interpolated latency (ns) of copying `bytes` (see the module docs).
fn lookup(points: &[Point], bytes: u64) -> f64 {
    let b = bytes as f64;
    let first = points[0];
    if bytes <= first.bytes {
        return first.ns;
    }
    let (lo, hi) = match points.iter().position(|p| p.bytes >= bytes) {
        Some(i) => (points[i - 1], points[i]),
        None if points.len() >= 2 => (points[points.len() - 2], points[points.len() - 1]),
        None if first.bytes == 0 => return first.ns,
        None => return first.ns * b / first.bytes as f64,
    };
    let slope = (hi.ns - lo.ns) / (hi.bytes - lo.bytes) as f64;
    (lo.ns + slope * (b - lo.bytes as f64)).max(0.0)
}

fn picoseconds(ns: f64) -> Cost {
    Cost::from_f64(ns * 1000.0)
}

impl CostModel for Latency {
    fn name(&self) -> &str {
        "latency"
    }
    fn slice(&self, channels: usize, bytes_per_channel: u64) -> Cost {
        let bytes = (channels as u64).saturating_mul(bytes_per_channel);
        picoseconds(lookup(&self.slice, bytes))
    }
    fn gather(&self, channels: usize, bytes_per_channel: u64) -> Cost {
        let bytes = (channels as u64).saturating_mul(bytes_per_channel);
        picoseconds(lookup(&self.gather, bytes))
    }
    fn zero_columns(&self, columns: usize, macs_per_column: u64) -> Cost {
        let macs = (columns as u64).saturating_mul(macs_per_column);
        picoseconds(macs as f64 * self.mac_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(list: &[(u64, f64)]) -> Vec<Point> {
        list.iter()
            .map(|&(bytes, ns)| Point { bytes, ns })
            .collect()
    }

    #[test]
    fn lookup_interpolates_and_extrapolates() {
        let p = points(&[(100, 10.0), (200, 30.0), (400, 50.0)]);
        assert_eq!(lookup(&p, 0), 10.0);
        assert_eq!(lookup(&p, 100), 10.0);
        assert_eq!(lookup(&p, 150), 20.0);
        assert_eq!(lookup(&p, 200), 30.0);
        assert_eq!(lookup(&p, 300), 40.0);
        assert_eq!(lookup(&p, 600), 70.0);
        assert_eq!(lookup(&points(&[(100, 10.0)]), 300), 30.0);
        assert_eq!(lookup(&points(&[(0, 10.0)]), 300), 10.0);
        // A falling last segment never goes negative.
        assert_eq!(lookup(&points(&[(0, 10.0), (10, 0.0)]), 1000), 0.0);
    }

    #[test]
    fn the_example_loads() {
        let model = Latency::from_json(include_str!("../../tests/data/latency_example.json"))
            .expect("the example table is valid");
        assert!(model.description.is_some());
        assert!(model.gather(4, 1024) > model.slice(4, 1024));
    }
}
