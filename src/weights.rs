//! Weights: the data of every parameter of a [`Program`], bound from a safetensors file or
//! generated from a seed.
//!
//! Input: a checked [`Program`]. Output: [`Weights`], one row-major `f64` tensor per
//! [`ParamId`] whose length is the product of the declared shape (inline params keep their
//! values; f32 file data converts exactly). User errors (a missing tensor, a wrong shape or
//! dtype, an unreadable file) are [`Diagnostic`]s, all of them reported in one go; no byte
//! sequence in a weights file makes [`load`] panic.
//!
//! Seeded weights ([`random`]) come from [`SplitMix64`] streams keyed by `(seed, name)`, so the
//! same seed and the same parameter name give the same tensor forever, whatever else changes in
//! the model.

use crate::diag::{edit_distance, Code, Diagnostic};
use crate::interp::Tensor;
use crate::ir::ops::dims_text;
use crate::ir::{Op, ParamId, ParamInit, Program};
use std::path::Path;

/// Parameter data, indexed by [`ParamId`]: `tensors[p]` is row-major with
/// `program.params[p].shape` as its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    pub tensors: Vec<Vec<f64>>,
}

impl Weights {
    /// Every parameter as a named `f32` tensor (names without `@`), in [`ParamId`] order: what a
    /// weights file for `program` holds.
    pub fn named_f32(&self, program: &Program) -> Vec<(String, Tensor<f32>)> {
        program
            .params
            .iter()
            .zip(&self.tensors)
            .map(|(p, data)| {
                let t = Tensor {
                    shape: p.shape.clone(),
                    data: data.iter().map(|&v| v as f32).collect(),
                };
                (p.name.clone(), t)
            })
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
    let mut tensors: Vec<Vec<f64>> = program
        .params
        .iter()
        .map(|p| match &p.init {
            ParamInit::Inline(v) => v.clone(),
            ParamInit::File => Vec::new(),
        })
        .collect();
    let file_params: Vec<ParamId> = (0..program.params.len())
        .filter(|&p| program.params[p].init == ParamInit::File)
        .collect();
    if file_params.is_empty() {
        return Ok(Weights { tensors });
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
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => return Err(unreadable(format!("{}: {e}", path.display()))),
    };
    if let Err(why) = precheck(&bytes) {
        return Err(unreadable(why));
    }
    let st = match safetensors::SafeTensors::deserialize(&bytes) {
        Ok(st) => st,
        Err(e) => return Err(unreadable(format!("not a valid safetensors file: {e}"))),
    };

    let mut diags = Vec::new();
    for &p in &file_params {
        let param = &program.params[p];
        let view = match st.tensor(&param.name) {
            Ok(v) => v,
            Err(_) => {
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
        let dtype = view.dtype();
        if !matches!(dtype, safetensors::Dtype::F32 | safetensors::Dtype::F64) {
            diags.push(
                Diagnostic::new(
                    Code::WeightDtype,
                    format!(
                        "tensor `{}` in `{file}` has dtype {dtype:?}, but only F32 (or F64) is supported",
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
        if view.shape() != param.shape.as_slice() {
            diags.push(
                Diagnostic::new(
                    Code::WeightShape,
                    format!(
                        "tensor `{}` has shape {} in `{file}`, but `@{}` is declared {}",
                        param.name,
                        dims_text(view.shape()),
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
        if ok {
            tensors[p] = decode(dtype, view.data());
        }
    }
    if diags.is_empty() {
        Ok(Weights { tensors })
    } else {
        Err(diags)
    }
}

/// Decodes little-endian F32 or F64 bytes (no alignment assumed).
fn decode(dtype: safetensors::Dtype, bytes: &[u8]) -> Vec<f64> {
    match dtype {
        safetensors::Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("chunks of 8")))
            .collect(),
        _ => bytes
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes(c.try_into().expect("chunks of 4"))))
            .collect(),
    }
}

/// Checks the parts of a safetensors header that the crate trusts with unchecked arithmetic
/// (so that no file can make it overflow), and explains truncation in plain words.
pub(crate) fn precheck(bytes: &[u8]) -> Result<(), String> {
    let Some(len) = bytes.get(..8) else {
        return Err(format!(
            "the file is {} bytes long: too short for a safetensors header",
            bytes.len()
        ));
    };
    let n = u64::from_le_bytes(len.try_into().expect("8 bytes"));
    let rest = (bytes.len() - 8) as u64;
    if n > rest {
        return Err(format!(
            "the header claims {n} bytes, but only {rest} follow (truncated or not a safetensors file)"
        ));
    }
    let n = n as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n])
        .map_err(|e| format!("the header is not UTF-8: {e}"))?;
    let json: serde_json::Map<String, serde_json::Value> = serde_json::from_str(header)
        .map_err(|e| format!("the header is not a JSON object: {e}"))?;
    let data_len = bytes.len() - 8 - n;
    for (name, info) in &json {
        if name == "__metadata__" {
            continue;
        }
        let offsets = info
            .get("data_offsets")
            .and_then(|o| o.as_array())
            .map(|o| o.iter().map(|v| v.as_u64()).collect::<Vec<_>>());
        let Some([Some(start), Some(end)]) = offsets.as_deref() else {
            return Err(format!(
                "tensor `{name}` has no valid `data_offsets` in the header"
            ));
        };
        if start > end || *end > data_len as u64 {
            return Err(format!(
                "tensor `{name}` claims bytes {start}..{end}, but the data section is {data_len} bytes long (truncated file?)"
            ));
        }
    }
    Ok(())
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

/// A SplitMix64 generator (Steele, Lea and Flood, 2014): 64 bits of state, advanced by the
/// golden-ratio increment and finished by a fixed mixer.
///
/// The streams are part of the tool's contract: [`SplitMix64::for_name`] with the same seed
/// and name gives the same numbers in every version.
///
/// ```
/// use nnirc::weights::SplitMix64;
/// let mut a = SplitMix64::for_name(7, "@conv1_w");
/// let mut b = SplitMix64::for_name(7, "@conv1_w");
/// assert_eq!(a.next_u64(), b.next_u64());
/// ```
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The stream for `name` under `seed`: state = mix(seed) XOR FNV-1a-64(name).
    /// Parameters use the key `@name`, model inputs `%name`.
    pub fn for_name(seed: u64, name: &str) -> Self {
        let mut h: u64 = 0xCBF2_9CE4_8422_2325;
        for b in name.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01B3);
        }
        SplitMix64::new(mix(seed) ^ h)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(Self::GAMMA);
        mix(self.state)
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi)`, rounded to the nearest `f32` (so an f32 weights file written from
    /// seeded data reproduces it exactly).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        (lo + (hi - lo) * self.next_f64()) as f32 as f64
    }
}

/// The SplitMix64 output mixer.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
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
            ParamInit::Inline(v) => v.clone(),
            ParamInit::File => {
                let (lo, hi) = role.range();
                let mut rng = SplitMix64::for_name(seed, &format!("@{}", p.name));
                let len: usize = p.shape.iter().product();
                (0..len).map(|_| rng.uniform(lo, hi)).collect()
            }
        })
        .collect();
    Weights { tensors }
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
    fn precheck_rejects_lying_offsets() {
        let header =
            br#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551615]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0; 4]);
        assert!(precheck(&bytes).unwrap_err().contains("truncated"));
        assert!(precheck(&[1, 2, 3]).is_err());
        assert!(precheck(&u64::MAX.to_le_bytes()).is_err());
    }

    #[test]
    fn close_names_finds_typos_and_prefixes() {
        let names = ["conv1_weight", "model.fc_w", "unrelated"];
        assert_eq!(close_names("conv1_weigth", &names), vec!["conv1_weight"]);
        assert_eq!(close_names("fc_w", &names), vec!["model.fc_w"]);
    }
}
