//! Serial console sessions, for the socket (`console_attach`) and the HTTP
//! API's websocket alike: [`open`] gets a session from the SP's actor,
//! [`pump`] carries it between the actor and a client's two channels. The
//! pump reads the scrollback only when the client's channel has room, so a
//! client that stops reading holds no memory: it falls behind the ring and
//! is told how much it lost.

use super::{registry_error, Failed};
use crate::api::views::ConsoleOpened;
use crate::api::{ConsoleAttachArgs, ConsoleDetachArgs, ErrorCode};
use actors::sp::{ConsoleError, ConsoleSession};
use actors::Gateway;
use gateway_messages::SpComponent;
use tokio::sync::mpsc;

/// Most output in one event.
const OUTPUT_CHUNK: usize = 16 * 1024;

/// How long a write may wait for the SP to take it before the client is
/// told (the session goes on: output, detach and more input are served).
const WRITE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(15);

/// What a client sends.
#[derive(Debug)]
pub(crate) enum Input {
    Write(Vec<u8>),
    Break,
    /// Leave (the session ends; the SP stays attached to mgsd).
    Detach,
}

/// What a client is sent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Event {
    Output(Vec<u8>),
    /// This many bytes were dropped from the scrollback before the client
    /// read them.
    Lost(u64),
    /// The SP's console was attached again (after a reset): output from
    /// the time between is gone.
    Reattached(String),
    Notice(String),
    /// The session is over, and why.
    Ended(String),
}

pub(crate) fn console_failed(e: ConsoleError) -> Failed {
    let code = match &e {
        ConsoleError::Unavailable { .. } => ErrorCode::ConsoleUnavailable,
        ConsoleError::Held { .. } => ErrorCode::ConsoleHeld,
        ConsoleError::Stopped { .. } => ErrorCode::ShuttingDown,
        ConsoleError::Rpc { .. } => ErrorCode::SpUnreachable,
        ConsoleError::Ended { .. } | ConsoleError::ReadOnly { .. } => ErrorCode::BadRequest,
    };
    (code, e.to_string())
}

fn check_component(component: &str) -> Result<(), Failed> {
    if SpComponent::try_from(component).ok() == Some(SpComponent::SP3_HOST_CPU) {
        Ok(())
    } else {
        Err((
            ErrorCode::BadComponent,
            format!("{component:?} has no serial console mgsd serves; the host's is sp3-host-cpu"),
        ))
    }
}

/// Open a session on `a.sp`'s console; `holder` names the client.
pub(crate) async fn open(
    gw: &Gateway,
    a: &ConsoleAttachArgs,
    holder: String,
) -> Result<(ConsoleSession, ConsoleOpened), Failed> {
    check_component(&a.component)?;
    let sp = gw.registry.sp(&a.sp).await.map_err(registry_error)?;
    let session = sp
        .console_open(!a.read_only, holder)
        .await
        .map_err(console_failed)?;
    let (start, end) = session.scrollback.bounds();
    let status = session.status.borrow().clone();
    let opened = ConsoleOpened {
        sp: sp.name().to_string(),
        component: a.component.clone(),
        session: session.id,
        read_only: a.read_only,
        scrollback_bytes: if a.no_scrollback { 0 } else { end - start },
        attached: status.state == actors::console::LinkState::Attached,
        state: status.state,
    };
    Ok((session, opened))
}

/// `console_detach`: end the typing session by force; names it.
pub(crate) async fn detach(
    gw: &Gateway,
    a: ConsoleDetachArgs,
) -> Result<serde_json::Value, Failed> {
    check_component(&a.component)?;
    let sp = gw.registry.sp(&a.sp).await.map_err(registry_error)?;
    let ended = sp.console_detach().await.map_err(console_failed)?;
    Ok(serde_json::json!({
        "sp": sp.name().to_string(),
        "component": a.component,
        "ended": ended.map(|h| h.holder),
    }))
}

