//! List pagination (SPEC §3): `?limit=` (default 100, max 1000) and an opaque `?cursor=`,
//! answered as `{"items":[...],"next_cursor":null|"..."}`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rampart_platform::rows::Page;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

/// The pagination part of a list query string.
#[derive(Debug, Default, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Items per page, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// Opaque cursor from a previous answer's `next_cursor`.
    pub cursor: Option<String>,
}

impl ListQuery {
    /// The store page to fetch: one row more than asked, to know whether another page exists.
    pub(crate) fn page(&self) -> Result<Page, ApiError> {
        let limit = self.limit_value()?;
        let after = match &self.cursor {
            None => None,
            Some(cursor) => Some(decode_cursor(cursor)?),
        };
        Ok(Page { after, limit: limit + 1 })
    }

    pub(crate) fn limit_value(&self) -> Result<u32, ApiError> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(0) => Err(ApiError::invalid("limit must be between 1 and 1000")),
            Some(n) => Ok(n.min(MAX_LIMIT)),
        }
    }
}

fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| ApiError::invalid("invalid cursor"))
}

/// One page of a list answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Paginated<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Paginated<T> {
    /// A list answered whole (bounded lists: keys, images, campaigns, advisories, blocks).
    pub(crate) fn whole<R: Into<T>>(rows: impl IntoIterator<Item = R>) -> Self {
        Paginated { items: rows.into_iter().map(Into::into).collect(), next_cursor: None }
    }
}

/// Builds a page from `rows` fetched with [`ListQuery::page`]: trims the extra row and makes
/// the cursor from the key of the last row kept.
pub(crate) fn paginate<R, T>(
    query: &ListQuery,
    mut rows: Vec<R>,
    key: impl Fn(&R) -> String,
    to_item: impl FnMut(R) -> T,
) -> Result<Paginated<T>, ApiError> {
    let limit = query.limit_value()? as usize;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = match (more, rows.last()) {
        (true, Some(last)) => Some(URL_SAFE_NO_PAD.encode(key(last))),
        _ => None,
    };
    Ok(Paginated { items: rows.into_iter().map(to_item).collect(), next_cursor })
}

/// Pages a list the store returns whole (API keys, roles, groups): rows are sorted by `key`,
/// those at or before the cursor are skipped, and the rest go through [`paginate`].
pub(crate) fn paginate_in_memory<R, T>(
    query: &ListQuery,
    mut rows: Vec<R>,
    key: impl Fn(&R) -> String,
    to_item: impl FnMut(R) -> T,
) -> Result<Paginated<T>, ApiError> {
    let page = query.page()?;
    rows.sort_by_key(|row| key(row));
    if let Some(after) = &page.after {
        rows.retain(|row| key(row).as_str() > after.as_str());
    }
    rows.truncate(page.limit as usize);
    paginate(query, rows, key, to_item)
}
