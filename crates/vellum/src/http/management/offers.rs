//! `/api/v1/offers`: credential offers, each the start of an issuance session.

use axum::extract::State;
use axum::response::Response;

use super::created;
use crate::errors::ApiError;
use crate::http::AppState;
use crate::http::extract::{ApiJson, ApiKey};
use crate::http::routes::Routes;
use crate::offers::{self, CreateOfferRequest};

pub fn routes() -> Routes {
    Routes::new().post("/offers", create_offer)
}

async fn create_offer(
    _: ApiKey,
    State(ctx): State<AppState>,
    ApiJson(request): ApiJson<CreateOfferRequest>,
) -> Result<Response, ApiError> {
    Ok(created(offers::create_offer(&ctx, request).await?))
}
