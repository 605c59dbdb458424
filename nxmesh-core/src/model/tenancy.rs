//! Authentication payloads, organizations and workspaces.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Timestamp;
use crate::error::ValidationErrors;
use crate::validate::{self, Validate};

/// `POST /auth/login`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginRequest {
    /// The user's email address.
    pub email: String,
    /// The user's password.
    pub password: String,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("email", &self.email)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Validate for LoginRequest {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        validate::email(&mut errors, "email", &self.email);
        validate::password_present(&mut errors, "password", &self.password);
        errors.into_result()
    }
}

/// `POST /auth/refresh`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefreshRequest {
    /// The refresh token returned by the last login or refresh.
    pub refresh_token: String,
}

impl std::fmt::Debug for RefreshRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshRequest")
            .field("refresh_token", &"<redacted>")
            .finish()
    }
}

/// The response of login and refresh.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenResponse {
    /// A short-lived JWT for the `Authorization: Bearer` header.
    pub access_token: String,
    /// A single-use opaque token to get the next access token.
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Always `Bearer`.
    pub token_type: String,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"<redacted>")
            .field("refresh_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .field("token_type", &self.token_type)
            .finish()
    }
}

/// An organization: the unit of tenancy. Users are members of
/// organizations; everything else belongs to one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Organization {
    /// Its id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// URL-safe unique name.
    pub slug: String,
    /// When it was created.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    /// When it last changed.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: Timestamp,
}

/// `POST /organizations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateOrganization {
    /// Display name.
    pub name: String,
    /// URL-safe unique name.
    pub slug: String,
}

impl Validate for CreateOrganization {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        validate::name(&mut errors, "name", &self.name);
        validate::slug(&mut errors, "slug", &self.slug);
        errors.into_result()
    }
}

/// `PATCH /organizations/{id}`: absent fields are left unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateOrganization {
    /// New display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New slug.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
}

impl Validate for UpdateOrganization {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if let Some(name) = &self.name {
            validate::name(&mut errors, "name", name);
        }
        if let Some(slug) = &self.slug {
            validate::slug(&mut errors, "slug", slug);
        }
        errors.into_result()
    }
}

/// A workspace: a group of agents and the configuration they serve, inside
/// an organization (for example `production` and `staging`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Workspace {
    /// Its id.
    pub id: Uuid,
    /// The organization it belongs to.
    pub organization_id: Uuid,
    /// Display name.
    pub name: String,
    /// URL-safe name, unique within the organization.
    pub slug: String,
    /// When it was created.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

/// `POST /organizations/{id}/workspaces`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateWorkspace {
    /// Display name.
    pub name: String,
    /// URL-safe name, unique within the organization.
    pub slug: String,
}

impl Validate for CreateWorkspace {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        validate::name(&mut errors, "name", &self.name);
        validate::slug(&mut errors, "slug", &self.slug);
        errors.into_result()
    }
}

/// `PATCH /workspaces/{id}`: absent fields are left unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateWorkspace {
    /// New display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New slug.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
}

impl Validate for UpdateWorkspace {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if let Some(name) = &self.name {
            validate::name(&mut errors, "name", name);
        }
        if let Some(slug) = &self.slug {
            validate::slug(&mut errors, "slug", slug);
        }
        errors.into_result()
    }
}
