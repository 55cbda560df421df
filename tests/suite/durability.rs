//! A crash under write load loses no acknowledged order, with either
//! `sqlite_synchronous` setting: the engine runs in a process of its own
//! (real `spin up`, or the runner's binary), is killed with SIGKILL while
//! creates are in flight, and is started again on the same state directory;
//! every order that was answered `201` must read back. (`full` also
//! survives a power loss, which a test on one machine cannot cut; on
//! PostgreSQL the variable is unused and the same crash is tested.)

use component_tests::*;
use http::Request;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_loses_no_acknowledged_order_with_normal_durability() {
    crash_under_writes("normal").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_loses_no_acknowledged_order_with_full_durability() {
    crash_under_writes("full").await;
}

async fn crash_under_writes(synchronous: &str) {
    let mut h = Harness::load_as_process(Setup {
        components: &["orders-create", "orders-get"],
        variables: &[("sqlite_synchronous", synchronous)],
        ..Setup::default()
    })
    .await;
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for writer in 0..8 {
        let (addr, acknowledged) = (h.addr, acknowledged.clone());
        writers.push(tokio::spawn(async move {
            let Ok(mut connection) = Connection::try_open(addr).await else {
                return;
            };
            for n in 0.. {
                let body = json!({"userId": USER, "items": [{"productId": format!("w{writer}-{n}"), "quantity": 1}]});
                let request = Request::post("/orders")
                    .header("content-type", "application/json")
                    .header("authorization", bearer(USER))
                    .body(body.to_string().into())
                    .unwrap();
                match connection.try_send(request).await {
                    Ok(reply) if reply.status == 201 => {
                        let id = reply.json()["orderId"].as_str().unwrap().to_string();
                        acknowledged.lock().unwrap().push((id, format!("w{writer}-{n}")));
                    }
                    Ok(reply) => panic!("before the crash, a create answered {}", reply.status),
                    // The crash: this request was in flight, never acknowledged.
                    Err(_) => return,
                }
            }
        }));
    }
    // Let the writers commit for a while, then kill the engine under them.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = acknowledged.lock().unwrap().len();
    assert!(before > 0, "no order was acknowledged before the crash");
    h.crash_and_restart().await;
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    for (id, product) in &acknowledged {
        let order = h
            .get_as_user(&format!("/orders/{id}"))
            .await
            .assert_json(200, "order.response.json");
        assert_eq!(order["items"][0]["productId"], product.as_str(), "{id}");
    }
    eprintln!(
        "{synchronous}: {} acknowledged orders, all read back after SIGKILL and restart",
        acknowledged.len()
    );
}
