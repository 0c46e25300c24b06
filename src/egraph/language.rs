//! The term language of channel layouts, its side tables, and its type analysis.
//!
//! Invariants: index lists never appear in terms; a term names them by a [`SetId`] (`k3`)
//! interned in [`Tables`], so equal lists are one e-node. Every e-class has one [`Meta`]
//! (a number, a set, a tensor with its channel count, or a weight with its column count);
//! rules only ever merge classes of equal `Meta` (a merge of different types is a bug and
//! panics), and an ill-typed hand-written term gets [`Meta::Invalid`], on which no rule fires.

use egg::{define_language, Analysis, DidMerge, EGraph, Id};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

define_language! {
    /// Channel-layout terms. Tensors are values with a channel axis; weights are matrices whose
    /// columns are input channels and rows output channels. Index lists are [`SetId`]s.
    ///
    /// | term | meaning |
    /// |---|---|
    /// | `(tensor N)` | tensor leaf `N` of [`Tables`] |
    /// | `(weight N)` | weight leaf `N` of [`Tables`] |
    /// | `(gather k x)` | `y[i] = x[k[i]]` (a copy) |
    /// | `(slice a b x)` | `y[i] = x[a + i]` for `i < b - a` |
    /// | `(consume c w x)` | consumer `c`: `y = sum_i w[:, i] x[i]` |
    /// | `(pad-cols k w)` | `k.universe` columns: column `k[i]` is column `i` of `w`, others zero |
    /// | `(pointwise n x)` | per-channel op `n` (batch norm, activation) of `x`: channel `i` depends on `x[i]` only |
    /// | `(concat n x1 .. xk)` | concat op `n`: the channels of `x1`, then of `x2`, ... |
    ///
    /// Weight transforms are done once at export time; `gather`, `slice`, `pointwise` and
    /// `concat` run at inference time. Channel orders are not terms: every tensor is already
    /// in its segment's order (the solver's).
    ///
    /// ```
    /// use nnirc::egraph::Layout;
    /// let term: egg::RecExpr<Layout> = "(consume 0 (weight 0) (gather k0 (tensor 0)))".parse().unwrap();
    /// assert_eq!(term.to_string(), "(consume 0 (weight 0) (gather k0 (tensor 0)))");
    /// ```
    pub enum Layout {
        "tensor" = Tensor(Id),
        "weight" = Weight(Id),
        "gather" = Gather([Id; 2]),
        "slice" = Slice([Id; 3]),
        "consume" = Consume([Id; 3]),
        "pad-cols" = PadCols([Id; 2]),
        "pointwise" = Pointwise([Id; 2]),
        "concat" = Concat(Box<[Id]>),
        Num(usize),
        Set(SetId),
    }
}

/// The id of an interned [`IndexSet`]; written `k<n>` in terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SetId(pub u32);

impl fmt::Display for SetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "k{}", self.0)
    }
}

impl FromStr for SetId {
    type Err = String;
    fn from_str(s: &str) -> Result<SetId, String> {
        s.strip_prefix('k')
            .and_then(|n| n.parse().ok())
            .map(SetId)
            .ok_or_else(|| format!("not an index-set id: {s}"))
    }
}

/// An index list into `0..universe` (a selection or a padding pattern).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IndexSet {
    pub universe: usize,
    pub indices: Vec<usize>,
}

impl IndexSet {
    /// `None` if an index is out of range.
    pub fn new(universe: usize, indices: Vec<usize>) -> Option<IndexSet> {
        indices
            .iter()
            .all(|&i| i < universe)
            .then_some(IndexSet { universe, indices })
    }

    /// `start..end` within `0..universe`.
    pub fn range(universe: usize, start: usize, end: usize) -> IndexSet {
        assert!(start <= end && end <= universe, "range out of bounds");
        IndexSet {
            universe,
            indices: (start..end).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.indices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    pub fn is_ascending(&self) -> bool {
        self.indices.windows(2).all(|w| w[0] < w[1])
    }

    /// Ascending with no gap: `Some((first, last + 1))`.
    pub fn as_run(&self) -> Option<(usize, usize)> {
        let (&a, &b) = (self.indices.first()?, self.indices.last()?);
        (self.is_ascending() && b - a + 1 == self.len()).then_some((a, b + 1))
    }

    pub fn is_distinct(&self) -> bool {
        let mut seen = vec![false; self.universe];
        self.indices
            .iter()
            .all(|&i| i < self.universe && !std::mem::replace(&mut seen[i], true))
    }

    /// `i -> self[inner[i]]`: the indices of `inner`, looked up in `self`.
    pub fn compose(&self, inner: &IndexSet) -> Option<IndexSet> {
        (inner.universe == self.len()).then(|| IndexSet {
            universe: self.universe,
            indices: inner.indices.iter().map(|&i| self.indices[i]).collect(),
        })
    }
}

/// A tensor leaf: its channel count and the bytes one channel holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TensorInfo {
    pub channels: usize,
    pub bytes_per_channel: u64,
}

/// A weight leaf: rows (output channels), columns (input channels), the multiply-adds one
/// column costs per inference, and the bytes per channel of the tensor it computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WeightInfo {
    pub rows: usize,
    pub columns: usize,
    pub macs_per_column: u64,
    pub bytes_per_row: u64,
}

/// The type of an e-class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Meta {
    Num(usize),
    Set(SetId),
    Tensor(TensorInfo),
    Weight(WeightInfo),
    /// An ill-typed term (only hand-written terms; rules check types before adding).
    Invalid,
}

