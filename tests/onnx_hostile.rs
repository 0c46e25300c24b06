//! ONNX import of hostile or malformed models: every case is an error naming what is wrong (or
//! a correct import), never a read outside the model's folder, a hang, an abort on allocation
//! or a stack overflow.
mod common;
use common::value_info;
use nnirc::onnx::proto::{self, ModelProto};
use nnirc::onnx::{export, import, import_with_limits, ImportLimits, ImportOptions};
use prost::Message;
use std::path::Path;

fn compile(source: &str) -> nnirc::ir::Program {
    let c = nnirc::compile(source);
    c.program
        .unwrap_or_else(|| panic!("compiles: {:?}", c.diagnostics))
}

fn kv(k: &str, v: &str) -> proto::StringStringEntryProto {
    proto::StringStringEntryProto {
        key: Some(k.to_string()),
        value: Some(v.to_string()),
    }
}

/// A linear layer `[out, inp]` whose weight is external data at `location` (offset 0).
fn external_linear(out: usize, inp: usize, location: &str) -> ModelProto {
    let src = format!(
        "model m(%x: f32[1, {inp}]) -> (%y) {{\n  param @w: f32[{out}, {inp}]\n  %y = linear(%x, @w)\n}}\n"
    );
    let program = compile(&src);
    let weights =
        nnirc::weights::Weights::from_f64(&[vec![
            0.5;
            if out * inp < 4096 { out * inp } else { 0 }
        ]]);
    let mut model = if out * inp < 4096 {
        export(&program, &weights).unwrap()
    } else {
        // Too large to export with data: export a small one and widen its declared shape.
        let mut m = external_linear(2, 2, location);
        let g = m.graph.as_mut().unwrap();
        g.initializer[0].dims = vec![out as i64, inp as i64];
        let input = &mut g.input[0];
        if let Some(proto::type_proto::Value::TensorType(t)) =
            input.r#type.as_mut().and_then(|t| t.value.as_mut())
        {
            t.shape.as_mut().unwrap().dim[1].value = Some(
                proto::tensor_shape_proto::dimension::Value::DimValue(inp as i64),
            );
        }
        return m;
    };
    let w = &mut model.graph.as_mut().unwrap().initializer[0];
    let len = w.raw_data.take().unwrap().len();
    w.data_location = Some(proto::tensor_proto::DataLocation::External as i32);
    w.external_data = vec![
        kv("location", location),
        kv("offset", "0"),
        kv("length", &len.to_string()),
    ];
    model
}

fn import_err(model: &ModelProto, path: &Path) -> String {
    import(&model.encode_to_vec(), path, &ImportOptions::default())
        .map(|_| ())
        .unwrap_err()
        .to_string()
}

#[test]
fn external_data_outside_the_model_folder_is_never_read() {
    let outer = tempfile::tempdir().unwrap();
    let dir = outer.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(outer.path().join("secret.bin"), [1u8; 16]).unwrap();
    let model_path = dir.join("m.onnx");
    for location in ["../secret.bin", "sub/../../secret.bin", "/etc/passwd"] {
        let e = import_err(&external_linear(2, 2, location), &model_path);
        assert!(e.contains("outside"), "{location}: {e}");
        assert!(e.contains("m.onnx"), "{e}");
    }
    #[cfg(unix)]
    {
        // A symlink inside that points out, to a file of a telling size.
        std::fs::write(outer.path().join("big.bin"), vec![0u8; 4321]).unwrap();
        std::os::unix::fs::symlink(outer.path().join("big.bin"), dir.join("w.bin")).unwrap();
        let e = import_err(&external_linear(2, 2, "w.bin"), &model_path);
        assert!(e.contains("outside") && !e.contains("4321"), "{e}");
        // A FIFO inside: refused at once, never opened (opening it would block).
        let fifo = dir.join("fifo.bin");
        if std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .is_ok_and(|s| s.success())
        {
            let e = import_err(&external_linear(2, 2, "fifo.bin"), &model_path);
            assert!(e.contains("not a regular file"), "{e}");
        }
    }
    // Too short: the size is compared before reading.
    std::fs::write(dir.join("short.bin"), [0u8; 8]).unwrap();
    let e = import_err(&external_linear(2, 2, "short.bin"), &model_path);
    assert!(e.contains("past its end"), "{e}");
    // And the good case still works.
    std::fs::write(dir.join("ok.bin"), [0u8; 16]).unwrap();
    let ok = external_linear(2, 2, "ok.bin").encode_to_vec();
    import(&ok, &model_path, &ImportOptions::default()).unwrap();
}

