//! The serve path on the embedded profile, through `admesh up` over real
//! gRPC: campaigns, fills, signed clicks counted once, events in the
//! stream, bad input named by field, spend and caps surviving a restart.

mod support;

use std::time::Duration;

use admesh_common::Database;
use admesh_proto::{
    adserver::v1::{self as ad, NoFillReason, ad_server_client::AdServerClient},
    bid::v1::{self as bid, bid_engine_client::BidEngineClient},
};
use support::{Mesh, channel, placement_campaign, serve_request};
use tonic::Code;

type Bidder = BidEngineClient<tonic::transport::Channel>;
type Server = AdServerClient<tonic::transport::Channel>;

/// Clients of the bid-engine and ad-server, once the bid-engine has loaded
/// its campaigns (its health says so).
async fn clients(mesh: &Mesh) -> (Bidder, Server) {
    support::wait_until_serving(mesh.address("bid-engine")).await;
    (
        BidEngineClient::new(channel(mesh.address("bid-engine"))),
        AdServerClient::new(channel(mesh.address("ad-server"))),
    )
}

async fn create(bidder: &mut Bidder, campaign: bid::Campaign) -> bid::Campaign {
    bidder
        .create_campaign(bid::CreateCampaignRequest {
            campaign: Some(campaign),
        })
        .await
        .expect("create campaign")
        .into_inner()
}

async fn serve(server: &mut Server, user: &str, placement: &str) -> ad::ServeResponse {
    server
        .serve(serve_request(user, placement))
        .await
        .expect("serve")
        .into_inner()
}

fn token_of(fill: &ad::ServeResponse) -> String {
    fill.click_tracking_url
        .split_once("?t=")
        .expect("the click URL carries a token")
        .1
        .to_string()
}

