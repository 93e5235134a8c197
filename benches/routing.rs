//! Topic routing cost as the number of bindings grows: the trie should make a publish cost
//! about the same at 100k bindings as at 10.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use warren::broker::exchange::TopicRouter;
use warren::protocol::FieldTable;

/// A deterministic mix of binding keys: mostly literal three-word keys, some with `*` and `#`,
/// as an application with many per-entity bindings would make.
fn binding_key(i: usize) -> String {
    let region = i % 17;
    let entity = i;
    match i % 10 {
        0 => format!("region{region}.*.created"),
        1 => format!("region{region}.entity{entity}.#"),
        _ => format!("region{region}.entity{entity}.updated"),
    }
}

fn topic_routing(c: &mut Criterion) {
    let mut group = c.benchmark_group("topic_route");
    let args = FieldTable::default();
    for count in [10usize, 1_000, 100_000] {
        let mut router = TopicRouter::default();
        for i in 0..count {
            router.bind(i, &binding_key(i), &args);
        }
        let keys: Vec<String> = (0..64)
            .map(|i| format!("region{}.entity{}.updated", i % 17, (i * 7919) % count))
            .collect();
        let mut out = Vec::with_capacity(16);
        let mut next = 0;
        group.bench_with_input(BenchmarkId::from_parameter(count), &count, |b, _| {
            b.iter(|| {
                out.clear();
                router.route(&keys[next % keys.len()], &mut out);
                next += 1;
                out.len()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, topic_routing);
criterion_main!(benches);
