//! `Client` and `AsyncClient` and their resource handles, over
//! [`nxmesh_client::Client`].
//!
//! Every class comes twice from one definition ([`dual!`]): the blocking
//! one (calls block with the GIL released) and the asyncio one (calls
//! return awaitables). They differ only in their [`Mode`].

use std::future::Future;
use std::time::Duration;

use nxmesh_client::{AgentFilter, Auth, Config, ListParams, RetryPolicy};
use nxmesh_core::event::{EventFilter, Subscription};
use nxmesh_core::model::{AccessLogQuery, AgentStateFilter, MetricsQuery, UpdateAgent};
use nxmesh_core::pagination::Page;
use pyo3::BoundObject;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert::{Id, Instant, ToPy};
use crate::error::to_py_err;
use crate::models::{
    PyAccessLogPage, PyAgent, PyAgentWithConfig, PyApiToken, PyApiTokenCreated, PyAuditEntry,
    PyCertificate, PyCommandResponse, PyConfigPreview, PyEvent, PyMember, PyMetricsSummary,
    PyOrganization, PyPage, PyRegistrationToken, PyReloadResponse, PyRolloutStatus, PyUpstream,
    PyUser, PyVirtualHost, PyWorkspace,
};
use crate::runtime::{AsyncStreamIter, Call, Mode, Out, StreamIter, item_stream};

/// The client and how its calls run.
#[derive(Clone)]
pub(crate) struct Ctx {
    client: nxmesh_client::Client,
    mode: Mode,
}

/// A page of core items on its way to Python.
struct PageOut<T>(Page<T>);

impl<'py, T: ToPy> IntoPyObject<'py> for PageOut<T> {
    type Target = PyPage;
    type Output = Bound<'py, PyPage>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyPage>> {
        Bound::new(py, PyPage::new(py, self.0)?)
    }
}

impl Ctx {
    /// Runs a client call whose value Python gets as `P`.
    fn run<'py, T, P>(
        &self,
        py: Python<'py>,
        fut: impl Future<Output = nxmesh_client::Result<T>> + Send + 'static,
    ) -> PyResult<Bound<'py, PyAny>>
    where
        P: From<T> + for<'a> IntoPyObject<'a> + Send + 'static,
    {
        let call: Call =
            Box::pin(async move { fut.await.map(|v| Out::new(P::from(v))).map_err(to_py_err) });
        self.mode.call(py, call)
    }

    /// Runs a list call: its `Page`.
    fn page<'py, T>(
        &self,
        py: Python<'py>,
        fut: impl Future<Output = nxmesh_client::Result<Page<T>>> + Send + 'static,
    ) -> PyResult<Bound<'py, PyAny>>
    where
        T: ToPy + Send + 'static,
    {
        self.run::<_, PageOut<T>>(py, fut)
    }
}

impl<T> From<Page<T>> for PageOut<T> {
    fn from(p: Page<T>) -> Self {
        PageOut(p)
    }
}

/// `None` becomes Python's `None`, the rest as `P`.
struct OptOut<P>(Option<P>);

impl<T, P: From<T>> From<Option<T>> for OptOut<P> {
    fn from(v: Option<T>) -> Self {
        OptOut(v.map(P::from))
    }
}

impl<'py, P: IntoPyObject<'py>> IntoPyObject<'py> for OptOut<P> {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self.0 {
            Some(p) => p
                .into_pyobject(py)
                .map(BoundObject::into_any)
                .map(BoundObject::into_bound)
                .map_err(Into::into),
            None => Ok(py.None().into_bound(py)),
        }
    }
}

/// A list of `P`.
struct VecOut<P>(Vec<P>);

impl<T, P: From<T>> From<Vec<T>> for VecOut<P> {
    fn from(v: Vec<T>) -> Self {
        VecOut(v.into_iter().map(P::from).collect())
    }
}

impl<'py, P: IntoPyObject<'py>> IntoPyObject<'py> for VecOut<P> {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let list = pyo3::types::PyList::empty(py);
        for p in self.0 {
            list.append(
                p.into_pyobject(py)
                    .map_err(Into::into)?
                    .into_any()
                    .into_bound(),
            )?;
        }
        Ok(list.into_any())
    }
}

/// `()` as Python's `None`.
struct NoneOut;

impl From<()> for NoneOut {
    fn from((): ()) -> Self {
        NoneOut
    }
}

impl<'py> IntoPyObject<'py> for NoneOut {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(py.None().into_bound(py))
    }
}

fn list_params(page: Option<u32>, per_page: Option<u32>) -> ListParams {
    ListParams { page, per_page }
}

