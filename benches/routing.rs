//! Topic routing cost as the number of bindings grows: the trie should make a publish cost
//! about the same at 100k bindings as at 10. And the cost of one more binding made the way a
//! vhost makes it (copy the router out of the routing snapshot, bind, publish the copy): the
//! persistent trie should keep that about flat too, where copying a plain trie would cost O(n).

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

fn topic_bind_on_a_copy(c: &mut Criterion) {
    let mut group = c.benchmark_group("topic_bind_on_a_copy");
    let args = FieldTable::default();
    for count in [10usize, 1_000, 100_000] {
        let mut router = TopicRouter::default();
        for i in 0..count {
            router.bind(i, &binding_key(i), &args);
        }
        let mut next = count;
        group.bench_with_input(BenchmarkId::from_parameter(count), &count, |b, _| {
            b.iter(|| {
                let mut copy = router.clone();
                next += 1;
                copy.bind(next, &binding_key(next), &args);
                copy.len()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, topic_routing, topic_bind_on_a_copy);
criterion_main!(benches);