#[test]
fn no_weights_allocates_nothing_for_absent_external_data() {
    // 2e9 elements: 8 GB as f32, 16 GB as f64, were it materialised.
    let model = external_linear(40_000, 50_000, "absent.bin").encode_to_vec();
    let opts = ImportOptions {
        skip_external_weights: true,
        ..Default::default()
    };
    let imported = import(&model, Path::new("m.onnx"), &opts).unwrap();
    assert_eq!(imported.program.params[0].shape, [40_000, 50_000]);
    assert!(imported.weights.tensor(0).is_empty());
}

#[test]
fn declared_sizes_are_checked_against_the_limit_before_allocating() {
    let model = external_linear(40_000, 50_000, "absent.bin").encode_to_vec();
    let limits = ImportLimits {
        max_total_bytes: 1 << 20,
    };
    let e = import_with_limits(
        &model,
        Path::new("m.onnx"),
        &ImportOptions::default(),
        &limits,
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("initializer `w`") && e.contains("max_total_bytes"),
        "{e}"
    );
    // Past the per-tensor element limit: refused from the shape alone.
    let mut big = external_linear(2, 2, "absent.bin");
    big.graph.as_mut().unwrap().initializer[0].dims = vec![1 << 20, 1 << 20];
    let e = import_err(&big, Path::new("m.onnx"));
    assert!(
        e.contains("initializer `w`") && e.contains("limit per tensor"),
        "{e}"
    );
}

fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> proto::NodeProto {
    proto::NodeProto {
        op_type: Some(op.to_string()),
        name: Some(name.to_string()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn ints(name: &str, v: &[i64]) -> proto::TensorProto {
    proto::TensorProto {
        name: Some(name.to_string()),
        dims: vec![v.len() as i64],
        data_type: Some(7),
        int64_data: v.to_vec(),
        ..Default::default()
    }
}

fn attr_ints(name: &str, v: &[i64]) -> proto::AttributeProto {
    proto::AttributeProto {
        name: Some(name.to_string()),
        ints: v.to_vec(),
        r#type: Some(proto::attribute_proto::AttributeType::Ints as i32),
        ..Default::default()
    }
}

fn attr_int(name: &str, v: i64) -> proto::AttributeProto {
    proto::AttributeProto {
        name: Some(name.to_string()),
        i: Some(v),
        r#type: Some(proto::attribute_proto::AttributeType::Int as i32),
        ..Default::default()
    }
}

/// A model with input `x: [1, 2, 4, 4]`, output `y`, the given nodes and int64 initializers,
/// at `opset` (IR version 8).
fn model(nodes: Vec<proto::NodeProto>, inits: Vec<proto::TensorProto>, opset: i64) -> ModelProto {
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![proto::OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(opset),
        }],
        graph: Some(proto::GraphProto {
            node: nodes,
            initializer: inits,
            input: vec![value_info("x", &[1, 2, 4, 4])],
            output: vec![value_info("y", &[])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn relu(name: &str, x: &str, y: &str) -> proto::NodeProto {
    node("Relu", name, &[x], &[y])
}

fn g(m: &mut ModelProto) -> &mut proto::GraphProto {
    m.graph.as_mut().unwrap()
}

fn text_of(m: &ModelProto) -> String {
    import(
        &m.encode_to_vec(),
        Path::new("m.onnx"),
        &ImportOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .text(None)
}

/// Each case: a model and the parts its error must contain (the node's name among them).
#[test]
fn invalid_onnx_is_an_error_naming_the_node() {
    let ok = || model(vec![relu("r0", "x", "h"), relu("r1", "h", "y")], vec![], 17);
    text_of(&ok());
    let with = |f: &dyn Fn(&mut ModelProto)| {
        let mut m = ok();
        f(&mut m);
        m
    };
    let cases: Vec<(&str, ModelProto, &[&str])> = vec![
        (
            "two nodes define one value",
            with(&|m| g(m).node.insert(1, relu("again", "x", "h"))),
            &["again", "`h` is already defined"],
        ),
        (
            "a node redefines the graph input",
            with(&|m| g(m).node.insert(0, relu("shadow", "x", "x"))),
            &["shadow", "`x` is already defined"],
        ),
        (
            "extra input on Relu",
            with(&|m| g(m).node[0].input.push("x".into())),
            &["r0", "takes 1 to 1 inputs, got 2"],
        ),
        (
            "opset 1",
            with(&|m| m.opset_import[0].version = Some(1)),
            &["opset 1 is not supported"],
        ),
        (
            "opset 99",
            with(&|m| m.opset_import[0].version = Some(99)),
            &["opset 99"],
        ),
        (
            "no default-domain opset",
            with(&|m| m.opset_import[0].domain = Some("com.example".into())),
            &["no opset_import for the default ONNX domain"],
        ),
        (
            "IR version 99",
            with(&|m| m.ir_version = Some(99)),
            &["IR version 99"],
        ),
        (
            "HardSwish before opset 14",
            with(&|m| {
                m.opset_import[0].version = Some(13);
                g(m).node[0].op_type = Some("HardSwish".into());
            }),
            &["r0", "needs opset 14"],
        ),
    ];
    for (what, m, parts) in cases {
        let e = import_err(&m, Path::new("m.onnx"));
        for part in parts {
            assert!(e.contains(part), "{what}: {e}");
        }
    }
}

#[test]
fn extra_conv_inputs_and_duplicate_slice_axes_are_errors() {
    // A conv model from the exporter, with a fourth input.
    let program = compile("model m(%x: f32[1, 2, 4, 4]) -> (%y) {\n  param @w: f32[2, 2, 1, 1]\n  %y = conv2d(%x, @w)\n}\n");
    let mut conv = export(&program, &nnirc::weights::random(&program, 0)).unwrap();
    let n = &mut conv.graph.as_mut().unwrap().node[0];
    n.name = Some("c".into());
    n.input.extend(["".to_string(), "x".to_string()]);
    let e = import_err(&conv, Path::new("m.onnx"));
    assert!(
        e.contains("node `c`") && e.contains("takes 2 to 3 inputs, got 4"),
        "{e}"
    );

    let slice = |axes: &[i64]| {
        model(
            vec![node("Slice", "s", &["x", "st", "en", "ax"], &["y"])],
            vec![
                ints("st", &vec![0; axes.len()]),
                ints("en", &vec![1; axes.len()]),
                ints("ax", axes),
            ],
            17,
        )
    };
    assert!(text_of(&slice(&[1])).contains("slice(%x, start=0, end=1)"));
    let e = import_err(&slice(&[1, -3]), Path::new("m.onnx"));
    assert!(
        e.contains("node `s`") && e.contains("axis 1 is sliced twice"),
        "{e}"
    );
}

#[test]
fn reduce_mean_axes_follow_the_opset() {
    let as_attr = |opset| {
        let mut n = node("ReduceMean", "rm", &["x"], &["y"]);
        n.attribute = vec![attr_ints("axes", &[2, 3])];
        model(vec![n], vec![], opset)
    };
    let as_input = |opset| {
        model(
            vec![node("ReduceMean", "rm", &["x", "axes"], &["y"])],
            vec![ints("axes", &[2, 3])],
            opset,
        )
    };
    assert!(text_of(&as_attr(17)).contains("global_avg_pool"));
    assert!(text_of(&as_input(18)).contains("global_avg_pool"));
    let e = import_err(&as_attr(18), Path::new("m.onnx"));
    assert!(
        e.contains("node `rm`") && e.contains("attribute `axes`"),
        "{e}"
    );
    let e = import_err(&as_input(17), Path::new("m.onnx"));
    assert!(
        e.contains("node `rm`") && e.contains("before opset 18"),
        "{e}"
    );
}

#[test]
fn cli_import_of_invalid_onnx_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.onnx");
    let m = model(vec![relu("r0", "x", "y")], vec![], 99);
    std::fs::write(&path, m.encode_to_vec()).unwrap();
    let out = dir.path().join("bad.nnir");
    let (code, _, err) = common::nnirc(&[
        "import",
        path.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("opset 99 is not supported"), "{err}");
}

#[test]
fn import_never_writes_over_its_external_data() {
    let dir = tempfile::tempdir().unwrap();
    let m = external_linear(2, 3, "out.safetensors");
    let path = dir.path().join("m.onnx");
    std::fs::write(&path, m.encode_to_vec()).unwrap();
    let data = dir.path().join("out.safetensors");
    let raw: Vec<u8> = (0..6).flat_map(|_| 0.5f32.to_le_bytes()).collect();
    std::fs::write(&data, &raw).unwrap();
    assert_eq!(
        nnirc::onnx::external_files(&m.encode_to_vec(), &path),
        [data.canonicalize().unwrap()]
    );
    // `-o out.nnir` would write its weights to out.safetensors: the model's external data.
    let out = dir.path().join("out.nnir");
    let (code, _, err) = common::nnirc(&[
        "import",
        path.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(
        std::fs::read(&data).unwrap(),
        raw,
        "the external data is untouched"
    );
    assert!(!out.exists());
    // Another name works and reads the data.
    let other = dir.path().join("m.nnir");
    let (code, _, err) = common::nnirc(&[
        "import",
        path.to_str().unwrap(),
        "-o",
        other.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
}

/// torch 2.0 writes `AvgPool2d` as `Pad` + `AveragePool`; zero pads on H and W fold into the
/// pool (counting the padded zeros) or a conv, all-zero pads disappear, anything else is an
/// error naming the node.
#[test]
fn zero_pads_fold_into_the_consumer() {
    let pad = |pads: &[i64], consumer: proto::NodeProto| {
        model(
            vec![node("Pad", "p", &["x", "pads"], &["xp"]), consumer],
            vec![ints("pads", pads)],
            17,
        )
    };
    let avg = |count_include_pad: i64| {
        let mut n = node("AveragePool", "ap", &["xp"], &["y"]);
        n.attribute = vec![
            attr_ints("kernel_shape", &[2, 2]),
            attr_ints("strides", &[2, 2]),
            attr_int("count_include_pad", count_include_pad),
        ];
        n
    };
    let text = text_of(&pad(&[0; 8], avg(0)));
    assert!(
        text.contains("avg_pool2d(%x, kernel=2, count_include_pad=false)"),
        "{text}"
    );
    let text = text_of(&pad(&[0, 0, 1, 1, 0, 0, 1, 1], avg(0)));
    assert!(
        text.contains("avg_pool2d(%x, kernel=2, padding=1)"),
        "{text}"
    );
    // The folded program computes what the explicit padding computes.
    let imported = import(
        &pad(&[0, 0, 1, 1, 0, 0, 1, 1], avg(0)).encode_to_vec(),
        Path::new("m.onnx"),
        &ImportOptions::default(),
    )
    .unwrap();
    let x: Vec<f32> = (0..32).map(|v| v as f32).collect();
    let input = nnirc::tensor::Tensor {
        shape: vec![1, 2, 4, 4],
        data: x.clone(),
    };
    let y = nnirc::interp::run(&imported.program, &imported.weights, &[input]).unwrap();
    // Channel 0, top-left window: x[0,0] and three padded zeros, divided by 4.
    assert_eq!(y[0].data[0], x[0] / 4.0);
    let e = import_err(
        &pad(&[0, 0, 1, 1, 0, 0, 1, 1], relu("r", "xp", "y")),
        Path::new("m.onnx"),
    );
    assert!(
        e.contains("node `r`") && e.contains("comes from a Pad"),
        "{e}"
    );
    let e = import_err(&pad(&[0, 1, 0, 0, 0, 1, 0, 0], avg(0)), Path::new("m.onnx"));
    assert!(e.contains("node `p`") && e.contains("not N or C"), "{e}");
    let mut nonzero = pad(&[0, 0, 1, 1, 0, 0, 1, 1], avg(1));
    let g = nonzero.graph.as_mut().unwrap();
    g.node[0].input.push("v".into());
    g.initializer.push(proto::TensorProto {
        name: Some("v".into()),
        data_type: Some(1),
        float_data: vec![1.0],
        ..Default::default()
    });
    let e = import_err(&nonzero, Path::new("m.onnx"));
    assert!(
        e.contains("node `p`") && e.contains("zero padding value"),
        "{e}"
    );
}

/// The TorchScript exporter writes `x.view(x.size(0), -1)` as Shape, Gather, Unsqueeze and
/// Concat feeding a Reshape: folded into constants, it imports as a flatten.
#[test]
fn shape_arithmetic_folds_into_a_flatten() {
    let mut gather = node("Gather", "g", &["shape", "zero"], &["n"]);
    gather.attribute = vec![attr_int("axis", 0)];
    let mut concat = node("Concat", "cat", &["n1", "minus1"], &["target"]);
    concat.attribute = vec![attr_int("axis", 0)];
    let mut zero = ints("zero", &[0]);
    zero.dims = vec![];
    let m = model(
        vec![
            node("Shape", "sh", &["x"], &["shape"]),
            gather,
            node("Unsqueeze", "u", &["n", "axes0"], &["n1"]),
            concat,
            node("Reshape", "rs", &["x", "target"], &["y"]),
        ],
        vec![zero, ints("axes0", &[0]), ints("minus1", &[-1])],
        17,
    );
    let text = text_of(&m);
    assert!(text.contains("flatten(%x)"), "{text}");
}

proptest::proptest! {
    /// Whatever relative path a model names, with `..`, `.` and symlinks leading out and in,
    /// what resolves lies inside the model's folder.
    #[test]
    fn external_locations_never_resolve_outside(
        parts in proptest::collection::vec(
            proptest::sample::select(vec!["..", ".", "sub", "out", "in", "w.bin", "secret.bin"]),
            1..6,
        )
    ) {
        let outer = tempfile::tempdir().unwrap();
        let dir = outer.path().join("model");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(outer.path().join("secret.bin"), [1u8; 16]).unwrap();
        std::fs::write(dir.join("w.bin"), [0u8; 16]).unwrap();
        std::fs::write(dir.join("sub/w.bin"), [0u8; 16]).unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(outer.path(), dir.join("out")).unwrap();
            std::os::unix::fs::symlink(dir.join("sub"), dir.join("in")).unwrap();
        }
        let rel: std::path::PathBuf = parts.iter().collect();
        if let Ok(p) = nnirc::files::resolve_inside(&dir, &rel) {
            let base = std::fs::canonicalize(&dir).unwrap();
            proptest::prop_assert!(p.starts_with(&base), "{} -> {}", rel.display(), p.display());
        }
        // Through the importer: a read either fails or reads zeros (only inside files hold
        // zeros; the secret holds ones).
        let location = parts.join("/");
        let m = external_linear(2, 2, &location).encode_to_vec();
        if let Ok(imported) = import(&m, &dir.join("m.onnx"), &ImportOptions::default()) {
            proptest::prop_assert!(imported.weights.values(0).iter().all(|&v| v == 0.0));
        }
    }

    /// Any input list on any node of a small model: an error or an import, never a panic.
    #[test]
    fn arbitrary_node_inputs_never_panic(
        at in 0usize..3,
        inputs in proptest::collection::vec(
            proptest::sample::select(vec!["x", "h", "w", "", "y", "nope"]),
            0..6,
        )
    ) {
        let program = compile("model m(%x: f32[1, 2, 4, 4]) -> (%y) {\n  param @w: f32[2, 2, 1, 1]\n  %h = conv2d(%x, @w)\n  %r = relu(%h)\n  %y = max_pool2d(%r, kernel=2)\n}\n");
        let mut m = export(&program, &nnirc::weights::random(&program, 0)).unwrap();
        let g = g(&mut m);
        let at = at % g.node.len();
        g.node[at].input = inputs.iter().map(|s| s.to_string()).collect();
        let _ = import(&m.encode_to_vec(), Path::new("m.onnx"), &ImportOptions::default());
    }
}

/// A `Constant` whose tensor claims external data is refused (it has no model folder to be
/// inside); a padded value may pass through an `Identity` to the pool that folds it.
#[test]
fn constants_hold_no_external_data_and_identity_keeps_padding() {
    let mut value = ints("c", &[1]);
    value.data_location = Some(proto::tensor_proto::DataLocation::External as i32);
    value.external_data = vec![kv("location", "w.bin")];
    let mut constant = node("Constant", "k", &[], &["c"]);
    constant.attribute = vec![proto::AttributeProto {
        name: Some("value".into()),
        t: Some(value),
        r#type: Some(proto::attribute_proto::AttributeType::Tensor as i32),
        ..Default::default()
    }];
    let m = model(vec![constant, relu("r", "x", "y")], vec![], 17);
    let e = import_err(&m, Path::new("m.onnx"));
    assert!(e.contains("node `k`") && e.contains("external data"), "{e}");

    let mut avg = node("AveragePool", "ap", &["xi"], &["y"]);
    avg.attribute = vec![attr_ints("kernel_shape", &[2, 2])];
    let m = model(
        vec![
            node("Pad", "p", &["x", "pads"], &["xp"]),
            node("Identity", "i", &["xp"], &["xi"]),
            avg,
        ],
        vec![ints("pads", &[0, 0, 1, 1, 0, 0, 1, 1])],
        17,
    );
    assert!(text_of(&m).contains("padding=1"));
}
