//! Validation: bad input gives field-level errors naming the field (never a
//! panic), strings with control characters are never accepted, and label
//! selectors print and re-parse to the same selector.

use std::collections::BTreeMap;

use nxmesh_core::error::{FieldErrorCode, ValidationErrors};
use nxmesh_core::model::*;
use nxmesh_core::selector::LabelSelector;
use nxmesh_core::validate::{self, Validate};
use proptest::prelude::*;

fn vhost() -> CreateVirtualHost {
    serde_json::from_str(include_str!("spec_examples/virtual_host_create.json")).unwrap()
}

fn upstream() -> CreateUpstream {
    serde_json::from_str(include_str!("spec_examples/upstream_create.json")).unwrap()
}

/// The fields named by the errors.
fn fields(r: Result<(), ValidationErrors>) -> Vec<String> {
    r.expect_err("expected a validation error")
        .errors
        .into_iter()
        .map(|e| e.field)
        .collect()
}

#[track_caller]
fn refused(r: Result<(), ValidationErrors>, field: &str, code: FieldErrorCode) {
    let errors = r.expect_err("expected a validation error").errors;
    assert!(
        errors.iter().any(|e| e.field == field && e.code == code),
        "expected {code:?} on {field}, got {errors:?}"
    );
}

#[test]
fn virtual_host_errors_name_the_field() {
    let mut v = vhost();
    v.spec.server_name = "example.com; include /etc/passwd".into();
    refused(v.validate(), "server_name", FieldErrorCode::InvalidFormat);

    let mut v = vhost();
    v.spec.server_name = "ok.example.com\nevil".into();
    refused(
        v.validate(),
        "server_name",
        FieldErrorCode::InvalidCharacter,
    );

    let mut v = vhost();
    v.spec.listen_port = 0;
    refused(v.validate(), "listen_port", FieldErrorCode::OutOfRange);

    let mut v = vhost();
    v.spec.ssl_certificate_id = None;
    refused(v.validate(), "ssl_certificate_id", FieldErrorCode::Required);

    let mut v = vhost();
    v.spec.locations[0].path = "/a {".into();
    refused(
        v.validate(),
        "locations[0].path",
        FieldErrorCode::InvalidCharacter,
    );

    let mut v = vhost();
    v.spec.locations[1].custom_headers.push(Header {
        name: "X-A".into(),
        value: "a\r\nSet-Cookie: x".into(),
        always: false,
    });
    refused(
        v.validate(),
        "locations[1].custom_headers[0].value",
        FieldErrorCode::InvalidCharacter,
    );

    let mut v = vhost();
    v.spec.locations[0].custom_headers[0].value = "price: 5$".into();
    refused(
        v.validate(),
        "locations[0].custom_headers[0].value",
        FieldErrorCode::InvalidCharacter,
    );

    let mut v = vhost();
    v.spec.locations[1].proxy_pass = Some("http://backend;evil".into());
    refused(
        v.validate(),
        "locations[1].proxy_pass",
        FieldErrorCode::InvalidCharacter,
    );

    let mut v = vhost();
    v.spec.locations[1].proxy_pass = None;
    v.spec.locations[1].root = Some("/var/www/../../etc".into());
    refused(
        v.validate(),
        "locations[1].root",
        FieldErrorCode::NotAllowed,
    );

    let mut v = vhost();
    v.spec.locations[0].modifier = Some(LocationModifier::Regex);
    v.spec.locations[0].path = "^/api/(v1".into();
    refused(
        v.validate(),
        "locations[0].path",
        FieldErrorCode::InvalidFormat,
    );

    let mut v = vhost();
    v.spec
        .custom_directives
        .insert("load_module".into(), "/tmp/evil.so".into());
    refused(
        v.validate(),
        "custom_directives.load_module",
        FieldErrorCode::NotAllowed,
    );

    let mut v = vhost();
    v.spec.locations[0]
        .custom_directives
        .insert("proxy_read_timeout".into(), "30s; include x".into());
    refused(
        v.validate(),
        "locations[0].custom_directives.proxy_read_timeout",
        FieldErrorCode::InvalidCharacter,
    );

    let mut v = vhost();
    v.target_agents = TargetAgents::Selector {
        label_selector: "env in (a".into(),
    };
    refused(
        v.validate(),
        "target_agents.label_selector",
        FieldErrorCode::InvalidFormat,
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut v = vhost();
    v.spec.name = String::new();
    v.spec.listen_port = 0;
    v.spec.locations[1].path = "relative".into();
    let f = fields(v.validate());
    assert_eq!(f, ["name", "listen_port", "locations[1].path"]);
}

#[test]
fn custom_directive_allowlist_refuses_dangerous_directives() {
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
        "access_log",
        "alias",
        "root",
        "daemon",
    ] {
        for ctx in [
            validate::DirectiveContext::Http,
            validate::DirectiveContext::Server,
            validate::DirectiveContext::Location,
        ] {
            assert!(
                !validate::custom_directive_allowed(name, ctx),
                "{name} allowed in {ctx:?}"
            );
        }
    }
    assert!(validate::custom_directive_allowed(
        "client_max_body_size",
        validate::DirectiveContext::Location
    ));
    assert!(!validate::custom_directive_allowed(
        "server_names_hash_bucket_size",
        validate::DirectiveContext::Location
    ));
}

