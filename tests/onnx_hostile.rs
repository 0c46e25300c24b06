//! ONNX import of hostile or malformed models: every case is an error naming what is wrong (or
//! a correct import), never a read outside the model's folder, a hang, an abort on allocation
//! or a stack overflow.
mod common;
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
    let weights = nnirc::weights::Weights {
        tensors: vec![vec![0.5; if out * inp < 4096 { out * inp } else { 0 }]],
    };
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
    assert!(imported.weights.tensors[0].is_empty());
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
