//! The reference interpreter: it DEFINES what a `.nnir` program means.
//!
//! Input: a checked [`Program`], its [`Weights`] and one tensor per model input, each of
//! exactly the declared shape. Output: one tensor per model output, in order. The meaning is the
//! *masked program*: a node with `keep_in` behaves as if the weight columns of the dropped input
//! channels were zero and those channels of its input were zero too (so their values, even Inf
//! or NaN, cannot matter), and a node with `keep_out` as if the weight rows and bias entries of the
//! dropped output channels were zero (so those outputs are exactly 0). A dropped output channel
//! is *removed*: it stays zero through the per-channel ops downstream (batch norm included; see
//! [`crate::analysis::removed_channels`]). Masks are applied to a per-node copy of the weights;
//! [`Weights`] are never changed.
//!
//! Nodes run in [`Program::topo_order`], and each intermediate tensor is dropped as soon as its
//! last user has run. The code is written for clarity over speed, except conv2d and linear,
//! which go through GEMM (`matrixmultiply`) so that resnet50-sized graphs run in seconds.
//! Evaluation is generic over [`Scalar`]: `f32` (what exported models compute) and `f64`
//! (the exact reference; inline params are exact there).

mod conv;
mod kernels;

use crate::ir::ops::dims_text;
use crate::ir::{Op, Program};
use crate::tensor::{Scalar, SplitMix64, Tensor};
use crate::weights::Weights;
use petgraph::graph::NodeIndex;
use std::borrow::Cow;
use std::fmt;

/// Why [`run`] refused its arguments.
#[derive(Debug, Clone, PartialEq)]
pub enum RunError {
    /// The number of input tensors differs from the model's inputs.
    InputCount { expected: usize, got: usize },
    /// An input tensor's shape differs from the declared one.
    InputShape {
        name: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    /// An input tensor's data length does not match its own shape.
    InputData {
        name: String,
        shape: Vec<usize>,
        len: usize,
    },
    /// The weights were not made for this program.
    Weights { message: String },
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::InputCount { expected, got } => write!(
                f,
                "the model takes {expected} input(s), but {got} were given"
            ),
            RunError::InputShape {
                name,
                expected,
                got,
            } => write!(
                f,
                "input `%{name}` must have shape {}, but has shape {}",
                dims_text(expected),
                dims_text(got)
            ),
            RunError::InputData { name, shape, len } => write!(
                f,
                "input `%{name}` has shape {} ({} values) but {len} values",
                dims_text(shape),
                shape.iter().product::<usize>()
            ),
            RunError::Weights { message } => write!(f, "weights do not fit the model: {message}"),
        }
    }
}

impl std::error::Error for RunError {}

