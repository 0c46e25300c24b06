//! `.nnir` program + weights -> ONNX `ModelProto` (opset 17).
//!
//! ONNX value names are the `.nnir` SSA names (without `%`), initializer names the param names
//! (without `@`); helper tensors and nodes get fresh names derived from the node's name.

use super::proto::{
    attribute_proto::AttributeType, tensor_shape_proto, type_proto, AttributeProto, GraphProto,
    ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};
use super::{OnnxError, FLOAT, INT64};
use crate::ir::{Activation, Op, Pool2d, Program};
use crate::weights::Weights;
use petgraph::graph::NodeIndex;
use prost::Message;
use std::collections::HashSet;

/// The ONNX opset the exporter targets.
pub const OPSET: i64 = 17;
/// ONNX IR version 8 (the one that goes with opset 17).
const IR_VERSION: i64 = 8;

/// [`export`], encoded as protobuf bytes (the content of a `.onnx` file).
///
/// ```
/// let src = "model m(%x: f32[1, 3]) -> (%y) {\n  param @w: f32[2, 3]\n  %y = linear(%x, @w)\n}\n";
/// let program = nnirc::compile(src).program.unwrap();
/// let weights = nnirc::weights::random(&program, 0);
/// let bytes = nnirc::onnx::export_bytes(&program, &weights).unwrap();
/// let opts = nnirc::onnx::ImportOptions::default();
/// let back = nnirc::onnx::import(&bytes, std::path::Path::new("m.onnx"), &opts).unwrap();
/// assert_eq!(back.weights, weights);
/// assert!(back.text(None).contains("%y = linear(%x, @w)"));
/// ```
pub fn export_bytes(program: &Program, weights: &Weights) -> Result<Vec<u8>, OnnxError> {
    Ok(export(program, weights)?.encode_to_vec())
}

/// The ONNX model of the masked program `program` with `weights` (one tensor per param, as
/// from [`crate::weights::load`] or [`crate::weights::random`]).
pub fn export(program: &Program, weights: &Weights) -> Result<ModelProto, OnnxError> {
    if weights.len() != program.params.len() {
        return Err(OnnxError(format!(
            "the weights hold {} tensors, but the model declares {} params",
            weights.len(),
            program.params.len()
        )));
    }
    let mut ex = Exporter {
        program,
        used: HashSet::new(),
        graph: GraphProto {
            name: Some(program.name.clone()),
            ..Default::default()
        },
        value_name: vec![String::new(); program.graph.node_count()],
        emitted: HashSet::new(),
        node_names: program
            .graph
            .node_indices()
            .map(|n| program.graph[n].name.clone())
            .collect(),
    };
    for n in program.graph.node_indices() {
        ex.used.insert(program.graph[n].name.clone());
    }
    for p in &program.params {
        ex.used.insert(p.name.clone());
    }
    let removed = crate::analysis::removed_channels(program);
    for n in program.topo_order() {
        ex.node(n, weights, removed[n.index()].as_deref())?;
    }
    for &n in &program.inputs {
        let v = value_info(&program.graph[n].name, &program.graph[n].shape);
        ex.graph.input.push(v);
    }
    for &n in &program.outputs {
        let name = ex.value_name[n.index()].clone();
        ex.graph
            .output
            .push(value_info(&name, &program.graph[n].shape));
    }
    Ok(ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        producer_name: Some("nnirc".to_string()),
        producer_version: Some(env!("CARGO_PKG_VERSION").to_string()),
        graph: Some(ex.graph),
        ..Default::default()
    })
}

struct Exporter<'p> {
    program: &'p Program,
    /// Every name given to a value, initializer or node so far.
    used: HashSet<String>,
    graph: GraphProto,
    /// The ONNX value holding each `.nnir` node's result.
    value_name: Vec<String>,
    /// Params already written as initializers.
    emitted: HashSet<String>,
    /// The SSA names of the program.
    node_names: HashSet<String>,
}

