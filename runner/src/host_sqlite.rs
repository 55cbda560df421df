pub struct SqliteConnection;
