//! The auction's table tests: targeting, floors, tie-break, pricing and
//! every no-bid reason, against the embedded ledger.

use std::sync::Arc;

use admesh_common::{Database, config::AuctionKind};
use admesh_proto::common::v1::DeviceType;

use super::*;
use crate::{
    campaign::{Ad, AgeRange, Campaign, CampaignStatus, PersistedSpend, Targeting},
    ledger::{EmbeddedLedger, SpendJournal},
    store::CampaignStore,
};

const DAY: i64 = 20_000;
const NOW: i64 = DAY * 86_400_000 + 1_000;

fn campaign(seq: i64, bid_price: i64) -> Campaign {
    Campaign {
        id: Arc::from(format!("c{seq}")),
        name: format!("campaign {seq}"),
        advertiser_id: "adv".into(),
        status: CampaignStatus::Active,
        bid_price,
        daily_budget: 1_000_000_000,
        lifetime_budget: None,
        start_time: None,
        end_time: None,
        frequency_cap: None,
        targeting: Targeting::default(),
        ads: vec![Ad {
            id: format!("ad{seq}"),
            title: "t".into(),
            image_url: "https://cdn.example.com/i.jpg".into(),
            redirect_url: "https://example.com/".into(),
            created_at: 0,
        }],
        created_seq: seq,
        created_at: 0,
        updated_at: 0,
        persisted_spend: PersistedSpend::default(),
    }
}

/// An embedded ledger on a private in-memory SQLite: it reserves budget in
/// SQL before granting it, so the campaigns it charges are stored there.
struct TestLedger {
    ledger: EmbeddedLedger,
    store: CampaignStore,
    stored: std::sync::Mutex<std::collections::HashSet<Arc<str>>>,
}

impl TestLedger {
    async fn store(&self, campaigns: &[Campaign]) {
        let missing: Vec<Campaign> = {
            let stored = self.stored.lock().expect("lock");
            campaigns
                .iter()
                .filter(|campaign| !stored.contains(&campaign.id))
                .cloned()
                .collect()
        };
        self.store
            .insert_all(&missing)
            .await
            .expect("store campaigns");
        let mut stored = self.stored.lock().expect("lock");
        stored.extend(missing.into_iter().map(|campaign| campaign.id));
    }
}

async fn ledger() -> TestLedger {
    let database = Database::connect_and_migrate("sqlite::memory:", 1)
        .await
        .expect("in-memory SQLite");
    TestLedger {
        ledger: EmbeddedLedger::new(SpendJournal::new(database.clone())),
        store: CampaignStore::new(database),
        stored: Default::default(),
    }
}

struct Impression {
    user: &'static str,
    placement: &'static str,
    country: &'static str,
    device: DeviceType,
    age: Option<u32>,
    interests: Vec<String>,
    floor: i64,
    now: i64,
}

impl Default for Impression {
    fn default() -> Self {
        Self {
            user: "user-1",
            placement: "home",
            country: "US",
            device: DeviceType::Mobile,
            age: None,
            interests: Vec::new(),
            floor: 0,
            now: NOW,
        }
    }
}

async fn auction_with(
    campaigns: &[Campaign],
    impression: &Impression,
    kind: AuctionKind,
    ledger: &TestLedger,
) -> Outcome {
    ledger.store(campaigns).await;
    let index = AuctionIndex::build(campaigns.iter().cloned().map(Arc::new));
    let bid = bid_context(impression);
    run_auction(&index, &bid, kind, &ledger.ledger)
        .await
        .expect("in-memory SQLite does not fail")
}

fn bid_context(impression: &Impression) -> BidContext<'_> {
    BidContext {
        user_id: impression.user,
        placement_id: impression.placement,
        country: impression.country,
        device_type: impression.device,
        age: impression.age,
        interests: &impression.interests,
        floor_cpm: impression.floor,
        now: impression.now,
        day: utc_day_of(impression.now),
    }
}

fn utc_day_of(now: i64) -> i64 {
    admesh_common::time::utc_day(now)
}

