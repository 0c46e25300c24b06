//! Verification: the optimized program must compute what the masked program computes.
//!
//! Both programs run in the reference interpreter on the same seeded random inputs, in `f64`
//! (the exact reference) and in `f32` (what deployed models compute). The deviation of one
//! output is relative to that output's largest magnitude, so tiny outputs do not dominate; a
//! NaN or infinity on one side only is an infinite deviation (never skipped), and two equal
//! non-finite values agree. [`Verification::passed`] is the one tolerance definition.

use crate::interp;
use crate::ir::Program;
use crate::tensor::Scalar;
use crate::weights::Weights;
use serde::Serialize;

/// The largest `f64` deviation that passes: the two programs sum the same products in a
/// different order, which costs a few ulps per layer.
pub const F64_TOLERANCE: f64 = 1e-10;
/// The largest `f32` deviation that passes.
pub const F32_TOLERANCE: f64 = 1e-4;

/// The largest difference between two programs' outputs on the same seeded inputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Deviation {
    pub max_abs: f64,
    /// Largest `|a - b| / max(max |a| over the output, 1e-30)` over every output element.
    pub max_rel: f64,
}

/// Verification result: how far the optimized program is from the masked program.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Verification {
    pub f64_max_abs: f64,
    pub f64_max_rel: f64,
    pub f32_max_abs: f64,
    pub f32_max_rel: f64,
}

impl Verification {
    /// Whether both precisions are within tolerance (false for NaN deviations).
    pub fn passed(&self) -> bool {
        self.f64_max_rel <= F64_TOLERANCE && self.f32_max_rel <= F32_TOLERANCE
    }
}

/// Runs `original` (the masked program) and `optimized` on the same seeded random inputs in
/// precision `T` and returns how far their outputs differ.
pub fn verify<T: Scalar>(
    original: &Program,
    original_weights: &Weights,
    optimized: &Program,
    optimized_weights: &Weights,
    seed: u64,
) -> Result<Deviation, String> {
    let inputs = interp::random_inputs::<T>(original, seed);
    let run = |p: &Program, w: &Weights| interp::run(p, w, &inputs).map_err(|e| e.to_string());
    let a = run(original, original_weights)?;
    let b = run(optimized, optimized_weights)?;
    let mut dev = Deviation {
        max_abs: 0.0,
        max_rel: 0.0,
    };
    for (x, y) in a.iter().zip(&b) {
        if x.shape != y.shape {
            return Err(format!(
                "output shapes differ: {:?} vs {:?}",
                x.shape, y.shape
            ));
        }
        let scale = x
            .data
            .iter()
            .map(|v| v.to_f64().abs())
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max)
            .max(1e-30);
        for (&u, &v) in x.data.iter().zip(&y.data) {
            let d = difference(u.to_f64(), v.to_f64());
            dev.max_abs = dev.max_abs.max(d);
            dev.max_rel = dev.max_rel.max(d / scale);
        }
    }
    Ok(dev)
}

/// `|a - b|`, with equal values (infinities and NaNs included) at 0 and any other
/// disagreement involving a non-finite value at infinity.
fn difference(a: f64, b: f64) -> f64 {
    if a == b || (a.is_nan() && b.is_nan()) {
        0.0
    } else if a.is_finite() && b.is_finite() {
        (a - b).abs()
    } else {
        f64::INFINITY
    }
}

/// Verifies in `f64` and `f32` with inputs from `seed`.
pub fn verification(
    original: &Program,
    original_weights: &Weights,
    optimized: &Program,
    optimized_weights: &Weights,
    seed: u64,
) -> Result<Verification, String> {
    let d64 = verify::<f64>(
        original,
        original_weights,
        optimized,
        optimized_weights,
        seed,
    )?;
    let d32 = verify::<f32>(
        original,
        original_weights,
        optimized,
        optimized_weights,
        seed,
    )?;
    Ok(Verification {
        f64_max_abs: d64.max_abs,
        f64_max_rel: d64.max_rel,
        f32_max_abs: d32.max_abs,
        f32_max_rel: d32.max_rel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_never_hide() {
        assert_eq!(difference(f64::NAN, f64::NAN), 0.0);
        assert_eq!(difference(f64::INFINITY, f64::INFINITY), 0.0);
        assert_eq!(difference(f64::NAN, 1.0), f64::INFINITY);
        assert_eq!(difference(2.0, f64::NEG_INFINITY), f64::INFINITY);
        assert_eq!(difference(1.0, 3.5), 2.5);
        let nan = Verification {
            f64_max_abs: f64::NAN,
            f64_max_rel: f64::NAN,
            f32_max_abs: 0.0,
            f32_max_rel: 0.0,
        };
        assert!(!nan.passed());
    }
}
