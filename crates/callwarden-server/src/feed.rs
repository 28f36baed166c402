//! The incident change feed of this replica: one Postgres LISTEN on the channel every incident
//! change is announced on (in the changing transaction, so only committed changes arrive, from
//! any replica), fanned out to the WatchIncidents streams here.

use callwarden_storage::incidents::CHANGES_CHANNEL;
use sqlx::{PgPool, postgres::PgListener};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Changes a slow watcher may fall behind by before it is told to list again.
const FEED_BUFFER: usize = 4096;

/// (incident, the kind of the event that changed it).
pub type Change = (Uuid, String);

#[derive(Clone)]
pub struct IncidentFeed {
    tx: broadcast::Sender<Change>,
}

impl Default for IncidentFeed {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(FEED_BUFFER).0,
        }
    }
}

impl IncidentFeed {
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.tx.subscribe()
    }

    /// Listens until shutdown, reconnecting after errors. Changes made while the listener was
    /// away are not replayed: watchers list to catch up.
    pub async fn run(self, pg: PgPool, shutdown: CancellationToken) {
        loop {
            let listened = tokio::select! {
                () = shutdown.cancelled() => return,
                r = self.listen(&pg) => r,
            };
            if let Err(e) = listened {
                tracing::warn!(error = %e, "incident change feed lost; reconnecting");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    async fn listen(&self, pg: &PgPool) -> Result<(), sqlx::Error> {
        let mut listener = PgListener::connect_with(pg).await?;
        listener.listen(CHANGES_CHANNEL).await?;
        loop {
            let n = listener.recv().await?;
            let Some((id, kind)) = n.payload().split_once(' ') else {
                continue;
            };
            let Ok(id) = id.parse() else { continue };
            // No watcher is not an error.
            let _ = self.tx.send((id, kind.to_owned()));
        }
    }
}
