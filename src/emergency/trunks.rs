//! Which trunks an emergency call is offered to, in what order (DESIGN.md, "Trunk choice for
//! an emergency call").
//!
//! Route patterns see the **bare dialstring** (`911`, not `+1911`). A *direct-routing route* is
//! one that names at least one direct-routing trunk. A pattern **explicitly matches** a
//! dialstring `D` when it matches `D` and none of its near misses: the strings made by changing
//! exactly one digit of `D` (`811`, `901`, `912`, ... for 911), other configured dialstrings
//! excepted. `^911$`, `^(911|933)$` and `^9(11|33)$` name 911; `.*`, `^\d{3}$` and `^9\d\d$`
//! do not, because they also take the numbers next to it.
//!
//! [`candidates`] lists, without repeats:
//!
//! 1. the trunks of the first direct-routing route that explicitly matches, in its order;
//! 2. the direct-offer trunk that owns the caller's number, then every other direct-offer
//!    trunk in file order;
//! 3. as a last resort, the trunks of direct-routing routes that take the dialstring without
//!    naming it (a catch-all), in route order.
//!
//! Steps 2 and 3 after a winner are failover, not a change of choice: for an emergency call
//! every reachable trunk gets its chance, and a dead SBC must not leave a 911 call with nowhere
//! to go. A call by `urn:service:sos` is matched as the URN itself, which no numeric pattern
//! names, so it goes to the direct-offer trunks first.
//!
//! Two direct-routing routes that both explicitly match one dialstring with different trunk
//! lists would let file order alone decide where 911 goes: [`check_ambiguity`] makes that an
//! error of the dialplan.

use regex::Regex;

use crate::routing::{Dialplan, DialplanError, E164, Route, Trunk, TrunkKind};

/// Why a trunk is among the candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The direct-routing route at this index names the dialstring.
    ExplicitRoute { route: usize },
    /// A direct-offer trunk that owns the caller's number.
    OwnsCallerId,
    /// Another direct-offer trunk.
    DirectOffer,
    /// A trunk of a direct-routing route (this index) that takes the dialstring without
    /// naming it.
    LastResort { route: usize },
}

impl Why {
    /// A label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Why::ExplicitRoute { .. } => "explicit-route",
            Why::OwnsCallerId => "owns-caller-id",
            Why::DirectOffer => "direct-offer",
            Why::LastResort { .. } => "last-resort",
        }
    }
}

/// One trunk to try, and why it is there.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub trunk: &'a Trunk,
    pub why: Why,
}

/// Every configured dialstring of every country (and the test numbers), sorted, no repeats.
fn dialstrings(plan: &Dialplan) -> Vec<&str> {
    let em = &plan.emergency;
    let mut all: Vec<&str> =
        em.countries.values().flatten().chain(&em.test).map(String::as_str).collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// Whether `pattern` explicitly matches `dialstring` (see the module docs).
pub fn names_dialstring(pattern: &Regex, dialstring: &str, dialstrings: &[&str]) -> bool {
    if !pattern.is_match(dialstring) {
        return false;
    }
    let bytes = dialstring.as_bytes();
    if !bytes.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let mut probe = bytes.to_vec();
    for i in 0..bytes.len() {
        for digit in b'0'..=b'9' {
            if digit == bytes[i] {
                continue;
            }
            probe[i] = digit;
            // ASCII digits written over ASCII digits: always UTF-8.
            let near = String::from_utf8_lossy(&probe);
            if !dialstrings.contains(&near.as_ref()) && pattern.is_match(&near) {
                return false;
            }
        }
        probe[i] = bytes[i];
    }
    true
}

fn is_direct_routing(route: &Route, trunks: &[Trunk]) -> bool {
    route.trunks.iter().any(|&t| trunks.get(t).is_some_and(|t| t.kind == TrunkKind::DirectRouting))
}

/// The direct-routing routes that explicitly match `dialstring`, in file order.
fn explicit_routes<'p>(
    plan: &'p Dialplan,
    dialstring: &str,
    all: &[&str],
) -> impl Iterator<Item = (usize, &'p Route)> {
    plan.routes.iter().enumerate().filter(move |(_, r)| {
        is_direct_routing(r, &plan.trunks) && names_dialstring(&r.pattern, dialstring, all)
    })
}