/// Runs `program` on `inputs` (one per model input, in declaration order, each of exactly the
/// declared shape) and returns the model outputs in order.
///
/// ```
/// let src = "model m(%x: f32[1, 2]) -> (%y) {\n  %y = relu(%x)\n}\n";
/// let parsed = nnirc::syntax::parse(src);
/// let program = nnirc::ir::lower(parsed.file.as_ref().unwrap()).program.unwrap();
/// let weights = nnirc::weights::random(&program, 0);
/// let x = nnirc::tensor::Tensor { shape: vec![1, 2], data: vec![-1.0f64, 2.0] };
/// let y = nnirc::interp::run(&program, &weights, &[x]).unwrap();
/// assert_eq!(y[0].data, vec![0.0, 2.0]);
/// ```
pub fn run<T: Scalar>(
    program: &Program,
    weights: &Weights,
    inputs: &[Tensor<T>],
) -> Result<Vec<Tensor<T>>, RunError> {
    check_args(program, weights, inputs)?;
    let count = program.graph.node_count();
    let (order, dies_after) = schedule(program);
    let removed = crate::analysis::removed_channels(program);
    let mut values: Vec<Option<Cow<Tensor<T>>>> = vec![None; count];
    for (i, &n) in order.iter().enumerate() {
        let node = &program.graph[n];
        let value = if node.op == Op::Input {
            let k = program
                .inputs
                .iter()
                .position(|&m| m == n)
                .expect("Program invariant: every input node is in program.inputs");
            Cow::Borrowed(&inputs[k])
        } else {
            let mut operands: Vec<&Tensor<T>> = program
                .operands(n)
                .iter()
                .map(|o| {
                    values[o.index()]
                        .as_deref()
                        .expect("operands run before their users and live until the last one")
                })
                .collect();
            // Dropped input channels read as zero, so that their values (even Inf or NaN)
            // cannot reach the output through a zeroed weight (0 * Inf is NaN).
            let masked_input = node.keep_in.as_ref().map(|kept| {
                let mut x = operands[0].clone();
                let dropped: Vec<bool> = membership(kept, x.shape[1])
                    .into_iter()
                    .map(|keep| !keep)
                    .collect();
                kernels::zero_channels(&mut x, &dropped);
                x
            });
            if let Some(x) = &masked_input {
                operands[0] = x;
            }
            let params = node_params(program, n, weights);
            let mut out = eval(
                &node.op,
                &operands,
                &params,
                &program.param_shapes(n),
                &node.shape,
            );
            if let Some(flags) = &removed[n.index()] {
                kernels::zero_channels(&mut out, flags);
            }
            Cow::Owned(out)
        };
        assert_eq!(
            value.shape, node.shape,
            "interpreter and shape inference disagree on `%{}`",
            node.name
        );
        values[n.index()] = Some(value);
        for dead in &dies_after[i] {
            values[dead.index()] = None;
        }
    }
    Ok(program
        .outputs
        .iter()
        .map(|o| {
            values[o.index()]
                .as_deref()
                .expect("outputs are kept")
                .clone()
        })
        .collect())
}

/// The evaluation order ([`Program::topo_order`]) and, for each position in it, the values no
/// longer needed once the node there has run (model outputs are never dropped).
fn schedule(program: &Program) -> (Vec<NodeIndex>, Vec<Vec<NodeIndex>>) {
    let order = program.topo_order();
    let count = program.graph.node_count();
    let mut position = vec![0; count];
    for (i, n) in order.iter().enumerate() {
        position[n.index()] = i;
    }
    let mut dies_after: Vec<Vec<NodeIndex>> = vec![Vec::new(); count];
    for &n in &order {
        if program.outputs.contains(&n) {
            continue;
        }
        let last = program
            .users(n)
            .iter()
            .map(|u| position[u.index()])
            .max()
            .unwrap_or(position[n.index()]);
        dies_after[last].push(n);
    }
    (order, dies_after)
}

/// What running a program costs in memory, computed without allocating anything (so that a
/// model declaring tensors of 2^40 elements gets an answer, not an abort). Every count
/// saturates at `u64::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// Bytes of seeded weights ([`crate::weights::random`]): file-bound parameters as f32
    /// (4 bytes each), inline ones as f64 (8 bytes). A weights file is memory-mapped instead.
    pub seeded_bytes: u64,
    /// The number of parameter elements, all parameters together.
    pub params: u64,
    /// An upper bound on the elements [`run`] holds at once: the model inputs, the values alive
    /// in its order (each dropped after its last user), and, for the node being computed, its
    /// output, its params converted to the scalar type, a masked copy of its input (`keep_in`)
    /// and conv2d's im2col buffer; at the end, the copies of the outputs.
    pub run_elements: u64,
}

impl MemoryEstimate {
    /// Bytes of [`MemoryEstimate::run_elements`] in a scalar type of `scalar_bytes` bytes
    /// (4 for f32, 8 for f64).
    pub fn run_bytes(&self, scalar_bytes: u64) -> u64 {
        self.run_elements.saturating_mul(scalar_bytes)
    }
}

