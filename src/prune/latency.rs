//! SP-LAMP under a latency budget: the glue between the model, a latency predictor and the
//! [`knapsack`](super::knapsack).
//!
//! Input: the output-side coupled groups with their SP-LAMP scores (per group: squared filter
//! norms plus batch-norm `gamma^2`, LAMP-normalised), a [`NodeLatency`] predictor and a
//! [`LatencyBudget`]. Output: one kept width per group and a [`LatencyReport`].
//!
//! - Options of a group with `N` channels: `k = step, 2 step, ... < N`, and `N` (`step` is
//!   `--width-step`, default 8: onnxruntime's NCHWc block with AVX2). A group with `N <= step`
//!   keeps all its channels. The value of keeping `k` is the sum of the group's `k` largest
//!   SP-LAMP scores (top-k by LAMP is top-k by norm: LAMP keeps the order within a group), so
//!   the score-1 channel is always kept.
//! - Cost: the predicted latency of the whole model, `sum over nodes of node_ms(c_in, c_out)`
//!   at the kept widths ([`super::groups::Width`]). Nodes whose widths depend on no group
//!   are constant and come off the budget first. A node's cost term is owned by the group it
//!   writes (else the first it reads); the width it reads from other groups is the coupling the
//!   knapsack's fixed point resolves.
//!
//! Invariant: the predicted latency of the result is at most the budget (else an error).

use super::groups::{Unit, Width};
use super::knapsack::{self, KnapsackError, Problem, Settings};
use super::PruneError;
use crate::analysis::{Provenance, Segments};
use crate::ir::{Op, Program};
use petgraph::graph::NodeIndex;
use serde::Serialize;
use std::sync::Arc;

/// Predicted latency of one node of `program` when it reads `c_in` channels and writes
/// `c_out` (for linear layers and after flatten: features). The integration point of a
/// latency table measured on the deploy runtime.
pub trait NodeLatency {
    /// Milliseconds. For ops that carry channels (relu, add, batch_norm, pools, concat...)
    /// `c_in == c_out`; for flatten `c_out` counts features.
    fn node_ms(&self, program: &Program, node: NodeIndex, c_in: usize, c_out: usize) -> f64;

    /// Milliseconds of the copy in front of `consumer` when it reads `c_out` of its input's
    /// `c_in` channels (a gather: the worst case of the export). The default prices copies at
    /// nothing.
    fn read_ms(
        &self,
        _program: &Program,
        _consumer: NodeIndex,
        _c_in: usize,
        _c_out: usize,
    ) -> f64 {
        0.0
    }

    /// Milliseconds of a whole program at its own widths (any program, e.g. an export): the
    /// cost of the export-aware knapsack ([`super::export_aware`]). The default sums
    /// [`Self::node_ms`] over the nodes.
    fn program_ms(&self, program: &Program) -> Result<f64, String> {
        Ok(program
            .graph
            .node_indices()
            .filter(|&n| program.graph[n].op != Op::Input)
            .map(|n| {
                let c_out = program.graph[n].shape.get(1).copied().unwrap_or(1);
                let c_in = program
                    .operands(n)
                    .first()
                    .and_then(|&src| program.graph[src].shape.get(1).copied())
                    .unwrap_or(c_out);
                self.node_ms(program, n, c_in, c_out)
            })
            .sum())
    }
}

/// A shared latency predictor in a [`super::PruneConfig`] (compared by identity).
#[derive(Clone)]
pub struct LatencySource(pub Arc<dyn NodeLatency + Send + Sync>);

impl std::fmt::Debug for LatencySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LatencySource(..)")
    }
}

