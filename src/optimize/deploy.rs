//! The deploy target for onnxruntime on the CPU (`nnirc optimize --target ort-cpu`): the
//! plan's channel orders are kept; how wide each cut segment is and which consumers read their
//! whole input are chosen under the measured latency model of the runtime.
//!
//! Input: a [`Plan`] (orders from the solver; `--align` padding already applied, so it is a
//! forced minimum), the masked program, the config and a measured [`Table`]. Output: the
//! padded plan, the consumers that read everything, and a [`DeployReport`].
//!
//! Why: onnxruntime's CPU latency is set mostly by channel counts, not by copies. A conv runs
//! its blocked (NCHWc) kernels only when its input width is a multiple of 4 (fastest at a
//! multiple of the block); a slice or gather reads the plain layout, so a blocked network
//! pays reorders around it. A pruned export can be slower than the dense model for it
//! (docs/benchmarks.md). The choices, all exact (they add dead channels and zero weight
//! columns, never change what is computed):
//! - per cut segment, its width: the kept channels, the next multiple of 4, of 8, of the
//!   block, or every channel it can keep ([`super::plan::paddable`]);
//! - with each width, whether the segment's consumers read the whole tensor (zero columns, no
//!   copy) or as planned;
//! - per consumer, whether it reads the whole tensor.
//!
//! Cost: [`crate::latency::predict`] of the whole rewritten program (units at their widths and
//! layouts, reorders, overheads). Search: coordinate descent from the best of the incumbent
//! (the plan as given, today's export) and the plan with every cut segment and slice aligned
//! to 4, 8 or the block (`--align N`'s export): a move is kept only when it lowers the
//! predicted total, sweeps repeat until none does or [`MAX_SWEEPS`]. So the result is never predicted slower than the
//! incumbent, and with every segment at full width and every read whole it can reach the
//! dense model's shapes.

use super::plan::{pad_to, paddable, Plan};
use super::rewrite::rewrite_reading;
use super::{OptimizeConfig, OptimizeError};
use crate::egraph::ReadCache;
use crate::ir::Program;
use crate::latency::{predict, Table};
use petgraph::graph::NodeIndex;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap, HashSet};

/// Most sweeps of the coordinate descent.
pub const MAX_SWEEPS: usize = 4;

/// The deploy target's name (`nnirc optimize --target ort-cpu`).
pub const ORT_CPU: &str = "ort-cpu";

/// What the deploy target chose.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeployReport {
    pub target: String,
    /// Predicted latency (us) of the plan as given (the export without the target).
    pub incumbent_us: f64,
    /// Predicted latency (us) of the choice.
    pub predicted_us: f64,
    /// Segments made wider than the plan, and consumers reading their whole input instead of
    /// the planned read.
    pub widened_segments: usize,
    pub full_reads: usize,
    /// Exports priced, and sweeps of the descent.
    pub evaluations: usize,
    pub sweeps: usize,
}

/// A point of the search: the slice alignment, a width per segment and the consumers reading
/// everything.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct State {
    align: usize,
    widths: Vec<usize>,
    full: BTreeSet<NodeIndex>,
}

/// The deploy target's choice: the plan to rewrite, how, and what it predicts.
pub(super) struct Choice {
    pub plan: Plan,
    pub full_reads: HashSet<NodeIndex>,
    /// `channel_align` for the rewrite: slices widened to multiples of it.
    pub channel_align: usize,
    pub report: DeployReport,
}

/// Prices states, remembering every price.
struct Pricer<'a> {
    program: &'a Program,
    plan: &'a Plan,
    config: &'a OptimizeConfig,
    table: &'a Table,
    prices: HashMap<State, Option<f64>>,
    reads: ReadCache,
}

impl Pricer<'_> {
    /// The plan and reads of `state`.
    fn realise(&self, state: &State) -> (Plan, HashSet<NodeIndex>) {
        let mut plan = self.plan.clone();
        pad_to(self.program, &mut plan, &state.widths);
        (plan, state.full.iter().copied().collect())
    }

    /// The predicted latency (us) of the export of `state`; `None` where the table cannot
    /// price it (a kernel at a size it has no measurement for).
    fn price(&mut self, state: &State) -> Result<Option<f64>, OptimizeError> {
        if let Some(&p) = self.prices.get(state) {
            return Ok(p);
        }
        let (plan, full) = self.realise(state);
        let config = OptimizeConfig {
            channel_align: state.align,
            ..self.config.clone()
        };
        let rewritten = rewrite_reading(self.program, &plan, &config, &full, &mut self.reads)?;
        let price = predict(&rewritten.program, self.table)
            .ok()
            .map(|p| p.total_us);
        self.prices.insert(state.clone(), price);
        Ok(price)
    }
}