/// The memory [`run`] (and seeded weights) need for `program`: a safe upper bound, documented
/// field by field on [`MemoryEstimate`].
///
/// ```
/// let src = "model m(%x: f32[1, 2]) -> (%y) {\n  %y = relu(%x)\n}\n";
/// let parsed = nnirc::syntax::parse(src);
/// let program = nnirc::ir::lower(parsed.file.as_ref().unwrap()).program.unwrap();
/// let need = nnirc::interp::memory_estimate(&program);
/// // The input, the output being computed, then the copy of the output.
/// assert_eq!(need.run_elements, 6);
/// assert_eq!(need.run_bytes(4), 24);
/// assert_eq!(need.seeded_bytes, 0);
/// ```
pub fn memory_estimate(program: &Program) -> MemoryEstimate {
    let elements = |shape: &[usize]| shape.iter().fold(1u64, |a, &d| a.saturating_mul(d as u64));
    let mut seeded_bytes = 0u64;
    let mut params = 0u64;
    for p in &program.params {
        let n = elements(&p.shape);
        let size = match p.init {
            crate::ir::ParamInit::File => 4,
            crate::ir::ParamInit::Inline(_) => 8,
        };
        seeded_bytes = seeded_bytes.saturating_add(n.saturating_mul(size));
        params = params.saturating_add(n);
    }
    let (order, dies_after) = schedule(program);
    let size = |n: NodeIndex| elements(&program.graph[n].shape);
    let mut live: u64 = program
        .inputs
        .iter()
        .map(|&n| size(n))
        .fold(0, u64::saturating_add);
    let mut peak = live;
    for (i, &n) in order.iter().enumerate() {
        let node = &program.graph[n];
        if node.op == Op::Input {
            continue; // counted from the start: the caller holds the inputs
        }
        let mut scratch = size(n);
        for &p in &node.params {
            scratch = scratch.saturating_add(elements(&program.params[p].shape));
        }
        let operands = program.operands(n);
        if node.keep_in.is_some() {
            scratch = scratch.saturating_add(size(operands[0]));
        }
        if let (Op::Conv2d(_), Some(&w)) = (&node.op, node.params.first()) {
            // im2col: C/groups * kh * kw rows of oh * ow columns.
            let wshape = &program.params[w].shape;
            let rows = elements(&wshape[1..]);
            let cols = elements(&node.shape[2..]);
            scratch = scratch.saturating_add(rows.saturating_mul(cols));
        }
        peak = peak.max(live.saturating_add(scratch));
        live = live.saturating_add(size(n));
        for &dead in &dies_after[i] {
            if program.graph[dead].op != Op::Input {
                live = live.saturating_sub(size(dead));
            }
        }
    }
    let outputs = program
        .outputs
        .iter()
        .map(|&n| size(n))
        .fold(0, u64::saturating_add);
    peak = peak.max(live.saturating_add(outputs));
    MemoryEstimate {
        seeded_bytes,
        params,
        run_elements: peak,
    }
}

fn check_args<T: Scalar>(
    program: &Program,
    weights: &Weights,
    inputs: &[Tensor<T>],
) -> Result<(), RunError> {
    if inputs.len() != program.inputs.len() {
        return Err(RunError::InputCount {
            expected: program.inputs.len(),
            got: inputs.len(),
        });
    }
    for (&n, t) in program.inputs.iter().zip(inputs) {
        let node = &program.graph[n];
        if t.shape != node.shape {
            return Err(RunError::InputShape {
                name: node.name.clone(),
                expected: node.shape.clone(),
                got: t.shape.clone(),
            });
        }
        if t.data.len() != t.shape.iter().product::<usize>() {
            return Err(RunError::InputData {
                name: node.name.clone(),
                shape: t.shape.clone(),
                len: t.data.len(),
            });
        }
    }
    if weights.len() != program.params.len() {
        return Err(RunError::Weights {
            message: format!(
                "{} tensors for {} parameters",
                weights.len(),
                program.params.len()
            ),
        });
    }
    for (p, t) in program.params.iter().zip(weights.tensors()) {
        let want: usize = p.shape.iter().product();
        if t.len() != want {
            return Err(RunError::Weights {
                message: format!(
                    "`@{}` has {} values, but its shape {} needs {want}",
                    p.name,
                    t.len(),
                    dims_text(&p.shape)
                ),
            });
        }
    }
    Ok(())
}

