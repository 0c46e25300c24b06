//! Ordering solver: a channel order for one segment that makes as many consumers as possible
//! read a contiguous range.
//!
//! Input: an [`Instance`]: `channels` live channels `0..channels` and the consumers that read
//! them, each keeping a set of channels with a weight (the bytes it copies when its set is not
//! contiguous) and an [`Anchor`] (concatenation: its part of this block must be a prefix or a
//! suffix). Output: a [`Solution`]: a permutation of `0..channels`, which consumers are
//! contiguous in it (always as [`is_contiguous`] says), the weight of the others, and whether
//! the order is proven optimal. This is pure combinatorics; the IR is not involved.
//!
//! Two solvers ([`SolverKind`]):
//! - `Exact` (default): the consecutive-ones test of [`c1p`] inside a branch and bound over
//!   consumer subsets; exact up to [`Limits::max_exact_consumers`] and within the budgets,
//!   with a deterministic greedy-plus-local-search fallback beyond. It finds a zero-copy order
//!   whenever one exists, at any size.
//! - `Paper`: the published UPSCALE heuristic (a maximum-reward chordless path in a consumer
//!   overlap graph), kept for comparison. See [`paper`].
//!
//! Determinism: the result depends only on the instance and the limits, except when the
//! (safety-net) time budget stops a search; [`SolveStats::stop`] says what stopped it.
//!
//! ```
//! use nnirc::solver::{solve, Anchor, ConsumerSet, Instance, Limits, SolverKind};
//! let set = |channels: &[usize], weight| ConsumerSet {
//!     channels: channels.to_vec(),
//!     weight,
//!     anchor: Anchor::None,
//! };
//! let instance = Instance {
//!     channels: 4,
//!     consumers: vec![set(&[0, 2], 10), set(&[1, 3], 10), set(&[0, 3], 5)],
//! };
//! let solution = solve(&instance, SolverKind::Exact, &Limits::default());
//! assert_eq!(solution.copy_weight, 0);
//! assert!(solution.optimal);
//! assert_eq!(solution.order, vec![1, 3, 0, 2]);
//! ```

pub mod c1p;
mod exact;
pub mod paper;
pub mod random;

use std::time::{Duration, Instant};

/// Where a consumer's set must sit, besides being contiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Anchor {
    /// Anywhere.
    #[default]
    None,
    /// Including the first position of the order.
    Start,
    /// Including the last position of the order.
    End,
}

/// One consumer: the channels it keeps, what a copy costs, and its anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSet {
    /// Kept channels, ascending, each `< Instance::channels`. (Unsorted or repeated channels
    /// are tolerated and read as a set.)
    pub channels: Vec<usize>,
    /// Cost when the set is not contiguous (bytes copied).
    pub weight: u64,
    pub anchor: Anchor,
}

/// A segment: live channels `0..channels` and their consumers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Instance {
    pub channels: usize,
    pub consumers: Vec<ConsumerSet>,
}

/// Search limits. The node budget is the primary, deterministic limit; the time budget is a
/// safety net.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// `Exact` runs its branch and bound only when at most this many distinct non-trivial
    /// consumers (sets that are neither the whole segment nor an unanchored single channel;
    /// equal sets with equal anchors count once) remain; beyond, the heuristic answers.
    pub max_exact_consumers: usize,
    pub time_budget: Duration,
    /// Search nodes: branch-and-bound calls and local-search steps (`Exact`), path
    /// extensions (`Paper`). About 1 to 10 us each in a release build.
    pub node_budget: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_exact_consumers: 25,
            time_budget: Duration::from_secs(1),
            node_budget: 100_000,
        }
    }
}

/// Which solver [`solve`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SolverKind {
    #[default]
    Exact,
    Paper,
}

impl SolverKind {
    pub fn name(self) -> &'static str {
        match self {
            SolverKind::Exact => "exact",
            SolverKind::Paper => "paper",
        }
    }
}

/// Why a search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// It ran to completion (for `Exact`: the order is optimal).
    Complete,
    /// [`Limits::node_budget`] ran out; the best order found so far is returned.
    NodeBudget,
    /// [`Limits::time_budget`] ran out (the result then depends on timing).
    TimeBudget,
    /// More consumers than [`Limits::max_exact_consumers`]: heuristic only.
    ConsumerLimit,
}

/// What a search did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SolveStats {
    pub nodes: u64,
    pub elapsed: Duration,
    pub stop: StopReason,
}

/// An order and what it achieves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Solution {
    /// A permutation of `0..channels`: `order[p]` is the channel at position `p`.
    pub order: Vec<usize>,
    /// Per consumer, in instance order: [`is_contiguous`] in `order`.
    pub contiguous: Vec<bool>,
    /// Total weight of the consumers that are not contiguous (saturating).
    pub copy_weight: u64,
    /// The copy weight is proven minimal.
    pub optimal: bool,
    pub stats: SolveStats,
}

