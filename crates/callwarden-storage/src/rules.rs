//! The rule book: rules written to Postgres (the record) and then through to the Redis index,
//! and the lookups a check needs. Every rule change goes through here.

use crate::{StorageError, index::RuleIndex};
use callwarden_domain::{
    phone::E164,
    rule::{Effect, NewRule, Pattern, Rule, RuleId, RuleMatch, Scope},
};
use chrono::{DateTime, SubsecRound, Utc};
use futures::TryStreamExt;
use sqlx::{PgPool, Postgres, QueryBuilder, Transaction};
use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use uuid::Uuid;

/// A (scope, pattern) pair: the unit the index stores.
type Slot = (Scope, Pattern);

/// Rows per multi-row INSERT and slots per index sync: big enough to amortise round trips,
/// small enough to stay far below Postgres' bind parameter limits and Redis' reply sizes.
const BATCH: usize = 5_000;
/// How far a rebuild looks back for writes that raced with it (clock skew between replicas).
const REBUILD_OVERLAP: chrono::Duration = chrono::Duration::seconds(5);
const REBUILD_LOCK_TTL: Duration = Duration::from_secs(600);

const RULE_COLUMNS: &str = "id, pattern, effect, scope_kind, scope_value, reason, created_by, \
     created_at, expires_at, removed_at, removed_by";

#[derive(Clone)]
pub struct RuleBook {
    pg: PgPool,
    index: RuleIndex,
    /// Slots whose index write failed after the record was committed; retried by
    /// [`RuleBook::maintain`] so the index converges without anyone re-adding the rule.
    pending: Arc<Mutex<Vec<Slot>>>,
    /// Set while this replica rebuilds, so checks do not start a second rebuild.
    rebuilding: Arc<AtomicBool>,
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
        let corrupt = |what: &str| StorageError::Corrupt(format!("rule {}: {what}", r.id));
        Ok(Rule {
            id: RuleId(r.id),
            pattern: Pattern::from_canonical(&r.pattern).ok_or_else(|| corrupt("pattern"))?,
            effect: r.effect.parse().map_err(|_| corrupt("effect"))?,
            scope: Scope::from_parts(&r.scope_kind, &r.scope_value)
                .ok_or_else(|| corrupt("scope"))?,
            reason: r.reason,
            created_by: r.created_by,
            created_at: r.created_at,
            expires_at: r.expires_at,
            removed_at: r.removed_at,
            removed_by: r.removed_by,
        })
    }
}

#[derive(sqlx::FromRow)]
struct MatchRow {
    id: Uuid,
    pattern: String,
    effect: String,
    scope_kind: String,
    scope_value: String,
    expires_at: Option<DateTime<Utc>>,
}

impl TryFrom<MatchRow> for RuleMatch {
    type Error = StorageError;
    fn try_from(r: MatchRow) -> Result<Self, Self::Error> {
        let corrupt = |what: &str| StorageError::Corrupt(format!("rule {}: {what}", r.id));
        Ok(RuleMatch {
            id: RuleId(r.id),
            pattern: Pattern::from_canonical(&r.pattern).ok_or_else(|| corrupt("pattern"))?,
            effect: r.effect.parse().map_err(|_| corrupt("effect"))?,
            scope: Scope::from_parts(&r.scope_kind, &r.scope_value)
                .ok_or_else(|| corrupt("scope"))?,
            expires_at: r.expires_at,
        })
    }
}

impl RuleBook {
    pub fn new(pg: PgPool, index: RuleIndex) -> Self {
        Self {
            pg,
            index,
            pending: Arc::default(),
            rebuilding: Arc::default(),
        }
    }

    pub fn index(&self) -> &RuleIndex {
        &self.index
    }

    /// Records a rule, then writes it through to the index. The rule counts as added once
    /// Postgres has it; a failed index write is retried in the background.
    pub async fn add(&self, rule: NewRule, now: DateTime<Utc>) -> Result<Rule, StorageError> {
        let rule = materialise(rule, now);
        let mut tx = self.pg.begin().await?;
        insert_batch(&mut tx, std::slice::from_ref(&rule)).await?;
        tx.commit().await?;
        self.sync(vec![(rule.scope.clone(), rule.pattern.clone())], now)
            .await;
        Ok(rule)
    }

