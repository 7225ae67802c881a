//! Following updates: one with progress bars (erase, then delivery, then
//! the activation), or every update's events as lines.

use super::{finished, Cli, Failure};
use crate::api::views::{Phase, UpdateRecord};
use crate::api::{self, Command, Response};
use indicatif::{ProgressBar, ProgressStyle};

/// Follow one update with progress bars; exit 0 only on completion.
pub(super) fn update(cli: &Cli, id: uuid::Uuid) -> Result<(), Failure> {
    let mut client = cli.connect()?;
    let mut response = client
        .request(&Command::Watch(api::WatchArgs { id: Some(id) }))
        .map_err(|e| Failure(3, e.to_string()))?;
    let mut bars = Bars::new(cli.json);
    loop {
        match event(&response)? {
            Some(record) => {
                if cli.json {
                    println!("{}", serde_json::to_string(&response).unwrap_or_default());
                }
                bars.show(&record);
            }
            None => {
                bars.finish();
                let record: UpdateRecord = cli.settle(response)?;
                return finished(cli, &record);
            }
        }
        response = next(&mut client)?;
    }
}

/// Every update's events, as lines, until the daemon closes.
pub(super) fn all(cli: &Cli) -> Result<(), Failure> {
    let mut client = cli.connect()?;
    let mut response = client
        .request(&Command::Watch(api::WatchArgs { id: None }))
        .map_err(|e| Failure(3, e.to_string()))?;
    loop {
        if cli.json {
            println!("{}", serde_json::to_string(&response).unwrap_or_default());
        } else if let Some(e) = event::<UpdateRecord>(&response)? {
            println!(
                "{} {} {} {} {}/{}",
                e.sp,
                e.component,
                e.id,
                e.phase.as_str(),
                e.bytes_acked,
                e.total_bytes
            );
        } else if let Some(err) = response.error {
            return Err(Failure(super::exit_code(err.code), err.message));
        }
        response = match client.next_response() {
            Ok(Some(r)) => r,
            _ => return Ok(()),
        };
    }
}

/// The record an event line carries, if it is one.
pub(super) fn event<T: serde::de::DeserializeOwned>(
    response: &Response,
) -> Result<Option<T>, Failure> {
    response
        .event
        .clone()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| {
            Failure(
                1,
                format!("mgsd sent an event this mgsctl cannot read: {e}"),
            )
        })
}

/// The next line of a stream; the daemon closing it is a failure.
pub(super) fn next(client: &mut crate::client::Client) -> Result<Response, Failure> {
    match client.next_response() {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(Failure(3, "mgsd closed the connection".into())),
        Err(e) => Err(Failure(3, e.to_string())),
    }
}

pub(super) fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// One progress bar: erase progress, then delivery (bytes, rate, ETA),
/// then a spinner while the SP is reset into the new image.
struct Bars {
    hidden: bool,
    bar: Option<ProgressBar>,
    delivering: bool,
    activating: bool,
}

impl Bars {
    fn new(hidden: bool) -> Self {
        Self {
            hidden,
            bar: None,
            delivering: false,
            activating: false,
        }
    }

    fn show(&mut self, r: &UpdateRecord) {
        if self.hidden {
            return;
        }
        let bar = self.bar.get_or_insert_with(|| ProgressBar::new(1));
        match r.phase {
            Phase::Activating => {
                if !self.activating {
                    self.activating = true;
                    bar.set_style(style(
                        "activating {spinner} resetting the SP into the new image ({elapsed})",
                    ));
                    bar.enable_steady_tick(std::time::Duration::from_millis(200));
                }
            }
            Phase::Preparing => {
                if let Some((current, total)) = r.erase_progress {
                    bar.set_style(style("erasing    [{bar:40}] sector {pos}/{len}"));
                    bar.set_length(u64::from(total));
                    bar.set_position(u64::from(current));
                }
            }
            _ => {
                if !self.delivering {
                    self.delivering = true;
                    bar.set_style(style(
                        "delivering [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                    ));
                    bar.set_length(r.total_bytes.max(1));
                    bar.reset();
                }
                bar.set_position(r.bytes_acked);
            }
        }
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish();
        }
    }
}
