//! What `nnirc latency measure` times: for each [`Kernel`] of a model, a grid of width pairs
//! ([`grid`]) and, for each pair, a micro-model of that one unit ([`micro_source`]), exported
//! with nnirc's own ONNX exporter.
//!
//! The grid spans what pruning can produce from the widths the model has: per axis, geometric
//! ladders from a quarter of the smallest width to the largest in each alignment class
//! ([`super::table::class`]), two widths below the block, and the model's own widths, so each
//! class of each axis has at least two points to interpolate between. Grouped (non-depthwise) convs
//! are measured at their own widths only.

use super::table::class;
use super::units::{Fused, Kernel};
use crate::tensor::SplitMix64;
use std::collections::BTreeSet;

/// `n` widths from `hi` down to `lo` in geometric steps, each moved to the nearest width of
/// alignment class `want` ([`class`]).
fn ladder(lo: f64, hi: f64, n: usize, block: usize, fine: bool, want: usize) -> Vec<usize> {
    let step = if n > 1 {
        (hi / lo).powf(1.0 / (n - 1) as f64)
    } else {
        1.0
    };
    (0..n)
        .filter_map(|k| {
            let target = (hi / step.powi(k as i32)).round().max(1.0) as usize;
            (0..4 * block)
                .flat_map(|d| [target + d, target.saturating_sub(d)])
                .find(|&v| v >= block && class(v, block, fine) == want)
        })
        .collect()
}

/// The widths to measure on one axis, for the widths `seen` in the model(s): from a quarter of
/// the smallest to the largest (aligned up), a geometric ladder in each alignment class of the
/// axis ([`class`]): up to 5 aligned widths and 2 in each other class; two widths below
/// the block; and the seen widths themselves when there are at most 4 of them. A kernel that
/// appears at many widths (DenseNet's concats) gets no more points than one at a few.
fn axis(seen: &BTreeSet<usize>, block: usize, fine: bool) -> BTreeSet<usize> {
    let (Some(&min), Some(&max)) = (seen.first(), seen.last()) else {
        return BTreeSet::new();
    };
    let mut out = BTreeSet::new();
    if seen.len() <= 4 {
        out.extend(seen.iter().copied());
    }
    // Pruned below the block (the smallest class), unless the widths are that small already
    // (an image's channels).
    if max > block / 2 {
        out.insert(block.div_ceil(4));
        out.insert(block * 3 / 4);
    }
    if max <= block {
        out.extend(seen.iter().copied());
        return out;
    }
    let hi = max.div_ceil(block) * block;
    let lo = (min as f64 / 4.0).max(block as f64);
    let count = |ratio: f64, cap: usize| {
        (((hi as f64 / lo).ln() / ratio.ln()).ceil() as usize + 1).clamp(2, cap)
    };
    out.extend(ladder(lo, hi as f64, count(1.6, 5), block, fine, block));
    let others: Vec<usize> = if fine {
        (1..block).filter(|&d| block.is_multiple_of(d)).collect()
    } else {
        vec![1]
    };
    for want in others {
        out.extend(ladder(lo, max as f64 * 0.9, 2, block, fine, want));
    }
    out
}

/// The width pairs to measure for `kernel`, given the pairs the model(s) use.
///
/// ```
/// use nnirc::latency::micro::grid;
/// use nnirc::latency::units::Kernel;
/// let linear = Kernel::Linear { bias: true };
/// let pairs = grid(&linear, &[(64, 10)], 8);
/// assert!(pairs.contains(&(64, 10)) && pairs.contains(&(16, 10)));
/// assert!(pairs.iter().any(|&(i, _)| i % 8 == 4) && pairs.iter().any(|&(i, _)| i % 2 == 1));
/// ```
pub fn grid(kernel: &Kernel, seen: &[(usize, usize)], block: usize) -> Vec<(usize, usize)> {
    if let Kernel::Conv { groups, .. } = kernel {
        if *groups > 1 {
            let mut own: Vec<(usize, usize)> = seen.to_vec();
            own.sort_unstable();
            own.dedup();
            return own;
        }
    }
    let ins: BTreeSet<usize> = seen.iter().map(|p| p.0).collect();
    let outs: BTreeSet<usize> = seen.iter().map(|p| p.1).collect();
    if kernel.two_widths() {
        let (xs, ys) = (axis(&ins, block, true), axis(&outs, block, false));
        match kernel {
            // A slice or gather reads at most what it is given.
            Kernel::Slice { .. } | Kernel::Gather { .. } => xs
                .iter()
                .flat_map(|&x| ys.iter().filter(move |&&y| y <= x).map(move |&y| (x, y)))
                .collect(),
            _ => xs
                .iter()
                .flat_map(|&x| ys.iter().map(move |&y| (x, y)))
                .collect(),
        }
    } else {
        let all: BTreeSet<usize> = ins.union(&outs).copied().collect();
        let mut widths = axis(&all, block, true);
        if let Kernel::Concat { inputs, .. } = kernel {
            // At least one channel per operand; keep two points below the block.
            widths.retain(|&w| w >= *inputs);
            if *inputs < block {
                widths.extend([*inputs, block - 1]);
            }
        }
        widths.into_iter().map(|w| (w, w)).collect()
    }
}

