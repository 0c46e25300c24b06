//! The group (multiple-choice) knapsack behind `--method sp-lamp`: pure, on its own request
//! types, knowing nothing of the IR.
//!
//! Input: classes (one per coupled channel group), each with options (kept widths) and their
//! values; cost terms (one per node of the model), each depending on the options of a few
//! classes; a budget. Output: one option per class, maximising the total value subject to the
//! total cost being within the budget.
//!
//! **Exact part.** With every term depending on one class only, the problem is the classical
//! multiple-choice knapsack, solved exactly by [`mckp`]: a dynamic programme over the budget
//! cut into `buckets` equal steps, every cost rounded *up* to a whole number of steps. A
//! solution of the rounded problem is therefore always within the real budget; the price is
//! that a real solution with less than `classes * step` of slack may be missed.
//!
//! **Coupling.** A conv's latency depends on its own output width and on its input width,
//! which is another class's choice (the previous group's; several after a concat). [`solve`]
//! handles this by a *fixed point*, as HALP does: each term is owned by its first class; the
//! other classes it reads are frozen at the current choice, the exact MCKP is solved, the
//! choice is updated and the solve repeated. Every candidate is checked against the real
//! coupled cost; one that overshoots the budget tightens the budget given to the next solve by
//! its overshoot. The best candidate that fits is then improved by local search under the
//! real cost ([`solve`]'s `polish`: moves of one class, or of two classes that share a term,
//! which the frozen widths hide from the MCKP). Chains could be solved exactly by a DP carrying the previous width; real
//! models are not chains (residual adds, concats), so this is not done. The gap to brute
//! force is measured in the tests below.
//!
//! Invariants: the result's real cost (with coupling) never exceeds the budget; the result is
//! a pure function of the request (no hashing order, ties broken by index).

/// A multiple-choice knapsack with coupled costs.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// `values[c][k]`: the value of option `k` of class `c`. Option 0 should be the cheapest
    /// (the narrowest width): it is the last resort when nothing better fits.
    pub values: Vec<Vec<f64>>,
    /// For each cost term, the classes its cost depends on; the first is its owner. A term
    /// with no class is a constant.
    pub terms: Vec<Vec<usize>>,
    /// The most total cost allowed.
    pub budget: f64,
}

/// How hard [`solve`] works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Budget steps of the DP (more: closer to the real optimum, slower).
    pub buckets: usize,
    /// Most fixed-point rounds.
    pub rounds: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            buckets: 10_000,
            rounds: 16,
        }
    }
}

/// What [`solve`] chose.
#[derive(Debug, Clone, PartialEq)]
pub struct Solution {
    /// The option of each class.
    pub choice: Vec<usize>,
    /// Total value.
    pub value: f64,
    /// Total real cost (coupling included), at most the budget.
    pub cost: f64,
    /// Fixed-point rounds run.
    pub rounds: usize,
    /// Whether the last round reproduced its input choice (a fixed point).
    pub converged: bool,
}

/// Why [`solve`] found nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum KnapsackError {
    /// The request is malformed (no options, a class out of range, a value or cost not finite).
    Invalid(String),
    /// Even option 0 of every class costs more than the budget.
    BudgetTooSmall { smallest: f64, budget: f64 },
}

impl std::fmt::Display for KnapsackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KnapsackError::Invalid(m) => f.write_str(m),
            KnapsackError::BudgetTooSmall { smallest, budget } => write!(
                f,
                "the budget {budget:.4} is below the smallest reachable cost {smallest:.4}"
            ),
        }
    }
}

impl std::error::Error for KnapsackError {}

