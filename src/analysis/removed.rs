//! Channels removed by `keep_out` masks, tensor by tensor.
//!
//! A producer's pruned output channel is *removed*: it is zero, and it stays zero through every
//! per-channel op on its path (batch norm, activations, depthwise conv, pooling), so a removed
//! channel reaches batch norm and everything downstream as zero, not as batch norm's shift.
//! Add keeps a channel unless both operands removed it; mul removes it if either operand did
//! (zero times anything); concat, gather, slice, permute and flatten move the flags with the
//! channels. The interpreter zeroes removed channels after each op: this is part of what a
//! masked program means.

use crate::ir::{Op, Program};

/// For each node (by `NodeIndex::index()`), one flag per entry of axis 1 (channels, or
/// features for rank-2 tensors), `true` where removed; `None` where nothing is removed.
pub fn removed_channels(program: &Program) -> Vec<Option<Vec<bool>>> {
    let mut removed: Vec<Option<Vec<bool>>> = vec![None; program.graph.node_count()];
    for n in program.topo_order() {
        let node = &program.graph[n];
        let operands = program.operands(n);
        let flags = |i: usize| removed[operands[i].index()].as_ref();
        let channels = node.shape[1];
        let result: Option<Vec<bool>> = match &node.op {
            Op::Input => None,
            Op::Linear | Op::Conv2d(_) if node.keep_out.is_some() => {
                let kept = node.keep_out.as_ref().expect("checked");
                let mut r = vec![true; channels];
                for &k in kept {
                    r[k] = false;
                }
                Some(r)
            }
            // Depthwise convs carry their input's channels.
            Op::Conv2d(_) if program.is_depthwise(n) => flags(0).cloned(),
            Op::Linear | Op::Conv2d(_) => None,
            Op::BatchNorm { .. }
            | Op::Activation(_)
            | Op::Dropout { .. }
            | Op::MaxPool2d(_)
            | Op::AvgPool2d(_)
            | Op::GlobalAvgPool
            | Op::AdaptiveAvgPool => flags(0).cloned(),
            Op::Add | Op::Mul => {
                let both = node.op == Op::Add;
                let at = |i: usize, c: usize| {
                    flags(i).is_some_and(|f| f[if f.len() == 1 { 0 } else { c }])
                };
                if flags(0).is_none() && flags(1).is_none() {
                    None
                } else {
                    Some(
                        (0..channels)
                            .map(|c| {
                                if both {
                                    at(0, c) && at(1, c)
                                } else {
                                    at(0, c) || at(1, c)
                                }
                            })
                            .collect(),
                    )
                }
            }
            Op::Concat => {
                if (0..operands.len()).all(|i| flags(i).is_none()) {
                    None
                } else {
                    Some(
                        (0..operands.len())
                            .flat_map(|i| match flags(i) {
                                Some(f) => f.clone(),
                                None => vec![false; program.graph[operands[i]].shape[1]],
                            })
                            .collect(),
                    )
                }
            }
            Op::Flatten => flags(0).map(|f| {
                let per: usize = program.graph[operands[0]].shape[2..].iter().product();
                f.iter()
                    .flat_map(|&r| std::iter::repeat_n(r, per))
                    .collect()
            }),
            Op::Gather { indices } | Op::Permute { order: indices } => {
                flags(0).map(|f| indices.iter().map(|&i| f[i]).collect())
            }
            Op::Slice { start, end } => flags(0).map(|f| f[*start..*end].to_vec()),
        };
        removed[n.index()] = result.filter(|r| r.iter().any(|&x| x));
    }
    removed
}