/// Declares the blocking and the asyncio class of one handle, with the same
/// fields and methods; `Self::MODE` tells them apart.
macro_rules! dual {
    (
        $(#[doc = $doc:literal])+
        $sync:ident as $sname:literal, $asy:ident as $aname:literal {
            $($field:ident : $fty:ty),* $(,)?
        }
        methods { $($methods:tt)* }
    ) => {
        $(#[doc = $doc])+
        #[pyclass(frozen, name = $sname, module = "nxmesh")]
        pub(crate) struct $sync {
            $($field: $fty),*
        }

        $(#[doc = $doc])+
        #[pyclass(frozen, name = $aname, module = "nxmesh")]
        pub(crate) struct $asy {
            $($field: $fty),*
        }

        // Only the classes that build handles or clients read their mode;
        // the others get it through `ctx`.
        impl $sync {
            #[allow(dead_code)]
            const MODE: Mode = Mode::Blocking;
        }

        impl $asy {
            #[allow(dead_code)]
            const MODE: Mode = Mode::Asyncio;
        }

        // Methods taking `**fields` cannot be written here: the names pyo3
        // generates for them would not share the methods' macro hygiene.
        // `body_method!` writes those whole.
        #[pymethods]
        impl $sync {
            $($methods)*
        }

        #[pymethods]
        impl $asy {
            $($methods)*
        }
    };
}

/// Makes the blocking or asyncio class of a handle for `ctx`'s mode.
macro_rules! handle {
    ($py:expr, $ctx:expr, $sync:ident / $asy:ident { $($field:ident : $value:expr),* $(,)? }) => {{
        let ctx: Ctx = $ctx;
        match ctx.mode {
            Mode::Blocking => Ok(Bound::new($py, $sync { ctx, $($field: $value),* })?.into_any()),
            Mode::Asyncio => Ok(Bound::new($py, $asy { ctx, $($field: $value),* })?.into_any()),
        }
    }};
}

/// The verbs every resource has: `get`, `get_opt`, `list`, `list_all`,
/// `delete`; `$api` builds the Rust handle from `self`.
macro_rules! common_verbs {
    ([$($ty:ident),+], $py_ty:ty, |$s:ident| $api:expr) => {$(
        #[pymethods]
        impl $ty {
            /// The object with this id (`NotFound` when there is none).
            fn get<'py>(&self, py: Python<'py>, id: Id) -> PyResult<Bound<'py, PyAny>> {
                let $s = self;
                let api = $api;
                self.ctx.run::<_, $py_ty>(py, async move { api.get(id.0).await })
            }

            /// The object with this id, or `None`.
            fn get_opt<'py>(&self, py: Python<'py>, id: Id) -> PyResult<Bound<'py, PyAny>> {
                let $s = self;
                let api = $api;
                self.ctx
                    .run::<_, OptOut<$py_ty>>(py, async move { api.get_opt(id.0).await })
            }

            /// One page of the collection.
            #[pyo3(signature = (*, page = None, per_page = None))]
            fn list<'py>(
                &self,
                py: Python<'py>,
                page: Option<u32>,
                per_page: Option<u32>,
            ) -> PyResult<Bound<'py, PyAny>> {
                let $s = self;
                let api = $api;
                let params = list_params(page, per_page);
                self.ctx.page(py, async move { api.list(&params).await })
            }

            /// Every object of the collection, page after page, as an iterator.
            #[pyo3(signature = (*, page = None, per_page = None))]
            fn list_all<'py>(
                &self,
                py: Python<'py>,
                page: Option<u32>,
                per_page: Option<u32>,
            ) -> PyResult<Bound<'py, PyAny>> {
                let $s = self;
                let api = $api;
                let stream = api.list_all(&list_params(page, per_page));
                self.ctx
                    .mode
                    .iter(py, item_stream::<_, $py_ty>(stream), None)
            }

            /// Deletes the object with this id.
            fn delete<'py>(&self, py: Python<'py>, id: Id) -> PyResult<Bound<'py, PyAny>> {
                let $s = self;
                let api = $api;
                self.ctx.run::<_, NoneOut>(py, async move { api.delete(id.0).await })
            }
        }
    )+};
}

/// `create(request=None, /, **fields)`.
macro_rules! create_verb {
    ([$($ty:ident),+], $py_ty:ty, $req:ty, $what:literal, |$s:ident| $api:expr) => {$(
        #[pymethods]
        impl $ty {
            /// Creates an object from a mapping and/or keyword arguments.
            #[pyo3(signature = (request = None, /, **fields))]
            fn create<'py>(
                &self,
                py: Python<'py>,
                request: Option<&Bound<'py, PyAny>>,
                fields: Option<&Bound<'py, PyDict>>,
            ) -> PyResult<Bound<'py, PyAny>> {
                let body: $req = crate::convert::request($what, request, fields)?;
                let $s = self;
                let api = $api;
                self.ctx
                    .run::<_, $py_ty>(py, async move { api.create(&body).await })
            }
        }
    )+};
}

