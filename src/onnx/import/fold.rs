//! Ops that fold away at import rather than map onto a `.nnir` op:
//! - `Pad` with zeros on H and W becomes a [`Value::Padded`], folded into the `Conv` or
//!   `AveragePool` that reads it (older torch exporters write `AvgPool2d` this way); all-zero
//!   pads are an alias;
//! - integer shape arithmetic, as the TorchScript exporter writes `x.view(x.size(0), -1)`:
//!   `Shape` of a (static) tensor, and `Gather`, `Unsqueeze`, `Concat` of integer constants,
//!   become constants, so the `Reshape` they feed sees a constant target shape.
//!
//! Nothing here creates a graph node: every result is a constant or an alias, and a padded
//! value that reaches anything but a folding consumer is an error there.

use super::ops::{add_pads, attr, attr_i};
use super::{Builder, Const, ConstData, Value};
use crate::onnx::proto::NodeProto;
use crate::onnx::OnnxError;

impl Builder<'_> {
    pub(super) fn pad(&mut self, node: &NodeProto, _base: &str) -> Result<(), OnnxError> {
        self.allow(node, &["mode"])?;
        if let Some(mode) = attr(node, "mode").and_then(|a| a.s.as_deref()) {
            if mode != b"constant" {
                return Err(self.err(node, "only mode=constant is supported"));
            }
        }
        let (x, before) = self.padded(node, 0)?;
        let rank = self.graph[x].shape.len();
        let pads = self
            .i64_const(node, 1)?
            .ok_or_else(|| self.err(node, "the pads input must be a constant"))?;
        let value = self.f32_const(node, 2)?;
        if value.is_some_and(|(_, v)| v.is_none_or(|v| v.iter().any(|&c| c != 0.0))) {
            return Err(self.err(node, "only a zero padding value is supported"));
        }
        let axes: Vec<i64> = match self.i64_const(node, 3)? {
            Some(axes) => axes,
            None => (0..rank as i64).collect(),
        };
        if pads.len() != 2 * axes.len() {
            return Err(self.err(node, "pads must have two entries per axis"));
        }
        // ONNX order: all begins, then all ends.
        let mut per_axis = vec![(0i64, 0i64); rank];
        for (k, &a) in axes.iter().enumerate() {
            let axis = if a < 0 { a + rank as i64 } else { a };
            let slot = usize::try_from(axis)
                .ok()
                .and_then(|axis| per_axis.get_mut(axis))
                .ok_or_else(|| self.err(node, format!("axis {a} is out of range")))?;
            *slot = (pads[k], pads[k + axes.len()]);
        }
        if per_axis.iter().any(|&(b, e)| b < 0 || e < 0) {
            return Err(self.err(node, "negative pads (cropping) are not supported"));
        }
        let spatial = rank == 4 && per_axis[..2] == [(0, 0), (0, 0)];
        if per_axis.iter().all(|&p| p == (0, 0)) {
            let out = node.output.first().cloned().unwrap_or_default();
            let v = match before {
                [0, 0, 0, 0] => Value::Tensor(x),
                pads => Value::Padded { x, pads },
            };
            return self.define(node, out, v);
        }
        if !spatial {
            return Err(self.err(
                node,
                "only padding H and W of a 4-d tensor is supported (not N or C)",
            ));
        }
        let [(t, b), (l, r)] = [per_axis[2], per_axis[3]].map(|(p, q)| (p as usize, q as usize));
        let out = node.output.first().cloned().unwrap_or_default();
        let pads = add_pads(before, [t, l, b, r]);
        self.define(node, out, Value::Padded { x, pads })
    }

    /// `Shape` of a computed tensor: its static dims, as an int64 constant.
    pub(super) fn shape(&mut self, node: &NodeProto, _base: &str) -> Result<(), OnnxError> {
        self.allow(node, &["start", "end"])?;
        let x = self.tensor(node, 0)?;
        let dims: Vec<i64> = self.graph[x].shape.iter().map(|&d| d as i64).collect();
        let rank = dims.len() as i64;
        let at = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
        let (start, end) = (at(attr_i(node, "start", 0)), at(attr_i(node, "end", rank)));
        let dims = dims[start..end.max(start)].to_vec();
        let c = Const {
            dims: vec![dims.len()],
            data: ConstData::I64(dims),
        };
        let out = node.output.first().cloned().unwrap_or_default();
        self.define(node, out, Value::Const(c))
    }

    /// `Unsqueeze` of an integer constant (shape arithmetic).
    pub(super) fn unsqueeze(&mut self, node: &NodeProto, _base: &str) -> Result<(), OnnxError> {
        self.allow(node, &[])?;
        let Some(Value::Const(c)) = self.value(node, 0)?.cloned() else {
            return Err(self.err(
                node,
                "only an Unsqueeze of a constant (shape arithmetic) is supported",
            ));
        };
        let axes = self
            .i64_const(node, 1)?
            .ok_or_else(|| self.err(node, "the axes input must be a constant"))?;
        let rank = (c.dims.len() + axes.len()) as i64;
        let mut axes: Vec<i64> = axes
            .iter()
            .map(|&a| if a < 0 { a + rank } else { a })
            .collect();
        axes.sort_unstable();
        if axes.windows(2).any(|w| w[0] == w[1]) || axes.iter().any(|a| !(0..rank).contains(a)) {
            return Err(self.err(node, "the axes are repeated or out of range"));
        }
        let mut dims = c.dims.clone();
        for &a in &axes {
            dims.insert(a as usize, 1);
        }
        let out = node.output.first().cloned().unwrap_or_default();
        let c = Const { dims, ..c };
        self.define(node, out, Value::Const(c))
    }

    /// `Gather` along axis 0 of a 1-d integer constant (shape arithmetic).
    pub(super) fn gather_const(&mut self, node: &NodeProto, c: &Const) -> Result<(), OnnxError> {
        let ConstData::I64(data) = &c.data else {
            return Err(self.err(node, "only a Gather of an integer constant is supported"));
        };
        let indices = self
            .constant(node, 1)?
            .ok_or_else(|| self.err(node, "the indices must be a constant"))?;
        let ConstData::I64(idx) = &indices.data else {
            return Err(self.err(node, "the indices must be integers"));
        };
        if c.dims.len() != 1 || attr_i(node, "axis", 0) != 0 {
            return Err(self.err(node, "only axis 0 of a 1-d constant is supported"));
        }
        let n = data.len() as i64;
        let picked = idx
            .iter()
            .map(|&i| {
                let j = if i < 0 { i + n } else { i };
                usize::try_from(j)
                    .ok()
                    .and_then(|j| data.get(j).copied())
                    .ok_or_else(|| self.err(node, format!("index {i} is out of range")))
            })
            .collect::<Result<Vec<i64>, _>>()?;
        let out = node.output.first().cloned().unwrap_or_default();
        let c = Const {
            dims: indices.dims.clone(),
            data: ConstData::I64(picked),
        };
        self.define(node, out, Value::Const(c))
    }

    /// `Concat` of 1-d integer constants (shape arithmetic).
    pub(super) fn concat_const(&mut self, node: &NodeProto) -> Result<(), OnnxError> {
        if !matches!(attr_i(node, "axis", 0), 0 | -1) {
            return Err(self.err(node, "a Concat of 1-d constants must be along axis 0"));
        }
        let mut all = Vec::new();
        for i in 0..node.input.len() {
            match self.constant(node, i)? {
                Some(Const {
                    dims,
                    data: ConstData::I64(v),
                }) if dims.len() == 1 => all.extend(v),
                _ => {
                    return Err(self.err(
                        node,
                        "a Concat of constants must join 1-d integer constants",
                    ))
                }
            }
        }
        let out = node.output.first().cloned().unwrap_or_default();
        let c = Const {
            dims: vec![all.len()],
            data: ConstData::I64(all),
        };
        self.define(node, out, Value::Const(c))
    }
}
