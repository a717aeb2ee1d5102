//! Deserializes every payload the fake sends with serenity 0.12's own types.
//!
//! serenity turns a gateway payload it cannot deserialize into `Event::Unknown` without logging
//! anything, so a missing field would only show up as a timed-out end-to-end test. Each payload
//! here is produced by the code the fake runs: gateway frames come from the same handlers and
//! REST bodies from the same routes.

use axum::http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use serenity::builder::{CreateCommand, CreateCommandOption};
use serenity::model::application::{
    Command, CommandDataOptionValue, CommandInteraction, CommandOptionType, ComponentInteraction,
    CurrentApplicationInfo, Interaction, ModalInteraction,
};
use serenity::model::channel::{GuildChannel, Message, PrivateChannel};
use serenity::model::event::{Event, GatewayEvent, GuildMemberUpdateEvent};
use serenity::model::gateway::Ready;
use serenity::model::guild::{Guild, Member, PartialGuild, Role, ThreadMember};
use serenity::model::permissions::Permissions;
use serenity::model::user::{CurrentUser, User};
use tokio::sync::mpsc;

use crate::config::FakeDiscordConfig;
use crate::rest::respond_for_test;
use crate::state::{Connection, Outgoing, State, INTENT_GUILDS, INTENT_GUILD_MEMBERS};
use crate::types::{ButtonClick, CommandScope, FakeUser, ModalSubmit, OptionValue, SlashCommand};
use crate::{gateway, inject};

/// A state with a connected gateway session whose frames the test reads.
struct Harness {
    state: State,
    frames: mpsc::UnboundedReceiver<Outgoing>,
}

impl Harness {
    fn new() -> Harness {
        let mut state = State::new(FakeDiscordConfig::default(), "ws://127.0.0.1:9".to_string());
        let (sender, frames) = mpsc::unbounded_channel();
        state.gateway.connection = Some(Connection { id: 1, sender });
        Harness { state, frames }
    }

    fn identify(&mut self) {
        let identify =
            json!({"token": "t", "intents": INTENT_GUILDS | INTENT_GUILD_MEMBERS, "shard": [0, 1]});
        gateway::identify(&mut self.state, &identify).expect("IDENTIFY is answered");
    }

