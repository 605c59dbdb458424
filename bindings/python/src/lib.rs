//! Native module of the `nxmesh` Python package (built by maturin).
//!
//! The bindings wrap `nxmesh-core` and `nxmesh-client`; they hold no logic
//! of their own.

use pyo3::prelude::*;

/// The native module `nxmesh._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
