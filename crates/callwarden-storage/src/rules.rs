//! The rule book: rules written to Postgres (the record) and then through to the Redis index,
//! and the lookups a check needs. Every rule change goes through here.

use crate::{StorageError, index::RuleIndex, recent::RecentResults};
use callwarden_domain::{
    phone::E164,
    rule::{Effect, NewRule, Pattern, Rule, RuleId, RuleMatch, Scope},
};
use chrono::{DateTime, SubsecRound, Utc};
use futures::TryStreamExt;
use sqlx::{PgPool, Postgres, QueryBuilder, Transaction};
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use uuid::Uuid;

/// A (scope, pattern) pair: the unit the index stores.
type Slot = (Scope, Pattern);

/// Rows per COPY and slots per Redis pipeline: big enough to amortise round trips, small
/// enough to keep each message and each pipeline reply modest.
const BATCH: usize = 5_000;
/// How far a rebuild looks back for writes that raced with it (clock skew between replicas).
const REBUILD_OVERLAP: chrono::Duration = chrono::Duration::seconds(5);
/// Kept alive while a rebuild runs; after a crash, other replicas take over within this.
const REBUILD_LOCK_TTL: Duration = Duration::from_secs(30);

/// Advisory lock namespaces (the first of the two keys): one slot's write-through, and bulk
/// index syncs, which exclude all write-throughs.
const LOCK_SLOT: i32 = 0x4357_0001;
const LOCK_BULK_SYNC: i32 = 0x4357_0002;

/// Announced in every transaction that changes rules, so that every replica forgets its recent
/// results (see [`RuleBook::follow_changes`]).
pub const RULES_CHANNEL: &str = "callwarden_rules";
/// A change announced by another replica reaches its index a moment after its commit (the
/// write-through follows it): recent results are forgotten once more after this, so a lookup
/// that read the index in between is not kept.
const FORGET_AGAIN_AFTER: Duration = Duration::from_secs(2);

const RULE_COLUMNS: &str = "id, pattern, effect, scope_kind, scope_value, reason, created_by, \
     created_at, expires_at, removed_at, removed_by";

#[derive(Clone)]
pub struct RuleBook {
    pg: PgPool,
    index: RuleIndex,
    /// The earliest change whose index write failed after the record was committed: every
    /// slot changed since then is rewritten by [`RuleBook::maintain`], so the index converges
    /// without anyone re-adding the rule.
    pending_since: Arc<Mutex<Option<DateTime<Utc>>>>,
    /// Set while this replica rebuilds, so checks do not start a second rebuild.
    rebuilding: Arc<AtomicBool>,
    /// What checks found lately, to answer from while Redis cannot.
    recent: Arc<RecentResults>,
    /// Names this replica's announcements of rule changes, which it need not act on twice.
    instance: Arc<str>,
}

/// Which rules [`RuleBook::list`] returns.
#[derive(Debug, Clone, Default)]
pub struct RuleFilter {
    pub scope: Option<Scope>,
    pub effect: Option<Effect>,
    /// Only canonical patterns starting with this, e.g. "+48".
    pub pattern_prefix: Option<String>,
    /// Include removed and expired rules.
    pub include_inactive: bool,
}

/// Where a check's rules came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The Redis index: the usual case.
    Index,
    /// This replica's recent results (Redis slow or down, or its index being rebuilt).
    Recent,
    /// Postgres (the same, and no recent result).
    Record,
    /// Nowhere in time: the line's failure policy decides.
    Nothing,
}

impl Source {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Index => "index",
            Self::Recent => "recent",
            Self::Record => "postgres",
            Self::Nothing => "policy",
        }
    }
}

/// What [`RuleBook::screen`] read for one check.
#[derive(Debug, Clone)]
pub struct Screened {
    /// The rules that may apply; `None` if they could not be read within the budget.
    pub rules: Option<Vec<RuleMatch>>,
    pub source: Source,
    /// The values of the extra keys, in order (all `None` when Redis failed).
    pub extras: Vec<Option<String>>,
    /// False when Redis failed or was too slow: extras are unknown and the added commands may
    /// not have run.
    pub redis_ok: bool,
}

