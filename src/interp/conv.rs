//! conv2d and linear: the two kernels written for speed (im2col + GEMM).

use super::{Scalar, Tensor};
use crate::ir::Conv2d;

/// A strided read-only matrix view.
#[derive(Clone, Copy)]
struct Mat<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    /// Row and column strides (non-negative).
    rs: usize,
    cs: usize,
}

impl<T> Mat<'_, T> {
    /// Whether every element the view reaches lies in `data`.
    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// `c = a b` (`beta` 0) or `c += a b` (`beta` 1); `c` is row-major `a.rows x b.cols`.
fn gemm<T: Scalar>(a: Mat<T>, b: Mat<T>, c: &mut [T], accumulate: bool) {
    assert_eq!(a.cols, b.rows, "gemm: inner dimensions differ");
    assert!(a.in_bounds() && b.in_bounds(), "gemm: view out of bounds");
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(c.len() >= m * n, "gemm: output too small");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(T::ZERO);
        }
        return;
    }
    let beta = if accumulate { T::ONE } else { T::ZERO };
    // SAFETY: the views were checked to stay inside their slices, `c` holds `m * n` elements
    // at row stride `n`, and `c` is a distinct `&mut` borrow so it aliases neither input.
    unsafe {
        T::gemm(
            m,
            k,
            n,
            T::ONE,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// The output positions `o` in `0..out` whose input coordinate `o * stride + offset - pad`
/// lies in `0..size`, as a half-open range.
fn valid_range(
    out: usize,
    stride: usize,
    offset: usize,
    pad: usize,
    size: usize,
) -> (usize, usize) {
    // o * stride + offset >= pad  and  o * stride + offset < size + pad
    let lo = pad.saturating_sub(offset).div_ceil(stride);
    let hi = if size + pad > offset {
        (size + pad - offset).div_ceil(stride)
    } else {
        0
    };
    (lo.min(out), hi.min(out).max(lo.min(out)))
}

/// 2-D convolution, weight `[O, C/groups, kh, kw]`, optional bias `[O]`, over `[N, C, H, W]`.
pub(super) fn conv2d<T: Scalar>(
    x: &Tensor<T>,
    w: &[T],
    wshape: &[usize],
    bias: Option<&[T]>,
    c: &Conv2d,
    out_shape: &[usize],
) -> Tensor<T> {
    let (n, cin, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let (cout, cg, kh, kw) = (wshape[0], wshape[1], wshape[2], wshape[3]);
    let (oh, ow) = (out_shape[2], out_shape[3]);
    let groups = c.groups;
    let og = cout / groups;
    let (hw, ohw) = (h * wd, oh * ow);
    let mut out = Tensor::zeros(out_shape);

    if cg == 1 && groups > 1 {
        depthwise(x, w, wshape, c, &mut out);
    } else {
        let pointwise = kh == 1 && kw == 1 && c.stride == [1, 1] && c.padding == [0; 4];
        let kdim = cg * kh * kw;
        let mut col = if pointwise {
            Vec::new()
        } else {
            vec![T::ZERO; kdim * ohw]
        };
        for b in 0..n {
            for g in 0..groups {
                let xg = &x.data[(b * cin + g * cg) * hw..(b * cin + (g + 1) * cg) * hw];
                let cols: &[T] = if pointwise {
                    xg
                } else {
                    im2col(xg, cg, [h, wd], [kh, kw], c, [oh, ow], &mut col);
                    &col
                };
                let wg = Mat {
                    data: &w[g * og * kdim..(g + 1) * og * kdim],
                    rows: og,
                    cols: kdim,
                    rs: kdim,
                    cs: 1,
                };
                let bmat = Mat {
                    data: cols,
                    rows: kdim,
                    cols: ohw,
                    rs: ohw,
                    cs: 1,
                };
                let at = (b * cout + g * og) * ohw;
                gemm(wg, bmat, &mut out.data[at..at + og * ohw], false);
            }
        }
    }
    if let Some(bias) = bias {
        for (i, plane) in out.data.chunks_exact_mut(ohw).enumerate() {
            let bv = bias[i % cout];
            plane.iter_mut().for_each(|v| *v += bv);
        }
    }
    out
}

/// Unfolds the windows of `x` (`cg` channels of `h x w`) into `col`, a `[cg*kh*kw, oh*ow]`
/// matrix whose row `(c, ki, kj)` holds the input under kernel tap `(ki, kj)` of channel `c`
/// at every output position (zero where the tap falls in padding).
fn im2col<T: Scalar>(
    x: &[T],
    cg: usize,
    [h, w]: [usize; 2],
    [kh, kw]: [usize; 2],
    c: &Conv2d,
    [oh, ow]: [usize; 2],
    col: &mut [T],
) {
    let [sh, sw] = c.stride;
    let [dh, dw] = c.dilation;
    let (pt, pl) = (c.padding[0], c.padding[1]);
    let ohw = oh * ow;
    for ci in 0..cg {
        let plane = &x[ci * h * w..(ci + 1) * h * w];
        for ki in 0..kh {
            let (ylo, yhi) = valid_range(oh, sh, ki * dh, pt, h);
            for kj in 0..kw {
                let (xlo, xhi) = valid_range(ow, sw, kj * dw, pl, w);
                let row = ((ci * kh + ki) * kw + kj) * ohw;
                let dst = &mut col[row..row + ohw];
                dst[..ylo * ow].fill(T::ZERO);
                dst[yhi * ow..].fill(T::ZERO);
                for oy in ylo..yhi {
                    let iy = oy * sh + ki * dh - pt;
                    let line = &mut dst[oy * ow..(oy + 1) * ow];
                    line[..xlo].fill(T::ZERO);
                    line[xhi..].fill(T::ZERO);
                    if xlo == xhi {
                        continue;
                    }
                    let ix0 = xlo * sw + kj * dw - pl;
                    let src = &plane[iy * w..(iy + 1) * w];
                    if sw == 1 {
                        line[xlo..xhi].copy_from_slice(&src[ix0..ix0 + (xhi - xlo)]);
                    } else {
                        for (k, v) in line[xlo..xhi].iter_mut().enumerate() {
                            *v = src[ix0 + k * sw];
                        }
                    }
                }
            }
        }
    }
}

/// Grouped conv with one input channel per group (depthwise and channel multipliers): a
/// direct loop, tap by tap. Output channel `o` reads input channel `o / (O / groups)`.
fn depthwise<T: Scalar>(x: &Tensor<T>, w: &[T], wshape: &[usize], c: &Conv2d, out: &mut Tensor<T>) {
    let (n, cin, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let (cout, kh, kw) = (wshape[0], wshape[2], wshape[3]);
    let (oh, ow) = (out.shape[2], out.shape[3]);
    let og = cout / c.groups;
    let [sh, sw] = c.stride;
    let [dh, dw] = c.dilation;
    let (pt, pl) = (c.padding[0], c.padding[1]);
    for b in 0..n {
        for o in 0..cout {
            let ci = o / og;
            let plane = &x.data[(b * cin + ci) * h * wd..(b * cin + ci + 1) * h * wd];
            let dst = &mut out.data[(b * cout + o) * oh * ow..(b * cout + o + 1) * oh * ow];
            for ki in 0..kh {
                let (ylo, yhi) = valid_range(oh, sh, ki * dh, pt, h);
                for kj in 0..kw {
                    let (xlo, xhi) = valid_range(ow, sw, kj * dw, pl, wd);
                    let wv = w[(o * kh + ki) * kw + kj];
                    for oy in ylo..yhi {
                        let iy = oy * sh + ki * dh - pt;
                        let src = &plane[iy * wd..(iy + 1) * wd];
                        for ox in xlo..xhi {
                            let ix = ox * sw + kj * dw - pl;
                            dst[oy * ow + ox] += wv * src[ix];
                        }
                    }
                }
            }
        }
    }
}

/// `y = x W^T + b` for `x [N, F]`, `W [O, F]`, `b [O]`.
pub(super) fn linear<T: Scalar>(
    x: &Tensor<T>,
    w: &[T],
    wshape: &[usize],
    bias: Option<&[T]>,
) -> Tensor<T> {
    let (n, f) = (x.shape[0], x.shape[1]);
    let o = wshape[0];
    let mut out = Tensor::zeros(&[n, o]);
    let a = Mat {
        data: &x.data,
        rows: n,
        cols: f,
        rs: f,
        cs: 1,
    };
    let wt = Mat {
        data: w,
        rows: f,
        cols: o,
        rs: 1,
        cs: f,
    };
    gemm(a, wt, &mut out.data, false);
    if let Some(bias) = bias {
        for row in out.data.chunks_exact_mut(o) {
            row.iter_mut().zip(bias).for_each(|(v, &b)| *v += b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_range_matches_brute_force() {
        for out in 0..6 {
            for stride in 1..4 {
                for offset in 0..5 {
                    for pad in 0..4 {
                        for size in 1..6 {
                            let valid: Vec<usize> = (0..out)
                                .filter(|&o| {
                                    let i = (o * stride + offset) as isize - pad as isize;
                                    (0..size as isize).contains(&i)
                                })
                                .collect();
                            let (lo, hi) = valid_range(out, stride, offset, pad, size);
                            assert_eq!((lo..hi).collect::<Vec<_>>(), valid);
                        }
                    }
                }
            }
        }
    }
}
