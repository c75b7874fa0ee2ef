//! A stored event as ingest makes it — one delivery of a rendered message carrying the
//! `EVID<n>` and `SENTUS<µs>` tokens receivers measure with — shared by the store and e2e benches.

use std::collections::BTreeMap;

use hookrelay::event::{Data, Event};
use hookrelay::ids::EventId;
use hookrelay::message::{Message, MsgType, Recipients};
use hookrelay::store::{NewDelivery, NewEvent};
use serde_json::json;

/// Event `n` of Source `source`, received at `received_ms`, with one delivery to `channel`.
pub fn new_event(n: u64, source: &str, channel: &str, received_ms: u64) -> NewEvent {
    NewEvent {
        id: EventId::generate(received_ms),
        event: Event {
            receiver: source.into(),
            id: format!("ev-{n}"),
            source: format!("/hooks/{source}"),
            ty: "bench.event".into(),
            specversion: "1.0".into(),
            subject: None,
            time: Some("2026-11-23T00:00:00.000Z".into()),
            datacontenttype: Some("application/json".into()),
            dataschema: None,
            extensions: BTreeMap::new(),
            data: Data::Json(json!({"id": n, "ts": 0, "title": "构建 47 失败"})),
            message: None,
        },
        received_ms,
        dedup_window_ms: 86_400_000,
        deliveries: vec![NewDelivery {
            origin: source.into(),
            channel: channel.into(),
            template: Some("bench".into()),
            to: Recipients {
                users: vec!["zhangsan".into()],
                ..Recipients::default()
            },
            message: Some(Message {
                msgtype: MsgType::Text,
                content: format!("EVID{n} SENTUS0 构建 47 失败"),
                title: None,
                url: None,
            }),
            failed: None,
            due_ms: 0,
            held: None,
            digest: None,
            thread: None,
        }],
    }
}
