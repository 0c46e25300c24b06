//! The latency model without onnxruntime: units, micro-models, the table format and the
//! predictor (tests/latency_ort.rs measures, with the `onnxruntime` feature).

mod common;

use common::{nnirc, program, root, zoo};
use nnirc::latency::micro::{grid, micro_source};
use nnirc::latency::predict;
use nnirc::latency::table::{class, Table};
use nnirc::latency::units::{units, Kernel};

fn fashion_table() -> Table {
    let text =
        std::fs::read_to_string(root().join("docs/latency/tables/fashion_cnn.json")).unwrap();
    Table::from_json(&text).unwrap()
}

fn load(path: &std::path::Path) -> nnirc::ir::Program {
    program(&std::fs::read_to_string(path).unwrap())
}

#[test]
fn every_node_is_in_one_unit() {
    for path in zoo() {
        let p = load(&path);
        let us = units(&p);
        let mut seen = vec![0; p.graph.node_count()];
        let mut produced = vec![false; p.graph.node_count()];
        for n in &p.inputs {
            produced[n.index()] = true;
        }
        for u in &us {
            for &n in &u.nodes {
                seen[n.index()] += 1;
            }
            produced[u.output().index()] = true;
        }
        // Units read model inputs and unit outputs only, never a value inside a unit.
        for u in &us {
            for &i in &u.inputs {
                assert!(
                    produced[i.index()],
                    "{}: %{}",
                    path.display(),
                    p.graph[i].name
                );
            }
        }
        for n in p.graph.node_indices() {
            let expected = match p.graph[n].op {
                nnirc::ir::Op::Input | nnirc::ir::Op::Dropout { .. } => 0,
                _ => 1,
            };
            assert_eq!(
                seen[n.index()],
                expected,
                "{}: %{}",
                path.display(),
                p.graph[n].name
            );
        }
    }
}

#[test]
fn resnet_blocks_fuse_relu_and_the_residual_add() {
    let p = load(&root().join("examples/zoo/resnet18.nnir"));
    let descriptions: Vec<String> = units(&p).iter().map(|u| u.kernel.describe()).collect();
    assert_eq!(descriptions[0], "conv 7x7 s2+relu @224x224");
    assert!(descriptions.contains(&"conv 3x3+add+relu @56x56".to_string()));
    // 20 convs, the max pool, the global pool, the flatten and the classifier.
    assert_eq!(descriptions.len(), 24);
}

#[test]
fn every_micro_model_of_the_zoo_compiles_and_exports() {
    for path in zoo() {
        let p = load(&path);
        let mut by_kernel: std::collections::BTreeMap<Kernel, Vec<(usize, usize)>> =
            Default::default();
        for u in units(&p) {
            by_kernel
                .entry(u.kernel)
                .or_default()
                .push((u.c_in, u.c_out));
        }
        for (kernel, seen) in by_kernel {
            let pairs = grid(&kernel, &seen, 8);
            // Each of the model's own pairs has measured points in its alignment classes.
            let (fi, fo) = nnirc::latency::table::fine_axes(&kernel);
            for &(i, o) in seen.iter() {
                assert!(
                    pairs
                        .iter()
                        .any(|&(a, b)| class(a, 8, fi) == class(i, 8, fi)
                            && class(b, 8, fo) == class(o, 8, fo)),
                    "{}: ({i}, {o}) has no class",
                    kernel.describe()
                );
            }
            // Every point compiles; export the first (exporting all takes too long here).
            for (i, &(c_in, c_out)) in pairs.iter().enumerate() {
                let source = micro_source(&kernel, c_in, c_out);
                let compiled = nnirc::compile(&source);
                assert!(
                    compiled.diagnostics.is_empty(),
                    "{source}\n{:?}",
                    compiled.diagnostics
                );
                if i == 0 {
                    let program = compiled.program.unwrap();
                    let weights = nnirc::weights::random(&program, 0);
                    nnirc::onnx::export_bytes(&program, &weights).unwrap();
                }
            }
        }
    }
}

#[test]
fn the_grid_covers_every_alignment_class_of_each_axis() {
    let conv = units(&load(&root().join("examples/zoo/resnet18.nnir")))[2]
        .kernel
        .clone();
    let pairs = grid(&conv, &[(64, 64)], 8);
    for want in [1, 2, 4, 8] {
        let ins: std::collections::BTreeSet<usize> = pairs
            .iter()
            .filter(|p| class(p.0, 8, true) == want)
            .map(|p| p.0)
            .collect();
        assert!(ins.len() >= 2, "class {want}: {ins:?}");
    }
    let outs: std::collections::BTreeSet<usize> = pairs.iter().map(|p| p.1).collect();
    assert!(
        outs.iter().filter(|&&c| c % 8 != 0).count() >= 2,
        "{outs:?}"
    );
}

