// What every page uses: elements built from text only (payload data never becomes markup),
// the admin API with the session's token, times in the relay's configured offset, and the
// pieces several pages show (routing verdicts, unresolved recipients, a vendor request).

import { t } from "./i18n.js";

/**
 * An element: `attrs` sets properties and attributes (`on*` functions become listeners),
 * children are nodes or strings, strings always as text.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "href") setLink(el, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Only http(s) and in-console links are followed: a `javascript:` URL from a payload is not. */
export function setLink(a, url) {
  const s = String(url);
  if (s.startsWith("#/")) {
    a.setAttribute("href", s);
    return;
  }
  try {
    const u = new URL(s, location.href);
    if (u.protocol === "http:" || u.protocol === "https:") {
      a.setAttribute("href", u.href);
      a.setAttribute("rel", "noopener noreferrer");
      a.setAttribute("target", "_blank");
    }
  } catch {
    // Not a URL: shown as text, not followed.
  }
}

const TOKEN = "hookrelay.token";

export const session = {
  token: () => sessionStorage.getItem(TOKEN),
  set: (tok) => sessionStorage.setItem(TOKEN, tok),
  clear: () => sessionStorage.removeItem(TOKEN),
};

/** An admin API answer that was not a success: its status and the relay's message. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

/** Calls the admin API; a 401 sends the person back to the login form. */
export async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${session.token() || ""}` };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(`/admin${path}`, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const body = await resp.json().catch(() => null);
  if (resp.status === 401) {
    session.clear();
    window.dispatchEvent(new Event("hookrelay:logout"));
  }
  if (!resp.ok) throw new ApiError(resp.status, body);
  return body;
}

let offsetMinutes = 8 * 60;
let offsetText = "+08:00";

/** Sets the offset times are shown in (the relay's `timezone`, e.g. `+08:00`). */
export function setTimezone(text) {
  const m = /^([+-])(\d{2}):(\d{2})$/.exec(text || "");
  if (!m) return;
  offsetMinutes = (m[1] === "-" ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3]));
  offsetText = text;
}

/** `2026-12-03 15:04:05 +08:00` for ms since the epoch. */
export function when(ms) {
  if (ms === undefined || ms === null) return "";
  const d = new Date(Number(ms) + offsetMinutes * 60_000);
  const p = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getUTCFullYear()}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())} ` +
    `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} ${offsetText}`;
}

/** `HH:MM` of a minute since the epoch, in the configured offset. */
export function minuteLabel(minute) {
  return when(minute * 60_000).slice(11, 16);
}

/** A state badge. */
export function badge(state) {
  return h("span", { class: `badge ${state}`, "data-state": state }, t(`state_${state}`));
}

/** Pretty JSON as text. */
export function json(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

/** An error shown in place of a page. */
export function failure(e) {
  return h("p", { class: "error", role: "alert" }, `${t("error")}: ${e.message || e}`);
}

/** Recipients as one line. */
export function recipients(to) {
  if (!to) return "";
  const parts = [];
  if (to.all) parts.push("@all");
  for (const k of ["users", "mobiles", "parties", "tags"]) {
    for (const v of to[k] || []) parts.push(v);
  }
  return parts.join(", ");
}

/** Which Routes and Subscriptions took an event, and why the others did not. */
export function routing(verdicts) {
  return h("ul", { class: "routing" }, verdicts.map((v) =>
    h("li", { class: v.matched ? "matched" : "unmatched" }, v.matched ? "✔ " : "✘ ", h("strong", {}, v.what), `: ${v.why}`)));
}

/** Subscribers the directory cannot reach on a channel. */
export function unresolved(list) {
  return h("ul", {}, list.map((u) => h("li", {}, `${u.user} · ${u.channel} · ${u.origin}`)));
}

/** A vendor request (credentials redacted by the relay), folded. */
export function request(preview) {
  if (!preview || !preview.url) return null;
  return h("details", {}, h("summary", {}, t("request")),
    h("p", { class: "mono" }, `${preview.method} ${preview.url}`), json(preview.body));
}
