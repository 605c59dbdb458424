//! Rendering 10,000 virtual hosts with 3 locations each (target: at most
//! 50 ms), and the parse-back check of the result.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::collections::BTreeMap;

use criterion::{Criterion, criterion_group, criterion_main};
use nxmesh_core::config::{ConfigUpdate, UpstreamConfig, VirtualHostConfig};
use nxmesh_core::generator::{self, RenderOptions};
use nxmesh_core::model::{
    Header, LoadBalanceAlgorithm, Location, UpstreamServer, UpstreamSpec, VirtualHostSpec,
};
use uuid::Uuid;

fn model(hosts: usize) -> ConfigUpdate {
    let upstream = |i: u128| UpstreamConfig {
        id: Uuid::from_u128(0xA000_0000 + i),
        spec: UpstreamSpec {
            name: format!("app{i}"),
            algorithm: LoadBalanceAlgorithm::LeastConnections,
            servers: vec![
                UpstreamServer {
                    address: "10.0.0.1:8080".to_owned(),
                    weight: 1,
                    backup: false,
                    down: false,
                    max_fails: 3,
                    fail_timeout: 10,
                },
                UpstreamServer {
                    address: "10.0.0.2:8080".to_owned(),
                    weight: 1,
                    backup: true,
                    down: false,
                    max_fails: 1,
                    fail_timeout: 10,
                },
            ],
            health_check: None,
            keepalive_connections: 16,
        },
    };
    let upstreams: Vec<UpstreamConfig> = (0..100).map(upstream).collect();
    let virtual_hosts = (0..hosts)
        .map(|i| VirtualHostConfig {
            id: Uuid::from_u128(i as u128 + 1),
            spec: VirtualHostSpec {
                name: format!("site {i}"),
                server_name: format!("site{i}.example.com www.site{i}.example.com"),
                listen_port: 80,
                ssl_enabled: false,
                ssl_certificate_id: None,
                http2_enabled: false,
                http3_enabled: false,
                locations: vec![
                    Location {
                        path: "/".to_owned(),
                        modifier: None,
                        upstream_id: None,
                        proxy_pass: None,
                        root: Some(format!("/srv/site{i}")),
                        index: Some("index.html".to_owned()),
                        custom_headers: Vec::new(),
                        rewrite_rules: Vec::new(),
                        custom_directives: BTreeMap::new(),
                    },
                    Location {
                        path: "/api/".to_owned(),
                        modifier: None,
                        upstream_id: Some(upstreams[i % upstreams.len()].id),
                        proxy_pass: None,
                        root: None,
                        index: None,
                        custom_headers: vec![Header {
                            name: "X-Frame-Options".to_owned(),
                            value: "DENY".to_owned(),
                            always: true,
                        }],
                        rewrite_rules: Vec::new(),
                        custom_directives: BTreeMap::from([(
                            "proxy_read_timeout".to_owned(),
                            "30s".to_owned(),
                        )]),
                    },
                    Location {
                        path: "/static/".to_owned(),
                        modifier: None,
                        upstream_id: None,
                        proxy_pass: None,
                        root: Some("/srv/static".to_owned()),
                        index: None,
                        custom_headers: Vec::new(),
                        rewrite_rules: Vec::new(),
                        custom_directives: BTreeMap::new(),
                    },
                ],
                custom_directives: BTreeMap::new(),
            },
        })
        .collect();
    ConfigUpdate {
        config_id: "bench".to_owned(),
        version: 1,
        virtual_hosts,
        upstreams,
        certificates: BTreeMap::new(),
        global_settings: Default::default(),
    }
}

fn bench(c: &mut Criterion) {
    let update = model(10_000);
    let opts = RenderOptions::default();
    let mut group = c.benchmark_group("generator");
    group.sample_size(20);
    group.bench_function("render_10k_vhosts_3_locations", |b| {
        b.iter(|| generator::render(&update, &opts).expect("the bench model is valid"));
    });
    group.bench_function("plan_only_10k_vhosts", |b| {
        b.iter(|| generator::plan(&update, &opts).expect("the bench model is valid"));
    });
    group.bench_function("text_and_checksum_10k_vhosts", |b| {
        let plan = generator::plan(&update, &opts).expect("the bench model is valid");
        b.iter(|| plan.render());
    });
    group.bench_function("validate_only_10k_vhosts", |b| {
        use nxmesh_core::validate::Validate;
        b.iter(|| update.validate().expect("the bench model is valid"));
    });
    group.bench_function("plan_verify_10k_vhosts", |b| {
        let plan = generator::plan(&update, &opts).expect("the bench model is valid");
        b.iter(|| plan.verify().expect("the rendered text parses back"));
    });
    group.finish();
}

#[path = "common/cpu_time.rs"]
mod cpu_time;
use cpu_time::CpuTime;

fn bench_cpu(c: &mut Criterion<CpuTime>) {
    let update = model(10_000);
    let opts = RenderOptions::default();
    let mut group = c.benchmark_group("generator_cpu_time");
    group.sample_size(20);
    group.bench_function("render_10k_vhosts_3_locations", |b| {
        b.iter(|| generator::render(&update, &opts).expect("the bench model is valid"));
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
