//! `/support` end to end: tickets as private threads, against the real bot binary, the fake
//! Discord and the Trackly simulator.

mod common;

use common::{final_text, test_key, user, Harness, Options};
use fake_discord::{ButtonClick, InteractionRecord, OptionValue, ScriptedError, SlashCommand};
use serde_json::Value;
use trackly_bot::storage::{Db, ReservationState};

const ALICE: u64 = 100_000_000_000_000_001;
const BOB: u64 = 100_000_000_000_000_002;
const CAROL: u64 = 100_000_000_000_000_003;
const STAFF: u64 = 100_000_000_000_000_004;
const STAFF_2: u64 = 100_000_000_000_000_005;

// poise registers choice options as integers: the index of the choice.
const PRIORITY_HIGH: i64 = 2;
const CATEGORY_TECHNICAL: i64 = 2;
const STATUS_CLOSED: i64 = 1;
const STATUS_ALL: i64 = 2;

fn string(value: &str) -> OptionValue {
    OptionValue::String(value.to_owned())
}

/// A harness with support configured: a support channel, a staff channel, a staff log channel
/// and the fake's "Staff" role. Alice is linked to Acme Promotions and Bob to Beta Bulk SMS.
struct Support {
    harness: Harness,
    support_channel: u64,
    staff_channel: u64,
    staff_log: u64,
    staff_role: u64,
}

impl Support {
    async fn start(max_open_per_user: u32) -> Support {
        let (mut support_channel, mut staff_channel, mut staff_log) = (0, 0, 0);
        let mut staff_role = 0;
        let harness = Harness::start_with_setup(Options::default(), |discord| {
            support_channel = discord.add_channel("support", 0, None);
            staff_channel = discord.add_channel("staff", 0, None);
            staff_log = discord.add_channel("staff-log", 0, None);
            staff_role = discord.config().staff_role_id();
            format!(
                "[support]\nchannel_id = {support_channel}\nstaff_channel_id = {staff_channel}\n\
                 staff_log_channel_id = {staff_log}\nstaff_role_id = {staff_role}\n\
                 number_prefix = \"T-\"\nnumber_start = 1000\nmax_open_per_user = {max_open_per_user}\n"
            )
        })
        .await;
        harness.link(ALICE, &test_key("AcmeOwner")).await;
        harness.link(BOB, &test_key("Beta")).await;
        for staff in [STAFF, STAFF_2] {
            harness
                .discord
                .add_member_role(user(staff), harness.discord.config().staff_role_id());
        }
        Support {
            harness,
            support_channel,
            staff_channel,
            staff_log,
            staff_role,
        }
    }

    fn command(
        &self,
        user_id: u64,
        channel_id: u64,
        subcommand: &str,
        options: Vec<(&str, OptionValue)>,
    ) -> SlashCommand {
        SlashCommand {
            user: user(user_id),
            guild_id: Some(self.harness.guild_id()),
            channel_id,
            name: "support".to_owned(),
            subcommand: Some(subcommand.to_owned()),
            options: options
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect(),
            member_roles: Vec::new(),
        }
    }

    /// Runs `/support <subcommand>` in `channel_id` and returns the interaction with its final reply.
    async fn run_in(
        &self,
        user_id: u64,
        channel_id: u64,
        subcommand: &str,
        options: Vec<(&str, OptionValue)>,
    ) -> InteractionRecord {
        let command = self.command(user_id, channel_id, subcommand, options);
        let sent = self
            .harness
            .discord
            .send_command(command)
            .await
            .expect("command sent");
        self.harness.wait_final(&sent).await
    }

    async fn run(
        &self,
        user_id: u64,
        subcommand: &str,
        options: Vec<(&str, OptionValue)>,
    ) -> InteractionRecord {
        self.run_in(user_id, self.harness.channel_id, subcommand, options)
            .await
    }

    /// Opens a ticket and returns its thread id, read from the link in the reply.
    async fn open(&self, user_id: u64, subject: &str) -> u64 {
        let record = self
            .run(user_id, "new", vec![("subject", string(subject))])
            .await;
        let text = final_text(&record);
        thread_from_link(&text)
            .unwrap_or_else(|| panic!("no thread link in the reply: {text}\n{}", self.log()))
    }

    async fn click(
        &self,
        user_id: u64,
        channel_id: u64,
        message_id: u64,
        custom_id: &str,
    ) -> InteractionRecord {
        let sent = self
            .harness
            .discord
            .send_button_click(ButtonClick {
                user: user(user_id),
                guild_id: Some(self.harness.guild_id()),
                channel_id,
                custom_id: custom_id.to_owned(),
                message_id,
            })
            .await
            .expect("button clicked");
        self.harness.wait_final(&sent).await
    }

    fn threads(&self) -> Vec<Value> {
        self.harness.discord.threads()
    }

    /// Returns the summary message of a ticket thread: the bot's first message, with buttons.
    fn summary(&self, thread_id: u64) -> Value {
        self.harness
            .discord
            .messages_in(thread_id)
            .into_iter()
            .find(|message| {
                message["components"]
                    .as_array()
                    .is_some_and(|c| !c.is_empty())
            })
            .unwrap_or_else(|| panic!("no summary in thread {thread_id}\n{}", self.log()))
    }

    fn staff_notifications(&self) -> Vec<Value> {
        self.harness.discord.messages_in(self.staff_channel)
    }

    fn log(&self) -> String {
        format!(
            "--- requests ---\n{}\n--- bot log ---\n{}",
            self.harness.discord.request_log(),
            self.harness.tail_logs()
        )
    }

