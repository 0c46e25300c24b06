//! `nnirc latency measure` in onnxruntime (cargo feature `onnxruntime`): a tiny grid measured
//! in seconds, loaded and used to predict; resuming from the cache. Needs the onnxruntime
//! library of the PyPI wheel (`$ORT_DYLIB_PATH`, or `target/ort-venv`): without it the tests
//! say so and pass, except under CI (`CI` set), where they fail.
#![cfg(feature = "onnxruntime")]

mod common;

use common::{nnirc, program};
use nnirc::latency::measure::{find_library, measure, OptLevel, Settings};
use nnirc::latency::{predict, Table};

const TINY: &str = "model tiny(%x: f32[1, 16, 8, 8]) -> (%y) {
  param @a: f32[16, 16, 3, 3]
  param @b: f32[16]
  param @fc: f32[4, 16]
  %c = conv2d(%x, @a, @b, padding=1)
  %r = relu(%c)
  %s = add(%r, %x)
  %p = global_avg_pool(%s)
  %f = flatten(%p)
  %y = linear(%f, @fc)
}
";

/// The library (`$ORT_DYLIB_PATH`, or the wheel in `target/ort-venv`: tests run in the crate
/// root); its absence fails under CI and skips elsewhere.
fn library() -> Option<std::path::PathBuf> {
    let lib = find_library();
    if lib.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI: no onnxruntime library (set ORT_DYLIB_PATH to the wheel's libonnxruntime.so.*)"
        );
        eprintln!("skipped: no onnxruntime library (set ORT_DYLIB_PATH)");
    }
    lib
}

#[test]
fn a_tiny_grid_is_measured_loaded_and_predicts_and_resumes() {
    let Some(library) = library() else { return };
    let p = program(TINY);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("t.json.cache");
    let settings = Settings {
        library,
        threads: 1,
        optimization: OptLevel::All,
        warmup: 1,
        runs: 3,
        block: Some(8),
        own_widths_only: false,
    };
    let mut first_report = None;
    let table = measure(
        &[&p],
        vec!["tiny".into()],
        &settings,
        &cache,
        &mut |done, total, _| {
            first_report.get_or_insert((done, total));
        },
    )
    .unwrap();
    let (done, total) = first_report.unwrap();
    assert_eq!(done, 0);
    let points: usize = table.entries.iter().map(|e| e.points.len()).sum();
    assert_eq!(points, total);
    // The conv with its fused relu and add, the pool, the flatten, the linear, and the slice
    // and gather an optimized variant may add.
    let kinds: Vec<String> = table.entries.iter().map(|e| e.kernel.describe()).collect();
    assert!(
        kinds.contains(&"conv 3x3+relu+add @8x8".to_string()),
        "{kinds:?}"
    );
    assert!(kinds.iter().any(|k| k.starts_with("gather")), "{kinds:?}");
    // It reads back as a strict version-2 table and predicts the model.
    let table = Table::from_json(&table.to_json()).unwrap();
    let prediction = predict(&p, &table).unwrap();
    assert!(
        prediction.total_us > 0.0 && prediction.total_us < 1e5,
        "{}",
        prediction.text()
    );
    // Every point measured is in the cache: a second run measures nothing.
    let lines = std::fs::read_to_string(&cache).unwrap().lines().count();
    assert_eq!(lines, total);
    let mut reports = Vec::new();
    measure(
        &[&p],
        vec!["tiny".into()],
        &settings,
        &cache,
        &mut |done, total, _| {
            reports.push((done, total));
        },
    )
    .unwrap();
    assert!(reports.iter().all(|&(d, t)| d == t), "{reports:?}");
    // A different setting does not reuse the cache.
    let other = Settings {
        runs: 2,
        own_widths_only: true,
        ..settings
    };
    let mut first = None;
    measure(
        &[&p],
        vec!["tiny".into()],
        &other,
        &cache,
        &mut |done, _, _| {
            first.get_or_insert(done);
        },
    )
    .unwrap();
    assert_eq!(first, Some(0));
}

#[test]
fn the_command_writes_the_table_and_removes_its_cache() {
    let Some(library) = library() else { return };
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.nnir");
    std::fs::write(&model, TINY).unwrap();
    let out = dir.path().join("t.json");
    let (code, _, err) = nnirc(&[
        "latency",
        "measure",
        model.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--own-widths",
        "--runs",
        "3",
        "--warmup",
        "1",
        "--library",
        library.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("kernels"), "{err}");
    assert!(!dir.path().join("t.json.cache").exists());
    let (code, stdout, err) = nnirc(&[
        "latency",
        "predict",
        model.to_str().unwrap(),
        "--table",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("total "), "{stdout}");
    // A missing library is a clear error.
    let (code, _, err) = nnirc(&[
        "latency",
        "measure",
        model.to_str().unwrap(),
        "-o",
        dir.path().join("u.json").to_str().unwrap(),
        "--library",
        "/nonexistent/libonnxruntime.so.1",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot load onnxruntime"), "{err}");
}
