//! Turns the test's slash commands, modal submissions and button clicks into INTERACTION_CREATE
//! dispatches, after checking them against what the bot registered or sent, as Discord's client
//! would.

use serde_json::{json, Value};

use crate::payloads::{self, PRIVATE_THREAD};
use crate::permissions::MANAGE_THREADS;
use crate::state::{is_thread, now_timestamp, snowflake, State, INTENT_GUILDS};
use crate::types::{ButtonClick, FakeUser, InteractionRef, ModalSubmit, OptionValue, SlashCommand};

/// Interaction types.
const APPLICATION_COMMAND: u64 = 2;
const MESSAGE_COMPONENT: u64 = 3;
const MODAL_SUBMIT: u64 = 5;

/// Application command option types with nested options.
const SUB_COMMAND: u64 = 1;
const SUB_COMMAND_GROUP: u64 = 2;

/// Component types.
const BUTTON: u64 = 2;
const TEXT_INPUT: u64 = 4;

pub(crate) fn slash_command(
    state: &mut State,
    command: SlashCommand,
) -> Result<InteractionRef, String> {
    ensure_session(state)?;
    ensure_guild(state, command.guild_id)?;

    let Some(registered) = state.find_command(&command.name, command.guild_id) else {
        let scope = match command.guild_id {
            Some(guild_id) => format!("in guild {guild_id} or globally"),
            None => "globally (DM commands must be global)".to_string(),
        };
        return Err(format!(
            "/{} is not registered {scope}; call wait_for_commands first (registered: {})",
            command.name,
            registered_names(state)
        ));
    };
    let options = command_options(&registered, &command)?;

    remember_user(
        state,
        &command.user,
        command.guild_id,
        Some(&command.member_roles),
    );
    ensure_can_see(state, command.user.id, command.channel_id)?;
    let command_id = snowflake(&registered["id"]).unwrap_or(0);
    let data = payloads::command_data(
        command_id,
        &command.name,
        snowflake(&registered["guild_id"]),
        options,
    );
    let (reference, payload) = state.new_interaction(
        APPLICATION_COMMAND,
        &command.user,
        command.guild_id,
        command.channel_id,
        data,
    );

    state.dispatch("INTERACTION_CREATE", payload)?;
    let invocation = match &command.subcommand {
        Some(subcommand) => format!("/{} {subcommand}", command.name),
        None => format!("/{}", command.name),
    };
    state.log_line(format!(
        "interaction {}: {invocation} by user {}",
        reference.id, command.user.id
    ));
    Ok(reference)
}

pub(crate) fn modal_submit(
    state: &mut State,
    submit: ModalSubmit,
    modal: &Value,
) -> Result<InteractionRef, String> {
    ensure_session(state)?;
    ensure_guild(state, submit.guild_id)?;
    check_modal_fields(modal, &submit)?;

    remember_user(state, &submit.user, submit.guild_id, None);
    let data = payloads::modal_submit_data(&submit.custom_id, &submit.fields);
    let (reference, payload) = state.new_interaction(
        MODAL_SUBMIT,
        &submit.user,
        submit.guild_id,
        submit.channel_id,
        data,
    );

    state.dispatch("INTERACTION_CREATE", payload)?;
    state.log_line(format!(
        "interaction {}: modal {} submitted by user {}",
        reference.id, submit.custom_id, submit.user.id
    ));
    Ok(reference)
}

