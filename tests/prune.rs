//! `nnirc prune` end to end: the reference mask recipe on every example, a hand-checked model
//! (snapshots), the library API, usage and input errors, and determinism.
mod common;
use common::*;
use nnirc::ir::{Op, Program};
use nnirc::prune::{masks, PruneConfig, Side};
use std::path::Path;

const TINY: &str = "tests/data/prune/tiny.nnir";

/// `nnirc prune ARGS`, which must succeed; returns (stdout, stderr).
fn prune_ok(args: &[&str]) -> (String, String) {
    let mut all = vec!["prune", "--color", "never"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = nnirc(&all);
    assert_eq!(code, 0, "nnirc {all:?} failed:\n{stderr}");
    (stdout, stderr)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(root().join(path)).unwrap()
}

/// Whether a node is a conv the reference recipe prunes: groups == 1, not reading an input.
fn recipe_conv(p: &Program, n: petgraph::graph::NodeIndex) -> bool {
    matches!(&p.graph[n].op, Op::Conv2d(c) if c.groups == 1)
        && p.graph[p.operands(n)[0]].op != Op::Input
}

/// Checks one pruned example against its source, for one side at amount 0.5.
fn check_pruned_example(file: &str, pruned_path: &Path, side: Side) {
    let pruned = std::fs::read_to_string(pruned_path).unwrap();
    let out = pruned_path.to_str().unwrap();
    let (code, _, stderr) = nnirc(&["check", "--color", "never", out]);
    assert_eq!(
        code, 0,
        "{file}: the pruned model does not check:\n{stderr}"
    );
    let (code, _, stderr) = nnirc(&["fmt", "--check", out]);
    assert_eq!(
        code, 0,
        "{file}: the pruned model is not canonical:\n{stderr}"
    );

    let before = program(&read(Path::new(file)));
    let after = program(&pruned);
    assert_eq!(before.graph.node_count(), after.graph.node_count());
    for n in after.graph.node_indices() {
        let (old, new) = (&before.graph[n], &after.graph[n]);
        assert_eq!((&old.name, &old.op), (&new.name, &new.op), "{file}");
        let (mask, other, old_other, axis) = match side {
            Side::Input => (&new.keep_in, &new.keep_out, &old.keep_out, 1),
            Side::Output => (&new.keep_out, &new.keep_in, &old.keep_in, 0),
        };
        assert_eq!(
            other, old_other,
            "{file}: %{}: the other side changed",
            new.name
        );
        // On the output side, a conv whose channels reach a model output stays whole, and so
        // does a conv tied (by add or mul) to a layer that cannot be masked.
        let visible = side == Side::Output && nnirc::prune::reaches_output(&before, n);
        let untied = side == Side::Input || mask.is_some();
        if recipe_conv(&after, n) && !visible && untied {
            let c = after.param_shapes(n)[0][axis];
            let kept = mask
                .as_ref()
                .unwrap_or_else(|| panic!("{file}: %{} unmasked", new.name));
            assert_eq!(kept.len(), c - c / 2, "{file}: %{}", new.name);
        } else {
            assert_eq!(mask, &None, "{file}: %{} must not be masked", new.name);
        }
    }

    // Output side: one mask per coupled group (every producer of a segment keeps the same
    // channels), and at least one group is pruned.
    if side == Side::Output {
        let prov = nnirc::analysis::provenance(&after);
        let segs = nnirc::analysis::segment(&after, &prov);
        for seg in &segs.segments {
            let masks: Vec<_> = seg
                .spaces
                .iter()
                .map(|&s| &after.graph[prov.spaces[s].node].keep_out)
                .collect();
            assert!(
                masks.windows(2).all(|w| w[0] == w[1]),
                "{file}: a coupled group has different masks: {masks:?}"
            );
        }
        assert!(
            after.graph.node_weights().any(|n| n.keep_out.is_some()),
            "{file}"
        );
    }

    // The masks change what the model computes.
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--random-weights", "0", out];
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = nnirc(&args);
        assert_eq!(code, 0, "{stderr}");
        stdout
    };
    assert_ne!(
        run(&[]),
        run(&["--no-masks"]),
        "{file}: masks have no effect"
    );
}

#[test]
fn every_example_input_side() {
    let dir = tempfile::tempdir().unwrap();
    for path in examples() {
        let file = rel(&path);
        let out = dir.path().join(path.file_name().unwrap());
        let (stdout, stderr) = prune_ok(&[
            &file,
            "--random-weights",
            "0",
            "--amount",
            "0.5",
            "--method",
            "l1",
            "--side",
            "input",
            "-o",
            out.to_str().unwrap(),
        ]);
        assert_eq!(stdout, "", "with -o nothing goes to stdout");
        assert!(
            stderr.contains("masked") && stderr.contains("kept"),
            "{stderr}"
        );
        check_pruned_example(&file, &out, Side::Input);
    }
}

