//! The one error type of the REST API, rendered as the specification's
//! error body by the `render_errors` middleware (which knows the request
//! id). Client mistakes echo their message; internal errors answer a
//! generic message and their cause is logged once, there.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nxmesh_core::error::{ErrorCode, FieldError, ValidationErrors};
use nxmesh_core::storage::StorageError;

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The specification's code (gives the HTTP status).
    pub code: ErrorCode,
    /// What the client sees.
    pub message: String,
    /// Field-level problems.
    pub details: Vec<FieldError>,
    /// For 429: seconds until a retry may succeed.
    pub retry_after: Option<u64>,
    /// For internal errors: the cause, logged and never sent.
    pub cause: Option<String>,
}

impl ApiError {
    fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            details: Vec::new(),
            retry_after: None,
            cause: None,
        }
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Unauthorized, message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Forbidden, message)
    }

    /// 404.
    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Conflict, message)
    }

    /// 422 with one field error.
    pub fn invalid(
        field: &str,
        code: nxmesh_core::error::FieldErrorCode,
        message: impl Into<String>,
    ) -> ApiError {
        ValidationErrors::from(FieldError::new(field, code, message)).into()
    }

    /// 422 without field details (malformed body or query).
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::ValidationError, message)
    }

    /// 429.
    pub fn rate_limited(retry_after: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(ErrorCode::RateLimited, "too many requests")
        }
    }

    /// 503.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::ServiceUnavailable, message)
    }

    /// 500; `cause` is logged, not sent.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        ApiError {
            cause: Some(cause.to_string()),
            ..ApiError::new(ErrorCode::InternalError, "internal error")
        }
    }
}

impl From<ValidationErrors> for ApiError {
    fn from(e: ValidationErrors) -> ApiError {
        ApiError {
            details: e.errors,
            ..ApiError::new(ErrorCode::ValidationError, "Request validation failed")
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> ApiError {
        match e {
            StorageError::NotFound { what } => ApiError::not_found(what),
            StorageError::Conflict { what } => ApiError::conflict(what),
            StorageError::Invalid(v) => v.into(),
            StorageError::Unavailable(cause) => ApiError {
                cause: Some(cause.to_string()),
                ..ApiError::unavailable("storage unavailable, retry later")
            },
            StorageError::Backend(cause) => ApiError::internal(error_chain(cause.as_ref())),
        }
    }
}

impl From<crate::auth::KeyError> for ApiError {
    fn from(e: crate::auth::KeyError) -> ApiError {
        ApiError::internal(error_chain(&e))
    }
}

/// An error and its sources, on one line.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = status.into_response();
        r.extensions_mut().insert(Arc::new(self));
        r
    }
}

/// The result of handlers.
pub type ApiResult<T> = Result<T, ApiError>;
