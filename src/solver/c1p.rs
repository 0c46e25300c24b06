//! Consecutive-ones test and PQ-trees, by overlap components.
//!
//! Input: a family of sets over a universe of `m` elements. Output: whether some order of the
//! universe makes every set contiguous (the consecutive-ones property, C1P) and, if so, a
//! [`PqTree`] whose frontiers are exactly those orders.
//!
//! # Method
//!
//! The overlap-component decomposition (Fulkerson and Gross 1965; the basis of Hsu's "A simple
//! test for the consecutive ones property", J. Algorithms 2002), used here instead of Booth and
//! Lueker's REDUCE templates because each step is a few bitset operations and its correctness
//! argument fits in this comment:
//!
//! - Two sets *overlap* if they intersect and neither contains the other. Equal sets are
//!   merged first.
//! - Within a connected component of the overlap graph the union is an interval of every valid
//!   order, and its *classes* (elements with equal membership in the component's sets) appear
//!   as blocks in one fixed sequence, up to reversal. The sequence is built incrementally,
//!   adding sets in an order where each new set overlaps one already placed ([`place`]): the
//!   classes the new set touches must form a run whose inner classes it contains; the end
//!   classes may be split, the part inside the set going towards the inside; elements not yet
//!   in the union must go beyond one end, and the run must then reach that end. Every choice is
//!   forced (up to the global reversal), so a failure proves the component has no valid order.
//! - Components nest: if two components' unions meet, one union lies inside a single class of
//!   the other. So the family is C1P iff every component is, and the PQ-tree follows: a
//!   component of two or more sets is a Q-node over its classes, a class (and the root) is a
//!   P-node over the components directly inside it plus its remaining elements as leaves.
//!
//! Adding a set to an arranged family ([`Layout::add`]) re-arranges only the components that
//! set overlaps, starting from the largest one's existing sequence, which makes the incremental
//! checks of the branch-and-bound search cheap. Bitsets are plain `u64` words.

use std::fmt;

/// Number of `u64` words for a bitset over `m` elements.
pub(crate) fn words_for(m: usize) -> usize {
    m.div_ceil(64).max(1)
}

fn set_bit(words: &mut [u64], i: usize) {
    words[i / 64] |= 1 << (i % 64);
}

fn has_bit(words: &[u64], i: usize) -> bool {
    words[i / 64] >> (i % 64) & 1 == 1
}

fn intersects(a: &[u64], b: &[u64]) -> bool {
    a.iter().zip(b).any(|(x, y)| x & y != 0)
}

fn is_subset(a: &[u64], b: &[u64]) -> bool {
    a.iter().zip(b).all(|(x, y)| x & !y == 0)
}

fn count(a: &[u64]) -> u32 {
    a.iter().map(|x| x.count_ones()).sum()
}

fn bits(words: &[u64]) -> impl Iterator<Item = usize> + '_ {
    words.iter().enumerate().flat_map(|(wi, &w)| {
        let mut w = w;
        std::iter::from_fn(move || {
            if w == 0 {
                return None;
            }
            let b = w.trailing_zeros() as usize;
            w &= w - 1;
            Some(wi * 64 + b)
        })
    })
}

/// A fixed list of candidate sets over `m` elements, with their pairwise overlap relation.
/// Which of them are in force is decided by a [`Layout`].
#[derive(Debug, Clone)]
pub(crate) struct Family {
    /// Words per element bitset.
    w: usize,
    /// Words per bitset over set indices.
    kw: usize,
    /// Flat: set `i` is `sets[i * w..(i + 1) * w]`.
    sets: Vec<u64>,
    /// Flat: row `i` (`kw` words) has bit `j` iff sets `i` and `j` overlap.
    overlap: Vec<u64>,
}

