//! Pruning: channel masks from weight scores (`nnirc prune`).
//!
//! Input: a checked [`Program`] and its [`Weights`]. Output: for every pruned layer, the
//! ascending list of channels it keeps ([`masks`]), written into the source as `keep_in` /
//! `keep_out` masks by [`prune`] (through [`clear_masks`] and [`set_masks`]).
//!
//! The pipeline: [`groups`] forms the *units* that share one mask (each eligible consumer on
//! the input side; each coupled group of producers on the output side), [`scores`] scores
//! every unit's channels by [`Method`], then one of three selections keeps channels:
//! - per unit (default): the `floor(amount * C)` lowest-scoring channels of each unit go;
//! - `global`: every unit's scores are LAMP-normalised ([`scores::lamp`]) and one threshold
//!   removes `floor(amount * total)` channels across all units (global LAMP: magnitude pruning
//!   with per-layer amounts chosen automatically);
//! - `sp-lamp`: one width per unit from the [`knapsack`] under a latency budget: per coupled
//!   group on the output side ([`latency`]), per consumer on the input side, where the cost
//!   is the predicted latency of the export the masks will get ([`export_aware`]).
//!
//! The default is the reference recipe of the UPSCALE evaluation (DESIGN.md section 4): every
//! conv2d with groups == 1 that does not read a model input directly (the image stem) drops
//! the `floor(amount * C_in)` input channels whose weight columns have the smallest L1 norm.
//! Linear layers are left alone unless asked for ([`PruneConfig::include_linear`]); grouped
//! and depthwise convs can never carry a mask. On the output side, a layer whose output
//! channels reach a model output without passing through another channel-mixing layer is never
//! masked: its removed channels would be zeros in what the model returns ([`reaches_output`]
//! is part of [`is_eligible`], which every mask goes through).
//!
//! Invariants of every result: masks strictly ascending, in range, non-empty: every unit keeps
//! at least its best channel (the one LAMP scores 1); on the output side all producers of a
//! group keep the same (tied) channels; and a pure function of the weights and the config
//! (stable sorts, ties broken by the lower channel index, then the earlier unit).

mod edit;
pub mod export_aware;
pub mod groups;
pub mod knapsack;
pub mod latency;
pub mod scores;

pub use edit::{clear_masks, set_masks};
pub use groups::Unit;
pub use latency::{
    macs, ExportLatency, GroupRow, LatencyBudget, LatencyReport, LatencySource, MacsLatency,
    NodeLatency, NodeRow,
};
pub use scores::l1_norms;

use crate::analysis;
use crate::diag::Span;
use crate::ir::{Op, Program};
use crate::syntax::ast::MaskKind;
use crate::weights::Weights;
use petgraph::graph::NodeIndex;

/// How channels are scored; the lowest scores are pruned (formulas: [`scores`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    /// L1 norm of the channel's weight slices (columns on the input side, rows on the output
    /// side).
    #[default]
    L1,
    /// L2 norm of the channel's weight slices.
    L2,
    /// FPGM: the sum of L2 distances to the unit's other filters (the most central go first).
    Fpgm,
    /// |gamma| of the batch norm after the layer (an error where there is none).
    BnScale,
    /// Squared L2 norm (plus the batch norm's gamma^2 on the output side); LAMP-normalised
    /// with --global. Per layer it keeps the same channels as l2.
    Lamp,
    /// SP-LAMP: LAMP scores, one width per unit chosen by a knapsack under a latency budget:
    /// per coupled group on the output side; per consumer on the input side, priced by the
    /// export ([`export_aware`]).
    SpLamp,
}

/// Which channels of a layer are pruned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Side {
    /// Input channels (`keep_in`), each consumer on its own (unconstrained), as in the
    /// UPSCALE paper.
    #[default]
    Input,
    /// Output channels (`keep_out`), one mask per coupled group of producers (structured,
    /// constrained).
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
    /// Fraction of channels to prune, in `[0, 1)`: per unit, a unit with `C` channels loses
    /// `floor(amount * C)` of them (at most `C - 1`); with `global`, `floor(amount * total)`
    /// across all units. Not used by sp-lamp.
    pub amount: f64,
    pub side: Side,
    /// Also mask linear layers (by column or row scores, like convs).
    pub include_linear: bool,
    /// One threshold on LAMP-normalised scores across all units.
    pub global: bool,
    /// sp-lamp: the latency budget (required there, refused elsewhere).
    pub budget: Option<LatencyBudget>,
    /// sp-lamp: kept widths are multiples of this (or a group's full width).
    pub width_step: usize,
    /// sp-lamp: the latency predictor (required there).
    pub latency: Option<LatencySource>,
}

