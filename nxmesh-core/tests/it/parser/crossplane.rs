//! Differential test: crossplane 0.5.8 (PyPI) and our parser on every corpus
//! file, comparing per file the directive names, lines, arguments (in
//! crossplane's escape convention, see `Arg::crossplane`), comments and block
//! structure, plus the status (error texts differ by design: ours are nginx's). The executable comes from `NXMESH_CROSSPLANE`
//! or `<repo>/.venv/bin/crossplane`; without it the test fails under
//! `CI=true` and is skipped with a notice otherwise.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use nxmesh_core::parser::{self, JsonOptions, ParseOptions, SourceArena};
use serde_json::Value;

use super::{corpus_configs, corpus_dir, load};

/// Corpus files on which crossplane and nginx (hence we) disagree, with why.
const DIVERGENCES: &[(&str, &str)] = &[
    (
        "go-crossplane/broken1/nginx.conf",
        "in `${url ;` crossplane keeps reading a `${` variable past the space (word `${url `); nginx ends the word at the space (`${url`)",
    ),
    (
        "go-crossplane/broken1/nginx2.conf",
        "same as go-crossplane/broken1/nginx.conf",
    ),
    (
        "crossplane/quote-behavior/nginx.conf",
        "nginx rejects text after a closing quote (unexpected \"-\"); crossplane splits the word",
    ),
    (
        "go-crossplane/quote-behavior/nginx.conf",
        "same as crossplane/quote-behavior",
    ),
    (
        "crossplane/messy/nginx.conf",
        "crossplane glues `/abc/${uri} /abc/${uri}.html` into one word, and continues a \
         comment past an escaped newline",
    ),
    ("go-crossplane/messy/nginx.conf", "same as crossplane/messy"),
    (
        "crossplane/includes-globbed/servers/server1.conf",
        "crossplane drops a rejected block directive (`server`/`location`/`types` in the main context) but parses its block as siblings; we drop the block with it (and see the EOF bug for included foo/bar/not-included)",
    ),
    (
        "crossplane/includes-globbed/servers/server2.conf",
        "crossplane drops a rejected block directive (`server`/`location`/`types` in the main context) but parses its block as siblings; we drop the block with it (and see the EOF bug for included foo/bar/not-included)",
    ),
    (
        "crossplane/includes-regular/conf.d/server.conf",
        "crossplane drops a rejected block directive (`server`/`location`/`types` in the main context) but parses its block as siblings; we drop the block with it (and see the EOF bug for included foo/bar/not-included)",
    ),
    (
        "go-crossplane/includes-globbed/servers/server1.conf",
        "crossplane drops a rejected block directive (`server`/`location`/`types` in the main context) but parses its block as siblings; we drop the block with it (and see the EOF bug for included foo/bar/not-included)",
    ),
    (
        "go-crossplane/includes-globbed/servers/server2.conf",
        "crossplane drops a rejected block directive (`server`/`location`/`types` in the main context) but parses its block as siblings; we drop the block with it (and see the EOF bug for included foo/bar/not-included)",
    ),
    (
        "go-crossplane/includes-regular/conf.d/server.conf",
        "crossplane drops a rejected block directive (`server`/`location`/`types` in the main context) but parses its block as siblings; we drop the block with it (and see the EOF bug for included foo/bar/not-included)",
    ),
    (
        "go-crossplane/includes-cycle/valid/location1.conf",
        "crossplane drops a rejected block directive (`server`/`location`/`types` in the main context) but parses its block as siblings; we drop the block with it (and see the EOF bug for included foo/bar/not-included)",
    ),
    (
        "go-crossplane/ubuntu-default/mime.types",
        "crossplane drops a rejected block directive (`server`/`location`/`types` in the main context) but parses its block as siblings; we drop the block with it (and see the EOF bug for included foo/bar/not-included)",
    ),
    (
        "go-crossplane/ubuntu-default/sites-enabled/default",
        "crossplane drops a rejected block directive (`server`/`location`/`types` in the main context) but parses its block as siblings; we drop the block with it (and see the EOF bug for included foo/bar/not-included)",
    ),
    (
        "crossplane/lua-block-larger/nginx.conf",
        "crossplane does not check the contexts of Lua directives; lua-nginx-module allows content_by_lua_block only in location/if",
    ),
    (
        "crossplane/lua-block-simple/nginx.conf",
        "crossplane does not check the contexts of Lua directives; log_by_lua_block is not allowed in upstream",
    ),
    (
        "go-crossplane/lua-block-simple/simple.conf",
        "same as crossplane/lua-block-simple",
    ),
    (
        "go-crossplane/if-check/nginx.conf",
        "crossplane counts `if` arguments after stripping the parentheses, so `if ()` has none; nginx's ngx_conf_handler sees one word `()` (the condition itself is judged later by the rewrite module)",
    ),
    (
        "go-crossplane/if-expr/empty-parens.conf",
        "same as if-check, and then spills the rejected block",
    ),
    (
        "go-crossplane/if-expr/empty-spaced-parens.conf",
        "same as if-expr/empty-parens.conf",
    ),
    (
        "go-crossplane/includes-cycle/invalid/nginx.conf",
        "we report the include cycle location1 -> location2 -> location1 (nginx would recurse); crossplane parses each file once and says nothing",
    ),
    (
        "go-crossplane/includes-cycle/invalid/location1.conf",
        "include cycle as in invalid/nginx.conf, plus the spilled rejected block",
    ),
    (
        "go-crossplane/includes-cycle/invalid/location2.conf",
        "same as invalid/location1.conf",
    ),
    (
        "go-crossplane/invalid-map/nginx.conf",
        "a `{` inside a map body: nginx says unexpected \"{\" (ngx_conf_parse with a handler); crossplane accepts it",
    ),
    (
        "go-crossplane/limit-req-zone/nginx.conf",
        "`limit_req_zone ... sync` takes 4 arguments, an NGINX Plus form open-source nginx rejects; and see nap-waf-v4 for /etc/nginx/mime.types",
    ),
    (
        "go-crossplane/nap-waf-v4/nginx.conf",
        "absolute include /etc/nginx/mime.types: crossplane reads the host's file, the test serves only the corpus",
    ),
    ("go-crossplane/nap-waf-v5/nginx.conf", "same as nap-waf-v4"),
];

