//! The storage conformance suite: what every implementation of the
//! [`nxmesh_core::storage`] traits must do, written from the traits' docs.
//!
//! Each public `async fn` of this crate is one suite that takes any
//! [`Storage`] and exercises a group of methods with real assertions:
//! create, get, list (pagination, order by creation), update and delete;
//! `NotFound` and `Conflict`; cascades; agent registration; refresh-token
//! rotation and reuse; API tokens; the audit log; metrics and access logs;
//! the configuration ledger; and what must hold when callers race.
//! The suites only use objects they create themselves (unique slugs, names
//! and emails), so they may run one after another on one store, or each on
//! a fresh store.
//!
//! The suites panic on the first broken expectation, like `assert!`: this is
//! a test library, and a panic with the failing method and the expectation
//! in its message is what a test runner reports best.
//!
//! [`conformance_tests!`] expands to one `#[tokio::test]` per suite, so that
//! each backend gets granular tests:
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use nxmesh_core::storage::Storage;
//!
//! async fn my_store() -> Arc<dyn Storage> {
//!     // Open a fresh instance of your backend here.
//! #   panic!("only an example")
//! }
//!
//! mod my_backend {
//!     nxmesh_conformance::conformance_tests!(super::my_store().await);
//! }
//! # fn main() {}
//! ```
//!
//! [`run_all`] runs every suite in turn, for a binary or an example.

mod agents;
mod concurrency;
mod ledger;
mod resources;
mod support;
mod telemetry;
mod tenancy;
mod users;

use std::future::Future;
use std::pin::Pin;

use nxmesh_core::storage::Storage;

pub use agents::{agent_filters, agent_registration, agent_state, agents};
pub use concurrency::{concurrency, set_member_race};
pub use ledger::ledger;
pub use resources::{certificates, upstreams, virtual_hosts};
pub use support::metric_names;
pub use telemetry::{access_logs, metrics};
pub use tenancy::{
    organization_delete_cascades, organizations, workspace_delete_cascades, workspaces,
};
pub use users::{api_tokens, audit, members, refresh_tokens, user_delete_cascades, users};

/// A suite, as stored in [`SUITES`].
pub type SuiteFn = for<'a> fn(&'a dyn Storage) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

macro_rules! suites {
    ($($name:ident),* $(,)?) => {
        /// Every suite with its name, in the order [`run_all`] runs them.
        pub const SUITES: &[(&str, SuiteFn)] = &[
            $((stringify!($name), |s| Box::pin($name(s)))),*
        ];
    };
}

suites!(
    organizations,
    workspaces,
    organization_delete_cascades,
    workspace_delete_cascades,
    agents,
    agent_registration,
    agent_filters,
    agent_state,
    virtual_hosts,
    upstreams,
    certificates,
    users,
    members,
    user_delete_cascades,
    refresh_tokens,
    api_tokens,
    audit,
    metrics,
    access_logs,
    ledger,
    concurrency,
    set_member_race,
);

/// Runs every suite of [`SUITES`] on `store`, in turn; panics on the first
/// broken expectation.
pub async fn run_all(store: &dyn Storage) {
    for (_, suite) in SUITES {
        suite(store).await;
    }
}

/// Expands to one `#[tokio::test]` per suite, each running on the store that
/// `$make` evaluates to.
///
/// `$make` is evaluated inside each (async) test, so it may `.await`, and it
/// may `return` early to skip a backend that is not available. It must give
/// a value `s` for which `&*s` is a `&dyn Storage`-compatible reference
/// (`Arc<MyStore>`, `Box<dyn Storage>`, …). The calling crate needs `tokio`
/// (with `macros` and `rt`) as a dependency. Also defines a test that the
/// expansion covers every suite of [`SUITES`].
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::__conformance_tests!(
            $make;
            organizations,
            workspaces,
            organization_delete_cascades,
            workspace_delete_cascades,
            agents,
            agent_registration,
            agent_filters,
            agent_state,
            virtual_hosts,
            upstreams,
            certificates,
            users,
            members,
            user_delete_cascades,
            refresh_tokens,
            api_tokens,
            audit,
            metrics,
            access_logs,
            ledger,
            concurrency,
            set_member_race,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let store = $make;
                $crate::$name(&*store).await;
            }
        )*

        #[test]
        fn conformance_tests_cover_every_suite() {
            let expanded: &[&str] = &[$(stringify!($name)),*];
            let all: ::std::vec::Vec<&str> = $crate::SUITES.iter().map(|(n, _)| *n).collect();
            assert_eq!(expanded, all.as_slice());
        }
    };
}