    /// Starts an all-or-nothing import; nothing is visible until [`Import::commit`].
    pub async fn begin_import(&self, now: DateTime<Utc>) -> Result<Import, StorageError> {
        Ok(Import {
            book: self.clone(),
            tx: self.pg.begin().await?,
            batch: Vec::with_capacity(BATCH),
            slots: Vec::new(),
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
        let row: Option<RuleRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE rules SET removed_at = $2, removed_by = $3, changed_at = $2 \
             WHERE id = $1 AND removed_at IS NULL RETURNING {RULE_COLUMNS}"
        )))
        .bind(id.0)
        .bind(now)
        .bind(removed_by)
        .fetch_optional(&self.pg)
        .await?;
        let Some(row) = row else {
            // Tell "never existed" from "already removed": a console shows them differently.
            self.get(id).await?;
            return Err(StorageError::RuleAlreadyRemoved(id));
        };
        let rule = Rule::try_from(row)?;
        self.sync(vec![(rule.scope.clone(), rule.pattern.clone())], now)
            .await;
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

    /// The rules that may decide a call from `number` in `scopes`: from the index in one round
    /// trip; from Postgres while the index is unavailable or being rebuilt.
    pub async fn matches(
        &self,
        number: &E164,
        scopes: &[Scope],
        now: DateTime<Utc>,
    ) -> Result<Vec<RuleMatch>, StorageError> {
        match self.index.lookup(number, scopes).await {
            Ok(Some(found)) => return Ok(found),
            Ok(None) => {
                // Redis came back empty (it keeps nothing on disk): rebuild behind this answer.
                if !self.rebuilding.load(Ordering::Relaxed) {
                    let book = self.clone();
                    tokio::spawn(async move { book.rebuild_logged(Utc::now()).await });
                }
            }
            Err(e) => {
                metrics::counter!("callwarden_redis_errors_total", "op" => "lookup").increment(1);
                tracing::warn!(error = %e, "index lookup failed; answering from Postgres");
            }
        }
        metrics::counter!("callwarden_index_fallbacks_total").increment(1);
        self.matches_from_record(number, scopes, now).await
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
        let rows: Vec<MatchRow> = sqlx::query_as(
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
        rows.into_iter().map(RuleMatch::try_from).collect()
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
        let pending = std::mem::take(&mut *self.pending.lock().expect("pending lock"));
        if !pending.is_empty() {
            tracing::info!(slots = pending.len(), "retrying index writes");
            self.sync(pending, now).await;
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
        if self.rebuilding.swap(true, Ordering::AcqRel) {
            return Ok(false);
        }
        let token = Uuid::new_v4().to_string();
        let result = async {
            if !self
                .index
                .try_lock_rebuild(&token, REBUILD_LOCK_TTL)
                .await?
            {
                return Ok(false);
            }
            let result = self.rebuild_locked(now).await;
            if let Err(e) = self.index.unlock_rebuild(&token).await {
                tracing::warn!(error = %e, "could not release the rebuild lock; it expires");
            }
            result.map(|()| true)
        }
        .await;
        self.rebuilding.store(false, Ordering::Release);
        result
    }

    async fn rebuild_locked(&self, now: DateTime<Utc>) -> Result<(), StorageError> {
        let started = std::time::Instant::now();
        tracing::info!("rebuilding the rule index from Postgres");
        self.index.clear().await?;
        let mut rows = sqlx::query_as::<_, MatchRow>(
            "SELECT id, pattern, effect, scope_kind, scope_value, expires_at FROM rules \
             WHERE removed_at IS NULL AND (expires_at IS NULL OR expires_at > $1) \
             ORDER BY pattern, scope_kind, scope_value",
        )
        .bind(now)
        .fetch(&self.pg);
        let mut batch: Vec<(Slot, Vec<RuleMatch>)> = Vec::with_capacity(BATCH);
        let mut written = 0usize;
        while let Some(row) = rows.try_next().await? {
            let rule = RuleMatch::try_from(row)?;
            match batch.last_mut() {
                Some(((scope, pattern), rules))
                    if *scope == rule.scope && *pattern == rule.pattern =>
                {
                    rules.push(rule)
                }
                _ => {
                    if batch.len() >= BATCH {
                        self.index.write(&batch).await?;
                        written += batch.len();
                        batch.clear();
                    }
                    batch.push(((rule.scope.clone(), rule.pattern.clone()), vec![rule]));
                }
            }
        }
        drop(rows);
        written += batch.len();
        self.index.write(&batch).await?;
        self.index.mark_ready(now).await?;
        // Writes that committed while the scan ran may have been overwritten by older data.
        let raced: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT DISTINCT scope_kind, scope_value, pattern FROM rules WHERE changed_at >= $1",
        )
        .bind(now - REBUILD_OVERLAP)
        .fetch_all(&self.pg)
        .await?;
        let raced: Vec<Slot> = raced
            .into_iter()
            .filter_map(|(k, v, p)| {
                Some((Scope::from_parts(&k, &v)?, Pattern::from_canonical(&p)?))
            })
            .collect();
        self.sync_slots(&raced, Utc::now()).await?;
        metrics::counter!("callwarden_index_rebuilds_total").increment(1);
        tracing::info!(
            slots = written,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "rule index rebuilt"
        );
        Ok(())
    }

    /// Writes the current record of `slots` to the index. Never fails the caller: the record
    /// is already committed, so a failure queues the slots for [`RuleBook::maintain`].
    async fn sync(&self, slots: Vec<Slot>, now: DateTime<Utc>) {
        if let Err(e) = self.sync_slots(&slots, now).await {
            metrics::counter!("callwarden_redis_errors_total", "op" => "write").increment(1);
            tracing::warn!(error = %e, slots = slots.len(), "index write failed; will retry");
            self.pending.lock().expect("pending lock").extend(slots);
        }
    }

    async fn sync_slots(&self, slots: &[Slot], now: DateTime<Utc>) -> Result<(), StorageError> {
        for chunk in slots.chunks(BATCH) {
            let patterns: Vec<String> = chunk.iter().map(|(_, p)| p.to_string()).collect();
            let kinds: Vec<&str> = chunk.iter().map(|(s, _)| s.kind()).collect();
            let values: Vec<String> = chunk.iter().map(|(s, _)| s.value()).collect();
            let rows: Vec<MatchRow> = sqlx::query_as(
                "SELECT r.id, r.pattern, r.effect, r.scope_kind, r.scope_value, r.expires_at \
                 FROM rules r \
                 JOIN UNNEST($1::text[], $2::text[], $3::text[]) AS s(pattern, scope_kind, scope_value) \
                   USING (pattern, scope_kind, scope_value) \
                 WHERE r.removed_at IS NULL AND (r.expires_at IS NULL OR r.expires_at > $4)",
            )
            .bind(&patterns)
            .bind(&kinds)
            .bind(&values)
            .bind(now)
            .fetch_all(&self.pg)
            .await?;
            let mut by_slot: BTreeMap<Slot, Vec<RuleMatch>> = chunk
                .iter()
                .map(|slot| (slot.clone(), Vec::new()))
                .collect();
            for row in rows {
                let rule = RuleMatch::try_from(row)?;
                if let Some(rules) = by_slot.get_mut(&(rule.scope.clone(), rule.pattern.clone())) {
                    rules.push(rule);
                }
            }
            let writes: Vec<(Slot, Vec<RuleMatch>)> = by_slot.into_iter().collect();
            self.index.write(&writes).await?;
        }
        Ok(())
    }
}

/// An import in progress: rows go to Postgres in batches inside one transaction; dropping it
/// without [`Import::commit`] rolls everything back.
pub struct Import {
    book: RuleBook,
    tx: Transaction<'static, Postgres>,
    batch: Vec<Rule>,
    slots: Vec<Slot>,
    imported: u64,
    now: DateTime<Utc>,
}

impl Import {
    pub async fn add(&mut self, rule: NewRule) -> Result<(), StorageError> {
        let rule = materialise(rule, self.now);
        self.slots.push((rule.scope.clone(), rule.pattern.clone()));
        self.batch.push(rule);
        if self.batch.len() >= BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), StorageError> {
        insert_batch(&mut self.tx, &self.batch).await?;
        self.imported += self.batch.len() as u64;
        self.batch.clear();
        Ok(())
    }