async fn click(server: &mut Server, token: &str) -> Result<ad::ClickResponse, tonic::Status> {
    server
        .click(ad::ClickRequest {
            token: token.to_string(),
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_carry_a_signed_click_url_and_clicks_count_once() {
    let mesh = Mesh::start(&[]);
    let (mut bidder, mut server) = clients(&mesh).await;
    let campaign = create(
        &mut bidder,
        placement_campaign("Clicks", "click-test", 2_000_000, 10_000_000),
    )
    .await;

    let fill = serve(&mut server, "user-1", "click-test").await;
    assert!(fill.filled, "{fill:?}");
    assert_eq!(fill.campaign_id, campaign.id);
    assert_eq!(fill.ad_id, campaign.ads[0].id);
    assert_eq!(fill.redirect_url, "https://example.com/click-test");
    // `admesh up` points click URLs at its edge.
    let edge = mesh.address("edge");
    assert!(
        fill.click_tracking_url
            .starts_with(&format!("http://{edge}/v1/click?t=")),
        "{}",
        fill.click_tracking_url
    );
    // Second price, no competitor, no floor: one micro above zero.
    assert_eq!(fill.bid_price, 1);

    let token = token_of(&fill);
    let first = click(&mut server, &token).await.expect("valid click");
    assert!(first.counted);
    assert_eq!(first.redirect_url, fill.redirect_url);
    assert_eq!(first.impression_id, fill.impression_id);
    let replayed = click(&mut server, &token).await.expect("replayed click");
    assert!(!replayed.counted, "a replayed click is not counted again");
    assert_eq!(replayed.redirect_url, fill.redirect_url);

    // Altered: the payload of another impression with this one's signature.
    let other = serve(&mut server, "user-2", "click-test").await;
    let (other_payload, _) = token_of(&other)
        .split_once('.')
        .map(|(p, s)| (p.to_string(), s.to_string()))
        .expect("two parts");
    let (_, signature) = token.split_once('.').expect("two parts");
    for bad in [
        format!("{other_payload}.{signature}"),
        "eyJpIjoiZm9yZ2VkIn0.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string(),
        "not-a-token".to_string(),
    ] {
        let error = click(&mut server, &bad).await.expect_err("refused");
        assert_eq!(error.code(), Code::InvalidArgument, "{bad}");
        assert!(error.message().starts_with("token:"), "{}", error.message());
    }

    // Many clicks on one impression at once: exactly one counts.
    let fresh = serve(&mut server, "user-3", "click-test").await;
    let token = token_of(&fresh);
    let clicks = (0..16).map(|_| {
        let mut server = server.clone();
        let token = token.clone();
        tokio::spawn(async move { click(&mut server, &token).await.expect("click").counted })
    });
    let mut counted = 0;
    for click in clicks {
        counted += usize::from(click.await.expect("task"));
    }
    assert_eq!(counted, 1);

    // Every fill and every counted click was published once: the analytics
    // consumer logs each event it counts (the stream itself is drained).
    let database = Database::connect_lazy(&mesh.database_url, 1).expect("database");
    type Logged = (String, String, String, String, String, i64, i64, String);
    let ours: Vec<Logged> = support::eventually("the events are counted", Duration::from_secs(30), || {
        let database = database.clone();
        let campaign_id = campaign.id.clone();
        async move {
            let rows: Vec<Logged> = admesh_common::on_pool!(&database, pool =>
                sqlx::query_as(
                    "SELECT event_id, event_type, ad_id, placement_id, impression_id, bid_price, spend, \
                     country_code FROM events_log WHERE campaign_id = $1",
                )
                .bind(campaign_id)
                .fetch_all(pool)
                .await)
            .ok()?;
            (rows.len() >= 5).then_some(rows)
        }
    })
    .await;
    let impressions: Vec<&Logged> = ours
        .iter()
        .filter(|event| event.1 == "impression")
        .collect();
    let clicks: Vec<&Logged> = ours.iter().filter(|event| event.1 == "click").collect();
    assert_eq!(impressions.len(), 3, "{ours:?}");
    assert_eq!(clicks.len(), 2, "{ours:?}");
    let first_impression = impressions
        .iter()
        .find(|event| event.4 == fill.impression_id)
        .expect("the first fill's impression event");
    assert_eq!(first_impression.2, fill.ad_id);
    assert_eq!(first_impression.3, "click-test");
    assert_eq!(first_impression.7, "NZ");
    assert_eq!((first_impression.5, first_impression.6), (1, 1));
    assert!(clicks.iter().any(|event| event.4 == fill.impression_id));
    let mut ids: Vec<_> = ours.iter().map(|event| event.0.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), ours.len(), "event ids are unique");

    let listed = server
        .list_ads(ad::ListAdsRequest {
            campaign_id: campaign.id.clone(),
            ..Default::default()
        })
        .await
        .expect("list ads")
        .into_inner();
    assert_eq!(listed.ads.len(), 1);
    assert_eq!(listed.ads[0].target_url, "https://example.com/click-test");
    assert!(listed.ads[0].active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaigns_are_managed_and_their_status_steers_serving() {
    let mesh = Mesh::start(&[]);
    let (mut bidder, mut server) = clients(&mesh).await;
    let campaign = create(
        &mut bidder,
        placement_campaign("Managed", "manage-test", 1_500_000, 5_000_000),
    )
    .await;
    assert_eq!(campaign.status, bid::CampaignStatus::Active as i32);

    let fetched = bidder
        .get_campaign(bid::GetCampaignRequest {
            id: campaign.id.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(fetched.name, "Managed");
    assert_eq!(fetched.targeting, campaign.targeting);

    let updated = bidder
        .update_campaign(bid::UpdateCampaignRequest {
            campaign: Some(bid::Campaign {
                id: campaign.id.clone(),
                bid_price: 2_500_000,
                name: "not applied".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["bid_price".into()],
            }),
        })
        .await
        .expect("update")
        .into_inner();
    assert_eq!(updated.bid_price, 2_500_000);
    assert_eq!(updated.name, "Managed");
    assert_eq!(updated.ads[0].id, campaign.ads[0].id, "ads keep their ids");

    let paused = bidder
        .pause_campaign(bid::PauseCampaignRequest {
            id: campaign.id.clone(),
        })
        .await
        .expect("pause")
        .into_inner();
    assert_eq!(paused.status, bid::CampaignStatus::Paused as i32);
    let answer = serve(&mut server, "user-1", "manage-test").await;
    assert!(!answer.filled);
    assert_eq!(answer.no_fill_reason, NoFillReason::NoMatch as i32);

    bidder
        .resume_campaign(bid::ResumeCampaignRequest {
            id: campaign.id.clone(),
        })
        .await
        .expect("resume");
    let answer = serve(&mut server, "user-1", "manage-test").await;
    assert!(answer.filled);

    // Pagination over the demo campaigns and ours, with a filter.
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = bidder
            .list_campaigns(bid::ListCampaignsRequest {
                page_size: 4,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        assert!(page.campaigns.len() <= 4);
        seen.extend(page.campaigns.into_iter().map(|c| c.id));
        if page.next_page_token.is_empty() {
            assert_eq!(page.total_size as usize, seen.len());
            break;
        }
        page_token = page.next_page_token;
    }
    assert!(seen.contains(&campaign.id));
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no campaign on two pages");
    let ours = bidder
        .list_campaigns(bid::ListCampaignsRequest {
            advertiser_id: "adv-test".into(),
            status: bid::CampaignStatus::Active as i32,
            ..Default::default()
        })
        .await
        .expect("filtered list")
        .into_inner();
    assert_eq!(ours.campaigns.len(), 1);
    assert_eq!(ours.total_size, 1);
    assert!(
        ours.campaigns[0].spent_today > 0,
        "spend shows on the campaign"
    );
}

fn assert_invalid(result: Result<impl std::fmt::Debug, tonic::Status>, field: &str) {
    let error = result.expect_err("bad input is refused");
    assert_eq!(error.code(), Code::InvalidArgument, "{field}: {error:?}");
    assert!(
        error.message().starts_with(&format!("{field}:"))
            || error.message().contains(&format!("; {field}:")),
        "expected the message to name {field}: {}",
        error.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_every_rpc_names_the_field() {
    let mesh = Mesh::start(&[]);
    let (mut bidder, mut server) = clients(&mesh).await;
    let valid = placement_campaign("Valid", "bad-input", 1_000_000, 1_000_000);

    assert_invalid(
        bidder
            .create_campaign(bid::CreateCampaignRequest { campaign: None })
            .await,
        "campaign",
    );
    let mut zero_bid = valid.clone();
    zero_bid.bid_price = 0;
    assert_invalid(
        bidder
            .create_campaign(bid::CreateCampaignRequest {
                campaign: Some(zero_bid),
            })
            .await,
        "campaign.bid_price",
    );
    let mut bad_url = valid.clone();
    bad_url.ads[0].image_url = "not a url".into();
    assert_invalid(
        bidder
            .create_campaign(bid::CreateCampaignRequest {
                campaign: Some(bad_url),
            })
            .await,
        "campaign.ads[0].image_url",
    );
    assert_invalid(
        bidder
            .update_campaign(bid::UpdateCampaignRequest {
                campaign: Some(bid::Campaign::default()),
                update_mask: None,
            })
            .await,
        "campaign.id",
    );
    let created = create(&mut bidder, valid.clone()).await;
    assert_invalid(
        bidder
            .update_campaign(bid::UpdateCampaignRequest {
                campaign: Some(bid::Campaign {
                    id: created.id.clone(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["colour".into()],
                }),
            })
            .await,
        "update_mask",
    );
    assert_invalid(
        bidder
            .update_campaign(bid::UpdateCampaignRequest {
                campaign: Some(bid::Campaign {
                    id: created.id.clone(),
                    daily_budget: -1,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["daily_budget".into()],
                }),
            })
            .await,
        "campaign.daily_budget",
    );
    assert_invalid(
        bidder
            .get_campaign(bid::GetCampaignRequest { id: String::new() })
            .await,
        "id",
    );
    let missing = bidder
        .get_campaign(bid::GetCampaignRequest {
            id: "no-such-campaign".into(),
        })
        .await
        .expect_err("unknown id");
    assert_eq!(missing.code(), Code::NotFound);
    assert_invalid(
        bidder
            .list_campaigns(bid::ListCampaignsRequest {
                page_token: "page-two".into(),
                ..Default::default()
            })
            .await,
        "page_token",
    );
    assert_invalid(
        bidder
            .list_campaigns(bid::ListCampaignsRequest {
                status: 9,
                ..Default::default()
            })
            .await,
        "status",
    );
    assert_invalid(
        bidder
            .pause_campaign(bid::PauseCampaignRequest { id: String::new() })
            .await,
        "id",
    );
    let missing = bidder
        .resume_campaign(bid::ResumeCampaignRequest {
            id: "no-such-campaign".into(),
        })
        .await
        .expect_err("unknown id");
    assert_eq!(missing.code(), Code::NotFound);
    assert_invalid(bidder.bid(bid::BidRequest::default()).await, "user_id");
    assert_invalid(
        bidder
            .bid(bid::BidRequest {
                user_id: "u".into(),
                placement_id: "p".into(),
                floor_cpm: -5,
                ..Default::default()
            })
            .await,
        "floor_cpm",
    );

    assert_invalid(server.serve(ad::ServeRequest::default()).await, "user_id");
    let mut bad_country = serve_request("u", "p");
    bad_country.country_code = "USA".into();
    assert_invalid(server.serve(bad_country).await, "country_code");
    let mut bad_device = serve_request("u", "p");
    bad_device.device_type = 42;
    assert_invalid(server.serve(bad_device).await, "device_type");
    assert_invalid(click(&mut server, "").await, "token");
    assert_invalid(click(&mut server, "garbage").await, "token");
    assert_invalid(
        server
            .list_ads(ad::ListAdsRequest {
                page_token: "-1".into(),
                ..Default::default()
            })
            .await,
        "page_token",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_and_frequency_caps_survive_a_restart() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut mesh = Mesh::start_in(data.path(), &[]);
    let (mut bidder, mut server) = clients(&mesh).await;
    let mut capped = placement_campaign("Capped", "restart-test", 3_000_000, 50_000_000);
    capped.frequency_cap = Some(2);
    let campaign = create(&mut bidder, capped).await;
    for _ in 0..2 {
        assert!(serve(&mut server, "user-1", "restart-test").await.filled);
    }
    let capped_answer = serve(&mut server, "user-1", "restart-test").await;
    assert_eq!(
        capped_answer.no_fill_reason,
        NoFillReason::FrequencyCapped as i32
    );
    for user in ["user-2", "user-3", "user-4"] {
        assert!(serve(&mut server, user, "restart-test").await.filled);
    }
    let before = bidder
        .get_campaign(bid::GetCampaignRequest {
            id: campaign.id.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    // Five impressions at one micro CPM, one micro each.
    assert_eq!(before.spent_today, 5);
    assert!(mesh.process.terminate().success());
    drop(mesh);

    let mesh = Mesh::start_in(data.path(), &[]);
    let (mut bidder, mut server) = clients(&mesh).await;
    let after = bidder
        .get_campaign(bid::GetCampaignRequest {
            id: campaign.id.clone(),
        })
        .await
        .expect("get after restart")
        .into_inner();
    assert_eq!(after.spent_today, before.spent_today);
    assert_eq!(after.lifetime_spent, before.lifetime_spent);
    let still_capped = serve(&mut server, "user-1", "restart-test").await;
    assert_eq!(
        still_capped.no_fill_reason,
        NoFillReason::FrequencyCapped as i32
    );
    assert!(serve(&mut server, "user-5", "restart-test").await.filled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_of_the_embedded_mesh_never_overspends_a_budget() {
    const SPEND: i64 = 2_000; // first price at 2 USD CPM
    const BUDGETED: usize = 100;
    let data = tempfile::tempdir().expect("tempdir");
    let first_price = [("ADMESH_BID_ENGINE__AUCTION", "first_price".to_string())];
    let mesh = Mesh::start_in(data.path(), &first_price);
    let (mut bidder, mut server) = clients(&mesh).await;
    let campaign = create(
        &mut bidder,
        placement_campaign("Crash", "crash-test", 2_000_000, BUDGETED as i64 * SPEND),
    )
    .await;
    let mut fills = 0;
    for user in 0..30 {
        if serve(&mut server, &format!("user-{user}"), "crash-test")
            .await
            .filled
        {
            fills += 1;
        }
    }
    assert_eq!(fills, 30);
    // kill -9: spend charged since the last write-behind is lost from
    // memory; the reservation in SQL is what the restart starts from.
    drop(mesh);

    let mesh = Mesh::start_in(data.path(), &first_price);
    let (mut bidder, mut server) = clients(&mesh).await;
    for user in 30..(2 * BUDGETED) {
        let answer = serve(&mut server, &format!("user-{user}"), "crash-test").await;
        if answer.filled {
            fills += 1;
        } else {
            assert_eq!(answer.no_fill_reason, NoFillReason::BudgetExhausted as i32);
        }
    }
    assert!(
        fills <= BUDGETED,
        "{fills} impressions on a budget of {BUDGETED}"
    );
    assert!(fills > 30, "the restart serves again from the reservation");
    let after = bidder
        .get_campaign(bid::GetCampaignRequest { id: campaign.id })
        .await
        .expect("get")
        .into_inner();
    assert!(after.spent_today <= BUDGETED as i64 * SPEND, "{after:?}");
}
