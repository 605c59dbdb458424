//! The package's exceptions and the one mapping from the client's
//! [`nxmesh_client::Error`] to them.
//!
//! Every exception carries the same attributes (`status`, `code`,
//! `message`, `request_id`, `details`, `retry_after`), set on the class to
//! `None`/empty and on each raised instance to what the master said.

use nxmesh_client::Error;
use nxmesh_core::error::{ErrorCode, FieldError};
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::models::PyFieldError;

pyo3::create_exception!(
    nxmesh,
    NxMeshError,
    PyException,
    "Base of every NxMesh error."
);
pyo3::create_exception!(
    nxmesh,
    Unauthorized,
    NxMeshError,
    "401 UNAUTHORIZED: missing, expired or wrong credentials."
);
pyo3::create_exception!(
    nxmesh,
    Forbidden,
    NxMeshError,
    "403 FORBIDDEN: the caller's role is too low."
);
pyo3::create_exception!(
    nxmesh,
    NotFound,
    NxMeshError,
    "404 NOT_FOUND: no such object, or not visible to the caller."
);
pyo3::create_exception!(
    nxmesh,
    Conflict,
    NxMeshError,
    "409 CONFLICT: for example a duplicate slug."
);
pyo3::create_exception!(
    nxmesh,
    ValidationError,
    NxMeshError,
    "422 VALIDATION_ERROR (or a model the generator refuses); `details` lists the fields."
);
pyo3::create_exception!(
    nxmesh,
    RateLimited,
    NxMeshError,
    "429 RATE_LIMITED; `retry_after` is the wait the master asked for, in seconds."
);
pyo3::create_exception!(
    nxmesh,
    ServiceUnavailable,
    NxMeshError,
    "503 SERVICE_UNAVAILABLE, for example an agent that is not connected."
);
pyo3::create_exception!(
    nxmesh,
    TransportError,
    NxMeshError,
    "The request could not be sent or its answer not read (connection, timeout, WebSocket)."
);
pyo3::create_exception!(
    nxmesh,
    ConfigError,
    NxMeshError,
    "An nginx configuration that cannot be read or parsed; `file` and `line` say where."
);

/// The attributes every exception instance gets.
const ATTRIBUTES: [&str; 6] = [
    "status",
    "code",
    "message",
    "request_id",
    "details",
    "retry_after",
];

/// Adds the exceptions to the module, with the attributes' class defaults.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let base = py.get_type::<NxMeshError>();
    for attr in ATTRIBUTES {
        if attr == "details" {
            base.setattr(attr, pyo3::types::PyTuple::empty(py))?;
        } else {
            base.setattr(attr, py.None())?;
        }
    }
    let config = py.get_type::<ConfigError>();
    config.setattr("file", py.None())?;
    config.setattr("line", py.None())?;
    m.add("NxMeshError", base)?;
    m.add("Unauthorized", py.get_type::<Unauthorized>())?;
    m.add("Forbidden", py.get_type::<Forbidden>())?;
    m.add("NotFound", py.get_type::<NotFound>())?;
    m.add("Conflict", py.get_type::<Conflict>())?;
    m.add("ValidationError", py.get_type::<ValidationError>())?;
    m.add("RateLimited", py.get_type::<RateLimited>())?;
    m.add("ServiceUnavailable", py.get_type::<ServiceUnavailable>())?;
    m.add("TransportError", py.get_type::<TransportError>())?;
    m.add("ConfigError", config)?;
    Ok(())
}

/// What one raised exception says.
struct Fields<'a> {
    status: Option<u16>,
    code: Option<&'a str>,
    message: String,
    request_id: Option<&'a str>,
    details: &'a [FieldError],
    retry_after: Option<f64>,
}