    /// Waits up to five seconds for `condition`, for steps the bot takes after it replied.
    async fn eventually(&self, what: &str, condition: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !condition() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting until {what}\n{}",
                self.log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    async fn db(&self) -> Db {
        Db::open(
            &self.harness.db_path(),
            std::time::Duration::from_secs(5),
            1,
        )
        .await
        .expect("database opens")
    }
}

fn thread_from_link(text: &str) -> Option<u64> {
    let start = text.find("https://discord.com/channels/")?;
    let link = &text[start..];
    let end = link.find(|c: char| c.is_whitespace()).unwrap_or(link.len());
    link[..end].rsplit('/').next()?.parse().ok()
}

/// Returns "name: value" of each embed field of a message.
fn embed_fields(message: &Value) -> Vec<String> {
    message["embeds"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|embed| embed["fields"].as_array().cloned().unwrap_or_default())
        .map(|field| {
            format!(
                "{}: {}",
                field["name"].as_str().unwrap_or(""),
                field["value"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn message_id(message: &Value) -> u64 {
    message["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("message id")
}

/// Returns the position of the first request at or after `from` that `matches`.
fn request_position(
    requests: &[fake_discord::RecordedRequest],
    from: usize,
    matches: impl Fn(&fake_discord::RecordedRequest) -> bool,
) -> Option<usize> {
    requests
        .iter()
        .enumerate()
        .skip(from)
        .find(|(_, request)| matches(request))
        .map(|(index, _)| index)
}

/// Returns the custom ids of the buttons of a message.
fn button_ids(message: &Value) -> Vec<String> {
    message["components"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
        .filter_map(|button| button["custom_id"].as_str().map(str::to_owned))
        .collect()
}

fn archived(thread: &Value) -> (bool, bool) {
    (
        thread["thread_metadata"]["archived"] == true,
        thread["thread_metadata"]["locked"] == true,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_ticket_opens_private_thread() {
    let support = Support::start(3).await;
    let registered = support
        .harness
        .discord
        .registered_commands()
        .expect("commands");
    let subcommands: Vec<&str> = registered
        .command("support")
        .expect("support is registered")["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|option| option["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        subcommands,
        ["new", "list", "view", "close", "reopen", "claim"]
    );

    let record = support
        .run(
            ALICE,
            "new",
            vec![
                ("subject", string("Messages stuck in queue")),
                ("priority", OptionValue::Integer(PRIORITY_HIGH)),
                ("category", OptionValue::Integer(CATEGORY_TECHNICAL)),
            ],
        )
        .await;
    assert!(record.is_ephemeral(), "the reply must be ephemeral");
    assert!(record.all_followups_ephemeral());
    let text = final_text(&record);
    assert!(text.contains("T-1000"), "{text}");
    let thread_id = thread_from_link(&text).expect("the reply links the thread");

    let thread = support
        .harness
        .discord
        .channel(thread_id)
        .expect("thread exists");
    assert_eq!(thread["type"], 12, "a private thread");
    assert_eq!(thread["thread_metadata"]["invitable"], false);
    assert_eq!(thread["parent_id"], support.support_channel.to_string());
    assert!(
        thread["name"].as_str().unwrap().starts_with("T-1000"),
        "{thread}"
    );
    assert!(
        support
            .harness
            .discord
            .thread_members(thread_id)
            .contains(&ALICE),
        "the requester is a member of the thread"
    );

    let summary = support.summary(thread_id);
    let fields = embed_fields(&summary).join("\n");
    assert!(
        fields.contains("Acme Promotions (`acc_8f2k1q`)"),
        "{fields}"
    );
    let buttons: Vec<&str> = summary["components"][0]["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|button| button["label"].as_str().unwrap())
        .collect();
    assert_eq!(buttons, ["Close", "Claim"]);

    let notifications = support.staff_notifications();
    assert_eq!(notifications.len(), 1, "{}", support.log());
    let notification = &notifications[0];
    let content = notification["content"].as_str().unwrap();
    assert!(
        content.contains(&format!("<@&{}>", support.staff_role)),
        "{content}"
    );
    assert!(content.contains("T-1000"), "{content}");
    let embed_text = format!(
        "{}\n{}\n{}",
        notification["embeds"][0]["title"],
        notification["embeds"][0]["description"],
        embed_fields(notification).join("\n")
    );
    for expected in [
        "T-1000",
        "Messages stuck in queue",
        "Priority: high",
        "Category: technical",
        "Acme Promotions",
        "acc_8f2k1q",
        &format!(
            "https://discord.com/channels/{}/{thread_id}",
            support.harness.guild_id()
        ),
    ] {
        assert!(
            embed_text.contains(expected),
            "missing {expected:?} in {embed_text}"
        );
    }
    // The staff role must be pingable in the notification.
    let request = support
        .harness
        .discord
        .requests()
        .into_iter()
        .find(|request| {
            request.method == "POST"
                && request
                    .path
                    .ends_with(&format!("/channels/{}/messages", support.staff_channel))
        })
        .expect("staff notification request");
    let body = request.body.expect("notification body");
    assert_eq!(
        body["allowed_mentions"]["roles"][0],
        support.staff_role.to_string()
    );
    support.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_ticket_refusals_create_no_thread() {
    let support = Support::start(3).await;

    let unlinked = support
        .run(CAROL, "new", vec![("subject", string("Help"))])
        .await;
    let text = final_text(&unlinked);
    assert!(text.contains("not linked a Trackly account"), "{text}");
    assert!(unlinked.is_ephemeral());

    let empty = support
        .run(ALICE, "new", vec![("subject", string("   "))])
        .await;
    let text = final_text(&empty);
    assert!(text.contains("subject is empty"), "{text}");

    let long = support
        .run(ALICE, "new", vec![("subject", string(&"x".repeat(101)))])
        .await;
    let text = final_text(&long);
    assert!(text.contains("101 characters"), "{text}");
    assert!(text.contains("maximum is 100"), "{text}");
    assert!(
        support.threads().is_empty(),
        "a refused ticket created a thread"
    );

    for index in 0..3 {
        support.open(ALICE, &format!("Question {index}")).await;
    }
    assert_eq!(support.threads().len(), 3);
    let fourth = support
        .run(ALICE, "new", vec![("subject", string("One more"))])
        .await;
    let text = final_text(&fourth);
    assert!(text.contains("already have 3 open tickets"), "{text}");
    assert_eq!(
        support.threads().len(),
        3,
        "the fourth ticket created a thread"
    );
    assert_eq!(support.staff_notifications().len(), 3);

    // The limit is per requester.
    support.open(BOB, "Other account").await;
    assert_eq!(support.threads().len(), 4);
    support.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thread_refusal_leaves_no_ticket() {
    let support = Support::start(3).await;
    let threads_path = format!("/api/v10/channels/{}/threads", support.support_channel);
    support.harness.discord.script_error(
        ScriptedError::new(
            "POST",
            &threads_path,
            400,
            160006,
            "Maximum number of active threads reached",
        )
        .times(1),
    );

    let refused = support
        .run(ALICE, "new", vec![("subject", string("First try"))])
        .await;
    let text = final_text(&refused);
    assert!(text.contains("limit of active threads"), "{text}");
    assert!(support.threads().is_empty());
    let staff = support.staff_notifications();
    assert_eq!(staff.len(), 1, "staff are told: {}", support.log());
    let staff_text = staff[0]["content"].as_str().unwrap();
    assert!(staff_text.contains("T-1000 for"), "{staff_text}");
    assert!(staff_text.contains("160006"), "{staff_text}");
    assert!(
        staff_text.contains("Close or archive old ticket threads"),
        "{staff_text}"
    );

    let db = support.db().await;
    assert!(
        db.ticket(1000).await.unwrap().is_none(),
        "no ticket row after the refusal"
    );
    let reservation = db
        .ticket_reservation(1000)
        .await
        .unwrap()
        .expect("reservation kept");
    assert_eq!(reservation.state, ReservationState::Failed);

    let next = support
        .run(ALICE, "new", vec![("subject", string("Second try"))])
        .await;
    let text = final_text(&next);
    assert!(
        text.contains("T-1001"),
        "the next ticket gets the next number: {text}"
    );
    let ticket = db.ticket(1001).await.unwrap().expect("ticket stored");
    assert_eq!(ticket.subject, "Second try");

    support.harness.discord.script_error(
        ScriptedError::new("POST", &threads_path, 403, 50013, "Missing Permissions").times(1),
    );
    let refused = support
        .run(ALICE, "new", vec![("subject", string("Third try"))])
        .await;
    let text = final_text(&refused);
    assert!(text.contains("not set up correctly"), "{text}");
    let staff = support.staff_notifications();
    let last = staff.last().unwrap()["content"].as_str().unwrap();
    assert!(last.contains("Create Private Threads"), "{last}");
    assert!(db.ticket(1002).await.unwrap().is_none());

    support.harness.discord.script_error(
        ScriptedError::new("POST", &threads_path, 403, 50001, "Missing Access").times(1),
    );
    let refused = support
        .run(ALICE, "new", vec![("subject", string("Fourth try"))])
        .await;
    let text = final_text(&refused);
    assert!(text.contains("not set up correctly"), "{text}");
    let staff = support.staff_notifications();
    let last = staff.last().unwrap()["content"].as_str().unwrap();
    assert!(last.contains("View Channel"), "{last}");
    let reservation = db.ticket_reservation(1003).await.unwrap().unwrap();
    assert_eq!(reservation.state, ReservationState::Failed);
    assert!(db.ticket(1003).await.unwrap().is_none());
    assert_eq!(support.threads().len(), 1);
    db.close().await;
    support.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_scopes_and_pagination() {
    let support = Support::start(20).await;
    for index in 0..11 {
        support
            .open(ALICE, &format!("Alice question {index}"))
            .await;
    }
    support.open(BOB, "Bob question").await;

    let command = support.command(ALICE, support.harness.channel_id, "list", vec![]);
    let sent = support.harness.discord.send_command(command).await.unwrap();
    let record = support.harness.wait_final(&sent).await;
    assert!(record.is_ephemeral());
    let text = final_text(&record);
    assert!(text.contains("page 1 of 2 · 11 tickets"), "{text}");
    assert!(!text.contains("Bob question"), "{text}");
    assert!(text.contains("Alice question 10"), "newest first: {text}");
    assert!(!text.contains("Alice question 0 "), "{text}");
    let first_line = text
        .lines()
        .find(|line| line.contains("Alice question"))
        .unwrap();
    assert!(first_line.contains("T-1010"), "newest first: {first_line}");

    let list_message = support
        .harness
        .discord
        .interaction_messages(sent.id)
        .pop()
        .expect("the list message");
    let next_id = list_message["components"][0]["components"][1]["custom_id"]
        .as_str()
        .expect("a Next button")
        .to_owned();
    let page_two = support
        .click(
            ALICE,
            support.harness.channel_id,
            message_id(&list_message),
            &next_id,
        )
        .await;
    assert_eq!(
        page_two.first_callback_type(),
        Some(7),
        "the page replaces the message"
    );
    let text = final_text(&page_two);
    assert!(text.contains("page 2 of 2"), "{text}");
    assert!(text.contains("T-1000"), "{text}");
    assert!(!text.contains("T-1010"), "{text}");

    let staff = support
        .run(
            STAFF,
            "list",
            vec![("status", OptionValue::Integer(STATUS_ALL))],
        )
        .await;
    let text = final_text(&staff);
    assert!(
        text.contains("page 1 of 2 · 12 tickets"),
        "staff see all tickets: {text}"
    );
    assert!(text.contains("Bob question"), "{text}");
    assert!(
        !text.contains("`T-1000`"),
        "the oldest is on page 2: {text}"
    );
    let staff_list = support
        .harness
        .discord
        .interaction_messages(staff.id)
        .pop()
        .expect("the staff list message");
    let next_id = button_ids(&staff_list)
        .into_iter()
        .find(|id| id.starts_with("support:list:all:1"))
        .expect("a Next button to page 2");
    let staff_page_two = support
        .click(
            STAFF,
            support.harness.channel_id,
            message_id(&staff_list),
            &next_id,
        )
        .await;
    let text = final_text(&staff_page_two);
    assert!(text.contains("page 2 of 2 · 12 tickets"), "{text}");
    assert!(text.contains("`T-1000`"), "{text}");
    assert!(text.contains("`T-1001`"), "{text}");
    assert!(!text.contains("Bob question"), "{text}");

    let by_account = support
        .run(STAFF, "list", vec![("account", string("acc_b3t4"))])
        .await;
    let text = final_text(&by_account);
    assert!(text.contains("1 tickets"), "{text}");
    assert!(text.contains("Bob question"), "{text}");
    assert!(!text.contains("Alice question"), "{text}");

    // The account filter stays on every page.
    let alice_account = support
        .run(STAFF, "list", vec![("account", string("acc_8f2k1q"))])
        .await;
    let text = final_text(&alice_account);
    assert!(text.contains("page 1 of 2 · 11 tickets"), "{text}");
    let account_list = support
        .harness
        .discord
        .interaction_messages(alice_account.id)
        .pop()
        .expect("the account list message");
    let next_id = button_ids(&account_list)
        .into_iter()
        .find(|id| id.starts_with("support:list:open:1:"))
        .expect("a Next button to page 2");
    assert!(next_id.ends_with(":acc_8f2k1q"), "{next_id}");
    let account_page_two = support
        .click(
            STAFF,
            support.harness.channel_id,
            message_id(&account_list),
            &next_id,
        )
        .await;
    let text = final_text(&account_page_two);
    assert!(text.contains("page 2 of 2 · 11 tickets"), "{text}");
    assert!(text.contains("`T-1000`"), "{text}");
    assert!(!text.contains("Bob question"), "{text}");

    let refused = support
        .run(ALICE, "list", vec![("account", string("acc_b3t4"))])
        .await;
    let text = final_text(&refused);
    assert!(text.contains("Only support staff can filter"), "{text}");
    assert!(!text.contains("Bob question"), "{text}");
    support.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_sends_transcript_and_reopen_restores() {
    let support = Support::start(3).await;
    let thread_id = support.open(ALICE, "Delivery reports missing").await;
    support
        .harness
        .discord
        .post_user_message(
            thread_id,
            &user(ALICE),
            "Since yesterday no delivery reports arrive.",
            &[("report.csv".to_owned(), b"id,status\n1,unknown\n".to_vec())],
        )
        .unwrap();

    let closed = support
        .run_in(
            ALICE,
            thread_id,
            "close",
            vec![("reason", string("found the cause"))],
        )
        .await;
    let text = final_text(&closed);
    assert!(text.contains("T-1000** is closed"), "{text}");
    assert!(text.contains("posted to the staff log"), "{text}");
    assert!(text.contains("received the transcript by DM"), "{text}");

    let log_messages = support.harness.discord.messages_in(support.staff_log);
    assert_eq!(log_messages.len(), 1, "{}", support.log());
    let attachment = &log_messages[0]["attachments"][0];
    assert_eq!(attachment["filename"], "ticket-T-1000.txt");
    let attachment_id: u64 = attachment["id"].as_str().unwrap().parse().unwrap();
    let transcript = String::from_utf8(
        support
            .harness
            .discord
            .attachment_data(attachment_id)
            .unwrap(),
    )
    .unwrap();
    for expected in [
        "Ticket T-1000: Delivery reports missing",
        "Account: Acme Promotions (acc_8f2k1q)",
        "Close reason: found the cause",
        &format!("user{ALICE} ({ALICE}): Since yesterday no delivery reports arrive."),
        "[attachment] report.csv https://",
        "Ticket closed by",
    ] {
        assert!(
            transcript.contains(expected),
            "missing {expected:?} in\n{transcript}"
        );
    }
    let dms = support.harness.discord.dm_messages_to(ALICE);
    assert_eq!(dms.len(), 1, "{}", support.log());
    assert_eq!(dms[0]["attachments"][0]["filename"], "ticket-T-1000.txt");

    let thread = support.harness.discord.channel(thread_id).unwrap();
    assert_eq!(
        archived(&thread),
        (true, true),
        "closed threads are archived and locked"
    );
    let summary = support.summary(thread_id);
    assert!(embed_fields(&summary).contains(&"Status: closed".to_owned()));
    let notification = &support.staff_notifications()[0];
    assert!(embed_fields(notification).contains(&"Status: closed".to_owned()));

    let reopened = support
        .run(STAFF, "reopen", vec![("number", string("T-1000"))])
        .await;
    let text = final_text(&reopened);
    assert!(text.contains("open again"), "{text}");
    let thread = support.harness.discord.channel(thread_id).unwrap();
    assert_eq!(
        archived(&thread),
        (false, false),
        "reopening unarchives and unlocks"
    );

    // Closed by staff: only staff may reopen. The requester's DMs are closed this time.
    let dm_channel = support.harness.discord.dm_channel_id(ALICE);
    support.harness.discord.script_error(ScriptedError::new(
        "POST",
        format!("/api/v10/channels/{dm_channel}/messages"),
        403,
        50007,
        "Cannot send messages to this user",
    ));
    let closed = support
        .run(STAFF, "close", vec![("number", string("1000"))])
        .await;
    let text = final_text(&closed);
    assert!(text.contains("does not accept DMs"), "{text}");
    assert_eq!(
        support.harness.discord.messages_in(support.staff_log).len(),
        2
    );
    let refused = support
        .run(ALICE, "reopen", vec![("number", string("T-1000"))])
        .await;
    let text = final_text(&refused);
    assert!(text.contains("only staff can reopen"), "{text}");
    let thread = support.harness.discord.channel(thread_id).unwrap();
    assert_eq!(archived(&thread), (true, true));
    support.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_user_learns_nothing() {
    let support = Support::start(3).await;
    let thread_id = support.open(ALICE, "Private billing question").await;

    let missing = support
        .run(BOB, "view", vec![("number", string("T-9999"))])
        .await;
    let missing_text = final_text(&missing).replace("T-9999", "T-N");
    for subcommand in ["view", "close", "reopen"] {
        let record = support
            .run(BOB, subcommand, vec![("number", string("T-1000"))])
            .await;
        let text = final_text(&record);
        assert!(record.is_ephemeral());
        assert_eq!(
            text.replace("T-1000", "T-N"),
            missing_text,
            "{subcommand} must read like a missing ticket"
        );
        assert!(!text.contains("billing"), "{text}");
        assert!(!text.contains("Acme"), "{text}");
    }

    // Bob cannot see the private thread, so Discord would never deliver his click on its
    // buttons or a command from inside it. The fake rejects both, as Discord's client would.
    let summary = support.summary(thread_id);
    let click = support
        .harness
        .discord
        .send_button_click(ButtonClick {
            user: user(BOB),
            guild_id: Some(support.harness.guild_id()),
            channel_id: thread_id,
            custom_id: "support:close:1000".to_owned(),
            message_id: message_id(&summary),
        })
        .await;
    let error = click
        .expect_err("a click from outside the private thread")
        .to_string();
    assert!(error.contains("cannot see private thread"), "{error}");
    let command = support.command(BOB, thread_id, "close", vec![]);
    let refused = support.harness.discord.send_command(command).await;
    assert!(
        refused.is_err(),
        "a command from outside the private thread"
    );

    let thread = support.harness.discord.channel(thread_id).unwrap();
    assert_eq!(archived(&thread), (false, false), "the ticket is untouched");
    assert!(support
        .harness
        .discord
        .messages_in(support.staff_log)
        .is_empty());
    let view = support
        .run(ALICE, "view", vec![("number", string("T-1000"))])
        .await;
    let text = final_text(&view);
    assert!(text.contains("Status: open"), "{text}");
    support.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_updates_both_embeds() {
    let support = Support::start(3).await;
    let thread_id = support.open(ALICE, "Sender id rejected").await;

    let outside = support.run(STAFF, "claim", vec![]).await;
    let text = final_text(&outside);
    assert!(text.contains("not a ticket thread"), "{text}");

    let refused = support.run_in(ALICE, thread_id, "claim", vec![]).await;
    let text = final_text(&refused);
    assert!(text.contains("Only support staff can claim"), "{text}");

    let claimed = support.run_in(STAFF, thread_id, "claim", vec![]).await;
    let text = final_text(&claimed);
    assert!(text.contains("You now hold ticket **T-1000**"), "{text}");
    let claimed_by = format!("Claimed by: <@{STAFF}>");
    let summary = support.summary(thread_id);
    assert!(
        embed_fields(&summary).contains(&claimed_by),
        "{:?}",
        embed_fields(&summary)
    );
    let notification = &support.staff_notifications()[0];
    assert!(
        embed_fields(notification).contains(&claimed_by),
        "{:?}",
        embed_fields(notification)
    );

    // The requester can click the Claim button, but the claim is rejected.
    let requester_click = support
        .click(ALICE, thread_id, message_id(&summary), "support:claim:1000")
        .await;
    let text = final_text(&requester_click);
    assert!(text.contains("Only support staff can claim"), "{text}");
    let db = support.db().await;
    let stored = db.ticket(1000).await.unwrap().unwrap();
    assert_eq!(stored.claimant_id, Some(STAFF), "the claim is unchanged");

    // A second staff member clicking Claim is asked to confirm the takeover.
    let asked = support
        .click(
            STAFF_2,
            thread_id,
            message_id(&summary),
            "support:claim:1000",
        )
        .await;
    let text = final_text(&asked);
    assert!(text.contains(&format!("held by <@{STAFF}>")), "{text}");
    let confirmation = support
        .harness
        .discord
        .interaction_messages(asked.id)
        .pop()
        .expect("the confirmation message");
    let confirm_id = format!("support:claim-confirm:1000:{STAFF}");
    assert!(
        button_ids(&confirmation).contains(&confirm_id),
        "{:?}",
        button_ids(&confirmation)
    );
    let confirmed = support
        .click(STAFF_2, thread_id, message_id(&confirmation), &confirm_id)
        .await;
    assert_eq!(confirmed.first_callback_type(), Some(7), "{confirmed:?}");
    let text = final_text(&confirmed);
    assert!(text.contains("You now hold ticket **T-1000**"), "{text}");
    let confirmation_after = support
        .harness
        .discord
        .message(message_id(&confirmation))
        .unwrap();
    assert!(
        button_ids(&confirmation_after).is_empty(),
        "the confirmation loses its buttons: {confirmation_after}"
    );
    // The bot edits the embeds after it responds to the confirmation.
    let claimed_by = format!("Claimed by: <@{STAFF_2}>");
    support
        .eventually("the summary shows the new claimant", || {
            embed_fields(&support.summary(thread_id)).contains(&claimed_by)
                && embed_fields(&support.staff_notifications()[0]).contains(&claimed_by)
        })
        .await;
    db.close().await;
    support.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_archived_thread_is_unarchived() {
    let support = Support::start(3).await;
    let thread_id = support.open(ALICE, "Webhook retries").await;

    support
        .harness
        .discord
        .auto_archive_thread(thread_id)
        .unwrap();
    let claimed = support.run_in(STAFF, thread_id, "claim", vec![]).await;
    let text = final_text(&claimed);
    assert!(text.contains("You now hold ticket **T-1000**"), "{text}");
    let thread = support.harness.discord.channel(thread_id).unwrap();
    assert_eq!(archived(&thread), (false, false), "{}", support.log());
    let summary = support.summary(thread_id);
    assert!(embed_fields(&summary).contains(&format!("Claimed by: <@{STAFF}>")));

    // Viewing and a claim that changes nothing leave an archived thread archived.
    support
        .harness
        .discord
        .auto_archive_thread(thread_id)
        .unwrap();
    let view = support
        .run(ALICE, "view", vec![("number", string("T-1000"))])
        .await;
    assert!(
        final_text(&view).contains("Status: open"),
        "{}",
        final_text(&view)
    );
    let again = support.run_in(STAFF, thread_id, "claim", vec![]).await;
    assert!(
        final_text(&again).contains("You already hold"),
        "{}",
        final_text(&again)
    );
    let thread = support.harness.discord.channel(thread_id).unwrap();
    assert_eq!(
        archived(&thread),
        (true, false),
        "view and a no-op claim unarchived the thread"
    );

    let before_close = support.harness.discord.requests().len();
    let closed = support
        .run(ALICE, "close", vec![("number", string("T-1000"))])
        .await;
    let text = final_text(&closed);
    assert!(text.contains("is closed"), "{text}");
    assert!(text.contains("posted to the staff log"), "{text}");
    let thread = support.harness.discord.channel(thread_id).unwrap();
    assert_eq!(archived(&thread), (true, true));

    let requests = support.harness.discord.requests();
    let thread_path = format!("/api/v10/channels/{thread_id}");
    let body_flag = |request: &fake_discord::RecordedRequest, key: &str, value: bool| {
        request.body.as_ref().is_some_and(|body| body[key] == value)
    };
    let unarchive = request_position(&requests, before_close, |request| {
        request.method == "PATCH"
            && request.path == thread_path
            && body_flag(request, "archived", false)
    })
    .unwrap_or_else(|| panic!("no unarchive request\n{}", support.log()));
    let closing_note = request_position(&requests, before_close, |request| {
        request.method == "POST" && request.path == format!("{thread_path}/messages")
    })
    .expect("the closing note");
    let summary_id = message_id(&support.summary(thread_id));
    let summary_edit = request_position(&requests, before_close, |request| {
        request.method == "PATCH" && request.path == format!("{thread_path}/messages/{summary_id}")
    })
    .expect("the summary edit");
    let archive = request_position(&requests, before_close, |request| {
        request.method == "PATCH"
            && request.path == thread_path
            && body_flag(request, "archived", true)
    })
    .expect("the archive request");
    assert!(unarchive < closing_note, "unarchive after the closing note");
    assert!(unarchive < summary_edit, "unarchive after the summary edit");
    assert!(summary_edit < archive, "archived before the summary edit");
    let summary = support.summary(thread_id);
    assert!(
        embed_fields(&summary).contains(&"Status: closed".to_owned()),
        "{:?}",
        embed_fields(&summary)
    );
    support.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfigured_support_says_so() {
    let harness = Harness::start().await;
    let command = SlashCommand {
        user: user(ALICE),
        guild_id: Some(harness.guild_id()),
        channel_id: harness.channel_id,
        name: "support".to_owned(),
        subcommand: Some("new".to_owned()),
        options: vec![("subject".to_owned(), string("Help"))],
        member_roles: Vec::new(),
    };
    let sent = harness.discord.send_command(command).await.unwrap();
    let record = harness.wait_final(&sent).await;
    let text = final_text(&record);
    assert!(text.contains("not configured"), "{text}");
    assert!(text.contains("[support]"), "{text}");
    assert!(harness.discord.threads().is_empty());
    harness.finish().await;
}

/// Returns the text of the transcript file posted to the staff log in message `index`.
fn staff_log_transcript(support: &Support, index: usize) -> String {
    let log_messages = support.harness.discord.messages_in(support.staff_log);
    let attachment = &log_messages[index]["attachments"][0];
    let attachment_id: u64 = attachment["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no transcript attached: {}", log_messages[index]));
    let data = support
        .harness
        .discord
        .attachment_data(attachment_id)
        .expect("transcript data");
    String::from_utf8(data).expect("a UTF-8 transcript")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcript_reads_past_100_messages() {
    let support = Support::start(3).await;
    let thread_id = support.open(ALICE, "Long conversation").await;
    for index in 0..230 {
        support
            .harness
            .discord
            .post_user_message(thread_id, &user(ALICE), &format!("msg-{index:03}"), &[])
            .unwrap();
    }

    let closed = support.run_in(ALICE, thread_id, "close", vec![]).await;
    let text = final_text(&closed);
    assert!(text.contains("posted to the staff log"), "{text}");
    let transcript = staff_log_transcript(&support, 0);

    let mut previous = 0;
    for index in 0..230 {
        let needle = format!("): msg-{index:03}\n");
        let position = transcript
            .find(&needle)
            .unwrap_or_else(|| panic!("missing msg-{index:03} in\n{transcript}"));
        assert!(position > previous, "msg-{index:03} is out of order");
        previous = position;
    }
    // Every message of the thread is counted: the summary, 230 user messages and the note
    // that the ticket was closed.
    let in_thread = support.harness.discord.messages_in(thread_id).len();
    assert_eq!(in_thread, 232);
    assert!(
        transcript.contains(&format!("Messages: {in_thread}\n")),
        "{}",
        transcript.lines().take(10).collect::<Vec<_>>().join("\n")
    );
    let history_requests = support
        .harness
        .discord
        .requests()
        .into_iter()
        .filter(|request| {
            request.method == "GET"
                && request.path == format!("/api/v10/channels/{thread_id}/messages")
        })
        .count();
    assert_eq!(history_requests, 3, "230 messages take three pages of 100");
    support.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_thread_still_closes() {
    let support = Support::start(1).await;
    let thread_id = support.open(ALICE, "Thread will vanish").await;
    support.harness.discord.delete_thread(thread_id).unwrap();

    let view = support
        .run(ALICE, "view", vec![("number", string("T-1000"))])
        .await;
    let text = final_text(&view);
    assert!(text.contains("Status: open"), "{text}");

    let closed = support
        .run(ALICE, "close", vec![("number", string("T-1000"))])
        .await;
    let text = final_text(&closed);
    assert!(text.contains("T-1000** is closed"), "{text}");
    assert!(text.contains("was deleted"), "{text}");
    let db = support.db().await;
    let ticket = db.ticket(1000).await.unwrap().unwrap();
    assert_eq!(ticket.status, trackly_bot::tickets::TicketStatus::Closed);
    let log_messages = support.harness.discord.messages_in(support.staff_log);
    assert_eq!(log_messages.len(), 1, "{}", support.log());
    let note = log_messages[0]["content"].as_str().unwrap();
    assert!(note.contains("T-1000"), "{note}");
    assert!(note.contains("no transcript"), "{note}");
    let notification = &support.staff_notifications()[0];
    assert!(embed_fields(notification).contains(&"Status: closed".to_owned()));

    // With the limit of one, the requester can open a new ticket again.
    let next = support
        .run(ALICE, "new", vec![("subject", string("Need a new one"))])
        .await;
    let text = final_text(&next);
    assert!(text.contains("T-1001"), "{text}");

    // A ticket without a thread cannot be reopened, and stays closed.
    let reopened = support
        .run(STAFF, "reopen", vec![("number", string("T-1000"))])
        .await;
    let text = final_text(&reopened);
    assert!(text.contains("thread was deleted"), "{text}");
    let ticket = db.ticket(1000).await.unwrap().unwrap();
    assert_eq!(ticket.status, trackly_bot::tickets::TicketStatus::Closed);
    db.close().await;
    support.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_claims_have_one_winner() {
    let support = Support::start(3).await;
    let db = support.db().await;
    for index in 0..3 {
        support.open(ALICE, &format!("Race {index}")).await;
    }
    for number in 1000..1003u64 {
        let ticket = db.ticket(number).await.unwrap().unwrap();
        let mut sent = Vec::new();
        for staff in [STAFF, STAFF_2] {
            let click = ButtonClick {
                user: user(staff),
                guild_id: Some(support.harness.guild_id()),
                channel_id: ticket.thread_id,
                custom_id: format!("support:claim:{number}"),
                message_id: ticket.summary_message_id,
            };
            sent.push((
                staff,
                support
                    .harness
                    .discord
                    .send_button_click(click)
                    .await
                    .unwrap(),
            ));
        }
        let mut winners = Vec::new();
        let mut texts = Vec::new();
        for (staff, reference) in &sent {
            let text = final_text(&support.harness.wait_final(reference).await);
            if text.contains("You now hold") {
                winners.push(*staff);
            }
            texts.push(text);
        }
        assert_eq!(winners.len(), 1, "exactly one claim wins: {texts:?}");
        let winner = winners[0];
        let loser_text = texts
            .iter()
            .find(|text| !text.contains("You now hold"))
            .unwrap();
        assert!(
            loser_text.contains(&format!("held by <@{winner}>")),
            "{loser_text}"
        );
        let stored = db.ticket(number).await.unwrap().unwrap();
        assert_eq!(stored.claimant_id, Some(winner));
    }
    db.close().await;
    support.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_takeover_changes_nothing() {
    const STAFF_3: u64 = 100_000_000_000_000_006;
    let support = Support::start(3).await;
    support
        .harness
        .discord
        .add_member_role(user(STAFF_3), support.staff_role);
    let thread_id = support.open(ALICE, "Claim race").await;
    let summary_id = message_id(&support.summary(thread_id));
    support.run_in(STAFF, thread_id, "claim", vec![]).await;

    // Staff 2 is asked to confirm a takeover from Staff, and waits.
    let asked_2 = support
        .click(STAFF_2, thread_id, summary_id, "support:claim:1000")
        .await;
    let confirmation_2 = support
        .harness
        .discord
        .interaction_messages(asked_2.id)
        .pop()
        .unwrap();
    // Staff 3 takes the ticket over meanwhile.
    let asked_3 = support
        .click(STAFF_3, thread_id, summary_id, "support:claim:1000")
        .await;
    let confirmation_3 = support
        .harness
        .discord
        .interaction_messages(asked_3.id)
        .pop()
        .unwrap();
    let confirm_id = format!("support:claim-confirm:1000:{STAFF}");
    assert!(confirm_id.len() <= 100);
    let taken = support
        .click(STAFF_3, thread_id, message_id(&confirmation_3), &confirm_id)
        .await;
    assert!(
        final_text(&taken).contains("You now hold"),
        "{}",
        final_text(&taken)
    );

    // Staff 2's confirmation still names Staff as the holder, so it must not take the ticket.
    let stale = support
        .click(STAFF_2, thread_id, message_id(&confirmation_2), &confirm_id)
        .await;
    assert_eq!(stale.first_callback_type(), Some(7));
    let text = final_text(&stale);
    assert!(text.contains("was not changed"), "{text}");
    assert!(
        text.contains(&format!("now held by <@{STAFF_3}>")),
        "{text}"
    );
    let confirmation_after = support
        .harness
        .discord
        .message(message_id(&confirmation_2))
        .unwrap();
    assert!(
        button_ids(&confirmation_after).is_empty(),
        "{confirmation_after}"
    );
    let db = support.db().await;
    let stored = db.ticket(1000).await.unwrap().unwrap();
    assert_eq!(stored.claimant_id, Some(STAFF_3));
    db.close().await;
    support.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_respects_open_limit() {
    let support = Support::start(1).await;
    let first_thread = support.open(ALICE, "First").await;
    let closed = support.run_in(ALICE, first_thread, "close", vec![]).await;
    assert!(final_text(&closed).contains("is closed"));
    support.open(ALICE, "Second").await;

    let refused = support
        .run(ALICE, "reopen", vec![("number", string("T-1000"))])
        .await;
    let text = final_text(&refused);
    assert!(text.contains("already have 1 open tickets"), "{text}");
    let db = support.db().await;
    let ticket = db.ticket(1000).await.unwrap().unwrap();
    assert_eq!(ticket.status, trackly_bot::tickets::TicketStatus::Closed);
    let thread = support.harness.discord.channel(first_thread).unwrap();
    assert_eq!(archived(&thread), (true, true), "the thread stays closed");

    let by_staff = support
        .run(STAFF, "reopen", vec![("number", string("T-1000"))])
        .await;
    let text = final_text(&by_staff);
    assert!(text.contains("open again"), "{text}");
    assert!(
        text.contains("2 open tickets, more than the limit of 1"),
        "{text}"
    );
    let ticket = db.ticket(1000).await.unwrap().unwrap();
    assert_eq!(ticket.status, trackly_bot::tickets::TicketStatus::Open);
    db.close().await;
    support.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requester_reopens_own_ticket() {
    let support = Support::start(3).await;
    let thread_id = support.open(ALICE, "Reopen me").await;
    // Discord refuses the first unarchive: the ticket must stay closed, not half reopened.
    support.run_in(ALICE, thread_id, "close", vec![]).await;
    support.harness.discord.script_error(
        ScriptedError::new(
            "PATCH",
            format!("/api/v10/channels/{thread_id}"),
            403,
            50013,
            "Missing Permissions",
        )
        .times(1),
    );
    let failed = support
        .run(ALICE, "reopen", vec![("number", string("T-1000"))])
        .await;
    let text = final_text(&failed);
    assert!(text.contains("T-1000 stays closed"), "{text}");
    assert!(text.contains("Manage Threads"), "{text}");
    let db = support.db().await;
    let ticket = db.ticket(1000).await.unwrap().unwrap();
    assert_eq!(ticket.status, trackly_bot::tickets::TicketStatus::Closed);
    let thread = support.harness.discord.channel(thread_id).unwrap();
    assert_eq!(archived(&thread), (true, true));

    let reopened = support
        .run(ALICE, "reopen", vec![("number", string("T-1000"))])
        .await;
    let text = final_text(&reopened);
    assert!(text.contains("T-1000** is open again"), "{text}");
    let thread = support.harness.discord.channel(thread_id).unwrap();
    assert_eq!(archived(&thread), (false, false));
    let ticket = db.ticket(1000).await.unwrap().unwrap();
    assert_eq!(ticket.status, trackly_bot::tickets::TicketStatus::Open);
    let summary = support.summary(thread_id);
    assert!(embed_fields(&summary).contains(&"Status: open".to_owned()));
    let notes: Vec<String> = support
        .harness
        .discord
        .messages_in(thread_id)
        .iter()
        .filter_map(|message| message["content"].as_str().map(str::to_owned))
        .collect();
    assert!(
        notes
            .iter()
            .any(|note| note.contains(&format!("reopened by <@{ALICE}>"))),
        "{notes:?}"
    );
    db.close().await;
    support.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_after_thread_creation_leave_no_ticket() {
    let support = Support::start(10).await;
    let db = support.db().await;
    let cases = [
        (
            ScriptedError::new(
                "PUT",
                "/api/v10/channels/*/thread-members/*",
                403,
                50001,
                "Missing Access",
            ),
            "adding the requester",
        ),
        (
            ScriptedError::new(
                "POST",
                "/api/v10/channels/*/messages",
                403,
                50013,
                "Missing Permissions",
            ),
            "posting the ticket summary",
        ),
        (
            ScriptedError::new(
                "POST",
                format!("/api/v10/channels/{}/messages", support.staff_channel),
                403,
                50001,
                "Missing Access",
            ),
            "notifying staff",
        ),
    ];
    for (number, (error, step)) in (1000u64..).zip(cases) {
        support.harness.discord.script_error(error.times(1));
        let refused = support
            .run(ALICE, "new", vec![("subject", string("Refused"))])
            .await;
        let text = final_text(&refused);
        assert!(text.contains("not set up correctly"), "{step}: {text}");
        assert!(
            support.threads().is_empty(),
            "{step}: the thread is deleted"
        );
        assert!(
            db.ticket(number).await.unwrap().is_none(),
            "{step}: no ticket row"
        );
        let reservation = db.ticket_reservation(number).await.unwrap().unwrap();
        assert_eq!(reservation.state, ReservationState::Failed, "{step}");
        assert!(
            support
                .staff_notifications()
                .iter()
                .all(|message| message["embeds"]
                    .as_array()
                    .is_none_or(|embeds| embeds.is_empty())),
            "{step}: no ticket notification is left"
        );

        // Staff get a notice of what to fix: in the staff channel, or in the staff log when
        // the staff channel itself rejected the notification.
        let notices: Vec<Value> = support
            .staff_notifications()
            .into_iter()
            .chain(support.harness.discord.messages_in(support.staff_log))
            .collect();
        let notice = notices
            .iter()
            .filter_map(|message| message["content"].as_str())
            .find(|content| content.contains(&format!("T-{number} for")))
            .unwrap_or_else(|| panic!("{step}: no staff notice\n{}", support.log()));
        assert!(notice.contains(step), "{notice}");
    }
    let staff_log_notice = support.harness.discord.messages_in(support.staff_log);
    assert_eq!(
        staff_log_notice.len(),
        1,
        "the staff-channel refusal goes to the log"
    );

    let next = support.open(ALICE, "Works again").await;
    assert!(db.ticket(1003).await.unwrap().is_some());
    assert_eq!(support.threads().len(), 1);
    assert!(support.harness.discord.channel(next).is_some());
    db.close().await;
    support.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_texts_fit_discord_limits() {
    let support = Support::start(20).await;
    let db = support.db().await;
    let account_name = format!("[Acme](https://evil.example) **{}**", "N".repeat(1100));
    sqlx::query("UPDATE links SET account_name = ? WHERE discord_user_id = ?")
        .bind(&account_name)
        .bind(ALICE as i64)
        .execute(db.pool())
        .await
        .unwrap();
    let subject = format!("[pay here](https://evil.example) `x` {}", "é".repeat(60));
    assert!(subject.chars().count() <= 100);
    for _ in 0..12 {
        support.open(ALICE, &subject).await;
    }
    assert_eq!(support.threads().len(), 12, "{}", support.log());

    let notification = &support.staff_notifications()[0];
    let description = notification["embeds"][0]["description"].as_str().unwrap();
    assert!(!description.contains("[pay here](https"), "{description}");
    assert!(description.contains("\\[pay here\\]"), "{description}");
    for field in notification["embeds"][0]["fields"].as_array().unwrap() {
        let value = field["value"].as_str().unwrap();
        assert!(value.chars().count() <= 1024, "{field}");
        assert!(
            !value.contains("[Acme](https"),
            "a masked link renders: {value}"
        );
    }

    let list = support.run(STAFF, "list", vec![]).await;
    let message = support
        .harness
        .discord
        .interaction_messages(list.id)
        .pop()
        .expect("the staff list");
    let description = message["embeds"][0]["description"].as_str().unwrap();
    assert!(description.chars().count() <= 4096, "{}", description.len());
    assert_eq!(
        description
            .lines()
            .filter(|line| line.starts_with("`T-"))
            .count(),
        10,
        "all ten tickets of the page are shown"
    );
    assert!(!description.contains("[Acme](https"), "{description}");
    let next_id = button_ids(&message)
        .into_iter()
        .find(|id| id.starts_with("support:list:open:1"))
        .expect("a Next button");
    let page_two = support
        .click(
            STAFF,
            support.harness.channel_id,
            message_id(&message),
            &next_id,
        )
        .await;
    assert!(
        final_text(&page_two).contains("page 2 of 2"),
        "{}",
        final_text(&page_two)
    );

    let closed = support
        .run(
            ALICE,
            "close",
            vec![
                ("number", string("T-1000")),
                ("reason", string("[done](https://x.example)")),
            ],
        )
        .await;
    assert!(
        final_text(&closed).contains("posted to the staff log"),
        "{}",
        final_text(&closed)
    );
    let view = support
        .run(STAFF, "view", vec![("number", string("T-1000"))])
        .await;
    let text = final_text(&view);
    assert!(text.contains("Close reason: \\[done\\]"), "{text}");
    db.close().await;
    support.harness.finish().await;
}

/// Returns the text of the first file attached to `message`.
fn attached_text(support: &Support, message: &Value) -> String {
    let attachment_id: u64 = message["attachments"][0]["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no file attached: {message}"));
    let data = support
        .harness
        .discord
        .attachment_data(attachment_id)
        .expect("attachment data");
    String::from_utf8(data).expect("a UTF-8 attachment")
}

/// Returns whether each button of a message is disabled, in order.
fn buttons_disabled(message: &Value) -> Vec<bool> {
    message["components"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
        .map(|button| button["disabled"] == true)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_button_by_requester() {
    let support = Support::start(3).await;
    let thread_id = support.open(ALICE, "Invoices show the wrong VAT").await;
    support
        .harness
        .discord
        .post_user_message(
            thread_id,
            &user(ALICE),
            "The March invoice uses 19 % instead of 7 %.",
            &[],
        )
        .unwrap();
    let summary = support.summary(thread_id);
    let close_id = "support:close:1000";
    assert!(
        button_ids(&summary).contains(&close_id.to_owned()),
        "{:?}",
        button_ids(&summary)
    );

    let clicked = support
        .click(ALICE, thread_id, message_id(&summary), close_id)
        .await;
    assert!(clicked.is_ephemeral(), "the reply must be ephemeral");
    assert!(clicked.all_followups_ephemeral());
    let text = final_text(&clicked);
    assert!(text.contains("Ticket **T-1000** is closed"), "{text}");
    assert!(text.contains("posted to the staff log"), "{text}");
    assert!(text.contains("received the transcript by DM"), "{text}");

    let log_messages = support.harness.discord.messages_in(support.staff_log);
    assert_eq!(log_messages.len(), 1, "{}", support.log());
    assert_eq!(
        log_messages[0]["attachments"][0]["filename"],
        "ticket-T-1000.txt"
    );
    let log_content = log_messages[0]["content"].as_str().unwrap();
    assert!(
        log_content.contains(&format!("closed by <@{ALICE}>")),
        "{log_content}"
    );
    let transcript = attached_text(&support, &log_messages[0]);
    for expected in [
        "Ticket T-1000: Invoices show the wrong VAT",
        &format!("by user id {ALICE}\n"),
        &format!("user{ALICE} ({ALICE}): The March invoice uses 19 % instead of 7 %."),
        &format!("Ticket closed by <@{ALICE}>."),
    ] {
        assert!(
            transcript.contains(expected),
            "missing {expected:?} in\n{transcript}"
        );
    }

    let dms = support.harness.discord.dm_messages_to(ALICE);
    assert_eq!(dms.len(), 1, "{}", support.log());
    assert_eq!(dms[0]["attachments"][0]["filename"], "ticket-T-1000.txt");
    assert_eq!(
        attached_text(&support, &dms[0]),
        transcript,
        "the DM carries the staff log's transcript"
    );

    let thread = support.harness.discord.channel(thread_id).unwrap();
    assert_eq!(
        archived(&thread),
        (true, true),
        "the thread is archived and locked"
    );
    let summary = support.summary(thread_id);
    assert!(
        embed_fields(&summary).contains(&"Status: closed".to_owned()),
        "{:?}",
        embed_fields(&summary)
    );
    assert_eq!(
        buttons_disabled(&summary),
        [true, true],
        "Close and Claim are disabled: {summary}"
    );

    let db = support.db().await;
    let ticket = db.ticket(1000).await.unwrap().unwrap();
    assert_eq!(ticket.status, trackly_bot::tickets::TicketStatus::Closed);
    assert_eq!(ticket.closed_by_id, Some(ALICE));
    assert!(!ticket.closed_by_staff);
    assert!(ticket.closed_at.is_some());
    let view = support
        .run(ALICE, "view", vec![("number", string("T-1000"))])
        .await;
    let text = final_text(&view);
    assert!(text.contains("Status: closed"), "{text}");
    db.close().await;
    support.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_button_by_staff() {
    let support = Support::start(3).await;
    let thread_id = support.open(ALICE, "Short code not delivered").await;
    assert!(
        !support
            .harness
            .discord
            .thread_members(thread_id)
            .contains(&STAFF),
        "staff reach the thread through their role, not as members"
    );
    let summary = support.summary(thread_id);

    let clicked = support
        .click(STAFF, thread_id, message_id(&summary), "support:close:1000")
        .await;
    assert!(clicked.is_ephemeral(), "the reply must be ephemeral");
    let text = final_text(&clicked);
    assert!(text.contains("Ticket **T-1000** is closed"), "{text}");
    assert!(text.contains("posted to the staff log"), "{text}");
    assert!(text.contains("received the transcript by DM"), "{text}");

    let log_messages = support.harness.discord.messages_in(support.staff_log);
    assert_eq!(log_messages.len(), 1, "{}", support.log());
    let transcript = attached_text(&support, &log_messages[0]);
    assert!(
        transcript.contains(&format!("by user id {STAFF}\n")),
        "{transcript}"
    );
    assert!(
        transcript.contains(&format!("Ticket closed by <@{STAFF}>.")),
        "{transcript}"
    );
    let dms = support.harness.discord.dm_messages_to(ALICE);
    assert_eq!(dms.len(), 1, "the requester gets the transcript");
    assert_eq!(attached_text(&support, &dms[0]), transcript);
    assert!(
        support.harness.discord.dm_messages_to(STAFF).is_empty(),
        "the staff member who closed gets no DM"
    );

    let thread = support.harness.discord.channel(thread_id).unwrap();
    assert_eq!(archived(&thread), (true, true));
    let db = support.db().await;
    let ticket = db.ticket(1000).await.unwrap().unwrap();
    assert_eq!(ticket.status, trackly_bot::tickets::TicketStatus::Closed);
    assert_eq!(ticket.closed_by_id, Some(STAFF));
    assert!(ticket.closed_by_staff);

    // Closed by staff, so the requester may not reopen it.
    let rejected = support
        .run(ALICE, "reopen", vec![("number", string("T-1000"))])
        .await;
    let text = final_text(&rejected);
    assert!(text.contains("only staff can reopen"), "{text}");
    let ticket = db.ticket(1000).await.unwrap().unwrap();
    assert_eq!(ticket.status, trackly_bot::tickets::TicketStatus::Closed);
    db.close().await;
    support.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_and_reopen_inside_thread() {
    let support = Support::start(3).await;
    let first_thread = support.open(ALICE, "First question").await;
    let second_thread = support.open(ALICE, "Second question").await;

    // Each thread resolves to its own ticket, not to the requester's latest one.
    for (thread_id, label, subject, other) in [
        (first_thread, "T-1000", "First question", "Second question"),
        (second_thread, "T-1001", "Second question", "First question"),
    ] {
        let view = support.run_in(ALICE, thread_id, "view", vec![]).await;
        assert!(view.is_ephemeral());
        let text = final_text(&view);
        assert!(
            text.contains(&format!("Ticket {label}: {subject}")),
            "{text}"
        );
        assert!(text.contains("Status: open"), "{text}");
        assert!(!text.contains(other), "{text}");
    }
    let staff_view = support.run_in(STAFF, second_thread, "view", vec![]).await;
    let text = final_text(&staff_view);
    assert!(text.contains("Ticket T-1001: Second question"), "{text}");

    let outside = support.run(ALICE, "view", vec![]).await;
    let text = final_text(&outside);
    assert!(text.contains("not a ticket thread"), "{text}");
    assert!(!text.contains("question"), "{text}");

    for thread_id in [first_thread, second_thread] {
        let closed = support.run_in(ALICE, thread_id, "close", vec![]).await;
        assert!(
            final_text(&closed).contains("is closed"),
            "{}",
            final_text(&closed)
        );
    }

    let reopened = support.run_in(STAFF, second_thread, "reopen", vec![]).await;
    let text = final_text(&reopened);
    assert!(text.contains("Ticket **T-1001** is open again"), "{text}");
    let thread = support.harness.discord.channel(second_thread).unwrap();
    assert_eq!(
        archived(&thread),
        (false, false),
        "reopening unarchives and unlocks"
    );
    let thread = support.harness.discord.channel(first_thread).unwrap();
    assert_eq!(
        archived(&thread),
        (true, true),
        "the other ticket's thread stays closed"
    );
    let db = support.db().await;
    let second = db.ticket(1001).await.unwrap().unwrap();
    assert_eq!(second.status, trackly_bot::tickets::TicketStatus::Open);
    let first = db.ticket(1000).await.unwrap().unwrap();
    assert_eq!(first.status, trackly_bot::tickets::TicketStatus::Closed);

    let view = support.run_in(ALICE, second_thread, "view", vec![]).await;
    let text = final_text(&view);
    assert!(text.contains("Ticket T-1001"), "{text}");
    assert!(text.contains("Status: open"), "{text}");
    let view = support.run_in(STAFF, first_thread, "view", vec![]).await;
    let text = final_text(&view);
    assert!(text.contains("Ticket T-1000"), "{text}");
    assert!(text.contains("Status: closed"), "{text}");
    db.close().await;
    support.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_cancel_changes_nothing() {
    let support = Support::start(3).await;
    let thread_id = support.open(ALICE, "Number porting stalled").await;
    let claimed = support.run_in(STAFF, thread_id, "claim", vec![]).await;
    assert!(
        final_text(&claimed).contains("You now hold"),
        "{}",
        final_text(&claimed)
    );
    let summary = support.summary(thread_id);
    let notification = support.staff_notifications()[0].clone();
    let claimed_by = format!("Claimed by: <@{STAFF}>");
    assert!(embed_fields(&summary).contains(&claimed_by));
    assert!(embed_fields(&notification).contains(&claimed_by));

    let claim_click = support
        .click(
            STAFF_2,
            thread_id,
            message_id(&summary),
            "support:claim:1000",
        )
        .await;
    let text = final_text(&claim_click);
    assert!(text.contains(&format!("held by <@{STAFF}>")), "{text}");
    let confirmation = support
        .harness
        .discord
        .interaction_messages(claim_click.id)
        .pop()
        .expect("the confirmation message");
    let cancel_id = "support:claim-cancel:1000";
    assert!(
        button_ids(&confirmation).contains(&cancel_id.to_owned()),
        "{:?}",
        button_ids(&confirmation)
    );
    let thread_messages = support.harness.discord.messages_in(thread_id).len();
    let requests_before = support.harness.discord.requests().len();

    let cancelled = support
        .click(STAFF_2, thread_id, message_id(&confirmation), cancel_id)
        .await;
    assert_eq!(
        cancelled.first_callback_type(),
        Some(7),
        "the confirmation is replaced"
    );
    let text = final_text(&cancelled);
    assert!(
        text.contains("T-1000 was left with its current holder"),
        "{text}"
    );
    assert!(!text.contains("You now hold"), "{text}");
    let confirmation_after = support
        .harness
        .discord
        .message(message_id(&confirmation))
        .unwrap();
    assert!(
        button_ids(&confirmation_after).is_empty(),
        "the confirmation loses its buttons: {confirmation_after}"
    );
    let take_over = support
        .harness
        .discord
        .send_button_click(ButtonClick {
            user: user(STAFF_2),
            guild_id: Some(support.harness.guild_id()),
            channel_id: thread_id,
            custom_id: format!("support:claim-confirm:1000:{STAFF}"),
            message_id: message_id(&confirmation),
        })
        .await;
    assert!(
        take_over.is_err(),
        "Take over is gone after Cancel: {take_over:?}"
    );

    let db = support.db().await;
    let stored = db.ticket(1000).await.unwrap().unwrap();
    assert_eq!(stored.claimant_id, Some(STAFF), "the claimant is unchanged");

    // A takeover edits the embeds after it responds, so wait before checking that Cancel
    // changed nothing.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(
        support.summary(thread_id)["embeds"],
        summary["embeds"],
        "the summary embed changed"
    );
    assert_eq!(
        support.staff_notifications()[0]["embeds"],
        notification["embeds"],
        "the staff notification changed"
    );
    assert_eq!(
        support.harness.discord.messages_in(thread_id).len(),
        thread_messages,
        "no takeover note in the thread"
    );
    let requests = support.harness.discord.requests();
    let message_edit = request_position(&requests, requests_before, |request| {
        request.method == "PATCH" && request.path.contains("/messages/")
    });
    assert!(
        message_edit.is_none(),
        "Cancel edited a message: {:?}",
        message_edit.map(|index| &requests[index].path)
    );
    db.close().await;
    support.harness.finish().await;
}

/// Returns the label and status of each ticket line of a `/support list` reply, in order.
fn listed_tickets(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|line| line.starts_with("`T-"))
        .map(|line| {
            let mut parts = line.split(" · ");
            let label = parts.next().unwrap_or("").trim_matches('`').to_owned();
            let status = parts.next().unwrap_or("").to_owned();
            (label, status)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_closed_filter_scopes() {
    let support = Support::start(3).await;
    support.open(ALICE, "Alice first").await;
    support.open(ALICE, "Alice second").await;
    support.open(BOB, "Bob first").await;
    for (user_id, number) in [(ALICE, "T-1000"), (BOB, "T-1002")] {
        let closed = support
            .run(user_id, "close", vec![("number", string(number))])
            .await;
        assert!(
            final_text(&closed).contains("is closed"),
            "{}",
            final_text(&closed)
        );
    }
    let closed_filter = || vec![("status", OptionValue::Integer(STATUS_CLOSED))];
    let row = |label: &str| (label.to_owned(), "closed".to_owned());

    let alice = support.run(ALICE, "list", closed_filter()).await;
    assert!(alice.is_ephemeral());
    let text = final_text(&alice);
    assert!(
        text.contains("Tickets (closed) of you · page 1 of 1 · 1 tickets"),
        "{text}"
    );
    assert_eq!(listed_tickets(&text), [row("T-1000")], "{text}");
    assert!(text.contains("Alice first"), "{text}");
    assert!(!text.contains("Bob first"), "{text}");

    let bob = support.run(BOB, "list", closed_filter()).await;
    let text = final_text(&bob);
    assert_eq!(listed_tickets(&text), [row("T-1002")], "{text}");
    assert!(!text.contains("Alice"), "{text}");

    // The default filter still shows open tickets only.
    let alice_open = support.run(ALICE, "list", vec![]).await;
    let text = final_text(&alice_open);
    assert_eq!(
        listed_tickets(&text),
        [("T-1001".to_owned(), "open".to_owned())],
        "{text}"
    );

    let staff = support.run(STAFF, "list", closed_filter()).await;
    let text = final_text(&staff);
    assert!(
        text.contains("Tickets (closed) of all users · page 1 of 1 · 2 tickets"),
        "{text}"
    );
    assert_eq!(
        listed_tickets(&text),
        [row("T-1002"), row("T-1000")],
        "staff see every closed ticket, newest first: {text}"
    );

    let nobody = support.run(CAROL, "list", closed_filter()).await;
    let text = final_text(&nobody);
    assert!(text.contains("0 tickets"), "{text}");
    assert!(text.contains("No tickets match."), "{text}");
    assert!(listed_tickets(&text).is_empty(), "{text}");
    support.harness.finish().await;
}
