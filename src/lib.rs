//! nnirc: a compiler for `.nnir`, a textual IR for convolutional networks.
//!
//! The pipeline, one module per phase:
//! `.nnir` text --[`syntax::parse`]--> AST with byte spans --[`ir::lower`]--> graph IR
//! (petgraph, shapes and channel counts inferred) --[`weights::load`]--> parameter tensors
//! --[`interp::run`]--> outputs (the reference meaning, masks as zeroed weight slices).
//! [`prune`] writes L1 channel masks back into the source (inputs for the optimizer).
//! [`onnx`] exports a (masked) program to ONNX and imports ONNX models back.
//! User errors are [`diag::Diagnostic`]s at every step; [`cli`] ties the phases to `nnirc`.

pub mod analysis;
pub mod cli;
pub mod codegen;
pub mod diag;
pub mod egraph;
pub mod export;
pub mod files;
pub mod interp;
pub mod ir;
pub mod onnx;
pub mod prune;
pub mod report;
pub mod solver;
pub mod syntax;
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
