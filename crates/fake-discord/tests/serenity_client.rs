//! Runs a minimal serenity client against the fake: gateway handshake, command registration,
//! a slash command with an ephemeral reply, a reconnect, and the REST calls the bot makes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use fake_discord::{
    CommandScope, FakeDiscord, FakeDiscordConfig, FakeUser, OptionValue, SlashCommand,
};
use serde_json::Value;
use serenity::all::{
    ChannelId, ChannelType, Client, Command, CommandDataOptionValue, CommandOptionType, Context,
    CreateAttachment, CreateChannel, CreateCommand, CreateCommandOption, CreateInteractionResponse,
    CreateInteractionResponseFollowup, CreateInteractionResponseMessage, CreateMessage,
    CreateThread, EditInteractionResponse, EditThread, EventHandler, GatewayIntents, GetMessages,
    GuildId, Interaction, PermissionOverwrite, PermissionOverwriteType, Permissions, Ready, RoleId,
    UserId,
};
use serenity::async_trait;
use serenity::gateway::ShardManager;

use common::{assert_no_violations, serenity_http, BOT_TOKEN};

const TIMEOUT: Duration = Duration::from_secs(15);

/// Registers `/sms status|link` on READY and responds to commands. `status` gets an ephemeral
/// message and an ephemeral followup. `link` is deferred, then the original response is edited
/// and a followup carries a file.
struct Handler;

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, ctx: Context, _ready: Ready) {
        let status =
            CreateCommandOption::new(CommandOptionType::SubCommand, "status", "Show status");
        let link = CreateCommandOption::new(CommandOptionType::SubCommand, "link", "Link account")
            .add_sub_option(
                CreateCommandOption::new(CommandOptionType::String, "key", "API key")
                    .required(true),
            );
        let sms = CreateCommand::new("sms")
            .description("Trackly SMS")
            .add_option(status)
            .add_option(link)
            .default_member_permissions(Permissions::SEND_MESSAGES);
        if let Err(error) = Command::set_global_commands(&ctx.http, vec![sms]).await {
            eprintln!("registering commands failed: {error}");
        }
    }

    async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
        let Interaction::Command(command) = interaction else {
            return;
        };
        let subcommand = command
            .data
            .options
            .first()
            .map(|option| option.name.clone());
        let result = match subcommand.as_deref() {
            Some("link") => {
                let key = match &command.data.options[0].value {
                    CommandDataOptionValue::SubCommand(options) => options
                        .iter()
                        .find(|option| option.name == "key")
                        .and_then(|option| option.value.as_str())
                        .unwrap_or_default()
                        .to_string(),
                    _ => String::new(),
                };
                async {
                    command.defer_ephemeral(&ctx.http).await?;
                    command
                        .edit_response(
                            &ctx.http,
                            EditInteractionResponse::new().content(format!("Linked key {key}")),
                        )
                        .await?;
                    let file = CreateAttachment::bytes(b"usage,5\n".to_vec(), "usage.csv");
                    command
                        .create_followup(
                            &ctx.http,
                            CreateInteractionResponseFollowup::new()
                                .content("Usage attached")
                                .ephemeral(true)
                                .add_file(file),
                        )
                        .await?;
                    Ok::<(), serenity::Error>(())
                }
                .await
            }
            _ => {
                async {
                    let message = CreateInteractionResponseMessage::new()
                        .content("Status: linked")
                        .ephemeral(true);
                    command
                        .create_response(&ctx.http, CreateInteractionResponse::Message(message))
                        .await?;
                    command
                        .create_followup(
                            &ctx.http,
                            CreateInteractionResponseFollowup::new()
                                .content("Balance: 5")
                                .ephemeral(true),
                        )
                        .await?;
                    Ok::<(), serenity::Error>(())
                }
                .await
            }
        };
        if let Err(error) = result {
            eprintln!("answering the interaction failed: {error}");
        }
    }
}