#[test]
fn upstream_errors_name_the_field() {
    let mut u = upstream();
    u.servers[1].address = "10.0.0.1:99999".into();
    refused(
        u.validate(),
        "servers[1].address",
        FieldErrorCode::InvalidFormat,
    );

    let mut u = upstream();
    u.servers[0].weight = 0;
    refused(
        u.validate(),
        "servers[0].weight",
        FieldErrorCode::OutOfRange,
    );

    let mut u = upstream();
    u.servers.clear();
    refused(u.validate(), "servers", FieldErrorCode::Required);

    let mut u = upstream();
    u.name = "web backend".into();
    refused(u.validate(), "name", FieldErrorCode::InvalidFormat);

    let mut u = upstream();
    u.algorithm = LoadBalanceAlgorithm::IpHash;
    refused(
        u.validate(),
        "servers[2].backup",
        FieldErrorCode::NotAllowed,
    );

    let mut u = upstream();
    u.health_check.as_mut().unwrap().timeout = 60;
    refused(
        u.validate(),
        "health_check.timeout",
        FieldErrorCode::OutOfRange,
    );
}

#[test]
fn upstream_addresses() {
    for ok in [
        "10.0.1.30:8080",
        "backend.internal:80",
        "backend",
        "[::1]:8080",
        "[2001:db8::1]",
        "unix:/run/app.sock",
    ] {
        let mut e = ValidationErrors::default();
        validate::upstream_address(&mut e, "a", ok);
        assert!(e.is_empty(), "{ok}: {e}");
    }
    for bad in [
        "",
        "::1:80",
        "[::1",
        "host:0",
        "host:80x",
        "unix:relative",
        "unix:/a/../b",
        "a b:80",
        "h;:80",
        "-bad-:80",
    ] {
        let mut e = ValidationErrors::default();
        validate::upstream_address(&mut e, "a", bad);
        assert!(!e.is_empty(), "{bad:?} accepted");
    }
}

#[test]
fn server_names() {
    for ok in [
        "example.com",
        "www.example.com example.com",
        "*.example.com",
        ".example.com",
        "example.*",
        "_",
        "~^(?P<sub>.+)\\.example\\.net$",
        "192.168.1.1",
        "localhost",
    ] {
        let mut e = ValidationErrors::default();
        validate::server_names(&mut e, "server_name", ok);
        assert!(e.is_empty(), "{ok}: {e}");
    }
    for bad in [
        "",
        "   ",
        "exa mple.com;",
        "*.",
        "ex*ample.com",
        "a..b",
        "-a.com",
        "~(unclosed",
        "quo\"te.com",
        "{x}.com",
        "a.com#",
    ] {
        let mut e = ValidationErrors::default();
        validate::server_names(&mut e, "server_name", bad);
        assert!(!e.is_empty(), "{bad:?} accepted");
    }
}

