//! The reference interpreter, seeded weights, weight loading and tensor files.
//!
//! Op cases are one line each: a model, its inputs, and the hand-computed outputs, run in both
//! f64 (to 1e-12) and f32 (to 1e-5) through [`check`].

mod common;
use common::program;
use nnirc::diag::Code;
use nnirc::interp::{self, RunError};
use nnirc::ir::{ParamInit, Program};
use nnirc::tensor::SplitMix64;
use nnirc::tensor::Tensor;
use nnirc::tensor_io;
use nnirc::weights::{self, Weights};
use std::path::Path;

/// Inline-only weights.
fn inline(p: &Program) -> Weights {
    weights::load(p, Path::new(".")).expect("inline params load")
}

fn inputs<T: nnirc::tensor::Scalar>(p: &Program, data: &[&[f64]]) -> Vec<Tensor<T>> {
    p.inputs
        .iter()
        .zip(data)
        .map(|(&n, d)| Tensor::from_f64(&p.graph[n].shape, d))
        .collect()
}

fn close(got: &[f64], want: &[f64], tol: f64) -> bool {
    got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|(g, w)| (g - w).abs() <= tol * w.abs().max(1.0))
}

/// Runs `src` on `data` in f64 and f32 and compares the first output with `want`.
fn check(src: &str, data: &[&[f64]], want: &[f64]) {
    let p = program(src);
    let w = inline(&p);
    let y64 = interp::run::<f64>(&p, &w, &inputs(&p, data)).unwrap();
    assert!(
        close(&y64[0].data, want, 1e-12),
        "f64: got {:?}, want {want:?}",
        y64[0].data
    );
    let y32 = interp::run::<f32>(&p, &w, &inputs(&p, data)).unwrap();
    assert!(
        close(&y32[0].to_f64().data, want, 1e-5),
        "f32: got {:?}, want {want:?}",
        y32[0].data
    );
    assert_eq!(y64[0].shape, y32[0].shape);
}

/// `model m(%x: f32[shape]) -> (%y) { params; %y = body }`.
fn model(shape: &str, params: &str, body: &str) -> String {
    format!("model m(%x: f32[{shape}]) -> (%y) {{\n{params}\n  %y = {body}\n}}\n")
}

const SEQ9: &[f64] = &[1., 2., 3., 4., 5., 6., 7., 8., 9.];

// ---- conv2d -------------------------------------------------------------------------------

const CONV1X1: &str =
    "param @w: f32[2, 2, 1, 1] = [1.0, 2.0, 3.0, 4.0]\n  param @b: f32[2] = [0.5, -0.5]";

#[test]
fn conv_pointwise_with_bias() {
    let m = model("1, 2, 1, 2", CONV1X1, "conv2d(%x, @w, @b)");
    check(&m, &[&[1., 2., 3., 4.]], &[7.5, 10.5, 14.5, 21.5]);
}

#[test]
fn conv_3x3_padding() {
    let w = "param @w: f32[1, 1, 3, 3] = [1, 2, 3, 4, 5, 6, 7, 8, 9]";
    let m = model("1, 1, 2, 2", w, "conv2d(%x, @w, padding=1)");
    check(&m, &[&[1., 2., 3., 4.]], &[77., 67., 47., 37.]);
}

#[test]
fn conv_stride_and_asymmetric_padding() {
    let w = "param @w: f32[1, 1, 2, 2] = [1, 1, 1, 1]";
    let m = model(
        "1, 1, 3, 3",
        w,
        "conv2d(%x, @w, stride=2, padding=[0, 0, 1, 1])",
    );
    check(&m, &[SEQ9], &[12., 9., 15., 9.]);
}

#[test]
fn conv_dilation() {
    let w = "param @w: f32[1, 1, 2, 2] = [1, 10, 100, 1000]";
    let m = model("1, 1, 3, 3", w, "conv2d(%x, @w, dilation=2)");
    check(&m, &[SEQ9], &[9731.]);
}

#[test]
fn conv_groups() {
    let w = "param @w: f32[2, 2, 1, 1] = [1, 2, 3, 4]\n  param @b: f32[2] = [1, 1]";
    let m = model("1, 4, 1, 1", w, "conv2d(%x, @w, @b, groups=2)");
    check(&m, &[&[1., 2., 3., 4.]], &[6., 26.]);
}

#[test]
fn conv_depthwise_with_bias() {
    let w = "param @w: f32[2, 1, 2, 2] = [1, 0, 0, 1, 0, 1, 1, 0]\n  param @b: f32[2] = [0.5, 1]";
    let m = model("1, 2, 2, 2", w, "conv2d(%x, @w, @b, groups=2)");
    check(&m, &[&[1., 2., 3., 4., 5., 6., 7., 8.]], &[5.5, 14.]);
}

