//! The notification endpoints of the admin API:
//!
//! - `GET /api/templates/emergency-call-notification`: `{subject, text, html}`, the stored
//!   template or the default.
//! - `PUT` the same body: validated by rendering it ([`notify::validate`]); a template that does
//!   not render is refused with a 400 naming `subject`, `text` or `html`, and nothing is
//!   written.
//! - `POST .../preview`: the rendered `{subject, text, html}`. The body is optional; it may give
//!   sample data (`agent_id`, `agent_name`, `dialled`, `test`, `time` in Unix seconds,
//!   `callback` (`null`: pool exhausted), `location` (`null`: unknown), `edge`,
//!   `authenticated`) over [`Notice::sample`], and a `template` object to preview an edit before
//!   storing it; otherwise the stored template (or the default) is rendered.
//! - `GET /api/notifications`: undelivered mail, oldest first, status only: `id`, `created_at`,
//!   `attempts`, `next_attempt_at`, `last_error` (an error class). Never content or recipients.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use super::agents_api::{blocking, object, only_fields, opt_text};
use super::api::edge;
use super::{AdminState, ApiError};
use crate::emergency::notify::{self, Notice, Rendered, TEMPLATE_NAME, TemplateError};
use crate::store::{InvalidValue, Store, Template, Token};

/// The routes, merged into the token-protected `/api` router.
pub(super) fn routes() -> Router<AdminState> {
    let path = "/api/templates/emergency-call-notification";
    Router::new()
        .route(path, get(template).put(put_template))
        .route(&format!("{path}/preview"), post(preview))
        .route("/api/notifications", get(notifications))
}

/// `GET /api/templates/emergency-call-notification`.
async fn template(State(state): State<AdminState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(template_json(&current(&state).await?)))
}

/// `PUT /api/templates/emergency-call-notification`: only a template that renders is stored.
async fn put_template(
    State(state): State<AdminState>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let t = template_of(&object(&body)?)?;
    notify::validate(&t).map_err(|e| refused(&e))?;
    let (store, stored) = (store(&state)?, t.clone());
    blocking(move || Ok(store.put_template(&name()?, &stored)?)).await?;
    tracing::info!("emergency-call-notification template replaced");
    Ok(Json(template_json(&t)))
}

/// `POST /api/templates/emergency-call-notification/preview`.
async fn preview(State(state): State<AdminState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) { Map::new() } else { object(&body)? };
    let mut notice = Notice::sample();
    let mut given = None;
    for (key, v) in &body {
        let k = key.as_str();
        match k {
            "template" => {
                let Value::Object(m) = v else {
                    return Err(ApiError::invalid(k, "must be an object {subject, text, html}"));
                };
                given = Some(template_of(m)?);
            }
            "agent_id" => {
                notice.agent_id = text(k, v)?
                    .parse()
                    .map_err(|e: InvalidValue| ApiError::invalid(k, e.to_string()))?
            }
            "agent_name" => notice.agent_name = opt_text(k, v)?,
            "dialled" => notice.dialled = text(k, v)?,
            "test" => notice.test = flag(k, v)?,
            "time" => {
                notice.at =
                    v.as_i64().ok_or_else(|| ApiError::invalid(k, "must be Unix seconds"))?
            }
            "callback" => {
                notice.callback = opt_text(k, v)?
                    .map(|c| c.parse())
                    .transpose()
                    .map_err(|e: InvalidValue| ApiError::invalid(k, e.to_string()))?
            }
            "location" => notice.location = opt_text(k, v)?,
            "edge" => notice.edge = text(k, v)?,
            "authenticated" => notice.authenticated = flag(k, v)?,
            _ => return Err(ApiError::invalid(k, "unknown field")),
        }
    }
    let t = match given {
        // Refused as a PUT of it would be.
        Some(t) => {
            notify::validate(&t).map_err(|e| refused(&e))?;
            t
        }
        None => current(&state).await?,
    };
    let r: Rendered = notify::render(&t, &notice).map_err(|e| refused(&e))?;
    Ok(Json(json!({ "subject": r.subject, "text": r.text, "html": r.html })))
}

/// `GET /api/notifications`: status only, as a bare array.
async fn notifications(State(state): State<AdminState>) -> Result<Json<Value>, ApiError> {
    let store = store(&state)?;
    let status = blocking(move || Ok(store.outbox_status()?)).await?;
    let rows: Vec<Value> = status
        .rows
        .iter()
        .map(|r| {
            json!({
                "id": r.id.0,
                "created_at": notify::rfc3339(r.created_at),
                "attempts": r.attempts,
                "next_attempt_at": notify::rfc3339(r.next_attempt_at),
                "last_error": r.last_error,
            })
        })
        .collect();
    Ok(Json(Value::Array(rows)))
}

/// The stored template, or the default.
async fn current(state: &AdminState) -> Result<Template, ApiError> {
    let store = store(state)?;
    blocking(move || Ok(store.template(&name()?)?.unwrap_or_else(notify::default_template))).await
}

fn store(state: &AdminState) -> Result<Arc<dyn Store>, ApiError> {
    Ok(edge(state)?.store.clone())
}

fn name() -> Result<Token, ApiError> {
    TEMPLATE_NAME.parse().map_err(|e| ApiError::internal(format!("template name: {e}")))
}

fn template_json(t: &Template) -> Value {
    json!({ "subject": t.subject, "text": t.text, "html": t.html })
}

/// A template that does not render: 400 naming the part.
fn refused(e: &TemplateError) -> ApiError {
    ApiError::invalid(e.part.as_str(), e.to_string())
}

/// `{subject, text, html}`, all three required, nothing else.
fn template_of(m: &Map<String, Value>) -> Result<Template, ApiError> {
    only_fields(m, &["subject", "text", "html"])?;
    let part = |k: &str| match m.get(k) {
        Some(v) => text(k, v),
        None => Err(ApiError::invalid(k, "required")),
    };
    Ok(Template { subject: part("subject")?, text: part("text")?, html: part("html")? })
}

fn text(k: &str, v: &Value) -> Result<String, ApiError> {
    v.as_str().map(str::to_owned).ok_or_else(|| ApiError::invalid(k, "must be a string"))
}

fn flag(k: &str, v: &Value) -> Result<bool, ApiError> {
    v.as_bool().ok_or_else(|| ApiError::invalid(k, "must be true or false"))
}
