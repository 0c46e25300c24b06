//! The closed set of ops, each with its attributes, arity and shape rule.
//!
//! Invariant: an [`Op`] value is always well-formed on its own (pool kernels >= 1, groups >= 1,
//! a `permute` order is a permutation); whether it fits its operands is [`infer_shape`]'s job.

use crate::diag::Code;

/// Output shape of a node: `[N, C, H, W]` or `[N, F]`.
pub type Shape = Vec<usize>;

#[derive(Debug, Clone, PartialEq)]
pub struct Conv2d {
    pub stride: [usize; 2],
    /// Top, left, bottom, right.
    pub padding: [usize; 4],
    pub dilation: [usize; 2],
    pub groups: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pool2d {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// Top, left, bottom, right.
    pub padding: [usize; 4],
    pub ceil_mode: bool,
    /// Average pooling only: whether padded zeros count in the divisor.
    pub count_include_pad: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Relu,
    Relu6,
    Silu,
    Sigmoid,
    HardSwish,
    HardSigmoid,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// A model input (no operands).
    Input,
    /// Params: weight `[O, C/groups, kh, kw]`, optional bias `[O]`.
    Conv2d(Conv2d),
    /// Params: weight, bias, running mean, running var, each `[C]`.
    BatchNorm {
        eps: f64,
    },
    Activation(Activation),
    Add,
    Mul,
    /// Along the channel axis.
    Concat,
    MaxPool2d(Pool2d),
    AvgPool2d(Pool2d),
    GlobalAvgPool,
    /// Adaptive average pooling to 1x1 (the only size supported).
    AdaptiveAvgPool,
    Flatten,
    /// Params: weight `[O, F]`, optional bias `[O]`.
    Linear,
    /// Identity at inference.
    Dropout {
        p: f64,
    },
    /// Output channel `i` is input channel `indices[i]`.
    Gather {
        indices: Vec<usize>,
    },
    /// Channels `start..end`.
    Slice {
        start: usize,
        end: usize,
    },
    /// Output channel `i` is input channel `order[i]`; `order` is a permutation.
    Permute {
        order: Vec<usize>,
    },
}

/// What an op accepts, for lowering: its name, value operands and params.
#[derive(Debug, Clone, Copy)]
pub struct Signature {
    pub name: &'static str,
    /// Minimum and maximum number of `%value` operands (`usize::MAX`: unbounded).
    pub values: (usize, usize),
    /// Minimum and maximum number of `@param` operands.
    pub params: (usize, usize),
    /// What the operands are, for error messages.
    pub operands_doc: &'static str,
    pub attrs: &'static [&'static str],
}

const POOL_ATTRS: &[&str] = &["kernel", "stride", "padding", "ceil_mode"];

/// Every op of the language, by name.
pub const SIGNATURES: &[Signature] = &[
    sig(
        "conv2d",
        (1, 1),
        (1, 2),
        "%input, @weight[, @bias]",
        &["stride", "padding", "dilation", "groups"],
    ),
    sig(
        "batch_norm",
        (1, 1),
        (4, 4),
        "%input, @weight, @bias, @running_mean, @running_var",
        &["eps"],
    ),
    sig("relu", (1, 1), (0, 0), "%input", &[]),
    sig("relu6", (1, 1), (0, 0), "%input", &[]),
    sig("silu", (1, 1), (0, 0), "%input", &[]),
    sig("sigmoid", (1, 1), (0, 0), "%input", &[]),
    sig("hardswish", (1, 1), (0, 0), "%input", &[]),
    sig("hardsigmoid", (1, 1), (0, 0), "%input", &[]),
    sig("add", (2, 2), (0, 0), "%a, %b", &[]),
    sig("mul", (2, 2), (0, 0), "%a, %b", &[]),
    sig("concat", (1, usize::MAX), (0, 0), "%a, %b, ...", &[]),
    sig("max_pool2d", (1, 1), (0, 0), "%input", POOL_ATTRS),
    sig(
        "avg_pool2d",
        (1, 1),
        (0, 0),
        "%input",
        &[
            "kernel",
            "stride",
            "padding",
            "ceil_mode",
            "count_include_pad",
        ],
    ),
    sig("global_avg_pool", (1, 1), (0, 0), "%input", &[]),
    sig("adaptive_avg_pool", (1, 1), (0, 0), "%input", &["size"]),
    sig("flatten", (1, 1), (0, 0), "%input", &[]),
    sig("linear", (1, 1), (1, 2), "%input, @weight[, @bias]", &[]),
    sig("dropout", (1, 1), (0, 0), "%input", &["p"]),
    sig("gather", (1, 1), (0, 0), "%input", &["indices"]),
    sig("slice", (1, 1), (0, 0), "%input", &["start", "end"]),
    sig("permute", (1, 1), (0, 0), "%input", &["order"]),
];

