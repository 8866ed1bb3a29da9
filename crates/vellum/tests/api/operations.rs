//! Operating the service: several instances, a database outage, restarts, durability, upgrades.

mod cluster;
mod durability;
mod outage;
mod restart;
mod upgrade;
