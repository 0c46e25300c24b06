//! The syntax layer: `.nnir` text -> [`ast::File`] plus diagnostics, and back to text.
//!
//! Invariants: [`parse`] never panics and never fails as a whole; every lexer and parser
//! error becomes a [`Diagnostic`](crate::diag::Diagnostic) with a byte span. This layer knows nothing of ops or shapes.

pub mod ast;
pub mod lexer;
mod parser;
pub mod print;

pub use parser::{parse, Parsed};
