//! Segments: groups of channel spaces that must share one channel order, with the consumers
//! that read them.
//!
//! Channels tied by add or mul are unioned (union-find over every (space, channel)); the
//! spaces whose channels meet form a segment, and each equivalence class of tied channels is
//! one *segment channel*. A segment is [`Fixed`] (its order cannot change) when it holds a model
//! input or a grouped conv's output, when a grouped conv or a gather/slice/permute reads it, or
//! when its ties are not a one-to-one alignment of its spaces' channels.
//!
//! Invariant: for a segment that is not fixed, every space in it maps its channels one-to-one
//! onto the segment channels `0..channels`.

use super::provenance::{Origin, Provenance, SpaceId, SpaceKind};
use crate::ir::{Op, Program};
use petgraph::graph::NodeIndex;
use std::collections::BTreeMap;

/// Index into [`Segments::segments`].
pub type SegmentId = usize;

/// Why a segment's channel order cannot change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fixed {
    /// It holds a model input (the model's interface).
    Input,
    /// It holds a grouped conv's output, or a grouped conv reads it.
    Grouped,
    /// Its ties do not align its spaces' channels one to one (e.g. a channel broadcast).
    Irregular,
    /// A gather, slice or permute of the input program reads it (its indices name positions
    /// in the original order).
    LayoutOp,
}

impl Fixed {
    pub fn describe(self) -> &'static str {
        match self {
            Fixed::Input => "holds a model input",
            Fixed::Grouped => "tied to a grouped convolution",
            Fixed::Irregular => "channels tied irregularly (broadcast or misaligned)",
            Fixed::LayoutOp => "read by a gather, slice or permute",
        }
    }
}

/// What one consumer reads of one segment.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerRead {
    pub node: NodeIndex,
    /// Segment channels present in the consumer's input, in input order.
    pub read: Vec<usize>,
    /// Positions of those channels in the consumer's input (channel axis).
    pub positions: Vec<usize>,
    /// Segment channels the consumer keeps (sorted).
    pub kept: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// The spaces whose channels are tied, in creation order.
    pub spaces: Vec<SpaceId>,
    /// Number of segment channels.
    pub channels: usize,
    /// For each of `spaces`, the segment channel of each of its channels.
    pub class_of: Vec<Vec<usize>>,
    /// Channel-mixing consumers (conv2d with groups == 1, linear) that read the segment.
    pub consumers: Vec<ConsumerRead>,
    /// Model outputs whose tensor holds channels of the segment.
    pub outputs: Vec<NodeIndex>,
    pub fixed: Option<Fixed>,
}

#[derive(Debug, Clone)]
pub struct Segments {
    pub segments: Vec<Segment>,
    /// The segment of each space.
    pub of_space: Vec<SegmentId>,
    /// The index of each space in its segment's `spaces` (and `class_of`).
    pub slot_of_space: Vec<usize>,
}

impl Segments {
    /// The segment and segment channel of a channel, in constant time.
    pub fn locate(&self, origin: Origin) -> (SegmentId, usize) {
        locate(&self.segments, self, origin)
    }
}

struct UnionFind(Vec<usize>);

impl UnionFind {
    fn find(&mut self, mut x: usize) -> usize {
        while self.0[x] != x {
            self.0[x] = self.0[self.0[x]];
            x = self.0[x];
        }
        x
    }
    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.0[a.max(b)] = a.min(b);
        }
    }
}

