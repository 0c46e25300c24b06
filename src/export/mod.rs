//! Export: a masked program -> a smaller program without masks that computes the same thing.
//!
//! Input: a checked [`Program`] with masks and its [`Weights`]. Output: an [`Exported`]
//! program (no masks, dead channels cut, each segment's channels in the chosen order, a
//! `slice` or `gather` in front of every consumer that does not read its whole input) with
//! matching weights. Invariant: on any input, the exported program's outputs equal the masked
//! program's (up to rounding), which [`verify`] checks with the reference interpreter.
//!
//! Phases: [`plan`] resolves masks into live channels and picks one order per segment (the
//! original order for [`Mode::Naive`], the ordering solver's for [`Mode::Upscale`]);
//! [`rewrite`] asks the read planner ([`crate::egraph`]) how each consumer reads its input
//! under the chosen cost model (naive mode: whole, exact slice, or gather) and builds the new
//! graph and weights.

mod constrain;
mod plan;
mod rewrite;

pub use constrain::constrain;
pub use plan::{plan, Plan, SegmentPlan};
pub use rewrite::{rewrite, Read, ReadKind};

use crate::egraph::{self, CostModel, CostModelKind, Latency, PlanReport};
use crate::interp::{self, Scalar};
use crate::ir::Program;
use crate::solver::{Limits, SolverKind};
use crate::weights::Weights;

/// How channel orders are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Original order: a consumer reads its whole input, a contiguous range (slice) or a
    /// gather. The fair baseline.
    Naive,
    /// One order per segment from the ordering solver, so more consumers read ranges.
    #[default]
    Upscale,
}

#[derive(Debug, Clone, Default)]
pub struct ExportConfig {
    pub mode: Mode,
    pub solver: SolverKind,
    /// Limits of the ordering solver.
    pub limits: Limits,
    /// The cost model the read planner (e-graph) extracts under, in upscale mode.
    pub cost_model: CostModelKind,
    /// A measured latency table for [`CostModelKind::Latency`] (default: the example table).
    pub latency_table: Option<Latency>,
    /// Limits of the read planner's e-graph.
    pub read_limits: egraph::Limits,
    /// Channel-count alignment (0 or 1: none). With `n > 1`, every cut segment keeps a
    /// multiple of `n` channels (or all of them), adding dead channels that no consumer reads
    /// (zero weight columns) after its order, and every slice read is widened to a multiple of
    /// `n` positions (or the whole input) with zero columns. Exact; it trades a few MACs for
    /// the blocked convolution kernels of CPU runtimes (onnxruntime's NCHWc: 8 channels with
    /// AVX2, 16 with AVX-512). Gathers are not widened.
    pub channel_align: usize,
}

impl ExportConfig {
    /// The cost model to plan reads with.
    pub fn model(&self) -> Box<dyn CostModel> {
        match (self.cost_model, &self.latency_table) {
            (CostModelKind::Latency, Some(table)) => Box::new(table.clone()),
            (kind, _) => kind.model(),
        }
    }
}

/// The exported program and its weights, plus the plan that made it.
#[derive(Debug, Clone)]
pub struct Exported {
    pub program: Program,
    pub weights: Weights,
    pub plan: Plan,
    /// How each channel-mixing consumer reads its input.
    pub reads: Vec<Read>,
    /// The read planner's report (upscale mode).
    pub read_plan: Option<PlanReport>,
}

/// Why a program cannot be exported.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportError(pub String);

impl std::fmt::Display for ExportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Plans and rewrites `program`.
pub fn export(
    program: &Program,
    weights: &Weights,
    config: &ExportConfig,
) -> Result<Exported, ExportError> {
    let plan = plan(program, config);
    let (new_program, new_weights, reads, read_plan) = rewrite(program, weights, &plan, config)?;
    Ok(Exported {
        program: new_program,
        weights: new_weights,
        plan,
        reads,
        read_plan,
    })
}

/// The largest difference between two programs' outputs on the same seeded inputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Deviation {
    pub max_abs: f64,
    /// Largest |a - b| / max(|a|, |b|, 1e-30) over elements, in the same run.
    pub max_rel: f64,
}

/// Runs `original` (the masked program) and `exported` on the same seeded random inputs in
/// precision `T` and returns how far their outputs differ; the error is relative to the largest
/// output magnitude so that tiny outputs do not dominate.
pub fn verify<T: Scalar>(
    original: &Program,
    original_weights: &Weights,
    exported: &Program,
    exported_weights: &Weights,
    seed: u64,
) -> Result<Deviation, ExportError> {
    let inputs = interp::random_inputs::<T>(original, seed);
    let run = |p: &Program, w: &Weights| {
        interp::run(p, w, &inputs).map_err(|e| ExportError(e.to_string()))
    };
    let a = run(original, original_weights)?;
    let b = run(exported, exported_weights)?;
    let mut dev = Deviation {
        max_abs: 0.0,
        max_rel: 0.0,
    };
    for (x, y) in a.iter().zip(&b) {
        if x.shape != y.shape {
            return Err(ExportError(format!(
                "output shapes differ: {:?} vs {:?}",
                x.shape, y.shape
            )));
        }
        let scale = x
            .data
            .iter()
            .map(|v| v.to_f64().abs())
            .fold(0.0f64, f64::max)
            .max(1e-30);
        for (&u, &v) in x.data.iter().zip(&y.data) {
            let d = (u.to_f64() - v.to_f64()).abs();
            dev.max_abs = dev.max_abs.max(d);
            dev.max_rel = dev.max_rel.max(d / scale);
        }
    }
    Ok(dev)
}