#[test]
fn every_example_output_side() {
    let dir = tempfile::tempdir().unwrap();
    for path in examples() {
        let file = rel(&path);
        let out = dir.path().join(path.file_name().unwrap());
        prune_ok(&[
            &file,
            "--random-weights",
            "0",
            "--amount",
            "0.5",
            "--side",
            "output",
            "-o",
            out.to_str().unwrap(),
        ]);
        check_pruned_example(&file, &out, Side::Output);
    }
}

#[test]
fn tiny_snapshots() {
    for (name, extra) in [
        ("input", &[][..]),
        ("output", &["--side", "output"][..]),
        ("input_linear", &["--include-linear"][..]),
        (
            "output_linear",
            &["--side", "output", "--include-linear"][..],
        ),
    ] {
        let mut args = vec![TINY, "--amount", "0.5"];
        args.extend_from_slice(extra);
        let (text, _) = prune_ok(&args);
        insta::assert_snapshot!(format!("tiny_{name}"), text);
    }
    let (_, summary) = prune_ok(&[TINY, "--amount", "0.5", "--verbose"]);
    insta::assert_snapshot!("tiny_summary", summary);
}

/// The kept sets worked out by hand in the header of tests/data/prune/tiny.nnir.
#[test]
fn tiny_hand_checked() {
    let kept = |args: &[&str], name: &str| {
        let mut all = vec![TINY, "--amount", "0.5"];
        all.extend_from_slice(args);
        let p = program(&prune_ok(&all).0);
        let node = &p.graph[p.node_by_name(name).unwrap()];
        (node.keep_in.clone(), node.keep_out.clone())
    };
    let v = |s: &[usize]| Some(s.to_vec());
    assert_eq!(kept(&[], "a"), (v(&[0, 2]), v(&[0, 2])));
    assert_eq!(kept(&[], "b"), (v(&[1, 2]), None));
    assert_eq!(kept(&[], "stem"), (None, None));
    assert_eq!(kept(&[], "dw"), (None, None));
    assert_eq!(kept(&[], "fc"), (None, None));
    assert_eq!(kept(&["--include-linear"], "fc"), (v(&[1, 3]), None));
    let out = ["--side", "output"];
    assert_eq!(kept(&out, "a"), (None, v(&[0, 1])));
    assert_eq!(kept(&out, "b"), (None, v(&[0, 2])));
    assert_eq!(kept(&out, "stem"), (v(&[1]), None));
    // %fc produces the model output: masking its rows would zero logits.
    let out_fc = ["--side", "output", "--include-linear"];
    assert_eq!(kept(&out_fc, "fc"), (None, None));
    assert_eq!(kept(&out_fc, "b"), (None, v(&[0, 2])));
}

#[test]
fn library_api_matches_the_hand_computation() {
    let p = program(&read(Path::new(TINY)));
    let weights = nnirc::weights::load(&p, &root().join("tests/data/prune")).unwrap();
    let named = |config: &PruneConfig| -> Vec<(String, Vec<usize>)> {
        masks(&p, &weights, config)
            .unwrap()
            .into_iter()
            .map(|(n, kept)| (p.graph[n].name.clone(), kept))
            .collect()
    };
    let config = PruneConfig {
        include_linear: true,
        ..PruneConfig::default()
    };
    assert_eq!(
        named(&config),
        vec![
            ("a".to_string(), vec![0, 2]),
            ("b".to_string(), vec![1, 2]),
            ("fc".to_string(), vec![1, 3]),
        ]
    );
    let config = PruneConfig {
        side: Side::Output,
        amount: 0.3,
        ..config
    };
    // floor(0.3 * C): a (3 rows) and fc (2 rows) lose none, b (4 rows) loses its zero row.
    assert_eq!(named(&config), vec![("b".to_string(), vec![0, 1, 2])]);
}

#[test]
fn amount_zero_writes_no_masks_and_removes_old_ones() {
    let (text, stderr) = prune_ok(&[
        "examples/resnet_basic_block.nnir",
        "--random-weights",
        "0",
        "--amount",
        "0",
    ]);
    let p = program(&text);
    assert!(p.graph.node_weights().all(|n| n.keep_in.is_none()));
    assert!(
        p.graph.node_weights().any(|n| n.keep_out.is_some()),
        "the other side is kept"
    );
    assert!(stderr.contains("masked 0 of 6"), "{stderr}");
}