/// The deploy target's plan and full reads for `plan` (see the module docs).
pub(super) fn choose(
    program: &Program,
    plan: &Plan,
    config: &OptimizeConfig,
    table: &Table,
) -> Result<Choice, OptimizeError> {
    let most = paddable(program, plan);
    let base: Vec<usize> = plan.plans.iter().map(|p| p.order.len()).collect();
    // Width options per segment (only cut, free segments have any).
    let options: Vec<Vec<usize>> = base
        .iter()
        .zip(&most)
        .zip(&plan.plans)
        .map(|((&w, &max), p)| {
            if !p.free || w >= max {
                return vec![w];
            }
            let mut o: Vec<usize> = [w, w.next_multiple_of(4), w.next_multiple_of(8)]
                .into_iter()
                .chain([w.next_multiple_of(table.block.max(1)), max])
                .map(|x| x.min(max))
                .collect();
            o.sort_unstable();
            o.dedup();
            o
        })
        .collect();
    // The consumers reading each segment, and every consumer.
    let readers: Vec<Vec<NodeIndex>> = plan
        .segments
        .segments
        .iter()
        .map(|seg| seg.consumers.iter().map(|c| c.node).collect())
        .collect();
    let consumers: BTreeSet<NodeIndex> = readers.iter().flatten().copied().collect();
    let mut pricer = Pricer {
        program,
        plan,
        config,
        table,
        prices: HashMap::new(),
        reads: ReadCache::default(),
    };
    let forced = config.channel_align.max(1);
    let mut current = State {
        align: forced,
        widths: base.clone(),
        full: BTreeSet::new(),
    };
    let incumbent = rewrite_reading(program, plan, config, &HashSet::new(), &mut pricer.reads)?;
    let incumbent_us = predict(&incumbent.program, table)
        .map_err(|e| OptimizeError::Unsupported(format!("--target {ORT_CPU}: {e}")))?
        .total_us;
    pricer.prices.insert(current.clone(), Some(incumbent_us));
    let mut best = incumbent_us;
    // Other starting points: every cut segment and slice aligned to 4, 8 or the block (what
    // `--align N` gives), the best of them if it beats the incumbent.
    for align in [4, 8, table.block.max(1)] {
        if align <= forced || forced.is_multiple_of(align) {
            continue;
        }
        let start = State {
            align,
            widths: options
                .iter()
                .zip(&base)
                .map(|(o, &w)| {
                    o.iter()
                        .copied()
                        .find(|&x| x.is_multiple_of(align))
                        .unwrap_or(*o.last().unwrap_or(&w))
                })
                .collect(),
            full: BTreeSet::new(),
        };
        if let Some(us) = pricer.price(&start)? {
            if us < best {
                (best, current) = (us, start);
            }
        }
    }
    let mut sweeps = 0;
    let moves = options
        .iter()
        .zip(&readers)
        .filter(|(o, r)| o.len() >= 2 || !r.is_empty())
        .map(|(o, _)| 2 * o.len())
        .sum::<usize>()
        + consumers.len();
    let mut done;
    let tell = |done: &mut usize, sweep: usize| {
        *done += 1;
        if let Some(progress) = &config.progress {
            progress(sweep, *done, moves);
        }
    };
    while sweeps < MAX_SWEEPS {
        sweeps += 1;
        done = 0;
        let mut improved = false;
        // Segment moves: a width, with the segment's consumers reading as now or all whole.
        for s in 0..options.len() {
            if options[s].len() < 2 && readers[s].is_empty() {
                continue;
            }
            let mut winner: Option<(f64, State)> = None;
            for &w in &options[s] {
                for whole in [false, true] {
                    let mut next = current.clone();
                    next.widths[s] = w;
                    for n in &readers[s] {
                        if whole {
                            next.full.insert(*n);
                        } else {
                            next.full.remove(n);
                        }
                    }
                    tell(&mut done, sweeps);
                    if next == current {
                        continue;
                    }
                    if let Some(us) = pricer.price(&next)? {
                        if us < winner.as_ref().map_or(best, |(b, _)| *b) {
                            winner = Some((us, next));
                        }
                    }
                }
            }
            if let Some((us, next)) = winner {
                (best, current, improved) = (us, next, true);
            }
        }
        // Consumer moves: one read whole, or back as planned.
        for &n in &consumers {
            tell(&mut done, sweeps);
            let mut next = current.clone();
            if !next.full.remove(&n) {
                next.full.insert(n);
            }
            if let Some(us) = pricer.price(&next)? {
                if us < best {
                    (best, current, improved) = (us, next, true);
                }
            }
        }
        if !improved {
            break;
        }
    }
    let report = DeployReport {
        target: ORT_CPU.to_string(),
        incumbent_us,
        predicted_us: best,
        widened_segments: current
            .widths
            .iter()
            .zip(&base)
            .filter(|(w, b)| w > b)
            .count(),
        full_reads: current.full.len(),
        evaluations: pricer.prices.len(),
        sweeps,
    };
    let (plan, full_reads) = pricer.realise(&current);
    Ok(Choice {
        plan,
        full_reads,
        channel_align: current.align,
        report,
    })
}
