//! What the generator refuses, with which field error.

use nxmesh_core::config::ConfigUpdate;
use nxmesh_core::error::FieldErrorCode as Code;
use nxmesh_core::generator::{self, RenderOptions};
use serde_json::json;

use super::fixtures::{GOLDEN_PREFIX, options};

fn base() -> serde_json::Value {
    json!({
        "config_id": "r", "version": 1,
        "virtual_hosts": [{
            "id": "0b6d0a30-0000-4000-8000-0000000000f1",
            "name": "R", "server_name": "r.example.test", "listen_port": 28080,
            "locations": [{"path": "/", "upstream_id": "0b6d0a30-0000-4000-8000-0000000000f2"}]
        }],
        "upstreams": [{
            "id": "0b6d0a30-0000-4000-8000-0000000000f2", "name": "app",
            "servers": [{"address": "127.0.0.1:9001"}]
        }]
    })
}

/// Applies `edit` to the base model and requires a refusal naming `field`
/// with `code`.
fn refused(version: &str, edit: impl FnOnce(&mut serde_json::Value), field: &str, code: Code) {
    let mut v = base();
    edit(&mut v);
    let model: ConfigUpdate = serde_json::from_value(v).unwrap();
    let errors = generator::render(&model, &options(version, GOLDEN_PREFIX)).unwrap_err();
    assert!(
        errors
            .errors
            .iter()
            .any(|e| e.field == field && e.code == code),
        "expected {field} {code:?}, got {errors:?}"
    );
}

fn loc0(v: &mut serde_json::Value) -> &mut serde_json::Value {
    &mut v["virtual_hosts"][0]["locations"][0]
}

#[test]
fn the_base_model_renders() {
    let model: ConfigUpdate = serde_json::from_value(base()).unwrap();
    generator::render(&model, &options("1.22.1", GOLDEN_PREFIX)).unwrap();
}

#[test]
fn header_values_that_cannot_be_expressed() {
    let f = "virtual_hosts[0].locations[0].custom_headers[0].value";
    for (value, code) in [
        ("costs $5", Code::InvalidCharacter),
        ("a\r\nSet-Cookie: x", Code::InvalidCharacter),
        ("nul\0", Code::InvalidCharacter),
        ("$uri", Code::InvalidCharacter),
        ("${document_uri}", Code::InvalidCharacter),
        ("$no_such_variable", Code::InvalidCharacter),
        ("$hostname_suffix", Code::InvalidCharacter),
    ] {
        refused(
            "1.22.1",
            |v| loc0(v)["custom_headers"] = json!([{"name": "X-A", "value": value}]),
            f,
            code,
        );
    }
    refused(
        "1.22.1",
        |v| loc0(v)["custom_headers"] = json!([{"name": "X-A", "value": "a".repeat(5000)}]),
        f,
        Code::TooLong,
    );
    // 4000 bytes of quotes become more than 4096 once escaped.
    refused(
        "1.22.1",
        |v| loc0(v)["custom_headers"] = json!([{"name": "X-A", "value": "\"".repeat(3000)}]),
        f,
        Code::TooLong,
    );
}

#[test]
fn rewrite_replacement_with_a_literal_dollar() {
    refused(
        "1.22.1",
        |v| loc0(v)["rewrite_rules"] = json!([{"pattern": "^/a$", "replacement": "/b$"}]),
        "virtual_hosts[0].locations[0].rewrite_rules[0].replacement",
        Code::InvalidCharacter,
    );
}

#[test]
fn custom_directives_outside_the_allowlist_or_policy() {
    for name in [
        "include",
        "load_module",
        "perl_modules",
        "js_import",
        "content_by_lua_block",
        "env",
        "user",
        "pid",
        "ssl_engine",
        "alias",
        "access_log",
    ] {
        refused(
            "1.22.1",
            |v| v["virtual_hosts"][0]["custom_directives"] = json!({name: "x"}),
            &format!("virtual_hosts[0].custom_directives.{name}"),
            Code::NotAllowed,
        );
    }
    for (name, value) in [
        ("server_tokens", "on"),
        ("ssl_protocols", "TLSv1 TLSv1.2"),
        ("ssl_ciphers", "RC4-SHA:HIGH"),
        ("proxy_set_header", "Host $http_host"),
        ("proxy_set_header", "X-Forwarded-For 1.2.3.4"),
        ("allow", "10.0.0.0/8"),
        ("keepalive_requests", "10"),
    ] {
        refused(
            "1.22.1",
            |v| v["virtual_hosts"][0]["custom_directives"] = json!({name: value}),
            &format!("virtual_hosts[0].custom_directives.{name}"),
            Code::NotAllowed,
        );
    }
    // Clashes with what the generator emits in the block.
    refused(
        "1.22.1",
        |v| loc0(v)["custom_directives"] = json!({"proxy_http_version": "1.0"}),
        "virtual_hosts[0].locations[0].custom_directives.proxy_http_version",
        Code::NotAllowed,
    );
    refused(
        "1.22.1",
        |v| v["global_settings"] = json!({"nginx_directives": {"sendfile": "off"}}),
        "global_settings.nginx_directives.sendfile",
        Code::NotAllowed,
    );
    // Argument count from the directive table of the target version.
    refused(
        "1.22.1",
        |v| loc0(v)["custom_directives"] = json!({"gzip": "on off"}),
        "virtual_hosts[0].locations[0].custom_directives.gzip",
        Code::InvalidFormat,
    );
}

