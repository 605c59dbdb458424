//! Running the client's futures for Python: blocking (the GIL released,
//! Ctrl-C still heard) for `Client`, as asyncio awaitables for
//! `AsyncClient`; and the iterators over the client's streams (pages of a
//! list, the event feed), synchronous and asynchronous.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt as _};
use pyo3::BoundObject;
use pyo3::exceptions::{PyRuntimeError, PyStopAsyncIteration, PyTimeoutError};
use pyo3::prelude::*;

/// A value on its way to Python, converted once the GIL is held.
pub(crate) struct Out(Box<dyn DynIntoPy + Send>);

/// Object-safe conversion to Python, for [`Out`].
pub(crate) trait DynIntoPy {
    /// Converts the boxed value.
    fn into_py_any(self: Box<Self>, py: Python<'_>) -> PyResult<Py<PyAny>>;
}

impl<T> DynIntoPy for T
where
    T: for<'py> IntoPyObject<'py> + Send,
{
    fn into_py_any(self: Box<Self>, py: Python<'_>) -> PyResult<Py<PyAny>> {
        (*self)
            .into_pyobject(py)
            .map(|o| o.into_any().unbind())
            .map_err(Into::into)
    }
}

impl Out {
    /// Wraps any value Python can take.
    pub(crate) fn new<T>(value: T) -> Out
    where
        T: for<'py> IntoPyObject<'py> + Send + 'static,
    {
        Out(Box::new(value))
    }
}

impl<'py> IntoPyObject<'py> for Out {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.0.into_py_any(py).map(|o| o.into_bound(py))
    }
}

/// A boxed call to the master that ends in a Python value.
pub(crate) type Call = Pin<Box<dyn Future<Output = PyResult<Out>> + Send>>;

/// Items of a stream for Python.
pub(crate) type ItemStream = Pin<Box<dyn Stream<Item = PyResult<Out>> + Send>>;

/// The shared tokio runtime (pyo3-async-runtimes' own, so blocking and
/// asyncio calls share one connection pool and one set of threads).
fn runtime() -> &'static tokio::runtime::Runtime {
    pyo3_async_runtimes::tokio::get_runtime()
}

/// `fut`, or the error of a signal Python raises meanwhile: every 100 ms
/// the thread takes the GIL back briefly to let Python run its signal
/// handlers, so Ctrl-C ends a long call with `KeyboardInterrupt`.
async fn with_signals<T>(fut: impl Future<Output = PyResult<T>>) -> PyResult<T> {
    let signals = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if let Err(e) = Python::attach(|py| py.check_signals()) {
                return e;
            }
        }
    };
    tokio::select! {
        result = fut => result,
        interrupted = signals => Err(interrupted),
    }
}

/// Runs `fut` to completion with the GIL released (see [`with_signals`]).
pub(crate) fn block_on<T: Send>(
    py: Python<'_>,
    fut: impl Future<Output = PyResult<T>> + Send,
) -> PyResult<T> {
    py.detach(|| runtime().block_on(with_signals(fut)))
}

/// Whether a handle blocks or returns awaitables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `Client`: calls block (with the GIL released).
    Blocking,
    /// `AsyncClient`: calls return asyncio awaitables.
    Asyncio,
}

impl Mode {
    /// Runs a call: its value, or an awaitable of it.
    pub(crate) fn call<'py>(self, py: Python<'py>, call: Call) -> PyResult<Bound<'py, PyAny>> {
        match self {
            Mode::Blocking => block_on(py, call)?.into_pyobject(py),
            Mode::Asyncio => pyo3_async_runtimes::tokio::future_into_py(py, call),
        }
    }

    /// Wraps a stream: an iterator, or an async iterator.
    pub(crate) fn iter<'py>(
        self,
        py: Python<'py>,
        stream: ItemStream,
        idle_timeout: Option<Duration>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self {
            Mode::Blocking => Ok(Bound::new(
                py,
                StreamIter {
                    stream: std::sync::Mutex::new(Some(stream)),
                    idle_timeout,
                },
            )?
            .into_any()),
            Mode::Asyncio => {
                Ok(Bound::new(py, AsyncStreamIter::new(stream, idle_timeout))?.into_any())
            }
        }
    }
}

/// What waiting for the next item of a stream gave.
enum Next {
    Item(Out),
    End,
    /// Nothing within the idle timeout; the stream stays usable.
    Idle(Duration),
    /// An error; the client's streams end after one.
    Failed(PyErr),
}

