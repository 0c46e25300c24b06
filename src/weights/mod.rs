//! Weights: the data of every parameter of a [`Program`], bound from a safetensors file or
//! generated from a seed.
//!
//! Input: a checked [`Program`]. Output: [`Weights`], one row-major [`TensorData`] per
//! [`ParamId`] whose length is the product of the declared shape. Data stays in its own dtype:
//! a weights file is memory-mapped and its F32 (or F64) tensors are views into the map, never
//! converted or copied up front; inline params are F64 (exact); seeded ones are F32. User errors
//! (a missing tensor, a wrong shape or dtype, an unreadable file) are [`Diagnostic`]s, all of
//! them reported in one go; no byte sequence in a weights file makes [`load`] panic. Every read
//! of the safetensors format is in [`file`].
//!
//! Seeded weights ([`random`]) come from [`SplitMix64`] streams keyed by `(seed, name)`, so the
//! same seed and the same parameter name give the same tensor forever, whatever else changes in
//! the model.

pub mod file;

use crate::diag::{edit_distance, Code, Diagnostic};
use crate::ir::ops::dims_text;
use crate::ir::{Op, ParamId, ParamInit, Program};
use crate::tensor::{Scalar, SplitMix64};
use file::FileDtype;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

/// Bytes shared by the tensors that view them: a memory-mapped file or an owned buffer.
pub type Buffer = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// The element types weights are stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    F32,
    F64,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F64 => 8,
        }
    }

    /// The safetensors name: `F32` or `F64`.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::F64 => "F64",
        }
    }
}

/// One parameter's data: little-endian elements of one [`Dtype`], viewed in a shared
/// [`Buffer`] (cloning is cheap and copies no data).
#[derive(Clone)]
pub struct TensorData {
    buffer: Buffer,
    range: Range<usize>,
    dtype: Dtype,
}

impl TensorData {
    /// A view of `range` in `buffer`; panics if the range is outside the buffer or not a whole
    /// number of elements (callers check lengths first).
    pub fn view(buffer: Buffer, range: Range<usize>, dtype: Dtype) -> TensorData {
        assert!(
            range.end <= (*buffer).as_ref().len() && range.len().is_multiple_of(dtype.size()),
            "tensor view {range:?} does not fit its buffer"
        );
        TensorData {
            buffer,
            range,
            dtype,
        }
    }

    /// F32 data, copied into a buffer of its own.
    pub fn from_f32(values: &[f32]) -> TensorData {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let len = bytes.len();
        TensorData::view(Arc::new(bytes), 0..len, Dtype::F32)
    }

    /// F64 data, copied into a buffer of its own.
    pub fn from_f64(values: &[f64]) -> TensorData {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let len = bytes.len();
        TensorData::view(Arc::new(bytes), 0..len, Dtype::F64)
    }

    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// The little-endian bytes.
    pub fn bytes(&self) -> &[u8] {
        &(*self.buffer).as_ref()[self.range.clone()]
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.range.len() / self.dtype.size()
    }

    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    /// The elements converted to `T` (exact for F32 data; F64 data rounds in `f32`).
    pub fn to_vec<T: Scalar>(&self) -> Vec<T> {
        let bytes = self.bytes();
        match self.dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|c| T::from_f64(f32::from_le_bytes(c.try_into().expect("4 bytes")).into()))
                .collect(),
            Dtype::F64 => bytes
                .chunks_exact(8)
                .map(|c| T::from_f64(f64::from_le_bytes(c.try_into().expect("8 bytes"))))
                .collect(),
        }
    }
}

impl std::fmt::Debug for TensorData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TensorData({:?} x {})", self.dtype, self.len())
    }
}

impl PartialEq for TensorData {
    fn eq(&self, other: &TensorData) -> bool {
        self.dtype == other.dtype && self.bytes() == other.bytes()
    }
}

/// Parameter data, indexed by [`ParamId`]: `tensor(p)` is row-major with
/// `program.params[p].shape` as its shape.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Weights {
    tensors: Vec<TensorData>,
}

impl Weights {
    pub fn new(tensors: Vec<TensorData>) -> Weights {
        Weights { tensors }
    }

    /// Weights from `f64` values, one list per parameter (stored as F64).
    pub fn from_f64(values: &[Vec<f64>]) -> Weights {
        Weights::new(values.iter().map(|v| TensorData::from_f64(v)).collect())
    }