/// Builds the exception `E` with its attributes set.
fn raise<E: pyo3::PyTypeInfo>(fields: Fields<'_>) -> PyErr {
    Python::attach(|py| {
        // `str(exc)` names the fields too; `exc.message` is the master's text.
        let text = if fields.details.is_empty() {
            fields.message.clone()
        } else {
            let fields_text: Vec<String> = fields
                .details
                .iter()
                .map(|d| format!("{}: {}", d.field, d.message))
                .collect();
            format!("{} ({})", fields.message, fields_text.join("; "))
        };
        let err = PyErr::new::<E, _>(text);
        let value = err.value(py);
        let set = || -> PyResult<()> {
            value.setattr("status", fields.status)?;
            value.setattr("code", fields.code)?;
            value.setattr("message", &fields.message)?;
            value.setattr("request_id", fields.request_id)?;
            let details = PyList::empty(py);
            for d in fields.details {
                details.append(Py::new(py, PyFieldError::from(d.clone()))?)?;
            }
            value.setattr("details", details)?;
            value.setattr("retry_after", fields.retry_after)?;
            Ok(())
        };
        match set() {
            Ok(()) => err,
            Err(e) => e,
        }
    })
}

/// The Python exception of a client error.
pub(crate) fn to_py_err(e: Error) -> PyErr {
    match &e {
        Error::Api {
            status,
            code,
            message,
            request_id,
            details,
            retry_after,
        } => {
            let fields = Fields {
                status: Some(*status),
                code: Some(code.as_str()),
                message: message.clone(),
                request_id: Some(request_id),
                details,
                retry_after: retry_after.map(|d| d.as_secs_f64()),
            };
            match code {
                ErrorCode::Unauthorized => raise::<Unauthorized>(fields),
                ErrorCode::Forbidden => raise::<Forbidden>(fields),
                ErrorCode::NotFound => raise::<NotFound>(fields),
                ErrorCode::Conflict => raise::<Conflict>(fields),
                ErrorCode::ValidationError => raise::<ValidationError>(fields),
                ErrorCode::RateLimited => raise::<RateLimited>(fields),
                ErrorCode::ServiceUnavailable => raise::<ServiceUnavailable>(fields),
                ErrorCode::InternalError => raise::<NxMeshError>(fields),
            }
        }
        Error::UnexpectedResponse { status, .. } => raise::<NxMeshError>(Fields {
            status: Some(*status),
            code: None,
            message: e.to_string(),
            request_id: None,
            details: &[],
            retry_after: None,
        }),
        Error::InvalidUrl(_) | Error::UnsupportedScheme(_) => {
            PyValueError::new_err(error_chain(&e))
        }
        Error::Transport(_) | Error::WebSocket(_) => raise::<TransportError>(Fields {
            status: e.status(),
            code: None,
            message: error_chain(&e),
            request_id: None,
            details: &[],
            retry_after: None,
        }),
        Error::Decode(_) | Error::Subscription(_) | Error::Tls(_) => raise::<NxMeshError>(Fields {
            status: None,
            code: None,
            message: error_chain(&e),
            request_id: None,
            details: &[],
            retry_after: None,
        }),
    }
}

/// Field errors found locally (a model the generator refuses) as
/// `ValidationError`.
pub(crate) fn validation(message: &str, details: &[FieldError]) -> PyErr {
    raise::<ValidationError>(Fields {
        status: None,
        code: Some(ErrorCode::ValidationError.as_str()),
        message: message.to_owned(),
        request_id: None,
        details,
        retry_after: None,
    })
}

/// A parse error as `ConfigError` with `file` and `line`.
pub(crate) fn config_error(e: &nxmesh_core::parser::ParseError) -> PyErr {
    Python::attach(|py| {
        let err = ConfigError::new_err(e.to_string());
        let value = err.value(py);
        let set = || -> PyResult<()> {
            value.setattr("message", &e.message)?;
            value.setattr("file", &e.file)?;
            value.setattr("line", e.line)?;
            Ok(())
        };
        match set() {
            Ok(()) => err,
            Err(e) => e,
        }
    })
}

/// The message with its causes, `outer: inner: innermost`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