impl Default for PruneConfig {
    fn default() -> Self {
        PruneConfig {
            method: Method::L1,
            amount: 0.5,
            side: Side::Input,
            include_linear: false,
            global: false,
            budget: None,
            width_step: 8,
            latency: None,
        }
    }
}

impl PruneConfig {
    /// Whether the options fit together.
    pub fn check(&self) -> Result<(), PruneError> {
        let bad = |m: &str| Err(PruneError::Config(m.to_string()));
        if !(0.0..1.0).contains(&self.amount) {
            return Err(PruneError::Config(format!(
                "the amount {} is outside [0, 1)",
                self.amount
            )));
        }
        if self.width_step == 0 {
            return bad("the width step must be at least 1");
        }
        if self.method != Method::SpLamp {
            if self.budget.is_some() || self.latency.is_some() {
                return bad("a latency budget or predictor only applies to --method sp-lamp");
            }
            return Ok(());
        }
        if self.global {
            return bad("sp-lamp is global already (one knapsack over all groups): drop --global");
        }
        if self.budget.is_none() {
            return bad("sp-lamp needs a latency budget (--latency-budget)");
        }
        if self.latency.is_none() {
            return bad(
                "sp-lamp needs a latency predictor: --latency-table T (measured by `nnirc \
                 latency measure`) or --latency-proxy macs",
            );
        }
        Ok(())
    }
}

/// Why [`prune`] gave no result.
#[derive(Debug, Clone, PartialEq)]
pub enum PruneError {
    /// The options do not fit together (a usage error).
    Config(String),
    /// The method cannot score this model; the statement it stopped at.
    Model {
        message: String,
        name: String,
        span: Span,
    },
    /// sp-lamp: the budget cannot be met, or the predictor gave an unusable value.
    Latency(String),
}

impl std::fmt::Display for PruneError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PruneError::Config(m) | PruneError::Latency(m) => f.write_str(m),
            PruneError::Model { message, name, .. } => write!(f, "%{name}: {message}"),
        }
    }
}

impl std::error::Error for PruneError {}

/// Whether `node` may be masked under `config`: a conv2d with groups == 1 (or, with
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
    keep_top(scores, total - prune)
}

/// The `k` highest-scoring channels, ascending (ties: the higher index is kept).
///
/// ```
/// use nnirc::prune::keep_top;
/// assert_eq!(keep_top(&[3.0, 1.0, 2.0, 1.0], 3), vec![0, 2, 3]);
/// ```
pub fn keep_top(scores: &[f64], k: usize) -> Vec<usize> {
    let mut kept = scores::ascending(scores).split_off(scores.len().saturating_sub(k));
    kept.sort_unstable();
    kept
}

/// Everything the pruner decided.
struct Plan {
    /// Pruned layers in node order with the channels they keep.
    masks: Vec<(NodeIndex, Vec<usize>)>,
    /// Layers the recipe may mask (members of units).
    eligible: usize,
    /// Units (layers on the input side, coupled groups on the output side).
    units: usize,
    latency: Option<LatencyReport>,
    sp_lamp_score: KeptScore,
}

/// The SP-LAMP score that masks keep, whatever method chose them: per unit, the
/// [LAMP](scores::lamp)-normalised SP-LAMP scores summed over the kept channels, summed over
/// the units. On the output side a unit is a coupled group and a score is a squared filter
/// norm plus the batch norms' `gamma^2`; on the input side a unit is a consumer and a score a
/// squared weight-column norm. It is the objective sp-lamp's knapsack maximises, so masks from
/// `l1`, `lamp --global` and `sp-lamp` of one side can be compared on one scale.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct KeptScore {
    /// The sum over the kept channels.
    pub kept: f64,
    /// The sum over all channels of the groups (what keeping everything scores).
    pub total: f64,
}

/// [`KeptScore`] of `kept[u]` (ascending channels of unit `u`) given each unit's raw SP-LAMP
/// scores.
fn kept_score(sp_scores: &[Vec<f64>], kept: &[Vec<usize>]) -> KeptScore {
    let (mut k, mut total) = (0.0, 0.0);
    for (s, kept) in sp_scores.iter().zip(kept) {
        let l = scores::lamp(s);
        k += kept.iter().map(|&c| l[c]).sum::<f64>();
        total += l.iter().sum::<f64>();
    }
    KeptScore { kept: k, total }
}

