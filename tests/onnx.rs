//! ONNX boundary: export then import computes what the masked program computes (f32, 1e-5
//! relative), on every example and on its optimized (gather/slice/permute) exports; bad ONNX is
//! an error, never a panic.
mod common;
use common::*;
use nnirc::ir::Program;
use nnirc::onnx::proto::{self, ModelProto};
use nnirc::onnx::{export, export_bytes, import, ImportOptions};
use nnirc::tensor::Tensor;
use nnirc::weights::Weights;
use proptest::prelude::*;
use prost::Message;
use std::path::Path;

fn compile(source: &str) -> Program {
    let c = nnirc::compile(source);
    c.program
        .unwrap_or_else(|| panic!("compiles: {:?}", c.diagnostics))
}

fn max_rel(a: &[Tensor<f32>], b: &[Tensor<f32>]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mut worst: f64 = 0.0;
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.shape, y.shape);
        let scale = x
            .data
            .iter()
            .fold(1e-6f64, |m, &v| m.max(f64::from(v).abs()));
        for (&p, &q) in x.data.iter().zip(&y.data) {
            worst = worst.max((f64::from(p) - f64::from(q)).abs() / scale);
        }
    }
    worst
}

/// Exports `program`, imports it back and compares both with the interpreter.
fn round_trip(what: &str, program: &Program, weights: &Weights) -> nnirc::onnx::Imported {
    let bytes = export_bytes(program, weights).unwrap_or_else(|e| panic!("{what}: {e}"));
    let imported = import(&bytes, Path::new("model.onnx"), &ImportOptions::default())
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let inputs = nnirc::interp::random_inputs::<f32>(program, 3);
    let want = nnirc::interp::run(program, weights, &inputs).unwrap();
    let got = nnirc::interp::run(&imported.program, &imported.weights, &inputs).unwrap();
    let rel = max_rel(&want, &got);
    assert!(rel <= 1e-5, "{what}: round trip deviates by {rel:e}");
    imported
}

#[test]
fn examples_round_trip() {
    for path in examples() {
        let program = compile(&std::fs::read_to_string(&path).unwrap());
        let weights = nnirc::weights::random(&program, 0);
        let imported = round_trip(&rel(&path), &program, &weights);
        assert_eq!(imported.program.inputs.len(), program.inputs.len());
        assert_eq!(imported.program.outputs.len(), program.outputs.len());
    }
}

#[test]
fn optimized_examples_round_trip() {
    use nnirc::optimize::{Mode, OptimizeConfig};
    for path in examples() {
        let program = compile(&std::fs::read_to_string(&path).unwrap());
        let weights = nnirc::weights::random(&program, 0);
        for mode in [Mode::Naive, Mode::Upscale] {
            let config = OptimizeConfig {
                mode,
                ..Default::default()
            };
            let ex = nnirc::optimize::optimize(&program, &weights, &config).unwrap();
            round_trip(
                &format!("{} {mode:?}", rel(&path)),
                &ex.program,
                &ex.weights,
            );
        }
    }
}

const SMALL: &str = "model m(%x: f32[1, 4, 6, 6]) -> (%y, %z) {
  param @c.weight: f32[6, 4, 3, 3]
  param @c.bias: f32[6]
  param @bn.weight: f32[6]
  param @bn.bias: f32[6]
  param @bn.mean: f32[6]
  param @bn.var: f32[6]
  param @fc.weight: f32[3, 8]
  %c = conv2d(%x, @c.weight, @c.bias, padding=1, stride=2) keep_in=[0, 2, 3] keep_out=[0, 1, 4]
  %b = batch_norm(%c, @bn.weight, @bn.bias, @bn.mean, @bn.var)
  %s = sigmoid(%b)
  %h = hardsigmoid(%b)
  %m = mul(%s, %h)
  %w = silu(%m)
  %r = relu6(%w)
  %g = gather(%r, indices=[5, 0, 0, 3])
  %l = slice(%r, start=1, end=5)
  %p = permute(%l, order=[3, 1, 0, 2])
  %cat = concat(%g, %p)
  %mp = max_pool2d(%cat, kernel=2, stride=1, ceil_mode=true)
  %ap = avg_pool2d(%mp, kernel=2, padding=1, count_include_pad=false)
  %gp = adaptive_avg_pool(%ap)
  %f = flatten(%gp)
  %d = dropout(%f)
  %z = hardswish(%d)
  %y = linear(%f, @fc.weight) keep_in=[0..5, 7]
}
";