/// Exact multiple-choice knapsack over costs rounded up to `budget / buckets` steps: one
/// option per class maximising the total value with `sum of rounded costs <= buckets` (so the
/// real total is at most `budget`). `None` when no choice fits. Ties: the lower rounded cost,
/// then the lower option index, class by class.
///
/// ```
/// use nnirc::prune::knapsack::mckp;
/// let costs = [vec![1.0, 2.0, 4.0], vec![1.0, 3.0]];
/// let values = [vec![1.0, 2.0, 3.0], vec![1.0, 5.0]];
/// assert_eq!(mckp(&costs, &values, 5.0, 100), Some(vec![1, 1]));
/// assert_eq!(mckp(&costs, &values, 1.5, 100), None);
/// ```
pub fn mckp(
    costs: &[Vec<f64>],
    values: &[Vec<f64>],
    budget: f64,
    buckets: usize,
) -> Option<Vec<usize>> {
    if budget.is_nan() || budget < 0.0 || buckets == 0 {
        return None;
    }
    let w = buckets;
    let step = budget / w as f64;
    let round_up = |c: f64| -> Option<usize> {
        if c <= 0.0 {
            return Some(0);
        }
        if step <= 0.0 {
            return None;
        }
        let mut r = (c / step).ceil();
        if r * step < c {
            r += 1.0;
        }
        (r <= w as f64).then_some(r as usize)
    };
    let rounded: Vec<Vec<Option<usize>>> = costs
        .iter()
        .map(|class| class.iter().map(|&c| round_up(c)).collect())
        .collect();
    let mut dp = vec![f64::NEG_INFINITY; w + 1];
    dp[0] = 0.0;
    let mut chosen: Vec<Vec<u16>> = Vec::with_capacity(costs.len());
    for (class, vals) in rounded.iter().zip(values) {
        let mut next = vec![f64::NEG_INFINITY; w + 1];
        let mut pick = vec![u16::MAX; w + 1];
        for (j, &here) in dp.iter().enumerate() {
            if here == f64::NEG_INFINITY {
                continue;
            }
            for (k, (r, v)) in class.iter().zip(vals).enumerate() {
                let Some(r) = r else { continue };
                let nj = j + r;
                if nj <= w && here + v > next[nj] {
                    next[nj] = here + v;
                    pick[nj] = k as u16;
                }
            }
        }
        dp = next;
        chosen.push(pick);
    }
    let mut best: Option<usize> = None;
    for j in 0..=w {
        if dp[j] > f64::NEG_INFINITY && best.is_none_or(|b| dp[j] > dp[b]) {
            best = Some(j);
        }
    }
    let mut j = best?;
    let mut choice = vec![0; costs.len()];
    for c in (0..costs.len()).rev() {
        let k = chosen[c][j] as usize;
        choice[c] = k;
        j -= rounded[c][k].expect("a chosen option has a rounded cost");
    }
    Some(choice)
}

