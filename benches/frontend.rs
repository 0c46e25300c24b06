//! Front-end throughput: parse + lower (name resolution, shape inference, mask checks) of the
//! largest example and of a full ResNet-50, and the canonical printer on the same files.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::path::PathBuf;

#[path = "support/resnet50.rs"]
mod resnet50;

/// The largest `.nnir` file under `examples/` (by bytes).
fn largest_example() -> (PathBuf, String) {
    let mut best: Option<(PathBuf, String)> = None;
    let mut stack = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).expect("examples/ exists").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "nnir") {
                let text = std::fs::read_to_string(&path).expect("readable example");
                if best.as_ref().is_none_or(|(_, b)| text.len() > b.len()) {
                    best = Some((path, text));
                }
            }
        }
    }
    best.expect("at least one example")
}

fn frontend(c: &mut Criterion) {
    let (path, source) = largest_example();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    bench_file(c, &name, &source);
    bench_file(c, "resnet50", &resnet50::resnet50());
}

fn bench_file(c: &mut Criterion, name: &str, source: &str) {
    let mut group = c.benchmark_group("frontend");
    group.throughput(Throughput::Bytes(source.len() as u64));
    group.bench_function(format!("parse/{name}"), |b| {
        b.iter(|| nnirc::syntax::parse(std::hint::black_box(source)))
    });
    group.bench_function(format!("parse+lower/{name}"), |b| {
        b.iter(|| {
            let compiled = nnirc::compile(std::hint::black_box(source));
            assert!(compiled.program.is_some());
            compiled
        })
    });
    let parsed = nnirc::syntax::parse(source);
    let file = parsed.file.as_ref().expect("example parses");
    group.bench_function(format!("print/{name}"), |b| {
        b.iter(|| nnirc::syntax::print::print(file, source, &parsed.comments))
    });
    group.finish();
}

criterion_group!(benches, frontend);
criterion_main!(benches);
