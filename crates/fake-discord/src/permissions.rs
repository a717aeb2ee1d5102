//! Discord permission bits and the computation of a member's permissions in a channel.

use serde_json::Value;

pub const CREATE_INSTANT_INVITE: u64 = 1 << 0;
pub const KICK_MEMBERS: u64 = 1 << 1;
pub const ADMINISTRATOR: u64 = 1 << 3;
pub const MANAGE_CHANNELS: u64 = 1 << 4;
pub const MANAGE_GUILD: u64 = 1 << 5;
pub const ADD_REACTIONS: u64 = 1 << 6;
pub const VIEW_CHANNEL: u64 = 1 << 10;
pub const SEND_MESSAGES: u64 = 1 << 11;
pub const MANAGE_MESSAGES: u64 = 1 << 13;
pub const EMBED_LINKS: u64 = 1 << 14;
pub const ATTACH_FILES: u64 = 1 << 15;
pub const READ_MESSAGE_HISTORY: u64 = 1 << 16;
pub const USE_EXTERNAL_EMOJIS: u64 = 1 << 18;
pub const CHANGE_NICKNAME: u64 = 1 << 26;
pub const MANAGE_ROLES: u64 = 1 << 28;
pub const USE_APPLICATION_COMMANDS: u64 = 1 << 31;
pub const MANAGE_THREADS: u64 = 1 << 34;
pub const CREATE_PUBLIC_THREADS: u64 = 1 << 35;
pub const CREATE_PRIVATE_THREADS: u64 = 1 << 36;
pub const SEND_MESSAGES_IN_THREADS: u64 = 1 << 38;
pub const MODERATE_MEMBERS: u64 = 1 << 40;

/// Every permission bit Discord defined up to bit 50.
pub const ALL: u64 = (1 << 51) - 1;

/// Permissions of the @everyone role in the fake guild.
pub const EVERYONE: u64 = CREATE_INSTANT_INVITE
    | ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_EXTERNAL_EMOJIS
    | CHANGE_NICKNAME
    | USE_APPLICATION_COMMANDS
    | CREATE_PUBLIC_THREADS
    | SEND_MESSAGES_IN_THREADS;

/// Permissions of the "Staff" role.
pub const STAFF: u64 = KICK_MEMBERS
    | MANAGE_CHANNELS
    | MANAGE_GUILD
    | MANAGE_MESSAGES
    | MANAGE_ROLES
    | MANAGE_THREADS
    | CREATE_PRIVATE_THREADS
    | MODERATE_MEMBERS;

/// Permissions the bot has, sent as `app_permissions` and given to the bot's managed role.
pub const BOT: u64 = EVERYONE
    | MANAGE_CHANNELS
    | MANAGE_MESSAGES
    | MANAGE_ROLES
    | MANAGE_THREADS
    | CREATE_PRIVATE_THREADS;

/// Reads a permission bitset that Discord sends as a decimal string (or, in requests, a number).
pub fn parse_bits(value: Option<&Value>) -> u64 {
    match value {
        Some(Value::String(text)) => text.parse().unwrap_or(0),
        Some(Value::Number(number)) => number.as_u64().unwrap_or(0),
        _ => 0,
    }
}

/// Computes a member's permissions in a channel the way Discord does: the @everyone role and
/// the member's roles give the base set, ADMINISTRATOR grants everything, then the channel's
/// overwrites apply in order @everyone, roles (deny before allow), member.
pub fn in_channel(
    everyone_role_id: u64,
    role_permissions: &[(u64, u64)],
    member_id: u64,
    member_roles: &[u64],
    overwrites: &[Value],
) -> u64 {
    let role_bits = |role_id: u64| {
        role_permissions
            .iter()
            .find(|(id, _)| *id == role_id)
            .map_or(0, |(_, bits)| *bits)
    };

    let mut permissions = role_bits(everyone_role_id);
    for role in member_roles {
        permissions |= role_bits(*role);
    }
    if permissions & ADMINISTRATOR != 0 {
        return ALL;
    }

    let overwrite_for = |id: u64| {
        overwrites.iter().find(|overwrite| {
            overwrite
                .get("id")
                .and_then(Value::as_str)
                .and_then(|text| text.parse::<u64>().ok())
                == Some(id)
        })
    };
    let apply = |permissions: u64, allow: u64, deny: u64| (permissions & !deny) | allow;
    let bits_of = |overwrite: &Value, key: &str| parse_bits(overwrite.get(key));

    if let Some(overwrite) = overwrite_for(everyone_role_id) {
        permissions = apply(
            permissions,
            bits_of(overwrite, "allow"),
            bits_of(overwrite, "deny"),
        );
    }

    let (mut role_allow, mut role_deny) = (0, 0);
    for role in member_roles {
        if let Some(overwrite) = overwrite_for(*role) {
            role_allow |= bits_of(overwrite, "allow");
            role_deny |= bits_of(overwrite, "deny");
        }
    }
    permissions = apply(permissions, role_allow, role_deny);

    if let Some(overwrite) = overwrite_for(member_id) {
        permissions = apply(
            permissions,
            bits_of(overwrite, "allow"),
            bits_of(overwrite, "deny"),
        );
    }
    permissions
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const EVERYONE_ROLE: u64 = 100;
    const STAFF_ROLE: u64 = 102;
    const MEMBER: u64 = 7;

    fn roles() -> Vec<(u64, u64)> {
        vec![(EVERYONE_ROLE, EVERYONE), (STAFF_ROLE, STAFF)]
    }

    #[test]
    fn in_channel_without_overwrites_unions_roles() {
        let bits = in_channel(EVERYONE_ROLE, &roles(), MEMBER, &[STAFF_ROLE], &[]);
        assert_eq!(bits, EVERYONE | STAFF);
    }

    #[test]
    fn in_channel_member_overwrite_beats_role_deny() {
        let overwrites = vec![
            json!({"id": "100", "type": 0, "allow": "0", "deny": VIEW_CHANNEL.to_string()}),
            json!({"id": "7", "type": 1, "allow": VIEW_CHANNEL.to_string(), "deny": "0"}),
        ];
        let member = in_channel(EVERYONE_ROLE, &roles(), MEMBER, &[], &overwrites);
        let other = in_channel(EVERYONE_ROLE, &roles(), 8, &[], &overwrites);

        assert_ne!(member & VIEW_CHANNEL, 0);
        assert_eq!(other & VIEW_CHANNEL, 0);
    }

    #[test]
    fn in_channel_administrator_ignores_overwrites() {
        let roles = vec![(EVERYONE_ROLE, 0), (STAFF_ROLE, ADMINISTRATOR)];
        let overwrites =
            vec![json!({"id": "102", "type": 0, "allow": "0", "deny": ALL.to_string()})];
        let bits = in_channel(EVERYONE_ROLE, &roles, MEMBER, &[STAFF_ROLE], &overwrites);
        assert_eq!(bits, ALL);
    }
}