pub struct RulePage {
    pub rules: Vec<Rule>,
    /// The id to continue after, if there are more.
    pub next_after: Option<RuleId>,
}

#[derive(sqlx::FromRow)]
struct RuleRow {
    id: Uuid,
    pattern: String,
    effect: String,
    scope_kind: String,
    scope_value: String,
    reason: String,
    created_by: String,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    removed_at: Option<DateTime<Utc>>,
    removed_by: Option<String>,
}

impl TryFrom<RuleRow> for Rule {
    type Error = StorageError;
    fn try_from(r: RuleRow) -> Result<Self, Self::Error> {
        let (scope, pattern) = stored_slot(&r.scope_kind, &r.scope_value, &r.pattern)?;
        Ok(Rule {
            id: RuleId(r.id),
            pattern,
            effect: stored_effect(&r.effect)?,
            scope,
            reason: r.reason,
            created_by: r.created_by,
            created_at: r.created_at,
            expires_at: r.expires_at,
            removed_at: r.removed_at,
            removed_by: r.removed_by,
        })
    }
}

/// Reads a slot as stored; a row this version cannot read is corrupt, never user input.
fn stored_slot(scope_kind: &str, scope_value: &str, pattern: &str) -> Result<Slot, StorageError> {
    match (
        Scope::from_parts(scope_kind, scope_value),
        Pattern::from_canonical(pattern),
    ) {
        (Some(scope), Some(pattern)) => Ok((scope, pattern)),
        _ => Err(StorageError::Corrupt(format!(
            "slot {scope_kind}/{scope_value}/{pattern}"
        ))),
    }
}

fn stored_effect(effect: &str) -> Result<Effect, StorageError> {
    effect.parse().map_err(StorageError::Corrupt)
}

/// One slot and one of its active rules (none: the slot has no active rule left).
#[derive(sqlx::FromRow)]
struct SlotRow {
    pattern: String,
    scope_kind: String,
    scope_value: String,
    id: Option<Uuid>,
    effect: Option<String>,
    expires_at: Option<DateTime<Utc>>,
}

impl SlotRow {
    fn into_parts(self) -> Result<(Slot, Option<RuleMatch>), StorageError> {
        let slot = stored_slot(&self.scope_kind, &self.scope_value, &self.pattern)?;
        let rule = match (self.id, &self.effect) {
            (Some(id), Some(effect)) => Some(RuleMatch {
                id: RuleId(id),
                pattern: slot.1.clone(),
                scope: slot.0.clone(),
                effect: stored_effect(effect)?,
                expires_at: self.expires_at,
            }),
            _ => None,
        };
        Ok((slot, rule))
    }

    /// The rule of a row known to hold one (queries over active rules only).
    fn into_match(self) -> Result<Option<RuleMatch>, StorageError> {
        self.into_parts().map(|(_, rule)| rule)
    }
}

impl RuleBook {
    /// `recent_results`: how many checks' results to keep in memory (0: none).
    pub fn new(pg: PgPool, index: RuleIndex, recent_results: usize) -> Self {
        Self {
            pg,
            index,
            pending_since: Arc::default(),
            rebuilding: Arc::default(),
            recent: Arc::new(RecentResults::new(recent_results)),
            instance: Uuid::new_v4().simple().to_string().into(),
        }
    }

