//! The default solver: the heaviest set of consumers that can be contiguous together, by
//! branch and bound over consumer subsets with the consecutive-ones test of [`super::c1p`].
//!
//! Input: an [`Instance`] with channels in range. Output: a permutation of its channels, and
//! whether it is proven optimal (the search completed).
//!
//! Steps:
//! 1. Consumers that are contiguous in every order (empty, the whole segment, an unanchored
//!    single channel) are set aside. The rest are compressed to *atoms* (channels that belong
//!    to the same sets are interchangeable and kept adjacent; this loses no optimum).
//! 2. Anchors become constraints over two virtual elements START and END: the sets
//!    `U \ {START}` and `U \ {END}` put them at opposite ends, and a `Start`-anchored set `S`
//!    is required as `S + {START}` (likewise `End`). They are dropped from the final order.
//! 3. Consumers with equal sets and anchors merge into one *item* (weights add up); items are
//!    sorted by weight, then member count, descending.
//! 4. If all items fit together, that is the answer. Otherwise a greedy pass (take items in
//!    order while the family stays C1P) and a local search (drop one item, add another,
//!    refill greedily, keep the move if it improves) give an incumbent, and, with at most `max_exact_consumers` items, a
//!    depth-first branch and bound (include before exclude) minimizes the excluded
//!    `(weight, member count)`. Its bound is the excluded weight plus the weight of every
//!    remaining item that no longer fits with the included ones (that only grows along a
//!    branch, so each include re-checks the remaining items once).
//! 5. The order is the lexicographically smallest frontier of the PQ-tree of the chosen
//!    family. Among equally good families the first one found wins (greedy, then local
//!    search, then the branch-and-bound order; later ones must be strictly better), so the
//!    result is a function of the instance and the node budget alone.

use super::c1p::{self, Family, Layout};
use super::{Anchor, Budget, Instance, Limits, StopReason};
use std::collections::BTreeMap;

/// Consumers with one set and anchor, as a set over atoms (plus START or END).
#[derive(Debug)]
struct Item {
    set: Vec<usize>,
    weight: u128,
    count: u64,
    /// First consumer index (tie-break of the sort).
    first: usize,
}

/// Excluded weight and member count: smaller is better.
type Score = (u128, u64);

pub(super) fn solve(
    instance: &Instance,
    limits: &Limits,
    budget: &mut Budget,
) -> (Vec<usize>, bool) {
    let n = instance.channels;
    let mut sets: Vec<Vec<usize>> = Vec::new();
    let mut anchors: Vec<(Anchor, usize)> = Vec::new();
    for (j, c) in instance.consumers.iter().enumerate() {
        let mut s = c.channels.clone();
        s.sort_unstable();
        s.dedup();
        let trivial = s.is_empty() || s.len() == n || (s.len() == 1 && c.anchor == Anchor::None);
        if !trivial {
            sets.push(s);
            anchors.push((c.anchor, j));
        }
    }
    if sets.is_empty() {
        return ((0..n).collect(), true);
    }
    let (atoms, over_atoms) = c1p::atoms(n, &sets);
    let anchored = anchors.iter().any(|(a, _)| *a != Anchor::None);
    let (start, end) = (atoms.len(), atoms.len() + 1);
    let m = if anchored {
        atoms.len() + 2
    } else {
        atoms.len()
    };

    let mut merged: BTreeMap<Vec<usize>, Item> = BTreeMap::new();
    for (mut set, (anchor, j)) in over_atoms.into_iter().zip(anchors) {
        match anchor {
            Anchor::None => {}
            Anchor::Start => set.push(start),
            Anchor::End => set.push(end),
        }
        let weight = u128::from(instance.consumers[j].weight);
        let item = merged.entry(set.clone()).or_insert(Item {
            set,
            weight: 0,
            count: 0,
            first: j,
        });
        item.weight += weight;
        item.count += 1;
    }
    let mut items: Vec<Item> = merged.into_values().collect();
    items.sort_by_key(|it| (std::cmp::Reverse((it.weight, it.count)), it.first));

    let mut family: Vec<Vec<usize>> = Vec::new();
    if anchored {
        family.push((0..m).filter(|&e| e != start).collect());
        family.push((0..m).filter(|&e| e != end).collect());
    }
    let nbase = family.len();
    family.extend(items.iter().map(|it| it.set.clone()));
    let fam = Family::new(m, &family);
    let mut base = Layout::new(&fam);
    for r in 0..nbase {
        assert!(base.add(&fam, r), "anchor constraints are C1P");
    }

    let mut search = Search {
        fam: &fam,
        base: &base,
        nbase,
        weight: items.iter().map(|it| (it.weight, it.count)).collect(),
        best: (0, 0),
        best_chosen: Vec::new(),
        budget,
    };
    let proven = search.run(limits.max_exact_consumers);
    let chosen = search.best_chosen;

    let mut layout = base.clone();
    for &i in &chosen {
        assert!(layout.add(&fam, nbase + i), "the chosen family is C1P");
    }
    let mut labels = atoms;
    if anchored {
        labels.push(vec![n]);
        labels.push(vec![n + 1]);
    }
    let mut tree = layout.tree(&fam, m, &labels);
    // START first, then channels, then END.
    tree.canonicalize_by(&|l| match l {
        l if l == n => 0,
        l if l == n + 1 => n + 1,
        l => l + 1,
    });
    let order: Vec<usize> = tree.frontier().into_iter().filter(|&l| l < n).collect();
    (order, proven)
}

