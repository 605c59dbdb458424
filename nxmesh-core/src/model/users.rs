//! Users, organization membership and roles, API tokens and the audit log:
//! what any real deployment needs beyond the specification's resources.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Timestamp;
use crate::error::{FieldErrorCode, ValidationErrors};
use crate::validate::{self, Validate};

/// A member's role in an organization, from least to most powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything of the organization.
    Viewer,
    /// Also changes virtual hosts, upstreams, certificates and agents.
    Editor,
    /// Also manages workspaces, members (up to admin) and registration tokens.
    Admin,
    /// Also renames or deletes the organization and manages owners.
    Owner,
}

impl Role {
    /// The role as spelled on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "editor" => Some(Role::Editor),
            "admin" => Some(Role::Admin),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    /// Its id.
    pub id: Uuid,
    /// Login email, unique.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Server administrators may create users.
    pub is_admin: bool,
    /// When it was created.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

/// The shortest password accepted for a new user.
pub const MIN_PASSWORD_LEN: usize = 12;

/// `POST /users` (administrators only).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateUser {
    /// Login email.
    pub email: String,
    /// Password, at least [`MIN_PASSWORD_LEN`] characters.
    pub password: String,
    /// Display name.
    pub name: String,
    /// Make the user a server administrator.
    #[serde(default)]
    pub is_admin: bool,
}

impl fmt::Debug for CreateUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateUser")
            .field("email", &self.email)
            .field("password", &"<redacted>")
            .field("name", &self.name)
            .field("is_admin", &self.is_admin)
            .finish()
    }
}

impl Validate for CreateUser {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        validate::email(&mut errors, "email", &self.email);
        validate::name(&mut errors, "name", &self.name);
        if self.password.chars().count() < MIN_PASSWORD_LEN {
            errors.push(
                "password",
                FieldErrorCode::OutOfRange,
                format!("at least {MIN_PASSWORD_LEN} characters"),
            );
        } else {
            validate::password_present(&mut errors, "password", &self.password);
        }
        errors.into_result()
    }
}

/// A member of an organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Member {
    /// The user.
    pub user_id: Uuid,
    /// The user's email.
    pub email: String,
    /// The user's name.
    pub name: String,
    /// The role in this organization.
    pub role: Role,
    /// When the user joined.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

/// `POST /organizations/{id}/members`: by `email` or `user_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddMember {
    /// The user's email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The user's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    /// The role to give.
    pub role: Role,
}

impl Validate for AddMember {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        match (&self.email, self.user_id) {
            (Some(email), None) => validate::email(&mut errors, "email", email),
            (None, Some(_)) => {}
            _ => errors.push(
                "email",
                FieldErrorCode::Required,
                "give exactly one of email and user_id",
            ),
        }
        errors.into_result()
    }
}

/// `PATCH /organizations/{id}/members/{user_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateMember {
    /// The new role.
    pub role: Role,
}

/// What an API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read (`GET`) requests.
    Read,
    /// Changing requests too (still bounded by the owner's roles).
    Write,
}

/// An API token for automation (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiToken {
    /// Its id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// When it was created.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    /// When it stops working, if ever.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<Timestamp>,
}

/// `POST /auth/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateApiToken {
    /// A name to recognize it by.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Days until it expires (1 to 3650); absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<u32>,
}

impl Validate for CreateApiToken {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        validate::name(&mut errors, "name", &self.name);
        if self.scopes.is_empty() {
            errors.push(
                "scopes",
                FieldErrorCode::Required,
                "give at least one scope",
            );
        }
        if let Some(d) = self.expires_in_days {
            validate::range(&mut errors, "expires_in_days", u64::from(d), 1, 3650);
        }
        errors.into_result()
    }
}

/// The answer to [`CreateApiToken`]; the secret is shown only here.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiTokenCreated {
    /// The secret, for `Authorization: Bearer`.
    pub token: String,
    /// The token's record.
    #[serde(flatten)]
    pub api_token: ApiToken,
}

impl fmt::Debug for ApiTokenCreated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiTokenCreated")
            .field("token", &"<redacted>")
            .field("api_token", &self.api_token)
            .finish()
    }
}

/// `POST /auth/logout`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogoutRequest {
    /// The refresh token whose session ends.
    pub refresh_token: String,
}

impl fmt::Debug for LogoutRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LogoutRequest { .. }")
    }
}

/// One change recorded in an organization's audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    /// Its id.
    pub id: Uuid,
    /// The organization.
    pub organization_id: Uuid,
    /// Who made the change (absent when the user was deleted).
    pub actor_id: Option<Uuid>,
    /// The actor's email at the time.
    pub actor: String,
    /// What was done, for example `virtual_host.create`.
    pub action: String,
    /// The kind of object changed, for example `virtual_host`.
    pub target_type: String,
    /// The object changed.
    pub target_id: Option<Uuid>,
    /// When.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}
