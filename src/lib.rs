//! nnirc: a compiler for `.nnir`, a textual IR for convolutional networks.
//!
//! The pipeline, one module per phase:
//! `.nnir` text --[`syntax::parse`]--> AST with byte spans --[`ir::lower`]--> graph IR
//! (petgraph, shapes and channel counts inferred) --[`weights::bind`]--> parameter tensors
//! --[`interp::run`]--> outputs (the reference meaning, masks as zeroed weight slices).
//! User errors are [`diag::Diagnostic`]s at every step; [`cli`] ties the phases to `nnirc`.

pub mod diag;
pub mod ir;
pub mod syntax;