fn tiny_table(points: &str) -> String {
    format!(
        r#"{{"version": 2,
  "runtime": {{"name": "onnxruntime", "version": "1.31.1", "provider": "CPUExecutionProvider", "threads": 1, "optimization": "all"}},
  "machine": {{"cpu": "test", "isa": ["avx2"], "logical_cpus": 2}},
  "block": 8,
  "method": {{"warmup": 1, "runs": 1, "statistic": "test"}},
  "measured": "2026-11-28T00:00:00Z",
  "models": ["test"],
  "overhead": {{"run_us": 10.0, "kernel_us": 1.0, "profiler_us": 2.0}},
  "calibration": {{"scale": 1.0, "models": []}},
  "reorders": {{"input": [{{"bytes": 0, "us": 0.0}}, {{"bytes": 1000, "us": 1.0}}],
               "output": [{{"bytes": 1000, "us": 2.0}}]}},
  "entries": [{points}]}}"#
    )
}

const CONV: &str = r#"{"kind": "conv", "kernel": [1, 1], "stride": [1, 1], "padding": [0, 0, 0, 0],
  "dilation": [1, 1], "depthwise": false, "groups": 1, "bias": false, "input": [4, 4], "fused": []}"#;

fn conv_entry() -> String {
    // Aligned inputs run blocked and fast (1 us per 8x8 channels), odd ones plain and slow.
    format!(
        r#"{{"kernel": {CONV}, "points": [
  {{"c_in": 8, "c_out": 8, "us": 1.0, "nchwc": true}}, {{"c_in": 16, "c_out": 8, "us": 2.0, "nchwc": true}},
  {{"c_in": 8, "c_out": 16, "us": 2.0, "nchwc": true}}, {{"c_in": 16, "c_out": 16, "us": 4.0, "nchwc": true}},
  {{"c_in": 9, "c_out": 8, "us": 10.0, "nchwc": false}}, {{"c_in": 15, "c_out": 8, "us": 16.0, "nchwc": false}},
  {{"c_in": 9, "c_out": 16, "us": 20.0, "nchwc": false}}, {{"c_in": 15, "c_out": 16, "us": 32.0, "nchwc": false}}]}}"#
    )
}

#[test]
fn lookup_interpolates_only_within_an_alignment_class() {
    let table = Table::from_json(&tiny_table(&conv_entry())).unwrap();
    let kernel: Kernel = serde_json::from_str(CONV).unwrap();
    assert_eq!(table.lookup(&kernel, 16, 8), Some((2.0, true)));
    // 11 lies between 8 and 16, but is odd: only the odd points count (9 -> 10, 15 -> 16 at
    // 8 outputs; 9 -> 20, 15 -> 32 at 16).
    assert_eq!(table.lookup(&kernel, 11, 8), Some((12.0, false)));
    assert_eq!(table.lookup(&kernel, 11, 16), Some((24.0, false)));
    // Beyond the largest: linear extrapolation.
    assert_eq!(table.lookup(&kernel, 24, 8), Some((3.0, true)));
    assert_eq!(table.lookup(&kernel, 24, 16), Some((6.0, true)));
    // An unaligned output width: no such point measured.
    assert_eq!(table.lookup(&kernel, 16, 12), None);
    // Below the block: no class-0 point measured.
    assert_eq!(table.lookup(&kernel, 4, 8), None);
    // A class with no points at all: 12 = 4 mod 8.
    assert_eq!(table.lookup(&kernel, 12, 8), None);
}

#[test]
fn tables_are_strict() {
    let ok = tiny_table(&conv_entry());
    assert!(Table::from_json(&ok).is_ok());
    let v1 = std::fs::read_to_string(root().join("tests/data/latency_example.json")).unwrap();
    let e = Table::from_json(&v1).unwrap_err().to_string();
    assert!(e.contains("no \"version\" field"), "{e}");
    let e = Table::from_json(&ok.replacen("\"version\": 2", "\"version\": 3", 1)).unwrap_err();
    assert!(e.to_string().contains("version 3 is not supported"), "{e}");
    let e = Table::from_json(&ok.replacen("\"block\": 8", "\"block\": 8, \"extra\": 1", 1))
        .unwrap_err();
    assert!(e.to_string().contains("unknown field"), "{e}");
    let e = Table::from_json(&ok.replacen("\"block\": 8", "\"block\": 6", 1)).unwrap_err();
    assert!(e.to_string().contains("block 6"), "{e}");
    let twice = tiny_table(&format!("{}, {}", conv_entry(), conv_entry()));
    assert!(Table::from_json(&twice)
        .unwrap_err()
        .to_string()
        .contains("appears twice"));
    let negative = ok.replacen("\"us\": 1.0, \"nchwc\"", "\"us\": -1.0, \"nchwc\"", 1);
    assert!(Table::from_json(&negative).is_err());
    let bad_scale = ok.replacen("\"scale\": 1.0", "\"scale\": 0.0", 1);
    assert!(Table::from_json(&bad_scale)
        .unwrap_err()
        .to_string()
        .contains("scale"));
    let unsorted = ok.replacen(
        "{\"bytes\": 1000, \"us\": 1.0}",
        "{\"bytes\": 0, \"us\": 1.0}",
        1,
    );
    assert!(Table::from_json(&unsorted)
        .unwrap_err()
        .to_string()
        .contains("increasing"));
    // Round trip.
    let table = Table::from_json(&ok).unwrap();
    assert_eq!(Table::from_json(&table.to_json()).unwrap(), table);
}