/// `update(id, request=None, /, **fields)`: changes the fields given.
macro_rules! update_verb {
    ([$($ty:ident),+], $py_ty:ty, $req:ty, $what:literal, |$s:ident| $api:expr) => {$(
        #[pymethods]
        impl $ty {
            /// Changes the fields given (a mapping and/or keyword arguments).
            #[pyo3(signature = (id, request = None, /, **fields))]
            fn update<'py>(
                &self,
                py: Python<'py>,
                id: Id,
                request: Option<&Bound<'py, PyAny>>,
                fields: Option<&Bound<'py, PyDict>>,
            ) -> PyResult<Bound<'py, PyAny>> {
                let body: $req = crate::convert::request($what, request, fields)?;
                let $s = self;
                let api = $api;
                self.ctx
                    .run::<_, $py_ty>(py, async move { api.update(id.0, &body).await })
            }
        }
    )+};
}

/// A method taking a request body (`request=None, /, **fields`), and
/// optionally an id first. The whole method, `#[pymethods]` included, is
/// written here: pyo3's generated keyword-argument handling must share the
/// macro's hygiene.
macro_rules! body_method {
    (
        [$($ty:ident),+] #[doc = $doc:literal]
        fn $name:ident(request: $req:ty) -> $py_ty:ty = $what:literal,
        |$s:ident, $body:ident| $call:expr
    ) => {$(
        #[pymethods]
        impl $ty {
            #[doc = $doc]
            #[pyo3(signature = (request = None, /, **fields))]
            fn $name<'py>(
                &self,
                py: Python<'py>,
                request: Option<&Bound<'py, PyAny>>,
                fields: Option<&Bound<'py, PyDict>>,
            ) -> PyResult<Bound<'py, PyAny>> {
                let $body: $req = crate::convert::request($what, request, fields)?;
                let $s = self;
                let fut = $call;
                self.ctx.run::<_, $py_ty>(py, fut)
            }
        }
    )+};
    (
        [$($ty:ident),+] #[doc = $doc:literal]
        fn $name:ident($id:ident, request: $req:ty) -> $py_ty:ty = $what:literal,
        |$s:ident, $body:ident| $call:expr
    ) => {$(
        #[pymethods]
        impl $ty {
            #[doc = $doc]
            #[pyo3(signature = ($id, request = None, /, **fields))]
            fn $name<'py>(
                &self,
                py: Python<'py>,
                $id: Id,
                request: Option<&Bound<'py, PyAny>>,
                fields: Option<&Bound<'py, PyDict>>,
            ) -> PyResult<Bound<'py, PyAny>> {
                let $body: $req = crate::convert::request($what, request, fields)?;
                let $s = self;
                let fut = $call;
                self.ctx.run::<_, $py_ty>(py, fut)
            }
        }
    )+};
}

fn build_client(
    url: &str,
    token: Option<String>,
    email: Option<String>,
    password: Option<String>,
    timeout: f64,
    max_retries: u32,
) -> PyResult<nxmesh_client::Client> {
    let auth = match (token, email, password) {
        (Some(t), None, None) => Auth::Token(t),
        (None, Some(email), Some(password)) => Auth::Login { email, password },
        (None, None, None) => Auth::Anonymous,
        _ => {
            return Err(PyValueError::new_err(
                "give either token=, or email= and password=, or neither",
            ));
        }
    };
    if !(timeout.is_finite() && timeout > 0.0) {
        return Err(PyValueError::new_err(
            "timeout must be a positive number of seconds",
        ));
    }
    let mut config = Config::new(url, auth);
    config.timeout = Duration::from_secs_f64(timeout);
    config.retry = RetryPolicy {
        max_retries,
        ..RetryPolicy::default()
    };
    nxmesh_client::Client::new(config).map_err(to_py_err)
}

fn subscription(events: Option<Vec<String>>, workspace_id: Option<Id>) -> Subscription {
    Subscription {
        events: events.unwrap_or_else(|| vec!["*".to_owned()]),
        filter: workspace_id.map(|w| EventFilter {
            workspace_id: Some(w.0),
        }),
    }
}

fn seconds(value: Option<f64>) -> PyResult<Option<Duration>> {
    value
        .map(|s| {
            Duration::try_from_secs_f64(s)
                .map_err(|_| PyValueError::new_err("a timeout is a non-negative number of seconds"))
        })
        .transpose()
}

