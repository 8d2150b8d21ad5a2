//! The dashboard at `/` in a real headless Chromium driven over WebDriver: a real `perfopt
//! serve --demo-load` process, its charts filling from the history and the live events, the
//! numbers moving, no script error, the pool and range selectors reloading the charts, and a
//! screenshot kept as a test artifact.
//!
//! Needs `chromium` and `chromedriver` (Debian `chromium` and `chromium-driver`). Without them
//! the test says NOT RUN, and fails when `PERFOPT_EXTERNAL_TESTS=1` asks for the external tools.
//! `PERFOPT_UPDATE_SCREENSHOT=1` also writes the screenshot to `docs/dashboard.png`.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

mod support;

use serde_json::{Value, json};
use support::{Killed, Serve};

/// The first of `names` found as an executable file in `/usr/bin` or on `PATH`.
fn find_tool(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::iter::once(PathBuf::from("/usr/bin"))
        .chain(std::env::split_paths(&path))
        .collect();
    names
        .iter()
        .flat_map(|n| dirs.iter().map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

/// Chromium and chromedriver, or `None` (having said so) when one is missing and the external
/// tools were not asked for.
fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    let chromium = find_tool(&["chromium", "chromium-browser"]);
    let driver = find_tool(&["chromedriver"]);
    let missing: Vec<&str> = [
        (chromium.is_none(), "chromium (Debian package `chromium`)"),
        (
            driver.is_none(),
            "chromedriver (Debian package `chromium-driver`)",
        ),
    ]
    .into_iter()
    .filter_map(|(gone, what)| gone.then_some(what))
    .collect();
    if missing.is_empty() {
        return Some((chromium?, driver?));
    }
    assert!(
        std::env::var("PERFOPT_EXTERNAL_TESTS").as_deref() != Ok("1"),
        "the dashboard test needs {}",
        missing.join(" and ")
    );
    eprintln!(
        "NOT RUN: the dashboard browser test needs {}; install them to run it",
        missing.join(" and ")
    );
    None
}

/// A port free on loopback now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// chromedriver on a free port, once it accepts connections.
fn start_chromedriver(driver: &Path, log: &Path) -> (Killed, u16) {
    let port = free_port();
    let child = Killed(
        Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, port)
}

/// What the page shows and holds: the dashboard's state and the numbers displayed.
async fn look(client: &Client) -> Value {
    client
        .execute(
            r##"
            const d = window.perfoptDashboard;
            if (!d || !d.points) return null;
            const text = (id) => document.getElementById(id).textContent;
            return {
                points: d.points(),
                events: d.events,
                errors: d.errors,
                historyLoads: d.historyLoads,
                lastHistory: d.lastHistory,
                total: text("n-total"),
                rate: text("n-rate"),
                bytes: text("n-bytes"),
                shm: text("n-shm"),
                threshold: text("n-threshold"),
                banner: text("banner"),
                bannerClass: document.getElementById("banner").className,
                checks: document.querySelectorAll("#t-checks tbody tr").length,
                pools: [...document.querySelectorAll("#pool option")].map((o) => o.value),
            };
            "##,
            vec![],
        )
        .await
        .unwrap()
}

/// Looks until `done` holds, at most `within`.
async fn wait_for(
    client: &Client,
    within: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let seen = look(client).await;
        if !seen.is_null() && done(&seen) {
            return seen;
        }
        assert!(Instant::now() < deadline, "{what}: still {seen:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn points(seen: &Value, chart: &str) -> u64 {
    seen["points"][chart].as_u64().unwrap_or(0)
}

/// The count shown as `1,234`.
fn shown_count(seen: &Value, key: &str) -> u64 {
    let text = seen[key].as_str().unwrap().replace(',', "");
    text.parse()
        .unwrap_or_else(|_| panic!("{key} shows {text:?}"))
}

/// Where test artifacts go: `target/test-artifacts/`.
fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_TARGET_TMPDIR"))
                .parent()
                .unwrap()
                .to_path_buf()
        });
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_fills_its_charts_live_in_a_headless_chromium() {
    let Some((chromium, driver)) = browser_tools() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let serve = Serve::demo(&dir.path().join("data"), &[], Stdio::from(log));
    let addr = serve.addr;
    let started = Instant::now();
    let (_driver, port) = start_chromedriver(&driver, &dir.path().join("chromedriver.log"));

    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--window-size=1280,800",
            ],
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .unwrap_or_else(|e| panic!("no WebDriver session: {e}"));
    client.goto(&format!("http://{addr}/")).await.unwrap();
    // A viewport of 1280 by 800, whatever the window's frame takes.
    let frame = client
        .execute(
            "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight]",
            vec![],
        )
        .await
        .unwrap();
    let frame = |i: usize| frame[i].as_u64().unwrap_or(0) as u32;
    client
        .set_window_size(1280 + frame(0), 800 + frame(1))
        .await
        .unwrap();

    // The charts fill: history first, then a live point a second.
    let first = wait_for(&client, Duration::from_secs(60), "the charts fill", |s| {
        s["events"].as_u64() >= Some(2) && points(s, "latency") >= 2 && points(s, "rate") >= 2
    })
    .await;
    assert_eq!(first["errors"], json!([]), "no script error");
    assert!(first["historyLoads"].as_u64() >= Some(1), "{first:#}");
    assert!(
        ["banner ready", "banner degraded"].contains(&first["bannerClass"].as_str().unwrap()),
        "{first:#}"
    );
    assert!(
        first["checks"].as_u64() >= Some(3),
        "the checks are listed: {first:#}"
    );
    assert!(
        first["threshold"].as_str().unwrap().starts_with("default "),
        "{first:#}"
    );
    assert!(first["shm"].as_str().unwrap().contains(" / "), "{first:#}");

    // Three seconds on, the numbers moved and the charts grew.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = look(&client).await;
    assert!(
        later["events"].as_u64().unwrap() >= first["events"].as_u64().unwrap() + 2,
        "events keep coming: {later:#}"
    );
    assert!(
        shown_count(&later, "total") > shown_count(&first, "total"),
        "the transfers total moved: {first:#} then {later:#}"
    );
    for chart in ["latency", "rate", "bytes", "shm"] {
        assert!(
            points(&later, chart) > points(&first, chart),
            "{chart} grew: {first:#} then {later:#}"
        );
    }
    let rate: f64 = later["rate"].as_str().unwrap().parse().unwrap();
    assert!(
        rate > 0.0,
        "transfers per second under demo load: {later:#}"
    );
    assert_eq!(later["errors"], json!([]), "no script error");

    // Drill down into the pool: the charts reload from its history and go on live.
    assert!(
        later["pools"]
            .as_array()
            .unwrap()
            .contains(&json!("default")),
        "the pool selector offers the pools: {later:#}"
    );
    let loads = later["historyLoads"].as_u64().unwrap();
    client
        .find(Locator::Css("#pool"))
        .await
        .unwrap()
        .select_by_value("default")
        .await
        .unwrap();
    let pooled = wait_for(&client, Duration::from_secs(30), "the pool's charts", |s| {
        s["historyLoads"].as_u64() > Some(loads)
            && s["lastHistory"]["pool"] == "default"
            && points(s, "latency") >= 1
    })
    .await;
    assert!(
        pooled["lastHistory"]["points"].as_u64() >= Some(1),
        "the store has the pool's last minutes: {pooled:#}"
    );
    let events = pooled["events"].as_u64().unwrap();
    let loads = pooled["historyLoads"].as_u64().unwrap();
    client
        .find(Locator::Css("#range"))
        .await
        .unwrap()
        .select_by_value("60")
        .await
        .unwrap();
    let ranged = wait_for(&client, Duration::from_secs(30), "the last minute", |s| {
        s["historyLoads"].as_u64() > Some(loads)
            && s["lastHistory"]["range"] == 60
            && s["events"].as_u64() >= Some(events + 2)
            && points(s, "latency") >= 2
            && points(s, "shm") >= 1
    })
    .await;
    assert_eq!(ranged["lastHistory"]["pool"], "default", "{ranged:#}");
    assert_eq!(ranged["errors"], json!([]), "no script error");

    // A screenshot after about ten seconds of demo load.
    if let Some(rest) = Duration::from_secs(12).checked_sub(started.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let (w, h) = (
        u32::from_be_bytes(png[16..20].try_into().unwrap()),
        u32::from_be_bytes(png[20..24].try_into().unwrap()),
    );
    let shot = artifacts_dir().join("dashboard.png");
    std::fs::write(&shot, &png).unwrap();
    println!("dashboard screenshot ({w}x{h}): {}", shot.display());
    if std::env::var("PERFOPT_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/dashboard.png");
        std::fs::write(&docs, &png).unwrap();
        println!("also written to {}", docs.display());
    }
    let last = look(&client).await;
    assert_eq!(last["errors"], json!([]), "no script error");
    client.close().await.unwrap();
}