#[test]
fn near_one_keeps_one_channel() {
    let (text, _) = prune_ok(&[TINY, "--amount", "0.999", "--include-linear"]);
    let p = program(&text);
    for name in ["a", "b", "fc"] {
        let node = &p.graph[p.node_by_name(name).unwrap()];
        assert_eq!(node.keep_in.as_ref().map(Vec::len), Some(1), "%{name}");
    }
}

#[test]
fn deterministic_and_idempotent() {
    for path in examples() {
        let file = rel(&path);
        let args = [file.as_str(), "--random-weights", "7", "--amount", "0.3"];
        let (once, _) = prune_ok(&args);
        assert_eq!(once, prune_ok(&args).0, "{file}");
        // Masks depend on the weights only, so pruning the output again changes nothing.
        let dir = tempfile::tempdir().unwrap();
        let pruned = dir.path().join("p.nnir");
        std::fs::write(&pruned, &once).unwrap();
        let (twice, _) = prune_ok(&[
            pruned.to_str().unwrap(),
            "--random-weights",
            "7",
            "--amount",
            "0.3",
        ]);
        assert_eq!(once, twice, "{file}");
    }
}

/// A weights file holding the seeded weights gives the same masks as --random-weights.
#[test]
fn weights_file_and_random_weights_agree() {
    let dir = tempfile::tempdir().unwrap();
    let source = read(Path::new("examples/squeezenet_fire.nnir"));
    let header_end = source.find(") {\n").unwrap() + 4;
    let with_file = format!(
        "{}  weights \"w.safetensors\"\n{}",
        &source[..header_end],
        &source[header_end..]
    );
    let model = dir.path().join("m.nnir");
    std::fs::write(&model, &with_file).unwrap();
    let p = program(&with_file);
    let w = nnirc::weights::random(&p, 5);
    let bytes = nnirc::weights::file::to_bytes(&w.named(&p)).unwrap();
    std::fs::write(dir.path().join("w.safetensors"), bytes).unwrap();

    let m = model.to_str().unwrap();
    let (from_file, _) = prune_ok(&[m, "--amount", "0.5"]);
    let (from_seed, _) = prune_ok(&[m, "--amount", "0.5", "--random-weights", "5"]);
    assert_eq!(from_file, from_seed);
    assert!(from_file.contains("weights \"w.safetensors\""));

    // The weights file is an input too: never written over.
    let w = dir.path().join("w.safetensors");
    let (code, _, stderr) = nnirc(&["prune", m, "--amount", "0.5", "-o", w.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn usage_errors_exit_2() {
    let file = "examples/squeezenet_fire.nnir";
    for amount in ["1", "1.5", "-0.1", "NaN", "half"] {
        let (code, stdout, stderr) =
            nnirc(&["prune", file, "--random-weights", "0", "--amount", amount]);
        assert_eq!(
            (code, stdout.as_str()),
            (2, ""),
            "--amount {amount}: {stderr}"
        );
    }
    let (code, _, _) = nnirc(&["prune", file, "--random-weights", "0"]);
    assert_eq!(code, 2, "--amount is required");
    let (code, _, _) = nnirc(&["prune", file, "--amount", "0.5", "--method", "l3"]);
    assert_eq!(code, 2);
    let (code, _, _) = nnirc(&["prune", file, "--amount", "0.5", "--side", "both"]);
    assert_eq!(code, 2);

    let before = read(Path::new(file));
    let (code, _, stderr) = nnirc(&[
        "prune",
        file,
        "--random-weights",
        "0",
        "--amount",
        "0.5",
        "-o",
        file,
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("refusing"), "{stderr}");
    assert_eq!(read(Path::new(file)), before, "the input is untouched");
}

#[test]
fn missing_weights_exit_1_with_e0502() {
    let (code, stdout, stderr) = nnirc(&[
        "prune",
        "--color",
        "never",
        "examples/resnet_basic_block.nnir",
        "--amount",
        "0.5",
    ]);
    assert_eq!((code, stdout.as_str()), (1, ""));
    assert!(
        stderr.contains("E0502") && stderr.contains("--random-weights"),
        "{stderr}"
    );
}

#[test]
fn invalid_model_exits_1() {
    let (code, _, stderr) = nnirc(&[
        "prune",
        "--color",
        "never",
        "tests/data/errors/cycle.nnir",
        "--random-weights",
        "0",
        "--amount",
        "0.5",
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("Error"), "{stderr}");
}
