//! A measured latency model of the deploy runtime (onnxruntime on the CPU): `nnirc latency`.
//!
//! - [`units`]: the program as the runtime runs it, one [`units::Unit`] per kernel after the
//!   runtime's fusions, keyed by a [`units::Kernel`] (the layer without its channel counts).
//! - [`micro`]: the width grid measured per kernel and the micro-model timed at each point.
//! - `measure` (cargo feature `onnxruntime`): times the micro-models in onnxruntime, loaded at
//!   run time from the shared library the PyPI wheel ships, and writes a [`Table`].
//! - [`table`]: the table format (version 2) and the per-unit lookup, which never
//!   interpolates across the aligned/unaligned boundary of onnxruntime's NCHWc block.
//! - [`predict`]: whole-model latency = units + layout reorders + overheads.
//! - [`nodes`]: the table as the pruner's per-node latency (`nnirc prune --method sp-lamp`).
//!
//! docs/latency.md documents the format and the method; docs/benchmarks.md the validation.

#[cfg(feature = "onnxruntime")]
pub mod measure;
pub mod micro;
pub mod nodes;
pub mod predict;
pub mod table;
pub mod units;

pub use nodes::UnitLatency;
pub use predict::{predict, Prediction};
pub use table::{Table, TableError};
