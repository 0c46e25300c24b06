//! Magnitude pruning: per-layer channel masks from weight norms (`nnirc prune`).
//!
//! Input: a checked [`Program`] and its [`Weights`]. Output: for every eligible layer, the
//! ascending list of channels it keeps ([`l1_masks`]), and an edit of the AST that writes
//! those lists as `keep_in` / `keep_out` masks ([`clear_masks`], [`set_masks`]), so that the
//! result prints with [`crate::syntax::print::print`], comments and all.
//!
//! The default is the reference recipe of the UPSCALE evaluation (DESIGN.md section 4): every
//! conv2d with groups == 1 that does not read a model input directly (the image stem) drops
//! the `floor(amount * C_in)` input channels whose weight columns have the smallest L1 norm.
//! Linear layers and depthwise/grouped convs are left alone unless asked for
//! ([`PruneConfig::include_linear`]); grouped convs can never carry a mask. On the output
//! side, a layer whose output channels reach a model output without passing through another
//! channel-mixing layer (the classifier, or a conv followed only by per-channel ops) is never
//! masked: its removed channels would be zeros in what the model returns ([`reaches_output`]
//! is part of [`is_eligible`], which every mask goes through).
//!
//! Invariants of every mask returned: strictly ascending, in range, non-empty (at least one
//! channel is kept), and a pure function of the weights and the config (ties are broken by
//! the lower channel index), so pruning is deterministic.

use crate::ir::{Op, Program};
use crate::syntax::ast::{File, Item, List, ListItem, Mask, MaskKind};
use crate::weights::Weights;
use petgraph::graph::NodeIndex;
use std::collections::HashMap;

/// How channels are scored; the lowest scores are pruned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    /// L1 norm of the channel's weight slice (columns for input channels, rows for output
    /// channels), summed over the other channel axis and the kernel positions.
    #[default]
    L1,
}

/// Which channels of a layer are pruned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Side {
    /// Input channels (`keep_in`), as in the UPSCALE paper.
    #[default]
    Input,
    /// Output channels (`keep_out`).
    Output,
}

impl Side {
    /// The mask this side writes.
    pub fn mask_kind(self) -> MaskKind {
        match self {
            Side::Input => MaskKind::KeepIn,
            Side::Output => MaskKind::KeepOut,
        }
    }

    /// `"input"` or `"output"`.
    pub fn name(self) -> &'static str {
        match self {
            Side::Input => "input",
            Side::Output => "output",
        }
    }
}

/// What to prune and how much.
#[derive(Debug, Clone, PartialEq)]
pub struct PruneConfig {
    pub method: Method,
    /// Fraction of each eligible layer's channels to prune, in `[0, 1)`: a layer with `C`
    /// channels on the chosen side loses `floor(amount * C)` of them (at most `C - 1`).
    pub amount: f64,
    pub side: Side,
    /// Also mask linear layers (by column or row L1 norm, like convs).
    pub include_linear: bool,
}

impl Default for PruneConfig {
    fn default() -> Self {
        PruneConfig {
            method: Method::L1,
            amount: 0.5,
            side: Side::Input,
            include_linear: false,
        }
    }
}

/// Whether `node` is pruned under `config`: a conv2d with groups == 1 (or, with
/// `include_linear`, a linear layer) whose input is not a model input, and, on the output
/// side, whose output does not [reach a model output](reaches_output).
pub fn is_eligible(program: &Program, node: NodeIndex, config: &PruneConfig) -> bool {
    let mixing = match &program.graph[node].op {
        Op::Conv2d(c) => c.groups == 1,
        Op::Linear => config.include_linear,
        _ => false,
    };
    mixing
        && program
            .operands(node)
            .first()
            .is_some_and(|&src| program.graph[src].op != Op::Input)
        && !(config.side == Side::Output && reaches_output(program, node))
}

