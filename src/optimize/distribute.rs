//! Selections distributed over concat: where a consumer reads a concat through a private chain
//! of per-channel ops (DenseNet's concat -> batch_norm -> relu -> conv1), its selection can be
//! made of each concatenated block before the concat instead of after it.
//!
//! A [`Chain`] is that structure: a concat of at most [`MAX_BLOCKS`] distinct tensors, zero or
//! more batch norms and activations, then a channel-mixing consumer, where the concat and every
//! op in between have exactly one use and are not model outputs, and none carries a mask.
//! Selecting before the concat is then exact: the concat and the ops in between compute only
//! the selected channels, which no one else sees. Each block's part of the selection is a read of that block's own tensor, contiguous
//! when its segment's order makes it so, whatever the other blocks do; a read of the concat as
//! a whole is contiguous only when the blocks in the middle are kept whole, which a read
//! spanning three or more differently pruned blocks almost never is. Whether a chain is
//! distributed is the read planner's choice, by cost: the e-graph holds the chain's ops and
//! concat ([`crate::egraph::ConcatSource`]) and its rules move the selection in front of
//! them ([`crate::egraph::rules::distribution`]); the plan only lets the ordering solver make
//! each block's part contiguous on its own ([`super::plan`]).

use crate::ir::{Op, Program};
use petgraph::graph::NodeIndex;
use petgraph::Direction;
use std::collections::HashMap;

/// The most tensors a distributed concat joins (DenseNet-264's widest dense layer joins 65).
/// Extraction's work grows with the square of a concat's parts; a wider concat is read as
/// one tensor.
pub const MAX_BLOCKS: usize = 256;

/// A concat read by one consumer through single-use per-channel ops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub concat: NodeIndex,
    /// The per-channel ops between the concat and the consumer, in order.
    pub between: Vec<NodeIndex>,
}

/// The chains of `program`, by consumer.
pub fn chains(program: &Program) -> HashMap<NodeIndex, Chain> {
    let single_use = |n: NodeIndex| {
        program.graph.edges_directed(n, Direction::Outgoing).count() == 1
            && !program.outputs.contains(&n)
            && program.graph[n].keep_in.is_none()
            && program.graph[n].keep_out.is_none()
    };
    let mut chains = HashMap::new();
    for consumer in program.graph.node_indices() {
        if !program.graph[consumer].op.is_channel_mixing() {
            continue;
        }
        let mut between = Vec::new();
        let mut at = program.operands(consumer)[0];
        loop {
            if !single_use(at) {
                break;
            }
            match program.graph[at].op {
                Op::Concat if distributable(&program.operands(at)) => {
                    between.reverse();
                    chains.insert(
                        consumer,
                        Chain {
                            concat: at,
                            between,
                        },
                    );
                    break;
                }
                Op::BatchNorm { .. } | Op::Activation(_) => {
                    between.push(at);
                    at = program.operands(at)[0];
                }
                _ => break,
            }
        }
    }
    chains
}

/// Distinct operands, and few enough of them.
fn distributable(operands: &[NodeIndex]) -> bool {
    if operands.len() > MAX_BLOCKS {
        return false;
    }
    let mut sorted = operands.to_vec();
    sorted.sort_unstable();
    sorted.windows(2).all(|w| w[0] != w[1])
}