#[test]
fn conv_depthwise_multiplier_stride_padding() {
    let w = "param @w: f32[4, 1, 2, 2] = [1, 1, 1, 1,  1, 0, 0, 0,  1, 1, 1, 1,  0, 0, 0, 2]";
    let m = model(
        "1, 2, 3, 3",
        w,
        "conv2d(%x, @w, groups=2, stride=2, padding=1)",
    );
    let x: Vec<f64> = SEQ9.iter().copied().chain([1.0; 9]).collect();
    #[rustfmt::skip]
    let want = [1., 5., 11., 28.,  0., 0., 0., 5.,  1., 2., 2., 4.,  2., 2., 2., 2.];
    check(&m, &[&x], &want);
}

#[test]
fn conv_batch_of_two() {
    let m = model("2, 2, 1, 1", CONV1X1, "conv2d(%x, @w, @b)");
    // n0 = (1, 1), n1 = (0, -1).
    check(&m, &[&[1., 1., 0., -1.]], &[3.5, 6.5, -1.5, -4.5]);
}

// ---- per-channel ops ----------------------------------------------------------------------

#[test]
fn batch_norm_inference() {
    let p = "param @g: f32[2] = [2, 1]\n  param @b: f32[2] = [1, 0]\n  param @m: f32[2] = [1, 2]\n  param @v: f32[2] = [3, 15]";
    let m = model("1, 2, 1, 2", p, "batch_norm(%x, @g, @b, @m, @v, eps=1.0)");
    check(&m, &[&[1., 3., 2., 4.]], &[1., 3., 0., 0.5]);
}

const ACT_X: &[f64] = &[-4., -1., 0., 0.5, 3., 7.];

fn act(op: &str, want: &[f64]) {
    check(&model("1, 6", "", &format!("{op}(%x)")), &[ACT_X], want);
}

#[test]
fn relu() {
    act("relu", &[0., 0., 0., 0.5, 3., 7.]);
}

#[test]
fn relu6() {
    act("relu6", &[0., 0., 0., 0.5, 3., 6.]);
}

#[test]
fn sigmoid() {
    #[rustfmt::skip]
    act("sigmoid", &[0.01798620996209156, 0.2689414213699951, 0.5, 0.6224593312018546, 0.9525741268224334, 0.9990889488055994]);
}

#[test]
fn silu() {
    #[rustfmt::skip]
    act("silu", &[-0.07194483984836623, -0.2689414213699951, 0.0, 0.3112296656009273, 2.8577223804672998, 6.993622641639196]);
}

#[test]
fn hardsigmoid() {
    act("hardsigmoid", &[0., 1. / 3., 0.5, 7. / 12., 1., 1.]);
}

#[test]
fn hardswish() {
    act("hardswish", &[0., -1. / 3., 0., 7. / 24., 3., 7.]);
}

#[test]
fn dropout_is_identity() {
    act("dropout", ACT_X);
}

// ---- element-wise and data movement -------------------------------------------------------

const TWO: &str = "model m(%a: f32[{A}], %b: f32[{B}]) -> (%y) {\n  %y = {OP}(%a, %b)\n}\n";

fn two(a: &str, b: &str, op: &str) -> String {
    TWO.replace("{A}", a).replace("{B}", b).replace("{OP}", op)
}

#[test]
fn add_broadcasts_both_ways() {
    let m = two("1, 2, 1, 2", "1, 1, 2, 1", "add");
    check(
        &m,
        &[&[1., 2., 3., 4.], &[10., 20.]],
        &[11., 12., 21., 22., 13., 14., 23., 24.],
    );
}

#[test]
fn mul_channel_gate() {
    let m = two("1, 2, 1, 2", "1, 2, 1, 1", "mul");
    check(&m, &[&[1., 2., 3., 4.], &[2., 3.]], &[2., 4., 9., 12.]);
}

#[test]
fn add_same_value_twice() {
    check(
        &model("1, 2", "", "add(%x, %x)"),
        &[&[1.5, -2.]],
        &[3., -4.],
    );
}

#[test]
fn concat_interleaves_batches() {
    let m = two("2, 1, 1, 1", "2, 2, 1, 1", "concat");
    check(
        &m,
        &[&[1., 2.], &[3., 4., 5., 6.]],
        &[1., 3., 4., 2., 5., 6.],
    );
}

#[test]
fn gather_slice_permute() {
    let x: &[f64] = &[10., 20., 30., 40., 50., 60.];
    let shape = "2, 3, 1, 1";
    check(
        &model(shape, "", "gather(%x, indices=[2, 0, 0])"),
        &[x],
        &[30., 10., 10., 60., 40., 40.],
    );
    check(
        &model(shape, "", "slice(%x, start=1, end=3)"),
        &[x],
        &[20., 30., 50., 60.],
    );
    check(
        &model(shape, "", "permute(%x, order=[2, 0, 1])"),
        &[x],
        &[30., 10., 20., 60., 40., 50.],
    );
}

// ---- pooling ------------------------------------------------------------------------------

#[test]
fn max_pool_basic() {
    check(
        &model("1, 1, 3, 3", "", "max_pool2d(%x, kernel=2, stride=1)"),
        &[SEQ9],
        &[5., 6., 8., 9.],
    );
}

