//! `nnirc eval` end to end on synthetic IDX files.
mod common;
use common::*;
use nnirc::eval::{evaluate, DatasetKind, EvalConfig, Split};
use std::io::Write;
use std::path::Path;

/// An IDX file of unsigned bytes, gzipped when `gz`.
fn write_idx(path: &Path, dims: &[u32], data: &[u8], gz: bool) {
    let mut bytes = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    if gz {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&bytes).unwrap();
        bytes = enc.finish().unwrap();
    }
    std::fs::write(path, bytes).unwrap();
}

const TINY: &str = "model tiny(%x: f32[1, 1, 28, 28]) -> (%y) {
  param @c: f32[4, 1, 3, 3]
  param @fc: f32[10, 4]
  %a = conv2d(%x, @c, padding=1, stride=2)
  %r = relu(%a)
  %g = global_avg_pool(%r)
  %f = flatten(%g)
  %y = linear(%f, @fc)
}
";

#[test]
fn cli_eval_on_synthetic_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let images: Vec<u8> = (0..7 * 784).map(|i| (i * 31 % 256) as u8).collect();
    write_idx(
        &d.join("t10k-images-idx3-ubyte.gz"),
        &[7, 28, 28],
        &images,
        true,
    );
    write_idx(
        &d.join("t10k-labels-idx1-ubyte"),
        &[7],
        &[0, 1, 2, 3, 4, 5, 6],
        false,
    );
    let model = d.join("tiny.nnir");
    std::fs::write(&model, TINY).unwrap();
    let json = d.join("out.json");
    let (model, dir_arg, json_arg) = (rel(&model), rel(d), rel(&json));
    let args = [
        "eval",
        &model,
        "--dataset",
        "fashion-mnist",
        "--data-dir",
        &dir_arg,
        "--random-weights",
        "0",
        "--batch",
        "3",
        "--limit",
        "5",
        "--json",
        &json_arg,
    ];
    let (code, stdout, stderr) = nnirc(&args);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("top-1 ") && stdout.contains(" / 5 images"),
        "{stdout}"
    );
    // The progress bar is drawn only on a terminal.
    assert_eq!(stderr, "");
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(written["count"], 5);
    assert_eq!(written["weights"], "random:0");
    assert_eq!(written["per_class"].as_array().unwrap().len(), 10);

    // The same through the library, and the same at every batch size.
    let program = program(TINY);
    let weights = nnirc::weights::random(&program, 0);
    let data = nnirc::eval::load(DatasetKind::FashionMnist, d, Split::Test).unwrap();
    for batch in [1, 5, 100] {
        let config = EvalConfig {
            batch,
            limit: Some(5),
        };
        let r = evaluate(&program, &weights, &data, &config, &mut |_, _| {}).unwrap();
        assert_eq!(r.correct, written["correct"].as_u64().unwrap() as usize);
    }
}

#[test]
fn cli_eval_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = rel(dir.path());
    let (code, _, stderr) = nnirc(&[
        "eval",
        "examples/resnet_basic_block.nnir",
        "--dataset",
        "fashion-mnist",
        "--data-dir",
        &d,
        "--random-weights",
        "0",
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("apt-get install dataset-fashion-mnist")
            && stderr.contains("t10k-images-idx3-ubyte.gz"),
        "{stderr}"
    );
    // A model whose input is not a 28x28 image.
    write_idx(
        &dir.path().join("t10k-images-idx3-ubyte"),
        &[1, 28, 28],
        &[0; 784],
        false,
    );
    write_idx(
        &dir.path().join("t10k-labels-idx1-ubyte"),
        &[1],
        &[0],
        false,
    );
    let (code, _, stderr) = nnirc(&[
        "eval",
        "examples/resnet_basic_block.nnir",
        "--dataset",
        "fashion-mnist",
        "--data-dir",
        &d,
        "--random-weights",
        "0",
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("images need [N, 1, 28, 28]"), "{stderr}");
    let (code, _, _) = nnirc(&[
        "eval",
        "examples/resnet_basic_block.nnir",
        "--dataset",
        "cifar",
    ]);
    assert_eq!(code, 2);
}
