//! The read planner: how each channel-mixing consumer reads its input, on an egg e-graph.
//!
//! Input: one [`ReadRequest`] per consumer, after the ordering solver: the consumer reads a
//! tensor of `channels` channels (already in their new order) and keeps the positions `keep`.
//! A request may also say how its tensor is made ([`ConcatSource`]: per-channel ops over a
//! concat only its consumer reads), so that its selection can be made block by block.
//! Output: one [`ReadChoice`] per request (the whole tensor, a slice, a gather, or such a
//! distributed read, with the weight columns to zero) and a [`PlanReport`] (costs, limits, how
//! often each rule fired). Invariants: every choice is *valid* (it reads
//! every kept position through a real weight column, in order, and every other position it
//! reads through a zero column: [`ReadChoice::kept`] equals `keep`), and the plan never costs
//! more than the naive plan (whole tensor if everything is kept, else a slice if `keep` is a
//! run, else a gather), with consumers that make the same selection of the same tensor
//! sharing one node, paid once. Requests that read the same tensors (a distributed read
//! reads its blocks) are planned on one e-graph; the others on e-graphs of their own.
//!
//! Phases, one file each: [`language`](Layout) (terms, side tables, types), [`rules`] (one
//! table per op family), [`saturate`] (egg runner within [`Limits`]), [`extract`] (DAG-aware,
//! under a [`CostModel`]: [`Views`], [`Graph`] or [`Latency`]), and [`eval`] (the reference
//! meaning of terms, for tests). [`plan_reads`] ties them together:
//!
//! ```
//! use nnirc::egraph::{plan_reads, Graph, Limits, ReadChoice, ReadRequest};
//! let request = |keep: Vec<usize>| ReadRequest {
//!     tensor: 0,
//!     channels: 8,
//!     keep,
//!     bytes_per_channel: 12_544,
//!     macs_per_channel: 200_704,
//!     concat: None,
//! };
//! let requests = [request(vec![2, 3, 4]), request(vec![0, 1, 2, 4, 5, 6, 7])];
//! let (choices, report) = plan_reads(&requests, &Graph::default(), &Limits::default());
//! // A copy of 7 channels costs more than one zero column: read everything.
//! assert_eq!(choices[1], ReadChoice::Full { zero_columns: vec![3] });
//! assert_eq!(report.stop_reason, "saturated");
//! assert!(report.total_cost < report.baseline_cost);
//! ```

mod cost;
mod eval;
mod extract;
mod language;
mod latency;
mod model;
pub mod rules;
mod run;

pub use cost::Cost;
pub use eval::{eval, Env, Matrix, Value};
pub use extract::{candidates, dag_cost, extract, node_cost, Extraction, CANDIDATES};
pub use language::{IndexSet, Layout, LayoutGraph, Meta, SetId, Tables, TensorInfo, WeightInfo};
pub use latency::{Latency, LatencyError};
pub use model::{CostModel, Graph, Views};
pub use run::{saturate, Limits, Saturated};

use egg::{Id, RecExpr};
use std::collections::{BTreeMap, HashMap};

/// One consumer's read of one tensor.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReadRequest {
    /// The caller's id of the tensor read: requests with equal `tensor`, `channels` and
    /// `bytes_per_channel` read the same tensor and may share a selection node.
    pub tensor: usize,
    /// `L`: the channels of the tensor (in its new order).
    pub channels: usize,
    /// `K`: the positions kept, strictly ascending, non-empty, below `channels`.
    pub keep: Vec<usize>,
    /// The bytes one channel holds (batch x height x width x element size).
    pub bytes_per_channel: u64,
    /// The multiply-adds one input channel costs the consumer per inference (what a zero
    /// column adds): out channels x kernel area x output area for a conv, out features for a
    /// linear layer.
    pub macs_per_channel: u64,
    /// How the tensor is made, when the consumer's selection may move in front of its ops;
    /// `None`: a leaf.
    pub concat: Option<ConcatSource>,
}

/// A tensor made by per-channel ops over a concat, which only the request's consumer reads
/// (DenseNet's concat -> batch_norm -> relu -> conv1): its selection may be *distributed*,
/// each block selecting its own part before the concat ([`rules::distribution`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConcatSource {
    /// The concat op's id; distinct concats must get distinct ids.
    pub concat: usize,
    /// The id of the per-channel ops between the concat and the consumer, taken together as
    /// one per-channel op (one term however long the chain, so terms stay shallow: extraction
    /// recurses over a term's depth); distinct chains get distinct ids. `None`: no such op.
    pub pointwise: Option<usize>,
    /// The concatenated tensors in order, each as (caller's tensor id, channels), with the
    /// request's bytes per channel. Distinct tensors; their channels add up to the request's.
    pub blocks: Vec<(usize, usize)>,
}