#[test]
fn max_pool_padding_never_wins() {
    let neg: Vec<f64> = SEQ9.iter().map(|v| -v).collect();
    check(
        &model(
            "1, 1, 3, 3",
            "",
            "max_pool2d(%x, kernel=2, stride=2, padding=1)",
        ),
        &[&neg],
        &[-1., -2., -4., -5.],
    );
}

#[test]
fn max_pool_ceil_mode() {
    check(
        &model(
            "1, 1, 3, 3",
            "",
            "max_pool2d(%x, kernel=2, stride=2, ceil_mode=true)",
        ),
        &[SEQ9],
        &[5., 6., 8., 9.],
    );
}

#[test]
fn avg_pool_ceil_mode_divides_by_the_clipped_window() {
    check(
        &model(
            "1, 1, 3, 3",
            "",
            "avg_pool2d(%x, kernel=2, stride=2, ceil_mode=true)",
        ),
        &[SEQ9],
        &[3., 4.5, 7.5, 9.],
    );
}

#[test]
fn avg_pool_count_include_pad() {
    let op = "avg_pool2d(%x, kernel=2, stride=2, padding=1";
    check(
        &model("1, 1, 3, 3", "", &format!("{op})")),
        &[SEQ9],
        &[0.25, 1.25, 2.75, 7.],
    );
    check(
        &model("1, 1, 3, 3", "", &format!("{op}, count_include_pad=false)")),
        &[SEQ9],
        &[1., 2.5, 5.5, 7.],
    );
}

#[test]
fn avg_pool_ceil_mode_with_padding_matches_pytorch() {
    // F.avg_pool2d(torch.arange(1., 17).view(1, 1, 4, 4), 3, 2, 1, ceil_mode=True)
    let x: Vec<f64> = (1..=16).map(f64::from).collect();
    let m = model(
        "1, 1, 4, 4",
        "",
        "avg_pool2d(%x, kernel=3, stride=2, padding=1, ceil_mode=true)",
    );
    #[rustfmt::skip]
    let want = [14. / 9., 30. / 9., 2.,  57. / 9., 11., 6.,  4.5, 7.5, 4.];
    check(&m, &[&x], &want);
}

#[test]
fn global_and_adaptive_pool() {
    let x: &[f64] = &[1., 2., 3., 4., 5., 6., 7., 8.];
    check(
        &model("1, 2, 2, 2", "", "global_avg_pool(%x)"),
        &[x],
        &[2.5, 6.5],
    );
    check(
        &model("1, 2, 2, 2", "", "adaptive_avg_pool(%x)"),
        &[x],
        &[2.5, 6.5],
    );
}

// ---- flatten and linear -------------------------------------------------------------------

const FC: &str = "param @w: f32[2, 4] = [1, 0, 0, 0,  0, 1, 1, 1]\n  param @b: f32[2] = [10, 20]";

fn flatten_linear(masks: &str) -> String {
    format!("model m(%x: f32[2, 2, 1, 2]) -> (%y) {{\n  {FC}\n  %f = flatten(%x)\n  %y = linear(%f, @w, @b){masks}\n}}\n")
}

#[test]
fn flatten_then_linear() {
    check(
        &flatten_linear(""),
        &[&[1., 2., 3., 4., 0., 0., 0., -1.]],
        &[11., 29., 10., 19.],
    );
}

// ---- masks --------------------------------------------------------------------------------

#[test]
fn conv_keep_in_zeroes_weight_columns() {
    let m = model("1, 2, 1, 2", CONV1X1, "conv2d(%x, @w, @b) keep_in=[0]");
    check(&m, &[&[1., 2., 3., 4.]], &[1.5, 2.5, 2.5, 5.5]);
}

#[test]
fn conv_keep_out_zeroes_output_channels() {
    let m = model("1, 2, 1, 2", CONV1X1, "conv2d(%x, @w, @b) keep_out=[1]");
    check(&m, &[&[1., 2., 3., 4.]], &[0., 0., 14.5, 21.5]);
}

#[test]
fn linear_masks() {
    let x: &[f64] = &[1., 2., 3., 4., 0., 0., 0., -1.];
    check(
        &flatten_linear(" keep_in=[0, 1]"),
        &[x],
        &[11., 22., 10., 20.],
    );
    check(&flatten_linear(" keep_out=[0]"), &[x], &[11., 0., 10., 0.]);
}

const MASKED_NET: &str = "model m(%x: f32[1, 4, 5, 5]) -> (%y) {
  param @w1: f32[6, 4, 3, 3]
  param @b1: f32[6]
  param @w2: f32[3, 6, 1, 1]
  %a = conv2d(%x, @w1, @b1, padding=1) {M1}
  %r = relu(%a)
  %y = conv2d(%r, @w2) {M2}
}
";

