//! The schema migrations of `migrations/`, embedded for the tests and tools
//! that apply them. Each file is idempotent (`IF NOT EXISTS`), so applying
//! the whole list again is harmless; they run by an explicit step (`make up`
//! passes them to `--sqlite`, `make migrate` for PostgreSQL), never per request.

/// `(name, SQL)` in order, for SQLite.
pub const SQLITE: &[(&str, &str)] = &[(
    "0001_create_orders",
    include_str!("../../../migrations/sqlite/0001_create_orders.sql"),
)];

/// `(name, SQL)` in order, for PostgreSQL.
pub const POSTGRES: &[(&str, &str)] = &[(
    "0001_create_orders",
    include_str!("../../../migrations/postgres/0001_create_orders.sql"),
)];

/// Splits a migration file into statements for interfaces that take one at
/// a time. Migrations keep `;` out of literals and comments, so this is exact.
pub fn statements(sql: &str) -> impl Iterator<Item = String> + '_ {
    sql.split(';').map(strip_comments).filter(|s| !s.is_empty())
}

fn strip_comments(chunk: &str) -> String {
    chunk
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn statements_are_split_without_comments() {
        let all: Vec<String> = super::statements(super::SQLITE[0].1).collect();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0], "PRAGMA journal_mode = WAL");
        assert!(all[1].starts_with("CREATE TABLE IF NOT EXISTS orders"));
        assert!(all.iter().all(|s| !s.contains("--")));
    }

    #[test]
    fn both_backends_have_the_same_migrations() {
        let names = |list: &[(&str, &str)]| list.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>();
        assert_eq!(names(super::SQLITE), names(super::POSTGRES));
    }
}
