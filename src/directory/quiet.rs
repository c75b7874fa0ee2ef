//! Quiet hours of one person: windows in their timezone (IANA, with its DST, or a fixed offset)
//! during which their personal deliveries wait for the window's end, and the events that go at
//! once anyway (approvals pending, critical alerts).

use chrono::{DateTime, Datelike, Days, FixedOffset, NaiveDateTime, NaiveTime};
use chrono::{LocalResult, TimeZone, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::doc::DocError;
use crate::doc::pattern::Patterns;

/// `quietHours` as written in a User.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct QuietSpec {
    timezone: Option<String>,
    windows: Vec<WindowSpec>,
    #[serde(default)]
    except: ExceptSpec,
}

/// `"22:00-08:00"` (every day), or `{days: [mon, …], from: "22:00", to: "08:00"}`; without
/// `from` and `to`, the whole of each day.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum WindowSpec {
    Every(String),
    On {
        #[serde(default)]
        days: Vec<String>,
        from: Option<String>,
        to: Option<String>,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExceptSpec {
    #[serde(default)]
    types: Vec<String>,
    #[serde(default)]
    severities: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
enum Zone {
    Named(chrono_tz::Tz),
    Fixed(FixedOffset),
}

/// One window: starts on each of `days` at `from` and lasts until `to` (the next day's when
/// `to` is not after `from`; 00:00–00:00 is the whole day).
#[derive(Debug, Clone)]
struct Window {
    /// Monday first.
    days: [bool; 7],
    from: NaiveTime,
    to: NaiveTime,
}

/// A person's compiled quiet hours.
#[derive(Debug, Clone)]
pub struct QuietHours {
    zone: Zone,
    windows: Vec<Window>,
    except_types: Patterns,
    except_severities: Vec<String>,
}

/// Windows that follow one another (a weeknight, then a weekend) are joined, up to this many.
const MAX_JOINED: usize = 16;

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl QuietHours {
    pub(super) fn compile(
        spec: &Value,
        default_zone: FixedOffset,
        errors: &mut Vec<DocError>,
    ) -> Option<QuietHours> {
        let s: QuietSpec = match serde_json::from_value(spec.clone()) {
            Ok(s) => s,
            Err(e) => {
                errors.push(DocError::new("/spec/quietHours", e.to_string()));
                return None;
            }
        };
        let zone = match s.timezone.as_deref().map(str::trim) {
            None => Zone::Fixed(default_zone),
            Some(t) => match (t.parse::<FixedOffset>(), t.parse::<chrono_tz::Tz>()) {
                (Ok(f), _) => Zone::Fixed(f),
                (_, Ok(tz)) => Zone::Named(tz),
                _ => {
                    errors.push(DocError::new(
                        "/spec/quietHours/timezone",
                        format!("{t:?} is neither an IANA timezone (Asia/Shanghai) nor an offset (+08:00)"),
                    ));
                    return None;
                }
            },
        };
        let before = errors.len();
        let windows: Vec<Window> = s
            .windows
            .iter()
            .enumerate()
            .filter_map(|(i, w)| window(w, &format!("/spec/quietHours/windows/{i}"), errors))
            .collect();
        let except_types = Patterns::compile(&s.except.types, "/spec/quietHours/except/types")
            .map_err(|e| errors.push(e))
            .unwrap_or_default();
        (errors.len() == before).then(|| QuietHours {
            zone,
            windows,
            except_types,
            except_severities: s
                .except
                .severities
                .iter()
                .map(|v| v.to_lowercase())
                .collect(),
        })
    }

    /// Whether an event of `ty` and `severity` goes at once whatever the hour.
    pub fn excepts(&self, ty: &str, severity: Option<&str>) -> bool {
        (!self.except_types.is_empty() && self.except_types.matches(ty))
            || severity.is_some_and(|s| {
                self.except_severities
                    .iter()
                    .any(|x| x.eq_ignore_ascii_case(s))
            })
    }

    /// When the quiet hours holding `now_ms` end (ms since the epoch); `None` outside them.
    pub fn held_until(&self, now_ms: u64) -> Option<u64> {
        let mut at = now_ms as i64;
        for _ in 0..MAX_JOINED {
            match self.window_end(at) {
                Some(end) if end > at => at = end,
                _ => break,
            }
        }
        (at > now_ms as i64).then_some(at as u64)
    }

    /// `ms` as the person reads it: `2026-12-04 08:00 +08:00`.
    pub fn local(&self, ms: u64) -> String {
        let utc = DateTime::<Utc>::from_timestamp_millis(ms as i64).unwrap_or_default();
        match self.zone {
            Zone::Named(tz) => utc.with_timezone(&tz).format("%Y-%m-%d %H:%M %:z %Z"),
            Zone::Fixed(f) => utc.with_timezone(&f).format("%Y-%m-%d %H:%M %:z"),
        }
        .to_string()
    }

    /// The end of a window that holds `at` (ms), if one does.
    fn window_end(&self, at: i64) -> Option<i64> {
        let local = self.to_local(at)?;
        // A window that started yesterday may still hold today.
        for date in [local.date().pred_opt()?, local.date()] {
            let day = date.weekday().num_days_from_monday() as usize;
            for w in self.windows.iter().filter(|w| w.days[day]) {
                let end_date = if w.to > w.from {
                    date
                } else {
                    date.checked_add_days(Days::new(1))?
                };
                let start = self.to_utc(date.and_time(w.from))?;
                let end = self.to_utc(end_date.and_time(w.to))?;
                if (start..end).contains(&at) {
                    return Some(end);
                }
            }
        }
        None
    }

    fn to_local(&self, ms: i64) -> Option<NaiveDateTime> {
        let utc = DateTime::<Utc>::from_timestamp_millis(ms)?;
        Some(match self.zone {
            Zone::Named(tz) => utc.with_timezone(&tz).naive_local(),
            Zone::Fixed(f) => utc.with_timezone(&f).naive_local(),
        })
    }

    /// A local wall-clock time in ms: the earlier of two in a repeated hour, the first time
    /// after a skipped one.
    fn to_utc(&self, local: NaiveDateTime) -> Option<i64> {
        fn pick<T: TimeZone>(zone: &T, local: NaiveDateTime) -> Option<i64> {
            for shift in [0, 30, 60, 90, 120] {
                let at = local + chrono::Duration::minutes(shift);
                match zone.from_local_datetime(&at) {
                    LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => {
                        return Some(t.timestamp_millis());
                    }
                    LocalResult::None => {}
                }
            }
            None
        }
        match self.zone {
            Zone::Named(tz) => pick(&tz, local),
            Zone::Fixed(f) => pick(&f, local),
        }
    }
}

fn window(w: &WindowSpec, path: &str, errors: &mut Vec<DocError>) -> Option<Window> {
    let time = |t: Option<&str>, field: &str, errors: &mut Vec<DocError>| match t {
        None => Some(NaiveTime::MIN),
        Some(t) => NaiveTime::parse_from_str(t.trim(), "%H:%M")
            .map_err(|_| {
                errors.push(DocError::new(
                    format!("{path}/{field}"),
                    format!("{t:?} is not HH:MM"),
                ))
            })
            .ok(),
    };
    let (days, from, to) = match w {
        WindowSpec::Every(text) => {
            let Some((from, to)) = text.split_once('-') else {
                errors.push(DocError::new(path, format!("{text:?} is not HH:MM-HH:MM")));
                return None;
            };
            (
                [true; 7],
                time(Some(from), "from", errors)?,
                time(Some(to), "to", errors)?,
            )
        }
        WindowSpec::On { days, from, to } => {
            let mut set = [days.is_empty(); 7];
            for (i, d) in days.iter().enumerate() {
                match DAYS
                    .iter()
                    .position(|x| x.eq_ignore_ascii_case(&d[..d.len().min(3)]))
                {
                    Some(n) if d.len() >= 3 => set[n] = true,
                    _ => {
                        errors.push(DocError::new(
                            format!("{path}/days/{i}"),
                            format!("{d:?} is not a day (mon … sun)"),
                        ));
                        return None;
                    }
                }
            }
            (
                set,
                time(from.as_deref(), "from", errors)?,
                time(to.as_deref(), "to", errors)?,
            )
        }
    };
    Some(Window { days, from, to })
}

/// An event's severity, where senders put one: a `severity` CloudEvents attribute, an
/// Alertmanager group's `commonLabels`, an alert's `labels`.
pub fn severity(ce: &Value) -> Option<&str> {
    [
        "/severity",
        "/data/commonLabels/severity",
        "/data/labels/severity",
    ]
    .iter()
    .find_map(|p| ce.pointer(p).and_then(Value::as_str))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A local date and time in `q`'s zone, in ms.
    fn at(q: &QuietHours, y: i32, m: u32, d: u32, h: u32, min: u32) -> u64 {
        let local = chrono::NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(h, min, 0)
            .unwrap();
        q.to_utc(local).unwrap() as u64
    }

    fn compile(spec: Value) -> QuietHours {
        let mut errors = Vec::new();
        let q = QuietHours::compile(&spec, "+08:00".parse().unwrap(), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        q.unwrap()
    }

    #[test]
    fn a_window_crossing_midnight_holds_until_the_next_morning() {
        // 2026-12-04 is a Friday.
        let q = compile(
            json!({"windows": [{"days": ["mon", "tue", "wed", "thu", "fri"], "from": "22:00", "to": "08:00"}]}),
        );
        let friday_late = at(&q, 2026, 12, 4, 23, 30);
        assert_eq!(
            q.local(q.held_until(friday_late).unwrap()),
            "2026-12-05 08:00 +08:00"
        );
        // Saturday night is not a weeknight; Monday's small hours belong to Sunday, not listed.
        assert_eq!(q.held_until(at(&q, 2026, 12, 5, 23, 0)), None);
        assert_eq!(q.held_until(at(&q, 2026, 12, 7, 3, 0)), None);
        // Tuesday 03:00 is inside Monday's window; 08:00 sharp is outside.
        assert_eq!(
            q.local(q.held_until(at(&q, 2026, 12, 8, 3, 0)).unwrap()),
            "2026-12-08 08:00 +08:00"
        );
        assert_eq!(q.held_until(at(&q, 2026, 12, 8, 8, 0)), None);
        assert_eq!(q.held_until(at(&q, 2026, 12, 8, 12, 0)), None);
    }

    #[test]
    fn whole_days_join_the_night_before_them() {
        let q = compile(json!({"windows": ["22:00-08:00", {"days": ["saturday", "sun"]}]}));
        // Friday night runs into Saturday and Sunday, then Sunday night until Monday 08:00.
        let held = q.held_until(at(&q, 2026, 12, 4, 22, 15)).unwrap();
        assert_eq!(q.local(held), "2026-12-07 08:00 +08:00");
        assert_eq!(
            q.local(q.held_until(at(&q, 2026, 12, 6, 12, 0)).unwrap()),
            "2026-12-07 08:00 +08:00"
        );
    }

    #[test]
    fn an_iana_zone_keeps_its_daylight_saving_time() {
        let q = compile(json!({"timezone": "America/New_York", "windows": ["22:00-08:00"]}));
        // 2026-03-08: clocks go from 02:00 EST to 03:00 EDT. 01:00 EST is 06:00 UTC; 08:00 EDT
        // is 12:00 UTC (not 13:00, as a fixed -05:00 would say).
        let before = DateTime::parse_from_rfc3339("2026-03-08T06:00:00Z").unwrap();
        let end = q.held_until(before.timestamp_millis() as u64).unwrap();
        assert_eq!(
            DateTime::<Utc>::from_timestamp_millis(end as i64)
                .unwrap()
                .to_rfc3339(),
            "2026-03-08T12:00:00+00:00"
        );
        assert_eq!(q.local(end), "2026-03-08 08:00 -04:00 EDT");
        // In winter the same window ends at 13:00 UTC.
        let winter = DateTime::parse_from_rfc3339("2026-01-10T04:00:00Z").unwrap();
        let end = q.held_until(winter.timestamp_millis() as u64).unwrap();
        assert_eq!(q.local(end), "2026-01-10 08:00 -05:00 EST");
        // A fixed offset has no DST.
        let fixed = compile(json!({"timezone": "-05:00", "windows": ["22:00-08:00"]}));
        let end = fixed.held_until(before.timestamp_millis() as u64).unwrap();
        assert_eq!(fixed.local(end), "2026-03-08 08:00 -05:00");
    }

    #[test]
    fn exceptions_name_types_and_severities() {
        let q = compile(json!({"windows": ["22:00-08:00"], "except": {
            "types": ["*.approvalpending.*"], "severities": ["Critical"]}}));
        assert!(q.excepts(
            "dev.katanomi.cloudevents.kubeevent.artifactpromotionrun.approvalpending.v1alpha1",
            None
        ));
        assert!(q.excepts("alertmanager.firing", Some("critical")));
        assert!(!q.excepts("alertmanager.firing", Some("warning")));
        assert!(!q.excepts("zadig.workflow.failed", None));
        assert_eq!(
            severity(&json!({"data": {"commonLabels": {"severity": "critical"}}})),
            Some("critical")
        );
        assert_eq!(
            severity(&json!({"severity": "high", "data": {}})),
            Some("high")
        );
    }

    #[test]
    fn bad_windows_and_zones_are_named() {
        let mut errors = Vec::new();
        let q = QuietHours::compile(
            &json!({"timezone": "Mars/Olympus", "windows": ["22:00-08:00"]}),
            FixedOffset::east_opt(0).unwrap(),
            &mut errors,
        );
        assert!(q.is_none());
        assert_eq!(errors[0].path, "/spec/quietHours/timezone");
        let mut errors = Vec::new();
        QuietHours::compile(
            &json!({"windows": ["25:00-08:00", {"days": ["funday"]}]}),
            FixedOffset::east_opt(0).unwrap(),
            &mut errors,
        );
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/spec/quietHours/windows/0/from",
                "/spec/quietHours/windows/1/days/0"
            ]
        );
    }
}