#[test]
fn keep_in_equals_zeroed_columns_and_leaves_weights_alone() {
    let masked = program(
        &MASKED_NET
            .replace("{M1}", "keep_in=[1, 3] keep_out=[0, 2..6]")
            .replace("{M2}", "keep_in=[0..4]"),
    );
    let plain = program(&MASKED_NET.replace("{M1}", "").replace("{M2}", ""));
    let w = weights::random(&masked, 3);
    let before = w.clone();
    let x = interp::random_inputs::<f64>(&masked, 4);
    let y_masked = interp::run(&masked, &w, &x).unwrap();
    assert_eq!(w, before, "run must not change the weights");

    // The same zeroing by hand: w1[:, {0, 2}] = 0, w1[1] = b1[1] = 0, w2[:, {4, 5}] = 0.
    let mut z: Vec<Vec<f64>> = (0..w.len()).map(|p| w.values(p)).collect();
    for o in 0..6 {
        for c in [0, 2] {
            z[0][(o * 4 + c) * 9..(o * 4 + c + 1) * 9].fill(0.0);
        }
    }
    z[0][36..72].fill(0.0);
    z[1][1] = 0.0;
    for o in 0..3 {
        z[2][o * 6 + 4] = 0.0;
        z[2][o * 6 + 5] = 0.0;
    }
    let z = Weights::from_f64(&z);
    let y_zeroed = interp::run(&plain, &z, &x).unwrap();
    assert_eq!(y_masked, y_zeroed);
    let y_plain = interp::run(&plain, &w, &x).unwrap();
    assert_ne!(y_masked, y_plain, "the masks must change something");
}

/// A dropped input channel holding Inf or NaN cannot reach the output (0 * Inf is NaN): the
/// masked program reads zero there, so the output is finite and equals the masked result on
/// zeros.
#[test]
fn dropped_channels_holding_inf_or_nan_do_not_matter() {
    let masked = program(
        &MASKED_NET
            .replace("{M1}", "keep_in=[1, 3]")
            .replace("{M2}", "keep_in=[0..4]"),
    );
    let w = weights::random(&masked, 3);
    let x = interp::random_inputs::<f64>(&masked, 4);
    let want = interp::run(&masked, &w, &x).unwrap();
    for bad in [f64::INFINITY, f64::NEG_INFINITY, f64::NAN] {
        let mut poisoned = x.clone();
        // Channels 0 and 2 of [1, 4, 5, 5] are dropped by keep_in=[1, 3].
        for c in [0, 2] {
            poisoned[0].data[c * 25..(c + 1) * 25].fill(bad);
        }
        let got = interp::run(&masked, &w, &poisoned).unwrap();
        assert!(got[0].data.iter().all(|v| v.is_finite()), "{bad}");
        assert_eq!(got, want, "{bad}");
        let f32s = |t: &Tensor<f64>| vec![Tensor::<f32>::from_f64(&t.shape, &t.data)];
        let got32 = interp::run(&masked, &w, &f32s(&poisoned[0])).unwrap();
        let want32 = interp::run(&masked, &w, &f32s(&x[0])).unwrap();
        assert_eq!(got32, want32, "{bad} (f32)");
    }
    // A linear layer's dropped features likewise.
    let linear = program(&flatten_linear(" keep_in=[0, 1]"));
    let w = inline(&linear);
    let x: &[f64] = &[1., 2., 3., 4., 0., 0., 0., -1.];
    let want = interp::run::<f64>(&linear, &w, &inputs(&linear, &[x])).unwrap();
    let poisoned: &[f64] = &[1., 2., f64::NAN, f64::INFINITY, 0., 0., f64::NAN, -1.];
    let got = interp::run::<f64>(&linear, &w, &inputs(&linear, &[poisoned])).unwrap();
    assert_eq!(got, want);
}

// ---- whole programs -----------------------------------------------------------------------

const SMALL_NET: &str = "model small(%x: f32[2, 3, 9, 9]) -> (%logits, %feat) {
  param @c1: f32[8, 3, 3, 3]
  param @g: f32[8]
  param @b: f32[8]
  param @m: f32[8]
  param @v: f32[8]
  param @dw: f32[8, 1, 3, 3]
  param @c2: f32[4, 8, 1, 1]
  param @fc: f32[5, 8]
  param @fcb: f32[5]
  %a = conv2d(%x, @c1, stride=2, padding=1)
  %bn = batch_norm(%a, @g, @b, @m, @v)
  %r = silu(%bn)
  %d = conv2d(%r, @dw, groups=8, padding=1)
  %h = hardswish(%d)
  %s = add(%h, %r)
  %p = conv2d(%s, @c2) keep_in=[0..6]
  %q = max_pool2d(%p, kernel=3, stride=2, ceil_mode=true)
  %c = concat(%q, %q)
  %feat = avg_pool2d(%c, kernel=2, stride=1)
  %gp = global_avg_pool(%c)
  %f = flatten(%gp)
  %logits = linear(%f, @fc, @fcb) keep_out=[1..5]
}
";