dual! {
    /// The NxMesh master's client. `Client` blocks (releasing the GIL);
    /// `AsyncClient` returns awaitables. Authenticate with `token=` (an API
    /// token) or `email=` and `password=` (a login session, refreshed on
    /// its own).
    PyClient as "Client", PyAsyncClient as "AsyncClient" { ctx: Ctx }
    methods {
        #[new]
        #[pyo3(signature = (url, *, token = None, email = None, password = None, timeout = 30.0, max_retries = 3))]
        fn new(
            url: &str,
            token: Option<String>,
            email: Option<String>,
            password: Option<String>,
            timeout: f64,
            max_retries: u32,
        ) -> PyResult<Self> {
            let client = build_client(url, token, email, password, timeout, max_retries)?;
            Ok(Self { ctx: Ctx { client, mode: Self::MODE } })
        }

        /// The master's base URL.
        #[getter]
        fn url(&self) -> String {
            self.ctx.client.base_url().to_string()
        }

        fn __repr__(&self) -> String {
            let name = match Self::MODE {
                Mode::Blocking => "Client",
                Mode::Asyncio => "AsyncClient",
            };
            format!("<nxmesh.{name} {}>", self.ctx.client.base_url())
        }

        /// Logs in now (a login session), so bad credentials raise at once.
        fn login<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
            let c = self.ctx.client.clone();
            self.ctx.run::<_, NoneOut>(py, async move { c.login().await })
        }

        /// Ends the login session on the master.
        fn logout<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
            let c = self.ctx.client.clone();
            self.ctx.run::<_, NoneOut>(py, async move { c.logout().await })
        }

        /// The bearer token the next call would send (`None` when anonymous).
        fn bearer_token<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
            let c = self.ctx.client.clone();
            self.ctx.run::<_, OptOut<String>>(py, async move { c.bearer_token().await })
        }

        /// Organizations the caller belongs to.
        #[getter]
        fn organizations<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
            handle!(py, self.ctx.clone(), PyOrganizations / PyAsyncOrganizations {})
        }

        /// The workspaces of an organization.
        fn workspaces<'py>(&self, py: Python<'py>, organization_id: Id) -> PyResult<Bound<'py, PyAny>> {
            handle!(py, self.ctx.clone(), PyWorkspaces / PyAsyncWorkspaces { parent: organization_id.0 })
        }

        /// The agents of a workspace; `state` (`online`, `offline`,
        /// `degraded`, `all`) and `label_selector` filter the lists.
        #[pyo3(signature = (workspace_id, *, state = None, label_selector = None))]
        fn agents<'py>(
            &self,
            py: Python<'py>,
            workspace_id: Id,
            state: Option<String>,
            label_selector: Option<String>,
        ) -> PyResult<Bound<'py, PyAny>> {
            let state = state
                .map(|s| {
                    serde_json::from_value::<AgentStateFilter>(serde_json::Value::String(s.clone()))
                        .map_err(|_| PyValueError::new_err(format!(
                            "state {s:?}: expected online, offline, degraded or all"
                        )))
                })
                .transpose()?;
            let filter = AgentFilter { state, label_selector };
            handle!(py, self.ctx.clone(), PyAgents / PyAsyncAgents { parent: workspace_id.0, filter: filter })
        }

        /// The virtual hosts of a workspace.
        fn virtual_hosts<'py>(&self, py: Python<'py>, workspace_id: Id) -> PyResult<Bound<'py, PyAny>> {
            handle!(py, self.ctx.clone(), PyVirtualHosts / PyAsyncVirtualHosts { parent: workspace_id.0 })
        }

        /// The upstreams of a workspace.
        fn upstreams<'py>(&self, py: Python<'py>, workspace_id: Id) -> PyResult<Bound<'py, PyAny>> {
            handle!(py, self.ctx.clone(), PyUpstreams / PyAsyncUpstreams { parent: workspace_id.0 })
        }

        /// The certificates of a workspace.
        fn certificates<'py>(&self, py: Python<'py>, workspace_id: Id) -> PyResult<Bound<'py, PyAny>> {
            handle!(py, self.ctx.clone(), PyCertificates / PyAsyncCertificates { parent: workspace_id.0 })
        }

        /// The members of an organization.
        fn members<'py>(&self, py: Python<'py>, organization_id: Id) -> PyResult<Bound<'py, PyAny>> {
            handle!(py, self.ctx.clone(), PyMembers / PyAsyncMembers { parent: organization_id.0 })
        }

        /// The audit log of an organization.
        fn audit_log<'py>(&self, py: Python<'py>, organization_id: Id) -> PyResult<Bound<'py, PyAny>> {
            handle!(py, self.ctx.clone(), PyAuditLog / PyAsyncAuditLog { parent: organization_id.0 })
        }

        /// Users: create, the caller, delete.
        #[getter]
        fn users<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
            handle!(py, self.ctx.clone(), PyUsers / PyAsyncUsers {})
        }

        /// The caller's API tokens.
        #[getter]
        fn api_tokens<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
            handle!(py, self.ctx.clone(), PyApiTokens / PyAsyncApiTokens {})
        }

        /// Rollout status per workspace.
        #[getter]
        fn rollout<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
            handle!(py, self.ctx.clone(), PyRollout / PyAsyncRollout {})
        }

        /// Metrics summaries.
        #[getter]
        fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
            handle!(py, self.ctx.clone(), PyMetrics / PyAsyncMetrics {})
        }

        /// Access logs.
        #[getter]
        fn access_logs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
            handle!(py, self.ctx.clone(), PyAccessLogs / PyAsyncAccessLogs {})
        }

        /// Subscribes to the event feed (patterns such as `agent.*`; every
        /// event by default), optionally for one workspace. Connects and
        /// waits for the master's confirmation first: `Client` returns the
        /// iterator, `AsyncClient` an awaitable of the async iterator. The
        /// feed reconnects on its own; `idle_timeout` (seconds) makes a
        /// step raise `TimeoutError` when nothing arrives in time.
        #[pyo3(signature = (events = None, *, workspace_id = None, idle_timeout = None))]
        fn events<'py>(
            &self,
            py: Python<'py>,
            events: Option<Vec<String>>,
            workspace_id: Option<Id>,
            idle_timeout: Option<f64>,
        ) -> PyResult<Bound<'py, PyAny>> {
            let sub = subscription(events, workspace_id);
            let idle = seconds(idle_timeout)?;
            let client = self.ctx.client.clone();
            match self.ctx.mode {
                Mode::Blocking => {
                    let stream = crate::runtime::block_on(py, async move {
                        client.events(sub).await.map_err(to_py_err)
                    })?;
                    Mode::Blocking.iter(py, item_stream::<_, PyEvent>(stream), idle)
                }
                Mode::Asyncio => {
                    let call: Call = Box::pin(async move {
                        let stream = client.events(sub).await.map_err(to_py_err)?;
                        Ok(Out::new(AsyncStreamIter::new(item_stream::<_, PyEvent>(stream), idle)))
                    });
                    Mode::Asyncio.call(py, call)
                }
            }
        }
    }
}

