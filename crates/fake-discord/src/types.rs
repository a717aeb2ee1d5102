//! Values that tests pass to the fake and read back from it.

use std::time::{Duration, Instant};

use serde_json::Value;

/// Message flag that makes a message visible only to the user who ran the interaction.
pub const EPHEMERAL_FLAG: u64 = 1 << 6;

/// A Discord user known to the fake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeUser {
    pub id: u64,
    pub username: String,
    pub bot: bool,
}

impl FakeUser {
    /// Creates a human (non-bot) user.
    pub fn new(id: u64, username: impl Into<String>) -> Self {
        FakeUser {
            id,
            username: username.into(),
            bot: false,
        }
    }
}

/// A slash command invocation to send as an INTERACTION_CREATE dispatch.
#[derive(Clone, Debug)]
pub struct SlashCommand {
    pub user: FakeUser,
    /// Guild the command runs in. `None` sends it as a DM interaction from `user`.
    pub guild_id: Option<u64>,
    pub channel_id: u64,
    /// Top-level command name, such as `sms`.
    pub name: String,
    /// Subcommand name, such as `link`.
    pub subcommand: Option<String>,
    pub options: Vec<(String, OptionValue)>,
    /// Roles the member has in addition to those already stored (such as one the bot added);
    /// the interaction carries all of them. Ignored for DM interactions.
    pub member_roles: Vec<u64>,
}

/// Value of a slash command option.
#[derive(Clone, Debug, PartialEq)]
pub enum OptionValue {
    /// Discord option type 3.
    String(String),
    /// Discord option type 4.
    Integer(i64),
    /// Discord option type 5.
    Boolean(bool),
}

impl OptionValue {
    /// Returns Discord's application command option type for this value.
    pub fn option_type(&self) -> u64 {
        match self {
            OptionValue::String(_) => 3,
            OptionValue::Integer(_) => 4,
            OptionValue::Boolean(_) => 5,
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        match self {
            OptionValue::String(value) => Value::from(value.as_str()),
            OptionValue::Integer(value) => Value::from(*value),
            OptionValue::Boolean(value) => Value::from(*value),
        }
    }
}

/// A modal submission to send as an INTERACTION_CREATE dispatch of type 5.
#[derive(Clone, Debug)]
pub struct ModalSubmit {
    pub user: FakeUser,
    pub guild_id: Option<u64>,
    pub channel_id: u64,
    /// The modal's `custom_id`, as the bot sent it in the type 9 callback.
    pub custom_id: String,
    /// Pairs of text input `custom_id` and the value the user typed.
    pub fields: Vec<(String, String)>,
}

/// A button click to send as an INTERACTION_CREATE dispatch of type 3.
#[derive(Clone, Debug)]
pub struct ButtonClick {
    pub user: FakeUser,
    pub guild_id: Option<u64>,
    pub channel_id: u64,
    pub custom_id: String,
    /// Id of a message stored in the fake; its full JSON goes into the interaction.
    pub message_id: u64,
}

/// Id and token of an interaction the fake dispatched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InteractionRef {
    pub id: u64,
    pub token: String,
}

/// Record of the responses the bot sent to one interaction.
#[derive(Clone, Debug)]
pub struct InteractionRecord {
    pub id: u64,
    pub dispatched_at: Instant,
    /// Bodies of `POST /interactions/{id}/{token}/callback`, in order, with the time each arrived.
    pub callbacks: Vec<(Instant, Value)>,
    /// Bodies of followups, `POST /webhooks/{application}/{token}`.
    pub followups: Vec<Value>,
    /// Bodies of `PATCH /webhooks/{application}/{token}/messages/{@original|id}`.
    pub edits: Vec<Value>,
    /// Arrival order across the three lists above.
    pub(crate) order: Vec<ResponseEntry>,
}

/// Position of one response in [`InteractionRecord`]'s lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResponseEntry {
    Callback(usize),
    Followup(usize),
    Edit(usize),
}

impl InteractionRecord {
    pub(crate) fn new(id: u64, dispatched_at: Instant) -> Self {
        InteractionRecord {
            id,
            dispatched_at,
            callbacks: Vec::new(),
            followups: Vec::new(),
            edits: Vec::new(),
            order: Vec::new(),
        }
    }

    pub(crate) fn push_callback(&mut self, at: Instant, body: Value) {
        self.order
            .push(ResponseEntry::Callback(self.callbacks.len()));
        self.callbacks.push((at, body));
    }

    pub(crate) fn push_followup(&mut self, body: Value) {
        self.order
            .push(ResponseEntry::Followup(self.followups.len()));
        self.followups.push(body);
    }

