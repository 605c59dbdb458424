//! The `walkthrough` example's code path against a real master.

#[allow(dead_code, unreachable_pub)] // the example's `main` is not called here
#[path = "../../examples/walkthrough.rs"]
mod example;

use crate::support::Master;

#[tokio::test]
async fn walkthrough_example_runs() {
    let master = Master::start().await;
    let report = example::walkthrough(&master.admin(), "it").await.unwrap();
    assert_eq!(report.upstreams, 1);
    assert!(
        report.preview.contains("server_name staging.example.com"),
        "{}",
        report.preview
    );
    // It cleaned up after itself.
    let orgs = master
        .admin()
        .organizations()
        .list(&nxmesh_client::ListParams::default())
        .await
        .unwrap();
    assert_eq!(orgs.meta.total, 0);
}