async fn auction(campaigns: &[Campaign], impression: &Impression) -> Outcome {
    auction_with(
        campaigns,
        impression,
        AuctionKind::FirstPrice,
        &ledger().await,
    )
    .await
}

fn winner(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Won(win) => &win.campaign.id,
        Outcome::NoBid(reason) => panic!("expected a win, got no-bid {reason:?}"),
    }
}

fn reason(outcome: &Outcome) -> NoBid {
    match outcome {
        Outcome::Won(win) => panic!("expected no-bid, {} won", win.campaign.id),
        Outcome::NoBid(reason) => *reason,
    }
}

#[tokio::test]
async fn highest_bid_wins_and_ties_go_to_the_oldest_campaign() {
    let campaigns = [
        campaign(3, 2_000_000),
        campaign(1, 1_000_000),
        campaign(2, 2_000_000),
    ];
    let outcome = auction(&campaigns, &Impression::default()).await;
    assert_eq!(winner(&outcome), "c2");
}

#[tokio::test]
async fn every_targeting_rule_must_match() {
    let mut us_mobile = campaign(1, 3_000_000);
    us_mobile.targeting.countries = vec!["US".into()];
    us_mobile.targeting.device_types = vec![DeviceType::Mobile];
    let mut gb_only = campaign(2, 9_000_000);
    gb_only.targeting.countries = vec!["GB".into()];
    let mut desktop_only = campaign(3, 8_000_000);
    desktop_only.targeting.device_types = vec![DeviceType::Desktop];
    let mut banner_only = campaign(4, 7_000_000);
    banner_only.targeting.placements = vec!["banner".into()];
    let mut gamers = campaign(5, 6_000_000);
    gamers.targeting.interests = vec!["gaming".into(), "rpg".into()];
    let mut young = campaign(6, 5_000_000);
    young.targeting.age_range = Some(AgeRange { min: 18, max: 24 });
    let campaigns = [us_mobile, gb_only, desktop_only, banner_only, gamers, young];

    // Matches only the US mobile campaign.
    let outcome = auction(&campaigns, &Impression::default()).await;
    assert_eq!(winner(&outcome), "c1");

    let cases: &[(Impression, &str)] = &[
        (
            Impression {
                country: "GB",
                ..Impression::default()
            },
            "c2",
        ),
        (
            Impression {
                device: DeviceType::Desktop,
                country: "FR",
                ..Impression::default()
            },
            "c3",
        ),
        (
            Impression {
                placement: "banner",
                ..Impression::default()
            },
            "c4",
        ),
        (
            Impression {
                interests: vec!["rpg".into()],
                ..Impression::default()
            },
            "c5",
        ),
        (
            Impression {
                age: Some(18),
                ..Impression::default()
            },
            "c6",
        ),
        (
            Impression {
                age: Some(25),
                ..Impression::default()
            },
            "c1",
        ),
    ];
    for (impression, expected) in cases {
        let outcome = auction(&campaigns, impression).await;
        assert_eq!(
            winner(&outcome),
            *expected,
            "placement {}",
            impression.placement
        );
    }
}

#[tokio::test]
async fn unknown_attributes_match_only_campaigns_without_that_rule() {
    let mut targeted = campaign(1, 5_000_000);
    targeted.targeting.countries = vec!["US".into()];
    targeted.targeting.age_range = Some(AgeRange { min: 18, max: 99 });
    let untargeted = campaign(2, 1_000_000);
    let impression = Impression {
        country: "",
        age: None,
        ..Impression::default()
    };
    let outcome = auction(&[targeted, untargeted], &impression).await;
    assert_eq!(winner(&outcome), "c2");
}

#[tokio::test]
async fn campaigns_bid_only_inside_their_time_window() {
    let mut not_started = campaign(1, 5_000_000);
    not_started.start_time = Some(NOW + 1);
    let mut ended = campaign(2, 5_000_000);
    ended.end_time = Some(NOW);
    let outcome = auction(
        &[not_started.clone(), ended.clone()],
        &Impression::default(),
    )
    .await;
    assert_eq!(reason(&outcome), NoBid::NoMatch);
    not_started.start_time = Some(NOW);
    let outcome = auction(&[not_started, ended], &Impression::default()).await;
    assert_eq!(winner(&outcome), "c1");
}

