#!/usr/bin/env bash
# Builds the page: webgrad-web for wasm32 and its JavaScript glue in web/www/pkg/. Installs the
# wasm target and the wasm-bindgen command (the version the crate pins) when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^wasm-bindgen = "=\(.*\)"/\1/p' web/Cargo.toml)
rustup target list --installed | grep -qx wasm32-unknown-unknown ||
  rustup target add wasm32-unknown-unknown
if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $version" ]; then
  # A debug build of the command compiles in about a third of the time, and runs in seconds.
  cargo install wasm-bindgen-cli --version "$version" --debug
fi
cargo build -p webgrad-web --release --target wasm32-unknown-unknown
target=${CARGO_TARGET_DIR:-target}
wasm-bindgen --target web --out-dir web/www/pkg \
  "$target/wasm32-unknown-unknown/release/webgrad_web.wasm"
echo "built web/www/pkg; serve it with: node web/serve.mjs"