dual! {
    /// Organizations.
    PyOrganizations as "Organizations", PyAsyncOrganizations as "AsyncOrganizations" { ctx: Ctx }
    methods {
    }
}

common_verbs!(
    [PyOrganizations, PyAsyncOrganizations],
    PyOrganization,
    |s| s.ctx.client.organizations()
);
create_verb!(
    [PyOrganizations, PyAsyncOrganizations],
    PyOrganization,
    nxmesh_core::model::CreateOrganization,
    "organization",
    |s| s.ctx.client.organizations()
);
update_verb!(
    [PyOrganizations, PyAsyncOrganizations],
    PyOrganization,
    nxmesh_core::model::UpdateOrganization,
    "organization update",
    |s| s.ctx.client.organizations()
);

dual! {
    /// The workspaces of an organization (item verbs take any workspace id).
    PyWorkspaces as "Workspaces", PyAsyncWorkspaces as "AsyncWorkspaces" { ctx: Ctx, parent: uuid::Uuid }
    methods {
    }
}

common_verbs!([PyWorkspaces, PyAsyncWorkspaces], PyWorkspace, |s| s
    .ctx
    .client
    .workspaces(s.parent));
create_verb!(
    [PyWorkspaces, PyAsyncWorkspaces],
    PyWorkspace,
    nxmesh_core::model::CreateWorkspace,
    "workspace",
    |s| s.ctx.client.workspaces(s.parent)
);
update_verb!(
    [PyWorkspaces, PyAsyncWorkspaces],
    PyWorkspace,
    nxmesh_core::model::UpdateWorkspace,
    "workspace update",
    |s| s.ctx.client.workspaces(s.parent)
);

dual! {
    /// The agents of a workspace. Agents are created by registering with a
    /// token from `create_registration_token`.
    PyAgents as "Agents", PyAsyncAgents as "AsyncAgents" { ctx: Ctx, parent: uuid::Uuid, filter: AgentFilter }
    methods {


        /// Asks a connected agent to reload nginx and waits for its answer.
        fn reload<'py>(&self, py: Python<'py>, id: Id) -> PyResult<Bound<'py, PyAny>> {
            let api = self.ctx.client.agents(self.parent);
            self.ctx.run::<_, PyReloadResponse>(py, async move { api.reload(id.0).await })
        }


        /// The agent with its configuration ledger row.
        fn config<'py>(&self, py: Python<'py>, id: Id) -> PyResult<Bound<'py, PyAny>> {
            let api = self.ctx.client.agents(self.parent);
            self.ctx.run::<_, PyAgentWithConfig>(py, async move { api.config(id.0).await })
        }
    }
}