impl Family {
    /// `sets[i]` lists elements of `0..m` (any order; duplicates are harmless).
    pub(crate) fn new(m: usize, sets: &[Vec<usize>]) -> Family {
        let w = words_for(m);
        let k = sets.len();
        let kw = words_for(k);
        let mut flat = vec![0u64; k * w];
        for (i, s) in sets.iter().enumerate() {
            for &e in s {
                assert!(e < m, "element {e} out of range 0..{m}");
                set_bit(&mut flat[i * w..(i + 1) * w], e);
            }
        }
        let mut overlap = vec![0u64; k * kw];
        for i in 0..k {
            for j in 0..i {
                let (a, b) = (&flat[i * w..(i + 1) * w], &flat[j * w..(j + 1) * w]);
                if intersects(a, b) && !is_subset(a, b) && !is_subset(b, a) {
                    set_bit(&mut overlap[i * kw..(i + 1) * kw], j);
                    set_bit(&mut overlap[j * kw..(j + 1) * kw], i);
                }
            }
        }
        Family {
            w,
            kw,
            sets: flat,
            overlap,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.sets.len() / self.w
    }

    fn set(&self, i: usize) -> &[u64] {
        &self.sets[i * self.w..(i + 1) * self.w]
    }

    fn overlap_row(&self, i: usize) -> &[u64] {
        &self.overlap[i * self.kw..(i + 1) * self.kw]
    }
}

/// One overlap component with its class sequence.
#[derive(Debug, Clone)]
struct Component {
    /// Set indices, in the order they were placed.
    members: Vec<usize>,
    /// Bitset over set indices (`kw` words).
    mask: Vec<u64>,
    /// Flat class sequence, `w` words per class.
    classes: Vec<u64>,
    /// Union of the classes.
    union: Vec<u64>,
}

impl Component {
    fn single(fam: &Family, r: usize) -> Component {
        let mut mask = vec![0; fam.kw];
        set_bit(&mut mask, r);
        Component {
            members: vec![r],
            mask,
            classes: fam.set(r).to_vec(),
            union: fam.set(r).to_vec(),
        }
    }

    fn class_count(&self, w: usize) -> usize {
        self.classes.len() / w
    }

    fn class(&self, w: usize, c: usize) -> &[u64] {
        &self.classes[c * w..(c + 1) * w]
    }

    fn push_member(&mut self, r: usize) {
        self.members.push(r);
        set_bit(&mut self.mask, r);
    }
}

/// Adds set `s`, which overlaps a set already in `comp`, to the class sequence of `comp`.
/// Returns false (leaving `comp` in an unspecified state) if no order keeps every set of the
/// component contiguous.
fn place(comp: &mut Component, w: usize, s: &[u64]) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum Touch {
        None,
        Partial,
        Full,
    }
    let k = comp.class_count(w);
    let touch: Vec<Touch> = (0..k)
        .map(|c| {
            let class = comp.class(w, c);
            if !intersects(class, s) {
                Touch::None
            } else if is_subset(class, s) {
                Touch::Full
            } else {
                Touch::Partial
            }
        })
        .collect();
    let Some(i) = touch.iter().position(|&t| t != Touch::None) else {
        debug_assert!(false, "placed set touches no class");
        return false;
    };
    let j = touch.iter().rposition(|&t| t != Touch::None).unwrap_or(i);
    if j > i && touch[i + 1..j].iter().any(|&t| t != Touch::Full) {
        return false;
    }
    let fresh: Vec<u64> = s.iter().zip(&comp.union).map(|(x, u)| x & !u).collect();
    let has_fresh = fresh.iter().any(|&x| x != 0);
    // Splits class `c` into its parts outside and inside `s`, in the given order.
    let split = |comp: &mut Component, c: usize, inside_first: bool| {
        let class = comp.class(w, c).to_vec();
        let inside: Vec<u64> = class.iter().zip(s).map(|(x, y)| x & y).collect();
        let outside: Vec<u64> = class.iter().zip(s).map(|(x, y)| x & !y).collect();
        let (a, b) = if inside_first {
            (inside, outside)
        } else {
            (outside, inside)
        };
        comp.classes
            .splice(c * w..(c + 1) * w, a.into_iter().chain(b));
    };
    if !has_fresh {
        // Both ends are inside the current union: a set overlapping a placed set touches at
        // least two classes.
        if i == j {
            debug_assert!(false, "overlapping set inside one class");
            return false;
        }
        if touch[j] == Touch::Partial {
            split(comp, j, true);
        }
        if touch[i] == Touch::Partial {
            split(comp, i, false);
        }
        return true;
    }
    let right = j == k - 1 && touch[i + 1..].iter().all(|&t| t == Touch::Full);
    let left = i == 0 && touch[..j].iter().all(|&t| t == Touch::Full);
    if right {
        if touch[i] == Touch::Partial {
            split(comp, i, false);
        }
        comp.classes.extend_from_slice(&fresh);
    } else if left {
        if touch[j] == Touch::Partial {
            split(comp, j, true);
        }
        comp.classes.splice(0..0, fresh.iter().copied());
    } else {
        return false;
    }
    for (u, x) in comp.union.iter_mut().zip(s) {
        *u |= x;
    }
    true
}

/// The sets of a [`Family`] that are in force, arranged component by component. Every layout
/// is C1P: adding a set that would break that fails and leaves the layout unchanged.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    comps: Vec<Component>,
    /// Bitset over set indices: the sets in force.
    chosen: Vec<u64>,
}

