//! Conversions between Python objects and the values the Rust crates take
//! and return: JSON values both ways (request bodies in, `to_dict()` and the
//! parser's payload out), ids, timestamps, and [`ToPy`], the attribute
//! conversion of the model wrappers.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, Utc};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

/// A JSON value as the plain Python object (`dict`, `list`, `str`, `int`,
/// `float`, `bool`, `None`).
pub(crate) fn json_to_py(py: Python<'_>, value: &Value) -> PyResult<Py<PyAny>> {
    Ok(match value {
        Value::Null => py.None(),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any().unbind(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any().unbind()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any().unbind()
            } else {
                n.as_f64()
                    .unwrap_or(f64::NAN)
                    .into_pyobject(py)?
                    .into_any()
                    .unbind()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any().unbind(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(json_to_py(py, item)?)?;
            }
            list.into_any().unbind()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (k, v) in map {
                dict.set_item(k, json_to_py(py, v)?)?;
            }
            dict.into_any().unbind()
        }
    })
}

/// Any serializable value as plain Python objects.
pub(crate) fn to_py_json<T: Serialize>(py: Python<'_>, value: &T) -> PyResult<Py<PyAny>> {
    let json = serde_json::to_value(value)
        .map_err(|e| PyValueError::new_err(format!("cannot serialize: {e}")))?;
    json_to_py(py, &json)
}

/// A Python object as JSON: mappings with string keys, sequences (lists
/// and tuples), strings, numbers, booleans, `None`, `uuid.UUID` and aware
/// `datetime` values, and the model objects of this package (through their
/// `to_dict()`).
pub(crate) fn py_to_json(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    if obj.is_none() {
        return Ok(Value::Null);
    }
    // `bool` is a subclass of `int`: test it first.
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Value::from(i));
        }
        return Ok(Value::from(obj.extract::<u64>()?));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return serde_json::Number::from_f64(f.value())
            .map(Value::Number)
            .ok_or_else(|| PyValueError::new_err("NaN and infinity are not valid JSON"));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(s.to_cow()?.into_owned()));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut map = serde_json::Map::new();
        for (k, v) in d.iter() {
            let key = k
                .cast::<PyString>()
                .map_err(|_| PyTypeError::new_err("mapping keys must be strings"))?
                .to_cow()?
                .into_owned();
            map.insert(key, py_to_json(&v)?);
        }
        return Ok(Value::Object(map));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let mut items = Vec::new();
        for item in obj.try_iter()? {
            items.push(py_to_json(&item?)?);
        }
        return Ok(Value::Array(items));
    }
    let py = obj.py();
    let uuid_type = py.import("uuid")?.getattr("UUID")?;
    if obj.is_instance(&uuid_type)? {
        return Ok(Value::String(obj.str()?.to_cow()?.into_owned()));
    }
    if let Ok(t) = obj.extract::<DateTime<FixedOffset>>() {
        return Ok(Value::String(t.to_rfc3339()));
    }
    // Other mappings (and our model objects, through `to_dict`).
    if obj.hasattr("to_dict")? {
        return py_to_json(&obj.call_method0("to_dict")?);
    }
    if obj.hasattr("items")? {
        let dict = PyDict::new(py);
        for pair in obj.call_method0("items")?.try_iter()? {
            let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair?.extract()?;
            dict.set_item(k, v)?;
        }
        return py_to_json(dict.as_any());
    }
    Err(PyTypeError::new_err(format!(
        "cannot send a {} to the master",
        obj.get_type().name()?
    )))
}

