//! Rewriting: build the exported graph and weights from a [`Plan`].
//!
//! Every tensor gets a *new layout*: the old positions (entries of axis 1) it keeps, in their
//! new order. Producers take their own segment's order; per-channel ops, add and mul carry
//! their input's; concat joins its inputs' layouts; flatten expands channels to features.
//! A channel-mixing consumer then reads the positions it keeps: its whole input, a `slice`, or a
//! `gather` inserted in front of it, with its weight columns selected to match. No weight is
//! touched here: each new parameter gets a [`Cut`] saying which rows and columns of which old
//! parameter it takes, with the masked program's zeros (dropped `keep_in` columns, dropped
//! `keep_out` rows, removed channels) as empty positions; [`cut`](super::cut) copies them once.
//! The new graph is built from scratch (a patch, not an edit).

use super::cut::{Cut, Source};
use super::plan::Plan;
use super::{OptimizeConfig, OptimizeError};
use crate::egraph::{
    plan_reads_cached, ConcatSource, PlanReport, ReadCache, ReadChoice, ReadRequest,
};
use crate::ir::ops::infer_shape;
use crate::ir::{Activation, Conv2d, Node, Op, Param, ParamInit, Program};
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

/// One consumer's read of one tensor: which consumer and which tensor (nodes of the original
/// program), how, and the bytes the slice or gather produces per inference (f32). A consumer
/// whose selection is distributed over a concat has one read per concatenated block it keeps
/// something of (the tensor is the block), and none of the concat itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    pub consumer: NodeIndex,
    pub tensor: NodeIndex,
    pub kind: ReadKind,
    pub bytes: u64,
}

/// A new parameter: its shape and how it is cut from an old one.
type NewParam = (Vec<usize>, Cut);

/// The optimized program without its weights: the cuts that make them, how each consumer
/// reads, and the read planner's report.
#[derive(Debug, Clone)]
pub struct Rewritten {
    pub program: Program,
    /// One per parameter of `program`, in order.
    pub cuts: Vec<Cut>,
    pub reads: Vec<Read>,
    pub read_plan: Option<PlanReport>,
    /// Milliseconds spent planning reads on the e-graph.
    pub egraph_ms: f64,
}

/// Builds the optimized program and the cuts of its weights.
pub fn rewrite(
    program: &Program,
    plan: &Plan,
    config: &OptimizeConfig,
) -> Result<Rewritten, OptimizeError> {
    rewrite_reading(
        program,
        plan,
        config,
        &HashSet::new(),
        &mut ReadCache::default(),
    )
}