/// Whether the channels `node` produces reach a model output: it is one, or one is reached
/// from it through ops that carry channels (anything but a channel-mixing layer, which makes
/// a new channel space). Iterative, so any depth of graph is fine.
pub fn reaches_output(program: &Program, node: NodeIndex) -> bool {
    let mut seen = vec![false; program.graph.node_count()];
    let mut stack = vec![node];
    seen[node.index()] = true;
    while let Some(n) = stack.pop() {
        if program.outputs.contains(&n) {
            return true;
        }
        for next in program.graph.neighbors(n) {
            if !seen[next.index()] && !program.graph[next].op.is_channel_mixing() {
                seen[next.index()] = true;
                stack.push(next);
            }
        }
    }
    false
}

/// The number of channels on `side` of an eligible layer (`C_in` or `C_out`).
pub fn channel_count(program: &Program, node: NodeIndex, side: Side) -> usize {
    let weight = program.param_shapes(node)[0];
    match side {
        Side::Input => weight[1],
        Side::Output => weight[0],
    }
}

/// The L1 norm of every channel on `side` of a layer whose weight is `[O, C, ...]` row-major:
/// `norm[c] = sum over o, k of |w[o, c, k]|` (input side) or `norm[o] = sum over c, k of
/// |w[o, c, k]|` (output side). The bias is not counted.
///
/// ```
/// use nnirc::prune::{l1_norms, Side};
/// // w[o, c] for O = 2, C = 3.
/// let w = [1.0, -2.0, 0.5, -1.0, 0.0, 0.25];
/// assert_eq!(l1_norms(&w, &[2, 3], Side::Input), vec![2.0, 2.0, 0.75]);
/// assert_eq!(l1_norms(&w, &[2, 3], Side::Output), vec![3.5, 1.25]);
/// ```
pub fn l1_norms(weight: &[f64], shape: &[usize], side: Side) -> Vec<f64> {
    let (outs, ins) = (shape[0], shape[1]);
    let kernel: usize = shape[2..].iter().product();
    assert_eq!(
        weight.len(),
        outs * ins * kernel,
        "weight data matches its shape"
    );
    let mut norms = vec![0.0; if side == Side::Input { ins } else { outs }];
    for o in 0..outs {
        for c in 0..ins {
            let start = (o * ins + c) * kernel;
            let sum: f64 = weight[start..start + kernel].iter().map(|v| v.abs()).sum();
            norms[if side == Side::Input { c } else { o }] += sum;
        }
    }
    norms
}

/// The channels kept when the `floor(amount * C)` lowest-scoring ones are pruned (at most
/// `C - 1`), ascending. Ties: the smaller score is pruned first, then the lower index.
///
/// ```
/// use nnirc::prune::keep_highest;
/// assert_eq!(keep_highest(&[3.0, 1.0, 2.0, 1.0], 0.5), vec![0, 2]);
/// assert_eq!(keep_highest(&[3.0, 1.0], 0.4), vec![0, 1]); // floor(0.8) = 0
/// ```
pub fn keep_highest(scores: &[f64], amount: f64) -> Vec<usize> {
    let total = scores.len();
    let prune = ((amount * total as f64).floor() as usize).min(total.saturating_sub(1));
    let mut order: Vec<usize> = (0..total).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    let mut kept = order.split_off(prune);
    kept.sort_unstable();
    kept
}

/// Masks for every eligible layer (see [`is_eligible`]) that loses at least one channel, in
/// node order: the node and the ascending channels it keeps on `config.side`. Layers where
/// `floor(amount * C) == 0` are left out (they keep everything).
///
/// `weights` must belong to `program` (as from [`crate::weights::load`] or
/// [`crate::weights::random`]). `config.amount` outside `[0, 1)` is a bug.
pub fn l1_masks(
    program: &Program,
    weights: &Weights,
    config: &PruneConfig,
) -> Vec<(NodeIndex, Vec<usize>)> {
    assert!(
        (0.0..1.0).contains(&config.amount),
        "prune amount {} is outside [0, 1)",
        config.amount
    );
    let Method::L1 = config.method;
    let mut masks = Vec::new();
    for node in program.graph.node_indices() {
        if !is_eligible(program, node, config) {
            continue;
        }
        let weight = program.graph[node].params[0];
        let norms = l1_norms(
            &weights.values(weight),
            &program.params[weight].shape,
            config.side,
        );
        let kept = keep_highest(&norms, config.amount);
        if kept.len() < norms.len() {
            masks.push((node, kept));
        }
    }
    masks
}

