//! The `nnirc` command line: argument parsing and the glue between phases.
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
    /// Write a copy of a model with L1 magnitude-pruning masks.
    ///
    /// The reference recipe (docs/cli.md): every conv2d with groups == 1 that does not read a
    /// model input directly (the image stem) keeps all but the floor(AMOUNT * C) channels of
    /// the chosen side whose weight slices have the smallest L1 norm (ties: the lower channel
    /// index is pruned first; at least one channel is always kept). Depthwise and grouped
    /// convs are never masked, linear layers only with --include-linear.
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
    /// How channels are scored (the lowest are pruned).
    #[arg(long, value_enum, default_value_t = Method::L1)]
    pub method: Method,
    /// Fraction of each layer's channels to prune, in [0, 1): floor(AMOUNT * C) channels go.
    #[arg(long, value_parser = parse_amount)]
    pub amount: f64,
    /// Which channels to prune: input (writes keep_in, the reference recipe) or output
    /// (writes keep_out).
    #[arg(long, value_enum, default_value_t = Side::Input)]
    pub side: Side,
    /// Also mask linear layers (by the L1 norm of weight columns or rows).
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
    /// A JSON latency table measured on the target; required by `--cost-model latency`.
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
pub enum ModeArg {
    /// The original channel order (the fair baseline).
    Naive,
    /// One order per segment from the ordering solver.
    Upscale,
    /// Constrained pruning: coupled consumers prune the union of their pruned channels (a
    /// different, smaller network; the extra pruned channels are reported), exported naively.
    Constrained,
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

