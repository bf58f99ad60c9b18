//! The auction (SPEC §2): which campaigns may bid, who wins, what the winner
//! pays. Plain functions and types; the only outside party is the spend
//! ledger, which charges the winner atomically.
//!
//! Speed comes from [`AuctionIndex`]: active campaigns are ranked once (CPM
//! high to low, oldest first on ties) and every targeting value has a bitset
//! of the campaigns it admits. A bid ANDs a handful of bitsets a word at a
//! time and walks the set bits in rank order, so it stops at the first two
//! eligible campaigns instead of scanning all of them.

use std::{collections::HashMap, sync::Arc};

use admesh_common::{FastHash, config::AuctionKind};
use admesh_proto::common::v1::DeviceType;
use fixedbitset::FixedBitSet;

use crate::{
    campaign::{Campaign, CampaignStatus, spend_of_impression},
    ledger::{Rejection, SpendLedger},
};

/// The oldest age an age range can name; older ages match ranges ending at it.
pub const MAX_AGE: u32 = admesh_common::validation::MAX_AGE;

/// How many campaigns one bid tries to charge before giving up: each failed
/// charge (a budget or cap used up by a concurrent bid) costs a round trip.
const MAX_CHARGE_ATTEMPTS: usize = 8;

/// What the bidder knows about the impression. Country upper-case, interests
/// lower-case (see `input::normalize_bid`).
#[derive(Clone, Debug)]
pub struct BidContext<'a> {
    pub user_id: &'a str,
    pub placement_id: &'a str,
    /// Empty when unknown: then only campaigns without a country rule match.
    pub country: &'a str,
    pub device_type: DeviceType,
    pub age: Option<u32>,
    pub interests: &'a [String],
    pub floor_cpm: i64,
    /// Unix ms.
    pub now: i64,
    pub day: i64,
}

/// Why nobody bid, ordered by how far the best campaign got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NoBid {
    /// No active, running campaign targets this impression.
    NoMatch,
    /// Some do, but none bids at least the floor.
    BelowFloor,
    /// Some would, but their budgets (daily or lifetime) are spent.
    BudgetExhausted,
    /// Some would, but this user has seen them often enough today.
    FrequencyCapped,
}

impl From<Rejection> for NoBid {
    fn from(rejection: Rejection) -> Self {
        match rejection {
            Rejection::BudgetExhausted => NoBid::BudgetExhausted,
            Rejection::FrequencyCapped => NoBid::FrequencyCapped,
            // No budget this campaign can spend on this impression now.
            Rejection::ReservationPending => NoBid::BudgetExhausted,
        }
    }
}

/// The auction's result for one impression.
#[derive(Clone, Debug)]
pub enum Outcome {
    Won(Win),
    NoBid(NoBid),
}

/// A charged win.
#[derive(Clone, Debug)]
pub struct Win {
    pub campaign: Arc<Campaign>,
    /// Index into `campaign.ads`.
    pub ad_index: usize,
    /// The clearing CPM, micros.
    pub price: i64,
    /// What this impression cost the campaign, micros.
    pub spend: i64,
}

/// What the winner pays (CPM, micros). Second price: the runner-up's bid or
/// the floor, whichever is higher, plus one micro; never more than its own.
pub fn clearing_price(kind: AuctionKind, own_bid: i64, runner_up: Option<i64>, floor: i64) -> i64 {
    match kind {
        AuctionKind::FirstPrice => own_bid,
        AuctionKind::SecondPrice => runner_up
            .unwrap_or(0)
            .max(floor)
            .saturating_add(1)
            .min(own_bid),
    }
}

/// The bitsets of one targeting dimension: campaigns without a rule of this
/// kind (they match any value) and, per value, the campaigns naming it.
#[derive(Debug)]
struct Dimension<K> {
    any: FixedBitSet,
    by_value: HashMap<K, FixedBitSet, FastHash>,
}

impl<K: std::hash::Hash + Eq> Dimension<K> {
    fn new(len: usize) -> Self {
        Self {
            any: FixedBitSet::with_capacity(len),
            by_value: HashMap::default(),
        }
    }

    fn insert(&mut self, position: usize, values: impl IntoIterator<Item = K>, len: usize) {
        let mut named_any = false;
        for value in values {
            named_any = true;
            self.by_value
                .entry(value)
                .or_insert_with(|| FixedBitSet::with_capacity(len))
                .insert(position);
        }
        if !named_any {
            self.any.insert(position);
        }
    }

