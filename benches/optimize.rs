//! The whole export pass (analysis, ordering solver, e-graph read planning, rewrite) per
//! example, in upscale mode under the views cost model, plus the naive baseline.
use criterion::{criterion_group, criterion_main, Criterion};
use nnirc::export::{export, ExportConfig, Mode};

fn examples() -> Vec<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("examples/ exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "nnir"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
}

fn optimize(c: &mut Criterion) {
    let mut group = c.benchmark_group("optimize");
    for (name, source) in examples() {
        let program = nnirc::compile(&source).program.expect("examples compile");
        let weights = nnirc::weights::random(&program, 0);
        for mode in [Mode::Naive, Mode::Upscale] {
            let config = ExportConfig {
                mode,
                ..Default::default()
            };
            group.bench_function(format!("{name}/{mode:?}"), |b| {
                b.iter(|| export(&program, &weights, &config).expect("exports"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, optimize);
criterion_main!(benches);