impl Layout {
    pub(crate) fn new(fam: &Family) -> Layout {
        Layout {
            comps: Vec::new(),
            chosen: vec![0; fam.kw],
        }
    }

    pub(crate) fn contains(&self, r: usize) -> bool {
        has_bit(&self.chosen, r)
    }

    /// Set indices in force, ascending.
    pub(crate) fn chosen(&self) -> Vec<usize> {
        bits(&self.chosen).collect()
    }

    /// The component indices set `r` overlaps and the arrangement of `r` merged with them, or
    /// `None` if that merge has no valid order.
    fn merge(&self, fam: &Family, r: usize) -> Option<(Vec<usize>, Component)> {
        let row = fam.overlap_row(r);
        let touching: Vec<usize> = (0..self.comps.len())
            .filter(|&c| intersects(&self.comps[c].mask, row))
            .collect();
        let Some(&base) = touching
            .iter()
            .max_by_key(|&&c| (self.comps[c].members.len(), std::cmp::Reverse(c)))
        else {
            return Some((touching, Component::single(fam, r)));
        };
        let mut comp = self.comps[base].clone();
        if !place(&mut comp, fam.w, fam.set(r)) {
            return None;
        }
        comp.push_member(r);
        let mut pending: Vec<usize> = touching
            .iter()
            .filter(|&&c| c != base)
            .flat_map(|&c| self.comps[c].members.iter().copied())
            .collect();
        while !pending.is_empty() {
            let at = pending
                .iter()
                .position(|&p| intersects(fam.overlap_row(p), &comp.mask))
                .expect("overlap components are connected");
            let p = pending.remove(at);
            if !place(&mut comp, fam.w, fam.set(p)) {
                return None;
            }
            comp.push_member(p);
        }
        Some((touching, comp))
    }

    /// Whether set `r` could be added.
    pub(crate) fn can_add(&self, fam: &Family, r: usize) -> bool {
        self.contains(r) || self.merge(fam, r).is_some()
    }

    /// Adds set `r` if the family stays C1P; returns whether it was added (or already there).
    pub(crate) fn add(&mut self, fam: &Family, r: usize) -> bool {
        if self.contains(r) {
            return true;
        }
        let Some((touching, comp)) = self.merge(fam, r) else {
            return false;
        };
        for &c in touching.iter().rev() {
            self.comps.swap_remove(c);
        }
        self.comps.push(comp);
        set_bit(&mut self.chosen, r);
        true
    }

    /// The PQ-tree of all orders of the universe `0..m` that keep every set in force
    /// contiguous. Element `e` becomes the leaves `labels[e]` (several labels: interchangeable
    /// leaves of one P-node; none: dropped).
    pub(crate) fn tree(&self, fam: &Family, m: usize, labels: &[Vec<usize>]) -> PqTree {
        let w = fam.w;
        // Equal sets never overlap, so a duplicate of a set already in force sits alone in its
        // own component: drop it.
        let comps: Vec<&Component> = self
            .comps
            .iter()
            .enumerate()
            .filter(|(ci, c)| {
                c.members.len() > 1
                    || !self.comps.iter().enumerate().any(|(di, d)| {
                        (d.members.len() > 1 || di < *ci)
                            && d.members.iter().any(|&s| fam.set(s) == c.union.as_slice())
                    })
            })
            .map(|(_, c)| c)
            .collect();
        // The parent of a component is the smallest class of another component containing its
        // union (classes and unions form a laminar family); ties go to the smaller component.
        let mut parent: Vec<Option<(usize, usize)>> = vec![None; comps.len()];
        for (b, cb) in comps.iter().enumerate() {
            let mut best: Option<((u32, u32), (usize, usize))> = None;
            for (a, ca) in comps.iter().enumerate() {
                if a == b {
                    continue;
                }
                for ci in 0..ca.class_count(w) {
                    let class = ca.class(w, ci);
                    if is_subset(&cb.union, class) {
                        let key = (count(class), count(&ca.union));
                        if best.is_none_or(|(k, _)| key < k) {
                            best = Some((key, (a, ci)));
                        }
                    }
                }
            }
            parent[b] = best.map(|(_, p)| p);
        }
        let builder = TreeBuilder {
            comps: &comps,
            parent: &parent,
            w,
            labels,
        };
        let mut all = vec![0u64; w];
        for e in 0..m {
            set_bit(&mut all, e);
        }
        builder.p_node(None, &all)
    }
}

struct TreeBuilder<'a> {
    comps: &'a [&'a Component],
    parent: &'a [Option<(usize, usize)>],
    w: usize,
    labels: &'a [Vec<usize>],
}

