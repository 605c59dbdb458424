//! Import: parsed configurations back to the model, the corpus without
//! panics, and render → import as a fixpoint.

use std::path::{Path, PathBuf};

use expect_test::expect;
use nxmesh_core::config::{CertificateBundle, ConfigUpdate};
use nxmesh_core::generator::{self, import};
use nxmesh_core::parser::{self, MemorySource, ParseOptions, SourceArena};

use super::fixtures::{GOLDEN_PREFIX, cases, options};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/corpus")
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Placeholder bundles for the certificates an import refers to.
fn with_certs(imported: &import::Imported) -> ConfigUpdate {
    let mut update = imported.update.clone();
    for id in imported.certificate_files.keys() {
        update.certificates.insert(
            id.to_string(),
            CertificateBundle {
                id: *id,
                domain: "example.test".to_owned(),
                certificate_pem: "-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n"
                    .to_owned(),
                private_key_pem: "-----BEGIN PRIVATE KEY-----\nA\n-----END PRIVATE KEY-----\n"
                    .to_owned(),
                expires_at: chrono::DateTime::UNIX_EPOCH,
            },
        );
    }
    update
}

fn import_rendered(update: &ConfigUpdate) -> import::Imported {
    let opts = options("1.22.1", GOLDEN_PREFIX);
    let rendered = generator::render(update, &opts).unwrap_or_else(|e| panic!("render: {e}"));
    let mut source = MemorySource::new();
    for f in &rendered.files {
        source.insert(format!("/nx/{}", f.path), f.bytes.clone());
    }
    let arena = SourceArena::new();
    let tree =
        parser::parse_tree(&arena, &source, "/nx/nginx.conf", &ParseOptions::default()).unwrap();
    import::import(&tree, &opts)
}

fn sorted(mut u: ConfigUpdate) -> ConfigUpdate {
    u.virtual_hosts.sort_by_key(|v| v.id);
    u.upstreams.sort_by_key(|v| v.id);
    u.certificates.clear();
    u
}

#[test]
fn corpus_imports_without_panics_and_round_trips() {
    let mut files = Vec::new();
    files_under(&corpus_dir(), &mut files);
    let confs: Vec<&PathBuf> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    assert!(
        confs.len() >= 20,
        "corpus not found at {}",
        corpus_dir().display()
    );
    let opts = options("1.22.1", GOLDEN_PREFIX);
    let mut imported_hosts = 0;
    for main in confs {
        let mut source = MemorySource::new();
        for f in &files {
            source.insert(f.to_string_lossy().into_owned(), std::fs::read(f).unwrap());
        }
        let arena = SourceArena::new();
        let Ok(tree) = parser::parse_tree(
            &arena,
            &source,
            &main.to_string_lossy(),
            &ParseOptions::default(),
        ) else {
            continue;
        };
        let first = import::import(&tree, &opts);
        imported_hosts += first.update.virtual_hosts.len();
        let second = import_rendered(&with_certs(&first));
        assert_eq!(
            sorted(second.update.clone()),
            sorted(first.update.clone()),
            "{}: render → import changed the model",
            main.display()
        );
        assert_eq!(
            second.certificate_files.keys().collect::<Vec<_>>(),
            first.certificate_files.keys().collect::<Vec<_>>()
        );
    }
    assert!(
        imported_hosts >= 10,
        "only {imported_hosts} virtual hosts imported from the corpus"
    );
}

#[test]
fn goldens_round_trip_through_import() {
    for case in cases() {
        if case.version != "1.22.1" {
            continue;
        }
        let first = import_rendered(&case.model);
        let second = import_rendered(&with_certs(&first));
        assert_eq!(
            sorted(second.update),
            sorted(first.update.clone()),
            "{}",
            case.name
        );
    }
}

