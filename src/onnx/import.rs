//! ONNX `ModelProto` bytes -> a checked [`Program`] and its [`Weights`].
//!
//! Nodes map one by one onto `.nnir` ops (`Identity`, `Dropout` and `Constant` only rename);
//! initializers (and `Constant` tensors) become params named after them, sanitized to the
//! `.nnir` name charset `[A-Za-z0-9_./]` and made unique. A `Mul` or `Add` by a per-channel
//! constant becomes a `batch_norm` with `eps=0` (the exact same arithmetic). The result is
//! printed with [`crate::codegen::program_text`] and lowered again, so an import is always a
//! program the front end accepts.

use super::proto::{self, tensor_shape_proto::dimension, type_proto, ModelProto, NodeProto};
use super::{OnnxError, FLOAT, INT64};
use crate::ir::{ops, Activation, Conv2d, Node, Op, Param, ParamInit, Pool2d, Program};
use crate::weights::{TensorData, Weights};
use petgraph::graph::{DiGraph, NodeIndex};
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::path::Path;

const INT32: i32 = proto::tensor_proto::DataType::Int32 as i32;
const EXTERNAL: i32 = proto::tensor_proto::DataLocation::External as i32;
/// Refuse tensors above 2^31 elements (a corrupt `dims` would otherwise allocate wildly).
const MAX_ELEMENTS: usize = 1 << 31;

/// Options of [`import`].
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// A conv (groups == 1) or linear input channel whose weight column is all zero is left
    /// out of a written `keep_in` mask.
    pub masks_from_zeros: bool,
    /// Float32 initializers held in external data files are not read (they import as zeros):
    /// for `nnirc import --no-weights`, which needs only their shapes.
    pub skip_external_weights: bool,
}

/// An imported model: the program (as the front end lowers its printed text) and its weights,
/// one tensor per param in [`crate::ir::ParamId`] order.
#[derive(Debug, Clone)]
pub struct Imported {
    pub program: Program,
    pub weights: Weights,
    /// For each param (in [`crate::ir::ParamId`] order), the ONNX initializer or `Constant`
    /// output it was made from (for params the importer makes up, its own name).
    pub onnx_names: Vec<String>,
}

impl Imported {
    /// The `.nnir` text, with a `weights` line naming `weights_file` if given.
    pub fn text(&self, weights_file: Option<&str>) -> String {
        crate::codegen::program_text(&self.program, weights_file)
    }

    /// The weights file's bytes: safetensors, one F32 tensor per param.
    pub fn weights_bytes(&self) -> Result<Vec<u8>, String> {
        crate::weights::file::to_bytes(&self.weights.named(&self.program))
    }
}

/// Reads ONNX `bytes`; `model_path` names the model in messages and is where external data
/// files are looked up (relative to its directory). Never panics on any input.
///
/// ```
/// let opts = nnirc::onnx::ImportOptions::default();
/// let err = nnirc::onnx::import(b"not onnx", std::path::Path::new("m.onnx"), &opts);
/// assert!(err.unwrap_err().to_string().starts_with("m.onnx: "));
/// ```
pub fn import(
    bytes: &[u8],
    model_path: &Path,
    opts: &ImportOptions,
) -> Result<Imported, OnnxError> {
    let shown = model_path.display().to_string();
    let model = ModelProto::decode(bytes)
        .map_err(|e| OnnxError(format!("{shown}: not a valid ONNX model: {e}")))?;
    let graph = model
        .graph
        .ok_or_else(|| OnnxError(format!("{shown}: the ONNX model has no graph")))?;
    let base = model_path.parent().unwrap_or(Path::new("."));
    let mut b = Builder {
        shown: &shown,
        values: HashMap::new(),
        ssa_used: HashSet::new(),
        param_used: HashSet::new(),
        graph: DiGraph::new(),
        params: Vec::new(),
        data: Vec::new(),
        onnx_names: Vec::new(),
        graph_outputs: graph
            .output
            .iter()
            .map(|o| o.name.clone().unwrap_or_default())
            .collect(),
        opts,
    };
    for t in &graph.initializer {
        let name = t.name.clone().unwrap_or_default();
        let c = decode_tensor(t, base, opts.skip_external_weights)
            .map_err(|e| OnnxError(format!("{shown}: initializer `{name}`: {e}")))?;
        b.values.insert(name, Value::Const(c));
    }
    let mut inputs = Vec::new();
    for vi in &graph.input {
        let name = vi.name.clone().unwrap_or_default();
        if b.values.contains_key(&name) {
            continue; // an initializer listed as an input (older exporters)
        }
        let shape =
            input_shape(vi).map_err(|e| OnnxError(format!("{shown}: input `{name}`: {e}")))?;
        let ssa = b.fresh_ssa(&name);
        let n = b.graph.add_node(Node {
            name: ssa.clone(),
            op: Op::Input,
            params: vec![],
            shape: shape.clone(),
            keep_in: None,
            keep_out: None,
            span: 0..0,
        });
        inputs.push(n);
        b.values.insert(name, Value::Tensor(n));
    }
    for node in &graph.node {
        b.node(node)?;
    }
    let mut outputs = Vec::new();
    for vi in &graph.output {
        let name = vi.name.clone().unwrap_or_default();
        match b.values.get(&name) {
            Some(Value::Tensor(n)) => outputs.push(*n),
            Some(Value::Const(_)) => {
                return Err(OnnxError(format!(
                    "{shown}: output `{name}` is a constant; a .nnir output must be computed"
                )))
            }
            None => {
                return Err(OnnxError(format!(
                    "{shown}: output `{name}` is not produced by any node"
                )))
            }
        }
    }
    if outputs.is_empty() {
        return Err(OnnxError(format!("{shown}: the graph has no outputs")));
    }
    let program = Program {
        name: model_name(graph.name.as_deref().unwrap_or(""), model_path),
        graph: b.graph,
        inputs,
        outputs,
        params: b.params,
        weights_file: None,
    };
    let checked = super::relower(&program).map_err(|first| {
        OnnxError(format!(
            "{shown}: the imported model is not a valid .nnir program: {first}"
        ))
    })?;
    let weights = Weights::new(b.data.iter().map(|d| TensorData::from_f32(d)).collect());
    Ok(Imported {
        program: checked,
        weights,
        onnx_names: b.onnx_names,
    })
}

