//! Queries for support tickets, their number counter and number reservations.

use chrono::{DateTime, Duration, Utc};
use sqlx::Row;

use super::{from_millis, snowflake_from_db, snowflake_to_db, to_millis, Db};
use crate::tickets::{Category, Priority, Ticket, TicketStatus};

/// The result of asking for a ticket number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    Granted {
        number: u64,
    },
    /// The requester already has `open` open tickets (pending creations included).
    LimitReached {
        open: u32,
    },
}

/// The result of reopening a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReopenResult {
    /// `open_after` is the requester's open tickets after the reopen, pending creations included.
    Reopened { open_after: u32 },
    /// The ticket does not exist or is not closed.
    NotClosed,
    /// Staff closed it, so only staff may reopen it.
    ClosedByStaff,
    /// The requester already has `open` open tickets (pending creations included).
    LimitReached { open: u32 },
}

/// State of a reserved ticket number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationState {
    Pending,
    Created,
    Failed,
}

impl ReservationState {
    fn parse(text: &str) -> Result<ReservationState, sqlx::Error> {
        match text {
            "pending" => Ok(ReservationState::Pending),
            "created" => Ok(ReservationState::Created),
            "failed" => Ok(ReservationState::Failed),
            other => Err(sqlx::Error::Decode(
                format!("unknown reservation state {other:?}").into(),
            )),
        }
    }
}

/// A reserved number with its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationRecord {
    pub number: u64,
    pub requester_id: u64,
    pub state: ReservationState,
    pub failure: Option<String>,
}

/// A ticket whose thread and summary message Discord accepted.
pub struct NewTicket<'a> {
    pub number: u64,
    pub requester_id: u64,
    pub account_id: &'a str,
    pub account_name: &'a str,
    pub subject: &'a str,
    pub priority: Priority,
    pub category: Category,
    pub thread_id: u64,
    pub summary_message_id: u64,
    /// The staff notification as channel and message id; `None` when posting it failed.
    pub staff_message: Option<(u64, u64)>,
    pub now: DateTime<Utc>,
}

/// Which tickets a listing contains. `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TicketFilter {
    pub requester_id: Option<u64>,
    pub account_id: Option<String>,
    pub status: Option<TicketStatus>,
}

/// How long a pending reservation counts against the open-ticket limit. A creation takes a few
/// seconds; a reservation left pending by a crash stops counting after this.
const PENDING_RESERVATION_TTL_MINUTES: i64 = 10;

const TICKET_COLUMNS: &str = "number, requester_id, account_id, account_name, subject, priority, \
     category, status, claimant_id, thread_id, summary_message_id, staff_channel_id, \
     staff_message_id, close_reason, closed_by_id, closed_by_staff, created_at_ms, \
     updated_at_ms, closed_at_ms";

fn decode_error(what: &str, value: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unknown ticket {what} {value:?}").into())
}

fn ticket_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Ticket, sqlx::Error> {
    let priority: String = row.try_get("priority")?;
    let category: String = row.try_get("category")?;
    let status: String = row.try_get("status")?;
    let optional_id = |column: &str| -> Result<Option<u64>, sqlx::Error> {
        Ok(row
            .try_get::<Option<i64>, _>(column)?
            .map(snowflake_from_db))
    };
    Ok(Ticket {
        number: row.try_get::<i64, _>("number")? as u64,
        requester_id: snowflake_from_db(row.try_get("requester_id")?),
        account_id: row.try_get("account_id")?,
        account_name: row.try_get("account_name")?,
        subject: row.try_get("subject")?,
        priority: Priority::parse(&priority).ok_or_else(|| decode_error("priority", &priority))?,
        category: Category::parse(&category).ok_or_else(|| decode_error("category", &category))?,
        status: TicketStatus::parse(&status).ok_or_else(|| decode_error("status", &status))?,
        claimant_id: optional_id("claimant_id")?,
        thread_id: snowflake_from_db(row.try_get("thread_id")?),
        summary_message_id: snowflake_from_db(row.try_get("summary_message_id")?),
        staff_channel_id: optional_id("staff_channel_id")?,
        staff_message_id: optional_id("staff_message_id")?,
        close_reason: row.try_get("close_reason")?,
        closed_by_id: optional_id("closed_by_id")?,
        closed_by_staff: row.try_get::<i64, _>("closed_by_staff")? == 1,
        created_at: from_millis(row.try_get("created_at_ms")?),
        updated_at: from_millis(row.try_get("updated_at_ms")?),
        closed_at: row
            .try_get::<Option<i64>, _>("closed_at_ms")?
            .map(from_millis),
    })
}

