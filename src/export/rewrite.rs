//! Rewriting: build the exported graph and weights from a [`Plan`].
//!
//! Every tensor gets a *new layout*: the old positions (entries of axis 1) it keeps, in their
//! new order. Producers take their own segment's order; per-channel ops, add and mul carry
//! their input's; concat joins its inputs' layouts; flatten expands channels to features.
//! A channel-mixing consumer then reads the positions it keeps: its whole input, a `slice`, or a
//! `gather` inserted in front of it, with its weight columns selected to match. Weights are
//! taken from the masked program ([`crate::interp::node_params`]), so pruned slices are zero
//! wherever they survive. The new graph is built from scratch (a patch, not an edit).

use super::plan::Plan;
use super::{ExportConfig, ExportError, Mode};
use crate::egraph::{plan_reads, PlanReport, ReadChoice, ReadRequest};
use crate::ir::ops::infer_shape;
use crate::ir::{Activation, Node, Op, Param, ParamInit, Program};
use crate::weights::Weights;
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::{HashMap, HashSet};

/// How a consumer reads its input in the exported program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadKind {
    /// The whole tensor, directly.
    Full,
    /// A contiguous range (a view in eager runtimes, a copy in graph runtimes).
    Slice,
    /// A gather (always a copy).
    Gather,
}

/// One consumer's read: which node (in the original program), how, and the bytes the slice or
/// gather produces per inference (f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    pub consumer: NodeIndex,
    pub kind: ReadKind,
    pub bytes: u64,
}

/// A new parameter: its shape and row-major data.
type Tensor = (Vec<usize>, Vec<f64>);

/// Builds the exported program and its weights.
pub fn rewrite(
    program: &Program,
    weights: &Weights,
    plan: &Plan,
    config: &ExportConfig,
) -> Result<(Program, Weights, Vec<Read>, Option<PlanReport>), ExportError> {
    let layouts = new_layouts(program, plan);
    let (choices, read_plan) = plan_all_reads(program, plan, &layouts, config);
    let mut out = Builder {
        graph: DiGraph::new(),
        params: Vec::new(),
        tensors: Vec::new(),
        names: HashSet::new(),
        param_names: HashSet::new(),
        reads: Vec::new(),
        choices,
        shared: HashMap::new(),
    };
    for n in program.graph.node_indices() {
        out.names.insert(program.graph[n].name.clone());
    }
    let mut map: Vec<Option<NodeIndex>> = vec![None; program.graph.node_count()];
    for n in program.topo_order() {
        let node = &program.graph[n];
        let operands = program.operands(n);
        let layout = &layouts[n.index()];
        let masked = crate::interp::node_params::<f64>(program, n, weights);
        let removed = |pos: usize| plan.removed[n.index()].as_ref().is_some_and(|f| f[pos]);
        let mut inputs: Vec<NodeIndex> = operands
            .iter()
            .map(|o| map[o.index()].expect("operands first"))
            .collect();
        let (op, params): (Op, Vec<Tensor>) = match &node.op {
            Op::Input => (Op::Input, Vec::new()),
            _ if node.op.is_channel_mixing() => {
                // conv2d with groups == 1 or linear: rows follow the output's layout, columns
                // what the planned read delivers.
                let (read, columns) = out.read(program, &layouts, n, operands[0], inputs[0])?;
                inputs[0] = read;
                let shape = &program.params[node.params[0]].shape;
                let mut params = vec![select_matrix(&masked[0], shape, layout, &columns)];
                if let Some(b) = masked.get(1) {
                    params.push((vec![layout.len()], layout.iter().map(|&o| b[o]).collect()));
                }
                (node.op.clone(), params)
            }
            Op::Conv2d(c) if program.is_depthwise(n) => {
                // One filter per channel: rows follow the channels; removed channels stay zero.
                let shape = &program.params[node.params[0]].shape;
                let inner: usize = shape[1..].iter().product();
                let w: Vec<f64> = layout
                    .iter()
                    .flat_map(|&p| {
                        let row = &masked[0][p * inner..(p + 1) * inner];
                        row.iter().map(move |&v| if removed(p) { 0.0 } else { v })
                    })
                    .collect();
                let mut params = vec![([vec![layout.len()], shape[1..].to_vec()].concat(), w)];
                if let Some(b) = masked.get(1) {
                    params.push((
                        vec![layout.len()],
                        layout
                            .iter()
                            .map(|&p| if removed(p) { 0.0 } else { b[p] })
                            .collect(),
                    ));
                }
                let mut conv = c.clone();
                conv.groups = layout.len();
                (Op::Conv2d(conv), params)
            }
            Op::Conv2d(_) => {
                // Grouped: its segments are fixed, so its input and output keep every channel.
                let params = node
                    .params
                    .iter()
                    .zip(&masked)
                    .map(|(&p, t)| (program.params[p].shape.clone(), t.clone()))
                    .collect();
                (node.op.clone(), params)
            }
            Op::BatchNorm { .. } => {
                // A removed channel must stay zero: scale and shift become zero there.
                let params = masked
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        let neutral = if i == 3 { 1.0 } else { 0.0 };
                        (
                            vec![layout.len()],
                            layout
                                .iter()
                                .map(|&p| if removed(p) { neutral } else { t[p] })
                                .collect(),
                        )
                    })
                    .collect();
                (node.op.clone(), params)
            }
            Op::Activation(a @ (Activation::Sigmoid | Activation::HardSigmoid)) => {
                if layout.iter().any(|&p| removed(p)) {
                    return Err(ExportError(format!(
                        "%{}: {} of a channel removed by keep_out is not zero; export supports \
                         keep_out only where the removed channel reaches no sigmoid",
                        node.name,
                        Op::Activation(*a).name()
                    )));
                }
                (node.op.clone(), Vec::new())
            }
            Op::Gather { indices } | Op::Permute { order: indices } => {
                let from = &layouts[operands[0].index()];
                (
                    select_op(layout.iter().map(|&j| position(from, indices[j])).collect()),
                    Vec::new(),
                )
            }
            Op::Slice { start, .. } => {
                let from = &layouts[operands[0].index()];
                (
                    select_op(layout.iter().map(|&j| position(from, start + j)).collect()),
                    Vec::new(),
                )
            }
            _ => (node.op.clone(), Vec::new()),
        };
        let new = out.add(program, node, op, params, &inputs)?;
        map[n.index()] = Some(new);
    }
    let program = Program {
        name: program.name.clone(),
        inputs: program
            .inputs
            .iter()
            .map(|n| map[n.index()].expect("mapped"))
            .collect(),
        outputs: program
            .outputs
            .iter()
            .map(|n| map[n.index()].expect("mapped"))
            .collect(),
        graph: out.graph,
        params: out.params,
        weights_file: None,
    };
    Ok((
        program,
        Weights {
            tensors: out.tensors,
        },
        out.reads,
        read_plan,
    ))
}

