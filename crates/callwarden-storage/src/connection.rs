//! The Redis connection every part of the service shares: one multiplexed connection that
//! reconnects on its own, to a fixed address or to the primary that Redis Sentinel names.
//!
//! With Sentinel, a failed command (the node refused a write as a replica, or could not be
//! reached) makes the connection ask Sentinel for the primary in the background and move there
//! if it changed; the command itself returns its error, and its caller's fallback applies (a
//! check answers from recent results or Postgres, an index write is retried). Clones share the
//! connection, so one move moves them all.

use redis::{
    Client, Cmd, Pipeline, RedisError, RedisFuture, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    sentinel::{SentinelClient, SentinelServerType},
};
use std::{
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

/// Where Redis is.
#[derive(Debug, Clone)]
pub enum RedisTarget {
    /// One address (a standalone server, or a proxy or managed endpoint that follows failovers).
    Url(String),
    /// The primary of `master_name`, as the Sentinels at `sentinels` name it; `node` carries the
    /// password and database for the data nodes (a `redis://` URL whose address is ignored).
    Sentinel {
        sentinels: Vec<String>,
        master_name: String,
        node: String,
    },
}

#[derive(Clone)]
pub struct RedisConn {
    inner: Arc<Inner>,
}

struct Inner {
    /// The node in use, and its connection.
    current: RwLock<(Client, ConnectionManager)>,
    sentinel: Option<tokio::sync::Mutex<SentinelClient>>,
    config: ConnectionManagerConfig,
    /// Set while a lookup of the primary runs, so failing callers share one.
    moving: AtomicBool,
}

impl RedisConn {
    /// Connects with bounded connection and response times.
    pub async fn connect(target: &RedisTarget, timeout: Duration) -> Result<Self, RedisError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let (client, sentinel) = match target {
            RedisTarget::Url(url) => (Client::open(url.as_str())?, None),
            RedisTarget::Sentinel {
                sentinels,
                master_name,
                node,
            } => {
                let node = redis::IntoConnectionInfo::into_connection_info(node.as_str())?;
                let node = redis::sentinel::SentinelNodeConnectionInfo::default()
                    .set_redis_connection_info(node.redis_settings().clone());
                let mut sentinel = SentinelClient::build(
                    sentinels.clone(),
                    master_name.clone(),
                    Some(node),
                    SentinelServerType::Master,
                )?;
                let client = tokio::time::timeout(timeout, sentinel.async_get_client())
                    .await
                    .map_err(|_| {
                        RedisError::from((redis::ErrorKind::Io, "no Sentinel answered in time"))
                    })??;
                (client, Some(tokio::sync::Mutex::new(sentinel)))
            }
        };
        let manager = ConnectionManager::new_with_config(client.clone(), config.clone()).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                current: RwLock::new((client, manager)),
                sentinel,
                config,
                moving: AtomicBool::new(false),
            }),
        })
    }

    /// A client for the node in use, for what needs a connection of its own (pub/sub).
    pub fn client(&self) -> Client {
        self.inner.current.read().expect("redis lock").0.clone()
    }

    fn manager(&self) -> ConnectionManager {
        self.inner.current.read().expect("redis lock").1.clone()
    }

    /// After a failed command: with Sentinel, look for the primary (once at a time).
    fn failed(&self, e: &RedisError) {
        let moved = e.is_io_error()
            || e.is_connection_refusal()
            || e.is_connection_dropped()
            || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly);
        if !moved || self.inner.sentinel.is_none() || self.inner.moving.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.follow_primary().await {
                tracing::warn!(error = %e, "could not ask Sentinel for the Redis primary");
            }
            this.inner.moving.store(false, Ordering::Release);
        });
    }

    async fn follow_primary(&self) -> Result<(), RedisError> {
        let Some(sentinel) = &self.inner.sentinel else {
            return Ok(());
        };
        let client = sentinel.lock().await.async_get_client().await?;
        let address = client.get_connection_info().addr().clone();
        if *self.client().get_connection_info().addr() == address {
            return Ok(());
        }
        let manager =
            ConnectionManager::new_with_config(client.clone(), self.inner.config.clone()).await?;
        *self.inner.current.write().expect("redis lock") = (client, manager);
        metrics::counter!("callwarden_redis_primary_changes_total").increment(1);
        tracing::warn!(primary = %address, "Sentinel names a new Redis primary; moved there");
        Ok(())
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let mut manager = self.manager();
        Box::pin(async move {
            let reply = manager.req_packed_command(cmd).await;
            if let Err(e) = &reply {
                self.failed(e);
            }
            reply
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let mut manager = self.manager();
        Box::pin(async move {
            let reply = manager.req_packed_commands(pipeline, offset, count).await;
            match &reply {
                Err(e) => self.failed(e),
                // A pipeline's commands fail one by one: a replica refuses its writes.
                Ok(values) => {
                    let refused = values.iter().find_map(|v| match v {
                        Value::ServerError(e)
                            if e.kind() == Some(redis::ServerErrorKind::ReadOnly) =>
                        {
                            Some(RedisError::from(e.clone()))
                        }
                        _ => None,
                    });
                    if let Some(e) = refused {
                        self.failed(&e);
                    }
                }
            }
            reply
        })
    }

    fn get_db(&self) -> i64 {
        self.manager().get_db()
    }
}