fn crossplane() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NXMESH_CROSSPLANE") {
        return Some(PathBuf::from(path));
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/crossplane");
    venv.exists().then_some(venv)
}

/// The comparable part of a payload: per file (relative to the case), its
/// status and its statements.
fn digest(payload: &Value, case_dir: &str) -> BTreeMap<String, (String, Value)> {
    let mut out = BTreeMap::new();
    for config in payload["config"].as_array().into_iter().flatten() {
        let file = config["file"].as_str().unwrap_or_default();
        let file = file.strip_prefix(case_dir).unwrap_or(file).to_owned();
        let parsed = config["parsed"].clone();
        out.insert(
            file,
            (
                config["status"].as_str().unwrap_or_default().to_owned(),
                parsed,
            ),
        );
    }
    out
}

#[test]
fn differential_crossplane() {
    let Some(exe) = crossplane() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "crossplane not found: set NXMESH_CROSSPLANE or create .venv with crossplane==0.5.8"
        );
        eprintln!(
            "notice: crossplane 0.5.8 not found (.venv/bin/crossplane); differential test skipped"
        );
        return;
    };
    let dir = corpus_dir().canonicalize().unwrap();
    let known: BTreeMap<&str, &str> = DIVERGENCES.iter().copied().collect();
    let mut diverging = Vec::new();
    let mut compared = 0;
    for rel in corpus_configs() {
        let name = rel.to_str().unwrap();
        let case: PathBuf = rel.iter().take(2).collect();
        let case_dir = dir.join(&case);
        let case_prefix = format!("{}/", case_dir.to_str().unwrap());
        let main = dir.join(&rel);
        let output = Command::new(&exe)
            .args(["parse", "--include-comments"])
            .arg(&main)
            .output()
            .unwrap();
        let theirs: Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{name}: crossplane output is not JSON: {e}"));

        let source = load(&case_dir, case_dir.to_str().unwrap());
        let arena = SourceArena::new();
        let tree = parser::parse_tree(
            &arena,
            &source,
            main.to_str().unwrap(),
            &ParseOptions::default(),
        )
        .unwrap();
        let opts = JsonOptions {
            include_comments: true,
            ..JsonOptions::default()
        };
        let ours = serde_json::to_value(parser::payload(&tree, opts)).unwrap();

        compared += 1;
        if digest(&theirs, &case_prefix) != digest(&ours, &case_prefix) {
            if !known.contains_key(name) && std::env::var_os("SHOW_JSON").is_some() {
                eprintln!("{name}\ncrossplane {theirs}\nours       {ours}");
            }
            diverging.push(name.to_owned());
        }
    }
    let unlisted: Vec<_> = diverging
        .iter()
        .filter(|n| !known.contains_key(n.as_str()))
        .collect();
    assert!(
        unlisted.is_empty(),
        "unexpected divergences (SHOW_JSON=1 shows them): {unlisted:?}"
    );
    let stale: Vec<_> = known
        .keys()
        .filter(|k| !diverging.iter().any(|d| d == *k))
        .collect();
    assert!(
        stale.is_empty(),
        "listed divergences that agree now: {stale:?}"
    );
    assert!(compared > 50);
}
