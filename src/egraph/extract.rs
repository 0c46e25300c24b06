//! DAG-aware extraction: one term per root, paying for each distinct e-node once.
//!
//! egg's `Extractor` sums costs over a tree, so a gather shared by two consumers would be
//! paid twice and a shared read could never win. Here the cost of a plan (one term per root)
//! is the sum of [`node_cost`] over the *distinct* canonical e-nodes of its terms: consumers
//! that read the same selection of the same tensor share it.
//!
//! Method. Each root gets its candidate terms: the acyclic terms of its class (at most
//! [`CANDIDATES`] per class), with the caller's baseline term first. Roots are grouped by the
//! costly e-nodes their candidates share. Per group:
//! - with at most `exact_shared` shared costly e-nodes, every subset of them is tried as the
//!   set of paid shared nodes, each root then picking its cheapest candidate within it:
//!   **optimal** over the candidates;
//! - beyond that, a local search from the baseline moves one root at a time to its cheapest
//!   candidate given what the others already pay, until no move helps: a local optimum.
//!
//! Guarantees: every term is in its root's class (so it means the same); the plan never costs
//! more than the baseline (moves are taken only when they strictly lower the total, so ties
//! keep the baseline); the result is deterministic.

use super::cost::Cost;
use super::language::{num_of, set_of, tensor_of, weight_of, Layout, LayoutGraph};
use super::model::CostModel;
use egg::{Id, Language, RecExpr};
use std::collections::HashMap;
use std::rc::Rc;

/// At most this many candidate terms are enumerated per e-class.
pub const CANDIDATES: usize = 64;

/// The largest `exact_shared` honoured (2^this subsets per group).
const MAX_EXACT_SHARED: usize = 20;

/// Extracted terms and their costs.
#[derive(Debug, Clone)]
pub struct Extraction {
    /// One term per root, each in its root's class.
    pub terms: Vec<RecExpr<Layout>>,
    /// The plan's cost: each distinct e-node of `terms` counted once.
    pub cost: Cost,
    /// The baseline's cost, counted the same way (`cost <= baseline_cost`).
    pub baseline_cost: Cost,
    /// Whether every group was solved exactly (optimal over the candidates).
    pub exact: bool,
}

/// The cost of one e-node on its own: runtime selections and zero weight columns; leaves,
/// consumers and the other weight transforms (done at export time) are free. A priced node
/// whose operands have the wrong type is [`Cost::MAX`].
pub fn node_cost(egraph: &LayoutGraph, node: &Layout, model: &dyn CostModel) -> Cost {
    let priced = match node {
        Layout::Gather([k, x]) => set_of(egraph, *k)
            .zip(tensor_of(egraph, *x))
            .map(|(k, x)| model.gather(k.len(), x.bytes_per_channel)),
        Layout::Slice([a, b, x]) => {
            let (a, b) = (num_of(egraph, *a), num_of(egraph, *b));
            a.zip(b)
                .zip(tensor_of(egraph, *x))
                .filter(|((a, b), _)| a < b)
                .map(|((a, b), x)| model.slice(b - a, x.bytes_per_channel))
        }
        Layout::PadCols([k, w]) => set_of(egraph, *k).zip(weight_of(egraph, *w)).map(|(k, w)| {
            model.zero_columns(k.universe.saturating_sub(k.len()), w.macs_per_column)
        }),
        _ => Some(Cost::ZERO),
    };
    priced.unwrap_or(Cost::MAX)
}

/// A term as chosen e-nodes: `node` is canonical (children are class ids), `children` the
/// chosen terms of those classes.
#[derive(Debug)]
struct Tree {
    node: Layout,
    children: Vec<Rc<Tree>>,
    /// Its e-nodes' costs summed over the tree (a subterm it holds twice counts twice): the
    /// order of [`enumerate`]'s candidates, not a plan's cost.
    cost: Cost,
}