/// The trunks to try for an emergency call to `dialstring` (bare, as recognised) by a caller
/// presenting `caller`, in order, with the reason for each.
pub fn candidates<'p>(
    plan: &'p Dialplan,
    dialstring: &str,
    caller: Option<&E164>,
) -> Vec<Candidate<'p>> {
    let all = dialstrings(plan);
    let mut seen = vec![false; plan.trunks.len()];
    let mut out = Vec::new();
    let mut push = |i: usize, why: Why| {
        if let (Some(false), Some(trunk)) = (seen.get(i).copied(), plan.trunks.get(i)) {
            seen[i] = true;
            out.push(Candidate { trunk, why });
        }
    };
    if let Some((r, route)) = explicit_routes(plan, dialstring, &all).next() {
        for &t in &route.trunks {
            push(t, Why::ExplicitRoute { route: r });
        }
    }
    let direct_offer = |t: &Trunk| t.kind == TrunkKind::DirectOffer;
    if let Some(n) = caller
        && let Some(owner) = plan
            .trunks
            .iter()
            .position(|t| direct_offer(t) && t.numbers.iter().any(|r| r.contains(n)))
    {
        push(owner, Why::OwnsCallerId);
    }
    for (i, t) in plan.trunks.iter().enumerate() {
        if direct_offer(t) {
            push(i, Why::DirectOffer);
        }
    }
    for (r, route) in plan.routes.iter().enumerate() {
        if is_direct_routing(route, &plan.trunks) && route.pattern.is_match(dialstring) {
            for &t in &route.trunks {
                push(t, Why::LastResort { route: r });
            }
        }
    }
    out
}

/// Two direct-routing routes that explicitly match one dialstring with different trunk lists:
/// an error at the second, naming the first.
pub fn check_ambiguity(plan: &Dialplan) -> Vec<DialplanError> {
    let all = dialstrings(plan);
    let mut errors = Vec::new();
    for d in &all {
        let mut explicit = explicit_routes(plan, d, &all);
        let Some((_, first)) = explicit.next() else { continue };
        for (_, other) in explicit {
            if other.trunks != first.trunks {
                errors.push(DialplanError {
                    file: other.file.clone(),
                    line: other.line,
                    message: format!(
                        "emergency number {d} is named by two direct-routing routes with \
                         different trunks (the other is at {}:{}): keep one route per \
                         emergency number, or give both the same trunks",
                        first.file.display(),
                        first.line
                    ),
                });
            }
        }
    }
    errors
}

/// What `lifeline check` warns about in the emergency set-up of a valid dialplan: never an
/// error, since an emergency call is never refused because of configuration.
pub fn warnings(plan: &Dialplan) -> Vec<String> {
    let em = &plan.emergency;
    let all = dialstrings(plan);
    let mut out = Vec::new();
    let at = |r: &Route| format!("{}:{}", r.file.display(), r.line);
    for route in &plan.routes {
        let takes: Vec<&str> = all.iter().copied().filter(|d| route.pattern.is_match(d)).collect();
        if takes.is_empty() {
            continue;
        }
        let named: Vec<&str> =
            takes.iter().copied().filter(|d| names_dialstring(&route.pattern, d, &all)).collect();
        if is_direct_routing(route, &plan.trunks) {
            let caught: Vec<&str> = takes.iter().copied().filter(|d| !named.contains(d)).collect();
            if !caught.is_empty() {
                out.push(format!(
                    "{}: the catch-all direct-routing route '{}' takes emergency numbers ({}) \
                     without naming them: they go to the direct-offer trunks first and to it \
                     only as a last resort; add an explicit route if the SBC should take them",
                    at(route),
                    route.pattern.as_str(),
                    caught.join(", ")
                ));
            }
        } else if !named.is_empty() {
            out.push(format!(
                "{}: route '{}' names emergency numbers ({}) but only direct-offer trunks: \
                 it is ignored for emergency calls",
                at(route),
                route.pattern.as_str(),
                named.join(", ")
            ));
        }
    }
    for d in &all {
        if candidates(plan, d, None).is_empty() {
            out.push(format!(
                "no trunk would be tried for emergency number {d}: no direct-offer trunk and \
                 no direct-routing route takes it"
            ));
        }
    }
    for t in &em.test {
        if !em.countries.values().flatten().any(|d| d == t) {
            out.push(format!("test number {t} is in no country's list: it is never recognised"));
        }
    }
    if em.callback_pool.is_empty() {
        out.push(
            "[emergency] callback_pool is empty: emergency calls present the agent's own number"
                .to_owned(),
        );
    }
    let owned = |n: &E164| plan.trunks.iter().any(|t| t.numbers.iter().any(|r| r.contains(n)));
    for range in &em.callback_pool {
        if !owned(&range.first) || !owned(&range.last) {
            out.push(format!(
                "callback pool range {range} has numbers no trunk owns: a PSAP's call back may \
                 not reach the edge"
            ));
        }
    }
    match &em.site_number {
        None => out.push(
            "[emergency] site_number is not set: unauthenticated emergency calls have no \
             callback number"
                .to_owned(),
        ),
        Some(n) if em.callback_pool.iter().any(|r| r.contains(n)) => out.push(format!(
            "[emergency] site_number {n} is in the callback pool: leased to an agent, it would \
             send callbacks for unauthenticated calls to that agent"
        )),
        Some(n) if !owned(n) => out.push(format!(
            "[emergency] site_number {n} is owned by no trunk: a PSAP's call back may not reach \
             the edge"
        )),
        Some(_) => {}
    }
    if em.callback_fallback.is_none() {
        out.push(
            "[emergency] callback_fallback is not set: a PSAP call to an expired lease or an \
             unreachable agent reaches nobody"
                .to_owned(),
        );
    }
    out
}

#[cfg(test)]
mod tests;
