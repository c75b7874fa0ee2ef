//! `POST /hooks/{source}`: authenticate, decode, plan, store durably, then answer.

use actix_web::http::header::CONTENT_LENGTH;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::AppState;
use crate::ids::{EventId, now_ms};
use crate::ingress::{Decoded, Format, IdKind, IngressError, decode};
use crate::plan::plan;
use crate::store::{Enqueued, NewEvent};

/// Registers the hook endpoint.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/hooks/{source}")
            .route(web::post().to(receive_hook))
            .default_service(web::to(method_not_allowed)),
    );
}

/// Receives one hook. Every refusal happens before anything is stored; the 202 is sent only
/// after the event and all its deliveries are on disk.
async fn receive_hook(
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
    crate::ingress::prepare_auth(source, req.headers()).await;
    let now = now_ms();
    let Decoded { events, format } = decode(source, req.headers(), &body, now)?;
    let window = match format {
        Format::Hook {
            id: IdKind::Content,
        } => source
            .content_dedup_window
            .unwrap_or(state.settings.content_dedup_window),
        _ => source.dedup_window.unwrap_or(state.settings.dedup_window),
    };
    let mut ids = Vec::with_capacity(events.len());
    let mut dead = Vec::with_capacity(events.len());
    let mut batch = Vec::with_capacity(events.len());
    for event in events {
        let planned = plan(&catalog, &event, now, &state.digests);
        state.metrics.record_plan(&planned);
        let deliveries = planned.deliveries;
        for d in deliveries.iter().filter(|d| d.failed.is_some()) {
            let detail = d.failed.as_ref().map_or("", |f| f.detail.as_str());
            tracing::warn!(source = %name, id = %event.id, channel = %d.channel,
                template = d.template.as_deref().unwrap_or(""), detail,
                "dead letter: the template cannot render this event");
        }
        ids.push(event.id.clone());
        dead.push(deliveries.iter().filter(|d| d.failed.is_some()).count());
        batch.push(NewEvent {
            id: EventId::generate(now),
            event,
            received_ms: now,
            dedup_window_ms: window.as_millis() as u64,
            deliveries,
        });
    }
    let outcomes = state
        .store
        .enqueue(batch)
        .await
        .map_err(|e| IngressError::Unavailable(e.to_string()))?;
    if outcomes
        .iter()
        .any(|o| matches!(o, Enqueued::Accepted { deliveries, .. } if *deliveries > 0))
    {
        state.wake.notify_one();
    }
    for (o, ce_id) in outcomes.iter().zip(&ids) {
        if let Enqueued::Duplicate { id } = o {
            state.metrics.duplicate(name);
            tracing::info!(source = %name, id = %ce_id, event = %id, "duplicate event; nothing new planned");
        }
    }
    Ok(match format {
        Format::CloudEvents { batch } => cloudevents_answer(&outcomes, batch),
        Format::Hook { .. } => hook_answer(&outcomes[0], &ids[0], dead[0]),
    })
}

/// A CloudEvents sender (a Knative Broker, Channel or Source) takes a 2xx whose body is not a
/// CloudEvent as a failure and retries it: the answer has no body, the stored ids travel in a
/// header.
fn cloudevents_answer(outcomes: &[Enqueued], batch: bool) -> HttpResponse {
    let ids: Vec<String> = outcomes
        .iter()
        .map(|o| match o {
            Enqueued::Accepted { id, .. } | Enqueued::Duplicate { id } => id.to_string(),
        })
        .collect();
    let duplicate = !batch && matches!(outcomes, [Enqueued::Duplicate { .. }]);
    let mut r = if duplicate {
        HttpResponse::Ok()
    } else {
        HttpResponse::Accepted()
    };
    if !ids.is_empty() {
        r.insert_header((EVENT_HEADER, ids.join(",")));
    }
    if duplicate {
        r.insert_header((STATUS_HEADER, "duplicate"));
    }
    r.finish()
}

/// A system hook is answered in JSON: what was stored, how many deliveries were planned, and
/// how many of them are dead already (their template could not render the event).
fn hook_answer(outcome: &Enqueued, ce_id: &str, dead: usize) -> HttpResponse {
    match outcome {
        Enqueued::Accepted { id, deliveries } => HttpResponse::Accepted().json(json!({
            "status": "accepted", "event": id.to_string(), "id": ce_id,
            "deliveries": deliveries, "dead": dead,
        })),
        Enqueued::Duplicate { id } => HttpResponse::Ok().json(json!({
            "status": "duplicate", "event": id.to_string(), "id": ce_id,
        })),
    }
}

/// The header that carries the stored event id(s) of a CloudEvents answer.
const EVENT_HEADER: &str = "X-Hookrelay-Event";
/// Set to `duplicate` on the answer to a CloudEvent that was received before.
const STATUS_HEADER: &str = "X-Hookrelay-Status";

/// Anything but POST on a hook path.
async fn method_not_allowed() -> Result<HttpResponse, IngressError> {
    Err(IngressError::MethodNotAllowed)
}
