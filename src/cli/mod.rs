//! The `nnirc` command line: argument parsing and the glue between phases. This file holds the
//! arguments, the shared file and memory checks and the small commands (check, fmt, segments);
//! the others have a file each (optimize, run, prune, onnx, eval).
//!
//! Exit codes: 0 success, 1 the input has errors (diagnostics were printed), 2 usage errors
//! (bad arguments, refusing to overwrite an input). Every command follows one pattern:
//! - it collects every path it reads (the model, the weights file the model names, `--inputs`,
//!   ...) and every path it writes, and refuses a clash or an output that is not a regular file
//!   ([`crate::paths::check_paths`], exit 2) before doing any work;
//! - it reads only regular files, each with a size limit ([`crate::files::read_regular`]);
//! - it estimates the memory it needs ([`crate::interp::memory_estimate`]) and stops with a
//!   message (exit 1) over the `--max-memory` limit, before allocating;
//! - it stages all its outputs in one [`Outputs`] and commits them last: all or none.

use crate::diag::{self, Diagnostic, RenderConfig};
use crate::ir::Program;
use crate::prune::{Method, PruneConfig, Side};
use crate::tensor::{Scalar, Tensor};
use crate::tensor_io::Outputs;
use crate::weights::Weights;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod eval;
mod latency;
mod onnx;
mod optimize;
mod prune;
mod run;

