//! The one error shape of the admin API: `{ "error": { "code", "message", "field" } }`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An API error: a 4xx (or 5xx) status and a JSON body naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// A stable machine-readable code (`invalid`, `not_found`, `unauthorized`, `conflict`).
    pub code: &'static str,
    pub message: String,
    /// The request field at fault, when one is.
    pub field: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    field: Option<&'a str>,
}

impl ApiError {
    /// 400: a field has a bad value.
    pub fn invalid(field: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "invalid",
            message: message.into(),
            field: Some(field.to_owned()),
        }
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: message.into(),
            field: None,
        }
    }

    /// 409: the request conflicts with what exists.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::CONFLICT,
            code: "conflict",
            message: message.into(),
            field: None,
        }
    }

    /// 401: no or a wrong bearer token.
    pub fn unauthorized() -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: "a valid bearer token is required".into(),
            field: None,
        }
    }

    /// 500: something failed on the edge's side; the message is safe to show.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: message.into(),
            field: None,
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    /// Unknown id: 404; a value the store's rules refuse: 400 naming the field; a uniqueness
    /// conflict: 409; the database failing: 500 (the detail goes to the log, not the client).
    fn from(e: crate::store::StoreError) -> ApiError {
        use crate::store::StoreError;
        match e {
            StoreError::NotFound { what, id } => ApiError::not_found(format!("no {what} '{id}'")),
            StoreError::Invalid { field, message } => ApiError::invalid(field, message),
            StoreError::Conflict { message } => ApiError::conflict(message),
            StoreError::Backend(m) => {
                tracing::error!(error = %m, "store failed under the admin API");
                ApiError::internal("the store failed; see the edge's log")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner { code: self.code, message: &self.message, field: self.field.as_deref() },
        };
        (self.status, Json(body)).into_response()
    }
}
