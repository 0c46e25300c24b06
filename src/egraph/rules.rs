//! The rewrite rules, one table per op family.
//!
//! Policy: every rule is an identity of the term semantics in [`Layout`]'s table, so any term
//! in a class computes the same thing (`tests/egraph.rs` evaluates them); the right-hand side is
//! never worse than the left for *some* runtime, and the cost model picks. Every rule fires on
//! some model of the zoo (`tests/zoo.rs` checks it; the report counts firings); a rule that
//! never does is deleted. Rules never fire on ill-typed terms.
//!
//! Termination: saturation is finite because every rule only adds terms from a finite set.
//! - No rule builds an order or a permutation: channel orders are the solver's, fixed before
//!   the e-graph is built, and the e-graph has no permutation term.
//! - Every tensor a new term reads is a subterm of the terms built from the requests.
//! - Every index set a new term holds is derived from a request's kept set by a fixed,
//!   non-repeating step: the set restricted to one concat block and shifted
//!   (`select-distributes-over-concat`), a run's span (`gather-of-range-is-slice`), a set's
//!   span or the set within its span (`consume-gather-as-padded-slice`), a range
//!   (`consume-slice-as-padded-full`), or the composition of two pads, whose result pads
//!   straight into the outer universe (`pad-of-pad-composes`: the nesting depth only drops).
//! - Selections move only toward the leaves (through `pointwise` and `concat`), never back.
//!
//! A custom applier (`Compute`) appears only where the right-hand side is computed (offsets,
//! spans, compositions); it checks types first and adds nothing when the rule does not apply.

use super::language::{num_of, set_of, tensor_of, IndexSet, Layout, LayoutGraph, Meta, Tables};
use egg::{rewrite as rw, Applier, Id, PatternAst, Rewrite, Subst, Symbol, Var};

pub type Rule = Rewrite<Layout, Tables>;

/// Every rule, family by family.
pub fn rules() -> Vec<Rule> {
    [selection(), distribution(), reads(), weights()].concat()
}

/// Selections on their own.
#[rustfmt::skip]
pub fn selection() -> Vec<Rule> {
    vec![
        // gather k x = slice k[0] (k[last]+1) x                      (k an ascending run)
        rw!("gather-of-range-is-slice"; "(gather ?k ?x)"  => { Compute(gather_of_range) }),
        // slice 0 L x = x                                             (x has L channels)
        rw!("full-slice-is-identity";   "(slice 0 ?b ?x)" => "?x" if channels_are("?x", "?b")),
    ]
}

/// Selections moved in front of the ops a tensor is made of, where the e-graph says how it is
/// made: a private chain of per-channel ops over a concat ([`super::ReadRequest::concat`]),
/// which no one else reads, so a selection may move in front of any of its ops.
#[rustfmt::skip]
pub fn distribution() -> Vec<Rule> {
    vec![
        // gather k (pointwise n x) = pointwise n (gather k x)
        rw!("select-distributes-over-pointwise"; "(gather ?k (pointwise ?n ?x))" => "(pointwise ?n (gather ?k ?x))" if typed()),
        // gather k (concat n x1 .. xm) = concat n (gather k1 x1) .. (gather km xm)
        //        (k ascending; ki its part in xi, shifted; empty parts left out. The concat keeps
        //        its id n even with one part: another concat of the same blocks is another
        //        tensor of the program, whose selections are not this one's)
        rw!("select-distributes-over-concat";    "(gather ?k ?x)" => { Compute(gather_over_concat) }),
    ]
}

/// How a consumer reads: a copy, or a wider read through zero weight columns.
#[rustfmt::skip]
pub fn reads() -> Vec<Rule> {
    vec![
        // consume c w (gather k x) = consume c (pad-cols (k-a) w) (slice a b x)
        //                                                  (k ascending with gaps, [a,b) its span)
        rw!("consume-gather-as-padded-slice";  "(consume ?c ?w (gather ?k ?x))"  => { Compute(gather_as_padded_slice) }),
        // consume c w (slice a b x) = consume c (pad-cols a..b w) x   ([a,b) not all of x)
        rw!("consume-slice-as-padded-full";    "(consume ?c ?w (slice ?a ?b ?x))" => { Compute(slice_as_padded_full) }),
    ]
}

/// Export-time weight transforms.
#[rustfmt::skip]
pub fn weights() -> Vec<Rule> {
    vec![
        // pad-cols k2 (pad-cols k1 w) = pad-cols (k2 . k1) w
        rw!("pad-of-pad-composes"; "(pad-cols ?k2 (pad-cols ?k1 ?w))" => { Compute(pad_of_pad) }),
    ]
}

/// A right-hand side computed from the match: `None` adds nothing; an ill-typed match is left
/// alone.
struct Compute(fn(&mut LayoutGraph, &Subst) -> Option<Id>);

