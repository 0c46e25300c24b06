//! The union closure (`nnirc optimize --mode union`): coupled consumers prune the union of
//! what each prunes.
//!
//! This is one way pruners avoid copies: every consumer of a segment keeps
//! only the channels that *all* of them keep, so they all read the same set and the export
//! needs no selection. It changes the network (it prunes more), so it is a different masked
//! program; [`union_masks`] returns it with the count of extra pruned input channels, for the
//! accuracy/latency comparison the UPSCALE paper makes. (The other constrained mode, one
//! `keep_out` mask per coupled group of producers at a matched amount, is a pruner:
//! `nnirc prune --side output`, [`crate::prune`].)

use crate::analysis::{self, Segments};
use crate::ir::Program;

/// The program with every channel-mixing consumer's `keep_in` narrowed to what all consumers
/// of each segment it reads keep, and the number of input channels (or features) this prunes
/// beyond the original masks.
pub fn union_masks(program: &Program) -> (Program, usize) {
    let prov = analysis::provenance(program);
    let segs: Segments = analysis::segment(program, &prov);
    // Per segment, the channels every consumer keeps.
    let common: Vec<Vec<bool>> = segs
        .segments
        .iter()
        .map(|seg| {
            let mut all = vec![true; seg.channels];
            for c in &seg.consumers {
                let mut kept = vec![false; seg.channels];
                for &k in &c.kept {
                    kept[k] = true;
                }
                for (a, k) in all.iter_mut().zip(kept) {
                    *a &= k;
                }
            }
            all
        })
        .collect();
    let mut out = program.clone();
    let mut extra = 0;
    for n in program.graph.node_indices() {
        let node = &program.graph[n];
        if !node.op.is_channel_mixing() {
            continue;
        }
        let input = program.operands(n)[0];
        let layout = prov.layout(input);
        let per = layout.features_per_channel;
        let entries = program.graph[input].shape[1];
        let before: Vec<usize> = node
            .keep_in
            .clone()
            .unwrap_or_else(|| (0..entries).collect());
        let after: Vec<usize> = before
            .iter()
            .copied()
            .filter(|&f| {
                let (s, class) = segs.locate(layout.origins[f / per]);
                common[s][class]
            })
            .collect();
        extra += before.len() - after.len();
        // A layer keeps at least one input: fall back to its first original channel.
        let after = if after.is_empty() {
            before[..1].to_vec()
        } else {
            after
        };
        out.graph[n].keep_in = (after.len() < entries).then_some(after);
    }
    (out, extra)
}