#[test]
fn every_op_and_removed_channels_round_trip() {
    let program = compile(SMALL);
    let weights = nnirc::weights::random(&program, 5);
    round_trip("small", &program, &weights);
}

#[test]
fn export_has_opset_17_shapes_and_no_value_info() {
    let program = compile(SMALL);
    let model = export(&program, &nnirc::weights::random(&program, 1)).unwrap();
    assert_eq!(model.opset_import[0].version, Some(17));
    let graph = model.graph.unwrap();
    assert!(graph.value_info.is_empty());
    assert_eq!(graph.input.len(), 1);
    assert_eq!(graph.output.len(), 2);
    let ops: Vec<&str> = graph
        .node
        .iter()
        .filter_map(|n| n.op_type.as_deref())
        .collect();
    for op in [
        "Conv",
        "BatchNormalization",
        "Sigmoid",
        "HardSigmoid",
        "Clip",
        "Gather",
        "Slice",
        "Concat",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "Flatten",
        "Identity",
        "HardSwish",
        "Gemm",
    ] {
        assert!(ops.contains(&op), "no {op} in {ops:?}");
    }
    assert!(graph
        .initializer
        .iter()
        .all(|t| t.raw_data.is_some() && t.float_data.is_empty()));
    // keep_out removed channels 2, 3, 5: sigmoid would bring them back as 0.5.
    assert!(graph
        .initializer
        .iter()
        .any(|t| t.name.as_deref() == Some("s.removed_mask")));
}

#[test]
fn masks_from_zeros_writes_keep_in() {
    let src = "model m(%x: f32[1, 4]) -> (%y) {\n  param @fc.weight: f32[2, 4]\n  %y = linear(%x, @fc.weight) keep_in=[1, 3]\n}\n";
    let program = compile(src);
    let weights = nnirc::weights::random(&program, 0);
    let bytes = export_bytes(&program, &weights).unwrap();
    let opts = ImportOptions {
        masks_from_zeros: true,
        ..Default::default()
    };
    let imported = import(&bytes, Path::new("m.onnx"), &opts).unwrap();
    let text = imported.text(None);
    assert!(text.contains("keep_in=[1, 3]"), "{text}");
    let plain = import(&bytes, Path::new("m.onnx"), &ImportOptions::default()).unwrap();
    assert!(!plain.text(None).contains("keep_in"));
}

fn tiny_model(op: &str) -> ModelProto {
    let program = compile("model m(%x: f32[1, 2]) -> (%y) {\n  %y = relu(%x)\n}\n");
    let mut model = export(&program, &nnirc::weights::random(&program, 0)).unwrap();
    let node = &mut model.graph.as_mut().unwrap().node[0];
    node.op_type = Some(op.to_string());
    node.name = Some("weird_node".to_string());
    model
}

#[test]
fn unsupported_op_names_node_op_and_path() {
    let bytes = tiny_model("LpNormalization").encode_to_vec();
    let e = import(&bytes, Path::new("dir/m.onnx"), &ImportOptions::default()).unwrap_err();
    let msg = e.to_string();
    for part in ["weird_node", "LpNormalization", "dir/m.onnx"] {
        assert!(msg.contains(part), "{msg}");
    }
}

#[test]
fn float_data_and_external_data_import() {
    let src = "model m(%x: f32[1, 3]) -> (%y) {\n  param @w: f32[2, 3]\n  param @b: f32[2]\n  %y = linear(%x, @w, @b)\n}\n";
    let program = compile(src);
    let weights = nnirc::weights::random(&program, 2);
    let mut model = export(&program, &weights).unwrap();
    let dir = tempfile::tempdir().unwrap();
    {
        let inits = &mut model.graph.as_mut().unwrap().initializer;
        // @w as float_data, @b from an external file.
        let w = &mut inits[0];
        let raw = w.raw_data.take().unwrap();
        w.float_data = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let b = &mut inits[1];
        let raw = b.raw_data.take().unwrap();
        let mut file = vec![9u8; 8];
        file.extend(&raw);
        std::fs::write(dir.path().join("m.data"), &file).unwrap();
        b.data_location = Some(proto::tensor_proto::DataLocation::External as i32);
        let kv = |k: &str, v: String| proto::StringStringEntryProto {
            key: Some(k.to_string()),
            value: Some(v),
        };
        b.external_data = vec![
            kv("location", "m.data".to_string()),
            kv("offset", "8".to_string()),
            kv("length", raw.len().to_string()),
        ];
    }
    let path = dir.path().join("m.onnx");
    let imported = import(&model.encode_to_vec(), &path, &ImportOptions::default()).unwrap();
    assert_eq!(imported.weights, weights);
}