impl Applier<Layout, Tables> for Compute {
    fn apply_one(
        &self,
        egraph: &mut LayoutGraph,
        eclass: Id,
        subst: &Subst,
        _searcher_ast: Option<&PatternAst<Layout>>,
        _rule_name: Symbol,
    ) -> Vec<Id> {
        if egraph[eclass].data == Meta::Invalid {
            return Vec::new();
        }
        match (self.0)(egraph, subst) {
            Some(id) if egraph.union(eclass, id) => vec![eclass],
            _ => Vec::new(),
        }
    }
}

fn var(name: &str) -> Var {
    name.parse().expect("a pattern variable")
}

/// The match is well typed.
fn typed() -> impl Fn(&mut LayoutGraph, Id, &Subst) -> bool {
    |egraph, eclass, _| egraph[eclass].data != Meta::Invalid
}

fn channels_are(x: &str, b: &str) -> impl Fn(&mut LayoutGraph, Id, &Subst) -> bool {
    let (x, b) = (var(x), var(b));
    move |egraph, eclass, subst| {
        let channels = tensor_of(egraph, subst[x]).map(|t| t.channels);
        egraph[eclass].data != Meta::Invalid
            && channels.is_some()
            && channels == num_of(egraph, subst[b])
    }
}

fn add_set(egraph: &mut LayoutGraph, set: IndexSet) -> Id {
    let id = egraph.analysis.intern(set);
    egraph.add(Layout::Set(id))
}

fn add_slice(egraph: &mut LayoutGraph, a: usize, b: usize, x: Id) -> Id {
    let (a, b) = (egraph.add(Layout::Num(a)), egraph.add(Layout::Num(b)));
    egraph.add(Layout::Slice([a, b, x]))
}

fn gather_of_range(egraph: &mut LayoutGraph, subst: &Subst) -> Option<Id> {
    let (a, b) = set_of(egraph, subst[var("?k")])?.as_run()?;
    Some(add_slice(egraph, a, b, subst[var("?x")]))
}

fn gather_as_padded_slice(egraph: &mut LayoutGraph, subst: &Subst) -> Option<Id> {
    let k = set_of(egraph, subst[var("?k")])?;
    if !k.is_ascending() || k.as_run().is_some() {
        return None; // unsorted: sort first; a run: it is a slice already
    }
    let (a, b) = (k.indices[0], k.indices[k.len() - 1] + 1);
    let shifted = IndexSet::new(b - a, k.indices.iter().map(|i| i - a).collect())?;
    let (c, w, x) = (subst[var("?c")], subst[var("?w")], subst[var("?x")]);
    let pad = add_set(egraph, shifted);
    let w = egraph.add(Layout::PadCols([pad, w]));
    let read = add_slice(egraph, a, b, x);
    Some(egraph.add(Layout::Consume([c, w, read])))
}

fn slice_as_padded_full(egraph: &mut LayoutGraph, subst: &Subst) -> Option<Id> {
    let a = num_of(egraph, subst[var("?a")])?;
    let b = num_of(egraph, subst[var("?b")])?;
    let channels = tensor_of(egraph, subst[var("?x")])?.channels;
    if a >= b || b > channels || (a, b) == (0, channels) {
        return None;
    }
    let (c, w, x) = (subst[var("?c")], subst[var("?w")], subst[var("?x")]);
    let pad = add_set(egraph, IndexSet::range(channels, a, b));
    let w = egraph.add(Layout::PadCols([pad, w]));
    Some(egraph.add(Layout::Consume([c, w, x])))
}

fn gather_over_concat(egraph: &mut LayoutGraph, subst: &Subst) -> Option<Id> {
    let k = set_of(egraph, subst[var("?k")])?.clone();
    if k.is_empty() || !k.is_ascending() {
        return None;
    }
    let concat = egraph[subst[var("?x")]]
        .nodes
        .iter()
        .find_map(|n| match n {
            Layout::Concat(children) => Some(children.clone()),
            _ => None,
        })?;
    let (&label, blocks) = concat.split_first()?;
    let mut parts = vec![label];
    let (mut offset, mut rest) = (0, k.indices.as_slice());
    for &block in blocks {
        let channels = tensor_of(egraph, block)?.channels;
        let (mine, after) = rest.split_at(rest.partition_point(|&i| i < offset + channels));
        rest = after;
        if !mine.is_empty() {
            let part = IndexSet::new(channels, mine.iter().map(|i| i - offset).collect())?;
            let part = add_set(egraph, part);
            parts.push(egraph.add(Layout::Gather([part, block])));
        }
        offset += channels;
    }
    Some(egraph.add(Layout::Concat(parts.into())))
}

fn pad_of_pad(egraph: &mut LayoutGraph, subst: &Subst) -> Option<Id> {
    let outer = set_of(egraph, subst[var("?k2")])?;
    let composed = outer.compose(set_of(egraph, subst[var("?k1")])?)?;
    let pad = add_set(egraph, composed);
    Some(egraph.add(Layout::PadCols([pad, subst[var("?w")]])))
}
