//! The latency table, format version 2 (strict JSON; docs/latency.md describes every field),
//! and the per-unit lookup the predictor is built on.
//!
//! A table holds, for each [`Kernel`] measured, points `(c_in, c_out) -> microseconds` and
//! whether onnxruntime ran the kernel in its blocked NCHWc layout there; the cost of a layout
//! reorder by bytes; and the runtime's fixed overheads. Widths fall in alignment classes per
//! axis ([`class`]): below the NCHWc block, a multiple of it, and (on input axes) how much of
//! a block they are a multiple of. [`Table::lookup`] only ever interpolates between points of
//! the query's own classes (never across the aligned/unaligned boundary, where the kernel
//! changes).
//!
//! Invariants after [`Table::from_json`]: version 2; block in {4, 8, 16}; every time finite
//! and >= 0; widths >= 1; no kernel twice; no width pair twice in an entry; byte points
//! strictly increasing.

use super::units::Kernel;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;

/// The one format version this build reads and writes.
pub const VERSION: u32 = 2;

/// A table that failed to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableError(pub String);

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "latency table: {}", self.0)
    }
}

impl std::error::Error for TableError {}

/// The runtime and the settings the table was measured with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    /// `onnxruntime`.
    pub name: String,
    pub version: String,
    pub provider: String,
    /// Intra-op threads (inter-op: 1, sequential execution).
    pub threads: usize,
    /// Graph optimization level: `disable`, `basic`, `extended` or `all`.
    pub optimization: String,
}

/// The machine the table was measured on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    pub cpu: String,
    /// The SIMD flags that decide onnxruntime's kernels (from /proc/cpuinfo).
    pub isa: Vec<String>,
    pub logical_cpus: usize,
}

/// How the points were measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Method {
    pub warmup: usize,
    pub runs: usize,
    pub statistic: String,
}

/// One measured width pair of a kernel.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Point {
    pub c_in: usize,
    pub c_out: usize,
    /// Median time of the unit's kernels per run, in microseconds.
    pub us: f64,
    /// Whether onnxruntime ran the conv in its blocked NCHWc layout (always false for other
    /// kernels, which are measured in plain NCHW).
    pub nchwc: bool,
}

/// All points of one kernel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub kernel: Kernel,
    pub points: Vec<Point>,
}

/// A measured cost by bytes moved.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BytesPoint {
    pub bytes: u64,
    pub us: f64,
}

/// The reorders onnxruntime inserts between its NCHW and NCHWc layouts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reorders {
    /// NCHW -> NCHWc (before a blocked conv), by the bytes of the NCHW value.
    pub input: Vec<BytesPoint>,
    /// NCHWc -> NCHW (before an op that needs the plain layout), by the bytes of the value.
    pub output: Vec<BytesPoint>,
}

/// The time a run spends outside kernels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overhead {
    /// Per run (session bookkeeping, input and output copies of a tiny model).
    pub run_us: f64,
    /// Per kernel executed.
    pub kernel_us: f64,
    /// What onnxruntime's profiler adds to each kernel time it reports (taken off every
    /// point of the table already; kept as a record of the calibration).
    pub profiler_us: f64,
}

/// One whole model timed when the table was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationModel {
    pub model: String,
    /// Median wall time of a run of the whole model (us).
    pub measured_us: f64,
    /// The table's prediction of it before calibration (us).
    pub predicted_us: f64,
}

/// How the sum of a model's kernels, timed one unit at a time, relates to the whole model run
/// by the runtime: `measured - overheads = scale * (units + reorders)`, the geometric mean
/// over the models the table was measured for. Predictions multiply by `scale`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    pub scale: f64,
    pub models: Vec<CalibrationModel>,
}

/// A measured latency table (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    pub version: u32,
    pub runtime: Runtime,
    pub machine: Machine,
    /// onnxruntime's NCHWc block: 8 floats with AVX2, 16 with AVX-512.
    pub block: usize,
    pub method: Method,
    /// When it was measured (UTC, RFC 3339).
    pub measured: String,
    /// The models it was measured for.
    pub models: Vec<String>,
    pub overhead: Overhead,
    pub calibration: Calibration,
    pub reorders: Reorders,
    pub entries: Vec<Entry>,
}

