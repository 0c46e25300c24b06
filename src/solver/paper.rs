//! The published UPSCALE ordering heuristic, kept for comparison with the exact solver.
//!
//! Input: an [`Instance`]. Output: a permutation of its channels. It follows
//! `compute_reordering` in apple/ml-upscale (`src/upscale/pruning/reorder.py`) step by step:
//!
//! 1. *Sub-nodes* (`group_child_nodes`): parents are taken in ascending order; every other
//!    consumer whose set is a subset of the parent's becomes its child (and brings its own
//!    children). Each parent with children orders its channels by running the whole algorithm
//!    recursively on the children, then appends its other channels; a parent without children
//!    keeps its channels sorted (`compute_child_node_reordering`).
//! 2. The overlap graph of the remaining (top) consumers: an edge between two consumers that
//!    share a channel, node reward = set size, edge reward = minus the shared count
//!    (`build_adjacency_cost`).
//! 3. Repeatedly, from every source not yet used, the maximum-reward *chordless* path: a DFS
//!    in which the next node may not be a neighbour of any earlier node but the last
//!    (`max_cost_path_from`); the best path over all sources is kept (first one on ties, a
//!    child before stopping) and its nodes are marked used (`max_cost_path`).
//! 4. Each path becomes channels: for each node, its channels shared with the previous node,
//!    then those in neither neighbour, then those shared with the next node, skipping channels
//!    already placed (`build_channel_order_from_paths`).
//!
//! Deviations, all forced by the different input: the reference iterates Python sets, whose
//! order follows hashes; here every such iteration is ascending (consumer index, channel), so
//! ties break towards smaller indices. Channels no consumer keeps (the reference never sees
//! them) go last, ascending. Weights and anchors are ignored, as in the reference, which
//! maximizes covered channels and handles concatenation through its multi-producer traces
//! (not modelled here): its results are scored against them afterwards. Every DFS call and
//! every sub-node grouping step counts against the node budget; once a budget runs out, paths
//! stop growing and what is left to order goes consumer by consumer (the reference has no
//! limit: its path search is exponential on sparse overlap graphs, and its sub-node recursion
//! cubic in the nesting depth).

use super::{Budget, Instance};
use std::collections::{BTreeMap, BTreeSet};

/// The order the reference heuristic picks.
pub(super) fn order(instance: &Instance, budget: &mut Budget) -> Vec<usize> {
    let n = instance.channels;
    let w = n.div_ceil(64).max(1);
    let members: Vec<Vec<usize>> = instance
        .consumers
        .iter()
        .map(|c| {
            let mut s = c.channels.clone();
            s.sort_unstable();
            s.dedup();
            s
        })
        .collect();
    let mut words = vec![0u64; members.len() * w];
    for (j, s) in members.iter().enumerate() {
        for &c in s {
            words[j * w + c / 64] |= 1 << (c % 64);
        }
    }
    let mut paper = Paper {
        n,
        w,
        members: &members,
        words: &words,
        budget,
    };
    let nodes: Vec<usize> = (0..members.len()).collect();
    let mut channels = Sequence::new(n);
    channels.extend(paper.compute_reordering(&nodes));
    channels.extend(0..n);
    channels.list
}

/// A list that skips items it already holds (`extend_list_as_set`).
struct Sequence {
    list: Vec<usize>,
    placed: Vec<bool>,
}

impl Sequence {
    fn new(n: usize) -> Sequence {
        Sequence {
            list: Vec::new(),
            placed: vec![false; n],
        }
    }

    fn extend(&mut self, items: impl IntoIterator<Item = usize>) {
        for i in items {
            if !std::mem::replace(&mut self.placed[i], true) {
                self.list.push(i);
            }
        }
    }
}

/// A path with its reward (`Path` in the reference).
#[derive(Debug, Clone)]
struct Path {
    nodes: Vec<usize>,
    reward: i64,
}

struct Paper<'a> {
    n: usize,
    /// Words per channel bitset.
    w: usize,
    /// Per consumer: its channels, ascending.
    members: &'a [Vec<usize>],
    /// Per consumer: its channels as a bitset (`w` words).
    words: &'a [u64],
    budget: &'a mut Budget,
}

