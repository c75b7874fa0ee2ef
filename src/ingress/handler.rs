//! `POST /hooks/{source}`: authenticate, decode, plan, store durably, then answer.

use actix_web::http::header::CONTENT_LENGTH;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use super::error::IngressError;
use super::{Decoded, decode};
use crate::ids::{EventId, now_ms};
use crate::metrics::ChannelLabels;
use crate::plan::plan;
use crate::server::AppState;
use crate::store::{Enqueued, NewEvent};

/// Receives one hook. Every refusal happens before anything is stored; the 202 is sent only
/// after the event and all its deliveries are on disk.
pub async fn receive_hook(
    req: HttpRequest,
    source: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let name = source.into_inner();
    let result = accept(&req, &name, payload, &state).await;
    let (response, known) = match result {
        Ok(r) => (r, true),
        Err(e) => {
            let known = !matches!(e, IngressError::UnknownSource(_));
            tracing::debug!(source = %name, error = %e, "hook refused");
            (actix_web::ResponseError::error_response(&e), known)
        }
    };
    state
        .metrics
        .ingress(&name, known, response.status().as_u16());
    response
}

async fn accept(
    req: &HttpRequest,
    name: &str,
    payload: web::Payload,
    state: &AppState,
) -> Result<HttpResponse, IngressError> {
    let catalog = state.catalog.current();
    let source = catalog
        .sources
        .get(name)
        .ok_or_else(|| IngressError::UnknownSource(name.to_string()))?;
    let limit = source
        .max_body_bytes
        .unwrap_or(state.settings.max_body_bytes);
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(IngressError::TooLarge { limit });
    }
    let body = payload
        .to_bytes_limited(limit)
        .await
        .map_err(|_| IngressError::TooLarge { limit })?
        .map_err(|e| IngressError::BadRequest(format!("could not read the body: {e}")))?;
    let now = now_ms();
    let Decoded {
        events,
        batch: batched,
    } = decode(source, req.headers(), &body, now)?;
    let mut ids = Vec::with_capacity(events.len());
    let mut batch = Vec::with_capacity(events.len());
    for event in events {
        let planned = plan(&catalog, &event, now);
        state.metrics.record_plan(&planned);
        let deliveries = planned.deliveries;
        for d in &deliveries {
            state
                .metrics
                .planned
                .get_or_create(&ChannelLabels {
                    channel: d.channel.clone(),
                })
                .inc();
        }
        ids.push(event.id.clone());
        batch.push(NewEvent {
            id: EventId::generate(now),
            event,
            received_ms: now,
            deliveries,
        });
    }
    let window = source.dedup_window.unwrap_or(state.settings.dedup_window);
    let outcomes = state
        .store
        .enqueue(batch, window.as_millis() as u64)
        .await
        .map_err(|e| IngressError::Unavailable(e.to_string()))?;
    if outcomes
        .iter()
        .any(|o| matches!(o, Enqueued::Accepted { deliveries, .. } if *deliveries > 0))
    {
        state.wake.notify_one();
    }
    let answers: Vec<Value> = outcomes
        .iter()
        .zip(&ids)
        .map(|(o, ce_id)| match o {
            Enqueued::Accepted { id, deliveries } => json!({
                "status": "accepted", "event": id.to_string(), "id": ce_id, "deliveries": deliveries,
            }),
            Enqueued::Duplicate { id } => json!({
                "status": "duplicate", "event": id.to_string(), "id": ce_id,
            }),
        })
        .collect();
    Ok(match (batched, answers.as_slice()) {
        (true, _) => {
            HttpResponse::Accepted().json(json!({ "status": "accepted", "events": answers }))
        }
        (_, [one]) if one["status"] == "duplicate" => HttpResponse::Ok().json(one),
        (_, [one]) => HttpResponse::Accepted().json(one),
        _ => unreachable!("one event unless batched"),
    })
}

/// Anything but POST on a hook path.
pub async fn method_not_allowed() -> Result<HttpResponse, IngressError> {
    Err(IngressError::MethodNotAllowed)
}
