//! Export boundary: on every example and fixture, in naive and upscale mode, the exported
//! program computes what the masked program computes (f64 to 1e-10, f32 to 1e-4 relative).
mod common;
use common::*;
use nnirc::export::{export, verify, ExportConfig, Mode};

fn check(path: &std::path::Path, mode: Mode) -> nnirc::export::Exported {
    let source = std::fs::read_to_string(path).unwrap();
    let program = nnirc::compile(&source)
        .program
        .unwrap_or_else(|| panic!("{} compiles", rel(path)));
    let weights = nnirc::weights::random(&program, 7);
    let config = ExportConfig {
        mode,
        ..Default::default()
    };
    let exported =
        export(&program, &weights, &config).unwrap_or_else(|e| panic!("{}: {e}", rel(path)));
    let text = nnirc::codegen::program_text(&exported.program, None);
    let again = nnirc::compile(&text);
    assert!(
        again.diagnostics.is_empty(),
        "{}: exported text does not check:\n{text}\n{:?}",
        rel(path),
        again.diagnostics
    );
    let d64 = verify::<f64>(&program, &weights, &exported.program, &exported.weights, 1).unwrap();
    assert!(
        d64.max_rel <= 1e-10,
        "{} {mode:?}: f64 deviation {d64:?}",
        rel(path)
    );
    let d32 = verify::<f32>(&program, &weights, &exported.program, &exported.weights, 1).unwrap();
    assert!(
        d32.max_rel <= 1e-4,
        "{} {mode:?}: f32 deviation {d32:?}",
        rel(path)
    );
    exported
}

fn files() -> Vec<std::path::PathBuf> {
    let mut files = examples();
    files.extend(nnir_files("tests/data/segments"));
    files.extend(nnir_files("tests/data/shapes"));
    files
}

#[test]
fn naive_export_equals_the_masked_program() {
    for path in files() {
        check(&path, Mode::Naive);
    }
}

#[test]
fn upscale_export_equals_the_masked_program() {
    for path in files() {
        check(&path, Mode::Upscale);
    }
}