impl Tree {
    fn new(
        egraph: &LayoutGraph,
        node: Layout,
        children: Vec<Rc<Tree>>,
        model: &dyn CostModel,
    ) -> Tree {
        let cost = children.iter().map(|c| c.cost).sum::<Cost>() + node_cost(egraph, &node, model);
        Tree {
            node,
            children,
            cost,
        }
    }
    fn to_expr(&self) -> RecExpr<Layout> {
        fn add(tree: &Tree, expr: &mut RecExpr<Layout>) -> Id {
            let mut node = tree.node.clone();
            for (slot, child) in node.children_mut().iter_mut().zip(&tree.children) {
                *slot = add(child, expr);
            }
            expr.add(node)
        }
        let mut expr = RecExpr::default();
        add(self, &mut expr);
        expr
    }

    /// Its distinct e-nodes that [`node_cost`] may price: selections and padded weights (the
    /// others cost nothing).
    fn nodes(&self) -> Vec<Layout> {
        fn walk(tree: &Tree, out: &mut Vec<Layout>) {
            if matches!(
                tree.node,
                Layout::Gather(_) | Layout::Slice(_) | Layout::PadCols(_)
            ) {
                out.push(tree.node.clone());
            }
            tree.children.iter().for_each(|c| walk(c, out));
        }
        let mut out = Vec::new();
        walk(self, &mut out);
        out.sort();
        out.dedup();
        out
    }
}

/// The acyclic terms of `class` (at most [`CANDIDATES`]), none going through a class on
/// `stack`, cheapest first under `model` (each on its own; ties in e-node order). So where
/// the candidates of a node's children are cut short, the first ones combine its children's
/// cheapest terms: a concat of many blocks still gets the term with every part at its best.
fn enumerate(
    egraph: &LayoutGraph,
    class: Id,
    stack: &mut Vec<Id>,
    model: &dyn CostModel,
) -> Vec<Rc<Tree>> {
    let class = egraph.find(class);
    stack.push(class);
    let mut out = Vec::new();
    for node in &egraph[class].nodes {
        let node = node.clone().map_children(|c| egraph.find(c));
        if node.children().iter().any(|c| stack.contains(c)) {
            continue;
        }
        let mut partial: Vec<Vec<Rc<Tree>>> = vec![Vec::new()];
        for &child in node.children() {
            let options = enumerate(egraph, child, stack, model);
            let mut next = Vec::new();
            'fill: for p in &partial {
                for o in &options {
                    if next.len() >= CANDIDATES {
                        break 'fill;
                    }
                    let mut q = p.clone();
                    q.push(o.clone());
                    next.push(q);
                }
            }
            partial = next;
        }
        for children in partial {
            if out.len() >= CANDIDATES {
                break;
            }
            out.push(Rc::new(Tree::new(egraph, node.clone(), children, model)));
        }
    }
    stack.pop();
    out.sort_by_key(|t| t.cost);
    out
}

/// `expr` as a tree of canonical e-nodes of `egraph`, with its class; `None` if some node of
/// it is not in the e-graph.
fn tree_of(
    egraph: &LayoutGraph,
    expr: &RecExpr<Layout>,
    model: &dyn CostModel,
) -> Option<(Rc<Tree>, Id)> {
    let mut trees: Vec<(Rc<Tree>, Id)> = Vec::with_capacity(expr.len());
    for node in expr.as_ref() {
        let canonical = node.clone().map_children(|c| trees[usize::from(c)].1);
        let class = egraph.find(egraph.lookup(canonical.clone())?);
        let children = node
            .children()
            .iter()
            .map(|&c| trees[usize::from(c)].0.clone())
            .collect();
        trees.push((
            Rc::new(Tree::new(egraph, canonical, children, model)),
            class,
        ));
    }
    trees.pop()
}

/// The acyclic terms of `root`'s class, at most [`CANDIDATES`], cheapest first under `model`
/// (ties in a deterministic order).
pub fn candidates(egraph: &LayoutGraph, root: Id, model: &dyn CostModel) -> Vec<RecExpr<Layout>> {
    enumerate(egraph, root, &mut Vec::new(), model)
        .iter()
        .map(|t| t.to_expr())
        .collect()
}

/// The cost of `terms` as one plan (each distinct e-node once); `None` if a term is not in
/// `egraph`.
pub fn dag_cost(
    egraph: &LayoutGraph,
    terms: &[RecExpr<Layout>],
    model: &dyn CostModel,
) -> Option<Cost> {
    let mut nodes = Vec::new();
    for term in terms {
        nodes.extend(tree_of(egraph, term, model)?.0.nodes());
    }
    nodes.sort();
    nodes.dedup();
    Some(nodes.iter().map(|n| node_cost(egraph, n, model)).sum())
}

