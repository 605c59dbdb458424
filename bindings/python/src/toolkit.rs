//! The offline configuration toolkit, over `nxmesh-core`: parse (the
//! crossplane-compatible payload), format, lint and render, as the
//! `nxmesh config` commands do. Reading and parsing run with the GIL
//! released.

use nxmesh_core::config::ConfigUpdate;
use nxmesh_core::generator::{self, NginxVersion, RenderOptions};
use nxmesh_core::parser::{
    self, DirectiveTable, FsSource, JsonOptions, MemorySource, ParseError, ParseOptions, Source,
    SourceArena,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::convert::{json_to_py, py_to_json};
use crate::error::{config_error, validation};
use crate::models::{PyLintFinding, PyRenderedConfig};

/// Where the configuration comes from.
enum Input {
    /// A file on disk (its includes too).
    Path(String),
    /// Text in memory under a file name (its includes cannot be read).
    Text { name: String, bytes: Vec<u8> },
}

/// Reads the `source` argument: an `os.PathLike` is a path; `bytes` is
/// text; a `str` is text when `text` says so or, by default, when it holds
/// a newline, `;` or `{` (which no sensible path does), and a path
/// otherwise.
fn input(source: &Bound<'_, PyAny>, text: Option<bool>, filename: &str) -> PyResult<Input> {
    let as_text = |bytes: Vec<u8>| Input::Text {
        name: filename.to_owned(),
        bytes,
    };
    if let Ok(b) = source.cast::<PyBytes>() {
        if text == Some(false) {
            return Err(PyTypeError::new_err("a path is a str or an os.PathLike"));
        }
        return Ok(as_text(b.as_bytes().to_vec()));
    }
    if let Ok(s) = source.cast::<PyString>() {
        let s = s.to_cow()?;
        let is_text = text.unwrap_or_else(|| s.contains(['\n', ';', '{']));
        return Ok(if is_text {
            as_text(s.as_bytes().to_vec())
        } else {
            Input::Path(s.into_owned())
        });
    }
    if source.hasattr("__fspath__")? {
        if text == Some(true) {
            return Err(PyTypeError::new_err("text=True needs a str or bytes"));
        }
        let path = source
            .py()
            .import("os")?
            .call_method1("fspath", (source,))?;
        return Ok(Input::Path(path.extract::<String>().map_err(|_| {
            PyTypeError::new_err("the path must be text, not bytes")
        })?));
    }
    Err(PyTypeError::new_err(
        "expected a path (str or os.PathLike) or configuration text (str or bytes)",
    ))
}

/// The source the parser reads through and the main file's name: an
/// `nginx -T` dump is served from memory, as the CLI does.
fn source_of(input: &Input) -> std::io::Result<(Box<dyn Source>, String)> {
    match input {
        Input::Path(path) => {
            let bytes = std::fs::read(path)?;
            Ok(match MemorySource::from_dump(&parser::decode(&bytes)) {
                Some((memory, first)) => (Box::new(memory), first),
                None => (Box::new(FsSource), path.clone()),
            })
        }
        Input::Text { name, bytes } => Ok(match MemorySource::from_dump(&parser::decode(bytes)) {
            Some((memory, first)) => (Box::new(memory), first),
            None => {
                let mut memory = MemorySource::new();
                memory.insert(name.clone(), bytes.clone());
                (Box::new(memory), name.clone())
            }
        }),
    }
}

/// Why a toolkit call failed, before it becomes a Python exception.
enum Failure {
    Io(std::io::Error),
    Parse(ParseError),
}

impl From<Failure> for PyErr {
    fn from(f: Failure) -> PyErr {
        match f {
            Failure::Io(e) => e.into(),
            Failure::Parse(e) => config_error(&e),
        }
    }
}

fn table(nginx_version: Option<&str>) -> PyResult<DirectiveTable> {
    match nginx_version {
        None => Ok(DirectiveTable::latest()),
        Some(v) => DirectiveTable::new(v, true).ok_or_else(|| {
            let known: Vec<_> = parser::table::versions().collect();
            PyValueError::new_err(format!(
                "nginx_version {v:?} is not known; known: {}",
                known.join(", ")
            ))
        }),
    }
}

/// Parses an nginx configuration and the files it includes into the
/// crossplane-compatible payload (`status`, `errors`, `config`), as
/// `crossplane parse` does.
#[pyfunction]
#[pyo3(signature = (
    source, *, text = None, filename = "nginx.conf", single_file = false, combine = false,
    include_comments = false, strict = false, check = true, ignore = None, nginx_version = None
))]
#[allow(clippy::too_many_arguments)] // Python keyword arguments, all optional
fn parse_config(
    py: Python<'_>,
    source: &Bound<'_, PyAny>,
    text: Option<bool>,
    filename: &str,
    single_file: bool,
    combine: bool,
    include_comments: bool,
    strict: bool,
    check: bool,
    ignore: Option<Vec<String>>,
    nginx_version: Option<&str>,
) -> PyResult<Py<PyAny>> {
    let input = input(source, text, filename)?;
    let opts = ParseOptions {
        table: table(nginx_version)?,
        strict,
        check,
        single_file,
        ignore: ignore.unwrap_or_default(),
        ..ParseOptions::default()
    };
    let json_opts = JsonOptions {
        include_comments,
        combine,
        single_file,
    };
    let payload = py.detach(|| -> Result<serde_json::Value, Failure> {
        let (source, main) = source_of(&input).map_err(Failure::Io)?;
        let arena = SourceArena::new();
        let tree =
            parser::parse_tree(&arena, source.as_ref(), &main, &opts).map_err(Failure::Parse)?;
        serde_json::to_value(parser::payload(&tree, json_opts))
            .map_err(|e| Failure::Io(std::io::Error::other(e)))
    })?;
    json_to_py(py, &payload)
}

