//! The admin API for agents, their presence, groups and call history (DESIGN.md, "Admin
//! API" and "Decisions").
//!
//! - Bodies are JSON objects with the fields of the agents seed (`password`, `name`,
//!   `caller_id`, `capacity`, `mailbox`, `emergency_contacts` as one `;`-separated text,
//!   `location = { country, address }`). `PUT` creates or replaces (a field left out takes its
//!   default), `PATCH` changes only the fields given (`null` clears one). Leaving `password` out
//!   keeps the stored one; a new agent needs one. The read-only fields of a `GET` (`presence`,
//!   `warnings`) are ignored, so a `GET` body can be edited and `PUT` back; any other unknown
//!   field is refused.
//! - Every value is checked by the store's rules (`AgentDraft`, `check_password`, ...) before
//!   anything is written; a bad one answers 400 naming its field, and nothing is written.
//! - Writes go to the store (blocking, on `spawn_blocking`), then to the live roster (the
//!   core authenticates and routes with it from the next request) and the presence book,
//!   one agent or group edit at a time ([`crate::agents::LiveRoster::edit`]).
//! - Lists are bare JSON arrays, paged with `?limit=` (default 100, at most 1000) and
//!   `?after=<last id of the previous page>`.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::api::edge;
use super::{AdminState, ApiError, EdgeView};
use crate::store::{
    Agent, AgentDraft, AgentId, AgentPatch, CallId, CallRecord, Credentials, E164, Email, Group,
    GroupId, LocationDraft, MAX_PAGE, Presence, PresenceState, StoreError, Written, check_password,
    check_realm, join_contacts, warnings_for,
};

/// A page when `?limit=` is not given.
const DEFAULT_PAGE: u32 = 100;

// ---------------------------------------------------------------------------------------------
// Agents

/// `GET /api/agents`: agents by id (never their credentials).
pub(super) async fn agents(
    State(state): State<AdminState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let view = edge(&state)?.clone();
    let (limit, after) = page(query)?;
    let after = after.map(|a| a.parse::<AgentId>().map_err(|e| ApiError::invalid("after", e.0)));
    let after = after.transpose()?;
    let store = view.store.clone();
    let list = blocking(move || Ok(store.agents(limit, after.as_ref())?)).await?;
    let presence = |a: &Agent| view.presence.presence(a.id.as_str());
    Ok(Json(Value::Array(list.iter().map(|a| agent_json(a, presence(a))).collect())))
}

/// `GET /api/agents/{id}`.
pub(super) async fn agent(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let view = edge(&state)?.clone();
    let id = agent_id(&id)?;
    let store = view.store.clone();
    let agent = blocking(move || Ok(store.agent(&id)?)).await?;
    Ok(Json(agent_json(&agent, view.presence.presence(agent.id.as_str()))))
}

/// `PUT /api/agents/{id}`: creates (201) or replaces (200) the agent.
pub(super) async fn put_agent(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let view = edge(&state)?.clone();
    let body = object(&body)?;
    check_body_id(&body, &id)?;
    let mut draft = AgentDraft { id: id.clone(), ..AgentDraft::default() };
    fill_draft(&mut draft, &body)?;
    let agent = draft.validate()?;
    let password = password(&body)?;
    let credentials = password.map(|p| credentials(&agent.id, &view.realm, &p)).transpose()?;
    let (written, agent) = blocking({
        let view = view.clone();
        move || {
            let written = view.roster.edit(|roster| {
                if credentials.is_none() && is_new(&view, &agent.id)? {
                    return Err(ApiError::invalid("password", "a new agent needs a password"));
                }
                let written = view.store.put_agent(&agent, credentials.as_ref())?;
                roster.put_agent(&agent, credentials.as_ref());
                Ok(written)
            })?;
            refresh_presence(&view, &agent.id);
            Ok((written, agent))
        }
    })
    .await?;
    let status = match written {
        Written::Created => StatusCode::CREATED,
        Written::Replaced => StatusCode::OK,
    };
    tracing::info!(agent = %agent.id, created = (status == StatusCode::CREATED), "agent written");
    Ok((status, Json(agent_json(&agent, view.presence.presence(agent.id.as_str()))))
        .into_response())
}

