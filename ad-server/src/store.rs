//! The ad-server's SQL: clicks (at most one per impression, enforced by the
//! primary key, so it holds across replicas) and the active-ads listing.

use admesh_common::{Database, on_pool};

use crate::click_token::ClickClaims;

/// An ad as `ListAds` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedAd {
    pub id: String,
    pub campaign_id: String,
    pub campaign_name: String,
    pub title: String,
    pub image_url: String,
    pub redirect_url: String,
    pub created_at: i64,
}

#[derive(Clone, Debug)]
pub struct AdServerStore {
    database: Database,
}

impl AdServerStore {
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    /// Records the click of an impression; `false` when it was already
    /// counted.
    pub async fn record_click(
        &self,
        claims: &ClickClaims,
        event_id: &str,
        now: i64,
    ) -> anyhow::Result<bool> {
        let inserted = on_pool!(&self.database, pool => {
            sqlx::query(
                "INSERT INTO clicks (impression_id, event_id, ad_id, campaign_id, user_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (impression_id) DO NOTHING",
            )
            .bind(&claims.impression_id)
            .bind(event_id)
            .bind(&claims.ad_id)
            .bind(&claims.campaign_id)
            .bind(&claims.user_id)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(inserted == 1)
    }

    /// Ads of active campaigns (of one campaign when `campaign_id` is set),
    /// oldest first, `limit` from `offset`.
    pub async fn active_ads(
        &self,
        campaign_id: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<ListedAd>> {
        // SQLite numbers `$n` parameters in order of first appearance, so
        // the text keeps them in binding order.
        let (filter, page) = if campaign_id.is_some() {
            ("AND a.campaign_id = $1", "LIMIT $2 OFFSET $3")
        } else {
            ("", "LIMIT $1 OFFSET $2")
        };
        let sql = format!(
            "SELECT a.id, a.campaign_id, c.name, a.title, a.image_url, a.redirect_url, a.created_at \
             FROM campaign_ads a JOIN campaigns c ON c.id = a.campaign_id \
             WHERE c.status = 'active' {filter} \
             ORDER BY c.created_seq, a.created_at, a.id {page}"
        );
        let rows: Vec<(String, String, String, String, String, String, i64)> = on_pool!(&self.database, pool => {
            let mut query = sqlx::query_as(&sql);
            if let Some(campaign_id) = campaign_id {
                query = query.bind(campaign_id);
            }
            query.bind(limit).bind(offset).fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(id, campaign_id, campaign_name, title, image_url, redirect_url, created_at)| {
                    ListedAd {
                        id,
                        campaign_id,
                        campaign_name,
                        title,
                        image_url,
                        redirect_url,
                        created_at,
                    }
                },
            )
            .collect())
    }
}
