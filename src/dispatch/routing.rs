//! Smooth weighted round-robin (the nginx algorithm) over the analyzers in
//! rotation, grouped: a group (the endpoints of one Service-backed
//! Analyzer) takes its weight's turns in the cycle, and its members take
//! those turns in round-robin, so the weight splits evenly among them with
//! no rounding loss.
//!
//! A [`RoutingTable`] is immutable once built: it holds the members in
//! rotation and one full SWRR cycle over the groups precomputed as a
//! sequence of turns. [`RoutingTable::pick`] is a single atomic increment,
//! so picks never take a lock and concurrent picks still walk the cycle
//! exactly: pick `p` is turn `p mod cycle` of round `p / cycle`, and a
//! group's `k`-th turn overall goes to its member `k mod size`.
//!
//! Whenever the set in rotation or a weight changes, the owner builds a new
//! table (and swaps it in atomically, see `dispatch`). A new table starts
//! its cycle afresh: from that moment every `sum(weights)` consecutive picks
//! give each group exactly its weight, and a member that rejoins gets its
//! share spread over the cycle rather than in a burst.
//!
//! Weights are divided by their greatest common divisor first, so 40/30/20/10
//! has a cycle of 10: A B C A D B A C B A ... and 1000 picks give exactly
//! 400/300/200/100. A group of 3 members weighted 30 beside one weighted
//! 70 gives each of the three exactly 10 of every 100 picks.

use std::sync::atomic::{AtomicUsize, Ordering};

/// One group of the table: a run of `members`, and its turns per cycle.
#[derive(Debug, Clone, Copy)]
struct Group {
    start: usize,
    size: usize,
    turns_per_cycle: usize,
}

/// One position of the cycle: the group whose turn it is, and how many
/// turns that group had before it in the cycle.
#[derive(Debug, Clone, Copy)]
struct Turn {
    group: u32,
    earlier: u32,
}

/// One cycle of picks, built once, shared by every request.
#[derive(Debug)]
pub struct RoutingTable<T> {
    members: Vec<T>,
    groups: Vec<Group>,
    cycle: Vec<Turn>,
    cursor: AtomicUsize,
}

impl<T> RoutingTable<T> {
    /// Builds the table from `(member, weight)` pairs, each member a group
    /// of its own. Members of weight 0 are left out: they take no traffic.
    pub fn new(weighted: impl IntoIterator<Item = (T, u32)>) -> Self {
        Self::grouped(
            weighted
                .into_iter()
                .map(|(member, weight)| (vec![member], weight)),
        )
    }

    /// Builds the table from `(members, weight)` groups: each group takes
    /// its weight, split evenly among its members. Groups of weight 0 or
    /// without members are left out.
    pub fn grouped(weighted: impl IntoIterator<Item = (Vec<T>, u32)>) -> Self {
        let mut members = Vec::new();
        let mut groups = Vec::new();
        let mut weights = Vec::new();
        for (group, weight) in weighted {
            if weight == 0 || group.is_empty() {
                continue;
            }
            groups.push(Group {
                start: members.len(),
                size: group.len(),
                turns_per_cycle: 0,
            });
            weights.push(weight);
            members.extend(group);
        }
        let divisor = weights.iter().copied().fold(0, gcd).max(1);
        let reduced: Vec<u64> = weights.iter().map(|w| u64::from(w / divisor)).collect();
        let mut cycle = Vec::new();
        for group in smooth_cycle(&reduced) {
            let turns = &mut groups[group as usize].turns_per_cycle;
            cycle.push(Turn {
                group,
                earlier: *turns as u32,
            });
            *turns += 1;
        }
        RoutingTable {
            members,
            groups,
            cycle,
            cursor: AtomicUsize::new(0),
        }
    }

    /// An empty table: every pick answers `None`.
    pub fn empty() -> Self {
        Self::new(std::iter::empty())
    }

    /// The next member in the cycle, or `None` when nothing is in rotation.
    pub fn pick(&self) -> Option<&T> {
        self.pick_many(1).next().map(|member| &self.members[member])
    }

    /// The next `n` picks at once (one atomic step), as indices into
    /// [`RoutingTable::members`]: the same members `n` calls of
    /// [`RoutingTable::pick`] would answer, in their order. Empty when
    /// nothing is in rotation.
    pub fn pick_many(&self, n: usize) -> impl Iterator<Item = usize> + '_ {
        let n = if self.cycle.is_empty() { 0 } else { n };
        let first = self.cursor.fetch_add(n, Ordering::Relaxed);
        (0..n).map(move |i| self.member_at(first.wrapping_add(i)))
    }

    /// The member of pick number `position`.
    fn member_at(&self, position: usize) -> usize {
        let turn = self.cycle[position % self.cycle.len()];
        let group = self.groups[turn.group as usize];
        if group.size == 1 {
            return group.start;
        }
        // The group's turns so far, `round * turns_per_cycle + earlier`,
        // modulo its size (without overflowing).
        let round = position / self.cycle.len();
        let nth = ((round % group.size) * (group.turns_per_cycle % group.size) + turn.earlier as usize)
            % group.size;
        group.start + nth
    }

    /// The members in rotation (weight above zero), group after group.
    pub fn members(&self) -> &[T] {
        &self.members
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Picks in one full cycle over the groups.
    pub fn cycle_len(&self) -> usize {
        self.cycle.len()
    }
}

