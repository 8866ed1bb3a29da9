//! What the tests share: starting the app (`app`) and the real binary (`process`) on a test
//! database (`database`), the steps of a flow (`flow`), a wallet (`wallet`), webhook receivers
//! (`webhooks`), an event-stream reader (`streams`), a wallet provider that attests wallets
//! (`attester`) and third-party software (`interop`, `provider`).

pub mod app;
pub mod attester;
pub mod database;
pub mod flow;
pub mod interop;
pub mod process;
pub mod provider;
pub mod streams;
pub mod wallet;
pub mod webhooks;

pub use app::*;
pub use flow::*;
