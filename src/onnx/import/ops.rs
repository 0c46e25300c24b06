//! The op table: one handler per ONNX op family, each mapping a node onto the closed `.nnir`
//! op set (or an error naming the node). [`handler`] is the only way in; an op type absent from
//! [`OPS`] is an error, never skipped.

use super::data::decode_tensor;
use super::{made_up, Builder, Const, ConstData, Floats, Value};
use crate::ir::{ops, Activation, Conv2d, Op, Pool2d};
use crate::onnx::proto::{self, NodeProto};
use crate::onnx::OnnxError;
use petgraph::graph::NodeIndex;
use std::path::Path;

/// A handler: adds what `node` computes to the builder. `base` is the node's module path (or
/// name), the stem of the names of params it makes up.
type Handler = fn(&mut Builder<'_>, &NodeProto, &str) -> Result<(), OnnxError>;

/// One supported ONNX op type: its input and output arity (as the ONNX operator schema gives
/// them, optional ones included), the opset it appeared in, and its handler. The arity and
/// version are checked for every node before its handler runs, so no handler sees an input it
/// would otherwise silently ignore.
pub(super) struct OpSpec {
    pub name: &'static str,
    pub min_inputs: usize,
    pub max_inputs: usize,
    pub max_outputs: usize,
    pub since: i64,
    pub handler: Handler,
}

const fn op(
    name: &'static str,
    (min_inputs, max_inputs): (usize, usize),
    max_outputs: usize,
    since: i64,
    handler: Handler,
) -> OpSpec {
    OpSpec {
        name,
        min_inputs,
        max_inputs,
        max_outputs,
        since,
        handler,
    }
}

/// Any number of inputs (variadic ops).
const MANY: usize = usize::MAX;

/// ONNX op type -> arity, first opset and handler, one row per op type.
#[rustfmt::skip]
const OPS: &[OpSpec] = &[
    op("Identity",           (1, 1),    1, 1,  |b, n, base| b.identity(n, base)),
    op("Dropout",            (1, 3),    2, 1,  |b, n, base| b.identity(n, base)),
    op("Constant",           (0, 0),    1, 1,  |b, n, base| b.constant_node(n, base)),
    op("Conv",               (2, 3),    1, 1,  |b, n, base| b.conv(n, base)),
    op("BatchNormalization", (5, 5),    3, 1,  |b, n, base| b.batch_norm(n, base)),
    op("Relu",               (1, 1),    1, 1,  |b, n, base| b.activation(n, base)),
    op("Sigmoid",            (1, 1),    1, 1,  |b, n, base| b.activation(n, base)),
    op("HardSwish",          (1, 1),    1, 14, |b, n, base| b.activation(n, base)),
    op("HardSigmoid",        (1, 1),    1, 6,  |b, n, base| b.hard_sigmoid(n, base)),
    op("Clip",               (1, 3),    1, 1,  |b, n, base| b.clip(n, base)),
    op("Add",                (2, 2),    1, 1,  |b, n, base| b.add_mul(n, base)),
    op("Mul",                (2, 2),    1, 1,  |b, n, base| b.add_mul(n, base)),
    op("Concat",             (1, MANY), 1, 1,  |b, n, base| b.concat(n, base)),
    op("MaxPool",            (1, 1),    2, 1,  |b, n, base| b.pool(n, base)),
    op("AveragePool",        (1, 1),    1, 1,  |b, n, base| b.pool(n, base)),
    op("GlobalAveragePool",  (1, 1),    1, 1,  |b, n, base| b.global_pool(n, base)),
    op("ReduceMean",         (1, 2),    1, 1,  |b, n, base| b.reduce_mean(n, base)),
    op("Flatten",            (1, 1),    1, 1,  |b, n, base| b.flatten(n, base)),
    op("Reshape",            (2, 2),    1, 5,  |b, n, base| b.reshape(n, base)),
    op("Gemm",               (2, 3),    1, 1,  |b, n, base| b.gemm(n, base)),
    op("MatMul",             (2, 2),    1, 1,  |b, n, base| b.matmul(n, base)),
    op("Gather",             (2, 2),    1, 1,  |b, n, base| b.gather(n, base)),
    op("Slice",              (3, 5),    1, 10, |b, n, base| b.slice(n, base)),
    op("Pad",                (2, 4),    1, 11, |b, n, base| b.pad(n, base)),
    op("Shape",              (1, 1),    1, 1,  |b, n, base| b.shape(n, base)),
    op("Unsqueeze",          (2, 2),    1, 13, |b, n, base| b.unsqueeze(n, base)),
];

/// The spec of `op_type`, if it is supported.
pub(super) fn spec(op_type: &str) -> Option<&'static OpSpec> {
    OPS.iter().find(|s| s.name == op_type)
}

