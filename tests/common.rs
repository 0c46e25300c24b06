//! Shared helpers for the integration tests: finding data files and running the binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.nnir` file under `dir` (relative to the crate root), sorted.
pub fn nnir_files(dir: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root().join(dir)];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "nnir") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The hand-written example blocks (`examples/*.nnir`, not the zoo).
pub fn examples() -> Vec<PathBuf> {
    let files: Vec<PathBuf> = nnir_files("examples")
        .into_iter()
        .filter(|p| p.parent() == Some(&root().join("examples")))
        .collect();
    assert!(!files.is_empty(), "no examples found");
    files
}

/// The torchvision zoo (`examples/zoo/*.nnir`, imported from ONNX, no weights, no masks).
pub fn zoo() -> Vec<PathBuf> {
    let files = nnir_files("examples/zoo");
    assert_eq!(files.len(), 6, "the zoo has six models");
    files
}

/// `path` relative to the crate root, with `/` separators (stable in snapshots).
pub fn rel(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

/// Runs `nnirc ARGS` from the crate root; returns (exit code, stdout, stderr).
pub fn nnirc(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nnirc"))
        .args(args)
        .current_dir(root())
        .env_remove("NO_COLOR")
        .output()
        .expect("the nnirc binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Compiles source text that must be free of diagnostics.
pub fn program(source: &str) -> nnirc::ir::Program {
    let compiled = nnirc::compile(source);
    assert!(
        compiled.diagnostics.is_empty(),
        "{:?}",
        compiled.diagnostics
    );
    compiled.program.expect("no diagnostics means a program")
}

/// A float tensor type `[dims]`.
pub fn value_info(name: &str, dims: &[i64]) -> nnirc::onnx::proto::ValueInfoProto {
    use nnirc::onnx::proto::tensor_shape_proto::{dimension, Dimension};
    nnirc::onnx::proto::ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(nnirc::onnx::proto::TypeProto {
            value: Some(nnirc::onnx::proto::type_proto::Value::TensorType(
                nnirc::onnx::proto::type_proto::Tensor {
                    elem_type: Some(1),
                    shape: Some(nnirc::onnx::proto::TensorShapeProto {
                        dim: dims
                            .iter()
                            .map(|&d| Dimension {
                                value: Some(dimension::Value::DimValue(d)),
                                ..Default::default()
                            })
                            .collect(),
                    }),
                },
            )),
            ..Default::default()
        }),
        ..Default::default()
    }
}
