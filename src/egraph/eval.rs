//! Reference evaluation of layout terms: the meaning every rule preserves.
//!
//! A tensor is one number per channel, a weight a dense matrix (columns are input channels).
//! `(pointwise n x)` maps each channel `v` to `v * v + n`. Evaluation is exact up to
//! floating-point summation order, so tests compare terms of one class numerically.

use super::language::{IndexSet, Layout, Tables};
use egg::RecExpr;

/// A dense row-major matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f64>,
}

impl Matrix {
    fn at(&self, r: usize, c: usize) -> f64 {
        self.data[r * self.cols + c]
    }

    /// The matrix whose column `j` is `column(j)` (`None`: zeros).
    fn with_columns(&self, cols: usize, column: impl Fn(usize) -> Option<usize>) -> Matrix {
        let mut data = vec![0.0; self.rows * cols];
        for j in 0..cols {
            if let Some(src) = column(j) {
                for r in 0..self.rows {
                    data[r * cols + j] = self.at(r, src);
                }
            }
        }
        Matrix {
            rows: self.rows,
            cols,
            data,
        }
    }
}

/// A value of a term.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Num(usize),
    Set(IndexSet),
    Tensor(Vec<f64>),
    Weight(Matrix),
}

/// The values of the leaves: `(tensor N)` is `tensors[N]`, `(weight N)` is `weights[N]`.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub tensors: Vec<Vec<f64>>,
    pub weights: Vec<Matrix>,
}

/// Evaluates `expr`; `None` if it is ill-typed or names a missing leaf.
pub fn eval(expr: &RecExpr<Layout>, tables: &Tables, env: &Env) -> Option<Value> {
    let mut values: Vec<Value> = Vec::with_capacity(expr.len());
    for node in expr.as_ref() {
        let value = |id: egg::Id| &values[usize::from(id)];
        let num = |id| match value(id) {
            Value::Num(n) => Some(*n),
            _ => None,
        };
        let set = |id| match value(id) {
            Value::Set(s) => Some(s.clone()),
            _ => None,
        };
        let tensor = |id| match value(id) {
            Value::Tensor(t) => Some(t.clone()),
            _ => None,
        };
        let weight = |id| match value(id) {
            Value::Weight(w) => Some(w.clone()),
            _ => None,
        };
        let pick = |x: &[f64], k: &[usize]| -> Option<Vec<f64>> {
            k.iter().map(|&i| x.get(i).copied()).collect()
        };
        let v = match node {
            Layout::Num(n) => Value::Num(*n),
            Layout::Set(s) => Value::Set(tables.set(*s).clone()),
            Layout::Tensor(n) => Value::Tensor(env.tensors.get(num(*n)?)?.clone()),
            Layout::Weight(n) => Value::Weight(env.weights.get(num(*n)?)?.clone()),
            Layout::Gather([k, x]) => Value::Tensor(pick(&tensor(*x)?, &set(*k)?.indices)?),
            Layout::Slice([a, b, x]) => {
                let (a, b, x) = (num(*a)?, num(*b)?, tensor(*x)?);
                Value::Tensor(x.get(a..b)?.to_vec())
            }
            Layout::Consume([_, w, x]) => {
                let (w, x) = (weight(*w)?, tensor(*x)?);
                if w.cols != x.len() {
                    return None;
                }
                Value::Tensor(
                    (0..w.rows)
                        .map(|r| (0..w.cols).map(|c| w.at(r, c) * x[c]).sum())
                        .collect(),
                )
            }
            Layout::PadCols([k, w]) => {
                let (k, w) = (set(*k)?, weight(*w)?);
                if k.len() != w.cols {
                    return None;
                }
                let mut source = vec![None; k.universe];
                for (i, &c) in k.indices.iter().enumerate() {
                    source[c] = Some(i);
                }
                Value::Weight(w.with_columns(k.universe, |j| source[j]))
            }
            // Per-channel op n: the same non-linear function of each channel, v^2 + n (a
            // selection commutes with it, as with a batch norm whose parameters are selected
            // along).
            Layout::Pointwise([n, x]) => {
                let n = num(*n)? as f64;
                Value::Tensor(tensor(*x)?.iter().map(|v| v * v + n).collect())
            }
            Layout::Concat(children) => {
                let (n, blocks) = children.split_first()?;
                num(*n)?;
                let mut joined = Vec::new();
                for &b in blocks {
                    joined.extend(tensor(b)?);
                }
                Value::Tensor(joined)
            }
        };
        values.push(v);
    }
    values.pop()
}
