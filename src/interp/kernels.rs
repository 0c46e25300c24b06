//! The per-channel and data-movement ops, written plainly. Layout is row-major with the
//! channel axis at 1: a tensor is `N` blocks of `C` planes of `inner` elements.

use super::{Scalar, Tensor};
use crate::ir::{Activation, Pool2d};

/// `y = (x - mean) / sqrt(var + eps) * weight + bias`, per channel (axis 1).
pub(super) fn batch_norm<T: Scalar>(x: &Tensor<T>, params: &[Vec<T>], eps: f64) -> Tensor<T> {
    let [weight, bias, mean, var] = params else {
        panic!("Program invariant: batch_norm has four params");
    };
    let c = x.shape[1];
    let inner: usize = x.shape[2..].iter().product();
    let denom: Vec<T> = var.iter().map(|&v| (v + T::from_f64(eps)).sqrt()).collect();
    let mut out = x.clone();
    for (i, plane) in out.data.chunks_exact_mut(inner).enumerate() {
        let ch = i % c;
        for v in plane {
            *v = (*v - mean[ch]) / denom[ch] * weight[ch] + bias[ch];
        }
    }
    out
}

/// Element-wise activations, with PyTorch's definitions.
pub(super) fn activation<T: Scalar>(x: &Tensor<T>, a: Activation) -> Tensor<T> {
    let six = T::from_f64(6.0);
    let three = T::from_f64(3.0);
    let clamp = |v: T, lo: T, hi: T| {
        if v < lo {
            lo
        } else if v > hi {
            hi
        } else {
            v
        }
    };
    let sigmoid = |v: T| T::ONE / (T::ONE + (-v).exp());
    let f = |v: T| match a {
        Activation::Relu => {
            if v < T::ZERO {
                T::ZERO
            } else {
                v
            }
        }
        Activation::Relu6 => clamp(v, T::ZERO, six),
        Activation::Sigmoid => sigmoid(v),
        Activation::Silu => v * sigmoid(v),
        // relu6(x + 3) / 6 = clamp(x / 6 + 1/2, 0, 1)
        Activation::HardSigmoid => clamp(v + three, T::ZERO, six) / six,
        Activation::HardSwish => v * clamp(v + three, T::ZERO, six) / six,
    };
    Tensor {
        shape: x.shape.clone(),
        data: x.data.iter().map(|&v| f(v)).collect(),
    }
}

/// Numpy broadcasting between tensors of equal rank.
pub(super) fn broadcast<T: Scalar>(
    a: &Tensor<T>,
    b: &Tensor<T>,
    out_shape: &[usize],
    f: impl Fn(T, T) -> T,
) -> Tensor<T> {
    if a.shape == b.shape {
        return Tensor {
            shape: a.shape.clone(),
            data: a.data.iter().zip(&b.data).map(|(&p, &q)| f(p, q)).collect(),
        };
    }
    let rank = out_shape.len();
    // Strides into each operand; 0 along broadcast axes.
    let strides = |shape: &[usize]| {
        let mut s = vec![0; rank];
        let mut acc = 1;
        for d in (0..rank).rev() {
            s[d] = if shape[d] == 1 { 0 } else { acc };
            acc *= shape[d];
        }
        s
    };
    let (sa, sb) = (strides(&a.shape), strides(&b.shape));
    let len: usize = out_shape.iter().product();
    let mut data = Vec::with_capacity(len);
    let mut index = vec![0; rank];
    let (mut ia, mut ib) = (0, 0);
    for _ in 0..len {
        data.push(f(a.data[ia], b.data[ib]));
        // Advance the multi-index like an odometer.
        for d in (0..rank).rev() {
            index[d] += 1;
            ia += sa[d];
            ib += sb[d];
            if index[d] < out_shape[d] {
                break;
            }
            ia -= sa[d] * index[d];
            ib -= sb[d] * index[d];
            index[d] = 0;
        }
    }
    Tensor {
        shape: out_shape.to_vec(),
        data,
    }
}

/// Concatenation along the channel axis.
pub(super) fn concat<T: Scalar>(xs: &[&Tensor<T>], out_shape: &[usize]) -> Tensor<T> {
    let n = out_shape[0];
    let inner: usize = out_shape[2..].iter().product();
    let mut data = Vec::with_capacity(out_shape.iter().product());
    for b in 0..n {
        for x in xs {
            let block = x.shape[1] * inner;
            data.extend_from_slice(&x.data[b * block..(b + 1) * block]);
        }
    }
    Tensor {
        shape: out_shape.to_vec(),
        data,
    }
}

/// The input rows (or columns) under output window `o`: `start` may be negative (padding), and
/// `end` is clipped to the padded extent `size + pad_end` (PyTorch's rule for windows that run
/// past the padded input with `ceil_mode`). Returns `(start, end)` before clipping to the input.
fn window(
    o: usize,
    stride: usize,
    pad_start: usize,
    kernel: usize,
    size: usize,
    pad_end: usize,
) -> (isize, isize) {
    let start = (o * stride) as isize - pad_start as isize;
    let end = (start + kernel as isize).min((size + pad_end) as isize);
    (start, end)
}

