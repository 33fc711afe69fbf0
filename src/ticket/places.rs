//! The store-wide cap on outstanding tickets, counted per shard so that
//! concurrent issuers and redeemers rarely write the same memory.

use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;

/// Places a shard takes from the store-wide budget at a time.
const CLAIM: usize = 64;

/// How many tickets are outstanding, never more than a total.
///
/// One store-wide counter written by every issue and every redemption is a
/// cache line that all cores fight over. Here each shard (of issuing threads)
/// counts its own tickets and takes places from the store-wide budget `CLAIM`
/// at a time, giving them back once it holds more than twice that unused, so
/// the shared counter is written about once per `CLAIM` operations.
///
/// `live ≤ reserved` in every shard and the budget's `claimed` is the sum of
/// `reserved`, never above `total`: the cap always holds. A shard that finds
/// the budget spent collects the other shards' unused places before it
/// refuses, so without racing issuers the cap is exact; issuers racing near
/// the cap may be refused while other shards hold a few unused places.
#[derive(Debug)]
pub(super) struct Places {
    total: usize,
    claimed: AtomicUsize,
    shards: Box<[CachePadded<Mutex<Shard>>]>,
}

#[derive(Debug, Default)]
struct Shard {
    live: usize,
    reserved: usize,
}

impl Places {
    /// At most `total` places, counted in `shards` shards.
    pub(super) fn new(total: usize, shards: usize) -> Self {
        Self {
            total,
            claimed: AtomicUsize::new(0),
            shards: (0..shards).map(|_| CachePadded::default()).collect(),
        }
    }

    /// Takes a place in `shard`; false when all `total` are taken.
    pub(super) fn take(&self, shard: usize) -> bool {
        self.try_take(shard) || {
            self.collect_unused();
            self.try_take(shard)
        }
    }

    fn try_take(&self, shard: usize) -> bool {
        let mut shard = self.shards[shard].lock();
        if shard.live == shard.reserved {
            let granted = self.claim(CLAIM);
            if granted == 0 {
                return false;
            }
            shard.reserved += granted;
        }
        shard.live += 1;
        true
    }

    /// Takes up to `want` places from the budget; how many it got.
    fn claim(&self, want: usize) -> usize {
        let mut claimed = self.claimed.load(Ordering::Relaxed);
        loop {
            let granted = want.min(self.total.saturating_sub(claimed));
            if granted == 0 {
                return 0;
            }
            match self.claimed.compare_exchange_weak(
                claimed,
                claimed + granted,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return granted,
                Err(now) => claimed = now,
            }
        }
    }

    /// Gives back a place of `shard` whose ticket left the store.
    pub(super) fn give_back(&self, shard: usize) {
        let mut shard = self.shards[shard].lock();
        debug_assert!(shard.live > 0, "a place given back that was not taken");
        shard.live = shard.live.saturating_sub(1);
        if shard.reserved - shard.live > 2 * CLAIM {
            shard.reserved -= CLAIM;
            self.claimed.fetch_sub(CLAIM, Ordering::Relaxed);
        }
    }

    /// Returns every shard's unused places to the budget.
    fn collect_unused(&self) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            let unused = shard.reserved - shard.live;
            if unused > 0 {
                shard.reserved = shard.live;
                self.claimed.fetch_sub(unused, Ordering::Relaxed);
            }
        }
    }

    /// Places taken: tickets outstanding.
    pub(super) fn taken(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().live).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn the_total_is_exact_across_shards() {
        let places = Places::new(3, 16);
        assert!(places.take(0));
        assert!(places.take(1));
        assert!(places.take(2));
        assert!(!places.take(3), "a fourth place in any shard");
        assert!(!places.take(0));
        assert_eq!(places.taken(), 3);
        places.give_back(1);
        assert!(places.take(7), "the place given back, in another shard");
        assert!(!places.take(7));
    }

    #[test]
    fn unused_places_go_back_to_the_budget() {
        let places = Places::new(1000, 4);
        for _ in 0..500 {
            assert!(places.take(0));
        }
        for _ in 0..500 {
            places.give_back(0);
        }
        assert_eq!(places.taken(), 0);
        // Shard 0 keeps at most 2 × CLAIM unused; the rest is free for others.
        assert!(places.claimed.load(Ordering::Relaxed) <= 2 * CLAIM);
        for _ in 0..1000 {
            assert!(places.take(1));
        }
        assert!(!places.take(2));
    }

    #[test]
    fn concurrent_takers_never_exceed_the_total() {
        let places = Arc::new(Places::new(1000, 16));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let places = places.clone();
                std::thread::spawn(move || {
                    let mut got = 0;
                    for i in 0..1000 {
                        if places.take((t * 7 + i) % 16) {
                            got += 1;
                        }
                    }
                    got
                })
            })
            .collect();
        let got: usize = threads.into_iter().map(|t| t.join().expect("thread")).sum();
        assert!(got <= 1000, "{got} places taken of 1000");
        assert_eq!(places.taken(), got);
        // Once the race is over, the count is exact again.
        assert_eq!(places.take(0), got < 1000);
    }
}
