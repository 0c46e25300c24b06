//! Planning: which segment channels stay alive, and in which order.
//!
//! A segment is *free* when it is not fixed and reaches no model output; only free segments are
//! cut and reordered (the others keep every channel in the original order). In a free segment a
//! channel is live iff some consumer keeps it and does not read it as removed (a `keep_out`
//! channel that is zero on every path to that consumer). A free segment keeps at least one
//! channel, so that every tensor keeps a valid shape.

use super::distribute::{self, Chain};
use super::OptimizeConfig;
use crate::analysis::{self, ConsumerRead, Provenance, Segment, Segments};
use crate::ir::Program;
use crate::solver::{self, Anchor, ConsumerSet, Instance, SolveStats};
use petgraph::graph::NodeIndex;
use std::collections::HashMap;
use std::sync::Arc;

/// The plan for one segment.
#[derive(Debug, Clone)]
pub struct SegmentPlan {
    /// Whether the segment is cut and reordered.
    pub free: bool,
    /// The live segment channels, in their new order.
    pub order: Vec<usize>,
    /// The solver's statistics and whether its order is proven optimal (free segments with
    /// consumers in upscale mode only).
    pub solve: Option<(SolveStats, bool)>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    /// The channel analysis, shared by plans of the same program ([`plan_like`]).
    pub provenance: Arc<Provenance>,
    pub segments: Arc<Segments>,
    /// Removed channels per node (see [`analysis::removed_channels`]).
    pub removed: Arc<Vec<Option<Vec<bool>>>>,
    /// The consumers whose selection can be distributed over a concat, with their chains.
    pub chains: Arc<HashMap<NodeIndex, Chain>>,
    pub plans: Vec<SegmentPlan>,
    /// `rank[s][c]`: the new position of segment channel `c` of segment `s`, if live.
    pub rank: Vec<Vec<Option<usize>>>,
    /// Milliseconds in the channel analysis (provenance, segments, removed channels, liveness).
    pub analysis_ms: f64,
    /// Milliseconds in the ordering solver.
    pub solver_ms: f64,
}

impl Plan {
    /// Whether channel `pos` of `tensor` (a channel, not a feature) is removed there.
    pub fn removed_at(&self, tensor: NodeIndex, pos: usize) -> bool {
        let per = self.provenance.layout(tensor).features_per_channel;
        self.removed[tensor.index()]
            .as_ref()
            .is_some_and(|flags| flags[pos * per..(pos + 1) * per].iter().all(|&r| r))
    }
}

/// Resolves masks and orders every segment.
pub fn plan(program: &Program, config: &OptimizeConfig) -> Plan {
    let started = std::time::Instant::now();
    let provenance = analysis::provenance(program);
    let segments = analysis::segment(program, &provenance);
    let removed = analysis::removed_channels(program);
    let analysis = Analysis {
        provenance: Arc::new(provenance),
        segments: Arc::new(segments),
        removed: Arc::new(removed),
        chains: Arc::new(distribute::chains(program)),
    };
    order(program, analysis, config, started)
}

/// Another plan of the program `other` was made for, under `config`, reusing its channel
/// analysis (which depends on the program only).
pub fn plan_like(program: &Program, other: &Plan, config: &OptimizeConfig) -> Plan {
    let analysis = Analysis {
        provenance: other.provenance.clone(),
        segments: other.segments.clone(),
        removed: other.removed.clone(),
        chains: other.chains.clone(),
    };
    order(program, analysis, config, std::time::Instant::now())
}

/// What a plan knows of its program before it orders anything.
struct Analysis {
    provenance: Arc<Provenance>,
    segments: Arc<Segments>,
    removed: Arc<Vec<Option<Vec<bool>>>>,
    chains: Arc<HashMap<NodeIndex, Chain>>,
}

