//! Whole-model latency from a [`Table`]: the sum of the predicted time of every [`Unit`] and of
//! the layout reorders onnxruntime will insert, times the table's calibration scale, plus the
//! runtime's per-run and per-kernel overheads.
//!
//! Layouts follow onnxruntime's NCHWc transformer (CPU, optimization level `all`):
//! - a conv runs blocked (NCHWc) when the table says it did at its widths (the transformer's
//!   rule depends on the channel counts only); it reads a plain input directly when its input
//!   has fewer channels than the block;
//! - activations other than hardswish, batch_norm, pools and add/mul of equal shapes run in
//!   the layout of their inputs when all of them are blocked; a concat when all its inputs are
//!   blocked and each has a multiple of the block; everything else (linear, flatten, slice,
//!   gather, a gate `mul` by `[N, C, 1, 1]`, model outputs) needs the plain layout.
//! - A value produced blocked and read plain by anyone gets one `ReorderOutput`; a value
//!   produced plain and read blocked gets one `ReorderInput`.
//!
//! These are the rules seen in the optimized graphs of the zoo (docs/latency.md); the
//! validation in docs/benchmarks.md measures how well the sum matches the runtime.

use super::table::Table;
use super::units::{units, Fused, Kernel, Unit};
use crate::ir::Program;
use petgraph::graph::NodeIndex;
use serde::Serialize;
use std::fmt;

/// One unit's prediction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnitTime {
    /// The name of the unit's first node.
    pub name: String,
    /// [`Kernel::describe`].
    pub kernel: String,
    pub c_in: usize,
    pub c_out: usize,
    pub us: f64,
    pub nchwc: bool,
}

/// A layout reorder the runtime will insert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReorderTime {
    /// The value reordered.
    pub value: String,
    /// Into NCHWc (`ReorderInput`) or out of it (`ReorderOutput`).
    pub input: bool,
    pub bytes: u64,
    pub us: f64,
}

/// A whole-model prediction, in microseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    pub units: Vec<UnitTime>,
    pub reorders: Vec<ReorderTime>,
    /// Per-run plus per-kernel overhead.
    pub overhead_us: f64,
    /// The table's calibration: units and reorders count `scale` times.
    pub scale: f64,
    pub total_us: f64,
}

/// Units the table has no measurement for (kernel and widths), in program order.
#[derive(Debug, Clone, PartialEq)]
pub struct Missing(pub Vec<String>);

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the latency table has no measurement for {} unit(s) of this model (measure one \
             with `nnirc latency measure` on this model): {}",
            self.0.len(),
            self.0.join("; ")
        )
    }
}

impl std::error::Error for Missing {}

/// Whether an op of this kernel keeps the blocked layout of its inputs.
fn follows_layout(kernel: &Kernel) -> bool {
    match kernel {
        Kernel::Pointwise { op, .. } => *op != Fused::Hardswish,
        Kernel::MaxPool { .. } | Kernel::AvgPool { .. } | Kernel::GlobalAvgPool { .. } => true,
        _ => false,
    }
}