#[test]
fn slugs_emails_labels() {
    let check = |f: fn(&mut ValidationErrors, &str, &str), s: &str| {
        let mut e = ValidationErrors::default();
        f(&mut e, "x", s);
        e.is_empty()
    };
    assert!(check(validate::slug, "acme-corp"));
    for bad in ["", "Acme", "-a", "a-", "a_b", "a b", &"a".repeat(64)] {
        assert!(!check(validate::slug, bad), "slug {bad:?}");
    }
    assert!(check(validate::email, "user@example.com"));
    assert!(check(validate::email, "first.last+tag@sub.example.org"));
    for bad in [
        "",
        "user",
        "@example.com",
        "user@",
        "user@localhost",
        "a@b@c.com",
        "us er@example.com",
        "user@exa_mple.com",
        "a..b@example.com",
    ] {
        assert!(!check(validate::email, bad), "email {bad:?}");
    }
    let mut labels = Labels::new();
    labels.insert("env".into(), "production".into());
    labels.insert("example.com/tier".into(), "web".into());
    labels.insert("empty".into(), String::new());
    let mut e = ValidationErrors::default();
    validate::labels(&mut e, "labels", &labels);
    assert!(e.is_empty(), "{e}");
    let mut bad = Labels::new();
    bad.insert("env".into(), "prod uction".into());
    bad.insert("-x".into(), "1".into());
    let mut e = ValidationErrors::default();
    validate::labels(&mut e, "labels", &bad);
    assert_eq!(e.errors.len(), 2);
    assert!(e.errors.iter().all(|e| e.field.starts_with("labels.")));
}

#[test]
fn pagination_bounds() {
    use nxmesh_core::pagination::PageParams;
    assert!(PageParams::default().validate().is_ok());
    assert_eq!(
        PageParams {
            page: 0,
            per_page: 20
        }
        .validate()
        .unwrap_err()
        .field,
        "page"
    );
    assert_eq!(
        PageParams {
            page: 1,
            per_page: 101
        }
        .validate()
        .unwrap_err()
        .field,
        "per_page"
    );
    assert_eq!(
        PageParams {
            page: 3,
            per_page: 20
        }
        .offset(),
        40
    );
    assert!(
        PageParams {
            page: 1,
            per_page: 20
        }
        .meta(21)
        .has_next()
    );
    assert!(
        !PageParams {
            page: 2,
            per_page: 20
        }
        .meta(40)
        .has_next()
    );
}

#[test]
fn certificates() {
    let mut c: CreateCertificate =
        serde_json::from_str(include_str!("spec_examples/certificate_request.json")).unwrap();
    assert!(c.validate().is_ok());
    c.domain = "*.example.com".into();
    assert!(c.validate().is_ok() && c.is_wildcard());
    c.domain = "*.*.example.com".into();
    refused(c.validate(), "domain", FieldErrorCode::InvalidFormat);
    c.domain = "example.com".into();
    c.provider = CertificateProvider::Custom;
    refused(c.validate(), "certificate_pem", FieldErrorCode::Required);
    c.certificate_pem = Some("not pem".into());
    refused(
        c.validate(),
        "certificate_pem",
        FieldErrorCode::InvalidFormat,
    );
}

#[test]
fn unknown_enum_spellings_are_clear_errors() {
    let e = serde_json::from_str::<CreateUpstream>(
        r#"{"name":"a","algorithm":"fastest","servers":[]}"#,
    )
    .unwrap_err();
    assert!(e.to_string().contains("unknown variant `fastest`"), "{e}");
    let e = "everything".parse::<AgentStateFilter>().unwrap_err();
    assert!(
        e.to_string().contains("online, offline, degraded, all"),
        "{e}"
    );
}

/// Strings that hold at least one control character (C0, DEL or C1).
fn with_control() -> impl Strategy<Value = String> {
    (
        ".{0,40}",
        prop::char::ranges(vec!['\0'..='\x1f', '\x7f'..='\u{9f}'].into()),
        ".{0,40}",
    )
        .prop_map(|(a, c, b)| format!("{a}{c}{b}"))
}