#[test]
fn prediction_sums_units_reorders_and_overheads() {
    let table = Table::from_json(&tiny_table(&conv_entry())).unwrap();
    // A blocked conv whose output a plain consumer (the model output) reads: one reorder out.
    let p = program("model m(%x: f32[1, 16, 4, 4]) -> (%y) {\n  param @w: f32[16, 16, 1, 1]\n  %y = conv2d(%x, @w)\n}\n");
    let pred = predict(&p, &table).unwrap();
    assert_eq!(pred.units.len(), 1);
    assert!(pred.units[0].nchwc);
    // In: the plain model input read blocked (1024 bytes); out: 1024 bytes.
    assert_eq!(pred.reorders.len(), 2);
    let reorders: f64 = pred.reorders.iter().map(|r| r.us).sum();
    assert!((reorders - (1.024 + 2.048)).abs() < 1e-9, "{reorders}");
    assert!((pred.overhead_us - (10.0 + 3.0)).abs() < 1e-9);
    assert!((pred.total_us - (4.0 + reorders + 13.0)).abs() < 1e-9);
    // An odd input width runs plain: no reorders.
    let p = program("model m(%x: f32[1, 15, 4, 4]) -> (%y) {\n  param @w: f32[16, 15, 1, 1]\n  %y = conv2d(%x, @w)\n}\n");
    let pred = predict(&p, &table).unwrap();
    assert!(!pred.units[0].nchwc && pred.reorders.is_empty());
    assert!((pred.total_us - (32.0 + 11.0)).abs() < 1e-9);
}

#[test]
fn a_kernel_the_table_lacks_is_named() {
    let table = Table::from_json(&tiny_table(&conv_entry())).unwrap();
    let p = program("model m(%x: f32[1, 16, 4, 4]) -> (%y) {\n  %y = relu(%x)\n}\n");
    let e = predict(&p, &table).unwrap_err().to_string();
    assert!(e.contains("%y (relu @4x4, 16 -> 16 channels)"), "{e}");
}

#[test]
fn the_committed_table_predicts_the_trained_model_and_its_pruned_export() {
    let table = fashion_table();
    let dense = load(&root().join("examples/fashion/fashion_cnn.nnir"));
    let full = predict(&dense, &table).unwrap();
    assert!(full.total_us > 0.0);
    // Prune and optimize it (upscale), then predict: the table covers the pruned widths
    // and the gathers of the export.
    let dir = tempfile::tempdir().unwrap();
    let masked = dir.path().join("masked.nnir");
    let out = dir.path().join("small.nnir");
    let model = root().join("examples/fashion/fashion_cnn.nnir");
    let (code, _, err) = nnirc(&[
        "prune",
        model.to_str().unwrap(),
        "--amount",
        "0.5",
        "-o",
        masked.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    std::fs::copy(
        root().join("examples/fashion/fashion_cnn.safetensors"),
        dir.path().join("fashion_cnn.safetensors"),
    )
    .unwrap();
    let (code, _, err) = nnirc(&[
        "optimize",
        masked.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let small = load(&out);
    let pruned = predict(&small, &table).unwrap();
    assert!(
        pruned.total_us < full.total_us,
        "{} vs {}",
        pruned.total_us,
        full.total_us
    );
}

#[test]
fn cli_predict_prints_units_and_total_and_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("p.json");
    let model = root().join("examples/fashion/fashion_cnn.nnir");
    let table = root().join("docs/latency/tables/fashion_cnn.json");
    let (code, out, err) = nnirc(&[
        "latency",
        "predict",
        model.to_str().unwrap(),
        "--table",
        table.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("res1.conv2.conv") && out.contains("conv 3x3+add+relu @14x14"),
        "{out}"
    );
    assert!(out.lines().last().unwrap().starts_with("total "), "{out}");
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(written["total_us"].as_f64().unwrap() > 0.0);
    // A version-1 table is refused with a clear message.
    let v1 = root().join("tests/data/latency_example.json");
    let (code, _, err) = nnirc(&[
        "latency",
        "predict",
        model.to_str().unwrap(),
        "--table",
        v1.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("no \"version\" field"), "{err}");
}

#[cfg(not(feature = "onnxruntime"))]
#[test]
fn measure_without_the_feature_says_how_to_build_it() {
    let model = root().join("examples/fashion/fashion_cnn.nnir");
    let (code, _, err) = nnirc(&[
        "latency",
        "measure",
        model.to_str().unwrap(),
        "-o",
        "/nonexistent/t.json",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("--features onnxruntime"), "{err}");
}
