//! Who a process is: the agents declared in the manifest (and what of their content each lets
//! the sensor capture), the registry of agents and registered tasks, the selectors that compile
//! declarations into kernel map entries, the registration socket and what it may register
//! (`guard`), and the name patterns the selectors use.
pub mod capture;
pub(crate) mod guard;
pub mod manifest;
pub mod pattern;
pub mod registration;
pub mod registry;
pub mod resolver;
pub mod selectors;