/// Calls `f(plane, window)` for every output position of every `[H, W]` plane, where `window`
/// lists the in-input positions (clipped) and `padded` is the window's size within the padded
/// input.
fn pool<T: Scalar>(
    x: &Tensor<T>,
    p: &Pool2d,
    out_shape: &[usize],
    f: impl Fn(&[T], &[usize], usize) -> T,
) -> Tensor<T> {
    let (h, w) = (x.shape[2], x.shape[3]);
    let (oh, ow) = (out_shape[2], out_shape[3]);
    let [pt, pl, pb, pr] = p.padding;
    let mut data = Vec::with_capacity(out_shape.iter().product());
    let mut taps = Vec::new();
    for plane in x.data.chunks_exact(h * w) {
        for oy in 0..oh {
            let (y0, y1) = window(oy, p.stride[0], pt, p.kernel[0], h, pb);
            for ox in 0..ow {
                let (x0, x1) = window(ox, p.stride[1], pl, p.kernel[1], w, pr);
                let padded = ((y1 - y0).max(0) * (x1 - x0).max(0)) as usize;
                taps.clear();
                for iy in y0.max(0)..y1.min(h as isize) {
                    for ix in x0.max(0)..x1.min(w as isize) {
                        taps.push(iy as usize * w + ix as usize);
                    }
                }
                data.push(f(plane, &taps, padded));
            }
        }
    }
    Tensor {
        shape: out_shape.to_vec(),
        data,
    }
}

/// Max pooling; padding never wins (it is -infinity). NaN propagates. A window that covers no
/// input element at all (only possible with padding wider than the kernel) gives 0.
pub(super) fn max_pool<T: Scalar>(x: &Tensor<T>, p: &Pool2d, out_shape: &[usize]) -> Tensor<T> {
    pool(x, p, out_shape, |plane, taps, _| {
        let Some((&first, rest)) = taps.split_first() else {
            return T::ZERO;
        };
        let mut m = plane[first];
        for &t in rest {
            let v = plane[t];
            if v > m || v.is_nan() {
                m = v;
            }
            if m.is_nan() {
                break;
            }
        }
        m
    })
}

/// Average pooling. The divisor is the window size within the padded input (windows running
/// past it under `ceil_mode` are cut there) when `count_include_pad`, else the number of input
/// elements under the window. An empty divisor gives 0.
pub(super) fn avg_pool<T: Scalar>(x: &Tensor<T>, p: &Pool2d, out_shape: &[usize]) -> Tensor<T> {
    pool(x, p, out_shape, |plane, taps, padded| {
        let mut sum = T::ZERO;
        for &t in taps {
            sum += plane[t];
        }
        let divisor = if p.count_include_pad {
            padded
        } else {
            taps.len()
        };
        if divisor == 0 {
            T::ZERO
        } else {
            sum / T::from_f64(divisor as f64)
        }
    })
}

/// Mean over each `[H, W]` plane, to `[N, C, 1, 1]`.
pub(super) fn global_avg_pool<T: Scalar>(x: &Tensor<T>) -> Tensor<T> {
    let hw = x.shape[2] * x.shape[3];
    let count = T::from_f64(hw as f64);
    let data = x
        .data
        .chunks_exact(hw)
        .map(|plane| {
            let mut sum = T::ZERO;
            for &v in plane {
                sum += v;
            }
            sum / count
        })
        .collect();
    Tensor {
        shape: vec![x.shape[0], x.shape[1], 1, 1],
        data,
    }
}

/// Output channel `i` is input channel `indices[i]` (gather, slice and permute).
pub(super) fn select_channels<T: Scalar>(x: &Tensor<T>, indices: &[usize]) -> Tensor<T> {
    let (n, c) = (x.shape[0], x.shape[1]);
    let inner: usize = x.shape[2..].iter().product();
    let mut data = Vec::with_capacity(n * indices.len() * inner);
    for b in 0..n {
        for &i in indices {
            let at = (b * c + i) * inner;
            data.extend_from_slice(&x.data[at..at + inner]);
        }
    }
    let mut shape = x.shape.clone();
    shape[1] = indices.len();
    Tensor { shape, data }
}

/// Sets the channels (entries of axis 1) flagged in `flags` to zero.
pub(super) fn zero_channels<T: Scalar>(x: &mut Tensor<T>, flags: &[bool]) {
    let c = x.shape[1];
    let inner: usize = x.shape[2..].iter().product();
    for (i, plane) in x.data.chunks_exact_mut(inner).enumerate() {
        if flags[i % c] {
            plane.fill(T::ZERO);
        }
    }
}