struct Search<'a> {
    fam: &'a Family,
    /// The anchor constraints, in force everywhere.
    base: &'a Layout,
    nbase: usize,
    /// Per item: (weight, member count).
    weight: Vec<Score>,
    /// Excluded score of `best_chosen`.
    best: Score,
    /// Item indices, ascending.
    best_chosen: Vec<usize>,
    budget: &'a mut Budget,
}

fn add(a: Score, b: Score) -> Score {
    (a.0 + b.0, a.1 + b.1)
}

impl Search<'_> {
    fn items(&self) -> usize {
        self.weight.len()
    }

    /// Finds the best family it can; true if proven optimal.
    fn run(&mut self, max_exact: usize) -> bool {
        let k = self.items();
        let mut chosen = vec![false; k];
        let mut layout = self.base.clone();
        for (i, slot) in chosen.iter_mut().enumerate() {
            *slot = layout.add(self.fam, self.nbase + i);
        }
        if chosen.iter().all(|&c| c) {
            self.record(&chosen);
            return true;
        }
        self.improve(&mut chosen);
        self.record(&chosen);
        if k > max_exact {
            self.budget.note(StopReason::ConsumerLimit);
            return false;
        }
        if self.budget.exhausted() {
            return false;
        }
        let blocked: Vec<bool> = (0..k)
            .map(|i| !self.base.can_add(self.fam, self.nbase + i))
            .collect();
        let base = self.base.clone();
        self.branch(0, &base, (0, 0), &blocked);
        !self.budget.exhausted()
    }

    fn score(&self, chosen: &[bool]) -> Score {
        (0..self.items())
            .filter(|&i| !chosen[i])
            .fold((0, 0), |acc, i| add(acc, self.weight[i]))
    }

    fn record(&mut self, chosen: &[bool]) {
        self.best = self.score(chosen);
        self.best_chosen = (0..self.items()).filter(|&i| chosen[i]).collect();
    }

    fn layout_of(&self, chosen: &[bool]) -> Option<Layout> {
        let mut layout = self.base.clone();
        (0..self.items())
            .filter(|&i| chosen[i])
            .all(|i| layout.add(self.fam, self.nbase + i))
            .then_some(layout)
    }

    /// Local search from a greedy family: drop one included item (lightest first), add one
    /// excluded item that then fits, refill greedily; take the first move that improves the
    /// score and repeat, until no move improves or the budget runs out.
    fn improve(&mut self, chosen: &mut Vec<bool>) {
        let k = self.items();
        'rounds: loop {
            let current = self.score(chosen);
            for i in (0..k).rev().filter(|&i| chosen[i]) {
                if !self.budget.tick() {
                    return;
                }
                let mut without = chosen.clone();
                without[i] = false;
                let Some(rest) = self.layout_of(&without) else {
                    unreachable!("a subfamily of a C1P family is C1P");
                };
                for e in (0..k).filter(|&e| !chosen[e]) {
                    if !self.budget.tick() {
                        return;
                    }
                    let mut layout = rest.clone();
                    if !layout.add(self.fam, self.nbase + e) {
                        continue;
                    }
                    let mut next = without.clone();
                    next[e] = true;
                    for (x, slot) in next.iter_mut().enumerate() {
                        if *slot || x == i {
                            continue;
                        }
                        if !self.budget.tick() {
                            return;
                        }
                        *slot = layout.add(self.fam, self.nbase + x);
                    }
                    if self.score(&next) < current {
                        *chosen = next;
                        continue 'rounds;
                    }
                }
            }
            return;
        }
    }

    /// Decides item `d` given the included `layout`, the `excluded` score so far and the
    /// remaining items that no longer fit (`blocked`).
    fn branch(&mut self, d: usize, layout: &Layout, excluded: Score, blocked: &[bool]) {
        if !self.budget.tick() {
            return;
        }
        let bound = (d..self.items())
            .filter(|&r| blocked[r])
            .fold(excluded, |acc, r| add(acc, self.weight[r]));
        if bound >= self.best {
            return;
        }
        if d == self.items() {
            self.best = excluded;
            self.best_chosen = layout
                .chosen()
                .into_iter()
                .filter(|&r| r >= self.nbase)
                .map(|r| r - self.nbase)
                .collect();
            return;
        }
        if !blocked[d] {
            let mut next = layout.clone();
            let added = next.add(self.fam, self.nbase + d);
            debug_assert!(added, "unblocked items fit");
            let mut next_blocked = blocked.to_vec();
            for (r, slot) in next_blocked.iter_mut().enumerate().skip(d + 1) {
                if !*slot && !next.can_add(self.fam, self.nbase + r) {
                    *slot = true;
                }
            }
            self.branch(d + 1, &next, excluded, &next_blocked);
        }
        let excluded = add(excluded, self.weight[d]);
        self.branch(d + 1, layout, excluded, blocked);
    }
}