/// The input positions (in the input's new layout) a consumer keeps: kept by its mask, live,
/// and not removed.
fn wanted(program: &Program, plan: &Plan, layouts: &[Vec<usize>], n: NodeIndex) -> Vec<usize> {
    let node = &program.graph[n];
    let input = program.operands(n)[0];
    let layout = &layouts[input.index()];
    let removed = plan.removed[input.index()].as_ref();
    (0..layout.len())
        .filter(|&j| {
            let p = layout[j];
            node.keep_in
                .as_ref()
                .is_none_or(|k| k.binary_search(&p).is_ok())
                && removed.is_none_or(|f| !f[p])
        })
        .collect()
}

/// How every channel-mixing consumer reads its input: planned on the e-graph under the cost
/// model in upscale mode, the naive read otherwise; slices widened to the channel alignment.
fn plan_all_reads(
    program: &Program,
    plan: &Plan,
    layouts: &[Vec<usize>],
    config: &ExportConfig,
) -> (HashMap<NodeIndex, ReadChoice>, Option<PlanReport>) {
    let mut consumers = Vec::new();
    let mut requests = Vec::new();
    for n in program.topo_order() {
        let node = &program.graph[n];
        if !node.op.is_channel_mixing() {
            continue;
        }
        let keep = wanted(program, plan, layouts, n);
        if keep.is_empty() {
            continue;
        }
        let input = program.operands(n)[0];
        let s = &program.graph[input].shape;
        let kernel: usize = program.params[node.params[0]].shape[2..].iter().product();
        let out_area: usize = node.shape[0] * node.shape[2..].iter().product::<usize>();
        requests.push(ReadRequest {
            tensor: input.index(),
            channels: layouts[input.index()].len(),
            keep,
            bytes_per_channel: (s[0] * s[2..].iter().product::<usize>() * 4) as u64,
            macs_per_channel: (layouts[n.index()].len() * kernel * out_area) as u64,
        });
        consumers.push(n);
    }
    let (choices, report) = match config.mode {
        Mode::Upscale => {
            let (choices, report) = plan_reads(&requests, &*config.model(), &config.read_limits);
            (choices, Some(report))
        }
        Mode::Naive => (requests.iter().map(ReadChoice::naive).collect(), None),
    };
    let choices =
        choices
            .into_iter()
            .zip(&requests)
            .map(|(choice, r)| match config.channel_align {
                0 | 1 => choice,
                align => choice.aligned(r.channels, align),
            });
    (consumers.into_iter().zip(choices).collect(), report)
}