#[tokio::test]
async fn paused_and_adless_campaigns_never_bid() {
    let mut paused = campaign(1, 5_000_000);
    paused.status = CampaignStatus::Paused;
    let mut no_ads = campaign(2, 5_000_000);
    no_ads.ads.clear();
    let outcome = auction(&[paused, no_ads], &Impression::default()).await;
    assert_eq!(reason(&outcome), NoBid::NoMatch);
}

#[tokio::test]
async fn the_floor_filters_bids_and_a_bid_equal_to_it_is_eligible() {
    let campaigns = [campaign(1, 2_000_000), campaign(2, 1_000_000)];
    let impression = Impression {
        floor: 2_000_001,
        ..Impression::default()
    };
    assert_eq!(
        reason(&auction(&campaigns, &impression).await),
        NoBid::BelowFloor
    );
    let impression = Impression {
        floor: 2_000_000,
        ..Impression::default()
    };
    assert_eq!(winner(&auction(&campaigns, &impression).await), "c1");
}

#[test]
fn clearing_prices() {
    use AuctionKind::{FirstPrice, SecondPrice};
    // (kind, own bid, runner-up, floor) → price
    let table = [
        (FirstPrice, 3_000_000, Some(2_000_000), 0, 3_000_000),
        (SecondPrice, 3_000_000, Some(2_000_000), 0, 2_000_001),
        (
            SecondPrice,
            3_000_000,
            Some(2_000_000),
            2_500_000,
            2_500_001,
        ),
        (SecondPrice, 3_000_000, None, 1_000_000, 1_000_001),
        (SecondPrice, 3_000_000, None, 0, 1),
        // Never above the winner's own bid.
        (SecondPrice, 3_000_000, Some(3_000_000), 0, 3_000_000),
        (SecondPrice, 3_000_000, None, 3_000_000, 3_000_000),
    ];
    for (kind, own, runner_up, floor, expected) in table {
        assert_eq!(
            clearing_price(kind, own, runner_up, floor),
            expected,
            "{kind:?} own {own} runner-up {runner_up:?} floor {floor}"
        );
    }
}

#[tokio::test]
async fn second_price_uses_the_next_eligible_bid() {
    let mut other_country = campaign(1, 4_000_000);
    other_country.targeting.countries = vec!["GB".into()];
    let campaigns = [
        other_country,
        campaign(2, 3_000_000),
        campaign(3, 2_000_000),
    ];
    let outcome = auction_with(
        &campaigns,
        &Impression::default(),
        AuctionKind::SecondPrice,
        &ledger().await,
    )
    .await;
    let Outcome::Won(win) = outcome else {
        panic!("expected a win")
    };
    assert_eq!(&*win.campaign.id, "c2");
    assert_eq!(win.price, 2_000_001);
    assert_eq!(win.spend, 2_001);
}

#[tokio::test]
async fn spent_budgets_pass_the_impression_to_the_next_campaign_then_no_bid() {
    let ledger = ledger().await;
    let mut small = campaign(1, 2_000_000);
    // Exactly two first-price impressions (2,000 micros each).
    small.daily_budget = 4_000;
    let mut lifetime = campaign(2, 1_000_000);
    lifetime.lifetime_budget = Some(1_000);
    let campaigns = [small, lifetime];
    let impression = Impression::default();
    let mut winners = Vec::new();
    for _ in 0..3 {
        let outcome = auction_with(&campaigns, &impression, AuctionKind::FirstPrice, &ledger).await;
        winners.push(winner(&outcome).to_string());
    }
    assert_eq!(winners, ["c1", "c1", "c2"]);
    let outcome = auction_with(&campaigns, &impression, AuctionKind::FirstPrice, &ledger).await;
    assert_eq!(reason(&outcome), NoBid::BudgetExhausted);
}

