//! Optimize: a masked program -> a smaller program without masks that computes the same thing
//! (the UPSCALE export). [`optimize`] is the library entry of `nnirc optimize`.
//!
//! Input: a checked [`Program`] with masks, its [`Weights`] and an [`OptimizeConfig`]. Output:
//! an [`Optimized`] program (no masks, dead channels cut, each segment's channels in the chosen
//! order, a `slice` or `gather` in front of every consumer that does not read its whole input),
//! its weights and a [`Report`]. Invariant: on any input, the optimized program's outputs equal
//! the masked program's (up to rounding); with [`OptimizeConfig::verify`] set this is checked
//! with the reference interpreter, and a failed check is an error, never a result.
//!
//! Phases, one file each: [`plan`] resolves masks into live channels and picks one order per
//! segment (the original order in naive mode, the ordering solver's in upscale mode);
//! [`rewrite`](rewrite::rewrite) asks the read planner ([`crate::egraph`]) how each consumer
//! reads its input under the cost model and builds the new graph with a [`Cut`] per new
//! parameter; [`cut`](cut::cut) copies each weight once, in its own dtype, into one buffer;
//! [`verify`] runs both programs; [`report`](Report) counts copies, MACs and params before (the
//! naive plan of the same masks, graph only: no weight is cut for it) and after.

mod cut;
mod deploy;
mod distribute;
mod plan;
mod report;
mod rewrite;
mod union;
mod verify;

pub use cut::Cut;
pub use deploy::{DeployReport, ORT_CPU};
pub use plan::{plan, plan_like, Plan, SegmentPlan};
pub use report::{
    program_stats, segment_stats, CopySemantics, EgraphStats, ProgramStats, Report, SegmentStats,
};
pub use rewrite::{Read, ReadKind};
pub use union::union_masks;
pub use verify::{verification, verify, Deviation, Verification, F32_TOLERANCE, F64_TOLERANCE};

use crate::egraph::{self, CostModel, Graph, Latency, Views};
use crate::ir::Program;
use crate::solver::{Limits, SolverKind};
use crate::weights::Weights;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// How channel orders are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Original order: a consumer reads its whole input, a contiguous range (slice) or a
    /// gather. The fair baseline.
    Naive,
    /// One order per segment from the ordering solver, so more consumers read ranges.
    #[default]
    Upscale,
    /// Union pruning: coupled consumers prune the union of their pruned channels (a
    /// different, smaller masked program, see [`union_masks`]), exported naively.
    Union,
}

impl Mode {
    /// Whether segments are reordered (and reads planned on the e-graph).
    pub fn reorders(self) -> bool {
        self == Mode::Upscale
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Naive => "naive",
            Mode::Upscale => "upscale",
            Mode::Union => "union",
        }
    }
}

/// The built-in cost models, by name (`nnirc optimize --cost-model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CostModelKind {
    /// [`Views`]: eager runtimes, slices are free views.
    #[default]
    Views,
    /// [`Graph`]: graph runtimes, every selection op copies.
    Graph,
    /// [`Latency`]: a table measured on the target (required).
    Latency,
}

impl CostModelKind {
    pub const ALL: [CostModelKind; 3] = [
        CostModelKind::Views,
        CostModelKind::Graph,
        CostModelKind::Latency,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CostModelKind::Views => "views",
            CostModelKind::Graph => "graph",
            CostModelKind::Latency => "latency",
        }
    }

    /// The model with its default parameters; `Latency` needs its measured table, and a table
    /// given to another model is an error (it would be ignored).
    pub fn model(self, latency_table: Option<Latency>) -> Result<Arc<dyn CostModel>, String> {
        match (self, latency_table) {
            (CostModelKind::Views, None) => Ok(Arc::new(Views::default())),
            (CostModelKind::Graph, None) => Ok(Arc::new(Graph::default())),
            (CostModelKind::Latency, Some(table)) => Ok(Arc::new(table)),
            (CostModelKind::Latency, None) => Err(
                "the `latency` cost model needs a latency table measured on the target \
                 (--latency-table FILE.json)"
                    .to_string(),
            ),
            (kind, Some(_)) => Err(format!(
                "a latency table is only used by the `latency` cost model, not `{}`",
                kind.name()
            )),
        }
    }
}

