//! Channel provenance: for each tensor, the (space, channel) each of its channels comes from.
//!
//! A *space* is a set of channels created by one node: a producer (conv2d with groups == 1,
//! linear), a model input, or a grouped conv2d (its output order is tied to its groups).
//! Per-channel ops (batch norm, activations, depthwise conv, pooling, dropout) carry their
//! input's layout; concat joins layouts block by block; gather, slice and permute select from
//! theirs; flatten keeps the channels and multiplies the features per channel by H*W. Element-
//! wise add and mul take the layout of their full-channel operand and *tie* the channels they
//! combine ([`Provenance::ties`]), which is what makes producers share an order.
//!
//! Invariant: `layouts[n].origins.len()` equals the channel count (`shape[1]`) of node `n`,
//! or, after flatten, `shape[1] / features_per_channel`.

use crate::ir::{Op, Program};
use petgraph::graph::NodeIndex;

/// Index into [`Provenance::spaces`].
pub type SpaceId = usize;

/// Why a node creates channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpaceKind {
    /// conv2d with groups == 1 or linear: rows can be cut and permuted freely.
    Producer,
    /// A model input: its layout is the model's interface.
    Input,
    /// A grouped (non-depthwise) conv2d or a depthwise conv2d with a channel multiplier: its
    /// output order is tied to its groups.
    Grouped,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Space {
    pub node: NodeIndex,
    pub channels: usize,
    pub kind: SpaceKind,
}

/// Where one channel of a tensor comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    pub space: SpaceId,
    pub channel: usize,
}

/// The channel layout of one tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// One origin per channel, in tensor order.
    pub origins: Vec<Origin>,
    /// Features per channel: 1 for NCHW tensors, H*W after flatten.
    pub features_per_channel: usize,
}

#[derive(Debug, Clone)]
pub struct Provenance {
    pub spaces: Vec<Space>,
    /// Indexed by `NodeIndex::index()`.
    pub layouts: Vec<Layout>,
    /// Channel pairs combined element-wise by add or mul (they must stay aligned).
    pub ties: Vec<(Origin, Origin)>,
    /// The space each node creates, indexed by `NodeIndex::index()`.
    space_of_node: Vec<Option<SpaceId>>,
}

impl Provenance {
    pub fn layout(&self, node: NodeIndex) -> &Layout {
        &self.layouts[node.index()]
    }

    /// The space a node creates, if it creates one.
    pub fn space_of(&self, node: NodeIndex) -> Option<SpaceId> {
        self.space_of_node[node.index()]
    }
}

/// Computes the provenance of every tensor of `program`.
pub fn provenance(program: &Program) -> Provenance {
    let mut spaces: Vec<Space> = Vec::new();
    let mut layouts: Vec<Option<Layout>> = vec![None; program.graph.node_count()];
    let mut ties = Vec::new();
    let new_space = |spaces: &mut Vec<Space>, node: NodeIndex, channels: usize, kind: SpaceKind| {
        spaces.push(Space {
            node,
            channels,
            kind,
        });
        let space = spaces.len() - 1;
        Layout {
            origins: (0..channels)
                .map(|channel| Origin { space, channel })
                .collect(),
            features_per_channel: 1,
        }
    };
    for n in program.topo_order() {
        let node = &program.graph[n];
        let operands = program.operands(n);
        let input = |i: usize| {
            layouts[operands[i].index()]
                .as_ref()
                .expect("operands come first")
        };
        let channels = node.shape[1];
        let layout = match &node.op {
            Op::Input => new_space(&mut spaces, n, channels, SpaceKind::Input),
            Op::Linear => new_space(&mut spaces, n, channels, SpaceKind::Producer),
            Op::Conv2d(c) if c.groups == 1 => {
                new_space(&mut spaces, n, channels, SpaceKind::Producer)
            }
            Op::Conv2d(_) if program.is_depthwise(n) => input(0).clone(),
            Op::Conv2d(_) => new_space(&mut spaces, n, channels, SpaceKind::Grouped),
            Op::BatchNorm { .. }
            | Op::Activation(_)
            | Op::Dropout { .. }
            | Op::MaxPool2d(_)
            | Op::AvgPool2d(_)
            | Op::GlobalAvgPool
            | Op::AdaptiveAvgPool => input(0).clone(),
            Op::Add | Op::Mul => {
                let (a, b) = (input(0), input(1));
                // Operands counted in different units (a flattened map and a linear output)
                // are compared feature by feature.
                let (a, b) = if a.features_per_channel == b.features_per_channel {
                    (a.clone(), b.clone())
                } else {
                    (per_feature(a), per_feature(b))
                };
                let (a, b) = (&a, &b);
                // The result's layout is the full-channel operand's; a broadcast channel ties
                // to every channel.
                let (full, other) = if a.origins.len() >= b.origins.len() {
                    (a, b)
                } else {
                    (b, a)
                };
                for (i, &o) in full.origins.iter().enumerate() {
                    let partner = other.origins[if other.origins.len() == 1 { 0 } else { i }];
                    if partner != o {
                        ties.push((o, partner));
                    }
                }
                full.clone()
            }
            Op::Concat => {
                // Blocks with different features per channel (flattened maps of different
                // sizes, linear outputs) are joined feature by feature.
                let per = input(0).features_per_channel;
                if (0..operands.len()).all(|i| input(i).features_per_channel == per) {
                    Layout {
                        origins: (0..operands.len())
                            .flat_map(|i| input(i).origins.iter().copied())
                            .collect(),
                        features_per_channel: per,
                    }
                } else {
                    Layout {
                        origins: (0..operands.len())
                            .flat_map(|i| per_feature(input(i)).origins)
                            .collect(),
                        features_per_channel: 1,
                    }
                }
            }
            Op::Flatten => {
                let x = &program.graph[operands[0]].shape;
                Layout {
                    origins: input(0).origins.clone(),
                    features_per_channel: input(0).features_per_channel
                        * x[2..].iter().product::<usize>(),
                }
            }
            Op::Gather { indices } | Op::Permute { order: indices } => {
                select(input(0), indices.iter().copied())
            }
            Op::Slice { start, end } => select(input(0), *start..*end),
        };
        layouts[n.index()] = Some(layout);
    }
    let mut space_of_node = vec![None; program.graph.node_count()];
    for (id, s) in spaces.iter().enumerate() {
        space_of_node[s.node.index()] = Some(id);
    }
    Provenance {
        spaces,
        layouts: layouts
            .into_iter()
            .map(|l| l.expect("every node visited"))
            .collect(),
        ties,
        space_of_node,
    }
}

/// Channel selection on a tensor (channels of rank-2 tensors are features; selecting part of a
/// flattened channel keeps the channel's origin once per selected feature group).
fn select(layout: &Layout, indices: impl Iterator<Item = usize>) -> Layout {
    let f = layout.features_per_channel;
    if f == 1 {
        return Layout {
            origins: indices.map(|i| layout.origins[i]).collect(),
            features_per_channel: 1,
        };
    }
    // Selecting features of a flattened tensor: the result is no longer channel-structured;
    // keep one origin per selected feature.
    Layout {
        origins: indices.map(|i| layout.origins[i / f]).collect(),
        features_per_channel: 1,
    }
}

/// The same layout counted feature by feature (each channel's origin repeated per feature).
fn per_feature(layout: &Layout) -> Layout {
    let f = layout.features_per_channel;
    Layout {
        origins: layout
            .origins
            .iter()
            .flat_map(|&o| std::iter::repeat_n(o, f))
            .collect(),
        features_per_channel: 1,
    }
}