#[tokio::test]
async fn daily_budgets_start_again_at_utc_midnight() {
    let ledger = ledger().await;
    let mut small = campaign(1, 2_000_000);
    small.daily_budget = 2_000;
    let campaigns = [small];
    let today = Impression::default();
    assert_eq!(
        winner(&auction_with(&campaigns, &today, AuctionKind::FirstPrice, &ledger).await),
        "c1"
    );
    assert_eq!(
        reason(&auction_with(&campaigns, &today, AuctionKind::FirstPrice, &ledger).await),
        NoBid::BudgetExhausted
    );
    let tomorrow = Impression {
        now: (DAY + 1) * 86_400_000,
        ..Impression::default()
    };
    assert_eq!(
        winner(&auction_with(&campaigns, &tomorrow, AuctionKind::FirstPrice, &ledger).await),
        "c1"
    );
}

#[tokio::test]
async fn frequency_caps_count_per_user_per_day() {
    let ledger = ledger().await;
    let mut capped = campaign(1, 2_000_000);
    capped.frequency_cap = Some(2);
    let campaigns = [capped];
    let alice = Impression::default();
    for _ in 0..2 {
        let outcome = auction_with(&campaigns, &alice, AuctionKind::FirstPrice, &ledger).await;
        assert_eq!(winner(&outcome), "c1");
    }
    let outcome = auction_with(&campaigns, &alice, AuctionKind::FirstPrice, &ledger).await;
    assert_eq!(reason(&outcome), NoBid::FrequencyCapped);
    let bob = Impression {
        user: "user-2",
        ..Impression::default()
    };
    let outcome = auction_with(&campaigns, &bob, AuctionKind::FirstPrice, &ledger).await;
    assert_eq!(winner(&outcome), "c1");
}

#[tokio::test]
async fn no_match_when_nothing_targets_the_impression() {
    let mut gb = campaign(1, 2_000_000);
    gb.targeting.countries = vec!["GB".into()];
    assert_eq!(
        reason(&auction(&[gb], &Impression::default()).await),
        NoBid::NoMatch
    );
    assert_eq!(
        reason(&auction(&[], &Impression::default()).await),
        NoBid::NoMatch
    );
}

#[test]
fn a_change_replaces_the_campaign_in_the_index() {
    let index = AuctionIndex::build([
        Arc::new(campaign(1, 1_000_000)),
        Arc::new(campaign(2, 2_000_000)),
    ]);
    let mut paused = campaign(2, 2_000_000);
    paused.status = CampaignStatus::Paused;
    let changed = index.with_change(Arc::new(paused));
    assert_eq!(changed.len(), 1);
    let raised = changed.with_change(Arc::new(campaign(1, 5_000_000)));
    assert_eq!(raised.campaigns()[0].bid_price, 5_000_000);
}

#[tokio::test]
async fn ten_thousand_campaigns_index_and_answer() {
    let campaigns: Vec<Campaign> = (1..=10_000)
        .map(|seq| {
            let mut c = campaign(seq, 1_000_000 + seq * 100);
            c.targeting.countries = vec![["US", "GB", "DE", "FR"][seq as usize % 4].into()];
            c
        })
        .collect();
    let outcome = auction(&campaigns, &Impression::default()).await;
    // The highest US bid: seq ≡ 0 mod 4, largest.
    assert_eq!(winner(&outcome), "c10000");
}

/// What the index must find, by reading every campaign's rules.
fn admits(targeting: &Targeting, bid: &BidContext<'_>) -> bool {
    let any_or =
        |rules: &[String], value: &str| rules.is_empty() || rules.iter().any(|r| r == value);
    any_or(&targeting.countries, bid.country)
        && (targeting.device_types.is_empty() || targeting.device_types.contains(&bid.device_type))
        && any_or(&targeting.placements, bid.placement_id)
        && (targeting.interests.is_empty()
            || bid
                .interests
                .iter()
                .any(|i| targeting.interests.contains(i)))
        && match (targeting.age_range, bid.age) {
            (None, _) => true,
            (Some(range), Some(age)) => range.contains(age.min(MAX_AGE)),
            (Some(_), None) => false,
        }
}

