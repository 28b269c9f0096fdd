//! Who is on a call: the answered calls of each agent, for the capacity rule of ordinary
//! routing (an agent with `capacity` answered calls gets no more group or DID calls; PSAP
//! callbacks and emergency calls are counted but never refused).
//!
//! A call counts from its first 2xx to its BYE (either way). A dialog whose BYE never passes
//! through the edge (a phone that vanished) is forgotten after [`MAX_CALL`], so that a lost
//! BYE cannot keep an agent busy for ever.
//!
//! # Forked calls (RFC 3261 §13.2.2.4, RFC 6026)
//!
//! A call forked downstream may be answered by several 2xx, each its own dialog with the
//! same Call-ID; the caller acknowledges them all and ends every dialog but one with a BYE
//! (or a losing fork hangs up itself). The call is the dialog of its first 2xx: its
//! callee's tag is kept with the call, and a BYE of another dialog of that Call-ID
//! ([`CallsOf::other_dialog`]) ends nothing here, nor in the call history, the emergency
//! state or the media (src/core/proxy.rs, src/core/emergency.rs, src/core/media.rs).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The longest a call counts without its BYE being seen.
pub const MAX_CALL: Duration = Duration::from_secs(4 * 3600);

/// Answered calls by Call-ID, and the count per agent.
#[derive(Debug, Default)]
pub struct CallsOf {
    calls: HashMap<String, (Vec<String>, Instant)>,
    per_agent: HashMap<String, u32>,
    /// The callee's tag of each answered call's dialog (the first 2xx's To-tag), counted or
    /// not: a BYE of another dialog of the Call-ID is a losing fork's.
    dialogs: HashMap<String, (Box<str>, Instant)>,
}

impl CallsOf {
    /// Call `call_id` was answered with `agents` on it, in the dialog whose callee has tag
    /// `tag` (once: later 2xx, another fork's included, change nothing).
    pub fn answered(
        &mut self,
        call_id: String,
        mut agents: Vec<String>,
        tag: Option<&str>,
        now: Instant,
    ) {
        if let Some(tag) = tag
            && !self.dialogs.contains_key(&call_id)
        {
            self.dialogs.insert(call_id.clone(), (tag.into(), now));
        }
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

    /// A request with these tags (From, To) is in another dialog of answered call `call_id`
    /// than the call's own: a losing fork's (see the module docs). `false` when the call's
    /// dialog is not known or a tag is missing.
    pub fn other_dialog(
        &self,
        call_id: &str,
        from_tag: Option<&str>,
        to_tag: Option<&str>,
    ) -> bool {
        let Some((tag, _)) = self.dialogs.get(call_id) else { return false };
        match (from_tag, to_tag) {
            (Some(from), Some(to)) => from != &**tag && to != &**tag,
            _ => false,
        }
    }

    /// [`CallsOf::other_dialog`] for an in-dialog request.
    pub fn other_dialog_of(&self, req: &sip::Request) -> bool {
        if self.dialogs.is_empty() {
            return false;
        }
        let h = req.headers();
        let (from, to) = (h.from_tag().ok().flatten(), h.to_tag().ok().flatten());
        self.other_dialog(h.call_id().unwrap_or_default(), from, to)
    }

    /// Call `call_id` ended.
    pub fn ended(&mut self, call_id: &str) {
        self.dialogs.remove(call_id);
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
        self.dialogs.retain(|_, (_, at)| now.saturating_duration_since(*at) <= MAX_CALL);
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
        c.answered("a".into(), vec!["alice".into(), "bob".into()], None, t);
        c.answered("a".into(), vec!["alice".into()], None, t);
        c.answered("b".into(), vec!["alice".into(), "alice".into()], None, t);
        assert_eq!((c.count("alice"), c.count("bob")), (2, 1));
        c.ended("a");
        c.ended("a");
        assert_eq!((c.count("alice"), c.count("bob")), (1, 0));
        c.expire(t + MAX_CALL + Duration::from_secs(1));
        assert_eq!(c.count("alice"), 0);
        assert!(c.is_empty());
    }

    #[test]
    fn a_losing_fork_s_dialog_is_told_from_the_call_s() {
        let mut c = CallsOf::default();
        let t = Instant::now();
        // The first 2xx (callee tag b-1) is the call's; b-2's comes after and changes nothing.
        c.answered("a".into(), vec!["alice".into()], Some("b-1"), t);
        c.answered("a".into(), vec!["alice".into()], Some("b-2"), t);
        // Either side's BYE of the other dialog (caller tag c-1).
        assert!(c.other_dialog("a", Some("c-1"), Some("b-2")));
        assert!(c.other_dialog("a", Some("b-2"), Some("c-1")));
        // The call's own dialog, either way; an unknown call; a missing tag.
        assert!(!c.other_dialog("a", Some("c-1"), Some("b-1")));
        assert!(!c.other_dialog("a", Some("b-1"), Some("c-1")));
        assert!(!c.other_dialog("x", Some("c-1"), Some("b-2")));
        assert!(!c.other_dialog("a", Some("c-1"), None));
        // Calls without an agent are told apart too, and forgotten with their BYE or age.
        c.answered("n".into(), vec![], Some("b-1"), t);
        assert!(c.other_dialog("n", Some("c-1"), Some("b-2")));
        assert_eq!(c.len(), 1);
        c.ended("a");
        assert!(!c.other_dialog("a", Some("c-1"), Some("b-2")));
        c.expire(t + MAX_CALL + Duration::from_secs(1));
        assert!(!c.other_dialog("n", Some("c-1"), Some("b-2")));
    }
}