impl Db {
    /// Reserves the next ticket number for `requester_id`, unless they already have
    /// `max_open` open tickets or creations in progress. Numbers start at `number_start` and
    /// only grow. One immediate transaction, so parallel requests cannot pass the limit or
    /// share a number.
    pub async fn reserve_ticket_number(
        &self,
        requester_id: u64,
        number_start: u64,
        max_open: u32,
        now: DateTime<Utc>,
    ) -> Result<Reservation, sqlx::Error> {
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let requester = snowflake_to_db(requester_id);
        let in_use = count_open_and_pending(&mut tx, requester, now).await?;
        if in_use >= max_open {
            tx.rollback().await?;
            return Ok(Reservation::LimitReached { open: in_use });
        }

        let start = number_start as i64;
        let next: Option<i64> =
            sqlx::query_scalar("SELECT next_number FROM ticket_counter WHERE id = 1")
                .fetch_optional(&mut *tx)
                .await?;
        // A raised `number_start` moves the sequence forward; a lowered one never moves it back.
        let number = next.unwrap_or(start).max(start);
        sqlx::query(
            "INSERT INTO ticket_counter (id, next_number) VALUES (1, ?) \
             ON CONFLICT (id) DO UPDATE SET next_number = excluded.next_number",
        )
        .bind(number + 1)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO ticket_reservations (number, requester_id, state, reserved_at_ms) \
             VALUES (?, ?, 'pending', ?)",
        )
        .bind(number)
        .bind(requester)
        .bind(to_millis(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Reservation::Granted {
            number: number as u64,
        })
    }

    /// Counts the requester's open tickets and the creations still pending for them, as the
    /// open-ticket limit counts them.
    pub async fn open_ticket_count(
        &self,
        requester_id: u64,
        now: DateTime<Utc>,
    ) -> Result<u32, sqlx::Error> {
        let mut connection = self.pool().acquire().await?;
        count_open_and_pending(&mut connection, snowflake_to_db(requester_id), now).await
    }