/// One block's part of a [`ReadChoice::Distributed`] read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Part {
    /// Which of the request's [`ConcatSource::blocks`].
    pub block: usize,
    /// The tensor position of the block's first channel.
    pub offset: usize,
    /// The block's channels.
    pub channels: usize,
    /// How the block is read (positions within the block; not itself distributed).
    pub read: ReadChoice,
}

/// How a consumer reads. `zero_columns` are positions within what it reads (0 is the first
/// channel read) whose weight columns are zero; the other positions take the consumer's kept
/// weight columns in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReadChoice {
    /// The whole tensor, no selection op.
    Full { zero_columns: Vec<usize> },
    /// A contiguous range `start..end`.
    Slice {
        start: usize,
        end: usize,
        zero_columns: Vec<usize>,
    },
    /// A copy of exactly the kept positions.
    Gather { indices: Vec<usize> },
    /// The selection made block by block before the concat the tensor is made of
    /// ([`ConcatSource`]): each part read whole, as a slice or a gather, then concatenated in
    /// block order (blocks with nothing kept are left out).
    Distributed { parts: Vec<Part> },
}

impl ReadChoice {
    /// Today's read, the planner's baseline: the whole tensor if everything is kept, an exact
    /// slice if `keep` is a run, else a gather.
    ///
    /// ```
    /// use nnirc::egraph::{ReadChoice, ReadRequest};
    /// let r = ReadRequest { tensor: 0, channels: 8, keep: vec![2, 3], bytes_per_channel: 4, macs_per_channel: 9, concat: None };
    /// assert_eq!(ReadChoice::naive(&r), ReadChoice::Slice { start: 2, end: 4, zero_columns: vec![] });
    /// ```
    pub fn naive(request: &ReadRequest) -> ReadChoice {
        let keep = &request.keep;
        let run = keep.windows(2).all(|w| w[1] == w[0] + 1);
        match (keep.first(), keep.last()) {
            (Some(&0), Some(&last)) if run && last + 1 == request.channels => ReadChoice::Full {
                zero_columns: Vec::new(),
            },
            (Some(&start), Some(&last)) if run => ReadChoice::Slice {
                start,
                end: last + 1,
                zero_columns: Vec::new(),
            },
            _ => ReadChoice::Gather {
                indices: keep.clone(),
            },
        }
    }

    /// This read with a slice widened to a multiple of `align` positions (or to the whole
    /// tensor of `channels` positions, which needs no selection op), the added positions read
    /// through zero columns; the kept positions are unchanged. Whole reads and gathers are
    /// returned as they are.
    ///
    /// ```
    /// use nnirc::egraph::ReadChoice;
    /// let slice = ReadChoice::Slice { start: 2, end: 7, zero_columns: vec![1] };
    /// assert_eq!(
    ///     slice.aligned(12, 4),
    ///     ReadChoice::Slice { start: 2, end: 10, zero_columns: vec![1, 5, 6, 7] }
    /// );
    /// assert_eq!(
    ///     slice.aligned(8, 8),
    ///     ReadChoice::Full { zero_columns: vec![0, 1, 3, 7] }
    /// );
    /// ```
    pub fn aligned(&self, channels: usize, align: usize) -> ReadChoice {
        if let ReadChoice::Distributed { parts } = self {
            let parts = parts
                .iter()
                .map(|p| Part {
                    read: p.read.aligned(p.channels, align),
                    ..p.clone()
                })
                .collect();
            return ReadChoice::Distributed { parts };
        }
        let ReadChoice::Slice {
            start,
            end,
            zero_columns,
        } = self
        else {
            return self.clone();
        };
        let (start, end) = (*start, *end);
        let width = (end - start).next_multiple_of(align.max(1)).min(channels);
        if width == end - start {
            return self.clone();
        }
        // Grow to the right first, then to the left where the tensor ends.
        let new_end = (start + width).min(channels);
        let new_start = new_end - width;
        let kept: Vec<bool> = (new_start..new_end)
            .map(|p| (start..end).contains(&p) && zero_columns.binary_search(&(p - start)).is_err())
            .collect();
        let zero_columns = (0..width).filter(|&j| !kept[j]).collect();
        if width == channels {
            ReadChoice::Full { zero_columns }
        } else {
            ReadChoice::Slice {
                start: new_start,
                end: new_end,
                zero_columns,
            }
        }
    }