    /// The number of parameters.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    pub fn tensor(&self, p: ParamId) -> &TensorData {
        &self.tensors[p]
    }

    pub fn tensors(&self) -> &[TensorData] {
        &self.tensors
    }

    /// Parameter `p` as `f64` values.
    pub fn values(&self, p: ParamId) -> Vec<f64> {
        self.tensors[p].to_vec()
    }

    /// Every parameter as (name without `@`, shape, data), in [`ParamId`] order: what a weights
    /// file for `program` holds ([`file::write`]).
    pub fn named<'a>(&'a self, program: &'a Program) -> Vec<file::Named<'a>> {
        program
            .params
            .iter()
            .zip(&self.tensors)
            .map(|(p, data)| (p.name.as_str(), p.shape.as_slice(), data))
            .collect()
    }
}

/// The note given when params need a file but the model names none.
const NO_WEIGHTS_NOTE: &str =
    "add a `weights \"file.safetensors\"` line or run with --random-weights SEED";

/// Binds every parameter: inline values from the program, file-bound ones from
/// `program.weights_file` (a path relative to `base_dir`). The file is read only when some
/// parameter is bound to it. Every problem is reported, not just the first.
pub fn load(program: &Program, base_dir: &Path) -> Result<Weights, Vec<Diagnostic>> {
    let mut tensors: Vec<TensorData> = program
        .params
        .iter()
        .map(|p| match &p.init {
            ParamInit::Inline(v) => TensorData::from_f64(v),
            ParamInit::File => TensorData::from_f64(&[]),
        })
        .collect();
    let file_params: Vec<ParamId> = (0..program.params.len())
        .filter(|&p| program.params[p].init == ParamInit::File)
        .collect();
    if file_params.is_empty() {
        return Ok(Weights::new(tensors));
    }
    let Some((file, line)) = &program.weights_file else {
        let diags = file_params
            .iter()
            .map(|&p| {
                let param = &program.params[p];
                Diagnostic::new(
                    Code::WeightMissing,
                    format!(
                        "parameter `@{}` needs data, but the model has no `weights` line",
                        param.name
                    ),
                    param.span.clone(),
                    "bound to a weights file",
                )
                .with_note(NO_WEIGHTS_NOTE)
            })
            .collect();
        return Err(diags);
    };
    let unreadable = |why: String| {
        vec![Diagnostic::new(
            Code::WeightsUnreadable,
            format!("cannot read the weights file `{file}`"),
            line.clone(),
            "weights file given here",
        )
        .with_note(why)]
    };
    let path = base_dir.join(file);
    let buffer = match file::map_file(&path) {
        Ok(b) => b,
        Err(e) => return Err(unreadable(format!("{}: {e}", path.display()))),
    };
    let st = match file::parse(buffer) {
        Ok(st) => st,
        Err(why) => return Err(unreadable(why)),
    };

    let mut diags = Vec::new();
    for &p in &file_params {
        let param = &program.params[p];
        let entry = match st.get(&param.name) {
            Some(e) => e,
            None => {
                let mut d = Diagnostic::new(
                    Code::WeightMissing,
                    format!("parameter `@{}` has no tensor in `{file}`", param.name),
                    param.span.clone(),
                    format!("no tensor `{}` in the weights file", param.name),
                )
                .with_label(line.clone(), "weights read from here");
                let names = st.names();
                let close = close_names(&param.name, &names);
                if !close.is_empty() {
                    let list: Vec<String> = close.iter().map(|n| format!("`{n}`")).collect();
                    d = d.with_note(format!("close names in the file: {}", list.join(", ")));
                }
                diags.push(d);
                continue;
            }
        };
        let mut ok = true;
        if let FileDtype::Other(dtype) = &entry.dtype {
            diags.push(
                Diagnostic::new(
                    Code::WeightDtype,
                    format!(
                        "tensor `{}` in `{file}` has dtype {dtype}, but only F32 (or F64) is supported",
                        param.name
                    ),
                    param.span.clone(),
                    "declared f32 here",
                )
                .with_label(line.clone(), "weights read from here")
                .with_note("convert the tensor to float32 when saving the weights"),
            );
            ok = false;
        }
        if entry.shape != param.shape {
            diags.push(
                Diagnostic::new(
                    Code::WeightShape,
                    format!(
                        "tensor `{}` has shape {} in `{file}`, but `@{}` is declared {}",
                        param.name,
                        dims_text(&entry.shape),
                        param.name,
                        dims_text(&param.shape)
                    ),
                    param.span.clone(),
                    format!("declared {}", dims_text(&param.shape)),
                )
                .with_label(line.clone(), "weights read from here"),
            );
            ok = false;
        }
        if let (true, Some(data)) = (ok, st.data(entry)) {
            tensors[p] = data;
        }
    }
    if diags.is_empty() {
        Ok(Weights::new(tensors))
    } else {
        Err(diags)
    }
}