    /// Forgets recent results whenever another replica announces a rule change, until
    /// `shutdown`. While the feed is lost (Postgres away) results are kept, since no rule can
    /// change without Postgres; once it is heard again everything is forgotten, since one may
    /// have changed in between (Postgres away for this replica only).
    pub async fn follow_changes(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let lost = tokio::select! {
                () = &mut shutdown => return,
                lost = self.listen_changes() => lost,
            };
            tracing::warn!(error = %lost, "rule change feed lost; reconnecting");
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    async fn listen_changes(&self) -> sqlx::Error {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&self.pg).await {
            Ok(l) => l,
            Err(e) => return e,
        };
        if let Err(e) = listener.listen(RULES_CHANNEL).await {
            return e;
        }
        // Whatever was remembered before this listener started may predate a change.
        self.recent.forget_all();
        let mut again: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                heard = listener.try_recv() => match heard {
                    // This replica's own change: it forgot around its own index write.
                    Ok(Some(n)) if n.payload() == &*self.instance => {}
                    Ok(Some(_)) => {
                        self.recent.forget_all();
                        again = Some(tokio::time::Instant::now() + FORGET_AGAIN_AFTER);
                    }
                    // The connection dropped; anything announced meanwhile went unheard.
                    Ok(None) => return sqlx::Error::PoolClosed,
                    Err(e) => return e,
                },
                () = async { tokio::time::sleep_until(again.expect("guarded")).await }, if again.is_some() => {
                    self.recent.forget_all();
                    again = None;
                }
            }
        }
    }

    /// How many recent results this replica holds (for tests and the gauge).
    pub fn recent_results(&self) -> usize {
        self.recent.held()
    }

    /// Records a rule, then writes it through to the index. The rule counts as added once
    /// Postgres has it; a failed index write is retried in the background.
    pub async fn add(&self, rule: NewRule, now: DateTime<Utc>) -> Result<Rule, StorageError> {
        let rule = materialise(rule, now);
        let mut tx = self.pg.begin().await?;
        insert_batch(&mut tx, std::slice::from_ref(&rule), &self.instance).await?;
        tx.commit().await?;
        self.write_through(&rule, rule.created_at).await;
        Ok(rule)
    }

    /// Records a rule inside someone else's transaction (an incident and the blocks it leads
    /// to commit together); call [`RuleBook::index_rule`] after the commit.
    pub(crate) async fn insert_in(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        rule: NewRule,
        now: DateTime<Utc>,
    ) -> Result<Rule, StorageError> {
        let rule = materialise(rule, now);
        insert_batch(tx, std::slice::from_ref(&rule), &self.instance).await?;
        Ok(rule)
    }

    /// Writes a committed rule through to the index (see [`RuleBook::insert_in`]).
    pub(crate) async fn index_rule(&self, rule: &Rule) {
        self.write_through(rule, rule.created_at).await;
    }

    /// Starts an all-or-nothing import; nothing is visible until [`Import::commit`].
    pub async fn begin_import(&self, now: DateTime<Utc>) -> Result<Import, StorageError> {
        Ok(Import {
            book: self.clone(),
            tx: TxSlot::Idle(self.pg.begin().await?),
            batch: Vec::with_capacity(BATCH),
            imported: 0,
            now,
        })
    }

    /// Removes a rule: it stays on record with who removed it and when, and stops matching.
    pub async fn remove(
        &self,
        id: RuleId,
        removed_by: &str,
        now: DateTime<Utc>,
    ) -> Result<Rule, StorageError> {
        let mut tx = self.pg.begin().await?;
        let row: Option<RuleRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE rules SET removed_at = $2, removed_by = $3, changed_at = $2 \
             WHERE id = $1 AND removed_at IS NULL RETURNING {RULE_COLUMNS}"
        )))
        .bind(id.0)
        .bind(now)
        .bind(removed_by)
        .fetch_optional(&mut *tx)
        .await?;
        if row.is_some() {
            announce_change(&mut tx, &self.instance).await?;
        }
        tx.commit().await?;
        let Some(row) = row else {
            // Tell "never existed" from "already removed": a console shows them differently.
            self.get(id).await?;
            return Err(StorageError::RuleAlreadyRemoved(id));
        };
        let rule = Rule::try_from(row)?;
        self.write_through(&rule, now).await;
        Ok(rule)
    }

    pub async fn get(&self, id: RuleId) -> Result<Rule, StorageError> {
        let row: Option<RuleRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {RULE_COLUMNS} FROM rules WHERE id = $1"
        )))
        .bind(id.0)
        .fetch_optional(&self.pg)
        .await?;
        row.ok_or(StorageError::RuleNotFound(id))?.try_into()
    }

    /// One page of rules in creation order (ids are UUIDv7), after `after` if given.
    pub async fn list(
        &self,
        filter: &RuleFilter,
        page_size: usize,
        after: Option<RuleId>,
        now: DateTime<Utc>,
    ) -> Result<RulePage, StorageError> {
        let mut q =
            QueryBuilder::<Postgres>::new(format!("SELECT {RULE_COLUMNS} FROM rules WHERE true"));
        if let Some(after) = after {
            q.push(" AND id > ").push_bind(after.0);
        }
        if let Some(scope) = &filter.scope {
            q.push(" AND scope_kind = ").push_bind(scope.kind());
            q.push(" AND scope_value = ").push_bind(scope.value());
        }
        if let Some(effect) = filter.effect {
            q.push(" AND effect = ").push_bind(effect.as_str());
        }
        if let Some(prefix) = &filter.pattern_prefix {
            q.push(" AND starts_with(pattern, ")
                .push_bind(prefix.clone())
                .push(")");
        }
        if !filter.include_inactive {
            q.push(" AND removed_at IS NULL AND (expires_at IS NULL OR expires_at > ")
                .push_bind(now)
                .push(")");
        }
        q.push(" ORDER BY id LIMIT ")
            .push_bind(page_size as i64 + 1);
        let rows: Vec<RuleRow> = q.build_query_as().fetch_all(&self.pg).await?;
        let mut rules = rows
            .into_iter()
            .map(Rule::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        let next_after = (rules.len() > page_size).then(|| {
            rules.truncate(page_size);
            rules[page_size - 1].id
        });
        Ok(RulePage { rules, next_after })
    }

    /// What a check needs, in one Redis round trip: the rules that may decide a call from
    /// `number` in `scopes`, the values of `extra_keys`, and the commands `also` adds (a call's
    /// registration). Never takes much longer than `budget`: Redis gets three quarters of it;
    /// then the recent results answer, then Postgres in what is left, then nobody (the caller
    /// applies the line's failure policy).
    pub async fn screen(
        &self,
        number: Option<&E164>,
        scopes: &[Scope],
        extra_keys: &[String],
        also: impl FnOnce(&mut redis::Pipeline),
        now: DateTime<Utc>,
        budget: Duration,
    ) -> Screened {
        let started = tokio::time::Instant::now();
        let generation = self.recent.generation();
        let looked = tokio::time::timeout(
            budget * 3 / 4,
            self.index.lookup(number, scopes, extra_keys, also),
        )
        .await;
        let (found, extras, redis_ok) = match looked {
            Ok(Ok((found, extras))) => (found, extras, true),
            Ok(Err(e)) => {
                metrics::counter!("callwarden_redis_errors_total", "op" => "lookup").increment(1);
                tracing::debug!(error = %e, "index lookup failed");
                (None, vec![None; extra_keys.len()], false)
            }
            Err(_) => {
                metrics::counter!("callwarden_redis_errors_total", "op" => "lookup_timeout")
                    .increment(1);
                (None, vec![None; extra_keys.len()], false)
            }
        };
        let (rules, source) = 'found: {
            let Some(number) = number else {
                // A withheld caller: no rule can match.
                break 'found (Some(Vec::new()), Source::Index);
            };
            let key = (number.clone(), scopes.to_vec());
            if let Some(rules) = found {
                self.recent.remember(generation, key, &rules);
                break 'found (Some(rules), Source::Index);
            }
            if redis_ok && !self.rebuilding.load(Ordering::Relaxed) {
                // Redis came back empty (it keeps nothing on disk): rebuild behind this answer.
                let book = self.clone();
                tokio::spawn(async move { book.rebuild_logged(Utc::now()).await });
            }
            if let Some(rules) = self.recent.get(&key) {
                break 'found (Some(rules), Source::Recent);
            }
            metrics::counter!("callwarden_index_fallbacks_total").increment(1);
            let read = tokio::time::timeout_at(
                started + budget,
                self.matches_from_record(number, scopes, now),
            )
            .await;
            match read {
                Ok(Ok(rules)) => {
                    self.recent.remember(generation, key, &rules);
                    (Some(rules), Source::Record)
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "rules unavailable from Postgres too");
                    (None, Source::Nothing)
                }
                Err(_) => (None, Source::Nothing),
            }
        };
        Screened {
            rules,
            source,
            extras,
            redis_ok,
        }
    }

    async fn matches_from_record(
        &self,
        number: &E164,
        scopes: &[Scope],
        now: DateTime<Utc>,
    ) -> Result<Vec<RuleMatch>, StorageError> {
        let patterns: Vec<String> = Pattern::candidates(number).collect();
        let kinds: Vec<&str> = scopes.iter().map(Scope::kind).collect();
        let values: Vec<String> = scopes.iter().map(Scope::value).collect();
        let rows: Vec<SlotRow> = sqlx::query_as(
            "SELECT r.id, r.pattern, r.effect, r.scope_kind, r.scope_value, r.expires_at \
             FROM rules r JOIN UNNEST($2::text[], $3::text[]) AS s(scope_kind, scope_value) \
               USING (scope_kind, scope_value) \
             WHERE r.pattern = ANY($1) AND r.removed_at IS NULL \
               AND (r.expires_at IS NULL OR r.expires_at > $4)",
        )
        .bind(&patterns)
        .bind(&kinds)
        .bind(&values)
        .bind(now)
        .fetch_all(&self.pg)
        .await?;
        rows.into_iter()
            .filter_map(|r| r.into_match().transpose())
            .collect()
    }

    /// The rules in force for `number` now, in every scope: what a reviewer needs to see.
    pub async fn active_for(
        &self,
        number: &E164,
        now: DateTime<Utc>,
    ) -> Result<Vec<Rule>, StorageError> {
        let patterns: Vec<String> = Pattern::candidates(number).collect();
        let rows: Vec<RuleRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {RULE_COLUMNS} FROM rules WHERE pattern = ANY($1) AND removed_at IS NULL \
               AND (expires_at IS NULL OR expires_at > $2) ORDER BY created_at, id"
        )))
        .bind(&patterns)
        .bind(now)
        .fetch_all(&self.pg)
        .await?;
        rows.into_iter().map(Rule::try_from).collect()
    }

    /// Active rules by effect, for the rules gauge.
    pub async fn count_active(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(Effect, i64)>, StorageError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT effect, count(*) FROM rules \
             WHERE removed_at IS NULL AND (expires_at IS NULL OR expires_at > $1) GROUP BY effect",
        )
        .bind(now)
        .fetch_all(&self.pg)
        .await?;
        rows.into_iter()
            .map(|(e, n)| e.parse().map(|e| (e, n)).map_err(StorageError::Corrupt))
            .collect()
    }

    /// One maintenance pass: rebuild the index if Redis lost it, retry failed index writes.
    pub async fn maintain(&self, now: DateTime<Utc>) -> Result<(), StorageError> {
        if !self.index.is_ready().await? {
            self.rebuild(now).await?;
        }
        let pending = self.pending_since.lock().expect("pending lock").take();
        if let Some(since) = pending {
            tracing::info!(%since, "retrying index writes");
            if let Err(e) = self.sync_changed_since(since, now).await {
                self.defer(since);
                return Err(e);
            }
        }
        Ok(())
    }

    async fn rebuild_logged(&self, now: DateTime<Utc>) {
        if let Err(e) = self.rebuild(now).await {
            tracing::error!(error = %e, "index rebuild failed; checks keep answering from Postgres");
        }
    }

    /// Rebuilds the whole index from Postgres. Returns false if another replica (or task) is
    /// already at it. Checks answer from Postgres until the index is marked ready.
    pub async fn rebuild(&self, now: DateTime<Utc>) -> Result<bool, StorageError> {
        /// Clears the flag however the rebuild ends, panics and cancellation included.
        struct Running<'a>(&'a AtomicBool);
        impl Drop for Running<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        if self.rebuilding.swap(true, Ordering::AcqRel) {
            return Ok(false);
        }
        let _running = Running(&self.rebuilding);
        let token = Uuid::new_v4().to_string();
        if !self
            .index
            .try_lock_rebuild(&token, REBUILD_LOCK_TTL)
            .await?
        {
            return Ok(false);
        }
        // Hold the lock while the rebuild runs. Should it be lost (Redis restarted, a pause
        // longer than its TTL), stop: another replica may be rebuilding, and two rebuilds
        // interleaving could leave a removed rule in the index.
        let keep_lock = async {
            let mut tick = tokio::time::interval(REBUILD_LOCK_TTL / 3);
            tick.tick().await;
            loop {
                tick.tick().await;
                if !self.index.extend_rebuild(&token, REBUILD_LOCK_TTL).await? {
                    return Err(StorageError::Internal("lost the rebuild lock".into()));
                }
            }
        };
        let result = tokio::select! {
            result = self.rebuild_locked(now) => result,
            lost = keep_lock => lost,
        };
        if let Err(e) = self.index.unlock_rebuild(&token).await {
            tracing::warn!(error = %e, "could not release the rebuild lock; it expires");
        }
        result.map(|()| true)
    }

    async fn rebuild_locked(&self, now: DateTime<Utc>) -> Result<(), StorageError> {
        let started = std::time::Instant::now();
        tracing::info!("rebuilding the rule index from Postgres");
        // Withdraw the marker first: a replica that trusted it (one with another secret, or a
        // caller of `rebuild` while the index was ready) must not read slots being cleared.
        self.index.unmark_ready().await?;
        self.index.clear().await?;
        let rows = sqlx::query_as::<_, SlotRow>(
            "SELECT pattern, scope_kind, scope_value, id, effect, expires_at FROM rules \
             WHERE removed_at IS NULL AND (expires_at IS NULL OR expires_at > $1) \
             ORDER BY pattern, scope_kind, scope_value",
        )
        .bind(now)
        .fetch(&self.pg);
        let written = self.write_slots(rows).await?;
        self.index.mark_ready(now).await?;
        // Writes that committed while the scan ran may have been overwritten by older data.
        self.sync_changed_since(now - REBUILD_OVERLAP, Utc::now())
            .await?;
        metrics::counter!("callwarden_index_rebuilds_total").increment(1);
        tracing::info!(
            slots = written,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "rule index rebuilt"
        );
        Ok(())
    }

    /// Writes the current record of one rule's slot to the index. Never fails the caller: the
    /// record is already committed, so a failure is retried by [`RuleBook::maintain`].
    ///
    /// Two writers of one slot (on any replica) take turns under a Postgres advisory lock, each
    /// reading the slot after its own commit: whichever writes last writes every committed rule.
    /// Bulk syncs ([`RuleBook::sync_changed_since`]) exclude them the same way. The locks are
    /// transaction-scoped, so a cancelled request cannot leave one held.
    async fn write_through(&self, rule: &Rule, changed_at: DateTime<Utc>) {
        // Once the change is committed, before and after its index write (see below).
        self.recent.forget_all();
        let slot = (rule.scope.clone(), rule.pattern.clone());
        let result = async {
            let mut tx = self.pg.begin().await?;
            sqlx::query(
                "SELECT pg_advisory_xact_lock_shared($1, 0), pg_advisory_xact_lock($2, hashtext($3))",
            )
            .bind(LOCK_BULK_SYNC)
            .bind(LOCK_SLOT)
            .bind(format!("{}:{}:{}", slot.0.kind(), slot.0.value(), slot.1))
            .execute(&mut *tx)
            .await?;
            let rows: Vec<SlotRow> = sqlx::query_as(
                "SELECT id, pattern, effect, scope_kind, scope_value, expires_at FROM rules \
                 WHERE pattern = $1 AND scope_kind = $2 AND scope_value = $3 \
                   AND removed_at IS NULL AND (expires_at IS NULL OR expires_at > $4)",
            )
            .bind(slot.1.to_string())
            .bind(slot.0.kind())
            .bind(slot.0.value())
            .bind(changed_at)
            .fetch_all(&mut *tx)
            .await?;
            let rules = rows
                .into_iter()
                .filter_map(|r| r.into_match().transpose())
                .collect::<Result<Vec<_>, _>>()?;
            self.index.write(&[(slot, rules)]).await?;
            tx.commit().await?;
            Ok::<_, StorageError>(())
        }
        .await;
        // Again: a check may have read the slot between the commit and this write.
        self.recent.forget_all();
        if let Err(e) = result {
            metrics::counter!("callwarden_redis_errors_total", "op" => "write").increment(1);
            tracing::warn!(error = %e, "index write failed; will retry");
            self.defer(changed_at);
        }
    }

    fn defer(&self, since: DateTime<Utc>) {
        let mut pending = self.pending_since.lock().expect("pending lock");
        *pending = Some(pending.map_or(since, |p| p.min(since)));
    }

    /// Rewrites every slot that holds a rule created or removed at or after `since`, from the
    /// record, in one streamed pass (slots left without active rules are deleted). Single-rule
    /// write-throughs wait meanwhile, so neither overwrites the other with older data.
    async fn sync_changed_since(
        &self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<usize, StorageError> {
        let mut tx = self.pg.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1, 0)")
            .bind(LOCK_BULK_SYNC)
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query_as::<_, SlotRow>(
            "SELECT c.pattern, c.scope_kind, c.scope_value, r.id, r.effect, r.expires_at \
             FROM (SELECT DISTINCT pattern, scope_kind, scope_value FROM rules \
                   WHERE changed_at >= $1) c \
             LEFT JOIN rules r ON r.pattern = c.pattern AND r.scope_kind = c.scope_kind \
                  AND r.scope_value = c.scope_value AND r.removed_at IS NULL \
                  AND (r.expires_at IS NULL OR r.expires_at > $2) \
             ORDER BY c.pattern, c.scope_kind, c.scope_value",
        )
        .bind(since)
        .bind(now)
        .fetch(&mut *tx);
        let written = self.write_slots(rows).await?;
        tx.commit().await?;
        Ok(written)
    }

    /// Writes slots from rows ordered by slot, in pipelined batches; returns how many.
    async fn write_slots(
        &self,
        mut rows: impl futures::Stream<Item = Result<SlotRow, sqlx::Error>> + Unpin,
    ) -> Result<usize, StorageError> {
        let mut batch: Vec<(Slot, Vec<RuleMatch>)> = Vec::with_capacity(BATCH);
        let mut written = 0usize;
        while let Some(row) = rows.try_next().await? {
            let (slot, rule) = row.into_parts()?;
            match batch.last_mut() {
                Some((last, rules)) if *last == slot => rules.extend(rule),
                _ => {
                    if batch.len() >= BATCH {
                        self.index.write(&batch).await?;
                        written += batch.len();
                        batch.clear();
                    }
                    batch.push((slot, rule.into_iter().collect()));
                }
            }
        }
        self.index.write(&batch).await?;
        Ok(written + batch.len())
    }
}

