//! The Redis test harness itself: servers start on free loopback ports, answer, can be killed,
//! restarted (with their data when persistent, or emptied) and paused, hold binary values, and
//! form a working 3-master cluster whose nodes can be killed and restarted; nothing is left
//! running.

use std::time::{Duration, Instant};

use cachemere_tests::redis_harness::{RedisCluster, RedisServer, Reply};

fn bulk(text: &str) -> Reply {
    Reply::Bulk(Some(text.as_bytes().to_vec()))
}

#[test]
fn a_server_starts_answers_and_survives_kill_and_restart() {
    let mut server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    assert!(server.url().starts_with("redis://127.0.0.1:"));
    assert_eq!(
        server.command(&["SET", "k", "v"]).unwrap(),
        Reply::Status("OK".into())
    );
    assert_eq!(server.command(&["GET", "k"]).unwrap(), bulk("v"));

    server.kill().unwrap();
    assert!(
        server.command(&["PING"]).is_err(),
        "a killed server refuses connections"
    );

    server.restart().unwrap();
    assert_eq!(
        server.command(&["GET", "k"]).unwrap(),
        Reply::Bulk(None),
        "restarted empty"
    );
}

#[test]
fn a_persistent_server_keeps_its_data_through_kill_and_restart_unless_emptied() {
    let mut server = RedisServer::start_persistent().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        server.command(&["SET", "k", "v"]).unwrap(),
        Reply::Status("OK".into())
    );
    server.kill().unwrap();
    assert!(!server.is_running());
    server.restart().unwrap();
    assert!(server.is_running());
    assert_eq!(
        server.command(&["GET", "k"]).unwrap(),
        bulk("v"),
        "an acknowledged write survives SIGKILL"
    );
    server.restart_empty().unwrap();
    assert_eq!(
        server.command(&["GET", "k"]).unwrap(),
        Reply::Bulk(None),
        "restarted empty"
    );
    assert_eq!(
        server.command(&["SET", "k", "w"]).unwrap(),
        Reply::Status("OK".into())
    );
    server.restart().unwrap();
    assert_eq!(
        server.command(&["GET", "k"]).unwrap(),
        bulk("w"),
        "still persistent after an empty restart"
    );
}

#[test]
fn garbage_bytes_round_trip_and_pause_holds_replies() {
    let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let garbage: &[u8] = &[0xff, 0x00, 0xfe, b'\r', b'\n', 0x80];
    assert_eq!(
        server.command_bytes(&[b"SET", b"g", garbage]).unwrap(),
        Reply::Status("OK".into())
    );
    assert_eq!(
        server.command(&["GET", "g"]).unwrap(),
        Reply::Bulk(Some(garbage.to_vec()))
    );

    server.pause(Duration::from_millis(300)).unwrap();
    let started = Instant::now();
    assert_eq!(
        server.command(&["PING"]).unwrap(),
        Reply::Status("PONG".into())
    );
    // Generous lower bound: the reply waited for the pause (at least a good part of it).
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "PING was not held by CLIENT PAUSE"
    );
}

#[test]
fn servers_get_distinct_ports_and_stop_when_dropped() {
    let a = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let b = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(a.port(), b.port());
    let port = a.port();
    drop(a);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the dropped server no longer listens"
    );
}

#[test]
fn a_three_master_cluster_forms_and_routes() {
    let cluster = RedisCluster::start().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cluster.urls().len(), 3);
    let node = &cluster.nodes()[0];
    match node.command(&["CLUSTER", "INFO"]).unwrap() {
        Reply::Bulk(Some(info)) => {
            let info = String::from_utf8_lossy(&info);
            assert!(info.contains("cluster_state:ok"), "{info}");
            assert!(info.contains("cluster_known_nodes:3"), "{info}");
            assert!(info.contains("cluster_slots_assigned:16384"), "{info}");
        }
        other => panic!("CLUSTER INFO answered {other:?}"),
    }
    // Keys spread over the masters: some key is owned by another node (a MOVED redirect).
    let moved = (0..50).any(|i| {
        matches!(node.command(&["GET", &format!("key-{i}")]), Ok(Reply::Error(e)) if e.starts_with("MOVED"))
    });
    assert!(moved, "all keys landed on one node");
}

#[test]
fn a_persistent_cluster_node_comes_back_with_its_keys_and_slots() {
    let mut cluster = RedisCluster::start_persistent().unwrap_or_else(|e| panic!("{e}"));
    // A key that node 0 owns (the others answer MOVED).
    let key = (0..1000)
        .map(|i| format!("key-{i}"))
        .find(|key| {
            matches!(cluster.nodes()[0].command(&["SET", key, "v"]), Ok(Reply::Status(ok)) if ok == "OK")
        })
        .expect("node 0 owns some slot");
    let node = &mut cluster.nodes_mut()[0];
    node.kill().unwrap();
    node.restart().unwrap();
    cluster.wait_ok().unwrap();
    assert_eq!(
        cluster.nodes()[0].command(&["GET", &key]).unwrap(),
        bulk("v")
    );
    let node = &mut cluster.nodes_mut()[0];
    node.restart_empty().unwrap();
    cluster.wait_ok().unwrap();
    assert_eq!(
        cluster.nodes()[0].command(&["GET", &key]).unwrap(),
        Reply::Bulk(None),
        "emptied, and still the owner of the slot (no MOVED)"
    );
}