/// A constant tensor (initializer or `Constant` output).
#[derive(Debug, Clone)]
struct Const {
    dims: Vec<usize>,
    data: ConstData,
}

/// A float32 constant: dims and row-major data.
type F32Const = (Vec<usize>, Vec<f32>);

#[derive(Debug, Clone)]
enum ConstData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

#[derive(Debug, Clone)]
enum Value {
    Tensor(NodeIndex),
    Const(Const),
}

struct Builder<'a> {
    shown: &'a str,
    /// ONNX value name -> what it holds.
    values: HashMap<String, Value>,
    ssa_used: HashSet<String>,
    param_used: HashSet<String>,
    graph: DiGraph<Node, usize>,
    params: Vec<Param>,
    /// Param data, by param id.
    data: Vec<Vec<f32>>,
    /// The ONNX name each param was made from, by param id.
    onnx_names: Vec<String>,
    /// The names of the graph's outputs.
    graph_outputs: HashSet<String>,
    opts: &'a ImportOptions,
}

/// `name` in the `.nnir` name charset: other characters become `_`, and the first character
/// is a letter, digit or `_`.
fn sanitize(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !s.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
        s.insert(0, '_');
    }
    s
}

/// A model name (an identifier, `[A-Za-z_][A-Za-z0-9_]*`): the graph's name, or the model
/// file's stem when the graph has torch's default name (`main_graph`, `torch_jit`) or none.
fn model_name(graph_name: &str, model_path: &Path) -> String {
    let stem = model_path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("");
    let name = match graph_name {
        "" | "main_graph" | "torch_jit" => stem,
        name => name,
    };
    let mut s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if s.is_empty() {
        return "imported".to_string();
    }
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    const KEYWORDS: &[&str] = &[
        "model", "weights", "param", "keep_in", "keep_out", "true", "false",
    ];
    if KEYWORDS.contains(&s.as_str()) {
        s.push('_');
    }
    s
}

fn unique(used: &mut HashSet<String>, base: &str) -> String {
    let base = sanitize(base);
    let mut name = base.clone();
    let mut k = 1;
    while used.contains(&name) {
        name = format!("{base}_{k}");
        k += 1;
    }
    used.insert(name.clone());
    name
}

fn input_shape(vi: &proto::ValueInfoProto) -> Result<Vec<usize>, String> {
    let Some(type_proto::Value::TensorType(t)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err("not a tensor".to_string());
    };
    if t.elem_type != Some(FLOAT) {
        return Err(format!(
            "element type {} is not float32",
            t.elem_type.unwrap_or(0)
        ));
    }
    let shape = t.shape.as_ref().ok_or("the shape is unknown")?;
    let dims: Vec<usize> = shape
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(dimension::Value::DimValue(v)) if *v > 0 => Ok(*v as usize),
            Some(dimension::Value::DimParam(p)) => Err(format!(
                "dimension `{p}` is symbolic; .nnir needs static shapes"
            )),
            _ => Err("a dimension is unknown or not positive".to_string()),
        })
        .collect::<Result<_, _>>()?;
    let as_i64: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
    element_count(&as_i64)?;
    Ok(dims)
}

