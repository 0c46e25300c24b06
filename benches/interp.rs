//! Reference interpreter throughput on a full ResNet-50 (1x3x224x224, f32, seeded random
//! weights and masks off), plus the largest example with its masks. The ResNet-50 text is built
//! here, layer by layer as in torchvision, so the bench needs no model files.
use criterion::{criterion_group, criterion_main, Criterion};

#[path = "support/resnet50.rs"]
mod resnet50;
use resnet50::resnet50;

fn compile(source: &str) -> nnirc::ir::Program {
    let compiled = nnirc::compile(source);
    assert!(
        compiled.diagnostics.is_empty(),
        "{:?}",
        compiled.diagnostics
    );
    compiled.program.unwrap()
}

fn interp(c: &mut Criterion) {
    let mut group = c.benchmark_group("interp");
    group.sample_size(10);
    let program = compile(&resnet50());
    let weights = nnirc::weights::random(&program, 0);
    let inputs = nnirc::interp::random_inputs::<f32>(&program, 0);
    group.bench_function("resnet50/f32", |b| {
        b.iter(|| nnirc::interp::run(&program, &weights, &inputs).unwrap())
    });
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/resnet_bottleneck_block.nnir"
    ))
    .unwrap();
    let block = compile(&source);
    let weights = nnirc::weights::random(&block, 0);
    let inputs = nnirc::interp::random_inputs::<f64>(&block, 0);
    group.bench_function("resnet_bottleneck_block/f64/masked", |b| {
        b.iter(|| nnirc::interp::run(&block, &weights, &inputs).unwrap())
    });
    group.finish();
}

criterion_group!(benches, interp);
criterion_main!(benches);
