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

#[path = "common/cpu_time.rs"]
mod cpu_time;
use cpu_time::CpuTime;

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