    fn next_frame(&mut self) -> Value {
        match self.frames.try_recv() {
            Ok(Outgoing::Text(text)) => serde_json::from_str(&text).expect("frames are JSON"),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// Parses the next frame's data as `T`, which reports the missing or wrong field, then the
    /// whole frame as serenity's gateway reader does, and returns both.
    fn next_event<T: DeserializeOwned>(&mut self, name: &str) -> (T, Event) {
        let frame = self.next_frame();
        assert_eq!(frame["t"], name, "unexpected frame {frame:#}");
        let data: T = parse(name, &frame["d"]);

        let parsed: GatewayEvent = parse("gateway frame", &frame);
        let GatewayEvent::Dispatch(_, event) = parsed else {
            panic!("{name} is not a dispatch: {frame:#}");
        };
        if let Event::Unknown(_) = &event {
            panic!("{name} became Event::Unknown, which serenity drops silently: {frame:#}");
        }
        (data, event)
    }

    fn rest(&mut self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, body) = respond_for_test(&mut self.state, method.clone(), path, body);
        assert!(status.is_success(), "{method} {path} -> {status}: {body:?}");
        body.unwrap_or(Value::Null)
    }

    fn config(&self) -> FakeDiscordConfig {
        self.state.config.clone()
    }
}

fn parse<T: DeserializeOwned>(what: &str, value: &Value) -> T {
    serde_json::from_value(value.clone())
        .unwrap_or_else(|error| panic!("{what} does not deserialize: {error}\n{value:#}"))
}

/// Builds a command list with serenity's builders, as poise registers it.
fn command_list() -> Value {
    let link = CreateCommandOption::new(CommandOptionType::SubCommand, "link", "Link an account")
        .add_sub_option(
            CreateCommandOption::new(CommandOptionType::String, "key", "API key")
                .required(true)
                .max_length(64),
        )
        .add_sub_option(
            CreateCommandOption::new(CommandOptionType::Integer, "days", "Days")
                .min_int_value(1)
                .max_int_value(30),
        )
        .add_sub_option(CreateCommandOption::new(
            CommandOptionType::Boolean,
            "quiet",
            "Quiet",
        ));
    let status = CreateCommandOption::new(CommandOptionType::SubCommand, "status", "Show status");
    let sms = CreateCommand::new("sms")
        .description("Trackly SMS")
        .add_option(link)
        .add_option(status)
        .default_member_permissions(Permissions::SEND_MESSAGES);
    let ping = CreateCommand::new("ping").description("Ping");
    serde_json::to_value(vec![sms, ping]).expect("serenity builders serialize")
}

fn alice() -> FakeUser {
    FakeUser::new(4242, "alice")
}

#[test]
fn ready_and_guild_create_deserialize() {
    let mut harness = Harness::new();
    let config = harness.config();
    harness.identify();

    let (ready, event) = harness.next_event::<Ready>("READY");
    assert_eq!(ready.user.id.get(), config.bot_user_id);
    assert_eq!(ready.application.id.get(), config.application_id);
    assert_eq!(ready.guilds[0].id.get(), config.guild_id);
    assert!(matches!(event, Event::Ready(_)));

    let (guild, event) = harness.next_event::<Guild>("GUILD_CREATE");
    assert!(matches!(event, Event::GuildCreate(_)));
    assert_eq!(guild.id.get(), config.guild_id);
    let role_names: Vec<&str> = guild
        .roles
        .values()
        .map(|role| role.name.as_str())
        .collect();
    for expected in ["@everyone", "Linked", "Staff"] {
        assert!(
            role_names.contains(&expected),
            "roles {role_names:?} lack {expected}"
        );
    }
    assert!(guild
        .roles
        .keys()
        .any(|id| id.get() == config.everyone_role_id));
    assert!(guild
        .members
        .keys()
        .any(|id| id.get() == config.bot_user_id));
    assert!(guild
        .channels
        .keys()
        .any(|id| id.get() == config.general_channel_id()));
}

#[test]
fn guild_create_with_threads_deserializes() {
    let mut harness = Harness::new();
    let config = harness.config();
    harness.state.add_user(alice());
    let category = harness.rest(
        Method::POST,
        &format!("/api/v10/guilds/{}/channels", config.guild_id),
        Some(json!({"name": "Tickets", "type": 4})),
    );
    let ticket = harness.rest(
        Method::POST,
        &format!("/api/v10/guilds/{}/channels", config.guild_id),
        Some(json!({
            "name": "ticket-1", "type": 0, "parent_id": category["id"], "topic": "help",
            "permission_overwrites": [
                {"id": config.everyone_role_id.to_string(), "type": 0, "allow": "0", "deny": "1024"},
                {"id": "4242", "type": 1, "allow": "3072", "deny": "0"}
            ]
        })),
    );
    harness.rest(
        Method::POST,
        &format!("/api/v10/channels/{}/threads", config.general_channel_id()),
        Some(json!({"name": "private", "type": 12, "invitable": false})),
    );
    harness.identify();

    harness.next_event::<Ready>("READY");
    let (guild, _) = harness.next_event::<Guild>("GUILD_CREATE");
    assert_eq!(guild.channels.len(), 3, "general, category and ticket");
    assert_eq!(guild.threads.len(), 1);
    let ticket_id: u64 = ticket["id"].as_str().unwrap().parse().unwrap();
    let ticket = guild
        .channels
        .values()
        .find(|c| c.id.get() == ticket_id)
        .unwrap();
    assert_eq!(ticket.permission_overwrites.len(), 2);
}

#[test]
fn rest_channel_payloads_deserialize() {
    let mut harness = Harness::new();
    let config = harness.config();
    harness.state.add_user(alice());

    let created = harness.rest(
        Method::POST,
        &format!("/api/v10/guilds/{}/channels", config.guild_id),
        Some(
            json!({"name": "ticket-2", "type": 0, "permission_overwrites": [
                {"id": "4242", "type": 1, "allow": 1024, "deny": 0}
            ]}),
        ),
    );
    let channel: GuildChannel = parse("created GuildChannel", &created);
    assert_eq!(channel.name, "ticket-2");
    assert_eq!(
        channel.permission_overwrites[0].allow,
        Permissions::VIEW_CHANNEL
    );

    let listed = harness.rest(
        Method::GET,
        &format!("/api/v10/guilds/{}/channels", config.guild_id),
        None,
    );
    let _: Vec<GuildChannel> = parse("guild channel list", &listed);

    let thread = harness.rest(
        Method::POST,
        &format!("/api/v10/channels/{}/threads", config.general_channel_id()),
        Some(json!({"name": "support", "type": 12, "invitable": false})),
    );
    let thread_channel: GuildChannel = parse("thread channel", &thread);
    assert_eq!(
        thread_channel.kind,
        serenity::model::channel::ChannelType::PrivateThread
    );
    let thread_id = thread["id"].as_str().unwrap();
    harness.rest(
        Method::PUT,
        &format!("/api/v10/channels/{thread_id}/thread-members/4242"),
        None,
    );
    let archived = harness.rest(
        Method::PATCH,
        &format!("/api/v10/channels/{thread_id}"),
        Some(json!({"archived": true, "locked": true})),
    );
    let archived: GuildChannel = parse("archived thread", &archived);
    assert!(archived.thread_metadata.unwrap().locked);
    let members = harness.rest(
        Method::GET,
        &format!("/api/v10/channels/{thread_id}/thread-members"),
        None,
    );
    let members: Vec<ThreadMember> = parse("thread members", &members);
    assert_eq!(members.len(), 2, "the bot and alice");

    let dm = harness.rest(
        Method::POST,
        "/api/v10/users/@me/channels",
        Some(json!({"recipient_id": "4242"})),
    );
    let dm: PrivateChannel = parse("PrivateChannel", &dm);
    assert_eq!(dm.recipient.id.get(), 4242);
}

#[test]
fn rest_message_payloads_deserialize() {
    let mut harness = Harness::new();
    let config = harness.config();
    let path = format!("/api/v10/channels/{}/messages", config.general_channel_id());

    let created = harness.rest(
        Method::POST,
        &path,
        Some(json!({
            "content": "hello",
            "tts": false,
            "embeds": [{"title": "Usage", "description": "d", "color": 3066993,
                        "fields": [{"name": "Sent", "value": "5", "inline": true}],
                        "footer": {"text": "f"}}],
            "components": [{"type": 1, "components": [
                {"type": 2, "style": 1, "label": "Refresh", "custom_id": "refresh"}
            ]}]
        })),
    );
    let message: Message = parse("Message", &created);
    assert_eq!(message.content, "hello");
    assert_eq!(message.embeds[0].fields[0].value, "5");
    assert_eq!(message.author.id.get(), config.bot_user_id);

    let edited = harness.rest(
        Method::PATCH,
        &format!("{path}/{}", message.id),
        Some(json!({"content": "edited"})),
    );
    let edited: Message = parse("edited Message", &edited);
    assert!(edited.edited_timestamp.is_some());

    let history = harness.rest(Method::GET, &format!("{path}?limit=10"), None);
    let history: Vec<Message> = parse("message history", &history);
    assert_eq!(history.len(), 1);
}

#[test]
fn enforced_nonce_returns_the_first_message() {
    let mut harness = Harness::new();
    let config = harness.config();
    let path = format!("/api/v10/channels/{}/messages", config.general_channel_id());
    let body = |nonce: Value, enforce: bool| {
        Some(json!({"content": "alert", "nonce": nonce, "enforce_nonce": enforce}))
    };

    let first: Message = parse(
        "Message",
        &harness.rest(Method::POST, &path, body(json!("d17"), true)),
    );
    assert!(
        matches!(&first.nonce, Some(serenity::model::channel::Nonce::String(n)) if n == "d17"),
        "{:?}",
        first.nonce
    );
    let repeat: Message = parse(
        "Message",
        &harness.rest(Method::POST, &path, body(json!("d17"), true)),
    );
    assert_eq!(repeat.id, first.id, "the repeat returns the first message");

    // Without enforce_nonce, or with another nonce, a new message is created.
    let unenforced: Message = parse(
        "Message",
        &harness.rest(Method::POST, &path, body(json!("d17"), false)),
    );
    assert_ne!(unenforced.id, first.id);
    let other: Message = parse(
        "Message",
        &harness.rest(Method::POST, &path, body(json!(18), true)),
    );
    assert_ne!(other.id, first.id);
    let history = harness.rest(Method::GET, &format!("{path}?limit=10"), None);
    assert_eq!(history.as_array().map(Vec::len), Some(3));

    let (status, error) = respond_for_test(
        &mut harness.state,
        Method::POST,
        &path,
        body(json!("n".repeat(26)), true),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        error.unwrap()["errors"]["nonce"]["_errors"][0]["code"],
        "BASE_TYPE_MAX_LENGTH"
    );
}

#[test]
fn rest_identity_payloads_deserialize() {
    let mut harness = Harness::new();
    let config = harness.config();
    harness.state.add_user(alice());

    let current: CurrentUser = parse(
        "CurrentUser",
        &harness.rest(Method::GET, "/api/v10/users/@me", None),
    );
    assert_eq!(current.id.get(), config.bot_user_id);
    assert!(current.bot);

    let user: User = parse(
        "User",
        &harness.rest(Method::GET, "/api/v10/users/4242", None),
    );
    assert_eq!(user.name, "alice");

    let application = harness.rest(Method::GET, "/api/v10/oauth2/applications/@me", None);
    let application: CurrentApplicationInfo = parse("CurrentApplicationInfo", &application);
    assert_eq!(application.id.get(), config.application_id);
    assert!(application.owner.is_some());

    let member_path = format!("/api/v10/guilds/{}/members/4242", config.guild_id);
    let role_path = format!("{member_path}/roles/{}", config.linked_role_id());
    harness.rest(Method::PUT, &role_path, None);
    let member: Member = parse("Member", &harness.rest(Method::GET, &member_path, None));
    assert_eq!(member.roles.len(), 1);
    assert_eq!(member.roles[0].get(), config.linked_role_id());

    let guild_path = format!("/api/v10/guilds/{}", config.guild_id);
    let guild: PartialGuild = parse(
        "PartialGuild",
        &harness.rest(Method::GET, &guild_path, None),
    );
    assert_eq!(guild.roles.len(), 4);
    let roles: Vec<Role> = parse(
        "roles",
        &harness.rest(Method::GET, &format!("{guild_path}/roles"), None),
    );
    assert_eq!(roles.len(), 4);
}

#[test]
fn rest_command_registration_deserializes() {
    let mut harness = Harness::new();
    let config = harness.config();

    for path in [
        format!("/api/v10/applications/{}/commands", config.application_id),
        format!(
            "/api/v10/applications/{}/guilds/{}/commands",
            config.application_id, config.guild_id
        ),
    ] {
        let registered = harness.rest(Method::PUT, &path, Some(command_list()));
        let commands: Vec<Command> = parse("Command list", &registered);
        assert_eq!(commands.len(), 2);
        assert_eq!(commands[0].name, "sms");
        assert_eq!(commands[0].options.len(), 2);
        assert_eq!(
            commands[0].default_member_permissions,
            Some(Permissions::SEND_MESSAGES)
        );

        let listed = harness.rest(Method::GET, &path, None);
        let listed: Vec<Command> = parse("listed commands", &listed);
        assert_eq!(listed[0].id, commands[0].id, "ids are stable");
    }
}

#[test]
fn command_interactions_deserialize() {
    let mut harness = Harness::new();
    let config = harness.config();
    harness.identify();
    harness.next_event::<Ready>("READY");
    harness.next_event::<Guild>("GUILD_CREATE");
    harness
        .state
        .register_commands(CommandScope::Global, command_list().as_array().unwrap());

    let guild_command = SlashCommand {
        user: alice(),
        guild_id: Some(config.guild_id),
        channel_id: config.general_channel_id(),
        name: "sms".to_string(),
        subcommand: Some("link".to_string()),
        options: vec![
            ("key".to_string(), OptionValue::String("abc".to_string())),
            ("days".to_string(), OptionValue::Integer(7)),
            ("quiet".to_string(), OptionValue::Boolean(true)),
        ],
        member_roles: vec![config.staff_role_id()],
    };
    let sent = inject::slash_command(&mut harness.state, guild_command).unwrap();
    let (direct, event) = harness.next_event::<CommandInteraction>("INTERACTION_CREATE");
    let Event::InteractionCreate(event) = event else {
        panic!("not INTERACTION_CREATE")
    };
    let Interaction::Command(interaction) = event.interaction else {
        panic!("not a command")
    };
    assert_eq!(direct.id, interaction.id);
    assert_eq!(interaction.id.get(), sent.id);
    assert_eq!(interaction.token, sent.token);
    assert_eq!(interaction.data.name, "sms");
    let member = interaction
        .member
        .as_ref()
        .expect("guild command has a member");
    assert_eq!(member.roles[0].get(), config.staff_role_id());
    assert!(member
        .permissions
        .unwrap()
        .contains(Permissions::MANAGE_ROLES));
    assert!(interaction.app_permissions.is_some());
    assert_eq!(interaction.user.id.get(), 4242);
    let CommandDataOptionValue::SubCommand(options) = &interaction.data.options[0].value else {
        panic!("expected a subcommand option");
    };
    assert_eq!(options.len(), 3);
    assert_eq!(
        options[0].value,
        CommandDataOptionValue::String("abc".to_string())
    );
    assert_eq!(options[1].value, CommandDataOptionValue::Integer(7));
    assert_eq!(options[2].value, CommandDataOptionValue::Boolean(true));

    let dm_channel = harness.state.dm_channel(4242);
    let dm_command = SlashCommand {
        user: alice(),
        guild_id: None,
        channel_id: dm_channel,
        name: "sms".to_string(),
        subcommand: Some("status".to_string()),
        options: vec![],
        member_roles: vec![],
    };
    inject::slash_command(&mut harness.state, dm_command).unwrap();
    let (interaction, _) = harness.next_event::<CommandInteraction>("INTERACTION_CREATE");
    assert!(interaction.guild_id.is_none());
    assert_eq!(interaction.user.id.get(), 4242);
}

#[test]
fn modal_and_component_interactions_deserialize() {
    let mut harness = Harness::new();
    let config = harness.config();
    harness.identify();
    harness.next_event::<Ready>("READY");
    harness.next_event::<Guild>("GUILD_CREATE");
    harness
        .state
        .register_commands(CommandScope::Global, command_list().as_array().unwrap());

    // The bot responds to a command with a modal, as poise's `execute_modal` does.
    let command = SlashCommand {
        user: alice(),
        guild_id: Some(config.guild_id),
        channel_id: config.general_channel_id(),
        name: "ping".to_string(),
        subcommand: None,
        options: vec![],
        member_roles: vec![],
    };
    let opened = inject::slash_command(&mut harness.state, command).unwrap();
    harness.next_event::<Interaction>("INTERACTION_CREATE");
    let modal = json!({
        "custom_id": opened.id.to_string(),
        "title": "Link",
        "components": [{"type": 1, "components": [
            {"type": 4, "custom_id": "key", "style": 1, "label": "Key", "required": true}
        ]}]
    });
    let callback = format!(
        "/api/v10/interactions/{}/{}/callback",
        opened.id, opened.token
    );
    let (status, _) = respond_for_test(
        &mut harness.state,
        Method::POST,
        &callback,
        Some(json!({"type": 9, "data": modal})),
    );
    assert_eq!(status, StatusCode::NO_CONTENT);

    let submit = ModalSubmit {
        user: alice(),
        guild_id: Some(config.guild_id),
        channel_id: config.general_channel_id(),
        custom_id: opened.id.to_string(),
        fields: vec![("key".to_string(), "secret".to_string())],
    };
    let modal = harness
        .state
        .open_modal(&submit.custom_id)
        .expect("modal is open");
    inject::modal_submit(&mut harness.state, submit, &modal).unwrap();
    let (interaction, event) = harness.next_event::<ModalInteraction>("INTERACTION_CREATE");
    let Event::InteractionCreate(event) = event else {
        panic!("not INTERACTION_CREATE")
    };
    assert!(matches!(event.interaction, Interaction::Modal(_)));
    assert_eq!(interaction.data.custom_id, opened.id.to_string());
    assert_eq!(interaction.data.components.len(), 1);

    // poise acknowledges the submission with type 6, then sends followups on the command's token.
    let submit_callback = format!(
        "/api/v10/interactions/{}/{}/callback",
        interaction.id, interaction.token
    );
    let (status, body) = respond_for_test(
        &mut harness.state,
        Method::POST,
        &submit_callback,
        Some(json!({"type": 6})),
    );
    assert_eq!(status, StatusCode::NO_CONTENT, "{body:?}");
    let followup = format!(
        "/api/v10/webhooks/{}/{}",
        config.application_id, opened.token
    );
    harness.rest(
        Method::POST,
        &followup,
        Some(json!({"content": "Linked", "flags": 64})),
    );
    let record = &harness.state.interactions[&opened.id].record;
    assert_eq!(record.first_callback_type(), Some(9));
    assert_eq!(record.modal().unwrap()["title"], "Link");
    assert_eq!(record.texts(), vec!["Linked".to_string()]);

    let path = format!("/api/v10/channels/{}/messages", config.general_channel_id());
    let message = harness.rest(
        Method::POST,
        &path,
        Some(
            json!({"content": "Close?", "components": [{"type": 1, "components": [
                {"type": 2, "style": 4, "label": "Close", "custom_id": "close"}
            ]}]}),
        ),
    );
    let click = ButtonClick {
        user: alice(),
        guild_id: Some(config.guild_id),
        channel_id: config.general_channel_id(),
        custom_id: "close".to_string(),
        message_id: message["id"].as_str().unwrap().parse().unwrap(),
    };
    let clicked = inject::button_click(&mut harness.state, click).unwrap();
    let (interaction, event) = harness.next_event::<ComponentInteraction>("INTERACTION_CREATE");
    let Event::InteractionCreate(event) = event else {
        panic!("not INTERACTION_CREATE")
    };
    assert!(matches!(event.interaction, Interaction::Component(_)));
    assert_eq!(interaction.data.custom_id, "close");
    assert_eq!(interaction.message.content, "Close?");

    // A type 7 update edits the clicked message.
    let callback = format!(
        "/api/v10/interactions/{}/{}/callback",
        clicked.id, clicked.token
    );
    let (status, _) = respond_for_test(
        &mut harness.state,
        Method::POST,
        &callback,
        Some(json!({"type": 7, "data": {"content": "Closed", "components": []}})),
    );
    assert_eq!(status, StatusCode::NO_CONTENT);
    let original = format!(
        "/api/v10/webhooks/{}/{}/messages/@original",
        config.application_id, clicked.token
    );
    let updated: Message = parse(
        "updated Message",
        &harness.rest(Method::GET, &original, None),
    );
    assert_eq!(updated.content, "Closed");
}

#[test]
fn interaction_response_messages_deserialize() {
    let mut harness = Harness::new();
    let config = harness.config();
    harness.identify();
    harness.next_event::<Ready>("READY");
    harness.next_event::<Guild>("GUILD_CREATE");
    harness
        .state
        .register_commands(CommandScope::Global, command_list().as_array().unwrap());
    let command = SlashCommand {
        user: alice(),
        guild_id: Some(config.guild_id),
        channel_id: config.general_channel_id(),
        name: "ping".to_string(),
        subcommand: None,
        options: vec![],
        member_roles: vec![],
    };
    let sent = inject::slash_command(&mut harness.state, command).unwrap();

    let callback = format!("/api/v10/interactions/{}/{}/callback", sent.id, sent.token);
    let (status, _) = respond_for_test(
        &mut harness.state,
        Method::POST,
        &callback,
        Some(json!({"type": 5, "data": {"flags": 64}})),
    );
    assert_eq!(status, StatusCode::NO_CONTENT);

    let webhook = format!("/api/v10/webhooks/{}/{}", config.application_id, sent.token);
    let thinking: Message = parse(
        "deferred Message",
        &harness.rest(Method::GET, &format!("{webhook}/messages/@original"), None),
    );
    assert!(thinking.content.is_empty());

    let followup = harness.rest(
        Method::POST,
        &webhook,
        Some(json!({"content": "done", "flags": 64})),
    );
    let followup: Message = parse("followup Message", &followup);
    assert_eq!(followup.content, "done");
    let edited = harness.rest(
        Method::PATCH,
        &format!("{webhook}/messages/{}", followup.id),
        Some(json!({"embeds": [{"title": "Done"}]})),
    );
    let edited: Message = parse("edited followup", &edited);
    assert_eq!(edited.embeds[0].title.as_deref(), Some("Done"));

    let record = &harness.state.interactions[&sent.id].record;
    assert!(record.is_ephemeral());
    assert_eq!(record.texts(), vec!["done".to_string(), "Done".to_string()]);
    assert!(
        harness
            .state
            .channel_messages(config.general_channel_id())
            .is_empty(),
        "ephemeral"
    );
}

#[test]
fn change_events_deserialize() {
    let mut harness = Harness::new();
    let config = harness.config();
    harness.state.add_user(alice());
    harness.identify();
    harness.next_event::<Ready>("READY");
    harness.next_event::<Guild>("GUILD_CREATE");

    harness.rest(
        Method::POST,
        &format!("/api/v10/guilds/{}/channels", config.guild_id),
        Some(json!({"name": "log", "type": 0})),
    );
    let (_, event) = harness.next_event::<GuildChannel>("CHANNEL_CREATE");
    assert!(matches!(event, Event::ChannelCreate(_)));

    let general = config.general_channel_id();
    harness.rest(
        Method::PUT,
        &format!("/api/v10/channels/{general}/permissions/4242"),
        Some(json!({"type": 1, "allow": "1024", "deny": "0"})),
    );
    let (_, event) = harness.next_event::<GuildChannel>("CHANNEL_UPDATE");
    assert!(matches!(event, Event::ChannelUpdate(_)));

    harness.rest(
        Method::POST,
        &format!("/api/v10/channels/{general}/threads"),
        Some(json!({"name": "t", "type": 12})),
    );
    let (_, event) = harness.next_event::<GuildChannel>("THREAD_CREATE");
    assert!(matches!(event, Event::ThreadCreate(_)));

    harness.rest(
        Method::PUT,
        &format!(
            "/api/v10/guilds/{}/members/4242/roles/{}",
            config.guild_id,
            config.linked_role_id()
        ),
        None,
    );
    let (_, event) = harness.next_event::<GuildMemberUpdateEvent>("GUILD_MEMBER_UPDATE");
    assert!(matches!(event, Event::GuildMemberUpdate(_)));

    gateway::resume(
        &mut harness.state,
        &json!({"session_id": "fake-session-1", "seq": 5}),
    )
    .unwrap();
    let (_, event) = harness.next_event::<Value>("RESUMED");
    assert!(matches!(event, Event::Resumed(_)));
}

#[test]
fn hello_and_ack_frames_parse() {
    let hello: GatewayEvent = parse("HELLO", &crate::payloads::hello_frame());
    assert!(matches!(hello, GatewayEvent::Hello(interval) if interval > 0));
    let ack: GatewayEvent = parse("heartbeat ACK", &json!({"op": 11}));
    assert!(matches!(ack, GatewayEvent::HeartbeatAck));
}

#[test]
fn ticket_thread_payloads_deserialize() {
    let mut harness = Harness::new();
    let config = harness.config();
    harness.state.add_user(alice());
    harness.identify();
    harness.next_event::<Ready>("READY");
    harness.next_event::<Guild>("GUILD_CREATE");

    let thread = harness.rest(
        Method::POST,
        &format!("/api/v10/channels/{}/threads", config.general_channel_id()),
        Some(json!({"name": "T-1 help", "type": 12, "invitable": false})),
    );
    harness.next_event::<GuildChannel>("THREAD_CREATE");
    let thread_id: u64 = thread["id"].as_str().unwrap().parse().unwrap();

    let message_id = inject::user_message(
        &mut harness.state,
        thread_id,
        &alice(),
        "my SMS are stuck",
        &[("log.txt".to_string(), b"line".to_vec())],
    )
    .unwrap();
    let history = harness.rest(
        Method::GET,
        &format!("/api/v10/channels/{thread_id}/messages?limit=100"),
        None,
    );
    let history: Vec<Message> = parse("thread history", &history);
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].id.get(), message_id);
    assert_eq!(history[0].author.id.get(), alice().id);
    assert_eq!(history[0].attachments[0].filename, "log.txt");

    inject::auto_archive_thread(&mut harness.state, thread_id).unwrap();
    let (archived, event) = harness.next_event::<GuildChannel>("THREAD_UPDATE");
    assert!(matches!(event, Event::ThreadUpdate(_)));
    assert!(archived.thread_metadata.unwrap().archived);

    // An archived thread accepts only a change that unarchives it.
    let (status, body) = respond_for_test(
        &mut harness.state,
        Method::PATCH,
        &format!("/api/v10/channels/{thread_id}"),
        Some(json!({"locked": true})),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body.unwrap()["code"], 50083);
    let reopened = harness.rest(
        Method::PATCH,
        &format!("/api/v10/channels/{thread_id}"),
        Some(json!({"archived": false, "locked": false})),
    );
    let reopened: GuildChannel = parse("unarchived thread", &reopened);
    assert!(!reopened.thread_metadata.unwrap().archived);
}

