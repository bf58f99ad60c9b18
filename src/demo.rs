//! Demo data for `admesh up`: campaigns across countries, devices, interests
//! and budgets, so the README's `/serve` examples show targeting, a second-
//! price auction and no-fill. Inserted only into an empty database.

use std::sync::Arc;

use admesh_bid_engine::{
    campaign::{
        Ad, AgeRange, Campaign, CampaignStatus, PersistedSpend, Targeting, parse_device_type,
    },
    store::{CampaignFilter, CampaignStore},
};
use admesh_common::{Database, time::now_millis};

/// A demo campaign: (name, advertiser, status, CPM bid in micros, daily
/// budget in micros, frequency cap, targeting rules, ads).
struct DemoCampaign {
    name: &'static str,
    advertiser: &'static str,
    status: &'static str,
    bid_price: i64,
    daily_budget: i64,
    frequency_cap: Option<u32>,
    rules: &'static [(&'static str, &'static str)],
    ads: &'static [(&'static str, &'static str)],
}

const USD: i64 = 1_000_000;

const CAMPAIGNS: &[DemoCampaign] = &[
    DemoCampaign {
        name: "Summer Sneakers",
        advertiser: "adv-stride",
        status: "active",
        bid_price: 2_500_000,
        daily_budget: 50 * USD,
        frequency_cap: None,
        rules: &[
            ("country", "US"),
            ("country", "CA"),
            ("device_type", "mobile"),
            ("interest", "sports"),
            ("interest", "fashion"),
        ],
        ads: &[
            ("Stride Runner 2 — 20% off", "sneakers"),
            ("Trail shoes for every summit", "trail"),
        ],
    },
    DemoCampaign {
        name: "Gaming Laptop Pro",
        advertiser: "adv-voltic",
        status: "active",
        bid_price: 4_000_000,
        daily_budget: 120 * USD,
        frequency_cap: Some(5),
        rules: &[
            ("country", "US"),
            ("country", "GB"),
            ("country", "DE"),
            ("device_type", "desktop"),
            ("interest", "gaming"),
            ("interest", "tech"),
        ],
        ads: &[("Voltic X17: 240 Hz, RTX inside", "laptop")],
    },
    DemoCampaign {
        name: "RPG Legends Launch",
        advertiser: "adv-lorecraft",
        status: "active",
        bid_price: 3_200_000,
        daily_budget: 80 * USD,
        frequency_cap: Some(3),
        rules: &[
            ("device_type", "mobile"),
            ("device_type", "tablet"),
            ("interest", "gaming"),
            ("interest", "rpg"),
            ("age_range", "18-34"),
        ],
        ads: &[("Forge your legend — play free", "rpg-legends")],
    },
    DemoCampaign {
        name: "Budget Travel Deals",
        advertiser: "adv-wanderly",
        status: "active",
        bid_price: 1_800_000,
        daily_budget: 40 * USD,
        frequency_cap: None,
        rules: &[
            ("country", "GB"),
            ("country", "FR"),
            ("country", "DE"),
            ("country", "ES"),
            ("interest", "travel"),
        ],
        ads: &[
            ("City breaks from €49", "citybreaks"),
            ("Last-minute beach escapes", "beach"),
        ],
    },
    DemoCampaign {
        name: "Fintech Savings",
        advertiser: "adv-nestegg",
        status: "active",
        bid_price: 5_500_000,
        daily_budget: 200 * USD,
        frequency_cap: Some(3),
        rules: &[
            ("country", "US"),
            ("device_type", "desktop"),
            ("device_type", "mobile"),
            ("interest", "finance"),
            ("age_range", "25-54"),
        ],
        ads: &[("4.5% APY, no fees", "savings")],
    },
    DemoCampaign {
        name: "Coffee Subscription",
        advertiser: "adv-brewbox",
        status: "active",
        bid_price: 1_200_000,
        // Two impressions' worth at most: shows budget_exhausted quickly.
        daily_budget: 2_400,
        frequency_cap: None,
        rules: &[("country", "US"), ("country", "CA"), ("interest", "coffee")],
        ads: &[("Fresh beans, every week", "coffee")],
    },
    DemoCampaign {
        name: "Streaming Originals",
        advertiser: "adv-flickset",
        status: "active",
        bid_price: 6_000_000,
        daily_budget: 300 * USD,
        frequency_cap: Some(10),
        rules: &[
            ("device_type", "ctv"),
            ("device_type", "desktop"),
            ("interest", "movies"),
        ],
        ads: &[("New season, tonight", "originals")],
    },
    DemoCampaign {
        name: "Puzzle Quest Banner",
        advertiser: "adv-lorecraft",
        status: "active",
        bid_price: 2_000_000,
        daily_budget: 30 * USD,
        frequency_cap: None,
        rules: &[("placement", "placement-games-banner")],
        ads: &[("1,000 levels of calm", "puzzle")],
    },
    DemoCampaign {
        name: "Run-of-network Brand",
        advertiser: "adv-stride",
        status: "active",
        bid_price: 900_000,
        daily_budget: 25 * USD,
        frequency_cap: None,
        rules: &[("country", "US"), ("country", "CA"), ("country", "GB")],
        ads: &[("Stride: made to move", "brand")],
    },
    DemoCampaign {
        name: "Winter Jackets (paused)",
        advertiser: "adv-stride",
        status: "paused",
        bid_price: 3_000_000,
        daily_budget: 60 * USD,
        frequency_cap: None,
        rules: &[("country", "US")],
        ads: &[("Stay warm for less", "jackets")],
    },
    DemoCampaign {
        name: "Holiday Sale 2025 (ended)",
        advertiser: "adv-brewbox",
        status: "ended",
        bid_price: 2_200_000,
        daily_budget: 40 * USD,
        frequency_cap: None,
        rules: &[],
        ads: &[("Gift boxes, 30% off", "gifts")],
    },
];