impl PartialEq for LatencySource {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// A proxy, not a measurement: multiply-adds of convs and linear layers at 1 ms per 10^9
/// (every other op is free). It makes `--latency-budget 0.5` a MACs budget.
///
/// ```
/// use nnirc::prune::{MacsLatency, NodeLatency};
/// let src = "model m(%x: f32[1, 4, 8, 8]) -> (%y) {\n  param @w: f32[2, 4, 3, 3]\n  %y = conv2d(%x, @w, padding=1)\n}\n";
/// let compiled = nnirc::compile(src);
/// let p = compiled.program.unwrap();
/// let y = p.node_by_name("y").unwrap();
/// // 64 positions * 2 outputs * 4 inputs * 9 taps.
/// assert_eq!(nnirc::prune::macs(&p, y, 4, 2), 4608);
/// assert!((MacsLatency.node_ms(&p, y, 4, 2) - 4608e-9).abs() < 1e-18);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MacsLatency;

impl NodeLatency for MacsLatency {
    fn node_ms(&self, program: &Program, node: NodeIndex, c_in: usize, c_out: usize) -> f64 {
        macs(program, node, c_in, c_out) as f64 * 1e-9
    }
}

/// Multiply-adds of a conv2d or linear node at the given widths (0 for other ops).
pub fn macs(program: &Program, node: NodeIndex, c_in: usize, c_out: usize) -> u64 {
    let n = &program.graph[node];
    let shape = &n.shape;
    match &n.op {
        Op::Conv2d(c) => {
            let w = program.param_shapes(node)[0];
            let taps: usize = w[2..].iter().product();
            // Depthwise: one input channel per output channel, whatever the width.
            let per_out = if program.is_depthwise(node) {
                1
            } else {
                c_in / c.groups.max(1)
            };
            let positions: usize = shape[0] * shape[2..].iter().product::<usize>();
            (positions * c_out * per_out * taps) as u64
        }
        Op::Linear => (shape[0] * c_in * c_out) as u64,
        _ => 0,
    }
}

/// `--latency-budget`: milliseconds, or a fraction of the dense model's predicted latency.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum LatencyBudget {
    /// Absolute, in milliseconds (`12.5ms`).
    Ms(f64),
    /// A fraction of the dense model's predicted latency, in `(0, 1]` (`0.7` or `70%`).
    Fraction(f64),
}

impl std::str::FromStr for LatencyBudget {
    type Err = String;

    /// `12.5ms` (milliseconds, > 0), `70%` (percent, in (0, 100]) or `0.7` (a fraction in
    /// (0, 1]). A bare number above 1 is refused: it is ambiguous.
    ///
    /// ```
    /// use nnirc::prune::LatencyBudget;
    /// assert_eq!("12.5ms".parse(), Ok(LatencyBudget::Ms(12.5)));
    /// assert_eq!("70%".parse(), Ok(LatencyBudget::Fraction(0.7)));
    /// assert_eq!("0.7".parse(), Ok(LatencyBudget::Fraction(0.7)));
    /// assert!("12".parse::<LatencyBudget>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let number = |x: &str| -> Result<f64, String> {
            x.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("`{s}` is not a budget: expected e.g. 12.5ms, 70% or 0.7"))
        };
        if let Some(ms) = t.strip_suffix("ms") {
            let v = number(ms)?;
            return if v > 0.0 {
                Ok(LatencyBudget::Ms(v))
            } else {
                Err(format!("`{s}`: a budget in milliseconds must be > 0"))
            };
        }
        let (v, scale) = match t.strip_suffix('%') {
            Some(p) => (number(p)?, 100.0),
            None => (number(t)?, 1.0),
        };
        let f = v / scale;
        if f > 0.0 && f <= 1.0 {
            Ok(LatencyBudget::Fraction(f))
        } else if scale == 1.0 && v > 1.0 {
            Err(format!(
                "`{s}`: a bare number is a fraction of the dense latency, in (0, 1]; write \
                 {s}ms for milliseconds"
            ))
        } else {
            Err(format!(
                "`{s}`: a fraction of the dense latency must be in (0, 1] (0% to 100%)"
            ))
        }
    }
}

/// One node's predicted latency, dense and pruned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeRow {
    pub name: String,
    pub op: &'static str,
    pub c_in: usize,
    pub c_out: usize,
    pub dense_ms: f64,
    pub ms: f64,
}

/// One unit's chosen width.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupRow {
    /// The layers of the unit (result names): the producers of a coupled group on the output
    /// side, the one consumer on the input side.
    pub layers: Vec<String>,
    pub kept: usize,
    pub channels: usize,
    /// Sum of the kept channels' SP-LAMP scores, and of all of them.
    pub score: f64,
    pub max_score: f64,
}