    /// The bitsets admitting any of `values` (campaigns naming one of them,
    /// and those without a rule of this kind), appended to `admitting`.
    fn admitting<'s, 'q, Q>(
        &'s self,
        values: impl IntoIterator<Item = &'q Q>,
        admitting: &mut Vec<&'s [Block]>,
    ) where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized + 'q,
    {
        admitting.push(self.any.as_slice());
        admitting.extend(
            values
                .into_iter()
                .filter_map(|value| self.by_value.get(value))
                .map(FixedBitSet::as_slice),
        );
    }
}

/// A word of a [`FixedBitSet`].
type Block = fixedbitset::Block;

/// The positions (rank order) of the campaigns whose targeting admits a
/// bid, found a word at a time: a word of the result is the AND over the
/// dimensions of the OR of each dimension's admitting bitsets. The walk stops
/// when the auction has its winner and runner-up, so a bid reads the first
/// few words of each bitset, not all of them.
struct Targeted<'a> {
    /// Every dimension's admitting bitsets, one after another.
    admitting: Vec<&'a [Block]>,
    /// Where each dimension's bitsets end in `admitting`.
    dimension_ends: [usize; DIMENSIONS],
    /// The next word to compute.
    next_word: usize,
    /// Positions not yet yielded in the current word.
    current: Block,
    /// The current word's first position.
    base: usize,
    /// Words in every bitset (they all cover the ranked campaigns).
    words: usize,
}

/// Country, device, placement, interests, age.
const DIMENSIONS: usize = 5;

impl Targeted<'_> {
    fn word(&self, i: usize) -> Block {
        let mut start = 0;
        let mut word = Block::MAX;
        for &end in &self.dimension_ends {
            let admitted = self.admitting[start..end]
                .iter()
                .fold(0, |acc, bits| acc | bits[i]);
            word &= admitted;
            if word == 0 {
                return 0;
            }
            start = end;
        }
        word
    }

    /// Yields nothing more.
    fn stop(&mut self) {
        self.current = 0;
        self.next_word = self.words;
    }
}

impl Iterator for Targeted<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        while self.current == 0 {
            if self.next_word >= self.words {
                return None;
            }
            self.current = self.word(self.next_word);
            self.base = self.next_word * Block::BITS as usize;
            self.next_word += 1;
        }
        let bit = self.current.trailing_zeros() as usize;
        self.current &= self.current - 1;
        Some(self.base + bit)
    }
}

/// Active campaigns ranked for the auction, with a bitset per targeting value.
#[derive(Debug)]
pub struct AuctionIndex {
    ranked: Vec<Arc<Campaign>>,
    countries: Dimension<String>,
    devices: Dimension<i32>,
    placements: Dimension<String>,
    interests: Dimension<String>,
    /// Campaigns without an age rule, and per age the ranges containing it.
    any_age: FixedBitSet,
    by_age: Vec<FixedBitSet>,
}

impl AuctionIndex {
    /// Indexes the active campaigns among `campaigns`.
    pub fn build(campaigns: impl IntoIterator<Item = Arc<Campaign>>) -> Self {
        let mut ranked: Vec<Arc<Campaign>> = campaigns
            .into_iter()
            .filter(|campaign| {
                campaign.status == CampaignStatus::Active && !campaign.ads.is_empty()
            })
            .collect();
        ranked.sort_by(|a, b| {
            b.bid_price
                .cmp(&a.bid_price)
                .then(a.created_seq.cmp(&b.created_seq))
        });
        let len = ranked.len();
        let mut index = Self {
            countries: Dimension::new(len),
            devices: Dimension::new(len),
            placements: Dimension::new(len),
            interests: Dimension::new(len),
            any_age: FixedBitSet::with_capacity(len),
            by_age: Vec::new(),
            ranked: Vec::new(),
        };
        let mut by_age = vec![FixedBitSet::with_capacity(len); MAX_AGE as usize + 1];
        for (position, campaign) in ranked.iter().enumerate() {
            let targeting = &campaign.targeting;
            index
                .countries
                .insert(position, targeting.countries.iter().cloned(), len);
            index.devices.insert(
                position,
                targeting.device_types.iter().map(|device| *device as i32),
                len,
            );
            index
                .placements
                .insert(position, targeting.placements.iter().cloned(), len);
            index
                .interests
                .insert(position, targeting.interests.iter().cloned(), len);
            match targeting.age_range {
                None => index.any_age.insert(position),
                Some(range) => {
                    for age in range.min..=range.max.min(MAX_AGE) {
                        by_age[age as usize].insert(position);
                    }
                }
            }
        }
        index.by_age = by_age;
        index.ranked = ranked;
        index
    }

    /// The index with `changed` in place of its old version (or without it
    /// once it is no longer active).
    pub fn with_change(&self, changed: Arc<Campaign>) -> Self {
        let changed_id = Arc::clone(&changed.id);
        let others = self
            .ranked
            .iter()
            .filter(|campaign| campaign.id != changed_id)
            .cloned();
        Self::build(others.chain(std::iter::once(changed)))
    }

