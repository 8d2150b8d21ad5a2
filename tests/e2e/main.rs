//! End-to-end tests of the facade: one integration binary, one module per area.

#[cfg(all(feature = "monitor", feature = "transport", feature = "store"))]
mod daemon;
#[cfg(all(feature = "abtest", feature = "store", feature = "transport"))]
mod experiments;
#[cfg(feature = "transport")]
mod in_process;
#[cfg(all(feature = "learn", feature = "store"))]
mod learning;
#[cfg(feature = "monitor")]
mod monitor_config;
mod optimizer;
#[cfg(feature = "monitor")]
mod otlp_follow;
#[cfg(feature = "transport")]
mod python_venv;
#[cfg(feature = "transport")]
mod python_worker;
#[cfg(all(feature = "predict", feature = "transport"))]
mod replies;
#[cfg(all(
    feature = "store",
    feature = "learn",
    feature = "predict",
    feature = "transport"
))]
mod runtime_wiring;
#[cfg(feature = "store")]
mod store;
#[cfg(feature = "transport")]
mod transfer;
mod watch;