impl std::fmt::Display for CostModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for CostModelKind {
    type Err = String;
    fn from_str(s: &str) -> Result<CostModelKind, String> {
        CostModelKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown cost model `{s}` (expected views, graph or latency)"))
    }
}

/// What [`optimize`] does.
#[derive(Clone)]
pub struct OptimizeConfig {
    pub mode: Mode,
    pub solver: SolverKind,
    /// Limits of the ordering solver.
    pub limits: Limits,
    /// The cost model the read planner (e-graph) extracts under, in upscale mode: a built-in
    /// one ([`CostModelKind::model`]) or any implementation of [`CostModel`].
    pub cost_model: Arc<dyn CostModel>,
    /// Limits of the read planner's e-graph.
    pub read_limits: egraph::Limits,
    /// Channel-count alignment (0 or 1: none). With `n > 1`, every cut segment keeps a
    /// multiple of `n` channels (or all of them), adding dead channels that no consumer reads
    /// (zero weight columns) after its order, and every slice read is widened to a multiple of
    /// `n` positions (or the whole input) with zero columns. Exact; it trades a few MACs for
    /// the blocked convolution kernels of CPU runtimes (onnxruntime's NCHWc: 8 channels with
    /// AVX2, 16 with AVX-512). Gathers are not widened.
    pub channel_align: usize,
    /// Verify the result against the masked program on random inputs from this seed (f64 and
    /// f32); a deviation beyond [`F64_TOLERANCE`] or [`F32_TOLERANCE`] is an error.
    pub verify: Option<u64>,
    /// The deploy target onnxruntime on the CPU ([`ORT_CPU`]) with its measured latency table:
    /// segment widths and whole reads chosen under the table's prediction of the export
    /// ([`deploy`]); `channel_align` is then a forced minimum. `None`: no target.
    pub deploy: Option<Arc<crate::latency::Table>>,
    /// Told how far the deploy target's search is, the only phase that can take seconds:
    /// `(sweep, moves priced in it, its moves)`. `None`: nobody asks.
    pub progress: Option<Progress>,
}

/// A progress callback: `(sweep, done, total)` (see [`OptimizeConfig::progress`]).
pub type Progress = Arc<dyn Fn(usize, usize, usize) + Send + Sync>;

impl Default for OptimizeConfig {
    fn default() -> OptimizeConfig {
        OptimizeConfig {
            mode: Mode::default(),
            solver: SolverKind::default(),
            limits: Limits::default(),
            cost_model: Arc::new(Views::default()),
            read_limits: egraph::Limits::default(),
            channel_align: 1,
            verify: None,
            deploy: None,
            progress: None,
        }
    }
}

impl std::fmt::Debug for OptimizeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OptimizeConfig")
            .field("mode", &self.mode)
            .field("solver", &self.solver)
            .field("limits", &self.limits)
            .field("cost_model", &self.cost_model.name())
            .field("read_limits", &self.read_limits)
            .field("channel_align", &self.channel_align)
            .field("verify", &self.verify)
            .field("deploy", &self.deploy.as_ref().map(|_| ORT_CPU))
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// The optimized program and its weights, the plan that made it, and the report.
#[derive(Debug, Clone)]
pub struct Optimized {
    pub program: Program,
    pub weights: Weights,
    pub plan: Plan,
    /// How each channel-mixing consumer reads its input: one read, or one per concatenated
    /// block for a selection distributed over a concat.
    pub reads: Vec<Read>,
    pub report: Report,
}

