//! Embeds the page and its assets: Swagger UI from `web/node_modules`
//! (installed by `make docs-assets`, `npm ci` against the committed
//! `package-lock.json`), our page and initializer. Each asset is served
//! under a name carrying its content hash, so browsers may cache it
//! forever. Each is stored once, gzipped (the component inflates it for
//! the rare client that refuses gzip): storing the plain copy too made the
//! component 1.6 MB larger.

use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// `(name in node_modules or web/, served name stem, extension, content type)`.
const ASSETS: &[(&str, &str, &str, &str)] = &[
    (
        "node_modules/swagger-ui-dist/swagger-ui-bundle.js",
        "swagger-ui-bundle",
        "js",
        "text/javascript; charset=utf-8",
    ),
    (
        "node_modules/swagger-ui-dist/swagger-ui.css",
        "swagger-ui",
        "css",
        "text/css; charset=utf-8",
    ),
    ("init.js", "init", "js", "text/javascript; charset=utf-8"),
];

fn main() {
    let web = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("web");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed={}", web.join("index.html").display());
    println!("cargo:rerun-if-changed={}", web.join("package-lock.json").display());
    let mut page = std::fs::read_to_string(web.join("index.html")).unwrap();
    let mut table = String::from(
        "/// `(served name, content type, gzipped bytes)`.\npub const ASSETS: &[(&str, &str, &[u8])] = &[\n",
    );
    for (source, stem, ext, content_type) in ASSETS {
        let path = web.join(source);
        println!("cargo:rerun-if-changed={}", path.display());
        let bytes = read(&path);
        // The bundle's source map is not served: drop its reference.
        let bytes = strip_source_map(bytes);
        let hash: String = Sha256::digest(&bytes)[..6].iter().map(|b| format!("{b:02x}")).collect();
        let name = format!("{stem}.{hash}.{ext}");
        page = page.replace(&format!("{{{{{stem}.{ext}}}}}"), &name);
        let gzipped = out.join(format!("{name}.gz"));
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&bytes).unwrap();
        std::fs::write(&gzipped, encoder.finish().unwrap()).unwrap();
        table.push_str(&format!(
            "    ({name:?}, {content_type:?}, include_bytes!({gzipped:?})),\n"
        ));
    }
    table.push_str("];\n");
    assert!(!page.contains("{{"), "index.html names an asset build.rs does not know");
    std::fs::write(out.join("index.html"), page).unwrap();
    std::fs::write(out.join("assets.rs"), table).unwrap();
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}\nThe docs component embeds Swagger UI from npm: run `make docs-assets` \
             (npm ci in handlers/docs/web) first.",
            path.display()
        )
    })
}

fn strip_source_map(bytes: Vec<u8>) -> Vec<u8> {
    let text = String::from_utf8(bytes).expect("assets are UTF-8");
    text.lines()
        .filter(|l| !l.starts_with("//# sourceMappingURL=") && !l.starts_with("/*# sourceMappingURL="))
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}
