//! `imaging-bench input <out.jpg>`: writes the test photo, a deterministic
//! 1155x866 (1.0 MP) JPEG at quality 90 with smooth areas, edges and fine
//! texture, so that codecs and resamplers see photo-like content.
//!
//! `imaging-bench compare <in.jpg> <sharp.webp> <sharp-json> <seconds>`: runs
//! the kit's pipeline on the same job as `sharp.cjs` (256x256 cover, WebP q85)
//! for `seconds`, then prints images/s, output bytes and SSIM against a
//! reference resize (centre crop, Lanczos3 in floating point, no lossy step)
//! for both, and the ratios; then the same job through the built
//! `images-resize` component in the project's runner (a fresh instance per
//! request, as under Spin), binary form. Run through `run.sh`.

use image::{DynamicImage, GenericImageView, RgbImage, imageops};
use kit::imaging::{Fit, Format, Params, resize};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const SIDE: u32 = 256;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["input", out] => std::fs::write(out, photo()).expect("write the input"),
        ["compare", input, sharp_out, sharp_json, seconds] => {
            compare(input, sharp_out, sharp_json, seconds.parse().expect("seconds"))
        }
        _ => {
            eprintln!("usage: imaging-bench input OUT.jpg | compare IN.jpg SHARP.webp SHARP_JSON SECONDS");
            std::process::exit(2);
        }
    }
}

fn photo() -> Vec<u8> {
    let (w, h) = (1155u32, 866u32);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut noise = move || {
        // xorshift64*: deterministic texture without a dependency.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as f32 / 255.0 - 0.5
    };
    let img = RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        let sky = [90.0 + 120.0 * fy, 140.0 + 60.0 * (fx * 3.0).sin(), 200.0 - 90.0 * fy];
        let (dx, dy) = (fx - 0.6, fy - 0.55);
        let disc = (dx * dx + dy * dy).sqrt() < 0.22;
        let stripes = ((fx * 40.0).sin() * (fy * 25.0).cos()) * 30.0;
        let grain = noise() * 36.0;
        let base = if disc { [200.0, 80.0 + stripes, 40.0] } else { sky };
        image::Rgb(base.map(|c| (c + grain + stripes * 0.3).clamp(0.0, 255.0) as u8))
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&img)
        .expect("encode the input");
    out
}

fn compare(input: &str, sharp_out: &str, sharp_json: &str, seconds: f64) {
    let data = std::fs::read(input).expect("read the input");
    let source = image::load_from_memory(&data).expect("decode the input");
    let reference = reference(&source);
    let params = Params {
        width: SIDE,
        height: SIDE,
        fit: Fit::Cover,
        format: Format::Webp,
        quality: 85,
    };
    for _ in 0..5 {
        resize(&data, &params).expect("resize"); // warm-up
    }
    let (mut n, start) = (0u32, Instant::now());
    let mut out = Vec::new();
    while start.elapsed() < Duration::from_secs_f64(seconds) {
        out = resize(&data, &params).expect("resize").bytes;
        n += 1;
    }
    let native_ips = f64::from(n) / start.elapsed().as_secs_f64();
    let native_ssim = ssim(&reference, &image::load_from_memory(&out).expect("decode ours"));
    let (component_ips, component_bytes) = component(&data, seconds);
    let component_ssim = ssim(
        &reference,
        &image::load_from_memory(&component_bytes).expect("decode the component's"),
    );
    let sharp: Value = serde_json::from_str(sharp_json).expect("sharp's JSON line");
    let sharp_bytes = std::fs::read(sharp_out).expect("read sharp's output");
    let sharp_ssim = ssim(
        &reference,
        &image::load_from_memory(&sharp_bytes).expect("decode sharp's"),
    );
    let sharp_ips = sharp["perSecond"].as_f64().expect("perSecond");
    let (w, h) = source.dimensions();
    println!(
        "job: {w}x{h} JPEG ({} bytes) -> {SIDE}x{SIDE} cover, WebP q85, one at a time",
        data.len()
    );
    println!("{:<10} {:>10} {:>8} {:>8}", "", "images/s", "bytes", "SSIM");
    println!(
        "{:<10} {:>10.1} {:>8} {:>8.4}",
        "kit",
        native_ips,
        out.len(),
        native_ssim
    );
    println!(
        "{:<10} {:>10.1} {:>8} {:>8.4}",
        "component",
        component_ips,
        component_bytes.len(),
        component_ssim
    );
    println!(
        "{:<10} {:>10.1} {:>8} {:>8.4}",
        format!("sharp {}", sharp["sharp"].as_str().unwrap_or("?")),
        sharp_ips,
        sharp_bytes.len(),
        sharp_ssim
    );
    println!(
        "ratios kit/sharp: speed {:.2}x, bytes {:.2}, SSIM {:+.4}; component/sharp: speed {:.2}x",
        native_ips / sharp_ips,
        out.len() as f64 / sharp_bytes.len() as f64,
        native_ssim - sharp_ssim,
        component_ips / sharp_ips
    );
    println!(
        "{}",
        json!({
            "kit": {"perSecond": native_ips, "bytes": out.len(), "ssim": native_ssim},
            "component": {"perSecond": component_ips, "bytes": component_bytes.len(), "ssim": component_ssim},
            "sharp": {"perSecond": sharp_ips, "bytes": sharp_bytes.len(), "ssim": sharp_ssim, "version": sharp["sharp"]},
        })
    );
}

