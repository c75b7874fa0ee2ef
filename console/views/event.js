// One event: as received, the routing explanation, and each delivery with its attempt
// timeline, the message as the vendor shows it and the request it makes.

import { t } from "../i18n.js";
import { api, badge, failure, fill, h, json, recipients, request, routing, when } from "../dom.js";
import { vendorView } from "../preview.js";

function timeline(attempts) {
  if (!attempts.length) return h("p", { class: "muted" }, t("none"));
  return h("ol", { class: "timeline" }, attempts.map((a) =>
    h("li", { class: a.result, "data-result": a.result },
      h("span", { class: "at" }, when(a.at_ms)),
      h("span", { class: "result" }, t(`result_${a.result}`)),
      h("span", { class: "took" }, `${a.duration_ms} ms`),
      a.error ? h("span", { class: "detail" }, `${a.error.status ? `HTTP ${a.error.status} · ` : ""}${a.error.reason}: ${a.error.detail}`) : null)));
}

function delivery(d, onReplay) {
  const view = vendorView(d.request?.body, d.message);
  return h("section", { class: "card delivery", id: `delivery-${d.id}`, "data-state": d.state },
    h("h3", {}, badge(d.state), ` ${d.channel} · ${d.id}`),
    h("p", {}, `${t("to")}: ${recipients(d.to)} · ${t("attempts")}: ${d.attempts}` +
      (d.next_ms && d.state !== "delivered" && d.state !== "dead" ? ` · ${t("next_attempt")} ${when(d.next_ms)}` : "")),
    d.waiting ? h("p", { class: "held" }, `⏸ ${d.waiting.detail}`) : null,
    d.state === "dead" ? h("button", { type: "button", class: "replay", onclick: () => onReplay(d.id) }, t("replay")) : null,
    h("h4", {}, t("timeline")), timeline(d.attempt_log || []),
    view ? [h("h4", {}, t("preview")), view] : null,
    request(d.request));
}

export async function eventPage(view, id) {
  let timer = null;
  const draw = async () => {
    const e = await api(`/events/${encodeURIComponent(id)}`);
    const full = await Promise.all(e.deliveries.map((d) => api(`/deliveries/${encodeURIComponent(d.id)}`).catch(() => d)));
    const replay = async (did) => {
      try {
        await api(`/deliveries/${encodeURIComponent(did)}/replay`, { method: "POST" });
      } catch (err) {
        view.prepend(failure(err));
      }
      await draw();
      watch(true);
    };
    fill(view,
      h("h1", {}, `${t("event")} ${e.event.type}`),
      h("p", { class: "mono" }, `${e.id} · ${t("received")} ${when(e.received_ms)}`),
      h("section", { class: "card" }, h("h2", {}, t("routing")),
        routing(e.routing)),
      h("h2", {}, t("deliveries")),
      full.map((d) => delivery(d, replay)),
      h("section", { class: "card" }, h("h2", {}, t("as_received")), json(e.event)));
    return full.some((d) => d.state === "pending" || d.state === "waiting");
  };
  const watch = (busy) => {
    if (busy && !timer) {
      timer = setInterval(async () => {
        const still = await draw().catch(() => false);
        if (!still) { clearInterval(timer); timer = null; }
      }, 1000);
    }
  };
  watch(await draw());
  return () => { if (timer) clearInterval(timer); };
}