    /// Commits the import and writes it through to the index. Returns how many rules it added.
    pub async fn commit(mut self) -> Result<u64, StorageError> {
        self.flush().await?;
        self.tx.commit().await?;
        let mut slots = self.slots;
        slots.sort_unstable();
        slots.dedup();
        self.book.sync(slots, self.now).await;
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

async fn insert_batch(
    tx: &mut Transaction<'static, Postgres>,
    rules: &[Rule],
) -> Result<(), sqlx::Error> {
    if rules.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&Rule) -> String| rules.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO rules (id, pattern, effect, scope_kind, scope_value, reason, created_by, \
                            created_at, expires_at, changed_at) \
         SELECT id, pattern, effect, scope_kind, scope_value, reason, created_by, created_at, \
                expires_at, created_at \
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                     $7::text[], $8::timestamptz[], $9::timestamptz[]) \
              AS t(id, pattern, effect, scope_kind, scope_value, reason, created_by, created_at, \
                   expires_at)",
    )
    .bind(rules.iter().map(|r| r.id.0).collect::<Vec<_>>())
    .bind(column(|r| r.pattern.to_string()))
    .bind(column(|r| r.effect.as_str().to_owned()))
    .bind(column(|r| r.scope.kind().to_owned()))
    .bind(column(|r| r.scope.value()))
    .bind(column(|r| r.reason.clone()))
    .bind(column(|r| r.created_by.clone()))
    .bind(rules.iter().map(|r| r.created_at).collect::<Vec<_>>())
    .bind(rules.iter().map(|r| r.expires_at).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
