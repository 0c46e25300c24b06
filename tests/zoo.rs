//! The torchvision zoo: every model checks and is canonical, and with the reference mask
//! recipe (input-side L1, amount 0.5, seeded weights) the upscale export verifies and copies no
//! more than the reference implementation's numbers in DESIGN.md section 4.
mod common;
use common::*;
use nnirc::optimize::{optimize, verify, Mode, OptimizeConfig};
use nnirc::optimize::{program_stats, CopySemantics};
use nnirc::prune::{masks, PruneConfig};

/// DESIGN.md section 4: (model, naive copying ops, naive MB, UPSCALE reference ops, MB).
const REFERENCE: [(&str, usize, f64, usize, f64); 6] = [
    ("resnet18", 11, 2.56, 4, 1.10),
    ("resnet50", 20, 14.45, 10, 7.63),
    ("densenet121", 61, 21.00, 57, 20.25),
    ("mobilenet_v2", 15, 0.71, 5, 0.15),
    ("efficientnet_b0", 46, 5.36, 4, 0.11),
    ("squeezenet1_1", 15, 0.63, 0, 0.00),
];

#[test]
fn zoo_checks_and_is_canonical() {
    for path in zoo() {
        let (code, _, stderr) = nnirc(&["check", &rel(&path)]);
        assert_eq!(code, 0, "{stderr}");
        let (code, _, stderr) = nnirc(&["fmt", "--check", &rel(&path)]);
        assert_eq!(code, 0, "{stderr}");
    }
}

/// Zoo model `name` with seeded weights and the reference recipe's masks (input-side L1, 0.5).
fn pruned(name: &str) -> (nnirc::ir::Program, nnirc::weights::Weights) {
    let source = std::fs::read_to_string(root().join(format!("examples/zoo/{name}.nnir"))).unwrap();
    let mut program = program(&source);
    let weights = nnirc::weights::random(&program, 0);
    for (n, kept) in masks(&program, &weights, &PruneConfig::default())
        .expect("the default recipe scores any model")
    {
        program.graph[n].keep_in = Some(kept);
    }
    (program, weights)
}

/// Padding a fire module's expand block after its order would split the next squeeze's read
/// of the concat (it must end that block); it goes in front of the block instead, so
/// alignment costs no copy.
#[test]
fn aligned_squeezenet_copies_nothing() {
    let (program, weights) = pruned("squeezenet1_1");
    let config = OptimizeConfig {
        channel_align: 8,
        verify: Some(0),
        ..Default::default()
    };
    let e = optimize(&program, &weights, &config).unwrap();
    let s = program_stats(&e.program, CopySemantics::Views);
    assert_eq!((s.copying_ops, s.bytes_copied), (0, 0));
}

/// Each dense layer of densenet121 reads the concat of every earlier block, each pruned
/// differently: no order makes such a read contiguous, and before the selections were
/// distributed over the concats the upscale export copied 19.227 MB per inference. Selecting
/// each block's part before the concat lets each block's order make its part contiguous.
#[test]
fn densenet121_distributes_selections_over_concat() {
    let (program, weights) = pruned("densenet121");
    let config = OptimizeConfig {
        verify: Some(0),
        ..Default::default()
    };
    let e = optimize(&program, &weights, &config).unwrap();
    let s = program_stats(&e.program, CopySemantics::Views);
    assert!(s.bytes_copied <= 14_750_000, "{} bytes", s.bytes_copied);
    // The selections feed the concats: some concat reads a slice or gather.
    let reads_selection = e.program.graph.node_indices().any(|n| {
        matches!(e.program.graph[n].op, nnirc::ir::Op::Concat)
            && e.program.operands(n).iter().any(|&o| {
                matches!(
                    e.program.graph[o].op,
                    nnirc::ir::Op::Slice { .. } | nnirc::ir::Op::Gather { .. }
                )
            })
    });
    assert!(reads_selection);
}

