// The playground: a body and headers for a Source rendered as `hookrelay render` renders them
// — routing, recipients, the vendor requests — with nothing stored or sent; a Template may be
// edited in place and the body rendered again.

import { t } from "../i18n.js";
import { api, failure, fill, h, recipients, request, routing, unresolved } from "../dom.js";
import { vendorView } from "../preview.js";

function headerPairs(text) {
  return text.split("\n").map((l) => l.trim()).filter(Boolean).map((l) => {
    const at = l.indexOf(":");
    return at < 0 ? [l, ""] : [l.slice(0, at).trim(), l.slice(at + 1).trim()];
  });
}

function result(r, onEdit) {
  const parts = [];
  if (r.refused) {
    parts.push(h("p", { class: "error", id: "refused", role: "alert" },
      `${t("refused")}${r.refused.status ? ` (${r.refused.status})` : ""}: ${r.refused.message}`));
  }
  for (const e of r.events) {
    parts.push(h("section", { class: "card rendered-event" },
      h("h2", {}, `${t("event")} ${e.type}`),
      h("p", { class: "mono" }, `${e.id} · ${e.source}${e.subject ? ` · ${e.subject}` : ""}`),
      h("h3", {}, t("routing")),
      routing(e.routing),
      e.unresolved.length ? [h("h3", {}, t("unresolved")), unresolved(e.unresolved)] : null,
      h("h3", {}, `${t("deliveries_planned")} (${e.deliveries.length})`),
      e.deliveries.map((d) => h("div", { class: "card delivery planned" },
        h("h4", {}, `${d.channel} (${d.kind}) ← ${d.origin}${d.template ? ` · ${d.template}` : ""}`),
        h("p", {}, `${t("to")}: ${recipients(d.to)}`),
        d.held ? h("p", { class: "held" }, `⏸ ${d.held}`) : null,
        d.template ? h("button", { type: "button", class: "edit-template", onclick: () => onEdit(d.template) }, t("edit_template")) : null,
        d.error ? h("p", { class: "error" }, `${t("render_error")}: ${d.error}`) : vendorView(d.request?.body, d.message),
        request(d.request),
        d.request_error ? h("p", { class: "error" }, d.request_error) : null))));
  }
  return parts;
}

export async function playground(view) {
  const c = await api("/catalog");
  const source = h("select", { id: "pg-source" }, c.sources.map((s) => h("option", { value: s }, s)));
  const headers = h("textarea", { id: "pg-headers", rows: 3, spellcheck: "false" });
  const body = h("textarea", { id: "pg-body", rows: 12, spellcheck: "false" });
  const upload = h("input", { type: "file", id: "pg-upload", accept: ".json,application/json,text/plain" });
  upload.addEventListener("change", async () => {
    if (upload.files[0]) body.value = await upload.files[0].text();
  });
  const noAuth = h("input", { type: "checkbox", id: "pg-no-auth", checked: true });
  const template = h("textarea", { id: "pg-template", rows: 12, spellcheck: "false" });
  const templateBox = h("section", { class: "card", hidden: true, id: "pg-template-box" },
    h("h2", {}, t("template_edit")), template,
    h("button", { type: "button", onclick: () => { template.value = ""; templateBox.hidden = true; run(); } }, t("clear_template")));
  const out = h("div", { id: "pg-result" });
  const run = async () => {
    try {
      const r = await api("/render", {
        method: "POST",
        body: {
          source: source.value || undefined,
          headers: headerPairs(headers.value),
          body: body.value,
          no_auth: noAuth.checked,
          template: templateBox.hidden || !template.value.trim() ? undefined : template.value,
        },
      });
      fill(out, result(r, edit));
    } catch (e) {
      fill(out, failure(e), (e.body?.errors || []).map((x) => h("p", { class: "error" }, x)));
    }
  };
  const edit = async (name) => {
    const tpl = await api(`/templates/${encodeURIComponent(name)}`);
    template.value = JSON.stringify(tpl.document, null, 2);
    templateBox.hidden = false;
    template.focus();
  };
  const form = h("form", { class: "card", id: "pg-form" },
    h("p", { class: "muted" }, t("nothing_stored")),
    h("label", {}, t("source"), source),
    h("label", {}, t("headers"), headers),
    h("label", {}, t("body"), body),
    h("label", {}, t("upload"), upload),
    h("label", { class: "inline" }, noAuth, t("no_auth")),
    h("button", { type: "submit", id: "pg-render" }, t("render")));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); run(); });
  fill(view, h("h1", {}, t("playground")), h("div", { class: "split" }, h("div", {}, form, templateBox), out));
}
