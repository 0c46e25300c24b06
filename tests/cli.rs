//! The binary end to end: `run` on every example, masks, output files and exit codes.
mod common;
use common::*;

/// `nnirc run ARGS`, which must succeed; returns stdout.
fn run_ok(args: &[&str]) -> String {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = nnirc(&all);
    assert_eq!(code, 0, "nnirc {all:?} failed:\n{stderr}");
    stdout
}

#[test]
fn every_example_runs_and_its_masks_matter() {
    for path in examples() {
        let file = rel(&path);
        let masked = run_ok(&["--random-weights", "0", &file]);
        assert!(
            masked.starts_with('%') && masked.contains("f32["),
            "{masked}"
        );
        assert!(
            !masked.contains("NaN") && !masked.contains("inf"),
            "{file}: {masked}"
        );
        let unmasked = run_ok(&["--random-weights", "0", "--no-masks", &file]);
        assert_ne!(masked, unmasked, "{file}: masks do not change the output");
        // Deterministic: the same seeds give the same summary.
        assert_eq!(masked, run_ok(&["--random-weights", "0", &file]));
    }
}

#[test]
fn outputs_written_as_safetensors_and_npy_match() {
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("out.safetensors");
    let npy = dir.path().join("out.npy");
    let model = "examples/squeezenet_fire.nnir";
    run_ok(&[
        "--random-weights",
        "3",
        "--f64",
        model,
        "-o",
        st.to_str().unwrap(),
    ]);
    run_ok(&[
        "--random-weights",
        "3",
        "--f64",
        model,
        "-o",
        npy.to_str().unwrap(),
    ]);
    let from_st = nnirc::tensor_io::read_safetensors::<f64>(&std::fs::read(&st).unwrap()).unwrap();
    let from_npy = nnirc::tensor_io::read_npy::<f64>(&std::fs::read(&npy).unwrap()).unwrap();
    assert_eq!(from_st.len(), 1);
    let only = from_st.values().next().unwrap();
    assert_eq!(only.shape, vec![1, 1000]);
    assert_eq!(only.data, from_npy.data);
}

#[test]
fn inputs_from_a_file_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let model = "tests/data/format/layout_ops.nnir";
    let x = nnirc::tensor::Tensor {
        shape: vec![1, 8, 4, 4],
        data: (0..128).map(|i| i as f32).collect(),
    };
    let input = dir.path().join("x.npy");
    nnirc::tensor_io::write_npy(&input, &x).unwrap();
    let out = dir.path().join("y.safetensors");
    run_ok(&[
        model,
        "--inputs",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    let outs = nnirc::tensor_io::read_safetensors::<f32>(&std::fs::read(&out).unwrap()).unwrap();
    // `%s = slice(%x, start=2, end=6)`: channels 2..6 of the input, unchanged.
    assert_eq!(outs["s"].data, x.data[2 * 16..6 * 16].to_vec());
    // `%g = gather(%x, indices=[7, 0..3, 5])`.
    let first: Vec<f32> = outs["g"].data[..16].to_vec();
    assert_eq!(first, x.data[7 * 16..8 * 16].to_vec());
}

#[test]
fn missing_weights_file_needs_random_weights() {
    let (code, _, stderr) = nnirc(&[
        "run",
        "--color",
        "never",
        "examples/resnet_basic_block.nnir",
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("E0502") && stderr.contains("--random-weights"),
        "{stderr}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let (code, _, _) = nnirc(&["run", "--no-such-flag", "examples/squeezenet_fire.nnir"]);
    assert_eq!(code, 2);
    let (code, _, stderr) = nnirc(&[
        "run",
        "--random-weights",
        "0",
        "examples/squeezenet_fire.nnir",
        "-o",
        "examples/squeezenet_fire.nnir",
    ]);
    assert_eq!(code, 2, "{stderr}");
    let (code, _, _) = nnirc(&[
        "run",
        "--random-weights",
        "0",
        "examples/squeezenet_fire.nnir",
        "-o",
        "out.txt",
    ]);
    assert_eq!(code, 2);
}

#[test]
fn unreadable_files_exit_1() {
    let (code, _, stderr) = nnirc(&["check", "no/such/file.nnir"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot read"), "{stderr}");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.nnir");
    std::fs::write(&bad, b"model m(%x: f32[1]) -> (%x) {\xff}\n").unwrap();
    let (code, _, stderr) = nnirc(&["check", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("UTF-8"), "{stderr}");
}
