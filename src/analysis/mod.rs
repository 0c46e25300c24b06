//! Channel analysis: where every channel of every tensor comes from ([`provenance`]), which
//! producers must share one channel order ([`segment`]), and which channels a keep_out mask
//! removes ([`removed_channels`]).
//!
//! Input: a checked [`crate::ir::Program`]. Output: plain data indexed by node, for the
//! optimizer, the interpreter (removed channels are part of the masked program's meaning) and
//! `nnirc segments`.

mod provenance;
mod removed;
mod report;
mod segments;

pub use provenance::{provenance, Layout, Origin, Provenance, Space, SpaceId, SpaceKind};
pub use removed::removed_channels;
pub use report::{describe, dot, segments_view, SegmentsView};
pub use segments::{segment, ConsumerRead, Fixed, Segment, SegmentId, Segments};
