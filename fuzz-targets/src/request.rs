//! `control_request`: one control request line, as the daemon takes it
//! off the socket: bytes that are not UTF-8 are refused before parsing,
//! the rest goes to `mgsd::api::parse_request`.
//!
//! A refusal must be an error response that serialises (it is sent). A
//! request must survive what `mgsctl` does to it, serialise and parse
//! back to the same command, and what the daemon then reads off it must
//! not panic: its name, class and target, the component, caboose key and
//! time arguments, and for `rollout_start` the plan's waves and their
//! course ([`crate::plan::exercise`]).

use mgsd::api::{parse_request, parse_since, Command, Response};

/// Parse `data` as one request line and check what comes of it.
pub fn control_request(data: &[u8]) {
    crate::alloc_limit::bounded(|| {
        let Ok(line) = std::str::from_utf8(data) else {
            return;
        };
        check_line(line);
    })
}

/// Parse `line` as the daemon does and check the result.
pub fn check_line(line: &str) {
    match parse_request(line) {
        Ok(request) => {
            let command = request.command;
            let _ = (command.name(), command.class(), command.target());
            let _ = format!("{command:?}");
            let text = serde_json::to_string(&command).expect("a parsed command serialises");
            let again = parse_request(&text)
                .unwrap_or_else(|e| panic!("{text} does not parse back: {:?}", e.error));
            assert_eq!(
                again.command, command,
                "a command round-trips through {text}"
            );
            arguments(&command);
        }
        Err(response) => refusal(&response),
    }
}

/// An error response is sent: it serialises and reads back.
fn refusal(response: &Response) {
    assert!(response.error.is_some(), "a refusal is an error response");
    let text = serde_json::to_string(response).expect("an error response serialises");
    let back: Response = serde_json::from_str(&text).expect("an error response reads back");
    assert_eq!(back.error, response.error);
}

/// What the daemon's handlers parse out of a command's fields.
fn arguments(command: &Command) {
    let component = |name: &str| {
        let _ = actors::types::parse_component(name).map(|c| c.to_string());
        let _ = actors::types::parse_updatable(name);
    };
    match command {
        Command::Caboose(a) => {
            component(&a.component);
            if let Some(k) = &a.key {
                let _: Result<[u8; 4], _> = k.as_bytes().try_into();
            }
        }
        Command::PowerSet(a) => {
            let _ = a.state.eq_ignore_ascii_case("a0");
        }
        Command::SlotSet(a) => component(&a.component),
        Command::SlotGet(a) | Command::UpdateStatus(a) => component(&a.component),
        Command::Reset(a) => {
            component(&a.component);
            let _ = mgsd::api::reset_options(a.no_watchdog, a.watchdog_ms);
        }
        Command::UpdateStart(a) => {
            component(&a.component);
            let _ = a.activation();
        }
        Command::UpdateAbort(a) => component(&a.component),
        Command::History(a) => {
            if let Some(c) = &a.component {
                component(c);
            }
            if let Some(sp) = &a.sp {
                let _ = parse_since(sp);
            }
        }
        // mgsctl's `--since` parser, on text the line carries.
        Command::State(a) | Command::PowerGet(a) => {
            let _ = parse_since(&a.sp);
        }
        Command::RolloutStart(a) => crate::plan::exercise(&a.plan),
        _ => {}
    }
}
