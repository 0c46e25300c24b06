//! Accuracy: a classifier [`Program`] on a labelled [`Dataset`], with the reference interpreter.
//!
//! Input: a checked program with one input of shape `[B, C, H, W]` (any batch `B`; `[C, H, W]`
//! equal to the dataset's image shape) and one output of shape `[B, K]`, the class scores, with
//! `K` equal to the dataset's class count; its [`Weights`]; a [`Dataset`]. Each image goes in as
//! `f32` pixel values scaled to `[0, 1]` (`byte / 255`): any further normalisation is part of
//! the model. Output: an [`EvalResult`], the top-1 accuracy (the first maximal score is the
//! prediction) overall and per class.
//!
//! The interpreter runs in `f32` on batches of [`EvalConfig::batch`] images: the program is
//! re-declared at that batch by [`with_batch`] (input shapes changed, every shape inferred again,
//! so the [`Program`] invariants hold). No op of the closed set mixes images of a batch, so the
//! scores are those of running image by image (tested). Pure: nothing is printed; progress is
//! reported through a callback. [`idx`] reads IDX files and [`load`] the datasets on disk.

mod dataset;
pub mod idx;

pub use dataset::{
    files, load, Dataset, DatasetError, DatasetKind, Split, FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
};

use crate::interp::RunError;
use crate::ir::ops::{dims_text, infer_shape};
use crate::ir::{Op, Program};
use crate::tensor::Tensor;
use crate::weights::Weights;
use std::fmt;

/// Options of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalConfig {
    /// Images per interpreter run (at least 1). 64 to 256 amortize the per-run work (weights
    /// converted and masked per node); beyond that nothing is gained.
    pub batch: usize,
    /// Evaluate only the first `limit` images (all if `None` or larger than the dataset).
    pub limit: Option<usize>,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            batch: 100,
            limit: None,
        }
    }
}

/// Counts for one class (by true label).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClassCount {
    /// Images of this class evaluated.
    pub count: usize,
    /// Of those, predicted correctly.
    pub correct: usize,
}

/// What [`evaluate`] measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EvalResult {
    /// The dataset's name (e.g. `fashion-mnist/test`).
    pub dataset: String,
    /// Images evaluated: the first `count` of the dataset.
    pub count: usize,
    /// Images whose highest score is their label.
    pub correct: usize,
    /// `correct / count` (0 when nothing was evaluated).
    pub top1: f64,
    /// Per class, by label.
    pub per_class: Vec<ClassCount>,
}

/// Why [`evaluate`] could not run.
#[derive(Debug, Clone, PartialEq)]
pub enum EvalError {
    /// The model's inputs or outputs do not fit the dataset.
    Model { message: String },
    /// The interpreter refused the arguments (for example weights that do not fit).
    Run(RunError),
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::Model { message } => f.write_str(message),
            EvalError::Run(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for EvalError {}

fn model_error(message: String) -> EvalError {
    EvalError::Model { message }
}

/// The top-1 accuracy of `program` with `weights` on the first `config.limit` images of
/// `dataset`. `progress(done, total)` is called after every batch.
///
/// ```
/// use nnirc::eval::{evaluate, Dataset, EvalConfig};
/// // Two classes: "the left pixel is brighter" and "the right pixel is brighter".
/// let src = "model m(%x: f32[1, 1, 1, 2]) -> (%y) {
///   param @w: f32[2, 2] = [1, 0, 0, 1]
///   %f = flatten(%x)
///   %y = linear(%f, @w)
/// }";
/// let program = nnirc::compile(src).program.unwrap();
/// let weights = nnirc::weights::random(&program, 0); // inline params are kept
/// let images = vec![200, 10, 5, 90, 30, 40];
/// let labels = vec![0, 1, 0]; // the last label is wrong on purpose
/// let data = Dataset::new("toy", [1, 1, 2], 2, images, labels).unwrap();
/// let config = EvalConfig { batch: 2, ..Default::default() };
/// let mut calls = Vec::new();
/// let result = evaluate(&program, &weights, &data, &config, &mut |done, total| {
///     calls.push((done, total))
/// })
/// .unwrap();
/// assert_eq!((result.count, result.correct), (3, 2));
/// assert_eq!(calls, vec![(2, 3), (3, 3)]);
/// assert_eq!(result.per_class[0].count, 2);
/// ```
pub fn evaluate(
    program: &Program,
    weights: &Weights,
    dataset: &Dataset,
    config: &EvalConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<EvalResult, EvalError> {
    check_model(program, dataset)?;
    let total = config.limit.map_or(dataset.len(), |l| l.min(dataset.len()));
    let batch = config.batch.clamp(1, total.max(1));
    let full = with_batch(program, batch).map_err(model_error)?;
    let mut last = None;
    let [c, h, w] = dataset.shape();
    let labels = dataset.labels();
    let mut per_class = vec![ClassCount::default(); dataset.classes()];
    let mut start = 0;
    while start < total {
        let n = batch.min(total - start);
        let prog = if n == batch {
            &full
        } else {
            // Only the last batch is shorter: re-declared once.
            &*last.insert(with_batch(program, n).map_err(model_error)?)
        };
        let input = Tensor {
            shape: vec![n, c, h, w],
            data: dataset
                .images(start..start + n)
                .iter()
                .map(|&b| f32::from(b) / 255.0)
                .collect(),
        };
        let outputs = crate::interp::run(prog, weights, &[input]).map_err(EvalError::Run)?;
        let scores = &outputs[0];
        let k = scores.shape[1];
        for (i, row) in scores.data.chunks_exact(k).enumerate() {
            let label = labels[start + i] as usize;
            per_class[label].count += 1;
            if argmax(row) == label {
                per_class[label].correct += 1;
            }
        }
        start += n;
        progress(start, total);
    }
    let correct = per_class.iter().map(|c| c.correct).sum();
    Ok(EvalResult {
        dataset: dataset.name().to_string(),
        count: total,
        correct,
        top1: if total == 0 {
            0.0
        } else {
            correct as f64 / total as f64
        },
        per_class,
    })
}

/// The index of the first maximal score (a NaN is never maximal).
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] || row[best].is_nan() && !v.is_nan() {
            best = i;
        }
    }
    best
}

