//! Prints what `perf_platform::detect` finds on this machine, and one resource sample, as JSON.

fn main() {
    let info = perf_platform::detect();
    println!(
        "{}",
        serde_json::to_string_pretty(&info).expect("serializable")
    );
    #[cfg(target_os = "linux")]
    {
        use perf_core::seams::ResourceProbe;
        let state = perf_platform::ProcProbe::new().sample();
        println!(
            "{{\"cpu_utilization\": {:.3}, \"memory_used\": {:.3}, \"memory_available\": {}, \"shm_free\": {}}}",
            state.cpu_utilization, state.memory_used, state.memory_available, state.shm_free
        );
    }
}