impl TreeBuilder<'_> {
    /// The P-node of `region` (a class, or the whole universe when `at` is `None`): the
    /// components directly inside it and its remaining elements.
    fn p_node(&self, at: Option<(usize, usize)>, region: &[u64]) -> PqTree {
        let mut children = Vec::new();
        let mut loose = region.to_vec();
        for (b, cb) in self.comps.iter().enumerate() {
            if self.parent[b] == at {
                for (l, u) in loose.iter_mut().zip(&cb.union) {
                    *l &= !u;
                }
                children.push(self.comp_node(b));
            }
        }
        for e in bits(&loose) {
            children.extend(self.labels[e].iter().map(|&l| PqTree::Leaf(l)));
        }
        if children.len() == 1 {
            children.pop().expect("one child")
        } else {
            PqTree::P(children)
        }
    }

    fn comp_node(&self, b: usize) -> PqTree {
        let cb = self.comps[b];
        let k = cb.class_count(self.w);
        if k == 1 {
            return self.p_node(Some((b, 0)), &cb.union);
        }
        PqTree::Q(
            (0..k)
                .map(|ci| self.p_node(Some((b, ci)), cb.class(self.w, ci)))
                .collect(),
        )
    }
}

/// A PQ-tree: a set of permutations of its leaves. A P-node's children may appear in any
/// order, a Q-node's in the given order or its reverse; the orders a tree stands for are its
/// *frontiers* (leaves read left to right under some allowed arrangement).
///
/// ```
/// use nnirc::solver::c1p::{consecutive_ones, PqTree};
/// // {0,1}, {1,2} and {2,3} contiguous: only 0 1 2 3 and its reverse.
/// let tree = consecutive_ones(4, &[vec![0, 1], vec![1, 2], vec![2, 3]]).unwrap();
/// assert_eq!(tree.to_string(), "[0 1 2 3]");
/// assert_eq!(tree.count_orders(), Some(2));
/// // {0,1}, {1,2}, {0,2}: no order keeps all three contiguous.
/// assert!(consecutive_ones(3, &[vec![0, 1], vec![1, 2], vec![0, 2]]).is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PqTree {
    Leaf(usize),
    /// Children in any order (an empty P-node is the empty universe).
    P(Vec<PqTree>),
    /// Children in this order or reversed (always three or more).
    Q(Vec<PqTree>),
}

impl PqTree {
    /// The leaves in the tree's current arrangement.
    pub fn frontier(&self) -> Vec<usize> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect(&self, out: &mut Vec<usize>) {
        match self {
            PqTree::Leaf(l) => out.push(*l),
            PqTree::P(ch) | PqTree::Q(ch) => ch.iter().for_each(|c| c.collect(out)),
        }
    }

    /// Rearranges the tree so that its frontier is the smallest, in lexicographic order of
    /// `key`, of all the orders it stands for, and returns the key of its first leaf. Children
    /// have disjoint leaves, so it suffices to arrange each child that way, then sort a
    /// P-node's children by their first key and turn a Q-node so that the end child with the
    /// smaller first key comes first.
    pub fn canonicalize_by<K: Ord + Copy>(&mut self, key: &impl Fn(usize) -> K) -> Option<K> {
        match self {
            PqTree::Leaf(l) => Some(key(*l)),
            PqTree::P(ch) => {
                let mut keyed: Vec<(Option<K>, PqTree)> = std::mem::take(ch)
                    .into_iter()
                    .map(|mut c| (c.canonicalize_by(key), c))
                    .collect();
                keyed.sort_by_key(|(k, _)| *k);
                let first = keyed.first().and_then(|(k, _)| *k);
                *ch = keyed.into_iter().map(|(_, c)| c).collect();
                first
            }
            PqTree::Q(ch) => {
                let firsts: Vec<Option<K>> =
                    ch.iter_mut().map(|c| c.canonicalize_by(key)).collect();
                if firsts.last() < firsts.first() {
                    ch.reverse();
                    return firsts.last().copied().flatten();
                }
                firsts.first().copied().flatten()
            }
        }
    }

    /// [`PqTree::canonicalize_by`] with the leaf labels as keys: the frontier becomes the
    /// lexicographically smallest order the tree allows.
    pub fn canonicalize(&mut self) {
        self.canonicalize_by(&|l| l);
    }

    /// How many orders the tree stands for (`None` if that overflows `u128`).
    pub fn count_orders(&self) -> Option<u128> {
        match self {
            PqTree::Leaf(_) => Some(1),
            PqTree::P(ch) => ch.iter().enumerate().try_fold(1u128, |acc, (i, c)| {
                acc.checked_mul(i as u128 + 1)?
                    .checked_mul(c.count_orders()?)
            }),
            PqTree::Q(ch) => ch
                .iter()
                .try_fold(2u128, |acc, c| acc.checked_mul(c.count_orders()?)),
        }
    }
}

