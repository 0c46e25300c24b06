//! Channel scores: the weight slice of every channel, the per-method score of a pruning unit,
//! and the LAMP normalisation.
//!
//! A *slice* is what one channel owns in a weight `[O, C, k...]` (row-major): row `o` on the
//! output side, column `c` (every `w[o, c, k]`) on the input side. A unit's channel `u` has
//! one slice per member layer; its *filter* is those slices concatenated in member order.
//!
//! | method | score of channel `u` |
//! |---|---|
//! | `l1` | `sum |w|` over the filter |
//! | `l2` | `sqrt(sum w^2)` over the filter |
//! | `lamp`, `sp-lamp` | `sum w^2` over the filter, plus `gamma^2` of the batch norm after each producer (output side, where there is one) |
//! | `fpgm` | `sum over v of ||F_u - F_v||_2` over the unit's filters |
//! | `bn-scale` | `|gamma|` of the batch norm after the layer (summed over a group's producers) |
//!
//! Invariants: scores are finite and non-negative for finite weights; [`lamp`] is a pure
//! function of its input (a stable sort, ties broken by the lower index) whose largest entry
//! is exactly 1.

use super::{Method, PruneError, Side, Unit};
use crate::analysis::Provenance;
use crate::ir::{Op, Program};
use crate::weights::Weights;
use petgraph::graph::NodeIndex;

/// The L1 norm of every channel on `side` of a layer whose weight is `[O, C, ...]` row-major:
/// `norm[c] = sum over o, k of |w[o, c, k]|` (input side) or `norm[o] = sum over c, k of
/// |w[o, c, k]|` (output side). The bias is not counted.
///
/// ```
/// use nnirc::prune::{l1_norms, Side};
/// // w[o, c] for O = 2, C = 3.
/// let w = [1.0, -2.0, 0.5, -1.0, 0.0, 0.25];
/// assert_eq!(l1_norms(&w, &[2, 3], Side::Input), vec![2.0, 2.0, 0.75]);
/// assert_eq!(l1_norms(&w, &[2, 3], Side::Output), vec![3.5, 1.25]);
/// ```
pub fn l1_norms(weight: &[f64], shape: &[usize], side: Side) -> Vec<f64> {
    slices(weight, shape, side)
        .iter()
        .map(|s| s.iter().map(|v| v.abs()).sum())
        .collect()
}

/// The slice of every channel on `side` of a weight `[O, C, ...]` (row-major): row `o`, or
/// column `c` in `(o, k)` order.
///
/// ```
/// use nnirc::prune::{scores::slices, Side};
/// let w = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // [2, 3]
/// assert_eq!(slices(&w, &[2, 3], Side::Input)[1], vec![2.0, 5.0]);
/// assert_eq!(slices(&w, &[2, 3], Side::Output)[1], vec![4.0, 5.0, 6.0]);
/// ```
pub fn slices(weight: &[f64], shape: &[usize], side: Side) -> Vec<Vec<f64>> {
    let (outs, ins) = (shape[0], shape[1]);
    let kernel: usize = shape[2..].iter().product();
    assert_eq!(
        weight.len(),
        outs * ins * kernel,
        "weight data matches its shape"
    );
    match side {
        Side::Output => weight.chunks(ins * kernel).map(<[f64]>::to_vec).collect(),
        Side::Input => (0..ins)
            .map(|c| {
                (0..outs)
                    .flat_map(|o| {
                        let start = (o * ins + c) * kernel;
                        weight[start..start + kernel].iter().copied()
                    })
                    .collect()
            })
            .collect(),
    }
}

/// Indices of `scores` in ascending order; ties keep the lower index first (a stable sort),
/// so the order is a pure function of the scores.
pub fn ascending(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    order
}

/// LAMP (Lee et al., ICLR 2021): with the scores sorted ascending (stably),
/// `lamp(u) = s_u / sum over v >= u of s_v`, written back to each channel's own position (the
/// inverse of the sort permutation). The last in sorted order scores exactly 1; where the
/// suffix sum is 0 (all-zero tails), the last scores 1 and the others 0. Scores are meant to
/// be squared norms (LAMP's derivation), but any non-negative score works.
///
/// ```
/// use nnirc::prune::scores::lamp;
/// // Sorted: 1 (index 1), 2 (3), 3 (0), 4 (2); suffix sums 10, 9, 7, 4.
/// let l = lamp(&[3.0, 1.0, 4.0, 2.0]);
/// let expected = [3.0 / 7.0, 1.0 / 10.0, 1.0, 2.0 / 9.0];
/// assert!(l.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-15));
/// ```
pub fn lamp(scores: &[f64]) -> Vec<f64> {
    let order = ascending(scores);
    let mut result = vec![0.0; scores.len()];
    let mut suffix = 0.0;
    for (rank, &i) in order.iter().enumerate().rev() {
        suffix += scores[i];
        result[i] = if suffix > 0.0 {
            scores[i] / suffix
        } else if rank + 1 == order.len() {
            1.0
        } else {
            0.0
        };
    }
    result
}

