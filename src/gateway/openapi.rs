//! The OpenAPI 3.1 document, generated from the handlers' annotations and
//! the wire types, served at `/openapi.json`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::api;
use super::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "toolq gateway", description = "Tool calls as durable jobs, run by a toolq worker fleet."),
    paths(
        routes::tools::list,
        routes::execute::execute,
        routes::batch::batch,
        routes::jobs::show,
        routes::health::health,
    ),
    components(schemas(
        api::ExecuteRequest,
        api::BatchItem,
        api::BatchLine,
        api::Pending,
        api::ToolInfo,
        api::ToolList,
        api::Health,
        api::ErrorBody,
        api::ErrorDetail,
        crate::job::JobResult,
        crate::job::ErrorInfo,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "jobs", description = "Run tools as jobs and read their results"),
        (name = "tools", description = "The tool catalog"),
        (name = "health", description = "Liveness of the gateway and its Redis"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The document as served.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc
}
