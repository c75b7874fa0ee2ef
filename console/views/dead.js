// Dead letters: replay one, or every one matching the filters.

import { t } from "../i18n.js";
import { api, fill, h } from "../dom.js";
import { table } from "./deliveries.js";

const FILTERS = ["channel", "source", "type", "recipient", "since", "until"];

export async function deadLetters(view) {
  const inputs = Object.fromEntries(FILTERS.map((k) => [k, h("input", { name: k })]));
  const rows = h("div", { id: "dead-rows" });
  const note = h("p", { id: "replay-result", role: "status" });
  const params = () => {
    const q = new URLSearchParams({ state: "dead", limit: "100" });
    for (const k of FILTERS) if (inputs[k].value.trim()) q.set(k, inputs[k].value.trim());
    return q;
  };
  const draw = async () => {
    const page = await api(`/deliveries?${params()}`);
    fill(rows, table(page.deliveries));
    for (const tr of rows.querySelectorAll("tbody tr")) {
      const id = tr.getAttribute("data-id");
      tr.append(h("td", {}, h("button", { type: "button", class: "replay", onclick: async () => {
        await api(`/deliveries/${encodeURIComponent(id)}/replay`, { method: "POST" });
        fill(note, `${id}: ${t("replayed")}`);
        await draw();
      } }, t("replay"))));
    }
  };
  const form = h("form", { class: "filters" }, FILTERS.map((k) => h("label", {}, t(k), inputs[k])),
    h("button", { type: "submit" }, t("apply")),
    h("button", { type: "button", id: "replay-all", onclick: async () => {
      if (!confirm(t("confirm_replay_all"))) return;
      const q = params();
      q.delete("state");
      q.delete("limit");
      const r = await api(`/dead-letters/replay?${q}`, { method: "POST" });
      fill(note, t("replay_result", r));
      await draw();
    } }, t("replay_all")));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); draw(); });
  fill(view, h("h1", {}, t("dead")), form, note, rows);
  await draw();
  const timer = setInterval(() => draw().catch(() => {}), 5000);
  return () => clearInterval(timer);
}
