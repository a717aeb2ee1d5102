//! Per-account event feed with sequential cursors, as `GET /events` pages through it.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

/// Events of one account, oldest first. The event at index `i` has cursor number `i + 1`.
#[derive(Debug, Default, Clone)]
pub(crate) struct EventFeed {
    events: Vec<Value>,
}

/// One page of `GET /events`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FeedPage {
    pub events: Vec<Value>,
    pub next_cursor: String,
    pub has_more: bool,
}

/// The `after` value is not a cursor this feed has issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnknownCursor;

impl EventFeed {
    /// Appends one event and returns its cursor.
    pub fn append(&mut self, event: Value) -> String {
        self.events.push(event);
        format_cursor(self.events.len() as u64)
    }

    /// Returns the cursor of the newest event, or `c_00000` when the feed is empty.
    pub fn newest_cursor(&self) -> String {
        format_cursor(self.events.len() as u64)
    }

    /// Returns up to `limit` events strictly after `after`, oldest first.
    ///
    /// Without `after` the page is empty and points at the newest event, so that a new reader
    /// starts at the end of the feed instead of replaying its history.
    pub fn page(&self, after: Option<&str>, limit: usize) -> Result<FeedPage, UnknownCursor> {
        let Some(after) = after else {
            return Ok(FeedPage {
                events: Vec::new(),
                next_cursor: self.newest_cursor(),
                has_more: false,
            });
        };

        let position = parse_cursor(after).ok_or(UnknownCursor)?;
        let start = usize::try_from(position).map_err(|_| UnknownCursor)?;
        if start > self.events.len() {
            return Err(UnknownCursor);
        }

        let end = start.saturating_add(limit).min(self.events.len());
        let events = self.events[start..end].to_vec();
        let next_cursor = if events.is_empty() {
            after.to_string()
        } else {
            format_cursor(end as u64)
        };

        Ok(FeedPage {
            events,
            next_cursor,
            has_more: end < self.events.len(),
        })
    }
}

pub(crate) fn format_cursor(position: u64) -> String {
    format!("c_{position:05}")
}

/// Parses a cursor in exactly the form [`format_cursor`] writes, so `c_1` or `c_000001` are unknown.
fn parse_cursor(cursor: &str) -> Option<u64> {
    let digits = cursor.strip_prefix("c_")?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let position: u64 = digits.parse().ok()?;
    (format_cursor(position) == cursor).then_some(position)
}

/// Completes an event for storage: it must be a JSON object, gets `generated_id` when it has no
/// `id` (or a null one) and `now` as `occurred_at` when it has none. Other fields stay as given, so
/// tests can feed the bot events of unknown types or odd data.
pub(crate) fn prepare_event(
    event: Value,
    generated_id: impl FnOnce() -> String,
    now: DateTime<Utc>,
) -> Result<Value, String> {
    let Value::Object(mut fields) = event else {
        return Err(format!(
            "expected a JSON object with id, type, occurred_at and data, found {}",
            json_type_name(&event)
        ));
    };

    fill_if_absent(&mut fields, "id", || Value::String(generated_id()));
    fill_if_absent(&mut fields, "occurred_at", || {
        Value::String(now.to_rfc3339_opts(SecondsFormat::Secs, true))
    });

    Ok(Value::Object(fields))
}

fn fill_if_absent(fields: &mut Map<String, Value>, name: &str, value: impl FnOnce() -> Value) {
    let absent = fields.get(name).is_none_or(Value::is_null);
    if absent {
        fields.insert(name.to_string(), value());
    }
}

fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn feed_of(count: usize) -> EventFeed {
        let mut feed = EventFeed::default();
        for index in 1..=count {
            feed.append(json!({ "id": format!("evt_{index}") }));
        }
        feed
    }

    fn ids(page: &FeedPage) -> Vec<String> {
        page.events
            .iter()
            .map(|event| event["id"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn cursor_round_trip() {
        assert_eq!(format_cursor(0), "c_00000");
        assert_eq!(format_cursor(482), "c_00482");
        assert_eq!(format_cursor(123_456), "c_123456");
        assert_eq!(parse_cursor("c_00482"), Some(482));
        assert_eq!(parse_cursor("c_123456"), Some(123_456));
        assert_eq!(parse_cursor("c_482"), None);
        assert_eq!(parse_cursor("c_000482"), None);
        assert_eq!(parse_cursor("c_-0001"), None);
        assert_eq!(parse_cursor("x_00001"), None);
        assert_eq!(parse_cursor(""), None);
    }

    #[test]
    fn page_without_after_points_at_newest() {
        let page = feed_of(3).page(None, 100).unwrap();
        assert!(page.events.is_empty());
        assert_eq!(page.next_cursor, "c_00003");
        assert!(!page.has_more);

        let empty = EventFeed::default().page(None, 100).unwrap();
        assert_eq!(empty.next_cursor, "c_00000");
    }

    #[test]
    fn page_after_cursor_with_limit() {
        let feed = feed_of(5);

        let first = feed.page(Some("c_00001"), 2).unwrap();
        assert_eq!(ids(&first), ["evt_2", "evt_3"]);
        assert_eq!(first.next_cursor, "c_00003");
        assert!(first.has_more);

        let last = feed.page(Some(&first.next_cursor), 2).unwrap();
        assert_eq!(ids(&last), ["evt_4", "evt_5"]);
        assert_eq!(last.next_cursor, "c_00005");
        assert!(!last.has_more);

        let caught_up = feed.page(Some("c_00005"), 2).unwrap();
        assert!(caught_up.events.is_empty());
        assert_eq!(caught_up.next_cursor, "c_00005");
        assert!(!caught_up.has_more);
    }

    #[test]
    fn page_rejects_cursor_past_newest() {
        let feed = feed_of(2);
        assert_eq!(feed.page(Some("c_00003"), 10), Err(UnknownCursor));
        assert_eq!(feed.page(Some("bogus"), 10), Err(UnknownCursor));
        assert!(feed.page(Some("c_00000"), 10).is_ok());
    }

    #[test]
    fn prepare_fills_missing_id_and_time() {
        let now = DateTime::parse_from_rfc3339("2026-12-04T17:59:02Z")
            .unwrap()
            .with_timezone(&Utc);

        let filled = prepare_event(
            json!({ "type": "opt_out", "id": null }),
            || "evt_gen".into(),
            now,
        )
        .unwrap();
        assert_eq!(filled["id"], "evt_gen");
        assert_eq!(filled["occurred_at"], "2026-12-04T17:59:02Z");
        assert_eq!(filled["type"], "opt_out");

        let kept = prepare_event(
            json!({ "id": "evt_1", "occurred_at": "2026-01-01T00:00:00Z" }),
            || unreachable!("an event with an id needs no generated id"),
            now,
        )
        .unwrap();
        assert_eq!(kept["id"], "evt_1");
        assert_eq!(kept["occurred_at"], "2026-01-01T00:00:00Z");

        let error = prepare_event(json!([1, 2]), || "evt_gen".into(), now).unwrap_err();
        assert!(error.contains("found an array"), "{error}");
    }
}