/// Every string-taking validator, applied to `s`, returns whether it
/// accepted it.
fn validators_accepting(s: &str) -> Vec<&'static str> {
    type V = fn(&mut ValidationErrors, &str, &str);
    let plain: [(&str, V); 16] = [
        ("name", validate::name),
        ("slug", validate::slug),
        ("email", validate::email),
        ("server_names", validate::server_names),
        ("certificate_domain", validate::certificate_domain),
        ("regex", validate::regex),
        ("header_name", validate::header_name),
        ("header_value", validate::header_value),
        ("rewrite_replacement", validate::rewrite_replacement),
        ("abs_path", validate::abs_path),
        ("index_files", validate::index_files),
        ("proxy_url", validate::proxy_url),
        ("upstream_address", validate::upstream_address),
        ("upstream_name", validate::upstream_name),
        ("location_path", |e, f, s| {
            validate::location_path(e, f, s, None)
        }),
        ("location_regex", |e, f, s| {
            validate::location_path(e, f, s, Some(LocationModifier::Regex))
        }),
    ];
    let mut accepted = Vec::new();
    for (name, f) in plain {
        let mut e = ValidationErrors::default();
        f(&mut e, "f", s);
        if e.is_empty() {
            accepted.push(name);
        }
    }
    let mut e = ValidationErrors::default();
    validate::plain_text(&mut e, "f", s, 10_000);
    if e.is_empty() {
        accepted.push("plain_text");
    }
    let mut map = BTreeMap::new();
    map.insert("client_max_body_size".to_owned(), s.to_owned());
    let mut e = ValidationErrors::default();
    validate::custom_directives(&mut e, "f", &map, validate::DirectiveContext::Server);
    if e.is_empty() {
        accepted.push("custom_directives");
    }
    let mut labels = Labels::new();
    labels.insert("k".into(), s.to_owned());
    labels.insert(s.to_owned(), "v".into());
    let mut e = ValidationErrors::default();
    validate::labels(&mut e, "labels", &labels);
    if e.is_empty() {
        accepted.push("labels");
    }
    accepted
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn validators_never_accept_control_characters(s in with_control()) {
        let accepted = validators_accepting(&s);
        prop_assert!(accepted.is_empty(), "{s:?} accepted by {accepted:?}");
    }

    #[test]
    fn validators_never_panic(s in any::<String>()) {
        validators_accepting(&s);
        let _ = s.parse::<LabelSelector>();
    }

    #[test]
    fn selectors_print_and_reparse(sel in selector()) {
        let text = sel.to_string();
        let again: LabelSelector = text.parse().map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        prop_assert_eq!(&again, &sel);
        prop_assert_eq!(again.to_string(), text);
    }

    #[test]
    fn selector_matching_agrees_with_its_definition(sel in selector(), labels in label_map()) {
        use nxmesh_core::selector::Requirement as R;
        let expected = sel.requirements.iter().all(|r| match r {
            R::Eq(k, v) => labels.get(k) == Some(v),
            R::NotEq(k, v) => labels.get(k) != Some(v),
            R::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            R::NotIn(k, vs) => !labels.get(k).is_some_and(|v| vs.contains(v)),
            R::Exists(k) => labels.contains_key(k),
            R::NotExists(k) => !labels.contains_key(k),
        });
        prop_assert_eq!(sel.matches(&labels), expected);
    }
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-c]",
        "[a-z][a-z0-9._-]{0,8}[a-z0-9]",
        "ex\\.com/[a-z]{1,4}"
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-c]",
        "[a-z0-9][a-z0-9._-]{0,8}[a-z0-9]"
    ]
}

fn label_map() -> impl Strategy<Value = Labels> {
    prop::collection::btree_map(key(), value(), 0..5)
}

fn selector() -> impl Strategy<Value = LabelSelector> {
    use nxmesh_core::selector::Requirement as R;
    let req = prop_oneof![
        (key(), value()).prop_map(|(k, v)| R::Eq(k, v)),
        (key(), value()).prop_map(|(k, v)| R::NotEq(k, v)),
        (key(), prop::collection::btree_set(value(), 1..4)).prop_map(|(k, v)| R::In(k, v)),
        (key(), prop::collection::btree_set(value(), 1..4)).prop_map(|(k, v)| R::NotIn(k, v)),
        key().prop_map(R::Exists),
        key().prop_map(R::NotExists),
    ];
    prop::collection::vec(req, 0..6).prop_map(|requirements| LabelSelector { requirements })
}
