//! `mgsctl console SP`: an SP's host serial console in this terminal.
//!
//! The terminal is put in raw mode (when it is one) and restored on every
//! way out: `~.`, the session's end, an error, a panic, and SIGTERM, SIGHUP
//! or SIGINT sent to mgsctl. Escapes, recognised after a newline as in
//! ssh: `~.` leaves, `~B` sends a break, `~?` lists them, `~~` types one
//! `~`.

use super::{Cli, Failure};
use crate::api::views::{ConsoleInputLine, ConsoleLine, ConsoleOpened};
use crate::api::{Command, ConsoleAttachArgs};
use base64::Engine;
use std::io::{BufRead, Read, Write};
use std::sync::OnceLock;

const HELP: &str = "\r\nmgsctl console escapes (after a newline):\r\n  ~.  leave\r\n  ~B  send a break\r\n  ~?  this help\r\n  ~~  type a ~\r\n";

/// What a typed byte means.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Type these bytes.
    Send(Vec<u8>),
    Leave,
    Break,
    Help,
}

/// The escape recogniser: a `~` right after a newline (or at the start)
/// is held until the next byte says what it is.
#[derive(Debug)]
pub struct Escapes {
    line_start: bool,
    tilde: bool,
}

impl Default for Escapes {
    fn default() -> Self {
        Self {
            line_start: true,
            tilde: false,
        }
    }
}

impl Escapes {
    /// What `input` means, in order.
    pub fn feed(&mut self, input: &[u8]) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut typed = Vec::new();
        for &b in input {
            if self.tilde {
                self.tilde = false;
                let special = match b {
                    b'.' => Some(Action::Leave),
                    b'B' => Some(Action::Break),
                    b'?' => Some(Action::Help),
                    _ => None,
                };
                if let Some(a) = special {
                    if !typed.is_empty() {
                        actions.push(Action::Send(std::mem::take(&mut typed)));
                    }
                    let leave = a == Action::Leave;
                    actions.push(a);
                    if leave {
                        return actions;
                    }
                    continue;
                }
                // Not an escape: the held `~` goes out (once for `~~`).
                typed.push(b'~');
                if b == b'~' {
                    self.line_start = false;
                    continue;
                }
            } else if self.line_start && b == b'~' {
                self.tilde = true;
                continue;
            }
            typed.push(b);
            self.line_start = b == b'\r' || b == b'\n';
        }
        if !typed.is_empty() {
            actions.push(Action::Send(typed));
        }
        actions
    }
}

/// The terminal's settings before raw mode, for whoever restores them.
static SAVED: OnceLock<rustix::termios::Termios> = OnceLock::new();

fn restore_terminal() {
    if let Some(t) = SAVED.get() {
        let _ =
            rustix::termios::tcsetattr(std::io::stdin(), rustix::termios::OptionalActions::Now, t);
    }
}

/// Raw mode while held.
struct RawMode;

impl RawMode {
    fn enter() -> Option<Self> {
        let stdin = std::io::stdin();
        if !rustix::termios::isatty(&stdin) {
            return None;
        }
        let saved = rustix::termios::tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        let _ = SAVED.set(saved);
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw).ok()?;
        Some(RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Restore the terminal and exit when told to stop.
fn on_signals() {
    std::thread::spawn(|| {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut hup), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = hup.recv() => {}
                _ = int.recv() => {}
            }
        });
        restore_terminal();
        eprint!("\r\n[mgsctl: signalled; console left]\r\n");
        std::process::exit(130);
    });
}

fn note(text: &str) {
    let mut err = std::io::stderr();
    let _ = write!(err, "\r\n[mgsctl: {text}]\r\n");
    let _ = err.flush();
}