/// Builds the segments of `program` from its provenance.
pub fn segment(program: &Program, prov: &Provenance) -> Segments {
    let mut offset = Vec::with_capacity(prov.spaces.len() + 1);
    offset.push(0);
    for s in &prov.spaces {
        offset.push(offset.last().unwrap() + s.channels);
    }
    let id = |o: Origin| offset[o.space] + o.channel;
    let mut channels = UnionFind((0..*offset.last().unwrap()).collect());
    let mut spaces = UnionFind((0..prov.spaces.len()).collect());
    for &(a, b) in &prov.ties {
        channels.union(id(a), id(b));
        spaces.union(a.space, b.space);
    }

    // Group spaces into segments (numbered by their first space).
    let mut segment_of_root: BTreeMap<usize, SegmentId> = BTreeMap::new();
    let mut of_space = Vec::with_capacity(prov.spaces.len());
    let mut slot_of_space = Vec::with_capacity(prov.spaces.len());
    let mut members: Vec<Vec<SpaceId>> = Vec::new();
    for s in 0..prov.spaces.len() {
        let root = spaces.find(s);
        let seg = *segment_of_root.entry(root).or_insert_with(|| {
            members.push(Vec::new());
            members.len() - 1
        });
        slot_of_space.push(members[seg].len());
        members[seg].push(s);
        of_space.push(seg);
    }

    let mut segments: Vec<Segment> = members
        .into_iter()
        .map(|spaces_in| {
            // Number the channel classes in order of first appearance.
            let mut class_ids: BTreeMap<usize, usize> = BTreeMap::new();
            let mut class_of = Vec::new();
            for &s in &spaces_in {
                let classes: Vec<usize> = (0..prov.spaces[s].channels)
                    .map(|c| {
                        let root = channels.find(offset[s] + c);
                        let next = class_ids.len();
                        *class_ids.entry(root).or_insert(next)
                    })
                    .collect();
                class_of.push(classes);
            }
            let count = class_ids.len();
            let one_to_one = class_of.iter().all(|classes| {
                let mut seen = vec![false; count];
                classes.len() == count
                    && classes
                        .iter()
                        .all(|&c| !std::mem::replace(&mut seen[c], true))
            });
            let fixed = if spaces_in
                .iter()
                .any(|&s| prov.spaces[s].kind == SpaceKind::Input)
            {
                Some(Fixed::Input)
            } else if spaces_in
                .iter()
                .any(|&s| prov.spaces[s].kind == SpaceKind::Grouped)
            {
                Some(Fixed::Grouped)
            } else if !one_to_one {
                Some(Fixed::Irregular)
            } else {
                None
            };
            Segment {
                spaces: spaces_in,
                channels: count,
                class_of,
                consumers: Vec::new(),
                outputs: Vec::new(),
                fixed,
            }
        })
        .collect();
    let mut result = Segments {
        segments: Vec::new(),
        of_space,
        slot_of_space,
    };

    // Consumers, grouped readers and outputs.
    for n in program.topo_order() {
        let node = &program.graph[n];
        let operands = program.operands(n);
        if matches!(
            node.op,
            Op::Gather { .. } | Op::Slice { .. } | Op::Permute { .. }
        ) {
            for &o in &prov.layout(operands[0]).origins {
                let (s, _) = locate(&segments, &result, o);
                segments[s].fixed.get_or_insert(Fixed::LayoutOp);
            }
            continue;
        }
        let mixing = node.op.is_channel_mixing();
        let grouped =
            matches!(&node.op, Op::Conv2d(c) if c.groups > 1) && prov.space_of(n).is_some();
        if !mixing && !grouped {
            continue;
        }
        let layout = prov.layout(operands[0]);
        let f = layout.features_per_channel;
        let mut reads: BTreeMap<SegmentId, ConsumerRead> = BTreeMap::new();
        for (pos, &o) in layout.origins.iter().enumerate() {
            let (s, class) = locate(&segments, &result, o);
            if grouped {
                segments[s].fixed.get_or_insert(Fixed::Grouped);
                continue;
            }
            let kept = match &node.keep_in {
                None => true,
                // A flattened channel is kept if any of its features is.
                Some(k) => {
                    (pos * f..(pos + 1) * f).any(|feature| k.binary_search(&feature).is_ok())
                }
            };
            let read = reads.entry(s).or_insert_with(|| ConsumerRead {
                node: n,
                read: Vec::new(),
                positions: Vec::new(),
                kept: Vec::new(),
            });
            read.read.push(class);
            read.positions.push(pos);
            if kept {
                read.kept.push(class);
            }
        }
        for (s, mut read) in reads {
            read.kept.sort_unstable();
            read.kept.dedup();
            segments[s].consumers.push(read);
        }
    }
    for &out in &program.outputs {
        let mut touched: Vec<SegmentId> = prov
            .layout(out)
            .origins
            .iter()
            .map(|&o| locate(&segments, &result, o).0)
            .collect();
        touched.sort_unstable();
        touched.dedup();
        for s in touched {
            if !segments[s].outputs.contains(&out) {
                segments[s].outputs.push(out);
            }
        }
    }
    result.segments = segments;
    result
}

/// `segments` is passed apart from `index` while the segments are being built.
fn locate(segments: &[Segment], index: &Segments, origin: Origin) -> (SegmentId, usize) {
    let s = index.of_space[origin.space];
    let k = index.slot_of_space[origin.space];
    (s, segments[s].class_of[k][origin.channel])
}
