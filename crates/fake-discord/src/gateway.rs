//! The gateway websocket: HELLO, IDENTIFY → READY + GUILD_CREATE, heartbeats, RESUME.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::payloads;
use crate::shared::Shared;
use crate::state::{Connection, Outgoing, State};

/// Close code for "going away", sent when the fake shuts down.
const CLOSE_GOING_AWAY: u16 = 1001;

pub(crate) async fn upgrade(
    AxumState(shared): AxumState<Arc<Shared>>,
    websocket: WebSocketUpgrade,
) -> Response {
    let refused = shared.update(|state| {
        if state.gateway.refusing {
            state.log_line("gateway: connection refused with 503 (outage scripted)".to_string());
        }
        state.gateway.refusing
    });
    if refused {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    websocket.on_upgrade(move |socket| run_session(shared, socket))
}

/// Serves one websocket connection until either side closes it or the fake shuts down.
async fn run_session(shared: Arc<Shared>, socket: WebSocket) {
    let (sender, mut outgoing) = mpsc::unbounded_channel();
    let connection_id = shared.update(|state| open_connection(state, sender));

    let (mut sink, mut incoming) = socket.split();
    let mut shutdown = shared.shutdown.subscribe();
    let stopped = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            frame = outgoing.recv() => match frame {
                Some(Outgoing::Text(text)) => {
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Some(Outgoing::Close(code, reason)) => {
                    let frame = CloseFrame { code, reason: reason.into() };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    break;
                }
                None => break,
            },
            message = incoming.next() => match message {
                Some(Ok(Message::Text(text))) => handle_frame(&shared, connection_id, text.as_str()),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            _ = &mut stopped => {
                let frame = CloseFrame { code: CLOSE_GOING_AWAY, reason: "fake shutting down".into() };
                let _ = sink.send(Message::Close(Some(frame))).await;
                break;
            }
        }
    }

    shared.update(|state| {
        let is_current = state
            .gateway
            .connection
            .as_ref()
            .is_some_and(|connection| connection.id == connection_id);
        if is_current {
            state.gateway.connection = None;
            state.gateway.session_ready = false;
        }
        state.log_line(format!("gateway: connection {connection_id} closed"));
    });
}

/// Makes a new connection the current one and sends HELLO on it.
fn open_connection(state: &mut State, sender: mpsc::UnboundedSender<Outgoing>) -> u64 {
    state.gateway.next_connection_id += 1;
    let connection_id = state.gateway.next_connection_id;
    let previous = state.gateway.connection.replace(Connection {
        id: connection_id,
        sender,
    });
    if let Some(previous) = previous {
        let _ = previous.sender.send(Outgoing::Close(
            4000,
            "replaced by a new connection".to_string(),
        ));
    }
    state.gateway.session_ready = false;
    state.log_line(format!(
        "gateway: connection {connection_id} opened, HELLO sent"
    ));
    if let Err(error) = state.send_frame(&payloads::hello_frame()) {
        state.log_line(format!("gateway: {error}"));
    }
    connection_id
}

fn handle_frame(shared: &Shared, connection_id: u64, text: &str) {
    shared.update(|state| {
        let is_current = state
            .gateway
            .connection
            .as_ref()
            .is_some_and(|connection| connection.id == connection_id);
        if !is_current {
            return;
        }
        let frame: Value = match serde_json::from_str(text) {
            Ok(frame) => frame,
            Err(error) => {
                state.log_line(format!("gateway <- invalid JSON frame: {error}"));
                return;
            }
        };

        let result = match frame["op"].as_u64() {
            // Heartbeat ACKs get no log line, because one per heartbeat would flood the log.
            Some(1) => state.send_frame(&json!({ "op": 11 })),
            Some(2) => identify(state, &frame["d"]),
            Some(6) => resume(state, &frame["d"]),
            Some(op) => {
                state.log_line(format!("gateway <- op {op} (ignored)"));
                Ok(())
            }
            None => {
                state.log_line("gateway <- frame without op (ignored)".to_string());
                Ok(())
            }
        };
        if let Err(error) = result {
            state.log_line(format!("gateway: {error}"));
        }
    });
}

/// Starts a new session: READY, then GUILD_CREATE with the guild's current state.
pub(crate) fn identify(state: &mut State, data: &Value) -> Result<(), String> {
    let intents = data["intents"].as_u64().unwrap_or(0);
    state.log_line(format!("gateway <- IDENTIFY (intents {intents})"));

    let session_number = state.gateway.readies + 1;
    state.gateway.session_id = Some(format!("fake-session-{session_number}"));
    state.gateway.sequence = 0;
    state.gateway.intents = intents;

    let ready = state.ready_payload(data.get("shard"));
    state.dispatch("READY", ready)?;
    state.gateway.session_ready = true;
    state.gateway.readies += 1;
    state.gateway.handshakes += 1;

    let guild = state.guild_payload();
    state.dispatch("GUILD_CREATE", guild)?;
    Ok(())
}

/// Resumes the current session, or sends INVALID_SESSION (op 9) for an unknown session id so
/// the bot identifies again.
pub(crate) fn resume(state: &mut State, data: &Value) -> Result<(), String> {
    let session_id = data["session_id"].as_str().unwrap_or_default();
    let sequence = data["seq"].as_u64().unwrap_or(0);
    state.log_line(format!(
        "gateway <- RESUME (session {session_id}, seq {sequence})"
    ));

    if state.gateway.session_id.as_deref() != Some(session_id) {
        state.log_line("gateway -> INVALID_SESSION (unknown session id)".to_string());
        return state.send_frame(&json!({ "op": 9, "d": false }));
    }
    // NOTE: Discord replays the dispatches the bot missed before RESUMED. The fake does not
    // queue dispatches while no session is ready, so change events from that gap are lost.
    state.dispatch("RESUMED", json!({}))?;
    state.gateway.session_ready = true;
    state.gateway.handshakes += 1;
    Ok(())
}
