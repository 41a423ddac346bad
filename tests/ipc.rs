//! Command tests of the desktop shell through Tauri's mock runtime: no display, no D-Bus.

use tauri::test::{INVOKE_KEY, get_ipc_response, mock_builder};
use tauri::webview::InvokeRequest;

fn invoke(cmd: &str, body: serde_json::Value) -> Result<serde_json::Value, serde_json::Value> {
    let app = model_cache_app::app_builder(mock_builder())
        .build(tauri::generate_context!())
        .expect("build the mock app");
    let webview = tauri::WebviewWindowBuilder::new(&app, "main", Default::default())
        .build()
        .expect("build the mock window");
    get_ipc_response(
        &webview,
        InvokeRequest {
            cmd: cmd.into(),
            callback: tauri::ipc::CallbackFn(0),
            error: tauri::ipc::CallbackFn(1),
            url: "tauri://localhost".parse().unwrap(),
            body: tauri::ipc::InvokeBody::Json(body),
            headers: Default::default(),
            invoke_key: INVOKE_KEY.to_string(),
        },
    )
    .map(|body| body.deserialize::<serde_json::Value>().unwrap())
}

#[test]
fn app_version_reports_the_package_version() {
    let version = invoke("app_version", serde_json::json!({})).unwrap();
    assert_eq!(version, serde_json::json!(env!("CARGO_PKG_VERSION")));
}
