//! `POST /images/resize` through its real component: both forms, every
//! parameter, every limit. Test images are made here with the `image` crate.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use component_tests::*;
use http::Request;
use image::{GenericImageView, ImageFormat, RgbaImage};
use serde_json::json;

use crate::test_images::{gradient, jpeg, png, png_rgba};

const PATH: &str = "/images/resize";
const RAW_PATH: &str = "/images/resize/raw";

async fn harness() -> Harness {
    Harness::route("images-resize").await
}

fn raw(query: &str, content_type: &str, body: Vec<u8>) -> Request<Bytes> {
    Request::post(format!("{RAW_PATH}?{query}"))
        .header("content-type", content_type)
        .body(Bytes::from(body))
        .unwrap()
}

fn decode(bytes: &[u8], format: ImageFormat) -> image::DynamicImage {
    assert_eq!(image::guess_format(bytes).unwrap(), format);
    image::load_from_memory(bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn json_form_is_the_original_contract() {
    let h = harness().await;
    let body = json!({"imageData": STANDARD.encode(jpeg(&gradient(1000, 750))), "width": 256, "height": 256});
    let r = h.post_json(PATH, body.to_string()).await;
    let answer = r.assert_json(200, "image-resized.response.json");
    let bytes = STANDARD.decode(answer["image"].as_str().unwrap()).unwrap();
    assert_eq!(decode(&bytes, ImageFormat::WebP).dimensions(), (256, 256));
}

#[tokio::test(flavor = "multi_thread")]
async fn json_form_every_fit_and_format() {
    let h = harness().await;
    let image = STANDARD.encode(png(&gradient(400, 300)));
    for (format, image_format) in [
        ("webp", ImageFormat::WebP),
        ("jpeg", ImageFormat::Jpeg),
        ("png", ImageFormat::Png),
    ] {
        for (fit, size) in [
            ("cover", (100, 100)),
            ("contain", (100, 100)),
            ("fill", (100, 100)),
            ("inside", (100, 75)),
        ] {
            let body =
                json!({"imageData": image, "width": 100, "height": 100, "fit": fit, "format": format, "quality": 60});
            let r = h.post_json(PATH, body.to_string()).await;
            let answer = r.assert_json(200, "image-resized.response.json");
            let bytes = STANDARD.decode(answer["image"].as_str().unwrap()).unwrap();
            assert_eq!(decode(&bytes, image_format).dimensions(), size, "{fit} {format}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_form_answers_bytes_and_negotiates() {
    let h = harness().await;
    let input = jpeg(&gradient(640, 480));
    let r = h.send(raw("width=64&height=48", "image/jpeg", input.clone())).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "image/webp");
    r.assert_request_id();
    assert_eq!(decode(&r.body, ImageFormat::WebP).dimensions(), (64, 48));

    let mut request = raw(
        "width=50&height=50&fit=inside",
        "application/octet-stream",
        input.clone(),
    );
    request
        .headers_mut()
        .insert("accept", "image/png, */*;q=0.1".parse().unwrap());
    let r = h.send(request).await;
    assert_eq!(r.header("content-type"), "image/png");
    assert_eq!(decode(&r.body, ImageFormat::Png).dimensions(), (50, 38));

    let r = h
        .send(raw(
            "width=10&height=20&format=jpeg&quality=30&fit=fill",
            "image/png",
            input,
        ))
        .await;
    assert_eq!(r.header("content-type"), "image/jpeg");
    assert_eq!(decode(&r.body, ImageFormat::Jpeg).dimensions(), (10, 20));
}

#[tokio::test(flavor = "multi_thread")]
async fn alpha_survives_webp_and_png() {
    let h = harness().await;
    let input = png_rgba(&RgbaImage::from_fn(64, 64, |x, _| {
        image::Rgba([255, 0, 0, if x < 32 { 255 } else { 0 }])
    }));
    for (format, image_format) in [("webp", ImageFormat::WebP), ("png", ImageFormat::Png)] {
        let r = h
            .send(raw(
                &format!("width=32&height=32&format={format}"),
                "image/png",
                input.clone(),
            ))
            .await;
        let img = decode(&r.body, image_format);
        assert!(img.color().has_alpha());
        assert_eq!(img.get_pixel(30, 16)[3], 0, "{format}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_inputs_are_typed_problems() {
    let h = harness().await;
    let png8 = png(&gradient(8, 8));
    let r = h
        .post_json(
            PATH,
            json!({"imageData": "not base64!", "width": 1, "height": 1}).to_string(),
        )
        .await;
    // The schema's pattern says what base64 is: refused by pointer.
    let p = r.assert_problem(400, "/problems/validation-failed");
    assert_eq!(p["errors"][0]["pointer"], "/imageData");
    assert_eq!(p["errors"][0]["keyword"], "pattern");

    let r = h
        .post_json(
            PATH,
            json!({"imageData": STANDARD.encode(b"GIF89a\x01\0\x01\0"), "width": 1, "height": 1}).to_string(),
        )
        .await;
    r.assert_problem(415, "/problems/unsupported-image");

    let r = h
        .post_json(PATH, json!({"imageData": STANDARD.encode(&png8), "width": 0, "height": 4097, "fit": "crop", "format": "gif", "quality": 0, "extra": true}).to_string())
        .await;
    let p = r.assert_problem(400, "/problems/validation-failed");
    assert_eq!(p["errors"].as_array().unwrap().len(), 6);

    let r = h
        .send(raw("width=abc&height=2&colour=red", "image/png", png8.clone()))
        .await;
    let p = r.assert_problem(400, "/problems/invalid-parameter");
    let names: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["parameter"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"width") && names.contains(&"colour"), "{p}");

    let r = h.send(raw("width=2&height=2", "text/plain", png8.clone())).await;
    r.assert_problem(415, "/problems/unsupported-media-type");

    let mut truncated = jpeg(&gradient(200, 200));
    truncated.truncate(truncated.len() / 2);
    let r = h.send(raw("width=2&height=2", "image/jpeg", truncated)).await;
    r.assert_problem(422, "/problems/corrupt-image");

    // A 16x16 JPEG whose header claims 8000x8000 (64 MP): refused unread.
    let mut bomb = jpeg(&gradient(16, 16));
    let sof = bomb.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    bomb[sof + 5..sof + 9].copy_from_slice(&[0x1F, 0x40, 0x1F, 0x40]);
    let r = h.send(raw("width=2&height=2", "image/jpeg", bomb.clone())).await;
    r.assert_problem(422, "/problems/image-too-large");
    // 32 MP (under the pixel cap) into 4096x4096: over the memory budget.
    bomb[sof + 5..sof + 9].copy_from_slice(&[0x0F, 0xA0, 0x1F, 0x40]);
    let r = h.send(raw("width=4096&height=4096", "image/jpeg", bomb)).await;
    let p = r.assert_problem(422, "/problems/image-too-large");
    assert!(p["detail"].as_str().unwrap().contains("MiB"), "{p}");

    // A PNG declaring 100000x100000, past what the decoder itself agrees
    // to open in a 32-bit component: still image-too-large, not corrupt.
    let mut huge = png(&gradient(16, 16));
    huge[16..24].copy_from_slice(&[0, 1, 0x86, 0xA0, 0, 1, 0x86, 0xA0]);
    let mut crc = flate2::Crc::new();
    crc.update(&huge[12..29]);
    huge[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    let r = h.send(raw("width=2&height=2", "image/png", huge)).await;
    let p = r.assert_problem(422, "/problems/image-too-large");
    assert!(p["detail"].as_str().unwrap().contains("100000x100000"), "{p}");

    let r = h.send(Request::get(PATH).body(Bytes::new()).unwrap()).await;
    r.assert_problem(405, "/problems/method-not-allowed");
    assert_eq!(r.header("allow"), "POST");
}

#[tokio::test(flavor = "multi_thread")]
async fn body_limits_are_decided_before_reading() {
    let h = harness().await;
    let mut request = raw("width=2&height=2", "image/png", Vec::new());
    request
        .headers_mut()
        .insert("content-length", "10485761".parse().unwrap());
    let r = h.send(request).await;
    r.assert_problem(413, "/problems/payload-too-large");
    let r = h
        .send(raw("width=2&height=2", "image/png", vec![0; 10 * 1024 * 1024 + 1]))
        .await;
    r.assert_problem(413, "/problems/payload-too-large");
    // JSON: the base64 of a 10 MiB image fits the JSON limit; the decoded
    // size is what counts.
    let image = "A".repeat((10 * 1024 * 1024 / 3 + 2) * 4);
    let r = h
        .post_json(PATH, json!({"imageData": image, "width": 1, "height": 1}).to_string())
        .await;
    r.assert_problem(413, "/problems/payload-too-large");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_form_takes_only_its_own_media_types() {
    let h = harness().await;
    let png8 = png(&gradient(8, 8));
    let r = h.send(
        Request::post(PATH)
            .header("content-type", "image/png")
            .body(Bytes::from(png8.clone()))
            .unwrap(),
    );
    r.await.assert_problem(415, "/problems/unsupported-media-type");
    let body = json!({"imageData": STANDARD.encode(&png8), "width": 2, "height": 2});
    let r = h
        .post_json(&format!("{RAW_PATH}?width=2&height=2"), body.to_string())
        .await;
    r.assert_problem(415, "/problems/unsupported-media-type");
    // Whole-number floats are integers, as JSON Schema counts them.
    let body = json!({"imageData": STANDARD.encode(&png8), "width": 2.0, "height": 3.0, "quality": 50.0});
    h.post_json(PATH, body.to_string())
        .await
        .assert_json(200, "image-resized.response.json");
}

/// The shared image memory budget lives in the host's SQLite file (with
/// PostgreSQL orders too): a row per live image instance, the bytes it
/// holds. A row that holds all of it, as if another instance did, makes a
/// resize that needs more than the untracked allowance (16 MiB) a `503
/// server-busy` with `Retry-After`; an expired row (its instance went away)
/// counts for nothing; a served resize leaves its own instance's row,
/// holding its linear memory.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_shared_memory_budget_is_a_503_with_retry_after() {
    let h = harness().await;
    let image = png(&gradient(64, 48));
    // A 2000x2000 output: about 36 MiB at the peak, so the job claims.
    let resize = || raw("width=2000&height=2000&format=jpeg", "image/png", image.clone());
    assert_eq!(h.send(resize()).await.status, 200);
    let db = rusqlite::Connection::open(h.state_dir().join("sqlite_db.db")).unwrap();
    let held = || -> Vec<i64> {
        let mut statement = db.prepare("SELECT bytes FROM image_memory ORDER BY bytes").unwrap();
        statement
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let ours = held();
    assert_eq!(ours.len(), 1, "one instance served: {ours:?}");
    // What it claimed is replaced by what it holds: a linear memory's size
    // (the estimate is an upper bound; this upscale needs far less).
    assert!(
        ours[0] > 4 << 20 && ours[0] % 65_536 == 0,
        "a linear memory's size: {ours:?}"
    );
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    db.execute(
        "INSERT INTO image_memory (instance, bytes, expires_ms) VALUES ('elsewhere', ?1, ?2)",
        (256_i64 << 20, now_ms + 60_000),
    )
    .unwrap();
    let r = h.send(resize()).await;
    let p = r.assert_problem(503, "/problems/server-busy");
    assert_eq!(r.header("retry-after"), "1");
    assert!(p["detail"].as_str().unwrap().contains("256 MiB"), "{p}");
    assert!(r.body.len() < 1024, "{} bytes", r.body.len());
    db.execute(
        "UPDATE image_memory SET expires_ms = ?1 WHERE instance = 'elsewhere'",
        [now_ms - 1],
    )
    .unwrap();
    let r = h.send(resize()).await;
    assert_eq!(r.status, 200);
    let after = held();
    assert!(
        after.len() <= 2 && !after.contains(&(256_i64 << 20)),
        "the expired row is cleared: {after:?}"
    );
}

/// Under a 128 MiB instance limit (Akamai Functions' quota; the engine's
/// `--max-instance-memory`) an ordinary photo is resized, and an image whose
/// resize would need more than the instance may hold is a `422
/// image-too-large`, refused before decoding, never a trap; the instance
/// then serves on.
#[tokio::test(flavor = "multi_thread")]
async fn under_a_128_mib_instance_limit_large_work_is_a_422_not_a_trap() {
    let h = Harness::load(Setup {
        components: &["images-resize"],
        max_instance_memory: Some(128 << 20),
        ..Setup::default()
    })
    .await;
    let r = h
        .send(raw("width=256&height=256", "image/jpeg", jpeg(&gradient(1000, 750))))
        .await;
    assert_eq!(r.status, 200);
    // 4000x4000 grey to 4096x4096: about 150 MiB at the peak, under the
    // per-request budget (192 MiB) but over the instance's limit.
    let mut big = Vec::new();
    image::GrayImage::new(4000, 4000)
        .write_to(&mut std::io::Cursor::new(&mut big), ImageFormat::Png)
        .unwrap();
    let r = h.send(raw("width=4096&height=4096", "image/png", big)).await;
    let p = r.assert_problem(422, "/problems/image-too-large");
    assert!(p["detail"].as_str().unwrap().contains("lets an instance hold"), "{p}");
    let r = h
        .send(raw("width=64&height=64", "image/png", png(&gradient(64, 48))))
        .await;
    assert_eq!(r.status, 200);
}