#[test]
fn names_are_sanitized_and_unique() {
    let program = compile("model m(%x: f32[1, 2]) -> (%y) {\n  param @w: f32[2, 2]\n  param @v: f32[2, 2]\n  %h = linear(%x, @w)\n  %y = linear(%h, @v)\n}\n");
    let mut model = export(&program, &nnirc::weights::random(&program, 0)).unwrap();
    let graph = model.graph.as_mut().unwrap();
    graph.initializer[0].name = Some("model::w:0".to_string());
    graph.initializer[1].name = Some("model::w_0".to_string());
    graph.node[0].input[1] = "model::w:0".to_string();
    graph.node[1].input[1] = "model::w_0".to_string();
    let imported = import(
        &model.encode_to_vec(),
        Path::new("m.onnx"),
        &ImportOptions::default(),
    )
    .unwrap();
    let names: Vec<&str> = imported
        .program
        .params
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["model__w_0", "model__w_0_1"]);
}

#[test]
fn truncations_are_errors() {
    let program = compile(SMALL);
    let bytes = export_bytes(&program, &nnirc::weights::random(&program, 1)).unwrap();
    for cut in (0..bytes.len()).step_by(7) {
        let _ = import(
            &bytes[..cut],
            Path::new("m.onnx"),
            &ImportOptions::default(),
        );
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = import(&bytes, Path::new("m.onnx"), &ImportOptions::default());
    }

    #[test]
    fn flipped_bytes_never_panic(at in 0usize..4096, value in any::<u8>()) {
        let program = compile("model m(%x: f32[1, 2, 4, 4]) -> (%y) {\n  param @w: f32[2, 2, 3, 3]\n  %c = conv2d(%x, @w, padding=1)\n  %y = max_pool2d(%c, kernel=2)\n}\n");
        let mut bytes = export_bytes(&program, &nnirc::weights::random(&program, 1)).unwrap();
        let at = at % bytes.len();
        bytes[at] = value;
        let _ = import(&bytes, Path::new("m.onnx"), &ImportOptions::default());
    }
}