#[test]
fn listen_combinations_nginx_cannot_express() {
    let cert = "0b6d0a30-0000-4000-8000-0000000000c1";
    let certs = json!({cert: {
        "id": cert, "domain": "r.example.test",
        "certificate_pem": "-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n",
        "private_key_pem": "-----BEGIN PRIVATE KEY-----\nA\n-----END PRIVATE KEY-----\n",
        "expires_at": "2030-01-01T00:00:00Z"}});
    let tls = |v: &mut serde_json::Value, h3: bool| {
        let vh = &mut v["virtual_hosts"][0];
        vh["ssl_enabled"] = json!(true);
        vh["ssl_certificate_id"] = json!(cert);
        vh["http3_enabled"] = json!(h3);
        v["certificates"] = certs.clone();
    };
    refused(
        "1.22.1",
        |v| tls(v, true),
        "virtual_hosts[0].http3_enabled",
        Code::NotAllowed,
    );
    refused(
        "1.22.1",
        |v| v["virtual_hosts"][0]["http2_enabled"] = json!(true),
        "virtual_hosts[0].http2_enabled",
        Code::NotAllowed,
    );
    refused(
        "1.26.3",
        |v| {
            tls(v, false);
            let mut second = v["virtual_hosts"][0].clone();
            second["id"] = json!("0b6d0a30-0000-4000-8000-0000000000f3");
            second["ssl_enabled"] = json!(false);
            second["ssl_certificate_id"] = json!(null);
            v["virtual_hosts"].as_array_mut().unwrap().push(second);
        },
        "virtual_hosts[1].ssl_enabled",
        Code::NotAllowed,
    );
    refused(
        "1.22.1",
        |v| v["virtual_hosts"][0]["listen_port"] = json!(super::fixtures::STATUS_PORT),
        "virtual_hosts[0].listen_port",
        Code::NotAllowed,
    );
}

#[test]
fn proxy_pass_with_a_path() {
    let set = |v: &mut serde_json::Value, modifier: serde_json::Value| {
        let l = loc0(v);
        l["upstream_id"] = json!(null);
        l["proxy_pass"] = json!("http://127.0.0.1:9000/x/");
        l["modifier"] = modifier;
        if l["modifier"] == json!("regex") {
            l["path"] = json!("^/a");
        }
    };
    refused(
        "1.22.1",
        |v| set(v, json!(null)),
        "virtual_hosts[0].locations[0].proxy_pass",
        Code::NotAllowed,
    );
    refused(
        "1.22.1",
        |v| set(v, json!("regex")),
        "virtual_hosts[0].locations[0].proxy_pass",
        Code::NotAllowed,
    );
}

#[test]
fn duplicate_upstream_names() {
    refused(
        "1.22.1",
        |v| {
            let mut u = v["upstreams"][0].clone();
            u["id"] = json!("0b6d0a30-0000-4000-8000-0000000000f4");
            v["upstreams"].as_array_mut().unwrap().push(u);
        },
        "upstreams[1].name",
        Code::NotAllowed,
    );
}

#[test]
fn options_are_checked() {
    let model: ConfigUpdate = serde_json::from_value(base()).unwrap();
    let mut opts = RenderOptions::for_version("1.20.2".parse().unwrap());
    opts.layout.managed_dir = "../etc".to_owned();
    opts.layout.pid_file = "relative.pid".to_owned();
    let errors = generator::render(&model, &opts).unwrap_err();
    let fields: Vec<&str> = errors.errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "options.nginx_version",
            "options.layout.managed_dir",
            "options.layout.pid_file"
        ]
    );
}

#[test]
fn acme_challenges_that_are_not_acme_text() {
    let set = |ch: serde_json::Value| {
        move |v: &mut serde_json::Value| {
            v["global_settings"] = json!({"acme_challenges": [ch]});
        }
    };
    let f = "global_settings.acme_challenges[0]";
    for (token, key_authorization, field) in [
        ("t;ok", "t;ok.thumb", "token"),
        ("tok/../x", "tok/../x.thumb", "token"),
        ("tok", "tok.thumb; return 200 x", "key_authorization"),
        ("tok", "tok.$host", "key_authorization"),
        ("tok", "other.thumb", "key_authorization"),
        ("tok", "tok.thumb\nreturn", "key_authorization"),
    ] {
        refused(
            "1.22.1",
            set(
                json!({"domain": "r.example.test", "token": token, "key_authorization": key_authorization}),
            ),
            &format!("{f}.{field}"),
            Code::InvalidFormat,
        );
    }
    refused(
        "1.22.1",
        set(json!({"domain": "*.example.test", "token": "tok", "key_authorization": "tok.thumb"})),
        &format!("{f}.domain"),
        Code::NotAllowed,
    );
    refused(
        "1.22.1",
        set(json!({"domain": "r.example.test;", "token": "tok", "key_authorization": "tok.thumb"})),
        &format!("{f}.domain"),
        Code::InvalidFormat,
    );
}