pub(super) fn run(cli: &Cli, a: &ConsoleAttachArgs) -> Result<(), Failure> {
    if cli.http.is_some() {
        return Err(Failure(
            5,
            "mgsctl console talks to the local socket; over HTTP, attach a websocket to \
             /sp/{type}/{slot}/component/sp3-host-cpu/serial-console/attach"
                .into(),
        ));
    }
    let client = cli.connect()?;
    let mut client = client;
    let response = client
        .request(&Command::ConsoleAttach(a.clone()))
        .map_err(|e| Failure(3, format!("talking to mgsd: {e}")))?;
    let opened: ConsoleOpened = cli.settle(response)?;
    let (mut reader, writer) = client
        .into_unix()
        .ok_or_else(|| Failure(1, "the console needs the socket".into()))?;
    if !cli.json {
        let mode = if opened.read_only {
            "watching (read-only)"
        } else {
            "attached"
        };
        eprintln!(
            "[mgsctl: {mode} to {} {}; ~. leaves, ~? lists escapes]",
            opened.sp, opened.component
        );
    }
    on_signals();
    let raw = RawMode::enter();
    let read_only = a.read_only;
    std::thread::spawn(move || typist(writer, read_only));
    let mut out = std::io::stdout();
    let mut line = String::new();
    let ended = loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => break None,
            Ok(_) => {}
            Err(e) => break Some(format!("connection to mgsd lost: {e}")),
        }
        let Ok(event) = serde_json::from_str::<ConsoleLine>(&line) else {
            continue;
        };
        match event {
            ConsoleLine::Output { data } => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .unwrap_or_default();
                let _ = out.write_all(&bytes);
                let _ = out.flush();
            }
            ConsoleLine::Lost { bytes } => note(&format!(
                "{bytes} bytes of console output lost (this client read too slowly)"
            )),
            ConsoleLine::Reattached { reason } => note(&format!(
                "console attached again ({reason}); output meanwhile is lost"
            )),
            ConsoleLine::Notice { message } => note(&message),
            ConsoleLine::Ended { reason } => break Some(reason),
        }
    };
    drop(raw);
    match ended {
        None => Ok(()),
        Some(reason) => Err(Failure(6, format!("console session ended: {reason}"))),
    }
}

/// Read the keyboard, send what is typed; `~.` detaches.
fn typist(mut writer: std::os::unix::net::UnixStream, read_only: bool) {
    let mut stdin = std::io::stdin();
    let mut escapes = Escapes::default();
    let mut buf = [0u8; 4096];
    let send = |w: &mut std::os::unix::net::UnixStream, line: ConsoleInputLine| {
        let mut text = serde_json::to_vec(&line).unwrap_or_default();
        text.push(b'\n');
        w.write_all(&text)
    };
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) | Err(_) => {
                // The keyboard is gone (stdin closed): leave.
                let _ = send(&mut writer, ConsoleInputLine::Detach(true));
                return;
            }
            Ok(n) => n,
        };
        for action in escapes.feed(&buf[..n]) {
            let sent = match action {
                Action::Send(bytes) if !read_only => send(
                    &mut writer,
                    ConsoleInputLine::Write(
                        base64::engine::general_purpose::STANDARD.encode(bytes),
                    ),
                ),
                Action::Send(_) => Ok(()),
                Action::Break if !read_only => send(&mut writer, ConsoleInputLine::Break(true)),
                Action::Break => Ok(()),
                Action::Help => {
                    let _ = std::io::stderr().write_all(HELP.as_bytes());
                    Ok(())
                }
                Action::Leave => {
                    let _ = send(&mut writer, ConsoleInputLine::Detach(true));
                    let _ = writer.shutdown(std::net::Shutdown::Write);
                    return;
                }
            };
            if sent.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_after_a_newline_only() {
        let mut e = Escapes::default();
        assert_eq!(e.feed(b"~?"), vec![Action::Help]);
        assert_eq!(
            e.feed(b"ls ~.x\r"),
            vec![Action::Send(b"ls ~.x\r".to_vec())]
        );
        // Still at a line's start after an escape.
        assert_eq!(
            e.feed(b"\r~B~."),
            vec![Action::Send(b"\r".to_vec()), Action::Break, Action::Leave]
        );
        let mut e = Escapes::default();
        assert_eq!(
            e.feed(b"a\r~."),
            vec![Action::Send(b"a\r".to_vec()), Action::Leave]
        );
        // `~~` types one `~`; another letter types both.
        let mut e = Escapes::default();
        assert_eq!(e.feed(b"~~"), vec![Action::Send(b"~".to_vec())]);
        let mut e = Escapes::default();
        assert_eq!(e.feed(b"~x"), vec![Action::Send(b"~x".to_vec())]);
        // Split across reads.
        let mut e = Escapes::default();
        assert_eq!(e.feed(b"\r~"), vec![Action::Send(b"\r".to_vec())]);
        assert_eq!(e.feed(b"."), vec![Action::Leave]);
    }
}