const fn sig(
    name: &'static str,
    values: (usize, usize),
    params: (usize, usize),
    operands_doc: &'static str,
    attrs: &'static [&'static str],
) -> Signature {
    Signature {
        name,
        values,
        params,
        operands_doc,
        attrs,
    }
}

pub fn signature(name: &str) -> Option<&'static Signature> {
    SIGNATURES.iter().find(|s| s.name == name)
}

impl Op {
    /// The op's name in `.nnir` (`"input"` for model inputs).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input => "input",
            Op::Conv2d(_) => "conv2d",
            Op::BatchNorm { .. } => "batch_norm",
            Op::Activation(a) => match a {
                Activation::Relu => "relu",
                Activation::Relu6 => "relu6",
                Activation::Silu => "silu",
                Activation::Sigmoid => "sigmoid",
                Activation::HardSwish => "hardswish",
                Activation::HardSigmoid => "hardsigmoid",
            },
            Op::Add => "add",
            Op::Mul => "mul",
            Op::Concat => "concat",
            Op::MaxPool2d(_) => "max_pool2d",
            Op::AvgPool2d(_) => "avg_pool2d",
            Op::GlobalAvgPool => "global_avg_pool",
            Op::AdaptiveAvgPool => "adaptive_avg_pool",
            Op::Flatten => "flatten",
            Op::Linear => "linear",
            Op::Dropout { .. } => "dropout",
            Op::Gather { .. } => "gather",
            Op::Slice { .. } => "slice",
            Op::Permute { .. } => "permute",
        }
    }

    /// Whether the op mixes input channels and may carry `keep_in` / `keep_out` masks:
    /// conv2d with groups == 1, and linear.
    pub fn is_channel_mixing(&self) -> bool {
        match self {
            Op::Conv2d(c) => c.groups == 1,
            Op::Linear => true,
            _ => false,
        }
    }
}

/// Why an op does not fit its operands. `operand` / `param` name the culprit (by position)
/// so that lowering can point at its definition.
#[derive(Debug, Clone, PartialEq)]
pub struct ShapeError {
    pub code: Code,
    pub message: String,
    pub operand: Option<usize>,
    pub param: Option<usize>,
}

fn err(code: Code, message: String) -> ShapeError {
    ShapeError {
        code,
        message,
        operand: None,
        param: None,
    }
}

impl ShapeError {
    fn at_operand(mut self, i: usize) -> Self {
        self.operand = Some(i);
        self
    }
    fn at_param(mut self, i: usize) -> Self {
        self.param = Some(i);
        self
    }
}

/// `[1, 64, 56, 56]`.
pub fn dims_text(s: &[usize]) -> String {
    let d: Vec<String> = s.iter().map(|d| d.to_string()).collect();
    format!("[{}]", d.join(", "))
}

fn expect_rank(shape: &[usize], rank: usize, what: &str, operand: usize) -> Result<(), ShapeError> {
    if shape.len() == rank {
        return Ok(());
    }
    Err(err(
        Code::RankMismatch,
        format!(
            "{what} must have rank {rank}, but has shape {}",
            dims_text(shape)
        ),
    )
    .at_operand(operand))
}

