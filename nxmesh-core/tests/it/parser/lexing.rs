//! Snapshot tests of tokenizing, grammar, error wording and analysis.

use expect_test::{Expect, expect};
use nxmesh_core::parser::{self, DirectiveTable, JsonOptions, ParseOptions, table};

use super::{roundtrip, shape};

/// Parses `text` syntax-only and snapshots its shape (or error).
fn check(text: &str, expect: Expect) {
    let actual = match roundtrip(text) {
        Ok(shape) => shape,
        Err(e) => format!("error: {e}\n"),
    };
    expect.assert_eq(&actual);
}

/// Parses `text` with analysis and recovery; snapshots errors and shape.
fn check_errors(text: &str, opts: &ParseOptions, expect: Expect) {
    let file = parser::parse_str("t.conf", text, opts).unwrap();
    let mut actual = String::new();
    for e in &file.errors {
        actual.push_str(&format!("{e}\n"));
    }
    actual.push_str(&shape(&file.nodes));
    expect.assert_eq(&actual);
}

#[test]
fn words_and_quotes() {
    check(
        "a b 'c d' \"e\\\"f\" g\\ h;\n",
        expect![[r#"
            "a" "b" s"c d" d"e\"f" "g\\ h";
        "#]],
    );
    // Escapes are processed in every word; other pairs are kept.
    check(
        r#"x "a\\b\tc\$d" a\"b \. \n;"#,
        expect![[r#"
            "x" d"a\\b\tc\\$d" "a\"b" "\\." "\n";
        "#]],
    );
    // `}` and `#` are special only at the start of a word.
    check(
        "return 200 a}b#c;\n",
        expect![[r#"
            "return" "200" "a}b#c";
        "#]],
    );
    // `${var}` keeps its braces inside a word.
    check(
        "try_files /a/${uri} /b/${uri}.html =404;",
        expect![[r#"
            "try_files" "/a/${uri}" "/b/${uri}.html" "=404";
        "#]],
    );
    // A closing quote may be followed by `)`, which starts a new word.
    check(
        "if ($a = \"x\") { return 404; }",
        expect![[r#"
            "if" "($a" "=" d"x" ")" {
              "return" "404";
            }
        "#]],
    );
    check(
        "return 200 \"x\"y;",
        expect![[r#"
            error: unexpected "y" in t.conf:1
        "#]],
    );
}

#[test]
fn comments() {
    check(
        "# top\nlisten 80 # between\n  81; # after\n",
        expect![[r##"
            #" top"
            "listen" "80" "81" #" between";
            #" after"
        "##]],
    );
}

#[test]
fn syntax_errors() {
    check(
        "http {",
        expect![[r#"
            error: unexpected end of file, expecting "}" in t.conf:1
        "#]],
    );
    check(
        "user nobody",
        expect![[r#"
            error: unexpected end of file, expecting ";" or "}" in t.conf:1
        "#]],
    );
    check(
        "}",
        expect![[r#"
            error: unexpected "}" in t.conf:1
        "#]],
    );
    check(
        "a b }",
        expect![[r#"
            error: unexpected "}" in t.conf:1
        "#]],
    );
    check(
        "\n;",
        expect![[r#"
            error: unexpected ";" in t.conf:2
        "#]],
    );
    check(
        "user \"abc;\n",
        expect![[r#"
            error: unexpected end of file, expecting ";" or "}" in t.conf:2
        "#]],
    );
    let long = format!("return 200 {};", "x".repeat(4096));
    check(
        &long,
        expect![[r#"
            error: too long parameter "xxxxxxxxxx..." started in t.conf:1
        "#]],
    );
    let long = format!("return 200 \"{}", "x".repeat(5000));
    check(
        &long,
        expect![[r#"
            error: too long parameter, probably missing terminating """ character in t.conf:1
        "#]],
    );
    // 4095 bytes is the longest word nginx accepts.
    assert!(roundtrip(&format!("return 200 {};", "x".repeat(4095))).is_ok());
}

#[test]
fn lua_blocks() {
    check(
        r#"content_by_lua_block {
    local s = "}" .. '{' -- } comment
    --[==[ long } comment ]==]
    local t = [[ } ]] .. [=[ ]] } ]=]
    if x then y = { a = 1 } end
}
set_by_lua_block $v{ return 1 }
"#,
        expect![[r#"
            "content_by_lua_block" lua"\n    local s = \"}\" .. '{' -- } comment\n    --[==[ long } comment ]==]\n    local t = [[ } ]] .. [=[ ]] } ]=]\n    if x then y = { a = 1 } end\n";
            "set_by_lua_block" "$v" lua" return 1 ";
        "#]],
    );
}

#[test]
fn analysis() {
    let opts = ParseOptions::default();
    check_errors(
        "user;\nevents { worker_connections 1 2; }\nhttp { listen 80; server { listen 80 { } } }\ngzip maybe;\nhttp { gzip maybe; server { location / { if ($a) { include x; } } } }\n",
        &opts,
        expect![[r#"
            invalid number of arguments in "user" directive in t.conf:1
            invalid number of arguments in "worker_connections" directive in t.conf:2
            "listen" directive is not allowed here in t.conf:3
            directive "listen" is not terminated by ";" in t.conf:3
            "gzip" directive is not allowed here in t.conf:4
            invalid value "maybe" in "gzip" directive, it must be "on" or "off" in t.conf:5
            "events" {
            }
            "http" {
              "server" {
              }
            }
            "http" {
              "server" {
                "location" "/" {
                  "if" "($a)" {
                    "include" "x";
                  }
                }
              }
            }
        "#]],
    );
    // Map-like bodies hold entries, never unknown even in strict mode; a
    // block inside them is an error.
    let strict = ParseOptions {
        strict: true,
        ..ParseOptions::default()
    };
    check_errors(
        "http { map $a $b { default 0; '' 1; x { } } proxy_passs x; types { text/html html; } }",
        &strict,
        expect![[r#"
            unexpected "{" in t.conf:1
            unknown directive "proxy_passs" in t.conf:1
            "http" {
              "map" "$a" "$b" {
                "default" "0";
                "" "1";
              }
              "types" {
                "text/html" "html";
              }
            }
        "#]],
    );
    // Version-dependent: `http2 on` appeared in 1.25.1.
    let old = ParseOptions {
        strict: true,
        table: DirectiveTable::new("1.24.0", false).unwrap(),
        ..ParseOptions::default()
    };
    check_errors(
        "http { http2 on; }",
        &old,
        expect![[r#"
            unknown directive "http2" in t.conf:1
            "http" {
            }
        "#]],
    );
}

#[test]
fn no_recovery_stops_at_first_error() {
    let opts = ParseOptions {
        recover: false,
        ..ParseOptions::default()
    };
    let err = parser::parse_str("t.conf", "user;\nfoo;", &opts).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid number of arguments in \"user\" directive in t.conf:1"
    );
}

#[test]
fn directive_table() {
    expect![[r#"["1.22.1", "1.24.0", "1.26.3", "1.28.3", "1.30.4", "1.31.4"]"#]]
        .assert_eq(&format!("{:?}", table::versions().collect::<Vec<_>>()));
    expect![[r#"["1.26.3", "1.28.3", "1.30.4", "1.31.4"]"#]]
        .assert_eq(&format!("{:?}", table::versions_with("http2")));
    let latest = DirectiveTable::latest();
    let server = latest.get("server").unwrap();
    assert_eq!(server.len(), 5);
    assert!(server[0].allowed_in(table::CTX_HTTP_MAIN));
    assert!(server[0].args & table::BLOCK != 0);
    let include = latest.get("include").unwrap();
    assert!(include[0].allowed_in(table::CTX_HTTP_LIF));
    let lua_blocks = latest.names().filter(|n| table::is_lua_block(n)).count();
    assert_eq!(lua_blocks, 19);
    assert_eq!(
        DirectiveTable::new("1.22.1", false)
            .unwrap()
            .names()
            .count(),
        605
    );
    assert_eq!(
        DirectiveTable::new("1.31.4", false)
            .unwrap()
            .names()
            .count(),
        655
    );
    assert!(DirectiveTable::new("0.1", false).is_none());
}

#[test]
fn quote_reads_back() {
    for value in [
        "plain", "", "a b", "it's", "x\"y", "end\\", "#c", "}x", "a\tb\nc", "${x}", "a;b",
    ] {
        let quoted = parser::quote(value);
        let text = format!("d {quoted};");
        let file = parser::parse_str("t", &text, &super::syntax_only()).unwrap();
        let parser::Node::Directive(d) = &file.nodes[0] else {
            panic!("not a directive: {text}");
        };
        assert_eq!(d.args[0].value(), value, "{text}");
    }
}

#[test]
fn dump_and_includes() {
    let dump = "nginx: the configuration file /etc/nginx/nginx.conf syntax is ok\n\
                # configuration file /etc/nginx/nginx.conf:\n\
                http {\n    include /etc/nginx/conf.d/*.conf;\n    include missing.conf;\n}\n\n\
                # configuration file /etc/nginx/conf.d/a.conf:\n\
                server { listen 80; include /etc/nginx/b.conf; }\n\n\
                # configuration file /etc/nginx/b.conf:\n\
                location / { include /etc/nginx/conf.d/a.conf; }\n\n";
    let (source, main) = parser::MemorySource::from_dump(dump).unwrap();
    assert_eq!(main, "/etc/nginx/nginx.conf");
    let arena = parser::SourceArena::new();
    let tree = parser::parse_tree(&arena, &source, &main, &ParseOptions::default()).unwrap();
    let files: Vec<_> = tree.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        files,
        [
            "/etc/nginx/nginx.conf",
            "/etc/nginx/conf.d/a.conf",
            "/etc/nginx/b.conf"
        ]
    );
    let errors: Vec<String> = tree.errors().map(|e| e.to_string()).collect();
    expect![[r#"
        [
            "open() \"/etc/nginx/missing.conf\" failed (2: No such file or directory) in /etc/nginx/nginx.conf:3",
            "include cycle: \"/etc/nginx/conf.d/a.conf\" -> \"/etc/nginx/b.conf\" -> \"/etc/nginx/conf.d/a.conf\" in /etc/nginx/b.conf:1",
        ]
    "#]]
    .assert_debug_eq(&errors);
    // Combining follows the includes and terminates despite the cycle.
    let json = parser::payload(
        &tree,
        JsonOptions {
            combine: true,
            ..JsonOptions::default()
        },
    );
    assert_eq!(json.config.len(), 1);
    assert_eq!(
        json.config[0].parsed[0].block.as_ref().unwrap()[0].directive,
        "server"
    );
}

#[test]
fn globs() {
    assert!(parser::glob_match("/a/*.conf", "/a/x.conf"));
    assert!(!parser::glob_match("/a/*.conf", "/a/b/x.conf"));
    assert!(!parser::glob_match("/a/*", "/a/.hidden"));
    assert!(parser::glob_match("/a/[a-c]?.c*", "/a/b1.conf"));
    assert!(!parser::glob_match("/a/[!a-c]?.c*", "/a/b1.conf"));
    assert!(parser::glob_match("/a/[]]", "/a/]"));
}