fn plan(program: &Program, weights: &Weights, config: &PruneConfig) -> Result<Plan, PruneError> {
    config.check()?;
    let prov = analysis::provenance(program);
    let segs = analysis::segment(program, &prov);
    let (units, group_of_segment) = match config.side {
        Side::Input => (groups::input_units(program, config), Vec::new()),
        Side::Output => groups::output_groups(program, config, &prov, &segs),
    };
    let scores = units
        .iter()
        .map(|u| scores::unit_scores(program, weights, &prov, u, config.method, config.side))
        .collect::<Result<Vec<_>, _>>()?;
    let mut latency = None;
    let kept: Vec<Vec<usize>> = if config.method == Method::SpLamp {
        let lamps: Vec<Vec<f64>> = scores.iter().map(|s| scores::lamp(s)).collect();
        let predictor = config.latency.as_ref().expect("checked").0.as_ref();
        let budget = config.budget.expect("checked");
        let (widths, report) = match config.side {
            Side::Output => latency::choose_widths(
                program,
                &prov,
                &segs,
                &units,
                &group_of_segment,
                &lamps,
                predictor,
                budget,
                config.width_step,
            )?,
            Side::Input => export_aware::choose_input_widths(
                program,
                &units,
                &lamps,
                predictor,
                budget,
                config.width_step,
            )?,
        };
        latency = Some(report);
        scores
            .iter()
            .zip(widths)
            .map(|(s, k)| keep_top(s, k))
            .collect()
    } else if config.global {
        global_lamp(&scores, config.amount)
    } else {
        scores
            .iter()
            .map(|s| keep_highest(s, config.amount))
            .collect()
    };
    let sp_lamp_score = match config.method {
        Method::Lamp | Method::SpLamp => kept_score(&scores, &kept),
        _ => {
            let sp = units
                .iter()
                .map(|u| {
                    scores::unit_scores(program, weights, &prov, u, Method::SpLamp, config.side)
                })
                .collect::<Result<Vec<_>, _>>()?;
            kept_score(&sp, &kept)
        }
    };
    let mut masks = Vec::new();
    for ((unit, kept), s) in units.iter().zip(&kept).zip(&scores) {
        if kept.len() == s.len() {
            continue;
        }
        for (node, map) in &unit.members {
            let mut own: Vec<usize> = kept.iter().map(|&u| map[u]).collect();
            own.sort_unstable();
            masks.push((*node, own));
        }
    }
    masks.sort_by_key(|(n, _)| *n);
    Ok(Plan {
        masks,
        eligible: units.iter().map(|u| u.members.len()).sum(),
        units: units.len(),
        latency,
        sp_lamp_score,
    })
}

/// Global LAMP: the channels each unit keeps when one threshold on LAMP scores removes
/// `floor(amount * total)` channels across all units (each unit's score-1 channel is never a
/// candidate). Ties: the lower score, then the earlier unit, then the lower channel.
fn global_lamp(scores: &[Vec<f64>], amount: f64) -> Vec<Vec<usize>> {
    let total: usize = scores.iter().map(Vec::len).sum();
    let mut pool: Vec<(f64, usize, usize)> = Vec::new();
    for (u, s) in scores.iter().enumerate() {
        let l = scores::lamp(s);
        let order = scores::ascending(s);
        let best = order.last().copied();
        pool.extend(
            (0..s.len())
                .filter(|&c| Some(c) != best)
                .map(|c| (l[c], u, c)),
        );
    }
    pool.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let count = ((amount * total as f64).floor() as usize).min(pool.len());
    let mut removed: Vec<Vec<bool>> = scores.iter().map(|s| vec![false; s.len()]).collect();
    for &(_, u, c) in &pool[..count] {
        removed[u][c] = true;
    }
    removed
        .iter()
        .map(|r| (0..r.len()).filter(|&c| !r[c]).collect())
        .collect()
}

