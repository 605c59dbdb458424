//! The API error body of the specification and its error codes.
//!
//! Every error the REST API returns has the shape
//! `{"error": {"code", "message", "request_id", "details": [...]}}`; the
//! client mirrors it. Validation produces [`FieldError`]s, gathered in
//! [`ValidationErrors`], which become the `details` of a `VALIDATION_ERROR`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An error code of the specification, each with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// 401: authentication required or invalid credentials.
    Unauthorized,
    /// 403: insufficient permissions.
    Forbidden,
    /// 404: resource not found.
    NotFound,
    /// 422: request validation failed.
    ValidationError,
    /// 409: resource conflict (for example a duplicate slug).
    Conflict,
    /// 429: too many requests.
    RateLimited,
    /// 500: server internal error.
    InternalError,
    /// 503: service temporarily unavailable.
    ServiceUnavailable,
}

impl ErrorCode {
    /// Every error code, in the specification's order.
    pub const ALL: [ErrorCode; 8] = [
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::ValidationError,
        ErrorCode::Conflict,
        ErrorCode::RateLimited,
        ErrorCode::InternalError,
        ErrorCode::ServiceUnavailable,
    ];

    /// The HTTP status code the specification pairs with this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::ValidationError => 422,
            ErrorCode::Conflict => 409,
            ErrorCode::RateLimited => 429,
            ErrorCode::InternalError => 500,
            ErrorCode::ServiceUnavailable => 503,
        }
    }

    /// The code as it appears on the wire, for example `NOT_FOUND`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::ValidationError => "VALIDATION_ERROR",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::InternalError => "INTERNAL_ERROR",
            ErrorCode::ServiceUnavailable => "SERVICE_UNAVAILABLE",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every error response: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// The error itself.
    pub error: ApiErrorDetail,
}

/// The inside of an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiErrorDetail {
    /// What kind of error this is.
    pub code: ErrorCode,
    /// A human-readable message. Internal errors carry a generic message.
    pub message: String,
    /// The id of the request, for correlating with the server's log.
    pub request_id: String,
    /// Field-level problems, for `VALIDATION_ERROR`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldError>,
}

/// What is wrong with one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FieldErrorCode {
    /// The field is missing or empty.
    Required,
    /// The value does not have the expected format.
    InvalidFormat,
    /// The value contains a character that is not allowed there.
    InvalidCharacter,
    /// The value is longer than allowed.
    TooLong,
    /// The number is outside the allowed range.
    OutOfRange,
    /// The value is not one of the allowed choices, or is refused by policy.
    NotAllowed,
    /// The value names something that does not exist.
    NotFound,
    /// A code this version does not know (sent by a newer server).
    #[serde(other)]
    Unknown,
}

/// One field-level validation problem, the `details` entries of the
/// specification's error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    /// The path of the field, for example `locations[0].path`.
    pub field: String,
    /// What is wrong, in words.
    pub message: String,
    /// What is wrong, as a code.
    pub code: FieldErrorCode,
}

impl FieldError {
    /// A field error.
    pub fn new(field: impl Into<String>, code: FieldErrorCode, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
            code,
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// All field errors found while validating one input; never empty when
/// returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, Default, thiserror::Error)]
pub struct ValidationErrors {
    /// The problems, in the order they were found.
    pub errors: Vec<FieldError>,
}

impl ValidationErrors {
    /// Records a problem.
    pub fn push(
        &mut self,
        field: impl Into<String>,
        code: FieldErrorCode,
        message: impl Into<String>,
    ) {
        self.errors.push(FieldError::new(field, code, message));
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// `Ok(())` when nothing was recorded, otherwise `Err(self)`.
    pub fn into_result(self) -> Result<(), ValidationErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

impl From<FieldError> for ValidationErrors {
    fn from(e: FieldError) -> Self {
        ValidationErrors { errors: vec![e] }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("validation failed")?;
        for (i, e) in self.errors.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