pub(crate) fn button_click(
    state: &mut State,
    click: ButtonClick,
) -> Result<InteractionRef, String> {
    ensure_session(state)?;
    ensure_guild(state, click.guild_id)?;

    let Some(message) = state
        .messages
        .get(&click.message_id)
        .map(|stored| stored.value.clone())
    else {
        return Err(format!(
            "message {} is not stored in the fake; click a button on a message the bot sent",
            click.message_id
        ));
    };
    let mut buttons = Vec::new();
    collect_components(&message["components"], BUTTON, &mut buttons);
    let Some(button) = buttons
        .iter()
        .find(|button| button["custom_id"] == click.custom_id.as_str())
    else {
        let ids: Vec<&str> = buttons
            .iter()
            .filter_map(|b| b["custom_id"].as_str())
            .collect();
        return Err(format!(
            "message {} has no button with custom_id {:?} (buttons: {})",
            click.message_id,
            click.custom_id,
            list_or_none(&ids)
        ));
    };
    if button["disabled"] == true {
        return Err(format!("button {:?} is disabled", click.custom_id));
    }

    remember_user(state, &click.user, click.guild_id, None);
    ensure_can_see(state, click.user.id, click.channel_id)?;
    let (reference, mut payload) = state.new_interaction(
        MESSAGE_COMPONENT,
        &click.user,
        click.guild_id,
        click.channel_id,
        payloads::button_data(&click.custom_id),
    );
    payload["message"] = message;
    if let Some(interaction) = state.interactions.get_mut(&reference.id) {
        interaction.component_message_id = Some(click.message_id);
    }

    state.dispatch("INTERACTION_CREATE", payload)?;
    state.log_line(format!(
        "interaction {}: button {} clicked by user {}",
        reference.id, click.custom_id, click.user.id
    ));
    Ok(reference)
}

/// Stores a message that `author` wrote in a channel, with `files` (name and bytes) as
/// attachments, and returns the message id. The message reaches the bot only through REST
/// (history), because the bot does not request the message content intent.
pub(crate) fn user_message(
    state: &mut State,
    channel_id: u64,
    author: &FakeUser,
    content: &str,
    files: &[(String, Vec<u8>)],
) -> Result<u64, String> {
    let Some(channel) = state.channels.get(&channel_id).cloned() else {
        return Err(format!("channel {channel_id} is not stored in the fake"));
    };
    if content.is_empty() && files.is_empty() {
        return Err("a message needs content or at least one file".to_string());
    }
    if is_thread(&channel) && channel["thread_metadata"]["locked"] == true {
        return Err(format!(
            "thread {channel_id} is locked; users cannot post in it"
        ));
    }
    state.add_user(author.clone());

    let mut attachments = Vec::with_capacity(files.len());
    for (filename, data) in files {
        let attachment_id = state.next_id();
        attachments.push(payloads::attachment(
            attachment_id,
            filename,
            None,
            data.len(),
            None,
        ));
        state.attachments.insert(attachment_id, data.clone());
    }
    // A user writing in an archived, unlocked thread unarchives it, as on Discord.
    if is_thread(&channel) && channel["thread_metadata"]["archived"] == true {
        if let Some(thread) = state.channels.get_mut(&channel_id) {
            thread["thread_metadata"]["archived"] = Value::Bool(false);
        }
    }

    let message_id = state.next_id();
    let message = payloads::message(
        payloads::MessageFields {
            id: message_id,
            channel_id,
            guild_id: snowflake(&channel["guild_id"]),
            author,
            timestamp: &now_timestamp(),
            kind: 0,
            application_id: None,
            attachments,
        },
        &json!({ "content": content }),
    );
    state.store_message(message, false);
    state.log_line(format!(
        "user {} wrote message {message_id} in channel {channel_id}",
        author.id
    ));
    Ok(message_id)
}

/// Archives a thread as Discord does after its auto-archive duration without activity, and
/// sends THREAD_UPDATE.
pub(crate) fn auto_archive_thread(state: &mut State, thread_id: u64) -> Result<(), String> {
    let Some(thread) = state.channels.get_mut(&thread_id) else {
        return Err(format!("thread {thread_id} is not stored in the fake"));
    };
    if !is_thread(thread) {
        return Err(format!("channel {thread_id} is not a thread"));
    }
    thread["thread_metadata"]["archived"] = Value::Bool(true);
    thread["thread_metadata"]["archive_timestamp"] = json!(now_timestamp());
    let updated = thread.clone();
    state.log_line(format!("thread {thread_id} auto-archived"));
    state.dispatch_change(INTENT_GUILDS, "THREAD_UPDATE", updated);
    Ok(())
}

