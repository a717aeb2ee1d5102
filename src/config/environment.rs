//! `TRACKLY_BOT_<SECTION>__<KEY>` environment overrides: which variables are read, which look
//! like a misspelled override, and a figment provider for each override that is read.

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider, Source};

use super::ENV_PREFIX;

/// The configuration's treatment of one environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum EnvVariable {
    /// An override of the setting at this dotted key, such as `guild.id`.
    Override(String),
    /// A `TRACKLY_BOT_*` name that looks like a misspelled override, with the problem to report.
    Misnamed(String),
    /// Not an override: another program's variable, a secret, or a Kubernetes Service variable.
    Ignored,
}

/// Classifies the variable `name` for the top-level `sections` of the configuration. The prefix is
/// matched without regard to case and the rest is lowercased, as figment's `Env` provider does.
/// A problem names the variable but never quotes its value, which could be a secret.
pub(super) fn read_env_variable(name: &str, sections: &[String]) -> EnvVariable {
    let name = name.trim();
    let Some(rest) = strip_prefix_ignore_case(name, ENV_PREFIX) else {
        return EnvVariable::Ignored;
    };
    let lowered = rest.to_ascii_lowercase();

    if let Some((section, _)) = lowered.split_once("__") {
        if sections.iter().any(|known| known == section) {
            let key = lowered.replace("__", ".");
            if key.split('.').any(str::is_empty) {
                return EnvVariable::Misnamed(format!(
                    "environment variable {name} has an empty key; name a setting as in {ENV_PREFIX}{}__ID, or unset it",
                    section.to_ascii_uppercase()
                ));
            }
            return EnvVariable::Override(key);
        }
        if is_kubernetes_service_variable(rest) {
            return EnvVariable::Ignored;
        }
        return EnvVariable::Misnamed(format!(
            "environment variable {name} names the unknown section `{section}`; the sections are {}, so fix the name or unset it",
            sections.join(", ")
        ));
    }

    // Kubernetes adds TRACKLY_BOT_PORT, TRACKLY_BOT_SERVICE_HOST and similar variables for a
    // Service named trackly-bot, and TRACKLY_BOT_HTTP_SERVICE_HOST for one named
    // trackly-bot-http, so these shapes are not reported.
    if is_kubernetes_service_variable(rest) {
        return EnvVariable::Ignored;
    }
    for section in sections {
        let Some(key) = lowered
            .strip_prefix(section.as_str())
            .and_then(|after| after.strip_prefix('_'))
        else {
            continue;
        };
        if key.is_empty() {
            continue;
        }
        let suggestion = format!(
            "{ENV_PREFIX}{}__{}",
            section.to_ascii_uppercase(),
            key.to_ascii_uppercase()
        );
        return EnvVariable::Misnamed(format!(
            "environment variable {name} is not read, because two underscores separate the section from the key; rename it to {suggestion}"
        ));
    }
    EnvVariable::Ignored
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// Returns whether `rest` (a variable name after `TRACKLY_BOT_`) has a shape that Kubernetes
/// uses for a Service: `…SERVICE_HOST`, `…SERVICE_PORT…`, `…PORT`, or
/// `…PORT_<number>_<TCP|UDP|SCTP>…`.
fn is_kubernetes_service_variable(rest: &str) -> bool {
    let upper = rest.to_ascii_uppercase();
    let words: Vec<&str> = upper.split('_').collect();
    let service_word = words
        .windows(2)
        .any(|pair| pair[0] == "SERVICE" && matches!(pair[1], "HOST" | "PORT"));
    let port_word = words.windows(3).any(|triple| {
        triple[0] == "PORT"
            && !triple[1].is_empty()
            && triple[1].bytes().all(|byte| byte.is_ascii_digit())
            && matches!(triple[2], "TCP" | "UDP" | "SCTP")
    });
    service_word || port_word || words.last() == Some(&"PORT")
}

/// One environment override as a figment provider of its own, so that an error in its value
/// names the variable (in the metadata's source).
pub(super) struct EnvOverride {
    pub variable: String,
    /// Dotted key of the setting, such as `guild.id`.
    pub key: String,
    pub value: String,
    /// Whether the value is taken as written, for a string setting such as
    /// `support.number_prefix`, whose value `2024` would otherwise become a number.
    pub keep_string: bool,
}

impl Provider for EnvOverride {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable").source(Source::Custom(self.variable.clone()))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        // Other values are parsed as figment's `Env` provider parses them: `42` is an integer,
        // `true` a boolean, and anything unparsable a string.
        let value = if self.keep_string {
            // A quoted value, as `"/data/bot.db"`, is read as a quoted string is, as before.
            match self.value.parse::<Value>() {
                Ok(parsed @ Value::String(..)) if self.value.trim_start().starts_with('"') => {
                    parsed
                }
                _ => Value::from(self.value.clone()),
            }
        } else {
            let Ok(value) = self.value.parse::<Value>();
            value
        };
        let dict = match figment::util::nest(&self.key, value) {
            Value::Dict(_, dict) => dict,
            _ => Dict::new(),
        };
        Ok(Profile::Default.collect(dict))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sections() -> Vec<String> {
        ["alerts", "database", "discord", "guild", "http", "linking"]
            .iter()
            .map(|section| section.to_string())
            .collect()
    }

    #[test]
    fn reads_overrides_of_known_sections() {
        let sections = sections();
        assert_eq!(
            read_env_variable("TRACKLY_BOT_GUILD__ID", &sections),
            EnvVariable::Override("guild.id".to_owned())
        );
        assert_eq!(
            read_env_variable("trackly_bot_database__busy_timeout_ms", &sections),
            EnvVariable::Override("database.busy_timeout_ms".to_owned())
        );
    }

    #[test]
    fn ignores_other_and_kubernetes_variables() {
        let sections = sections();
        for name in [
            "PATH",
            "DISCORD_TOKEN",
            "TRACKLY_BOT_ENCRYPTION_KEY",
            "TRACKLY_BOT_ENCRYPTION_KEY_ID",
            "TRACKLY_BOT_CONFIG",
            "TRACKLY_BOT_PORT",
            "TRACKLY_BOT_SERVICE_HOST",
            "TRACKLY_BOT_SERVICE_PORT",
            "TRACKLY_BOT_SERVICE_PORT_METRICS",
            "TRACKLY_BOT_PORT_9184_TCP",
            "TRACKLY_BOT_PORT_9184_TCP_ADDR",
            "TRACKLY_BOT_HTTP_SERVICE_HOST",
            "TRACKLY_BOT_HTTP_PORT_9184_TCP_PROTO",
            "TRACKLY_BOT_DATABASE_PORT",
        ] {
            assert_eq!(
                read_env_variable(name, &sections),
                EnvVariable::Ignored,
                "{name}"
            );
        }
    }

    #[test]
    fn reports_unknown_section() {
        let EnvVariable::Misnamed(problem) = read_env_variable("TRACKLY_BOT_GILD__ID", &sections())
        else {
            panic!("TRACKLY_BOT_GILD__ID was not reported");
        };
        assert!(problem.contains("TRACKLY_BOT_GILD__ID"), "{problem}");
        assert!(problem.contains("unknown section `gild`"), "{problem}");
        assert!(problem.contains("guild"), "{problem}");
    }

    #[test]
    fn reports_single_underscore_after_section() {
        let EnvVariable::Misnamed(problem) = read_env_variable("TRACKLY_BOT_GUILD_ID", &sections())
        else {
            panic!("TRACKLY_BOT_GUILD_ID was not reported");
        };
        assert!(
            problem.contains("TRACKLY_BOT_GUILD_ID is not read"),
            "{problem}"
        );
        assert!(
            problem.contains("rename it to TRACKLY_BOT_GUILD__ID"),
            "{problem}"
        );

        let EnvVariable::Misnamed(problem) =
            read_env_variable("TRACKLY_BOT_DATABASE_BUSY_TIMEOUT_MS", &sections())
        else {
            panic!("TRACKLY_BOT_DATABASE_BUSY_TIMEOUT_MS was not reported");
        };
        assert!(
            problem.contains("TRACKLY_BOT_DATABASE__BUSY_TIMEOUT_MS"),
            "{problem}"
        );
    }

    #[test]
    fn reports_empty_key() {
        let result = read_env_variable("TRACKLY_BOT_GUILD__", &sections());
        assert!(
            matches!(&result, EnvVariable::Misnamed(problem) if problem.contains("empty key")),
            "{result:?}"
        );
    }

    #[test]
    fn override_provider_nests_parsed_value() {
        let provider = EnvOverride {
            variable: "TRACKLY_BOT_GUILD__ID".to_owned(),
            key: "guild.id".to_owned(),
            value: "42".to_owned(),
            keep_string: false,
        };
        let data = provider.data().unwrap();
        let guild = data[&Profile::Default]["guild"].as_dict().unwrap();
        assert_eq!(guild["id"].to_u128(), Some(42));
        assert_eq!(
            provider.metadata().source,
            Some(Source::Custom("TRACKLY_BOT_GUILD__ID".to_owned()))
        );
    }

    fn string_value(value: &str) -> String {
        let provider = EnvOverride {
            variable: "TRACKLY_BOT_DATABASE__PATH".to_owned(),
            key: "database.path".to_owned(),
            value: value.to_owned(),
            keep_string: true,
        };
        let data = provider.data().unwrap();
        data[&Profile::Default]["database"].as_dict().unwrap()["path"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn string_settings_keep_numbers_and_drop_quotes() {
        assert_eq!(string_value("2024"), "2024");
        assert_eq!(string_value("/data/bot.db"), "/data/bot.db");
        assert_eq!(string_value("\"/data/bot.db\""), "/data/bot.db");
        assert_eq!(string_value("say \"hi\""), "say \"hi\"");
    }
}