/// Inserts the demo campaigns when there are no campaigns yet; returns how
/// many were inserted.
pub async fn seed(database: &Database) -> anyhow::Result<usize> {
    let store = CampaignStore::new(database.clone());
    let existing = store.count(&CampaignFilter::default()).await?;
    if existing > 0 {
        return Ok(0);
    }
    let now = now_millis();
    let campaigns: Vec<Campaign> = CAMPAIGNS.iter().map(|demo| demo.campaign(now)).collect();
    store.insert_all(&campaigns).await?;
    Ok(campaigns.len())
}

impl DemoCampaign {
    fn campaign(&self, now: i64) -> Campaign {
        let mut targeting = Targeting::default();
        for (rule_type, value) in self.rules {
            match *rule_type {
                "country" => targeting.countries.push((*value).to_string()),
                "device_type" => targeting.device_types.extend(parse_device_type(value)),
                "placement" => targeting.placements.push((*value).to_string()),
                "interest" => targeting.interests.push((*value).to_string()),
                "age_range" => targeting.age_range = AgeRange::parse(value),
                _ => {}
            }
        }
        Campaign {
            id: Arc::from(admesh_common::ids::new_id()),
            name: self.name.to_string(),
            advertiser_id: self.advertiser.to_string(),
            status: CampaignStatus::parse(self.status).unwrap_or(CampaignStatus::Paused),
            bid_price: self.bid_price,
            daily_budget: self.daily_budget,
            lifetime_budget: None,
            start_time: None,
            end_time: None,
            frequency_cap: self.frequency_cap,
            targeting,
            ads: self
                .ads
                .iter()
                .map(|(title, slug)| Ad {
                    id: admesh_common::ids::new_id(),
                    title: (*title).to_string(),
                    image_url: format!("https://cdn.example.com/ads/{slug}.jpg"),
                    redirect_url: format!("https://example.com/{slug}?utm_source=admesh"),
                    created_at: now,
                })
                .collect(),
            created_seq: 0,
            created_at: now,
            updated_at: now,
            persisted_spend: PersistedSpend::default(),
        }
    }
}
