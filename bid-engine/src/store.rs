//! Campaigns in SQL (SQLite or PostgreSQL, the same statements): a campaign
//! row, one row per targeting value, one row per ad.

use std::{collections::HashMap, sync::Arc};

use admesh_common::{Database, db::BeginWrite, on_pool, time::now_millis};

use crate::campaign::{
    Ad, AgeRange, Campaign, CampaignStatus, PersistedSpend, Targeting, device_type_name,
    parse_device_type,
};

/// Which campaigns to read.
#[derive(Clone, Debug, Default)]
pub struct CampaignFilter {
    pub id: Option<String>,
    pub status: Option<CampaignStatus>,
    pub advertiser_id: Option<String>,
    /// Only campaigns created after this one (`created_seq`): the page cursor.
    pub after_seq: Option<i64>,
    pub limit: Option<i64>,
}

enum Param {
    Text(String),
    Int(i64),
}

impl CampaignFilter {
    /// `SELECT id FROM campaigns …` for this filter (a subquery), with its
    /// parameters numbered from `$first`.
    fn selected_ids(&self, first: usize) -> (String, Vec<Param>) {
        let (where_clause, params) = self.where_clause(first);
        let limit = self
            .limit
            .map(|limit| format!(" LIMIT {limit}"))
            .unwrap_or_default();
        (
            format!("SELECT id FROM campaigns {where_clause} ORDER BY created_seq{limit}"),
            params,
        )
    }

    /// `WHERE …` over `campaigns` with its parameters, `$n` from `first`.
    fn where_clause(&self, first: usize) -> (String, Vec<Param>) {
        let mut conditions = Vec::new();
        let mut params = Vec::new();
        let mut next = |param: Param, column: &str, op: &str| {
            params.push(param);
            conditions.push(format!("{column} {op} ${}", first + params.len() - 1));
        };
        if let Some(id) = &self.id {
            next(Param::Text(id.clone()), "id", "=");
        }
        if let Some(status) = self.status {
            next(Param::Text(status.as_str().into()), "status", "=");
        }
        if let Some(advertiser) = &self.advertiser_id {
            next(Param::Text(advertiser.clone()), "advertiser_id", "=");
        }
        if let Some(after) = self.after_seq {
            next(Param::Int(after), "created_seq", ">");
        }
        if conditions.is_empty() {
            (String::new(), params)
        } else {
            (format!("WHERE {}", conditions.join(" AND ")), params)
        }
    }
}

type CampaignRow = (
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
);

type RuleRow = (String, String, String);
type AdRow = (String, String, String, String, String, i64);

#[derive(Clone, Debug)]
pub struct CampaignStore {
    database: Database,
}

/// Binds `params` in order onto a sqlx query (either dialect).
macro_rules! bind_all {
    ($query:expr, $params:expr) => {{
        let mut query = $query;
        for param in $params {
            query = match param {
                Param::Text(text) => query.bind(text.clone()),
                Param::Int(value) => query.bind(*value),
            };
        }
        query
    }};
}

/// Writes a campaign's targeting rows and its ads (upserted by id) inside
/// the transaction `$tx`; insert and update share it.
macro_rules! write_rules_and_ads {
    ($tx:ident, $campaign:expr) => {{
        let campaign: &Campaign = $campaign;
        for (rule_type, rule_value) in rule_rows(&campaign.targeting) {
            sqlx::query(
                "INSERT INTO campaign_targeting_rules (campaign_id, rule_type, rule_value) VALUES ($1, $2, $3)",
            )
            .bind(campaign.id.as_ref())
            .bind(rule_type)
            .bind(rule_value)
            .execute(&mut *$tx)
            .await?;
        }
        for ad in &campaign.ads {
            sqlx::query(
                "INSERT INTO campaign_ads (id, campaign_id, title, image_url, redirect_url, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (id) DO UPDATE SET title = excluded.title, \
                 image_url = excluded.image_url, redirect_url = excluded.redirect_url",
            )
            .bind(&ad.id)
            .bind(campaign.id.as_ref())
            .bind(&ad.title)
            .bind(&ad.image_url)
            .bind(&ad.redirect_url)
            .bind(ad.created_at)
            .execute(&mut *$tx)
            .await?;
        }
    }};
}