/// What `--method sp-lamp` chose and what it predicts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyReport {
    pub budget: LatencyBudget,
    pub budget_ms: f64,
    /// Predicted latency of the dense model, of the result, and of the nodes no group changes.
    pub dense_ms: f64,
    pub predicted_ms: f64,
    pub constant_ms: f64,
    /// The knapsack's objective: the sum of the kept SP-LAMP scores, and its dense value.
    pub score: f64,
    pub max_score: f64,
    pub width_step: usize,
    pub rounds: usize,
    pub converged: bool,
    /// Every node but the model inputs, in node order.
    pub nodes: Vec<NodeRow>,
    pub groups: Vec<GroupRow>,
    /// Input side: the export the budget was checked on (then `dense_ms` and `predicted_ms`
    /// are that export's).
    pub export: Option<ExportLatency>,
}

/// Input side ([`super::export_aware`]): the predicted latency of the export `nnirc optimize`
/// makes of the result, against the knapsack's per-consumer model of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportLatency {
    /// The export priced (`nnirc optimize --mode`).
    pub mode: String,
    /// The knapsack's separable model of the result: each consumer's conv at its kept input
    /// width plus, where it keeps fewer than all, a gather.
    pub model_ms: f64,
    /// What the model does not see, at the result: the export's predicted latency minus the
    /// model (other layers, producers narrowed by dead channels, reorders, overheads, reads
    /// the export makes contiguous).
    pub rest_ms: f64,
    /// Exports priced.
    pub evaluations: usize,
    /// Local-search moves taken after the fixed point.
    pub moves: usize,
}

/// The knapsack's options per unit: the kept widths `step, 2 step, ... < N` and `N`, and the
/// value of each (the sum of the unit's that many largest `scores`).
pub(super) fn options(
    units: &[Unit],
    scores: &[Vec<f64>],
    width_step: usize,
) -> (Vec<Vec<usize>>, Vec<Vec<f64>>) {
    let mut widths: Vec<Vec<usize>> = Vec::with_capacity(units.len());
    let mut values: Vec<Vec<f64>> = Vec::with_capacity(units.len());
    for (unit, s) in units.iter().zip(scores) {
        let mut sorted = s.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let prefix: Vec<f64> = sorted
            .iter()
            .scan(0.0, |acc, v| {
                *acc += v;
                Some(*acc)
            })
            .collect();
        let n = unit.channels;
        let mut w: Vec<usize> = (1..)
            .map(|j| j * width_step)
            .take_while(|&k| k < n)
            .collect();
        w.push(n);
        values.push(w.iter().map(|&k| prefix[k - 1]).collect());
        widths.push(w);
    }
    (widths, values)
}