#[test]
fn f32_and_f64_agree() {
    let p = program(SMALL_NET);
    let w = weights::random(&p, 11);
    let y64 = interp::run::<f64>(&p, &w, &interp::random_inputs(&p, 5)).unwrap();
    let y32 = interp::run::<f32>(&p, &w, &interp::random_inputs(&p, 5)).unwrap();
    assert_eq!(y64.len(), 2);
    assert_eq!(y64[0].shape, vec![2, 5]);
    assert_eq!(y64[1].shape, vec![2, 8, 1, 1]);
    for (a, b) in y64.iter().zip(&y32) {
        assert!(close(&b.to_f64().data, &a.data, 1e-5), "{a:?} vs {b:?}");
    }
    for row in y64[0].data.chunks(5) {
        assert_eq!(row[0], 0.0, "keep_out drops logit 0");
        assert!(row[1..].iter().all(|v| v.abs() > 1e-9));
    }
}

#[test]
fn outputs_may_repeat_and_be_inputs() {
    let p = program("model m(%x: f32[1, 2]) -> (%x, %y, %y) {\n  %y = relu(%x)\n}\n");
    let y = interp::run::<f64>(&p, &inline(&p), &inputs(&p, &[&[-1., 2.]])).unwrap();
    assert_eq!(y.len(), 3);
    assert_eq!(y[0].data, vec![-1., 2.]);
    assert_eq!(y[1].data, vec![0., 2.]);
    assert_eq!(y[2], y[1]);
}

#[test]
fn run_rejects_bad_inputs() {
    let p = program(SMALL_NET);
    let w = weights::random(&p, 0);
    let err = interp::run::<f32>(&p, &w, &[]).unwrap_err();
    assert_eq!(
        err,
        RunError::InputCount {
            expected: 1,
            got: 0
        }
    );
    let wrong = Tensor::<f32>::zeros(&[1, 3, 9, 9]);
    let err = interp::run(&p, &w, &[wrong]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "input `%x` must have shape [2, 3, 9, 9], but has shape [1, 3, 9, 9]"
    );
    let short = Tensor {
        shape: vec![2, 3, 9, 9],
        data: vec![0.0f32; 5],
    };
    assert!(matches!(
        interp::run(&p, &w, &[short]),
        Err(RunError::InputData { .. })
    ));
}

// ---- seeded weights and inputs ------------------------------------------------------------

#[test]
fn random_weights_are_stable_per_name() {
    let p = program(SMALL_NET);
    assert_eq!(weights::random(&p, 7), weights::random(&p, 7));
    assert_ne!(weights::random(&p, 7), weights::random(&p, 8));
    // The same name gives the same tensor in another model.
    let other = program(
        "model o(%x: f32[1, 3, 4, 4]) -> (%y) {\n  param @c1: f32[8, 3, 3, 3]\n  %y = conv2d(%x, @c1)\n}\n",
    );
    assert_eq!(
        weights::random(&other, 7).values(0),
        weights::random(&p, 7).values(0)
    );
    // Frozen: the first value of `@c1` under seed 7 (Kaiming bound sqrt(6 / 27)).
    let mut rng = SplitMix64::for_name(7, "@c1");
    let bound = (6.0f64 / 27.0).sqrt();
    let first = (-bound + 2.0 * bound * rng.next_f64()) as f32 as f64;
    assert_eq!(weights::random(&p, 7).values(0)[0], first);
    assert_eq!(
        SplitMix64::for_name(7, "@c1").next_u64(),
        0xa91d_2687_082e_b285
    );
}

#[test]
fn random_weights_scale_by_role() {
    let p = program(SMALL_NET);
    let w = weights::random(&p, 1);
    let within = |t: &[f64], lo: f64, hi: f64| t.iter().all(|&v| (lo..=hi).contains(&v));
    let b = (6.0f64 / 27.0).sqrt();
    assert!(within(&w.values(0), -b, b)); // conv weight, fan_in 27
    assert!(within(&w.values(1), 0.5, 1.5)); // bn weight
    assert!(within(&w.values(2), -0.1, 0.1)); // bn bias
    assert!(within(&w.values(3), -0.1, 0.1)); // running mean
    assert!(within(&w.values(4), 0.5, 1.5)); // running var
    assert!(within(&w.values(8), -0.1, 0.1)); // linear bias
                                              // Every value is an f32, so an f32 weights file reproduces it exactly.
    assert!((0..w.len()).all(|p| w.tensor(p).dtype() == weights::Dtype::F32));
}

#[test]
fn random_weights_keep_inline_values() {
    let p = program(&model("1, 2, 1, 2", CONV1X1, "conv2d(%x, @w, @b)"));
    assert_eq!(weights::random(&p, 9).values(0), vec![1., 2., 3., 4.]);
}

#[test]
fn random_inputs_are_deterministic_and_in_range() {
    let p = program(SMALL_NET);
    let a = interp::random_inputs::<f64>(&p, 3);
    assert_eq!(a, interp::random_inputs::<f64>(&p, 3));
    assert_ne!(a, interp::random_inputs::<f64>(&p, 4));
    assert!(a[0].data.iter().all(|v| (-1.0..1.0).contains(v)));
}

