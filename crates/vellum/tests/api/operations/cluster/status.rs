//! Status lists across instances: two instances issuing at once hand out each entry of a list
//! once, and each instance, which signs and caches its own copy of a list, serves at its next
//! read what the other changed, and nothing new while nothing changed.

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::json;
use vellum_formats::jose::UnverifiedJws;
use vellum_formats::status_list::StatusList;

use super::{Cluster, json_of, on};
use crate::support::process::Server;
use crate::support::wallet::Wallet;
use crate::support::{API_KEY, profile_body};

const CREDENTIALS: usize = 200;
const AT_ONCE: usize = 16;
/// Large enough that every credential lands in one list.
const LIST_SIZE: usize = 4096;
/// `status_lists.publish_delay`: how long an instance answers from the list it signed.
const PUBLISH_DELAY: std::time::Duration = std::time::Duration::from_millis(300);

/// A credential as issued: its session, the instance that issued it (0 or 1) and the status
/// list entry it references.
struct Issued {
    session: String,
    issued_by: usize,
    index: usize,
    uri: String,
}

/// One pre-authorized flow for `profile`, its steps alternating between the instances: the
/// offer, the token and the credential on `servers[by]`, the rest on the other.
async fn issue(cluster: &Cluster, servers: &[Server; 2], by: usize, profile: &str) -> Issued {
    let (here, there) = (&servers[by], &servers[1 - by]);
    let created = cluster
        .create_offer(here, json!({"profileId": profile}))
        .await;
    let offer = cluster.resolve(there, &created).await;
    let (status, token) = cluster.token(here, &Wallet::code(&offer), None).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    let token = token["access_token"].as_str().expect("access_token");
    let nonce = cluster.nonce(there).await;
    let (status, issued) = cluster
        .credential(here, token, &cluster.proof(&Wallet::new(), &nonce))
        .await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    let credential = issued["credentials"][0]["credential"]
        .as_str()
        .expect("credential");
    let jwt = credential.split('~').next().expect("issuer-signed JWT");
    let payload = UnverifiedJws::parse(jwt).expect("JWS").payload;
    let reference = &payload["status"]["status_list"];
    Issued {
        session: created["offerId"].as_str().expect("offerId").to_owned(),
        issued_by: by,
        index: usize::try_from(reference["idx"].as_u64().expect("idx")).expect("an index"),
        uri: reference["uri"].as_str().expect("uri").to_owned(),
    }
}

/// The Token Status List at `uri` as `server` serves it: the JWT as sent, and the list in it.
async fn read_list(cluster: &Cluster, server: &Server, uri: &str) -> (String, StatusList) {
    let response = cluster
        .client
        .get(on(cluster, server, uri))
        .header(reqwest::header::ACCEPT, "application/statuslist+jwt")
        .send()
        .await
        .expect("status list");
    let status = response.status();
    let jwt = response.text().await.expect("body");
    assert_eq!(status, StatusCode::OK, "{jwt}");
    let jws = UnverifiedJws::parse(&jwt).expect("JWS");
    assert_eq!(jws.payload["sub"], uri);
    assert_eq!(jws.payload["iss"], cluster.public_url.as_str());
    let lst = jws.payload["status_list"]["lst"].as_str().expect("lst");
    let list = StatusList::from_lst(2, lst).expect("lst");
    assert_eq!(list.len(), LIST_SIZE);
    (jwt, list)
}

/// Checks that `list` shows `changed` (index, status) and 0 at every other issued entry.
fn assert_shows(list: &StatusList, issued: &[Issued], changed: &[(usize, u8)], read_on: &str) {
    let wrong: Vec<(usize, u8, Result<u8, _>)> = issued
        .iter()
        .filter_map(|credential| {
            let expected = changed
                .iter()
                .find(|(index, _)| *index == credential.index)
                .map_or(0, |(_, status)| *status);
            let listed = list.get(credential.index);
            (listed != Ok(expected)).then_some((credential.index, expected, listed))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "the list read on {read_on}, as (index, expected, listed): {wrong:?}"
    );
}

/// The id of the credential `issued` names, as `server` lists its session's credentials.
async fn credential_id(cluster: &Cluster, server: &Server, issued: &Issued) -> String {
    let path = format!("/api/v1/sessions/{}/credentials", issued.session);
    let (status, listed) = cluster.api(server, Method::GET, &path).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let credential = &listed["items"][0];
    assert_eq!(credential["status"], "VALID", "{credential}");
    assert_eq!(
        credential["statusList"]["index"], issued.index,
        "{credential}"
    );
    assert_eq!(credential["statusList"]["uri"], issued.uri, "{credential}");
    credential["id"].as_str().expect("id").to_owned()
}

async fn change_status(cluster: &Cluster, server: &Server, credential: &str, to: &str) {
    let response = cluster
        .client
        .post(format!(
            "{}/api/v1/credentials/{credential}/status",
            server.url
        ))
        .bearer_auth(API_KEY)
        .json(&json!({"status": to}))
        .send()
        .await
        .expect("change the status");
    let (status, view) = json_of(response).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["status"], to, "{view}");
    // Every instance's next read shows it once the publish delay has passed.
    tokio::time::sleep(PUBLISH_DELAY + std::time::Duration::from_millis(50)).await;
}

