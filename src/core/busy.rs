//! Who is on a call: the answered calls of each agent, for the capacity rule of ordinary
//! routing (an agent with `capacity` answered calls gets no more group or DID calls; PSAP
//! callbacks and emergency calls are counted but never refused).
//!
//! A call counts from its first 2xx to its BYE (either way). A dialog whose BYE never passes
//! through the edge (a phone that vanished) is forgotten after [`MAX_CALL`], so that a lost
//! BYE cannot keep an agent busy for ever.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The longest a call counts without its BYE being seen.
pub const MAX_CALL: Duration = Duration::from_secs(4 * 3600);

/// Answered calls by Call-ID, and the count per agent.
#[derive(Debug, Default)]
pub struct CallsOf {
    calls: HashMap<String, (Vec<String>, Instant)>,
    per_agent: HashMap<String, u32>,
}

impl CallsOf {
    /// Call `call_id` was answered with `agents` on it (once: later 2xx change nothing).
    pub fn answered(&mut self, call_id: String, mut agents: Vec<String>, now: Instant) {
        if agents.is_empty() || self.calls.contains_key(&call_id) {
            return;
        }
        agents.sort();
        agents.dedup();
        for a in &agents {
            *self.per_agent.entry(a.clone()).or_default() += 1;
        }
        self.calls.insert(call_id, (agents, now));
    }

    /// Call `call_id` ended.
    pub fn ended(&mut self, call_id: &str) {
        if let Some((agents, _)) = self.calls.remove(call_id) {
            for a in agents {
                if let Some(n) = self.per_agent.get_mut(&a) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.per_agent.remove(&a);
                    }
                }
            }
        }
    }

    /// The answered calls `agent` is on.
    pub fn count(&self, agent: &str) -> u32 {
        self.per_agent.get(agent).copied().unwrap_or(0)
    }

    /// Forgets calls older than [`MAX_CALL`].
    pub fn expire(&mut self, now: Instant) {
        let old: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, (_, at))| now.saturating_duration_since(*at) > MAX_CALL)
            .map(|(k, _)| k.clone())
            .collect();
        for k in old {
            self.ended(&k);
        }
    }

    /// Calls counted now.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_answer_to_bye_once_per_call() {
        let mut c = CallsOf::default();
        let t = Instant::now();
        c.answered("a".into(), vec!["alice".into(), "bob".into()], t);
        c.answered("a".into(), vec!["alice".into()], t);
        c.answered("b".into(), vec!["alice".into(), "alice".into()], t);
        assert_eq!((c.count("alice"), c.count("bob")), (2, 1));
        c.ended("a");
        c.ended("a");
        assert_eq!((c.count("alice"), c.count("bob")), (1, 0));
        c.expire(t + MAX_CALL + Duration::from_secs(1));
        assert_eq!(c.count("alice"), 0);
        assert!(c.is_empty());
    }
}
