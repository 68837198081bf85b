//! Criterion benchmark of one admission step (a `complete` that admits the next request
//! plus a `submit`) on a saturated core with 10 to 10,000 backlogged tenants. The step
//! includes the harness's own bookkeeping (a `VecDeque` and a `HashMap`); the binary's
//! `--bench-admission` times the two core calls alone.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use obleth_scheduler::core::Mode;
use obleth_sim::bench::Saturated;

fn admission(c: &mut Criterion) {
    for mode in [Mode::Weighted, Mode::Hierarchical] {
        let mut group = c.benchmark_group(format!("admission/{mode:?}"));
        for n in [10usize, 100, 1_000, 10_000] {
            let mut core = Saturated::new(n, mode);
            group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| b.iter(|| core.step()));
        }
        group.finish();
    }
}

criterion_group!(benches, admission);
criterion_main!(benches);