/// The side tables (interned index sets, tensor and weight leaves), which are also the type
/// analysis of the e-graph.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    sets: Vec<IndexSet>,
    set_ids: HashMap<IndexSet, SetId>,
    tensors: Vec<TensorInfo>,
    weights: Vec<WeightInfo>,
}

impl Tables {
    /// The id of `set`, the same for equal sets.
    pub fn intern(&mut self, set: IndexSet) -> SetId {
        if let Some(&id) = self.set_ids.get(&set) {
            return id;
        }
        let id = SetId(u32::try_from(self.sets.len()).expect("fewer than 2^32 index sets"));
        self.sets.push(set.clone());
        self.set_ids.insert(set, id);
        id
    }

    pub fn set(&self, id: SetId) -> &IndexSet {
        &self.sets[id.0 as usize]
    }

    /// Registers a tensor leaf; returns its `N` for `(tensor N)`.
    pub fn add_tensor(&mut self, info: TensorInfo) -> usize {
        self.tensors.push(info);
        self.tensors.len() - 1
    }

    /// Registers a weight leaf; returns its `N` for `(weight N)`.
    pub fn add_weight(&mut self, info: WeightInfo) -> usize {
        self.weights.push(info);
        self.weights.len() - 1
    }

    pub fn tensor(&self, n: usize) -> Option<&TensorInfo> {
        self.tensors.get(n)
    }

    pub fn weight(&self, n: usize) -> Option<&WeightInfo> {
        self.weights.get(n)
    }
}

/// The e-graph of layout terms.
pub type LayoutGraph = EGraph<Layout, Tables>;

/// The interned set behind class `id`, if it is one.
pub fn set_of(egraph: &LayoutGraph, id: Id) -> Option<&IndexSet> {
    match egraph[id].data {
        Meta::Set(s) => Some(egraph.analysis.set(s)),
        _ => None,
    }
}

pub fn num_of(egraph: &LayoutGraph, id: Id) -> Option<usize> {
    match egraph[id].data {
        Meta::Num(n) => Some(n),
        _ => None,
    }
}

pub fn tensor_of(egraph: &LayoutGraph, id: Id) -> Option<TensorInfo> {
    match egraph[id].data {
        Meta::Tensor(t) => Some(t),
        _ => None,
    }
}

pub fn weight_of(egraph: &LayoutGraph, id: Id) -> Option<WeightInfo> {
    match egraph[id].data {
        Meta::Weight(w) => Some(w),
        _ => None,
    }
}

/// The type of `node` given its children's types; each op's rule sits here.
fn type_of(egraph: &LayoutGraph, node: &Layout) -> Option<Meta> {
    let set = |id: Id| set_of(egraph, id);
    let tensor = |id: Id| tensor_of(egraph, id);
    let weight = |id: Id| weight_of(egraph, id);
    let meta = match node {
        Layout::Num(n) => Meta::Num(*n),
        Layout::Set(s) => Meta::Set(*s),
        Layout::Tensor(n) => Meta::Tensor(*egraph.analysis.tensor(num_of(egraph, *n)?)?),
        Layout::Weight(n) => Meta::Weight(*egraph.analysis.weight(num_of(egraph, *n)?)?),
        Layout::Gather([k, x]) => {
            let (k, x) = (set(*k)?, tensor(*x)?);
            (k.universe == x.channels).then_some(Meta::Tensor(TensorInfo {
                channels: k.len(),
                ..x
            }))?
        }
        Layout::Slice([a, b, x]) => {
            let (a, b, x) = (num_of(egraph, *a)?, num_of(egraph, *b)?, tensor(*x)?);
            (a < b && b <= x.channels).then_some(Meta::Tensor(TensorInfo {
                channels: b - a,
                ..x
            }))?
        }
        Layout::Consume([c, w, x]) => {
            num_of(egraph, *c)?;
            let (w, x) = (weight(*w)?, tensor(*x)?);
            (w.columns == x.channels).then_some(Meta::Tensor(TensorInfo {
                channels: w.rows,
                bytes_per_channel: w.bytes_per_row,
            }))?
        }
        Layout::PadCols([k, w]) => {
            let (k, w) = (set(*k)?, weight(*w)?);
            (k.len() == w.columns && k.is_distinct()).then_some(Meta::Weight(WeightInfo {
                columns: k.universe,
                ..w
            }))?
        }
        Layout::Pointwise([n, x]) => {
            num_of(egraph, *n)?;
            Meta::Tensor(tensor(*x)?)
        }
        Layout::Concat(children) => {
            let (n, blocks) = children.split_first()?;
            num_of(egraph, *n)?;
            let blocks: Vec<TensorInfo> =
                blocks.iter().map(|&b| tensor(b)).collect::<Option<_>>()?;
            let bytes_per_channel = blocks.first()?.bytes_per_channel;
            blocks
                .iter()
                .all(|b| b.bytes_per_channel == bytes_per_channel)
                .then_some(Meta::Tensor(TensorInfo {
                    channels: blocks.iter().map(|b| b.channels).sum(),
                    bytes_per_channel,
                }))?
        }
    };
    Some(meta)
}

impl Analysis<Layout> for Tables {
    type Data = Meta;

    fn make(egraph: &mut LayoutGraph, enode: &Layout, _id: Id) -> Meta {
        type_of(egraph, enode).unwrap_or(Meta::Invalid)
    }

    fn merge(&mut self, a: &mut Meta, b: Meta) -> DidMerge {
        assert_eq!(*a, b, "a rewrite merged e-classes of different types");
        DidMerge(false, false)
    }
}
