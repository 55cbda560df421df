pub struct PgConnection;
pub struct PgConnectionBuilder;