body_method!([PyAgents, PyAsyncAgents]
    /// A single-use registration token for a new agent (`name`, `labels`, `expires_in_hours`).
    fn create_registration_token(request: nxmesh_core::model::CreateRegistrationToken) -> PyRegistrationToken = "registration token request",
    |s, body| {
        let api = s.ctx.client.agents(s.parent);
        async move { api.create_registration_token(&body).await }
    }
);
body_method!([PyAgents, PyAsyncAgents]
    /// Sends a command (`command`: reload, restart, stop, get_status, validate_config) and waits for the answer.
    fn command(id, request: nxmesh_core::model::AgentCommand) -> PyCommandResponse = "agent command",
    |s, body| {
        let api = s.ctx.client.agents(s.parent);
        async move { api.command(id.0, &body).await }
    }
);

common_verbs!([PyAgents, PyAsyncAgents], PyAgent, |s| s
    .ctx
    .client
    .agents(s.parent)
    .with_filter(s.filter.clone()));
update_verb!(
    [PyAgents, PyAsyncAgents],
    PyAgent,
    UpdateAgent,
    "agent update",
    |s| s.ctx.client.agents(s.parent)
);

dual! {
    /// The virtual hosts of a workspace.
    PyVirtualHosts as "VirtualHosts", PyAsyncVirtualHosts as "AsyncVirtualHosts" { ctx: Ctx, parent: uuid::Uuid }
    methods {

        /// The nginx text the generator renders for this virtual host.
        fn preview<'py>(&self, py: Python<'py>, id: Id) -> PyResult<Bound<'py, PyAny>> {
            let api = self.ctx.client.virtual_hosts(self.parent);
            self.ctx.run::<_, PyConfigPreview>(py, async move { api.preview(id.0).await })
        }
    }
}

common_verbs!([PyVirtualHosts, PyAsyncVirtualHosts], PyVirtualHost, |s| s
    .ctx
    .client
    .virtual_hosts(s.parent));
create_verb!(
    [PyVirtualHosts, PyAsyncVirtualHosts],
    PyVirtualHost,
    nxmesh_core::model::CreateVirtualHost,
    "virtual host",
    |s| s.ctx.client.virtual_hosts(s.parent)
);
update_verb!(
    [PyVirtualHosts, PyAsyncVirtualHosts],
    PyVirtualHost,
    nxmesh_core::model::UpdateVirtualHost,
    "virtual host update",
    |s| s.ctx.client.virtual_hosts(s.parent)
);

dual! {
    /// The upstreams of a workspace.
    PyUpstreams as "Upstreams", PyAsyncUpstreams as "AsyncUpstreams" { ctx: Ctx, parent: uuid::Uuid }
    methods {
    }
}

common_verbs!([PyUpstreams, PyAsyncUpstreams], PyUpstream, |s| s
    .ctx
    .client
    .upstreams(s.parent));
create_verb!(
    [PyUpstreams, PyAsyncUpstreams],
    PyUpstream,
    nxmesh_core::model::CreateUpstream,
    "upstream",
    |s| s.ctx.client.upstreams(s.parent)
);
update_verb!(
    [PyUpstreams, PyAsyncUpstreams],
    PyUpstream,
    nxmesh_core::model::UpdateUpstream,
    "upstream update",
    |s| s.ctx.client.upstreams(s.parent)
);

dual! {
    /// The certificates of a workspace (requested or uploaded, never edited).
    PyCertificates as "Certificates", PyAsyncCertificates as "AsyncCertificates" { ctx: Ctx, parent: uuid::Uuid }
    methods {
    }
}

common_verbs!([PyCertificates, PyAsyncCertificates], PyCertificate, |s| s
    .ctx
    .client
    .certificates(s.parent));
create_verb!(
    [PyCertificates, PyAsyncCertificates],
    PyCertificate,
    nxmesh_core::model::CreateCertificate,
    "certificate",
    |s| s.ctx.client.certificates(s.parent)
);