    /// The tensor positions read, in order.
    pub fn read(&self, channels: usize) -> Vec<usize> {
        match self {
            ReadChoice::Full { .. } => (0..channels).collect(),
            ReadChoice::Slice { start, end, .. } => (*start..*end).collect(),
            ReadChoice::Gather { indices } => indices.clone(),
            ReadChoice::Distributed { parts } => parts
                .iter()
                .flat_map(|p| p.read.read(p.channels).into_iter().map(|i| p.offset + i))
                .collect(),
        }
    }

    /// The positions within what is read whose weight columns are zero, ascending.
    pub fn zero_columns(&self) -> Vec<usize> {
        match self {
            ReadChoice::Full { zero_columns } | ReadChoice::Slice { zero_columns, .. } => {
                zero_columns.clone()
            }
            ReadChoice::Gather { .. } => Vec::new(),
            ReadChoice::Distributed { parts } => {
                let mut zero = Vec::new();
                let mut at = 0;
                for p in parts {
                    zero.extend(p.read.zero_columns().iter().map(|j| at + j));
                    at += p.read.read(p.channels).len();
                }
                zero
            }
        }
    }

    /// The tensor positions read through non-zero columns, in order: `keep` when valid.
    pub fn kept(&self, channels: usize) -> Vec<usize> {
        let zero = self.zero_columns();
        self.read(channels)
            .into_iter()
            .enumerate()
            .filter(|(j, _)| zero.binary_search(j).is_err())
            .map(|(_, p)| p)
            .collect()
    }
}

/// What the planner did.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanReport {
    /// The cost model's name.
    pub model: String,
    /// Why saturation stopped (`saturated` or the limit hit).
    pub stop_reason: String,
    pub egraph_nodes: usize,
    pub egraph_classes: usize,
    pub iterations: usize,
    /// The plan's cost, shared selections counted once.
    pub total_cost: Cost,
    /// The naive plan's cost, counted the same way (`total_cost <= baseline_cost`).
    pub baseline_cost: Cost,
    /// Whether extraction was exact (optimal over the candidate terms) everywhere.
    pub exact: bool,
    /// How many times each rule changed an e-graph, by rule name (absent: never).
    pub fired: BTreeMap<String, usize>,
}

/// The e-graph of a set of requests before saturation.
#[derive(Debug)]
pub struct ReadGraph {
    pub egraph: LayoutGraph,
    /// The class of request `i`'s consumer term.
    pub roots: Vec<Id>,
    /// Request `i`'s naive term, `(consume i (weight i) read)`, where `read` is `T`,
    /// `(slice a b T)` or `(gather k T)` and `T` is the tensor: `(tensor t)`, or for a
    /// [`ConcatSource`] its ops over its blocks, `(pointwise p (concat n (tensor b1) ..))`.
    pub baseline: Vec<RecExpr<Layout>>,
    /// Per request with a [`ConcatSource`], its blocks' tensor leaves (`N` of `(tensor N)`).
    pub block_leaves: Vec<Vec<usize>>,
}

