//! The admin API's answers as tables a person reads (widths fit the terminal; CJK text is
//! measured by its display width).

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use serde_json::Value;

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().copied());
    t
}

/// A two-column table of labelled values.
fn fields<const N: usize>(rows: [(&str, String); N]) -> Table {
    let mut t = table(&["field", "value"]);
    for (label, value) in rows {
        t.add_row([label.to_string(), value]);
    }
    t
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A time in ms since the epoch, as UTC.
fn time(v: &Value) -> String {
    v.as_i64()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn recipients(to: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    for key in ["users", "mobiles", "parties", "tags"] {
        if let Some(list) = to[key].as_array().filter(|l| !l.is_empty()) {
            let ids: Vec<String> = list.iter().map(text).collect();
            parts.push(ids.join(","));
        }
    }
    if to["all"] == true {
        parts.push("@all".into());
    }
    parts.join(" ")
}

fn error_line(e: &Value) -> String {
    if e.is_null() {
        return String::new();
    }
    format!("{}: {}", text(&e["reason"]), text(&e["detail"]))
}

pub fn deliveries(v: &Value) -> String {
    let mut t = table(&[
        "delivery",
        "state",
        "channel",
        "source",
        "type",
        "to",
        "tries",
        "created",
        "last error",
    ]);
    let list = v["deliveries"].as_array().cloned().unwrap_or_default();
    for d in &list {
        t.add_row([
            text(&d["id"]),
            text(&d["state"]),
            text(&d["channel"]),
            text(&d["receiver"]),
            text(&d["event_type"]),
            recipients(&d["to"]),
            text(&d["attempts"]),
            time(&d["created_ms"]),
            // A delivery waiting (a throttle, quiet hours) says why it waits.
            if d["last_error"].is_null() {
                error_line(&d["waiting"])
            } else {
                error_line(&d["last_error"])
            },
        ]);
    }
    let mut out = format!("{t}\n{} deliveries", list.len());
    if let Some(next) = v["next"].as_str() {
        out.push_str(&format!("; more with --before {next}"));
    }
    out + "\n"
}

pub fn delivery(d: &Value) -> String {
    let head = fields([
        ("delivery", text(&d["id"])),
        ("event", text(&d["event"])),
        ("state", text(&d["state"])),
        ("channel", text(&d["channel"])),
        (
            "from",
            format!("{} ({})", text(&d["receiver"]), text(&d["event_type"])),
        ),
        ("route", text(&d["origin"])),
        ("to", recipients(&d["to"])),
        ("created", time(&d["created_ms"])),
        ("next attempt", time(&d["next_ms"])),
        ("last error", error_line(&d["last_error"])),
        ("waiting", error_line(&d["waiting"])),
        ("receipt", text(&d["receipt"])),
    ]);
    let mut log = table(&["attempt", "at", "took", "result", "reason / receipt"]);
    for (i, a) in d["attempt_log"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let said = if a["error"].is_null() {
            text(&a["receipt"])
        } else {
            error_line(&a["error"])
        };
        log.add_row([
            (i + 1).to_string(),
            time(&a["at_ms"]),
            format!("{} ms", text(&a["duration_ms"])),
            text(&a["result"]),
            said,
        ]);
    }
    format!("{head}\n{log}\n")
}

pub fn event(e: &Value) -> String {
    let ev = &e["event"];
    let head = fields([
        ("event", text(&e["id"])),
        ("received", time(&e["received_ms"])),
        ("type", text(&ev["type"])),
        ("source", text(&ev["source"])),
        ("id", text(&ev["id"])),
        ("subject", text(&ev["subject"])),
    ]);
    let mut routing = table(&["", "resource", "why"]);
    for r in e["routing"].as_array().into_iter().flatten() {
        let mark = if r["matched"] == true { "✔" } else { "✘" };
        routing.add_row([mark.to_string(), text(&r["what"]), text(&r["why"])]);
    }
    let list = serde_json::json!({ "deliveries": e["deliveries"], "next": null });
    format!("{head}\n{routing}\n{}", deliveries(&list))
}

pub fn stats(s: &Value) -> String {
    let count = |key: &str| text(&s["counts"][key]);
    let t = fields([
        ("events", count("events")),
        ("deliveries", count("deliveries")),
        ("pending", count("pending")),
        ("dead", count("dead")),
        ("attempts", count("attempts")),
        ("fsyncs", text(&s["fsyncs"])),
        ("bytes", text(&s["bytes"])),
    ]);
    format!("{t}\n")
}

pub fn report(r: &Value) -> String {
    let mut t = table(&["file", "status", "documents"]);
    for f in r["files"].as_array().into_iter().flatten() {
        t.add_row([text(&f["file"]), text(&f["status"]), text(&f["documents"])]);
    }
    let mut out = format!("{t}\n");
    for (kind, list) in [("error", &r["errors"]), ("warning", &r["warnings"])] {
        for e in list.as_array().into_iter().flatten() {
            out.push_str(&format!(
                "{kind}: {} document {}: {}: {}\n",
                text(&e["file"]),
                text(&e["document"]),
                text(&e["path"]),
                text(&e["message"])
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_listing_shows_each_delivery_and_the_cursor() {
        let v = json!({"deliveries": [{"id": "dlv_1", "state": "dead", "channel": "企业微信",
            "receiver": "zadig", "event_type": "zadig.workflow.failed",
            "to": {"users": ["张三", "lisi"]}, "attempts": 3, "created_ms": 0,
            "last_error": {"reason": "client", "detail": "errcode 40058: 参数错误"}},
            {"id": "dlv_2", "state": "waiting", "channel": "c", "receiver": "zadig",
            "event_type": "t", "to": {"users": ["wangwu"]}, "attempts": 0, "created_ms": 0,
            "waiting": {"reason": "quiet-hours", "detail": "held until 08:00 by wangwu's quiet hours"}}],
            "next": "dlv_2"});
        let out = deliveries(&v);
        for want in [
            "dlv_1",
            "企业微信",
            "张三,lisi",
            "1970-01-01 00:00:00Z",
            "client: errcode 40058",
            "quiet-hours: held until 08:00",
            "2 deliveries; more with --before dlv_2",
        ] {
            assert!(out.contains(want), "{want} in:\n{out}");
        }
    }

    #[test]
    fn an_event_shows_why_each_resource_took_it_or_not() {
        let e = json!({"id": "evt_1", "event": {"type": "t", "source": "s", "id": "1"},
            "routing": [{"what": "Route r", "matched": true, "why": "→ c"},
                        {"what": "Route q", "matched": false, "why": "type does not match"}],
            "deliveries": []});
        let out = event(&e);
        assert!(
            out.contains("✔") && out.contains("Route r") && out.contains("→ c"),
            "{out}"
        );
        assert!(
            out.contains("✘") && out.contains("type does not match"),
            "{out}"
        );
    }
}
