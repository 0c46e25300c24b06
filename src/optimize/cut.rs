//! Cutting weights: each new parameter is copied once, straight from the old parameter's bytes
//! (a memory map, usually) into one output buffer.
//!
//! Input: the original [`Weights`] and one [`Cut`] per new parameter. Output: new [`Weights`]
//! whose tensors are views into a single buffer laid out in parameter order, which is exactly
//! the data section of the optimized model's safetensors file. Each tensor keeps its source's
//! dtype; nothing is converted. Positions a cut leaves empty (`None`) are zero, or `fill` for a
//! whole empty row (batch-norm variance uses 1).
//!
//! Invariant: every index in a cut is inside its source's shape ([`rewrite`](super::rewrite)
//! builds cuts from live layouts, so this holds by construction; a violation is a bug and
//! panics on a slice bound).

use crate::ir::ParamId;
use crate::weights::{Dtype, TensorData, Weights};
use std::sync::Arc;

/// Where a new parameter's data comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// An old parameter, cut as the [`Cut`] says.
    Param(ParamId),
    /// Values computed by the rewrite (a channel mask), stored as F32.
    Values(Vec<f32>),
}

/// How one new parameter is taken from an old one, seen as `[rows, columns, inner]` (or
/// `[rows, inner]` when `columns` is `None`).
#[derive(Debug, Clone, PartialEq)]
pub struct Cut {
    pub source: Source,
    /// Old row per new row; `None`: a row of `fill`.
    pub rows: Vec<Option<usize>>,
    /// Old column per new column, out of `source_columns`; `None`: a zero column. `None` for
    /// the whole list: rows are copied whole.
    pub columns: Option<Vec<Option<usize>>>,
    /// The source's column count (its `shape[1]`) when `columns` is set.
    pub source_columns: usize,
    /// Elements per (row, column) cell, or per row when `columns` is `None`.
    pub inner: usize,
    /// The value of an empty row.
    pub fill: f64,
}

impl Cut {
    /// A new parameter holding `values`.
    pub fn values(values: Vec<f32>) -> Cut {
        Cut {
            rows: vec![None; values.len()],
            source: Source::Values(values),
            columns: None,
            source_columns: 0,
            inner: 1,
            fill: 0.0,
        }
    }

    /// Elements of the new tensor.
    fn len(&self) -> usize {
        let width = self.columns.as_ref().map_or(1, Vec::len);
        self.rows.len() * width * self.inner
    }
}

/// A maximal run of the new columns: `len` old columns from `from` on, or `len` zero columns.
#[derive(Debug, Clone, Copy)]
struct Run {
    from: Option<usize>,
    len: usize,
}

fn runs(columns: &[Option<usize>]) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    for &c in columns {
        match (runs.last_mut(), c) {
            (Some(Run { from: Some(f), len }), Some(c)) if *f + *len == c => *len += 1,
            (Some(Run { from: None, len }), None) => *len += 1,
            _ => runs.push(Run { from: c, len: 1 }),
        }
    }
    runs
}

/// Outputs at least this large are cut into huge pages by two threads: page faults and
/// memory bandwidth, not arithmetic, bound a cut.
const LARGE: usize = 4 << 20;

/// Cuts every new parameter out of `weights` into one fresh buffer.
pub fn cut(weights: &Weights, cuts: &[Cut]) -> Weights {
    let dtypes: Vec<Dtype> = cuts
        .iter()
        .map(|c| match c.source {
            Source::Param(p) => weights.tensor(p).dtype(),
            Source::Values(_) => Dtype::F32,
        })
        .collect();
    let mut offsets = Vec::with_capacity(cuts.len() + 1);
    let mut total = 0usize;
    for (c, d) in cuts.iter().zip(&dtypes) {
        offsets.push(total);
        total += c.len() * d.size();
    }
    offsets.push(total);
    let buffer: crate::weights::Buffer = if total >= LARGE {
        let mut map = huge_zeroed(total);
        // Two halves by bytes, one per thread.
        let half = offsets.partition_point(|&o| o < total / 2);
        let (first, second) = map.split_at_mut(offsets[half]);
        std::thread::scope(|s| {
            s.spawn(|| fill_all(weights, &cuts[..half], &offsets[..=half], first));
            fill_all(weights, &cuts[half..], &offsets[half..], second);
        });
        match map.make_read_only() {
            Ok(map) => Arc::new(map),
            Err(e) => panic!("cannot protect a private anonymous map: {e}"),
        }
    } else {
        let mut vec = vec![0u8; total];
        fill_all(weights, cuts, &offsets, &mut vec);
        Arc::new(vec)
    };
    let tensors = dtypes
        .iter()
        .zip(offsets.windows(2))
        .map(|(&dtype, w)| TensorData::view(buffer.clone(), w[0]..w[1], dtype))
        .collect();
    Weights::new(tensors)
}

/// A zeroed anonymous map of `len` bytes, advised to use transparent huge pages where the
/// kernel offers them (a 2 MiB fault instead of 512 small ones).
fn huge_zeroed(len: usize) -> memmap2::MmapMut {
    let map = memmap2::MmapMut::map_anon(len)
        .unwrap_or_else(|e| panic!("cannot map {len} bytes for the weights: {e}"));
    #[cfg(target_os = "linux")]
    let _ = map.advise(memmap2::Advice::HugePage); // only a hint
    map
}