    fn optimize(&self, path: &Path, opts: &OptimizeOptions) -> Result<(), Failure> {
        use crate::optimize::{optimize, Mode, OptimizeConfig, OptimizeError};
        use crate::solver::SolverKind;
        let weights_out = opts
            .output
            .as_ref()
            .map(|o| o.with_extension("safetensors"));
        if let Some(out) = &opts.output {
            nnir_output(out)?;
        }
        let started = std::time::Instant::now();
        let loaded = self.load(path)?;
        let program = &loaded.program;
        let weights_in = weights_path(path, program);
        let mut inputs: Vec<&Path> = vec![path];
        inputs.extend(weights_in.as_deref());
        inputs.extend(opts.latency_table.as_deref());
        let outputs: Vec<&Path> = [&opts.output, &weights_out, &opts.report]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
            .collect();
        refuse_clashes(&outputs, &inputs)?;
        let estimate = crate::interp::memory_estimate(program);
        self.check_memory(
            path,
            &[
                (
                    "seeded weights",
                    if opts.random_weights.is_some() {
                        estimate.seeded_bytes
                    } else {
                        0
                    },
                ),
                ("cut weights", estimate.params.saturating_mul(8)),
                (
                    "verification",
                    if opts.verify {
                        estimate.run_bytes(8)
                    } else {
                        0
                    },
                ),
            ],
        )?;
        let latency_table = match &opts.latency_table {
            Some(file) => {
                let bytes = read_file(file, MAX_JSON_BYTES)?;
                let text = String::from_utf8_lossy(&bytes);
                Some(crate::egraph::Latency::from_json(&text).map_err(|e| {
                    eprintln!("error: {}: {e}", file.display());
                    Failure::Input
                })?)
            }
            None => None,
        };
        let cost_model = opts
            .cost_model
            .model(latency_table)
            .map_err(Failure::Usage)?;
        let weights = self.weights(path, &loaded, opts.random_weights)?;
        let load_ms = started.elapsed().as_secs_f64() * 1e3;
        let config = OptimizeConfig {
            mode: match opts.mode {
                ModeArg::Naive => Mode::Naive,
                ModeArg::Upscale => Mode::Upscale,
                ModeArg::Constrained => Mode::Constrained,
            },
            solver: match opts.solver {
                SolverArg::Exact => SolverKind::Exact,
                SolverArg::Paper => SolverKind::Paper,
            },
            cost_model,
            channel_align: opts.align as usize,
            verify: opts.verify.then_some(opts.seed),
            ..Default::default()
        };
        let mut optimized = match optimize(program, &weights, &config) {
            Ok(o) => o,
            Err(OptimizeError::Mismatch(report)) => {
                eprint!("{}", report.table());
                eprintln!(
                    "error: {}: {}",
                    path.display(),
                    OptimizeError::Mismatch(report)
                );
                return Err(Failure::Input);
            }
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                return Err(Failure::Input);
            }
        };
        let report = &mut optimized.report;
        report.timings_ms.insert("load".to_string(), load_ms);
        let write_started = std::time::Instant::now();
        let mut staged = Outputs::default();
        if let (Some(out), Some(wout)) = (&opts.output, &weights_out) {
            let file_name = wout
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = crate::codegen::program_text(&optimized.program, Some(&file_name));
            let named = optimized.weights.named(&optimized.program);
            let (header, data) = crate::weights::file::parts(&named).map_err(|e| {
                eprintln!("error: cannot encode the weights: {e}");
                Failure::Input
            })?;
            let mut parts = vec![header.as_slice()];
            parts.extend(data);
            stage(&mut staged, wout, &parts)?;
            stage(&mut staged, out, &[text.as_bytes()])?;
        }
        let write_ms = write_started.elapsed().as_secs_f64() * 1e3;
        report.timings_ms.insert("write".to_string(), write_ms);
        eprint!("{}", report.table());
        if let Some(r) = &opts.report {
            let json = serde_json::to_string_pretty(&*report).expect("the report serializes");
            stage(&mut staged, r, &[json.as_bytes()])?;
        }
        commit(staged)
    }

    fn segments(&self, path: &Path, dot: Option<&Path>) -> Result<(), Failure> {
        let Loaded { program, .. } = self.load(path)?;
        let weights_in = weights_path(path, &program);
        let mut inputs = vec![path];
        inputs.extend(weights_in.as_deref());
        refuse_clashes(&Vec::from_iter(dot), &inputs)?;
        let view = crate::analysis::segments_view(&program);
        let _ = std::io::stdout().write_all(view.text.as_bytes());
        match dot {
            Some(out) => write_output(out, view.dot.as_bytes()),
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

impl Context {
    fn run(&self, path: &Path, opts: &RunOptions) -> Result<(), Failure> {
        if let Some(out) = &opts.output {
            crate::paths::check_target(out).map_err(Failure::Usage)?;
            if !matches!(extension(out), Some("safetensors" | "npy")) {
                return Err(Failure::Usage(format!(
                    "{}: outputs are written as .safetensors or .npy",
                    out.display()
                )));
            }
        }
        let loaded = self.load(path)?;
        let weights_in = weights_path(path, &loaded.program);
        let mut inputs: Vec<&Path> = vec![path];
        inputs.extend(weights_in.as_deref());
        inputs.extend(opts.inputs.as_deref());
        let files = match &opts.output {
            Some(out) => {
                run_output_files(out, &output_names(&loaded.program)).map_err(Failure::Usage)?
            }
            None => Vec::new(),
        };
        let outputs: Vec<&Path> = files.iter().map(|(f, _)| f.as_path()).collect();
        refuse_clashes(&outputs, &inputs)?;
        let estimate = crate::interp::memory_estimate(&loaded.program);
        let seeded = match opts.random_weights {
            Some(_) => estimate.seeded_bytes,
            None => 0,
        };
        let run = estimate.run_bytes(if opts.f64 { 8 } else { 4 });
        self.check_memory(path, &[("seeded weights", seeded), ("activations", run)])?;
        let weights = self.weights(path, &loaded, opts.random_weights)?;
        let mut program = loaded.program;
        if opts.no_masks {
            program.clear_masks();
        }
        let run = RunFiles {
            path,
            files: &files,
        };
        if opts.f64 {
            self.run_as::<f64>(&run, &program, &weights, opts)
        } else {
            self.run_as::<f32>(&run, &program, &weights, opts)
        }
    }

    fn run_as<T: Scalar>(
        &self,
        run: &RunFiles,
        program: &Program,
        weights: &Weights,
        opts: &RunOptions,
    ) -> Result<(), Failure> {
        let inputs: Vec<Tensor<T>> = match &opts.inputs {
            Some(file) => {
                let bytes = read_file(file, crate::tensor_io::MAX_INPUTS_BYTES)?;
                crate::tensor_io::inputs_from_bytes(program, &bytes, file).map_err(|e| {
                    eprintln!("error: {}: {e}", file.display());
                    Failure::Input
                })?
            }
            None => crate::interp::random_inputs(program, opts.seed),
        };
        let outputs = crate::interp::run(program, weights, &inputs).map_err(|e| {
            eprintln!("error: {}: {e}", run.path.display());
            Failure::Input
        })?;
        let names = output_names(program);
        let mut summary = String::new();
        for (name, t) in names.iter().zip(&outputs) {
            summary += &format!("%{name}: {}\n", tensor_summary(t));
        }
        let _ = std::io::stdout().write_all(summary.as_bytes());
        let mut staged = Outputs::default();
        for (file, held) in run.files {
            let tensor = |name: &str| {
                let i = names
                    .iter()
                    .position(|n| *n == name)
                    .expect("an output name");
                &outputs[i]
            };
            let bytes = if extension(file) == Some("npy") {
                crate::tensor_io::npy_bytes(tensor(&held[0]))
            } else {
                let named: Vec<(&str, &Tensor<T>)> =
                    held.iter().map(|n| (n.as_str(), tensor(n))).collect();
                crate::tensor_io::safetensors_bytes(&named).map_err(|e| {
                    eprintln!("error: cannot write {}: {e}", file.display());
                    Failure::Input
                })?
            };
            stage(&mut staged, file, &[&bytes])?;
        }
        commit(staged)
    }
}

/// What `nnirc run` writes: the model's path (for messages) and each output file with the
/// output names it holds.
struct RunFiles<'a> {
    path: &'a Path,
    files: &'a [(PathBuf, Vec<String>)],
}

/// The names of a program's outputs, in order (a name listed twice appears twice).
fn output_names(program: &Program) -> Vec<&str> {
    program
        .outputs
        .iter()
        .map(|&n| program.graph[n].name.as_str())
        .collect()
}

/// The files `nnirc run -o OUT` writes, each with the outputs it holds (every output name
/// once): `OUT.safetensors` holds them all; `OUT.npy` holds the only one, or, with several,
/// each goes to `OUT.<name>.npy` (`/` in a name becomes `_`). An error if two names would
/// share a file.
fn run_output_files(out: &Path, names: &[&str]) -> Result<Vec<(PathBuf, Vec<String>)>, String> {
    let mut distinct: Vec<String> = Vec::new();
    for name in names {
        if !distinct.iter().any(|d| d == name) {
            distinct.push(name.to_string());
        }
    }
    if extension(out) != Some("npy") || distinct.len() == 1 {
        return Ok(vec![(out.to_path_buf(), distinct)]);
    }
    let mut files: Vec<(PathBuf, Vec<String>)> = Vec::new();
    for name in distinct {
        let file = out.with_extension(format!("{}.npy", name.replace('/', "_")));
        if let Some((_, other)) = files.iter().find(|(f, _)| *f == file) {
            return Err(format!(
                "the outputs %{} and %{name} would both be written to {}; write a \
                 .safetensors file instead",
                other[0],
                file.display()
            ));
        }
        files.push((file, vec![name]));
    }
    Ok(files)
}

impl Context {
    fn prune(&self, path: &Path, opts: &PruneOptions) -> Result<(), Failure> {
        let loaded = self.load(path)?;
        let program = &loaded.program;
        let weights_in = weights_path(path, program);
        let mut inputs: Vec<&Path> = vec![path];
        inputs.extend(weights_in.as_deref());
        refuse_clashes(&Vec::from_iter(opts.output.as_deref()), &inputs)?;
        let estimate = crate::interp::memory_estimate(program);
        let seeded = match opts.random_weights {
            Some(_) => estimate.seeded_bytes,
            None => 0,
        };
        self.check_memory(
            path,
            &[
                ("seeded weights", seeded),
                ("scores", estimate.params.saturating_mul(8)),
            ],
        )?;
        let weights = self.weights(path, &loaded, opts.random_weights)?;
        let config = PruneConfig {
            method: opts.method,
            amount: opts.amount,
            side: opts.side,
            include_linear: opts.include_linear,
        };
        let pruned =
            crate::prune::prune(&loaded.source, &loaded.parsed, program, &weights, &config);
        let (mut kept, mut total) = (0, 0);
        let mut summary = String::new();
        for layer in &pruned.layers {
            kept += layer.kept;
            total += layer.channels;
            if opts.verbose {
                summary += &format!(
                    "  %{}: kept {} / {} {} channels\n",
                    layer.name,
                    layer.kept,
                    layer.channels,
                    config.side.name()
                );
            }
        }
        eprint!(
            "{}: {} side, amount {}: masked {} of {} eligible layers, kept {kept} / {total} \
             of their channels; {} masks replaced: {}\n{summary}",
            path.display(),
            config.side.name(),
            config.amount,
            pruned.layers.len(),
            pruned.eligible,
            config.side.mask_kind().keyword(),
            pruned.replaced,
        );
        match &opts.output {
            Some(out) => write_output(out, pruned.text.as_bytes()),
            None => {
                let _ = std::io::stdout().write_all(pruned.text.as_bytes());
                Ok(())
            }
        }
    }
}

/// `f32[1, 1000]  min -0.1 max 2.3 mean 0.01 l2 4.5`, over the values that are not NaN; a
/// tensor with NaNs gets `nan K` (their count) at the end, and min, max and mean are `nan` when
/// every value is.
fn tensor_summary<T: Scalar>(t: &Tensor<T>) -> String {
    let data = t.to_f64().data;
    let (mut min, mut max, mut sum, mut sq) = (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0.0);
    let mut nans = 0usize;
    for &v in &data {
        if v.is_nan() {
            nans += 1;
            continue;
        }
        min = min.min(v);
        max = max.max(v);
        sum += v;
        sq += v * v;
    }
    let count = data.len() - nans;
    if count == 0 {
        (min, max) = (f64::NAN, f64::NAN);
    }
    let mean = if count == 0 {
        f64::NAN
    } else {
        sum / count as f64
    };
    let num = |v: f64| {
        if v.is_nan() {
            "nan".to_string()
        } else {
            format!("{v:.6e}")
        }
    };
    let nan_count = if nans > 0 {
        format!("  nan {nans}")
    } else {
        String::new()
    };
    format!(
        "{}{}  min {}  max {}  mean {}  l2 {}{nan_count}",
        T::NAME,
        crate::ir::ops::dims_text(&t.shape),
        num(min),
        num(max),
        num(mean),
        num(sq.sqrt())
    )
}

/// `nnirc export` and `nnirc import` (ONNX).
impl Context {
    fn export_onnx(&self, path: &Path, out: &Path, random: Option<u64>) -> Result<(), Failure> {
        let loaded = self.load(path)?;
        let weights_in = weights_path(path, &loaded.program);
        let mut inputs = vec![path];
        inputs.extend(weights_in.as_deref());
        refuse_clashes(&[out], &inputs)?;
        let estimate = crate::interp::memory_estimate(&loaded.program);
        let seeded = match random {
            Some(_) => estimate.seeded_bytes,
            None => 0,
        };
        // The initializers (f32) and the encoded model: twice the parameters at 4 bytes.
        self.check_memory(
            path,
            &[
                ("seeded weights", seeded),
                ("ONNX initializers", estimate.params.saturating_mul(8)),
            ],
        )?;
        let weights = self.weights(path, &loaded, random)?;
        let bytes = crate::onnx::export_bytes(&loaded.program, &weights).map_err(|e| {
            eprintln!("error: {}: {e}", path.display());
            Failure::Input
        })?;
        write_output(out, &bytes)
    }

    fn import_onnx(
        &self,
        path: &Path,
        out: &Path,
        masks_from_zeros: bool,
        masks: Option<&Path>,
        no_weights: bool,
    ) -> Result<(), Failure> {
        nnir_output(out)?;
        let weights_out = out.with_extension("safetensors");
        let mut inputs = vec![path];
        inputs.extend(masks);
        let mut outputs = vec![out];
        if !no_weights {
            outputs.push(&weights_out);
        }
        refuse_clashes(&outputs, &inputs)?;
        let bytes = read_file(path, MAX_ONNX_BYTES)?;
        // The model's external data files are inputs too.
        let external = crate::onnx::external_files(&bytes, path);
        inputs.extend(external.iter().map(PathBuf::as_path));
        refuse_clashes(&outputs, &inputs)?;
        let spec = match masks {
            Some(m) => {
                let bytes = read_file(m, MAX_JSON_BYTES)?;
                let text = String::from_utf8(bytes).map_err(|_| {
                    eprintln!("error: {}: not valid UTF-8", m.display());
                    Failure::Input
                })?;
                Some((m, text))
            }
            None => None,
        };
        let opts = crate::onnx::ImportOptions {
            masks_from_zeros,
            skip_external_weights: no_weights,
        };
        let mut imported = crate::onnx::import(&bytes, path, &opts).map_err(|e| {
            eprintln!("error: {e}");
            Failure::Input
        })?;
        let mut masked = String::new();
        if let Some((m, text)) = &spec {
            let n = crate::onnx::apply_masks(&mut imported, text, m).map_err(|e| {
                eprintln!("error: {e}");
                Failure::Input
            })?;
            let noun = if n == 1 { "mask" } else { "masks" };
            masked = format!(", {n} keep_in {noun} from {}", m.display());
        }
        let file_name = weights_out
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut staged = Outputs::default();
        if no_weights {
            stage(&mut staged, out, &[imported.text(None).as_bytes()])?;
        } else {
            let weight_bytes = imported.weights_bytes().map_err(|e| {
                eprintln!("error: cannot encode the weights: {e}");
                Failure::Input
            })?;
            stage(&mut staged, &weights_out, &[&weight_bytes])?;
            let text = imported.text(Some(&file_name));
            stage(&mut staged, out, &[text.as_bytes()])?;
        }
        commit(staged)?;
        eprintln!(
            "imported {} nodes and {} params{masked} into {}{}",
            imported.program.graph.node_count() - imported.program.inputs.len(),
            imported.program.params.len(),
            out.display(),
            if no_weights {
                String::new()
            } else {
                format!(" and {}", weights_out.display())
            }
        );
        Ok(())
    }
}

/// `nnirc eval`.
impl Context {
    fn eval(&self, path: &Path, opts: &EvalOptions) -> Result<(), Failure> {
        use crate::eval::{EvalConfig, Split};
        let loaded = self.load(path)?;
        let weights_in = weights_path(path, &loaded.program);
        let dir = opts
            .data_dir
            .as_deref()
            .unwrap_or(opts.dataset.default_dir());
        let data_files = crate::eval::files(opts.dataset, dir, Split::Test);
        let mut inputs = vec![path];
        inputs.extend(weights_in.as_deref());
        inputs.extend(data_files.iter().map(PathBuf::as_path));
        refuse_clashes(&Vec::from_iter(opts.json.as_deref()), &inputs)?;
        let estimate = crate::interp::memory_estimate(&loaded.program);
        let seeded = match opts.random_weights {
            Some(_) => estimate.seeded_bytes,
            None => 0,
        };
        // At the batch evaluate runs (a model it cannot re-batch is its error to report).
        let run = crate::eval::with_batch(&loaded.program, opts.batch as usize)
            .map_or(0, |p| crate::interp::memory_estimate(&p).run_bytes(4));
        self.check_memory(path, &[("seeded weights", seeded), ("activations", run)])?;
        let weights = self.weights(path, &loaded, opts.random_weights)?;
        let data = crate::eval::load(opts.dataset, dir, Split::Test).map_err(|e| {
            eprintln!("error: {e}");
            Failure::Input
        })?;
        let config = EvalConfig {
            batch: opts.batch as usize,
            limit: opts.limit,
        };
        let bar = indicatif::ProgressBar::with_draw_target(
            None,
            if std::io::stderr().is_terminal() {
                indicatif::ProgressDrawTarget::stderr()
            } else {
                indicatif::ProgressDrawTarget::hidden()
            },
        )
        .with_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} images, ETA {eta}")
                .expect("a valid template"),
        );
        let started = std::time::Instant::now();
        let result = crate::eval::evaluate(
            &loaded.program,
            &weights,
            &data,
            &config,
            &mut |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            },
        );
        bar.finish_and_clear();
        let result = result.map_err(|e| {
            eprintln!("error: {}: {e}", path.display());
            Failure::Input
        })?;
        println!(
            "{}: top-1 {:.2}% ({} / {} images of {}) in {:.1} s",
            path.display(),
            100.0 * result.top1,
            result.correct,
            result.count,
            result.dataset,
            started.elapsed().as_secs_f64()
        );
        let Some(out) = &opts.json else {
            return Ok(());
        };
        let weights = match opts.random_weights {
            Some(seed) => format!("random:{seed}"),
            None => "file".to_string(),
        };
        let mut json = serde_json::to_value(&result).expect("the result serializes");
        json["model"] = path.display().to_string().into();
        json["weights"] = weights.into();
        let text = serde_json::to_string_pretty(&json).expect("the result serializes") + "\n";
        write_output(out, text.as_bytes())
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

/// Writes `bytes` to `out`, a command's only output (already checked by [`refuse_clashes`]).
fn write_output(out: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let mut staged = Outputs::default();
    stage(&mut staged, out, &[bytes])?;
    commit(staged)
}