/// A request body from an optional mapping plus keyword arguments (the
/// keywords win), deserialized into the Rust request type. A body that does
/// not have the request's shape raises `ValueError` naming the problem.
pub(crate) fn request<T: DeserializeOwned>(
    what: &str,
    body: Option<&Bound<'_, PyAny>>,
    fields: Option<&Bound<'_, PyDict>>,
) -> PyResult<T> {
    let mut map = match body {
        None => serde_json::Map::new(),
        Some(b) if b.is_none() => serde_json::Map::new(),
        Some(b) => match py_to_json(b)? {
            Value::Object(m) => m,
            _ => return Err(PyTypeError::new_err(format!("{what}: expected a mapping"))),
        },
    };
    if let Some(fields) = fields {
        for (k, v) in fields.iter() {
            map.insert(k.extract::<String>()?, py_to_json(&v)?);
        }
    }
    serde_json::from_value(Value::Object(map))
        .map_err(|e| PyValueError::new_err(format!("invalid {what}: {e}")))
}

/// An id argument: a `str` or a `uuid.UUID`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Id(pub(crate) Uuid);

impl<'py> FromPyObject<'_, 'py> for Id {
    type Error = PyErr;

    fn extract(obj: Borrowed<'_, 'py, PyAny>) -> PyResult<Self> {
        let text = if let Ok(s) = obj.cast::<PyString>() {
            s.to_cow()?.into_owned()
        } else {
            let uuid_type = obj.py().import("uuid")?.getattr("UUID")?;
            if !obj.is_instance(&uuid_type)? {
                return Err(PyTypeError::new_err("an id is a str or a uuid.UUID"));
            }
            obj.str()?.to_cow()?.into_owned()
        };
        Uuid::parse_str(&text)
            .map(Id)
            .map_err(|e| PyValueError::new_err(format!("{text:?} is not a valid id: {e}")))
    }
}

/// A point in time argument: an aware `datetime` or an RFC 3339 string.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Instant(pub(crate) DateTime<Utc>);

impl<'py> FromPyObject<'_, 'py> for Instant {
    type Error = PyErr;

    fn extract(obj: Borrowed<'_, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(s) = obj.cast::<PyString>() {
            let s = s.to_cow()?;
            return DateTime::parse_from_rfc3339(&s)
                .map(|t| Instant(t.with_timezone(&Utc)))
                .map_err(|e| PyValueError::new_err(format!("{s:?} is not an RFC 3339 time: {e}")));
        }
        let t: DateTime<FixedOffset> = obj.extract().map_err(|_| {
            PyTypeError::new_err("a time is a timezone-aware datetime or an RFC 3339 string")
        })?;
        Ok(Instant(t.with_timezone(&Utc)))
    }
}

/// How a model field becomes a Python attribute value.
pub(crate) trait ToPy {
    /// The Python value of this field.
    fn to_py(&self, py: Python<'_>) -> PyResult<Py<PyAny>>;
}

macro_rules! to_py_direct {
    ($($ty:ty),*) => {$(
        impl ToPy for $ty {
            fn to_py(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
                Ok(self.clone().into_pyobject(py)?.to_owned().into_any().unbind())
            }
        }
    )*};
}
to_py_direct!(String, bool, u16, u32, u64, i64, f64, DateTime<Utc>);

impl ToPy for Uuid {
    fn to_py(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(PyString::new(py, &self.to_string()).into_any().unbind())
    }
}

impl<T: ToPy> ToPy for Option<T> {
    fn to_py(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match self {
            Some(v) => v.to_py(py),
            None => Ok(py.None()),
        }
    }
}

impl<T: ToPy> ToPy for Vec<T> {
    fn to_py(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let list = PyList::empty(py);
        for item in self {
            list.append(item.to_py(py)?)?;
        }
        Ok(list.into_any().unbind())
    }
}

impl<T: ToPy> ToPy for BTreeMap<String, T> {
    fn to_py(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let dict = PyDict::new(py);
        for (k, v) in self {
            dict.set_item(k, v.to_py(py)?)?;
        }
        Ok(dict.into_any().unbind())
    }
}

/// Enums and small values that are best shown as their JSON form (enum
/// variants become their wire strings, such as `"least_connections"`).
macro_rules! to_py_as_json {
    ($($ty:ty),* $(,)?) => {$(
        impl ToPy for $ty {
            fn to_py(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
                to_py_json(py, self)
            }
        }
    )*};
}
pub(crate) use to_py_as_json;
