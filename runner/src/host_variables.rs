//! `spin:variables/variables@3.0.0`: a component reads only the variables
//! declared in its own `[component.<id>] variables` table.

use crate::bindings::variables::{self, Error};
use crate::host::{HostState, SpinHost};
use wasmtime::component::Accessor;

impl variables::Host for HostState {}

impl variables::HostWithStore<HostState> for SpinHost {
    async fn get(accessor: &Accessor<HostState, Self>, name: String) -> wasmtime::Result<Result<String, Error>> {
        // Spin validates the name shape before looking it up.
        if !crate::manifest::is_lower_snake(&name) {
            return Ok(Err(Error::InvalidName(format!(
                "invalid variable name {name:?}: must be lower_snake_case"
            ))));
        }
        Ok(accessor.with(|mut access| {
            let state = access.get();
            match state.component.variables.get(&name) {
                Some(v) => Ok(v.value.clone()),
                None => Err(Error::Undefined(format!("no variable for {name:?}"))),
            }
        }))
    }
}