pub(super) fn attr<'n>(node: &'n NodeProto, name: &str) -> Option<&'n proto::AttributeProto> {
    node.attribute
        .iter()
        .find(|a| a.name.as_deref() == Some(name))
}

pub(super) fn attr_i(node: &NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).and_then(|a| a.i).unwrap_or(default)
}

fn attr_f(node: &NodeProto, name: &str, default: f32) -> f32 {
    attr(node, name).and_then(|a| a.f).unwrap_or(default)
}

pub(super) fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(node, name).map(|a| a.ints.clone())
}

/// A float attribute as the shortest decimal that rounds to it (so 1e-5 stays 1e-5).
fn widen(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(f64::from(v))
}

impl Builder<'_> {
    fn identity(&mut self, node: &NodeProto, _base: &str) -> Result<(), OnnxError> {
        self.allow(node, &["seed"])?;
        if attr_i(node, "training_mode", 0) != 0 {
            return Err(self.err(node, "training mode is not supported"));
        }
        // Dropout's optional inputs (ratio, training_mode) do not matter at inference. An
        // alias of a padded value stays padded (its reader folds the padding).
        let out = node.output.first().cloned().unwrap_or_default();
        let v = self
            .any_value(node, 0)?
            .cloned()
            .ok_or_else(|| self.err(node, "input 0 is missing"))?;
        if node.output.iter().skip(1).any(|o| !o.is_empty()) {
            return Err(self.err(node, "the mask output is not supported"));
        }
        self.define(node, out, v)
    }

    fn constant_node(&mut self, node: &NodeProto, _base: &str) -> Result<(), OnnxError> {
        let out = node.output.first().cloned().unwrap_or_default();
        let c = match node.attribute.first() {
            Some(a) if node.attribute.len() == 1 => match a.name.as_deref() {
                Some("value") => {
                    let t = a.t.as_ref().ok_or_else(|| self.err(node, "no tensor"))?;
                    // Only initializers may live in files (inside the model's folder).
                    if !t.external_data.is_empty() || t.data_location.is_some_and(|l| l != 0) {
                        return Err(self.err(node, "a Constant cannot hold external data"));
                    }
                    decode_tensor(t, Path::new("."), false, &mut self.budget)
                        .map_err(|e| self.err(node, e))?
                }
                Some("value_float") => Const {
                    dims: vec![],
                    data: ConstData::F32(Some(vec![a.f.unwrap_or(0.0)])),
                },
                Some("value_floats") => Const {
                    dims: vec![a.floats.len()],
                    data: ConstData::F32(Some(a.floats.clone())),
                },
                Some("value_int") => Const {
                    dims: vec![],
                    data: ConstData::I64(vec![a.i.unwrap_or(0)]),
                },
                Some("value_ints") => Const {
                    dims: vec![a.ints.len()],
                    data: ConstData::I64(a.ints.clone()),
                },
                Some(other) => return Err(self.err(node, format!("`{other}` is not supported"))),
                None => return Err(self.err(node, "unnamed attribute")),
            },
            _ => return Err(self.err(node, "needs exactly one value attribute")),
        };
        self.define(node, out, Value::Const(c))
    }

    fn conv(&mut self, node: &NodeProto, base: &str) -> Result<(), OnnxError> {
        self.allow(
            node,
            &[
                "kernel_shape",
                "strides",
                "pads",
                "dilations",
                "group",
                "auto_pad",
            ],
        )?;
        let (x, folded) = self.padded(node, 0)?;
        let (wd, w) = self
            .f32_const(node, 1)?
            .ok_or_else(|| self.err(node, "the weight is missing"))?;
        if wd.len() != 4 {
            return Err(self.err(node, "only 2-D convolutions are supported"));
        }
        if let Some(a) = attr(node, "auto_pad") {
            if a.s.as_deref().is_some_and(|s| s != b"NOTSET") {
                return Err(self.err(node, "auto_pad is not supported (use pads)"));
            }
        }
        if attr_ints(node, "kernel_shape").is_some_and(|k| k != [wd[2] as i64, wd[3] as i64]) {
            return Err(self.err(node, "kernel_shape disagrees with the weight"));
        }
        let stride = self.pair(node, "strides", [1, 1])?;
        let dilation = self.pair(node, "dilations", [1, 1])?;
        // A zero Pad in front folds into the convolution's own zero padding (the same sums).
        let padding = add_pads(self.pads(node)?, folded);
        let groups = self.positive(node, attr_i(node, "group", 1))?;
        let mut params = vec![self.param(self.param_names(node, 1, base, "weight"), wd, w)];
        if let Some((bd, bias)) = self.f32_const(node, 2)? {
            params.push(self.param(self.param_names(node, 2, base, "bias"), bd, bias));
        }
        let op = Op::Conv2d(Conv2d {
            stride,
            padding,
            dilation,
            groups,
        });
        self.emit(node, op, &[x], params)
    }

    fn batch_norm(&mut self, node: &NodeProto, base: &str) -> Result<(), OnnxError> {
        self.allow(node, &["epsilon", "momentum", "training_mode", "spatial"])?;
        if attr_i(node, "training_mode", 0) != 0 || attr_i(node, "spatial", 1) != 1 {
            return Err(self.err(node, "only inference-mode, spatial batch norm is supported"));
        }
        let x = self.tensor(node, 0)?;
        let eps = widen(attr_f(node, "epsilon", 1e-5));
        let mut params = Vec::new();
        for (i, what) in [
            (1, "weight"),
            (2, "bias"),
            (3, "running_mean"),
            (4, "running_var"),
        ] {
            let (d, v) = self
                .f32_const(node, i)?
                .ok_or_else(|| self.err(node, format!("the {what} is missing")))?;
            params.push(self.param(self.param_names(node, i, base, what), d, v));
        }
        self.emit(node, Op::BatchNorm { eps }, &[x], params)
    }

    fn activation(&mut self, node: &NodeProto, _base: &str) -> Result<(), OnnxError> {
        let op_type = node.op_type.as_deref().unwrap_or("");
        self.allow(node, &[])?;
        let a = match op_type {
            "Relu" => Activation::Relu,
            "Sigmoid" => Activation::Sigmoid,
            _ => Activation::HardSwish,
        };
        let x = self.tensor(node, 0)?;
        self.emit(node, Op::Activation(a), &[x], vec![])
    }

    fn hard_sigmoid(&mut self, node: &NodeProto, _base: &str) -> Result<(), OnnxError> {
        self.allow(node, &["alpha", "beta"])?;
        let (alpha, beta) = (attr_f(node, "alpha", 0.2), attr_f(node, "beta", 0.5));
        if (alpha - 1.0 / 6.0).abs() > 1e-6 || beta != 0.5 {
            return Err(self.err(
                node,
                format!("only alpha=1/6, beta=0.5 (PyTorch's hardsigmoid) is supported, got alpha={alpha}, beta={beta}"),
            ));
        }
        let x = self.tensor(node, 0)?;
        self.emit(node, Op::Activation(Activation::HardSigmoid), &[x], vec![])
    }

    fn clip(&mut self, node: &NodeProto, _base: &str) -> Result<(), OnnxError> {
        self.allow(node, &[])?;
        let bound = |i: usize, name: &str| -> Result<Option<f32>, OnnxError> {
            if let Some((_, v)) = self.f32_const(node, i)? {
                return match v.as_deref() {
                    Some([x]) => Ok(Some(*x)),
                    None => Err(self.err(node, format!("{name} is external data, not read"))),
                    _ => Err(self.err(node, format!("{name} must be a scalar"))),
                };
            }
            Ok(None)
        };
        let (lo, hi) = (bound(1, "min")?, bound(2, "max")?);
        if lo != Some(0.0) || hi != Some(6.0) {
            return Err(self.err(
                node,
                format!("only Clip(0, 6) (relu6) is supported, got min={lo:?}, max={hi:?}"),
            ));
        }
        let x = self.tensor(node, 0)?;
        self.emit(node, Op::Activation(Activation::Relu6), &[x], vec![])
    }

    fn add_mul(&mut self, node: &NodeProto, base: &str) -> Result<(), OnnxError> {
        let op_type = node.op_type.as_deref().unwrap_or("");
        self.allow(node, &[])?;
        let a = self.value(node, 0)?.cloned();
        let b = self.value(node, 1)?.cloned();
        let op = if op_type == "Add" { Op::Add } else { Op::Mul };
        match (a, b) {
            (Some(Value::Tensor(x)), Some(Value::Tensor(y))) => {
                self.emit(node, op, &[x, y], vec![])
            }
            (Some(Value::Tensor(x)), Some(Value::Const(c)))
            | (Some(Value::Const(c)), Some(Value::Tensor(x))) => {
                self.affine(node, base, x, &c, op == Op::Mul)
            }
            (Some(Value::Const(_)), Some(Value::Const(_))) => Err(self.err(
                node,
                "both operands are constants (constant folding is not supported)",
            )),
            _ => Err(self.err(node, "an operand is missing")),
        }
    }

    fn concat(&mut self, node: &NodeProto, _base: &str) -> Result<(), OnnxError> {
        self.allow(node, &["axis"])?;
        if let Some(Value::Const(_)) = self.value(node, 0)? {
            return self.concat_const(node);
        }
        let xs: Vec<NodeIndex> = (0..node.input.len())
            .map(|i| self.tensor(node, i))
            .collect::<Result<_, _>>()?;
        let rank = xs.first().map_or(0, |&x| self.graph[x].shape.len()) as i64;
        let axis = attr_i(node, "axis", 1);
        if axis != 1 && axis + rank != 1 {
            return Err(self.err(
                node,
                format!("only axis 1 (channels) is supported, got {axis}"),
            ));
        }
        self.emit(node, Op::Concat, &xs, vec![])
    }

    fn pool(&mut self, node: &NodeProto, _base: &str) -> Result<(), OnnxError> {
        let op_type = node.op_type.as_deref().unwrap_or("");
        self.allow(
            node,
            &[
                "kernel_shape",
                "strides",
                "pads",
                "ceil_mode",
                "count_include_pad",
                "dilations",
                "auto_pad",
                "storage_order",
            ],
        )?;
        if let Some(a) = attr(node, "auto_pad") {
            if a.s.as_deref().is_some_and(|s| s != b"NOTSET") {
                return Err(self.err(node, "auto_pad is not supported (use pads)"));
            }
        }
        if attr_ints(node, "dilations").is_some_and(|d| d.iter().any(|&v| v != 1)) {
            return Err(self.err(node, "dilated pooling is not supported"));
        }
        if attr_i(node, "storage_order", 0) != 0 {
            return Err(self.err(node, "storage_order=1 is not supported"));
        }
        let (x, folded) = if op_type == "AveragePool" {
            self.padded(node, 0)?
        } else {
            (self.tensor(node, 0)?, [0; 4])
        };
        let kernel = match attr_ints(node, "kernel_shape").as_deref() {
            Some(&[h, w]) => [self.positive(node, h)?, self.positive(node, w)?],
            _ => return Err(self.err(node, "kernel_shape must have two entries")),
        };
        let mut p = Pool2d {
            kernel,
            stride: self.pair(node, "strides", [1, 1])?,
            padding: self.pads(node)?,
            ceil_mode: attr_i(node, "ceil_mode", 0) != 0,
            count_include_pad: attr_i(node, "count_include_pad", 0) != 0,
        };
        if folded != [0; 4] {
            // torch 2.0 writes AvgPool2d(padding=p) as Pad + AveragePool: the padded zeros
            // count in the divisor, which is exact as `count_include_pad` when every window
            // lies inside the padded input (no ceil_mode) and the pool's own padding (if any)
            // counts too.
            if p.ceil_mode || (p.padding != [0; 4] && !p.count_include_pad) {
                return Err(self.err(
                    node,
                    "the zero Pad in front cannot be folded exactly (ceil_mode, or own padding \
                     not counted in the average)",
                ));
            }
            p.padding = add_pads(p.padding, folded);
            p.count_include_pad = true;
        }
        let op = if op_type == "MaxPool" {
            Op::MaxPool2d(p)
        } else {
            Op::AvgPool2d(p)
        };
        self.emit(node, op, &[x], vec![])
    }

    fn global_pool(&mut self, node: &NodeProto, _base: &str) -> Result<(), OnnxError> {
        self.allow(node, &[])?;
        let x = self.tensor(node, 0)?;
        self.emit(node, Op::GlobalAvgPool, &[x], vec![])
    }

    fn reduce_mean(&mut self, node: &NodeProto, _base: &str) -> Result<(), OnnxError> {
        // The dynamo exporter writes adaptive_avg_pool2d((1, 1)) as ReduceMean over
        // the spatial axes (given as an input from opset 18, an attribute before).
        let x = self.tensor(node, 0)?;
        let axes = if self.opset < 18 {
            self.allow(node, &["axes", "keepdims"])?;
            if node.input.len() > 1 {
                return Err(self.err(
                    node,
                    format!(
                        "axes are an attribute before opset 18, not an input (opset {})",
                        self.opset
                    ),
                ));
            }
            attr_ints(node, "axes").unwrap_or_default()
        } else {
            self.allow(node, &["keepdims", "noop_with_empty_axes"])?;
            self.i64_const(node, 1)?.unwrap_or_default()
        };
        let rank = self.graph[x].shape.len() as i64;
        let mut axes: Vec<i64> = axes
            .iter()
            .map(|&a| if a < 0 { a + rank } else { a })
            .collect();
        axes.sort_unstable();
        if rank != 4 || axes != [2, 3] {
            return Err(self.err(
                node,
                format!(
                    "only a mean over the spatial axes [2, 3] of a 4-d tensor (global \
                     average pooling) is supported, got axes {axes:?} of rank {rank}"
                ),
            ));
        }
        if attr_i(node, "keepdims", 1) != 0 {
            return self.emit(node, Op::GlobalAvgPool, &[x], vec![]);
        }
        // keepdims=0: pool to [N, C, 1, 1], then flatten to [N, C].
        let mut pooled = node.clone();
        pooled.output = vec![format!(
            "{}.pooled",
            node.output.first().cloned().unwrap_or_default()
        )];
        self.emit(&pooled, Op::GlobalAvgPool, &[x], vec![])?;
        let Some(Value::Tensor(p)) = self.values.get(&pooled.output[0]).cloned() else {
            unreachable!("emit defines its output")
        };
        self.emit(node, Op::Flatten, &[p], vec![])
    }

    fn flatten(&mut self, node: &NodeProto, _base: &str) -> Result<(), OnnxError> {
        self.allow(node, &["axis"])?;
        let x = self.tensor(node, 0)?;
        if attr_i(node, "axis", 1) != 1 {
            return Err(self.err(node, "only axis=1 is supported"));
        }
        self.emit(node, Op::Flatten, &[x], vec![])
    }

    fn reshape(&mut self, node: &NodeProto, _base: &str) -> Result<(), OnnxError> {
        self.allow(node, &["allowzero"])?;
        let x = self.tensor(node, 0)?;
        let target = self
            .i64_const(node, 1)?
            .ok_or_else(|| self.err(node, "the shape input must be a constant"))?;
        let shape = self.graph[x].shape.clone();
        let rest: usize = shape.iter().skip(1).product();
        let ok = shape.len() >= 2
            && target.len() == 2
            && (target[0] == shape[0] as i64
                || target[0] == 0
                || (target[0] == -1 && target[1] == rest as i64))
            && (target[1] == -1 || target[1] == rest as i64);
        if !ok {
            return Err(self.err(
                node,
                format!(
                    "only a reshape to [N, -1] (flatten) is supported, got {target:?} for {}",
                    ops::dims_text(&shape)
                ),
            ));
        }
        self.emit(node, Op::Flatten, &[x], vec![])
    }

    fn gemm(&mut self, node: &NodeProto, base: &str) -> Result<(), OnnxError> {
        self.allow(node, &["alpha", "beta", "transA", "transB"])?;
        if attr_f(node, "alpha", 1.0) != 1.0
            || attr_f(node, "beta", 1.0) != 1.0
            || attr_i(node, "transA", 0) != 0
        {
            return Err(self.err(node, "only alpha=1, beta=1, transA=0 is supported"));
        }
        let x = self.tensor(node, 0)?;
        let (bd, b) = self
            .f32_const(node, 1)?
            .ok_or_else(|| self.err(node, "the weight is missing"))?;
        if bd.len() != 2 {
            return Err(self.err(node, "the weight must have rank 2"));
        }
        let (wd, w) = if attr_i(node, "transB", 0) != 0 {
            (bd, b)
        } else {
            transpose(&bd, b.as_deref())
        };
        let mut params = vec![self.param(self.param_names(node, 1, base, "weight"), wd.clone(), w)];
        if let Some((cd, c)) = self.f32_const(node, 2)? {
            if cd.iter().product::<usize>() != wd[0] || cd.iter().filter(|&&d| d != 1).count() > 1 {
                return Err(self.err(node, "the bias must have one value per output feature"));
            }
            params.push(self.param(self.param_names(node, 2, base, "bias"), vec![wd[0]], c));
        }
        self.emit(node, Op::Linear, &[x], params)
    }

    fn matmul(&mut self, node: &NodeProto, base: &str) -> Result<(), OnnxError> {
        self.allow(node, &[])?;
        let x = self.tensor(node, 0)?;
        let (bd, b) = self
            .f32_const(node, 1)?
            .ok_or_else(|| self.err(node, "the second operand must be a constant weight"))?;
        if bd.len() != 2 {
            return Err(self.err(node, "the weight must have rank 2"));
        }
        let (wd, w) = transpose(&bd, b.as_deref());
        let params = vec![self.param(self.param_names(node, 1, base, "weight"), wd, w)];
        self.emit(node, Op::Linear, &[x], params)
    }

    fn gather(&mut self, node: &NodeProto, _base: &str) -> Result<(), OnnxError> {
        self.allow(node, &["axis"])?;
        if let Some(Value::Const(c)) = self.value(node, 0)?.cloned() {
            return self.gather_const(node, &c);
        }
        let x = self.tensor(node, 0)?;
        let shape = self.graph[x].shape.clone();
        let axis = attr_i(node, "axis", 0);
        if axis != 1 && axis + shape.len() as i64 != 1 {
            return Err(self.err(
                node,
                format!("only axis 1 (channels) is supported, got {axis}"),
            ));
        }
        let c = shape.get(1).copied().unwrap_or(0) as i64;
        let idx = self
            .i64_const(node, 1)?
            .ok_or_else(|| self.err(node, "the indices must be a constant"))?;
        if matches!(self.constant(node, 1)?, Some(Const { ref dims, .. }) if dims.len() != 1) {
            return Err(self.err(node, "the indices must be a 1-D tensor"));
        }
        let indices: Vec<usize> = idx
            .iter()
            .map(|&i| {
                let j = if i < 0 { i + c } else { i };
                if (0..c).contains(&j) {
                    Ok(j as usize)
                } else {
                    Err(self.err(node, format!("index {i} is out of range for {c} channels")))
                }
            })
            .collect::<Result<_, _>>()?;
        if indices.is_empty() {
            return Err(self.err(node, "gathers no channel"));
        }
        let mut sorted = indices.clone();
        sorted.sort_unstable();
        let op = if sorted.iter().enumerate().all(|(k, &v)| k == v) && sorted.len() as i64 == c {
            Op::Permute { order: indices }
        } else {
            Op::Gather { indices }
        };
        self.emit(node, op, &[x], vec![])
    }

    fn slice(&mut self, node: &NodeProto, _base: &str) -> Result<(), OnnxError> {
        self.allow(node, &[])?;
        let x = self.tensor(node, 0)?;
        let shape = self.graph[x].shape.clone();
        let rank = shape.len() as i64;
        let starts = self
            .i64_const(node, 1)?
            .ok_or_else(|| self.err(node, "starts must be a constant"))?;
        let ends = self
            .i64_const(node, 2)?
            .ok_or_else(|| self.err(node, "ends must be a constant"))?;
        let axes = self
            .i64_const(node, 3)?
            .unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = self
            .i64_const(node, 4)?
            .unwrap_or_else(|| vec![1; starts.len()]);
        if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
            return Err(self.err(node, "starts, ends, axes and steps differ in length"));
        }
        let mut range = None;
        let mut seen = Vec::new();
        for k in 0..starts.len() {
            let axis = if axes[k] < 0 { axes[k] + rank } else { axes[k] };
            if seen.contains(&axis) {
                return Err(self.err(node, format!("axis {axis} is sliced twice")));
            }
            seen.push(axis);
            if !(0..rank).contains(&axis) || steps[k] != 1 {
                return Err(self.err(node, "only unit-step slices of existing axes are supported"));
            }
            let dim = shape[axis as usize] as i64;
            let clamp = |v: i64| (if v < 0 { v + dim } else { v }).clamp(0, dim);
            let (s, e) = (clamp(starts[k]), clamp(ends[k]));
            if axis == 1 {
                range = Some((s, e));
            } else if (s, e) != (0, dim) {
                return Err(self.err(
                    node,
                    format!("only slicing axis 1 (channels) is supported, not axis {axis}"),
                ));
            }
        }
        let (start, end) = range.unwrap_or((0, shape.get(1).copied().unwrap_or(0) as i64));
        if start >= end {
            return Err(self.err(node, "the slice is empty"));
        }
        let op = Op::Slice {
            start: start as usize,
            end: end as usize,
        };
        self.emit(node, op, &[x], vec![])
    }

    /// `Mul`/`Add` of `x` by a per-channel constant `c`, as `batch_norm` with `eps=0`.
    fn affine(
        &mut self,
        node: &NodeProto,
        base: &str,
        x: NodeIndex,
        c: &Const,
        mul: bool,
    ) -> Result<(), OnnxError> {
        let ConstData::F32(values) = &c.data else {
            return Err(self.err(node, "the constant operand must be float32"));
        };
        let shape = self.graph[x].shape.clone();
        let rank = shape.len();
        let channels = shape.get(1).copied().unwrap_or(0);
        if c.dims.len() > rank || rank < 2 {
            return Err(self.err(
                node,
                "the constant operand has a higher rank than the tensor",
            ));
        }
        let mut dims = vec![1; rank - c.dims.len()];
        dims.extend(&c.dims);
        let per_channel = dims
            .iter()
            .enumerate()
            .all(|(a, &d)| d == 1 || (a == 1 && d == channels));
        if !per_channel {
            return Err(self.err(
                node,
                format!(
                    "only a per-channel constant operand is supported, got shape {}",
                    ops::dims_text(&c.dims)
                ),
            ));
        }
        let v: Floats = values.as_ref().map(|values| match values.as_slice() {
            [one] => vec![*one; channels],
            _ => values.clone(),
        });
        let ones = Some(vec![1.0f32; channels]);
        let zeros = Some(vec![0.0f32; channels]);
        let (w, b) = if mul {
            (v, zeros.clone())
        } else {
            (ones.clone(), v)
        };
        let params = vec![
            self.param(made_up(format!("{base}.weight")), vec![channels], w),
            self.param(made_up(format!("{base}.bias")), vec![channels], b),
            self.param(
                made_up(format!("{base}.running_mean")),
                vec![channels],
                zeros,
            ),
            self.param(made_up(format!("{base}.running_var")), vec![channels], ones),
        ];
        self.emit(node, Op::BatchNorm { eps: 0.0 }, &[x], params)
    }
}

/// `[R, C]` row-major -> `[C, R]`.
fn transpose(dims: &[usize], data: Option<&[f32]>) -> (Vec<usize>, Floats) {
    let (r, c) = (dims[0], dims[1]);
    let Some(data) = data else {
        return (vec![c, r], None);
    };
    let mut out = vec![0.0; data.len()];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = data[i * c + j];
        }
    }
    (vec![c, r], Some(out))
}

/// Two paddings `[top, left, bottom, right]` added.
pub(super) fn add_pads(a: [usize; 4], b: [usize; 4]) -> [usize; 4] {
    [0, 1, 2, 3].map(|k| a[k].saturating_add(b[k]))
}
