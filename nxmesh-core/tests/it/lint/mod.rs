//! The linter: one data-driven `check` per rule, with the findings as a
//! snapshot, and the corpus without panics.

use expect_test::{Expect, expect};
use nxmesh_core::lint::{self, RULES, Severity};
use nxmesh_core::parser::{self, ParseOptions};

fn check(config: &str, expect: Expect) {
    let file = parser::parse_str("nginx.conf", config, &ParseOptions::default()).unwrap();
    assert!(file.errors.is_empty(), "{:?}", file.errors);
    let findings = lint::lint(&parser::single_tree(file));
    let text: Vec<String> = findings
        .iter()
        .map(|f| {
            format!(
                "{}:{} {:?} {}: {}",
                f.file, f.line, f.severity, f.id, f.message
            )
        })
        .collect();
    expect.assert_eq(&text.join("\n"));
}

/// Wraps server-level text in a minimal, otherwise clean `http` block.
fn http(body: &str) -> String {
    format!("http {{\n    server_tokens off;\n{body}\n}}\n")
}

#[test]
fn add_header_redefinition() {
    check(
        &http(
            "server { listen 80; add_header X-Frame-Options DENY always; add_header X-Foo a;
              location / { add_header Cache-Control no-store; }
              location /ok/ { add_header X-Frame-Options DENY always; add_header X-Foo a; add_header X-Bar b; }
              location /inherit/ { root /srv; } }",
        ),
        expect![[r#"nginx.conf:4 Medium add_header_redefinition: add_header here drops the parent level's headers (x-frame-options, x-foo); repeat them in this block"#]],
    );
    check(
        &http("server { listen 80; add_header X-Foo a; location / { add_header X-Bar b; } }"),
        expect![
            "nginx.conf:3 Low add_header_redefinition: add_header here drops the parent level's headers (x-foo); repeat them in this block"
        ],
    );
}

#[test]
fn host_spoofing_and_http_splitting() {
    check(
        &http(
            "server { listen 80;
              location / { proxy_pass http://127.0.0.1; proxy_set_header Host $http_host; }
              location /r/ { return 302 https://example.com$uri; }
              location ~ ^/x/([^/]+)$ { add_header X-Id $1; }
              location ~ ^/y/(\\d+)$ { add_header X-Id $1; }
              location /ok/ { return 302 https://example.com$request_uri; } }",
        ),
        expect![[r#"
            nginx.conf:4 Medium host_spoofing: proxy_set_header Host $http_host forwards a client-chosen Host; use $host
            nginx.conf:5 High http_splitting: $uri in return is decoded and may contain CR/LF (response splitting); use $request_uri
            nginx.conf:6 High http_splitting: a capture of "^/x/([^/]+)$" can contain CR/LF (negated class) and reaches add_header"#]],
    );
}

#[test]
fn alias_traversal() {
    check(
        &http(
            "server { listen 80;
              location /i { alias /data/images/; }
              location /j { alias /data/j; }
              location /k/ { alias /data/k/; }
              location = /l { alias /data/l.txt; } }",
        ),
        expect![[r#"
            nginx.conf:4 High alias_traversal: location /i does not end with '/' but uses alias: /i../ reaches the parent directory
            nginx.conf:5 Medium alias_traversal: location /j does not end with '/' but uses alias: /j../ reaches the parent directory"#]],
    );
}

#[test]
fn ssrf_and_proxy_pass_normalized() {
    check(
        &http(
            "server { listen 80;
              location ~ ^/p/(.*)$ { proxy_pass http://$1; }
              location /api/ { proxy_pass http://127.0.0.1:8080/v1/; }
              location = /exact { proxy_pass http://127.0.0.1:8080/e; }
              location /fine/ { proxy_pass http://127.0.0.1:8080; } }",
        ),
        expect![[r#"
            nginx.conf:4 High ssrf: proxy_pass host "$1" is built from variables; a request could choose the backend
            nginx.conf:5 Medium proxy_pass_normalized: proxy_pass with a path ("/v1/") sends the decoded, normalized URI (%2F..%2F becomes /../); proxy without a path"#]],
    );
}

#[test]
fn version_disclosure() {
    check(
        "http { server { listen 80; } }",
        expect![[
            r#"nginx.conf:1 High version_disclosure: server_tokens is not set and defaults to on; add server_tokens off to http"#
        ]],
    );
    check(
        &http("server { listen 80; server_tokens build; }"),
        expect![
            "nginx.conf:3 High version_disclosure: server_tokens build discloses the nginx version; use server_tokens off"
        ],
    );
}

#[test]
fn default_server_flag() {
    check(
        &http(
            "server { listen 80; server_name a; } server { listen *:80; server_name b; } server { listen 8080 default_server; } server { listen 8080; }",
        ),
        expect![
            "nginx.conf:3 Low default_server_flag: 2 servers share tcp *:80 and none is default_server; the first one silently catches unknown hosts"
        ],
    );
}

#[test]
fn weak_ssl_tls_and_hsts() {
    check(
        &http(
            "ssl_protocols TLSv1 TLSv1.2; ssl_ciphers HIGH:!aNULL:RC4-SHA;
             server { listen 443 ssl; }
             server { listen 8443 ssl; add_header Strict-Transport-Security \"max-age=3600\"; }
             server { listen 9443 ssl; add_header Strict-Transport-Security \"max-age=31536000\" always; }
             server { listen 10443 ssl default_server; ssl_reject_handshake on; }",
        ),
        expect![[r#"
            nginx.conf:3 High weak_ssl_tls: insecure protocols enabled (TLSv1); use TLSv1.2 TLSv1.3
            nginx.conf:3 High weak_ssl_tls: weak cipher suites enabled (rc4-sha)
            nginx.conf:4 Medium hsts_header: TLS server without Strict-Transport-Security; add_header Strict-Transport-Security "max-age=31536000" always
            nginx.conf:5 Low hsts_header: HSTS max-age is shorter than one year
            nginx.conf:5 Low hsts_header: HSTS without always is not sent on error responses"#]],
    );
}

#[test]
fn status_page_exposed() {
    check(
        &http(
            "server { listen 80; location = /s { stub_status; } }
             server { listen 81; location = /s { stub_status; allow 127.0.0.1; deny all; } }
             server { listen 82; allow 10.0.0.0/8; deny all; location = /s { stub_status; } }",
        ),
        expect![
            "nginx.conf:3 Medium status_page_exposed: stub_status without allow/deny all is readable by anyone; allow 127.0.0.1; deny all;"
        ],
    );
}

#[test]
fn if_is_evil() {
    check(
        &http(
            "server { listen 80; location / {
                if ($request_method = POST) { return 405; }
                if ($http_x) { set $a 1; rewrite ^ /b last; }
                if ($args) { proxy_pass http://127.0.0.1; add_header X y; } } }",
        ),
        expect![[r#"
            nginx.conf:6 High if_is_evil: proxy_pass inside if in a location behaves unexpectedly; only return, rewrite, set and break are safe
            nginx.conf:6 High if_is_evil: add_header inside if in a location behaves unexpectedly; only return, rewrite, set and break are safe"#]],
    );
}

#[test]
fn every_rule_has_a_test_and_severities_are_ordered() {
    assert_eq!(RULES.len(), 12);
    assert!(Severity::High > Severity::Medium && Severity::Medium > Severity::Low);
}

#[test]
fn corpus_lints_without_panics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/corpus");
    let mut stack = vec![dir];
    let mut linted = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "conf") {
                let bytes = std::fs::read(&p).unwrap();
                let text = parser::decode(&bytes);
                if let Ok(file) = parser::parse_str("x.conf", &text, &ParseOptions::default()) {
                    let _ = lint::lint(&parser::single_tree(file));
                    linted += 1;
                }
            }
        }
    }
    assert!(linted >= 20, "only {linted} corpus files linted");
}