#[test]
fn cli_export_import_run() {
    let dir = tempfile::tempdir().unwrap();
    let onnx = dir.path().join("fire.onnx");
    let nnir = dir.path().join("fire.nnir");
    let (onnx_s, nnir_s) = (onnx.to_str().unwrap(), nnir.to_str().unwrap());
    let example = "examples/squeezenet_fire.nnir";
    let (code, _, err) = nnirc(&["export", example, "-o", onnx_s, "--random-weights", "0"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = nnirc(&["import", onnx_s, "-o", nnir_s, "--masks-from-zeros"]);
    assert_eq!(code, 0, "{err}");
    assert!(dir.path().join("fire.safetensors").exists());
    let text = std::fs::read_to_string(&nnir).unwrap();
    assert!(text.contains("weights \"fire.safetensors\""), "{text}");
    let (code, want, err) = nnirc(&["run", example, "--random-weights", "0"]);
    assert_eq!(code, 0, "{err}");
    let (code, got, err) = nnirc(&["run", nnir_s]);
    assert_eq!(code, 0, "{err}");
    // Same summaries up to the output names.
    let values = |s: &str| -> Vec<String> {
        s.lines()
            .map(|l| l.split_once(':').map_or(l, |(_, v)| v).to_string())
            .collect()
    };
    assert_eq!(values(&want), values(&got));
    // Refuses to write over its input (usage error).
    let (code, _, _) = nnirc(&["import", onnx_s, "-o", onnx_s]);
    assert_eq!(code, 2);
    // Garbage in: an input error, not a crash.
    std::fs::write(&onnx, b"\x0a\xff\xff\xff\xff\x0f").unwrap();
    let (code, _, err) = nnirc(&["import", onnx_s, "-o", nnir_s]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("fire.onnx"), "{err}");
}

/// `tests/data/onnx/foreign.onnx` was written by onnx.helper (make_foreign.py), with the
/// outputs onnxruntime computed: the imported program must agree with them.
#[test]
fn foreign_model_matches_onnxruntime() {
    let dir = root().join("tests/data/onnx");
    let path = dir.join("foreign.onnx");
    let bytes = std::fs::read(&path).unwrap();
    let imported = import(&bytes, &path, &ImportOptions::default()).unwrap();
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let inputs = nnirc::tensor_io::inputs_from_safetensors::<f32>(
        &imported.program,
        &read("foreign.inputs.safetensors"),
    )
    .unwrap();
    let expected: Vec<Tensor<f32>> =
        nnirc::tensor_io::read_safetensors::<f32>(&read("foreign.expected.safetensors"))
            .unwrap()
            .into_values()
            .collect();
    let got = nnirc::interp::run(&imported.program, &imported.weights, &inputs).unwrap();
    let rel = max_rel(&expected, &got);
    assert!(rel <= 1e-5, "deviates from onnxruntime by {rel:e}");
    let text = imported.text(None);
    for part in [
        "@conv_w",
        "%y_0",
        "gather(%r, indices=[5, 0, 2, 3])",
        "slice(%g, start=1, end=4)",
    ] {
        assert!(text.contains(part), "{part} not in\n{text}");
    }
}

#[test]
fn value_and_param_with_one_name_round_trip() {
    let src = "model m(%w: f32[1, 3]) -> (%y) {\n  param @w: f32[2, 3]\n  param @y: f32[2, 2]\n  %h = linear(%w, @w)\n  %y = linear(%h, @y)\n}\n";
    let program = compile(src);
    let weights = nnirc::weights::random(&program, 4);
    round_trip("clash", &program, &weights);
}

/// A conv whose weight is the ONNX-style initializer `onnx::Conv_7` (not a `.nnir` name), a
/// batch norm, a depthwise conv and a linear: the model of the `--masks` tests.
const MASKS_MODEL: &str = "model m(%x: f32[1, 4, 5, 5]) -> (%y) {
  param @c1.weight: f32[6, 4, 3, 3]
  param @c1.bias: f32[6]
  param @bn.weight: f32[6]
  param @bn.bias: f32[6]
  param @bn.mean: f32[6]
  param @bn.var: f32[6]
  param @dw.weight: f32[6, 1, 3, 3]
  param @fc.weight: f32[3, 6]
  %a = conv2d(%x, @c1.weight, @c1.bias, padding=1)
  %b = batch_norm(%a, @bn.weight, @bn.bias, @bn.mean, @bn.var)
  %d = conv2d(%b, @dw.weight, padding=1, groups=6)
  %p = global_avg_pool(%d)
  %f = flatten(%p)
  %y = linear(%f, @fc.weight)
}
";

/// [`MASKS_MODEL`] written as `m.onnx` in a temp dir, and its import.
fn masks_fixture() -> (tempfile::TempDir, nnirc::onnx::Imported) {
    let program = compile(MASKS_MODEL);
    let mut model = export(&program, &nnirc::weights::random(&program, 0)).unwrap();
    let graph = model.graph.as_mut().unwrap();
    let rename = |name: &mut String| {
        if name == "c1.weight" {
            *name = "onnx::Conv_7".to_string();
        }
    };
    graph.initializer.iter_mut().for_each(|t| {
        if let Some(n) = t.name.as_mut() {
            rename(n);
        }
    });
    graph
        .node
        .iter_mut()
        .for_each(|n| n.input.iter_mut().for_each(rename));
    let bytes = model.encode_to_vec();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.onnx"), &bytes).unwrap();
    let imported = import(&bytes, Path::new("m.onnx"), &ImportOptions::default()).unwrap();
    (dir, imported)
}

/// The `.nnir` name of the param imported from the ONNX initializer `onnx`.
fn nnir_name(imported: &nnirc::onnx::Imported, onnx: &str) -> String {
    let p = imported.onnx_names.iter().position(|n| n == onnx).unwrap();
    imported.program.params[p].name.clone()
}

/// `nnirc import m.onnx -o m.nnir --masks masks.json` in `dir`, with `json` as the masks:
/// (exit code, the written `.nnir` or "" if none, stderr).
fn import_with_masks(dir: &Path, json: &str) -> (i32, String, String) {
    let (onnx, nnir, masks) = (
        dir.join("m.onnx"),
        dir.join("m.nnir"),
        dir.join("masks.json"),
    );
    let _ = std::fs::remove_file(&nnir);
    std::fs::write(&masks, json).unwrap();
    let (code, _, err) = nnirc(&[
        "import",
        onnx.to_str().unwrap(),
        "-o",
        nnir.to_str().unwrap(),
        "--masks",
        masks.to_str().unwrap(),
    ]);
    (
        code,
        std::fs::read_to_string(&nnir).unwrap_or_default(),
        err,
    )
}

/// The statement of `text` that reads `@param`.
fn statement_of<'t>(text: &'t str, param: &str) -> &'t str {
    let (a, b) = (format!("@{param},"), format!("@{param})"));
    text.lines()
        .find(|l| l.contains(" = ") && (l.contains(&a) || l.contains(&b)))
        .unwrap_or_else(|| panic!("no statement reads @{param} in\n{text}"))
}

