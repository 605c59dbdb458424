//! Native module of the `nxmesh` Python package (`nxmesh._native`, built
//! by maturin).
//!
//! The bindings wrap `nxmesh-client` (the REST client and the event feed)
//! and the parser, formatter, linter and generator of `nxmesh-core`; they
//! hold no logic of their own. `client` has `Client` and `AsyncClient` and
//! their resource handles, `models` the typed objects they return, `error`
//! the exceptions, `runtime` how futures run for Python (blocking with the
//! GIL released, or as asyncio awaitables), `toolkit` the configuration
//! functions and `convert` the conversions between Python and Rust values.

use pyo3::prelude::*;

mod client;
mod convert;
mod error;
mod models;
mod runtime;
mod toolkit;

/// The native module `nxmesh._native`; the pure-Python package `nxmesh`
/// re-exports its public names.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    error::register(m)?;
    models::register(m)?;
    client::register(m)?;
    toolkit::register(m)?;
    Ok(())
}
