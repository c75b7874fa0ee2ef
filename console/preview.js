// A message as the vendor shows it, drawn from the request the channel sends (WeCom text,
// markdown, textcard and template cards; robot mentions; DingTalk actionCard; Feishu post and
// cards; a mail) — as text, never markup.

import { t } from "./i18n.js";
import { h, setLink } from "./dom.js";

/** Inline markdown of one line: **bold**, [text](url), `code`, WeCom's <font> and <@userid>
 * mentions; the rest as text. */
function inline(text) {
  const out = [];
  const re = /\*\*([^*]+)\*\*|\[([^\]]*)\]\(([^)\s]+)\)|`([^`]+)`|<font[^>]*>([^<]*)<\/font>|<@([^>\s]+)>/g;
  let at = 0;
  for (const m of text.matchAll(re)) {
    if (m.index > at) out.push(text.slice(at, m.index));
    if (m[1] !== undefined) out.push(h("strong", {}, m[1]));
    else if (m[2] !== undefined) {
      const a = h("a", {}, m[2] || m[3]);
      setLink(a, m[3]);
      out.push(a);
    } else if (m[4] !== undefined) out.push(h("code", {}, m[4]));
    else if (m[5] !== undefined) out.push(h("span", { class: "font" }, m[5]));
    else out.push(h("span", { class: "at" }, m[6] === "all" ? t("at_all") : `@${m[6]}`));
    at = m.index + m[0].length;
  }
  if (at < text.length) out.push(text.slice(at));
  return out;
}

/** Markdown as the chat apps draw it: headings, quotes, list items, inline marks. */
export function markdown(text) {
  return h("div", { class: "md" }, String(text).split("\n").map((line) => {
    const head = /^(#{1,6})\s+(.*)$/.exec(line);
    if (head) return h(`h${Math.min(6, head[1].length + 2)}`, {}, inline(head[2]));
    if (line.startsWith(">")) return h("blockquote", {}, inline(line.replace(/^>\s?/, "")));
    if (/^\s*[-*]\s+/.test(line)) return h("div", { class: "li" }, "• ", inline(line.replace(/^\s*[-*]\s+/, "")));
    return h("div", {}, line ? inline(line) : "\u00a0");
  }));
}

function plain(text) {
  return h("div", { class: "plain" }, String(text));
}

function mentions(list) {
  const names = list.filter(Boolean);
  return names.length ? h("div", { class: "mentions" }, names.map((n) => h("span", { class: "at" }, n === "@all" ? t("at_all") : `@${n}`))) : null;
}

function button(label, url) {
  const a = h("a", { class: "card-button" }, label);
  setLink(a, url);
  return a;
}

/** The vendor's view of `body`, the request sent; `message` when the body says too little. */
export function vendorView(body, message) {
  let b = body || {};
  let inner;
  // A Feishu app bot's content is a JSON string: read as the custom bot's shapes, or a card.
  if (typeof b.content === "string" && b.msg_type) {
    let c = {};
    try { c = JSON.parse(b.content); } catch { c = {}; }
    if (b.msg_type === "interactive") {
      const div = (c.elements || []).find((e) => e.tag === "div");
      const btn = (c.elements || []).find((e) => e.tag === "action")?.actions?.[0];
      return h("div", { class: "bubble" }, h("div", { class: "title" }, c.header?.title?.content || ""),
        markdown(div?.text?.content || ""), btn ? button(btn.text?.content || t("link"), btn.url) : null);
    }
    b = b.msg_type === "post" ? { msg_type: "post", content: { post: c } } : { msg_type: b.msg_type, content: c };
  }
  if (typeof b.touser === "string" && b.text) {
    // The webhook's normalized message: what a receiver of ours shows.
    inner = [b.title ? h("div", { class: "title" }, b.title) : null,
      b.msgtype === "markdown" ? markdown(b.text.content) : plain(b.text.content),
      b.url ? button(t("link"), b.url) : null];
  } else if (typeof b.subject === "string" && typeof b.text === "string") {
    // A mail: subject, sender and recipients, and its plain-text part (the HTML part says the
    // same; drawing it would mean trusting markup).
    inner = [h("div", { class: "title" }, b.subject),
      h("div", { class: "mail-head" }, `${t("mail_from")}: ${b.from || ""} · ${t("to")}: ${(b.to || []).join(", ")}`),
      plain(b.text)];
  } else if (b.msgtype === "template_card" && b.template_card) {
    // A WeCom template card (a thread's message): its title, text and first button.
    const card = b.template_card;
    const btn = (card.button_list || [])[0];
    inner = [h("div", { class: "title" }, card.main_title?.title || ""), plain(card.sub_title_text || ""),
      btn ? button(btn.text || t("link"), btn.url) : null];
  } else if (b.msgtype === "textcard" && b.textcard) {
    inner = [h("div", { class: "title" }, b.textcard.title), plain(b.textcard.description), button(b.textcard.btntxt || "详情", b.textcard.url)];
  } else if (b.msgtype === "actionCard" && b.actionCard) {
    inner = [h("div", { class: "title" }, b.actionCard.title), markdown(b.actionCard.text), button(b.actionCard.singleTitle, b.actionCard.singleURL)];
  } else if (b.msgtype === "markdown" && b.markdown) {
    inner = [b.markdown.title ? h("div", { class: "title" }, b.markdown.title) : null, markdown(b.markdown.content ?? b.markdown.text ?? "")];
  } else if (b.msgtype === "text" && b.text) {
    inner = [plain(b.text.content)];
  } else if (b.msg_type === "post" && b.content?.post) {
    const post = Object.values(b.content.post)[0] || {};
    inner = [h("div", { class: "title" }, post.title || ""), (post.content || []).map((line) =>
      h("div", {}, line.map((el) => {
        if (el.tag === "a") { const a = h("a", {}, el.text || el.href); setLink(a, el.href); return a; }
        if (el.tag === "at") return h("span", { class: "at" }, el.user_id === "all" ? t("at_all") : `@${el.user_id}`);
        return el.text || "";
      })))];
  } else if (b.msg_type === "text" && b.content) {
    inner = [plain(b.content.text)];
  } else if (message) {
    inner = [message.title ? h("div", { class: "title" }, message.title) : null,
      message.msgtype === "markdown" ? markdown(message.content) : plain(message.content)];
  } else {
    return null;
  }
  const at = b.text?.mentioned_list || b.markdown?.mentioned_list || [];
  const atMobiles = b.text?.mentioned_mobile_list || b.at?.atMobiles || [];
  const atIds = b.at?.atUserIds || [];
  const all = b.at?.isAtAll ? ["@all"] : [];
  return h("div", { class: "bubble" }, inner, mentions([...at, ...atMobiles, ...atIds, ...all].map((n) => (n === "@all" ? "@all" : n))));
}
