//! Synthetic campaigns for benchmarks and load tests: a spread of countries,
//! devices, placements, interests and age ranges, with budgets large enough
//! not to run out during a run. Deterministic: the same `n` gives the same set.

use std::sync::Arc;

use admesh_proto::common::v1::DeviceType;

use crate::campaign::{Ad, AgeRange, Campaign, CampaignStatus, PersistedSpend, Targeting};

/// The countries synthetic campaigns target (load generators ask for them).
pub const COUNTRIES: &[&str] = &["US", "GB", "DE", "FR", "CA", "ES", "IT", "BR", "IN", "AU"];
/// The interests synthetic campaigns target.
pub const INTERESTS: &[&str] = &[
    "gaming", "tech", "sports", "fashion", "travel", "finance", "movies", "music", "food", "cars",
];
/// The devices synthetic campaigns target.
pub const DEVICES: &[DeviceType] = &[
    DeviceType::Mobile,
    DeviceType::Desktop,
    DeviceType::Tablet,
    DeviceType::Ctv,
];

/// `n` active campaigns, CPM 0.50–5.50 USD, one ad each.
pub fn synthetic_campaigns(n: usize) -> Vec<Campaign> {
    (0..n)
        .map(|i| {
            let seq = i as i64 + 1;
            // A cheap deterministic spread (no RNG dependency).
            let mix = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
            let pick = |salt: u64, len: usize| {
                ((mix ^ salt.wrapping_mul(0x2545_F491)) % len as u64) as usize
            };
            let mut targeting = Targeting::default();
            if i % 3 != 0 {
                targeting.countries = vec![COUNTRIES[pick(1, COUNTRIES.len())].to_string()];
            }
            if i % 2 == 0 {
                targeting.device_types = vec![DEVICES[pick(2, DEVICES.len())]];
            }
            if i % 5 == 0 {
                targeting.placements = vec![format!("placement-{}", pick(3, 20))];
            }
            if i % 4 != 0 {
                targeting.interests = vec![
                    INTERESTS[pick(4, INTERESTS.len())].to_string(),
                    INTERESTS[pick(5, INTERESTS.len())].to_string(),
                ];
            }
            if i % 7 == 0 {
                let min = 18 + pick(6, 20) as u32;
                targeting.age_range = Some(AgeRange { min, max: min + 15 });
            }
            Campaign {
                id: Arc::from(format!("synthetic-{seq:05}")),
                name: format!("Synthetic campaign {seq}"),
                advertiser_id: format!("adv-{}", i % 50),
                status: CampaignStatus::Active,
                bid_price: 500_000 + (mix % 5_000) as i64 * 1_000,
                daily_budget: 1_000_000_000_000,
                lifetime_budget: None,
                start_time: None,
                end_time: None,
                frequency_cap: None,
                targeting,
                ads: vec![Ad {
                    id: format!("synthetic-ad-{seq:05}"),
                    title: format!("Synthetic ad {seq}"),
                    image_url: format!("https://cdn.example.com/synthetic/{seq}.jpg"),
                    redirect_url: format!("https://example.com/synthetic/{seq}"),
                    created_at: 0,
                }],
                created_seq: seq,
                created_at: 0,
                updated_at: 0,
                persisted_spend: PersistedSpend::default(),
            }
        })
        .collect()
}