/// Builds the naive terms of `requests`: weight leaf `i` is request `i`'s kept columns.
///
/// Panics if a request's `keep` is empty, not strictly ascending, or out of range (a caller
/// bug: an empty read has nothing to choose).
pub fn build_reads(requests: &[ReadRequest]) -> ReadGraph {
    let mut tables = Tables::default();
    let mut leaves: HashMap<(usize, usize, u64), usize> = HashMap::new();
    let mut leaf = |tables: &mut Tables, tensor: usize, channels: usize, bytes: u64| {
        *leaves.entry((tensor, channels, bytes)).or_insert_with(|| {
            tables.add_tensor(TensorInfo {
                channels,
                bytes_per_channel: bytes,
            })
        })
    };
    let mut baseline = Vec::with_capacity(requests.len());
    let mut block_leaves = Vec::with_capacity(requests.len());
    for (i, r) in requests.iter().enumerate() {
        let keep = IndexSet::new(r.channels, r.keep.clone())
            .filter(|k| !k.is_empty() && k.is_ascending())
            .unwrap_or_else(|| {
                panic!("read request {i}: keep must be non-empty, ascending and in range")
            });
        let mut expr = RecExpr::default();
        let mut blocks = Vec::new();
        let mut read = match &r.concat {
            None => {
                let t = leaf(&mut tables, r.tensor, r.channels, r.bytes_per_channel);
                let t = expr.add(Layout::Num(t));
                expr.add(Layout::Tensor(t))
            }
            Some(source) => {
                let total: usize = source.blocks.iter().map(|&(_, c)| c).sum();
                assert_eq!(
                    total, r.channels,
                    "read request {i}: blocks add up to the tensor"
                );
                let mut children = vec![expr.add(Layout::Num(source.concat))];
                for &(b, channels) in &source.blocks {
                    let b = leaf(&mut tables, b, channels, r.bytes_per_channel);
                    blocks.push(b);
                    let b = expr.add(Layout::Num(b));
                    children.push(expr.add(Layout::Tensor(b)));
                }
                let mut x = expr.add(Layout::Concat(children.into()));
                if let Some(p) = source.pointwise {
                    let p = expr.add(Layout::Num(p));
                    x = expr.add(Layout::Pointwise([p, x]));
                }
                x
            }
        };
        block_leaves.push(blocks);
        let w = tables.add_weight(WeightInfo {
            rows: 1,
            columns: keep.len(),
            macs_per_column: r.macs_per_channel,
            bytes_per_row: 0,
        });
        debug_assert_eq!(w, i);
        match keep.as_run() {
            Some((0, end)) if end == r.channels => {}
            Some((a, b)) => {
                let (a, b) = (expr.add(Layout::Num(a)), expr.add(Layout::Num(b)));
                read = expr.add(Layout::Slice([a, b, read]));
            }
            None => {
                let k = expr.add(Layout::Set(tables.intern(keep)));
                read = expr.add(Layout::Gather([k, read]));
            }
        }
        let c = expr.add(Layout::Num(i));
        let w = expr.add(Layout::Weight(c));
        expr.add(Layout::Consume([c, w, read]));
        baseline.push(expr);
    }
    let mut egraph = LayoutGraph::new(tables);
    let roots = baseline.iter().map(|e| egraph.add_expr(e)).collect();
    egraph.rebuild();
    ReadGraph {
        egraph,
        roots,
        baseline,
        block_leaves,
    }
}

/// Plans every read at once: builds the naive terms, saturates, extracts under `model`.
/// `choices[i]` answers `requests[i]`. Consumers of the same tensor whose choices make the
/// same selection (equal `Slice` range or `Gather` indices) are costed as sharing one node:
/// emit one.
pub fn plan_reads(
    requests: &[ReadRequest],
    model: &dyn CostModel,
    limits: &Limits,
) -> (Vec<ReadChoice>, PlanReport) {
    plan_reads_cached(requests, model, limits, &mut ReadCache::default())
}

/// Plans of single tensors' reads by their requests, for callers that plan many variants of
/// one program under one cost model and one set of limits (the deploy target's search):
/// a tensor whose requests did not change is not planned again.
#[derive(Debug, Default)]
pub struct ReadCache(HashMap<Vec<ReadRequest>, (Vec<ReadChoice>, PlanReport)>);

