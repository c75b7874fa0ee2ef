// The console's words in English and Chinese: the browser's language first, then the choice
// kept for this browser.

const WORDS = {
  en: {
    overview: "Overview", deliveries: "Deliveries", dead: "Dead letters", catalog: "Catalog",
    playground: "Playground", logout: "Log out", login: "Log in",
    login_intro: "Enter the relay's admin token. It is kept for this browser session only.",
    token: "Admin token", wrong_token: "The token was refused", loading: "Loading…",
    events_per_minute: "Events and deliveries per minute (last hour)",
    events: "events", delivered: "delivered", failed: "failed attempts", planned: "planned",
    backlog: "Backlog", pending: "pending", due: "due now", oldest_due: "oldest due since",
    dead_letters: "dead letters", store: "Store", engine: "engine", writable: "writable",
    not_writable: "cannot write", bytes: "size", fsyncs: "fsyncs", write_failures: "write failures",
    catalog_health: "Catalog", files: "files", errors: "errors", warnings: "warnings",
    none: "none", state: "State", channel: "Channel", source: "Source", type: "Type",
    recipient: "Recipient", since: "Since", until: "Until", any: "any", apply: "Apply",
    live: "Live refresh", next_page: "Next page", first_page: "First page", id: "Id",
    event: "Event", to: "To", mail_from: "From", attempts: "Attempts", updated: "Updated", last_error: "Last error",
    no_rows: "Nothing matches.", received: "Received", as_received: "The event as received",
    routing: "Routing", matched: "matched", not_matched: "not matched",
    timeline: "Attempts", preview: "Message as the vendor shows it", request: "Vendor request",
    replay: "Replay", replay_all: "Replay all matching", replayed: "scheduled",
    replay_result: "Matched {matched}, scheduled {scheduled}, skipped {skipped}",
    confirm_replay_all: "Replay every dead letter matching these filters?",
    resources: "Resources", kind: "Kind", name: "Name", origin: "From", builtin: "built in",
    channels: "Channels", config: "Settings", body: "Body", headers: "Headers (one per line, Name: value)",
    no_auth: "Skip the Source's authentication", render: "Render",
    template_edit: "Template (edit and render again)", edit_template: "Edit template",
    clear_template: "Use the loaded template", refused: "Refused", deliveries_planned: "Deliveries",
    render_error: "Render error: a dead letter from the start", unresolved: "Unresolved recipients",
    nothing_stored: "Nothing is stored or sent.", upload: "Upload a body", mentions: "Mentions",
    link: "Link", at_all: "@all", not_found: "Not found", error: "Error",
    state_pending: "pending", state_waiting: "waiting", state_delivered: "delivered",
    state_dead: "dead", result_delivered: "delivered", result_retryable: "failed, retried",
    result_throttled: "throttled", result_permanent: "failed, not retried", next_attempt: "next attempt",
    console_off: "The console is off",
  },
  zh: {
    overview: "概览", deliveries: "投递", dead: "死信", catalog: "资源目录",
    playground: "模板试验场", logout: "退出", login: "登录",
    login_intro: "请输入中继的管理令牌。它只保存在本次浏览器会话中。",
    token: "管理令牌", wrong_token: "令牌被拒绝", loading: "加载中…",
    events_per_minute: "每分钟事件与投递（最近一小时）",
    events: "事件", delivered: "已送达", failed: "失败尝试", planned: "计划投递",
    backlog: "积压", pending: "待投递", due: "当前到期", oldest_due: "最早到期于",
    dead_letters: "死信", store: "存储", engine: "引擎", writable: "可写",
    not_writable: "无法写入", bytes: "大小", fsyncs: "fsync 次数", write_failures: "写入失败",
    catalog_health: "资源目录", files: "文件", errors: "错误", warnings: "警告",
    none: "无", state: "状态", channel: "通道", source: "来源", type: "类型",
    recipient: "接收人", since: "起始", until: "截止", any: "全部", apply: "筛选",
    live: "实时刷新", next_page: "下一页", first_page: "第一页", id: "编号",
    event: "事件", to: "发送给", mail_from: "发件人", attempts: "尝试次数", updated: "更新时间", last_error: "最近错误",
    no_rows: "没有匹配项。", received: "接收时间", as_received: "收到的原始事件",
    routing: "路由", matched: "匹配", not_matched: "未匹配",
    timeline: "尝试记录", preview: "厂商展示效果", request: "厂商请求",
    replay: "重放", replay_all: "重放全部匹配项", replayed: "已安排",
    replay_result: "匹配 {matched}，已安排 {scheduled}，跳过 {skipped}",
    confirm_replay_all: "重放所有符合筛选条件的死信？",
    resources: "资源", kind: "种类", name: "名称", origin: "来源文件", builtin: "内置",
    channels: "通道", config: "配置", body: "请求体", headers: "请求头（每行一个，名称: 值）",
    no_auth: "跳过来源认证", render: "渲染",
    template_edit: "模板（编辑后重新渲染）", edit_template: "编辑模板",
    clear_template: "使用已加载的模板", refused: "拒绝", deliveries_planned: "投递",
    render_error: "渲染错误：一开始就是死信", unresolved: "无法解析的接收人",
    nothing_stored: "不会存储或发送任何内容。", upload: "上传请求体", mentions: "提及",
    link: "链接", at_all: "@所有人", not_found: "未找到", error: "错误",
    state_pending: "待投递", state_waiting: "等待中", state_delivered: "已送达",
    state_dead: "死信", result_delivered: "已送达", result_retryable: "失败，将重试",
    result_throttled: "被限流", result_permanent: "失败，不再重试", next_attempt: "下次尝试",
    console_off: "控制台未启用",
  },
};

const KEY = "hookrelay.lang";

/** The language in use: the one chosen here before, else the browser's. */
export function lang() {
  const chosen = localStorage.getItem(KEY);
  if (chosen && WORDS[chosen]) return chosen;
  return (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";
}

export function setLang(l) {
  if (WORDS[l]) localStorage.setItem(KEY, l);
}

/** The word for `key`, with `{name}` filled from `vars`. */
export function t(key, vars = {}) {
  const text = WORDS[lang()][key] ?? WORDS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, k) => String(vars[k] ?? ""));
}