fn expect_param(
    shape: &[usize],
    want: &[usize],
    what: &str,
    param: usize,
) -> Result<(), ShapeError> {
    if shape == want {
        return Ok(());
    }
    Err(err(
        Code::ShapeMismatch,
        format!(
            "{what} must have shape {}, but is declared {}",
            dims_text(want),
            dims_text(shape)
        ),
    )
    .at_param(param))
}

/// One spatial output size of a window op; `None` when the window does not fit.
fn window_out(
    input: usize,
    pad: usize,
    extent: usize,
    stride: usize,
    ceil: bool,
    pad_start: usize,
) -> Option<usize> {
    let padded = input + pad;
    if padded < extent {
        return None;
    }
    let span = padded - extent;
    let mut out = if ceil {
        span.div_ceil(stride)
    } else {
        span / stride
    } + 1;
    // PyTorch: the last window must start inside the input or the leading padding.
    if ceil && (out - 1) * stride >= input + pad_start {
        out -= 1;
    }
    Some(out)
}

fn spatial(
    shape: &[usize],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 4],
    dilation: [usize; 2],
    ceil: bool,
) -> Result<[usize; 2], ShapeError> {
    let mut out = [0; 2];
    for axis in 0..2 {
        let extent = dilation[axis]
            .saturating_mul(kernel[axis] - 1)
            .saturating_add(1);
        let pad = padding[axis] + padding[axis + 2];
        out[axis] = window_out(
            shape[2 + axis],
            pad,
            extent,
            stride[axis],
            ceil,
            padding[axis],
        )
        .ok_or_else(|| {
            err(
                Code::BadShape,
                format!(
                    "the {extent}-wide window does not fit the input {} (axis {}, padding {pad})",
                    dims_text(shape),
                    2 + axis
                ),
            )
            .at_operand(0)
        })?;
    }
    Ok(out)
}

