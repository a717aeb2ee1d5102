//! Ticket operations over the database: numbering, the open-ticket limit, lookups with access
//! checks, close, reopen, claim and listing.

use chrono::{DateTime, Utc};

use super::{check_access, Action, Actor, Category, Denied, Priority, Ticket, TicketStatus};
use crate::config::SupportConfig;
use crate::storage::tickets::ReopenResult;
use crate::storage::{Db, NewTicket, Reservation, TicketFilter};

/// Tickets per page of `/support list`.
pub const PAGE_SIZE: u32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum TicketError {
    #[error("ticket limit reached: {max} open tickets")]
    LimitReached { max: u32 },
    /// No ticket, or one the user may not see; both read the same to the user.
    #[error("ticket not found")]
    NotFound { label: String },
    #[error("this channel is not a ticket thread")]
    NotATicketThread,
    #[error("ticket action denied: {denied:?}")]
    Denied { denied: Denied, label: String },
    #[error("only staff may filter tickets by account")]
    AccountFilterStaffOnly,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl TicketError {
    /// Returns the message for the user, or `None` for an internal failure.
    pub fn user_message(&self) -> Option<String> {
        let text = match self {
            TicketError::LimitReached { max } => format!(
                "You already have {max} open tickets, the maximum. Close one you no longer need \
                 with `/support close`, or add to an open one in its thread."
            ),
            TicketError::NotFound { label } => format!(
                "No ticket {label} was found among the tickets you can see. Check the number with `/support list`."
            ),
            TicketError::NotATicketThread => {
                "This channel is not a ticket thread. Give the ticket number, such as `number: T-1042`, \
                 or run the command inside the ticket's thread."
                    .to_owned()
            }
            TicketError::Denied { denied, label } => match denied {
                Denied::Hidden => format!(
                    "No ticket {label} was found among the tickets you can see. Check the number with `/support list`."
                ),
                Denied::StaffOnly => {
                    format!("Only support staff can claim tickets, so {label} was not changed.")
                }
                Denied::ClosedByStaff => format!(
                    "Ticket {label} was closed by support staff, so only staff can reopen it. \
                     Open a new ticket with `/support new` if you still need help."
                ),
                Denied::AlreadyClosed => format!("Ticket {label} is already closed."),
                Denied::AlreadyOpen => format!("Ticket {label} is already open."),
            },
            TicketError::AccountFilterStaffOnly => {
                "Only support staff can filter tickets by account. Run `/support list` without `account` to see your own tickets."
                    .to_owned()
            }
            TicketError::Database(_) => return None,
        };
        Some(text)
    }
}

/// The ticket a command acts on: by number, or the ticket of a thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketLocator {
    Number(u64),
    Thread(u64),
}

/// The fields of a new ticket from `/support new`, after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTicketRequest {
    pub requester_id: u64,
    pub account_id: String,
    pub account_name: String,
    pub subject: String,
    pub priority: Priority,
    pub category: Category,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    Claimed {
        ticket: Box<Ticket>,
        previous: Option<u64>,
    },
    AlreadyYours,
    /// Another staff member has claimed the ticket, so the actor must confirm taking it over.
    NeedsConfirmation {
        holder: u64,
    },
    /// A takeover was confirmed from `expected`, but the claimant changed to `holder` after the
    /// confirmation was offered, so nothing was written.
    HolderChanged {
        expected: u64,
        holder: Option<u64>,
    },
}

/// The claimant a claim expects to replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimIntent {
    /// A plain claim: it takes an unclaimed ticket and requests confirmation before taking
    /// over a claimed one.
    Claim,
    /// A confirmed takeover from this claimant, as shown when the confirmation was offered.
    TakeOverFrom(u64),
}

/// A reopened ticket and whether the requester is now above the open-ticket limit, which
/// only a staff reopen can cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reopened {
    pub ticket: Ticket,
    /// The requester's open tickets after the reopen, when that exceeds the limit.
    pub over_limit: Option<u32>,
}

/// One page of a ticket listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketPage {
    pub tickets: Vec<Ticket>,
    pub total: u32,
    /// Zero-based page index, clamped to the last page.
    pub page: u32,
    pub pages: u32,
}

#[derive(Clone)]
pub struct TicketService {
    db: Db,
    config: SupportConfig,
}

impl TicketService {
    pub fn new(db: Db, config: SupportConfig) -> TicketService {
        TicketService { db, config }
    }

