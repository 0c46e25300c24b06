//! Ordering solver: `exact` and `paper` on seeded instances of 10, 25 and 49 consumers over 256
//! channels. `masks`: each consumer keeps a random half of the channels (like L1 masks of
//! unrelated layers); `sparse`: each keeps about 3% (a sparse overlap graph: many chordless
//! paths for `paper`, many compatible subsets for `exact`); `intervals`: random intervals of a
//! hidden order with 8 flipped channels (nearly zero-copy).
use criterion::{criterion_group, criterion_main, Criterion};
use nnirc::solver::random::{interval_instance, random_instance, Rng};
use nnirc::solver::{solve, Instance, Limits, SolverKind};

fn instances() -> Vec<(String, Instance)> {
    let mut out = Vec::new();
    for k in [10, 25, 49] {
        let mut rng = Rng::new(k as u64);
        out.push((
            format!("masks/{k}"),
            random_instance(&mut rng, 256, k, 50, 0, 1 << 16),
        ));
        out.push((
            format!("sparse/{k}"),
            random_instance(&mut rng, 256, k, 3, 0, 1 << 16),
        ));
        out.push((
            format!("intervals/{k}"),
            interval_instance(&mut rng, 256, k, 0, 8),
        ));
    }
    out
}

fn solver(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("solver");
    group.sample_size(10);
    for (name, instance) in instances() {
        for (kind, label) in [(SolverKind::Exact, "exact"), (SolverKind::Paper, "paper")] {
            let s = solve(&instance, kind, &limits);
            eprintln!(
                "{label}/{name}: copy weight {}, {} of {} consumers copy, optimal {}, {} nodes, {:?}",
                s.copy_weight,
                s.contiguous.iter().filter(|&&c| !c).count(),
                s.contiguous.len(),
                s.optimal,
                s.stats.nodes,
                s.stats.stop
            );
            group.bench_function(format!("{label}/{name}"), |b| {
                b.iter(|| solve(&instance, kind, &limits))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, solver);
criterion_main!(benches);