/// Carry `session` until the client leaves (its input closes or says
/// detach) or the session ends.
pub(crate) async fn pump(
    session: ConsoleSession,
    no_scrollback: bool,
    mut input: mpsc::Receiver<Input>,
    out: mpsc::Sender<Event>,
) {
    let mut ring = session.scrollback.clone();
    let mut status = session.status.clone();
    let (start, end) = ring.bounds();
    let mut cursor = if no_scrollback { end } else { start };
    let mut attachments = status.borrow().counts.attachments;
    let mut told_read_only = false;
    let name = session.sp.to_string();
    metrics::gauge!("mgsd_console_client_sessions", "sp" => name.clone()).increment(1.0);
    let ended = loop {
        let has_output = ring.bounds().1 > cursor;
        tokio::select! {
            biased;
            got = input.recv() => match got {
                None | Some(Input::Detach) => break None,
                Some(Input::Write(data)) if session.write => {
                    match tokio::time::timeout(WRITE_PATIENCE, session.write(data)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => break Some(e.to_string()),
                        Err(_) => {
                            // Still queued in the SP's actor; the client
                            // hears why nothing happens.
                            let notice = format!(
                                "the SP has not taken input for {} s (it stays queued; is the SP reachable?)",
                                WRITE_PATIENCE.as_secs()
                            );
                            if out.send(Event::Notice(notice)).await.is_err() {
                                break None;
                            }
                        }
                    }
                }
                Some(Input::Break) if session.write => {
                    if let Err(e) = session.send_break().await {
                        let _ = out.send(Event::Notice(format!("break not sent: {e}"))).await;
                    }
                }
                Some(_) => {
                    if !told_read_only {
                        told_read_only = true;
                        let notice = "read-only session: input is not sent".to_string();
                        if out.send(Event::Notice(notice)).await.is_err() {
                            break None;
                        }
                    }
                }
            },
            changed = status.changed() => {
                if changed.is_err() {
                    break Some("the SP's actor stopped (mgsd is stopping or the SP was removed)".into());
                }
                if !session.holds() {
                    break Some("detached by another client (console detach)".into());
                }
                let now = status.borrow_and_update().clone();
                if now.counts.attachments > attachments {
                    let first = attachments == 0;
                    attachments = now.counts.attachments;
                    if !first {
                        let why = now.last_loss.unwrap_or_else(|| "attachment lost".into());
                        if out.send(Event::Reattached(why)).await.is_err() {
                            break None;
                        }
                    }
                }
            }
            permit = out.reserve(), if has_output => {
                let Ok(permit) = permit else { break None };
                let read = ring.read(cursor, OUTPUT_CHUNK);
                cursor = read.at + read.data.len() as u64;
                if read.lost > 0 {
                    metrics::counter!("mgsd_console_reader_lost_bytes_total", "sp" => name.clone())
                        .increment(read.lost);
                    permit.send(Event::Lost(read.lost));
                    // The output goes in the next turn.
                    cursor = read.at;
                } else {
                    permit.send(Event::Output(read.data));
                }
            }
            alive = ring.wait_past(cursor), if !has_output => {
                if !alive {
                    break Some("the SP's actor stopped".into());
                }
            }
        }
    };
    metrics::gauge!("mgsd_console_client_sessions", "sp" => name).decrement(1.0);
    if let Some(why) = ended {
        let _ = out.send(Event::Ended(why)).await;
    }
}

/// Encode an event as its stream line.
pub(crate) fn line_of(event: Event) -> crate::api::views::ConsoleLine {
    use crate::api::views::ConsoleLine as L;
    use base64::Engine;
    match event {
        Event::Output(data) => L::Output {
            data: base64::engine::general_purpose::STANDARD.encode(data),
        },
        Event::Lost(bytes) => L::Lost { bytes },
        Event::Reattached(reason) => L::Reattached { reason },
        Event::Notice(message) => L::Notice { message },
        Event::Ended(reason) => L::Ended { reason },
    }
}

/// Decode a client's line.
fn input_of(line: &[u8]) -> Result<Input, String> {
    use crate::api::views::ConsoleInputLine as I;
    use base64::Engine;
    let parsed: I = serde_json::from_slice(line)
        .map_err(|e| format!("not a console input line ({e}): send {{\"write\": BASE64}}, {{\"break\": true}} or {{\"detach\": true}}"))?;
    Ok(match parsed {
        I::Write(data) => Input::Write(
            base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|e| format!("write is not base64: {e}"))?,
        ),
        I::Break(_) => Input::Break,
        I::Detach(_) => Input::Detach,
    })
}

/// `console_attach` on the socket, once the session is open: answer, then
/// carry the console as JSON lines both ways until either side ends it.
#[allow(clippy::too_many_arguments)]
pub(super) async fn serve_socket(
    session: ConsoleSession,
    opened: ConsoleOpened,
    no_scrollback: bool,
    read: tokio::net::unix::OwnedReadHalf,
    mut write: tokio::net::unix::OwnedWriteHalf,
    mut framer: super::framing::Framer,
    request_id: Option<serde_json::Value>,
) {
    use super::framing::{fill, Frame};
    use crate::api::Response;
    use tokio::io::AsyncWriteExt;
    let r = Response::ok(
        request_id,
        serde_json::to_value(&opened).unwrap_or_default(),
    );
    super::count("console_attach", &r);
    if super::send(&mut write, &r).await.is_err() {
        return;
    }
    let (in_tx, in_rx) = mpsc::channel(4);
    let (out_tx, mut out_rx) = mpsc::channel(4);
    let notices = out_tx.clone();
    let reading = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let frame = loop {
                if let Some(f) = framer.next_frame() {
                    break Some(f);
                }
                tokio::select! {
                    _ = in_tx.closed() => break None,
                    filled = fill(read.as_ref(), &mut framer, &mut buf) => {
                        if !matches!(filled, Ok(true)) {
                            break None;
                        }
                    }
                }
            };
            let input = match frame {
                None => return,
                Some(Frame::Line(line, _)) => input_of(&line),
                Some(Frame::TooLong) => Err("console input line too long".into()),
            };
            match input {
                Ok(i) => {
                    if in_tx.send(i).await.is_err() {
                        return;
                    }
                }
                Err(why) => {
                    if notices.send(Event::Notice(why)).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let writing = async move {
        while let Some(event) = out_rx.recv().await {
            let mut line = serde_json::to_vec(&line_of(event)).unwrap_or_default();
            line.push(b'\n');
            if write.write_all(&line).await.is_err() {
                return;
            }
        }
    };
    tokio::join!(
        pump(session, no_scrollback, in_rx, out_tx),
        reading,
        writing
    );
}