    pub fn config(&self) -> &SupportConfig {
        &self.config
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Returns a number as users see it, such as `T-1042`.
    pub fn label(&self, number: u64) -> String {
        format!("{}{number}", self.config.number_prefix)
    }

    /// Reserves a number for a new ticket, enforcing the open-ticket limit.
    pub async fn reserve(&self, requester_id: u64, now: DateTime<Utc>) -> Result<u64, TicketError> {
        let max = self.config.max_open_per_user;
        match self
            .db
            .reserve_ticket_number(requester_id, self.config.number_start, max, now)
            .await?
        {
            Reservation::Granted { number } => Ok(number),
            Reservation::LimitReached { .. } => Err(TicketError::LimitReached { max }),
        }
    }

    /// Records that creating the ticket with this number failed; the number stays used.
    pub async fn record_failure(
        &self,
        number: u64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), TicketError> {
        self.db.fail_ticket_reservation(number, reason, now).await?;
        Ok(())
    }

    /// Stores the ticket once Discord accepted its thread and summary message.
    pub async fn record_created(
        &self,
        request: &NewTicketRequest,
        number: u64,
        thread_id: u64,
        summary_message_id: u64,
        staff_message: Option<(u64, u64)>,
        now: DateTime<Utc>,
    ) -> Result<Ticket, TicketError> {
        let ticket = self
            .db
            .insert_ticket(&NewTicket {
                number,
                requester_id: request.requester_id,
                account_id: &request.account_id,
                account_name: &request.account_name,
                subject: &request.subject,
                priority: request.priority,
                category: request.category,
                thread_id,
                summary_message_id,
                staff_message,
                now,
            })
            .await?;
        Ok(ticket)
    }

    /// Finds a ticket and checks that `actor` may perform `action` on it.
    pub async fn find(
        &self,
        actor: Actor,
        locator: TicketLocator,
        action: Action,
    ) -> Result<Ticket, TicketError> {
        let ticket = match locator {
            TicketLocator::Number(number) => {
                self.db
                    .ticket(number)
                    .await?
                    .ok_or_else(|| TicketError::NotFound {
                        label: self.label(number),
                    })?
            }
            TicketLocator::Thread(thread_id) => self
                .db
                .ticket_by_thread(thread_id)
                .await?
                .ok_or(TicketError::NotATicketThread)?,
        };
        let label = self.label(ticket.number);
        match check_access(&ticket, actor, action) {
            Ok(()) => Ok(ticket),
            Err(Denied::Hidden) => Err(TicketError::NotFound { label }),
            Err(denied) => Err(TicketError::Denied { denied, label }),
        }
    }

    /// Closes the ticket; returns it as stored after the change.
    pub async fn close(
        &self,
        actor: Actor,
        ticket: &Ticket,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Ticket, TicketError> {
        let label = self.label(ticket.number);
        check_access(ticket, actor, Action::Close).map_err(|denied| TicketError::Denied {
            denied,
            label: label.clone(),
        })?;
        // The requester closing their own ticket counts as the requester even when they are staff.
        let by_staff = actor.is_staff && actor.user_id != ticket.requester_id;
        if !self
            .db
            .close_ticket(ticket.number, actor.user_id, by_staff, reason, now)
            .await?
        {
            return Err(TicketError::Denied {
                denied: Denied::AlreadyClosed,
                label,
            });
        }
        self.reload(ticket.number).await
    }

    /// Checks, without changing anything, that `actor` may reopen the ticket now: the access
    /// rules, and for a requester the open-ticket limit.
    pub async fn check_reopen(
        &self,
        actor: Actor,
        ticket: &Ticket,
        now: DateTime<Utc>,
    ) -> Result<(), TicketError> {
        let label = self.label(ticket.number);
        check_access(ticket, actor, Action::Reopen)
            .map_err(|denied| TicketError::Denied { denied, label })?;
        if actor.is_staff {
            return Ok(());
        }
        let max = self.config.max_open_per_user;
        let in_use = self.db.open_ticket_count(ticket.requester_id, now).await?;
        if in_use >= max {
            return Err(TicketError::LimitReached { max });
        }
        Ok(())
    }

    /// Reopens the ticket. The database checks the status, the staff-close rule and the
    /// requester's open-ticket limit in the same transaction as the update, so a concurrent
    /// change cannot slip past them. Staff may reopen beyond the limit.
    pub async fn reopen(
        &self,
        actor: Actor,
        ticket: &Ticket,
        now: DateTime<Utc>,
    ) -> Result<Reopened, TicketError> {
        let label = self.label(ticket.number);
        check_access(ticket, actor, Action::Reopen).map_err(|denied| TicketError::Denied {
            denied,
            label: label.clone(),
        })?;
        let max = self.config.max_open_per_user;
        let open_after = match self
            .db
            .reopen_ticket(ticket.number, actor.is_staff, max, now)
            .await?
        {
            ReopenResult::Reopened { open_after } => open_after,
            ReopenResult::NotClosed => {
                return Err(TicketError::Denied {
                    denied: Denied::AlreadyOpen,
                    label,
                })
            }
            ReopenResult::ClosedByStaff => {
                return Err(TicketError::Denied {
                    denied: Denied::ClosedByStaff,
                    label,
                })
            }
            ReopenResult::LimitReached { .. } => return Err(TicketError::LimitReached { max }),
        };
        Ok(Reopened {
            ticket: self.reload(ticket.number).await?,
            over_limit: (open_after > max).then_some(open_after),
        })
    }

    /// Records `actor` as the claimant. The write is conditional on the claimant that the
    /// actor saw, so of two staff members claiming at once exactly one succeeds and the other
    /// gets the current claimant.
    pub async fn claim(
        &self,
        actor: Actor,
        ticket: &Ticket,
        intent: ClaimIntent,
        now: DateTime<Utc>,
    ) -> Result<ClaimOutcome, TicketError> {
        let label = self.label(ticket.number);
        check_access(ticket, actor, Action::Claim).map_err(|denied| TicketError::Denied {
            denied,
            label: label.clone(),
        })?;
        if let Some(outcome) = claim_precheck(ticket.claimant_id, actor.user_id, intent) {
            return Ok(outcome);
        }
        let expected = ticket.claimant_id;
        if self
            .db
            .claim_ticket(ticket.number, actor.user_id, expected, now)
            .await?
        {
            return Ok(ClaimOutcome::Claimed {
                ticket: Box::new(self.reload(ticket.number).await?),
                previous: expected,
            });
        }

        // Another request changed the ticket between the read and the write.
        let current = self.reload(ticket.number).await?;
        if current.status == TicketStatus::Closed {
            return Err(TicketError::Denied {
                denied: Denied::AlreadyClosed,
                label,
            });
        }
        // The precheck on the current claimant decides, unless the claimant changed and
        // changed back; then the write is not retried and the outcome names the claimant.
        Ok(
            claim_precheck(current.claimant_id, actor.user_id, intent).unwrap_or(
                match current.claimant_id {
                    Some(holder) => ClaimOutcome::NeedsConfirmation { holder },
                    None => ClaimOutcome::HolderChanged {
                        expected: expected.unwrap_or_default(),
                        holder: None,
                    },
                },
            ),
        )
    }

    /// Lists tickets newest first: the actor's own, or for staff every ticket, optionally of
    /// one account. `page` is zero-based and clamped to the last page.
    pub async fn list(
        &self,
        actor: Actor,
        status: Option<TicketStatus>,
        account_id: Option<&str>,
        page: u32,
    ) -> Result<TicketPage, TicketError> {
        if account_id.is_some() && !actor.is_staff {
            return Err(TicketError::AccountFilterStaffOnly);
        }
        let filter = TicketFilter {
            requester_id: (!actor.is_staff).then_some(actor.user_id),
            account_id: account_id.map(str::to_owned),
            status,
        };
        let (_, total) = self.db.list_tickets(&filter, 0, 0).await?;
        let pages = total.div_ceil(PAGE_SIZE).max(1);
        let page = page.min(pages - 1);
        let (tickets, total) = self
            .db
            .list_tickets(&filter, PAGE_SIZE, page * PAGE_SIZE)
            .await?;
        Ok(TicketPage {
            tickets,
            total,
            page,
            pages,
        })
    }

    async fn reload(&self, number: u64) -> Result<Ticket, TicketError> {
        self.db
            .ticket(number)
            .await?
            .ok_or_else(|| TicketError::NotFound {
                label: self.label(number),
            })
    }
}

/// Decides a claim without writing when the current claimant settles it. Returns `None`
/// when the claim should be written, expecting `current` as the claimant.
fn claim_precheck(
    current: Option<u64>,
    actor_id: u64,
    intent: ClaimIntent,
) -> Option<ClaimOutcome> {
    match (current, intent) {
        (Some(holder), _) if holder == actor_id => Some(ClaimOutcome::AlreadyYours),
        (None, ClaimIntent::Claim) => None,
        (Some(holder), ClaimIntent::Claim) => Some(ClaimOutcome::NeedsConfirmation { holder }),
        (Some(holder), ClaimIntent::TakeOverFrom(expected)) if holder == expected => None,
        (holder, ClaimIntent::TakeOverFrom(expected)) => {
            Some(ClaimOutcome::HolderChanged { expected, holder })
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::storage::{test_db, ReservationState};

    const ALICE: u64 = 1001;
    const BOB: u64 = 1002;
    const STAFF: u64 = 2001;

    fn config() -> SupportConfig {
        SupportConfig {
            number_prefix: "T-".into(),
            number_start: 1000,
            max_open_per_user: 3,
            ..SupportConfig::default()
        }
    }

    fn request(requester_id: u64, subject: &str) -> NewTicketRequest {
        NewTicketRequest {
            requester_id,
            account_id: format!("acc_{requester_id}"),
            account_name: "Acme".into(),
            subject: subject.into(),
            priority: Priority::Normal,
            category: Category::General,
        }
    }

    fn actor(user_id: u64) -> Actor {
        Actor {
            user_id,
            is_staff: user_id == STAFF,
        }
    }

    /// Reserves a number and stores a ticket for it, with thread id = number * 10.
    async fn open(service: &TicketService, requester_id: u64, now: DateTime<Utc>) -> Ticket {
        let number = service.reserve(requester_id, now).await.unwrap();
        service
            .record_created(
                &request(requester_id, "help"),
                number,
                number * 10,
                number * 10 + 1,
                None,
                now,
            )
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn numbers_start_at_config_and_are_never_reused() {
        let (db, _dir) = test_db().await;
        let service = TicketService::new(db.clone(), config());
        let now = Utc::now();

        let first = open(&service, ALICE, now).await;
        assert_eq!(first.number, 1000);
        assert_eq!(service.label(first.number), "T-1000");

        let failed = service.reserve(ALICE, now).await.unwrap();
        assert_eq!(failed, 1001);
        service
            .record_failure(failed, "discord 160006", now)
            .await
            .unwrap();
        let record = db.ticket_reservation(failed).await.unwrap().unwrap();
        assert_eq!(record.state, ReservationState::Failed);
        assert_eq!(record.failure.as_deref(), Some("discord 160006"));
        assert!(
            db.ticket(failed).await.unwrap().is_none(),
            "no ticket row for a failed creation"
        );

        let next = open(&service, ALICE, now).await;
        assert_eq!(
            next.number, 1002,
            "the failed number is skipped, not reused"
        );
        let created = db.ticket_reservation(1002).await.unwrap().unwrap();
        assert_eq!(created.state, ReservationState::Created);
    }

    #[tokio::test]
    async fn raised_start_moves_the_sequence_forward() {
        let (db, _dir) = test_db().await;
        let now = Utc::now();
        let service = TicketService::new(db.clone(), config());
        open(&service, ALICE, now).await;

        let raised = TicketService::new(
            db.clone(),
            SupportConfig {
                number_start: 5000,
                ..config()
            },
        );
        assert_eq!(open(&raised, BOB, now).await.number, 5000);
        let lowered = TicketService::new(
            db,
            SupportConfig {
                number_start: 1,
                ..config()
            },
        );
        assert_eq!(open(&lowered, BOB, now).await.number, 5001);
    }

    #[tokio::test]
    async fn open_limit_counts_open_and_pending() {
        let (db, _dir) = test_db().await;
        let service = TicketService::new(db, config());
        let now = Utc::now();

        let first = open(&service, ALICE, now).await;
        open(&service, ALICE, now).await;
        let pending = service.reserve(ALICE, now).await.unwrap();
        let error = service.reserve(ALICE, now).await.unwrap_err();
        assert!(
            matches!(error, TicketError::LimitReached { max: 3 }),
            "{error:?}"
        );
        assert!(error.user_message().unwrap().contains("3 open tickets"));
        // Another user is not affected.
        assert!(service.reserve(BOB, now).await.is_ok());

        // A failed creation frees its slot, and so does closing a ticket.
        service.record_failure(pending, "test", now).await.unwrap();
        let again = service.reserve(ALICE, now).await.unwrap();
        service.record_failure(again, "test", now).await.unwrap();
        service
            .close(actor(ALICE), &first, None, now)
            .await
            .unwrap();
        open(&service, ALICE, now).await;
        open(&service, ALICE, now).await;
        assert!(service.reserve(ALICE, now).await.is_err());

        // A reservation left pending by a crash stops counting after ten minutes.
        let later = now + Duration::minutes(11);
        let (db2, _dir2) = test_db().await;
        let fresh = TicketService::new(db2, config());
        for _ in 0..3 {
            fresh.reserve(ALICE, now).await.unwrap();
        }
        assert!(fresh.reserve(ALICE, now).await.is_err());
        assert!(fresh.reserve(ALICE, later).await.is_ok());
    }

    #[tokio::test]
    async fn find_hides_other_users_tickets() {
        let (db, _dir) = test_db().await;
        let service = TicketService::new(db, config());
        let now = Utc::now();
        let ticket = open(&service, ALICE, now).await;

        let found = service
            .find(
                actor(ALICE),
                TicketLocator::Number(ticket.number),
                Action::View,
            )
            .await
            .unwrap();
        assert_eq!(found.number, ticket.number);
        let by_thread = service
            .find(
                actor(STAFF),
                TicketLocator::Thread(ticket.thread_id),
                Action::Close,
            )
            .await
            .unwrap();
        assert_eq!(by_thread.number, ticket.number);

        let hidden = service
            .find(
                actor(BOB),
                TicketLocator::Number(ticket.number),
                Action::View,
            )
            .await
            .unwrap_err();
        let missing = service
            .find(actor(BOB), TicketLocator::Number(9999), Action::View)
            .await
            .unwrap_err();
        let hidden_text = hidden.user_message().unwrap();
        assert_eq!(
            hidden_text.replace("T-1000", "X"),
            missing.user_message().unwrap().replace("T-9999", "X"),
            "a hidden ticket reads exactly like a missing one"
        );
        assert!(!hidden_text.contains("Acme"));

        let not_thread = service
            .find(actor(ALICE), TicketLocator::Thread(77), Action::View)
            .await
            .unwrap_err();
        assert!(matches!(not_thread, TicketError::NotATicketThread));
    }

    #[tokio::test]
    async fn close_and_reopen_follow_staff_rule() {
        let (db, _dir) = test_db().await;
        let service = TicketService::new(db, config());
        let now = Utc::now();
        let ticket = open(&service, ALICE, now).await;

        let closed = service
            .close(actor(STAFF), &ticket, Some("fixed"), now)
            .await
            .unwrap();
        assert_eq!(closed.status, TicketStatus::Closed);
        assert!(closed.closed_by_staff);
        assert_eq!(closed.close_reason.as_deref(), Some("fixed"));
        assert_eq!(closed.closed_by_id, Some(STAFF));
        assert!(closed.closed_at.is_some());

        let refused = service
            .reopen(actor(ALICE), &closed, now)
            .await
            .unwrap_err();
        assert!(matches!(
            refused,
            TicketError::Denied {
                denied: Denied::ClosedByStaff,
                ..
            }
        ));
        let again = service
            .close(actor(ALICE), &closed, None, now)
            .await
            .unwrap_err();
        assert!(matches!(
            again,
            TicketError::Denied {
                denied: Denied::AlreadyClosed,
                ..
            }
        ));

        let reopened = service
            .reopen(actor(STAFF), &closed, now)
            .await
            .unwrap()
            .ticket;
        assert_eq!(reopened.status, TicketStatus::Open);
        assert_eq!(reopened.close_reason, None);
        assert!(!reopened.closed_by_staff);

        let by_requester = service
            .close(actor(ALICE), &reopened, None, now)
            .await
            .unwrap();
        assert!(!by_requester.closed_by_staff);
        assert!(service
            .reopen(actor(ALICE), &by_requester, now)
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn claim_asks_before_taking_over() {
        let (db, _dir) = test_db().await;
        let service = TicketService::new(db, config());
        let now = Utc::now();
        let ticket = open(&service, ALICE, now).await;
        let other_staff = Actor {
            user_id: 2002,
            is_staff: true,
        };

        let refused = service
            .claim(actor(ALICE), &ticket, ClaimIntent::Claim, now)
            .await
            .unwrap_err();
        assert!(matches!(
            refused,
            TicketError::Denied {
                denied: Denied::StaffOnly,
                ..
            }
        ));

        let ClaimOutcome::Claimed {
            ticket: claimed,
            previous,
        } = service
            .claim(actor(STAFF), &ticket, ClaimIntent::Claim, now)
            .await
            .unwrap()
        else {
            panic!("expected a claim");
        };
        assert_eq!(claimed.claimant_id, Some(STAFF));
        assert_eq!(previous, None);
        assert_eq!(
            service
                .claim(actor(STAFF), &claimed, ClaimIntent::Claim, now)
                .await
                .unwrap(),
            ClaimOutcome::AlreadyYours
        );
        assert_eq!(
            service
                .claim(other_staff, &claimed, ClaimIntent::Claim, now)
                .await
                .unwrap(),
            ClaimOutcome::NeedsConfirmation { holder: STAFF }
        );
        let ClaimOutcome::Claimed {
            ticket: taken,
            previous,
        } = service
            .claim(other_staff, &claimed, ClaimIntent::TakeOverFrom(STAFF), now)
            .await
            .unwrap()
        else {
            panic!("expected a confirmed claim");
        };
        assert_eq!(taken.claimant_id, Some(2002));
        assert_eq!(previous, Some(STAFF));
    }

    #[tokio::test]
    async fn list_is_newest_first_and_paginated() {
        let (db, _dir) = test_db().await;
        let service = TicketService::new(
            db,
            SupportConfig {
                max_open_per_user: 50,
                ..config()
            },
        );
        let start = Utc::now();
        for index in 0..12 {
            open(&service, ALICE, start + Duration::seconds(index)).await;
        }
        let bob_ticket = open(&service, BOB, start + Duration::seconds(100)).await;

        let first = service
            .list(actor(ALICE), Some(TicketStatus::Open), None, 0)
            .await
            .unwrap();
        assert_eq!(first.total, 12);
        assert_eq!(first.pages, 2);
        assert_eq!(first.tickets.len(), 10);
        assert_eq!(first.tickets[0].number, 1011, "newest first");
        assert!(first.tickets.iter().all(|t| t.requester_id == ALICE));
        let second = service
            .list(actor(ALICE), Some(TicketStatus::Open), None, 1)
            .await
            .unwrap();
        assert_eq!(second.tickets.len(), 2);
        assert_eq!(second.tickets[1].number, 1000);
        let clamped = service.list(actor(ALICE), None, None, 9).await.unwrap();
        assert_eq!(clamped.page, 1);

        let closed = service
            .list(actor(ALICE), Some(TicketStatus::Closed), None, 0)
            .await
            .unwrap();
        assert_eq!(closed.total, 0);
        assert_eq!(closed.pages, 1);

        let all = service.list(actor(STAFF), None, None, 0).await.unwrap();
        assert_eq!(all.total, 13);
        assert_eq!(all.tickets[0].number, bob_ticket.number);
        let bob_only = service
            .list(actor(STAFF), None, Some("acc_1002"), 0)
            .await
            .unwrap();
        assert_eq!(bob_only.total, 1);

        let refused = service
            .list(actor(ALICE), None, Some("acc_1002"), 0)
            .await
            .unwrap_err();
        assert!(matches!(refused, TicketError::AccountFilterStaffOnly));
    }

    #[tokio::test]
    async fn claim_write_is_conditional_on_expected_claimant() {
        let (db, _dir) = test_db().await;
        let service = TicketService::new(db, config());
        let now = Utc::now();
        let ticket = open(&service, ALICE, now).await;
        let staff_2 = Actor {
            user_id: 2002,
            is_staff: true,
        };
        let staff_3 = Actor {
            user_id: 2003,
            is_staff: true,
        };

        // Both staff members read the unclaimed ticket before either writes.
        let seen_by_first = ticket.clone();
        let seen_by_second = ticket.clone();
        let first = service
            .claim(actor(STAFF), &seen_by_first, ClaimIntent::Claim, now)
            .await
            .unwrap();
        assert!(matches!(first, ClaimOutcome::Claimed { .. }), "{first:?}");
        let second = service
            .claim(staff_2, &seen_by_second, ClaimIntent::Claim, now)
            .await
            .unwrap();
        assert_eq!(second, ClaimOutcome::NeedsConfirmation { holder: STAFF });
        let stored = service.db().ticket(ticket.number).await.unwrap().unwrap();
        assert_eq!(stored.claimant_id, Some(STAFF), "the first claim stays");

        // A takeover confirmed against an old holder writes nothing.
        let ClaimOutcome::Claimed { ticket: taken, .. } = service
            .claim(staff_3, &stored, ClaimIntent::TakeOverFrom(STAFF), now)
            .await
            .unwrap()
        else {
            panic!("expected staff 3 to take over");
        };
        let stale = service
            .claim(staff_2, &stored, ClaimIntent::TakeOverFrom(STAFF), now)
            .await
            .unwrap();
        assert_eq!(
            stale,
            ClaimOutcome::HolderChanged {
                expected: STAFF,
                holder: Some(2003)
            }
        );
        let stale_with_fresh_read = service
            .claim(staff_2, &taken, ClaimIntent::TakeOverFrom(STAFF), now)
            .await
            .unwrap();
        assert_eq!(
            stale_with_fresh_read,
            ClaimOutcome::HolderChanged {
                expected: STAFF,
                holder: Some(2003)
            }
        );
        let stored = service.db().ticket(ticket.number).await.unwrap().unwrap();
        assert_eq!(stored.claimant_id, Some(2003));

        // A claim read while open but written after the close is rejected.
        service
            .close(actor(ALICE), &stored, None, now)
            .await
            .unwrap();
        let late = service
            .claim(staff_2, &stored, ClaimIntent::TakeOverFrom(2003), now)
            .await
            .unwrap_err();
        assert!(
            matches!(
                late,
                TicketError::Denied {
                    denied: Denied::AlreadyClosed,
                    ..
                }
            ),
            "{late:?}"
        );
    }

    #[tokio::test]
    async fn reopen_respects_limit_for_requester_only() {
        let (db, _dir) = test_db().await;
        let service = TicketService::new(
            db,
            SupportConfig {
                max_open_per_user: 1,
                ..config()
            },
        );
        let now = Utc::now();
        let first = open(&service, ALICE, now).await;
        let closed = service
            .close(actor(ALICE), &first, None, now)
            .await
            .unwrap();
        open(&service, ALICE, now).await;

        let checked = service
            .check_reopen(actor(ALICE), &closed, now)
            .await
            .unwrap_err();
        assert!(
            matches!(checked, TicketError::LimitReached { max: 1 }),
            "{checked:?}"
        );
        let refused = service
            .reopen(actor(ALICE), &closed, now)
            .await
            .unwrap_err();
        assert!(
            matches!(refused, TicketError::LimitReached { max: 1 }),
            "{refused:?}"
        );
        let still = service.db().ticket(first.number).await.unwrap().unwrap();
        assert_eq!(still.status, TicketStatus::Closed);

        assert!(service
            .check_reopen(actor(STAFF), &closed, now)
            .await
            .is_ok());
        let by_staff = service.reopen(actor(STAFF), &closed, now).await.unwrap();
        assert_eq!(by_staff.ticket.status, TicketStatus::Open);
        assert_eq!(by_staff.over_limit, Some(2), "staff are told the new count");
    }

    #[tokio::test]
    async fn requester_reopen_is_conditional_on_who_closed() {
        let (db, _dir) = test_db().await;
        let service = TicketService::new(db, config());
        let now = Utc::now();
        let ticket = open(&service, ALICE, now).await;
        let closed_by_alice = service
            .close(actor(ALICE), &ticket, None, now)
            .await
            .unwrap();

        // Staff reopen and close it again while Alice still has the old copy, which records
        // that she closed it.
        let reopened = service
            .reopen(actor(STAFF), &closed_by_alice, now)
            .await
            .unwrap();
        service
            .close(actor(STAFF), &reopened.ticket, None, now)
            .await
            .unwrap();
        let refused = service
            .reopen(actor(ALICE), &closed_by_alice, now)
            .await
            .unwrap_err();
        assert!(
            matches!(
                refused,
                TicketError::Denied {
                    denied: Denied::ClosedByStaff,
                    ..
                }
            ),
            "{refused:?}"
        );
        let stored = service.db().ticket(ticket.number).await.unwrap().unwrap();
        assert_eq!(stored.status, TicketStatus::Closed);
        assert!(stored.closed_by_staff);
    }
}
