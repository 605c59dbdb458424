//! Extractors whose rejections are the API's own errors, and the
//! authenticated principal.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use nxmesh_core::model::{Role, Scope, User};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::error::ApiError;

/// A JSON body; malformed JSON, wrong types and unknown fields are a 422
/// (an unknown field is most often a misspelt one, and silently ignoring it
/// would lose what the user meant).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| {
                ct.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            })
            .is_some_and(|mime| mime == "application/json" || mime.ends_with("+json"));
        if !is_json {
            return Err(ApiError::bad_request(
                "expected a JSON body with Content-Type: application/json",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::bad_request("the request body is too large or unreadable"))?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Deserializes `bytes`, refusing unknown fields with a field error each.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut unknown = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_ignored::deserialize(&mut de, |path| unknown.push(path.to_string()))
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    de.end()
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    if unknown.is_empty() {
        return Ok(value);
    }
    let mut errors = nxmesh_core::error::ValidationErrors::default();
    for field in unknown {
        errors.push(
            field,
            nxmesh_core::error::FieldErrorCode::NotAllowed,
            "unknown field",
        );
    }
    Err(errors.into())
}

/// Query parameters; bad values are a 422.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e: QueryRejection| {
                ApiError::bad_request(format!("invalid query: {}", e.body_text()))
            })
    }
}

/// An id in the path; something that is not an id names nothing, so 404.
#[derive(Debug, Clone, Copy)]
pub struct Id(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<Uuid>::from_request_parts(parts, state)
            .await
            .map(|p| Id(p.0))
            .map_err(|_: PathRejection| ApiError::not_found("resource"))
    }
}

/// Two ids in the path (`/organizations/{id}/members/{user_id}`).
#[derive(Debug, Clone, Copy)]
pub struct Ids(pub Uuid, pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for Ids {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<(Uuid, Uuid)>::from_request_parts(parts, state)
            .await
            .map(|p| Ids(p.0.0, p.0.1))
            .map_err(|_: PathRejection| ApiError::not_found("resource"))
    }
}

/// How a principal authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// A login session (JWT access token).
    Session,
    /// An API token with scopes.
    ApiToken {
        /// Its scopes.
        scopes: Vec<Scope>,
    },
}

/// Who is making a request; put in the request's extensions by the
/// `authenticate` middleware.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user (API tokens act as their owner, bounded by their scopes).
    pub user: User,
    /// How.
    pub via: Via,
}

/// The authenticated principal; 401 when the request carries no
/// credentials.
#[derive(Debug, Clone)]
pub struct Auth(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Auth)
            .ok_or_else(|| ApiError::unauthorized("authentication required"))
    }
}

impl Auth {
    /// The user's id.
    pub fn user_id(&self) -> Uuid {
        self.0.user.id
    }
}

/// The role needed to change things of a kind, used by the handlers.
pub(crate) const EDIT: Role = Role::Editor;
/// The role needed to manage an organization's structure.
pub(crate) const ADMIN: Role = Role::Admin;