fn element_count(dims: &[i64]) -> Result<(Vec<usize>, usize), String> {
    let mut n: usize = 1;
    let mut out = Vec::with_capacity(dims.len());
    for &d in dims {
        let d = usize::try_from(d).map_err(|_| format!("negative dimension {d}"))?;
        n = n
            .checked_mul(d)
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or("the tensor is too large")?;
        out.push(d);
    }
    Ok((out, n))
}

/// The bytes of an external tensor, read from a file relative to `base` (only its range is
/// read: a model's tensors often share one large file).
fn external_bytes(t: &proto::TensorProto, base: &Path) -> Result<Vec<u8>, String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut location = None;
    let mut offset = 0u64;
    let mut length = None;
    for e in &t.external_data {
        let value = e.value.clone().unwrap_or_default();
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("bad external data value `{value}`"))
        };
        match e.key.as_deref() {
            Some("location") => location = Some(value.clone()),
            Some("offset") => offset = number()?,
            Some("length") => length = Some(number()?),
            _ => {}
        }
    }
    let location = location.ok_or("external data without a location")?;
    let rel = Path::new(&location);
    if rel.is_absolute() {
        return Err(format!(
            "external data location `{location}` must be relative to the model"
        ));
    }
    let path = base.join(rel);
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let mut file = std::fs::File::open(&path).map_err(cannot)?;
    let size = file.metadata().map_err(cannot)?.len();
    let end = match length {
        Some(l) => offset.checked_add(l).ok_or("length too large")?,
        None => size,
    };
    if offset > end || end > size {
        return Err(format!(
            "external data range {offset}..{end} is outside {} ({size} bytes)",
            path.display()
        ));
    }
    let len = usize::try_from(end - offset).map_err(|_| "length too large".to_string())?;
    let mut bytes = vec![0; len];
    file.seek(SeekFrom::Start(offset)).map_err(cannot)?;
    file.read_exact(&mut bytes).map_err(cannot)?;
    Ok(bytes)
}

/// Decodes an initializer or `Constant` tensor. With `skip_external_floats`, a float32 tensor
/// stored in an external file is not read: it decodes as zeros of its shape.
fn decode_tensor(
    t: &proto::TensorProto,
    base: &Path,
    skip_external_floats: bool,
) -> Result<Const, String> {
    let (dims, n) = element_count(&t.dims)?;
    let dtype = t.data_type.unwrap_or(0);
    let raw = if t.data_location == Some(EXTERNAL) {
        if skip_external_floats && dtype == FLOAT {
            return Ok(Const {
                dims,
                data: ConstData::F32(vec![0.0; n]),
            });
        }
        Some(external_bytes(t, base)?)
    } else {
        t.raw_data.clone()
    };
    let width = match dtype {
        FLOAT | INT32 => 4,
        INT64 => 8,
        other => {
            return Err(format!(
                "unsupported data type {other} (float32 or int64 only)"
            ))
        }
    };
    if let Some(raw) = &raw {
        if raw.len() != n * width {
            return Err(format!(
                "holds {} bytes of data, but its shape needs {}",
                raw.len(),
                n * width
            ));
        }
    }
    let data = match (dtype, raw) {
        (FLOAT, Some(raw)) => ConstData::F32(
            raw.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        (FLOAT, None) => ConstData::F32(t.float_data.clone()),
        (INT64, Some(raw)) => ConstData::I64(
            raw.chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
        ),
        (INT64, None) => ConstData::I64(t.int64_data.clone()),
        (_, Some(raw)) => ConstData::I64(
            raw.chunks_exact(4)
                .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
        ),
        (_, None) => ConstData::I64(t.int32_data.iter().map(|&v| i64::from(v)).collect()),
    };
    let len = match &data {
        ConstData::F32(v) => v.len(),
        ConstData::I64(v) => v.len(),
    };
    if len != n {
        return Err(format!(
            "holds {len} values, but its shape {:?} needs {n}",
            dims
        ));
    }
    Ok(Const { dims, data })
}

fn attr<'n>(node: &'n NodeProto, name: &str) -> Option<&'n proto::AttributeProto> {
    node.attribute
        .iter()
        .find(|a| a.name.as_deref() == Some(name))
}

fn attr_i(node: &NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).and_then(|a| a.i).unwrap_or(default)
}