dual! {
    /// The members of an organization.
    PyMembers as "Members", PyAsyncMembers as "AsyncMembers" { ctx: Ctx, parent: uuid::Uuid }
    methods {
        /// One page of members.
        #[pyo3(signature = (*, page = None, per_page = None))]
        fn list<'py>(&self, py: Python<'py>, page: Option<u32>, per_page: Option<u32>) -> PyResult<Bound<'py, PyAny>> {
            let api = self.ctx.client.members(self.parent);
            let params = list_params(page, per_page);
            self.ctx.page(py, async move { api.list(&params).await })
        }

        /// Every member, as an iterator.
        #[pyo3(signature = (*, page = None, per_page = None))]
        fn list_all<'py>(&self, py: Python<'py>, page: Option<u32>, per_page: Option<u32>) -> PyResult<Bound<'py, PyAny>> {
            let stream = self.ctx.client.members(self.parent).list_all(&list_params(page, per_page));
            self.ctx.mode.iter(py, item_stream::<_, PyMember>(stream), None)
        }



        /// Removes a member.
        fn delete<'py>(&self, py: Python<'py>, user_id: Id) -> PyResult<Bound<'py, PyAny>> {
            let api = self.ctx.client.members(self.parent);
            self.ctx.run::<_, NoneOut>(py, async move { api.delete(user_id.0).await })
        }
    }
}

body_method!([PyMembers, PyAsyncMembers]
    /// Adds a user (`email` or `user_id`) with a `role`.
    fn create(request: nxmesh_core::model::AddMember) -> PyMember = "member",
    |s, body| {
        let api = s.ctx.client.members(s.parent);
        async move { api.create(&body).await }
    }
);
body_method!([PyMembers, PyAsyncMembers]
    /// Changes a member's `role`.
    fn update(user_id, request: nxmesh_core::model::UpdateMember) -> PyMember = "member update",
    |s, body| {
        let api = s.ctx.client.members(s.parent);
        async move { api.update(user_id.0, &body).await }
    }
);

dual! {
    /// The audit log of an organization, newest first.
    PyAuditLog as "AuditLog", PyAsyncAuditLog as "AsyncAuditLog" { ctx: Ctx, parent: uuid::Uuid }
    methods {
        /// One page of entries.
        #[pyo3(signature = (*, page = None, per_page = None))]
        fn list<'py>(&self, py: Python<'py>, page: Option<u32>, per_page: Option<u32>) -> PyResult<Bound<'py, PyAny>> {
            let api = self.ctx.client.audit_log(self.parent);
            let params = list_params(page, per_page);
            self.ctx.page(py, async move { api.list(&params).await })
        }

        /// Every entry, as an iterator.
        #[pyo3(signature = (*, page = None, per_page = None))]
        fn list_all<'py>(&self, py: Python<'py>, page: Option<u32>, per_page: Option<u32>) -> PyResult<Bound<'py, PyAny>> {
            let stream = self.ctx.client.audit_log(self.parent).list_all(&list_params(page, per_page));
            self.ctx.mode.iter(py, item_stream::<_, PyAuditEntry>(stream), None)
        }
    }
}

dual! {
    /// Users: create (administrators), the caller, delete.
    PyUsers as "Users", PyAsyncUsers as "AsyncUsers" { ctx: Ctx }
    methods {

        /// The authenticated user.
        fn me<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
            let api = self.ctx.client.users();
            self.ctx.run::<_, PyUser>(py, async move { api.me().await })
        }

        /// Deletes a user (administrators).
        fn delete<'py>(&self, py: Python<'py>, id: Id) -> PyResult<Bound<'py, PyAny>> {
            let api = self.ctx.client.users();
            self.ctx.run::<_, NoneOut>(py, async move { api.delete(id.0).await })
        }
    }
}

body_method!([PyUsers, PyAsyncUsers]
    /// Creates a user (`email`, `password`, `name`, `is_admin`).
    fn create(request: nxmesh_core::model::CreateUser) -> PyUser = "user",
    |s, body| {
        let api = s.ctx.client.users();
        async move { api.create(&body).await }
    }
);

dual! {
    /// The caller's API tokens.
    PyApiTokens as "ApiTokens", PyAsyncApiTokens as "AsyncApiTokens" { ctx: Ctx }
    methods {
        /// Every API token of the caller.
        fn list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
            let api = self.ctx.client.api_tokens();
            self.ctx.run::<_, VecOut<PyApiToken>>(py, async move { api.list().await })
        }


        /// Revokes a token.
        fn delete<'py>(&self, py: Python<'py>, id: Id) -> PyResult<Bound<'py, PyAny>> {
            let api = self.ctx.client.api_tokens();
            self.ctx.run::<_, NoneOut>(py, async move { api.delete(id.0).await })
        }
    }
}

