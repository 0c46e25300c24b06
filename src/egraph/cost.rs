//! [`Cost`]: what a read plan costs, in the unit of its [`CostModel`](super::CostModel).
//!
//! Invariant: arithmetic on costs never overflows and never wraps; it saturates at
//! [`Cost::MAX`], which stands for "unaffordable" (an op a model cannot price, or a sum too large
//! to matter). Costs are totally ordered, so extraction can compare them without `NaN` cases.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign};

/// A saturating, totally ordered cost.
///
/// The unit is the cost model's: byte-equivalents for `views` and `graph`, picoseconds for
/// `latency`. Only costs from the same model are comparable.
///
/// ```
/// use nnirc::egraph::Cost;
/// assert_eq!(Cost::new(2) + Cost::new(3), Cost::new(5));
/// assert_eq!(Cost::MAX + Cost::new(1), Cost::MAX);
/// assert_eq!(Cost::new(7).times(3), Cost::new(21));
/// assert_eq!(Cost::from_f64(2.6), Cost::new(3));
/// assert!(Cost::ZERO < Cost::new(1));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cost(u64);

impl Cost {
    pub const ZERO: Cost = Cost(0);
    /// Unaffordable; every sum that reaches it stays there.
    pub const MAX: Cost = Cost(u64::MAX);

    pub const fn new(units: u64) -> Cost {
        Cost(units)
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    /// `units` rounded to the nearest integer: negative values and `-0.0` are free, `NaN` and
    /// values beyond `u64::MAX` are [`Cost::MAX`].
    pub fn from_f64(units: f64) -> Cost {
        if units.is_nan() {
            return Cost::MAX;
        }
        if units <= 0.0 {
            return Cost::ZERO;
        }
        let rounded = units.round();
        // `u64::MAX as f64` rounds up to 2^64, so `>=` catches every value that does not fit.
        if rounded >= u64::MAX as f64 {
            Cost::MAX
        } else {
            Cost(rounded as u64)
        }
    }

    /// `n` times this cost, saturating.
    pub fn times(self, n: u64) -> Cost {
        Cost(self.0.saturating_mul(n))
    }

    /// `units * numerator / denominator`, rounded down, saturating; a zero denominator is
    /// [`Cost::MAX`] unless the product is zero.
    pub fn ratio(units: u64, numerator: u64, denominator: u64) -> Cost {
        let product = units as u128 * numerator as u128;
        if product == 0 {
            return Cost::ZERO;
        }
        if denominator == 0 {
            return Cost::MAX;
        }
        Cost(u64::try_from(product / denominator as u128).unwrap_or(u64::MAX))
    }
}

impl Add for Cost {
    type Output = Cost;
    fn add(self, other: Cost) -> Cost {
        Cost(self.0.saturating_add(other.0))
    }
}

impl AddAssign for Cost {
    fn add_assign(&mut self, other: Cost) {
        *self = *self + other;
    }
}

impl Sum for Cost {
    fn sum<I: Iterator<Item = Cost>>(iter: I) -> Cost {
        iter.fold(Cost::ZERO, Add::add)
    }
}

impl<'a> Sum<&'a Cost> for Cost {
    fn sum<I: Iterator<Item = &'a Cost>>(iter: I) -> Cost {
        iter.copied().sum()
    }
}

impl fmt::Display for Cost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Cost::MAX {
            f.write_str("unaffordable")
        } else {
            write!(f, "{}", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cost;

    #[test]
    fn addition_saturates() {
        assert_eq!(Cost::new(u64::MAX - 1) + Cost::new(5), Cost::MAX);
        let mut c = Cost::MAX;
        c += Cost::MAX;
        assert_eq!(c, Cost::MAX);
        let total: Cost = [Cost::MAX, Cost::new(1), Cost::new(2)].iter().sum();
        assert_eq!(total, Cost::MAX);
    }

    #[test]
    fn multiplication_saturates() {
        assert_eq!(Cost::new(u64::MAX / 2 + 1).times(2), Cost::MAX);
        assert_eq!(Cost::new(3).times(0), Cost::ZERO);
        assert_eq!(Cost::ratio(u64::MAX, u64::MAX, 1), Cost::MAX);
        assert_eq!(Cost::ratio(u64::MAX, 1000, 1000), Cost::new(u64::MAX));
        assert_eq!(Cost::ratio(1001, 400, 1000), Cost::new(400));
        assert_eq!(Cost::ratio(5, 1, 0), Cost::MAX);
        assert_eq!(Cost::ratio(0, 1, 0), Cost::ZERO);
    }

    #[test]
    fn conversion_from_f64_clamps() {
        assert_eq!(Cost::from_f64(f64::NAN), Cost::MAX);
        assert_eq!(Cost::from_f64(f64::INFINITY), Cost::MAX);
        assert_eq!(Cost::from_f64(1e30), Cost::MAX);
        assert_eq!(Cost::from_f64(-3.0), Cost::ZERO);
        assert_eq!(Cost::from_f64(f64::NEG_INFINITY), Cost::ZERO);
        assert_eq!(Cost::from_f64(0.49), Cost::ZERO);
        assert_eq!(Cost::from_f64(0.5), Cost::new(1));
        assert_eq!(Cost::from_f64(1e18), Cost::new(1_000_000_000_000_000_000));
    }

    #[test]
    fn ordering_is_total_and_max_is_largest() {
        let mut costs = vec![Cost::MAX, Cost::new(3), Cost::ZERO, Cost::new(u64::MAX - 1)];
        costs.sort();
        assert_eq!(
            costs,
            vec![Cost::ZERO, Cost::new(3), Cost::new(u64::MAX - 1), Cost::MAX]
        );
        assert_eq!(Cost::default(), Cost::ZERO);
        assert_eq!(Cost::MAX.to_string(), "unaffordable");
        assert_eq!(Cost::new(42).to_string(), "42");
    }
}
