//! The optimize pass on the torchvision zoo at the reference recipe (DESIGN.md section 4):
//! input-side L1 masks at amount 0.5 from full-size seeded weights, then `optimize` in upscale
//! mode under the default cost model, baseline statistics included, no verification and no
//! file I/O. Results and their ratio to the reference implementation are in
//! docs/benchmarks.md.
use criterion::{criterion_group, criterion_main, Criterion};
use nnirc::optimize::{optimize, Mode, OptimizeConfig};
use nnirc::prune::{masks, PruneConfig};

/// A zoo model with the reference masks, and its weights.
fn masked(name: &str) -> (nnirc::ir::Program, nnirc::weights::Weights) {
    let path = format!("{}/examples/zoo/{name}.nnir", env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(path).expect("the zoo is there");
    let mut program = nnirc::compile(&source).program.expect("the zoo compiles");
    let weights = nnirc::weights::random(&program, 0);
    let config = PruneConfig {
        amount: 0.5,
        ..Default::default()
    };
    for (node, kept) in
        masks(&program, &weights, &config).expect("the default recipe scores any model")
    {
        program.graph[node].keep_in = Some(kept);
    }
    (program, weights)
}

fn zoo(c: &mut Criterion) {
    let mut group = c.benchmark_group("optimize");
    group.sample_size(20);
    for name in [
        "resnet18",
        "resnet50",
        "densenet121",
        "mobilenet_v2",
        "efficientnet_b0",
        "squeezenet1_1",
    ] {
        let (program, weights) = masked(name);
        for mode in [Mode::Naive, Mode::Upscale] {
            let config = OptimizeConfig {
                mode,
                ..Default::default()
            };
            group.bench_function(format!("{name}/{}", mode.name()), |b| {
                b.iter(|| optimize(&program, &weights, &config).expect("optimizes"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, zoo);
criterion_main!(benches);
