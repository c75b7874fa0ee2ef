//! The store's hot paths: enqueue (one event, one delivery) with and without waiting for the
//! group commit, lease, and completing a delivery, on each engine. `cargo bench --bench store`

use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use hookrelay::store::{
    AttemptRecord, AttemptResult, Backend, Completion, Ending, NewEvent, Store,
};
use serde_json::json;

#[path = "common/sample.rs"]
mod sample;

fn new_event(i: u64) -> NewEvent {
    sample::new_event(i, "bench", "sink", i)
}

fn completion() -> Completion {
    Completion {
        attempt: AttemptRecord {
            at_ms: 1,
            duration_ms: 1,
            result: AttemptResult::Delivered,
            error: None,
            receipt: Some(json!({"status": 200})),
        },
        counted: true,
        next: Ending::Delivered,
    }
}

/// Engines to measure: `STORE_BENCH_ENGINES=fjall,sled` (default both).
fn engines() -> Vec<(&'static str, Backend)> {
    let wanted = std::env::var("STORE_BENCH_ENGINES").unwrap_or_else(|_| "fjall,sled".into());
    [("fjall", Backend::Fjall), ("sled", Backend::Sled)]
        .into_iter()
        .filter(|(n, _)| wanted.split(',').any(|w| w.trim() == *n))
        .collect()
}

fn store_ops(c: &mut Criterion) {
    for (name, engine) in engines() {
        bench_engine(c, name, engine);
    }
}

fn bench_engine(c: &mut Criterion, name: &str, engine: Backend) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = hookrelay::store::open(engine, dir.path(), 64 << 20).unwrap();
    let mut i = 0u64;
    let mut g = c.benchmark_group(format!("store/{name}"));
    g.bench_function("enqueue+flush", |b| {
        b.iter(|| {
            i += 1;
            rt.block_on(store.enqueue(vec![new_event(i)])).unwrap()
        })
    });
    // Thirty-two concurrent requests share flushes, as ingress does under load.
    g.bench_function("enqueue+flush x32 concurrent", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut set = tokio::task::JoinSet::new();
                for _ in 0..32 {
                    i += 1;
                    let (s, e) = (store.clone(), new_event(i));
                    set.spawn(async move { s.enqueue(vec![e]).await.unwrap() });
                }
                set.join_all().await
            })
        })
    });
    g.bench_function("lease+complete", |b| {
        b.iter_batched(
            || {
                i += 1;
                rt.block_on(store.enqueue(vec![new_event(i)])).unwrap();
            },
            |_| {
                rt.block_on(async {
                    let busy = Default::default();
                    for l in store.lease_due(u64::MAX - 1, 1, &busy).await.unwrap() {
                        store.complete(&l, completion(), 2).await.unwrap();
                    }
                })
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
    // What the write itself costs, without waiting for the flush.
    if engine == Backend::Fjall {
        let dir = tempfile::tempdir().unwrap();
        let s = hookrelay::store::fjall::open(dir.path(), 64 << 20).unwrap();
        c.bench_function("store/fjall/enqueue (write only)", |b| {
            b.iter(|| {
                i += 1;
                s.write(vec![new_event(i)]).unwrap()
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(4));
    targets = store_ops
}
criterion_main!(benches);