/// Liveness and orders over a finished analysis.
fn order(
    program: &Program,
    analysis: Analysis,
    config: &OptimizeConfig,
    started: std::time::Instant,
) -> Plan {
    let mut plan = Plan {
        provenance: analysis.provenance,
        segments: analysis.segments,
        removed: analysis.removed,
        chains: analysis.chains,
        plans: Vec::new(),
        rank: Vec::new(),
        analysis_ms: 0.0,
        solver_ms: 0.0,
    };
    // Liveness first (anchors look at every segment's live channels), then orders.
    let live: Vec<Vec<usize>> = plan
        .segments
        .segments
        .iter()
        .map(|seg| {
            let free = seg.fixed.is_none() && seg.outputs.is_empty();
            if free {
                live_channels(program, &plan, seg)
            } else {
                (0..seg.channels).collect()
            }
        })
        .collect();
    plan.rank = plan
        .segments
        .segments
        .iter()
        .zip(&live)
        .map(|(seg, live)| {
            let mut rank = vec![None; seg.channels];
            for (i, &c) in live.iter().enumerate() {
                rank[c] = Some(i);
            }
            rank
        })
        .collect();
    plan.analysis_ms = started.elapsed().as_secs_f64() * 1e3;
    let started = std::time::Instant::now();
    for (s, live) in live.into_iter().enumerate() {
        let seg = &plan.segments.segments[s];
        let free = seg.fixed.is_none() && seg.outputs.is_empty();
        let (order, solve) = if config.mode.reorders() && free && !seg.consumers.is_empty() {
            let (order, stats, optimal) = solve_order(program, &plan, s, &live, config);
            (order, Some((stats, optimal)))
        } else {
            (live, None)
        };
        plan.plans.push(SegmentPlan { free, order, solve });
    }
    plan.solver_ms = started.elapsed().as_secs_f64() * 1e3;
    if config.channel_align > 1 {
        pad_segments(program, &mut plan, config.channel_align);
    }
    rerank(&mut plan);
    plan
}

/// Appends dead channels to every cut segment's order until it keeps a multiple of `align`
/// channels (or all of them).
fn pad_segments(program: &Program, plan: &mut Plan, align: usize) {
    let widths: Vec<usize> = plan
        .plans
        .iter()
        .zip(&plan.segments.segments)
        .map(|(p, seg)| p.order.len().next_multiple_of(align).min(seg.channels))
        .collect();
    pad_to(program, plan, &widths);
}

/// The most channels segment `s` of `plan` can keep once padded ([`pad_to`]): its channels
/// less those removed by `keep_out` somewhere in it (for a segment that is not free: its
/// current width).
pub fn paddable(program: &Program, plan: &Plan) -> Vec<usize> {
    let removed = removed_somewhere(program, plan);
    plan.plans
        .iter()
        .zip(&removed)
        .map(|(p, r)| {
            if !p.free {
                return p.order.len();
            }
            p.order.len() + spare(&p.order, r).count()
        })
        .collect()
}

/// The channels of a segment that can pad `order`: not in it, and not removed somewhere in the
/// segment (`removed`, one flag per segment channel), ascending.
fn spare<'a>(order: &[usize], removed: &'a [bool]) -> impl Iterator<Item = usize> + 'a {
    let mut used = vec![false; removed.len()];
    for &c in order {
        used[c] = true;
    }
    (0..removed.len()).filter(move |&c| !used[c] && !removed[c])
}

/// Per segment, the channels removed by `keep_out` somewhere in it.
fn removed_somewhere(program: &Program, plan: &Plan) -> Vec<Vec<bool>> {
    let mut removed_somewhere: Vec<Vec<bool>> = plan
        .segments
        .segments
        .iter()
        .map(|seg| vec![false; seg.channels])
        .collect();
    for n in program.graph.node_indices() {
        let Some(flags) = plan.removed[n.index()].as_ref() else {
            continue;
        };
        let layout = plan.provenance.layout(n);
        let per = layout.features_per_channel;
        for (pos, &origin) in layout.origins.iter().enumerate() {
            if flags[pos * per..(pos + 1) * per].iter().any(|&r| r) {
                let (s, class) = plan.segments.locate(origin);
                removed_somewhere[s][class] = true;
            }
        }
    }
    removed_somewhere
}

