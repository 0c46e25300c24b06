//! SP-LAMP on the input side (unconstrained: one `keep_in` per consumer), priced by the
//! export: the knapsack's cost is the predicted latency of what `nnirc optimize` will make of
//! the masks, not of the masked layers alone.
//!
//! Input: the input-side units (one eligible consumer each) with their LAMP scores (squared
//! weight-column norms, LAMP-normalised per consumer), a [`NodeLatency`], a budget and a width
//! step. Output: one kept input width per consumer and a [`LatencyReport`] whose `dense_ms`
//! and `predicted_ms` are predictions of the export (the default `nnirc optimize`: upscale
//! mode, `views` cost model, exact solver, no alignment).
//!
//! Why the export: with per-consumer masks the price of a pruned model is set by the export.
//! A consumer that keeps `k` of `C` channels reads them through a slice or a gather (a copy,
//! and in onnxruntime a reorder out of the blocked layout around it); a producer narrows only
//! where every consumer of its channels dropped one, and may land on a width that loses the
//! blocked kernels; the ordering solver makes some reads contiguous. None of this is a
//! function of one consumer's width.
//!
//! How:
//! 1. **A separable model.** Consumer `i` at width `k` costs its conv (with what the runtime
//!    fuses into it) at `(k, C_out)`, plus for `k < C` a gather of `k` of `C` channels
//!    ([`NodeLatency::read_ms`]). Exact multiple-choice knapsack ([`knapsack::mckp`]) under
//!    `budget - rest - slack`, where `rest` is the export's predicted latency minus the model
//!    at the current choice (first: the dense model); where nothing fits, the narrowest
//!    choice.
//! 2. **Fixed point on the export.** The new choice's export is built
//!    ([`crate::optimize::export_graph`]: plan and rewrite, no weights) and priced
//!    ([`NodeLatency::program_ms`]); `rest` is updated, and an export over the budget adds its
//!    overshoot to `slack` (as [`knapsack::solve`] does). Stops when the choice repeats, or
//!    after [`ROUNDS`].
//! 3. **Local search on the real price,** from the best choice whose export is within the
//!    budget (else the narrowest choice): repeatedly widen the one consumer, by one step,
//!    whose widening gains the most value and keeps the export within the budget, until none
//!    does or [`MAX_EVALUATIONS`] exports were priced.
//!
//! Invariant: the export of the result (default `nnirc optimize`) is predicted within the
//! budget; otherwise the result is an error.

use super::groups::Unit;
use super::knapsack;
use super::latency::{options, ExportLatency, GroupRow, LatencyBudget, LatencyReport, NodeRow};
use super::{keep_top, NodeLatency, PruneError};
use crate::ir::Program;
use crate::optimize::{export_graph, OptimizeConfig};
use std::collections::BTreeMap;

/// Most fixed-point rounds.
pub const ROUNDS: usize = 16;
/// Most exports priced in all (fixed point and local search).
pub const MAX_EVALUATIONS: usize = 2_000;
/// Budget steps of the knapsack's DP.
const BUCKETS: usize = 10_000;

/// Prices the export of a choice of widths, remembering every price.
struct Pricer<'a> {
    /// The input program with every `keep_in` cleared.
    base: Program,
    units: &'a [Unit],
    scores: &'a [Vec<f64>],
    widths: &'a [Vec<usize>],
    latency: &'a dyn NodeLatency,
    export: OptimizeConfig,
    prices: BTreeMap<Vec<usize>, f64>,
}

impl Pricer<'_> {
    /// The predicted latency (ms) of the export of `choice` (an option per unit).
    fn price(&mut self, choice: &[usize]) -> Result<f64, PruneError> {
        if let Some(&ms) = self.prices.get(choice) {
            return Ok(ms);
        }
        let mut masked = self.base.clone();
        for (u, unit) in self.units.iter().enumerate() {
            let k = self.widths[u][choice[u]];
            if k < unit.channels {
                masked.graph[unit.members[0].0].keep_in = Some(keep_top(&self.scores[u], k));
            }
        }
        let exported = export_graph(&masked, &self.export)
            .map_err(|e| PruneError::Latency(format!("pricing an export: {e}")))?;
        let ms = self
            .latency
            .program_ms(&exported)
            .map_err(|e| PruneError::Latency(format!("pricing an export: {e}")))?;
        if !(ms.is_finite() && ms >= 0.0) {
            return Err(PruneError::Latency(format!(
                "the latency predictor gave {ms} ms for an export"
            )));
        }
        self.prices.insert(choice.to_vec(), ms);
        Ok(ms)
    }
}

