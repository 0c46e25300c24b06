//! Pruning units: the layers that share one mask, and how wide every tensor is once each
//! unit keeps some of its channels.
//!
//! Input side (unconstrained): every eligible consumer is its own unit, masked by `keep_in`.
//!
//! Output side (structured, constrained): a unit is a *coupled group*, one segment of
//! [`crate::analysis::segment`]: the producers whose channels are tied by add or mul. All of
//! them get the same `keep_out` (mapped through the segment's channel classes), so the tied
//! channels are removed together and the group has one width. A group is prunable when every
//! space in it is an eligible producer ([`super::is_eligible`]: no model input, no grouped
//! conv, no stem, nothing whose channels reach a model output) and its ties are one to one.
//! Concat does not tie: it joins its inputs block by block, so each input keeps its own group
//! and width, and a consumer of the concat reads the sum of the blocks' widths. Depthwise
//! convs, batch norms, activations and pools carry their input's group.
//!
//! Invariants: every member map is a bijection from the unit's channels `0..channels` onto
//! the member's channels on the pruned side; units are listed in node order of their first
//! member, members in node order.

use super::{is_eligible, PruneConfig, Side};
use crate::analysis::{Layout, Provenance, Segments, SpaceKind};
use crate::ir::Program;
use petgraph::graph::NodeIndex;

/// Layers that share one mask.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    /// Each member and, for each unit channel `u`, the member's channel `map[u]`.
    pub members: Vec<(NodeIndex, Vec<usize>)>,
    /// Channels of the unit.
    pub channels: usize,
}

/// The units of `program` on the input side: one per eligible consumer.
pub(super) fn input_units(program: &Program, config: &PruneConfig) -> Vec<Unit> {
    program
        .graph
        .node_indices()
        .filter(|&n| is_eligible(program, n, config))
        .map(|n| {
            let channels = super::channel_count(program, n, Side::Input);
            Unit {
                members: vec![(n, (0..channels).collect())],
                channels,
            }
        })
        .collect()
}

/// The coupled groups of `program` on the output side, and the group of each segment.
pub(super) fn output_groups(
    program: &Program,
    config: &PruneConfig,
    prov: &Provenance,
    segs: &Segments,
) -> (Vec<Unit>, Vec<Option<usize>>) {
    let mut units = Vec::new();
    let mut group_of_segment = vec![None; segs.segments.len()];
    for (id, seg) in segs.segments.iter().enumerate() {
        let prunable = seg.spaces.iter().all(|&s| {
            prov.spaces[s].kind == SpaceKind::Producer
                && is_eligible(program, prov.spaces[s].node, config)
        });
        if !prunable {
            continue;
        }
        let mut members = Vec::new();
        for (slot, &space) in seg.spaces.iter().enumerate() {
            let mut map = vec![usize::MAX; seg.channels];
            for (c, &u) in seg.class_of[slot].iter().enumerate() {
                if map[u] == usize::MAX {
                    map[u] = c;
                }
            }
            members.push((prov.spaces[space].node, map));
        }
        // Ties that are not one to one (a broadcast channel) cannot share one mask.
        let bijective = seg
            .class_of
            .iter()
            .zip(&members)
            .all(|(classes, (_, map))| classes.len() == seg.channels && !map.contains(&usize::MAX));
        if !bijective {
            continue;
        }
        members.sort_by_key(|(n, _)| *n);
        group_of_segment[id] = Some(units.len());
        units.push(Unit {
            members,
            channels: seg.channels,
        });
    }
    // Node order of the first member (segments are numbered by their first space already,
    // which is topological; node order is what the summary lists).
    let mut order: Vec<usize> = (0..units.len()).collect();
    order.sort_by_key(|&u| units[u].members[0].0);
    let mut rank = vec![0; units.len()];
    for (r, &u) in order.iter().enumerate() {
        rank[u] = r;
    }
    for g in group_of_segment.iter_mut().flatten() {
        *g = rank[*g];
    }
    let mut sorted: Vec<Option<Unit>> = units.into_iter().map(Some).collect();
    let units = order
        .iter()
        .map(|&u| sorted[u].take().expect("each unit once"))
        .collect();
    (units, group_of_segment)
}

/// How many entries of axis 1 of a tensor remain when every group keeps some of its channels:
/// `fixed + sum over (g, n) of n * width[g] / channels[g]` (`n`: the tensor's entries that
/// come from group `g`, all of its channels, or a multiple, in a group that is not read
/// through a slice or gather).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Width {
    pub fixed: usize,
    pub groups: Vec<(usize, usize)>,
}

impl Width {
    /// The width of a tensor laid out as `layout`.
    pub(super) fn of(
        layout: &Layout,
        segs: &Segments,
        group_of_segment: &[Option<usize>],
    ) -> Width {
        let mut width = Width::default();
        for &origin in &layout.origins {
            let (seg, _) = segs.locate(origin);
            match group_of_segment[seg] {
                Some(g) => match width.groups.iter_mut().find(|(h, _)| *h == g) {
                    Some((_, n)) => *n += layout.features_per_channel,
                    None => width.groups.push((g, layout.features_per_channel)),
                },
                None => width.fixed += layout.features_per_channel,
            }
        }
        width
    }

    /// The entries left when group `g` keeps `widths[g]` of its `channels[g]` channels.
    pub fn at(&self, widths: &[usize], channels: &[usize]) -> usize {
        self.fixed
            + self
                .groups
                .iter()
                .map(|&(g, n)| n * widths[g] / channels[g])
                .sum::<usize>()
    }
}