/// An import in progress: rows go to Postgres in batches inside one transaction, each batch
/// written while the caller parses the next; dropping it without [`Import::commit`] rolls
/// everything back.
pub struct Import {
    book: RuleBook,
    /// The transaction, or the task that holds it while it writes a batch.
    tx: TxSlot,
    batch: Vec<Rule>,
    imported: u64,
    now: DateTime<Utc>,
}

enum TxSlot {
    Idle(Transaction<'static, Postgres>),
    Writing(tokio::task::JoinHandle<Result<Transaction<'static, Postgres>, sqlx::Error>>),
    Taken,
}

impl Import {
    pub async fn add(&mut self, rule: NewRule) -> Result<(), StorageError> {
        self.batch.push(materialise(rule, self.now));
        if self.batch.len() >= BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    /// The transaction, once the batch being written (if any) is done.
    async fn idle_tx(&mut self) -> Result<Transaction<'static, Postgres>, StorageError> {
        match std::mem::replace(&mut self.tx, TxSlot::Taken) {
            TxSlot::Idle(tx) => Ok(tx),
            TxSlot::Writing(task) => Ok(task
                .await
                .map_err(|e| StorageError::Internal(format!("import writer: {e}")))??),
            TxSlot::Taken => Err(StorageError::Internal("import used after a failure".into())),
        }
    }

    async fn flush(&mut self) -> Result<(), StorageError> {
        let mut tx = self.idle_tx().await?;
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        self.imported += batch.len() as u64;
        let instance = self.book.instance.clone();
        self.tx = TxSlot::Writing(tokio::spawn(async move {
            insert_batch(&mut tx, &batch, &instance).await?;
            Ok(tx)
        }));
        Ok(())
    }

    /// Commits the import and writes it through to the index. Returns how many rules it added.
    pub async fn commit(mut self) -> Result<u64, StorageError> {
        self.flush().await?;
        let tx = self.idle_tx().await?;
        let started = std::time::Instant::now();
        tx.commit().await?;
        self.book.recent.forget_all();
        let committed = started.elapsed();
        // Every rule of the import was stamped with the import's start.
        let since = self.now.trunc_subsecs(6);
        if let Err(e) = self.book.sync_changed_since(since, self.now).await {
            metrics::counter!("callwarden_redis_errors_total", "op" => "write").increment(1);
            tracing::warn!(error = %e, "index write of an import failed; will retry");
            self.book.defer(since);
        }
        self.book.recent.forget_all();
        tracing::info!(
            rules = self.imported,
            commit_ms = committed.as_millis() as u64,
            index_ms = (started.elapsed() - committed).as_millis() as u64,
            "import committed and indexed"
        );
        Ok(self.imported)
    }
}

fn materialise(rule: NewRule, now: DateTime<Utc>) -> Rule {
    // Postgres keeps microseconds: the rule returned must equal the rule read back later.
    let now = now.trunc_subsecs(6);
    Rule {
        id: RuleId(Uuid::now_v7()),
        expires_at: rule.ttl.map(|ttl| now + ttl),
        pattern: rule.pattern,
        effect: rule.effect,
        scope: rule.scope,
        reason: rule.reason,
        created_by: rule.created_by,
        created_at: now,
        removed_at: None,
        removed_by: None,
    }
}

/// Inserts rules with COPY: several times faster than multi-row INSERTs for a million rows.
async fn insert_batch(
    tx: &mut Transaction<'static, Postgres>,
    rules: &[Rule],
    instance: &str,
) -> Result<(), sqlx::Error> {
    if rules.is_empty() {
        return Ok(());
    }
    let mut data = String::with_capacity(rules.len() * 160);
    for r in rules {
        let created_at = r.created_at.to_rfc3339();
        let fields = [
            r.id.to_string(),
            r.pattern.to_string(),
            r.effect.as_str().to_owned(),
            r.scope.kind().to_owned(),
            copy_text(&r.scope.value()),
            copy_text(&r.reason),
            copy_text(&r.created_by),
            created_at.clone(),
            r.expires_at
                .map_or_else(|| "\\N".to_owned(), |t| t.to_rfc3339()),
            created_at,
        ];
        data.push_str(&fields.join("\t"));
        data.push('\n');
    }
    let mut copy = tx
        .copy_in_raw(
            "COPY rules (id, pattern, effect, scope_kind, scope_value, reason, created_by, \
             created_at, expires_at, changed_at) FROM STDIN",
        )
        .await?;
    if let Err(e) = copy.send(data.into_bytes()).await {
        // The connection must leave COPY mode before the transaction can roll back.
        let _ = copy.abort(e.to_string()).await;
        return Err(e);
    }
    copy.finish().await?;
    announce_change(tx, instance).await
}

/// Tells every replica, once this transaction commits, that rules changed (and which replica
/// changed them).
async fn announce_change(
    tx: &mut Transaction<'static, Postgres>,
    instance: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(RULES_CHANNEL)
        .bind(instance)
        .execute(&mut **tx)
        .await
        .map(drop)
}

/// Escapes a value for COPY's text format.
fn copy_text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}
