//! The Kubernetes artifacts as the tests see them: the chart rendered by the pinned helm, and the
//! offline checks, with the tools installed by the project's own script on first use.

use crate::root;
use serde::Deserialize;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// `.tools/bin`, with helm, kubectl and the checkers installed.
pub fn tools() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| crate::install_tools("k8s")).clone()
}

pub const CHART: &str = "charts/kafka-microservices";

/// Every object `helm template` renders with the given values files (none: the defaults).
pub fn render(values: &[&str]) -> Vec<Value> {
    let mut cmd = Command::new(tools().join("helm"));
    cmd.current_dir(root())
        .args(["template", "app", CHART, "--namespace", "kafka-demo"]);
    for v in values {
        cmd.args(["--values", v]);
    }
    let out = crate::succeed(cmd, "helm template failed");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            serde_yaml_ng::from_value::<Value>(
                serde_yaml_ng::Value::deserialize(doc).expect("yaml"),
            )
            .expect("json")
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// The Deployments among rendered `objects`.
pub fn deployments(objects: &[Value]) -> Vec<&Value> {
    objects
        .iter()
        .filter(|o| o["kind"] == "Deployment")
        .collect()
}

/// Runs `scripts/chart-check.sh` with `args`; its success and combined output.
pub fn chart_check(args: &[&str]) -> (bool, String) {
    tools();
    let out_dir = root()
        .join("target/chart-check-tests")
        .join(uuid::Uuid::new_v4().to_string());
    let out = Command::new("bash")
        .arg(root().join("scripts/chart-check.sh"))
        .args(args)
        .env("CHART_CHECK_OUT", &out_dir)
        .current_dir(root())
        .output()
        .expect("run scripts/chart-check.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&out_dir);
    (out.status.success(), text)
}