struct RunningBot {
    shard_manager: Arc<ShardManager>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningBot {
    async fn start(fake: &FakeDiscord) -> RunningBot {
        let intents = GatewayIntents::GUILDS | GatewayIntents::GUILD_MEMBERS;
        let mut client = build_client(fake, intents).await;
        let shard_manager = client.shard_manager.clone();
        let task = tokio::spawn(async move {
            if let Err(error) = client.start().await {
                eprintln!("serenity client stopped: {error}");
            }
        });
        RunningBot {
            shard_manager,
            task,
        }
    }

    async fn stop(self) {
        self.shard_manager.shutdown_all().await;
        self.task.abort();
    }
}

/// Builds a client with serenity's HTTP client pointed at the fake. `new_with_http` keeps the
/// proxy; setting a token on the builder afterwards would replace the `Http` and drop it.
async fn build_client(fake: &FakeDiscord, intents: GatewayIntents) -> Client {
    serenity::client::ClientBuilder::new_with_http(serenity_http(fake), intents)
        .event_handler(Handler)
        .await
        .expect("the serenity client builds")
}

fn alice() -> FakeUser {
    FakeUser::new(4242, "alice")
}

fn status_command(fake: &FakeDiscord) -> SlashCommand {
    SlashCommand {
        user: alice(),
        guild_id: Some(fake.config().guild_id),
        channel_id: fake.config().general_channel_id(),
        name: "sms".to_string(),
        subcommand: Some("status".to_string()),
        options: Vec::new(),
        member_roles: Vec::new(),
    }
}

#[tokio::test]
async fn serenity_client_replies_ephemerally() {
    let fake = FakeDiscord::start(FakeDiscordConfig::default())
        .await
        .unwrap();
    let bot = RunningBot::start(&fake).await;

    fake.wait_for_ready(TIMEOUT).await.unwrap();
    let commands = fake.wait_for_commands(TIMEOUT).await.unwrap();
    assert_eq!(commands.scope, CommandScope::Global);
    assert!(commands.command("sms").is_some(), "{:?}", commands.commands);

    let sent = fake.send_command(status_command(&fake)).await.unwrap();
    let record = fake
        .wait_for_interaction(&sent, TIMEOUT, |record| !record.followups.is_empty())
        .await
        .unwrap();

    let log = fake.request_log();
    assert_eq!(record.first_callback_type(), Some(4), "{log}");
    assert!(record.is_ephemeral(), "{log}");
    assert!(record.all_followups_ephemeral(), "{log}");
    assert_eq!(
        record.texts(),
        vec!["Status: linked", "Balance: 5"],
        "{log}"
    );
    assert!(
        record.first_response_delay().unwrap() < Duration::from_secs(3),
        "{log}"
    );
    assert!(
        fake.messages_in(fake.config().general_channel_id())
            .is_empty(),
        "ephemeral replies must not show in the channel\n{log}"
    );

    let requests = fake.requests();
    assert!(
        requests
            .iter()
            .any(|request| request.path == "/api/v10/gateway"),
        "{log}"
    );
    assert!(requests
        .iter()
        .filter(|request| request.path.starts_with("/api/v10/applications/"))
        .all(|request| request.authorization_present));
    assert!(
        !log.contains(BOT_TOKEN),
        "the bot token leaked into the log"
    );
    assert_no_violations(&fake);

    bot.stop().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn serenity_client_defers_edits_and_uploads() {
    let fake = FakeDiscord::start(FakeDiscordConfig::default())
        .await
        .unwrap();
    let bot = RunningBot::start(&fake).await;
    fake.wait_for_ready(TIMEOUT).await.unwrap();
    fake.wait_for_commands(TIMEOUT).await.unwrap();

    let mut command = status_command(&fake);
    command.subcommand = Some("link".to_string());
    command.options = vec![("key".to_string(), OptionValue::String("k-123".to_string()))];
    let sent = fake.send_command(command).await.unwrap();
    let record = fake
        .wait_for_interaction(&sent, TIMEOUT, |record| !record.followups.is_empty())
        .await
        .unwrap();

    let log = fake.request_log();
    assert_eq!(record.first_callback_type(), Some(5), "{log}");
    assert!(record.is_ephemeral(), "{log}");
    assert_eq!(record.edits.len(), 1, "{log}");
    assert_eq!(
        record.texts(),
        vec!["Linked key k-123", "Usage attached"],
        "{log}"
    );
    let upload = fake
        .requests()
        .into_iter()
        .find(|request| request.method == "POST" && request.path.contains("/webhooks/"))
        .expect("the followup was recorded");
    assert_eq!(
        upload.body.as_ref().unwrap()["content"],
        "Usage attached",
        "{log}"
    );
    assert_no_violations(&fake);

    bot.stop().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn serenity_client_resumes_after_reconnect() {
    let fake = FakeDiscord::start(FakeDiscordConfig::default())
        .await
        .unwrap();
    let bot = RunningBot::start(&fake).await;
    fake.wait_for_ready(TIMEOUT).await.unwrap();
    fake.wait_for_commands(TIMEOUT).await.unwrap();

    fake.send_reconnect().await.unwrap();
    let log = fake.request_log();
    assert!(log.contains("RESUME"), "{log}");
    assert!(log.contains("RESUMED"), "{log}");

    // Dispatches keep working on the resumed session.
    let sent = fake.send_command(status_command(&fake)).await.unwrap();
    let record = fake
        .wait_for_interaction(&sent, TIMEOUT, |record| record.last_text().is_some())
        .await
        .unwrap();
    assert!(record.is_ephemeral());

    bot.stop().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn send_command_rejects_unregistered_commands() {
    let fake = FakeDiscord::start(FakeDiscordConfig::default())
        .await
        .unwrap();
    let bot = RunningBot::start(&fake).await;
    fake.wait_for_ready(TIMEOUT).await.unwrap();
    fake.wait_for_commands(TIMEOUT).await.unwrap();

    let mut command = status_command(&fake);
    command.name = "nope".to_string();
    let error = fake.send_command(command).await.unwrap_err().to_string();
    assert!(error.contains("/nope is not registered"), "{error}");
    assert!(error.contains("/sms"), "{error}");

    let mut command = status_command(&fake);
    command.subcommand = Some("link".to_string());
    let error = fake.send_command(command).await.unwrap_err().to_string();
    assert!(error.contains("required option \"key\""), "{error}");

    bot.stop().await;
    fake.shutdown().await;
}

/// Drives the REST calls a ticket and DM feature makes through serenity's own HTTP client, so
/// both serenity's requests (against the OpenAPI description) and the fake's responses
/// (against serenity's types) are checked.
#[tokio::test]
async fn serenity_rest_calls_conform() {
    let fake = FakeDiscord::start(FakeDiscordConfig::default())
        .await
        .unwrap();
    fake.add_user(alice());
    let http = serenity_http(&fake);
    let config = fake.config().clone();
    let guild = GuildId::new(config.guild_id);
    let alice_id = UserId::new(4242);

    let user = http.get_user(alice_id).await.unwrap();
    assert_eq!(user.name, "alice");
    let current = http.get_current_user().await.unwrap();
    assert_eq!(current.id.get(), config.bot_user_id);
    let application = http.get_current_application_info().await.unwrap();
    assert_eq!(application.id.get(), config.application_id);

    // DM
    let dm = alice_id.create_dm_channel(&http).await.unwrap();
    dm.send_message(&http, CreateMessage::new().content("Your balance is low"))
        .await
        .unwrap();
    let dms = fake.dm_messages_to(4242);
    assert_eq!(dms.len(), 1, "{}", fake.request_log());
    assert_eq!(dms[0]["content"], "Your balance is low");

    // Roles
    let linked = RoleId::new(config.linked_role_id());
    http.add_member_role(guild, alice_id, linked, Some("linked"))
        .await
        .unwrap();
    assert_eq!(fake.member_roles(4242), vec![config.linked_role_id()]);
    let member = guild.member(&http, alice_id).await.unwrap();
    assert_eq!(member.roles, vec![linked]);
    http.remove_member_role(guild, alice_id, linked, None)
        .await
        .unwrap();
    assert!(fake.member_roles(4242).is_empty());

    // Ticket channel with overwrites
    let category = guild
        .create_channel(
            &http,
            CreateChannel::new("Tickets").kind(ChannelType::Category),
        )
        .await
        .unwrap();
    let overwrites = vec![
        PermissionOverwrite {
            allow: Permissions::empty(),
            deny: Permissions::VIEW_CHANNEL,
            kind: PermissionOverwriteType::Role(RoleId::new(config.everyone_role_id)),
        },
        PermissionOverwrite {
            allow: Permissions::VIEW_CHANNEL | Permissions::SEND_MESSAGES,
            deny: Permissions::empty(),
            kind: PermissionOverwriteType::Member(alice_id),
        },
    ];
    let ticket = guild
        .create_channel(
            &http,
            CreateChannel::new("ticket-0001")
                .kind(ChannelType::Text)
                .category(category.id)
                .topic("Support ticket")
                .permissions(overwrites),
        )
        .await
        .unwrap();
    let staff = PermissionOverwrite {
        allow: Permissions::VIEW_CHANNEL,
        deny: Permissions::empty(),
        kind: PermissionOverwriteType::Role(RoleId::new(config.staff_role_id())),
    };
    ticket.id.create_permission(&http, staff).await.unwrap();
    let stored = fake.channel(ticket.id.get()).unwrap();
    assert_eq!(
        stored["permission_overwrites"].as_array().unwrap().len(),
        3,
        "{stored:#}"
    );
    assert_eq!(stored["parent_id"], Value::String(category.id.to_string()));
    ticket
        .id
        .delete_permission(&http, PermissionOverwriteType::Member(alice_id))
        .await
        .unwrap();
    let stored = fake.channel(ticket.id.get()).unwrap();
    assert_eq!(
        stored["permission_overwrites"].as_array().unwrap().len(),
        2,
        "{stored:#}"
    );

    // Transcript upload and history
    ticket
        .id
        .send_files(
            &http,
            [CreateAttachment::bytes(
                b"alice: help\n".to_vec(),
                "transcript.txt",
            )],
            CreateMessage::new().content("Transcript"),
        )
        .await
        .unwrap();
    ticket.id.say(&http, "Second message").await.unwrap();
    let history = ticket
        .id
        .messages(&http, GetMessages::new().limit(10))
        .await
        .unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].content, "Second message", "newest first");
    assert_eq!(history[1].attachments[0].filename, "transcript.txt");
    let attachment_id = history[1].attachments[0].id.get();
    assert_eq!(
        fake.attachment_data(attachment_id).unwrap(),
        b"alice: help\n"
    );

    // Private thread
    let general = ChannelId::new(config.general_channel_id());
    let thread = general
        .create_thread(
            &http,
            CreateThread::new("ticket-0002")
                .kind(ChannelType::PrivateThread)
                .invitable(false),
        )
        .await
        .unwrap();
    thread.id.add_thread_member(&http, alice_id).await.unwrap();
    let members = thread.id.get_thread_members(&http).await.unwrap();
    assert_eq!(members.len(), 2, "the bot and alice");
    thread.id.say(&http, "Welcome").await.unwrap();
    thread
        .id
        .edit_thread(&http, EditThread::new().archived(true).locked(true))
        .await
        .unwrap();
    let error = thread.id.say(&http, "After lock").await.unwrap_err();
    assert!(error.to_string().contains("locked"), "{error}");

    ticket.id.delete(&http).await.unwrap();
    assert!(fake.channel(ticket.id.get()).is_none());

    assert!(!fake.request_log().contains(BOT_TOKEN));
    assert_no_violations(&fake);
    fake.shutdown().await;
}