/// Removes every mask of `kind` from the model's statements; returns how many were removed.
pub fn clear_masks(file: &mut File, kind: MaskKind) -> usize {
    let Some(model) = &mut file.model else {
        return 0;
    };
    let mut removed = 0;
    for item in &mut model.items {
        if let Item::Node(stmt) = item {
            let before = stmt.masks.len();
            stmt.masks.retain(|m| m.kind != kind);
            removed += before - stmt.masks.len();
        }
    }
    removed
}

/// Writes `masks` (statement name without `%`, kept channels ascending) as masks of `kind`,
/// replacing a mask of that kind already on the statement and keeping the other kind. A new
/// `keep_in` goes before an existing `keep_out`, a new `keep_out` after an existing `keep_in`.
///
/// Nothing is changed unless every name is defined by a statement; otherwise the names that
/// are not are returned. The masks are not validated: lowering the result checks them.
///
/// ```
/// use nnirc::syntax::{ast::MaskKind, parse, print::print};
/// let src = "model m(%x: f32[1, 4]) -> (%y) {\n  param @w: f32[2, 4]\n  %y = linear(%x, @w)\n}\n";
/// let mut file = parse(src).file.unwrap();
/// nnirc::prune::set_masks(&mut file, MaskKind::KeepIn, &[("y", &[0, 1, 2][..])]).unwrap();
/// assert!(print(&file, "", &[]).contains("%y = linear(%x, @w) keep_in=[0..3]"));
/// ```
pub fn set_masks<S: AsRef<str>, K: AsRef<[usize]>>(
    file: &mut File,
    kind: MaskKind,
    masks: &[(S, K)],
) -> Result<(), Vec<String>> {
    let Some(model) = &mut file.model else {
        return Err(masks.iter().map(|(n, _)| n.as_ref().to_string()).collect());
    };
    let mut stmts: HashMap<&str, usize> = HashMap::new();
    for (i, item) in model.items.iter().enumerate() {
        if let Item::Node(stmt) = item {
            stmts.entry(stmt.result.text.as_str()).or_insert(i);
        }
    }
    let mut targets = Vec::with_capacity(masks.len());
    let mut unknown = Vec::new();
    for (name, kept) in masks {
        match stmts.get(name.as_ref()) {
            Some(&i) => targets.push((i, kept.as_ref())),
            None => unknown.push(name.as_ref().to_string()),
        }
    }
    if !unknown.is_empty() {
        return Err(unknown);
    }
    for (i, kept) in targets {
        let Item::Node(stmt) = &mut model.items[i] else {
            unreachable!("indexed statements are nodes");
        };
        // New masks get an empty span at the end of the statement (spans are only used to
        // place comments, which attach to the statement).
        let at = stmt.span.end..stmt.span.end;
        let list = List {
            items: kept
                .iter()
                .map(|&c| (ListItem::Int(c as i64), at.clone()))
                .collect(),
            span: at.clone(),
        };
        let mask = Mask {
            kind,
            list,
            span: at,
        };
        if let Some(old) = stmt.masks.iter_mut().find(|m| m.kind == kind) {
            *old = Mask {
                span: old.span.clone(),
                ..mask
            };
        } else if kind == MaskKind::KeepIn {
            stmt.masks.insert(0, mask);
        } else {
            stmt.masks.push(mask);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prunes_everything() {
        assert_eq!(keep_highest(&[1.0], 0.99), vec![0]);
        assert_eq!(keep_highest(&[2.0, 1.0, 3.0], 0.999), vec![2]);
        assert_eq!(keep_highest(&[], 0.5), Vec::<usize>::new());
    }

    #[test]
    fn ties_prune_the_lower_index_first() {
        assert_eq!(keep_highest(&[1.0, 1.0, 1.0, 1.0], 0.5), vec![2, 3]);
        assert_eq!(keep_highest(&[2.0, 1.0, 1.0, 2.0], 0.25), vec![0, 2, 3]);
    }

    #[test]
    fn conv_norms_sum_kernel_positions() {
        // w[o, c, k] with O = 1, C = 2, K = 2.
        let w = [1.0, -1.0, 0.5, 0.5];
        assert_eq!(l1_norms(&w, &[1, 2, 1, 2], Side::Input), vec![2.0, 1.0]);
        assert_eq!(l1_norms(&w, &[1, 2, 1, 2], Side::Output), vec![3.0]);
    }
}

/// One layer [`prune`] masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunedLayer {
    /// The statement's result name (without `%`).
    pub name: String,
    /// Channels kept.
    pub kept: usize,
    /// Channels on the pruned side.
    pub channels: usize,
}

/// What [`prune`] produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Pruned {
    /// The model's source in canonical form (comments kept) with the new masks.
    pub text: String,
    /// The masked layers, in node order.
    pub layers: Vec<PrunedLayer>,
    /// How many layers the recipe may mask.
    pub eligible: usize,
    /// How many masks of the pruned side the input had (all are replaced).
    pub replaced: usize,
}