/// Kept widths of `units` (output-side groups) under the budget; `scores[u]` are unit `u`'s
/// SP-LAMP scores.
#[allow(clippy::too_many_arguments)]
pub(super) fn choose_widths(
    program: &Program,
    prov: &Provenance,
    segs: &Segments,
    units: &[Unit],
    group_of_segment: &[Option<usize>],
    scores: &[Vec<f64>],
    latency: &dyn NodeLatency,
    budget: LatencyBudget,
    width_step: usize,
) -> Result<(Vec<usize>, LatencyReport), PruneError> {
    let channels: Vec<usize> = units.iter().map(|u| u.channels).collect();
    let (widths, values) = options(units, scores, width_step);
    // Cost terms: one per node but the inputs.
    let nodes: Vec<NodeIndex> = program
        .graph
        .node_indices()
        .filter(|&n| program.graph[n].op != Op::Input)
        .collect();
    let spec: Vec<(Width, Width)> = nodes
        .iter()
        .map(|&n| {
            let out = Width::of(prov.layout(n), segs, group_of_segment);
            let carries = matches!(program.graph[n].op, Op::Add | Op::Mul | Op::Concat);
            let input = if carries {
                out.clone()
            } else {
                Width::of(prov.layout(program.operands(n)[0]), segs, group_of_segment)
            };
            (input, out)
        })
        .collect();
    let terms: Vec<Vec<usize>> = spec
        .iter()
        .map(|(input, out)| {
            let mut deps: Vec<usize> = out.groups.iter().map(|&(g, _)| g).collect();
            for &(g, _) in &input.groups {
                if !deps.contains(&g) {
                    deps.push(g);
                }
            }
            deps
        })
        .collect();
    let kept_widths = |choice: &[usize]| -> Vec<usize> {
        choice
            .iter()
            .enumerate()
            .map(|(g, &k)| widths[g].get(k).copied().unwrap_or(channels[g]))
            .collect()
    };
    let node_ms = |t: usize, kept: &[usize]| -> (usize, usize, f64) {
        let (input, out) = &spec[t];
        let (c_in, c_out) = (input.at(kept, &channels), out.at(kept, &channels));
        (c_in, c_out, latency.node_ms(program, nodes[t], c_in, c_out))
    };
    let dense: Vec<(usize, usize, f64)> = (0..nodes.len()).map(|t| node_ms(t, &channels)).collect();
    let dense_ms: f64 = dense.iter().map(|d| d.2).sum();
    let constant_ms: f64 = terms
        .iter()
        .zip(&dense)
        .filter(|(deps, _)| deps.is_empty())
        .map(|(_, d)| d.2)
        .sum();
    if let Some((t, d)) = dense
        .iter()
        .enumerate()
        .find(|(_, d)| !(d.2.is_finite() && d.2 >= 0.0))
    {
        return Err(PruneError::Latency(format!(
            "the latency predictor gave {} ms for %{}",
            d.2, program.graph[nodes[t]].name
        )));
    }
    let budget_ms = match budget {
        LatencyBudget::Ms(ms) => ms,
        LatencyBudget::Fraction(f) => f * dense_ms,
    };
    let problem = Problem {
        values: values.clone(),
        terms,
        budget: budget_ms,
    };
    let cost = |t: usize, choice: &[usize]| -> f64 {
        let (input, out) = &spec[t];
        let mut kept = channels.clone();
        for &(g, _) in input.groups.iter().chain(&out.groups) {
            kept[g] = widths[g][choice[g]];
        }
        node_ms(t, &kept).2
    };
    let solution = knapsack::solve(&problem, &Settings::default(), &cost).map_err(|e| match e {
        KnapsackError::BudgetTooSmall { smallest, budget } => PruneError::Latency(format!(
            "the latency budget {budget:.4} ms is below the smallest predicted latency \
             {smallest:.4} ms (every group at its narrowest width; the dense model: \
             {dense_ms:.4} ms, of which {constant_ms:.4} ms no group changes)"
        )),
        KnapsackError::Invalid(m) => PruneError::Latency(format!("latency predictor: {m}")),
    })?;
    let kept = kept_widths(&solution.choice);
    let rows = nodes
        .iter()
        .enumerate()
        .map(|(t, &n)| {
            let (c_in, c_out, ms) = node_ms(t, &kept);
            NodeRow {
                name: program.graph[n].name.clone(),
                op: program.graph[n].op.name(),
                c_in,
                c_out,
                dense_ms: dense[t].2,
                ms,
            }
        })
        .collect();
    let groups = units
        .iter()
        .enumerate()
        .map(|(g, unit)| GroupRow {
            layers: unit
                .members
                .iter()
                .map(|(n, _)| program.graph[*n].name.clone())
                .collect(),
            kept: kept[g],
            channels: unit.channels,
            score: values[g][solution.choice[g]],
            max_score: *values[g].last().expect("a group has options"),
        })
        .collect();
    let report = LatencyReport {
        budget,
        budget_ms,
        dense_ms,
        predicted_ms: solution.cost,
        constant_ms,
        score: solution.value,
        max_score: values.iter().map(|v| v.last().expect("options")).sum(),
        width_step,
        rounds: solution.rounds,
        converged: solution.converged,
        nodes: rows,
        groups,
        export: None,
    };
    Ok((kept, report))
}