/// Runs the chosen solver on `instance`.
///
/// Panics if a consumer names a channel `>= instance.channels` (a caller bug).
pub fn solve(instance: &Instance, kind: SolverKind, limits: &Limits) -> Solution {
    for (j, c) in instance.consumers.iter().enumerate() {
        if let Some(&bad) = c.channels.iter().find(|&&ch| ch >= instance.channels) {
            panic!(
                "consumer {j} keeps channel {bad}, but the segment has {} channels",
                instance.channels
            );
        }
    }
    let mut budget = Budget::new(limits);
    let (order, proven) = match kind {
        SolverKind::Exact => exact::solve(instance, limits, &mut budget),
        SolverKind::Paper => (paper::order(instance, &mut budget), false),
    };
    finish(instance, order, proven, budget)
}

/// Scores `order`: contiguity flags and copy weight, plus the stats.
fn finish(instance: &Instance, order: Vec<usize>, proven: bool, budget: Budget) -> Solution {
    debug_assert!(is_permutation(&order, instance.channels));
    let contiguous: Vec<bool> = instance
        .consumers
        .iter()
        .map(|c| is_contiguous(&order, &c.channels, c.anchor))
        .collect();
    let copy_weight = instance
        .consumers
        .iter()
        .zip(&contiguous)
        .filter(|(_, &ok)| !ok)
        .fold(0u64, |acc, (c, _)| acc.saturating_add(c.weight));
    Solution {
        order,
        contiguous,
        copy_weight,
        optimal: proven || copy_weight == 0,
        stats: SolveStats {
            nodes: budget.nodes,
            elapsed: budget.start.elapsed(),
            stop: budget.stop.unwrap_or(StopReason::Complete),
        },
    }
}

fn is_permutation(order: &[usize], n: usize) -> bool {
    let mut seen = vec![false; n];
    order.len() == n
        && order
            .iter()
            .all(|&c| c < n && !std::mem::replace(&mut seen[c], true))
}

/// The reference check: whether `set` occupies consecutive positions of `order` (and, per
/// `anchor`, includes its first or last position). An empty set is contiguous; a channel of
/// `set` missing from `order` makes it not contiguous.
///
/// ```
/// use nnirc::solver::{is_contiguous, Anchor};
/// let order = [3, 1, 0, 2];
/// assert!(is_contiguous(&order, &[0, 1], Anchor::None));
/// assert!(!is_contiguous(&order, &[0, 1], Anchor::Start));
/// assert!(is_contiguous(&order, &[0, 2], Anchor::End));
/// assert!(!is_contiguous(&order, &[2, 3], Anchor::None));
/// ```
pub fn is_contiguous(order: &[usize], set: &[usize], anchor: Anchor) -> bool {
    let mut set = set.to_vec();
    set.sort_unstable();
    set.dedup();
    if set.is_empty() {
        return true;
    }
    let mut lo = usize::MAX;
    let mut hi = 0;
    let mut found = 0;
    for (p, ch) in order.iter().enumerate() {
        if set.binary_search(ch).is_ok() {
            lo = lo.min(p);
            hi = hi.max(p);
            found += 1;
        }
    }
    found == set.len()
        && hi - lo + 1 == set.len()
        && match anchor {
            Anchor::None => true,
            Anchor::Start => lo == 0,
            Anchor::End => hi + 1 == order.len(),
        }
}

/// Node and time accounting shared by the solvers.
#[derive(Debug)]
pub(crate) struct Budget {
    nodes: u64,
    node_budget: u64,
    start: Instant,
    time_budget: Duration,
    stop: Option<StopReason>,
}

impl Budget {
    fn new(limits: &Limits) -> Budget {
        Budget {
            nodes: 0,
            node_budget: limits.node_budget,
            start: Instant::now(),
            time_budget: limits.time_budget,
            stop: None,
        }
    }

    /// Counts one node; false once a budget has run out (and from then on).
    fn tick(&mut self) -> bool {
        if self.stop.is_some() {
            return false;
        }
        if self.nodes >= self.node_budget {
            self.stop = Some(StopReason::NodeBudget);
            return false;
        }
        self.nodes += 1;
        if self.nodes.is_multiple_of(256) && self.start.elapsed() >= self.time_budget {
            self.stop = Some(StopReason::TimeBudget);
            return false;
        }
        true
    }

    fn exhausted(&self) -> bool {
        self.stop.is_some()
    }

    /// Records a stop that is not a budget (e.g. the consumer limit), unless one happened.
    fn note(&mut self, reason: StopReason) {
        self.stop.get_or_insert(reason);
    }
}