fn check_model(program: &Program, dataset: &Dataset) -> Result<(), EvalError> {
    let [input] = program.inputs[..] else {
        return Err(model_error(format!(
            "model `{}` has {} inputs; a classifier takes one image batch",
            program.name,
            program.inputs.len()
        )));
    };
    let [output] = program.outputs[..] else {
        return Err(model_error(format!(
            "model `{}` has {} outputs; a classifier gives one tensor of class scores",
            program.name,
            program.outputs.len()
        )));
    };
    let (x, y) = (&program.graph[input], &program.graph[output]);
    let [c, h, w] = dataset.shape();
    if x.shape.len() != 4 || x.shape[1..] != [c, h, w] {
        return Err(model_error(format!(
            "input `%{}` has shape {}, but {} images need [N, {c}, {h}, {w}]",
            x.name,
            dims_text(&x.shape),
            dataset.name()
        )));
    }
    if y.shape.len() != 2 || y.shape[1] != dataset.classes() {
        return Err(model_error(format!(
            "output `%{}` has shape {}, but the {} classes of {} need [N, {}]",
            y.name,
            dims_text(&y.shape),
            dataset.classes(),
            dataset.name(),
            dataset.classes()
        )));
    }
    Ok(())
}

/// `program` with the leading (batch) dimension of every input set to `batch` and every
/// node's shape inferred again. Fails, with the first shape error, if a shape rule rejects the
/// new batch (no op of the closed set does today: none mixes the batch axis).
///
/// ```
/// let src = "model m(%x: f32[1, 3, 8, 8]) -> (%y) {\n  %y = global_avg_pool(%x)\n}\n";
/// let program = nnirc::compile(src).program.unwrap();
/// let wide = nnirc::eval::with_batch(&program, 16).unwrap();
/// let y = wide.outputs[0];
/// assert_eq!(wide.graph[y].shape, vec![16, 3, 1, 1]);
/// ```
pub fn with_batch(program: &Program, batch: usize) -> Result<Program, String> {
    let mut p = program.clone();
    for &n in &program.inputs {
        let node = &mut p.graph[n];
        let Some(first) = node.shape.first_mut() else {
            return Err(format!(
                "input `%{}` is a scalar: it has no batch",
                node.name
            ));
        };
        *first = batch;
    }
    for n in p.topo_order() {
        if p.graph[n].op == Op::Input {
            continue;
        }
        let operands: Vec<Vec<usize>> = p
            .operands(n)
            .iter()
            .map(|&o| p.graph[o].shape.clone())
            .collect();
        let operands: Vec<&[usize]> = operands.iter().map(Vec::as_slice).collect();
        let shape = infer_shape(&p.graph[n].op, &operands, &p.param_shapes(n))
            .map_err(|e| format!("at batch {batch}, `%{}`: {}", p.graph[n].name, e.message))?;
        p.graph[n].shape = shape;
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small model with every kind of op a classifier uses, random weights.
    const NET: &str = "model net(%x: f32[1, 1, 6, 6]) -> (%y) {
  param @c1: f32[4, 1, 3, 3]
  param @b1: f32[4]
  param @bn.w: f32[4]
  param @bn.b: f32[4]
  param @bn.m: f32[4]
  param @bn.v: f32[4]
  param @dw: f32[4, 1, 3, 3]
  param @c2: f32[4, 8, 1, 1]
  param @fc: f32[3, 4]
  param @fcb: f32[3]
  %a = conv2d(%x, @c1, @b1, padding=1)
  %b = batch_norm(%a, @bn.w, @bn.b, @bn.m, @bn.v)
  %r = relu(%b)
  %d = conv2d(%r, @dw, padding=1, groups=4)
  %s = add(%d, %r)
  %cat = concat(%s, %r)
  %p = max_pool2d(%cat, kernel=2, stride=2)
  %e = conv2d(%p, @c2) keep_in=[0, 2..8]
  %g = global_avg_pool(%e)
  %f = flatten(%g)
  %y = linear(%f, @fc, @fcb)
}";

    fn toy_dataset(count: usize) -> Dataset {
        let mut rng = crate::tensor::SplitMix64::new(7);
        let images = (0..count * 36)
            .map(|_| (rng.next_u64() % 256) as u8)
            .collect();
        let labels = (0..count).map(|i| (i % 3) as u8).collect();
        Dataset::new("toy", [1, 6, 6], 3, images, labels).unwrap()
    }

    #[test]
    fn batched_scores_equal_image_by_image() {
        let program = crate::compile(NET).program.unwrap();
        let weights = crate::weights::random(&program, 3);
        let data = toy_dataset(7);
        let wide = with_batch(&program, 7).unwrap();
        let all: Vec<f32> = data
            .images(0..7)
            .iter()
            .map(|&b| b as f32 / 255.0)
            .collect();
        let x = Tensor {
            shape: vec![7, 1, 6, 6],
            data: all.clone(),
        };
        let batched = crate::interp::run(&wide, &weights, &[x]).unwrap();
        for i in 0..7 {
            let x = Tensor {
                shape: vec![1, 1, 6, 6],
                data: all[i * 36..(i + 1) * 36].to_vec(),
            };
            let one = crate::interp::run(&program, &weights, &[x]).unwrap();
            assert_eq!(
                one[0].data,
                batched[0].data[i * 3..(i + 1) * 3],
                "image {i}"
            );
        }
        // And so every batch size gives the same result, also with a short last batch.
        let mut results = Vec::new();
        for batch in [1, 2, 3, 7, 100] {
            let config = EvalConfig { batch, limit: None };
            let r = evaluate(&program, &weights, &data, &config, &mut |_, _| {}).unwrap();
            results.push(r);
        }
        assert!(results.windows(2).all(|w| w[0] == w[1]), "{results:?}");
        assert_eq!(results[0].count, 7);
        assert_eq!(
            results[0].per_class.iter().map(|c| c.count).sum::<usize>(),
            7
        );
    }

    #[test]
    fn limit_and_progress() {
        let program = crate::compile(NET).program.unwrap();
        let weights = crate::weights::random(&program, 3);
        let data = toy_dataset(10);
        let mut calls = Vec::new();
        let config = EvalConfig {
            batch: 4,
            limit: Some(6),
        };
        let r = evaluate(&program, &weights, &data, &config, &mut |d, t| {
            calls.push((d, t))
        })
        .unwrap();
        assert_eq!(r.count, 6);
        assert_eq!(calls, vec![(4, 6), (6, 6)]);
        let none = EvalConfig {
            batch: 4,
            limit: Some(0),
        };
        let r = evaluate(&program, &weights, &data, &none, &mut |_, _| panic!()).unwrap();
        assert_eq!((r.count, r.top1), (0, 0.0));
    }

    #[test]
    fn models_that_do_not_fit_are_errors() {
        let program = crate::compile(NET).program.unwrap();
        let weights = crate::weights::random(&program, 3);
        let wrong_shape = Dataset::new("d", [1, 5, 5], 3, vec![0; 25], vec![0]).unwrap();
        let err = evaluate(
            &program,
            &weights,
            &wrong_shape,
            &EvalConfig::default(),
            &mut |_, _| {},
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "input `%x` has shape [1, 1, 6, 6], but d images need [N, 1, 5, 5]"
        );
        let wrong_classes = Dataset::new("d", [1, 6, 6], 10, vec![0; 36], vec![0]).unwrap();
        let err = evaluate(
            &program,
            &weights,
            &wrong_classes,
            &EvalConfig::default(),
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(err.to_string().contains("need [N, 10]"), "{err}");
        let data = toy_dataset(1);
        let no_weights = Weights::default();
        let err = evaluate(
            &program,
            &no_weights,
            &data,
            &EvalConfig::default(),
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(
            matches!(err, EvalError::Run(RunError::Weights { .. })),
            "{err}"
        );
    }

    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.0, 2.0]), 2);
        assert_eq!(argmax(&[f32::NAN, f32::NAN]), 0);
    }
}
