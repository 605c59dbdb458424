//! The corpus (`testdata/corpus`): every file parses, expected crossplane
//! JSON is matched (with listed exceptions), formatting round-trips.

use std::collections::BTreeMap;
use std::path::Path;

use expect_test::expect;
use nxmesh_core::parser::{self, JsonOptions, ParseOptions, SourceArena};
use serde_json::Value;

use super::{corpus_configs, corpus_dir, load, roundtrip};

/// Every corpus file parses as a main file (with includes, recovery on):
/// no panic, and the status and errors of each are pinned here.
#[test]
fn every_file_parses() {
    let dir = corpus_dir();
    let mut report = String::new();
    for rel in corpus_configs() {
        let case: std::path::PathBuf = rel.iter().take(2).collect();
        let case = case.as_path();
        let source = load(&dir.join(case), "");
        let main = format!("/{}", rel.strip_prefix(case).unwrap().to_str().unwrap());
        let arena = SourceArena::new();
        let tree = parser::parse_tree(&arena, &source, &main, &ParseOptions::default()).unwrap();
        let errors: Vec<_> = tree.errors().map(|e| e.to_string()).collect();
        if errors.is_empty() {
            report.push_str(&format!(
                "{}: ok, {} file(s)\n",
                rel.display(),
                tree.files.len()
            ));
        } else {
            report.push_str(&format!("{}: {}\n", rel.display(), errors.join("; ")));
        }
    }
    expect![[r#"
        crossplane/bad-args/nginx.conf: invalid number of arguments in "user" directive in /nginx.conf:1
        crossplane/comments-between-args/nginx.conf: ok, 1 file(s)
        crossplane/directive-with-space/nginx.conf: ok, 1 file(s)
        crossplane/empty-value-map/nginx.conf: ok, 1 file(s)
        crossplane/includes-globbed/http.conf: ok, 5 file(s)
        crossplane/includes-globbed/locations/location1.conf: "location" directive is not allowed here in /locations/location1.conf:1
        crossplane/includes-globbed/locations/location2.conf: "location" directive is not allowed here in /locations/location2.conf:1
        crossplane/includes-globbed/nginx.conf: ok, 6 file(s)
        crossplane/includes-globbed/servers/locations/not-included.conf: unexpected end of file, expecting ";" or "}" in /servers/locations/not-included.conf:3
        crossplane/includes-globbed/servers/server1.conf: "server" directive is not allowed here in /servers/server1.conf:1; unexpected end of file, expecting ";" or "}" in /servers/locations/not-included.conf:3
        crossplane/includes-globbed/servers/server2.conf: "server" directive is not allowed here in /servers/server2.conf:1; unexpected end of file, expecting ";" or "}" in /servers/locations/not-included.conf:3
        crossplane/includes-regular/conf.d/bar.conf: unexpected end of file, expecting ";" or "}" in /conf.d/bar.conf:3
        crossplane/includes-regular/conf.d/foo.conf: unexpected end of file, expecting ";" or "}" in /conf.d/foo.conf:3
        crossplane/includes-regular/conf.d/server.conf: "server" directive is not allowed here in /conf.d/server.conf:1; unexpected end of file, expecting ";" or "}" in /conf.d/foo.conf:3; unexpected end of file, expecting ";" or "}" in /conf.d/bar.conf:3
        crossplane/includes-regular/foo.conf: "location" directive is not allowed here in /foo.conf:1
        crossplane/includes-regular/nginx.conf: open() "/bar.conf" failed (2: No such file or directory) in /conf.d/server.conf:5
        crossplane/lua-block-larger/nginx.conf: "content_by_lua_block" directive is not allowed here in /nginx.conf:2
        crossplane/lua-block-simple/nginx.conf: "log_by_lua_block" directive is not allowed here in /nginx.conf:36
        crossplane/lua-block-tricky/nginx.conf: ok, 1 file(s)
        crossplane/messy/nginx.conf: ok, 1 file(s)
        crossplane/missing-semicolon/broken-above.conf: unexpected "}" in /broken-above.conf:5
        crossplane/missing-semicolon/broken-below.conf: unexpected "}" in /broken-below.conf:8
        crossplane/non-unicode/nginx.conf: ok, 1 file(s)
        crossplane/quote-behavior/nginx.conf: unexpected "-" in /nginx.conf:1
        crossplane/quoted-right-brace/nginx.conf: ok, 1 file(s)
        crossplane/russian-text/nginx.conf: ok, 1 file(s)
        crossplane/simple/nginx.conf: ok, 1 file(s)
        crossplane/spelling-mistake/nginx.conf: ok, 1 file(s)
        crossplane/with-comments/nginx.conf: ok, 1 file(s)
        go-crossplane/bad-args/nginx.conf: invalid number of arguments in "user" directive in /nginx.conf:1
        go-crossplane/braces/extra-brace.conf: unexpected "}" in /extra-brace.conf:11
        go-crossplane/braces/missing-brace.conf: unexpected end of file, expecting "}" in /missing-brace.conf:23
        go-crossplane/broken1/nginx.conf: ok, 1 file(s)
        go-crossplane/broken1/nginx2.conf: ok, 1 file(s)
        go-crossplane/comments-between-args/nginx.conf: ok, 1 file(s)
        go-crossplane/comments-between-args-disable-parse/nginx.conf: ok, 1 file(s)
        go-crossplane/directive-with-space/nginx.conf: ok, 1 file(s)
        go-crossplane/emptiness/nginx.conf: ok, 1 file(s)
        go-crossplane/empty-braces/nginx.conf: ok, 1 file(s)
        go-crossplane/empty-config/nginx.conf: ok, 1 file(s)
        go-crossplane/empty-value-map/nginx.conf: ok, 1 file(s)
        go-crossplane/geo/nginx.conf: ok, 1 file(s)
        go-crossplane/geoip2/nginx.conf: ok, 1 file(s)
        go-crossplane/if-check/nginx.conf: ok, 1 file(s)
        go-crossplane/if-expr/empty-parens.conf: ok, 1 file(s)
        go-crossplane/if-expr/empty-spaced-parens.conf: ok, 1 file(s)
        go-crossplane/if-expr/missing-closing-paren.conf: ok, 1 file(s)
        go-crossplane/if-expr/missing-opening-paren.conf: ok, 1 file(s)
        go-crossplane/if-expr/nginx.conf: ok, 1 file(s)
        go-crossplane/if-expr/no-parens.conf: ok, 1 file(s)
        go-crossplane/if-expr/spaced-parens.conf: ok, 1 file(s)
        go-crossplane/includes-cycle/invalid/location1.conf: "location" directive is not allowed here in /invalid/location1.conf:1; include cycle: "/invalid/location1.conf" -> "/invalid/location2.conf" -> "/invalid/location1.conf" in /invalid/location2.conf:2
        go-crossplane/includes-cycle/invalid/location2.conf: "location" directive is not allowed here in /invalid/location2.conf:1; include cycle: "/invalid/location2.conf" -> "/invalid/location1.conf" -> "/invalid/location2.conf" in /invalid/location1.conf:2
        go-crossplane/includes-cycle/invalid/nginx.conf: include cycle: "/invalid/location1.conf" -> "/invalid/location2.conf" -> "/invalid/location1.conf" in /invalid/location2.conf:2
        go-crossplane/includes-cycle/valid/location1.conf: "location" directive is not allowed here in /valid/location1.conf:1
        go-crossplane/includes-cycle/valid/location2.conf: "location" directive is not allowed here in /valid/location2.conf:1
        go-crossplane/includes-cycle/valid/nginx.conf: ok, 3 file(s)
        go-crossplane/includes-globbed/http.conf: ok, 5 file(s)
        go-crossplane/includes-globbed/locations/location1.conf: "location" directive is not allowed here in /locations/location1.conf:1
        go-crossplane/includes-globbed/locations/location2.conf: "location" directive is not allowed here in /locations/location2.conf:1
        go-crossplane/includes-globbed/nginx.conf: ok, 6 file(s)
        go-crossplane/includes-globbed/servers/locations/not-included.conf: unexpected end of file, expecting ";" or "}" in /servers/locations/not-included.conf:3
        go-crossplane/includes-globbed/servers/server1.conf: "server" directive is not allowed here in /servers/server1.conf:1; unexpected end of file, expecting ";" or "}" in /servers/locations/not-included.conf:3
        go-crossplane/includes-globbed/servers/server2.conf: "server" directive is not allowed here in /servers/server2.conf:1; unexpected end of file, expecting ";" or "}" in /servers/locations/not-included.conf:3
        go-crossplane/includes-regular/conf.d/bar.conf: unexpected end of file, expecting ";" or "}" in /conf.d/bar.conf:3
        go-crossplane/includes-regular/conf.d/details.conf: "server_tokens" directive is not allowed here in /conf.d/details.conf:4; "tcp_nodelay" directive is not allowed here in /conf.d/details.conf:5
        go-crossplane/includes-regular/conf.d/foo.conf: unexpected end of file, expecting ";" or "}" in /conf.d/foo.conf:3
        go-crossplane/includes-regular/conf.d/http-inner.conf: "allow" directive is not allowed here in /conf.d/http-inner.conf:4; "deny" directive is not allowed here in /conf.d/http-inner.conf:5; "expires" directive is not allowed here in /conf.d/http-inner.conf:8
        go-crossplane/includes-regular/conf.d/server.conf: "server" directive is not allowed here in /conf.d/server.conf:1; unexpected end of file, expecting ";" or "}" in /conf.d/foo.conf:3; unexpected end of file, expecting ";" or "}" in /conf.d/bar.conf:3
        go-crossplane/includes-regular/foo.conf: "location" directive is not allowed here in /foo.conf:1
        go-crossplane/includes-regular/nginx.conf: open() "/bar.conf" failed (2: No such file or directory) in /conf.d/server.conf:5
        go-crossplane/invalid-map/nginx.conf: unexpected "{" in /nginx.conf:7
        go-crossplane/large-config/nginx.conf: ok, 1 file(s)
        go-crossplane/limit-req-zone/nginx.conf: open() "/etc/nginx/mime.types" failed (2: No such file or directory) in /nginx.conf:12; invalid number of arguments in "limit_req_zone" directive in /nginx.conf:15
        go-crossplane/lua-basic/nginx.conf: ok, 1 file(s)
        go-crossplane/lua-block-larger/nginx.conf: ok, 1 file(s)
        go-crossplane/lua-block-simple/nginx.conf: ok, 1 file(s)
        go-crossplane/lua-block-simple/simple.conf: "log_by_lua_block" directive is not allowed here in /simple.conf:37
        go-crossplane/lua-block-tricky/nginx.conf: ok, 1 file(s)
        go-crossplane/messy/nginx.conf: ok, 1 file(s)
        go-crossplane/messy/off: ok, 1 file(s)
        go-crossplane/missing-semicolon/broken-above.conf: unexpected "}" in /broken-above.conf:5
        go-crossplane/missing-semicolon/broken-below.conf: unexpected "}" in /broken-below.conf:8
        go-crossplane/missing-semicolon-above/nginx.conf: unexpected "}" in /nginx.conf:5
        go-crossplane/missing-semicolon-below/nginx.conf: unexpected "}" in /nginx.conf:8
        go-crossplane/nap-waf-v4/nginx.conf: open() "/etc/nginx/mime.types" failed (2: No such file or directory) in /nginx.conf:13
        go-crossplane/nap-waf-v5/nginx.conf: open() "/etc/nginx/mime.types" failed (2: No such file or directory) in /nginx.conf:13
        go-crossplane/oidc/nginx.conf: ok, 1 file(s)
        go-crossplane/premature-eof/nginx.conf: unexpected end of file, expecting ";" or "}" in /nginx.conf:3
        go-crossplane/quote-behavior/nginx.conf: unexpected "-" in /nginx.conf:1
        go-crossplane/quoted-right-brace/nginx.conf: ok, 1 file(s)
        go-crossplane/returns/nginx.conf: ok, 1 file(s)
        go-crossplane/russian-text/nginx.conf: ok, 1 file(s)
        go-crossplane/simple/nginx.conf: ok, 1 file(s)
        go-crossplane/simple-variable-with-braces/nginx.conf: ok, 1 file(s)
        go-crossplane/spelling-mistake/nginx.conf: ok, 1 file(s)
        go-crossplane/types/nginx.conf: ok, 1 file(s)
        go-crossplane/ubuntu-default/mime.types: "types" directive is not allowed here in /mime.types:2
        go-crossplane/ubuntu-default/modules-enabled/50-mod-http-image-filter.conf: ok, 1 file(s)
        go-crossplane/ubuntu-default/modules-enabled/50-mod-http-xslt-filter.conf: ok, 1 file(s)
        go-crossplane/ubuntu-default/nginx.conf: ok, 5 file(s)
        go-crossplane/ubuntu-default/sites-enabled/default: "server" directive is not allowed here in /sites-enabled/default:21
        go-crossplane/upstream_resolver_directive/multiple_resolvers.conf: ok, 1 file(s)
        go-crossplane/upstream_resolver_directive/multiple_resolvers.conf.golden: ok, 1 file(s)
        go-crossplane/upstream_resolver_directive/multiple_resolvers_with_ports.conf: ok, 1 file(s)
        go-crossplane/upstream_resolver_directive/multiple_resolvers_with_ports.conf.golden: ok, 1 file(s)
        go-crossplane/upstream_resolver_directive/simple.conf: ok, 1 file(s)
        go-crossplane/upstream_resolver_directive/simple.conf.golden: ok, 1 file(s)
        go-crossplane/with-comments/nginx.conf: ok, 1 file(s)
    "#]].assert_eq(&report);
}

/// For every corpus file, formatting then re-parsing gives the same tree.
#[test]
fn every_file_round_trips() {
    let dir = corpus_dir();
    let mut report = String::new();
    for rel in corpus_configs() {
        let bytes = std::fs::read(dir.join(&rel)).unwrap();
        let text = parser::decode(&bytes);
        if let Err(e) = roundtrip(&text) {
            // Files nginx rejects cannot be formatted; list them.
            assert!(!e.contains("round trip"), "{}: {e}", rel.display());
            report.push_str(&format!("{}: {}\n", rel.display(), e));
        }
    }
    expect![[r#"
        crossplane/includes-globbed/servers/locations/not-included.conf: unexpected end of file, expecting ";" or "}" in t.conf:3
        crossplane/includes-regular/conf.d/bar.conf: unexpected end of file, expecting ";" or "}" in t.conf:3
        crossplane/includes-regular/conf.d/foo.conf: unexpected end of file, expecting ";" or "}" in t.conf:3
        crossplane/missing-semicolon/broken-above.conf: unexpected "}" in t.conf:5
        crossplane/missing-semicolon/broken-below.conf: unexpected "}" in t.conf:8
        crossplane/quote-behavior/nginx.conf: unexpected "-" in t.conf:1
        go-crossplane/braces/extra-brace.conf: unexpected "}" in t.conf:11
        go-crossplane/braces/missing-brace.conf: unexpected end of file, expecting "}" in t.conf:23
        go-crossplane/includes-globbed/servers/locations/not-included.conf: unexpected end of file, expecting ";" or "}" in t.conf:3
        go-crossplane/includes-regular/conf.d/bar.conf: unexpected end of file, expecting ";" or "}" in t.conf:3
        go-crossplane/includes-regular/conf.d/foo.conf: unexpected end of file, expecting ";" or "}" in t.conf:3
        go-crossplane/missing-semicolon/broken-above.conf: unexpected "}" in t.conf:5
        go-crossplane/missing-semicolon/broken-below.conf: unexpected "}" in t.conf:8
        go-crossplane/missing-semicolon-above/nginx.conf: unexpected "}" in t.conf:5
        go-crossplane/missing-semicolon-below/nginx.conf: unexpected "}" in t.conf:8
        go-crossplane/premature-eof/nginx.conf: unexpected end of file, expecting ";" or "}" in t.conf:3
        go-crossplane/quote-behavior/nginx.conf: unexpected "-" in t.conf:1
    "#]].assert_eq(&report);
}

/// Expected payloads that differ from ours because crossplane (or the Go
/// port that wrote the fixture) disagrees with nginx, or the fixture was
/// written for another version of the configuration. Each entry: fixture,
/// reason.
const EXCEPTIONS: &[(&str, &str)] = &[
    (
        "go-crossplane/bad-args/xp.json",
        "written with argument checks off; nginx rejects `user;` (invalid number of arguments)",
    ),
    (
        "go-crossplane/directive-with-space/nginx.json",
        "stale fixture: written before the `charset_map` block was added to nginx.conf",
    ),
    (
        "go-crossplane/directive-with-space/xp.json",
        "stale fixture: written before the `charset_map` block was added to nginx.conf",
    ),
    (
        "go-crossplane/includes-globbed/locations/location1.json",
        "crossplane drops a rejected `location` but parses its block as siblings (hence a \
         second error for `return`); we drop the rejected block with it",
    ),
    (
        "go-crossplane/includes-globbed/locations/location2.json",
        "same as location1.json",
    ),
    (
        "go-crossplane/includes-globbed/servers/server1.json",
        "crossplane spills the rejected `server` block into the main context (an error for \
         `listen`, the `include` kept); we drop the block; and see not-included.json",
    ),
    (
        "go-crossplane/includes-globbed/servers/server2.json",
        "same as server1.json",
    ),
    (
        "go-crossplane/includes-globbed/servers/locations/not-included.json",
        "crossplane's EOF bug (issue 114) reports an empty error with line null for a last \
         statement without `;`; nginx: unexpected end of file, expecting \";\" or \"}\"",
    ),
    (
        "go-crossplane/includes-regular/nginx.json",
        "stale fixture: written for other versions of nginx.conf and conf.d/server.conf; \
         its include error is Python's `[Errno 2]` text, ours is nginx's `open() ... failed`",
    ),
    (
        "go-crossplane/includes-regular/xp.json",
        "same as includes-regular/nginx.json",
    ),
    (
        "go-crossplane/lua-block-larger/nginx.json",
        "stale fixture: written when nginx.conf had the typo `ocal data` (now `local data`)",
    ),
    (
        "go-crossplane/lua-block-larger/xp.json",
        "same as lua-block-larger/nginx.json",
    ),
    (
        "go-crossplane/lua-block-tricky/xp.json",
        "written without the Lua lexer: the Go port without its lua extension swallows two \
         `*_by_lua_block` directives into one bogus directive name",
    ),
    (
        "go-crossplane/messy/nginx.json",
        "crossplane glues `/abc/${uri} /abc/${uri}.html` into one word (nginx: two) and \
         keeps a comment going past an escaped newline",
    ),
    (
        "go-crossplane/missing-semicolon/broken-above.json",
        "`proxy_pass x }`: nginx stops at the `}` with unexpected \"}\" (line 5); crossplane \
         reports the directive as not terminated by \";\" (line 4)",
    ),
    (
        "go-crossplane/missing-semicolon/broken-below.json",
        "same as broken-above.json",
    ),
    (
        "go-crossplane/quote-behavior/nginx.json",
        "nginx rejects a word that goes on after its closing quote (`\"left\"-quote`: \
         unexpected \"-\"); crossplane splits it into two words",
    ),
    (
        "go-crossplane/quote-behavior/xp.json",
        "same as quote-behavior/nginx.json",
    ),
    (
        "go-crossplane/with-comments/nginx.json",
        "stale fixture: written for a version of nginx.conf with a second `server`",
    ),
    (
        "go-crossplane/with-comments/xp.json",
        "same as with-comments/nginx.json",
    ),
];

/// Drops every empty `block`. Applied to our payload only for fixtures that
/// never contain `"block": []`: those were written by the Go port, whose
/// `Block` field is `omitempty`, while crossplane 0.5.8 (and we) emit
/// `"block": []` for `events {}`.
fn drop_empty_blocks(value: &mut Value) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(drop_empty_blocks),
        Value::Object(map) => {
            if map
                .get("block")
                .is_some_and(|b| b.as_array().is_some_and(|b| b.is_empty()))
            {
                map.remove("block");
            }
            map.values_mut().for_each(drop_empty_blocks);
        }
        _ => {}
    }
}

fn options_for(expected: &Value) -> JsonOptions {
    let text = expected.to_string();
    JsonOptions {
        include_comments: text.contains(r##""directive":"#""##),
        combine: false,
        single_file: text.contains(r#""directive":"include""#) && !text.contains(r#""includes""#),
    }
}

/// Runs our parser the way the fixture was produced and returns our payload.
fn ours(case_dir: &Path, main_rel: &str, expected: &Value) -> Value {
    let first = expected["config"][0]["file"].as_str().unwrap();
    let prefix = first.strip_suffix(&format!("/{main_rel}")).unwrap_or(first);
    let source = load(case_dir, prefix);
    let json_opts = options_for(expected);
    let opts = ParseOptions {
        single_file: json_opts.single_file,
        ..ParseOptions::default()
    };
    let arena = SourceArena::new();
    let main = format!("{prefix}/{main_rel}");
    let tree = parser::parse_tree(&arena, &source, &main, &opts).unwrap();
    serde_json::to_value(parser::payload(&tree, json_opts)).unwrap()
}

#[test]
fn expected_crossplane_json() {
    let dir = corpus_dir();
    let exceptions: BTreeMap<&str, &str> = EXCEPTIONS.iter().copied().collect();
    let mut mismatched = Vec::new();
    let mut matched = 0;
    for rel in super::walk(&dir) {
        let name = rel.to_str().unwrap();
        if !name.ends_with(".json") || rel.components().count() < 3 {
            continue;
        }
        let case = rel.iter().take(2).collect::<std::path::PathBuf>();
        let stem = rel.file_stem().unwrap().to_str().unwrap();
        let conf = if stem == "xp" { "nginx" } else { stem };
        let main_rel = rel
            .strip_prefix(&case)
            .unwrap()
            .with_file_name(format!("{conf}.conf"));
        let expected: Value =
            serde_json::from_slice(&std::fs::read(dir.join(&rel)).unwrap()).unwrap();
        let mut actual = ours(&dir.join(&case), main_rel.to_str().unwrap(), &expected);
        if !expected.to_string().contains(r#""block":[]"#) {
            drop_empty_blocks(&mut actual);
        }
        if expected == actual {
            matched += 1;
            assert!(
                !exceptions.contains_key(name),
                "{name} matches: drop its exception"
            );
        } else {
            if !exceptions.contains_key(name) && std::env::var_os("SHOW_JSON").is_some() {
                eprintln!(
                    "{name}:\nexpected {}\nactual   {}",
                    serde_json::to_string(&expected).unwrap(),
                    serde_json::to_string(&actual).unwrap()
                );
            }
            mismatched.push(name.to_owned());
        }
    }
    let unlisted: Vec<_> = mismatched
        .iter()
        .filter(|n| !exceptions.contains_key(n.as_str()))
        .collect();
    assert!(
        unlisted.is_empty(),
        "unexpected mismatches (SHOW_JSON=1 shows them): {unlisted:?}"
    );
    assert_eq!(mismatched.len(), exceptions.len(), "stale exceptions");
    assert!(matched > 0);
}