    /// How many campaigns can bid.
    pub fn len(&self) -> usize {
        self.ranked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranked.is_empty()
    }

    /// The indexed campaigns, in rank order.
    pub fn campaigns(&self) -> &[Arc<Campaign>] {
        &self.ranked
    }

    /// Positions (rank order) of campaigns whose targeting admits `bid`.
    fn targeted(&self, bid: &BidContext<'_>) -> Targeted<'_> {
        let mut admitting = Vec::with_capacity(2 * DIMENSIONS + bid.interests.len());
        let mut dimension_ends = [0; DIMENSIONS];
        self.countries.admitting([bid.country], &mut admitting);
        dimension_ends[0] = admitting.len();
        self.devices
            .admitting([&(bid.device_type as i32)], &mut admitting);
        dimension_ends[1] = admitting.len();
        self.placements
            .admitting([bid.placement_id], &mut admitting);
        dimension_ends[2] = admitting.len();
        self.interests
            .admitting(bid.interests.iter().map(String::as_str), &mut admitting);
        dimension_ends[3] = admitting.len();
        admitting.push(self.any_age.as_slice());
        if let Some(age) = bid.age {
            admitting.push(self.by_age[age.min(MAX_AGE) as usize].as_slice());
        }
        dimension_ends[4] = admitting.len();
        Targeted {
            words: self.any_age.as_slice().len(),
            admitting,
            dimension_ends,
            next_word: 0,
            current: 0,
            base: 0,
        }
    }
}

/// Walks targeted campaigns in rank order, yielding those that may bid now,
/// and remembers the furthest any campaign got, for the no-bid reason.
struct Eligible<'a> {
    index: &'a AuctionIndex,
    positions: Targeted<'a>,
    bid: &'a BidContext<'a>,
    ledger: &'a dyn SpendLedger,
    furthest: NoBid,
}

impl<'a> Iterator for Eligible<'a> {
    type Item = &'a Arc<Campaign>;

    fn next(&mut self) -> Option<Self::Item> {
        for position in self.positions.by_ref() {
            let campaign = &self.index.ranked[position];
            if !campaign.is_running_at(self.bid.now) {
                continue;
            }
            if campaign.bid_price < self.bid.floor_cpm {
                // Ranked by bid: everyone after bids less still.
                self.furthest = self.furthest.max(NoBid::BelowFloor);
                self.positions.stop();
                return None;
            }
            match self
                .ledger
                .precheck(campaign, self.bid.user_id, self.bid.day)
            {
                Some(rejection) => self.furthest = self.furthest.max(rejection.into()),
                None => return Some(campaign),
            }
        }
        None
    }
}

/// Runs the auction for one impression and charges the winner. A winner
/// whose charge fails (a concurrent bid took the last of its budget) is
/// passed over for the next campaign in rank.
pub async fn run_auction(
    index: &AuctionIndex,
    bid: &BidContext<'_>,
    kind: AuctionKind,
    ledger: &dyn SpendLedger,
) -> anyhow::Result<Outcome> {
    let mut eligible = Eligible {
        index,
        positions: index.targeted(bid),
        bid,
        ledger,
        furthest: NoBid::NoMatch,
    };
    let mut current = eligible.next();
    let mut attempts = 0;
    while let Some(campaign) = current {
        let runner_up = eligible.next();
        let price = clearing_price(
            kind,
            campaign.bid_price,
            runner_up.map(|c| c.bid_price),
            bid.floor_cpm,
        );
        let spend = spend_of_impression(price);
        match ledger
            .try_charge(campaign, bid.user_id, spend, bid.day)
            .await?
        {
            Ok(()) => {
                return Ok(Outcome::Won(Win {
                    ad_index: pick_ad(campaign, bid),
                    campaign: Arc::clone(campaign),
                    price,
                    spend,
                }));
            }
            Err(rejection) => eligible.furthest = eligible.furthest.max(rejection.into()),
        }
        attempts += 1;
        if attempts == MAX_CHARGE_ATTEMPTS {
            break;
        }
        current = runner_up;
    }
    Ok(Outcome::NoBid(eligible.furthest))
}

/// Rotates a campaign's ads per user and second, so a user sees them all.
fn pick_ad(campaign: &Campaign, bid: &BidContext<'_>) -> usize {
    if campaign.ads.len() < 2 {
        return 0;
    }
    // FNV-1a: cheap, stable across processes and releases.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bid.user_id.bytes().chain((bid.now / 1000).to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % campaign.ads.len() as u64) as usize
}

#[cfg(test)]
mod tests;