#[tokio::test]
async fn two_instances_hand_out_each_entry_once_and_serve_each_others_changes() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let size = LIST_SIZE.to_string();
    let delay = format!("{}ms", PUBLISH_DELAY.as_millis());
    let env = [
        ("VELLUM_STATUS_LISTS__SIZE", size.as_str()),
        ("VELLUM_STATUS_LISTS__PUBLISH_DELAY", delay.as_str()),
    ];
    let servers = [cluster.first(&env).await, cluster.another(&env).await];
    let [a, b] = &servers;
    let response = cluster
        .client
        .post(format!("{}/api/v1/profiles", a.url))
        .bearer_auth(API_KEY)
        .json(&profile_body(json!({"credentialStatus": "STATUS_LIST"})))
        .send()
        .await
        .expect("create profile");
    let (status, profile) = json_of(response).await;
    assert_eq!(status, StatusCode::CREATED, "{profile}");
    let profile = profile["profileId"].as_str().expect("profileId");

    // Flows in turn on A and on B, 16 at a time; collected as they finish, about the order in
    // which their entries were handed out.
    let issued: Vec<Issued> = futures_util::stream::iter(0..CREDENTIALS)
        .map(|flow| issue(&cluster, &servers, flow % 2, profile))
        .buffer_unordered(AT_ONCE)
        .collect()
        .await;
    let indices: Vec<usize> = issued.iter().map(|credential| credential.index).collect();
    let mut distinct = indices.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), CREDENTIALS, "an entry twice: {indices:?}");
    assert!(
        indices.iter().all(|index| *index < LIST_SIZE),
        "{indices:?}"
    );
    // Neither ascending nor the list's first positions: the index hides the issue order.
    assert!(
        !indices.is_sorted() && distinct.last() >= Some(&CREDENTIALS),
        "entries in issue order: {indices:?}"
    );
    let mut uris: Vec<&str> = issued.iter().map(|credential| &*credential.uri).collect();
    uris.sort_unstable();
    uris.dedup();
    assert_eq!(uris.len(), 1, "one list: {uris:?}");
    let uri = uris[0];

    // Each instance signs and caches the list; unchanged, it is served as cached.
    for (server, name) in [(a, "A"), (b, "B")] {
        let (jwt, list) = read_list(&cluster, server, uri).await;
        assert_shows(&list, &issued, &[], name);
        let (again, _) = read_list(&cluster, server, uri).await;
        assert_eq!(again, jwt, "{name} signed an unchanged list again");
    }

    // Revoked on A (a credential B issued): B's next read shows it.
    let revoked = issued
        .iter()
        .find(|credential| credential.issued_by == 1)
        .expect("one issued by B");
    change_status(
        &cluster,
        a,
        &credential_id(&cluster, a, revoked).await,
        "REVOKED",
    )
    .await;
    let (_, list) = read_list(&cluster, b, uri).await;
    assert_shows(&list, &issued, &[(revoked.index, 1)], "B after A revoked");

    // Suspended on B (a credential A issued): both instances show both changes, and then serve
    // what they signed until the next change.
    let suspended = issued
        .iter()
        .find(|credential| credential.issued_by == 0)
        .expect("one issued by A");
    change_status(
        &cluster,
        b,
        &credential_id(&cluster, b, suspended).await,
        "SUSPENDED",
    )
    .await;
    let changed = [(revoked.index, 1), (suspended.index, 2)];
    for (server, name) in [(b, "B"), (a, "A")] {
        let (jwt, list) = read_list(&cluster, server, uri).await;
        assert_shows(
            &list,
            &issued,
            &changed,
            &format!("{name} after B suspended"),
        );
        let (again, _) = read_list(&cluster, server, uri).await;
        assert_eq!(again, jwt, "{name} signed an unchanged list again");
    }
}