#[test]
fn archived_thread_rejects_message_edit() {
    let mut harness = Harness::new();
    let config = harness.config();
    let thread = harness.rest(
        Method::POST,
        &format!("/api/v10/channels/{}/threads", config.general_channel_id()),
        Some(json!({"name": "T-2", "type": 12})),
    );
    let thread_id: u64 = thread["id"].as_str().unwrap().parse().unwrap();
    let message = harness.rest(
        Method::POST,
        &format!("/api/v10/channels/{thread_id}/messages"),
        Some(json!({"content": "summary"})),
    );
    let message_id = message["id"].as_str().unwrap().to_string();
    inject::auto_archive_thread(&mut harness.state, thread_id).unwrap();

    let (status, body) = respond_for_test(
        &mut harness.state,
        Method::PATCH,
        &format!("/api/v10/channels/{thread_id}/messages/{message_id}"),
        Some(json!({"content": "claimed"})),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body.unwrap()["code"], 50083);
    assert!(inject::auto_archive_thread(&mut harness.state, 1).is_err());
}

#[test]
fn deleted_thread_dispatches_thread_delete() {
    let mut harness = Harness::new();
    let config = harness.config();
    harness.identify();
    harness.next_event::<Ready>("READY");
    harness.next_event::<Guild>("GUILD_CREATE");
    let thread = harness.rest(
        Method::POST,
        &format!("/api/v10/channels/{}/threads", config.general_channel_id()),
        Some(json!({"name": "T-3", "type": 12, "invitable": false})),
    );
    harness.next_event::<GuildChannel>("THREAD_CREATE");
    let thread_id: u64 = thread["id"].as_str().unwrap().parse().unwrap();

    inject::delete_thread(&mut harness.state, thread_id).unwrap();
    let (deleted, event) =
        harness.next_event::<serenity::model::channel::PartialGuildChannel>("THREAD_DELETE");
    assert!(matches!(event, Event::ThreadDelete(_)));
    assert_eq!(deleted.id.get(), thread_id);

    let (status, body) = respond_for_test(
        &mut harness.state,
        Method::GET,
        &format!("/api/v10/channels/{thread_id}"),
        None,
    );
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body.unwrap()["code"], 10003);
    assert!(inject::delete_thread(&mut harness.state, thread_id).is_err());
}

#[test]
fn deleted_channel_dispatches_channel_delete() {
    let mut harness = Harness::new();
    let config = harness.config();
    harness.identify();
    harness.next_event::<Ready>("READY");
    harness.next_event::<Guild>("GUILD_CREATE");
    let general = config.general_channel_id();
    harness.rest(
        Method::POST,
        &format!("/api/v10/channels/{general}/messages"),
        Some(json!({"content": "hello"})),
    );

    inject::delete_channel(&mut harness.state, general).unwrap();
    let (deleted, event) = harness.next_event::<GuildChannel>("CHANNEL_DELETE");
    assert!(matches!(event, Event::ChannelDelete(_)));
    assert_eq!(deleted.id.get(), general);

    let (status, body) = respond_for_test(
        &mut harness.state,
        Method::PUT,
        &format!("/api/v10/channels/{general}/permissions/4242"),
        Some(json!({"type": 1, "allow": "1024", "deny": "0"})),
    );
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body.unwrap()["code"], 10003);
    assert!(harness.state.messages.is_empty());
    assert!(inject::delete_channel(&mut harness.state, general).is_err());
}
