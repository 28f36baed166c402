//! Routes commands to the switch streams this replica holds. Commands reach every replica
//! through Redis pub/sub; each replica hands them to its local streams of that switch.

use callwarden_domain::call::Command;
use callwarden_storage::live::LiveState;
use futures::StreamExt;
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Buffer per stream, before deliveries to a slow switch queue up in tasks of their own.
const STREAM_BUFFER: usize = 256;

#[derive(Debug, Clone)]
pub enum HubEvent {
    Command(Command),
    /// Messages may have been missed (the subscription was lost): send the pending list again.
    Resync,
}

/// The streams of one switch on this replica, each with its registration id.
type SwitchStreams = Vec<(u64, mpsc::Sender<HubEvent>)>;

#[derive(Default)]
pub struct CommandHub {
    streams: Mutex<HashMap<String, SwitchStreams>>,
    next_id: AtomicU64,
}

/// A stream's place in the hub; dropping it leaves the hub.
pub struct Registration {
    hub: Arc<CommandHub>,
    switch_id: String,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut streams = self.hub.streams.lock().expect("hub lock");
        if let Some(list) = streams.get_mut(&self.switch_id) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                streams.remove(&self.switch_id);
            }
        }
        metrics::gauge!("callwarden_command_streams_open").decrement(1);
    }
}

/// Hands an event to a stream without blocking the router. A slow switch must still get its
/// TERMINATE, so a full buffer waits for room in a task of its own.
fn offer(tx: &mpsc::Sender<HubEvent>, event: HubEvent) {
    if let Err(mpsc::error::TrySendError::Full(event)) = tx.try_send(event) {
        let tx = tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(event).await;
        });
    }
}

impl CommandHub {
    pub fn register(self: &Arc<Self>, switch_id: &str) -> (Registration, mpsc::Receiver<HubEvent>) {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.streams
            .lock()
            .expect("hub lock")
            .entry(switch_id.to_owned())
            .or_default()
            .push((id, tx));
        metrics::gauge!("callwarden_command_streams_open").increment(1);
        let registration = Registration {
            hub: self.clone(),
            switch_id: switch_id.to_owned(),
            id,
        };
        (registration, rx)
    }

    fn dispatch(&self, command: Command) {
        let streams = self.streams.lock().expect("hub lock");
        for (_, tx) in streams.get(&command.switch_id).into_iter().flatten() {
            offer(tx, HubEvent::Command(command.clone()));
        }
    }

    fn resync_all(&self) {
        let streams = self.streams.lock().expect("hub lock");
        for (_, tx) in streams.values().flatten() {
            offer(tx, HubEvent::Resync);
        }
    }

    /// Follows the command channel until shutdown, resubscribing when Redis drops it.
    pub async fn run(self: Arc<Self>, live: LiveState, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let feed = tokio::select! {
                () = shutdown.cancelled() => return,
                feed = live.subscribe_commands() => feed,
            };
            match feed {
                Ok(mut feed) => {
                    // Whatever was published before this subscription took hold was missed.
                    self.resync_all();
                    loop {
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            next = feed.next() => match next {
                                Some(command) => self.dispatch(command),
                                None => break,
                            },
                        }
                    }
                    tracing::warn!("command subscription lost; resubscribing");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot subscribe to commands; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
            }
        }
    }
}
