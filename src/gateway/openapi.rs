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
        routes::queues::list,
        routes::queues::pause,
        routes::queues::resume,
        routes::queues::delete,
        routes::queues::cancel,
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
        crate::job::Progress,
        routes::queues::QueueInfo,
        routes::queues::QueueList,
        routes::queues::Done,
        routes::queues::CancelReply,
        api::JobStatus,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "jobs", description = "Run tools as jobs and read their results"),
        (name = "tools", description = "The tool catalog"),
        (name = "health", description = "Liveness of the gateway and its Redis"),
        (name = "queues", description = "Operator control: list, pause, resume, delete"),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `queue` a request can carry has the one pattern the handlers
    /// enforce (the attributes repeat it as a literal).
    #[test]
    fn every_queue_field_has_the_queue_pattern() {
        let doc = serde_json::to_value(document()).unwrap();
        let body = &doc["components"]["schemas"]["ExecuteRequest"]["properties"]["queue"];
        assert_eq!(body["pattern"], api::QUEUE_PATTERN, "{body}");
        let mut params = 0;
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                for p in op["parameters"].as_array().into_iter().flatten() {
                    if p["name"] == "queue" {
                        assert_eq!(
                            p["schema"]["pattern"],
                            api::QUEUE_PATTERN,
                            "{method} {path}"
                        );
                        params += 1;
                    }
                }
            }
        }
        // ?queue= of /batch, /jobs/{id}, /jobs/{id}/cancel; {queue} of
        // pause, resume, delete.
        assert_eq!(params, 6);
    }
}