/// Requests per second of the binary form through the runner, one at a time,
/// and the last answer's body.
fn component(data: &[u8], seconds: f64) -> (f64, Vec<u8>) {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async {
        let state_dir = std::env::temp_dir().join(format!("imaging-bench-{}", std::process::id()));
        std::fs::create_dir_all(&state_dir).expect("a state dir");
        // IMAGING_BENCH_WASM=path measures another build of the component
        // (e.g. one with other target features) under the same manifest.
        let manifest = match std::env::var("IMAGING_BENCH_WASM") {
            Ok(wasm) => {
                let text = std::fs::read_to_string(root.join("spin.toml")).expect("read spin.toml");
                let text = text.replace("target/wasm32-wasip2/component/images_resize.wasm", &wasm);
                let path = state_dir.join("spin.toml");
                std::fs::write(&path, text).expect("write the manifest");
                path
            }
            Err(_) => root.join("spin.toml"),
        };
        let options = runner::Options {
            manifest,
            state_dir: state_dir.clone(),
            // Required by the app (the order routes); images-resize never sees it.
            variables: vec![("jwt_secret".into(), "bench-only-secret-unused-by-images".into())],
            env: Some(Default::default()),
            only_components: Some(vec!["images-resize".into()]),
            echo_component_output: false,
            ..Default::default()
        };
        let app = runner::App::load(options).await.expect("the app loads");
        let client = "127.0.0.1:40000".parse().expect("an address");
        let body = bytes::Bytes::copy_from_slice(data);
        let send = async || {
            let request = http::Request::post(format!("/images/resize/raw?width={SIDE}&height={SIDE}"))
                .header("host", "localhost")
                .header("content-type", "image/jpeg")
                .body(runner::full_body(body.clone()))
                .expect("a request");
            let response = app
                .handle(request, http::uri::Scheme::HTTP, client)
                .await
                .expect("the runner answers");
            let status = response.status();
            let bytes = http_body_util::BodyExt::collect(response.into_body())
                .await
                .expect("the whole answer")
                .to_bytes();
            assert_eq!(status, 200, "{bytes:?}");
            bytes
        };
        for _ in 0..3 {
            send().await; // warm-up: compile cache, first instances
        }
        let (mut n, start) = (0u32, Instant::now());
        let mut last = bytes::Bytes::new();
        while start.elapsed() < Duration::from_secs_f64(seconds) {
            last = send().await;
            n += 1;
        }
        let _ = std::fs::remove_dir_all(&state_dir);
        (f64::from(n) / start.elapsed().as_secs_f64(), last.to_vec())
    })
}

/// What a perfect `.resize(256, 256)` would give: the centred square crop,
/// Lanczos3 in floating point, no lossy encoding.
fn reference(source: &DynamicImage) -> DynamicImage {
    let (w, h) = source.dimensions();
    let side = w.min(h);
    let crop = source.crop_imm((w - side) / 2, (h - side) / 2, side, side).to_rgb32f();
    DynamicImage::ImageRgb32F(imageops::resize(&crop, SIDE, SIDE, imageops::FilterType::Lanczos3))
}

/// Mean SSIM of the luma planes (Wang et al. 2004: 11x11 Gaussian window,
/// sigma 1.5, K1 0.01, K2 0.03, 8-bit range).
fn ssim(a: &DynamicImage, b: &DynamicImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let luma = |img: &DynamicImage| -> Vec<f64> {
        img.to_rgb32f()
            .pixels()
            .map(|p| 255.0 * (0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2])))
            .collect()
    };
    let (x, y) = (luma(a), luma(b));
    let (w, h) = (a.width() as usize, a.height() as usize);
    let kernel: Vec<f64> = {
        let k: Vec<f64> = (0..11)
            .map(|i| (-((i as f64 - 5.0).powi(2)) / (2.0 * 1.5 * 1.5)).exp())
            .collect();
        let sum: f64 = k.iter().sum();
        k.into_iter().map(|v| v / sum).collect()
    };
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let mut total = 0.0;
    let mut count = 0usize;
    for top in 0..=h - 11 {
        for left in 0..=w - 11 {
            let (mut mx, mut my, mut xx, mut yy, mut xy) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for (j, kj) in kernel.iter().enumerate() {
                for (i, ki) in kernel.iter().enumerate() {
                    let weight = kj * ki;
                    let index = (top + j) * w + left + i;
                    let (px, py) = (x[index], y[index]);
                    mx += weight * px;
                    my += weight * py;
                    xx += weight * px * px;
                    yy += weight * py * py;
                    xy += weight * px * py;
                }
            }
            let (vx, vy, cov) = (xx - mx * mx, yy - my * my, xy - mx * my);
            total += ((2.0 * mx * my + c1) * (2.0 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2));
            count += 1;
        }
    }
    total / count as f64
}