    /// Marks a reservation failed with the reason; its number is never handed out again.
    pub async fn fail_ticket_reservation(
        &self,
        number: u64,
        failure: &str,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE ticket_reservations SET state = 'failed', failure = ?, resolved_at_ms = ? \
             WHERE number = ? AND state = 'pending'",
        )
        .bind(failure)
        .bind(to_millis(now))
        .bind(number as i64)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn ticket_reservation(
        &self,
        number: u64,
    ) -> Result<Option<ReservationRecord>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT number, requester_id, state, failure FROM ticket_reservations WHERE number = ?",
        )
        .bind(number as i64)
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| {
            let state: String = row.try_get("state")?;
            Ok(ReservationRecord {
                number: row.try_get::<i64, _>("number")? as u64,
                requester_id: snowflake_from_db(row.try_get("requester_id")?),
                state: ReservationState::parse(&state)?,
                failure: row.try_get("failure")?,
            })
        })
        .transpose()
    }

    /// Inserts the ticket and marks its reservation created, in one transaction.
    pub async fn insert_ticket(&self, new: &NewTicket<'_>) -> Result<Ticket, sqlx::Error> {
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let now = to_millis(new.now);
        sqlx::query(
            "INSERT INTO tickets (number, requester_id, account_id, account_name, subject, \
             priority, category, status, thread_id, summary_message_id, staff_channel_id, \
             staff_message_id, created_at_ms, updated_at_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?)",
        )
        .bind(new.number as i64)
        .bind(snowflake_to_db(new.requester_id))
        .bind(new.account_id)
        .bind(new.account_name)
        .bind(new.subject)
        .bind(new.priority.as_str())
        .bind(new.category.as_str())
        .bind(snowflake_to_db(new.thread_id))
        .bind(snowflake_to_db(new.summary_message_id))
        .bind(
            new.staff_message
                .map(|(channel, _)| snowflake_to_db(channel)),
        )
        .bind(
            new.staff_message
                .map(|(_, message)| snowflake_to_db(message)),
        )
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE ticket_reservations SET state = 'created', resolved_at_ms = ? WHERE number = ?",
        )
        .bind(now)
        .bind(new.number as i64)
        .execute(&mut *tx)
        .await?;
        let sql = format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE number = ?");
        let row = sqlx::query(&sql)
            .bind(new.number as i64)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        ticket_from_row(&row)
    }

    pub async fn ticket(&self, number: u64) -> Result<Option<Ticket>, sqlx::Error> {
        let sql = format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE number = ?");
        sqlx::query(&sql)
            .bind(number as i64)
            .fetch_optional(self.pool())
            .await?
            .map(|row| ticket_from_row(&row))
            .transpose()
    }

    pub async fn ticket_by_thread(&self, thread_id: u64) -> Result<Option<Ticket>, sqlx::Error> {
        let sql = format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE thread_id = ?");
        sqlx::query(&sql)
            .bind(snowflake_to_db(thread_id))
            .fetch_optional(self.pool())
            .await?
            .map(|row| ticket_from_row(&row))
            .transpose()
    }

    /// Returns one page of tickets, newest first, and the number of tickets the filter matches.
    pub async fn list_tickets(
        &self,
        filter: &TicketFilter,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<Ticket>, u32), sqlx::Error> {
        let mut conditions = Vec::new();
        if filter.requester_id.is_some() {
            conditions.push("requester_id = ?");
        }
        if filter.account_id.is_some() {
            conditions.push("account_id = ?");
        }
        if filter.status.is_some() {
            conditions.push("status = ?");
        }
        let clause = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };

        let count_sql = format!("SELECT COUNT(*) FROM tickets {clause}");
        let page_sql = format!(
            "SELECT {TICKET_COLUMNS} FROM tickets {clause} \
             ORDER BY created_at_ms DESC, number DESC LIMIT ? OFFSET ?"
        );
        let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
        let mut page = sqlx::query(&page_sql);
        if let Some(requester_id) = filter.requester_id {
            count = count.bind(snowflake_to_db(requester_id));
            page = page.bind(snowflake_to_db(requester_id));
        }
        if let Some(account_id) = &filter.account_id {
            count = count.bind(account_id.clone());
            page = page.bind(account_id.clone());
        }
        if let Some(status) = filter.status {
            count = count.bind(status.as_str());
            page = page.bind(status.as_str());
        }
        let total = count.fetch_one(self.pool()).await?;
        let rows = page
            .bind(i64::from(limit))
            .bind(i64::from(offset))
            .fetch_all(self.pool())
            .await?;
        let tickets = rows
            .iter()
            .map(ticket_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((tickets, total.max(0) as u32))
    }

    /// Closes an open ticket; returns `false` when it was not open.
    pub async fn close_ticket(
        &self,
        number: u64,
        closed_by_id: u64,
        closed_by_staff: bool,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, sqlx::Error> {
        let result = sqlx::query(
            "UPDATE tickets SET status = 'closed', close_reason = ?, closed_by_id = ?, \
             closed_by_staff = ?, closed_at_ms = ?, updated_at_ms = ? \
             WHERE number = ? AND status = 'open'",
        )
        .bind(reason)
        .bind(snowflake_to_db(closed_by_id))
        .bind(i64::from(closed_by_staff))
        .bind(to_millis(now))
        .bind(to_millis(now))
        .bind(number as i64)
        .execute(self.pool())
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Reopens a closed ticket in one immediate transaction. The update is conditional in SQL:
    /// the ticket must still be closed, and unless `actor_is_staff`, it must not have been
    /// closed by staff and the requester must have fewer than `max_open` open tickets (pending
    /// creations included). Staff may reopen beyond the limit.
    pub async fn reopen_ticket(
        &self,
        number: u64,
        actor_is_staff: bool,
        max_open: u32,
        now: DateTime<Utc>,
    ) -> Result<ReopenResult, sqlx::Error> {
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let row: Option<(i64, String, i64)> = sqlx::query_as(
            "SELECT requester_id, status, closed_by_staff FROM tickets WHERE number = ?",
        )
        .bind(number as i64)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((requester, status, closed_by_staff)) = row else {
            tx.rollback().await?;
            return Ok(ReopenResult::NotClosed);
        };
        if status != "closed" {
            tx.rollback().await?;
            return Ok(ReopenResult::NotClosed);
        }
        if closed_by_staff == 1 && !actor_is_staff {
            tx.rollback().await?;
            return Ok(ReopenResult::ClosedByStaff);
        }
        let open = count_open_and_pending(&mut tx, requester, now).await?;
        if open >= max_open && !actor_is_staff {
            tx.rollback().await?;
            return Ok(ReopenResult::LimitReached { open });
        }

        let result = sqlx::query(
            "UPDATE tickets SET status = 'open', close_reason = NULL, closed_by_id = NULL, \
             closed_by_staff = 0, closed_at_ms = NULL, updated_at_ms = ? \
             WHERE number = ? AND status = 'closed' AND (? OR closed_by_staff = 0)",
        )
        .bind(to_millis(now))
        .bind(number as i64)
        .bind(actor_is_staff)
        .execute(&mut *tx)
        .await?;
        if result.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(ReopenResult::NotClosed);
        }
        tx.commit().await?;
        Ok(ReopenResult::Reopened {
            open_after: open + 1,
        })
    }

    /// Sets the claimant of an open ticket only when its current claimant is still `expected`
    /// (`None`: unclaimed). Returns whether the row changed, so that of two staff members
    /// claiming at once exactly one succeeds.
    pub async fn claim_ticket(
        &self,
        number: u64,
        claimant_id: u64,
        expected: Option<u64>,
        now: DateTime<Utc>,
    ) -> Result<bool, sqlx::Error> {
        let result = sqlx::query(
            "UPDATE tickets SET claimant_id = ?, updated_at_ms = ? \
             WHERE number = ? AND status = 'open' AND claimant_id IS ?",
        )
        .bind(snowflake_to_db(claimant_id))
        .bind(to_millis(now))
        .bind(number as i64)
        .bind(expected.map(snowflake_to_db))
        .execute(self.pool())
        .await?;
        Ok(result.rows_affected() == 1)
    }
}

/// Counts the requester's open tickets and the creations still pending for them.
async fn count_open_and_pending(
    tx: &mut sqlx::SqliteConnection,
    requester: i64,
    now: DateTime<Utc>,
) -> Result<u32, sqlx::Error> {
    let open: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM tickets WHERE requester_id = ? AND status = 'open'",
    )
    .bind(requester)
    .fetch_one(&mut *tx)
    .await?;
    let pending_since = now - Duration::minutes(PENDING_RESERVATION_TTL_MINUTES);
    let pending: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM ticket_reservations \
         WHERE requester_id = ? AND state = 'pending' AND reserved_at_ms >= ?",
    )
    .bind(requester)
    .bind(to_millis(pending_since))
    .fetch_one(&mut *tx)
    .await?;
    Ok((open + pending).max(0) as u32)
}
