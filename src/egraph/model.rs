//! Cost models: what a selection op or a zero weight column costs on a runtime.
//!
//! A model prices three things, each from sizes only: a channel `slice`, a channel `gather`,
//! and the extra multiply-adds of zero-padded weight columns. Extraction
//! ([`extract`](super::extract)) adds these up over the distinct e-nodes of a plan; weight
//! transforms are done at export time and cost nothing.
//!
//! Calibration of the defaults (DESIGN.md, onnxruntime and tract on CPU): a channel copy in
//! front of a 1x1 convolution costs 15-18% of the convolution, 1-3% in front of a 3x3 one,
//! which both put one multiply-add at about 0.4 bytes copied; hence `mac_per_mille = 400`.

use super::cost::Cost;

/// Prices the ops a read plan is made of. Costs from one model share a unit.
pub trait CostModel {
    /// A short name for reports.
    fn name(&self) -> &str;
    /// A contiguous channel slice copying `channels` channels of `bytes_per_channel` bytes.
    fn slice(&self, channels: usize, bytes_per_channel: u64) -> Cost;
    /// A channel gather copying `channels` channels of `bytes_per_channel` bytes.
    fn gather(&self, channels: usize, bytes_per_channel: u64) -> Cost;
    /// `columns` zero weight columns in one consumer, each adding `macs_per_column`
    /// multiply-adds per inference.
    fn zero_columns(&self, columns: usize, macs_per_column: u64) -> Cost;
    /// Whether a contiguous slice copies on this runtime (false where slices are views); the
    /// report counts copies by it.
    fn slice_copies(&self) -> bool {
        true
    }
}

fn bytes(channels: usize, bytes_per_channel: u64) -> Cost {
    Cost::new(bytes_per_channel).times(channels as u64)
}

fn macs(columns: usize, macs_per_column: u64, per_mille: u64) -> Cost {
    let macs = (columns as u64).saturating_mul(macs_per_column);
    Cost::ratio(macs, per_mille, 1000)
}

/// Runtimes with zero-copy views (PyTorch eager): a slice is free, a gather costs its bytes,
/// a zero column its multiply-adds at `mac_per_mille` byte-equivalents per 1000 MACs (any
/// positive weight makes an exact slice beat a padded read). Unit: byte-equivalents.
///
/// ```
/// use nnirc::egraph::{Cost, CostModel, Views};
/// let views = Views::default();
/// assert_eq!(views.slice(8, 100), Cost::ZERO);
/// assert_eq!(views.gather(8, 100), Cost::new(800));
/// assert_eq!(views.zero_columns(2, 1000), Cost::new(800));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Views {
    pub mac_per_mille: u64,
}

impl Default for Views {
    fn default() -> Views {
        Views { mac_per_mille: 400 }
    }
}

impl CostModel for Views {
    fn name(&self) -> &str {
        "views"
    }
    fn slice(&self, _channels: usize, _bytes_per_channel: u64) -> Cost {
        Cost::ZERO
    }
    fn slice_copies(&self) -> bool {
        false
    }
    fn gather(&self, channels: usize, bytes_per_channel: u64) -> Cost {
        bytes(channels, bytes_per_channel)
    }
    fn zero_columns(&self, columns: usize, macs_per_column: u64) -> Cost {
        macs(columns, macs_per_column, self.mac_per_mille)
    }
}

/// Graph runtimes (onnxruntime, tract): every selection op copies, so a slice costs what a
/// gather does: its bytes plus `op_overhead`; a zero column costs its multiply-adds at
/// `mac_per_mille` byte-equivalents per 1000 MACs. Unit: byte-equivalents.
///
/// ```
/// use nnirc::egraph::{Cost, CostModel, Graph};
/// let graph = Graph::default();
/// assert_eq!(graph.slice(8, 100), graph.gather(8, 100));
/// assert_eq!(graph.gather(8, 100), Cost::new(800 + 4096));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    pub op_overhead: u64,
    pub mac_per_mille: u64,
}

impl Default for Graph {
    fn default() -> Graph {
        Graph {
            op_overhead: 4096,
            mac_per_mille: 400,
        }
    }
}

impl CostModel for Graph {
    fn name(&self) -> &str {
        "graph"
    }
    fn slice(&self, channels: usize, bytes_per_channel: u64) -> Cost {
        self.gather(channels, bytes_per_channel)
    }
    fn gather(&self, channels: usize, bytes_per_channel: u64) -> Cost {
        bytes(channels, bytes_per_channel) + Cost::new(self.op_overhead)
    }
    fn zero_columns(&self, columns: usize, macs_per_column: u64) -> Cost {
        macs(columns, macs_per_column, self.mac_per_mille)
    }
}
