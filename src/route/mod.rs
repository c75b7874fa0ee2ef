//! Who must hear about an event: matching Routes become audiences — a channel, the template to
//! render with, and the recipients.

use std::sync::Arc;

use crate::catalog::{Catalog, ChannelDef};
use crate::event::Event;
use crate::message::Recipients;

/// One channel's worth of recipients for one event.
#[derive(Debug)]
pub struct Audience<'c> {
    /// The Route that produced it.
    pub origin: &'c str,
    pub channel: &'c Arc<ChannelDef>,
    /// Template named by the Route, if any.
    pub template: Option<&'c str>,
    pub to: Recipients,
}

/// Every audience of `event` under `catalog`, in route-name order.
pub fn audiences<'c>(catalog: &'c Catalog, event: &Event) -> Vec<Audience<'c>> {
    let mut out = Vec::new();
    for route in catalog
        .routes
        .iter()
        .filter(|r| r.matches(&event.receiver, &event.ty))
    {
        let mut to = route.to.clone();
        // A ready message (CNB user notify) names its own recipients.
        if let Some(ready) = &event.message {
            to.merge(&ready.to);
        }
        for name in &route.channels {
            // References were checked when the catalog loaded, so the channel exists.
            if let Some(channel) = catalog.channels.get(name) {
                out.push(Audience {
                    origin: &route.name,
                    channel,
                    template: route.template.as_deref(),
                    to: to.clone(),
                });
            }
        }
    }
    out
}
