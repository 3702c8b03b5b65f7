//! `GET /tools`: the catalog, as far as the token may use it.

use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};

use crate::gateway::api::{ApiError, ErrorBody, ToolInfo, ToolList};
use crate::gateway::auth::Principal;
use crate::gateway::core::Gateway;

/// The tools live workers serve, with their input schemas.
#[utoipa::path(get, path = "/tools", tag = "tools",
    responses(
        (status = 200, description = "The catalog", body = ToolList),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(gw): State<Arc<Gateway>>,
    Extension(who): Extension<Principal>,
) -> Result<Json<ToolList>, ApiError> {
    gw.admit(&who).await?;
    let catalog = gw.catalog().await?;
    let tools = catalog
        .tools()
        .filter(|t| who.grant.may_use_tool(&t.entry.name))
        .map(|t| ToolInfo {
            name: t.entry.name.clone(),
            description: t.entry.description.clone(),
            input_schema: t.entry.input_schema.clone(),
            source: t.entry.source.clone(),
            workers: t.workers.len(),
        })
        .collect();
    Ok(Json(ToolList { tools }))
}