/// One candidate: its term and the indices of its costly e-nodes.
struct Candidate {
    tree: Rc<Tree>,
    keys: Vec<usize>,
}

/// Picks one term per root (see the module docs). `baseline[i]` must be a term of `roots[i]`'s
/// class in `egraph` (a caller bug otherwise: panics).
pub fn extract(
    egraph: &LayoutGraph,
    roots: &[Id],
    baseline: &[RecExpr<Layout>],
    model: &dyn CostModel,
    exact_shared: usize,
) -> Extraction {
    assert_eq!(roots.len(), baseline.len(), "one baseline term per root");
    // Costly e-nodes get dense indices; free ones never matter.
    let mut index: HashMap<Layout, usize> = HashMap::new();
    let mut costs: Vec<Cost> = Vec::new();
    let mut candidate = |tree: Rc<Tree>| {
        let mut keys = Vec::new();
        for node in tree.nodes() {
            if let Some(&k) = index.get(&node) {
                keys.push(k);
                continue;
            }
            let cost = node_cost(egraph, &node, model);
            if cost > Cost::ZERO {
                index.insert(node, costs.len());
                keys.push(costs.len());
                costs.push(cost);
            }
        }
        Candidate { tree, keys }
    };
    let options: Vec<Vec<Candidate>> = roots
        .iter()
        .zip(baseline)
        .map(|(&root, base)| {
            let (base, class) =
                tree_of(egraph, base, model).expect("the baseline term is in the e-graph");
            assert_eq!(
                class,
                egraph.find(root),
                "the baseline term is in its root's class"
            );
            let base_expr = base.to_expr();
            let mut list = vec![candidate(base)];
            for tree in enumerate(egraph, root, &mut Vec::new(), model) {
                if tree.to_expr() != base_expr {
                    list.push(candidate(tree));
                }
            }
            list
        })
        .collect();
    let mut choice = vec![0usize; roots.len()];
    let baseline_cost = plan_cost(&options, &choice, &costs);
    let mut exact = true;
    for group in groups(&options, costs.len()) {
        exact &= solve_group(&options, &costs, &group, exact_shared, &mut choice);
    }
    Extraction {
        terms: choice
            .iter()
            .zip(&options)
            .map(|(&c, list)| list[c].tree.to_expr())
            .collect(),
        cost: plan_cost(&options, &choice, &costs),
        baseline_cost,
        exact,
    }
}

fn plan_cost(options: &[Vec<Candidate>], choice: &[usize], costs: &[Cost]) -> Cost {
    let mut used = vec![false; costs.len()];
    for (list, &c) in options.iter().zip(choice) {
        for &k in &list[c].keys {
            used[k] = true;
        }
    }
    costs
        .iter()
        .zip(&used)
        .filter(|(_, &u)| u)
        .map(|(c, _)| *c)
        .sum()
}

/// Roots that share a costly e-node (through any candidates) in one group, with the shared
/// e-nodes of the group.
fn groups(options: &[Vec<Candidate>], keys: usize) -> Vec<(Vec<usize>, Vec<usize>)> {
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); keys];
    for (r, list) in options.iter().enumerate() {
        for c in list {
            for &k in &c.keys {
                if users[k].last() != Some(&r) {
                    users[k].push(r);
                }
            }
        }
    }
    let mut parent: Vec<usize> = (0..options.len()).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for u in users.iter().filter(|u| u.len() >= 2) {
        for &r in &u[1..] {
            let (a, b) = (find(&mut parent, u[0]), find(&mut parent, r));
            parent[b] = a;
        }
    }
    let mut by_root: HashMap<usize, (Vec<usize>, Vec<usize>)> = HashMap::new();
    for r in 0..options.len() {
        let g = find(&mut parent, r);
        by_root.entry(g).or_default().0.push(r);
    }
    for (k, u) in users.iter().enumerate() {
        if u.len() >= 2 {
            let g = find(&mut parent, u[0]);
            by_root.get_mut(&g).expect("a group").1.push(k);
        }
    }
    let mut out: Vec<_> = by_root.into_values().collect();
    out.sort();
    out
}

