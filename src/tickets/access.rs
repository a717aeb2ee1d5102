//! Who may do what with a ticket.

use super::{Ticket, TicketStatus};

/// The user acting on a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub user_id: u64,
    /// Whether the user has the configured staff role.
    pub is_staff: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    View,
    Close,
    Reopen,
    Claim,
}

/// Why an action is not allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The user is neither the requester nor staff. They get the same reply as for a ticket that
    /// does not exist, so they learn nothing about it.
    Hidden,
    StaffOnly,
    /// Staff closed the ticket, so only staff may reopen it.
    ClosedByStaff,
    AlreadyClosed,
    AlreadyOpen,
}

/// Checks whether `actor` may perform `action` on `ticket`.
pub fn check_access(ticket: &Ticket, actor: Actor, action: Action) -> Result<(), Denied> {
    let is_requester = ticket.requester_id == actor.user_id;
    if !is_requester && !actor.is_staff {
        return Err(Denied::Hidden);
    }
    match action {
        Action::View => Ok(()),
        Action::Close if ticket.status == TicketStatus::Closed => Err(Denied::AlreadyClosed),
        Action::Close => Ok(()),
        Action::Reopen if ticket.status == TicketStatus::Open => Err(Denied::AlreadyOpen),
        Action::Reopen if ticket.closed_by_staff && !actor.is_staff => Err(Denied::ClosedByStaff),
        Action::Reopen => Ok(()),
        Action::Claim if !actor.is_staff => Err(Denied::StaffOnly),
        Action::Claim if ticket.status == TicketStatus::Closed => Err(Denied::AlreadyClosed),
        Action::Claim => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::tickets::{Category, Priority};

    const REQUESTER: u64 = 10;
    const STAFF: u64 = 20;
    const STRANGER: u64 = 30;

    fn ticket(status: TicketStatus, closed_by_staff: bool) -> Ticket {
        Ticket {
            number: 1,
            requester_id: REQUESTER,
            account_id: "acc_1".into(),
            account_name: "Acme".into(),
            subject: "help".into(),
            priority: Priority::Normal,
            category: Category::General,
            status,
            claimant_id: None,
            thread_id: 5,
            summary_message_id: 6,
            staff_channel_id: None,
            staff_message_id: None,
            close_reason: None,
            closed_by_id: None,
            closed_by_staff,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            closed_at: None,
        }
    }

    fn requester() -> Actor {
        Actor {
            user_id: REQUESTER,
            is_staff: false,
        }
    }
    fn staff() -> Actor {
        Actor {
            user_id: STAFF,
            is_staff: true,
        }
    }
    fn stranger() -> Actor {
        Actor {
            user_id: STRANGER,
            is_staff: false,
        }
    }

    #[test]
    fn stranger_is_hidden_from_every_action() {
        for status in [TicketStatus::Open, TicketStatus::Closed] {
            let ticket = ticket(status, false);
            for action in [Action::View, Action::Close, Action::Reopen, Action::Claim] {
                assert_eq!(
                    check_access(&ticket, stranger(), action),
                    Err(Denied::Hidden),
                    "{action:?} on {status:?}"
                );
            }
        }
    }

    #[test]
    fn requester_and_staff_may_view_and_close() {
        let open = ticket(TicketStatus::Open, false);
        for actor in [requester(), staff()] {
            assert_eq!(check_access(&open, actor, Action::View), Ok(()));
            assert_eq!(check_access(&open, actor, Action::Close), Ok(()));
            assert_eq!(
                check_access(&open, actor, Action::Reopen),
                Err(Denied::AlreadyOpen)
            );
        }
        let closed = ticket(TicketStatus::Closed, false);
        assert_eq!(
            check_access(&closed, requester(), Action::Close),
            Err(Denied::AlreadyClosed)
        );
    }

    #[test]
    fn reopen_after_staff_close_needs_staff() {
        let by_staff = ticket(TicketStatus::Closed, true);
        assert_eq!(
            check_access(&by_staff, requester(), Action::Reopen),
            Err(Denied::ClosedByStaff)
        );
        assert_eq!(check_access(&by_staff, staff(), Action::Reopen), Ok(()));

        let by_requester = ticket(TicketStatus::Closed, false);
        assert_eq!(
            check_access(&by_requester, requester(), Action::Reopen),
            Ok(())
        );
        assert_eq!(check_access(&by_requester, staff(), Action::Reopen), Ok(()));
    }

    #[test]
    fn claim_is_staff_only_and_open_only() {
        let open = ticket(TicketStatus::Open, false);
        assert_eq!(
            check_access(&open, requester(), Action::Claim),
            Err(Denied::StaffOnly)
        );
        assert_eq!(check_access(&open, staff(), Action::Claim), Ok(()));
        let closed = ticket(TicketStatus::Closed, false);
        assert_eq!(
            check_access(&closed, staff(), Action::Claim),
            Err(Denied::AlreadyClosed)
        );
    }

    #[test]
    fn staff_requester_keeps_staff_rights() {
        let own = Ticket {
            requester_id: STAFF,
            ..ticket(TicketStatus::Closed, true)
        };
        assert_eq!(check_access(&own, staff(), Action::Reopen), Ok(()));
    }
}
