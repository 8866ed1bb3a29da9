//! `/api/v1/overview`: what the issuer did in a recent window, and its delivery backlog.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::errors::ApiError;
use crate::http::AppState;
use crate::http::extract::{ApiKey, ApiQuery};
use crate::http::routes::Routes;
use crate::operator::{self, OverviewQuery};

pub fn routes() -> Routes {
    Routes::new().get("/overview", overview)
}

async fn overview(
    _: ApiKey,
    State(ctx): State<AppState>,
    ApiQuery(query): ApiQuery<OverviewQuery>,
) -> Result<Response, ApiError> {
    Ok(Json(operator::overview(&ctx, query).await?).into_response())
}