/// Improves `choice` on one group; returns whether the group was solved exactly.
fn solve_group(
    options: &[Vec<Candidate>],
    costs: &[Cost],
    (roots, shared): &(Vec<usize>, Vec<usize>),
    exact_shared: usize,
    choice: &mut [usize],
) -> bool {
    if shared.len() <= exact_shared.min(MAX_EXACT_SHARED) {
        exact_group(options, costs, roots, shared, choice);
        true
    } else {
        descend(options, costs, roots, choice);
        false
    }
}

/// Tries every subset of the shared e-nodes as the paid ones.
fn exact_group(
    options: &[Vec<Candidate>],
    costs: &[Cost],
    roots: &[usize],
    shared: &[usize],
    choice: &mut [usize],
) {
    let bit: HashMap<usize, u32> = shared
        .iter()
        .enumerate()
        .map(|(i, &k)| (k, i as u32))
        .collect();
    // Per candidate: the shared e-nodes it needs (a mask) and the cost of the rest.
    let split: Vec<Vec<(u64, Cost)>> = roots
        .iter()
        .map(|&r| {
            options[r]
                .iter()
                .map(|c| {
                    let mut mask = 0u64;
                    let mut own = Cost::ZERO;
                    for &k in &c.keys {
                        match bit.get(&k) {
                            Some(&b) => mask |= 1 << b,
                            None => own += costs[k],
                        }
                    }
                    (mask, own)
                })
                .collect()
        })
        .collect();
    let group_cost = |picks: &[usize]| {
        let mut mask = 0u64;
        let mut total = Cost::ZERO;
        for (per, &p) in split.iter().zip(picks) {
            mask |= per[p].0;
            total += per[p].1;
        }
        total + open_cost(mask, shared, costs)
    };
    let mut best: Vec<usize> = roots.iter().map(|&r| choice[r]).collect();
    let mut best_cost = group_cost(&best);
    for mask in 0..(1u64 << shared.len()) {
        let mut picks = Vec::with_capacity(roots.len());
        let mut total = open_cost(mask, shared, costs);
        for per in &split {
            let pick = per
                .iter()
                .enumerate()
                .filter(|(_, (need, _))| need & !mask == 0)
                .min_by_key(|&(i, &(_, own))| (own, i));
            let Some((i, &(_, own))) = pick else {
                break;
            };
            picks.push(i);
            total += own;
        }
        if picks.len() == roots.len() && total < best_cost {
            // `total` may count a paid node nobody uses: the true cost is at most it.
            best_cost = group_cost(&picks);
            best = picks;
        }
    }
    for (&r, &p) in roots.iter().zip(&best) {
        choice[r] = p;
    }
}

fn open_cost(mask: u64, shared: &[usize], costs: &[Cost]) -> Cost {
    (0..shared.len())
        .filter(|b| mask >> b & 1 == 1)
        .map(|b| costs[shared[b]])
        .sum()
}

/// Local search: moves one root at a time to its cheapest candidate given what the other
/// roots already pay, while a move strictly lowers the total.
fn descend(options: &[Vec<Candidate>], costs: &[Cost], roots: &[usize], choice: &mut [usize]) {
    let mut count = vec![0usize; costs.len()];
    for &r in roots {
        for &k in &options[r][choice[r]].keys {
            count[k] += 1;
        }
    }
    for _round in 0..64 {
        let mut moved = false;
        for &r in roots {
            for &k in &options[r][choice[r]].keys {
                count[k] -= 1;
            }
            let extra = |c: &Candidate| -> Cost {
                c.keys
                    .iter()
                    .filter(|&&k| count[k] == 0)
                    .map(|&k| costs[k])
                    .sum()
            };
            let mut best = choice[r];
            let mut best_cost = extra(&options[r][best]);
            for (i, c) in options[r].iter().enumerate() {
                let cost = extra(c);
                if cost < best_cost {
                    best = i;
                    best_cost = cost;
                }
            }
            moved |= best != choice[r];
            choice[r] = best;
            for &k in &options[r][best].keys {
                count[k] += 1;
            }
        }
        if !moved {
            break;
        }
    }
}