/// A width's alignment class: 0 below the block; else, on a `fine` axis, the greatest common
/// divisor of the width and the block (onnxruntime's blocked conv takes an input width that
/// is a multiple of half a block, for one, and pads it); on a coarse axis, the block for a
/// multiple of it and 1 for anything else.
pub fn class(c: usize, block: usize, fine: bool) -> usize {
    if c < block {
        0
    } else if fine {
        gcd(c, block)
    } else if c.is_multiple_of(block) {
        block
    } else {
        1
    }
}

/// Whether a kernel's input axis is fine (see [`class`]): convs and everything with one
/// width (its output is its input); the output axis of a two-width kernel is coarse.
pub fn fine_axes(kernel: &Kernel) -> (bool, bool) {
    if kernel.two_widths() {
        (true, false)
    } else {
        (true, true)
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl Table {
    /// Parses and checks a table (see the module docs for the invariants).
    pub fn from_json(text: &str) -> Result<Table, TableError> {
        #[derive(Deserialize)]
        struct Versioned {
            version: Option<serde_json::Value>,
        }
        let versioned: Versioned =
            serde_json::from_str(text).map_err(|e| TableError(e.to_string()))?;
        match versioned.version {
            Some(serde_json::Value::Number(n)) if n.as_u64() == Some(VERSION as u64) => {}
            Some(v) => {
                return Err(TableError(format!(
                    "version {v} is not supported (this nnirc reads version {VERSION})"
                )))
            }
            None => {
                return Err(TableError(format!(
                    "no \"version\" field: not a version-{VERSION} table (the older \
                     slice/gather/mac_ns format is the `latency` cost model's, \
                     docs/cost-models.md)"
                )))
            }
        }
        let table: Table = serde_json::from_str(text).map_err(|e| TableError(e.to_string()))?;
        table.check()?;
        Ok(table)
    }

    /// The table as pretty JSON (what [`Table::from_json`] reads).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a table serializes") + "\n"
    }

    fn check(&self) -> Result<(), TableError> {
        let bad = |m: String| Err(TableError(m));
        if ![4, 8, 16].contains(&self.block) {
            return bad(format!("block {} is not 4, 8 or 16", self.block));
        }
        if !(self.calibration.scale.is_finite() && self.calibration.scale > 0.0) {
            return bad(format!(
                "calibration scale {} must be finite and > 0",
                self.calibration.scale
            ));
        }
        let time = |us: f64| us.is_finite() && us >= 0.0;
        if ![
            self.overhead.run_us,
            self.overhead.kernel_us,
            self.overhead.profiler_us,
        ]
        .into_iter()
        .all(time)
        {
            return bad("overhead times must be finite and >= 0".into());
        }
        for (name, points) in [
            ("reorders.input", &self.reorders.input),
            ("reorders.output", &self.reorders.output),
        ] {
            if points.is_empty() {
                return bad(format!("{name} has no points"));
            }
            if points.windows(2).any(|w| w[0].bytes >= w[1].bytes) {
                return bad(format!("{name}: bytes must be strictly increasing"));
            }
            if points.iter().any(|p| !time(p.us)) {
                return bad(format!("{name}: times must be finite and >= 0"));
            }
        }
        let mut kernels = HashSet::new();
        for entry in &self.entries {
            let what = entry.kernel.describe();
            if !kernels.insert(&entry.kernel) {
                return bad(format!("kernel {what} appears twice"));
            }
            if entry.points.is_empty() {
                return bad(format!("kernel {what} has no points"));
            }
            let mut pairs = HashSet::new();
            for p in &entry.points {
                if p.c_in == 0 || p.c_out == 0 || !time(p.us) {
                    return bad(format!(
                        "kernel {what}: point ({}, {}) needs widths >= 1 and a finite time >= 0",
                        p.c_in, p.c_out
                    ));
                }
                if !entry.kernel.two_widths() && p.c_in != p.c_out {
                    return bad(format!(
                        "kernel {what} has one width: c_in must equal c_out"
                    ));
                }
                if !pairs.insert((p.c_in, p.c_out)) {
                    return bad(format!(
                        "kernel {what}: width pair ({}, {}) appears twice",
                        p.c_in, p.c_out
                    ));
                }
            }
        }
        Ok(())
    }

    /// The entry measured for `kernel`.
    pub fn entry(&self, kernel: &Kernel) -> Option<&Entry> {
        self.entries.iter().find(|e| &e.kernel == kernel)
    }

    /// The predicted time (us) of `kernel` at `(c_in, c_out)` and whether it runs in NCHWc:
    /// bilinear interpolation over the points of the query's alignment classes (linear
    /// extrapolation beyond the largest, proportional scaling below the smallest). `None`
    /// when the kernel, or any point in those classes, was not measured.
    pub fn lookup(&self, kernel: &Kernel, c_in: usize, c_out: usize) -> Option<(f64, bool)> {
        let entry = self.entry(kernel)?;
        let (fi, fo) = fine_axes(kernel);
        let (b, ki, ko) = (
            self.block,
            class(c_in, self.block, fi),
            class(c_out, self.block, fo),
        );
        let points: Vec<&Point> = entry
            .points
            .iter()
            .filter(|p| class(p.c_in, b, fi) == ki && class(p.c_out, b, fo) == ko)
            .collect();
        let nearest = points.iter().min_by(|a, b| {
            let d = |p: &Point| {
                (p.c_in as f64 / c_in as f64).ln().abs()
                    + (p.c_out as f64 / c_out as f64).ln().abs()
            };
            d(a).total_cmp(&d(b))
        })?;
        let nchwc = nearest.nchwc;
        let at = |i: usize, o: usize| {
            points
                .iter()
                .find(|p| p.c_in == i && p.c_out == o)
                .map(|p| p.us)
        };
        let axis = |values: Vec<usize>| {
            let mut v = values;
            v.sort_unstable();
            v.dedup();
            v
        };
        let us = if entry.kernel.two_widths() {
            let xs = axis(points.iter().map(|p| p.c_in).collect());
            let ys = axis(points.iter().map(|p| p.c_out).collect());
            along(&xs, c_in, |x| along(&ys, c_out, |y| at(x, y)))
                // Not a full grid: scale the nearest point by the MACs.
                .unwrap_or_else(|| {
                    nearest.us * (c_in * c_out) as f64 / (nearest.c_in * nearest.c_out) as f64
                })
        } else {
            let xs = axis(points.iter().map(|p| p.c_out).collect());
            along(&xs, c_out, |x| at(x, x))?
        };
        Some((us.max(0.0), nchwc))
    }

    /// The cost (us) of a reorder of `bytes`, into NCHWc (`input`) or out of it.
    pub fn reorder_us(&self, input: bool, bytes: u64) -> f64 {
        let points = if input {
            &self.reorders.input
        } else {
            &self.reorders.output
        };
        let (x, n) = (bytes as f64, points.len());
        let first = points[0];
        if n == 1 || bytes < first.bytes {
            return first.us
                * if first.bytes > 0 {
                    x / first.bytes as f64
                } else {
                    1.0
                };
        }
        let i = points.partition_point(|p| p.bytes <= bytes).clamp(1, n - 1);
        let (a, b) = (points[i - 1], points[i]);
        let t = (x - a.bytes as f64) / (b.bytes - a.bytes) as f64;
        let us = a.us + (b.us - a.us) * t;
        us.max(0.0)
    }
}

/// `f` (known at the sorted grid `values`) at `c`: linear between the two grid values around
/// it, linear extrapolation from the last two above the largest, and in proportion to `c`
/// below the smallest (or with a single value). Never negative.
fn along(values: &[usize], c: usize, f: impl Fn(usize) -> Option<f64>) -> Option<f64> {
    let n = values.len();
    if n == 1 || c < values[0] {
        return Some(f(values[0])? * c as f64 / values[0] as f64);
    }
    let i = values.partition_point(|&v| v <= c).clamp(1, n - 1);
    let (a, b) = (values[i - 1], values[i]);
    let t = (c as f64 - a as f64) / (b as f64 - a as f64);
    let (fa, fb) = (f(a)?, f(b)?);
    Some((fa + (fb - fa) * t).max(0.0))
}
