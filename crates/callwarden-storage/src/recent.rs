//! Checks' recent results, kept in memory so that a check can still be answered from the rules
//! while Redis is slow or down.
//!
//! An entry is only as good as its invalidation: every rule change forgets everything. This
//! replica's own writes do so after their commit; other replicas' reach it through Postgres
//! NOTIFY, sent in the changing transaction (see [`crate::RuleBook::follow_changes`]); when that
//! feed comes back after a loss, everything is forgotten too. A generation number keeps a lookup that started before a
//! change from remembering what it read after the change was forgotten.

use callwarden_domain::{
    phone::E164,
    rule::{RuleMatch, Scope},
};
use std::{collections::HashMap, sync::RwLock};

/// A caller and the scopes a check asked about (line, operator, global).
pub type Key = (E164, Vec<Scope>);

pub struct RecentResults {
    inner: RwLock<Inner>,
    /// Entries held at most: past it the map starts afresh, since any entry is one lookup away.
    max: usize,
}

#[derive(Default)]
struct Inner {
    /// Bumped by every [`RecentResults::forget_all`].
    generation: u64,
    map: HashMap<Key, Vec<RuleMatch>>,
}

impl RecentResults {
    pub fn new(max: usize) -> Self {
        Self {
            inner: RwLock::new(Inner::default()),
            max,
        }
    }

    /// Taken before a lookup, and handed back to [`RecentResults::remember`] with its result.
    pub fn generation(&self) -> u64 {
        self.inner.read().expect("recent results lock").generation
    }

    pub fn get(&self, key: &Key) -> Option<Vec<RuleMatch>> {
        self.inner
            .read()
            .expect("recent results lock")
            .map
            .get(key)
            .cloned()
    }

    /// Keeps `rules` for `key`, unless a change was forgotten since `generation` was taken: the
    /// lookup may have read the index or the record from before that change.
    pub fn remember(&self, generation: u64, key: Key, rules: &[RuleMatch]) {
        if self.max == 0 {
            return;
        }
        // Most checks repeat what is already known; they need not take the write lock.
        {
            let inner = self.inner.read().expect("recent results lock");
            if inner.generation != generation
                || inner.map.get(&key).is_some_and(|known| known == rules)
            {
                return;
            }
        }
        let mut inner = self.inner.write().expect("recent results lock");
        if inner.generation != generation {
            return;
        }
        if inner.map.len() >= self.max {
            inner.map.clear();
        }
        inner.map.insert(key, rules.to_vec());
    }

    pub fn forget_all(&self) {
        let mut inner = self.inner.write().expect("recent results lock");
        inner.generation += 1;
        inner.map.clear();
    }

    /// How many results are held.
    pub fn held(&self) -> usize {
        self.inner.read().expect("recent results lock").map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callwarden_domain::rule::{Effect, Pattern, RuleId};

    fn key(n: &str) -> Key {
        (E164::from_canonical(n).unwrap(), vec![Scope::Global])
    }

    fn block(n: &str) -> Vec<RuleMatch> {
        vec![RuleMatch {
            id: RuleId(uuid::Uuid::from_u128(1)),
            pattern: Pattern::Exact(E164::from_canonical(n).unwrap()),
            scope: Scope::Global,
            effect: Effect::Block,
            expires_at: None,
        }]
    }

    #[test]
    fn a_lookup_that_raced_a_change_is_not_remembered() {
        let recent = RecentResults::new(10);
        let before = recent.generation();
        recent.remember(before, key("+48601234567"), &block("+48601234567"));
        assert_eq!(
            recent.get(&key("+48601234567")),
            Some(block("+48601234567"))
        );
        let started = recent.generation();
        recent.forget_all();
        assert_eq!(recent.get(&key("+48601234567")), None);
        // Read before the change was forgotten: possibly stale, so not kept.
        recent.remember(started, key("+48601234567"), &[]);
        assert_eq!(recent.get(&key("+48601234567")), None);
        recent.remember(recent.generation(), key("+48601234567"), &[]);
        assert_eq!(recent.get(&key("+48601234567")), Some(vec![]));
    }

    #[test]
    fn stays_bounded() {
        let recent = RecentResults::new(2);
        for n in ["+48601000001", "+48601000002", "+48601000003"] {
            recent.remember(recent.generation(), key(n), &[]);
        }
        assert!(recent.held() <= 2);
        assert!(recent.get(&key("+48601000003")).is_some());
        let none = RecentResults::new(0);
        none.remember(none.generation(), key("+48601000001"), &[]);
        assert_eq!(none.held(), 0);
    }
}