/// FPGM (He et al., CVPR 2019): `score(j) = sum over k of ||F_j - F_k||_2`. The smallest sum
/// is closest to the geometric median: the most replaceable, pruned first.
///
/// ```
/// use nnirc::prune::scores::fpgm;
/// let s = fpgm(&[vec![0.0], vec![1.0], vec![3.0]]);
/// assert_eq!(s, vec![4.0, 3.0, 5.0]);
/// ```
pub fn fpgm(filters: &[Vec<f64>]) -> Vec<f64> {
    let n = filters.len();
    let mut sums = vec![0.0; n];
    for j in 0..n {
        for k in j + 1..n {
            let d: f64 = filters[j]
                .iter()
                .zip(&filters[k])
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f64>()
                .sqrt();
            sums[j] += d;
            sums[k] += d;
        }
    }
    sums
}

/// The batch norm reading `node` directly (the first by index), if any.
fn batch_norm_after(program: &Program, node: NodeIndex) -> Option<NodeIndex> {
    program
        .users(node)
        .into_iter()
        .find(|&u| matches!(program.graph[u].op, Op::BatchNorm { .. }))
}

/// The batch norm whose output `node` reads through ops that keep each channel where it is
/// (activations, dropout, pools, flatten), with the features per channel of `node`'s input.
fn batch_norm_before(program: &Program, node: NodeIndex) -> Option<(NodeIndex, usize)> {
    let mut at = *program.operands(node).first()?;
    let mut per = 1;
    loop {
        match &program.graph[at].op {
            Op::BatchNorm { .. } => return Some((at, per)),
            Op::Activation(_)
            | Op::Dropout { .. }
            | Op::MaxPool2d(_)
            | Op::AvgPool2d(_)
            | Op::GlobalAvgPool
            | Op::AdaptiveAvgPool => {}
            Op::Flatten => {
                let x = &program.graph[program.operands(at)[0]].shape;
                per *= x[2..].iter().product::<usize>();
            }
            _ => return None,
        }
        at = program.operands(at)[0];
    }
}

/// The scores of a unit's channels under `method` (module docs). `prov` is the program's
/// provenance (bn-scale on the input side follows channels through adds and concats).
pub(super) fn unit_scores(
    program: &Program,
    weights: &Weights,
    prov: &Provenance,
    unit: &Unit,
    method: Method,
    side: Side,
) -> Result<Vec<f64>, PruneError> {
    if method == Method::BnScale {
        return bn_scores(program, weights, prov, unit, side);
    }
    let mut filters: Vec<Vec<f64>> = vec![Vec::new(); unit.channels];
    let mut extra = vec![0.0; unit.channels];
    for (node, map) in &unit.members {
        let p = program.graph[*node].params[0];
        let s = slices(&weights.values(p), &program.params[p].shape, side);
        for (u, &c) in map.iter().enumerate() {
            filters[u].extend_from_slice(&s[c]);
        }
        if matches!(method, Method::Lamp | Method::SpLamp) && side == Side::Output {
            if let Some(bn) = batch_norm_after(program, *node) {
                let gamma = weights.values(program.graph[bn].params[0]);
                for (u, &c) in map.iter().enumerate() {
                    extra[u] += gamma[c] * gamma[c];
                }
            }
        }
    }
    Ok(match method {
        Method::L1 => filters
            .iter()
            .map(|f| f.iter().map(|v| v.abs()).sum())
            .collect(),
        Method::L2 => filters
            .iter()
            .map(|f| f.iter().map(|v| v * v).sum::<f64>().sqrt())
            .collect(),
        Method::Lamp | Method::SpLamp => filters
            .iter()
            .zip(&extra)
            .map(|(f, e)| f.iter().map(|v| v * v).sum::<f64>() + e)
            .collect(),
        Method::Fpgm => fpgm(&filters),
        Method::BnScale => unreachable!("handled above"),
    })
}