#[test]
fn masks_by_nnir_name_and_by_onnx_name() {
    let (dir, imported) = masks_fixture();
    let (conv, fc) = (
        nnir_name(&imported, "onnx::Conv_7"),
        nnir_name(&imported, "fc.weight"),
    );
    let json = format!(
        r#"{{"layers": {{
  "onnx::Conv_7": {{"in_channels": 4, "keep_in": [0, 2, 3]}},
  "{fc}": {{"in_channels": 6, "keep_in": [0, 1, 2, 5]}}
}}}}"#
    );
    // A UTF-8 byte order mark in front is skipped.
    let (code, text, err) = import_with_masks(dir.path(), &format!("\u{feff}{json}"));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("2 keep_in masks from"), "{err}");
    assert!(
        statement_of(&text, &conv).ends_with(" keep_in=[0, 2, 3]"),
        "{text}"
    );
    assert!(
        statement_of(&text, &fc).ends_with(" keep_in=[0..3, 5]"),
        "{text}"
    );
    let nnir = dir.path().join("m.nnir");
    let (code, _, err) = nnirc(&["check", nnir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    // The conv by its .nnir name; keeping every channel of the linear writes no mask.
    let json = format!(
        r#"{{"layers": {{"{conv}": {{"in_channels": 4, "keep_in": [1]}},
            "fc.weight": {{"in_channels": 6, "keep_in": [0, 1, 2, 3, 4, 5]}}}}}}"#
    );
    let (code, text, err) = import_with_masks(dir.path(), &json);
    assert_eq!(code, 0, "{err}");
    assert!(
        statement_of(&text, &conv).ends_with(" keep_in=[1]"),
        "{text}"
    );
    assert!(!statement_of(&text, &fc).contains("keep_in"), "{text}");
}

