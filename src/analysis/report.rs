//! Human-readable and Graphviz views of segments (`nnirc segments`).

use super::provenance::Provenance;
use super::segments::{Segment, Segments};
use crate::ir::Program;
use std::fmt::Write;

/// A model's segments, to be shown as text or as a Graphviz digraph: the library entry of
/// `nnirc segments` (the analysis runs once; each view is made when asked for).
#[derive(Debug, Clone)]
pub struct SegmentsView<'p> {
    program: &'p Program,
    provenance: Provenance,
    segments: Segments,
}

impl SegmentsView<'_> {
    /// [`describe`]'s text.
    pub fn text(&self) -> String {
        describe(self.program, &self.provenance, &self.segments)
    }

    /// [`dot`]'s digraph.
    pub fn dot(&self) -> String {
        dot(self.program, &self.provenance, &self.segments)
    }
}

/// Analyses `program`'s segments.
///
/// ```
/// let src = "model m(%x: f32[1, 2, 4, 4]) -> (%y) {
///   param @a: f32[4, 2, 1, 1]
///   param @b: f32[3, 4, 1, 1]
///   %h = conv2d(%x, @a)
///   %y = conv2d(%h, @b) keep_in=[0, 2]
/// }";
/// let program = nnirc::compile(src).program.unwrap();
/// let view = nnirc::analysis::segments_view(&program);
/// assert!(view.text().contains("%y"));
/// assert!(view.dot().starts_with("digraph"));
/// ```
pub fn segments_view(program: &Program) -> SegmentsView<'_> {
    let provenance = super::provenance(program);
    let segments = super::segment(program, &provenance);
    SegmentsView {
        program,
        provenance,
        segments,
    }
}

/// One block per segment: producers, consumers with what they keep, outputs, fixedness.
/// Segments without consumers, outputs or a reason to be fixed are counted in one line.
pub fn describe(program: &Program, prov: &Provenance, segs: &Segments) -> String {
    let name = |n: petgraph::graph::NodeIndex| format!("%{}", program.graph[n].name);
    let mut out = String::new();
    let mut quiet = 0;
    for (id, seg) in segs.segments.iter().enumerate() {
        if seg.consumers.is_empty() && seg.outputs.is_empty() && seg.fixed.is_none() {
            quiet += 1;
            continue;
        }
        let plural = if seg.channels == 1 { "" } else { "s" };
        let _ = writeln!(out, "segment {id}: {} channel{plural}", seg.channels);
        let producers: Vec<String> = seg
            .spaces
            .iter()
            .map(|&s| name(prov.spaces[s].node))
            .collect();
        let _ = writeln!(out, "  producers: {}", producers.join(", "));
        if let Some(fixed) = seg.fixed {
            let _ = writeln!(out, "  fixed: {}", fixed.describe());
        }
        for c in &seg.consumers {
            let contiguous = if is_contiguous_in_original_order(seg, &c.kept) {
                "contiguous"
            } else {
                "scattered"
            };
            let _ = writeln!(
                out,
                "  consumer {}: reads {}, keeps {} ({contiguous})",
                name(c.node),
                c.read.len(),
                c.kept.len()
            );
        }
        if !seg.outputs.is_empty() {
            let outputs: Vec<String> = seg.outputs.iter().map(|&n| name(n)).collect();
            let _ = writeln!(out, "  model outputs: {}", outputs.join(", "));
        }
        let dead = dead_channels(seg);
        if dead > 0 {
            let _ = writeln!(out, "  dead channels (no consumer keeps them): {dead}");
        }
    }
    if quiet > 0 {
        let _ = writeln!(
            out,
            "({quiet} segments without consumers or outputs not shown)"
        );
    }
    out
}

/// Whether `kept` (segment channels) is a range in the segment's original order, i.e. in the
/// channel order of its first producer.
fn is_contiguous_in_original_order(seg: &Segment, kept: &[usize]) -> bool {
    let Some(classes) = seg.class_of.first() else {
        return true;
    };
    let mut positions: Vec<usize> = classes
        .iter()
        .enumerate()
        .filter(|(_, c)| kept.binary_search(c).is_ok())
        .map(|(i, _)| i)
        .collect();
    positions.sort_unstable();
    positions.windows(2).all(|w| w[1] == w[0] + 1)
}

/// Segment channels no consumer keeps, for segments that can be cut (not fixed, and reaching
/// no model output).
fn dead_channels(seg: &Segment) -> usize {
    if !seg.outputs.is_empty() || seg.fixed.is_some() {
        return 0;
    }
    let mut live = vec![false; seg.channels];
    for c in &seg.consumers {
        for &k in &c.kept {
            live[k] = true;
        }
    }
    live.iter().filter(|&&l| !l).count()
}

/// A Graphviz digraph of the model with each node coloured by the segment it belongs to.
pub fn dot(program: &Program, prov: &Provenance, segs: &Segments) -> String {
    const COLORS: [&str; 8] = [
        "#8dd3c7", "#ffffb3", "#bebada", "#fb8072", "#80b1d3", "#fdb462", "#b3de69", "#fccde5",
    ];
    let mut out = format!(
        "digraph \"{}\" {{\n  node [shape=box, style=filled, fontname=monospace];\n",
        program.name
    );
    for n in program.topo_order() {
        let node = &program.graph[n];
        let layout = prov.layout(n);
        let segment = layout.origins.first().map(|&o| segs.locate(o).0);
        let color = segment.map_or("white", |s| COLORS[s % COLORS.len()]);
        let label = match segment {
            Some(s) => format!("%{} = {}\\nsegment {s}", node.name, node.op.name()),
            None => format!("%{} = {}", node.name, node.op.name()),
        };
        let _ = writeln!(
            out,
            "  n{} [label=\"{label}\", fillcolor=\"{color}\"];",
            n.index()
        );
        for o in program.operands(n) {
            let _ = writeln!(out, "  n{} -> n{};", o.index(), n.index());
        }
    }
    out.push_str("}\n");
    out
}
