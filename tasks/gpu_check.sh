#!/usr/bin/env bash
# The GPU check of ../shared/GPU.md as one script.
#
#   tasks/gpu_check.sh prepare   on this machine: .gpu/deno.xz, .gpu/node_modules.tar.xz (the
#                                npm packages), .gpu/deno_dir, .gl/*.deb (Vulkan loader, OpenBLAS; ~50 MB)
#   tasks/gpu_check.sh run       on the GPU machine (carry .gpu and .gl): unpack the Vulkan
#                                loader and Deno, point Vulkan at the NVIDIA driver, run
#                                `deno task gpu:check`; the log goes to $OUT/gpu.log if set
#
# The parity fixtures must be reachable: SEITPP_PARITY_DIR, else ../shared/parity/public, else
# shared/parity/public inside the tree (the device machine gets a checkout's shared/). They do
# not fit next to .gpu in one carry (64 MiB): compressed Deno ~30 MB, mtm+cls fixtures ~63 MB.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
prepare)
  mkdir -p .gpu .gl
  grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo /.gpu/ >>"$(git rev-parse --git-path info/exclude)"
  grep -qx '/.gl/' .git/info/exclude 2>/dev/null || echo /.gl/ >>"$(git rev-parse --git-path info/exclude)"
  xz -T2 -6 -c "$(command -v deno)" >.gpu/deno.xz
  # The npm packages: with nodeModulesDir "auto" they live in node_modules/ (git-ignored, so
  # not in the device's copy of the tree), not in DENO_DIR. Pack them without source maps,
  # minified and ESM bundles (Deno loads the node builds): ~93 MB -> ~20 MB.
  deno install
  tar --exclude='*.map' --exclude='*.min.js' --exclude='*es2017*' --exclude='miniprogram' \
    --exclude='*.esm.js' --exclude='*.fesm.js' -cf - node_modules | xz -T2 -6 >.gpu/node_modules.tar.xz
  DENO_DIR=.gpu/deno_dir deno cache tasks/gpu_check.ts tasks/parity.ts bench/train_step.ts
  L=$(mktemp -d)
  mkdir -p "$L/partial"
  o="-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=$L"
  # shellcheck disable=SC2086
  apt-get $o update -q >/dev/null
  # shellcheck disable=SC2086
  # the Vulkan loader; OpenBLAS for the wasm comparison (the device image may lack it)
  (cd .gl && apt-get $o download libvulkan1 libopenblas0-pthread libgfortran5)
  rm -rf "$L"
  du -sh .gpu .gl
  ;;
run)
  start=$(date +%s)
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig || true
  if [ -z "${VK_DRIVER_FILES:-}" ]; then
    for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json \
      /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
      if [ -f "$icd" ]; then export VK_DRIVER_FILES="$icd"; break; fi
    done
  fi
  echo "gpu_check.sh: VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}"
  # dpkg -x skips the alternatives link libopenblas.so.0: name the library if needed
  if [ -z "${SEITPP_BLAS:-}" ] && ! ldconfig -p | grep -q 'libopenblas.so.0 '; then
    lib=/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0
    if [ -e "$lib" ]; then export SEITPP_BLAS="$lib"; fi
  fi
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
  if [ ! -x .gpu/deno ]; then xz -d -c .gpu/deno.xz >.gpu/deno && chmod +x .gpu/deno; fi
  if [ ! -d node_modules/.deno ]; then xz -d -c .gpu/node_modules.tar.xz | tar -xf -; fi
  export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
  log="${OUT:-/tmp}/gpu.log"
  set +e
  DENO_DIR=.gpu/deno_dir timeout 480 .gpu/deno task gpu:check "${@:2}" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  echo "gpu_check.sh: exit $rc after $(($(date +%s) - start)) s; log: $log"
  exit "$rc"
  ;;
*)
  echo "usage: tasks/gpu_check.sh prepare|run [gpu:check options]" >&2
  exit 2
  ;;
esac