/// Masks for every layer the config prunes, in node order: the node and the ascending
/// channels it keeps on `config.side`. Units that keep everything are left out.
///
/// `weights` must belong to `program` (as from [`crate::weights::load`] or
/// [`crate::weights::random`]).
pub fn masks(
    program: &Program,
    weights: &Weights,
    config: &PruneConfig,
) -> Result<Vec<(NodeIndex, Vec<usize>)>, PruneError> {
    Ok(plan(program, weights, config)?.masks)
}

/// One layer [`prune`] masked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
    /// How many layers the config may mask.
    pub eligible: usize,
    /// How many units they form (layers on the input side, coupled groups on the output side).
    pub units: usize,
    /// How many masks of the pruned side the input had (all are replaced).
    pub replaced: usize,
    /// sp-lamp: the widths chosen and the predicted latency.
    pub latency: Option<LatencyReport>,
    /// The SP-LAMP score the masks keep (any method; per side, see [`KeptScore`]).
    pub sp_lamp_score: KeptScore,
}

/// Prunes a model: the library entry of `nnirc prune`. `parsed` and `program` are `source`
/// parsed and lowered ([`crate::compile`]); every existing mask of the chosen side is replaced
/// by the pruner's, masks of the other side are kept.
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
/// let pruned = prune(source, &compiled.parsed, program, &weights, &config).unwrap();
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
) -> Result<Pruned, PruneError> {
    let plan = plan(program, weights, config)?;
    let kind = config.side.mask_kind();
    let mut file = parsed.file.clone().expect("a program means a tree");
    let replaced = clear_masks(&mut file, kind);
    let named: Vec<(&str, &[usize])> = plan
        .masks
        .iter()
        .map(|(n, kept)| (program.graph[*n].name.as_str(), kept.as_slice()))
        .collect();
    set_masks(&mut file, kind, &named).expect("every node of a program is a statement");
    let layers = plan
        .masks
        .iter()
        .map(|(n, kept)| PrunedLayer {
            name: program.graph[*n].name.clone(),
            kept: kept.len(),
            channels: channel_count(program, *n, config.side),
        })
        .collect();
    Ok(Pruned {
        text: crate::syntax::print::print(&file, source, &parsed.comments),
        layers,
        eligible: plan.eligible,
        units: plan.units,
        replaced,
        latency: plan.latency,
        sp_lamp_score: plan.sp_lamp_score,
    })
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
    fn global_lamp_by_hand() {
        // Unit 0: squared norms [3, 1, 4, 2] -> LAMP [3/7, 1/10, 1, 2/9].
        // Unit 1: [5, 5] -> LAMP [1/2, 1]. Total 6 channels; amount 0.5 removes 3 of the 4
        // candidates (the score-1 channels, 0/2 and 1/1, are never candidates):
        // 1/10 (0/1), 2/9 (0/3), 3/7 (0/0); 1/2 (1/0) stays.
        let kept = global_lamp(&[vec![3.0, 1.0, 4.0, 2.0], vec![5.0, 5.0]], 0.5);
        assert_eq!(kept, vec![vec![2], vec![0, 1]]);
        // Everything that may go, goes; every unit keeps its score-1 channel.
        let kept = global_lamp(&[vec![3.0, 1.0, 4.0, 2.0], vec![5.0, 5.0]], 0.99);
        assert_eq!(kept, vec![vec![2], vec![1]]);
        assert_eq!(global_lamp(&[vec![1.0, 2.0]], 0.0), vec![vec![0, 1]]);
    }

    #[test]
    fn config_checks() {
        let ok = PruneConfig::default();
        assert_eq!(ok.check(), Ok(()));
        let sp = PruneConfig {
            method: Method::SpLamp,
            side: Side::Output,
            budget: Some(LatencyBudget::Fraction(0.5)),
            latency: Some(LatencySource(std::sync::Arc::new(MacsLatency))),
            ..ok.clone()
        };
        assert_eq!(sp.check(), Ok(()));
        for bad in [
            PruneConfig {
                amount: 1.0,
                ..ok.clone()
            },
            PruneConfig {
                width_step: 0,
                ..ok.clone()
            },
            PruneConfig {
                budget: Some(LatencyBudget::Ms(1.0)),
                ..ok.clone()
            },
            PruneConfig {
                global: true,
                ..sp.clone()
            },
            PruneConfig {
                budget: None,
                ..sp.clone()
            },
            PruneConfig {
                latency: None,
                ..sp.clone()
            },
        ] {
            assert!(matches!(bad.check(), Err(PruneError::Config(_))), "{bad:?}");
        }
    }
}