/// Prunes a model: the library entry of `nnirc prune`. `parsed` and `program` are `source`
/// parsed and lowered ([`crate::compile`]); every existing mask of the chosen side is replaced
/// by the recipe's, masks of the other side are kept.
///
/// ```
/// use nnirc::prune::{prune, PruneConfig};
/// let source = "model m(%x: f32[1, 4, 2, 2]) -> (%y) {
///   param @a: f32[4, 4, 1, 1]
///   param @b: f32[2, 4, 1, 1]
///   %h = conv2d(%x, @a)
///   %y = conv2d(%h, @b)
/// }
/// ";
/// let compiled = nnirc::compile(source);
/// let program = compiled.program.as_ref().unwrap();
/// let weights = nnirc::weights::random(program, 0);
/// let config = PruneConfig { amount: 0.5, ..Default::default() };
/// let pruned = prune(source, &compiled.parsed, program, &weights, &config);
/// // %h reads the model input (the stem rule); %y loses 2 of its 4 input channels.
/// assert_eq!(pruned.eligible, 1);
/// assert_eq!((pruned.layers[0].kept, pruned.layers[0].channels), (2, 4));
/// assert!(pruned.text.contains("%y = conv2d(%h, @b) keep_in=["));
/// ```
pub fn prune(
    source: &str,
    parsed: &crate::syntax::Parsed,
    program: &Program,
    weights: &Weights,
    config: &PruneConfig,
) -> Pruned {
    let masks = l1_masks(program, weights, config);
    let kind = config.side.mask_kind();
    let mut file = parsed.file.clone().expect("a program means a tree");
    let replaced = clear_masks(&mut file, kind);
    let named: Vec<(&str, &[usize])> = masks
        .iter()
        .map(|(n, kept)| (program.graph[*n].name.as_str(), kept.as_slice()))
        .collect();
    set_masks(&mut file, kind, &named).expect("every node of a program is a statement");
    let layers = masks
        .iter()
        .map(|(n, kept)| PrunedLayer {
            name: program.graph[*n].name.clone(),
            kept: kept.len(),
            channels: channel_count(program, *n, config.side),
        })
        .collect();
    Pruned {
        text: crate::syntax::print::print(&file, source, &parsed.comments),
        layers,
        eligible: program
            .graph
            .node_indices()
            .filter(|&n| is_eligible(program, n, config))
            .count(),
        replaced,
    }
}
