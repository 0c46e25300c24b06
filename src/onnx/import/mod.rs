//! ONNX `ModelProto` bytes -> a checked [`Program`] and its [`Weights`].
//!
//! Nodes map one by one onto `.nnir` ops through the op table in `ops.rs`, one handler per ONNX
//! op family; an op type not in the table is an error. (`Identity`, `Dropout` and `Constant`
//! only rename.) Initializers (and `Constant` tensors) become params named after them, sanitized to the
//! `.nnir` name charset `[A-Za-z0-9_./]` and made unique. A `Mul` or `Add` by a per-channel
//! constant becomes a `batch_norm` with `eps=0` (the exact same arithmetic). The result is
//! printed with [`crate::codegen::program_text`] and lowered again, so an import is always a
//! program the front end accepts.

mod data;
mod fold;
mod ops;

use super::proto::{ModelProto, NodeProto};
use super::OnnxError;
use crate::ir::{Node, Op, Param, ParamInit, Program};
use crate::weights::{TensorData, Weights};
use data::{decode_tensor, input_shape};
use ops::attr_ints;
use petgraph::graph::{DiGraph, NodeIndex};
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Refuse tensors above 2^31 elements (a corrupt `dims` would otherwise allocate wildly).
const MAX_ELEMENTS: usize = 1 << 31;

/// The default-domain opsets the importer reads: PyTorch's exporters write 13 to 21 (the
/// TorchScript exporter 13-20, the dynamo exporter 18-21). Ops whose form changed inside the
/// range (`ReduceMean`'s axes: an attribute before 18, an input from 18) are read as the
/// model's opset defines them.
pub const OPSETS: std::ops::RangeInclusive<i64> = 13..=21;

/// The ONNX IR versions read: 7 (the first that opset 13 allows) to 13 (ONNX 1.23's).
const IR_VERSIONS: std::ops::RangeInclusive<i64> = 7..=13;

/// The model's default-domain opset, if its IR version and opset are in the supported ranges.
fn check_versions(model: &ModelProto) -> Result<i64, String> {
    let ir = model.ir_version.unwrap_or(0);
    if !IR_VERSIONS.contains(&ir) {
        return Err(format!(
            "IR version {ir} is not supported ({} to {})",
            IR_VERSIONS.start(),
            IR_VERSIONS.end()
        ));
    }
    let mut default = model
        .opset_import
        .iter()
        .filter(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")));
    let opset = match (default.next(), default.next()) {
        (Some(o), None) => o.version.unwrap_or(0),
        (None, _) => return Err("no opset_import for the default ONNX domain".to_string()),
        (Some(_), Some(_)) => {
            return Err("two opset_import entries for the default ONNX domain".to_string())
        }
    };
    if !OPSETS.contains(&opset) {
        return Err(format!(
            "opset {opset} is not supported ({} to {}; re-export with `opset_version` in that range)",
            OPSETS.start(),
            OPSETS.end()
        ));
    }
    Ok(opset)
}

/// Options of [`import`].
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// A conv (groups == 1) or linear input channel whose weight column is all zero is left
    /// out of a written `keep_in` mask.
    pub masks_from_zeros: bool,
    /// Float32 initializers held in external data files are not read, and no memory is taken
    /// for them: for `nnirc import --no-weights`, which needs only their shapes. Their tensors
    /// in [`Imported::weights`] are then empty, so such an import has no weights to write.
    pub skip_external_weights: bool,
}

/// Resource limits of [`import_with_limits`], checked against the sizes a model declares
/// before anything is allocated or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportLimits {
    /// The most bytes of tensor data (initializers and `Constant` tensors, counted at 8 bytes
    /// an element, as they are held) one import may hold. Default: 16 GiB.
    pub max_total_bytes: u64,
}

impl Default for ImportLimits {
    fn default() -> Self {
        ImportLimits {
            max_total_bytes: 16 << 30,
        }
    }
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
    import_with_limits(bytes, model_path, opts, &ImportLimits::default())
}

