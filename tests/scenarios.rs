//! The scenario runner (`cargo run --release --example scenarios`) as a test: every example
//! config of `examples/config/` serves real clients, and every case of its table passes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../examples/scenarios/main.rs"]
#[allow(dead_code)]
mod scenarios;

#[test]
fn every_seed_example_passes_its_scenario() {
    let outcomes = scenarios::run(&[]).unwrap();
    let table = scenarios::table(&outcomes);
    println!("{table}");
    // Every scenario ran, and the termination cases include the refused SNI. The postgres
    // scenario runs where PostgreSQL is installed (scripts/test installs it).
    let postgres = scenarios::postgres::installed();
    if !postgres {
        tcpmap::testkit::env::missing("POSTGRES", scenarios::postgres::INSTALL);
    }
    for name in scenarios::SCENARIOS {
        if name == "postgres" && !postgres {
            continue;
        }
        assert!(
            outcomes.iter().any(|o| o.scenario == name),
            "scenario {name} missing:\n{table}"
        );
    }
    assert!(outcomes.len() >= 9, "{table}");
    assert!(outcomes.iter().all(|o| o.result.is_ok()), "{table}");
}

#[test]
fn one_scenario_runs_alone_and_unknown_names_are_refused() {
    let outcomes = scenarios::run(&["termination".to_string()]).unwrap();
    assert!(outcomes.iter().all(|o| o.scenario == "termination"));
    assert_eq!(outcomes.len(), 3, "{}", scenarios::table(&outcomes));
    let err = scenarios::run(&["no-such".to_string()]).unwrap_err();
    assert!(err.contains("termination-origination"), "{err}");
}

#[test]
fn rewrite_moves_ports_and_keeps_names() {
    let yaml = "# comment port: 1\nkind: TCPMapping\nport: 2222\nservice: upstream-host-1:9999\n";
    let up: std::net::SocketAddr = "127.0.0.4:4321".parse().unwrap();
    let out = scenarios::rewrite(yaml, 5555, &[("upstream-host-1", up)]).unwrap();
    assert_eq!(
        out,
        "# comment port: 1\nkind: TCPMapping\nport: 5555\nservice: upstream-host-1:4321\n"
    );
    assert!(scenarios::rewrite(yaml, 1, &[]).is_err());
}
