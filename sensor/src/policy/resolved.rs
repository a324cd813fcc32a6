//! The addresses each agent itself looked up for the names its enforced egress rule allows:
//! learned from the agent's own DNS answers as the sensor records them, each until its TTL
//! ends (bounded to [`MIN_TTL`]..[`MAX_TTL`]), for the kernel's egress policy. Another
//! process's lookup never lets an agent through.
use std::{
    net::IpAddr,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

/// The shortest an address is kept: an answer with a TTL of 0 or 1 must still let the agent
/// connect right after it.
pub const MIN_TTL: Duration = Duration::from_secs(2);
/// The longest: a stale answer must not keep a destination open for good.
pub const MAX_TTL: Duration = Duration::from_hours(1);
/// Most addresses kept per agent (the oldest go first).
const MAX_PER_AGENT: usize = 1024;

/// One learned address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Learned {
    /// The agent that looked it up.
    pub agent: String,
    /// The address.
    pub ip: IpAddr,
    /// The ports the matching rule entry allows (empty: any).
    pub ports: Vec<u16>,
    /// Until when.
    pub until: Instant,
}

/// What runs when an address is learned (the kernel's egress policy is updated at once).
type OnLearn = Box<dyn Fn(&Resolved) + Send + Sync>;

/// The learned addresses, shared by the pipeline (which learns them) and the daemon (which
/// puts them in the kernel).
#[derive(Clone, Default)]
pub struct Resolved {
    all: Arc<Mutex<Vec<Learned>>>,
    on_learn: Arc<OnceLock<OnLearn>>,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Resolved").field(&self.all).finish()
    }
}

impl Resolved {
    /// Runs `hook` after every lesson (set once; later calls are ignored).
    pub fn on_learn(&self, hook: impl Fn(&Self) + Send + Sync + 'static) {
        let _ = self.on_learn.set(Box::new(hook));
    }

    /// Keeps `ips` for `agent` with `ports`, for `ttl` seconds (bounded), from `now`.
    pub fn learn(&self, agent: &str, ips: &[IpAddr], ports: &[u16], ttl: u32, now: Instant) {
        if ips.is_empty() {
            return;
        }
        let until = now + Duration::from_secs(u64::from(ttl)).clamp(MIN_TTL, MAX_TTL);
        {
            let mut all = self.all.lock().expect("no poisoned lock");
            all.retain(|l| l.until > now);
            for &ip in ips {
                all.retain(|l| !(l.agent == agent && l.ip == ip && l.ports == ports));
                all.push(Learned {
                    agent: agent.to_owned(),
                    ip,
                    ports: ports.to_vec(),
                    until,
                });
            }
            let mine = all.iter().filter(|l| l.agent == agent).count();
            if mine > MAX_PER_AGENT {
                let mut extra = mine - MAX_PER_AGENT;
                all.retain(|l| {
                    let drop = extra > 0 && l.agent == agent;
                    extra -= usize::from(drop);
                    !drop
                });
            }
        }
        if let Some(hook) = self.on_learn.get() {
            hook(self);
        }
    }

    /// `agent`'s addresses in force at `now`, with their ports.
    pub fn of(&self, agent: &str, now: Instant) -> Vec<(IpAddr, Vec<u16>)> {
        let all = self.all.lock().expect("no poisoned lock");
        all.iter()
            .filter(|l| l.agent == agent && l.until > now)
            .map(|l| (l.ip, l.ports.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_last_their_bounded_ttl_per_agent() {
        let r = Resolved::default();
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "2001:db8::1".parse().unwrap();
        r.learn("a", &[ip], &[443], 0, t0);
        r.learn("a", &[other], &[], 7200, t0);
        assert_eq!(r.of("a", t0 + Duration::from_secs(1)).len(), 2);
        assert_eq!(r.of("b", t0), vec![], "another agent's lookup");
        // TTL 0 lasts MIN_TTL; 7200 s is cut to MAX_TTL.
        assert_eq!(
            r.of("a", t0 + MIN_TTL),
            vec![(other, vec![])],
            "the short one ended"
        );
        assert_eq!(r.of("a", t0 + MAX_TTL), vec![]);
        // A second answer for the same address extends it, once.
        r.learn("a", &[ip], &[443], 60, t0 + Duration::from_secs(1));
        assert_eq!(r.of("a", t0 + Duration::from_secs(30)).len(), 2);
    }
}
