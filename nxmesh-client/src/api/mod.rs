//! Resource handles: [`Api<K>`] gives every resource the same verbs
//! (`get`, `get_opt`, `list`, `list_all`, `create`, `update`, `delete`),
//! and a few endpoints that are not resources get their own handles.

mod extra;
mod resources;

use std::collections::VecDeque;
use std::marker::PhantomData;

use futures_util::Stream;
use nxmesh_core::pagination::{MAX_PER_PAGE, Page};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::client::Client;
use crate::error::Result;

pub use extra::{
    AccessLogs, AgentCommand, AgentWithConfig, ApiTokens, AuditLog, CommandResponse, ConfigPreview,
    Members, Metrics, Rollout, Users,
};
pub use resources::AgentFilter;

/// A resource of the REST API: where its collection and items live.
pub trait Resource: DeserializeOwned + Send + 'static {
    /// What the collection hangs off: `()` for top-level resources, the
    /// organization's or workspace's id otherwise.
    type Parent: Copy + Send + Sync + 'static;
    /// Extra list filters (`()` when the list has none).
    type Filter: Clone + Default + Send + Sync + 'static;
    /// The resource's name in messages, for example `workspace`.
    const KIND: &'static str;
    /// The collection's path, for example `v1/organizations/{id}/workspaces`.
    fn collection_path(parent: Self::Parent) -> String;
    /// An item's path, for example `v1/workspaces/{id}`.
    fn item_path(id: Uuid) -> String;
    /// The query pairs of a filter.
    fn filter_query(filter: &Self::Filter) -> Vec<(&'static str, String)>;
}

/// A resource created by `POST` to its collection.
pub trait Creatable: Resource {
    /// The request body.
    type Request: Serialize + Sync;
}

/// A resource updated by `PATCH` on its item.
pub trait Updatable: Resource {
    /// The request body.
    type Request: Serialize + Sync;
}

/// Pagination of a list call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListParams {
    /// The page, starting at 1 (the server's default: 1).
    pub page: Option<u32>,
    /// Items per page, 1 to 100 (the server's default: 20).
    pub per_page: Option<u32>,
}

impl ListParams {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(p) = self.page {
            q.push(("page", p.to_string()));
        }
        if let Some(p) = self.per_page {
            q.push(("per_page", p.to_string()));
        }
        q
    }
}

/// The handle of one resource kind, within its parent.
pub struct Api<K: Resource> {
    client: Client,
    parent: K::Parent,
    filter: K::Filter,
    _kind: PhantomData<fn() -> K>,
}

impl<K: Resource> Clone for Api<K> {
    fn clone(&self) -> Self {
        Api {
            client: self.client.clone(),
            parent: self.parent,
            filter: self.filter.clone(),
            _kind: PhantomData,
        }
    }
}

impl<K: Resource> std::fmt::Debug for Api<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("kind", &K::KIND).finish()
    }
}

impl<K: Resource> Api<K> {
    /// A handle on `parent`'s collection of `K`.
    pub fn new(client: &Client, parent: K::Parent) -> Api<K> {
        Api {
            client: client.clone(),
            parent,
            filter: K::Filter::default(),
            _kind: PhantomData,
        }
    }

    /// The same handle with list filters (agents: state and labels).
    pub fn with_filter(mut self, filter: K::Filter) -> Api<K> {
        self.filter = filter;
        self
    }

    /// The item `id`.
    pub async fn get(&self, id: Uuid) -> Result<K> {
        self.client.get_json(K::item_path(id), Vec::new()).await
    }

    /// The item `id`, or `None` when the master answers `NOT_FOUND`.
    pub async fn get_opt(&self, id: Uuid) -> Result<Option<K>> {
        match self.get(id).await {
            Ok(k) => Ok(Some(k)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One page of the collection.
    pub async fn list(&self, params: &ListParams) -> Result<Page<K>> {
        let mut query = params.query();
        query.extend(K::filter_query(&self.filter));
        self.client
            .get_json(K::collection_path(self.parent), query)
            .await
    }

    /// Every item of the collection, page after page (100 per page unless
    /// `params.per_page` says otherwise, from `params.page` or the first).
    /// Items created or deleted during the walk may be seen twice or missed,
    /// as with any offset pagination.
    pub fn list_all(&self, params: &ListParams) -> impl Stream<Item = Result<K>> + Send + 'static {
        paginate(
            self.client.clone(),
            K::collection_path(self.parent),
            K::filter_query(&self.filter),
            *params,
        )
    }

    /// Deletes the item `id`.
    pub async fn delete(&self, id: Uuid) -> Result<()> {
        self.client.delete_path(K::item_path(id)).await
    }
}

impl<K: Creatable> Api<K> {
    /// Creates an item in the collection.
    pub async fn create(&self, request: &K::Request) -> Result<K> {
        self.client
            .send_json(Method::POST, K::collection_path(self.parent), request)
            .await
    }
}

impl<K: Updatable> Api<K> {
    /// Changes the fields `request` sets on the item `id`.
    pub async fn update(&self, id: Uuid, request: &K::Request) -> Result<K> {
        self.client
            .send_json(Method::PATCH, K::item_path(id), request)
            .await
    }
}

/// Walks every page of the list at `path` (see [`Api::list_all`]).
pub(crate) fn paginate<T: DeserializeOwned + Send + 'static>(
    client: Client,
    path: String,
    filter: Vec<(&'static str, String)>,
    params: ListParams,
) -> impl Stream<Item = Result<T>> + Send + 'static {
    struct State<T> {
        client: Client,
        path: String,
        filter: Vec<(&'static str, String)>,
        next: Option<ListParams>,
        buffer: VecDeque<T>,
    }
    let state = State {
        client,
        path,
        filter,
        next: Some(ListParams {
            page: Some(params.page.unwrap_or(1)),
            per_page: Some(params.per_page.unwrap_or(MAX_PER_PAGE)),
        }),
        buffer: VecDeque::new(),
    };
    futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.buffer.pop_front() {
                return Some((Ok(item), st));
            }
            let params = st.next.take()?;
            let mut query = params.query();
            query.extend(st.filter.iter().cloned());
            match st.client.get_json::<Page<T>>(st.path.clone(), query).await {
                Ok(page) => {
                    if page.meta.has_next() && !page.data.is_empty() {
                        st.next = Some(ListParams {
                            page: Some(page.meta.page + 1),
                            ..params
                        });
                    }
                    st.buffer.extend(page.data);
                }
                // The walk ends after an error: `next` is already None.
                Err(e) => return Some((Err(e), st)),
            }
        }
    })
}
