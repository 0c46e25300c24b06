//! Export boundary: on every example and fixture, in naive and upscale mode, the exported
//! program computes what the masked program computes (f64 to 1e-10, f32 to 1e-4 relative).
mod common;
use common::*;
use nnirc::optimize::{optimize, verify, Mode, OptimizeConfig, ReadKind};

fn check(path: &std::path::Path, mode: Mode) -> nnirc::optimize::Optimized {
    check_aligned(path, mode, 1)
}

fn check_aligned(path: &std::path::Path, mode: Mode, align: usize) -> nnirc::optimize::Optimized {
    let source = std::fs::read_to_string(path).unwrap();
    let program = nnirc::compile(&source)
        .program
        .unwrap_or_else(|| panic!("{} compiles", rel(path)));
    let weights = nnirc::weights::random(&program, 7);
    let config = OptimizeConfig {
        mode,
        channel_align: align,
        ..Default::default()
    };
    let exported =
        optimize(&program, &weights, &config).unwrap_or_else(|e| panic!("{}: {e}", rel(path)));
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

/// `channel_align`: still exact, every cut segment keeps a multiple of the alignment (or all its
/// channels), and every conv that reads a slice reads a multiple of it.
#[test]
fn aligned_export_equals_the_masked_program_and_is_aligned() {
    for align in [4, 8] {
        for mode in [Mode::Naive, Mode::Upscale] {
            for path in files() {
                let program = nnirc::compile(&std::fs::read_to_string(&path).unwrap())
                    .program
                    .unwrap();
                let exported = check_aligned(&path, mode, align);
                let plan = &exported.plan;
                for (seg, p) in plan.segments.segments.iter().zip(&plan.plans) {
                    let kept = p.order.len();
                    assert!(
                        !p.free || kept % align == 0 || kept == seg.channels,
                        "{} {mode:?} align {align}: a segment keeps {kept} of {}",
                        rel(&path),
                        seg.channels
                    );
                }
                for read in &exported.reads {
                    let input = program.operands(read.consumer)[0];
                    let shape = &program.graph[input].shape;
                    if read.kind != ReadKind::Slice || shape.len() != 4 {
                        continue;
                    }
                    let per_channel = (shape[0] * shape[2] * shape[3] * 4) as u64;
                    let width = read.bytes / per_channel;
                    assert_eq!(
                        width % align as u64,
                        0,
                        "{} {mode:?} align {align}: %{} reads a slice of {width}",
                        rel(&path),
                        program.graph[read.consumer].name
                    );
                }
            }
        }
    }
}