impl CampaignStore {
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    /// Campaigns matching `filter`, oldest first, with targeting, ads and the
    /// spend persisted for `day`.
    pub async fn find(&self, filter: &CampaignFilter, day: i64) -> anyhow::Result<Vec<Campaign>> {
        // The campaign query binds `day` as $1; the others start at $1.
        let (campaigns_in, params) = filter.selected_ids(2);
        let (ids_in, _) = filter.selected_ids(1);
        let campaigns_sql = format!(
            // Spend as SQL knows it for sure: the larger of what was written
            // behind and what an embedded ledger reserved before a crash.
            "SELECT c.id, c.name, c.advertiser_id, c.status, c.bid_price, c.daily_budget, \
             c.lifetime_budget, \
             CASE WHEN c.lifetime_reserved > c.lifetime_spent THEN c.lifetime_reserved ELSE c.lifetime_spent END, \
             c.start_time, c.end_time, \
             CAST(c.frequency_cap AS BIGINT), c.created_seq, c.created_at, c.updated_at, \
             CASE WHEN s.reserved > s.spent THEN s.reserved ELSE s.spent END, s.impressions \
             FROM campaigns c LEFT JOIN campaign_daily_spend s ON s.campaign_id = c.id AND s.day = $1 \
             WHERE c.id IN ({campaigns_in}) ORDER BY c.created_seq"
        );
        let rules_sql = format!(
            "SELECT campaign_id, rule_type, rule_value FROM campaign_targeting_rules \
             WHERE campaign_id IN ({ids_in}) ORDER BY campaign_id, rule_type, rule_value"
        );
        let ads_sql = format!(
            "SELECT id, campaign_id, title, image_url, redirect_url, created_at FROM campaign_ads \
             WHERE campaign_id IN ({ids_in}) ORDER BY created_at, id"
        );
        let (rows, rules, ads): (Vec<CampaignRow>, Vec<RuleRow>, Vec<AdRow>) = on_pool!(&self.database, pool => {
            let rows = bind_all!(sqlx::query_as(&campaigns_sql).bind(day), &params)
                .fetch_all(pool)
                .await?;
            let rules = bind_all!(sqlx::query_as(&rules_sql), &params).fetch_all(pool).await?;
            let ads = bind_all!(sqlx::query_as(&ads_sql), &params).fetch_all(pool).await?;
            (rows, rules, ads)
        });
        Ok(assemble(rows, rules, ads, day))
    }

    pub async fn get(&self, id: &str, day: i64) -> anyhow::Result<Option<Campaign>> {
        let filter = CampaignFilter {
            id: Some(id.to_string()),
            ..CampaignFilter::default()
        };
        Ok(self.find(&filter, day).await?.into_iter().next())
    }

    /// How many campaigns match `filter` (ignoring its cursor and limit).
    pub async fn count(&self, filter: &CampaignFilter) -> anyhow::Result<u64> {
        let filter = CampaignFilter {
            after_seq: None,
            limit: None,
            ..filter.clone()
        };
        let (where_clause, params) = filter.where_clause(1);
        let sql = format!("SELECT COUNT(*) FROM campaigns {where_clause}");
        let (count,): (i64,) = on_pool!(&self.database, pool => {
            bind_all!(sqlx::query_as(&sql), &params).fetch_one(pool).await?
        });
        Ok(count.max(0) as u64)
    }

