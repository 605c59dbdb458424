//! Parser throughput on the 1.33 MB real-world configuration of
//! `testdata/corpus/go-crossplane/large-config/nginx.conf`.
//!
//! `cargo bench -p nxmesh-core --bench parse` reports MB/s; the crossplane
//! comparison is `scripts/bench-crossplane.sh`. `large-config/fmt` is what
//! `nxmesh config fmt` does (syntax-only parse, then format), and is the run
//! that peak heap is measured on (valgrind massif, see `BENCHMARKS.md`).
//! `large-config-cpu/parse` is the same parse timed in on-CPU time of the
//! thread, the "one core" figure on a shared, loaded machine.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nxmesh_core::parser::{self, JsonOptions, ParseOptions};

fn large_config() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/corpus/go-crossplane/large-config/nginx.conf"
    );
    std::fs::read_to_string(path).expect("the corpus is part of the repository")
}

fn bench(c: &mut Criterion) {
    let text = large_config();
    let opts = ParseOptions::default();
    let mut group = c.benchmark_group("large-config");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("parse", |b| {
        b.iter(|| {
            let file = parser::parse_str("nginx.conf", &text, &opts).expect("parses");
            std::hint::black_box(file.nodes.len())
        })
    });
    let fmt_opts = ParseOptions {
        recover: false,
        check: false,
        single_file: true,
        ..ParseOptions::default()
    };
    group.bench_function("fmt", |b| {
        b.iter(|| {
            let file = parser::parse_str("nginx.conf", &text, &fmt_opts).expect("parses");
            std::hint::black_box(parser::format(&file.nodes).len())
        })
    });
    group.bench_function("parse+json", |b| {
        b.iter(|| {
            let file = parser::parse_str("nginx.conf", &text, &opts).expect("parses");
            let tree = parser::single_tree(file);
            let json = parser::payload(&tree, JsonOptions::default()).to_json();
            std::hint::black_box(json.len())
        })
    });
    group.finish();
}

/// On-CPU time of the benchmark thread (`/proc/thread-self/schedstat`, as
/// in `render.rs`): on a shared machine it leaves out the time the thread
/// waits for a core. The kernel updates it at least every scheduler tick;
/// criterion reads it once per sample of many parses, so that is small.
struct CpuTime;

fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

static WALL: WallTime = WallTime;

impl Measurement for CpuTime {
    type Intermediate = u64;
    type Value = Duration;

    fn start(&self) -> u64 {
        cpu_ns()
    }

    fn end(&self, start: u64) -> Duration {
        Duration::from_nanos(cpu_ns().saturating_sub(start))
    }

    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        WALL.formatter()
    }
}

fn bench_cpu(c: &mut Criterion<CpuTime>) {
    let text = large_config();
    let opts = ParseOptions::default();
    let mut group = c.benchmark_group("large-config-cpu");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("parse", |b| {
        b.iter(|| {
            let file = parser::parse_str("nginx.conf", &text, &opts).expect("parses");
            std::hint::black_box(file.nodes.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(CpuTime);
    targets = bench_cpu
}
criterion_main!(benches, cpu);
