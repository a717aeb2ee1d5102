//! The Discord surface: the poise framework, its error handling, and the commands. Everything
//! below this module takes plain values.

mod alert_sender;
mod alerts;
pub mod connect;
mod errors;
mod guild;
mod link_modal;
mod notify;
mod sms;
mod support;

use std::sync::Arc;
use std::time::Instant;

use poise::serenity_prelude as serenity;

use crate::config::{CommandScope, Config};
use crate::linking::LinkService;
use crate::state::BotState;
use crate::tickets::TicketService;
pub use alert_sender::DiscordAlertSender;
pub use errors::BotError;
pub use guild::GuildAccess;

/// Data every command and event handler can reach through the framework.
pub struct Data {
    pub config: Arc<Config>,
    pub links: LinkService,
    pub guild: GuildAccess,
    pub state: Arc<BotState>,
    pub alerts: Arc<crate::alerts::AlertsState>,
    pub tickets: TicketService,
}

pub type Context<'a> = poise::Context<'a, Data, BotError>;

/// Returns the command tree that is registered with Discord.
pub fn commands() -> Vec<poise::Command<Data, BotError>> {
    vec![sms::sms(), alerts::alerts(), support::support()]
}

/// Builds the poise framework. `make_data` runs once, on the first READY, after the commands
/// are registered in the configured scope.
pub fn framework(
    config: Arc<Config>,
    make_data: impl FnOnce(&serenity::Context, &serenity::Ready) -> Data + Send + Sync + 'static,
) -> poise::Framework<Data, BotError> {
    let options = poise::FrameworkOptions {
        commands: commands(),
        on_error: |error| Box::pin(errors::on_error(error)),
        pre_command: |ctx| {
            Box::pin(async move {
                // Names only: command arguments can carry API keys.
                tracing::info!(
                    command = %ctx.command().qualified_name,
                    user_id = ctx.author().id.get(),
                    guild_id = ctx.guild_id().map(|id| id.get()),
                    channel_id = ctx.channel_id().get(),
                    interaction_id = ctx.id(),
                    "command started"
                );
                metrics::counter!("trackly_bot_commands_total", "command" => ctx.command().qualified_name.clone())
                    .increment(1);
                alerts::clear_dm_closed(ctx.data(), ctx.author().id.get()).await;
            })
        },
        post_command: |ctx| {
            Box::pin(async move {
                tracing::info!(
                    command = %ctx.command().qualified_name,
                    user_id = ctx.author().id.get(),
                    interaction_id = ctx.id(),
                    "command finished"
                );
            })
        },
        event_handler: |framework, event| Box::pin(handle_event(framework, event)),
        // Commands check links themselves; the cache-based guild check would need GUILD_CREATE.
        require_cache_for_guild_check: false,
        ..Default::default()
    };

    poise::Framework::builder()
        .options(options)
        // Owners are not used for any permission, so skip the extra request at start.
        .initialize_owners(false)
        .setup(move |ctx, ready, framework| {
            Box::pin(async move {
                let started = Instant::now();
                let commands = &framework.options().commands;
                match (config.discord.command_scope, config.guild.id) {
                    (CommandScope::Guild, Some(guild_id)) => {
                        poise::builtins::register_in_guild(
                            ctx,
                            commands,
                            serenity::GuildId::new(guild_id),
                        )
                        .await?;
                        tracing::info!(
                            guild_id,
                            count = commands.len(),
                            "commands registered in guild"
                        );
                        // Commands left from an earlier global registration would show twice.
                        let global = serenity::Command::get_global_commands(ctx).await?;
                        if !global.is_empty() {
                            serenity::Command::set_global_commands(ctx, Vec::new()).await?;
                            tracing::info!(count = global.len(), "stale global commands removed");
                        }
                    }
                    _ => {
                        poise::builtins::register_globally(ctx, commands).await?;
                        tracing::info!(count = commands.len(), "commands registered globally");
                        if let Some(guild_id) = config.guild.id.map(serenity::GuildId::new) {
                            let stale = guild_id.get_commands(ctx).await?;
                            if !stale.is_empty() {
                                guild_id.set_commands(ctx, Vec::new()).await?;
                                tracing::info!(count = stale.len(), "stale guild commands removed");
                            }
                        }
                    }
                }
                tracing::info!(
                    bot_user_id = ready.user.id.get(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "bot ready"
                );
                Ok(make_data(ctx, ready))
            })
        })
        .build()
}

async fn handle_event(
    framework: poise::FrameworkContext<'_, Data, BotError>,
    event: &serenity::FullEvent,
) -> Result<(), BotError> {
    let (ctx, data) = (framework.serenity_context, framework.user_data);
    match event {
        serenity::FullEvent::Ready { data_about_bot } => {
            data.state.set_gateway_connected(true);
            tracing::info!(session_id = %data_about_bot.session_id, "gateway ready");
        }
        serenity::FullEvent::Resume { .. } => {
            data.state.set_gateway_connected(true);
            tracing::info!("gateway session resumed");
        }
        serenity::FullEvent::ShardStageUpdate { event } => {
            let connected = matches!(event.new, serenity::ConnectionStage::Connected);
            data.state.set_gateway_connected(connected);
            tracing::info!(shard_id = event.shard_id.0, stage = %event.new, "shard stage changed");
        }
        serenity::FullEvent::InteractionCreate {
            interaction: serenity::Interaction::Modal(modal),
        } if modal.data.custom_id == link_modal::CUSTOM_ID => {
            link_modal::handle_submit(ctx, data, modal).await;
        }
        serenity::FullEvent::InteractionCreate {
            interaction: serenity::Interaction::Component(component),
        } if alerts::is_mute_button(&component.data.custom_id) => {
            alerts::handle_mute_button(ctx, data, component).await;
        }
        serenity::FullEvent::InteractionCreate {
            interaction: serenity::Interaction::Component(component),
        } if component
            .data
            .custom_id
            .starts_with(support::CUSTOM_ID_PREFIX) =>
        {
            support::handle_component(ctx, data, component).await;
        }
        _ => {}
    }
    Ok(())
}