/// The external data files an ONNX model's initializers name, resolved inside the model's
/// folder (locations that do not resolve there are left out: [`import`] refuses them). Commands
/// treat these files as inputs, so that no output is written over one. An undecodable model
/// names none.
pub fn external_files(bytes: &[u8], model_path: &Path) -> Vec<std::path::PathBuf> {
    let Ok(model) = ModelProto::decode(bytes) else {
        return Vec::new();
    };
    let base = model_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut files: Vec<std::path::PathBuf> = model
        .graph
        .iter()
        .flat_map(|g| &g.initializer)
        .flat_map(|t| &t.external_data)
        .filter(|e| e.key.as_deref() == Some("location"))
        .filter_map(|e| {
            let location = e.value.as_deref()?;
            crate::files::resolve_inside(base, Path::new(location)).ok()
        })
        .collect();
    files.sort();
    files.dedup();
    files
}

/// [`import`] under explicit [`ImportLimits`]: a model whose declared tensors need more is an
/// error naming the tensor and the limit, before the memory is taken.
pub fn import_with_limits(
    bytes: &[u8],
    model_path: &Path,
    opts: &ImportOptions,
    limits: &ImportLimits,
) -> Result<Imported, OnnxError> {
    let shown = model_path.display().to_string();
    let model = ModelProto::decode(bytes)
        .map_err(|e| OnnxError(format!("{shown}: not a valid ONNX model: {e}")))?;
    let opset = check_versions(&model).map_err(|e| OnnxError(format!("{shown}: {e}")))?;
    let graph = model
        .graph
        .ok_or_else(|| OnnxError(format!("{shown}: the ONNX model has no graph")))?;
    let base = model_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
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
        budget: limits.max_total_bytes,
        opset,
    };
    for t in &graph.initializer {
        let name = t.name.clone().unwrap_or_default();
        let c = decode_tensor(t, base, opts.skip_external_weights, &mut b.budget)
            .map_err(|e| OnnxError(format!("{shown}: initializer `{name}`: {e}")))?;
        if b.values.insert(name.clone(), Value::Const(c)).is_some() {
            return Err(OnnxError(format!(
                "{shown}: two initializers are named `{name}`"
            )));
        }
    }
    let mut inputs = Vec::new();
    let initializers: HashSet<&str> = graph
        .initializer
        .iter()
        .filter_map(|t| t.name.as_deref())
        .collect();
    for vi in &graph.input {
        let name = vi.name.clone().unwrap_or_default();
        if initializers.contains(name.as_str()) {
            continue; // an initializer listed as an input (older exporters)
        }
        if name.is_empty() || b.values.contains_key(&name) {
            return Err(OnnxError(format!(
                "{shown}: graph input `{name}` is unnamed or defined twice"
            )));
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
            Some(Value::Padded { .. }) => {
                return Err(OnnxError(format!(
                    "{shown}: output `{name}` is the output of a Pad; a zero padding is \
                     supported only in front of a Conv or AveragePool, into which it folds"
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
    let weights = Weights::new(
        b.data
            .iter()
            .map(|d| TensorData::from_f32(d.as_deref().unwrap_or(&[])))
            .collect(),
    );
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

/// Float32 values in row-major order, or `None` where they were not read
/// ([`ImportOptions::skip_external_weights`]).
type Floats = Option<Vec<f32>>;

/// A float32 constant: dims and data.
type F32Const = (Vec<usize>, Floats);

#[derive(Debug, Clone)]
enum ConstData {
    F32(Floats),
    I64(Vec<i64>),
}

#[derive(Debug, Clone)]
enum Value {
    Tensor(NodeIndex),
    Const(Const),
    /// `x` padded with zeros on H and W (`[top, left, bottom, right]`) by a `Pad`: there is no
    /// pad op in `.nnir`, so only a consumer that can fold the padding into its own (a `Conv`,
    /// an `AveragePool` counting padded zeros) may read it; any other reader is an error.
    Padded {
        x: NodeIndex,
        pads: [usize; 4],
    },
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
    data: Vec<Floats>,
    /// The ONNX name each param was made from, by param id.
    onnx_names: Vec<String>,
    /// The names of the graph's outputs.
    graph_outputs: HashSet<String>,
    opts: &'a ImportOptions,
    /// Bytes of tensor data the import may still hold ([`ImportLimits::max_total_bytes`]).
    budget: u64,
    /// The model's default-domain opset (in [`OPSETS`]).
    opset: i64,
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

    /// The value of input `i` (`None` when absent). A padded value is an error here: only
    /// [`Self::padded`] reads it, for the consumers that fold the padding.
    fn value(&self, node: &NodeProto, i: usize) -> Result<Option<&Value>, OnnxError> {
        match self.any_value(node, i)? {
            Some(Value::Padded { .. }) => Err(self.err(
                node,
                format!(
                    "input {i} comes from a Pad; a zero padding is supported only in front of \
                     a Conv or an AveragePool, into which it folds"
                ),
            )),
            v => Ok(v),
        }
    }

    /// Input `i` as a computed tensor and the zero padding a `Pad` in front added to it.
    fn padded(&self, node: &NodeProto, i: usize) -> Result<(NodeIndex, [usize; 4]), OnnxError> {
        match self.any_value(node, i)? {
            Some(&Value::Padded { x, pads }) => Ok((x, pads)),
            _ => Ok((self.tensor(node, i)?, [0; 4])),
        }
    }

    /// The value of input `i`, whatever it is.
    fn any_value(&self, node: &NodeProto, i: usize) -> Result<Option<&Value>, OnnxError> {
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
            Some(Value::Padded { .. }) => unreachable!("value() refuses padded values"),
            None => Err(self.err(node, format!("input {i} is missing"))),
        }
    }

    fn constant(&self, node: &NodeProto, i: usize) -> Result<Option<Const>, OnnxError> {
        match self.value(node, i)? {
            Some(Value::Const(c)) => Ok(Some(c.clone())),
            Some(Value::Tensor(_) | Value::Padded { .. }) => Err(self.err(
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
        data: Floats,
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
        let shape = crate::ir::ops::infer_shape(&op, &in_shapes, &param_shapes)
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
        self.define(node, out, Value::Tensor(n))
    }

    /// Defines the ONNX value `out` as `v`. ONNX is single-assignment: a name that an
    /// initializer, a graph input or an earlier node defined cannot be defined again (every
    /// handler defines its outputs through here, so no redefinition is silently accepted).
    fn define(&mut self, node: &NodeProto, out: String, v: Value) -> Result<(), OnnxError> {
        if out.is_empty() {
            return Err(self.err(node, "the node has no output"));
        }
        if self.values.contains_key(&out) {
            return Err(self.err(
                node,
                format!("output `{out}` is already defined (by an initializer, a graph input or another node)"),
            ));
        }
        self.values.insert(out, v);
        Ok(())
    }

    /// The input channels of weight `p` (`[O, C, ...]`) with a non-zero entry, when some but
    /// not all are zero.
    fn zero_columns_kept(&self, p: usize) -> Option<Vec<usize>> {
        let shape = &self.params[p].shape;
        let (outs, ins) = (shape[0], shape[1]);
        let inner: usize = shape[2..].iter().product();
        let w = self.data[p].as_ref()?;
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
        let spec = ops::spec(op_type).ok_or_else(|| self.err(node, "unsupported op"))?;
        if self.opset < spec.since {
            return Err(self.err(
                node,
                format!(
                    "the op needs opset {}, the model imports opset {}",
                    spec.since, self.opset
                ),
            ));
        }
        let n = node.input.len();
        if n < spec.min_inputs || n > spec.max_inputs {
            let max = match spec.max_inputs {
                usize::MAX => "any number".to_string(),
                m => m.to_string(),
            };
            return Err(self.err(
                node,
                format!("takes {} to {max} inputs, got {n}", spec.min_inputs),
            ));
        }
        if node.output.len() > spec.max_outputs {
            return Err(self.err(
                node,
                format!(
                    "has at most {} outputs, got {}",
                    spec.max_outputs,
                    node.output.len()
                ),
            ));
        }
        (spec.handler)(self, node, &base)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, scopes: Option<&str>) -> NodeProto {
        NodeProto {
            name: Some(name.to_string()),
            metadata_props: scopes
                .map(|s| super::super::proto::StringStringEntryProto {
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
