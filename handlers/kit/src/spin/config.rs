//! The component's Spin variables, read and validated once per instance.

use crate::config::{Config, ConfigError};
use crate::problem::FieldError;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The component's config, read and validated once per instance. Variables
/// not mapped into this component (least privilege) take their defaults.
pub async fn config() -> Result<Config, ConfigError> {
    static CONFIG: OnceLock<Result<Config, ConfigError>> = OnceLock::new();
    if let Some(config) = CONFIG.get() {
        return config.clone();
    }
    let mut values = BTreeMap::new();
    let mut unreadable = Vec::new();
    for name in crate::config::variable_names() {
        match spin_sdk::variables::get(&name).await {
            Ok(value) => {
                values.insert(name, value);
            }
            Err(spin_sdk::variables::Error::Undefined(_)) => {}
            Err(_) => unreadable.push(FieldError::at_parameter(
                name,
                "readable",
                "the variable could not be read",
            )),
        }
    }
    let config = if unreadable.is_empty() {
        Config::from_values(&values)
    } else {
        Err(ConfigError { errors: unreadable })
    };
    CONFIG.get_or_init(|| config).clone()
}
