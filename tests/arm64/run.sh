#!/usr/bin/env bash
# The runtime tested on aarch64 (Raspberry Pi 4 and 5 CPU models) and on x86 without VNNI / AVX-512 (Haswell:
# AVX2, whose INT8 kernels differ) under qemu user-mode emulation:
#   make test-arm64          # or: bash tests/arm64/run.sh [CPU_MODEL ...]   (default: cortex-a72 cortex-a76)
#                            # X86_CPUS="Haswell-noTSX" (the default) lists the emulated x86 models; "" skips them
# Builds, without installing anything into the system (cached in $FER_EDGE_ARM64_CACHE, default
# ~/.cache/fer-edge-arm64, about 340 MB):
# - qemu-user 10 from Debian bookworm-backports (static binaries, unpacked with dpkg -x; bookworm's own qemu 7.2
#   crashes on `import onnxruntime`): qemu-aarch64, and qemu-x86_64, which runs the x86 runtime venv's own
#   interpreter as a Haswell CPU;
# - an arm64 root holding Debian's python3.11 and its libraries, fetched by a private apt configuration;
# - the aarch64 wheels of exactly the versions installed in the x86 runtime-only venv ($RT_PY, default
#   .venv-runtime/bin/python: numpy, opencv-python-headless, onnxruntime, pytest).
# Then tests/arm64/check.py compares the emulated runs with x86, one line per check. Exit status: 0 all checks
# passed, 1 a check failed, 77 the emulated environment cannot be set up here (the reason is printed).
set -euo pipefail
cd "$(dirname "$0")/../.."
CPUS=("$@")
[ ${#CPUS[@]} -gt 0 ] || CPUS=(cortex-a72 cortex-a76)
read -r -a X86_CPUS <<< "${X86_CPUS-Haswell-noTSX}"
CACHE="${FER_EDGE_ARM64_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fer-edge-arm64}"
RT_PY="${RT_PY:-.venv-runtime/bin/python}"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

skip() { echo "arm64 check skipped: $*"; exit 77; }

[ "$(uname -m)" = x86_64 ] || skip "the emulator package is the x86_64 one; this machine is $(uname -m)"
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || skip "needs Debian's apt-get and dpkg-deb"
[ -f "$KEYRING" ] || skip "needs Debian's archive keyring $KEYRING (package debian-archive-keyring)"
[ -x "$RT_PY" ] || skip "no x86 runtime venv at $RT_PY (make test-runtime builds it)"

# A private apt: its own sources, state and cache, arm64 as its architecture; the system's apt is not touched.
APT="$CACHE/apt"
mkdir -p "$APT/lists/partial" "$APT/archives/partial" "$APT/parts"
touch "$APT/status"
cat > "$APT/sources.list" <<EOF
deb [arch=amd64,arm64 signed-by=$KEYRING] $MIRROR bookworm main
deb [arch=amd64,arm64 signed-by=$KEYRING] $MIRROR bookworm-backports main
EOF
cat > "$APT/apt.conf" <<EOF
Dir::State::Lists "$APT/lists";
Dir::State::status "$APT/status";
Dir::Cache "$APT";
Dir::Cache::archives "$APT/archives";
Dir::Etc::SourceList "$APT/sources.list";
Dir::Etc::SourceParts "$APT/parts";
Dir::Etc::Preferences "$APT/parts/none";
Dir::Etc::PreferencesParts "$APT/parts";
APT::Architecture "arm64";
APT::Architectures { "arm64"; "amd64"; };
APT::Sandbox::User "root";
Debug::NoLocking "true";
EOF
export APT_CONFIG="$APT/apt.conf"

QEMU="$CACHE/qemu-aarch64"
QEMU_X86="$CACHE/qemu-x86_64"
ROOTFS="$CACHE/root"
if [ ! -x "$QEMU" ] || [ ! -x "$QEMU_X86" ] || [ ! -x "$ROOTFS/usr/bin/python3.11" ]; then
  echo "arm64: fetching qemu-user (bookworm-backports) and an arm64 python3.11 from $MIRROR into $CACHE"
  apt-get update -qq >/dev/null 2>&1 || skip "cannot reach the Debian archive $MIRROR"
  rm -rf "$QEMU" "$QEMU_X86" "$CACHE/qemu" "$ROOTFS" "$CACHE/debs" && mkdir -p "$CACHE/debs"
  (cd "$CACHE/debs" && apt-get download -qq qemu-user:amd64/bookworm-backports >/dev/null 2>&1) \
    || skip "cannot download qemu-user from bookworm-backports"
  dpkg-deb -x "$CACHE"/debs/qemu-user_*.deb "$CACHE/debs/qemu"
  mv "$CACHE/debs/qemu/usr/bin/qemu-aarch64" "$QEMU"  # the package holds every target; two are needed
  mv "$CACHE/debs/qemu/usr/bin/qemu-x86_64" "$QEMU_X86"
  # An empty dpkg status: apt resolves python3.11's whole dependency closure, libc included.
  apt-get install -qq -y --download-only --no-install-recommends python3.11 libstdc++6 libgomp1 >/dev/null 2>&1 \
    || skip "cannot download the arm64 python3.11 packages"
  for deb in "$APT"/archives/*.deb; do dpkg-deb -x "$deb" "$ROOTFS"; done
  rm -rf "$CACHE/debs" "$APT"/archives/*.deb
fi
echo "arm64: $("$QEMU" --version | head -1), environment cached in $CACHE"

# The aarch64 wheels of the x86 runtime venv's exact versions (the project itself runs from the source tree).
REQS=$("$RT_PY" -m pip freeze --exclude-editable --disable-pip-version-check | grep -v " @ " | sort)
SITE="$CACHE/site-$(echo "$REQS" | sha256sum | cut -c1-12)"
if [ ! -d "$SITE" ]; then
  echo "arm64: fetching aarch64 wheels: $(echo $REQS)"
  rm -rf "$CACHE"/site-* "$CACHE/wheels" && mkdir -p "$CACHE/wheels"
  # shellcheck disable=SC2086
  "$RT_PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: -d "$CACHE/wheels" \
      --python-version 3.11 --implementation cp --platform manylinux2014_aarch64 \
      --platform manylinux_2_17_aarch64 --platform manylinux_2_28_aarch64 $REQS >/dev/null 2>&1 \
    || skip "cannot download the aarch64 wheels of: $(echo $REQS)"
  for wheel in "$CACHE"/wheels/*.whl; do "$RT_PY" -m zipfile -e "$wheel" "$SITE.tmp"; done
  mv "$SITE.tmp" "$SITE" && rm -rf "$CACHE/wheels"
fi

# The interpreter: a wrapper that runs aarch64 python3.11 under qemu. Subprocesses (sys.executable) re-enter it.
mkdir -p "$CACHE/bin"
cat > "$CACHE/bin/python3.11" <<EOF
#!/bin/sh
export QEMU_LD_PREFIX="$ROOTFS" PYTHONHOME="$ROOTFS/usr" PYTHONNOUSERSITE=1
export PYTHONPATH="$SITE\${PYTHONPATH:+:\$PYTHONPATH}"
exec "$QEMU" -0 "\$0" "$ROOTFS/usr/bin/python3.11" "\$@"
EOF
chmod +x "$CACHE/bin/python3.11"
# The x86 runtime venv's interpreter under qemu-x86_64 (QEMU_CPU picks the CPU model; subprocesses run natively).
RT_PY_ABS="$(cd "$(dirname "$RT_PY")" && pwd)/$(basename "$RT_PY")"
cat > "$CACHE/bin/python-x86" <<EOF
#!/bin/sh
exec "$QEMU_X86" -0 "$RT_PY_ABS" "$RT_PY_ABS" "\$@"
EOF
chmod +x "$CACHE/bin/python-x86"
QEMU_CPU="${CPUS[0]}" "$CACHE/bin/python3.11" -c "import onnxruntime" 2>/dev/null \
  || skip "the emulated python3.11 cannot import onnxruntime"

args=()
for cpu in "${CPUS[@]}"; do args+=(--cpu "$cpu"); done
for cpu in "${X86_CPUS[@]}"; do args+=(--x86-cpu "$cpu"); done
"$RT_PY" -m tests.arm64.check --python "$CACHE/bin/python3.11" --x86-python "$CACHE/bin/python-x86" "${args[@]}"