    pub(crate) fn push_edit(&mut self, body: Value) {
        self.order.push(ResponseEntry::Edit(self.edits.len()));
        self.edits.push(body);
    }

    /// Returns the time between the dispatch and the first callback. Discord rejects a first
    /// response that comes later than 3 seconds.
    pub fn first_response_delay(&self) -> Option<Duration> {
        let (at, _) = self.callbacks.first()?;
        Some(at.saturating_duration_since(self.dispatched_at))
    }

    /// Returns the `type` of the first callback (4 message, 5 deferred message, 6 deferred
    /// update, 7 update, 9 modal).
    pub fn first_callback_type(&self) -> Option<u64> {
        self.callbacks.first()?.1.get("type")?.as_u64()
    }

    /// Tells whether the first callback is a message or deferred message (type 4 or 5) with the
    /// ephemeral flag. Any other first callback, a modal included, is not ephemeral.
    pub fn is_ephemeral(&self) -> bool {
        let Some((_, body)) = self.callbacks.first() else {
            return false;
        };
        match body.get("type").and_then(Value::as_u64) {
            Some(4 | 5) => has_ephemeral_flag(body.get("data")),
            _ => false,
        }
    }

    /// Tells whether every followup carries the ephemeral flag. Returns `true` when there are no
    /// followups, as [`Iterator::all`] does.
    pub fn all_followups_ephemeral(&self) -> bool {
        self.followups
            .iter()
            .all(|body| has_ephemeral_flag(Some(body)))
    }

    /// Returns the visible text of each message the bot sent or edited, in arrival order. One
    /// entry per message body joins its content and, for each embed, the title, description and
    /// "name: value" of each field with newlines. Callbacks of type 4 and 7 carry a message and
    /// count; bodies without any text are skipped.
    pub fn texts(&self) -> Vec<String> {
        let mut texts = Vec::new();
        for entry in &self.order {
            let body = match *entry {
                ResponseEntry::Callback(index) => {
                    let (_, callback) = &self.callbacks[index];
                    match callback.get("type").and_then(Value::as_u64) {
                        Some(4 | 7) => callback.get("data"),
                        _ => None,
                    }
                }
                ResponseEntry::Followup(index) => self.followups.get(index),
                ResponseEntry::Edit(index) => self.edits.get(index),
            };
            if let Some(text) = body.and_then(message_text) {
                texts.push(text);
            }
        }
        texts
    }

    /// Returns the last entry of [`InteractionRecord::texts`].
    pub fn last_text(&self) -> Option<String> {
        self.texts().pop()
    }

    /// Returns the `data` of the first modal callback (type 9).
    pub fn modal(&self) -> Option<Value> {
        self.callbacks
            .iter()
            .find(|(_, body)| body.get("type").and_then(Value::as_u64) == Some(9))
            .and_then(|(_, body)| body.get("data").cloned())
    }
}

fn has_ephemeral_flag(data: Option<&Value>) -> bool {
    data.and_then(|data| data.get("flags"))
        .and_then(Value::as_u64)
        .is_some_and(|flags| flags & EPHEMERAL_FLAG != 0)
}

/// Joins the content and embed text of a message body, or returns `None` when it has no text.
pub(crate) fn message_text(body: &Value) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    if let Some(content) = body.get("content").and_then(Value::as_str) {
        parts.push(content.to_string());
    }
    for embed in body
        .get("embeds")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for key in ["title", "description"] {
            if let Some(text) = embed.get(key).and_then(Value::as_str) {
                parts.push(text.to_string());
            }
        }
        for field in embed
            .get("fields")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = field
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let value = field
                .get("value")
                .and_then(Value::as_str)
                .unwrap_or_default();
            parts.push(format!("{name}: {value}"));
        }
    }

    parts.retain(|part| !part.is_empty());
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("\n"))
    }
}

/// One REST request the fake received, with the status it returned.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub at: Instant,
    pub method: String,
    /// Path including the `/api/v10` prefix, without the query.
    pub path: String,
    pub query: Option<String>,
    /// The JSON body, or for multipart/form-data the `payload_json` part.
    pub body: Option<Value>,
    pub raw_body_len: usize,
    /// Whether an `Authorization` header was present. Its value is never stored.
    pub authorization_present: bool,
    pub status: u16,
}

/// An error the fake returns instead of handling matching requests.
#[derive(Clone, Debug)]
pub struct ScriptedError {
    /// HTTP method, compared case-insensitively.
    pub method: String,
    /// Path pattern including `/api/v10`, where `*` matches exactly one segment, such as
    /// `/api/v10/channels/*/messages`.
    pub path: String,
    pub status: u16,
    /// Discord's JSON error code, such as 50007.
    pub code: u64,
    pub message: String,
    /// Number of matching requests that get this error. `None` applies it to every match until
    /// [`crate::FakeDiscord::clear_scripted_errors`].
    pub times: Option<u32>,
    /// Seconds to wait, for a 429 response: sent as `retry_after` in the body and, rounded up to
    /// whole seconds, as the `retry-after` header.
    pub retry_after: Option<f64>,
}