/// Checks that the user can see the channel, because Discord's client cannot send an
/// interaction from a channel the user does not see. A private thread is visible only to its
/// members and to members with Manage Threads (or Administrator) in its parent channel.
fn ensure_can_see(state: &State, user_id: u64, channel_id: u64) -> Result<(), String> {
    let Some(channel) = state.channels.get(&channel_id) else {
        return Ok(());
    };
    if channel["type"] != PRIVATE_THREAD {
        return Ok(());
    }
    let is_member = state
        .thread_members
        .get(&channel_id)
        .is_some_and(|members| members.contains_key(&user_id));
    let roles = state
        .members
        .get(&user_id)
        .map(|member| member.roles.clone())
        .unwrap_or_default();
    let manages_threads =
        state.member_permissions(user_id, &roles, channel_id) & MANAGE_THREADS != 0;
    if is_member || manages_threads {
        Ok(())
    } else {
        Err(format!(
            "user {user_id} cannot see private thread {channel_id}: only its members and \
             members with Manage Threads can, so Discord would never send this interaction"
        ))
    }
}

/// Deletes a thread as a user with Manage Threads can in Discord's client: the thread, its
/// members and its messages disappear, later requests for it get 10003 Unknown Channel, and
/// the bot receives THREAD_DELETE.
pub(crate) fn delete_thread(state: &mut State, thread_id: u64) -> Result<(), String> {
    let Some(thread) = state.channels.get(&thread_id).cloned() else {
        return Err(format!("thread {thread_id} is not stored in the fake"));
    };
    if !is_thread(&thread) {
        return Err(format!("channel {thread_id} is not a thread"));
    }
    state.channels.remove(&thread_id);
    state.thread_members.remove(&thread_id);
    state
        .messages
        .retain(|_, message| message.channel_id() != thread_id);
    state.log_line(format!("thread {thread_id} deleted by a user"));
    let deleted = json!({
        "id": thread["id"],
        "guild_id": thread["guild_id"],
        "parent_id": thread["parent_id"],
        "type": thread["type"],
    });
    state.dispatch_change(INTENT_GUILDS, "THREAD_DELETE", deleted);
    Ok(())
}

/// Deletes a guild channel (not a thread) with its messages, as an administrator can in
/// Discord's client, and sends CHANNEL_DELETE to the bot. Later requests for the channel get
/// 10003 Unknown Channel.
pub(crate) fn delete_channel(state: &mut State, channel_id: u64) -> Result<(), String> {
    let Some(channel) = state.channels.get(&channel_id).cloned() else {
        return Err(format!("channel {channel_id} is not stored in the fake"));
    };
    if is_thread(&channel) || channel["guild_id"].is_null() {
        return Err(format!(
            "channel {channel_id} is not a guild channel; use delete_thread for threads"
        ));
    }
    state.channels.remove(&channel_id);
    state
        .messages
        .retain(|_, message| message.channel_id() != channel_id);
    state.log_line(format!("channel {channel_id} deleted by a user"));
    state.dispatch_change(INTENT_GUILDS, "CHANNEL_DELETE", channel);
    Ok(())
}

fn ensure_session(state: &State) -> Result<(), String> {
    if state.gateway.session_ready {
        Ok(())
    } else {
        Err("the bot has no ready gateway session; call wait_for_ready first".to_string())
    }
}

fn ensure_guild(state: &State, guild_id: Option<u64>) -> Result<(), String> {
    match guild_id {
        Some(guild_id) if guild_id != state.config.guild_id => Err(format!(
            "guild {guild_id} is not the fake's guild {}",
            state.config.guild_id
        )),
        _ => Ok(()),
    }
}