/// Fills `out`, which starts at `offsets[0]`, with `cuts` (`offsets` has one more entry).
fn fill_all(weights: &Weights, cuts: &[Cut], offsets: &[usize], out: &mut [u8]) {
    let mut rest = out;
    for (c, w) in cuts.iter().zip(offsets.windows(2)) {
        let (this, tail) = rest.split_at_mut(w[1] - w[0]);
        rest = tail;
        match &c.source {
            Source::Param(p) => {
                let source = weights.tensor(*p);
                fill(source, c, source.dtype().size(), this);
            }
            Source::Values(values) => {
                for (out, v) in this.chunks_exact_mut(4).zip(values) {
                    out.copy_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
}

/// Writes one cut into `out` (zeroed, exactly its size).
fn fill(source: &TensorData, c: &Cut, size: usize, out: &mut [u8]) {
    let src = source.bytes();
    let cell = c.inner * size;
    let fill_row = |row: &mut [u8]| {
        if c.fill != 0.0 {
            let value = match source.dtype() {
                Dtype::F32 => (c.fill as f32).to_le_bytes().to_vec(),
                Dtype::F64 => c.fill.to_le_bytes().to_vec(),
            };
            for v in row.chunks_exact_mut(size) {
                v.copy_from_slice(&value);
            }
        }
    };
    let Some(columns) = &c.columns else {
        for (row, o) in out.chunks_exact_mut(cell).zip(&c.rows) {
            match o {
                Some(o) => row.copy_from_slice(&src[o * cell..(o + 1) * cell]),
                None => fill_row(row),
            }
        }
        return;
    };
    let runs = runs(columns);
    let src_row = c.source_columns * cell;
    let out_row = columns.len() * cell;
    if out_row == 0 {
        return;
    }
    // Short runs of small cells (a reordered 1x1 or 3x3 conv) copy cell by cell with a copy
    // of known size; long runs go to memmove whole.
    let short = runs.len() * 4 > columns.len();
    for (row, o) in out.chunks_exact_mut(out_row).zip(&c.rows) {
        let Some(o) = o else {
            fill_row(row);
            continue;
        };
        let from_row = &src[o * src_row..(o + 1) * src_row];
        match cell {
            4 if short => copy_cells::<4>(row, from_row, columns),
            36 if short => copy_cells::<36>(row, from_row, columns),
            _ => {
                let mut at = 0;
                for r in &runs {
                    let bytes = r.len * cell;
                    if let Some(f) = r.from {
                        row[at..at + bytes].copy_from_slice(&from_row[f * cell..f * cell + bytes]);
                    }
                    at += bytes;
                }
            }
        }
    }
}

/// Copies cells of `N` bytes: `row`'s cell `j` from `from_row`'s cell `columns[j]` (left zero
/// for `None`).
fn copy_cells<const N: usize>(row: &mut [u8], from_row: &[u8], columns: &[Option<usize>]) {
    for (out, c) in row.chunks_exact_mut(N).zip(columns) {
        if let Some(c) = c {
            let cell: &[u8; N] = from_row[c * N..(c + 1) * N]
                .try_into()
                .expect("a cell of N bytes");
            out.copy_from_slice(cell);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_rows_columns_and_fills() {
        // A [3, 4, 2] weight with values 0..24 and a [3] vector.
        let w: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let weights = Weights::new(vec![
            TensorData::from_f32(&w),
            TensorData::from_f64(&[1.0, 2.0, 3.0]),
        ]);
        let matrix = Cut {
            source: Source::Param(0),
            rows: vec![Some(2), None],
            columns: Some(vec![Some(1), Some(2), None, Some(0)]),
            source_columns: 4,
            inner: 2,
            fill: 0.0,
        };
        let vector = Cut {
            source: Source::Param(1),
            rows: vec![Some(2), None, Some(0)],
            columns: None,
            source_columns: 0,
            inner: 1,
            fill: 1.0,
        };
        let out = cut(&weights, &[matrix, vector]);
        assert_eq!(
            out.tensor(0).to_vec::<f32>(),
            [18., 19., 20., 21., 0., 0., 16., 17., 0., 0., 0., 0., 0., 0., 0., 0.]
        );
        assert_eq!(out.tensor(1).dtype(), Dtype::F64);
        assert_eq!(out.tensor(1).to_vec::<f64>(), [3., 1., 1.]);
    }

    #[test]
    fn short_runs_of_small_cells_copy_cell_by_cell() {
        // 1x1 (cell of 4 bytes) and 3x3 (36 bytes) weights read in a scrambled order: every
        // run is one column long, so the cell-by-cell copy is taken.
        for inner in [1usize, 9] {
            let w: Vec<f32> = (0..2 * 6 * inner).map(|v| v as f32).collect();
            let weights = Weights::new(vec![TensorData::from_f32(&w)]);
            let columns = vec![Some(5), Some(3), Some(1), None, Some(0), Some(2)];
            let scrambled = Cut {
                source: Source::Param(0),
                rows: vec![Some(1), Some(0)],
                columns: Some(columns.clone()),
                source_columns: 6,
                inner,
                fill: 0.0,
            };
            let got = cut(&weights, &[scrambled]).tensor(0).to_vec::<f32>();
            let want: Vec<f32> = [1usize, 0]
                .iter()
                .flat_map(|&o| {
                    columns.iter().flat_map(move |c| {
                        (0..inner).map(move |k| match c {
                            Some(c) => ((o * 6 + c) * inner + k) as f32,
                            None => 0.0,
                        })
                    })
                })
                .collect();
            assert_eq!(got, want, "inner {inner}");
        }
    }
}