/// Kept input widths of `units` (one consumer each) under the budget; `scores[u]` are unit
/// `u`'s LAMP-normalised column scores.
pub(super) fn choose_input_widths(
    program: &Program,
    units: &[Unit],
    scores: &[Vec<f64>],
    latency: &dyn NodeLatency,
    budget: LatencyBudget,
    width_step: usize,
) -> Result<(Vec<usize>, LatencyReport), PruneError> {
    let (widths, values) = options(units, scores, width_step);
    let consumers: Vec<_> = units.iter().map(|u| u.members[0].0).collect();
    let c_out = |n| super::channel_count(program, n, super::Side::Output);
    // The separable model: each consumer's conv at its width, plus a gather when it prunes.
    let costs: Vec<Vec<f64>> = units
        .iter()
        .enumerate()
        .map(|(u, unit)| {
            let n = consumers[u];
            widths[u]
                .iter()
                .map(|&k| {
                    let read = if k < unit.channels {
                        latency.read_ms(program, n, unit.channels, k)
                    } else {
                        0.0
                    };
                    latency.node_ms(program, n, k, c_out(n)) + read
                })
                .collect()
        })
        .collect();
    if let Some((u, c)) = costs.iter().enumerate().find_map(|(u, c)| {
        c.iter()
            .find(|v| !(v.is_finite() && **v >= 0.0))
            .map(|v| (u, *v))
    }) {
        return Err(PruneError::Latency(format!(
            "the latency predictor gave {c} ms for %{}",
            program.graph[consumers[u]].name
        )));
    }
    let model =
        |choice: &[usize]| -> f64 { choice.iter().enumerate().map(|(u, &o)| costs[u][o]).sum() };
    let mut base = program.clone();
    for n in base.graph.node_indices() {
        base.graph[n].keep_in = None;
    }
    let mut pricer = Pricer {
        base,
        units,
        scores,
        widths: &widths,
        latency,
        export: OptimizeConfig::default(),
        prices: BTreeMap::new(),
    };
    let full: Vec<usize> = widths.iter().map(|w| w.len() - 1).collect();
    let dense_ms = pricer.price(&full)?;
    let budget_ms = match budget {
        LatencyBudget::Ms(ms) => ms,
        LatencyBudget::Fraction(f) => f * dense_ms,
    };
    let value =
        |choice: &[usize]| -> f64 { choice.iter().enumerate().map(|(u, &o)| values[u][o]).sum() };
    // 1 and 2: the fixed point.
    let mut best: Option<Vec<usize>> = None;
    let consider = |choice: &[usize], ms: f64, best: &mut Option<Vec<usize>>| {
        if ms <= budget_ms && best.as_ref().is_none_or(|b| value(choice) > value(b)) {
            *best = Some(choice.to_vec());
        }
    };
    consider(&full, dense_ms, &mut best);
    let (mut current, mut rest, mut slack) = (full.clone(), dense_ms - model(&full), 0.0);
    let (mut rounds, mut converged) = (0, false);
    while rounds < ROUNDS && pricer.prices.len() < MAX_EVALUATIONS {
        let target = budget_ms - rest - slack;
        // Nothing fits the model: its narrowest choice, whose export may still fit.
        let next = knapsack::mckp(&costs, &values, target.max(0.0), BUCKETS)
            .unwrap_or_else(|| vec![0; units.len()]);
        rounds += 1;
        let ms = pricer.price(&next)?;
        consider(&next, ms, &mut best);
        if ms > budget_ms {
            slack += ms - budget_ms;
        }
        rest = ms - model(&next);
        if next == current {
            converged = true;
            break;
        }
        current = next;
    }
    // 3: local search from the best choice within the budget.
    let narrowest = vec![0; units.len()];
    let mut choice = match best {
        Some(b) => b,
        None => {
            let ms = pricer.price(&narrowest)?;
            if ms > budget_ms {
                return Err(PruneError::Latency(format!(
                    "the latency budget {budget_ms:.4} ms is below the predicted latency of \
                     the export with every consumer at its narrowest width, {ms:.4} ms (the \
                     dense model's: {dense_ms:.4} ms)"
                )));
            }
            narrowest
        }
    };
    let mut moves = 0;
    'search: while pricer.prices.len() < MAX_EVALUATIONS {
        let mut widenings: Vec<(f64, usize)> = (0..units.len())
            .filter(|&u| choice[u] + 1 < widths[u].len())
            .map(|u| (values[u][choice[u] + 1] - values[u][choice[u]], u))
            .collect();
        widenings.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, u) in widenings {
            if pricer.prices.len() >= MAX_EVALUATIONS {
                break 'search;
            }
            choice[u] += 1;
            if pricer.price(&choice)? <= budget_ms {
                moves += 1;
                continue 'search;
            }
            choice[u] -= 1;
        }
        break;
    }
    let predicted_ms = pricer.price(&choice)?;
    let kept: Vec<usize> = (0..units.len()).map(|u| widths[u][choice[u]]).collect();
    let nodes = consumers
        .iter()
        .enumerate()
        .map(|(u, &n)| NodeRow {
            name: program.graph[n].name.clone(),
            op: program.graph[n].op.name(),
            c_in: kept[u],
            c_out: c_out(n),
            dense_ms: costs[u][full[u]],
            ms: costs[u][choice[u]],
        })
        .collect();
    let groups = units
        .iter()
        .enumerate()
        .map(|(u, unit)| GroupRow {
            layers: vec![program.graph[consumers[u]].name.clone()],
            kept: kept[u],
            channels: unit.channels,
            score: values[u][choice[u]],
            max_score: values[u][full[u]],
        })
        .collect();
    let report = LatencyReport {
        budget,
        budget_ms,
        dense_ms,
        predicted_ms,
        constant_ms: dense_ms - model(&full),
        score: value(&choice),
        max_score: value(&full),
        width_step,
        rounds,
        converged,
        nodes,
        groups,
        export: Some(ExportLatency {
            mode: pricer.export.mode.name().to_string(),
            model_ms: model(&choice),
            rest_ms: predicted_ms - model(&choice),
            evaluations: pricer.prices.len(),
            moves,
        }),
    };
    Ok((kept, report))
}
