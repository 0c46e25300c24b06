//! Plain numeric data shared by every phase: [`Tensor`], the [`Scalar`] types the interpreter
//! computes in (`f32`, `f64`), and the seeded [`SplitMix64`] generator behind random weights,
//! inputs and test instances.
//!
//! Invariant: a [`Tensor`] is row-major and `data.len()` equals the product of `shape` (the
//! constructors check it; code that builds one by hand keeps it). This module imports nothing
//! else from the crate, so every other module may import it.

use std::fmt;
use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub};

/// A number type the interpreter computes in: `f32` or `f64`.
pub trait Scalar:
    Copy
    + Default
    + PartialOrd
    + fmt::Debug
    + fmt::Display
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
{
    /// `"f32"` or `"f64"`.
    const NAME: &'static str;
    /// Bytes per element.
    const BYTES: usize;
    const ZERO: Self;
    const ONE: Self;

    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn sqrt(self) -> Self;
    fn is_nan(self) -> bool;
    /// Appends the little-endian bytes.
    fn write_le(self, out: &mut Vec<u8>);

    /// `C = alpha * A B + beta * C` for strided matrices (`A` is `m x k`, `B` is `k x n`).
    ///
    /// # Safety
    /// Every element the strides reach must lie inside the allocations behind the pointers
    /// (see `matrixmultiply::sgemm`); `C` must not alias `A` or `B`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
}

macro_rules! scalar_impl {
    ($t:ty, $name:literal, $gemm:path) => {
        impl Scalar for $t {
            const NAME: &'static str = $name;
            const BYTES: usize = std::mem::size_of::<$t>();
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;

            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            unsafe fn gemm(
                m: usize,
                k: usize,
                n: usize,
                alpha: Self,
                a: *const Self,
                rsa: isize,
                csa: isize,
                b: *const Self,
                rsb: isize,
                csb: isize,
                beta: Self,
                c: *mut Self,
                rsc: isize,
                csc: isize,
            ) {
                // SAFETY: forwarded from the caller's contract.
                unsafe { $gemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) }
            }
        }
    };
}

scalar_impl!(f32, "f32", matrixmultiply::sgemm);
scalar_impl!(f64, "f64", matrixmultiply::dgemm);

/// A dense row-major tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor<T> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

impl<T: Scalar> Tensor<T> {
    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        Tensor {
            shape: shape.to_vec(),
            data: vec![T::ZERO; shape.iter().product()],
        }
    }

    /// A tensor from `f64` values (rounded for `f32`); panics if `data` does not fit `shape`.
    pub fn from_f64(shape: &[usize], data: &[f64]) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "tensor data does not fit shape {shape:?}"
        );
        Tensor {
            shape: shape.to_vec(),
            data: data.iter().map(|&v| T::from_f64(v)).collect(),
        }
    }

    /// The values as `f64`.
    pub fn to_f64(&self) -> Tensor<f64> {
        Tensor {
            shape: self.shape.clone(),
            data: self.data.iter().map(|v| v.to_f64()).collect(),
        }
    }
}

/// A SplitMix64 generator (Steele, Lea and Flood, 2014): 64 bits of state, advanced by the
/// golden-ratio increment and finished by a fixed mixer.
///
/// The streams are part of the tool's contract: [`SplitMix64::for_name`] with the same seed
/// and name gives the same numbers in every version.
///
/// ```
/// use nnirc::tensor::SplitMix64;
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