// ---- weights::load ------------------------------------------------------------------------

const FILE_NET: &str = "model m(%x: f32[1, 2, 1, 1]) -> (%y) {
  weights \"w.safetensors\"
  param @conv_w: f32[2, 2, 1, 1]
  param @conv_b: f32[2]
  %y = conv2d(%x, @conv_w, @conv_b)
}
";

fn write_raw(dir: &Path, tensors: &[(&str, safetensors::Dtype, Vec<usize>, Vec<u8>)]) {
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            let v = safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap();
            (n.to_string(), v)
        })
        .collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    std::fs::write(dir.join("w.safetensors"), bytes).unwrap();
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn load_err(dir: &Path) -> Vec<nnirc::diag::Diagnostic> {
    weights::load(&program(FILE_NET), dir).unwrap_err()
}

#[test]
fn load_reads_f32_and_f64() {
    let dir = tempfile::tempdir().unwrap();
    let b64: Vec<u8> = [0.1f64, -0.2]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    write_raw(
        dir.path(),
        &[
            (
                "conv_w",
                safetensors::Dtype::F32,
                vec![2, 2, 1, 1],
                f32_bytes(&[1., 2., 3., 0.1]),
            ),
            ("conv_b", safetensors::Dtype::F64, vec![2], b64),
            (
                "unused_extra",
                safetensors::Dtype::F32,
                vec![1],
                f32_bytes(&[5.]),
            ),
        ],
    );
    let p = program(FILE_NET);
    let w = weights::load(&p, dir.path()).unwrap();
    assert_eq!(w.values(0), vec![1., 2., 3., f64::from(0.1f32)]);
    assert_eq!(w.values(1), vec![0.1, -0.2]);
    let y = interp::run::<f64>(&p, &w, &inputs(&p, &[&[1., 1.]])).unwrap();
    assert_eq!(y[0].data, vec![3.1, 3.0 + f64::from(0.1f32) - 0.2]);
}

#[test]
fn load_reports_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    write_raw(
        dir.path(),
        &[
            (
                "conv_wt",
                safetensors::Dtype::F32,
                vec![2, 2, 1, 1],
                f32_bytes(&[0.; 4]),
            ),
            (
                "conv_b",
                safetensors::Dtype::F32,
                vec![3],
                f32_bytes(&[0.; 3]),
            ),
        ],
    );
    let diags = load_err(dir.path());
    let codes: Vec<Code> = diags.iter().map(|d| d.code).collect();
    assert_eq!(codes, vec![Code::WeightMissing, Code::WeightShape]);
    assert!(
        diags[0].notes[0].contains("`conv_wt`"),
        "{:?}",
        diags[0].notes
    );
    assert_eq!(diags[0].secondary.len(), 1, "points at the weights line");
    assert!(diags[1].message.contains("[3]") && diags[1].message.contains("[2]"));
}

#[test]
fn load_rejects_other_dtypes() {
    let dir = tempfile::tempdir().unwrap();
    write_raw(
        dir.path(),
        &[
            (
                "conv_w",
                safetensors::Dtype::I32,
                vec![2, 2, 1, 1],
                vec![0; 16],
            ),
            ("conv_b", safetensors::Dtype::F16, vec![2], vec![0; 4]),
        ],
    );
    let codes: Vec<Code> = load_err(dir.path()).iter().map(|d| d.code).collect();
    assert_eq!(codes, vec![Code::WeightDtype, Code::WeightDtype]);
}

#[test]
fn load_without_weights_line_asks_for_one() {
    let p = program(&FILE_NET.replace("  weights \"w.safetensors\"\n", ""));
    let diags = weights::load(&p, Path::new(".")).unwrap_err();
    assert_eq!(diags.len(), 2);
    assert!(diags.iter().all(|d| d.code == Code::WeightMissing));
    assert!(diags[0].notes[0].contains("--random-weights"));
}

#[test]
fn load_unreadable_files_are_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    let code = |bytes: Option<&[u8]>| {
        let path = dir.path().join("w.safetensors");
        match bytes {
            Some(b) => std::fs::write(&path, b).unwrap(),
            None => {
                let _ = std::fs::remove_file(&path);
            }
        }
        let diags = load_err(dir.path());
        assert_eq!(diags.len(), 1);
        assert!(!diags[0].notes.is_empty(), "the cause is a note");
        diags[0].code
    };
    assert_eq!(code(None), Code::WeightsUnreadable);
    assert_eq!(code(Some(b"")), Code::WeightsUnreadable);
    assert_eq!(
        code(Some(b"not a safetensors file at all")),
        Code::WeightsUnreadable
    );
    write_raw(
        dir.path(),
        &[(
            "conv_w",
            safetensors::Dtype::F32,
            vec![2, 2, 1, 1],
            f32_bytes(&[0.; 4]),
        )],
    );
    let good = std::fs::read(dir.path().join("w.safetensors")).unwrap();
    assert_eq!(code(Some(&good[..good.len() - 3])), Code::WeightsUnreadable);
}

