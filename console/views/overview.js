// Overview: the last hour per minute, the backlog, the store's health, the catalog's errors.

import { t } from "../i18n.js";
import { api, fill, h, minuteLabel, when } from "../dom.js";

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

/** Bars per minute: events, and delivered beside them. */
function chart(minutes) {
  const w = 720, hgt = 160, pad = 24;
  const max = Math.max(1, ...minutes.map((m) => Math.max(m.events, m.delivered, m.failed)));
  const step = (w - pad) / minutes.length;
  const bar = (m, i, value, cls, shift) => {
    const bh = ((hgt - pad) * value) / max;
    return svg("rect", {
      x: pad + i * step + shift, y: hgt - pad - bh, width: Math.max(1, step / 3), height: bh, class: cls,
    }, svg("title", {}, `${minuteLabel(m.minute)} ${t(cls)} ${value}`));
  };
  const bars = minutes.flatMap((m, i) => [
    bar(m, i, m.events, "events", 0),
    bar(m, i, m.delivered, "delivered", step / 3),
    bar(m, i, m.failed, "failed", (2 * step) / 3),
  ]);
  const labels = [0, 15, 30, 45, minutes.length - 1].map((i) =>
    svg("text", { x: pad + i * step, y: hgt - 6, class: "axis" }, minuteLabel(minutes[i].minute)));
  return svg("svg", { viewBox: `0 0 ${w} ${hgt}`, class: "chart", role: "img" },
    svg("text", { x: 0, y: 12, class: "axis" }, String(max)), ...bars, ...labels);
}

function figure(label, value, id) {
  return h("div", { class: "figure" }, h("span", { class: "value", id }, value), h("span", { class: "label" }, label));
}

function problems(list, cls) {
  if (!list.length) return h("p", { class: "muted" }, t("none"));
  return h("ul", { class: cls }, list.map((e) => h("li", {}, describe(e))));
}

/** A catalog error as `file#document (resource) field: message`. */
export function describe(e) {
  const where = [e.file, e.document !== undefined ? `#${e.document}` : "", e.line ? `:${e.line}` : ""].join("");
  const what = e.resource ? ` (${e.resource})` : "";
  const field = e.path ? ` ${e.path}` : "";
  return `${where}${what}${field}: ${e.message}`;
}

export async function overview(view) {
  const draw = async () => {
    const o = await api("/overview");
    const sum = (k) => o.minutes.reduce((n, m) => n + m[k], 0);
    fill(
      view,
      h("h1", {}, t("overview")),
      h("section", { class: "card" },
        h("h2", {}, t("events_per_minute")),
        h("div", { class: "legend" },
          h("span", { class: "events" }, `${t("events")} ${sum("events")}`),
          h("span", { class: "delivered" }, `${t("delivered")} ${sum("delivered")}`),
          h("span", { class: "failed" }, `${t("failed")} ${sum("failed")}`)),
        chart(o.minutes)),
      h("section", { class: "grid" },
        h("div", { class: "card" }, h("h2", {}, t("backlog")),
          figure(t("pending"), o.backlog.pending, "backlog-pending"),
          figure(t("due"), o.backlog.due, "backlog-due"),
          figure(t("dead_letters"), o.counts.dead, "dead-count"),
          o.backlog.oldest_due_ms ? h("p", {}, `${t("oldest_due")} ${when(o.backlog.oldest_due_ms)}`) : null),
        h("div", { class: "card" }, h("h2", {}, t("store")),
          h("p", {}, `${t("engine")}: ${o.store.engine}`),
          h("p", { id: "store-health", class: o.store.writable ? "ok" : "error" },
            o.store.writable ? t("writable") : `${t("not_writable")}: ${o.store.fault}`),
          h("p", {}, `${t("bytes")}: ${(o.store.bytes / 1048576).toFixed(1)} MiB · ${t("fsyncs")}: ${o.store.fsyncs} · ${t("write_failures")}: ${o.store.write_failures}`)),
        h("div", { class: "card" }, h("h2", {}, t("catalog_health")),
          h("p", {}, `${t("files")}: ${o.catalog.files} · ` +
            Object.entries(o.catalog.resources).map(([k, n]) => `${k} ${n}`).join(" · ")),
          h("h3", {}, `${t("errors")} (${o.catalog.errors.length})`), problems(o.catalog.errors, "errors"),
          h("h3", {}, `${t("warnings")} (${o.catalog.warnings.length})`), problems(o.catalog.warnings, "warnings"))),
    );
  };
  await draw();
  const timer = setInterval(() => draw().catch(() => {}), 5000);
  return () => clearInterval(timer);
}