/// Why [`optimize`] gave no result.
#[derive(Debug, Clone)]
pub enum OptimizeError {
    /// The program uses something the optimizer does not support.
    Unsupported(String),
    /// Verification could not run (the interpreter refused a program).
    Verify(String),
    /// Verification ran and the optimized program differs from the masked one; the report
    /// (with its `verify` figures) says by how much.
    Mismatch(Box<Report>),
}

impl std::fmt::Display for OptimizeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OptimizeError::Unsupported(m) => f.write_str(m),
            OptimizeError::Verify(m) => write!(f, "verification could not run: {m}"),
            OptimizeError::Mismatch(r) => {
                let v = r.verify.expect("a mismatch is a verification");
                write!(
                    f,
                    "verification failed: the optimized model differs from the masked one \
                     (f64 max rel {:.2e}, limit {F64_TOLERANCE:.0e}; f32 max rel {:.2e}, limit \
                     {F32_TOLERANCE:.0e})",
                    v.f64_max_rel, v.f32_max_rel
                )
            }
        }
    }
}

impl std::error::Error for OptimizeError {}

/// The optimized program of [`optimize`] without its weights, report or verification: what
/// the export-aware pruner ([`crate::prune::export_aware`]) prices many times over. Only the
/// plan and the rewrite run; no weight is cut.
pub fn export_graph(program: &Program, config: &OptimizeConfig) -> Result<Program, OptimizeError> {
    let united;
    let target = match config.mode {
        Mode::Union => {
            united = union_masks(program).0;
            &united
        }
        _ => program,
    };
    let chosen = choose(target, plan::plan(target, config), config)?;
    let mut reads = egraph::ReadCache::default();
    let rewritten = rewrite::rewrite_reading(
        target,
        &chosen.plan,
        &chosen.config,
        &chosen.full_reads,
        &mut reads,
    )?;
    Ok(rewritten.program)
}

/// What the rewrite follows: the plan as made, or the deploy target's choice of it.
struct Chosen {
    plan: Plan,
    /// Consumers that read their whole input.
    full_reads: std::collections::HashSet<petgraph::graph::NodeIndex>,
    /// The config with the target's `channel_align`.
    config: OptimizeConfig,
    deploy: Option<DeployReport>,
}

fn choose(target: &Program, plan: Plan, config: &OptimizeConfig) -> Result<Chosen, OptimizeError> {
    Ok(match &config.deploy {
        Some(table) => {
            let c = deploy::choose(target, &plan, config, table)?;
            Chosen {
                plan: c.plan,
                full_reads: c.full_reads,
                config: OptimizeConfig {
                    channel_align: c.channel_align,
                    ..config.clone()
                },
                deploy: Some(c.report),
            }
        }
        None => Chosen {
            plan,
            full_reads: Default::default(),
            config: config.clone(),
            deploy: None,
        },
    })
}

