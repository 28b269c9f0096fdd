//! The JSON endpoints of the admin API that read (and reload) the running edge: registrations
//! and the dialplan. Lists are bare JSON arrays (DESIGN.md, "Decisions").

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use serde_json::{Value, json};

use super::{AdminState, ApiError, EdgeView};

pub(super) fn edge(state: &AdminState) -> Result<&EdgeView, ApiError> {
    state.edge.as_ref().ok_or_else(|| ApiError::internal("the edge is not running"))
}

/// `GET /api/registrations`: every live binding.
pub(super) async fn registrations(
    State(state): State<AdminState>,
) -> Result<Json<Value>, ApiError> {
    let list = edge(&state)?
        .core
        .registrations()
        .await
        .ok_or_else(|| ApiError::internal("the core stopped"))?;
    Ok(Json(json!(list)))
}

#[derive(Serialize)]
struct TrunkView<'a> {
    name: &'a str,
    kind: &'static str,
    uri: &'a str,
    numbers: Vec<String>,
    /// A trunk named by DNS name: `resolved`, `pending` or `failed`, and its targets in
    /// order (`IP`, or `IP:PORT` for one found through SRV).
    #[serde(skip_serializing_if = "Option::is_none")]
    dns: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    addresses: Option<Vec<String>>,
}

#[derive(Serialize)]
struct RouteView<'a> {
    pattern: &'a str,
    trunks: Vec<&'a str>,
    file: String,
    line: usize,
}

/// `GET /api/dialplan`: the table in force.
pub(super) async fn dialplan(State(state): State<AdminState>) -> Result<Json<Value>, ApiError> {
    let view = edge(&state)?;
    let plan = view.dialplans.current();
    let trunks: Vec<TrunkView<'_>> = plan
        .trunks
        .iter()
        .map(|t| {
            use crate::transport::dns::Lookup;
            let (dns, addresses) = match t.ip {
                Some(_) => (None, None),
                None => match view.trunk_hosts.lookup_trunk(t) {
                    Lookup::Resolved(a) => {
                        (Some("resolved"), Some(a.iter().map(ToString::to_string).collect()))
                    }
                    Lookup::Pending => (Some("pending"), Some(Vec::new())),
                    Lookup::Failed => (Some("failed"), Some(Vec::new())),
                },
            };
            TrunkView {
                name: &t.name,
                kind: match t.kind {
                    crate::routing::TrunkKind::DirectOffer => "direct-offer",
                    crate::routing::TrunkKind::DirectRouting => "direct-routing",
                },
                uri: &t.uri,
                numbers: t.numbers.iter().map(|r| format!("{}-{}", r.first, r.last)).collect(),
                dns,
                addresses,
            }
        })
        .collect();
    let routes: Vec<RouteView<'_>> = plan
        .routes
        .iter()
        .map(|r| RouteView {
            pattern: r.pattern.as_str(),
            trunks: r
                .trunks
                .iter()
                .filter_map(|&i| plan.trunks.get(i))
                .map(|t| t.name.as_str())
                .collect(),
            file: r.file.display().to_string(),
            line: r.line,
        })
        .collect();
    let files: Vec<String> = plan.files.iter().map(|f| f.display().to_string()).collect();
    Ok(Json(json!({ "files": files, "trunks": trunks, "routes": routes })))
}

/// `POST /api/dialplan/reload`: rebuild aside; swap only when every file is valid.
pub(super) async fn dialplan_reload(
    State(state): State<AdminState>,
) -> Result<Json<Value>, ApiError> {
    let view = edge(&state)?;
    match crate::app::reload(&view.dialplans, &state.metrics) {
        Ok(()) => {
            let plan = view.dialplans.current();
            Ok(Json(
                json!({ "reloaded": true, "trunks": plan.trunks.len(), "routes": plan.routes.len() }),
            ))
        }
        Err(errors) => {
            let message = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
            Err(ApiError::invalid("dialplan", message))
        }
    }
}