/// Solves a coupled multiple-choice knapsack by a fixed point of exact MCKP solves (module
/// docs). `cost(term, choice)` is the real cost of `term` when every class `c` takes option
/// `choice[c]`; it must only read the classes the term lists.
pub fn solve(
    problem: &Problem,
    settings: &Settings,
    cost: &dyn Fn(usize, &[usize]) -> f64,
) -> Result<Solution, KnapsackError> {
    let classes = problem.values.len();
    if !problem.budget.is_finite() || problem.budget < 0.0 {
        return Err(KnapsackError::Invalid(format!(
            "the budget {} is not a finite non-negative number",
            problem.budget
        )));
    }
    for (c, vals) in problem.values.iter().enumerate() {
        if vals.is_empty() || vals.len() > u16::MAX as usize {
            return Err(KnapsackError::Invalid(format!(
                "class {c} has {} options (1 to {} allowed)",
                vals.len(),
                u16::MAX
            )));
        }
        if vals.iter().any(|v| !v.is_finite()) {
            return Err(KnapsackError::Invalid(format!(
                "class {c} has a value that is not finite"
            )));
        }
    }
    let mut owned: Vec<Vec<usize>> = vec![Vec::new(); classes];
    let mut constants = Vec::new();
    for (t, deps) in problem.terms.iter().enumerate() {
        if let Some(&bad) = deps.iter().find(|&&c| c >= classes) {
            return Err(KnapsackError::Invalid(format!(
                "term {t} depends on class {bad} of {classes}"
            )));
        }
        match deps.first() {
            Some(&owner) => owned[owner].push(t),
            None => constants.push(t),
        }
    }
    let total = |choice: &[usize]| -> Result<f64, KnapsackError> {
        let mut sum = 0.0;
        for t in 0..problem.terms.len() {
            let c = cost(t, choice);
            if !c.is_finite() {
                return Err(KnapsackError::Invalid(format!(
                    "term {t} has a cost that is not finite ({c})"
                )));
            }
            sum += c;
        }
        Ok(sum)
    };
    let value = |choice: &[usize]| -> f64 {
        choice
            .iter()
            .enumerate()
            .map(|(c, &k)| problem.values[c][k])
            .sum()
    };
    let fixed: f64 = constants.iter().map(|&t| cost(t, &[])).sum();
    // Start from the most valuable option of each class (the full width).
    let mut choice: Vec<usize> = problem
        .values
        .iter()
        .map(|vals| {
            (0..vals.len())
                .max_by(|&a, &b| vals[a].total_cmp(&vals[b]).then(a.cmp(&b)))
                .expect("checked non-empty")
        })
        .collect();
    let mut effective = problem.budget;
    let mut best: Option<Solution> = None;
    let mut rounds = 0;
    let mut converged = false;
    let mut scratch = choice.clone();
    while rounds < settings.rounds {
        rounds += 1;
        let costs: Vec<Vec<f64>> = (0..classes)
            .map(|c| {
                (0..problem.values[c].len())
                    .map(|k| {
                        scratch.copy_from_slice(&choice);
                        scratch[c] = k;
                        owned[c].iter().map(|&t| cost(t, &scratch)).sum::<f64>()
                    })
                    .collect()
            })
            .collect();
        if costs.iter().flatten().any(|c| !c.is_finite()) {
            return Err(KnapsackError::Invalid(
                "a term has a cost that is not finite".to_string(),
            ));
        }
        let Some(next) = mckp(&costs, &problem.values, effective - fixed, settings.buckets) else {
            break;
        };
        let real = total(&next)?;
        if real <= problem.budget {
            let v = value(&next);
            if best
                .as_ref()
                .is_none_or(|b| v > b.value || (v == b.value && real < b.cost))
            {
                best = Some(Solution {
                    choice: next.clone(),
                    value: v,
                    cost: real,
                    rounds,
                    converged: false,
                });
            }
            if next == choice {
                converged = true;
                break;
            }
        } else {
            effective -= real - problem.budget;
        }
        choice = next;
    }
    let start = match best {
        Some(b) => b.choice,
        None => {
            let smallest = vec![0; classes];
            let real = total(&smallest)?;
            if real > problem.budget {
                return Err(KnapsackError::BudgetTooSmall {
                    smallest: real,
                    budget: problem.budget,
                });
            }
            smallest
        }
    };
    let polished = polish(problem, cost, start.clone());
    // Summing in another order could land a hair over the budget: keep the start then.
    let choice = if total(&polished)? <= problem.budget {
        polished
    } else {
        start
    };
    let real = total(&choice)?;
    Ok(Solution {
        value: value(&choice),
        choice,
        cost: real,
        rounds,
        converged,
    })
}

/// A local-search move: its value gain, its cost change, and the (class, option) it sets.
type Move = (f64, f64, Vec<(usize, usize)>);

/// Local search on a feasible choice, under the real (coupled) cost: the best move that
/// raises the value and stays within the budget, repeated while there is one. A move changes
/// one class, or two classes that share a term (a conv and the group it reads: the moves the
/// fixed point cannot see, since it freezes one of them). Only the terms a move touches are
/// re-costed. The value never drops, so an exact MCKP optimum is kept.
/// The cost terms that depend on any class a move changes, each once, ascending.
fn touched_terms(moves: &[(usize, usize)], terms_of: &[Vec<usize>]) -> Vec<usize> {
    let mut touched: Vec<usize> = moves
        .iter()
        .flat_map(|&(c, _)| terms_of[c].iter().copied())
        .collect();
    touched.sort_unstable();
    touched.dedup();
    touched
}

