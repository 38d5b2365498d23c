//! A bounded memory of what was already handled, for idempotent consumers: the last `capacity` keys
//! and the result each produced. Redelivery of a key still in the window returns the first result
//! instead of doing the work again; keys older than the window are forgotten (oldest first).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

#[derive(Debug)]
pub struct Window<K, V> {
    capacity: usize,
    results: HashMap<K, V>,
    order: VecDeque<K>,
}

impl<K: Eq + Hash + Clone, V> Window<K, V> {
    /// # Panics
    /// If `capacity` is zero: a window that remembers nothing is a configuration error.
    pub fn new(capacity: usize) -> Self {
        assert!(
            capacity > 0,
            "an idempotency window needs room for at least one key"
        );
        Self {
            capacity,
            results: HashMap::with_capacity(capacity.min(1 << 16)),
            order: VecDeque::with_capacity(capacity.min(1 << 16)),
        }
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.results.get(key)
    }

    /// Remembers `key`'s result, forgetting the oldest key when full. A key already present keeps
    /// its first result.
    pub fn remember(&mut self, key: K, result: V) -> &V {
        if !self.results.contains_key(&key) {
            if self.order.len() == self.capacity
                && let Some(oldest) = self.order.pop_front()
            {
                self.results.remove(&oldest);
            }
            self.order.push_back(key.clone());
            self.results.insert(key.clone(), result);
        }
        &self.results[&key]
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_result_wins_within_the_window() {
        let mut w = Window::new(2);
        assert_eq!(*w.remember("a", 1), 1);
        assert_eq!(*w.remember("a", 2), 1);
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn the_oldest_key_is_forgotten_when_full() {
        let mut w = Window::new(2);
        w.remember("a", 1);
        w.remember("b", 2);
        w.remember("c", 3);
        assert_eq!(w.get(&"a"), None);
        assert_eq!(w.get(&"b"), Some(&2));
        assert_eq!(w.get(&"c"), Some(&3));
        assert_eq!(w.len(), 2);
    }
}