/// Adds dead channels to the order of every free segment `s` until it keeps `widths[s]`
/// channels (or as many as it can; a segment already as wide is left alone), and updates the
/// ranks. No consumer keeps a padding channel, so consumers read it through zero weight
/// columns; channels removed by `keep_out` anywhere in the segment are never used as padding
/// (a removed channel must stay zero, which a gate could break). The padding goes where it
/// splits the fewest contiguous reads ([`padding_position`]): after the order unless a read
/// of a concat must end this segment's block there.
pub fn pad_to(program: &Program, plan: &mut Plan, widths: &[usize]) {
    let removed_somewhere = removed_somewhere(program, plan);
    for s in 0..plan.plans.len() {
        let channels = plan.segments.segments[s].channels;
        let target = widths[s].min(channels);
        let p = &plan.plans[s];
        if !p.free || p.order.len() >= target {
            continue;
        }
        let spare: Vec<usize> = spare(&p.order, &removed_somewhere[s])
            .take(target - p.order.len())
            .collect();
        let at = padding_position(program, plan, s);
        plan.plans[s].order.splice(at..at, spare);
    }
    rerank(plan);
}

/// Where in segment `s`'s order padding splits the fewest of its consumers' contiguous reads:
/// inside a read's run splits it, and so does the end of the order for a read that must end
/// there (its block is followed by another block of the concat it reads, [`Anchor::End`]) or
/// the start for one that must start there. Ties go to the end, then the start.
fn padding_position(program: &Program, plan: &Plan, s: usize) -> usize {
    let seg = &plan.segments.segments[s];
    let order = &plan.plans[s].order;
    let len = order.len();
    let mut position = vec![None; seg.channels];
    for (i, &c) in order.iter().enumerate() {
        position[c] = Some(i);
    }
    let mut runs: Vec<(usize, usize, Anchor)> = Vec::new();
    for read in &seg.consumers {
        let Some(anchor) = anchor(program, plan, s, read) else {
            continue;
        };
        let mut at: Vec<usize> = kept_live(program, plan, read)
            .iter()
            .filter_map(|&c| position[c])
            .collect();
        at.sort_unstable();
        let (Some(&a), Some(&b)) = (at.first(), at.last()) else {
            continue;
        };
        if b - a + 1 == at.len() {
            runs.push((a, b + 1, anchor));
        }
    }
    let splits = |p: usize| {
        runs.iter()
            .filter(|&&(a, b, anchor)| {
                (a < p && p < b)
                    || (p == len && b == len && anchor == Anchor::End)
                    || (p == 0 && a == 0 && anchor == Anchor::Start)
            })
            .count()
    };
    let mut candidates = vec![len, 0];
    candidates.extend(runs.iter().flat_map(|&(a, b, _)| [a, b]));
    candidates
        .into_iter()
        .min_by_key(|&p| splits(p))
        .expect("the end is a candidate")
}

/// `plan.rank` from the orders.
fn rerank(plan: &mut Plan) {
    for (s, p) in plan.plans.iter().enumerate() {
        for (i, &c) in p.order.iter().enumerate() {
            plan.rank[s][c] = Some(i);
        }
    }
}

/// The kept segment channels of one consumer read that are not removed where it reads them.
fn kept_live(program: &Program, plan: &Plan, read: &ConsumerRead) -> Vec<usize> {
    let input = program.operands(read.node)[0];
    let mut kept: Vec<usize> = read
        .read
        .iter()
        .zip(&read.positions)
        .filter(|(c, &pos)| read.kept.binary_search(c).is_ok() && !plan.removed_at(input, pos))
        .map(|(&c, _)| c)
        .collect();
    kept.sort_unstable();
    kept.dedup();
    kept
}

fn live_channels(program: &Program, plan: &Plan, seg: &Segment) -> Vec<usize> {
    let mut live = vec![false; seg.channels];
    for read in &seg.consumers {
        for c in kept_live(program, plan, read) {
            live[c] = true;
        }
    }
    if !live.iter().any(|&l| l) && seg.channels > 0 {
        live[0] = true; // keep shapes valid; no consumer reads it
    }
    (0..seg.channels).filter(|&c| live[c]).collect()
}