/// [`rewrite`], with the consumers in `full_reads` reading their whole input (zero weight
/// columns for every position they do not keep) whatever the read planner chose, and the
/// read plans of tensors seen before taken from `cache` (one per `config`).
pub fn rewrite_reading(
    program: &Program,
    plan: &Plan,
    config: &OptimizeConfig,
    full_reads: &HashSet<NodeIndex>,
    cache: &mut ReadCache,
) -> Result<Rewritten, OptimizeError> {
    let mut layouts = new_layouts(program, plan);
    let started = std::time::Instant::now();
    let Reads {
        choices,
        parts,
        report: read_plan,
    } = plan_all_reads(program, plan, &mut layouts, config, full_reads, cache);
    let egraph_ms = started.elapsed().as_secs_f64() * 1e3;
    let mut out = Builder {
        graph: DiGraph::new(),
        params: Vec::new(),
        cuts: Vec::new(),
        names: HashSet::new(),
        param_names: HashSet::new(),
        reads: Vec::new(),
        distributed: parts.keys().copied().collect(),
        choices,
        shared: HashMap::new(),
    };
    let parts_of: HashMap<NodeIndex, (NodeIndex, Vec<Option<ReadChoice>>)> = parts
        .into_iter()
        .map(|(consumer, parts)| (plan.chains[&consumer].concat, (consumer, parts)))
        .collect();
    for n in program.graph.node_indices() {
        out.names.insert(program.graph[n].name.clone());
    }
    let mut map: Vec<Option<NodeIndex>> = vec![None; program.graph.node_count()];
    for n in program.topo_order() {
        let node = &program.graph[n];
        let operands = program.operands(n);
        let layout = &layouts[n.index()];
        let removed = |pos: usize| plan.removed[n.index()].as_ref().is_some_and(|f| f[pos]);
        // Old rows `layout`, whole, with removed ones empty (`fill` there).
        let rows_of = |p: usize, fill: f64| {
            let shape = &program.params[node.params[p]].shape;
            let cut = Cut {
                source: Source::Param(node.params[p]),
                rows: layout.iter().map(|&o| (!removed(o)).then_some(o)).collect(),
                columns: None,
                source_columns: 0,
                inner: shape[1..].iter().product(),
                fill,
            };
            ([vec![layout.len()], shape[1..].to_vec()].concat(), cut)
        };
        let mut inputs: Vec<NodeIndex> = operands
            .iter()
            .map(|o| map[o.index()].expect("operands first"))
            .collect();
        let (op, params): (Op, Vec<NewParam>) = match &node.op {
            Op::Input => (Op::Input, Vec::new()),
            _ if node.op.is_channel_mixing() => {
                // conv2d with groups == 1 or linear: rows follow the output's layout, columns
                // what the planned read delivers; the masks' dropped rows and columns are zero.
                let (read, columns) = out.read(program, &layouts, n, operands[0], inputs[0])?;
                inputs[0] = read;
                let shape = &program.params[node.params[0]].shape;
                let keep_in = membership(node.keep_in.as_deref(), shape[1]);
                let keep_out = membership(node.keep_out.as_deref(), shape[0]);
                let rows: Vec<Option<usize>> =
                    layout.iter().map(|&o| keep_out[o].then_some(o)).collect();
                let weight = Cut {
                    source: Source::Param(node.params[0]),
                    rows: rows.clone(),
                    columns: Some(columns.iter().map(|c| c.filter(|&c| keep_in[c])).collect()),
                    source_columns: shape[1],
                    inner: shape[2..].iter().product(),
                    fill: 0.0,
                };
                let mut new_shape = vec![layout.len(), columns.len()];
                new_shape.extend_from_slice(&shape[2..]);
                let mut params = vec![(new_shape, weight)];
                if let Some(&bias) = node.params.get(1) {
                    let cut = Cut {
                        source: Source::Param(bias),
                        rows,
                        columns: None,
                        source_columns: 0,
                        inner: 1,
                        fill: 0.0,
                    };
                    params.push((vec![layout.len()], cut));
                }
                (node.op.clone(), params)
            }
            Op::Conv2d(c) if program.is_depthwise(n) => {
                // One filter per channel: rows follow the channels; removed channels stay zero.
                let params = (0..node.params.len()).map(|p| rows_of(p, 0.0)).collect();
                let mut conv = c.clone();
                conv.groups = layout.len();
                (Op::Conv2d(conv), params)
            }
            Op::Conv2d(_) => {
                // Grouped: its segments are fixed, so its input and output keep every channel.
                let params = node
                    .params
                    .iter()
                    .map(|&p| {
                        let shape = &program.params[p].shape;
                        let cut = Cut {
                            source: Source::Param(p),
                            rows: (0..shape[0]).map(Some).collect(),
                            columns: None,
                            source_columns: 0,
                            inner: shape[1..].iter().product(),
                            fill: 0.0,
                        };
                        (shape.clone(), cut)
                    })
                    .collect();
                (node.op.clone(), params)
            }
            Op::BatchNorm { .. } => {
                // A removed channel must stay zero: scale and shift become zero there (and the
                // variance one).
                let params = (0..node.params.len())
                    .map(|i| rows_of(i, if i == 3 { 1.0 } else { 0.0 }))
                    .collect();
                (node.op.clone(), params)
            }
            Op::Activation(Activation::Sigmoid | Activation::HardSigmoid)
                if layout.iter().any(|&p| removed(p)) =>
            {
                // The activation of a removed channel is not zero (sigmoid(0) = 0.5), but the
                // masked program's is: a depthwise 1x1 conv after it, weight 1 on kept channels
                // and 0 on removed ones, takes the node's name and restores the zero.
                let name = out.fresh(&format!("{}.act", node.name));
                let act = out.node(
                    name,
                    node.op.clone(),
                    Vec::new(),
                    &inputs,
                    node.span.clone(),
                )?;
                inputs = vec![act];
                let mask = layout
                    .iter()
                    .map(|&p| if removed(p) { 0.0 } else { 1.0 })
                    .collect();
                let conv = Op::Conv2d(Conv2d {
                    stride: [1, 1],
                    padding: [0; 4],
                    dilation: [1, 1],
                    groups: layout.len(),
                });
                (conv, vec![(vec![layout.len(), 1, 1, 1], Cut::values(mask))])
            }
            Op::Concat if parts_of.contains_key(&n) => {
                // A distributed selection: each block's part, concatenated.
                let (consumer, parts) = &parts_of[&n];
                let mut selected = Vec::new();
                for ((input, part), &block) in inputs.iter().zip(parts).zip(&operands) {
                    if let Some(part) = part {
                        let (read, kind) = out.selection(node, part.clone(), *input)?;
                        out.record(*consumer, block, kind, read);
                        selected.push(read);
                    }
                }
                inputs = selected;
                (Op::Concat, Vec::new())
            }
            Op::Gather { indices } | Op::Permute { order: indices } => {
                let at = positions(&layouts[operands[0].index()]);
                (
                    select_op(layout.iter().map(|&j| at[&indices[j]]).collect()),
                    Vec::new(),
                )
            }
            Op::Slice { start, .. } => {
                let at = positions(&layouts[operands[0].index()]);
                (
                    select_op(layout.iter().map(|&j| at[&(start + j)]).collect()),
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
    Ok(Rewritten {
        program,
        cuts: out.cuts,
        reads: out.reads,
        read_plan,
        egraph_ms,
    })
}

/// `mask` as membership flags over `len` positions (all kept without a mask).
fn membership(mask: Option<&[usize]>, len: usize) -> Vec<bool> {
    match mask {
        None => vec![true; len],
        Some(kept) => {
            let mut keep = vec![false; len];
            for &k in kept {
                keep[k] = true;
            }
            keep
        }
    }
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

/// How every channel-mixing consumer reads its input.
struct Reads {
    /// Per consumer with something live to read.
    choices: HashMap<NodeIndex, ReadChoice>,
    /// Per consumer whose selection is distributed over its chain's concat: each concat
    /// operand's part (`None`: it keeps nothing of that operand, which the concat drops). Its
    /// choice then reads the whole chain, whose layout is the parts'.
    parts: HashMap<NodeIndex, Vec<Option<ReadChoice>>>,
    report: Option<PlanReport>,
}

/// How every channel-mixing consumer reads its input: planned on the e-graph under the cost
/// model in upscale mode, the naive read otherwise; slices widened to the channel alignment;
/// the consumers in `full_reads` read everything. In upscale mode the e-graph may distribute
/// the selection of a consumer at the end of a [`Chain`](super::distribute::Chain) over its
/// concat; `layouts` of the concat and the ops between then become the parts' positions.
fn plan_all_reads(
    program: &Program,
    plan: &Plan,
    layouts: &mut [Vec<usize>],
    config: &OptimizeConfig,
    full_reads: &HashSet<NodeIndex>,
    cache: &mut ReadCache,
) -> Reads {
    let mut consumers = Vec::new();
    let mut requests = Vec::new();
    let mut full = Vec::new();
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
        if full_reads.contains(&n) {
            // Not planned: it selects nothing, so it shares no selection with anyone.
            let zero_columns = (0..layouts[input.index()].len())
                .filter(|p| keep.binary_search(p).is_err())
                .collect();
            full.push((n, ReadChoice::Full { zero_columns }));
            continue;
        }
        let s = &program.graph[input].shape;
        let kernel: usize = program.params[node.params[0]].shape[2..].iter().product();
        let out_area: usize = node.shape[0] * node.shape[2..].iter().product::<usize>();
        let concat = plan
            .chains
            .get(&n)
            .filter(|_| config.mode.reorders())
            .map(|chain| ConcatSource {
                concat: chain.concat.index(),
                pointwise: chain.between.first().map(|b| b.index()),
                blocks: program
                    .operands(chain.concat)
                    .iter()
                    .map(|o| (o.index(), layouts[o.index()].len()))
                    .collect(),
            });
        requests.push(ReadRequest {
            tensor: input.index(),
            channels: layouts[input.index()].len(),
            keep,
            bytes_per_channel: (s[0] * s[2..].iter().product::<usize>() * 4) as u64,
            macs_per_channel: (layouts[n.index()].len() * kernel * out_area) as u64,
            concat,
        });
        consumers.push(n);
    }
    let (choices, report) = if config.mode.reorders() {
        let (choices, report) =
            plan_reads_cached(&requests, &*config.cost_model, &config.read_limits, cache);
        (choices, Some(report))
    } else {
        (requests.iter().map(ReadChoice::naive).collect(), None)
    };
    let mut reads = Reads {
        choices: full.into_iter().collect(),
        parts: HashMap::new(),
        report,
    };
    for ((choice, r), &n) in choices.into_iter().zip(&requests).zip(&consumers) {
        let choice = match config.channel_align {
            0 | 1 => choice,
            align => choice.aligned(r.channels, align),
        };
        let ReadChoice::Distributed { parts } = choice else {
            reads.choices.insert(n, choice);
            continue;
        };
        // The concat of the parts: its layout, and the consumer's read of it (whole, zero
        // columns for what alignment added).
        let chain = &plan.chains[&n];
        let operands = program.operands(chain.concat);
        let input = program.operands(n)[0];
        let kept: HashSet<usize> = r.keep.iter().map(|&j| layouts[input.index()][j]).collect();
        let mut by_operand = vec![None; operands.len()];
        let mut layout = Vec::new();
        for part in parts {
            let offset: usize = operands[..part.block]
                .iter()
                .map(|o| program.graph[*o].shape[1])
                .sum();
            let from = &layouts[operands[part.block].index()];
            layout.extend(
                part.read
                    .read(from.len())
                    .into_iter()
                    .map(|k| from[k] + offset),
            );
            by_operand[part.block] = Some(part.read);
        }
        let zero_columns = (0..layout.len())
            .filter(|&j| !kept.contains(&layout[j]))
            .collect();
        reads.choices.insert(n, ReadChoice::Full { zero_columns });
        reads.parts.insert(n, by_operand);
        for &m in std::iter::once(&chain.concat).chain(&chain.between) {
            layouts[m.index()] = layout.clone();
        }
    }
    reads
}

/// The index of each old position in a new layout (every selected channel is present by
/// construction: whatever a live channel depends on is live).
fn positions(layout: &[usize]) -> HashMap<usize, usize> {
    layout.iter().enumerate().map(|(i, &p)| (p, i)).collect()
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
                let from: HashSet<usize> = input(0).into_iter().collect();
                (0..indices.len())
                    .filter(|&j| from.contains(&indices[j]))
                    .collect()
            }
            Op::Slice { start, end } => {
                let from: HashSet<usize> = input(0).into_iter().collect();
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
    cuts: Vec<Cut>,
    names: HashSet<String>,
    param_names: HashSet<String>,
    reads: Vec<Read>,
    /// The planned read of each consumer.
    choices: HashMap<NodeIndex, ReadChoice>,
    /// The consumers whose selection is distributed over a concat (their reads are the parts).
    distributed: HashSet<NodeIndex>,
    /// Selection nodes already built, by input and what they select (gather or slice, and
    /// its positions): consumers that select the same channels of the same tensor share one.
    shared: HashMap<(NodeIndex, bool, Vec<usize>), NodeIndex>,
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
        params: Vec<NewParam>,
        inputs: &[NodeIndex],
    ) -> Result<NodeIndex, OptimizeError> {
        let mut ids = Vec::new();
        for (i, (shape, cut)) in params.into_iter().enumerate() {
            // A parameter shared by several nodes gets one copy per node (their cuts differ);
            // a parameter the rewrite makes is named after its node.
            let base = match old.params.get(i) {
                Some(&old_id) => program.params[old_id].name.clone(),
                None => format!("{}.removed_mask", old.name),
            };
            let base = &base;
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
            self.cuts.push(cut);
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
    ) -> Result<NodeIndex, OptimizeError> {
        let input_shapes: Vec<&[usize]> = inputs
            .iter()
            .map(|&i| self.graph[i].shape.as_slice())
            .collect();
        let param_shapes: Vec<&[usize]> = params
            .iter()
            .map(|&p| self.params[p].shape.as_slice())
            .collect();
        let shape = infer_shape(&op, &input_shapes, &param_shapes).map_err(|e| {
            OptimizeError::Unsupported(format!(
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
    ) -> Result<(NodeIndex, Vec<Option<usize>>), OptimizeError> {
        let node = &program.graph[n];
        let layout = &layouts[old_input.index()];
        let Some(choice) = self.choices.get(&n).cloned() else {
            // Nothing live is kept: read one channel through zero weights.
            let slice = self.select(node, Op::Slice { start: 0, end: 1 }, new_input)?;
            self.record(n, old_input, ReadKind::Slice, slice);
            return Ok((slice, vec![None]));
        };
        let zero = choice.zero_columns();
        let positions = choice.read(layout.len());
        let columns = positions
            .iter()
            .enumerate()
            .map(|(j, &p)| zero.binary_search(&j).is_err().then(|| layout[p]))
            .collect();
        let (read, kind) = self.selection(node, choice, new_input)?;
        if !self.distributed.contains(&n) {
            self.record(n, old_input, kind, read);
        }
        Ok((read, columns))
    }

    /// The node that makes `choice` of `input`: itself, or a slice or gather named after `at`.
    fn selection(
        &mut self,
        at: &Node,
        choice: ReadChoice,
        input: NodeIndex,
    ) -> Result<(NodeIndex, ReadKind), OptimizeError> {
        Ok(match choice {
            ReadChoice::Full { .. } => (input, ReadKind::Full),
            ReadChoice::Slice { start, end, .. } => (
                self.select(at, Op::Slice { start, end }, input)?,
                ReadKind::Slice,
            ),
            ReadChoice::Gather { indices } => (
                self.select(at, Op::Gather { indices }, input)?,
                ReadKind::Gather,
            ),
            ReadChoice::Distributed { .. } => {
                unreachable!("a distributed read is made by its concat's parts")
            }
        })
    }

    /// Records `consumer`'s read of `tensor` (original nodes), made by the new node `read`.
    fn record(&mut self, consumer: NodeIndex, tensor: NodeIndex, kind: ReadKind, read: NodeIndex) {
        let bytes = match kind {
            ReadKind::Full => 0,
            _ => self.graph[read].shape.iter().product::<usize>() as u64 * 4,
        };
        self.reads.push(Read {
            consumer,
            tensor,
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
    ) -> Result<NodeIndex, OptimizeError> {
        let key = match &op {
            Op::Slice { start, end } => (input, false, vec![*start, *end]),
            Op::Gather { indices } => (input, true, indices.clone()),
            other => unreachable!("a selection is a slice or a gather, not {}", other.name()),
        };
        if let Some(&node) = self.shared.get(&key) {
            return Ok(node);
        }
        let name = self.fresh(&format!("{}.in", consumer.name));
        let node = self.node(name, op, Vec::new(), &[input], consumer.span.clone())?;
        self.shared.insert(key, node);
        Ok(node)
    }
}