/// Also: every rewrite rule of the read planner fires on some model of the zoo (a rule that
/// never does is decoration, and is deleted).
#[test]
fn upscale_matches_or_beats_the_reference_on_the_zoo() {
    let mut fired: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for (name, naive_ops, naive_mb, ref_ops, ref_mb) in REFERENCE {
        let (program, weights) = pruned(name);
        let run = |mode| {
            let e = optimize(
                &program,
                &weights,
                &OptimizeConfig {
                    mode,
                    ..Default::default()
                },
            )
            .unwrap();
            let s = program_stats(&e.program, CopySemantics::Views);
            (e, s)
        };
        let (_, naive) = run(Mode::Naive);
        let (upscale, after) = run(Mode::Upscale);
        let egraph = upscale
            .report
            .egraph
            .as_ref()
            .expect("upscale plans on the e-graph");
        for (rule, times) in &egraph.rules_fired {
            *fired.entry(rule.clone()).or_insert(0) += times;
        }
        let mb = |b: u64| b as f64 / 1e6;
        // The naive baseline is the reference's (same recipe, same architecture).
        assert_eq!(naive.copying_ops, naive_ops, "{name}: naive copying ops");
        assert!(
            (mb(naive.bytes_copied) - naive_mb).abs() < 0.01,
            "{name}: naive MB {}",
            mb(naive.bytes_copied)
        );
        // densenet121's dense layers distribute their selections over their concats: a copy
        // of each block's kept part that no order makes contiguous, instead of one copy of
        // everything kept, so more ops copy fewer bytes (densenet121_distributes_...).
        if name != "densenet121" {
            assert!(
                after.copying_ops <= ref_ops,
                "{name}: {} copying ops, reference {ref_ops}",
                after.copying_ops
            );
        }
        assert!(
            mb(after.bytes_copied) <= ref_mb + 0.005,
            "{name}: {} MB, reference {ref_mb}",
            mb(after.bytes_copied)
        );
        let d = verify::<f32>(&program, &weights, &upscale.program, &upscale.weights, 0).unwrap();
        assert!(d.max_rel <= 1e-4, "{name}: {d:?}");
    }
    let rules = nnirc::egraph::rules::rules();
    assert_eq!(fired.len(), rules.len(), "{fired:?}");
    for (rule, times) in fired {
        assert!(times > 0, "rule {rule} never fires on the zoo");
    }
}

/// `tools/make_zoo.py` writes each zoo `.nnir` by importing the TorchScript exporter's ONNX file
/// (committed graph-only: its weights are external data that is not committed); importing that
/// file again must give the committed text byte for byte.
#[test]
fn importing_the_zoo_onnx_files_reproduces_the_committed_text() {
    let dir = tempfile::tempdir().unwrap();
    for path in zoo() {
        let name = path.file_stem().unwrap().to_str().unwrap();
        let onnx = root().join(format!("tests/data/onnx/zoo/{name}.onnx"));
        let out = dir.path().join(format!("{name}.nnir"));
        let (code, _, stderr) = nnirc(&[
            "import",
            "--no-weights",
            onnx.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{name}: {stderr}");
        let want = std::fs::read_to_string(&path).unwrap();
        let got = std::fs::read_to_string(&out).unwrap();
        assert!(
            got == want,
            "{name}: the import differs from {}",
            rel(&path)
        );
    }
}

/// The dynamo exporter's files of the same models (opset 20, ReduceMean for the global pooling,
/// batch norm not always folded, names from `pkg.torch.onnx.name_scopes`) import into the same
/// architecture: the same convolution and linear weight shapes, in the same order, with the
/// module names the TorchScript export gets from its node names.
#[test]
fn dynamo_exports_of_the_zoo_import_to_the_same_architecture() {
    for path in zoo() {
        let name = path.file_stem().unwrap().to_str().unwrap();
        let onnx = root().join(format!("tests/data/onnx/zoo/{name}.dynamo.onnx"));
        let bytes = std::fs::read(&onnx).unwrap();
        let opts = nnirc::onnx::ImportOptions {
            skip_external_weights: true,
            ..Default::default()
        };
        let dynamo =
            nnirc::onnx::import(&bytes, &onnx, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
        let legacy = program(&std::fs::read_to_string(&path).unwrap());
        let weights = |p: &nnirc::ir::Program| -> Vec<(String, Vec<usize>)> {
            p.params
                .iter()
                .filter(|q| q.name.ends_with(".weight") && q.shape.len() >= 2)
                .map(|q| (q.name.clone(), q.shape.clone()))
                .collect()
        };
        assert_eq!(weights(&dynamo.program), weights(&legacy), "{name}");
        let out = |p: &nnirc::ir::Program| p.graph[p.outputs[0]].shape.clone();
        assert_eq!(out(&dynamo.program), out(&legacy), "{name}");
    }
}