/// One full cycle of nginx's smooth weighted round-robin: each step adds
/// every weight to its member's running score, picks the highest score
/// (first on ties) and takes the total weight off the winner.
fn smooth_cycle(weights: &[u64]) -> Vec<u32> {
    let total: u64 = weights.iter().sum();
    let mut scores = vec![0i64; weights.len()];
    let mut cycle = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            scores[i] += *w as i64;
            if scores[i] > scores[best] {
                best = i;
            }
        }
        scores[best] -= total as i64;
        cycle.push(best as u32);
    }
    cycle
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn counts(table: &RoutingTable<&'static str>, picks: usize) -> HashMap<&'static str, usize> {
        let mut seen = HashMap::new();
        for _ in 0..picks {
            *seen.entry(*table.pick().unwrap()).or_default() += 1;
        }
        seen
    }

    #[test]
    fn default_weights_split_every_ten_picks_4_3_2_1() {
        let table = RoutingTable::new([("a", 40), ("b", 30), ("c", 20), ("d", 10)]);
        assert_eq!(table.cycle_len(), 10);
        for _ in 0..100 {
            let c = counts(&table, 10);
            assert_eq!((c["a"], c["b"], c["c"], c["d"]), (4, 3, 2, 1));
        }
        let c = counts(&table, 1000);
        assert_eq!((c["a"], c["b"], c["c"], c["d"]), (400, 300, 200, 100));
    }

    #[test]
    fn the_sequence_is_smooth_not_bursty() {
        let table = RoutingTable::new([("a", 5), ("b", 1), ("c", 1)]);
        let order: Vec<_> = (0..7).map(|_| *table.pick().unwrap()).collect();
        assert_eq!(order, ["a", "a", "b", "a", "c", "a", "a"]);
    }

    #[test]
    fn zero_weights_and_empty_tables_take_nothing() {
        let table = RoutingTable::new([("a", 0), ("b", 3)]);
        assert_eq!(table.members(), &["b"]);
        assert_eq!(counts(&table, 9)["b"], 9);
        assert!(RoutingTable::<&str>::empty().pick().is_none());
        assert!(RoutingTable::new([("a", 0)]).is_empty());
    }

    #[test]
    fn an_unhealthy_member_leaves_and_its_share_spreads_in_proportion() {
        // A (40) out: B, C, D get 30/20/10 = 3:2:1 of the traffic.
        let table = RoutingTable::new([("b", 30), ("c", 20), ("d", 10)]);
        let c = counts(&table, 600);
        assert_eq!((c["b"], c["c"], c["d"]), (300, 200, 100));
    }

    #[test]
    fn a_group_splits_its_weight_evenly_among_its_members() {
        // Three endpoints of one Analyzer weighted 30 beside one weighted 70.
        let table = RoutingTable::grouped([(vec!["p1", "p2", "p3"], 30), (vec!["other"], 70)]);
        assert_eq!(table.cycle_len(), 10);
        for _ in 0..20 {
            let c = counts(&table, 100);
            assert_eq!((c["p1"], c["p2"], c["p3"], c["other"]), (10, 10, 10, 70));
        }
    }

    #[test]
    fn a_groups_turns_go_round_its_members_in_order() {
        let table = RoutingTable::grouped([(vec!["x", "y"], 1), (vec!["p", "q", "r"], 2)]);
        let order: Vec<_> = (0..12).map(|_| *table.pick().unwrap()).collect();
        // The groups' cycle is G2 G1 G2; the members of each take its turns in order.
        assert_eq!(
            order,
            ["p", "x", "q", "r", "y", "p", "q", "x", "r", "p", "y", "q"]
        );
    }

    #[test]
    fn empty_groups_and_groups_of_weight_zero_take_nothing() {
        let table = RoutingTable::grouped([(vec![], 5), (vec!["a", "b"], 0), (vec!["c"], 1)]);
        assert_eq!(table.members(), &["c"]);
        assert_eq!(counts(&table, 4)["c"], 4);
    }

    fn lcm(a: usize, b: usize) -> usize {
        let (mut x, mut y) = (a, b);
        while y != 0 {
            (x, y) = (y, x % y);
        }
        a / x * b
    }

    /// The reference: nginx's algorithm run step by step, unreduced.
    fn nginx_reference(weights: &[u32], picks: usize) -> Vec<usize> {
        let total: i64 = weights.iter().map(|w| *w as i64).sum();
        let mut current = vec![0i64; weights.len()];
        (0..picks)
            .map(|_| {
                let mut best = None::<usize>;
                for (i, w) in weights.iter().enumerate() {
                    if *w == 0 {
                        continue;
                    }
                    current[i] += *w as i64;
                    if best.is_none_or(|b| current[i] > current[b]) {
                        best = Some(i);
                    }
                }
                let best = best.unwrap();
                current[best] -= total;
                best
            })
            .collect()
    }

    proptest! {
        #[test]
        fn every_cycle_gives_each_member_exactly_its_weight(
            weights in prop::collection::vec(0u32..=60, 1..8),
            healthy in prop::collection::vec(any::<bool>(), 8),
            cycles in 1usize..4,
        ) {
            let in_rotation: Vec<(usize, u32)> = weights
                .iter()
                .enumerate()
                .filter(|(i, _)| healthy[*i])
                .map(|(i, w)| (i, *w))
                .collect();
            let table = RoutingTable::new(in_rotation.clone());
            let total: u32 = in_rotation.iter().map(|(_, w)| w).sum();
            if total == 0 {
                prop_assert!(table.pick().is_none());
                return Ok(());
            }
            let divisor = in_rotation.iter().map(|(_, w)| *w).fold(0, gcd);
            let cycle = (total / divisor) as usize;
            prop_assert_eq!(table.cycle_len(), cycle);
            for _ in 0..cycles {
                let mut seen = vec![0u32; weights.len()];
                for _ in 0..cycle {
                    seen[*table.pick().unwrap()] += 1;
                }
                for (i, w) in &in_rotation {
                    prop_assert_eq!(seen[*i], w / divisor);
                }
            }
        }

        #[test]
        fn every_member_of_a_group_gets_an_even_share_of_its_weight(
            groups in prop::collection::vec((1usize..=4, 0u32..=30), 1..6),
        ) {
            let weighted: Vec<(Vec<(usize, usize)>, u32)> = groups
                .iter()
                .enumerate()
                .map(|(g, (size, weight))| ((0..*size).map(|m| (g, m)).collect(), *weight))
                .collect();
            let table = RoutingTable::grouped(weighted);
            let in_rotation: Vec<(usize, u32)> =
                groups.iter().filter(|(_, w)| *w > 0).map(|(s, w)| (*s, *w)).collect();
            if in_rotation.is_empty() {
                prop_assert!(table.pick().is_none());
                return Ok(());
            }
            let divisor = in_rotation.iter().map(|(_, w)| *w).fold(0, gcd);
            let sizes = in_rotation.iter().map(|(s, _)| *s).fold(1, lcm);
            // The groups alone walk the cycle of a table of single members.
            let by_group = RoutingTable::new(groups.iter().enumerate().map(|(g, (_, w))| (g, *w)));
            let picks = table.cycle_len() * sizes;
            let mut seen: HashMap<(usize, usize), usize> = HashMap::new();
            for _ in 0..picks {
                let (g, m) = *table.pick().unwrap();
                prop_assert_eq!(g, *by_group.pick().unwrap());
                *seen.entry((g, m)).or_default() += 1;
            }
            for (g, (size, weight)) in groups.iter().enumerate() {
                for m in 0..*size {
                    let expected = if *weight == 0 { 0 } else { (weight / divisor) as usize * sizes / size };
                    prop_assert_eq!(seen.get(&(g, m)).copied().unwrap_or(0), expected);
                }
            }
        }

        #[test]
        fn picks_taken_together_are_the_picks_taken_one_by_one(
            groups in prop::collection::vec((1usize..4, 0u32..=12), 1..5),
            takes in prop::collection::vec(0usize..40, 1..12),
        ) {
            let build = || RoutingTable::grouped(groups.iter().enumerate().map(|(g, &(size, weight))| {
                ((0..size).map(|m| (g, m)).collect::<Vec<_>>(), weight)
            }));
            let (together, one_by_one) = (build(), build());
            for n in takes {
                let many: Vec<(usize, usize)> = together.pick_many(n).map(|i| together.members()[i]).collect();
                let single: Vec<(usize, usize)> = (0..n).filter_map(|_| one_by_one.pick().copied()).collect();
                prop_assert_eq!(many, single);
            }
        }

        #[test]
        fn picks_match_nginx_over_many_cycles(weights in prop::collection::vec(0u32..=30, 1..6)) {
            prop_assume!(weights.iter().any(|w| *w > 0));
            let table = RoutingTable::new(weights.iter().copied().enumerate());
            let total: u32 = weights.iter().sum();
            let ours: Vec<usize> = (0..total as usize * 2).map(|_| *table.pick().unwrap()).collect();
            // nginx on the unreduced weights walks the same sequence when the
            // gcd is 1, and the reduced cycle repeated otherwise: compare counts
            // over whole unreduced cycles and the order when the gcd is 1.
            let reference = nginx_reference(&weights, ours.len());
            let divisor = weights.iter().copied().fold(0, gcd);
            if divisor == 1 {
                prop_assert_eq!(ours, reference);
            } else {
                for i in 0..weights.len() {
                    let a = ours.iter().filter(|x| **x == i).count();
                    let b = reference.iter().filter(|x| **x == i).count();
                    prop_assert_eq!(a, b);
                }
            }
        }
    }
}