#[test]
fn hand_written_configuration() {
    let text = r#"
user nginx;
events { worker_connections 512; }
http {
    sendfile on;
    gzip on;
    lua_package_path "/x/?.lua";
    upstream backend {
        least_conn;
        server 10.0.0.1:8080 weight=3 max_fails=2 fail_timeout=1m;
        server 10.0.0.2:8080 backup;
        server 10.0.0.3:8080 slow_start=30s;
        keepalive 32;
    }
    server {
        listen 80;
        listen 443 ssl http2;
        server_name shop.example.com www.shop.example.com;
        ssl_certificate /etc/ssl/shop.pem;
        ssl_certificate_key /etc/ssl/shop.key;
        root /var/www/shop;
        add_header X-Frame-Options SAMEORIGIN always;
        client_max_body_size 20m;
        location / {
            index index.html;
        }
        location /api/ {
            proxy_pass http://backend;
            proxy_set_header X-Custom "a b";
            add_header Cache-Control no-store;
        }
        location ~ \.php$ {
            fastcgi_pass unix:/run/php.sock;
            location /nested { }
        }
        location /images {
            alias /data/images/;
        }
    }
}
"#;
    let file = parser::parse_str("nginx.conf", text, &ParseOptions::default()).unwrap();
    let imported = import::import(
        &parser::single_tree(file),
        &options("1.22.1", GOLDEN_PREFIX),
    );
    let mut out = serde_json::to_string_pretty(&imported.update).unwrap();
    out.push('\n');
    out.push_str(&serde_json::to_string_pretty(&imported.certificate_files).unwrap());
    for n in &imported.report {
        out.push_str(&format!("\n{}:{} {}: {}", n.file, n.line, n.item, n.reason));
    }
    expect![[r#"
        {
          "config_id": "imported",
          "version": 0,
          "virtual_hosts": [
            {
              "id": "1583b01d-6df4-802d-8d2e-7da10a85b131",
              "name": "shop.example.com",
              "server_name": "shop.example.com www.shop.example.com",
              "listen_port": 443,
              "ssl_enabled": true,
              "ssl_certificate_id": "2d03c675-b8cf-80af-8d25-aa79cfc4bacf",
              "http2_enabled": true,
              "locations": [
                {
                  "path": "/",
                  "root": "/var/www/shop",
                  "index": "index.html",
                  "custom_headers": [
                    {
                      "name": "X-Frame-Options",
                      "value": "SAMEORIGIN",
                      "always": true
                    }
                  ]
                }
              ],
              "custom_directives": {
                "client_max_body_size": "20m"
              }
            }
          ],
          "upstreams": [
            {
              "id": "03688b48-af09-8b18-a91e-cfb99f12b8d5",
              "name": "backend",
              "algorithm": "least_connections",
              "servers": [
                {
                  "address": "10.0.0.1:8080",
                  "weight": 3,
                  "backup": false,
                  "max_fails": 2,
                  "fail_timeout": 60
                },
                {
                  "address": "10.0.0.2:8080",
                  "weight": 1,
                  "backup": true
                },
                {
                  "address": "10.0.0.3:8080",
                  "weight": 1,
                  "backup": false
                }
              ],
              "keepalive_connections": 32
            }
          ],
          "certificates": {},
          "global_settings": {
            "nginx_directives": {
              "gzip": "on"
            }
          }
        }
        {
          "2d03c675-b8cf-80af-8d25-aa79cfc4bacf": {
            "certificate": "/etc/ssl/shop.pem",
            "key": "/etc/ssl/shop.key"
          }
        }
        nginx.conf:12 upstream backend server parameter slow_start=30s: not supported by the model
        nginx.conf:7 http lua_package_path: not in the custom directive allowlist for this context
        nginx.conf:16 server shop.example.com www.shop.example.com listen 80: a virtual host has one port; only one listen is kept
        nginx.conf:29 server shop.example.com www.shop.example.com location /api/ proxy_set_header: arguments need quoting, which custom directives cannot carry
        nginx.conf:27 server shop.example.com www.shop.example.com location /api/: not imported: it has directives the model cannot express (see above)
        nginx.conf:33 server shop.example.com www.shop.example.com location \.php$ fastcgi_pass: not in the custom directive allowlist for this context
        nginx.conf:34 server shop.example.com www.shop.example.com location \.php$ nested location: nested locations are not supported by the model
        nginx.conf:32 server shop.example.com www.shop.example.com location \.php$: not imported: it has directives the model cannot express (see above)
        nginx.conf:37 server shop.example.com www.shop.example.com location /images alias: not in the custom directive allowlist for this context
        nginx.conf:36 server shop.example.com www.shop.example.com location /images: not imported: it has directives the model cannot express (see above)"#]].assert_eq(&out);
}