/// [`plan_reads`] through a [`ReadCache`]; the cache must only ever see one `model` and one
/// `limits`.
pub fn plan_reads_cached(
    requests: &[ReadRequest],
    model: &dyn CostModel,
    limits: &Limits,
    cache: &mut ReadCache,
) -> (Vec<ReadChoice>, PlanReport) {
    // Reads of different tensors share nothing, so each tensor gets an e-graph of its own:
    // the work stays linear in the number of tensors (one e-graph over a whole model grows
    // faster). The node and iteration limits apply per tensor, the time limit to the whole.
    let started = std::time::Instant::now();
    // Tensors read together (a distributed read reads its blocks) are one group.
    let mut parent: HashMap<usize, usize> = HashMap::new();
    fn find(parent: &mut HashMap<usize, usize>, mut t: usize) -> usize {
        while let Some(&p) = parent.get(&t).filter(|&&p| p != t) {
            t = p;
        }
        t
    }
    for r in requests {
        let a = find(&mut parent, r.tensor);
        parent.insert(a, a);
        for &(b, _) in r.concat.iter().flat_map(|c| &c.blocks) {
            let b = find(&mut parent, b);
            parent.insert(b, a);
        }
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut group_of: HashMap<usize, usize> = HashMap::new();
    for (i, r) in requests.iter().enumerate() {
        let root = find(&mut parent, r.tensor);
        let g = *group_of.entry(root).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    let mut choices = vec![None; requests.len()];
    let mut report = PlanReport {
        model: model.name().to_string(),
        stop_reason: "saturated".to_string(),
        egraph_nodes: 0,
        egraph_classes: 0,
        iterations: 0,
        total_cost: Cost::ZERO,
        baseline_cost: Cost::ZERO,
        exact: true,
        fired: BTreeMap::new(),
    };
    for group in groups {
        let sub: Vec<ReadRequest> = group.iter().map(|&i| requests[i].clone()).collect();
        let limits = Limits {
            time_limit: limits.time_limit.saturating_sub(started.elapsed()),
            ..limits.clone()
        };
        let (sub_choices, sub_report) = match cache.0.get(&sub) {
            Some(hit) => hit.clone(),
            None => {
                let planned = plan_group(&sub, model, &limits);
                cache.0.insert(sub, planned.clone());
                planned
            }
        };
        for (&i, choice) in group.iter().zip(sub_choices) {
            choices[i] = Some(choice);
        }
        if report.stop_reason == "saturated" {
            report.stop_reason = sub_report.stop_reason;
        }
        report.egraph_nodes += sub_report.egraph_nodes;
        report.egraph_classes += sub_report.egraph_classes;
        report.iterations = report.iterations.max(sub_report.iterations);
        report.total_cost += sub_report.total_cost;
        report.baseline_cost += sub_report.baseline_cost;
        report.exact &= sub_report.exact;
        for (rule, times) in sub_report.fired {
            *report.fired.entry(rule).or_insert(0) += times;
        }
    }
    let choices = choices
        .into_iter()
        .map(|c| c.expect("every request is in a group"))
        .collect();
    (choices, report)
}

/// [`plan_reads`] for requests that all read one tensor, on one e-graph.
fn plan_group(
    requests: &[ReadRequest],
    model: &dyn CostModel,
    limits: &Limits,
) -> (Vec<ReadChoice>, PlanReport) {
    let reads = build_reads(requests);
    let run = saturate(reads.egraph, limits);
    let egraph = run.egraph;
    let roots: Vec<Id> = reads.roots.iter().map(|&r| egraph.find(r)).collect();
    let extraction = extract(&egraph, &roots, &reads.baseline, model, limits.exact_shared);
    let choices = extraction
        .terms
        .iter()
        .zip(requests)
        .zip(&reads.block_leaves)
        .map(|((t, r), blocks)| choice_of(t, &egraph.analysis, r, blocks))
        .collect();
    let report = PlanReport {
        model: model.name().to_string(),
        stop_reason: run.stop_reason,
        egraph_nodes: egraph.total_number_of_nodes(),
        egraph_classes: egraph.number_of_classes(),
        iterations: run.iterations,
        total_cost: extraction.cost,
        baseline_cost: extraction.baseline_cost,
        exact: extraction.exact,
        fired: run.fired,
    };
    (choices, report)
}

/// Reads a consumer term of [`build_reads`]'s e-graph for `request` (whose blocks, if any,
/// are the tensor leaves `block_leaves`) as a [`ReadChoice`].
fn choice_of(
    term: &RecExpr<Layout>,
    tables: &Tables,
    request: &ReadRequest,
    block_leaves: &[usize],
) -> ReadChoice {
    let root = Id::from(term.len() - 1);
    let Layout::Consume([_, w, x]) = term[root] else {
        panic!("a read term is a consumer: {term}");
    };
    let columns = columns(term, w, tables);
    let live: Vec<usize> = columns.iter().flatten().copied().collect();
    assert!(
        live.iter().enumerate().all(|(i, &c)| i == c),
        "kept columns stay in order: {term}"
    );
    let zeros_in = |range: std::ops::Range<usize>| -> Vec<usize> {
        range
            .clone()
            .filter(|&j| columns[j].is_none())
            .map(|j| j - range.start)
            .collect()
    };
    let num = |id: Id| match term[id] {
        Layout::Num(n) => n,
        _ => panic!("a number: {term}"),
    };
    let indices = |k: Id| match term[k] {
        Layout::Set(k) => tables.set(k).indices.clone(),
        _ => panic!("an index set: {term}"),
    };
    // The whole tensor: its leaf, or the ops over the concat of every block it is made of.
    let whole = |id: Id| {
        let mut at = id;
        while let (Some(_), Layout::Pointwise([_, inner])) = (&request.concat, &term[at]) {
            at = *inner;
        }
        match (&request.concat, &term[at]) {
            (None, Layout::Tensor(_)) => true,
            (Some(source), Layout::Concat(children)) => {
                children.len() == block_leaves.len() + 1
                    && num(children[0]) == source.concat
                    && children[1..]
                        .iter()
                        .zip(block_leaves)
                        .all(|(&c, &leaf)| matches!(term[c], Layout::Tensor(n) if num(n) == leaf))
            }
            _ => false,
        }
    };
    match term[x] {
        _ if whole(x) => {
            return ReadChoice::Full {
                zero_columns: zeros_in(0..columns.len()),
            }
        }
        Layout::Slice([a, b, inner]) if whole(inner) => {
            return ReadChoice::Slice {
                start: num(a),
                end: num(b),
                zero_columns: zeros_in(0..columns.len()),
            }
        }
        Layout::Gather([k, inner]) if whole(inner) => {
            assert!(
                columns.iter().enumerate().all(|(i, &c)| c == Some(i)),
                "a gather reads exactly the kept columns: {term}"
            );
            return ReadChoice::Gather {
                indices: indices(k),
            };
        }
        _ => {}
    }
    // Distributed: per-channel ops over the concat of block parts.
    let source = request
        .concat
        .as_ref()
        .unwrap_or_else(|| panic!("only a concat's reads are distributed: {term}"));
    let mut at = x;
    while let Layout::Pointwise([_, inner]) = term[at] {
        at = inner;
    }
    let pieces: Vec<Id> = match &term[at] {
        Layout::Concat(children) if num(children[0]) == source.concat => children[1..].to_vec(),
        _ => panic!("a distributed read is a concat of parts: {term}"),
    };
    let mut parts = Vec::with_capacity(pieces.len());
    let mut read = 0;
    for piece in pieces {
        let (leaf, selection) = match term[piece] {
            Layout::Tensor(n) => (n, None),
            Layout::Slice([_, _, inner]) | Layout::Gather([_, inner]) => match term[inner] {
                Layout::Tensor(n) => (n, Some(piece)),
                _ => panic!("a part selects from a block: {term}"),
            },
            _ => panic!("a part of a block: {term}"),
        };
        let block = block_leaves
            .iter()
            .position(|&b| b == num(leaf))
            .unwrap_or_else(|| panic!("a part reads a block of the concat: {term}"));
        let channels = source.blocks[block].1;
        let offset = source.blocks[..block].iter().map(|&(_, c)| c).sum();
        let (width, choice) = match selection.map(|s| &term[s]) {
            None => (
                channels,
                ReadChoice::Full {
                    zero_columns: zeros_in(read..read + channels),
                },
            ),
            Some(Layout::Slice([a, b, _])) => {
                let (a, b) = (num(*a), num(*b));
                (
                    b - a,
                    ReadChoice::Slice {
                        start: a,
                        end: b,
                        zero_columns: zeros_in(read..read + b - a),
                    },
                )
            }
            Some(Layout::Gather([k, _])) => {
                let indices = indices(*k);
                assert!(
                    zeros_in(read..read + indices.len()).is_empty(),
                    "a gather reads exactly the kept columns: {term}"
                );
                (indices.len(), ReadChoice::Gather { indices })
            }
            Some(_) => unreachable!("matched above"),
        };
        read += width;
        parts.push(Part {
            block,
            offset,
            channels,
            read: choice,
        });
    }
    assert_eq!(read, columns.len(), "the parts make the whole read: {term}");
    ReadChoice::Distributed { parts }
}

/// For each column of weight term `w`: the consumer's kept column it holds, or `None` (zero).
fn columns(term: &RecExpr<Layout>, w: Id, tables: &Tables) -> Vec<Option<usize>> {
    let set = |id: Id| match term[id] {
        Layout::Set(s) => tables.set(s),
        _ => panic!("an index set: {term}"),
    };
    match term[w] {
        Layout::Weight(n) => {
            let Layout::Num(n) = term[n] else {
                panic!("a weight leaf number: {term}");
            };
            let info = tables.weight(n).expect("a registered weight");
            (0..info.columns).map(Some).collect()
        }
        Layout::PadCols([k, inner]) => {
            let (k, inner) = (set(k), columns(term, inner, tables));
            let mut out = vec![None; k.universe];
            for (i, &c) in k.indices.iter().enumerate() {
                out[c] = inner[i];
            }
            out
        }
        _ => panic!("a consumer weight term: {term}"),
    }
}