#[test]
fn load_never_panics_on_mangled_files() {
    let dir = tempfile::tempdir().unwrap();
    write_raw(
        dir.path(),
        &[
            (
                "conv_w",
                safetensors::Dtype::F32,
                vec![2, 2, 1, 1],
                f32_bytes(&[1.; 4]),
            ),
            (
                "conv_b",
                safetensors::Dtype::F32,
                vec![2],
                f32_bytes(&[1.; 2]),
            ),
        ],
    );
    let good = std::fs::read(dir.path().join("w.safetensors")).unwrap();
    let p = program(FILE_NET);
    let mut rng = SplitMix64::new(42);
    let path = dir.path().join("w.safetensors");
    for i in 0..300 {
        let mut bytes = good.clone();
        match i % 3 {
            0 => bytes.truncate(rng.next_u64() as usize % good.len()),
            1 => {
                for _ in 0..1 + rng.next_u64() % 4 {
                    let at = rng.next_u64() as usize % bytes.len();
                    bytes[at] = rng.next_u64() as u8;
                }
            }
            _ => {
                // Lie in the header: replace one number with a huge or odd one.
                let n = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
                let header = std::str::from_utf8(&good[8..8 + n]).unwrap();
                let digits: Vec<usize> = header
                    .char_indices()
                    .filter(|(_, c)| c.is_ascii_digit())
                    .map(|(i, _)| i)
                    .collect();
                let at = digits[rng.next_u64() as usize % digits.len()];
                let lies = [
                    "18446744073709551615",
                    "18446744073709551599",
                    "4294967296",
                    "0",
                    "7",
                ];
                let lie = lies[rng.next_u64() as usize % lies.len()];
                let text = format!("{}{lie}{}", &header[..at], &header[at + 1..]);
                bytes = (text.len() as u64).to_le_bytes().to_vec();
                bytes.extend_from_slice(text.as_bytes());
                bytes.extend_from_slice(&good[8 + n..]);
            }
        }
        std::fs::write(&path, &bytes).unwrap();
        let _ = weights::load(&p, dir.path());
        let _ = tensor_io::read_safetensors::<f32>(&bytes);
    }
}

#[test]
fn written_weights_load_back() {
    let p = program(
        SMALL_NET
            .replace("{", "{\n  weights \"w.safetensors\"")
            .as_str(),
    );
    let w = weights::random(&p, 5);
    let dir = tempfile::tempdir().unwrap();
    let bytes = weights::file::to_bytes(&w.named(&p)).unwrap();
    std::fs::write(dir.path().join("w.safetensors"), bytes).unwrap();
    assert_eq!(weights::load(&p, dir.path()).unwrap(), w);
    assert!(p.params.iter().all(|q| q.init == ParamInit::File));
}

// ---- tensor files -------------------------------------------------------------------------

#[test]
fn npy_header_is_numpy_v1() {
    let t = Tensor::<f32>::from_f64(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
    let bytes = tensor_io::npy_bytes(&t);
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + len) % 64, 0);
    let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
    assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"));
    assert!(header.ends_with(" \n"));
    assert_eq!(bytes.len(), 10 + len + 24);
    assert_eq!(&bytes[10 + len..10 + len + 4], &1.0f32.to_le_bytes());
    let one = tensor_io::npy_bytes(&Tensor::<f64>::from_f64(&[3], &[1., 2., 3.]));
    assert!(
        String::from_utf8_lossy(&one).contains("'<f8', 'fortran_order': False, 'shape': (3,), }")
    );
}

#[test]
fn npy_round_trip_and_conversion() {
    let t = Tensor::<f64>::from_f64(&[1, 2, 2], &[0.1, -2.5, 3e30, 7.0]);
    let bytes = tensor_io::npy_bytes(&t);
    assert_eq!(tensor_io::read_npy::<f64>(&bytes).unwrap(), t);
    let as32 = tensor_io::read_npy::<f32>(&bytes).unwrap();
    assert_eq!(as32.data, vec![0.1f32, -2.5, 3e30, 7.0]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("y.npy");
    tensor_io::write_npy(&path, &as32).unwrap();
    tensor_io::write_npy(&path, &as32).unwrap(); // overwrites
    assert_eq!(
        tensor_io::read_npy::<f32>(&std::fs::read(&path).unwrap()).unwrap(),
        as32
    );
}

#[test]
fn npy_reads_big_endian_and_rejects_bad_files() {
    let mut header = "{'shape': (2,), 'fortran_order': False, 'descr': '>f4'}".to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&1.5f32.to_be_bytes());
    bytes.extend_from_slice(&(-2.0f32).to_be_bytes());
    let t = tensor_io::read_npy::<f64>(&bytes).unwrap();
    assert_eq!((t.shape, t.data), (vec![2], vec![1.5, -2.0]));

    let bad: Vec<Vec<u8>> = vec![
        bytes[..bytes.len() - 1].to_vec(),
        b"\x93NUMPY".to_vec(),
        b"PK\x03\x04 zipfile".to_vec(),
        String::from_utf8(bytes.clone())
            .map_or(vec![], |s| s.replace("False", "True ").into_bytes()),
        String::from_utf8(bytes.clone()).map_or(vec![], |s| s.replace(">f4", "<i4").into_bytes()),
        String::from_utf8(bytes.clone()).map_or(vec![], |s| {
            s.replace("(2,)", "(9999999999999999999, 9999999)")
                .into_bytes()
        }),
    ];
    for b in bad {
        assert!(tensor_io::read_npy::<f32>(&b).is_err());
    }
    // Never panics on any prefix or byte flip.
    let mut rng = SplitMix64::new(1);
    for len in 0..bytes.len() {
        let _ = tensor_io::read_npy::<f32>(&bytes[..len]);
        let mut flipped = bytes.clone();
        flipped[rng.next_u64() as usize % bytes.len()] = rng.next_u64() as u8;
        let _ = tensor_io::read_npy::<f32>(&flipped);
    }
}

