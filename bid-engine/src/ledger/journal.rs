//! Writes spend totals to SQL behind the ledger. Only the latest total per
//! campaign and day is kept in memory; writes only ever raise a stored total,
//! so replicas writing concurrently (or out of order) cannot lower it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
};

use tokio::sync::{mpsc, oneshot};

use admesh_common::{
    Database,
    db::{BeginWrite, statement_chunks},
    on_pool,
};

use crate::campaign::CampaignMap;

/// Totals after a charge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpendTotals {
    pub day: i64,
    pub spent_today: i64,
    pub impressions_today: i64,
    pub lifetime_spent: i64,
}

impl SpendTotals {
    /// The later of two observations: a later day wins; on the same day
    /// each total only grows.
    fn latest(self, other: SpendTotals) -> SpendTotals {
        match self.day.cmp(&other.day) {
            std::cmp::Ordering::Less => other,
            std::cmp::Ordering::Greater => SpendTotals {
                lifetime_spent: self.lifetime_spent.max(other.lifetime_spent),
                ..self
            },
            std::cmp::Ordering::Equal => SpendTotals {
                day: self.day,
                spent_today: self.spent_today.max(other.spent_today),
                impressions_today: self.impressions_today.max(other.impressions_today),
                lifetime_spent: self.lifetime_spent.max(other.lifetime_spent),
            },
        }
    }
}

#[derive(Debug, Default)]
struct Pending {
    spend: CampaignMap<SpendTotals>,
    /// (campaign, user, day) → impressions that day.
    frequency: HashMap<(Arc<str>, String, i64), i64>,
}

#[derive(Debug)]
pub struct SpendJournal {
    database: Database,
    pending: Mutex<Pending>,
    /// The reservation writer, started on first use (on the runtime).
    reservations: OnceLock<mpsc::UnboundedSender<ReservationRequest>>,
}

/// A reservation to write, and who waits for it.
#[derive(Debug)]
struct ReservationRequest {
    campaign_id: Arc<str>,
    day: i64,
    daily: i64,
    lifetime: Option<i64>,
    written: oneshot::Sender<Result<(), String>>,
}

/// Writes the reservations that arrive together in one transaction, until
/// the journal is dropped.
async fn write_reservations(
    database: Database,
    mut requests: mpsc::UnboundedReceiver<ReservationRequest>,
) {
    let mut batch = Vec::new();
    while requests.recv_many(&mut batch, RESERVATIONS_PER_WRITE).await > 0 {
        let written = write_reservation_batch(&database, &batch)
            .await
            .map_err(|error| format!("{error:#}"));
        for request in batch.drain(..) {
            // A bid that gave up no longer listens; its chunk is written.
            let _ = request.written.send(written.clone());
        }
    }
}

const RESERVATIONS_PER_WRITE: usize = 256;