body_method!([PyApiTokens, PyAsyncApiTokens]
    /// Creates a token (`name`, `scopes`, `expires_in_days`); its secret is in the answer only (needs a login session).
    fn create(request: nxmesh_core::model::CreateApiToken) -> PyApiTokenCreated = "API token",
    |s, body| {
        let api = s.ctx.client.api_tokens();
        async move { api.create(&body).await }
    }
);

dual! {
    /// Rollout status: which agents of a workspace run which version.
    PyRollout as "Rollout", PyAsyncRollout as "AsyncRollout" { ctx: Ctx }
    methods {
        /// Desired and applied versions of every agent of the workspace.
        fn status<'py>(&self, py: Python<'py>, workspace_id: Id) -> PyResult<Bound<'py, PyAny>> {
            let api = self.ctx.client.rollout();
            self.ctx.run::<_, PyRolloutStatus>(py, async move { api.status(workspace_id.0).await })
        }
    }
}

dual! {
    /// Metrics summaries over a time window (`from_`, `to`: aware
    /// datetimes or RFC 3339 strings).
    PyMetrics as "Metrics", PyAsyncMetrics as "AsyncMetrics" { ctx: Ctx }
    methods {
        /// The summary of every agent of a workspace.
        fn workspace<'py>(&self, py: Python<'py>, workspace_id: Id, from_: Instant, to: Instant) -> PyResult<Bound<'py, PyAny>> {
            let api = self.ctx.client.metrics();
            let window = MetricsQuery { from: from_.0, to: to.0 };
            self.ctx.run::<_, PyMetricsSummary>(py, async move { api.workspace(workspace_id.0, &window).await })
        }

        /// The summary of one agent.
        fn agent<'py>(&self, py: Python<'py>, agent_id: Id, from_: Instant, to: Instant) -> PyResult<Bound<'py, PyAny>> {
            let api = self.ctx.client.metrics();
            let window = MetricsQuery { from: from_.0, to: to.0 };
            self.ctx.run::<_, PyMetricsSummary>(py, async move { api.agent(agent_id.0, &window).await })
        }
    }
}

dual! {
    /// The access logs agents report.
    PyAccessLogs as "AccessLogs", PyAsyncAccessLogs as "AsyncAccessLogs" { ctx: Ctx }
    methods {
        /// Entries of a workspace, newest first, filtered by time window,
        /// status code and count.
        #[pyo3(signature = (workspace_id, *, from_ = None, to = None, status_code = None, limit = None))]
        #[allow(clippy::too_many_arguments)] // optional Python keyword arguments
        fn query<'py>(
            &self,
            py: Python<'py>,
            workspace_id: Id,
            from_: Option<Instant>,
            to: Option<Instant>,
            status_code: Option<u16>,
            limit: Option<u32>,
        ) -> PyResult<Bound<'py, PyAny>> {
            let api = self.ctx.client.access_logs();
            let query = AccessLogQuery {
                from: from_.map(|t| t.0),
                to: to.map(|t| t.0),
                status_code,
                limit,
            };
            self.ctx.run::<_, PyAccessLogPage>(py, async move { api.query(workspace_id.0, &query).await })
        }
    }
}

/// Adds the client classes to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyClient>()?;
    m.add_class::<PyAsyncClient>()?;
    m.add_class::<PyOrganizations>()?;
    m.add_class::<PyAsyncOrganizations>()?;
    m.add_class::<PyWorkspaces>()?;
    m.add_class::<PyAsyncWorkspaces>()?;
    m.add_class::<PyAgents>()?;
    m.add_class::<PyAsyncAgents>()?;
    m.add_class::<PyVirtualHosts>()?;
    m.add_class::<PyAsyncVirtualHosts>()?;
    m.add_class::<PyUpstreams>()?;
    m.add_class::<PyAsyncUpstreams>()?;
    m.add_class::<PyCertificates>()?;
    m.add_class::<PyAsyncCertificates>()?;
    m.add_class::<PyMembers>()?;
    m.add_class::<PyAsyncMembers>()?;
    m.add_class::<PyAuditLog>()?;
    m.add_class::<PyAsyncAuditLog>()?;
    m.add_class::<PyUsers>()?;
    m.add_class::<PyAsyncUsers>()?;
    m.add_class::<PyApiTokens>()?;
    m.add_class::<PyAsyncApiTokens>()?;
    m.add_class::<PyRollout>()?;
    m.add_class::<PyAsyncRollout>()?;
    m.add_class::<PyMetrics>()?;
    m.add_class::<PyAsyncMetrics>()?;
    m.add_class::<PyAccessLogs>()?;
    m.add_class::<PyAsyncAccessLogs>()?;
    m.add_class::<StreamIter>()?;
    m.add_class::<AsyncStreamIter>()?;
    Ok(())
}
