//! nnirc: a compiler for `.nnir`, a textual IR for convolutional networks.
//!
//! The pipeline, one module per phase:
//! `.nnir` text --[`syntax::parse`]--> AST with byte spans --[`ir::lower`]--> graph IR
//! (petgraph, shapes and channel counts inferred) --[`weights::load`]--> parameter data
//! (memory-mapped, in its own dtype) --[`interp::run`]--> outputs (the reference meaning,
//! masks as zeroed weight slices).
//! The optimizer: [`analysis`] (channel provenance, segments, removed channels) ->
//! [`solver`] (one channel order per segment) -> [`egraph`] (how each consumer reads, under a
//! cost model) -> [`optimize`] (plan, rewrite, weight cuts, verification, report) ->
//! [`codegen`] (`.nnir` text) and [`weights::file`] (safetensors).
//! [`prune`] writes channel masks into the source (the optimizer's input); [`onnx`] exports a
//! program to ONNX and imports ONNX models; [`eval`] measures a classifier's top-1 accuracy on
//! a dataset (Fashion-MNIST) with the interpreter.
//!
//! Each command of `nnirc` is one library call: [`check`], [`interp::run`], [`prune::prune`],
//! [`optimize::optimize`], [`onnx::export_bytes`], [`onnx::import`], [`eval::evaluate`]. User errors are
//! [`diag::Diagnostic`]s at every step; [`cli`] only parses arguments, reads and writes files
//! and prints.

pub mod analysis;
pub mod cli;
pub mod codegen;
pub mod diag;
pub mod egraph;
pub mod eval;
pub mod files;
pub mod interp;
pub mod ir;
pub mod latency;
pub mod onnx;
pub mod optimize;
pub mod paths;
pub mod prune;
pub mod solver;
pub mod syntax;
pub mod tensor;
pub mod tensor_io;
pub mod weights;

use diag::Diagnostic;

/// The front end in one call: parse and lower `source`.
#[derive(Debug)]
pub struct Compiled {
    pub parsed: syntax::Parsed,
    /// Present iff there are no diagnostics.
    pub program: Option<ir::Program>,
    /// Lexer, parser and lowering diagnostics, in that order.
    pub diagnostics: Vec<Diagnostic>,
}

/// Checks a model: syntax, names, ops and attributes, shapes, masks and, when the model names
/// a weights file (relative to `base_dir`), every file-bound parameter's presence, shape and
/// dtype. The library entry of `nnirc check`; an empty list means the model is valid.
///
/// ```
/// let ok = "model m(%x: f32[1, 2]) -> (%y) {\n  %y = relu(%x)\n}\n";
/// assert!(nnirc::check(ok, std::path::Path::new(".")).is_empty());
/// let bad = "model m(%x: f32[1, 2]) -> (%y) {\n  %y = relu(%z)\n}\n";
/// assert_eq!(nnirc::check(bad, std::path::Path::new(".")).len(), 1);
/// ```
pub fn check(source: &str, base_dir: &std::path::Path) -> Vec<Diagnostic> {
    let compiled = compile(source);
    match &compiled.program {
        Some(program) if program.weights_file.is_some() => {
            weights::load(program, base_dir).err().unwrap_or_default()
        }
        _ => compiled.diagnostics,
    }
}

/// Parses and lowers `.nnir` source. Never panics.
pub fn compile(source: &str) -> Compiled {
    let parsed = syntax::parse(source);
    let mut diagnostics = parsed.diagnostics.clone();
    let mut program = None;
    if let Some(file) = &parsed.file {
        let lowered = ir::lower(file);
        // A number the lexer rejected reaches lowering as a stand-in value: drop what lowering
        // says about a span overlapping it, it is the same mistake.
        let lexed_away = |d: &Diagnostic| {
            let span = &d.primary.span;
            parsed.diagnostics.iter().any(|l| {
                l.code == diag::Code::NumberTooLarge
                    && l.primary.span.start < span.end
                    && span.start < l.primary.span.end
            })
        };
        diagnostics.extend(lowered.diagnostics.into_iter().filter(|d| !lexed_away(d)));
        if diagnostics.is_empty() {
            program = lowered.program;
        }
    }
    Compiled {
        parsed,
        program,
        diagnostics,
    }
}