/// The params of `node` as the masked program sees them, converted to `T`: for `keep_in`, the
/// weight entries of dropped input channels (conv2d `w[:, c]`, linear `w[:, f]`) are zero; for
/// `keep_out`, the weight rows `w[o]` and bias entries `b[o]` of dropped output channels are
/// zero. Other nodes get their params unchanged.
pub fn node_params<T: Scalar>(
    program: &Program,
    node: NodeIndex,
    weights: &Weights,
) -> Vec<Vec<T>> {
    let n = &program.graph[node];
    let mut params: Vec<Vec<T>> = n
        .params
        .iter()
        .map(|&p| weights.tensor(p).to_vec())
        .collect();
    if n.keep_in.is_none() && n.keep_out.is_none() {
        return params;
    }
    assert!(
        n.op.is_channel_mixing(),
        "Program invariant: masks only on channel-mixing ops"
    );
    // The weight is [O, C, rest...] (conv2d: rest = kh, kw; linear: none).
    let shape = &program.params[n.params[0]].shape;
    let (outs, ins) = (shape[0], shape[1]);
    let inner: usize = shape[2..].iter().product();
    if let Some(kept) = &n.keep_in {
        let keep = membership(kept, ins);
        let w = &mut params[0];
        for o in 0..outs {
            for c in (0..ins).filter(|&c| !keep[c]) {
                let at = (o * ins + c) * inner;
                w[at..at + inner].fill(T::ZERO);
            }
        }
    }
    if let Some(kept) = &n.keep_out {
        let keep = membership(kept, outs);
        for o in (0..outs).filter(|&o| !keep[o]) {
            let row = ins * inner;
            params[0][o * row..(o + 1) * row].fill(T::ZERO);
            if let Some(bias) = params.get_mut(1) {
                bias[o] = T::ZERO;
            }
        }
    }
    params
}

fn membership(kept: &[usize], len: usize) -> Vec<bool> {
    let mut keep = vec![false; len];
    for &k in kept {
        keep[k] = true;
    }
    keep
}

/// Evaluates one op. `params` are already masked; `out_shape` is the inferred result shape.
fn eval<T: Scalar>(
    op: &Op,
    x: &[&Tensor<T>],
    params: &[Vec<T>],
    param_shapes: &[&[usize]],
    out_shape: &[usize],
) -> Tensor<T> {
    let bias = params.get(1).map(Vec::as_slice);
    match op {
        Op::Input => unreachable!("inputs are not evaluated"),
        Op::Conv2d(c) => conv::conv2d(x[0], &params[0], param_shapes[0], bias, c, out_shape),
        Op::Linear => conv::linear(x[0], &params[0], param_shapes[0], bias),
        Op::BatchNorm { eps } => kernels::batch_norm(x[0], params, *eps),
        Op::Activation(a) => kernels::activation(x[0], *a),
        Op::Add => kernels::broadcast(x[0], x[1], out_shape, |a, b| a + b),
        Op::Mul => kernels::broadcast(x[0], x[1], out_shape, |a, b| a * b),
        Op::Concat => kernels::concat(x, out_shape),
        Op::MaxPool2d(p) => kernels::max_pool(x[0], p, out_shape),
        Op::AvgPool2d(p) => kernels::avg_pool(x[0], p, out_shape),
        Op::GlobalAvgPool | Op::AdaptiveAvgPool => kernels::global_avg_pool(x[0]),
        Op::Flatten | Op::Dropout { .. } => Tensor {
            shape: out_shape.to_vec(),
            data: x[0].data.clone(),
        },
        Op::Gather { indices } => kernels::select_channels(x[0], indices),
        Op::Slice { start, end } => {
            let indices: Vec<usize> = (*start..*end).collect();
            kernels::select_channels(x[0], &indices)
        }
        Op::Permute { order } => kernels::select_channels(x[0], order),
    }
}

/// Seeded inputs, one per model input: uniform in [-1, 1), rounded to `f32`, from
/// `SplitMix64::for_name(seed, "%name")` (deterministic forever, like seeded weights).
pub fn random_inputs<T: Scalar>(program: &Program, seed: u64) -> Vec<Tensor<T>> {
    program
        .inputs
        .iter()
        .map(|&n| {
            let node = &program.graph[n];
            let mut rng = SplitMix64::for_name(seed, &format!("%{}", node.name));
            let len: usize = node.shape.iter().product();
            Tensor {
                shape: node.shape.clone(),
                data: (0..len)
                    .map(|_| T::from_f64(rng.uniform(-1.0, 1.0)))
                    .collect(),
            }
        })
        .collect()
}
