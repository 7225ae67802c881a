//! The serial console over HTTP: a websocket per session, as the
//! reference's `serial-console/attach` is. Binary (or text) messages from
//! the client are typed; the console's output goes out as binary messages.
//! An operate-class caller gets the typing session (one at a time: a
//! second is refused with 409 naming the holder); a read-class caller
//! watches. The session's end is the close frame's reason.

use super::error::{ApiError, Path};
use super::serve::Caller;
use super::sp::{failed, ComponentPath, Done};
use super::{Api, Audited};
use crate::api::{Class, ConsoleAttachArgs, ConsoleDetachArgs};
use crate::control::console::{self, Event, Input};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use tokio::sync::mpsc;

#[utoipa::path(get, path = "/sp/{type}/{slot}/component/{component}/serial-console/attach",
    operation_id = "sp_component_serial_console_attach",
    description = "Upgrade into a websocket attached to the component's serial console. Output \
        arrives as binary messages, starting with the scrollback; messages sent are typed \
        (operate access: one typing session at a time; read access watches).",
    params(ComponentPath),
    responses((status = "default", description = "", content_type = "*/*", body = serde_json::Value)))]
pub(super) async fn attach(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(p): Path<ComponentPath>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let sp = api.sp_name(p.r#type, p.slot)?;
    let args = ConsoleAttachArgs {
        sp,
        component: p.component,
        read_only: caller.class != Ok(Class::Operate),
        no_scrollback: false,
    };
    let opened = console::open(api.gw(), &args, caller.who())
        .await
        .map_err(failed);
    if !args.read_only {
        // A typing session is an operate action: audited.
        let what = Audited {
            command: "console_attach",
            sp: Some(args.sp.clone()),
            component: Some(args.component.clone()),
            update_id: None,
        };
        api.audit(what.entry(&caller), opened.as_ref().err());
    }
    let (session, _) = opened?;
    Ok(upgrade.on_upgrade(move |socket| serve(socket, session)))
}

async fn serve(socket: WebSocket, session: actors::sp::ConsoleSession) {
    use futures_util::{SinkExt, StreamExt};
    let (mut tx, mut rx) = socket.split();
    let (in_tx, in_rx) = mpsc::channel(4);
    let (out_tx, mut out_rx) = mpsc::channel(4);
    let reading = async move {
        loop {
            tokio::select! {
                _ = in_tx.closed() => return,
                got = rx.next() => {
                    let input = match got {
                        Some(Ok(Message::Binary(b))) => Input::Write(b.to_vec()),
                        Some(Ok(Message::Text(t))) => Input::Write(t.as_bytes().to_vec()),
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                        Some(Ok(_)) => continue,
                    };
                    if in_tx.send(input).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let writing = async move {
        while let Some(event) = out_rx.recv().await {
            let message = match event {
                Event::Output(data) => Message::Binary(data.into()),
                Event::Ended(reason) => Message::Close(Some(CloseFrame {
                    code: axum::extract::ws::close_code::AWAY,
                    reason: reason.chars().take(120).collect::<String>().into(),
                })),
                // The reference's stream is bytes only; these are counted
                // in metrics and logged instead.
                Event::Lost(_) | Event::Reattached(_) | Event::Notice(_) => continue,
            };
            if tx.send(message).await.is_err() {
                return;
            }
        }
        let _ = tx.close().await;
    };
    tokio::join!(
        console::pump(session, false, in_rx, out_tx),
        reading,
        writing
    );
}

#[utoipa::path(post, path = "/sp/{type}/{slot}/component/{component}/serial-console/detach",
    operation_id = "sp_component_serial_console_detach",
    description = "End the typing session on the component's console by force (and detach the \
        SP's console, which mgsd then attaches again).",
    params(ComponentPath),
    responses((status = 204, description = "resource updated"),
        (status = "4XX", description = "Error", body = super::error::Error), (status = "5XX", description = "Error", body = super::error::Error)))]
pub(super) async fn detach(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(p): Path<ComponentPath>,
) -> Result<Done, ApiError> {
    let sp = api.sp_name(p.r#type, p.slot)?;
    let what = Audited {
        command: "console_detach",
        sp: Some(sp.clone()),
        component: Some(p.component.clone()),
        update_id: None,
    };
    let gw = api.gw().clone();
    api.operate(&caller, what, async move {
        let args = ConsoleDetachArgs {
            sp,
            component: p.component,
        };
        console::detach(&gw, args).await.map_err(failed)?;
        Ok(Done)
    })
    .await
}
