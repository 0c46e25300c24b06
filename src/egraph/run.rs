//! Saturation: run [`rules`](super::rules) on an e-graph within [`Limits`].
//!
//! Input: an e-graph of layout terms. Output: the same e-graph grown by the rules (rebuilt, so
//! its classes are canonical), with why the run stopped. Stopping early is never wrong: every
//! term already in a class stays valid, the plan is only less improved.

use super::language::{Layout, LayoutGraph, Tables};
use super::rules;
use egg::{Runner, SimpleScheduler, StopReason};
use std::collections::BTreeMap;
use std::time::Duration;

/// Budgets for saturation and extraction.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Stop once the e-graph holds this many e-nodes.
    pub node_limit: usize,
    /// Stop after this many rule iterations.
    pub iter_limit: usize,
    /// Stop after this long (checked between iterations).
    pub time_limit: Duration,
    /// Extraction is exact for a group of consumers sharing at most this many costly nodes
    /// (it tries every subset of them); larger groups get a local search.
    pub exact_shared: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            node_limit: 200_000,
            iter_limit: 32,
            time_limit: Duration::from_secs(5),
            exact_shared: 12,
        }
    }
}

/// A saturated e-graph and how the run went.
#[derive(Debug)]
pub struct Saturated {
    pub egraph: LayoutGraph,
    /// `saturated`, `iteration limit`, `node limit` or `time limit`, with the limit.
    pub stop_reason: String,
    pub iterations: usize,
    /// How many times each rule changed the e-graph, by rule name (rules that never did are
    /// absent).
    pub fired: BTreeMap<String, usize>,
}

/// The rule table, built once per process (patterns are parsed when a rule is built).
fn all_rules() -> &'static [rules::Rule] {
    static RULES: std::sync::OnceLock<Vec<rules::Rule>> = std::sync::OnceLock::new();
    RULES.get_or_init(rules::rules)
}

/// Runs every rule on `egraph` until it saturates or a limit is hit.
///
/// ```
/// use nnirc::egraph::{saturate, IndexSet, Layout, LayoutGraph, Limits, Tables, TensorInfo};
/// let mut tables = Tables::default();
/// let t = tables.add_tensor(TensorInfo { channels: 8, bytes_per_channel: 4 });
/// let k = tables.intern(IndexSet::range(8, 2, 5));
/// let mut egraph = LayoutGraph::new(tables);
/// let gather = egraph.add_expr(&format!("(gather {k} (tensor {t}))").parse().unwrap());
/// let run = saturate(egraph, &Limits::default());
/// assert_eq!(run.stop_reason, "saturated");
/// let slice = run.egraph.lookup_expr(&format!("(slice 2 5 (tensor {t}))").parse().unwrap());
/// assert_eq!(slice, Some(run.egraph.find(gather)));
/// ```
pub fn saturate(egraph: LayoutGraph, limits: &Limits) -> Saturated {
    let runner: Runner<Layout, Tables> = Runner::new(Tables::default())
        .with_egraph(egraph)
        .with_scheduler(SimpleScheduler)
        .with_node_limit(limits.node_limit)
        .with_iter_limit(limits.iter_limit)
        .with_time_limit(limits.time_limit)
        .run(all_rules());
    let stop_reason = match &runner.stop_reason {
        Some(StopReason::Saturated) => "saturated".to_string(),
        Some(StopReason::IterationLimit(n)) => format!("iteration limit ({n})"),
        Some(StopReason::NodeLimit(n)) => format!("node limit ({n})"),
        Some(StopReason::TimeLimit(s)) => format!("time limit ({s} s)"),
        Some(StopReason::Other(why)) => why.clone(),
        None => "not run".to_string(),
    };
    let iterations = runner.iterations.len();
    let mut fired = BTreeMap::new();
    for (rule, &times) in runner.iterations.iter().flat_map(|i| &i.applied) {
        *fired.entry(rule.to_string()).or_insert(0) += times;
    }
    let mut egraph = runner.egraph;
    egraph.rebuild();
    Saturated {
        egraph,
        stop_reason,
        iterations,
        fired,
    }
}
