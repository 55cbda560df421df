//! Harness for the component tests: each test loads the real `.wasm` of one
//! route through the runner, with a fresh state directory (so a fresh
//! `.spin/sqlite_db.db`), and checks answers against the schemas.
//!
//! With `TEST_DATABASE_URL` set (`tests/postgres.sh` does it), every harness
//! gets a fresh PostgreSQL database instead, and the same tests run against
//! PostgreSQL through Spin's `spin:postgres` interface.

use bytes::Bytes;
use http::{Request, StatusCode};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The repository root, where `spin.toml` lives.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A loaded app serving only some components.
pub struct Harness {
    pub app: runner::App,
    pub state_dir: PathBuf,
}

/// How to load the app.
pub struct Setup<'a> {
    pub components: &'a [&'a str],
    pub variables: &'a [(&'a str, &'a str)],
    /// Apply `migrations/sqlite/*.sql` at startup, as `make up` does.
    pub migrate: bool,
}

impl Harness {
    /// The route's component alone, migrated, default variables.
    pub async fn route(component: &str) -> Harness {
        Harness::load(Setup {
            components: &[component],
            variables: &[],
            migrate: true,
        })
        .await
    }

    pub async fn load(setup: Setup<'_>) -> Harness {
        let state_dir = std::env::temp_dir().join(format!("component-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&state_dir).unwrap();
        let mut variables = vec![("jwt_secret".to_string(), JWT_SECRET.to_string())];
        let mut statements = Vec::new();
        if let Some(admin_url) = postgres_admin_url() {
            let url = fresh_postgres_database(&admin_url, setup.migrate).await;
            variables.push(("db_host".into(), host_port(&url)));
            variables.push(("database_url".into(), url));
        } else if setup.migrate {
            let mut files: Vec<_> = std::fs::read_dir(root().join("migrations/sqlite"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            for file in files {
                // As `make up` passes them: `--sqlite @file`.
                statements.push(format!("@{}", file.display()));
            }
        }
        variables.extend(setup.variables.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let options = runner::Options {
            manifest: root().join("spin.toml"),
            state_dir: state_dir.clone(),
            variables,
            env: Some(Default::default()),
            sqlite_statements: statements,
            only_components: Some(setup.components.iter().map(|c| c.to_string()).collect()),
            timeout: Duration::from_secs(30),
            // Compile each component once for the whole suite, not per test.
            cache_dir: Some(root().join("target/component-test-cache")),
            ..Default::default()
        };
        let app = runner::App::load(options).await.expect("the app loads");
        Harness { app, state_dir }
    }

    pub async fn send(&self, request: Request<Bytes>) -> Reply {
        let client: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let response = self.app.handle(request, client).await.expect("the runner answers");
        let (head, body) = response.into_parts();
        Reply {
            status: head.status,
            headers: head.headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Request::get(path).body(Bytes::new()).unwrap()).await
    }

    /// A GET as [`USER`].
    pub async fn get_as_user(&self, path: &str) -> Reply {
        self.send(
            Request::get(path)
                .header("authorization", bearer(USER))
                .body(Bytes::new())
                .unwrap(),
        )
        .await
    }

    /// A JSON POST without credentials.
    pub async fn post_json(&self, path: &str, body: impl Into<Bytes>) -> Reply {
        self.send(
            Request::post(path)
                .header("content-type", "application/json")
                .body(body.into())
                .unwrap(),
        )
        .await
    }

    /// A JSON POST as [`USER`].
    pub async fn post_as_user(&self, path: &str, body: impl Into<Bytes>) -> Reply {
        let request = Request::post(path)
            .header("content-type", "application/json")
            .header("authorization", bearer(USER))
            .body(body.into())
            .unwrap();
        self.send(request).await
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// A full answer.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }

    /// Asserts a JSON success answer valid against `schemas/<schema_file>`.
    pub fn assert_json(&self, status: u16, schema_file: &str) -> Value {
        assert_eq!(self.status, status, "{}", String::from_utf8_lossy(&self.body));
        assert_eq!(self.header("content-type"), "application/json");
        self.assert_request_id();
        let body = self.json();
        assert_valid(schema_file, &body);
        body
    }

    /// Asserts a problem answer of this status and type, valid against
    /// `schemas/problem.json`, whose requestId is the header's.
    pub fn assert_problem(&self, status: u16, type_uri: &str) -> Value {
        assert_eq!(self.status, status, "{}", String::from_utf8_lossy(&self.body));
        assert_eq!(self.header("content-type"), "application/problem+json");
        let body = self.json();
        assert_valid("problem.json", &body);
        assert_eq!(body["type"], type_uri, "{body}");
        assert_eq!(body["status"], status);
        assert_eq!(body["requestId"], self.header("x-request-id"));
        body
    }

    pub fn assert_request_id(&self) {
        let id = self.header("x-request-id");
        assert!(
            (1..=128).contains(&id.len()) && id.bytes().all(|b| (0x21..=0x7e).contains(&b)),
            "{id}"
        );
    }
}

/// Asserts `value` is valid against `schemas/<schema_file>` (formats asserted).
pub fn assert_valid(schema_file: &str, value: &Value) {
    let text = std::fs::read_to_string(root().join("schemas").join(schema_file)).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{value} breaks {schema_file}: {errors:?}");
}

/// A valid order body.
pub fn order_body(user: &str) -> String {
    serde_json::json!({"userId": user, "items": [{"productId": "sku-42", "quantity": 2}]}).to_string()
}

pub const USER: &str = "0b6f1a53-6c1f-4d7e-9a43-2f1f4a0c9b1e";

/// The `jwt_secret` every harness runs with.
pub const JWT_SECRET: &str = "component-tests-secret-0123456789abcdef";

/// Signs `claims` (HS256) with `secret`.
pub fn sign(claims: &Value, secret: &str) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), claims, &key).unwrap()
}

/// `Bearer <token>` for `user`, valid for an hour.
pub fn bearer(user: &str) -> String {
    let exp = chrono::Utc::now().timestamp() + 3600;
    format!(
        "Bearer {}",
        sign(&serde_json::json!({"sub": user, "exp": exp}), JWT_SECRET)
    )
}

/// The superuser URL of the test PostgreSQL server, when the suite runs on it.
pub fn postgres_admin_url() -> Option<String> {
    std::env::var("TEST_DATABASE_URL").ok().filter(|u| !u.is_empty())
}

/// `host:port` of a `postgres://` URL, for `allowed_outbound_hosts`.
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority.rsplit('@').next().unwrap_or(authority).to_string()
}

/// Creates an empty database for one harness, migrated when asked, and
/// returns its URL.
async fn fresh_postgres_database(admin_url: &str, migrate: bool) -> String {
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let (client, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
        .await
        .expect("test PostgreSQL");
    tokio::spawn(connection);
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
    if migrate {
        let (db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        let mut files: Vec<_> = std::fs::read_dir(root().join("migrations/postgres"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in files {
            db.batch_execute(&std::fs::read_to_string(file).unwrap()).await.unwrap();
        }
    }
    url
}