/// Predicts `program`'s latency on the runtime `table` was measured on.
///
/// ```
/// # use nnirc::latency::{predict, Table};
/// # fn demo(table: &Table) {
/// let src = "model m(%x: f32[1, 16, 8, 8]) -> (%y) {\n  param @w: f32[16, 16, 1, 1]\n  \
///            %y = conv2d(%x, @w)\n}\n";
/// let program = nnirc::compile(src).program.unwrap();
/// if let Ok(p) = predict(&program, table) {
///     println!("{:.1} us", p.total_us);
/// }
/// # }
/// ```
pub fn predict(program: &Program, table: &Table) -> Result<Prediction, Missing> {
    let units = units(program);
    let mut missing = Vec::new();
    let mut times = Vec::with_capacity(units.len());
    for u in &units {
        match table.lookup(&u.kernel, u.c_in, u.c_out) {
            Some(t) => times.push(t),
            None => {
                missing.push(format!(
                    "%{} ({}, {} -> {} channels)",
                    program.graph[u.nodes[0]].name,
                    u.kernel.describe(),
                    u.c_in,
                    u.c_out
                ));
                times.push((0.0, false));
            }
        }
    }
    if !missing.is_empty() {
        return Err(Missing(missing));
    }
    let block = table.block;
    let count = program.graph.node_count();
    // Layout of each value (by its producing node): true = NCHWc. Inputs are plain.
    let mut blocked = vec![false; count];
    let channels = |v: NodeIndex| program.graph[v].shape.get(1).copied().unwrap_or(1);
    let mut unit_blocked = Vec::with_capacity(units.len());
    for (u, &(_, conv_nchwc)) in units.iter().zip(&times) {
        let all_in = u.inputs.iter().all(|&v| blocked[v.index()]);
        let b = match &u.kernel {
            Kernel::Conv { .. } => conv_nchwc,
            Kernel::Concat { .. } => all_in && u.inputs.iter().all(|&v| channels(v) % block == 0),
            k => follows_layout(k) && all_in,
        };
        for &n in &u.nodes {
            blocked[n.index()] = b;
        }
        unit_blocked.push(b);
    }
    // What layout each value is read in.
    let mut read_plain = vec![false; count];
    let mut read_blocked = vec![false; count];
    for (u, &b) in units.iter().zip(&unit_blocked) {
        for (i, &v) in u.inputs.iter().enumerate() {
            let direct_plain = u.kernel.is_conv() && i == 0 && u.c_in < block;
            if b && !direct_plain {
                read_blocked[v.index()] = true;
            } else {
                read_plain[v.index()] = true;
            }
        }
    }
    for &o in &program.outputs {
        read_plain[o.index()] = true;
    }
    let mut reorders = Vec::new();
    for n in program.graph.node_indices() {
        let (is_blocked, i) = (blocked[n.index()], n.index());
        let input = if is_blocked && read_plain[i] {
            false
        } else if !is_blocked && read_blocked[i] {
            true
        } else {
            continue;
        };
        let bytes = program.graph[n].shape.iter().product::<usize>() as u64 * 4;
        reorders.push(ReorderTime {
            value: program.graph[n].name.clone(),
            input,
            bytes,
            us: table.reorder_us(input, bytes),
        });
    }
    let unit_times: Vec<UnitTime> = units
        .iter()
        .zip(&times)
        .zip(&unit_blocked)
        .map(|((u, &(us, _)), &nchwc)| unit_time(program, u, us, nchwc))
        .collect();
    let kernels = unit_times.len() + reorders.len();
    let overhead_us = table.overhead.run_us + table.overhead.kernel_us * kernels as f64;
    let kernels_us =
        unit_times.iter().map(|u| u.us).sum::<f64>() + reorders.iter().map(|r| r.us).sum::<f64>();
    let total_us = kernels_us * table.calibration.scale + overhead_us;
    Ok(Prediction {
        units: unit_times,
        reorders,
        overhead_us,
        scale: table.calibration.scale,
        total_us,
    })
}

fn unit_time(program: &Program, u: &Unit, us: f64, nchwc: bool) -> UnitTime {
    UnitTime {
        name: program.graph[u.nodes[0]].name.clone(),
        kernel: u.kernel.describe(),
        c_in: u.c_in,
        c_out: u.c_out,
        us,
        nchwc,
    }
}

impl Prediction {
    /// A table of the units, the reorders and the total, for the terminal.
    pub fn text(&self) -> String {
        let mut s = format!(
            "{:<32} {:<36} {:>6} {:>6} {:>6} {:>10}\n",
            "unit", "kernel", "c_in", "c_out", "layout", "us"
        );
        for u in &self.units {
            s += &format!(
                "{:<32} {:<36} {:>6} {:>6} {:>6} {:>10.1}\n",
                u.name,
                u.kernel,
                u.c_in,
                u.c_out,
                if u.nchwc { "nchwc" } else { "nchw" },
                u.us
            );
        }
        for r in &self.reorders {
            s += &format!(
                "{:<32} {:<36} {:>20} {:>10.1}\n",
                r.value,
                if r.input {
                    "reorder to nchwc"
                } else {
                    "reorder to nchw"
                },
                format!("{} B", r.bytes),
                r.us
            );
        }
        let units: f64 = self.units.iter().map(|u| u.us).sum();
        let reorders: f64 = self.reorders.iter().map(|r| r.us).sum();
        s += &format!(
            "total {:.3} ms: ({} units {:.3} ms + {} reorders {:.3} ms) x calibration {:.3} + \
             overhead {:.3} ms\n",
            self.total_us / 1e3,
            self.units.len(),
            units / 1e3,
            self.reorders.len(),
            reorders / 1e3,
            self.scale,
            self.overhead_us / 1e3
        );
        s
    }
}