fn attr_f(node: &NodeProto, name: &str, default: f32) -> f32 {
    attr(node, name).and_then(|a| a.f).unwrap_or(default)
}

fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(node, name).map(|a| a.ints.clone())
}

/// A float attribute as the shortest decimal that rounds to it (so 1e-5 stays 1e-5).
fn widen(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(f64::from(v))
}

impl Builder<'_> {
    fn fresh_ssa(&mut self, base: &str) -> String {
        unique(&mut self.ssa_used, base)
    }

    fn err(&self, node: &NodeProto, msg: impl std::fmt::Display) -> OnnxError {
        OnnxError(format!(
            "{}: node `{}` ({}): {msg}",
            self.shown,
            node_name(node),
            node.op_type.as_deref().unwrap_or("")
        ))
    }

    fn value(&self, node: &NodeProto, i: usize) -> Result<Option<&Value>, OnnxError> {
        match node.input.get(i).map(String::as_str) {
            None | Some("") => Ok(None),
            Some(name) => {
                self.values.get(name).map(Some).ok_or_else(|| {
                    self.err(node, format!("input `{name}` is not defined before use"))
                })
            }
        }
    }

    fn tensor(&self, node: &NodeProto, i: usize) -> Result<NodeIndex, OnnxError> {
        match self.value(node, i)? {
            Some(Value::Tensor(n)) => Ok(*n),
            Some(Value::Const(_)) => Err(self.err(
                node,
                format!("input {i} is a constant; only computed values are supported there"),
            )),
            None => Err(self.err(node, format!("input {i} is missing"))),
        }
    }

    fn constant(&self, node: &NodeProto, i: usize) -> Result<Option<Const>, OnnxError> {
        match self.value(node, i)? {
            Some(Value::Const(c)) => Ok(Some(c.clone())),
            Some(Value::Tensor(_)) => Err(self.err(
                node,
                format!("input {i} must be an initializer or a constant (weights are static)"),
            )),
            None => Ok(None),
        }
    }

    fn f32_const(&self, node: &NodeProto, i: usize) -> Result<Option<F32Const>, OnnxError> {
        match self.constant(node, i)? {
            None => Ok(None),
            Some(Const {
                dims,
                data: ConstData::F32(v),
            }) => Ok(Some((dims, v))),
            Some(_) => Err(self.err(node, format!("input {i} must be float32"))),
        }
    }

    fn i64_const(&self, node: &NodeProto, i: usize) -> Result<Option<Vec<i64>>, OnnxError> {
        match self.constant(node, i)? {
            None => Ok(None),
            Some(Const {
                data: ConstData::I64(v),
                ..
            }) => Ok(Some(v)),
            Some(_) => Err(self.err(node, format!("input {i} must be an integer tensor"))),
        }
    }

    /// A new file-bound param made from the ONNX value `onnx_name`, named after `readable`.
    fn param(
        &mut self,
        (onnx_name, readable): (String, String),
        shape: Vec<usize>,
        data: Vec<f32>,
    ) -> usize {
        let name = unique(&mut self.param_used, &readable);
        self.onnx_names.push(onnx_name);
        self.params.push(Param {
            name,
            shape,
            init: ParamInit::File,
            span: 0..0,
        });
        self.data.push(data);
        self.params.len() - 1
    }

    /// Adds a `.nnir` node for `node`'s first output.
    fn emit(
        &mut self,
        node: &NodeProto,
        op: Op,
        operands: &[NodeIndex],
        params: Vec<usize>,
    ) -> Result<(), OnnxError> {
        let out = node
            .output
            .first()
            .filter(|o| !o.is_empty())
            .cloned()
            .ok_or_else(|| self.err(node, "the node has no output"))?;
        if node.output.iter().skip(1).any(|o| !o.is_empty()) {
            return Err(self.err(node, "only the first output is supported"));
        }
        let in_shapes: Vec<&[usize]> = operands
            .iter()
            .map(|&o| self.graph[o].shape.as_slice())
            .collect();
        let param_shapes: Vec<&[usize]> = params
            .iter()
            .map(|&p| self.params[p].shape.as_slice())
            .collect();
        let shape = ops::infer_shape(&op, &in_shapes, &param_shapes)
            .map_err(|e| self.err(node, e.message))?;
        let keep_in = if self.opts.masks_from_zeros && op.is_channel_mixing() {
            self.zero_columns_kept(params[0])
        } else {
            None
        };
        // Graph outputs keep their ONNX names; other values are named after their module.
        let readable = match module_path(node) {
            Some(module) if !self.graph_outputs.contains(&out) => module,
            _ => out.clone(),
        };
        let name = self.fresh_ssa(&readable);
        let n = self.graph.add_node(Node {
            name,
            op,
            params,
            shape,
            keep_in,
            keep_out: None,
            span: 0..0,
        });
        for (pos, &o) in operands.iter().enumerate() {
            self.graph.add_edge(o, n, pos);
        }
        self.values.insert(out, Value::Tensor(n));
        Ok(())
    }

    /// The input channels of weight `p` (`[O, C, ...]`) with a non-zero entry, when some but
    /// not all are zero.
    fn zero_columns_kept(&self, p: usize) -> Option<Vec<usize>> {
        let shape = &self.params[p].shape;
        let (outs, ins) = (shape[0], shape[1]);
        let inner: usize = shape[2..].iter().product();
        let w = &self.data[p];
        let kept: Vec<usize> = (0..ins)
            .filter(|&c| {
                (0..outs).any(|o| {
                    let at = (o * ins + c) * inner;
                    w[at..at + inner].iter().any(|&v| v != 0.0)
                })
            })
            .collect();
        (!kept.is_empty() && kept.len() < ins).then_some(kept)
    }

    /// Only these attributes may appear (nothing is silently dropped).
    fn allow(&self, node: &NodeProto, names: &[&str]) -> Result<(), OnnxError> {
        for a in &node.attribute {
            let name = a.name.as_deref().unwrap_or("");
            if !names.contains(&name) {
                return Err(self.err(node, format!("attribute `{name}` is not supported")));
            }
        }
        Ok(())
    }

    fn node(&mut self, node: &NodeProto) -> Result<(), OnnxError> {
        let op_type = node.op_type.as_deref().unwrap_or("");
        if !matches!(node.domain.as_deref(), None | Some("") | Some("ai.onnx")) {
            return Err(self.err(node, "unsupported op (custom domain)"));
        }
        let base = module_path(node).unwrap_or_else(|| node_name(node));
        match op_type {
            "Identity" | "Dropout" => {
                self.allow(node, &["seed", "ratio"])?;
                if attr_i(node, "training_mode", 0) != 0 {
                    return Err(self.err(node, "training mode is not supported"));
                }
                // Dropout's optional inputs (ratio, training_mode) do not matter at inference.
                let out = node.output.first().cloned().unwrap_or_default();
                let v = self
                    .value(node, 0)?
                    .cloned()
                    .ok_or_else(|| self.err(node, "input 0 is missing"))?;
                if node.output.iter().skip(1).any(|o| !o.is_empty()) {
                    return Err(self.err(node, "the mask output is not supported"));
                }
                self.values.insert(out, v);
                Ok(())
            }
            "Constant" => {
                let out = node.output.first().cloned().unwrap_or_default();
                let c = match node.attribute.first() {
                    Some(a) if node.attribute.len() == 1 => match a.name.as_deref() {
                        Some("value") => {
                            let t = a.t.as_ref().ok_or_else(|| self.err(node, "no tensor"))?;
                            decode_tensor(t, Path::new("."), false)
                                .map_err(|e| self.err(node, e))?
                        }
                        Some("value_float") => Const {
                            dims: vec![],
                            data: ConstData::F32(vec![a.f.unwrap_or(0.0)]),
                        },
                        Some("value_floats") => Const {
                            dims: vec![a.floats.len()],
                            data: ConstData::F32(a.floats.clone()),
                        },
                        Some("value_int") => Const {
                            dims: vec![],
                            data: ConstData::I64(vec![a.i.unwrap_or(0)]),
                        },
                        Some("value_ints") => Const {
                            dims: vec![a.ints.len()],
                            data: ConstData::I64(a.ints.clone()),
                        },
                        Some(other) => {
                            return Err(self.err(node, format!("`{other}` is not supported")))
                        }
                        None => return Err(self.err(node, "unnamed attribute")),
                    },
                    _ => return Err(self.err(node, "needs exactly one value attribute")),
                };
                self.values.insert(out, Value::Const(c));
                Ok(())
            }
            "Conv" => {
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
                let x = self.tensor(node, 0)?;
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
                if attr_ints(node, "kernel_shape")
                    .is_some_and(|k| k != [wd[2] as i64, wd[3] as i64])
                {
                    return Err(self.err(node, "kernel_shape disagrees with the weight"));
                }
                let stride = self.pair(node, "strides", [1, 1])?;
                let dilation = self.pair(node, "dilations", [1, 1])?;
                let padding = self.pads(node)?;
                let groups = self.positive(node, attr_i(node, "group", 1))?;
                let mut params =
                    vec![self.param(self.param_names(node, 1, &base, "weight"), wd, w)];
                if let Some((bd, bias)) = self.f32_const(node, 2)? {
                    params.push(self.param(self.param_names(node, 2, &base, "bias"), bd, bias));
                }
                let op = Op::Conv2d(Conv2d {
                    stride,
                    padding,
                    dilation,
                    groups,
                });
                self.emit(node, op, &[x], params)
            }
            "BatchNormalization" => {
                self.allow(node, &["epsilon", "momentum", "training_mode", "spatial"])?;
                if attr_i(node, "training_mode", 0) != 0 || attr_i(node, "spatial", 1) != 1 {
                    return Err(
                        self.err(node, "only inference-mode, spatial batch norm is supported")
                    );
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
                    params.push(self.param(self.param_names(node, i, &base, what), d, v));
                }
                self.emit(node, Op::BatchNorm { eps }, &[x], params)
            }
            "Relu" | "Sigmoid" | "HardSwish" => {
                self.allow(node, &[])?;
                let a = match op_type {
                    "Relu" => Activation::Relu,
                    "Sigmoid" => Activation::Sigmoid,
                    _ => Activation::HardSwish,
                };
                let x = self.tensor(node, 0)?;
                self.emit(node, Op::Activation(a), &[x], vec![])
            }
            "HardSigmoid" => {
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
            "Clip" => {
                self.allow(node, &["min", "max"])?;
                let bound = |i: usize, name: &str| -> Result<Option<f32>, OnnxError> {
                    if let Some((_, v)) = self.f32_const(node, i)? {
                        return match v.as_slice() {
                            [x] => Ok(Some(*x)),
                            _ => Err(self.err(node, format!("{name} must be a scalar"))),
                        };
                    }
                    Ok(attr(node, name).and_then(|a| a.f))
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
            "Add" | "Mul" => {
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
                        self.affine(node, &base, x, &c, op == Op::Mul)
                    }
                    (Some(Value::Const(_)), Some(Value::Const(_))) => Err(self.err(
                        node,
                        "both operands are constants (constant folding is not supported)",
                    )),
                    _ => Err(self.err(node, "an operand is missing")),
                }
            }
            "Concat" => {
                self.allow(node, &["axis"])?;
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
            "MaxPool" | "AveragePool" => {
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
                let x = self.tensor(node, 0)?;
                let kernel = match attr_ints(node, "kernel_shape").as_deref() {
                    Some(&[h, w]) => [self.positive(node, h)?, self.positive(node, w)?],
                    _ => return Err(self.err(node, "kernel_shape must have two entries")),
                };
                let p = Pool2d {
                    kernel,
                    stride: self.pair(node, "strides", [1, 1])?,
                    padding: self.pads(node)?,
                    ceil_mode: attr_i(node, "ceil_mode", 0) != 0,
                    count_include_pad: attr_i(node, "count_include_pad", 0) != 0,
                };
                let op = if op_type == "MaxPool" {
                    Op::MaxPool2d(p)
                } else {
                    Op::AvgPool2d(p)
                };
                self.emit(node, op, &[x], vec![])
            }
            "GlobalAveragePool" => {
                self.allow(node, &[])?;
                let x = self.tensor(node, 0)?;
                self.emit(node, Op::GlobalAvgPool, &[x], vec![])
            }
            "ReduceMean" => {
                // The dynamo exporter writes adaptive_avg_pool2d((1, 1)) as ReduceMean over
                // the spatial axes (given as an input from opset 18, an attribute before).
                self.allow(node, &["axes", "keepdims", "noop_with_empty_axes"])?;
                let x = self.tensor(node, 0)?;
                let axes = match self.i64_const(node, 1)? {
                    Some(axes) => axes,
                    None => attr_ints(node, "axes").unwrap_or_default(),
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
            "Flatten" => {
                self.allow(node, &["axis"])?;
                let x = self.tensor(node, 0)?;
                if attr_i(node, "axis", 1) != 1 {
                    return Err(self.err(node, "only axis=1 is supported"));
                }
                self.emit(node, Op::Flatten, &[x], vec![])
            }
            "Reshape" => {
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
                        format!("only a reshape to [N, -1] (flatten) is supported, got {target:?} for {}", ops::dims_text(&shape)),
                    ));
                }
                self.emit(node, Op::Flatten, &[x], vec![])
            }
            "Gemm" => {
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
                    transpose(&bd, &b)
                };
                let mut params =
                    vec![self.param(self.param_names(node, 1, &base, "weight"), wd.clone(), w)];
                if let Some((cd, c)) = self.f32_const(node, 2)? {
                    if c.len() != wd[0] || cd.iter().filter(|&&d| d != 1).count() > 1 {
                        return Err(
                            self.err(node, "the bias must have one value per output feature")
                        );
                    }
                    params.push(self.param(
                        self.param_names(node, 2, &base, "bias"),
                        vec![wd[0]],
                        c,
                    ));
                }
                self.emit(node, Op::Linear, &[x], params)
            }
            "MatMul" => {
                self.allow(node, &[])?;
                let x = self.tensor(node, 0)?;
                let (bd, b) = self.f32_const(node, 1)?.ok_or_else(|| {
                    self.err(node, "the second operand must be a constant weight")
                })?;
                if bd.len() != 2 {
                    return Err(self.err(node, "the weight must have rank 2"));
                }
                let (wd, w) = transpose(&bd, &b);
                let params = vec![self.param(self.param_names(node, 1, &base, "weight"), wd, w)];
                self.emit(node, Op::Linear, &[x], params)
            }
            "Gather" => {
                self.allow(node, &["axis"])?;
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
                if matches!(self.constant(node, 1)?, Some(Const { ref dims, .. }) if dims.len() != 1)
                {
                    return Err(self.err(node, "the indices must be a 1-D tensor"));
                }
                let indices: Vec<usize> = idx
                    .iter()
                    .map(|&i| {
                        let j = if i < 0 { i + c } else { i };
                        if (0..c).contains(&j) {
                            Ok(j as usize)
                        } else {
                            Err(self
                                .err(node, format!("index {i} is out of range for {c} channels")))
                        }
                    })
                    .collect::<Result<_, _>>()?;
                if indices.is_empty() {
                    return Err(self.err(node, "gathers no channel"));
                }
                let mut sorted = indices.clone();
                sorted.sort_unstable();
                let op = if sorted.iter().enumerate().all(|(k, &v)| k == v)
                    && sorted.len() as i64 == c
                {
                    Op::Permute { order: indices }
                } else {
                    Op::Gather { indices }
                };
                self.emit(node, op, &[x], vec![])
            }
            "Slice" => {
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
                if ends.len() != starts.len()
                    || axes.len() != starts.len()
                    || steps.len() != starts.len()
                {
                    return Err(self.err(node, "starts, ends, axes and steps differ in length"));
                }
                let mut range = None;
                for k in 0..starts.len() {
                    let axis = if axes[k] < 0 { axes[k] + rank } else { axes[k] };
                    if !(0..rank).contains(&axis) || steps[k] != 1 {
                        return Err(
                            self.err(node, "only unit-step slices of existing axes are supported")
                        );
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
            _ => Err(self.err(node, "unsupported op")),
        }
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
        let v: Vec<f32> = if values.len() == 1 {
            vec![values[0]; channels]
        } else {
            values.clone()
        };
        let ones = vec![1.0f32; channels];
        let zeros = vec![0.0f32; channels];
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

    /// The name for a param read from input `i`: the initializer's name, else `node.what`.
    /// The ONNX name of `node`'s param input `i` and the name to give it: the initializer's
    /// own name, unless the exporter made that up (`onnx::Conv_193`, `val_12`): then
    /// `{base}.{what}`, after the module (`layer1.0.conv1.weight`).
    fn param_names(&self, node: &NodeProto, i: usize, base: &str, what: &str) -> (String, String) {
        match node.input.get(i) {
            Some(name) if !name.is_empty() && !is_anonymous(name) => (name.clone(), name.clone()),
            Some(name) if !name.is_empty() => (name.clone(), format!("{base}.{what}")),
            _ => made_up(format!("{base}.{what}")),
        }
    }

    fn positive(&self, node: &NodeProto, v: i64) -> Result<usize, OnnxError> {
        usize::try_from(v)
            .ok()
            .filter(|&v| v >= 1)
            .ok_or_else(|| self.err(node, format!("expected a positive integer, got {v}")))
    }

    fn pair(
        &self,
        node: &NodeProto,
        name: &str,
        default: [usize; 2],
    ) -> Result<[usize; 2], OnnxError> {
        match attr_ints(node, name).as_deref() {
            None => Ok(default),
            Some(&[a, b]) => Ok([self.positive(node, a)?, self.positive(node, b)?]),
            Some(_) => Err(self.err(node, format!("`{name}` must have two entries"))),
        }
    }

    /// ONNX pads `[top, left, bottom, right]`, the `.nnir` order too.
    fn pads(&self, node: &NodeProto) -> Result<[usize; 4], OnnxError> {
        match attr_ints(node, "pads").as_deref() {
            None => Ok([0; 4]),
            Some(p) if p.len() == 4 => {
                let mut out = [0; 4];
                for (o, &v) in out.iter_mut().zip(p) {
                    *o = usize::try_from(v)
                        .map_err(|_| self.err(node, format!("negative padding {v}")))?;
                }
                Ok(out)
            }
            Some(_) => Err(self.err(node, "`pads` must have four entries")),
        }
    }
}

/// A node's name for messages and derived names: its name, else its first output.
/// A param the importer makes up: its ONNX name is its own.
fn made_up(name: String) -> (String, String) {
    (name.clone(), name)
}

/// Whether an initializer name was made up by the exporter rather than taken from the model:
/// `onnx::Conv_193` (the TorchScript exporter) or `val_12` (the dynamo exporter).
fn is_anonymous(name: &str) -> bool {
    name.starts_with("onnx::")
        || name
            .strip_prefix("val_")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The PyTorch module `node` was exported from, as a dotted path (`layer1.0.conv1`): from the
/// dynamo exporter's `pkg.torch.onnx.name_scopes` metadata (its innermost module), or from a
/// TorchScript exporter node name, `/layer1/layer1.0/conv1/Conv`, whose scopes repeat their
/// parent's path (`layer1`, `layer1.0`). None for nodes outside any module.
fn module_path(node: &NodeProto) -> Option<String> {
    let scopes = node
        .metadata_props
        .iter()
        .find(|p| p.key.as_deref() == Some("pkg.torch.onnx.name_scopes"))
        .and_then(|p| p.value.as_deref());
    if let Some(scopes) = scopes {
        // A Python list of strings: ['', 'layer1', 'layer1.0', 'layer1.0.relu', 'relu_1'].
        let items: Vec<&str> = scopes
            .trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .map(|s| s.trim().trim_matches(|c| c == '\'' || c == '"'))
            .collect();
        return match items.as_slice() {
            [.., module, _op] if !module.is_empty() => Some(module.to_string()),
            _ => None,
        };
    }
    let name = node.name.as_deref()?.strip_prefix('/')?;
    let mut scopes: Vec<&str> = name.split('/').collect();
    scopes.pop(); // the op itself (`Conv`, `Add_1`)
    let mut path = String::new();
    let mut parent = "";
    for scope in scopes.into_iter().filter(|s| !s.is_empty()) {
        let local = scope
            .strip_prefix(parent)
            .and_then(|s| s.strip_prefix('.'))
            .filter(|_| !parent.is_empty())
            .unwrap_or(scope);
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(local);
        parent = scope;
    }
    (!path.is_empty()).then_some(path)
}

fn node_name(node: &NodeProto) -> String {
    match node.name.as_deref() {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => node.output.first().cloned().unwrap_or_default(),
    }
}

/// `[R, C]` row-major -> `[C, R]`.
fn transpose(dims: &[usize], data: &[f32]) -> (Vec<usize>, Vec<f32>) {
    let (r, c) = (dims[0], dims[1]);
    let mut out = vec![0.0; data.len()];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = data[i * c + j];
        }
    }
    (vec![c, r], out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, scopes: Option<&str>) -> NodeProto {
        NodeProto {
            name: Some(name.to_string()),
            metadata_props: scopes
                .map(|s| proto::StringStringEntryProto {
                    key: Some("pkg.torch.onnx.name_scopes".to_string()),
                    value: Some(s.to_string()),
                })
                .into_iter()
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn module_paths_from_torchscript_node_names() {
        let path = |n: &str| module_path(&node(n, None));
        assert_eq!(
            path("/layer1/layer1.0/conv1/Conv").as_deref(),
            Some("layer1.0.conv1")
        );
        assert_eq!(
            path("/features/features.1/features.1.0/block/block.0/block.0.0/Conv").as_deref(),
            Some("features.1.0.block.0.0")
        );
        assert_eq!(path("/layer1/layer1.0/Add").as_deref(), Some("layer1.0"));
        assert_eq!(path("/Flatten"), None);
        assert_eq!(path("Conv_0"), None);
    }

    #[test]
    fn module_paths_from_dynamo_name_scopes() {
        let path = |s: &str| module_path(&node("node_Conv_7", Some(s)));
        assert_eq!(
            path("['', 'layer1', 'layer1.0', 'layer1.0.relu', 'relu_1']").as_deref(),
            Some("layer1.0.relu")
        );
        assert_eq!(path("['', 'view']"), None);
    }

    #[test]
    fn only_exporter_made_names_are_anonymous() {
        for name in ["onnx::Conv_193", "val_12"] {
            assert!(is_anonymous(name), "{name}");
        }
        for name in ["conv1.weight", "val_", "val_x", "model::w:0", "fc.bias"] {
            assert!(!is_anonymous(name), "{name}");
        }
    }
}
