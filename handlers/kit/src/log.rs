//! Structured logs: one JSON object per line on stdout, which Spin collects
//! per component. The shape follows pino's, which the original service used.

use crate::config::LogLevel;
use serde_json::{Map, Value};
use std::io::Write;

/// A logger bound to one component and one request.
#[derive(Clone, Debug)]
pub struct Logger {
    component: &'static str,
    request_id: String,
    level: LogLevel,
}

impl Logger {
    pub fn new(component: &'static str, request_id: String, level: LogLevel) -> Self {
        Logger {
            component,
            request_id,
            level,
        }
    }

    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    pub fn set_level(&mut self, level: LogLevel) {
        self.level = level;
    }

    pub fn enabled(&self, level: LogLevel) -> bool {
        level <= self.level
    }

    pub fn error(&self, msg: &str, fields: &[(&str, Value)]) {
        self.log(LogLevel::Error, msg, fields)
    }

    pub fn warn(&self, msg: &str, fields: &[(&str, Value)]) {
        self.log(LogLevel::Warn, msg, fields)
    }

    pub fn info(&self, msg: &str, fields: &[(&str, Value)]) {
        self.log(LogLevel::Info, msg, fields)
    }

    pub fn debug(&self, msg: &str, fields: &[(&str, Value)]) {
        self.log(LogLevel::Debug, msg, fields)
    }

    pub fn log(&self, level: LogLevel, msg: &str, fields: &[(&str, Value)]) {
        if !self.enabled(level) {
            return;
        }
        let line = self.line(level, msg, fields);
        // One write per line so concurrent instances never interleave a line.
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }

    /// The line as written, newline included.
    pub fn line(&self, level: LogLevel, msg: &str, fields: &[(&str, Value)]) -> String {
        let mut object = Map::new();
        object.insert("time".into(), Value::String(now_rfc3339()));
        object.insert("level".into(), Value::String(level.as_str().into()));
        object.insert("msg".into(), Value::String(msg.into()));
        object.insert("component".into(), Value::String(self.component.into()));
        object.insert("requestId".into(), Value::String(self.request_id.clone()));
        for (key, value) in fields {
            object.insert((*key).to_string(), value.clone());
        }
        let mut line = Value::Object(object).to_string();
        line.push('\n');
        line
    }
}

/// UTC, RFC 3339 with milliseconds, as every time of the API.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn line_has_the_common_fields_and_extra_ones() {
        let logger = Logger::new("orders-get", "req-9".into(), LogLevel::Info);
        let line = logger.line(LogLevel::Info, "request completed", &[("status", json!(200))]);
        assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "info");
        assert_eq!(v["component"], "orders-get");
        assert_eq!(v["requestId"], "req-9");
        assert_eq!(v["status"], 200);
        let time = v["time"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(time).is_ok() && time.ends_with('Z') && time.len() == 24,
            "{time}"
        );
    }

    #[test]
    fn levels_filter() {
        let logger = Logger::new("c", "r".into(), LogLevel::Warn);
        assert!(logger.enabled(LogLevel::Error) && logger.enabled(LogLevel::Warn));
        assert!(!logger.enabled(LogLevel::Info) && !logger.enabled(LogLevel::Debug));
    }
}
