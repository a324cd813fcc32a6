//! The names processes looked up, by the addresses the answers gave, so a later connect or send
//! to an address can say which name led there (`destination.domain`). Bounded: the oldest
//! answers are forgotten first.
use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
};

/// The name each address was last an answer for, the newest `capacity` addresses.
pub struct DnsCache {
    names: HashMap<IpAddr, String>,
    order: VecDeque<IpAddr>,
    capacity: usize,
}

impl DnsCache {
    /// An empty cache that keeps up to `capacity` addresses.
    pub fn new(capacity: usize) -> Self {
        Self {
            names: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// Remembers that `name` resolved to `ip` (a newer answer replaces an older one).
    pub fn insert(&mut self, ip: IpAddr, name: &str) {
        if self.names.insert(ip, name.to_owned()).is_none() {
            self.order.push_back(ip);
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.names.remove(&old);
                }
            }
        }
    }

    /// The name that last resolved to `ip`, if it is still remembered.
    pub fn get(&self, ip: &IpAddr) -> Option<&str> {
        self.names.get(ip).map(String::as_str)
    }

    /// How many addresses it remembers.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.names.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest_beyond_capacity() {
        let mut cache = DnsCache::new(2);
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        cache.insert(ip(1), "a.example");
        cache.insert(ip(2), "b.example");
        cache.insert(ip(2), "b2.example");
        assert_eq!(cache.get(&ip(2)), Some("b2.example"));
        cache.insert(ip(3), "c.example");
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&ip(1)), None);
        assert_eq!(cache.get(&ip(3)), Some("c.example"));
    }
}
