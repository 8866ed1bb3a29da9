//! Readiness, served by every instance whatever its roles.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::routes::Routes;

pub fn routes() -> Routes {
    Routes::new().get("/health", health)
}

/// Ready when the database answers.
async fn health(State(ctx): State<AppState>) -> Response {
    match ctx.store.ping().await {
        Ok(()) => Json(json!({"status": "ok"})).into_response(),
        Err(error) => {
            tracing::warn!(%error, "health check: database unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable"})),
            )
                .into_response()
        }
    }
}