/// Builds the solver instance of a free segment and maps the solver's order back to segment
/// channels.
fn solve_order(
    program: &Program,
    plan: &Plan,
    s: usize,
    live: &[usize],
    config: &OptimizeConfig,
) -> (Vec<usize>, SolveStats, bool) {
    let seg = &plan.segments.segments[s];
    let mut index = vec![usize::MAX; seg.channels];
    for (i, &c) in live.iter().enumerate() {
        index[c] = i;
    }
    let mut instance = Instance {
        channels: live.len(),
        consumers: Vec::new(),
    };
    for read in &seg.consumers {
        let kept = kept_live(program, plan, read);
        let Some(anchor) = anchor(program, plan, s, read) else {
            continue; // cannot be contiguous whatever this segment's order
        };
        let input = program.operands(read.node)[0];
        let shape = &program.graph[input].shape;
        let per_channel: usize = shape[0]
            * shape[2..].iter().product::<usize>()
            * plan.provenance.layout(input).features_per_channel;
        let bytes = (kept.len() * per_channel * 4) as u64;
        instance.consumers.push(ConsumerSet {
            channels: kept.iter().map(|&c| index[c]).collect(),
            weight: bytes.max(1),
            anchor,
        });
    }
    let solution = solver::solve(&instance, config.solver, &config.limits);
    let order = solution.order.iter().map(|&i| live[i]).collect();
    (order, solution.stats, solution.optimal)
}

/// Where a consumer's part of segment `s` must sit for the consumer to read one range: no
/// constraint when its input comes from `s` alone; when its input concatenates blocks, the
/// first block it keeps from must end its range (a suffix), the last must start it (a prefix),
/// and blocks in between must be kept whole. If that fails, the read copies anyway: `None`,
/// unless its selection can be distributed over the concat ([`distribute`]), where the part
/// only needs to be contiguous in its own block (no constraint).
fn anchor(program: &Program, plan: &Plan, s: usize, read: &ConsumerRead) -> Option<Anchor> {
    let input = program.operands(read.node)[0];
    let layout = plan.provenance.layout(input);
    let segment_of: Vec<usize> = layout
        .origins
        .iter()
        .map(|&o| plan.segments.locate(o).0)
        .collect();
    if segment_of.iter().all(|&x| x == s) {
        return Some(Anchor::None);
    }
    // Runs of consecutive positions from one segment stand for concatenated blocks.
    let consumer = &program.graph[read.node];
    let per = layout.features_per_channel;
    let kept_at = |pos: usize| {
        let keeps = consumer
            .keep_in
            .as_ref()
            .is_none_or(|k| (pos * per..(pos + 1) * per).any(|f| k.binary_search(&f).is_ok()));
        keeps && !plan.removed_at(input, pos)
    };
    let live_at = |pos: usize| {
        let (seg, class) = plan.segments.locate(layout.origins[pos]);
        plan.rank[seg][class].is_some()
    };
    let whole = |range: &std::ops::Range<usize>| range.clone().filter(|&p| live_at(p)).all(kept_at);
    let mut runs: Vec<(usize, std::ops::Range<usize>)> = Vec::new();
    for (pos, &seg) in segment_of.iter().enumerate() {
        match runs.last_mut() {
            Some((last, range)) if *last == seg => range.end = pos + 1,
            _ => runs.push((seg, pos..pos + 1)),
        }
    }
    let kept_runs: Vec<usize> = (0..runs.len())
        .filter(|&r| runs[r].1.clone().any(kept_at))
        .collect();
    if kept_runs.iter().filter(|&&r| runs[r].0 == s).count() != 1 {
        return Some(Anchor::None); // this segment is in several kept blocks: no useful hint
    }
    let (first, last) = (kept_runs[0], kept_runs[kept_runs.len() - 1]);
    let unanchored = plan.chains.contains_key(&read.node).then_some(Anchor::None);
    if kept_runs.len() > 2
        && !kept_runs[1..kept_runs.len() - 1]
            .iter()
            .all(|&r| whole(&runs[r].1))
    {
        return unanchored;
    }
    let mine = *kept_runs
        .iter()
        .find(|&&r| runs[r].0 == s)
        .expect("counted above");
    match (mine == first, mine == last) {
        (true, true) => Some(Anchor::None),
        (true, false) => Some(Anchor::End),
        (false, true) => Some(Anchor::Start),
        // A middle block must be kept whole: then any order works.
        (false, false) => whole(&runs[mine].1).then_some(Anchor::None).or(unanchored),
    }
}
