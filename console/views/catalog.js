// The catalog: every resource serving and where it came from, each channel's settings
// (credentials redacted by the relay), errors and warnings.

import { t } from "../i18n.js";
import { api, fill, h, json, unresolved } from "../dom.js";
import { describe } from "./overview.js";

export async function catalog(view) {
  const c = await api("/catalog");
  const r = c.report;
  const byKind = {};
  for (const s of r.serving) (byKind[s.kind] ||= []).push(s);
  const origin = (s) => (s.file ? `${s.file}#${s.document}${s.line ? `:${s.line}` : ""}` : t("builtin"));
  fill(view,
    h("h1", {}, t("catalog")),
    h("section", { class: "card" }, h("h2", {}, `${t("errors")} (${r.errors.length})`),
      r.errors.length ? h("ul", { class: "errors" }, r.errors.map((e) => h("li", {}, describe(e)))) : h("p", { class: "muted" }, t("none")),
      h("h2", {}, `${t("warnings")} (${r.warnings.length})`),
      r.warnings.length ? h("ul", { class: "warnings" }, r.warnings.map((e) => h("li", {}, describe(e)))) : h("p", { class: "muted" }, t("none")),
      r.unresolved.length ? [h("h2", {}, t("unresolved")), unresolved(r.unresolved)] : null),
    h("section", { class: "card" }, h("h2", {}, t("resources")),
      h("table", { class: "rows", id: "resources" },
        h("thead", {}, h("tr", {}, [t("kind"), t("name"), t("origin")].map((x) => h("th", {}, x)))),
        h("tbody", {}, Object.keys(byKind).sort().flatMap((k) => byKind[k].map((s) =>
          h("tr", {}, h("td", {}, s.kind), h("td", {}, s.name), h("td", { class: "mono" }, origin(s)))))))),
    h("section", { class: "card" }, h("h2", {}, t("channels")),
      c.channels.map((ch) => h("details", { class: "channel" }, h("summary", {}, ch.name), json(ch.config)))));
}