/// bn-scale: `|gamma|` of the batch norm after each producer (output side), or of the batch
/// norm the consumer reads (input side: the one right before it, else, channel by channel, the
/// one after the channel's producer). A missing batch norm is an error, never a fallback.
fn bn_scores(
    program: &Program,
    weights: &Weights,
    prov: &Provenance,
    unit: &Unit,
    side: Side,
) -> Result<Vec<f64>, PruneError> {
    let missing = |node: NodeIndex, what: &str| {
        let n = &program.graph[node];
        PruneError::Model {
            message: format!(
                "--method bn-scale: {what} (is batch norm folded into the conv, as the ONNX \
                 importer does? then use another method)",
            ),
            name: n.name.clone(),
            span: n.span.clone(),
        }
    };
    let mut scores = vec![0.0; unit.channels];
    for (node, map) in &unit.members {
        match side {
            Side::Output => {
                let bn = batch_norm_after(program, *node).ok_or_else(|| {
                    missing(
                        *node,
                        &format!("no batch_norm reads %{}", program.graph[*node].name),
                    )
                })?;
                let gamma = weights.values(program.graph[bn].params[0]);
                for (u, &c) in map.iter().enumerate() {
                    scores[u] += gamma[c].abs();
                }
            }
            Side::Input => {
                if let Some((bn, per)) = batch_norm_before(program, *node) {
                    let gamma = weights.values(program.graph[bn].params[0]);
                    for (u, &c) in map.iter().enumerate() {
                        scores[u] += gamma[c / per].abs();
                    }
                    continue;
                }
                let layout = prov.layout(program.operands(*node)[0]);
                let per = layout.features_per_channel;
                for (u, &c) in map.iter().enumerate() {
                    let origin = layout.origins[c / per];
                    let producer = prov.spaces[origin.space].node;
                    let bn = batch_norm_after(program, producer).ok_or_else(|| {
                        missing(
                            *node,
                            &format!(
                                "%{} reads channels of %{}, and no batch_norm reads either",
                                program.graph[*node].name, program.graph[producer].name
                            ),
                        )
                    })?;
                    scores[u] += weights.values(program.graph[bn].params[0])[origin.channel].abs();
                }
            }
        }
    }
    Ok(scores)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12)
    }

    #[test]
    fn lamp_by_hand() {
        // Squared norms of filters with norms 1, 2, 3, 4: suffix sums 30, 29, 25, 16.
        assert!(close(
            &lamp(&[1.0, 4.0, 9.0, 16.0]),
            &[1.0 / 30.0, 4.0 / 29.0, 9.0 / 25.0, 1.0]
        ));
        // A permutation that is not its own inverse: [3, 1, 4, 2] sorts by [1, 3, 0, 2], whose
        // inverse is [2, 0, 3, 1]; scattering by the sort indices instead would give
        // [2/9, 1, 1/10, 3/7].
        assert!(close(
            &lamp(&[3.0, 1.0, 4.0, 2.0]),
            &[3.0 / 7.0, 0.1, 1.0, 2.0 / 9.0]
        ));
        assert!(close(&lamp(&[5.0]), &[1.0]));
        assert!(lamp(&[]).is_empty());
    }

    #[test]
    fn lamp_ties_are_stable_and_one_channel_scores_one() {
        // Equal scores: the lower index comes first in the sort, so scores rise with the index.
        assert!(close(&lamp(&[1.0; 4]), &[0.25, 1.0 / 3.0, 0.5, 1.0]));
        assert!(close(&lamp(&[2.0, 1.0, 2.0]), &[0.5, 0.2, 1.0]));
        // All-zero tails: the last in order scores 1, the rest 0.
        assert!(close(&lamp(&[0.0, 0.0, 0.0]), &[0.0, 0.0, 1.0]));
        assert!(close(&lamp(&[0.0, 2.0, 0.0]), &[0.0, 1.0, 0.0]));
        for s in [vec![0.3, 0.3, 0.1], vec![7.0, 0.0, 7.0, 7.0]] {
            assert_eq!(lamp(&s).iter().filter(|&&v| v == 1.0).count(), 1, "{s:?}");
        }
    }

    #[test]
    fn lamp_keeps_the_order_within_a_layer() {
        let s = [0.5, 3.0, 0.25, 3.0, 1.0, 0.0];
        assert_eq!(ascending(&lamp(&s)), ascending(&s));
    }

    #[test]
    fn norms_and_slices() {
        // w[o, c, k] with O = 1, C = 2, K = 2.
        let w = [1.0, -1.0, 0.5, 0.5];
        assert_eq!(l1_norms(&w, &[1, 2, 1, 2], Side::Input), vec![2.0, 1.0]);
        assert_eq!(l1_norms(&w, &[1, 2, 1, 2], Side::Output), vec![3.0]);
        assert_eq!(
            slices(&w, &[1, 2, 1, 2], Side::Input),
            vec![vec![1.0, -1.0], vec![0.5, 0.5]]
        );
    }

    #[test]
    fn fpgm_by_hand() {
        // Three filters on a line and one far off: the middle one is most central.
        let f = [vec![0.0, 0.0], vec![3.0, 4.0], vec![6.0, 8.0]];
        assert_eq!(fpgm(&f), vec![15.0, 10.0, 15.0]);
        assert_eq!(fpgm(&[vec![1.0]]), vec![0.0]);
    }
}