    /// Inserts a new campaign; assigns its `created_seq` (creation order,
    /// the auction's tie-break). Concurrent creates on several replicas may
    /// pick the same number: the unique index refuses one, which retries.
    pub async fn insert(&self, campaign: &Campaign) -> anyhow::Result<i64> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.insert_rows(std::slice::from_ref(campaign)).await {
                Ok(seqs) => {
                    return seqs
                        .first()
                        .copied()
                        .ok_or_else(|| anyhow::anyhow!("nothing inserted"));
                }
                Err(error) if attempt < 5 && is_unique_violation(&error) => continue,
                Err(error) => return Err(error),
            }
        }
    }

    /// Inserts many campaigns in one transaction, numbered after the
    /// existing ones in the order given (bulk loads: demo data, benchmarks).
    pub async fn insert_all(&self, campaigns: &[Campaign]) -> anyhow::Result<()> {
        self.insert_rows(campaigns).await.map(drop)
    }

    async fn insert_rows(&self, campaigns: &[Campaign]) -> anyhow::Result<Vec<i64>> {
        on_pool!(&self.database, pool => {
            let mut tx = pool.begin_write().await?;
            let (mut next_seq,): (i64,) =
                sqlx::query_as("SELECT COALESCE(MAX(created_seq), 0) + 1 FROM campaigns")
                    .fetch_one(&mut *tx)
                    .await?;
            let mut seqs = Vec::with_capacity(campaigns.len());
            for campaign in campaigns {
                let seq = next_seq;
                next_seq += 1;
                seqs.push(seq);
                sqlx::query(
                    "INSERT INTO campaigns (id, name, advertiser_id, status, bid_price, daily_budget, \
                     lifetime_budget, lifetime_spent, start_time, end_time, frequency_cap, created_seq, \
                     version, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9, $10, $11, 1, $12, $13)",
                )
                .bind(campaign.id.as_ref())
                .bind(&campaign.name)
                .bind(&campaign.advertiser_id)
                .bind(campaign.status.as_str())
                .bind(campaign.bid_price)
                .bind(campaign.daily_budget)
                .bind(campaign.lifetime_budget)
                .bind(campaign.start_time)
                .bind(campaign.end_time)
                .bind(campaign.frequency_cap.map(i64::from))
                .bind(seq)
                .bind(campaign.created_at)
                .bind(campaign.updated_at)
                .execute(&mut *tx)
                .await?;
                write_rules_and_ads!(tx, campaign);
            }
            tx.commit().await?;
            Ok(seqs)
        })
    }

    /// Rewrites a campaign's settings, targeting and ads (ads keep their ids;
    /// ads no longer listed are removed).
    pub async fn update(&self, campaign: &Campaign) -> anyhow::Result<()> {
        on_pool!(&self.database, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "UPDATE campaigns SET name = $1, advertiser_id = $2, status = $3, bid_price = $4, \
                 daily_budget = $5, lifetime_budget = $6, start_time = $7, end_time = $8, \
                 frequency_cap = $9, version = version + 1, updated_at = $10 WHERE id = $11",
            )
            .bind(&campaign.name)
            .bind(&campaign.advertiser_id)
            .bind(campaign.status.as_str())
            .bind(campaign.bid_price)
            .bind(campaign.daily_budget)
            .bind(campaign.lifetime_budget)
            .bind(campaign.start_time)
            .bind(campaign.end_time)
            .bind(campaign.frequency_cap.map(i64::from))
            .bind(campaign.updated_at)
            .bind(campaign.id.as_ref())
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM campaign_targeting_rules WHERE campaign_id = $1")
                .bind(campaign.id.as_ref())
                .execute(&mut *tx)
                .await?;
            let existing: Vec<(String,)> =
                sqlx::query_as("SELECT id FROM campaign_ads WHERE campaign_id = $1")
                    .bind(campaign.id.as_ref())
                    .fetch_all(&mut *tx)
                    .await?;
            for (id,) in &existing {
                if !campaign.ads.iter().any(|ad| &ad.id == id) {
                    sqlx::query("DELETE FROM campaign_ads WHERE id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            write_rules_and_ads!(tx, campaign);
            tx.commit().await?;
        });
        Ok(())
    }

    /// Sets the status; `None` when there is no such campaign.
    pub async fn set_status(&self, id: &str, status: CampaignStatus) -> anyhow::Result<bool> {
        let result = on_pool!(&self.database, pool => {
            sqlx::query(
                "UPDATE campaigns SET status = $1, version = version + 1, updated_at = $2 WHERE id = $3",
            )
            .bind(status.as_str())
            .bind(now_millis())
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(result == 1)
    }
}

fn is_unique_violation(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<sqlx::Error>()
        .and_then(|error| error.as_database_error())
        .is_some_and(|error| error.is_unique_violation())
}

/// The targeting rows of a campaign: (rule_type, rule_value).
fn rule_rows(targeting: &Targeting) -> Vec<(&'static str, String)> {
    let mut rows = Vec::new();
    rows.extend(targeting.countries.iter().map(|c| ("country", c.clone())));
    rows.extend(
        targeting
            .device_types
            .iter()
            .map(|d| ("device_type", device_type_name(*d).to_string())),
    );
    rows.extend(
        targeting
            .placements
            .iter()
            .map(|p| ("placement", p.clone())),
    );
    rows.extend(targeting.interests.iter().map(|i| ("interest", i.clone())));
    if let Some(range) = targeting.age_range {
        rows.push(("age_range", range.to_rule_value()));
    }
    rows
}

fn assemble(
    rows: Vec<CampaignRow>,
    rules: Vec<RuleRow>,
    ads: Vec<AdRow>,
    day: i64,
) -> Vec<Campaign> {
    let mut targeting: HashMap<String, Targeting> = HashMap::new();
    for (campaign_id, rule_type, value) in rules {
        let entry = targeting.entry(campaign_id).or_default();
        match rule_type.as_str() {
            "country" => entry.countries.push(value),
            "device_type" => entry.device_types.extend(parse_device_type(&value)),
            "placement" => entry.placements.push(value),
            "interest" => entry.interests.push(value),
            "age_range" => entry.age_range = AgeRange::parse(&value),
            _ => {}
        }
    }
    let mut ads_by_campaign: HashMap<String, Vec<Ad>> = HashMap::new();
    for (id, campaign_id, title, image_url, redirect_url, created_at) in ads {
        ads_by_campaign.entry(campaign_id).or_default().push(Ad {
            id,
            title,
            image_url,
            redirect_url,
            created_at,
        });
    }
    rows.into_iter()
        .filter_map(|row| {
            let (
                id,
                name,
                advertiser_id,
                status,
                bid_price,
                daily_budget,
                lifetime_budget,
                lifetime_spent,
                start_time,
                end_time,
                frequency_cap,
                created_seq,
                created_at,
                updated_at,
                spent_today,
                impressions_today,
            ) = row;
            Some(Campaign {
                targeting: targeting.remove(&id).unwrap_or_default(),
                ads: ads_by_campaign.remove(&id).unwrap_or_default(),
                id: Arc::from(id),
                name,
                advertiser_id,
                status: CampaignStatus::parse(&status)?,
                bid_price,
                daily_budget,
                lifetime_budget,
                start_time,
                end_time,
                frequency_cap: frequency_cap.and_then(|cap| u32::try_from(cap).ok()),
                created_seq,
                created_at,
                updated_at,
                persisted_spend: PersistedSpend {
                    day,
                    spent_today: spent_today.unwrap_or(0),
                    impressions_today: impressions_today.unwrap_or(0),
                    lifetime_spent,
                },
            })
        })
        .collect()
}
