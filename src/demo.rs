//! Demo data for `admesh up`: campaigns across countries, devices, interests
//! and budgets, so the README's `/serve` examples show targeting, a second-
//! price auction and no-fill. Inserted only into an empty database.

use admesh_common::{Database, on_pool, time::now_millis};

/// A demo campaign: (name, advertiser, status, CPM bid in micros, daily
/// budget in micros, frequency cap, targeting rules, ads).
struct DemoCampaign {
    name: &'static str,
    advertiser: &'static str,
    status: &'static str,
    bid_price: i64,
    daily_budget: i64,
    frequency_cap: Option<i32>,
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
    let (existing,): (i64,) = on_pool!(database, pool => {
        sqlx::query_as("SELECT COUNT(*) FROM campaigns").fetch_one(pool).await?
    });
    if existing > 0 {
        return Ok(0);
    }
    let now = now_millis();
    for (index, campaign) in CAMPAIGNS.iter().enumerate() {
        let id = uuid::Uuid::new_v4().to_string();
        on_pool!(database, pool => {
            sqlx::query(
                "INSERT INTO campaigns (id, name, advertiser_id, status, bid_price, daily_budget, \
                 lifetime_budget, lifetime_spent, start_time, end_time, frequency_cap, created_seq, \
                 version, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, NULL, 0, NULL, NULL, $7, $8, 1, $9, $10)",
            )
            .bind(&id)
            .bind(campaign.name)
            .bind(campaign.advertiser)
            .bind(campaign.status)
            .bind(campaign.bid_price)
            .bind(campaign.daily_budget)
            .bind(campaign.frequency_cap)
            .bind(index as i64 + 1)
            .bind(now)
            .bind(now)
            .execute(pool)
            .await
            .map(drop)?
        });
        for (rule_type, rule_value) in campaign.rules {
            on_pool!(database, pool => {
                sqlx::query("INSERT INTO campaign_targeting_rules (campaign_id, rule_type, rule_value) VALUES ($1, $2, $3)")
                    .bind(&id)
                    .bind(*rule_type)
                    .bind(*rule_value)
                    .execute(pool)
                    .await
            .map(drop)?
            });
        }
        for (title, slug) in campaign.ads {
            on_pool!(database, pool => {
                sqlx::query(
                    "INSERT INTO campaign_ads (id, campaign_id, title, image_url, redirect_url, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(&id)
                .bind(*title)
                .bind(format!("https://cdn.example.com/ads/{slug}.jpg"))
                .bind(format!("https://example.com/{slug}?utm_source=admesh"))
                .bind(now)
                .execute(pool)
                .await
            .map(drop)?
            });
        }
    }
    Ok(CAMPAIGNS.len())
}