impl ScriptedError {
    /// Creates an error that applies to every matching request until cleared.
    pub fn new(
        method: impl Into<String>,
        path: impl Into<String>,
        status: u16,
        code: u64,
        message: impl Into<String>,
    ) -> Self {
        ScriptedError {
            method: method.into(),
            path: path.into(),
            status,
            code,
            message: message.into(),
            times: None,
            retry_after: None,
        }
    }

    /// Limits the error to the next `times` matching requests.
    pub fn times(mut self, times: u32) -> Self {
        self.times = Some(times);
        self
    }

    /// Creates a 429 response with `retry_after` seconds.
    pub fn rate_limited(
        method: impl Into<String>,
        path: impl Into<String>,
        retry_after: f64,
    ) -> Self {
        ScriptedError {
            retry_after: Some(retry_after),
            ..ScriptedError::new(method, path, 429, 0, "You are being rate limited.")
        }
    }
}

/// A reply the fake holds back: matching requests are handled as usual, then their reply is
/// sent only after `hold`. A client that gives up or dies meanwhile has had its request carried
/// out without learning the result.
#[derive(Clone, Debug)]
pub struct HeldReply {
    /// HTTP method, compared case-insensitively.
    pub method: String,
    /// Path pattern as in [`ScriptedError::path`].
    pub path: String,
    pub hold: std::time::Duration,
    /// Number of matching requests whose reply is delayed. `None` applies to every match until
    /// [`crate::FakeDiscord::clear_held_replies`].
    pub times: Option<u32>,
}

impl HeldReply {
    /// Holds the replies to every matching request until cleared.
    pub fn new(
        method: impl Into<String>,
        path: impl Into<String>,
        hold: std::time::Duration,
    ) -> Self {
        HeldReply {
            method: method.into(),
            path: path.into(),
            hold,
            times: None,
        }
    }

    /// Limits the hold to the next `times` matching requests.
    pub fn times(mut self, times: u32) -> Self {
        self.times = Some(times);
        self
    }
}

/// Scope of a registered command list: global or one guild.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandScope {
    Global,
    Guild(u64),
}

/// The last command list the bot registered, as the fake returned it (with assigned ids).
#[derive(Clone, Debug)]
pub struct RegisteredCommands {
    pub scope: CommandScope,
    pub commands: Vec<Value>,
}

impl RegisteredCommands {
    /// Returns the registered command with this name.
    pub fn command(&self, name: &str) -> Option<&Value> {
        self.commands
            .iter()
            .find(|command| command.get("name").and_then(Value::as_str) == Some(name))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn record_texts_follow_arrival_order() {
        let start = Instant::now();
        let mut record = InteractionRecord::new(1, start);
        record.push_callback(start, json!({"type": 5, "data": {"flags": 64}}));
        record.push_followup(json!({"content": "first", "flags": 64}));
        record.push_edit(
            json!({"embeds": [{"title": "T", "fields": [{"name": "n", "value": "v"}]}]}),
        );
        record.push_followup(json!({"content": "last", "flags": 64}));

        assert_eq!(record.texts(), vec!["first", "T\nn: v", "last"]);
        assert_eq!(record.last_text().as_deref(), Some("last"));
        assert!(record.is_ephemeral());
        assert!(record.all_followups_ephemeral());
        assert_eq!(record.first_callback_type(), Some(5));
        assert_eq!(record.first_response_delay(), Some(Duration::ZERO));
    }

    #[test]
    fn record_modal_is_not_ephemeral() {
        let start = Instant::now();
        let mut record = InteractionRecord::new(1, start);
        record.push_callback(
            start,
            json!({"type": 9, "data": {"custom_id": "1", "title": "Link", "components": []}}),
        );
        record.push_followup(json!({"content": "public"}));

        assert!(!record.is_ephemeral());
        assert!(!record.all_followups_ephemeral());
        assert_eq!(record.modal().unwrap()["title"], "Link");
        assert!(record.texts() == vec!["public".to_string()]);
    }

    #[test]
    fn record_without_callback_has_no_delay() {
        let record = InteractionRecord::new(1, Instant::now());
        assert_eq!(record.first_response_delay(), None);
        assert_eq!(record.first_callback_type(), None);
        assert!(!record.is_ephemeral());
        assert!(record.last_text().is_none());
    }
}