/// One file's text formatted the way `nxmesh config fmt` formats it
/// (includes are not followed). Raises `ConfigError` on a syntax error.
#[pyfunction]
#[pyo3(signature = (source, *, text = None, filename = "nginx.conf"))]
fn format_config(
    py: Python<'_>,
    source: &Bound<'_, PyAny>,
    text: Option<bool>,
    filename: &str,
) -> PyResult<String> {
    let input = input(source, text, filename)?;
    let formatted = py.detach(|| -> Result<String, Failure> {
        let (name, bytes) = match &input {
            Input::Path(p) => (p.clone(), std::fs::read(p).map_err(Failure::Io)?),
            Input::Text { name, bytes } => (name.clone(), bytes.clone()),
        };
        let text = parser::decode(&bytes);
        let opts = ParseOptions {
            recover: false,
            check: false,
            single_file: true,
            ..ParseOptions::default()
        };
        let file = parser::parse_str(&name, &text, &opts).map_err(Failure::Parse)?;
        Ok(parser::format(&file.nodes))
    })?;
    Ok(formatted)
}

/// The security linter's findings on a configuration and its includes.
#[pyfunction]
#[pyo3(signature = (source, *, text = None, filename = "nginx.conf"))]
fn lint_config(
    py: Python<'_>,
    source: &Bound<'_, PyAny>,
    text: Option<bool>,
    filename: &str,
) -> PyResult<Vec<PyLintFinding>> {
    let input = input(source, text, filename)?;
    let findings = py.detach(|| -> Result<_, Failure> {
        let (source, main) = source_of(&input).map_err(Failure::Io)?;
        let arena = SourceArena::new();
        let tree = parser::parse_tree(&arena, source.as_ref(), &main, &ParseOptions::default())
            .map_err(Failure::Parse)?;
        Ok(nxmesh_core::lint::lint(&tree))
    })?;
    Ok(findings.into_iter().map(PyLintFinding::from).collect())
}

/// Renders a model (a `ConfigUpdate`: a mapping, or its JSON text) into the
/// nginx configuration tree the agent would write, with the same generator.
/// Raises `ValidationError` (with `details`) when the model is refused.
#[pyfunction]
#[pyo3(signature = (model, *, nginx_version = None))]
fn render_config(
    py: Python<'_>,
    model: &Bound<'_, PyAny>,
    nginx_version: Option<&str>,
) -> PyResult<PyRenderedConfig> {
    let update: ConfigUpdate = if let Ok(s) = model.cast::<PyString>() {
        serde_json::from_str(&s.to_cow()?)
    } else {
        serde_json::from_value(py_to_json(model)?)
    }
    .map_err(|e| PyValueError::new_err(format!("invalid model: {e}")))?;
    let version = match nginx_version {
        None => generator::DEFAULT_NGINX_VERSION,
        Some(v) => v
            .parse::<NginxVersion>()
            .map_err(|e| PyValueError::new_err(format!("nginx_version {v:?}: {e}")))?,
    };
    let rendered = py.detach(|| generator::render(&update, &RenderOptions::for_version(version)));
    match rendered {
        Ok(inner) => Ok(PyRenderedConfig { inner }),
        Err(errors) => Err(validation("the model cannot be rendered", &errors.errors)),
    }
}

/// Adds the toolkit's functions to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(parse_config, m)?)?;
    m.add_function(wrap_pyfunction!(format_config, m)?)?;
    m.add_function(wrap_pyfunction!(lint_config, m)?)?;
    m.add_function(wrap_pyfunction!(render_config, m)?)?;
    Ok(())
}