#[test]
fn masks_errors_name_the_file_and_the_layer() {
    let (dir, imported) = masks_fixture();
    let conv = nnir_name(&imported, "onnx::Conv_7");
    let layer = |key: &str, body: &str| format!(r#"{{"layers": {{"{key}": {body}}}}}"#);
    let fc = |keep: &str| {
        layer(
            "fc.weight",
            &format!(r#"{{"in_channels": 6, "keep_in": {keep}}}"#),
        )
    };
    let same = format!("layer `{conv}`: names the same param");
    let weight = format!("name its weight `{conv}`");
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            layer("fc.weigth", r#"{"in_channels": 6, "keep_in": [0]}"#),
            vec![
                "layer `fc.weigth`: no param has this name",
                "did you mean `fc.weight`?",
            ],
        ),
        (
            fc("[0, 9]"),
            vec![
                "layer `fc.weight`",
                "index 9 in keep_in is out of range",
                "has 6 input features",
            ],
        ),
        (fc("[-1]"), vec!["index -1 in keep_in is out of range"]),
        (
            layer("fc.weight", r#"{"in_channels": 5, "keep_in": [0]}"#),
            vec![
                "layer `fc.weight`: in_channels is 5",
                "has 6 input features",
            ],
        ),
        (
            layer("onnx::Conv_7", r#"{"in_channels": 3, "keep_in": [0]}"#),
            vec![
                "layer `onnx::Conv_7`: in_channels is 3",
                "has 4 input channels",
            ],
        ),
        (
            layer("dw.weight", r#"{"in_channels": 6, "keep_in": [0]}"#),
            vec![
                "layer `dw.weight`",
                "is the weight of conv2d",
                "groups=6",
                "takes no mask",
            ],
        ),
        (
            layer("bn.mean", r#"{"in_channels": 6, "keep_in": [0]}"#),
            vec!["layer `bn.mean`", "is the running_mean of batch_norm"],
        ),
        (
            layer("c1.bias", r#"{"in_channels": 6, "keep_in": [0]}"#),
            vec!["layer `c1.bias`", "is the bias of conv2d", &weight],
        ),
        (
            fc("[3, 1]"),
            vec!["strictly ascending, but 1 comes after 3"],
        ),
        (fc("[1, 1]"), vec!["index 1 is given twice"]),
        (fc("[]"), vec!["keep_in is empty"]),
        (
            r#"{"layers": {"fc.weight": {"in_channels": 6,}}}"#.to_string(),
            vec!["invalid JSON", "line 1 column"],
        ),
        (
            layer("fc.weight", r#"{"in_channels": 6, "keep": [0]}"#),
            vec!["layer `fc.weight`: unknown field `keep`", "line 1 column"],
        ),
        (
            r#"{"layers": {}, "version": 1}"#.to_string(),
            vec!["unknown field `version`, expected `layers`"],
        ),
        ("{}".to_string(), vec!["missing field `layers`"]),
        (
            layer("fc.weight", r#"{"in_channels": "6", "keep_in": [0]}"#),
            vec!["layer `fc.weight`: invalid type: string"],
        ),
        (
            layer("fc.weight", "[6, [0]]"),
            vec!["layer `fc.weight`: invalid type: sequence, expected a JSON object"],
        ),
        (
            format!(
                r#"{{"layers": {{"onnx::Conv_7": {{"in_channels": 4, "keep_in": [0]}},
                                "{conv}": {{"in_channels": 4, "keep_in": [1]}}}}}}"#
            ),
            vec![&same, "as layer `onnx::Conv_7`"],
        ),
        (
            r#"{"layers": {"fc.weight": {"in_channels": 6, "keep_in": [0]},
                           "fc.weight": {"in_channels": 6, "keep_in": [1]}}}"#
                .to_string(),
            vec!["layer `fc.weight` is given twice"],
        ),
        (
            layer(
                "fc.weight",
                r#"{"in_channels": 6, "keep_in": [0], "keep_in": [1]}"#,
            ),
            vec![
                "layer `fc.weight`: field `keep_in` is given twice",
                "line 1",
            ],
        ),
        (
            r#"{"layers": {}, "layers": {}}"#.to_string(),
            vec!["field `layers` is given twice"],
        ),
    ];
    for (json, parts) in &cases {
        let (code, text, err) = import_with_masks(dir.path(), json);
        assert_eq!(code, 1, "{json}: {err}");
        assert!(text.is_empty(), "{json}: wrote a model");
        assert!(
            err.starts_with("error: ") && err.contains("masks.json: "),
            "{err}"
        );
        for part in parts {
            assert!(err.contains(part), "{json}: `{part}` not in {err}");
        }
    }
}

#[test]
fn masks_conflict_with_masks_from_zeros() {
    let (dir, _) = masks_fixture();
    let (onnx, masks) = (dir.path().join("m.onnx"), dir.path().join("masks.json"));
    std::fs::write(&masks, r#"{"layers": {}}"#).unwrap();
    let (onnx, masks) = (onnx.to_str().unwrap(), masks.to_str().unwrap());
    let out = dir.path().join("m.nnir");
    let out = out.to_str().unwrap();
    let (code, _, err) = nnirc(&[
        "import",
        onnx,
        "-o",
        out,
        "--masks",
        masks,
        "--masks-from-zeros",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot be used with"), "{err}");
    // Nor may the output overwrite the masks file.
    let (code, _, err) = nnirc(&["import", onnx, "-o", masks, "--masks", masks]);
    assert_eq!(code, 2, "{err}");
}

/// A spec replaces the masks an import already has (a full keep clears one); on error the
/// model is left as it was.
#[test]
fn apply_masks_replaces_masks_and_keeps_the_model_on_error() {
    let src = "model m(%x: f32[1, 4]) -> (%y) {\n  param @fc.weight: f32[2, 4]\n  %y = linear(%x, @fc.weight) keep_in=[1, 3]\n}\n";
    let program = compile(src);
    let bytes = export_bytes(&program, &nnirc::weights::random(&program, 0)).unwrap();
    let opts = ImportOptions {
        masks_from_zeros: true,
        ..Default::default()
    };
    let mut imported = import(&bytes, Path::new("m.onnx"), &opts).unwrap();
    let fc = nnir_name(&imported, "fc.weight");
    let path = Path::new("dir/masks.json");
    let spec = |keep: &str| {
        format!(r#"{{"layers": {{"{fc}": {{"in_channels": 4, "keep_in": {keep}}}}}}}"#)
    };
    let mask = |imported: &nnirc::onnx::Imported| {
        let y = imported.program.outputs[0];
        imported.program.graph[y].keep_in.clone()
    };
    assert_eq!(mask(&imported), Some(vec![1, 3]));
    let e = nnirc::onnx::apply_masks(&mut imported, &spec("[0, 4]"), path).unwrap_err();
    assert!(e.to_string().starts_with("dir/masks.json: layer `"), "{e}");
    assert_eq!(mask(&imported), Some(vec![1, 3]));
    assert_eq!(
        nnirc::onnx::apply_masks(&mut imported, &spec("[0, 2]"), path),
        Ok(1)
    );
    assert_eq!(mask(&imported), Some(vec![0, 2]));
    assert_eq!(
        nnirc::onnx::apply_masks(&mut imported, &spec("[0, 1, 2, 3]"), path),
        Ok(0)
    );
    assert_eq!(mask(&imported), None);
}

/// A channel removed by `keep_out` whose batch norm has variance 0 and eps 0: the masked
/// program gives 0 there, and so must the export (it gave 0 / 0 = NaN in a runtime).
#[test]
fn removed_channels_get_neutral_batch_norm_statistics() {
    let src = "model m(%x: f32[1, 2, 3, 3]) -> (%y) {
  param @w: f32[3, 2, 1, 1]
  param @g: f32[3]
  param @b: f32[3]
  param @m: f32[3]
  param @v: f32[3]
  %c = conv2d(%x, @w) keep_out=[0, 2]
  %y = batch_norm(%c, @g, @b, @m, @v, eps=0)
}
";
    let program = compile(src);
    let seeded = nnirc::weights::random(&program, 3);
    let mut values: Vec<Vec<f64>> = (0..seeded.len()).map(|p| seeded.values(p)).collect();
    values[4] = vec![1.0, 0.0, 2.0]; // variance 0 on the removed channel 1
    values[3] = vec![0.0, 0.5, 0.0];
    let weights = nnirc::weights::Weights::from_f64(&values);
    let model = export(&program, &weights).unwrap();
    let init = |name: &str| -> Vec<f32> {
        let t = model
            .graph
            .as_ref()
            .unwrap()
            .initializer
            .iter()
            .find(|t| t.name.as_deref() == Some(name))
            .unwrap();
        t.raw_data
            .as_ref()
            .unwrap()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    assert_eq!(init("v")[1], 1.0);
    assert_eq!(init("m")[1], 0.0);
    assert_eq!(init("g")[1], 0.0);
    // Imported back (no masks there), the plain batch norm computes 0, not NaN.
    let imported = round_trip("bn var 0", &program, &weights);
    let inputs = nnirc::interp::random_inputs::<f32>(&imported.program, 1);
    let out = nnirc::interp::run(&imported.program, &imported.weights, &inputs).unwrap();
    assert!(out[0].data.iter().all(|v| v.is_finite()));
    assert!(out[0].data[9..18].iter().all(|&v| v == 0.0));
}
