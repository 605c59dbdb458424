"""The configuration toolkit: `parse_config` against crossplane 0.5.8 over the
corpus, with the known divergences the Rust parser tests list (and why);
`format_config`, `lint_config` and `render_config`."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

import nxmesh
from conftest import REPO

CORPUS = Path(os.environ.get("NXMESH_CORPUS", REPO / "testdata" / "corpus"))
RUST_DIFFERENTIAL = REPO / "nxmesh-core" / "tests" / "it" / "parser" / "crossplane.rs"


def known_divergences() -> dict[str, str]:
    """The `DIVERGENCES` table of the Rust differential test: file -> reason.

    One list for both tests, kept with the Rust parser's tests."""
    source = RUST_DIFFERENTIAL.read_text()
    table = source[source.index("const DIVERGENCES") : source.index("];", source.index("const DIVERGENCES"))]
    string = r'"((?:[^"\\]|\\.)*)"'
    pairs = re.findall(r"\(\s*" + string + r",\s*" + string + r",?\s*\)", table, re.S)
    out = {}
    for name, reason in pairs:
        # Rust's string continuation (a backslash before the line break)
        # drops the break and the next line's indentation.
        reason = re.sub(r"\\\n\s*", "", reason).replace('\\"', '"')
        out[name] = reason
    assert len(out) > 20, "the Rust test's DIVERGENCES table was not found"
    return out


def resolved(known: dict[str, str], name: str) -> str:
    """A reason, following "same as <case>" to the case it names."""
    reason = known[name]
    match = re.match(r"same as (\S+)", reason)
    if match:
        target = [k for k in known if match.group(1) in k and k != name]
        if target:
            return reason + "; " + known[target[0]]
    return reason


def corpus_configs() -> list[Path]:
    """Configuration files of the corpus, as the Rust test picks them."""
    files = []
    for path in sorted(CORPUS.rglob("*")):
        rel = path.relative_to(CORPUS)
        if (
            path.is_file()
            and len(rel.parts) > 2
            and not path.name.endswith(".json")
            and path.name not in ("LICENSE", "README.md")
        ):
            files.append(rel)
    return files


def digest(payload: dict[str, Any], case_prefix: str) -> dict[str, tuple[str, Any]]:
    """Per file (relative to its case): its status and statements."""
    out = {}
    for config in payload["config"]:
        name = config["file"]
        name = name[len(case_prefix) :] if name.startswith(case_prefix) else name
        out[name] = (config["status"], config["parsed"])
    return out


def test_parse_config_matches_crossplane_on_the_corpus() -> None:
    try:
        import crossplane  # type: ignore[import-untyped]
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("crossplane is not installed (scripts/requirements-test.txt)")
        pytest.skip("crossplane is not installed")
    known = known_divergences()
    diverging = []
    compared = 0
    for rel in corpus_configs():
        name = rel.as_posix()
        case_prefix = str((CORPUS / rel.parts[0] / rel.parts[1]).resolve()) + "/"
        path = str((CORPUS / rel).resolve())
        theirs = crossplane.parse(path, comments=True)
        ours = nxmesh.parse_config(path, include_comments=True)
        compared += 1
        if digest(theirs, case_prefix) != digest(ours, case_prefix):
            diverging.append(name)
    unlisted = [d for d in diverging if d not in known]
    assert not unlisted, f"divergences from crossplane not in the known list: {unlisted}"
    # The Rust test serves only the corpus from memory; here the parser reads
    # the disk like crossplane does, so an absolute include of the host's
    # /etc/nginx/mime.types may agree (the reason names that case).
    stale = [k for k in known if k not in diverging and "mime.types" not in resolved(known, k)]
    assert not stale, f"listed divergences that agree now: {stale}"
    assert compared > 50


