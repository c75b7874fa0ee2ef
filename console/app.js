// The console's shell: log in with the admin token, the navigation, and a page per route
// (`#/overview`, `#/deliveries`, `#/event/<id>`, `#/dead`, `#/catalog`, `#/playground`).

import { lang, setLang, t } from "./i18n.js";
import { api, fill, h, session, setTimezone, failure } from "./dom.js";
import { overview } from "./views/overview.js";
import { deliveries } from "./views/deliveries.js";
import { eventPage } from "./views/event.js";
import { deadLetters } from "./views/dead.js";
import { catalog } from "./views/catalog.js";
import { playground } from "./views/playground.js";

const PAGES = [
  ["overview", overview],
  ["deliveries", deliveries],
  ["dead", deadLetters],
  ["catalog", catalog],
  ["playground", playground],
];

const view = document.getElementById("view");
let stop = () => {};

/** The page and its argument in the hash (`#/event/<id>`, `#/deliveries?state=dead`). */
function where() {
  const [, page, arg] = location.hash.split("?")[0].split("/");
  return { page: page || "overview", arg: arg ? decodeURIComponent(arg) : undefined };
}

function nav() {
  const current = where().page;
  fill(
    document.getElementById("nav"),
    session.token()
      ? PAGES.map(([name]) =>
          h("a", { href: `#/${name}`, class: current === name ? "active" : "", id: `nav-${name}` }, t(name)))
      : [],
  );
  const out = document.getElementById("logout");
  out.hidden = !session.token();
  out.textContent = t("logout");
}

function login(message) {
  const input = h("input", { type: "password", id: "token", autocomplete: "current-password", required: true });
  const form = h(
    "form",
    { id: "login", class: "card narrow" },
    h("h1", {}, t("login")),
    h("p", {}, t("login_intro")),
    h("label", {}, t("token"), input),
    message ? h("p", { class: "error", role: "alert" }, message) : null,
    h("button", { type: "submit" }, t("login")),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    session.set(input.value);
    try {
      const o = await api("/overview");
      setTimezone(o.timezone);
      route();
    } catch (e) {
      session.clear();
      login(e.status === 401 ? t("wrong_token") : e.message);
    }
  });
  fill(view, form);
  nav();
  input.focus();
}

async function route() {
  stop();
  stop = () => {};
  document.documentElement.lang = lang() === "zh" ? "zh-CN" : "en";
  if (!session.token()) return login();
  nav();
  const { page, arg } = where();
  const render = page === "event" ? eventPage : (PAGES.find(([n]) => n === page) || PAGES[0])[1];
  fill(view, h("p", { class: "muted" }, t("loading")));
  try {
    stop = (await render(view, arg, location.hash)) || (() => {});
  } catch (e) {
    fill(view, failure(e));
  }
}

async function start() {
  const select = document.getElementById("lang");
  select.value = lang();
  select.addEventListener("change", () => {
    setLang(select.value);
    route();
  });
  document.getElementById("logout").addEventListener("click", () => {
    session.clear();
    route();
  });
  window.addEventListener("hookrelay:logout", () => login(t("wrong_token")));
  window.addEventListener("hashchange", route);
  if (session.token()) {
    try {
      setTimezone((await api("/overview")).timezone);
    } catch {
      // The login form follows from the 401.
    }
  }
  route();
}

start();