/// Optimizes a masked program: the UPSCALE export plus its report.
///
/// ```
/// use nnirc::optimize::{optimize, Mode, OptimizeConfig};
/// let source = "model m(%x: f32[1, 4, 2, 2]) -> (%y) {
///   param @a: f32[4, 4, 1, 1]
///   param @b: f32[2, 4, 1, 1]
///   %h = conv2d(%x, @a)
///   %y = conv2d(%h, @b) keep_in=[1, 3]
/// }";
/// let program = nnirc::compile(source).program.unwrap();
/// let weights = nnirc::weights::random(&program, 0);
/// let config = OptimizeConfig { mode: Mode::Upscale, verify: Some(0), ..Default::default() };
/// let optimized = optimize(&program, &weights, &config).unwrap();
/// // Channels 0 and 2 of %h are dead: @a loses two rows, @b two columns.
/// assert_eq!(optimized.program.params[0].shape, [2, 4, 1, 1]);
/// assert_eq!(optimized.report.after.params, 2 * 4 + 2 * 2);
/// assert!(optimized.report.verify.unwrap().passed());
/// ```
pub fn optimize(
    program: &Program,
    weights: &Weights,
    config: &OptimizeConfig,
) -> Result<Optimized, OptimizeError> {
    let started = Instant::now();
    let mut timings = BTreeMap::new();
    let mut lap = |phase: &str, ms: f64| {
        timings.insert(phase.to_string(), ms);
    };
    let ms = |since: Instant| since.elapsed().as_secs_f64() * 1e3;
    let (target, extra_pruned) = match config.mode {
        Mode::Union => {
            let (united, extra) = union_masks(program);
            (std::borrow::Cow::Owned(united), Some(extra))
        }
        _ => (std::borrow::Cow::Borrowed(program), None),
    };
    let plan = plan::plan(&target, config);
    lap("analysis", plan.analysis_ms);
    lap("solver", plan.solver_ms);
    let t = Instant::now();
    let Chosen {
        plan,
        full_reads,
        config,
        deploy,
    } = choose(&target, plan, config)?;
    if deploy.is_some() {
        lap("deploy", ms(t));
    }
    let config = &config;
    let t = Instant::now();
    let rewritten = rewrite::rewrite_reading(
        &target,
        &plan,
        config,
        &full_reads,
        &mut egraph::ReadCache::default(),
    )?;
    lap("egraph", rewritten.egraph_ms);
    lap("rewrite", ms(t) - rewritten.egraph_ms);
    let t = Instant::now();
    let new_weights = cut::cut(weights, &rewritten.cuts);
    lap("weights", ms(t));

    let copies = if config.cost_model.slice_copies() {
        CopySemantics::Graph
    } else {
        CopySemantics::Views
    };
    let after = program_stats(&rewritten.program, copies);
    // The baseline is the naive plan of the original masks, graph only.
    let before = if config.mode == Mode::Naive {
        after
    } else {
        let t = Instant::now();
        let naive = OptimizeConfig {
            mode: Mode::Naive,
            channel_align: 1,
            ..config.clone()
        };
        let plan = match config.mode {
            Mode::Union => plan::plan(program, &naive),
            _ => plan::plan_like(program, &plan, &naive),
        };
        let stats = program_stats(&rewrite::rewrite(program, &plan, &naive)?.program, copies);
        lap("baseline", ms(t));
        stats
    };
    let verify = match config.verify {
        Some(seed) => {
            let t = Instant::now();
            let v = verification(&target, weights, &rewritten.program, &new_weights, seed)
                .map_err(OptimizeError::Verify)?;
            lap("verify", ms(t));
            Some(v)
        }
        None => None,
    };
    lap("total", ms(started));
    let report = Report {
        model: program.name.clone(),
        mode: config.mode.name().to_string(),
        solver: config.solver.name().to_string(),
        cost_model: config.cost_model.name().to_string(),
        channel_align: config.channel_align.max(1),
        egraph: rewritten.read_plan.as_ref().map(|r| EgraphStats {
            stop_reason: r.stop_reason.clone(),
            nodes: r.egraph_nodes,
            classes: r.egraph_classes,
            iterations: r.iterations,
            exact_extraction: r.exact,
            rules_fired: egraph::rules::rules()
                .iter()
                .map(|rule| {
                    let name = rule.name.to_string();
                    let times = r.fired.get(&name).copied().unwrap_or(0);
                    (name, times)
                })
                .collect(),
        }),
        before,
        after,
        segments: segment_stats(&target, &plan, &rewritten.reads, copies),
        union_extra_pruned: extra_pruned,
        deploy,
        timings_ms: timings,
        verify,
    };
    if verify.is_some_and(|v| !v.passed()) {
        return Err(OptimizeError::Mismatch(Box::new(report)));
    }
    Ok(Optimized {
        program: rewritten.program,
        weights: new_weights,
        plan,
        reads: rewritten.reads,
        report,
    })
}
