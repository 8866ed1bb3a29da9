//! `/api/v1/offers`: credential offers, each the start of an issuance session (the offer id is
//! the session id), and, while one can be redeemed, its links and QR code again.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::created;
use crate::errors::ApiError;
use crate::http::AppState;
use crate::http::extract::{ApiJson, ApiKey};
use crate::http::routes::Routes;
use crate::offers::{self, CreateOfferRequest};
use crate::sessions;

pub fn routes() -> Routes {
    Routes::new()
        .post("/offers", create_offer)
        .get("/offers/{offerId}", get_offer)
        .get("/offers/{offerId}/qr", get_offer_qr)
}

async fn create_offer(
    _: ApiKey,
    State(ctx): State<AppState>,
    ApiJson(request): ApiJson<CreateOfferRequest>,
) -> Result<Response, ApiError> {
    Ok(created(offers::create_offer(&ctx, request).await?))
}

async fn get_offer(
    _: ApiKey,
    State(ctx): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let links = offers::redeemable_offer(&ctx, sessions::parse_id(&id)?).await?;
    Ok(Json(links).into_response())
}

async fn get_offer_qr(
    _: ApiKey,
    State(ctx): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let svg = offers::offer_qr(&ctx, sessions::parse_id(&id)?).await?;
    Ok(([(CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}