/// The output shape of `op` applied to value operands of shapes `inputs` and params of shapes
/// `params` (arity already checked against the op's [`Signature`]).
pub fn infer_shape(op: &Op, inputs: &[&[usize]], params: &[&[usize]]) -> Result<Shape, ShapeError> {
    let x = inputs.first().copied().unwrap_or(&[]);
    match op {
        Op::Input => Ok(x.to_vec()),
        Op::Conv2d(c) => {
            expect_rank(x, 4, "the input of conv2d", 0)?;
            let w = params[0];
            if w.len() != 4 {
                return Err(err(
                    Code::RankMismatch,
                    format!("conv2d weight must have rank 4 [out, in/groups, kh, kw], but is declared {}", dims_text(w)),
                )
                .at_param(0));
            }
            let (n, cin) = (x[0], x[1]);
            let cout = w[0];
            if !cin.is_multiple_of(c.groups) || !cout.is_multiple_of(c.groups) {
                return Err(err(
                    Code::ChannelMismatch,
                    format!("groups={} must divide both input channels ({cin}) and output channels ({cout})", c.groups),
                )
                .at_operand(0));
            }
            if w[1].checked_mul(c.groups) != Some(cin) {
                let per_group = if c.groups > 1 {
                    format!(" ({} per group x {} groups)", w[1], c.groups)
                } else {
                    String::new()
                };
                return Err(err(
                    Code::ChannelMismatch,
                    format!(
                        "conv2d weight expects {} input channels{per_group}, but the input has {cin}",
                        w[1].saturating_mul(c.groups)
                    ),
                )
                .at_operand(0)
                .at_param(0));
            }
            if w[2] == 0 || w[3] == 0 || cout == 0 {
                return Err(err(
                    Code::BadShape,
                    format!("conv2d weight {} has an empty dimension", dims_text(w)),
                )
                .at_param(0));
            }
            if let Some(b) = params.get(1) {
                expect_param(b, &[cout], "conv2d bias", 1)?;
            }
            let [h, wd] = spatial(x, [w[2], w[3]], c.stride, c.padding, c.dilation, false)?;
            Ok(vec![n, cout, h, wd])
        }
        Op::BatchNorm { .. } => {
            if x.len() < 2 {
                return Err(err(
                    Code::RankMismatch,
                    format!("batch_norm needs rank >= 2, got {}", dims_text(x)),
                )
                .at_operand(0));
            }
            const NAMES: [&str; 4] = ["weight", "bias", "running_mean", "running_var"];
            for (i, p) in params.iter().enumerate() {
                expect_param(p, &[x[1]], &format!("batch_norm {}", NAMES[i]), i)?;
            }
            Ok(x.to_vec())
        }
        Op::Activation(_) | Op::Dropout { .. } => Ok(x.to_vec()),
        Op::Add | Op::Mul => broadcast(inputs[0], inputs[1]),
        Op::Concat => {
            if x.len() < 2 {
                return Err(err(
                    Code::RankMismatch,
                    format!("concat needs rank >= 2, got {}", dims_text(x)),
                )
                .at_operand(0));
            }
            let mut out = x.to_vec();
            for (i, s) in inputs.iter().enumerate().skip(1) {
                if s.len() != x.len() {
                    return Err(err(
                        Code::RankMismatch,
                        format!(
                            "concat operands differ in rank: {} and {}",
                            dims_text(x),
                            dims_text(s)
                        ),
                    )
                    .at_operand(i));
                }
                let other_dims_equal = s
                    .iter()
                    .zip(x)
                    .enumerate()
                    .all(|(a, (p, q))| a == 1 || p == q);
                if !other_dims_equal {
                    return Err(err(
                        Code::ShapeMismatch,
                        format!(
                            "concat operands must agree on every axis but channels: {} and {}",
                            dims_text(x),
                            dims_text(s)
                        ),
                    )
                    .at_operand(i));
                }
                out[1] = out[1].saturating_add(s[1]);
            }
            Ok(out)
        }
        Op::MaxPool2d(p) | Op::AvgPool2d(p) => {
            expect_rank(x, 4, &format!("the input of {}", op.name()), 0)?;
            let [h, w] = spatial(x, p.kernel, p.stride, p.padding, [1, 1], p.ceil_mode)?;
            Ok(vec![x[0], x[1], h, w])
        }
        Op::GlobalAvgPool | Op::AdaptiveAvgPool => {
            expect_rank(x, 4, &format!("the input of {}", op.name()), 0)?;
            Ok(vec![x[0], x[1], 1, 1])
        }
        Op::Flatten => {
            if x.len() < 2 {
                return Err(err(
                    Code::RankMismatch,
                    format!("flatten needs rank >= 2, got {}", dims_text(x)),
                )
                .at_operand(0));
            }
            Ok(vec![x[0], x[1..].iter().product()])
        }
        Op::Linear => {
            expect_rank(x, 2, "the input of linear (flatten it first)", 0)?;
            let w = params[0];
            if w.len() != 2 {
                return Err(err(
                    Code::RankMismatch,
                    format!(
                        "linear weight must have rank 2 [out, in], but is declared {}",
                        dims_text(w)
                    ),
                )
                .at_param(0));
            }
            if w[1] != x[1] {
                return Err(err(
                    Code::ChannelMismatch,
                    format!(
                        "linear weight expects {} input features, but the input has {}",
                        w[1], x[1]
                    ),
                )
                .at_operand(0)
                .at_param(0));
            }
            if let Some(b) = params.get(1) {
                expect_param(b, &[w[0]], "linear bias", 1)?;
            }
            Ok(vec![x[0], w[0]])
        }
        Op::Gather { indices } => {
            let c = channels(x, op)?;
            if let Some(bad) = indices.iter().find(|&&i| i >= c) {
                return Err(err(
                    Code::ChannelMismatch,
                    format!("gather index {bad} is out of range for {c} channels"),
                )
                .at_operand(0));
            }
            with_channels(x, indices.len())
        }
        Op::Slice { start, end } => {
            let c = channels(x, op)?;
            if *end > c {
                return Err(err(
                    Code::ChannelMismatch,
                    format!("slice end {end} exceeds the {c} channels"),
                )
                .at_operand(0));
            }
            with_channels(x, end - start)
        }
        Op::Permute { order } => {
            let c = channels(x, op)?;
            if order.len() != c {
                return Err(err(
                    Code::ChannelMismatch,
                    format!(
                        "permute order has {} entries, but the input has {c} channels",
                        order.len()
                    ),
                )
                .at_operand(0));
            }
            Ok(x.to_vec())
        }
    }
}