impl Paper<'_> {
    fn set(&self, a: usize) -> &[u64] {
        &self.words[a * self.w..(a + 1) * self.w]
    }

    fn has(&self, a: usize, c: usize) -> bool {
        self.set(a)[c / 64] >> (c % 64) & 1 == 1
    }

    fn is_subset(&self, a: usize, b: usize) -> bool {
        self.set(a)
            .iter()
            .zip(self.set(b))
            .all(|(x, y)| x & !y == 0)
    }

    fn shared(&self, a: usize, b: usize) -> u32 {
        self.set(a)
            .iter()
            .zip(self.set(b))
            .map(|(x, y)| (x & y).count_ones())
            .sum()
    }

    fn compute_reordering(&mut self, nodes: &[usize]) -> Vec<usize> {
        if self.budget.exhausted() {
            let mut channels = Sequence::new(self.n);
            nodes
                .iter()
                .for_each(|&j| channels.extend(self.members[j].iter().copied()));
            return channels.list;
        }
        let groups = self.group_child_nodes(nodes);
        let mut ordered: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (&parent, children) in &groups {
            let channels = if children.is_empty() {
                self.members[parent].clone()
            } else {
                let children: Vec<usize> = children.iter().copied().collect();
                let mut channels = Sequence::new(self.n);
                channels.extend(self.compute_reordering(&children));
                channels.extend(self.members[parent].iter().copied());
                channels.list
            };
            ordered.insert(parent, channels);
        }
        let top: Vec<usize> = groups.keys().copied().collect();
        let adj: BTreeMap<usize, Vec<(usize, i64)>> = top
            .iter()
            .map(|&p| {
                let edges = top
                    .iter()
                    .filter(|&&c| c != p)
                    .filter_map(|&c| {
                        let shared = self.shared(p, c);
                        (shared > 0).then_some((c, -i64::from(shared)))
                    })
                    .collect();
                (p, edges)
            })
            .collect();
        let paths = self.max_cost_path(&top, &adj);
        self.channels_from_paths(&paths, &ordered)
    }

    /// Parent consumer -> the consumers nested in it (`group_child_nodes`).
    fn group_child_nodes(&mut self, nodes: &[usize]) -> BTreeMap<usize, BTreeSet<usize>> {
        let mut groups: BTreeMap<usize, BTreeSet<usize>> =
            nodes.iter().map(|&p| (p, BTreeSet::new())).collect();
        let mut buffer: BTreeSet<usize> = nodes.iter().copied().collect();
        while let Some(parent) = buffer.pop_first() {
            if !self.budget.tick() {
                break;
            }
            for &child in nodes {
                if child != parent && self.is_subset(child, parent) {
                    buffer.remove(&child);
                    let absorbed = groups.remove(&child).unwrap_or_default();
                    if let Some(children) = groups.get_mut(&parent) {
                        children.insert(child);
                        children.extend(absorbed);
                    }
                }
            }
        }
        groups
    }

    /// Paths until every top node is on one (`max_cost_path`).
    fn max_cost_path(
        &mut self,
        top: &[usize],
        adj: &BTreeMap<usize, Vec<(usize, i64)>>,
    ) -> Vec<Path> {
        let mut invalid = vec![false; self.members.len()];
        let mut used = 0;
        let mut paths = Vec::new();
        while used < top.len() {
            let mut best: Option<Path> = None;
            for &source in top.iter().filter(|&&s| !invalid[s]) {
                let path = self.max_cost_path_from(source, adj, &invalid, &mut vec![source]);
                if best.as_ref().is_none_or(|b| path.reward > b.reward) {
                    best = Some(path);
                }
            }
            let best = best.expect("a source is left");
            for &x in &best.nodes {
                used += usize::from(!std::mem::replace(&mut invalid[x], true));
            }
            paths.push(best);
        }
        paths
    }

    /// The best chordless path extending `path`, whose last node is `source`
    /// (`max_cost_path_from`).
    fn max_cost_path_from(
        &mut self,
        source: usize,
        adj: &BTreeMap<usize, Vec<(usize, i64)>>,
        invalid: &[bool],
        path: &mut Vec<usize>,
    ) -> Path {
        let mut best: Option<Path> = None;
        if self.budget.tick() {
            let edges = &adj[&source];
            let mut child_invalid = invalid.to_vec();
            child_invalid[source] = true;
            edges.iter().for_each(|&(c, _)| child_invalid[c] = true);
            for &(child, edge) in edges.iter().filter(|&&(c, _)| !invalid[c]) {
                path.push(child);
                let mut found = self.max_cost_path_from(child, adj, &child_invalid, path);
                path.pop();
                found.reward += edge;
                if best.as_ref().is_none_or(|b| found.reward > b.reward) {
                    best = Some(found);
                }
            }
        }
        // Stopping here is the last candidate: it wins only over negative rewards.
        let mut best = match best {
            Some(b) if b.reward >= 0 => b,
            _ => Path {
                nodes: path.clone(),
                reward: 0,
            },
        };
        best.reward += self.members[source].len() as i64;
        best
    }

    /// Channels of each path in turn (`build_channel_order_from_paths`).
    fn channels_from_paths(
        &self,
        paths: &[Path],
        ordered: &BTreeMap<usize, Vec<usize>>,
    ) -> Vec<usize> {
        let mut channels = Sequence::new(self.n);
        for path in paths {
            for (i, &cur) in path.nodes.iter().enumerate() {
                let prv = i.checked_sub(1).map(|p| path.nodes[p]);
                let nxt = path.nodes.get(i + 1).copied();
                let has = |node: Option<usize>, c: usize| node.is_some_and(|x| self.has(x, c));
                let cur_channels = &ordered[&cur];
                channels.extend(cur_channels.iter().copied().filter(|&c| has(prv, c)));
                channels.extend(
                    cur_channels
                        .iter()
                        .copied()
                        .filter(|&c| !has(prv, c) && !has(nxt, c)),
                );
                channels.extend(cur_channels.iter().copied().filter(|&c| has(nxt, c)));
            }
        }
        channels.list
    }
}