impl Exporter<'_> {
    /// A name not used yet, `base` if possible.
    fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 1;
        while self.used.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.used.insert(name.clone());
        name
    }

    fn push_node(
        &mut self,
        name: &str,
        op_type: &str,
        inputs: Vec<String>,
        output: &str,
        attribute: Vec<AttributeProto>,
    ) {
        self.graph.node.push(NodeProto {
            input: inputs,
            output: vec![output.to_string()],
            name: Some(name.to_string()),
            op_type: Some(op_type.to_string()),
            domain: Some(String::new()),
            attribute,
            ..Default::default()
        });
    }

    fn f32_init(&mut self, name: &str, dims: &[usize], data: &[f32]) {
        let mut raw = Vec::with_capacity(data.len() * 4);
        for v in data {
            raw.extend_from_slice(&v.to_le_bytes());
        }
        self.graph.initializer.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(FLOAT),
            name: Some(name.to_string()),
            raw_data: Some(raw),
            ..Default::default()
        });
    }

    fn i64_init(&mut self, name: &str, data: &[i64]) {
        let mut raw = Vec::with_capacity(data.len() * 8);
        for v in data {
            raw.extend_from_slice(&v.to_le_bytes());
        }
        self.graph.initializer.push(TensorProto {
            dims: vec![data.len() as i64],
            data_type: Some(INT64),
            name: Some(name.to_string()),
            raw_data: Some(raw),
            ..Default::default()
        });
    }

    /// Emits `n`; `removed` are the channels the masked program forces to zero.
    fn node(
        &mut self,
        n: NodeIndex,
        weights: &Weights,
        removed: Option<&[bool]>,
    ) -> Result<(), OnnxError> {
        let program = self.program;
        let node = &program.graph[n];
        if node.op == Op::Input {
            self.value_name[n.index()] = node.name.clone();
            return Ok(());
        }
        let operands: Vec<String> = program
            .operands(n)
            .iter()
            .map(|o| self.value_name[o.index()].clone())
            .collect();
        let mut params = crate::interp::node_params::<f32>(program, n, weights);
        // Where the op itself would make a removed channel non-zero, fold the zero into its
        // params when it can, else multiply by a channel mask afterwards.
        let mut needs_mask = false;
        if let Some(flags) = removed {
            match &node.op {
                Op::BatchNorm { .. } => {
                    // Neutral statistics as well as a zero scale and shift: with the model's
                    // own (a variance of 0 with eps 0) a runtime computes 0 / 0 = NaN where
                    // the masked program has 0. With mean 0 and variance 1 the channel is
                    // 0 * x / sqrt(1 + eps) + 0 = 0 for any finite x and any eps >= 0.
                    for (c, _) in flags.iter().enumerate().filter(|(_, &r)| r) {
                        params[0][c] = 0.0;
                        params[1][c] = 0.0;
                        params[2][c] = 0.0;
                        params[3][c] = 1.0;
                    }
                }
                Op::Conv2d(_) if node.keep_out.is_none() => {
                    // Depthwise: a removed input channel gives bias[c]; drop the bias there.
                    if let Some(bias) = params.get_mut(1) {
                        for (c, _) in flags.iter().enumerate().filter(|(_, &r)| r) {
                            bias[c] = 0.0;
                        }
                    }
                }
                Op::Activation(Activation::Sigmoid | Activation::HardSigmoid) => needs_mask = true,
                // Zero in, zero out (or zero weights for keep_out, or 0 + 0, 0 * x).
                _ => {}
            }
        }
        let out = if needs_mask {
            self.fresh(&format!("{}/unmasked", node.name))
        } else {
            node.name.clone()
        };
        let name = node.name.as_str();
        let mut param_names = Vec::new();
        for (i, &p) in node.params.iter().enumerate() {
            let param = &program.params[p];
            // A param read by several nodes gets one initializer per node (masks may differ).
            // Values and initializers share one ONNX namespace, `%w` and `@w` do not.
            let clash = self.node_names.contains(&param.name);
            let init_name = if !clash && self.emitted.insert(param.name.clone()) {
                param.name.clone()
            } else {
                self.fresh(&format!("{}/{}", param.name, node.name))
            };
            self.f32_init(&init_name, &param.shape, &params[i]);
            param_names.push(init_name);
        }
        let mut inputs = operands.clone();
        inputs.extend(param_names.iter().cloned());
        let x = operands.first().cloned().unwrap_or_default();
        match &node.op {
            Op::Input => unreachable!("handled above"),
            Op::Conv2d(c) => {
                let w = &program.params[node.params[0]].shape;
                let attrs = vec![
                    ints("kernel_shape", &[w[2], w[3]]),
                    ints("strides", &c.stride),
                    ints("pads", &c.padding),
                    ints("dilations", &c.dilation),
                    int("group", c.groups as i64),
                ];
                self.push_node(name, "Conv", inputs, &out, attrs);
            }
            Op::BatchNorm { eps } => {
                let attrs = vec![float("epsilon", *eps as f32)];
                self.push_node(name, "BatchNormalization", inputs, &out, attrs);
            }
            Op::Activation(a) => match a {
                Activation::Relu => self.push_node(name, "Relu", inputs, &out, vec![]),
                Activation::Sigmoid => self.push_node(name, "Sigmoid", inputs, &out, vec![]),
                Activation::HardSwish => self.push_node(name, "HardSwish", inputs, &out, vec![]),
                Activation::HardSigmoid => {
                    let attrs = vec![float("alpha", 1.0 / 6.0), float("beta", 0.5)];
                    self.push_node(name, "HardSigmoid", inputs, &out, attrs);
                }
                Activation::Relu6 => {
                    let lo = self.fresh(&format!("{name}.clip_min"));
                    let hi = self.fresh(&format!("{name}.clip_max"));
                    self.f32_init(&lo, &[], &[0.0]);
                    self.f32_init(&hi, &[], &[6.0]);
                    self.push_node(name, "Clip", vec![x, lo, hi], &out, vec![]);
                }
                Activation::Silu => {
                    let s = self.fresh(&format!("{name}/sigmoid"));
                    self.push_node(&s, "Sigmoid", vec![x.clone()], &s, vec![]);
                    self.push_node(name, "Mul", vec![x, s], &out, vec![]);
                }
            },
            Op::Add => self.push_node(name, "Add", inputs, &out, vec![]),
            Op::Mul => self.push_node(name, "Mul", inputs, &out, vec![]),
            Op::Concat => self.push_node(name, "Concat", inputs, &out, vec![int("axis", 1)]),
            Op::MaxPool2d(p) => {
                let attrs = pool_attrs(p, None);
                self.push_node(name, "MaxPool", inputs, &out, attrs);
            }
            Op::AvgPool2d(p) => {
                let attrs = pool_attrs(p, Some(p.count_include_pad));
                self.push_node(name, "AveragePool", inputs, &out, attrs);
            }
            Op::GlobalAvgPool | Op::AdaptiveAvgPool => {
                self.push_node(name, "GlobalAveragePool", inputs, &out, vec![])
            }
            Op::Flatten => self.push_node(name, "Flatten", inputs, &out, vec![int("axis", 1)]),
            Op::Linear => {
                let attrs = vec![int("transB", 1)];
                self.push_node(name, "Gemm", inputs, &out, attrs);
            }
            Op::Dropout { .. } => self.push_node(name, "Identity", inputs, &out, vec![]),
            Op::Gather { indices } | Op::Permute { order: indices } => {
                let idx = self.fresh(&format!("{name}.indices"));
                let data: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
                self.i64_init(&idx, &data);
                self.push_node(name, "Gather", vec![x, idx], &out, vec![int("axis", 1)]);
            }
            Op::Slice { start, end } => {
                let mut names = Vec::new();
                for (what, v) in [
                    ("starts", *start as i64),
                    ("ends", *end as i64),
                    ("axes", 1),
                ] {
                    let t = self.fresh(&format!("{name}.{what}"));
                    self.i64_init(&t, &[v]);
                    names.push(t);
                }
                let mut inputs = vec![x];
                inputs.extend(names);
                self.push_node(name, "Slice", inputs, &out, vec![]);
            }
        }
        if needs_mask {
            let flags = removed.expect("needs_mask implies flags");
            let mask_name = self.fresh(&format!("{name}.removed_mask"));
            let mut dims = vec![1; node.shape.len()];
            dims[1] = flags.len();
            let data: Vec<f32> = flags.iter().map(|&r| if r { 0.0 } else { 1.0 }).collect();
            self.f32_init(&mask_name, &dims, &data);
            let mul = self.fresh(&format!("{name}/mask"));
            self.push_node(&mul, "Mul", vec![out, mask_name], name, vec![]);
        }
        self.value_name[n.index()] = node.name.clone();
        Ok(())
    }
}

fn pool_attrs(p: &Pool2d, count_include_pad: Option<bool>) -> Vec<AttributeProto> {
    let mut a = vec![
        ints("kernel_shape", &p.kernel),
        ints("strides", &p.stride),
        ints("pads", &p.padding),
        int("ceil_mode", p.ceil_mode as i64),
    ];
    if let Some(c) = count_include_pad {
        a.push(int("count_include_pad", c as i64));
    }
    a
}

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

fn ints(name: &str, v: &[usize]) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.iter().map(|&x| x as i64).collect(),
        ..Default::default()
    }
}

fn float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(v),
        ..Default::default()
    }
}

fn value_info(name: &str, shape: &[usize]) -> ValueInfoProto {
    let dim = shape
        .iter()
        .map(|&d| tensor_shape_proto::Dimension {
            value: Some(tensor_shape_proto::dimension::Value::DimValue(d as i64)),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(FLOAT),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}
