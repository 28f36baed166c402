//! A bounded map of results worth computing once per process: lines as switches write them,
//! verified tokens, switches' certificates. Readers share a lock; past its bound the map starts
//! afresh rather than tracking recency, since whatever it held is cheap to compute again.

use std::{borrow::Borrow, collections::HashMap, hash::Hash, sync::RwLock};

pub struct Memo<K, V> {
    map: RwLock<HashMap<K, V>>,
    /// Entries held at most, so callers sending ever new keys cannot grow it.
    max: usize,
}

impl<K: Eq + Hash, V: Clone> Memo<K, V> {
    pub fn new(max: usize) -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
            max: max.max(1),
        }
    }

    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.read().expect("memo lock").get(key).cloned()
    }

    pub fn insert(&self, key: K, value: V) {
        let mut map = self.map.write().expect("memo lock");
        if map.len() >= self.max {
            map.clear();
        }
        map.insert(key, value);
    }

    /// The remembered value, or `make`'s (remembered if it succeeds).
    pub fn get_or_try_insert<Q, E>(
        &self,
        key: &Q,
        make: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(value) = self.get(key) {
            return Ok(value);
        }
        let value = make()?;
        self.insert(key.to_owned(), value.clone());
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_successes_only_and_stays_bounded() {
        let memo: Memo<String, u32> = Memo::new(2);
        let calls = std::cell::Cell::new(0);
        let parse = |s: &str| {
            memo.get_or_try_insert(s, || {
                calls.set(calls.get() + 1);
                s.parse::<u32>()
            })
        };
        assert_eq!(parse("1"), Ok(1));
        assert_eq!(parse("1"), Ok(1));
        assert!(parse("x").is_err());
        assert!(parse("x").is_err());
        assert_eq!(
            calls.get(),
            3,
            "a success is computed once, a failure every time"
        );
        parse("2").unwrap();
        parse("3").unwrap();
        assert!(memo.map.read().unwrap().len() <= 2);
    }
}