fn list(v: &[usize]) -> String {
    let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", items.join(", "))
}

/// A conv's output size: window `k`, stride `s`, padding `p0 + p1`, dilation `d`.
fn out_size(n: usize, k: usize, s: usize, p0: usize, p1: usize, d: usize) -> usize {
    (n + p0 + p1 - d * (k - 1) - 1) / s + 1
}

/// The name prefix of the values a micro-model needs around its unit (whose kernels the
/// measurement leaves out).
pub const CONTEXT: &str = "ctx";

/// A `.nnir` model of one unit of `kernel` at `(c_in, c_out)`, with inline params (random
/// weights). Its inputs are `%x` (and `%z` for a second operand, or a [`CONTEXT`] value), its
/// output `%y`.
///
/// ```
/// use nnirc::latency::micro::micro_source;
/// use nnirc::latency::units::Kernel;
/// let src = micro_source(&Kernel::GlobalAvgPool { input: [7, 7] }, 24, 24);
/// assert!(nnirc::compile(&src).program.is_some());
/// ```
pub fn micro_source(kernel: &Kernel, c_in: usize, c_out: usize) -> String {
    let [h, w] = match kernel {
        Kernel::Linear { .. } => [1, 1],
        Kernel::Conv { input, .. }
        | Kernel::Pointwise { input, .. }
        | Kernel::ScaleMul { input }
        | Kernel::MaxPool { input, .. }
        | Kernel::AvgPool { input, .. }
        | Kernel::GlobalAvgPool { input }
        | Kernel::Concat { input, .. }
        | Kernel::Slice { input }
        | Kernel::Gather { input }
        | Kernel::Flatten { input } => *input,
    };
    let x4 = |c: usize| format!("f32[1, {c}, {h}, {w}]");
    let mut inputs = vec![format!("%x: {}", x4(c_in))];
    let mut params = Vec::new();
    let mut body = Vec::new();
    let mut context = Vec::new();
    let mut outputs = vec!["%y".to_string()];
    match kernel {
        Kernel::Conv {
            kernel: k,
            stride,
            padding,
            dilation,
            depthwise,
            groups,
            bias,
            fused,
            ..
        } => {
            let g = if *depthwise { c_in } else { *groups };
            params.push(format!(
                "@w: f32[{c_out}, {}, {}, {}]",
                c_in / g,
                k[0],
                k[1]
            ));
            let mut args = "%x, @w".to_string();
            if *bias {
                params.push(format!("@b: f32[{c_out}]"));
                args += ", @b";
            }
            // Values %v0 (the conv), %v1... (the fused ops); the last one is %y.
            let name = |i: usize| {
                if i == fused.len() {
                    "%y".to_string()
                } else {
                    format!("%v{i}")
                }
            };
            body.push(format!(
                "{} = conv2d({args}, stride={}, padding={}, dilation={}, groups={g})",
                name(0),
                list(stride),
                list(padding),
                list(dilation)
            ));
            let oh = out_size(h, k[0], stride[0], padding[0], padding[2], dilation[0]);
            let ow = out_size(w, k[1], stride[1], padding[1], padding[3], dilation[1]);
            for (i, f) in fused.iter().enumerate() {
                let (v, prev) = (name(i + 1), name(i));
                body.push(match f {
                    Fused::BatchNorm => {
                        for p in ["g", "beta", "mean", "var"] {
                            params.push(format!("@bn.{p}: f32[{c_out}]"));
                        }
                        format!(
                            "{v} = batch_norm({prev}, @bn.g, @bn.beta, @bn.mean, @bn.var, eps=1e-5)"
                        )
                    }
                    Fused::Add | Fused::Mul => {
                        // In a model the residual comes from a neighbour in the runtime's
                        // layout, not from a plain model input (which would stop the fusion):
                        // a context conv makes it, its kernels are not the unit's
                        // ([`CONTEXT`]), and being also an output it cannot fuse the add.
                        inputs.push(format!("%{CONTEXT}.in: f32[1, {c_out}, {oh}, {ow}]"));
                        params.push(format!("@{CONTEXT}.w: f32[{c_out}, {c_out}, 1, 1]"));
                        context.push(format!("%{CONTEXT} = conv2d(%{CONTEXT}.in, @{CONTEXT}.w)"));
                        outputs.push(format!("%{CONTEXT}"));
                        format!("{v} = {}({prev}, %{CONTEXT})", f.op_name())
                    }
                    act => format!("{v} = {}({prev})", act.op_name()),
                });
            }
        }
        Kernel::Linear { bias } => {
            inputs[0] = format!("%x: f32[1, {c_in}]");
            params.push(format!("@w: f32[{c_out}, {c_in}]"));
            let b = if *bias {
                params.push(format!("@b: f32[{c_out}]"));
                ", @b"
            } else {
                ""
            };
            body.push(format!("%y = linear(%x, @w{b})"));
        }
        Kernel::Pointwise { op, .. } => match op {
            Fused::BatchNorm => {
                for p in ["g", "beta", "mean", "var"] {
                    params.push(format!("@bn.{p}: f32[{c_in}]"));
                }
                body.push(
                    "%y = batch_norm(%x, @bn.g, @bn.beta, @bn.mean, @bn.var, eps=1e-5)".into(),
                );
            }
            Fused::Add | Fused::Mul => {
                inputs.push(format!("%z: {}", x4(c_in)));
                body.push(format!("%y = {}(%x, %z)", op.op_name()));
            }
            act => body.push(format!("%y = {}(%x)", act.op_name())),
        },
        Kernel::ScaleMul { .. } => {
            inputs.push(format!("%z: f32[1, {c_in}, 1, 1]"));
            body.push("%y = mul(%x, %z)".into());
        }
        Kernel::MaxPool {
            kernel: k,
            stride,
            padding,
            ceil_mode,
            ..
        } => body.push(format!(
            "%y = max_pool2d(%x, kernel={}, stride={}, padding={}, ceil_mode={ceil_mode})",
            list(k),
            list(stride),
            list(padding)
        )),
        Kernel::AvgPool {
            kernel: k,
            stride,
            padding,
            ceil_mode,
            count_include_pad,
            ..
        } => body.push(format!(
            "%y = avg_pool2d(%x, kernel={}, stride={}, padding={}, ceil_mode={ceil_mode}, \
             count_include_pad={count_include_pad})",
            list(k),
            list(stride),
            list(padding)
        )),
        Kernel::GlobalAvgPool { .. } => body.push("%y = global_avg_pool(%x)".into()),
        Kernel::Flatten { .. } => {
            // The width is the feature count: channels * H * W.
            let c = (c_in / (h * w)).max(1);
            inputs[0] = format!("%x: {}", x4(c));
            body.push("%y = flatten(%x)".into());
        }
        Kernel::Concat { inputs: n, .. } => {
            inputs.clear();
            let mut names = Vec::new();
            for i in 0..*n {
                let c = c_out / n + usize::from(i < c_out % n);
                inputs.push(format!("%x{i}: {}", x4(c)));
                names.push(format!("%x{i}"));
            }
            body.push(format!("%y = concat({})", names.join(", ")));
        }
        Kernel::Slice { .. } => {
            let start = (c_in - c_out) / 2;
            body.push(format!(
                "%y = slice(%x, start={start}, end={})",
                start + c_out
            ));
        }
        Kernel::Gather { .. } => {
            // A pruned read: `c_out` of the `c_in` channels, ascending, chosen by a seeded
            // generator (partial Fisher-Yates).
            let mut rng = SplitMix64::new((c_in * 131 + c_out) as u64);
            let mut all: Vec<usize> = (0..c_in).collect();
            for i in 0..c_out {
                let j = i + (rng.next_u64() % (c_in - i) as u64) as usize;
                all.swap(i, j);
            }
            let mut picked = all[..c_out].to_vec();
            picked.sort_unstable();
            body.push(format!("%y = gather(%x, indices={})", list(&picked)));
        }
    }
    let mut s = format!(
        "model unit({}) -> ({}) {{\n",
        inputs.join(", "),
        outputs.join(", ")
    );
    for p in params {
        s += &format!("  param {p}\n");
    }
    for b in context.into_iter().chain(body) {
        s += &format!("  {b}\n");
    }
    s + "}\n"
}