/// Leaves as numbers, P-nodes as `(..)`, Q-nodes as `[..]`.
impl fmt::Display for PqTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (open, close, ch) = match self {
            PqTree::Leaf(l) => return write!(f, "{l}"),
            PqTree::P(ch) => ('(', ')', ch),
            PqTree::Q(ch) => ('[', ']', ch),
        };
        write!(f, "{open}")?;
        for (i, c) in ch.iter().enumerate() {
            if i > 0 {
                write!(f, " ")?;
            }
            write!(f, "{c}")?;
        }
        write!(f, "{close}")
    }
}

/// Interchangeable elements: elements of `0..universe` that belong to exactly the same sets.
/// Returns the atoms (each a list of elements, ascending; atoms ordered by their first element)
/// and the sets rewritten over atom indices.
pub(crate) fn atoms(universe: usize, sets: &[Vec<usize>]) -> (Vec<Vec<usize>>, Vec<Vec<usize>>) {
    let kw = words_for(sets.len());
    let mut signature = vec![0u64; universe * kw];
    for (i, s) in sets.iter().enumerate() {
        for &e in s {
            assert!(e < universe, "element {e} out of range 0..{universe}");
            set_bit(&mut signature[e * kw..(e + 1) * kw], i);
        }
    }
    let mut id: std::collections::HashMap<&[u64], usize> = std::collections::HashMap::new();
    let mut atoms: Vec<Vec<usize>> = Vec::new();
    let mut atom_of = vec![0; universe];
    for (e, slot) in atom_of.iter_mut().enumerate() {
        let sig = &signature[e * kw..(e + 1) * kw];
        let a = *id.entry(sig).or_insert_with(|| {
            atoms.push(Vec::new());
            atoms.len() - 1
        });
        atoms[a].push(e);
        *slot = a;
    }
    let rewritten = sets
        .iter()
        .map(|s| {
            let mut v: Vec<usize> = s.iter().map(|&e| atom_of[e]).collect();
            v.sort_unstable();
            v.dedup();
            v
        })
        .collect();
    (atoms, rewritten)
}

/// The consecutive-ones test: `Some(tree)` with the PQ-tree of every order of `0..universe`
/// in which each of `sets` is contiguous (canonicalized, so its frontier is the
/// lexicographically smallest such order), or `None` if there is no such order.
pub fn consecutive_ones(universe: usize, sets: &[Vec<usize>]) -> Option<PqTree> {
    let (atoms, over_atoms) = atoms(universe, sets);
    let fam = Family::new(atoms.len(), &over_atoms);
    let mut layout = Layout::new(&fam);
    for r in 0..fam.len() {
        if !layout.add(&fam, r) {
            return None;
        }
    }
    let mut tree = layout.tree(&fam, atoms.len(), &atoms);
    tree.canonicalize();
    Some(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(universe: usize, sets: &[&[usize]]) -> String {
        let sets: Vec<Vec<usize>> = sets.iter().map(|s| s.to_vec()).collect();
        consecutive_ones(universe, &sets).map_or("none".to_string(), |t| t.to_string())
    }

    #[test]
    fn classic_cases() {
        let cases: &[(usize, &[&[usize]], &str)] = &[
            (0, &[], "()"),
            (1, &[], "0"),
            (3, &[], "(0 1 2)"),
            (3, &[&[0, 1, 2]], "(0 1 2)"),
            (4, &[&[1, 3]], "(0 (1 3) 2)"),
            (4, &[&[0, 1], &[1, 2], &[2, 3]], "[0 1 2 3]"),
            (5, &[&[0, 1, 2], &[2, 3, 4]], "[(0 1) 2 (3 4)]"),
            (5, &[&[0, 1], &[0, 1, 2, 3]], "(((0 1) 2 3) 4)"),
            (3, &[&[0, 1], &[1, 2], &[0, 2]], "none"),
        ];
        for (universe, sets, expect) in cases {
            assert_eq!(show(*universe, sets), *expect, "{sets:?}");
        }
    }

    #[test]
    fn duplicates_and_nesting() {
        assert_eq!(show(4, &[&[0, 1], &[0, 1], &[1, 0]]), "((0 1) 2 3)");
        assert_eq!(
            show(6, &[&[1, 2, 3, 4], &[1, 2], &[2, 3], &[3, 4]]),
            "(0 [1 2 3 4] 5)"
        );
    }
}