/// `PATCH /api/agents/{id}`: changes only the fields given.
pub(super) async fn patch_agent(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let view = edge(&state)?.clone();
    let id = agent_id(&id)?;
    let body = object(&body)?;
    check_body_id(&body, id.as_str())?;
    let password = password(&body)?;
    let credentials = password.map(|p| credentials(&id, &view.realm, &p)).transpose()?;
    let agent = blocking({
        let view = view.clone();
        move || {
            view.roster.edit(|roster| {
                let current = view.store.agent(&id)?;
                let mut draft = draft_of(&current);
                fill_draft(&mut draft, &body)?;
                let wanted = draft.validate()?;
                let patch = patch_between(&current, &wanted);
                let agent = match &credentials {
                    // One transaction for the profile and the password.
                    Some(c) => {
                        let agent = patch.apply(current);
                        view.store.put_agent(&agent, Some(c))?;
                        agent
                    }
                    None => view.store.patch_agent(&id, &patch)?,
                };
                roster.put_agent(&agent, credentials.as_ref());
                Ok(agent)
            })
        }
    })
    .await?;
    tracing::info!(agent = %agent.id, "agent changed");
    Ok(Json(agent_json(&agent, view.presence.presence(agent.id.as_str()))))
}

/// `DELETE /api/agents/{id}`: the agent, its credentials, presence and group memberships.
pub(super) async fn delete_agent(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let view = edge(&state)?.clone();
    let id = agent_id(&id)?;
    blocking(move || {
        view.roster.edit(|roster| {
            view.store.delete_agent(&id)?;
            roster.remove_agent(id.as_str());
            Ok::<_, ApiError>(())
        })?;
        refresh_presence(&view, &id);
        tracing::info!(agent = %id, "agent deleted");
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/agents/{id}/presence`: `{ "state", "previous" }`.
pub(super) async fn presence(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let view = edge(&state)?;
    let p = view.presence.presence(&id).ok_or_else(|| no_agent(&id))?;
    Ok(Json(presence_json(&p)))
}

/// `PUT /api/agents/{id}/presence` with `{ "state": "dnd" }`: the state, set for the agent.
pub(super) async fn put_presence(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let view = edge(&state)?.clone();
    let id = agent_id(&id)?;
    let body = object(&body)?;
    only_fields(&body, &["state", "previous"])?;
    let state = match body.get("state") {
        Some(Value::String(s)) => {
            s.parse::<PresenceState>().map_err(|e| ApiError::invalid("state", e.0))?
        }
        Some(_) => return Err(ApiError::invalid("state", "must be a text")),
        None => return Err(ApiError::invalid("state", "is required")),
    };
    let p = blocking(move || Ok(view.presence.set_by_agent(&id, state)?)).await?;
    Ok(Json(presence_json(&p)))
}

fn presence_json(p: &Presence) -> Value {
    json!({ "state": p.state.as_str(), "previous": p.previous.as_ref().map(PresenceState::as_str) })
}

/// An agent as the API shows it, with what is missing from it (`warnings`).
fn agent_json(a: &Agent, presence: Option<Presence>) -> Value {
    let warnings: Vec<Value> =
        warnings_for(a).iter().map(|w| json!({ "field": w.field, "message": w.message })).collect();
    json!({
        "id": a.id.as_str(),
        "name": a.name,
        "caller_id": a.caller_id.iter().map(E164::as_str).collect::<Vec<_>>(),
        "capacity": a.capacity,
        "mailbox": a.mailbox.as_ref().map(Email::as_str),
        "emergency_contacts": (!a.emergency_contacts.is_empty())
            .then(|| join_contacts(&a.emergency_contacts)),
        "location": a.location.as_ref().map(|l| json!({
            "country": l.country.as_str(),
            "address": l.address,
        })),
        "presence": presence.map(|p| p.state.to_string()),
        "warnings": warnings,
    })
}

/// The draft an agent was made from: what a `PATCH` starts from.
fn draft_of(a: &Agent) -> AgentDraft {
    AgentDraft {
        id: a.id.to_string(),
        name: a.name.clone(),
        caller_id: a.caller_id.iter().map(ToString::to_string).collect(),
        capacity: Some(a.capacity.into()),
        mailbox: a.mailbox.as_ref().map(ToString::to_string),
        emergency_contacts: Some(join_contacts(&a.emergency_contacts)),
        location: a
            .location
            .as_ref()
            .map(|l| LocationDraft { country: l.country.to_string(), address: l.address.clone() }),
    }
}

/// The fields that differ between `current` and `wanted`.
fn patch_between(current: &Agent, wanted: &Agent) -> AgentPatch {
    fn changed<T: Clone + PartialEq>(a: &T, b: &T) -> Option<T> {
        (a != b).then(|| b.clone())
    }
    AgentPatch {
        name: changed(&current.name, &wanted.name),
        caller_id: changed(&current.caller_id, &wanted.caller_id),
        capacity: changed(&current.capacity, &wanted.capacity),
        mailbox: changed(&current.mailbox, &wanted.mailbox),
        emergency_contacts: changed(&current.emergency_contacts, &wanted.emergency_contacts),
        location: changed(&current.location, &wanted.location),
    }
}

/// The fields an agent body may have: the profile, the password, and what `GET` adds.
const AGENT_FIELDS: &[&str] = &[
    "id",
    "password",
    "name",
    "caller_id",
    "capacity",
    "mailbox",
    "emergency_contacts",
    "location",
    "presence",
    "warnings",
];

/// Applies the profile fields of `body` to `draft`: a field left out stays as it is, `null`
/// clears it (its default), a value replaces it. Checks JSON types only; the values are the
/// store's to judge ([`AgentDraft::validate`]).
fn fill_draft(draft: &mut AgentDraft, body: &Map<String, Value>) -> Result<(), ApiError> {
    only_fields(body, AGENT_FIELDS)?;
    for (field, value) in body {
        match (field.as_str(), value) {
            ("name", v) => draft.name = opt_text("name", v)?,
            ("caller_id", Value::Null) => draft.caller_id.clear(),
            ("caller_id", Value::Array(items)) => {
                draft.caller_id = items
                    .iter()
                    .map(|i| match i {
                        Value::String(s) => Ok(s.clone()),
                        _ => Err(ApiError::invalid("caller_id", "must be a list of numbers")),
                    })
                    .collect::<Result<_, _>>()?;
            }
            ("caller_id", _) => {
                return Err(ApiError::invalid("caller_id", "must be a list of E.164 numbers"));
            }
            ("capacity", Value::Null) => draft.capacity = None,
            ("capacity", v) => {
                let n = v
                    .as_i64()
                    .ok_or_else(|| ApiError::invalid("capacity", "must be a whole number"))?;
                draft.capacity = Some(n);
            }
            ("mailbox", v) => draft.mailbox = opt_text("mailbox", v)?,
            ("emergency_contacts", v) => {
                draft.emergency_contacts = opt_text("emergency_contacts", v)?;
            }
            ("location", Value::Null) => draft.location = None,
            ("location", Value::Object(l)) => {
                only_fields(l, &["country", "address"]).map_err(|e| ApiError {
                    field: e.field.map(|f| format!("location.{f}")),
                    ..e
                })?;
                let country = match l.get("country") {
                    Some(Value::String(c)) => c.clone(),
                    _ => return Err(ApiError::invalid("location.country", "is required (text)")),
                };
                let address = match l.get("address") {
                    None => None,
                    Some(v) => opt_text("location.address", v)?,
                };
                draft.location = Some(LocationDraft { country, address });
            }
            ("location", _) => {
                return Err(ApiError::invalid("location", "must be { country, address }"));
            }
            // The id is checked against the path; the password and read-only fields elsewhere.
            _ => {}
        }
    }
    Ok(())
}

/// A text or `null`.
pub(super) fn opt_text(field: &str, v: &Value) -> Result<Option<String>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(ApiError::invalid(field, "must be a text or null")),
    }
}

/// The password of a body, if given; it cannot be cleared.
fn password(body: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    match body.get("password") {
        None => Ok(None),
        Some(Value::String(p)) => Ok(Some(p.clone())),
        Some(_) => Err(ApiError::invalid("password", "must be a text (it cannot be removed)")),
    }
}

/// The digest credentials for `password`, realm `[sip] domain`; checked before any write.
fn credentials(id: &AgentId, realm: &str, password: &str) -> Result<Credentials, ApiError> {
    check_password(password)?;
    check_realm(realm)?;
    Ok(Credentials::derive(id, realm, password))
}

fn is_new(view: &EdgeView, id: &AgentId) -> Result<bool, StoreError> {
    match view.store.agent(id) {
        Ok(_) => Ok(false),
        Err(StoreError::NotFound { .. }) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Brings the presence book in line with a written or deleted agent. The write is done
/// already: a failure is logged (the agent shows no presence until the next write).
fn refresh_presence(view: &EdgeView, id: &AgentId) {
    if let Err(e) = view.presence.refresh(id) {
        tracing::error!(agent = %id, error = %e, "presence not refreshed after an agent write");
    }
}

/// A body's `id`, when given, must be the one in the path.
fn check_body_id(body: &Map<String, Value>, id: &str) -> Result<(), ApiError> {
    match body.get("id") {
        None => Ok(()),
        Some(Value::String(s)) if s == id => Ok(()),
        Some(_) => Err(ApiError::invalid("id", format!("must be '{id}' (the id in the path)"))),
    }
}

fn agent_id(id: &str) -> Result<AgentId, ApiError> {
    id.parse().map_err(|_| no_agent(id))
}

fn no_agent(id: &str) -> ApiError {
    ApiError::not_found(format!("no agent '{id}'"))
}

// ---------------------------------------------------------------------------------------------
// Groups

/// `GET /api/groups`: groups by id, with their members in ring order.
pub(super) async fn groups(
    State(state): State<AdminState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let view = edge(&state)?.clone();
    let (limit, after) = page(query)?;
    let after = after.map(|a| a.parse::<GroupId>().map_err(|e| ApiError::invalid("after", e.0)));
    let after = after.transpose()?;
    let list = blocking(move || Ok(view.store.groups(limit, after.as_ref())?)).await?;
    Ok(Json(Value::Array(list.iter().map(group_json).collect())))
}

/// `GET /api/groups/{id}`.
pub(super) async fn group(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let view = edge(&state)?.clone();
    let id = group_id(&id)?;
    let group = blocking(move || Ok(view.store.group(&id)?)).await?;
    Ok(Json(group_json(&group)))
}

/// `PUT /api/groups/{id}` with `{ "members": [...] }`: creates (201) or replaces (200). Every
/// member must be an agent.
pub(super) async fn put_group(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let view = edge(&state)?.clone();
    let body = object(&body)?;
    only_fields(&body, &["id", "members"])?;
    check_body_id(&body, &id)?;
    let id: GroupId =
        id.parse().map_err(|e: crate::store::InvalidValue| ApiError::invalid("id", e.0))?;
    let members = match body.get("members") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|m| match m {
                Value::String(s) => {
                    s.parse::<AgentId>().map_err(|e| ApiError::invalid("members", e.0))
                }
                _ => Err(ApiError::invalid("members", "must be a list of agent ids")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(ApiError::invalid("members", "must be a list of agent ids")),
        None => return Err(ApiError::invalid("members", "is required")),
    };
    let group = Group { id, members };
    let written = blocking({
        let group = group.clone();
        move || {
            view.roster.edit(|roster| {
                let written = view.store.put_group(&group)?;
                roster.put_group(&group);
                Ok(written)
            })
        }
    })
    .await?;
    let status = match written {
        Written::Created => StatusCode::CREATED,
        Written::Replaced => StatusCode::OK,
    };
    tracing::info!(group = %group.id, members = group.members.len(), "group written");
    Ok((status, Json(group_json(&group))).into_response())
}

/// `DELETE /api/groups/{id}`.
pub(super) async fn delete_group(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let view = edge(&state)?.clone();
    let id = group_id(&id)?;
    blocking(move || {
        view.roster.edit(|roster| {
            view.store.delete_group(&id)?;
            roster.remove_group(id.as_str());
            Ok(())
        })
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn group_json(g: &Group) -> Value {
    json!({ "id": g.id.as_str(), "members": g.members.iter().map(AgentId::as_str).collect::<Vec<_>>() })
}

fn group_id(id: &str) -> Result<GroupId, ApiError> {
    id.parse().map_err(|_| ApiError::not_found(format!("no group '{id}'")))
}

// ---------------------------------------------------------------------------------------------
// Call history

/// `GET /api/calls`: ordinary calls, newest first (`?after=` the id of the last row seen).
/// Emergency calls are never in it (the store cannot hold them).
pub(super) async fn calls(
    State(state): State<AdminState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let view = edge(&state)?.clone();
    let (limit, after) = page(query)?;
    let after = after
        .map(|a| {
            a.parse::<i64>()
                .map(CallId)
                .map_err(|_| ApiError::invalid("after", "must be a call id"))
        })
        .transpose()?;
    let rows = blocking(move || Ok(view.store.calls(limit, after)?)).await?;
    Ok(Json(Value::Array(rows.iter().map(call_json).collect())))
}

/// A call-history row in DESIGN.md's shape.
fn call_json(r: &CallRecord) -> Value {
    let c = &r.call;
    json!({
        "id": r.id.0,
        "agent": c.agent.as_ref().map(AgentId::as_str),
        "direction": c.direction.as_str(),
        "from": c.from,
        "to": c.to,
        "started_at": rfc3339(c.started_at),
        "duration_s": c.duration_s,
        "result": c.result,
        "trunk": c.trunk,
    })
}

/// Unix seconds as RFC 3339 UTC (`2026-01-02T03:04:05Z`).
fn rfc3339(t: i64) -> String {
    crate::emergency::notify::rfc3339(t)
}

// ---------------------------------------------------------------------------------------------
// Callback leases

/// `GET /api/callbacks`: the live callback leases, soonest expiry first, in DESIGN.md's shape
/// `{ "did", "agent", "expires_at" }`. A PSAP call to one of these numbers rings that agent.
pub(super) async fn callbacks(State(state): State<AdminState>) -> Result<Json<Value>, ApiError> {
    let view = edge(&state)?.clone();
    let now = crate::core::emergency::unix_now();
    let leases = blocking(move || Ok(view.store.live_leases(now)?)).await?;
    Ok(Json(Value::Array(
        leases
            .iter()
            .map(|l| {
                json!({
                    "did": l.did.to_string(),
                    "agent": l.agent.as_str(),
                    "expires_at": rfc3339(l.expires_at),
                })
            })
            .collect(),
    )))
}

// ---------------------------------------------------------------------------------------------
// Shared

/// `?limit=` (1 and up, clamped to [`MAX_PAGE`]; default [`DEFAULT_PAGE`]) and `?after=`.
fn page(
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<(u32, Option<String>), ApiError> {
    let Query(mut q) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let limit = match q.get("limit") {
        None => DEFAULT_PAGE,
        Some(l) => {
            l.parse::<u32>().ok().filter(|n| *n > 0).map(|n| n.min(MAX_PAGE)).ok_or_else(|| {
                ApiError::invalid("limit", format!("'{l}' is not a number from 1"))
            })?
        }
    };
    Ok((limit, q.remove("after")))
}

/// A JSON object body.
pub(super) fn object(body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::invalid("body", "must be a JSON object")),
        Err(e) => Err(ApiError::invalid("body", format!("not JSON: {e}"))),
    }
}

/// Refuses a field not in `allowed` (a typo must not be silently ignored).
pub(super) fn only_fields(body: &Map<String, Value>, allowed: &[&str]) -> Result<(), ApiError> {
    match body.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::invalid(k, "unknown field")),
        None => Ok(()),
    }
}

/// Runs store work on the blocking pool (the store's thread model).
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        tracing::error!(error = %e, "admin API work failed");
        ApiError::internal("the request failed; see the edge's log")
    })?
}