#[test]
fn safetensors_outputs_and_inputs_round_trip() {
    let p = program(SMALL_NET);
    let w = weights::random(&p, 2);
    let x = interp::random_inputs::<f64>(&p, 2);
    let y = interp::run(&p, &w, &x).unwrap();
    let bytes = tensor_io::safetensors_bytes(&[("logits", &y[0]), ("feat", &y[1])]).unwrap();
    let back = tensor_io::read_safetensors::<f64>(&bytes).unwrap();
    assert_eq!(back["logits"], y[0]);
    assert_eq!(back["feat"], y[1]);
    assert!(tensor_io::safetensors_bytes(&[("a", &y[0]), ("a", &y[0])]).is_err());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.safetensors");
    tensor_io::write_safetensors(&path, &[("x", &x[0])]).unwrap();
    assert_eq!(tensor_io::read_inputs::<f64>(&p, &path).unwrap(), x);
    tensor_io::write_safetensors(&path, &[("z", &x[0])]).unwrap();
    let err = tensor_io::read_inputs::<f64>(&p, &path).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no tensor named `x` for the model input `%x`"
    );
    let npy = dir.path().join("x.npy");
    tensor_io::write_npy(&npy, &y[0]).unwrap();
    assert!(matches!(
        tensor_io::read_inputs::<f64>(&p, &npy),
        Err(tensor_io::TensorIoError::Shape { .. })
    ));
}

#[test]
fn write_atomic_replaces_whole_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.bin");
    tensor_io::write_atomic(&path, b"first version").unwrap();
    tensor_io::write_atomic(&path, b"second").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"second");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temp files left"
    );
}

#[test]
fn keep_out_removes_the_channel_through_batch_norm() {
    // Channel 1 of the conv is pruned on the output side: it is removed, so batch norm's shift
    // (bias 5) does not bring it back, and the ReLU after it sees zero too.
    check(
        "model m(%x: f32[1, 1, 1, 1]) -> (%y) {
  param @w: f32[2, 1, 1, 1] = [2.0, 3.0]
  param @g: f32[2] = [1.0, 1.0]
  param @b: f32[2] = [5.0, 5.0]
  param @m: f32[2] = [0.0, 0.0]
  param @v: f32[2] = [1.0, 1.0]
  %c = conv2d(%x, @w) keep_out=[0]
  %n = batch_norm(%c, @g, @b, @m, @v, eps=0.0)
  %y = relu(%n)
}",
        &[&[1.0]],
        &[7.0, 0.0],
    );
}

#[test]
fn removed_channels_merge_by_add_and_mul() {
    // %a removes channel 0, %b removes channel 1. Add keeps a channel one side still has;
    // mul removes a channel either side removed.
    let src = "model m(%x: f32[1, 1, 1, 1]) -> (%s, %p) {
  param @wa: f32[2, 1, 1, 1] = [1.0, 2.0]
  param @wb: f32[2, 1, 1, 1] = [3.0, 4.0]
  param @one: f32[2] = [1.0, 1.0]
  param @shift: f32[2] = [10.0, 10.0]
  param @zero: f32[2] = [0.0, 0.0]
  %a = conv2d(%x, @wa) keep_out=[1]
  %b = conv2d(%x, @wb) keep_out=[0]
  %na = batch_norm(%a, @one, @shift, @zero, @one, eps=0.0)
  %nb = batch_norm(%b, @one, @shift, @zero, @one, eps=0.0)
  %s = add(%na, %nb)
  %p = mul(%na, %nb)
}";
    let p = program(src);
    let y = interp::run::<f64>(&p, &inline(&p), &inputs(&p, &[&[1.0]])).unwrap();
    // %na = [0 (removed), 12], %nb = [13, 0 (removed)].
    assert_eq!(y[0].data, vec![13.0, 12.0]);
    assert_eq!(y[1].data, vec![0.0, 0.0]);
}