/// The index of old position `p` in a new layout (present by construction: whatever a live
/// channel depends on is live).
fn position(layout: &[usize], p: usize) -> usize {
    layout
        .iter()
        .position(|&x| x == p)
        .expect("a selected channel is live in its input")
}

/// `slice` for an ascending run, `gather` otherwise.
fn select_op(indices: Vec<usize>) -> Op {
    match (indices.first(), indices.last()) {
        (Some(&a), Some(&b)) if indices.windows(2).all(|w| w[1] == w[0] + 1) => Op::Slice {
            start: a,
            end: b + 1,
        },
        _ => Op::Gather { indices },
    }
}

/// Rows `rows` and columns `columns` (`None`: a zero column) of a `[O, C, rest...]` weight.
fn select_matrix(w: &[f64], shape: &[usize], rows: &[usize], columns: &[Option<usize>]) -> Tensor {
    let (cin, inner) = (shape[1], shape[2..].iter().product::<usize>());
    let mut data = Vec::with_capacity(rows.len() * columns.len() * inner);
    for &o in rows {
        for c in columns {
            match c {
                Some(c) => {
                    data.extend_from_slice(&w[(o * cin + c) * inner..(o * cin + c + 1) * inner])
                }
                None => data.extend(std::iter::repeat_n(0.0, inner)),
            }
        }
    }
    let mut new_shape = vec![rows.len(), columns.len()];
    new_shape.extend_from_slice(&shape[2..]);
    (new_shape, data)
}

/// The new layout of every node: old axis-1 positions in their new order.
fn new_layouts(program: &Program, plan: &Plan) -> Vec<Vec<usize>> {
    let prov = &plan.provenance;
    let mut layouts: Vec<Vec<usize>> = vec![Vec::new(); program.graph.node_count()];
    for n in program.topo_order() {
        let node = &program.graph[n];
        let operands = program.operands(n);
        let input = |i: usize| layouts[operands[i].index()].clone();
        let layout = match &node.op {
            _ if prov.space_of(n).is_some() => {
                // A space: its segment's order (all channels, in order, if the segment is fixed).
                let origins = &prov.layout(n).origins;
                let mut ranked: Vec<(usize, usize)> = origins
                    .iter()
                    .enumerate()
                    .filter_map(|(p, &o)| {
                        let (s, class) = plan.segments.locate(o);
                        if plan.plans[s].free {
                            plan.rank[s][class].map(|r| (r, p))
                        } else {
                            Some((p, p))
                        }
                    })
                    .collect();
                ranked.sort_unstable();
                ranked.into_iter().map(|(_, p)| p).collect()
            }
            Op::Add | Op::Mul => {
                let (a, b) = (
                    &program.graph[operands[0]].shape,
                    &program.graph[operands[1]].shape,
                );
                input(if a[1] >= b[1] { 0 } else { 1 })
            }
            Op::Concat => {
                let mut offset = 0;
                let mut joined = Vec::new();
                for (i, o) in operands.iter().enumerate() {
                    joined.extend(input(i).iter().map(|p| p + offset));
                    offset += program.graph[*o].shape[1];
                }
                joined
            }
            Op::Flatten => {
                let per: usize = program.graph[operands[0]].shape[2..].iter().product();
                input(0)
                    .iter()
                    .flat_map(|&p| p * per..(p + 1) * per)
                    .collect()
            }
            Op::Gather { indices } | Op::Permute { order: indices } => {
                let from = input(0);
                (0..indices.len())
                    .filter(|&j| from.contains(&indices[j]))
                    .collect()
            }
            Op::Slice { start, end } => {
                let from = input(0);
                (0..end - start)
                    .filter(|&j| from.contains(&(start + j)))
                    .collect()
            }
            _ => input(0), // per-channel ops carry their input's layout
        };
        layouts[n.index()] = layout;
    }
    layouts
}

struct Builder {
    graph: DiGraph<Node, usize>,
    params: Vec<Param>,
    tensors: Vec<Vec<f64>>,
    names: HashSet<String>,
    param_names: HashSet<String>,
    reads: Vec<Read>,
    /// The planned read of each consumer.
    choices: HashMap<NodeIndex, ReadChoice>,
    /// Selection nodes already built, by (tensor, op): consumers that select the same
    /// channels of the same tensor share one.
    shared: HashMap<(NodeIndex, String), NodeIndex>,
}