fn polish(
    problem: &Problem,
    cost: &dyn Fn(usize, &[usize]) -> f64,
    mut choice: Vec<usize>,
) -> Vec<usize> {
    let classes = problem.values.len();
    let mut terms_of: Vec<Vec<usize>> = vec![Vec::new(); classes];
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    for (t, deps) in problem.terms.iter().enumerate() {
        for (i, &a) in deps.iter().enumerate() {
            if !terms_of[a].contains(&t) {
                terms_of[a].push(t);
            }
            for &b in &deps[i + 1..] {
                let pair = (a.min(b), a.max(b));
                if a != b && !pairs.contains(&pair) {
                    pairs.push(pair);
                }
            }
        }
    }
    pairs.sort_unstable();
    let mut term_cost: Vec<f64> = (0..problem.terms.len()).map(|t| cost(t, &choice)).collect();
    let mut spent: f64 = term_cost.iter().sum();
    let mut scratch = choice.clone();
    loop {
        // The best move so far.
        let mut best: Option<Move> = None;
        let mut consider =
            |moves: Vec<(usize, usize)>, scratch: &mut Vec<usize>, choice: &[usize]| {
                let gain: f64 = moves
                    .iter()
                    .map(|&(c, k)| problem.values[c][k] - problem.values[c][choice[c]])
                    .sum();
                if gain <= 0.0 || best.as_ref().is_some_and(|b| gain < b.0) {
                    return;
                }
                scratch.copy_from_slice(choice);
                for &(c, k) in &moves {
                    scratch[c] = k;
                }
                let delta: f64 = touched_terms(&moves, &terms_of)
                    .iter()
                    .map(|&t| cost(t, scratch) - term_cost[t])
                    .sum();
                if !delta.is_finite() || spent + delta > problem.budget {
                    return;
                }
                if best
                    .as_ref()
                    .is_none_or(|b| gain > b.0 || (gain == b.0 && delta < b.1))
                {
                    best = Some((gain, delta, moves));
                }
            };
        for c in 0..classes {
            for k in 0..problem.values[c].len() {
                consider(vec![(c, k)], &mut scratch, &choice);
            }
        }
        for &(a, b) in &pairs {
            for ka in 0..problem.values[a].len() {
                for kb in 0..problem.values[b].len() {
                    consider(vec![(a, ka), (b, kb)], &mut scratch, &choice);
                }
            }
        }
        let Some((_, _, moves)) = best else {
            return choice;
        };
        for &(c, k) in &moves {
            choice[c] = k;
        }
        for t in touched_terms(&moves, &terms_of) {
            term_cost[t] = cost(t, &choice);
        }
        spent = term_cost.iter().sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift64*), so the instances are the same everywhere.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// The best choice by enumeration (ties: lower cost, then the first in lexicographic order).
    fn brute_force(problem: &Problem, cost: &dyn Fn(usize, &[usize]) -> f64) -> Option<(f64, f64)> {
        let sizes: Vec<usize> = problem.values.iter().map(Vec::len).collect();
        let mut choice = vec![0; sizes.len()];
        let mut best: Option<(f64, f64)> = None;
        loop {
            let c: f64 = (0..problem.terms.len()).map(|t| cost(t, &choice)).sum();
            let v: f64 = choice
                .iter()
                .enumerate()
                .map(|(i, &k)| problem.values[i][k])
                .sum();
            if c <= problem.budget && best.is_none_or(|(bv, bc)| v > bv || (v == bv && c < bc)) {
                best = Some((v, c));
            }
            let mut i = 0;
            while i < sizes.len() {
                choice[i] += 1;
                if choice[i] < sizes[i] {
                    break;
                }
                choice[i] = 0;
                i += 1;
            }
            if i == sizes.len() {
                return best;
            }
        }
    }

    /// A random instance: classes with ascending widths and values (sums of a decreasing score
    /// list, as top-k LAMP sums are); one term per class owning its width, and, `coupled`, the
    /// previous class's width as its input (a chain, as convs in sequence). `integer`: costs
    /// and budget are whole numbers and the DP step is exactly 1, so rounding loses nothing.
    fn instance(
        rng: &mut Rng,
        coupled: bool,
        integer: bool,
    ) -> (Problem, Vec<Vec<usize>>, Vec<f64>) {
        let classes = 1 + rng.below(6);
        let mut values = Vec::new();
        let mut widths = Vec::new();
        for _ in 0..classes {
            let options = 1 + rng.below(6);
            let mut w = Vec::new();
            let mut v = Vec::new();
            let (mut width, mut value) = (0, 0.0);
            for _ in 0..options {
                width += 1 + rng.below(4);
                value += 0.1 + rng.unit();
                w.push(width);
                v.push(value);
            }
            widths.push(w);
            values.push(v);
        }
        let rate: Vec<f64> = (0..classes)
            .map(|_| {
                if integer {
                    (1 + rng.below(3)) as f64
                } else {
                    0.5 + rng.unit()
                }
            })
            .collect();
        let terms: Vec<Vec<usize>> = (0..classes)
            .map(|c| {
                if coupled && c > 0 {
                    vec![c, c - 1]
                } else {
                    vec![c]
                }
            })
            .collect();
        let dense: f64 = (0..classes)
            .map(|c| {
                let wi = if coupled && c > 0 {
                    *widths[c - 1].last().unwrap()
                } else {
                    4
                };
                rate[c] * (wi * widths[c].last().unwrap()) as f64
            })
            .sum();
        let fraction = 0.2 + 0.7 * rng.unit();
        let budget = if integer {
            (dense * fraction).floor()
        } else {
            dense * fraction
        };
        (
            Problem {
                values,
                terms,
                budget,
            },
            widths,
            rate,
        )
    }

    fn cost_fn<'a>(
        widths: &'a [Vec<usize>],
        rate: &'a [f64],
        coupled: bool,
    ) -> impl Fn(usize, &[usize]) -> f64 + 'a {
        move |t, choice| {
            let w_out = widths[t][choice[t]];
            let w_in = if coupled && t > 0 {
                widths[t - 1][choice[t - 1]]
            } else {
                4
            };
            // MACs-like, plus a penalty for widths that are not multiples of 4.
            let penalty = if w_out.is_multiple_of(4) { 0.0 } else { 1.0 };
            rate[t] * (w_in * w_out) as f64 + penalty
        }
    }

    #[test]
    fn uncoupled_equals_brute_force_with_exact_steps() {
        for seed in 1..=400u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let (problem, widths, rate) = instance(&mut rng, false, true);
            let cost = cost_fn(&widths, &rate, false);
            // Costs are whole numbers: a step of exactly 1 loses nothing to rounding.
            let settings = Settings {
                buckets: (problem.budget as usize).max(1),
                rounds: 4,
            };
            let expected = brute_force(&problem, &cost);
            match solve(&problem, &settings, &cost) {
                Ok(s) => {
                    let (v, _) = expected.expect("a solution means brute force has one");
                    assert!(s.cost <= problem.budget, "seed {seed}");
                    assert!(
                        (s.value - v).abs() < 1e-9,
                        "seed {seed}: {} vs {v}",
                        s.value
                    );
                    assert!(s.converged, "seed {seed}: one class per term converges");
                }
                Err(KnapsackError::BudgetTooSmall { .. }) => {
                    assert_eq!(expected, None, "seed {seed}")
                }
                Err(e) => panic!("seed {seed}: {e}"),
            }
        }
    }

    #[test]
    fn uncoupled_real_costs_lose_at_most_the_rounding_slack() {
        for seed in 1..=400u64 {
            let mut rng = Rng(seed.wrapping_mul(0xd1b5_4a32_d192_ed03));
            let (problem, widths, rate) = instance(&mut rng, false, false);
            let cost = cost_fn(&widths, &rate, false);
            let settings = Settings::default();
            let Ok(s) = solve(&problem, &settings, &cost) else {
                continue;
            };
            assert!(s.cost <= problem.budget, "seed {seed}");
            let (best, _) = brute_force(&problem, &cost).unwrap();
            assert!(s.value <= best + 1e-9, "seed {seed}");
            // Whatever fits with `classes * step` of slack is found.
            let slack = problem.values.len() as f64 * problem.budget / settings.buckets as f64;
            let tight = Problem {
                budget: problem.budget - slack,
                ..problem.clone()
            };
            if let Some((v, _)) = brute_force(&tight, &cost) {
                assert!(s.value >= v - 1e-9, "seed {seed}: {} < {v}", s.value);
            }
        }
    }

    /// The fixed point against brute force with the input-width coupling: always within the
    /// budget; the value gap is measured and bounded (see the figures printed with
    /// `cargo test --lib coupling_gap -- --nocapture`).
    #[test]
    fn coupling_gap_to_brute_force() {
        let (mut runs, mut exact, mut gaps) = (0, 0, Vec::new());
        for seed in 1..=500u64 {
            let mut rng = Rng(seed.wrapping_mul(0xa076_1d64_78bd_642f));
            let (problem, widths, rate) = instance(&mut rng, true, false);
            let cost = cost_fn(&widths, &rate, true);
            let best = brute_force(&problem, &cost);
            match solve(&problem, &Settings::default(), &cost) {
                Ok(s) => {
                    assert!(s.cost <= problem.budget + 1e-9, "seed {seed}");
                    let (v, _) = best.expect("brute force finds what solve found");
                    assert!(s.value <= v + 1e-9, "seed {seed}");
                    runs += 1;
                    let gap = (v - s.value) / v;
                    if gap < 1e-9 {
                        exact += 1;
                    }
                    gaps.push(gap);
                }
                Err(KnapsackError::BudgetTooSmall { .. }) => {
                    assert_eq!(best, None, "seed {seed}: option 0 everywhere fits")
                }
                Err(e) => panic!("seed {seed}: {e}"),
            }
        }
        gaps.sort_by(f64::total_cmp);
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let max = *gaps.last().unwrap();
        eprintln!(
            "coupled knapsack vs brute force: {runs} instances, {exact} optimal ({:.1}%), \
             mean value gap {:.2}%, max {:.2}%",
            100.0 * exact as f64 / runs as f64,
            100.0 * mean,
            100.0 * max
        );
        assert!(runs > 400);
        assert!(exact as f64 >= 0.8 * runs as f64, "{exact} of {runs}");
        assert!(mean < 0.02, "mean gap {mean}");
    }

    #[test]
    fn rounding_up_never_exceeds_the_budget() {
        // 3 * 0.34 = 1.02 > 1: with ten steps of 0.1 each cost takes 4 steps, 12 in all.
        let costs = vec![vec![0.34]; 3];
        let values = vec![vec![1.0]; 3];
        assert_eq!(mckp(&costs, &values, 1.0, 10), None);
        assert_eq!(mckp(&costs, &values, 1.2, 10), Some(vec![0, 0, 0]));
    }

    #[test]
    fn bad_requests_are_errors() {
        let problem = Problem {
            values: vec![vec![]],
            terms: vec![],
            budget: 1.0,
        };
        assert!(matches!(
            solve(&problem, &Settings::default(), &|_, _| 0.0),
            Err(KnapsackError::Invalid(_))
        ));
        let problem = Problem {
            values: vec![vec![1.0]],
            terms: vec![vec![0]],
            budget: 1.0,
        };
        assert!(matches!(
            solve(&problem, &Settings::default(), &|_, _| f64::NAN),
            Err(KnapsackError::Invalid(_))
        ));
        assert_eq!(
            solve(&problem, &Settings::default(), &|_, _| 2.0),
            Err(KnapsackError::BudgetTooSmall {
                smallest: 2.0,
                budget: 1.0
            })
        );
    }
}
