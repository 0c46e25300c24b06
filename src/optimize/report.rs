//! The optimization report: what a program costs (selection ops, bytes copied, MACs, params)
//! before and after export, per segment, per phase, and the verification error.
//!
//! `before` is always the naive export of the same masks, so the two columns compare orders,
//! not pruning. Bytes are per inference at the declared input shapes, in f32.

use super::plan::Plan;
use super::rewrite::{Read, ReadKind};
use super::verify::Verification;
use crate::ir::{Op, Program};
use petgraph::graph::NodeIndex;
use serde::Serialize;
use std::fmt::Write;

/// Which selection ops copy: under `views` a slice is a free view, under `graph` every
/// selection op copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CopySemantics {
    Views,
    Graph,
}

/// Whole-program costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct ProgramStats {
    /// gather, slice and permute nodes.
    pub selection_ops: usize,
    /// Selection ops that copy under the chosen semantics.
    pub copying_ops: usize,
    pub bytes_copied: u64,
    pub macs: u64,
    pub params: u64,
}

/// Counts the costs of `program`.
pub fn program_stats(program: &Program, copies: CopySemantics) -> ProgramStats {
    let mut s = ProgramStats {
        params: program
            .params
            .iter()
            .map(|p| p.shape.iter().product::<usize>() as u64)
            .sum(),
        ..Default::default()
    };
    for n in program.graph.node_indices() {
        let node = &program.graph[n];
        let elements = node.shape.iter().product::<usize>() as u64;
        match &node.op {
            Op::Gather { .. } | Op::Slice { .. } | Op::Permute { .. } => {
                s.selection_ops += 1;
                let copies = copies == CopySemantics::Graph || !matches!(node.op, Op::Slice { .. });
                if copies {
                    s.copying_ops += 1;
                    s.bytes_copied += elements * 4;
                }
            }
            Op::Conv2d(_) => {
                let w = &program.params[node.params[0]].shape;
                s.macs += elements * (w[1] * w[2] * w[3]) as u64;
            }
            Op::Linear => {
                let w = &program.params[node.params[0]].shape;
                s.macs += elements * w[1] as u64;
            }
            _ => {}
        }
    }
    s
}

/// One segment of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SegmentStats {
    pub producers: Vec<String>,
    pub consumers: Vec<String>,
    pub channels: usize,
    pub live_channels: usize,
    pub fixed: Option<String>,
    pub contiguous_consumers: usize,
    pub copying_consumers: usize,
    pub bytes_copied: u64,
    pub solver_optimal: Option<bool>,
    pub solver_time_ms: Option<f64>,
    pub solver_stop: Option<String>,
}

/// Per-segment statistics of an optimized program, from its plan and reads.
pub fn segment_stats(
    original: &Program,
    plan: &Plan,
    reads: &[Read],
    copies: CopySemantics,
) -> Vec<SegmentStats> {
    let mut reads_of: std::collections::HashMap<NodeIndex, Vec<&Read>> =
        std::collections::HashMap::new();
    for r in reads {
        reads_of.entry(r.consumer).or_default().push(r);
    }
    // Whether `tensor` holds channels of segment `s`.
    let holds = |tensor: NodeIndex, s: usize| {
        plan.provenance
            .layout(tensor)
            .origins
            .iter()
            .any(|&o| plan.segments.locate(o).0 == s)
    };
    let name = |n: NodeIndex| format!("%{}", original.graph[n].name);
    plan.segments
        .segments
        .iter()
        .zip(&plan.plans)
        .enumerate()
        .filter(|(_, (seg, _))| !seg.consumers.is_empty())
        .map(|(s, (seg, p))| {
            let mut st = SegmentStats {
                producers: seg
                    .spaces
                    .iter()
                    .map(|&s| name(plan.provenance.spaces[s].node))
                    .collect(),
                consumers: seg.consumers.iter().map(|c| name(c.node)).collect(),
                channels: seg.channels,
                live_channels: p.order.len(),
                fixed: seg
                    .fixed
                    .map(|f| f.describe().to_string())
                    .or_else(|| (!p.free).then(|| "reaches a model output".to_string())),
                contiguous_consumers: 0,
                copying_consumers: 0,
                bytes_copied: 0,
                solver_optimal: p.solve.map(|(_, optimal)| optimal),
                solver_time_ms: p.solve.map(|(stats, _)| stats.elapsed.as_secs_f64() * 1e3),
                solver_stop: p.solve.map(|(stats, _)| format!("{:?}", stats.stop)),
            };
            for c in &seg.consumers {
                // Its reads of this segment: one, or a distributed read's parts of its blocks.
                let mine: Vec<&Read> = reads_of
                    .get(&c.node)
                    .into_iter()
                    .flatten()
                    .copied()
                    .filter(|r| holds(r.tensor, s))
                    .collect();
                if mine.is_empty() {
                    continue;
                }
                let copying: Vec<&Read> = mine
                    .into_iter()
                    .filter(|r| match r.kind {
                        ReadKind::Full => false,
                        ReadKind::Slice => copies == CopySemantics::Graph,
                        ReadKind::Gather => true,
                    })
                    .collect();
                if copying.is_empty() {
                    st.contiguous_consumers += 1;
                } else {
                    st.copying_consumers += 1;
                    st.bytes_copied += copying.iter().map(|r| r.bytes).sum::<u64>();
                }
            }
            st
        })
        .collect()
}