fn channels(x: &[usize], op: &Op) -> Result<usize, ShapeError> {
    if x.len() < 2 {
        return Err(err(
            Code::RankMismatch,
            format!("{} needs rank >= 2, got {}", op.name(), dims_text(x)),
        )
        .at_operand(0));
    }
    Ok(x[1])
}

fn with_channels(x: &[usize], c: usize) -> Result<Shape, ShapeError> {
    let mut out = x.to_vec();
    out[1] = c;
    Ok(out)
}

/// Numpy broadcasting between operands of equal rank.
fn broadcast(a: &[usize], b: &[usize]) -> Result<Shape, ShapeError> {
    if a.len() != b.len() {
        return Err(err(
            Code::RankMismatch,
            format!(
                "operands have different ranks: {} and {}",
                dims_text(a),
                dims_text(b)
            ),
        )
        .at_operand(1));
    }
    let mut out = Vec::with_capacity(a.len());
    for (axis, (&p, &q)) in a.iter().zip(b).enumerate() {
        if p == q || q == 1 {
            out.push(p);
        } else if p == 1 {
            out.push(q);
        } else {
            let code = if axis == 1 {
                Code::ChannelMismatch
            } else {
                Code::ShapeMismatch
            };
            let what = if axis == 1 {
                "channel counts".to_string()
            } else {
                format!("axis {axis}")
            };
            return Err(err(
                code,
                format!(
                    "operands differ in {what}: {} and {} (neither is 1 there)",
                    dims_text(a),
                    dims_text(b)
                ),
            )
            .at_operand(1));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(stride: usize, pad: usize, groups: usize) -> Op {
        Op::Conv2d(Conv2d {
            stride: [stride; 2],
            padding: [pad; 4],
            dilation: [1, 1],
            groups,
        })
    }

    #[test]
    fn conv_shapes() {
        let out = infer_shape(&conv(2, 3, 1), &[&[1, 3, 224, 224]], &[&[64, 3, 7, 7]]).unwrap();
        assert_eq!(out, vec![1, 64, 112, 112]);
        let dw = infer_shape(&conv(1, 1, 32), &[&[1, 32, 56, 56]], &[&[32, 1, 3, 3]]).unwrap();
        assert_eq!(dw, vec![1, 32, 56, 56]);
        let e = infer_shape(&conv(1, 1, 1), &[&[1, 32, 56, 56]], &[&[64, 16, 3, 3]]).unwrap_err();
        assert_eq!(e.code, Code::ChannelMismatch);
    }

    #[test]
    fn ceil_mode_pool_matches_pytorch() {
        let p = Pool2d {
            kernel: [3, 3],
            stride: [2, 2],
            padding: [0; 4],
            ceil_mode: true,
            count_include_pad: true,
        };
        // squeezenet1_1: 111 -> 55 -> 27 -> 13 with ceil_mode=True.
        let out = infer_shape(&Op::MaxPool2d(p.clone()), &[&[1, 64, 111, 111]], &[]).unwrap();
        assert_eq!(out, vec![1, 64, 55, 55]);
        let out = infer_shape(&Op::MaxPool2d(p), &[&[1, 128, 55, 55]], &[]).unwrap();
        assert_eq!(out, vec![1, 128, 27, 27]);
    }

    #[test]
    fn broadcast_gate() {
        assert_eq!(
            broadcast(&[1, 8, 1, 1], &[1, 8, 5, 5]).unwrap(),
            vec![1, 8, 5, 5]
        );
        assert_eq!(
            broadcast(&[1, 8, 5, 5], &[1, 4, 5, 5]).unwrap_err().code,
            Code::ChannelMismatch
        );
    }
}
