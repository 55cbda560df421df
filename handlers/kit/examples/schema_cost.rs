//! What schema compilation and validation cost, natively:
//! `cargo run --release -p kit --example schema_cost`.
//! (The components pay the compile once per instance; Spin makes an instance
//! per request, so this is a per-request cost there.)

use kit::validate::Schema;
use serde_json::json;
use std::time::Instant;

fn per_call(n: u32, mut f: impl FnMut()) -> f64 {
    let started = Instant::now();
    for _ in 0..n {
        f();
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

fn main() {
    // A fresh instance starts with empty lazy statics: the first compile of
    // the process pays for them, as every Spin request does.
    let values = [
        ("app_env".to_string(), "production".to_string()),
        ("log_level".into(), "info".into()),
        ("database_url".into(), "".into()),
        ("db_host".into(), "localhost:5432".into()),
        ("jwt_secret".into(), "0123456789abcdef0123456789abcdef".into()),
    ]
    .into();
    let started = Instant::now();
    kit::config::check(&values).unwrap();
    println!(
        "first config check in a fresh process (generated) {:8.1} µs",
        started.elapsed().as_secs_f64() * 1e6
    );
    let valid =
        json!({"userId": "0b6f1a53-6c1f-4d7e-9a43-2f1f4a0c9b1e", "items": [{"productId": "sku-42", "quantity": 2}]});
    let started = Instant::now();
    let n = kit::schemas::generated::OrderCreateRequest::iter_errors(&valid).count();
    println!(
        "first generated validation in a fresh process {:8.1} µs ({n} errors)",
        started.elapsed().as_secs_f64() * 1e6
    );
    let started = Instant::now();
    drop(Schema::compile(kit::schemas::CONFIG));
    println!(
        "first compile in a fresh process (config.json) {:8.1} µs",
        started.elapsed().as_secs_f64() * 1e6
    );
    let n = 2000;
    for (name, text) in kit::schemas::ALL {
        let us = per_call(n, || drop(Schema::compile(text)));
        println!("compile {name:32} {us:8.1} µs");
    }
    let schema = Schema::compile(kit::schemas::ORDER_CREATE_REQUEST);
    let valid =
        json!({"userId": "0b6f1a53-6c1f-4d7e-9a43-2f1f4a0c9b1e", "items": [{"productId": "sku-42", "quantity": 2}]});
    let invalid = json!({"userId": "nope", "items": [{"productId": "", "quantity": 0}], "x": 1});
    println!(
        "validate valid order body          {:8.2} µs",
        per_call(n * 10, || assert!(schema.errors(&valid).is_empty()))
    );
    println!(
        "validate invalid order body (4 err) {:7.2} µs",
        per_call(n * 10, || assert_eq!(schema.errors(&invalid).len(), 4))
    );
    println!(
        "config check (incl. compile once)   {:8.2} µs",
        per_call(n, || kit::config::check(&values).unwrap())
    );
}