/// Up to three names from `candidates` that look like typos or prefixed variants of `name`.
fn close_names<'c>(name: &str, candidates: &[&'c str]) -> Vec<&'c str> {
    let mut scored: Vec<(usize, &str)> = candidates
        .iter()
        .filter_map(|&c| {
            let d = edit_distance(name, c);
            let limit = (name.len().max(c.len()) / 3).max(2);
            let related = c.ends_with(name) || name.ends_with(c);
            (d <= limit || related).then_some((d, c))
        })
        .collect();
    scored.sort_unstable();
    scored.into_iter().take(3).map(|(_, c)| c).collect()
}

/// How a parameter is used, which sets the scale of its seeded values.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    /// Weight of a conv2d or linear: Kaiming uniform, variance 2 / fan_in.
    MixWeight {
        fan_in: usize,
    },
    Bias,
    BnWeight,
    BnBias,
    BnMean,
    BnVar,
    Unused,
}

impl Role {
    fn range(self) -> (f64, f64) {
        match self {
            Role::MixWeight { fan_in } => {
                let bound = (6.0 / fan_in.max(1) as f64).sqrt();
                (-bound, bound)
            }
            Role::BnWeight | Role::BnVar => (0.5, 1.5),
            Role::Bias | Role::BnBias | Role::BnMean | Role::Unused => (-0.1, 0.1),
        }
    }
}

/// The role of each parameter, from its first use (in node index order).
fn roles(program: &Program) -> Vec<Role> {
    let mut roles = vec![Role::Unused; program.params.len()];
    for n in program.graph.node_indices() {
        let node = &program.graph[n];
        for (pos, &p) in node.params.iter().enumerate() {
            if roles[p] != Role::Unused {
                continue;
            }
            roles[p] = match (&node.op, pos) {
                (Op::Conv2d(_) | Op::Linear, 0) => Role::MixWeight {
                    fan_in: program.params[p].shape[1..].iter().product(),
                },
                (Op::BatchNorm { .. }, 0) => Role::BnWeight,
                (Op::BatchNorm { .. }, 1) => Role::BnBias,
                (Op::BatchNorm { .. }, 2) => Role::BnMean,
                (Op::BatchNorm { .. }, 3) => Role::BnVar,
                _ => Role::Bias,
            };
        }
    }
    roles
}

/// Seeded weights: inline params keep their values; each file-bound param `@name` gets values
/// from `SplitMix64::for_name(seed, "@name")`, uniform in a range set by its role:
/// conv2d/linear weights Kaiming uniform (variance 2 / fan_in, fan_in = product of
/// `shape[1..]`), biases U(-0.1, 0.1), batch_norm weight U(0.5, 1.5), bias U(-0.1, 0.1),
/// running mean U(-0.1, 0.1), running var U(0.5, 1.5), unused params U(-0.1, 0.1). Values are
/// rounded to `f32`.
pub fn random(program: &Program, seed: u64) -> Weights {
    let roles = roles(program);
    let tensors = program
        .params
        .iter()
        .zip(roles)
        .map(|(p, role)| match &p.init {
            ParamInit::Inline(v) => TensorData::from_f64(v),
            ParamInit::File => {
                let (lo, hi) = role.range();
                let mut rng = SplitMix64::for_name(seed, &format!("@{}", p.name));
                let len: usize = p.shape.iter().product();
                let values: Vec<f32> = (0..len).map(|_| rng.uniform(lo, hi) as f32).collect();
                TensorData::from_f32(&values)
            }
        })
        .collect();
    Weights::new(tensors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_reference_values() {
        // The published SplitMix64 sequence for seed 1234567.
        let mut r = SplitMix64::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
    }

    #[test]
    fn close_names_finds_typos_and_prefixes() {
        let names = ["conv1_weight", "model.fc_w", "unrelated"];
        assert_eq!(close_names("conv1_weigth", &names), vec!["conv1_weight"]);
        assert_eq!(close_names("fc_w", &names), vec!["model.fc_w"]);
    }
}
