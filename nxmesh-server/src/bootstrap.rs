//! First start: the first administrator.

use std::path::{Path, PathBuf};

use nxmesh_core::model::{CreateUser, User};
use nxmesh_core::storage::{NewUser, Storage, StorageError};
use nxmesh_core::validate::Validate;

use crate::auth::{KeyError, hash_password, new_secret, write_private};

/// Why the first administrator could not be created.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The configured email or password is not acceptable.
    #[error("invalid first administrator: {0}")]
    Invalid(#[from] nxmesh_core::error::ValidationErrors),
    /// Storage failed.
    #[error("storage")]
    Storage(#[from] StorageError),
    /// Hashing, randomness or the password file failed.
    #[error("credentials")]
    Key(#[from] KeyError),
}

/// The first administrator, when one was created now.
#[derive(Debug)]
pub struct FirstAdmin {
    /// The user.
    pub user: User,
    /// Where the generated password was written (`None` when it was given).
    pub password_file: Option<PathBuf>,
}

/// The email of a generated first administrator.
pub const DEFAULT_ADMIN_EMAIL: &str = "admin@nxmesh.local";

/// Creates the first administrator when there are no users: with the given
/// email and password, or else with a generated password written once to
/// `data_dir/initial-admin-password` (mode 0600).
pub async fn ensure_first_admin(
    store: &dyn Storage,
    data_dir: &Path,
    email: Option<&str>,
    password: Option<&str>,
) -> Result<Option<FirstAdmin>, BootstrapError> {
    if store.count_users().await? > 0 {
        return Ok(None);
    }
    let (password, password_file) = match password {
        Some(p) => (p.to_owned(), None),
        None => {
            let p = new_secret("")?;
            let path = data_dir.join("initial-admin-password");
            write_private(&path, format!("{p}\n").as_bytes()).map_err(|source| KeyError::Io {
                path: path.display().to_string(),
                source,
            })?;
            (p, Some(path))
        }
    };
    let req = CreateUser {
        email: email.unwrap_or(DEFAULT_ADMIN_EMAIL).to_owned(),
        password,
        name: "Administrator".to_owned(),
        is_admin: true,
    };
    req.validate()?;
    let password_hash = hash_password(&req.password)?;
    let user = store
        .create_user(&NewUser {
            email: req.email,
            name: req.name,
            password_hash,
            is_admin: true,
        })
        .await?;
    Ok(Some(FirstAdmin {
        user,
        password_file,
    }))
}