#[test]
fn the_word_at_a_time_walk_finds_what_a_scan_finds() {
    use crate::synthetic::{COUNTRIES, DEVICES, INTERESTS, synthetic_campaigns};
    // 1,000 campaigns: 16 words, so matches span word boundaries.
    let index = AuctionIndex::build(synthetic_campaigns(1_000).into_iter().map(Arc::new));
    let interests: Vec<Vec<String>> = vec![
        vec![],
        vec![INTERESTS[0].into()],
        vec![INTERESTS[3].into(), INTERESTS[7].into()],
        vec!["unknown".into()],
    ];
    let mut checked = 0;
    for (i, country) in COUNTRIES.iter().chain(&["", "ZZ"]).enumerate() {
        for device in DEVICES {
            for age in [None, Some(17), Some(30), Some(64), Some(200)] {
                let interests = &interests[i % interests.len()];
                let placement = format!("placement-{}", (i * 7) % 22);
                let bid = BidContext {
                    user_id: "u",
                    placement_id: &placement,
                    country,
                    device_type: *device,
                    age,
                    interests,
                    floor_cpm: 0,
                    now: NOW,
                    day: DAY,
                };
                let walked: Vec<usize> = index.targeted(&bid).collect();
                let scanned: Vec<usize> = index
                    .campaigns()
                    .iter()
                    .enumerate()
                    .filter(|(_, campaign)| admits(&campaign.targeting, &bid))
                    .map(|(position, _)| position)
                    .collect();
                assert_eq!(walked, scanned, "{bid:?}");
                checked += usize::from(!scanned.is_empty());
            }
        }
    }
    assert!(checked > 20, "too few bids matched anything: {checked}");
}

/// A ledger where one campaign's budget reservation is always being
/// written by another bid (`Rejection::ReservationPending`) and every other
/// campaign pays.
#[derive(Debug)]
struct ReservingLedger {
    reserving: &'static str,
}

#[async_trait::async_trait]
impl crate::ledger::SpendLedger for ReservingLedger {
    fn precheck(&self, _: &Campaign, _: &str, _: i64) -> Option<crate::ledger::Rejection> {
        None
    }

    async fn try_charge(
        &self,
        campaign: &Campaign,
        _: &str,
        _: i64,
        _: i64,
    ) -> anyhow::Result<Result<(), crate::ledger::Rejection>> {
        Ok(if &*campaign.id == self.reserving {
            Err(crate::ledger::Rejection::ReservationPending)
        } else {
            Ok(())
        })
    }

    async fn spent(
        &self,
        campaigns: &[Campaign],
        _: i64,
    ) -> anyhow::Result<Vec<crate::ledger::Spent>> {
        Ok(vec![crate::ledger::Spent::default(); campaigns.len()])
    }

    fn limits_changed(&self) {}

    async fn restore(&self, _: i64) -> anyhow::Result<()> {
        Ok(())
    }

    async fn flush(&self) -> anyhow::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_campaign_whose_reservation_is_pending_passes_the_impression_on() {
    let impression = Impression::default();
    let bid = bid_context(&impression);
    let ledger = ReservingLedger { reserving: "c1" };

    // The runner-up takes the impression.
    let both = AuctionIndex::build([campaign(1, 2_000_000), campaign(2, 1_000_000)].map(Arc::new));
    let outcome = run_auction(&both, &bid, AuctionKind::FirstPrice, &ledger)
        .await
        .expect("no storage");
    assert_eq!(winner(&outcome), "c2");

    // Alone, it answers as a spent budget: nothing can pay for this impression now.
    let alone = AuctionIndex::build([campaign(1, 2_000_000)].map(Arc::new));
    let outcome = run_auction(&alone, &bid, AuctionKind::FirstPrice, &ledger)
        .await
        .expect("no storage");
    assert_eq!(reason(&outcome), NoBid::BudgetExhausted);
}