/// The next item of `stream`, waiting at most `idle_timeout`.
async fn next_item(stream: &mut ItemStream, idle_timeout: Option<Duration>) -> Next {
    let next = match idle_timeout {
        None => stream.next().await,
        Some(t) => match tokio::time::timeout(t, stream.next()).await {
            Ok(next) => next,
            Err(_) => return Next::Idle(t),
        },
    };
    match next {
        Some(Ok(item)) => Next::Item(item),
        Some(Err(e)) => Next::Failed(e),
        None => Next::End,
    }
}

fn idle_error(t: Duration) -> PyErr {
    PyTimeoutError::new_err(format!("nothing received within {} s", t.as_secs_f64()))
}

/// An iterator over a stream of the master (every item of a list, page
/// after page; or the event feed). Each step blocks with the GIL released;
/// an error raises and ends the iteration, except `TimeoutError` (nothing
/// within the idle timeout), after which iteration may go on.
#[pyclass(frozen, name = "StreamIterator", module = "nxmesh")]
pub(crate) struct StreamIter {
    stream: std::sync::Mutex<Option<ItemStream>>,
    idle_timeout: Option<Duration>,
}

#[pymethods]
impl StreamIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let idle_timeout = self.idle_timeout;
        let item = py.detach(|| {
            let mut guard = self
                .stream
                .lock()
                .map_err(|_| PyRuntimeError::new_err("iterator poisoned by a panic"))?;
            let Some(stream) = guard.as_mut() else {
                return Ok(None);
            };
            let next = runtime().block_on(with_signals(async {
                Ok(next_item(stream, idle_timeout).await)
            }))?;
            match next {
                Next::Item(item) => Ok(Some(item)),
                Next::End => {
                    *guard = None;
                    Ok(None)
                }
                Next::Idle(t) => Err(idle_error(t)),
                Next::Failed(e) => {
                    *guard = None;
                    Err(e)
                }
            }
        })?;
        item.map(|o| o.into_pyobject(py).map(Bound::unbind))
            .transpose()
    }

    /// Stops the stream (closes the event feed's socket).
    fn close(&self) -> PyResult<()> {
        let mut guard = self
            .stream
            .lock()
            .map_err(|_| PyRuntimeError::new_err("iterator poisoned by a panic"))?;
        *guard = None;
        Ok(())
    }
}

/// An async iterator over a stream of the master (`async for`).
#[pyclass(frozen, name = "AsyncStreamIterator", module = "nxmesh")]
pub(crate) struct AsyncStreamIter {
    stream: Arc<tokio::sync::Mutex<Option<ItemStream>>>,
    idle_timeout: Option<Duration>,
}

impl AsyncStreamIter {
    /// An async iterator over `stream`.
    pub(crate) fn new(stream: ItemStream, idle_timeout: Option<Duration>) -> AsyncStreamIter {
        AsyncStreamIter {
            stream: Arc::new(tokio::sync::Mutex::new(Some(stream))),
            idle_timeout,
        }
    }
}

#[pymethods]
impl AsyncStreamIter {
    fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let stream = Arc::clone(&self.stream);
        let idle_timeout = self.idle_timeout;
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let mut guard = stream.lock().await;
            let Some(s) = guard.as_mut() else {
                return Err(PyStopAsyncIteration::new_err(()));
            };
            match next_item(s, idle_timeout).await {
                Next::Item(item) => Ok(item),
                Next::End => {
                    *guard = None;
                    Err(PyStopAsyncIteration::new_err(()))
                }
                Next::Idle(t) => Err(idle_error(t)),
                Next::Failed(e) => {
                    *guard = None;
                    Err(e)
                }
            }
        })
    }

    /// Stops the stream (closes the event feed's socket).
    fn aclose<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let stream = Arc::clone(&self.stream);
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            *stream.lock().await = None;
            Ok(())
        })
    }
}

/// Maps a client stream to Python items.
pub(crate) fn item_stream<T, P>(
    stream: impl Stream<Item = nxmesh_client::Result<T>> + Send + 'static,
) -> ItemStream
where
    P: From<T> + for<'py> IntoPyObject<'py> + Send + 'static,
{
    Box::pin(stream.map(|r| {
        r.map(|v| Out::new(P::from(v)))
            .map_err(crate::error::to_py_err)
    }))
}
