//! Taking up the journal at start: ended updates come back as history,
//! unfinished ones are resumed where their SPs say they stand.

use super::{Bound, Registry};
use crate::image::Image;
use crate::record::{Failure, FailureKind, Phase, UpdateRow, UpdateSpec};
use crate::sp::SpHandle;
use crate::update::UpdateHandle;
use actix::prelude::*;
use std::sync::Arc;
use tracing::warn;

impl Registry {
    /// Take up the journalled `rows`: ended ones as history, the others
    /// resumed where their SPs say they stand.
    pub(super) fn restore(&mut self, rows: Vec<UpdateRow>, ctx: &Context<Self>) {
        let now = tokio::time::Instant::now();
        let mut ended = Vec::new();
        for row in rows {
            let id = row.id;
            let (spec, mut progress) = match row.into_parts(now) {
                Ok(parts) => parts,
                Err(why) => {
                    warn!(update = %id, %why, "journalled update cannot be read; left in the journal");
                    continue;
                }
            };
            let spec = Arc::new(spec);
            if !progress.phase.is_terminal() {
                match self.resumable(&spec) {
                    Ok((sp, image)) => {
                        let starting = progress.phase == Phase::Starting;
                        let pending =
                            crate::update::resume(sp, spec, image, progress, self.context(ctx));
                        let bound = if starting {
                            // Whether the SP took the prepare is still open.
                            self.await_start(id, pending.accepted, ctx);
                            Bound::Starting {
                                handle: pending.handle,
                                waiting: Vec::new(),
                            }
                        } else {
                            pending.handle.follow_metrics();
                            Bound::Accepted(pending.handle)
                        };
                        self.updates.insert(id, bound);
                        continue;
                    }
                    Err(why) => {
                        warn!(update = %id, sp = %spec.sp, %why, "journalled update cannot go on");
                        if let Some((_, sp)) = self.sps.get(&spec.sp) {
                            crate::update::abort_on_sp(sp.clone(), spec.clone());
                        }
                        let failure = Failure::new(FailureKind::Other, why);
                        progress.end(Phase::Failed, Some(failure), now);
                        if let Some(j) = &self.journal {
                            j.write(spec.clone(), progress.clone());
                        }
                    }
                }
            }
            ended.push((progress.finished_unix_ms, id));
            let handle = UpdateHandle::ended(spec, progress);
            self.updates.insert(id, Bound::Accepted(handle));
        }
        ended.sort();
        self.finished = ended.into_iter().map(|(_, id)| id).collect();
        self.prune();
    }

    /// The SP and image a journalled update needs to go on.
    fn resumable(&self, spec: &UpdateSpec) -> Result<(SpHandle, Arc<Image>), String> {
        let (_, sp) = self
            .sps
            .get(&spec.sp)
            .ok_or_else(|| format!("SP {} is no longer in the configuration", spec.sp))?;
        let spool = self.spool.as_ref().ok_or("no image spool")?;
        let image = spool
            .get(&spec.image, spec.total_bytes, &self.images)
            .map_err(|e| format!("its image cannot be read back: {e}"))?;
        Ok((sp.clone(), image))
    }
}