async fn write_reservation_batch(
    database: &Database,
    batch: &[ReservationRequest],
) -> anyhow::Result<()> {
    // One row per (campaign, day): a statement may not upsert a row twice.
    let mut daily: HashMap<(&str, i64), i64> = HashMap::new();
    let mut lifetime: HashMap<&str, i64> = HashMap::new();
    for request in batch {
        let bound = daily
            .entry((&request.campaign_id, request.day))
            .or_insert(0);
        *bound = (*bound).max(request.daily);
        if let Some(total) = request.lifetime {
            let bound = lifetime.entry(&request.campaign_id).or_insert(0);
            *bound = (*bound).max(total);
        }
    }
    let daily: Vec<_> = daily.into_iter().collect();
    on_pool!(database, pool => {
        let mut tx = pool.begin_write().await?;
        for chunk in statement_chunks(&daily) {
            let sql = format!(
                "INSERT INTO campaign_daily_spend (campaign_id, day, spent, impressions, reserved) VALUES {} \
                 ON CONFLICT (campaign_id, day) DO UPDATE SET \
                 reserved = CASE WHEN excluded.reserved > campaign_daily_spend.reserved \
                            THEN excluded.reserved ELSE campaign_daily_spend.reserved END",
                database.values_placeholders(chunk.len(), 5)
            );
            let mut query = sqlx::query(&sql);
            for ((campaign_id, day), reserved) in chunk {
                query = query
                    .bind(*campaign_id)
                    .bind(*day)
                    .bind(0_i64)
                    .bind(0_i64)
                    .bind(*reserved);
            }
            query.execute(&mut *tx).await?;
        }
        for (campaign_id, total) in &lifetime {
            sqlx::query(
                "UPDATE campaigns SET lifetime_reserved = $1 WHERE id = $2 AND lifetime_reserved < $1",
            )
            .bind(*total)
            .bind(*campaign_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
    });
    Ok(())
}

impl SpendJournal {
    pub fn new(database: Database) -> Self {
        Self {
            database,
            pending: Mutex::new(Pending::default()),
            reservations: OnceLock::new(),
        }
    }

    /// Notes totals after a charge. Replies of concurrent charges can
    /// arrive out of order (Redis), so the larger totals win: an older reply
    /// must never replace a newer one.
    pub fn record_spend(&self, campaign_id: &Arc<str>, totals: SpendTotals) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending
            .spend
            .entry(Arc::clone(campaign_id))
            .and_modify(|kept| *kept = kept.latest(totals))
            .or_insert(totals);
    }

    pub fn record_frequency(&self, campaign_id: &Arc<str>, user_id: &str, day: i64, count: i64) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending
            .frequency
            .insert((Arc::clone(campaign_id), user_id.to_string(), day), count);
    }

    /// Writes everything pending in one transaction. On failure the entries
    /// go back (unless newer ones arrived meanwhile) for the next attempt.
    pub async fn flush(&self) -> anyhow::Result<()> {
        let taken = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut *pending)
        };
        if taken.spend.is_empty() && taken.frequency.is_empty() {
            return Ok(());
        }
        let result = self.write(&taken).await;
        if result.is_err() {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            for (id, totals) in taken.spend {
                pending
                    .spend
                    .entry(id)
                    .and_modify(|kept| *kept = kept.latest(totals))
                    .or_insert(totals);
            }
            for (key, count) in taken.frequency {
                pending.frequency.entry(key).or_insert(count);
            }
        }
        result
    }

    /// Multi-row statements, a few hundred rows each: with thousands of
    /// campaigns spending, one statement per row would keep SQL busy.
    async fn write(&self, pending: &Pending) -> anyhow::Result<()> {
        let spend: Vec<(&Arc<str>, &SpendTotals)> = pending.spend.iter().collect();
        let frequency: Vec<_> = pending.frequency.iter().collect();
        on_pool!(&self.database, pool => {
            let mut tx = pool.begin_write().await?;
            for chunk in statement_chunks(&spend) {
                let sql = format!(
                    "INSERT INTO campaign_daily_spend (campaign_id, day, spent, impressions) VALUES {} \
                     ON CONFLICT (campaign_id, day) DO UPDATE SET \
                     spent = CASE WHEN excluded.spent > campaign_daily_spend.spent \
                                  THEN excluded.spent ELSE campaign_daily_spend.spent END, \
                     impressions = CASE WHEN excluded.impressions > campaign_daily_spend.impressions \
                                  THEN excluded.impressions ELSE campaign_daily_spend.impressions END",
                    self.database.values_placeholders(chunk.len(), 4)
                );
                let mut query = sqlx::query(&sql);
                for (campaign_id, totals) in chunk {
                    query = query
                        .bind(campaign_id.as_ref())
                        .bind(totals.day)
                        .bind(totals.spent_today)
                        .bind(totals.impressions_today);
                }
                query.execute(&mut *tx).await?;

                // lifetime_spent = the larger of stored and new, per campaign.
                let mut cases = String::new();
                for i in 0..chunk.len() {
                    cases.push_str(&format!(" WHEN ${} THEN CAST(${} AS BIGINT)", 2 * i + 1, 2 * i + 2));
                }
                let first_id = 2 * chunk.len() + 1;
                let ids: String = (0..chunk.len())
                    .map(|i| format!("${}", first_id + i))
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql = format!(
                    "UPDATE campaigns SET lifetime_spent = CASE \
                     WHEN (CASE id{cases} END) > lifetime_spent THEN (CASE id{cases} END) \
                     ELSE lifetime_spent END WHERE id IN ({ids})"
                );
                let mut query = sqlx::query(&sql);
                for (campaign_id, totals) in chunk {
                    query = query.bind(campaign_id.as_ref()).bind(totals.lifetime_spent);
                }
                for (campaign_id, _) in chunk {
                    query = query.bind(campaign_id.as_ref());
                }
                query.execute(&mut *tx).await?;
            }
            for chunk in statement_chunks(&frequency) {
                let sql = format!(
                    "INSERT INTO frequency_counts (campaign_id, user_id, day, impressions) VALUES {} \
                     ON CONFLICT (campaign_id, user_id, day) DO UPDATE SET \
                     impressions = CASE WHEN excluded.impressions > frequency_counts.impressions \
                                   THEN excluded.impressions ELSE frequency_counts.impressions END",
                    self.database.values_placeholders(chunk.len(), 4)
                );
                let mut query = sqlx::query(&sql);
                for ((campaign_id, user_id, day), count) in chunk {
                    query = query
                        .bind(campaign_id.as_ref())
                        .bind(user_id.as_str())
                        .bind(*day)
                        .bind(**count);
                }
                query.execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Records, before it is granted, that spend up to `daily` today (and
    /// `lifetime` in total, when given) may be charged: the bound a restart
    /// after a crash starts from. Only ever raises a stored reservation.
    /// Reservations asked for at once are written in one transaction: when
    /// the winner moves under load, many campaigns need their first chunk
    /// together, and one write each queued them behind one another.
    pub async fn reserve(
        &self,
        campaign_id: &Arc<str>,
        day: i64,
        daily: i64,
        lifetime: Option<i64>,
    ) -> anyhow::Result<()> {
        let (written, done) = tokio::sync::oneshot::channel();
        let writer = self.reservations.get_or_init(|| {
            let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(write_reservations(self.database.clone(), receiver));
            sender
        });
        let stopped = || anyhow::anyhow!("the reservation writer stopped");
        writer
            .send(ReservationRequest {
                campaign_id: Arc::clone(campaign_id),
                day,
                daily,
                lifetime,
                written,
            })
            .map_err(|_| stopped())?;
        done.await
            .map_err(|_| stopped())?
            .map_err(anyhow::Error::msg)
    }

    /// After the exact spend is written (clean shutdown): reservations fall
    /// back to it, so the next start does not count unspent reservations.
    /// Only the embedded profile reserves; it is the only writer.
    pub async fn release_reservations(&self) -> anyhow::Result<()> {
        on_pool!(&self.database, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query("UPDATE campaign_daily_spend SET reserved = spent WHERE reserved > spent")
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE campaigns SET lifetime_reserved = lifetime_spent WHERE lifetime_reserved > lifetime_spent")
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Today's frequency counts, to seed the embedded ledger after a restart.
    pub async fn load_frequency(&self, day: i64) -> anyhow::Result<Vec<(String, String, i64)>> {
        let rows: Vec<(String, String, i64)> = on_pool!(&self.database, pool => {
            sqlx::query_as(
                "SELECT campaign_id, user_id, CAST(impressions AS BIGINT) FROM frequency_counts WHERE day = $1",
            )
            .bind(day)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{store::CampaignStore, synthetic::synthetic_campaigns};

    #[tokio::test]
    async fn reservations_asked_together_are_all_written_and_never_lowered() {
        const DAY: i64 = 20_000;
        let database = Database::connect_and_migrate("sqlite::memory:", 1)
            .await
            .expect("in-memory SQLite");
        let campaigns = synthetic_campaigns(40);
        CampaignStore::new(database.clone())
            .insert_all(&campaigns)
            .await
            .expect("store the campaigns");
        let journal = SpendJournal::new(database.clone());
        let daily_of = |n: usize| 1_000 + n as i64;
        let lifetime_of = |n: usize| n.is_multiple_of(2).then_some(5_000 + n as i64);
        futures_util::future::try_join_all(
            campaigns.iter().enumerate().map(|(n, campaign)| {
                journal.reserve(&campaign.id, DAY, daily_of(n), lifetime_of(n))
            }),
        )
        .await
        .expect("reserved");
        journal
            .reserve(&campaigns[0].id, DAY, 10, Some(10))
            .await
            .expect("a lower reservation");

        type Amounts = Vec<(String, i64)>;
        let (daily, lifetime): (Amounts, Amounts) = on_pool!(&database, pool => {
            (
                sqlx::query_as("SELECT campaign_id, reserved FROM campaign_daily_spend WHERE day = $1")
                    .bind(DAY)
                    .fetch_all(pool)
                    .await
                    .expect("daily"),
                sqlx::query_as("SELECT id, lifetime_reserved FROM campaigns")
                    .fetch_all(pool)
                    .await
                    .expect("lifetime"),
            )
        });
        let daily: HashMap<String, i64> = daily.into_iter().collect();
        let lifetime: HashMap<String, i64> = lifetime.into_iter().collect();
        for (n, campaign) in campaigns.iter().enumerate() {
            assert_eq!(
                daily.get(&*campaign.id),
                Some(&daily_of(n)),
                "{}",
                campaign.id
            );
            assert_eq!(
                lifetime.get(&*campaign.id).copied().unwrap_or(0),
                lifetime_of(n).unwrap_or(0),
                "{}",
                campaign.id
            );
        }
    }

    #[test]
    fn an_older_observation_never_replaces_a_newer_one() {
        let newer = SpendTotals {
            day: 10,
            spent_today: 80,
            impressions_today: 40,
            lifetime_spent: 180,
        };
        let older = SpendTotals {
            spent_today: 78,
            impressions_today: 39,
            lifetime_spent: 178,
            ..newer
        };
        assert_eq!(newer.latest(older), newer);
        assert_eq!(older.latest(newer), newer);
        let tomorrow = SpendTotals {
            day: 11,
            spent_today: 2,
            impressions_today: 1,
            lifetime_spent: 182,
        };
        assert_eq!(newer.latest(tomorrow), tomorrow);
        assert_eq!(tomorrow.latest(newer), tomorrow);
    }
}
