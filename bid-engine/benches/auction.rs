//! One bid over 10,000 campaigns (SPEC §9; target ≤ 10 µs).
//! `cargo bench -p admesh-bid-engine --bench auction`

use std::sync::Arc;

use admesh_bid_engine::{
    auction::{AuctionIndex, BidContext, run_auction},
    ledger::{EmbeddedLedger, SpendJournal},
    store::CampaignStore,
    synthetic::synthetic_campaigns,
};
use admesh_common::{Database, config::AuctionKind};
use admesh_proto::common::v1::DeviceType;
use criterion::{Criterion, criterion_group, criterion_main};

fn bid_over_ten_thousand_campaigns(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _entered = runtime.enter();
    let database = runtime
        .block_on(Database::connect_and_migrate("sqlite::memory:", 1))
        .expect("in-memory SQLite");
    let campaigns = synthetic_campaigns(10_000);
    // The ledger reserves budget in SQL: the campaigns live there too.
    runtime
        .block_on(CampaignStore::new(database.clone()).insert_all(&campaigns))
        .expect("store campaigns");
    let ledger = EmbeddedLedger::new(SpendJournal::new(database));
    let index = AuctionIndex::build(campaigns.into_iter().map(Arc::new));
    let interests = vec!["gaming".to_string(), "tech".to_string()];
    let now = admesh_common::time::now_millis();
    let bid = BidContext {
        user_id: "user-42",
        placement_id: "placement-3",
        country: "US",
        device_type: DeviceType::Mobile,
        age: Some(29),
        interests: &interests,
        floor_cpm: 500_000,
        now,
        day: admesh_common::time::utc_day(now),
    };
    c.bench_function("bid over 10k campaigns (second price)", |b| {
        b.iter(|| {
            runtime
                .block_on(run_auction(&index, &bid, AuctionKind::SecondPrice, &ledger))
                .expect("no I/O")
        })
    });
    let nobody = BidContext {
        country: "JP",
        interests: &[],
        ..bid.clone()
    };
    c.bench_function("no-bid over 10k campaigns", |b| {
        b.iter(|| {
            runtime
                .block_on(run_auction(
                    &index,
                    &nobody,
                    AuctionKind::SecondPrice,
                    &ledger,
                ))
                .expect("no I/O")
        })
    });
}

criterion_group!(benches, bid_over_ten_thousand_campaigns);
criterion_main!(benches);
