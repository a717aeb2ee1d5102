//! Support tickets: the model, numbering, access rules, the open-ticket limit and transcripts.
//! Plain values only; `discord::support` turns them into threads, embeds and buttons.

mod access;
mod model;
mod service;
mod transcript;

pub use access::{check_access, Action, Actor, Denied};
pub use model::{
    parse_ticket_number, validate_subject, Category, Priority, Ticket, TicketStatus,
    MAX_SUBJECT_CHARS,
};
pub use service::{
    ClaimIntent, ClaimOutcome, NewTicketRequest, Reopened, TicketError, TicketLocator, TicketPage,
    TicketService, PAGE_SIZE,
};
pub use transcript::{format_transcript, TranscriptAttachment, TranscriptMessage};