#[derive(Debug, Parser)]
#[command(
    name = "nnirc",
    version,
    about = "Compiler for .nnir, a textual IR for convolutional networks",
    long_about = "Compiler for .nnir, a textual IR for convolutional networks.\n\n\
        A .nnir file describes one model: named, shaped inputs, parameters bound to a \
        safetensors file (or given inline), SSA statements, and pruning masks (keep_in / \
        keep_out). See docs/nnir.md for the language.\n\n\
        Exit status: 0 success, 1 the input has errors, 2 usage error."
)]
pub struct Cli {
    /// When to colour diagnostics.
    #[arg(long, value_enum, default_value_t = Color::Auto, global = true)]
    pub color: Color,
    /// The most memory a command may use, in bytes or with a suffix K, M, G or T (powers of
    /// 1024), e.g. 64G. Default: 3/4 of the machine's memory (from /proc/meminfo), or 16G where
    /// that is unknown. A command that would need more stops with a message (exit 1).
    #[arg(long, value_name = "SIZE", global = true, value_parser = parse_size)]
    pub max_memory: Option<u64>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Color {
    /// Colour when stderr is a terminal and NO_COLOR is unset.
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check files: syntax, names, ops and attributes, shapes, masks, and the weights file.
    ///
    /// Prints nothing and exits 0 when every file is valid; otherwise prints every diagnostic
    /// found (with source spans) and exits 1. If a model has a `weights "..."` line, the file
    /// is read and every file-bound parameter is checked for presence, shape and dtype.
    Check {
        /// The .nnir files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print a file in canonical form (comments kept).
    ///
    /// Formatting is a fixed point: formatting the output again changes nothing. Writes to
    /// stdout unless -o is given; never writes over an input.
    Fmt {
        /// The .nnir file to format.
        file: PathBuf,
        /// Write the formatted text here (atomically) instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Do not print; exit 1 if the file is not in canonical form.
        #[arg(long, conflicts_with = "output")]
        check: bool,
    },
    /// Run a model with the reference interpreter.
    ///
    /// The interpreter defines what a program means: masks are honoured as the masked program
    /// (weight slices of pruned channels are zero). Inputs are read from --inputs or drawn
    /// from a seeded generator; weights come from the model's `weights` file or, with
    /// --random-weights, from a seeded generator (so models run without weight files).
    /// Prints a summary of each output; -o writes them as safetensors or .npy.
    Run {
        /// The .nnir model to run.
        file: PathBuf,
        #[command(flatten)]
        options: RunOptions,
    },
    /// Export a masked model as a smaller one that computes the same thing (UPSCALE).
    ///
    /// Dead channels are cut, each segment's channels are put in one order (the original order
    /// with --mode naive; the ordering solver's with --mode upscale, the default), and every
    /// consumer that does not read its whole input gets a slice (a view in eager runtimes) or a
    /// gather (a copy). Writes OUT.nnir and its weights as OUT.safetensors beside it, prints a
    /// before/after table on stderr (before = the naive export of the same masks), and with
    /// --verify checks the result against the masked program with the reference interpreter.
    Optimize {
        /// The masked .nnir model.
        file: PathBuf,
        #[command(flatten)]
        options: OptimizeOptions,
    },
    /// Print the channel segments of a model: producers that must share one channel order
    /// (tied by add or mul), the consumers reading them and what each keeps.
    ///
    /// A segment is fixed when its order cannot change (it holds a model input, or a grouped
    /// conv reads or produces it). `--dot FILE` also writes a Graphviz view of the model with
    /// nodes coloured by segment.
    Segments {
        /// The .nnir model.
        file: PathBuf,
        /// Write a Graphviz (.dot) file of the model coloured by segment.
        #[arg(long, value_name = "FILE")]
        dot: Option<PathBuf>,
    },
    /// Write a copy of a model with channel-pruning masks.
    ///
    /// The default is the reference recipe (docs/cli.md): every conv2d with groups == 1 that
    /// does not read a model input directly (the image stem) keeps all but the
    /// floor(AMOUNT * C) input channels whose weight columns have the smallest L1 norm (ties:
    /// the lower channel index is pruned first; at least one channel is always kept).
    /// Depthwise and grouped convs are never masked, linear layers only with
    /// --include-linear. --side output prunes output channels, one mask per coupled group
    /// (the constrained mode); --global sets one threshold across layers by LAMP; --method
    /// sp-lamp chooses widths under --latency-budget: per coupled group with --side output,
    /// per consumer with --side input, where the budget is checked on the predicted latency
    /// of the export `nnirc optimize` will make of the masks (export-aware).
    ///
    /// Every existing mask of the chosen side is replaced: layers the recipe prunes get the
    /// new mask, all others lose theirs. Masks of the other side are kept. The output is the
    /// input in canonical form (comments kept), written to stdout or, atomically, to -o; a
    /// summary goes to stderr.
    Prune {
        /// The .nnir model to prune.
        file: PathBuf,
        #[command(flatten)]
        options: PruneOptions,
    },
    /// Write a model as ONNX (opset 17, every tensor f32).
    ///
    /// The ONNX graph computes the masked program, as `nnirc run` does: pruned weight slices
    /// are zero and channels removed by keep_out stay zero downstream. Weights are
    /// initializers (raw little-endian data), taken from the model's weights file or, with
    /// --random-weights, from a seeded generator.
    Export {
        /// The .nnir model.
        file: PathBuf,
        /// The .onnx file to write (atomically).
        #[arg(short, long, value_name = "OUT")]
        output: PathBuf,
        /// Use seeded random weights for every file-bound parameter (inline ones are kept).
        #[arg(long, value_name = "SEED")]
        random_weights: Option<u64>,
    },
    /// Read an ONNX model as .nnir: OUT.nnir, and its weights as OUT.safetensors beside it.
    ///
    /// Nodes map one by one (Conv, BatchNormalization, Relu, Clip(0, 6), Sigmoid, HardSwish,
    /// HardSigmoid, Add, Mul, Concat, MaxPool, AveragePool, GlobalAveragePool, ReduceMean over
    /// H and W, Flatten, Reshape to [N, -1], Gemm, MatMul, Gather and Slice on channels,
    /// Identity, Dropout, Constant). Any other op is an error naming the node; nothing is
    /// dropped. Initializers may use raw_data, float_data or external data files (relative to
    /// the model). Names stay readable: PyTorch module paths (from node names or the dynamo
    /// exporter's name_scopes metadata) name values and exporter-made initializers.
    Import {
        /// The .onnx model.
        file: PathBuf,
        /// The .nnir file to write; the weights go to the same path with extension
        /// .safetensors.
        #[arg(short, long, value_name = "OUT")]
        output: PathBuf,
        /// Write keep_in masks leaving out the input channels of conv (groups == 1) and linear
        /// layers whose weight column is all zero.
        #[arg(long)]
        masks_from_zeros: bool,
        /// Set keep_in masks from a JSON file:
        /// {"layers": {"NAME": {"in_channels": C, "keep_in": [0, 1, 5]}}}. NAME is a weight
        /// param as written in OUT (or the ONNX initializer it comes from) of a conv
        /// (groups == 1) or linear layer; C must be its input channel count; keep_in is
        /// strictly ascending (all C channels: no mask). See docs/cli.md.
        #[arg(long, value_name = "FILE.json", conflicts_with = "masks_from_zeros")]
        masks: Option<PathBuf>,
        /// Write no weights: the model gets no `weights` line and its parameters are declared
        /// only (run it with --random-weights). For architecture-only files like the zoo;
        /// float initializers in external data files are not read (they may be absent).
        #[arg(long, conflicts_with = "masks_from_zeros")]
        no_weights: bool,
    },
    /// Measure a classifier's top-1 accuracy on a dataset's test images.
    ///
    /// The model takes images as f32[N, C, H, W] pixel values scaled to [0, 1] (byte / 255)
    /// and gives class scores f32[N, K]; any other normalisation is part of the model. It runs
    /// in the reference interpreter (f32, masks honoured), in batches whatever batch the model
    /// declares. Prints the top-1 accuracy; a progress bar goes to stderr when it is a terminal.
    Eval {
        /// The .nnir model.
        file: PathBuf,
        #[command(flatten)]
        options: EvalOptions,
    },
    /// A measured latency model of onnxruntime on the CPU: measure a table, predict a model.
    ///
    /// `measure` times every kernel of a model on a grid of channel widths in onnxruntime
    /// (needs a build with `--features onnxruntime`); `predict` sums a model's kernels, the
    /// layout reorders the runtime inserts and its overheads from such a table.
    /// docs/latency.md describes the method and the table format.
    Latency {
        #[command(subcommand)]
        command: latency::LatencyCommand,
    },
}

/// Parses the arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let color = match cli.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let ctx = Context {
        render: RenderConfig { color },
        max_memory: cli.max_memory.unwrap_or_else(default_memory_limit),
    };
    let result = match cli.command {
        Command::Check { files } => ctx.check(&files),
        Command::Fmt {
            file,
            output,
            check,
        } => ctx.fmt(&file, output.as_deref(), check),
        Command::Run { file, options } => ctx.run(&file, &options),
        Command::Prune { file, options } => ctx.prune(&file, &options),
        Command::Segments { file, dot } => ctx.segments(&file, dot.as_deref()),
        Command::Optimize { file, options } => ctx.optimize(&file, &options),
        Command::Export {
            file,
            output,
            random_weights,
        } => ctx.export_onnx(&file, &output, random_weights),
        Command::Import {
            file,
            output,
            masks_from_zeros,
            masks,
            no_weights,
        } => ctx.import_onnx(
            &file,
            &output,
            masks_from_zeros,
            masks.as_deref(),
            no_weights,
        ),
        Command::Eval { file, options } => ctx.eval(&file, &options),
        Command::Latency { command } => ctx.latency(&command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Input) => ExitCode::from(1),
        Err(Failure::Usage(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
    }
}

/// Why a command failed (its messages are already printed for `Input`).
#[derive(Debug)]
pub enum Failure {
    /// The input has errors; diagnostics were printed. Exit 1.
    Input,
    /// Bad usage. Exit 2.
    Usage(String),
}

/// Options of `nnirc run`.
#[derive(Debug, clap::Args)]
pub struct RunOptions {
    /// Use seeded random weights for every file-bound parameter (inline ones are kept).
    #[arg(long, value_name = "SEED")]
    pub random_weights: Option<u64>,
    /// Read inputs from a .safetensors file (tensors named like the model's inputs) or a
    /// .npy file (models with one input). Default: seeded random inputs.
    #[arg(long, value_name = "FILE")]
    pub inputs: Option<PathBuf>,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Evaluate in f64 instead of f32.
    #[arg(long)]
    pub f64: bool,
    /// Ignore keep_in / keep_out masks (run the unpruned program).
    #[arg(long)]
    pub no_masks: bool,
    /// Write the outputs: a .safetensors file (all outputs, by name) or a .npy file (one
    /// output; with several, OUT.npy becomes OUT.<name>.npy per output).
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,
}

/// Options of `nnirc prune`.
#[derive(Debug, clap::Args)]
pub struct PruneOptions {
    /// How channels are scored (the lowest are pruned): l1, l2, fpgm, bn-scale, lamp, or
    /// sp-lamp (one width per group or consumer under --latency-budget). Formulas:
    /// docs/cli.md.
    #[arg(long, value_enum, default_value_t = Method::L1)]
    pub method: Method,
    /// Fraction of channels to prune, in [0, 1): floor(AMOUNT * C) of each layer's (or
    /// group's) C channels go; with --global, floor(AMOUNT * total) across all of them.
    /// Required, except with sp-lamp, which refuses it.
    #[arg(long, value_parser = parse_amount)]
    pub amount: Option<f64>,
    /// Which channels to prune: input (writes keep_in, each consumer on its own: the
    /// reference recipe, unconstrained) or output (writes keep_out, one mask per coupled
    /// group of producers tied by add or mul: structured, constrained).
    #[arg(long, value_enum, default_value_t = Side::Input)]
    pub side: Side,
    /// One threshold across all layers (groups) on LAMP-normalised scores instead of the same
    /// amount in each; every layer keeps its best channel.
    #[arg(long)]
    pub global: bool,
    /// sp-lamp: the predicted latency to stay within: milliseconds (12.5ms) or a fraction of
    /// the dense model's predicted latency (0.7 or 70%). --side output: the sum over the
    /// layers; --side input: the whole export (`nnirc latency predict` of the `nnirc
    /// optimize` output, reorders and overheads included).
    #[arg(long, value_name = "BUDGET", value_parser = parse_budget)]
    pub latency_budget: Option<crate::prune::LatencyBudget>,
    /// sp-lamp: a latency table measured on the deploy runtime (`nnirc latency measure`):
    /// each layer's predicted latency at its kept widths. Also sets the default --width-step
    /// to the runtime's NCHWc block.
    #[arg(long, value_name = "T", conflicts_with = "latency_proxy")]
    pub latency_table: Option<PathBuf>,
    /// sp-lamp: predict latency by a proxy instead of a table: `macs` (multiply-adds of
    /// convs and linear layers, 1 ms per 10^9; not a measurement).
    #[arg(long, value_enum, value_name = "PROXY")]
    pub latency_proxy: Option<LatencyProxy>,
    /// sp-lamp: kept widths are multiples of N (or all channels). Default: the NCHWc
    /// block of --latency-table's runtime, else 8.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub width_step: Option<u32>,
    /// sp-lamp: write the chosen widths and predicted latencies (per node, total, budget,
    /// score) as JSON.
    #[arg(long, value_name = "FILE.json")]
    pub json: Option<PathBuf>,
    /// Also mask linear layers (by the scores of their weight columns or rows).
    #[arg(long)]
    pub include_linear: bool,
    /// Score seeded random weights (the same as `nnirc run --random-weights SEED`) instead of
    /// reading the model's weights file.
    #[arg(long, value_name = "SEED")]
    pub random_weights: Option<u64>,
    /// Write the pruned model here (atomically, never over an input) instead of stdout.
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// List every masked layer in the summary.
    #[arg(short, long)]
    pub verbose: bool,
}

/// A latency predictor that needs no table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LatencyProxy {
    /// Multiply-adds of convs and linear layers (1 ms per 10^9).
    Macs,
}

/// `--latency-budget`: see [`crate::prune::LatencyBudget`].
fn parse_budget(s: &str) -> Result<crate::prune::LatencyBudget, String> {
    s.parse()
}

/// `--amount`: a number in [0, 1).
fn parse_amount(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if (0.0..1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is outside [0, 1)"))
    }
}

/// Options of `nnirc optimize`.
#[derive(Debug, clap::Args)]
pub struct OptimizeOptions {
    /// Write the optimized model here (and its weights as the same path with .safetensors).
    #[arg(short, long, value_name = "OUT.nnir")]
    pub output: Option<PathBuf>,
    /// How channel orders are chosen.
    #[arg(long, value_enum, default_value_t = ModeArg::Upscale)]
    pub mode: ModeArg,
    /// The ordering solver (upscale mode).
    #[arg(long, value_enum, default_value_t = SolverArg::Exact)]
    pub solver: SolverArg,
    /// The cost model the read planner (an e-graph) extracts under: `views` (eager runtimes: a
    /// slice is a free view, a gather costs its bytes), `graph` (graph runtimes: every slice or
    /// gather copies, so small gaps are read through zero-padded weights), or `latency` (per-op
    /// latencies from --latency-table).
    #[arg(long, value_name = "MODEL", default_value = "views", value_parser = parse_cost_model)]
    pub cost_model: crate::optimize::CostModelKind,
    /// The runtime to export for: `generic` (the mode and cost model decide), or `ort-cpu`
    /// (onnxruntime on the CPU: each cut segment's width, from its kept channels up to a
    /// multiple of 4, 8 or the NCHWc block, or all, and which consumers read their whole
    /// input, are chosen to minimise the latency --latency-table predicts for the export;
    /// --align is then a forced minimum). docs/cli.md.
    #[arg(long, value_enum, default_value_t = TargetArg::Generic)]
    pub target: TargetArg,
    /// With --target ort-cpu: a table measured on the target (`nnirc latency measure`). With
    /// --cost-model latency: a per-op copy table (src/egraph/latency.rs).
    #[arg(long, value_name = "FILE.json")]
    pub latency_table: Option<PathBuf>,
    /// Round channel counts up to multiples of N: every cut segment keeps a multiple of N
    /// channels (or all), padding with dead channels read through zero weights, and every
    /// slice read is widened likewise (to the whole input where it fits). Exact; costs a few
    /// MACs, and lets CPU runtimes use blocked kernels (onnxruntime's NCHWc: N = 8 with AVX2,
    /// 16 with AVX-512). 1: no padding.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub align: u32,
    /// Use seeded random weights for every file-bound parameter (inline ones are kept).
    #[arg(long, value_name = "SEED")]
    pub random_weights: Option<u64>,
    /// Write the JSON report here.
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
    /// Check the result against the masked program on seeded random inputs (f64 and f32).
    #[arg(long)]
    pub verify: bool,
    /// Seed of the verification inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Options of `nnirc eval`.
#[derive(Debug, clap::Args)]
pub struct EvalOptions {
    /// The dataset (its test split).
    #[arg(long, value_enum)]
    pub dataset: crate::eval::DatasetKind,
    /// Where the dataset's IDX files are (gzipped or not). Default: where Debian's package
    /// puts them (fashion-mnist: /usr/share/datasets/fashion-mnist).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Evaluate only the first N test images.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Images per interpreter run.
    #[arg(long, value_name = "B", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub batch: u64,
    /// Use seeded random weights for every file-bound parameter (inline ones are kept).
    #[arg(long, value_name = "SEED")]
    pub random_weights: Option<u64>,
    /// Write the result as JSON: model, weights, dataset, count, correct, top1, per_class.
    #[arg(long, value_name = "OUT.json")]
    pub json: Option<PathBuf>,
}

fn parse_cost_model(s: &str) -> Result<crate::optimize::CostModelKind, String> {
    s.parse()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TargetArg {
    /// No runtime model.
    Generic,
    /// onnxruntime on the CPU, priced by a measured latency table.
    OrtCpu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// The original channel order (the fair baseline).
    Naive,
    /// One order per segment from the ordering solver.
    Upscale,
    /// Union pruning: coupled consumers prune the union of their pruned channels (a
    /// different, smaller network; the extra pruned channels are reported), exported naively.
    /// (Constrained pruning at a matched amount is `nnirc prune --side output`.)
    Union,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SolverArg {
    /// C1P test (PQ-tree) plus branch and bound over consumers; heuristic past its limits.
    Exact,
    /// The published UPSCALE algorithm (maximum-reward chordless path), for comparison.
    Paper,
}

struct Context {
    render: RenderConfig,
    /// Bytes a command may need ([`Context::check_memory`]).
    max_memory: u64,
}

/// The largest `.nnir` source read (64 MiB; the largest zoo model is 100 KiB).
const MAX_SOURCE_BYTES: u64 = 64 << 20;
/// The largest JSON file read (`--masks`, `--latency-table`): 64 MiB.
const MAX_JSON_BYTES: u64 = 64 << 20;
/// The largest ONNX model read (4 GiB; external data files are the importer's to check).
const MAX_ONNX_BYTES: u64 = 4 << 30;

/// `--max-memory`: bytes, or a number with a suffix K, M, G or T (powers of 1024, an optional
/// `iB` or `B` after it).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("`{s}`: the suffix must be K, M, G or T")),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a size (bytes, or e.g. 512M, 64G)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// The default `--max-memory`: 3/4 of `MemTotal` in /proc/meminfo, or 16 GiB where that cannot
/// be read.
fn default_memory_limit() -> u64 {
    let total_kib = crate::files::read_regular(Path::new("/proc/meminfo"), 1 << 20)
        .ok()
        .and_then(|bytes| {
            let text = String::from_utf8(bytes).ok()?;
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        });
    match total_kib {
        Some(kib) if kib > 0 => kib.saturating_mul(1024) / 4 * 3,
        _ => 16 << 30,
    }
}

/// `8796093022208 bytes (8.0 TiB)`.
fn bytes_text(bytes: u64) -> String {
    let units = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = "bytes";
    for u in units {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    if unit == "bytes" {
        format!("{bytes} bytes")
    } else {
        format!("{bytes} bytes ({value:.1} {unit})")
    }
}

/// A source file that compiled.
struct Loaded {
    source: String,
    program: Program,
    /// The syntax tree and comments (for commands that rewrite the text).
    parsed: crate::syntax::Parsed,
}

impl Context {
    fn report(&self, diags: &[Diagnostic], path: &Path, source: &str) {
        let text = diag::render(diags, &path.display().to_string(), source, self.render);
        let _ = std::io::stderr().write_all(text.as_bytes());
    }

    fn report_plain(&self, diag: &Diagnostic, path: &Path) {
        eprint!("{}", diag::render_plain(diag, &path.display().to_string()));
    }

    /// Reads a source file; an unreadable, special (FIFO, device), oversized or non-UTF-8
    /// file is reported as an input error.
    fn read_source(&self, path: &Path) -> Result<String, Failure> {
        let bytes = read_file(path, MAX_SOURCE_BYTES)?;
        String::from_utf8(bytes).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            let d = Diagnostic::new(
                diag::Code::InvalidCharacter,
                format!("not valid UTF-8 (at byte {at})"),
                at..at + 1,
                "",
            );
            self.report_plain(&d, path);
            Failure::Input
        })
    }

    /// Reads, parses and lowers a file, reporting every diagnostic.
    fn load(&self, path: &Path) -> Result<Loaded, Failure> {
        let source = self.read_source(path)?;
        let compiled = crate::compile(&source);
        if !compiled.diagnostics.is_empty() {
            self.report(&compiled.diagnostics, path, &source);
            return Err(Failure::Input);
        }
        let program = compiled.program.expect("no diagnostics means a program");
        Ok(Loaded {
            source,
            program,
            parsed: compiled.parsed,
        })
    }

    /// The weights of a loaded model: seeded random ones, or its weights file (reporting every
    /// problem with the file as diagnostics).
    fn weights(
        &self,
        path: &Path,
        loaded: &Loaded,
        random: Option<u64>,
    ) -> Result<Weights, Failure> {
        match random {
            Some(seed) => Ok(crate::weights::random(&loaded.program, seed)),
            None => crate::weights::load(&loaded.program, base_dir(path)).map_err(|diags| {
                self.report(&diags, path, &loaded.source);
                Failure::Input
            }),
        }
    }

    /// Stops (exit 1, with a message naming the need and the limit) if `parts`, each a
    /// (what, bytes) pair, need more than `--max-memory` together. Called before allocating.
    fn check_memory(&self, path: &Path, parts: &[(&str, u64)]) -> Result<(), Failure> {
        let need = parts.iter().map(|p| p.1).fold(0, u64::saturating_add);
        if need <= self.max_memory {
            return Ok(());
        }
        let detail: Vec<String> = parts
            .iter()
            .filter(|p| p.1 > 0)
            .map(|(what, bytes)| format!("{what} {}", bytes_text(*bytes)))
            .collect();
        eprintln!(
            "error: {}: this needs about {} of memory ({}), over the limit of {}; raise the \
             limit with --max-memory SIZE (e.g. --max-memory 64G)",
            path.display(),
            bytes_text(need),
            detail.join(", "),
            bytes_text(self.max_memory)
        );
        Err(Failure::Input)
    }

    fn check(&self, files: &[PathBuf]) -> Result<(), Failure> {
        let mut failed = false;
        for path in files {
            let Ok(source) = self.read_source(path) else {
                failed = true;
                continue;
            };
            let diags = crate::check(&source, base_dir(path));
            if !diags.is_empty() {
                self.report(&diags, path, &source);
                failed = true;
            }
        }
        if failed {
            Err(Failure::Input)
        } else {
            Ok(())
        }
    }

    fn segments(&self, path: &Path, dot: Option<&Path>) -> Result<(), Failure> {
        let Loaded { program, .. } = self.load(path)?;
        let weights_in = weights_path(path, &program);
        let mut inputs = vec![path];
        inputs.extend(weights_in.as_deref());
        refuse_clashes(&Vec::from_iter(dot), &inputs)?;
        let view = crate::analysis::segments_view(&program);
        let _ = std::io::stdout().write_all(view.text().as_bytes());
        match dot {
            Some(out) => write_output(out, view.dot().as_bytes()),
            None => Ok(()),
        }
    }

    fn fmt(&self, path: &Path, output: Option<&Path>, check: bool) -> Result<(), Failure> {
        refuse_clashes(&Vec::from_iter(output), &[path])?;
        let source = self.read_source(path)?;
        let parsed = crate::syntax::parse(&source);
        if !parsed.diagnostics.is_empty() {
            self.report(&parsed.diagnostics, path, &source);
            return Err(Failure::Input);
        }
        let file = parsed.file.as_ref().expect("no diagnostics means a tree");
        let text = crate::syntax::print::print(file, &source, &parsed.comments);
        if check {
            if text != source {
                eprintln!(
                    "{}: not in canonical form (run `nnirc fmt`)",
                    path.display()
                );
                return Err(Failure::Input);
            }
            return Ok(());
        }
        match output {
            Some(out) => write_output(out, text.as_bytes()),
            None => {
                let _ = std::io::stdout().write_all(text.as_bytes());
                Ok(())
            }
        }
    }
}

/// A usage error unless `out` may be written ([`crate::paths::check_target`]) and ends in
/// `.nnir` (its weights go beside it, with extension `.safetensors`).
fn nnir_output(out: &Path) -> Result<(), Failure> {
    crate::paths::check_target(out).map_err(Failure::Usage)?;
    if extension(out) != Some("nnir") {
        return Err(Failure::Usage(format!(
            "{}: the output must be a .nnir file",
            out.display()
        )));
    }
    Ok(())
}

fn extension(path: &Path) -> Option<&str> {
    path.extension().and_then(|e| e.to_str())
}

/// The directory relative paths in a `.nnir` file are resolved against.
pub fn base_dir(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

/// The weights file `program` names, resolved against the folder of its source `path`.
fn weights_path(path: &Path, program: &Program) -> Option<PathBuf> {
    program
        .weights_file
        .as_ref()
        .map(|(file, _)| base_dir(path).join(file))
}

/// The whole of the regular file `path`, at most `max` bytes; a FIFO, a device, a directory
/// or a larger file is an input error (exit 1), refused before anything is read.
fn read_file(path: &Path, max: u64) -> Result<Vec<u8>, Failure> {
    crate::files::read_regular(path, max).map_err(|e| {
        eprintln!("error: {e}");
        Failure::Input
    })
}

/// A usage error unless the outputs clash with nothing ([`crate::paths::check_paths`]: no
/// output names an input or another output, and each is a regular file or new).
fn refuse_clashes(outputs: &[&Path], inputs: &[&Path]) -> Result<(), Failure> {
    crate::paths::check_paths(inputs, outputs).map_err(Failure::Usage)
}

/// Stages `parts`, concatenated, as the content of `out`.
fn stage(staged: &mut Outputs, out: &Path, parts: &[&[u8]]) -> Result<(), Failure> {
    staged.stage(out, parts).map_err(|e| {
        eprintln!("error: cannot write {}: {e}", out.display());
        Failure::Input
    })
}

/// Renames every staged output into place.
fn commit(staged: Outputs) -> Result<(), Failure> {
    staged.commit().map_err(|e| {
        eprintln!("error: cannot write the outputs: {e}");
        Failure::Input
    })
}

/// A progress bar with `template` on stderr when it is a terminal (hidden otherwise).
fn progress_bar(template: &str) -> indicatif::ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        indicatif::ProgressDrawTarget::stderr()
    } else {
        indicatif::ProgressDrawTarget::hidden()
    };
    indicatif::ProgressBar::with_draw_target(None, target)
        .with_style(indicatif::ProgressStyle::with_template(template).expect("a valid template"))
}

/// Writes `bytes` to `out`, a command's only output (already checked by [`refuse_clashes`]).
fn write_output(out: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let mut staged = Outputs::default();
    stage(&mut staged, out, &[bytes])?;
    commit(staged)
}
