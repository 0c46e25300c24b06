//! The graph IR: a checked, shape-annotated program in a petgraph graph.
//!
//! Invariants of a [`Program`] (established by [`lower`], kept by every later pass):
//! the graph is acyclic; edges run from an operand to its user and carry the operand's
//! position; every node's `shape` is the result of [`ops::infer_shape`] on its operands and
//! params; masks are strictly ascending, non-empty and in range, and only on channel-mixing ops
//! (conv2d with groups == 1, linear).

mod lower;
pub mod ops;

pub use lower::{lower, Lowered};
pub use ops::{Activation, Conv2d, Op, Pool2d, Shape};

use crate::diag::Span;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction;

/// Index of a parameter in [`Program::params`].
pub type ParamId = usize;

/// One value of the program: a model input or an op application.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// SSA name, without `%`.
    pub name: String,
    pub op: Op,
    /// Parameter operands, in order (e.g. conv2d: weight, then bias if present).
    pub params: Vec<ParamId>,
    /// Output shape.
    pub shape: Shape,
    /// Input channels (or linear input features) a consumer keeps.
    pub keep_in: Option<Vec<usize>>,
    /// Output channels a producer keeps.
    pub keep_out: Option<Vec<usize>>,
    /// The defining statement (or input declaration) in the source.
    pub span: Span,
}

/// Where a parameter's data comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamInit {
    /// Bound by name to the `weights` file (or seeded random data).
    File,
    /// Given inline, row-major.
    Inline(Vec<f64>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// Name without `@`; also its tensor name in the weights file.
    pub name: String,
    pub shape: Vec<usize>,
    pub init: ParamInit,
    pub span: Span,
}

/// A lowered `.nnir` model.
#[derive(Debug, Clone)]
pub struct Program {
    pub name: String,
    pub graph: DiGraph<Node, usize>,
    pub inputs: Vec<NodeIndex>,
    pub outputs: Vec<NodeIndex>,
    pub params: Vec<Param>,
    /// The `weights "..."` path as written, with its span.
    pub weights_file: Option<(String, Span)>,
}

impl Program {
    /// Drops every `keep_in` and `keep_out` mask: the unpruned program (`nnirc run --no-masks`).
    pub fn clear_masks(&mut self) {
        for node in self.graph.node_weights_mut() {
            node.keep_in = None;
            node.keep_out = None;
        }
    }

    /// The value operands of `node`, in position order.
    pub fn operands(&self, node: NodeIndex) -> Vec<NodeIndex> {
        let mut edges: Vec<(usize, NodeIndex)> = self
            .graph
            .edges_directed(node, Direction::Incoming)
            .map(|e| (*e.weight(), e.source()))
            .collect();
        edges.sort_unstable();
        edges.into_iter().map(|(_, n)| n).collect()
    }

    /// The nodes that read `node` (each once, in index order).
    pub fn users(&self, node: NodeIndex) -> Vec<NodeIndex> {
        let mut users: Vec<NodeIndex> = self
            .graph
            .neighbors_directed(node, Direction::Outgoing)
            .collect();
        users.sort_unstable();
        users.dedup();
        users
    }

    /// All nodes, operands before users (ties in index order, so the order is deterministic).
    pub fn topo_order(&self) -> Vec<NodeIndex> {
        let mut indegree: Vec<usize> = self
            .graph
            .node_indices()
            .map(|n| self.graph.edges_directed(n, Direction::Incoming).count())
            .collect();
        let mut ready: std::collections::BTreeSet<NodeIndex> = self
            .graph
            .node_indices()
            .filter(|n| indegree[n.index()] == 0)
            .collect();
        let mut order = Vec::with_capacity(indegree.len());
        while let Some(n) = ready.pop_first() {
            order.push(n);
            for e in self.graph.edges_directed(n, Direction::Outgoing) {
                let t = e.target();
                indegree[t.index()] -= 1;
                if indegree[t.index()] == 0 {
                    ready.insert(t);
                }
            }
        }
        assert_eq!(
            order.len(),
            self.graph.node_count(),
            "Program invariant: the graph is acyclic"
        );
        order
    }

    /// Whether `node` is a depthwise conv2d (groups == input channels == output channels):
    /// output channel `c` filters input channel `c` alone.
    pub fn is_depthwise(&self, node: NodeIndex) -> bool {
        let n = &self.graph[node];
        let Op::Conv2d(c) = &n.op else {
            return false;
        };
        let cin = self.graph[self.operands(node)[0]].shape[1];
        c.groups > 1 && c.groups == cin && n.shape[1] == cin
    }

    /// Looks a node up by its SSA name.
    pub fn node_by_name(&self, name: &str) -> Option<NodeIndex> {
        self.graph
            .node_indices()
            .find(|&n| self.graph[n].name == name)
    }

    /// The shapes of `node`'s params, in order.
    pub fn param_shapes(&self, node: NodeIndex) -> Vec<&[usize]> {
        self.graph[node]
            .params
            .iter()
            .map(|&p| self.params[p].shape.as_slice())
            .collect()
    }
}
