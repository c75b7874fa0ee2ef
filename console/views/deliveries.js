// Deliveries: the admin API's filters and cursor pages, refreshed live.

import { t } from "../i18n.js";
import { api, badge, fill, h, recipients, when } from "../dom.js";

const FILTERS = ["state", "channel", "source", "type", "recipient", "since", "until"];

/** The filters in the page's hash (`#/deliveries?state=dead&channel=x`). */
function readFilters(hash) {
  const q = new URLSearchParams((hash || "").split("?")[1] || "");
  return Object.fromEntries(FILTERS.map((k) => [k, q.get(k) || ""]));
}

function query(filters, extra = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries({ ...filters, ...extra })) if (v) q.set(k, v);
  return q.toString();
}

/** One row per delivery, linked to its event. */
export function table(list) {
  if (!list.length) return h("p", { class: "muted", id: "no-rows" }, t("no_rows"));
  return h("table", { class: "rows" },
    h("thead", {}, h("tr", {}, [t("id"), t("state"), t("channel"), t("type"), t("to"), t("attempts"), t("updated"), t("last_error")].map((c) => h("th", {}, c)))),
    h("tbody", {}, list.map((d) => h("tr", { "data-id": d.id },
      h("td", {}, h("a", { href: `#/event/${encodeURIComponent(d.event)}` }, d.id)),
      h("td", {}, badge(d.state)),
      h("td", {}, d.channel),
      h("td", {}, d.event_type),
      h("td", {}, recipients(d.to)),
      h("td", {}, String(d.attempts)),
      h("td", {}, when(d.updated_ms)),
      d.last_error
        ? h("td", { class: "detail" }, `${d.last_error.reason}: ${d.last_error.detail}`)
        : h("td", { class: "held" }, d.waiting ? `⏸ ${d.waiting.detail}` : "")))));
}

export async function deliveries(view, _arg, hash) {
  const filters = readFilters(hash);
  const pages = [null];
  let live = true;
  const inputs = {};
  const form = h("form", { class: "filters", id: "filters" },
    FILTERS.map((k) => {
      const input = k === "state"
        ? h("select", { name: k }, ["", "pending", "waiting", "delivered", "dead"].map((s) =>
            h("option", { value: s }, s ? t(`state_${s}`) : t("any"))))
        : h("input", { name: k, placeholder: k === "since" || k === "until" ? "30m, 2h, RFC 3339" : "" });
      input.value = filters[k];
      inputs[k] = input;
      return h("label", {}, t(k), input);
    }),
    h("button", { type: "submit" }, t("apply")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const next = Object.fromEntries(FILTERS.map((k) => [k, inputs[k].value.trim()]));
    location.hash = `#/deliveries?${query(next)}`;
  });
  const liveBox = h("input", { type: "checkbox", id: "live", checked: true });
  liveBox.addEventListener("change", () => { live = liveBox.checked; });
  const body = h("div", { id: "delivery-rows" });
  const pager = h("div", { class: "pager" });
  const draw = async () => {
    const before = pages[pages.length - 1];
    const page = await api(`/deliveries?${query(filters, { before, limit: 50 })}`);
    fill(body, table(page.deliveries));
    fill(pager,
      pages.length > 1 ? h("button", { type: "button", onclick: () => { pages.length = 1; draw(); } }, t("first_page")) : null,
      page.next ? h("button", { type: "button", id: "next-page", onclick: () => { pages.push(page.next); draw(); } }, t("next_page")) : null);
  };
  fill(view, h("h1", {}, t("deliveries")), form, h("label", { class: "live" }, liveBox, t("live")), body, pager);
  await draw();
  const timer = setInterval(() => { if (live) draw().catch(() => {}); }, 3000);
  return () => clearInterval(timer);
}
