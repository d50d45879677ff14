//! The backend conformance suite, run against every backend: one line each.

cachemere_tests::backend_conformance!(memory, cachemere::MemoryBackend::new);
cachemere_tests::backend_conformance!(moka, cachemere::MokaBackend::new);
cachemere_tests::backend_conformance!(
    user_hashmap,
    cachemere_tests::user_backend::HashMapBackend::new
);
cachemere_tests::backend_conformance!(
    redis,
    remote = cachemere_tests::remote_fixtures::single_node
);
cachemere_tests::backend_conformance!(
    redis_cluster,
    remote = cachemere_tests::remote_fixtures::cluster
);
cachemere_tests::backend_conformance!(
    user_remote,
    remote = cachemere_tests::remote_fixtures::user_store
);
cachemere_tests::backend_conformance!(
    redis_near,
    remote = cachemere_tests::remote_fixtures::single_node_near,
    local = "1h",
    maxsize = 1000
);
cachemere_tests::backend_conformance!(
    redis_cluster_near,
    remote = cachemere_tests::remote_fixtures::cluster_near,
    local = "1h",
    maxsize = 1000
);
