//! Pagination: the `page`/`per_page` query parameters and the `meta` block
//! of list responses.

use serde::{Deserialize, Serialize};

use crate::error::{FieldError, FieldErrorCode};

/// The default number of items per page.
pub const DEFAULT_PER_PAGE: u32 = 20;
/// The largest `per_page` a client may ask for.
pub const MAX_PER_PAGE: u32 = 100;

/// The `page` and `per_page` query parameters (1-based pages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::IntoParams),
    into_params(parameter_in = Query)
)]
pub struct PageParams {
    /// The page to return, starting at 1.
    #[serde(default = "default_page")]
    pub page: u32,
    /// Items per page, 1 to [`MAX_PER_PAGE`].
    #[serde(default = "default_per_page")]
    pub per_page: u32,
}

fn default_page() -> u32 {
    1
}

fn default_per_page() -> u32 {
    DEFAULT_PER_PAGE
}

impl Default for PageParams {
    fn default() -> Self {
        PageParams {
            page: 1,
            per_page: DEFAULT_PER_PAGE,
        }
    }
}

impl PageParams {
    /// Checks the bounds: `page >= 1`, `1 <= per_page <= 100`.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.page == 0 {
            return Err(FieldError::new(
                "page",
                FieldErrorCode::OutOfRange,
                "page starts at 1",
            ));
        }
        if self.per_page == 0 || self.per_page > MAX_PER_PAGE {
            return Err(FieldError::new(
                "per_page",
                FieldErrorCode::OutOfRange,
                format!("per_page must be between 1 and {MAX_PER_PAGE}"),
            ));
        }
        Ok(())
    }

    /// How many items precede this page.
    pub fn offset(&self) -> u64 {
        u64::from(self.page.saturating_sub(1)) * u64::from(self.per_page)
    }

    /// The `meta` block for this page of a list with `total` items.
    pub fn meta(&self, total: u64) -> PageMeta {
        PageMeta {
            page: self.page,
            per_page: self.per_page,
            total,
        }
    }
}

/// The `meta` block of a paginated list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PageMeta {
    /// The page returned.
    pub page: u32,
    /// Items per page.
    pub per_page: u32,
    /// Items in the whole list.
    pub total: u64,
}

impl PageMeta {
    /// Whether pages follow this one.
    pub fn has_next(&self) -> bool {
        u64::from(self.page) * u64::from(self.per_page) < self.total
    }
}

/// A page of a list: `{"data": [...], "meta": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    /// The items of this page.
    pub data: Vec<T>,
    /// Where this page sits in the whole list.
    pub meta: PageMeta,
}