def test_parse_config_text_and_options() -> None:
    payload = nxmesh.parse_config("events {}\nhttp {\n  # hi\n  server { listen 8080; }\n}\n", include_comments=True)
    assert payload["status"] == "ok" and payload["errors"] == []
    [config] = payload["config"]
    assert config["file"] == "nginx.conf"
    http = config["parsed"][1]
    assert http["directive"] == "http"
    assert http["block"][0] == {"directive": "#", "line": 3, "args": [], "comment": " hi"}
    assert http["block"][1]["block"][0]["args"] == ["8080"]

    failed = nxmesh.parse_config("http { listen; }", text=True)
    assert failed["status"] == "failed" and failed["errors"]

    strict = nxmesh.parse_config("no_such_directive 1;", strict=True)
    assert "unknown directive" in strict["errors"][0]["error"]
    assert nxmesh.parse_config("no_such_directive 1;")["status"] == "ok"

    with pytest.raises(ValueError):
        nxmesh.parse_config("events {}", nginx_version="0.0.1")


def test_parse_config_from_a_path_follows_includes(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "site.conf").write_text("server { listen 8080; }\n")
    main = tmp_path / "nginx.conf"
    main.write_text("events {}\nhttp { include conf.d/*.conf; }\n")
    payload = nxmesh.parse_config(main)  # an os.PathLike
    assert [c["file"] for c in payload["config"]] == [str(main), str(tmp_path / "conf.d" / "site.conf")]
    combined = nxmesh.parse_config(str(main), combine=True)
    assert len(combined["config"]) == 1
    single = nxmesh.parse_config(main, single_file=True)
    assert len(single["config"]) == 1
    with pytest.raises(FileNotFoundError):
        nxmesh.parse_config(tmp_path / "missing.conf")


def test_format_config(tmp_path: Path) -> None:
    text = "http{server{listen 80;location /{return 200 'ok';}}}"
    formatted = nxmesh.format_config(text)
    assert formatted == (
        "http {\n    server {\n        listen 80;\n        location / {\n"
        "            return 200 'ok';\n        }\n    }\n}\n"
    )
    path = tmp_path / "site.conf"
    path.write_text(text)
    assert nxmesh.format_config(path) == formatted
    with pytest.raises(nxmesh.ConfigError) as info:
        nxmesh.format_config("http {\n  server {\n")
    assert info.value.line is not None and info.value.file == "nginx.conf"


def test_lint_config() -> None:
    findings = nxmesh.lint_config(
        "http {\n server {\n  listen 80;\n  add_header X-A b;\n"
        "  location / { add_header X-B c; }\n }\n}\n"
    )
    assert all(isinstance(f, nxmesh.LintFinding) for f in findings)
    ids = {f.id for f in findings}
    assert "add_header_redefinition" in ids
    redefinition = next(f for f in findings if f.id == "add_header_redefinition")
    assert redefinition.line == 5 and redefinition.severity in ("low", "medium", "high")
    clean = nxmesh.lint_config("http { server_tokens off; }")
    assert [f.id for f in clean] == []


def test_render_config() -> None:
    upstream_id = "aa0e8400-e29b-41d4-a716-446655440006"
    model = {
        "config_id": "cfg-1",
        "version": 3,
        "virtual_hosts": [
            {
                "id": "880e8400-e29b-41d4-a716-446655440004",
                "name": "Main",
                "server_name": "example.com",
                "listen_port": 8080,
                "locations": [{"path": "/api", "upstream_id": upstream_id}],
            }
        ],
        "upstreams": [
            {"id": upstream_id, "name": "api", "servers": [{"address": "10.0.0.1:8080"}]}
        ],
    }
    rendered = nxmesh.render_config(model, nginx_version="1.26.3")
    assert isinstance(rendered, nxmesh.RenderedConfig)
    assert "nginx.conf" in rendered.files and len(rendered.checksum) == 64
    text = b"".join(rendered.files.values()).decode()
    assert "server_name example.com;" in text and "10.0.0.1:8080" in text
    # Every file parses back cleanly.
    for path, content in rendered.files.items():
        if path.endswith(".conf"):
            assert nxmesh.parse_config(content, single_file=True, check=False)["status"] == "ok", path

    bad = dict(model)
    bad["virtual_hosts"] = [dict(model["virtual_hosts"][0], server_name="bad name;")]  # type: ignore[index]
    with pytest.raises(nxmesh.ValidationError) as info:
        nxmesh.render_config(bad)
    assert any("server_name" in d.field for d in info.value.details)
    with pytest.raises(ValueError):
        nxmesh.render_config({"virtual_hosts": "nope"})