/// Stores the user as a guild member (a user who can run the bot's commands, even in a DM,
/// shares the guild with it) and, for a guild interaction, the roles given with it.
fn remember_user(state: &mut State, user: &FakeUser, guild_id: Option<u64>, roles: Option<&[u64]>) {
    state.add_user(user.clone());
    if guild_id.is_none() {
        return;
    }
    // Roles given with an interaction are added to what the member already has, as roles the
    // bot assigned stay on a real member until someone removes them.
    if let (Some(roles), Some(member)) = (roles, state.members.get_mut(&user.id)) {
        for role in roles {
            if !member.roles.contains(role) {
                member.roles.push(*role);
            }
        }
    }
}

fn registered_names(state: &State) -> String {
    let mut names: Vec<String> = state
        .commands
        .global
        .iter()
        .chain(state.commands.guild.values())
        .flatten()
        .filter_map(|command| command["name"].as_str().map(|name| format!("/{name}")))
        .collect();
    names.dedup();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

/// Builds `data.options` and checks them against the registered command: the subcommand exists,
/// each option exists with the same type, required options are present, and values respect
/// `choices`, `min_value`/`max_value` and `min_length`/`max_length`.
fn command_options(registered: &Value, command: &SlashCommand) -> Result<Vec<Value>, String> {
    let top_options = registered["options"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let has_subcommands = top_options.iter().any(|option| {
        matches!(
            option["type"].as_u64(),
            Some(SUB_COMMAND | SUB_COMMAND_GROUP)
        )
    });

    let (expected, invocation) = match &command.subcommand {
        Some(subcommand) => {
            let found = top_options.iter().find(|option| {
                option["type"] == SUB_COMMAND && option["name"] == subcommand.as_str()
            });
            let Some(found) = found else {
                let names: Vec<&str> = top_options
                    .iter()
                    .filter(|option| option["type"] == SUB_COMMAND)
                    .filter_map(|option| option["name"].as_str())
                    .collect();
                return Err(format!(
                    "/{} has no subcommand {subcommand:?} (subcommands: {})",
                    command.name,
                    list_or_none(&names)
                ));
            };
            let inner = found["options"].as_array().cloned().unwrap_or_default();
            (inner, format!("/{} {subcommand}", command.name))
        }
        None if has_subcommands => {
            let names: Vec<&str> = top_options
                .iter()
                .filter_map(|o| o["name"].as_str())
                .collect();
            return Err(format!(
                "/{} needs a subcommand (subcommands: {})",
                command.name,
                names.join(", ")
            ));
        }
        None => (top_options, format!("/{}", command.name)),
    };

    let mut values = Vec::with_capacity(command.options.len());
    for (name, value) in &command.options {
        let Some(option) = expected
            .iter()
            .find(|option| option["name"] == name.as_str())
        else {
            let names: Vec<&str> = expected.iter().filter_map(|o| o["name"].as_str()).collect();
            return Err(format!(
                "{invocation} has no option {name:?} (options: {})",
                list_or_none(&names)
            ));
        };
        check_option_value(&invocation, name, option, value)?;
        values.push(json!({ "name": name, "type": value.option_type(), "value": value.to_json() }));
    }

    for option in &expected {
        let name = option["name"].as_str().unwrap_or_default();
        let given = command.options.iter().any(|(given, _)| given == name);
        if option["required"] == true && !given {
            return Err(format!("{invocation} needs the required option {name:?}"));
        }
    }

    match &command.subcommand {
        Some(subcommand) => Ok(vec![json!({
            "name": subcommand,
            "type": SUB_COMMAND,
            "options": values,
        })]),
        None => Ok(values),
    }
}

fn check_option_value(
    invocation: &str,
    name: &str,
    option: &Value,
    value: &OptionValue,
) -> Result<(), String> {
    let expected_type = option["type"].as_u64().unwrap_or(0);
    if expected_type != value.option_type() {
        return Err(format!(
            "{invocation} option {name:?} is registered with type {expected_type}, but the test \
             gave type {} ({value:?})",
            value.option_type()
        ));
    }

    if let Some(choices) = option["choices"]
        .as_array()
        .filter(|choices| !choices.is_empty())
    {
        let json_value = value.to_json();
        if !choices.iter().any(|choice| choice["value"] == json_value) {
            let allowed: Vec<String> = choices
                .iter()
                .map(|choice| choice["value"].to_string())
                .collect();
            return Err(format!(
                "{invocation} option {name:?} must be one of {}, got {json_value}",
                allowed.join(", ")
            ));
        }
    }

    match value {
        OptionValue::String(text) => {
            let length = text.chars().count() as u64;
            if option["min_length"]
                .as_u64()
                .is_some_and(|min| length < min)
                || option["max_length"]
                    .as_u64()
                    .is_some_and(|max| length > max)
            {
                return Err(format!(
                    "{invocation} option {name:?} has length {length}, outside the registered \
                     min_length {} and max_length {}",
                    option["min_length"], option["max_length"]
                ));
            }
        }
        OptionValue::Integer(number) => {
            let number = *number as f64;
            if option["min_value"].as_f64().is_some_and(|min| number < min)
                || option["max_value"].as_f64().is_some_and(|max| number > max)
            {
                return Err(format!(
                    "{invocation} option {name:?} is {number}, outside the registered min_value \
                     {} and max_value {}",
                    option["min_value"], option["max_value"]
                ));
            }
        }
        OptionValue::Boolean(_) => {}
    }
    Ok(())
}

/// Collects the components of `kind` inside rows, labels and containers.
fn collect_components(components: &Value, kind: u64, found: &mut Vec<Value>) {
    for component in components.as_array().into_iter().flatten() {
        if component["type"] == kind {
            found.push(component.clone());
        }
        collect_components(&component["components"], kind, found);
        if component.get("component").is_some() {
            collect_components(&json!([component["component"]]), kind, found);
        }
    }
}

/// Checks a submission against the modal's text inputs: every field exists, and every
/// required input (Discord's default) has a value.
fn check_modal_fields(modal: &Value, submit: &ModalSubmit) -> Result<(), String> {
    let mut inputs = Vec::new();
    collect_components(&modal["components"], TEXT_INPUT, &mut inputs);
    let ids: Vec<&str> = inputs
        .iter()
        .filter_map(|input| input["custom_id"].as_str())
        .collect();

    for (field, _) in &submit.fields {
        if !ids.contains(&field.as_str()) {
            return Err(format!(
                "modal {} has no text input {field:?} (inputs: {})",
                submit.custom_id,
                list_or_none(&ids)
            ));
        }
    }
    for input in &inputs {
        let id = input["custom_id"].as_str().unwrap_or_default();
        let required = input["required"].as_bool().unwrap_or(true);
        let value = submit
            .fields
            .iter()
            .find(|(field, _)| field == id)
            .map(|(_, value)| value);
        if required && value.is_none_or(String::is_empty) {
            return Err(format!(
                "modal {} needs a value for the required input {id:?}",
                submit.custom_id
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACTION_ROW: u64 = 1;
    const LABEL: u64 = 18;

    fn registered() -> Value {
        json!({
            "id": "5", "name": "sms", "type": 1,
            "options": [
                {"type": 1, "name": "link", "description": "d", "options": [
                    {"type": 3, "name": "key", "description": "d", "required": true, "max_length": 8},
                    {"type": 4, "name": "days", "description": "d", "min_value": 1, "max_value": 30},
                    {"type": 3, "name": "plan", "description": "d", "choices": [{"name": "A", "value": "a"}]}
                ]},
                {"type": 1, "name": "status", "description": "d"}
            ]
        })
    }

    fn command(subcommand: Option<&str>, options: Vec<(&str, OptionValue)>) -> SlashCommand {
        SlashCommand {
            user: FakeUser::new(1, "u"),
            guild_id: None,
            channel_id: 2,
            name: "sms".to_string(),
            subcommand: subcommand.map(str::to_string),
            options: options
                .into_iter()
                .map(|(n, v)| (n.to_string(), v))
                .collect(),
            member_roles: Vec::new(),
        }
    }

    #[test]
    fn command_options_nest_under_subcommand() {
        let options = command_options(
            &registered(),
            &command(
                Some("link"),
                vec![("key", OptionValue::String("abc".into()))],
            ),
        )
        .unwrap();
        assert_eq!(options[0]["type"], 1);
        assert_eq!(options[0]["name"], "link");
        assert_eq!(
            options[0]["options"][0],
            json!({"name": "key", "type": 3, "value": "abc"})
        );

        let options = command_options(&registered(), &command(Some("status"), vec![])).unwrap();
        assert_eq!(options[0]["options"], json!([]));
    }

    #[test]
    fn command_options_reject_invalid_input() {
        let cases = vec![
            (command(None, vec![]), "needs a subcommand"),
            (command(Some("unlink"), vec![]), "no subcommand"),
            (command(Some("link"), vec![]), "required option \"key\""),
            (
                command(Some("link"), vec![("key", OptionValue::Integer(1))]),
                "type 3",
            ),
            (
                command(
                    Some("link"),
                    vec![("key", OptionValue::String("123456789".into()))],
                ),
                "length 9",
            ),
            (
                command(
                    Some("link"),
                    vec![
                        ("key", OptionValue::String("k".into())),
                        ("days", OptionValue::Integer(31)),
                    ],
                ),
                "outside",
            ),
            (
                command(
                    Some("link"),
                    vec![
                        ("key", OptionValue::String("k".into())),
                        ("plan", OptionValue::String("b".into())),
                    ],
                ),
                "must be one of",
            ),
            (
                command(Some("link"), vec![("nope", OptionValue::Boolean(true))]),
                "no option",
            ),
        ];
        for (command, expected) in cases {
            let error = command_options(&registered(), &command).unwrap_err();
            assert!(
                error.contains(expected),
                "expected {expected:?} in {error:?}"
            );
        }
    }

    #[test]
    fn modal_fields_must_match_inputs() {
        let modal = json!({"custom_id": "7", "title": "t", "components": [
            {"type": 1, "components": [{"type": 4, "custom_id": "key", "style": 1, "label": "Key"}]},
            {"type": 1, "components": [{"type": 4, "custom_id": "note", "style": 2, "label": "Note", "required": false}]}
        ]});
        let submit = |fields: Vec<(&str, &str)>| ModalSubmit {
            user: FakeUser::new(1, "u"),
            guild_id: None,
            channel_id: 2,
            custom_id: "7".to_string(),
            fields: fields
                .into_iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        };

        assert!(check_modal_fields(&modal, &submit(vec![("key", "abc")])).is_ok());
        let error = check_modal_fields(&modal, &submit(vec![("note", "x")])).unwrap_err();
        assert!(error.contains("required input \"key\""), "{error}");
        let error =
            check_modal_fields(&modal, &submit(vec![("key", "a"), ("other", "x")])).unwrap_err();
        assert!(error.contains("no text input \"other\""), "{error}");
    }

    #[test]
    fn collect_components_finds_nested_buttons() {
        let components = json!([
            {"type": ACTION_ROW, "components": [{"type": 2, "custom_id": "a"}, {"type": 2, "custom_id": "b"}]},
            {"type": LABEL, "component": {"type": 2, "custom_id": "c"}}
        ]);
        let mut found = Vec::new();
        collect_components(&components, BUTTON, &mut found);
        let ids: Vec<&str> = found
            .iter()
            .filter_map(|b| b["custom_id"].as_str())
            .collect();
        assert_eq!(ids, vec!["a", "b", "c"]);
    }
}