/// What the read planner's e-graph did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EgraphStats {
    /// Why saturation stopped: `saturated`, or the node, iteration or time limit.
    pub stop_reason: String,
    pub nodes: usize,
    pub classes: usize,
    pub iterations: usize,
    /// Whether extraction was exact over the candidate terms everywhere.
    pub exact_extraction: bool,
    /// How many times each rewrite rule changed an e-graph, by rule name; every rule is
    /// listed (0: it never fired on this model).
    pub rules_fired: std::collections::BTreeMap<String, usize>,
}

/// The JSON report of `nnirc optimize --report`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub model: String,
    pub mode: String,
    pub solver: String,
    pub cost_model: String,
    /// `--align`: channel counts rounded up to multiples of this (1: none).
    pub channel_align: usize,
    /// The read planner's e-graph (upscale mode).
    pub egraph: Option<EgraphStats>,
    pub before: ProgramStats,
    pub after: ProgramStats,
    pub segments: Vec<SegmentStats>,
    /// Union mode: input channels (or features) pruned beyond the original masks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub union_extra_pruned: Option<usize>,
    /// `--target ort-cpu`: what the deploy target chose.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy: Option<super::DeployReport>,
    pub timings_ms: std::collections::BTreeMap<String, f64>,
    pub verify: Option<Verification>,
}

impl Report {
    /// The human table printed on stderr.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{}: {} export ({} solver, {} costs)\n",
            self.model, self.mode, self.solver, self.cost_model
        );
        let _ = writeln!(out, "  {:<16} {:>12} {:>12}", "", "before", "after");
        let rows: [(&str, u64, u64); 5] = [
            (
                "selection ops",
                self.before.selection_ops as u64,
                self.after.selection_ops as u64,
            ),
            (
                "copying ops",
                self.before.copying_ops as u64,
                self.after.copying_ops as u64,
            ),
            (
                "bytes copied",
                self.before.bytes_copied,
                self.after.bytes_copied,
            ),
            ("MACs", self.before.macs, self.after.macs),
            ("params", self.before.params, self.after.params),
        ];
        for (label, b, a) in rows {
            let _ = writeln!(out, "  {label:<16} {b:>12} {a:>12}");
        }
        let optimal = self
            .segments
            .iter()
            .filter(|s| s.solver_optimal == Some(true))
            .count();
        let solved = self
            .segments
            .iter()
            .filter(|s| s.solver_optimal.is_some())
            .count();
        let _ = writeln!(
            out,
            "  segments: {} with consumers, {solved} solved ({optimal} proven optimal)",
            self.segments.len()
        );
        if let Some(e) = &self.egraph {
            let _ = writeln!(
                out,
                "  e-graph: {} nodes, {} iterations, stopped: {}",
                e.nodes, e.iterations, e.stop_reason
            );
            let fired: Vec<String> = e
                .rules_fired
                .iter()
                .filter(|(_, &times)| times > 0)
                .map(|(rule, times)| format!("{rule} {times}"))
                .collect();
            let fired = if fired.is_empty() {
                "none".to_string()
            } else {
                fired.join(", ")
            };
            let _ = writeln!(out, "  rules fired: {fired}");
        }
        if let Some(extra) = self.union_extra_pruned {
            let _ = writeln!(
                out,
                "  union: {extra} input channels pruned beyond the masks"
            );
        }
        if let Some(d) = &self.deploy {
            let _ = writeln!(
                out,
                "  {} target: predicted {:.1} us, {:+.1}% against the export without it ({:.1} \
                 us); {} segments widened, {} consumers read whole; {} exports priced in {} sweeps",
                d.target,
                d.predicted_us,
                100.0 * (d.predicted_us / d.incumbent_us - 1.0),
                d.incumbent_us,
                d.widened_segments,
                d.full_reads,
                d.evaluations,
                d.sweeps
            );
        }
        if let Some(v) = &self.verify {
            let _ = writeln!(
                out,
                "  verify: f64 max rel {:.2e}, f32 max rel {:.2e}",
                v.f64_max_rel, v.f32_max_rel
            );
        }
        let timings: Vec<String> = self
            .timings_ms
            .iter()
            .map(|(p, t)| format!("{p} {t:.1} ms"))
            .collect();
        let _ = writeln!(out, "  time: {}", timings.join(", "));
        out
    }
}