impl Builder {
    /// A fresh value or parameter name derived from `base`.
    fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut i = 1;
        while !self.names.insert(name.clone()) {
            name = format!("{base}.{i}");
            i += 1;
        }
        name
    }

    fn add(
        &mut self,
        program: &Program,
        old: &Node,
        op: Op,
        params: Vec<Tensor>,
        inputs: &[NodeIndex],
    ) -> Result<NodeIndex, ExportError> {
        let mut ids = Vec::new();
        for ((shape, data), &old_id) in params.into_iter().zip(&old.params) {
            // A parameter shared by several nodes gets one copy per node (their cuts differ).
            let base = &program.params[old_id].name;
            let mut name = base.clone();
            let mut i = 1;
            while !self.param_names.insert(name.clone()) {
                name = format!("{base}.{i}");
                i += 1;
            }
            ids.push(self.params.len());
            self.params.push(Param {
                name,
                shape,
                init: ParamInit::File,
                span: 0..0,
            });
            self.tensors.push(data);
        }
        if op == Op::Input {
            let id = self.graph.add_node(Node {
                op,
                params: ids,
                keep_in: None,
                keep_out: None,
                ..old.clone()
            });
            return Ok(id);
        }
        self.node(old.name.clone(), op, ids, inputs, old.span.clone())
    }

    fn node(
        &mut self,
        name: String,
        op: Op,
        params: Vec<usize>,
        inputs: &[NodeIndex],
        span: crate::diag::Span,
    ) -> Result<NodeIndex, ExportError> {
        let input_shapes: Vec<&[usize]> = inputs
            .iter()
            .map(|&i| self.graph[i].shape.as_slice())
            .collect();
        let param_shapes: Vec<&[usize]> = params
            .iter()
            .map(|&p| self.params[p].shape.as_slice())
            .collect();
        let shape = infer_shape(&op, &input_shapes, &param_shapes).map_err(|e| {
            ExportError(format!(
                "internal error: the exported %{name} does not check: {}",
                e.message
            ))
        })?;
        let id = self.graph.add_node(Node {
            name,
            op,
            params,
            shape,
            keep_in: None,
            keep_out: None,
            span,
        });
        for (pos, &i) in inputs.iter().enumerate() {
            self.graph.add_edge(i, id, pos);
        }
        Ok(id)
    }

    /// How consumer `n` reads its input `old_input` (now `new_input`): the node it reads from
    /// (the input itself, or an inserted slice or gather) and, per column it sees, the old
    /// input position (`None`: a zero column, when it keeps nothing live).
    fn read(
        &mut self,
        program: &Program,
        layouts: &[Vec<usize>],
        n: NodeIndex,
        old_input: NodeIndex,
        new_input: NodeIndex,
    ) -> Result<(NodeIndex, Vec<Option<usize>>), ExportError> {
        let node = &program.graph[n];
        let layout = &layouts[old_input.index()];
        let Some(choice) = self.choices.get(&n).cloned() else {
            // Nothing live is kept: read one channel through zero weights.
            let slice = self.select(node, Op::Slice { start: 0, end: 1 }, new_input)?;
            self.record(n, ReadKind::Slice, slice);
            return Ok((slice, vec![None]));
        };
        let zero = choice.zero_columns();
        let positions = choice.read(layout.len());
        let columns = positions
            .iter()
            .enumerate()
            .map(|(j, &p)| zero.binary_search(&j).is_err().then(|| layout[p]))
            .collect();
        let (read, kind) = match choice {
            ReadChoice::Full { .. } => {
                self.reads.push(Read {
                    consumer: n,
                    kind: ReadKind::Full,
                    bytes: 0,
                });
                return Ok((new_input, columns));
            }
            ReadChoice::Slice { start, end, .. } => (
                self.select(node, Op::Slice { start, end }, new_input)?,
                ReadKind::Slice,
            ),
            ReadChoice::Gather { indices } => (
                self.select(node, Op::Gather { indices }, new_input)?,
                ReadKind::Gather,
            ),
        };
        self.record(n, kind, read);
        Ok((read, columns))
    }

    fn record(&mut self, consumer: NodeIndex, kind: ReadKind, read: NodeIndex) {
        let bytes = self.graph[read].shape.iter().product::<usize>() as u64 * 4;
        self.reads.push(Read {
            consumer,
            kind,
            bytes,
        });
    }

    /// A slice or gather of `input` in front of `consumer`, shared with earlier consumers that
    /// select the same channels.
    fn select(
        &mut self,
        consumer: &Node,
        op: Op,
        input: NodeIndex,
    ) -> Result<NodeIndex, ExportError> {
        let key = (input, format!("{op:?}"));
        if let Some(&node) = self.shared.get(&key) {
            return Ok(node);
        }
        let name = self.fresh(&format!("{}.in", consumer.name));
        let node = self.node(name, op, Vec::new(), &[input], consumer.span.clone())?;
        self.shared.insert(key, node);
        Ok(node)
    }
}
