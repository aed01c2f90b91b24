#!/usr/bin/env bash
# Build aihwkit from source with CUDA on, against the torch already installed in one Python
# environment, and (optionally) install it there.
#
# Why: the aihwkit wheel on PyPI is CPU-only, so a "GPU worker" would simulate every analog
# tile on the CPU. The extension must be compiled against the exact torch it will run with
# (C++ ABI), and with the same CUDA major version as that torch.
#
# The worker image (docker/worker.Dockerfile) runs this same script; on a bare-metal server:
#
#   python3.11 -m venv /opt/cttv2 && /opt/cttv2/bin/pip install torch==2.10.0 torchvision==0.25.0 \
#       scikit-build pybind11 cmake ninja mypy setuptools wheel
#   scripts/build-aihwkit-cuda.sh --python /opt/cttv2/bin/python --dry-run   # check first
#   scripts/build-aihwkit-cuda.sh --python /opt/cttv2/bin/python --install
#
# Exit codes: 0 ok, 2 bad usage, 3 missing prerequisites, 4 build failed, 5 built but the
# result is not a CUDA build.
set -euo pipefail

AIHWKIT_VERSION="1.1.0"
# sha256 of the PyPI source archives this script knows; another version is built unchecked.
declare -A SDIST_SHA256=(
    [1.1.0]="10315a8bfde7e35772a3ae0082fc0340f69b8ab61854dee7b81b1f0e82da0544"
    [1.2.0]="288b00aed52a99f578a2e7ac46fdbf2a9f07e4780c4307eae5827558f1bf2cba"
)
# Ampere (80 A100, 86 RTX 30xx/A40), Ada (89 RTX 40xx/L40) and Hopper (90 H100/H200).
# aihwkit's own default stops at 89, which leaves an H100 without native kernels.
CUDA_ARCHS="80;86;89;90"
PYTHON="${PYTHON:-python3}"
SDIST=""
JOBS="$(nproc 2>/dev/null || echo 2)"
WHEEL_DIR="$PWD/dist-aihwkit"
WORK_DIR=""
OPENBLAS_INCLUDE=""
OPENBLAS_LIB=""
DRY_RUN=0
INSTALL=0
ALLOW_CUDA_MISMATCH=0

usage() {
    cat <<EOF
usage: $0 [options]
  --python PATH           Python whose torch to build against (default: \$PYTHON or python3)
  --version VER           aihwkit source version from PyPI (default: $AIHWKIT_VERSION)
  --sdist FILE            build this source archive instead of downloading one
  --archs LIST            CUDA architectures, ';'-separated (default: $CUDA_ARCHS)
  --jobs N                parallel compile jobs (default: $JOBS)
  --wheel-dir DIR         where the built wheel goes (default: ./dist-aihwkit)
  --work-dir DIR          scratch folder for the unpacked source (default: a new temp dir)
  --openblas-include DIR  folder holding openblas_config.h and cblas.h (default: searched)
  --openblas-lib FILE     libopenblas.so to link (default: searched)
  --install               install the wheel into --python's environment and check it
  --allow-cuda-mismatch   build although nvcc's CUDA major differs from torch's
                          (a compile check only: such a build must not be deployed)
  --dry-run               check the prerequisites, print the exact commands, build nothing
EOF
}

cccl3_aliases() {  # appended to src/rpucuda/cuda/rpu_cub.h of aihwkit 1.1.0 for CUDA >= 13
    cat <<'EOF'

// --- Added by cttv2's scripts/build-aihwkit-cuda.sh for CUDA >= 13 ---------------------------
// CCCL 3.0 (CUDA 13) removed cub::TransformInputIterator and cub::CountingInputIterator,
// which aihwkit 1.1.0 still uses (maximizer.cu, noise_manager.cu, weight_clipper_cuda.cu).
// Alias them to the Thrust iterators that replace them, with the old CUB template parameters,
// as aihwkit 1.2.0 does in this same header. Older toolkits keep the real CUB iterators.
#if defined(CUB_VERSION) && (CUB_VERSION >= 300000)
#include <cstddef>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>

CUB_NAMESPACE_BEGIN
template <typename ValueType, typename ConversionOp, typename InputIteratorT,
          typename OffsetT = ptrdiff_t>
using TransformInputIterator =
    ::thrust::transform_iterator<ConversionOp, InputIteratorT, ValueType, ValueType>;
template <typename ValueType, typename OffsetT = ptrdiff_t>
using CountingInputIterator = ::thrust::counting_iterator<ValueType>;
CUB_NAMESPACE_END
#endif
EOF
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --python) PYTHON="$2"; shift 2 ;;
        --version) AIHWKIT_VERSION="$2"; shift 2 ;;
        --sdist) SDIST="$2"; shift 2 ;;
        --archs) CUDA_ARCHS="$2"; shift 2 ;;
        --jobs) JOBS="$2"; shift 2 ;;
        --wheel-dir) WHEEL_DIR="$2"; shift 2 ;;
        --work-dir) WORK_DIR="$2"; shift 2 ;;
        --openblas-include) OPENBLAS_INCLUDE="$2"; shift 2 ;;
        --openblas-lib) OPENBLAS_LIB="$2"; shift 2 ;;
        --install) INSTALL=1; shift ;;
        --allow-cuda-mismatch) ALLOW_CUDA_MISMATCH=1; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
done

if ! [[ "$CUDA_ARCHS" =~ ^[0-9]{2,3}(;[0-9]{2,3})*$ ]]; then
    echo "--archs must look like 80;86;89;90, got: $CUDA_ARCHS" >&2
    exit 2
fi
if ! [[ "$JOBS" =~ ^[1-9][0-9]*$ ]]; then
    echo "--jobs must be a positive integer, got: $JOBS" >&2
    exit 2
fi

[[ -n "$WORK_DIR" ]] || WORK_DIR="${TMPDIR:-/tmp}/aihwkit-cuda-build.$$"

MISSING=()
ok() { printf '  ok       %s\n' "$1"; }
missing() { printf '  NOT MET  %s\n' "$1"; MISSING+=("$1"); }

echo "== prerequisites"

# --- Python and torch -------------------------------------------------------------------
TORCH_VERSION=""
TORCH_CUDA=""
if PY_PATH="$(command -v "$PYTHON" 2>/dev/null)"; then
    ok "python: $PY_PATH ($("$PYTHON" -c 'import sys; print(sys.version.split()[0])'))"
    # Read torch/version.py instead of importing torch: the same facts, in milliseconds.
    if TORCH_INFO="$("$PYTHON" - 2>/dev/null <<'PYEOF'
import importlib.util, os, runpy
spec = importlib.util.find_spec("torch")
facts = runpy.run_path(os.path.join(spec.submodule_search_locations[0], "version.py"))
print(facts["__version__"], facts.get("cuda") or "none")
PYEOF
)"; then
        read -r TORCH_VERSION TORCH_CUDA <<<"$TORCH_INFO"
        if [[ "$TORCH_CUDA" == "none" ]]; then
            missing "torch $TORCH_VERSION is a CPU build: install a CUDA build of torch first"
        else
            ok "torch $TORCH_VERSION, built with CUDA $TORCH_CUDA"
        fi
    else
        missing "torch is not installed for $PYTHON: install the torch the worker will run with"
    fi
    # aihwkit 1.1.0's pyproject declares a PEP 639 license string (setuptools >= 77) and its
    # CMake needs pybind11 >= 3.0.1; --no-build-isolation means the environment must have them.
    for req in "scikit-build 0.18.1" "pybind11 3.0.1" "setuptools 77" "wheel 0"; do
        read -r dist minver <<<"$req"
        if ver="$("$PYTHON" - "$dist" "$minver" 2>/dev/null <<'PYEOF'
import importlib.metadata as md, re, sys
def key(v):
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])
v = md.version(sys.argv[1])
print(v)
sys.exit(0 if key(v) >= key(sys.argv[2]) else 1)
PYEOF
)"; then
            ok "build package $dist $ver"
        else
            missing "build package $dist >= $minver${ver:+ (found $ver)} (pip install '$dist>=$minver')"
        fi
    done
else
    missing "python: '$PYTHON' not found (give --python)"
    PY_PATH=""
fi

# Tools next to the chosen Python (a venv's cmake, ninja and stubgen) come first.
if [[ -n "$PY_PATH" ]]; then
    PATH="$(dirname "$PY_PATH"):$PATH"
    export PATH
fi

# --- CUDA compiler ------------------------------------------------------------------------
NVCC="${CUDACXX:-}"
if [[ -z "$NVCC" ]]; then
    NVCC="$(command -v nvcc 2>/dev/null || true)"
fi
if [[ -z "$NVCC" && -x /usr/local/cuda/bin/nvcc ]]; then
    NVCC=/usr/local/cuda/bin/nvcc
fi
NVCC_VERSION=""
if [[ -n "$NVCC" && -x "$NVCC" ]]; then
    NVCC_VERSION="$("$NVCC" --version | sed -n 's/.*release \([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p')"
    ok "nvcc $NVCC_VERSION: $NVCC"
    if [[ -n "$TORCH_CUDA" && "$TORCH_CUDA" != "none" ]]; then
        if [[ "${NVCC_VERSION%%.*}" != "${TORCH_CUDA%%.*}" ]]; then
            msg="CUDA major mismatch: torch uses CUDA $TORCH_CUDA, nvcc is $NVCC_VERSION (the extension would load CUDA ${NVCC_VERSION%%.*} libraries beside torch's CUDA ${TORCH_CUDA%%.*} ones); point CUDACXX at a CUDA ${TORCH_CUDA%%.*}.x nvcc"
            if [[ $ALLOW_CUDA_MISMATCH -eq 1 ]]; then
                echo "  WARNING  $msg (allowed: compile check only)"
            else
                missing "$msg"
            fi
        elif [[ "$NVCC_VERSION" != "$TORCH_CUDA" ]]; then
            echo "  note     nvcc $NVCC_VERSION vs torch's CUDA $TORCH_CUDA: same major, fine"
        fi
    fi
else
    missing "nvcc (the CUDA toolkit's compiler): set CUDACXX or put nvcc on PATH"
    NVCC="nvcc"
fi

# aihwkit 1.1.0 predates CUDA 13: its CUDA code uses two CUB iterators that CCCL 3.0 (CUDA 13)
# removed. For that pair, the build adds the aliases aihwkit 1.2.0 ships (see cccl3_aliases).
CCCL3_PATCH=0
if [[ "$AIHWKIT_VERSION" == "1.1.0" && -n "$NVCC_VERSION" && "${NVCC_VERSION%%.*}" -ge 13 ]]; then
    CCCL3_PATCH=1
    echo "  note     nvcc $NVCC_VERSION + aihwkit 1.1.0: adding CCCL 3 iterator aliases to rpu_cub.h"
fi

# --- Build tools ------------------------------------------------------------------------------
if command -v cmake >/dev/null 2>&1; then
    CMAKE_VERSION="$(cmake --version | sed -n 's/cmake version \([0-9.]*\).*/\1/p')"
    if [[ "$(printf '%s\n3.18\n' "$CMAKE_VERSION" | sort -V | head -1)" == "3.18" ]]; then
        ok "cmake $CMAKE_VERSION"
    else
        missing "cmake >= 3.18 (found $CMAKE_VERSION)"
    fi
else
    missing "cmake (pip install cmake)"
fi
if command -v ninja >/dev/null 2>&1; then
    ok "ninja $(ninja --version)"
else
    echo "  note     ninja not found: the build falls back to make"
fi
if command -v c++ >/dev/null 2>&1; then
    ok "c++ compiler: $(c++ --version | head -1)"
else
    missing "a C++ compiler (apt-get install build-essential)"
fi
# aihwkit's CMake runs mypy's stubgen after linking the extension.
if command -v stubgen >/dev/null 2>&1; then
    ok "stubgen (mypy)"
else
    missing "stubgen (pip install mypy): aihwkit's build runs it after linking"
fi

# --- OpenBLAS ---------------------------------------------------------------------------------
find_first() {  # find_first NAME DIR... : print the first DIR/NAME that exists
    local name="$1"; shift
    local d
    for d in "$@"; do
        if [[ -e "$d/$name" ]]; then echo "$d"; return 0; fi
    done
    return 1
}
if [[ -z "$OPENBLAS_INCLUDE" ]]; then
    OPENBLAS_INCLUDE="$(find_first openblas_config.h /usr/include/x86_64-linux-gnu \
        /usr/include/x86_64-linux-gnu/openblas-pthread /usr/include/openblas /usr/include \
        /usr/local/include /opt/OpenBLAS/include || true)"
fi
if [[ -z "$OPENBLAS_LIB" ]]; then
    d="$(find_first libopenblas.so /usr/lib/x86_64-linux-gnu \
        /usr/lib/x86_64-linux-gnu/openblas-pthread /usr/lib64 /usr/lib /usr/local/lib \
        /opt/OpenBLAS/lib || true)"
    [[ -n "$d" ]] && OPENBLAS_LIB="$d/libopenblas.so"
fi
if [[ -n "$OPENBLAS_INCLUDE" && -e "$OPENBLAS_INCLUDE/openblas_config.h" && -e "$OPENBLAS_INCLUDE/cblas.h" ]]; then
    ok "OpenBLAS headers: $OPENBLAS_INCLUDE"
else
    missing "OpenBLAS headers openblas_config.h + cblas.h (apt-get install libopenblas-dev, or --openblas-include)"
fi
if [[ -n "$OPENBLAS_LIB" && -e "$OPENBLAS_LIB" ]]; then
    ok "OpenBLAS library: $OPENBLAS_LIB"
else
    missing "libopenblas.so (apt-get install libopenblas-dev, or --openblas-lib)"
fi

# --- cuBLAS and cuRAND (headers + libraries) ---------------------------------------------------
# The simulator links cuBLAS and cuRAND. A full toolkit (the devel image) has them; a bare nvcc
# does not, and then the copies in torch's own nvidia-* pip packages are used: the same
# libraries torch loads at run time, so the extension and torch share one cuBLAS.
CUDA_EXTRA_INCLUDE=""
CUDA_EXTRA_LIBDIR=""
CUDA_LIB_SOURCE=""
if [[ -n "$NVCC" && -x "$NVCC" ]]; then
    TOOLKIT="$(dirname "$(dirname "$(readlink -f "$NVCC")")")"
    if [[ -e "$TOOLKIT/include/cublas_v2.h" || -e "$TOOLKIT/targets/x86_64-linux/include/cublas_v2.h" ]] \
        && [[ -e "$TOOLKIT/include/curand.h" || -e "$TOOLKIT/targets/x86_64-linux/include/curand.h" ]]; then
        ok "cuBLAS/cuRAND headers in the toolkit: $TOOLKIT"
        CUDA_LIB_SOURCE="toolkit"
    elif [[ -n "$PY_PATH" ]] && PIP_CUDA="$("$PYTHON" - 2>/dev/null <<'PYEOF'
import glob, os, site, sys
roots = [os.path.join(p, "nvidia") for p in site.getsitepackages() + [site.getusersitepackages()]]
def find(pattern):
    for root in roots:
        hits = sorted(glob.glob(os.path.join(root, "**", pattern), recursive=True))
        if hits:
            return hits[-1]
    sys.exit(1)
print(find("cublas_v2.h"), find("curand.h"), find("libcublas.so.*[0-9]"), find("libcurand.so.*[0-9]"))
PYEOF
)"; then
        read -r h_cublas h_curand l_cublas l_curand <<<"$PIP_CUDA"
        ok "cuBLAS/cuRAND from torch's pip packages: $(dirname "$h_cublas"), $(dirname "$h_curand")"
        CUDA_LIB_SOURCE="pip"
        CUDA_EXTRA_LIBDIR="$WORK_DIR/cuda-link"
        CUDA_EXTRA_INCLUDE="$(dirname "$h_cublas")"
        [[ "$(dirname "$h_curand")" != "$CUDA_EXTRA_INCLUDE" ]] && CUDA_EXTRA_INCLUDE="$CUDA_EXTRA_INCLUDE;$(dirname "$h_curand")"
    else
        missing "cuBLAS/cuRAND headers (cublas_v2.h, curand.h): neither in the toolkit at $TOOLKIT nor in torch's nvidia-* pip packages"
    fi
fi

# --- Source archive ---------------------------------------------------------------------------
if [[ -n "$SDIST" ]]; then
    if [[ -f "$SDIST" ]]; then
        ok "source archive: $SDIST"
    else
        missing "source archive $SDIST"
    fi
fi

# --- The plan -----------------------------------------------------------------------------------
SRC_DIR="$WORK_DIR/aihwkit-$AIHWKIT_VERSION"
CMAKE_FLAGS=(
    -DUSE_CUDA=ON
    "-DRPU_CUDA_ARCHITECTURES=$CUDA_ARCHS"
    -DRPU_BLAS=OpenBLAS
    -DBUILD_TEST=OFF
    -DCMAKE_BUILD_TYPE=Release
    "-DCMAKE_CUDA_COMPILER=$NVCC"
    "-DOpenBLAS_INCLUDE_DIR=$OPENBLAS_INCLUDE"
    "-DOpenBLAS_LIB=$OPENBLAS_LIB"
)
if [[ "$CUDA_LIB_SOURCE" == "pip" ]]; then
    # Unversioned names for the linker (the wheels ship only libcublas.so.12-style files).
    IFS=';' read -r -a inc_dirs <<<"$CUDA_EXTRA_INCLUDE"
    inc_flags=""
    for d in "${inc_dirs[@]}"; do inc_flags+="-I$d "; done
    CMAKE_FLAGS+=(
        "-DCMAKE_CUDA_FLAGS=${inc_flags% }"
        "-DCMAKE_CXX_FLAGS=${inc_flags% }"
        "-DCMAKE_MODULE_LINKER_FLAGS=-L$CUDA_EXTRA_LIBDIR"
        "-DCMAKE_SHARED_LINKER_FLAGS=-L$CUDA_EXTRA_LIBDIR"
    )
fi
# scikit-build splits SKBUILD_CONFIGURE_OPTIONS like a shell: quote each flag.
CONFIGURE_OPTIONS="$(printf '%q ' "${CMAKE_FLAGS[@]}")"
CONFIGURE_OPTIONS="${CONFIGURE_OPTIONS% }"
PY="${PY_PATH:-$PYTHON}"

if [[ -z "$SDIST" ]]; then
    SDIST="$WORK_DIR/aihwkit-$AIHWKIT_VERSION.tar.gz"
    # --no-build-isolation: pip prepares the sdist's metadata with the build packages checked above.
    FETCH_CMD="$PY -m pip download --no-binary :all: --no-deps --no-build-isolation aihwkit==$AIHWKIT_VERSION -d $WORK_DIR"
else
    FETCH_CMD=""
fi
BUILD_ENV=(
    "USE_CUDA=ON"
    "CUDACXX=$NVCC"
    "SKBUILD_CONFIGURE_OPTIONS=$CONFIGURE_OPTIONS"
    "SKBUILD_BUILD_OPTIONS=-j$JOBS"
)
BUILD_CMD=("$PY" -m pip wheel --no-build-isolation --no-deps -v -w "$WHEEL_DIR" .)

echo
echo "== plan"
echo "aihwkit $AIHWKIT_VERSION, CUDA architectures $CUDA_ARCHS, $JOBS jobs"
echo "cmake flags:"
printf '  %s\n' "${CMAKE_FLAGS[@]}"
echo "commands:"
echo "  mkdir -p $WORK_DIR $WHEEL_DIR"
[[ -n "$FETCH_CMD" ]] && echo "  $FETCH_CMD"
if [[ -n "${SDIST_SHA256[$AIHWKIT_VERSION]:-}" ]]; then
    echo "  echo '${SDIST_SHA256[$AIHWKIT_VERSION]}  $SDIST' | sha256sum -c -"
fi
echo "  tar -xzf $SDIST -C $WORK_DIR"
echo "  cd $SRC_DIR"
if [[ $CCCL3_PATCH -eq 1 ]]; then
    echo "  cat >> src/rpucuda/cuda/rpu_cub.h   # the CCCL 3 aliases from cccl3_aliases() in $0"
fi
printf '  env'; for kv in "${BUILD_ENV[@]}"; do printf ' \\\n      %s=%s' "${kv%%=*}" "'${kv#*=}'"; done
printf ' \\\n    %s\n' "${BUILD_CMD[*]}"
if [[ $INSTALL -eq 1 ]]; then
    echo "  $PY -m pip install --no-deps --force-reinstall $WHEEL_DIR/aihwkit-$AIHWKIT_VERSION-*.whl"
    echo "  $PY -c 'from aihwkit.simulator.rpu_base import cuda; assert cuda.is_compiled()'"
fi

if [[ ${#MISSING[@]} -gt 0 ]]; then
    echo
    echo "${#MISSING[@]} prerequisite(s) not met:" >&2
    printf '  - %s\n' "${MISSING[@]}" >&2
    exit 3
fi
if [[ $DRY_RUN -eq 1 ]]; then
    echo
    echo "dry run: all prerequisites met, nothing built"
    exit 0
fi

# --- Build -------------------------------------------------------------------------------------
echo
echo "== build"
START=$(date +%s)
mkdir -p "$WORK_DIR" "$WHEEL_DIR"
rm -f "$WHEEL_DIR"/aihwkit-"$AIHWKIT_VERSION"-*.whl  # so the wheel found below is this build's
if [[ -n "$FETCH_CMD" ]]; then
    $FETCH_CMD
fi
if [[ -n "${SDIST_SHA256[$AIHWKIT_VERSION]:-}" ]]; then
    echo "${SDIST_SHA256[$AIHWKIT_VERSION]}  $SDIST" | sha256sum -c - || {
        echo "checksum mismatch for $SDIST: not the aihwkit $AIHWKIT_VERSION from PyPI" >&2
        exit 4
    }
fi
tar -xzf "$SDIST" -C "$WORK_DIR"
if [[ "$CUDA_LIB_SOURCE" == "pip" ]]; then
    mkdir -p "$CUDA_EXTRA_LIBDIR"
    ln -sf "$l_cublas" "$CUDA_EXTRA_LIBDIR/libcublas.so"
    ln -sf "$l_curand" "$CUDA_EXTRA_LIBDIR/libcurand.so"
fi
cd "$SRC_DIR"
if [[ $CCCL3_PATCH -eq 1 ]] && ! grep -q "Added by cttv2" src/rpucuda/cuda/rpu_cub.h; then
    cccl3_aliases >> src/rpucuda/cuda/rpu_cub.h
fi
if ! env "${BUILD_ENV[@]}" "${BUILD_CMD[@]}"; then
    echo "aihwkit build failed (see the compiler output above)" >&2
    exit 4
fi
WHEELS=("$WHEEL_DIR"/aihwkit-"$AIHWKIT_VERSION"-*.whl)
WHEEL="${WHEELS[0]}"
echo "built $WHEEL in $(( $(date +%s) - START )) s"

if [[ $INSTALL -eq 1 ]]; then
    "$PY" -m pip install --no-deps --force-reinstall "$WHEEL"
    if ! "$PY" -c 'from aihwkit.simulator.rpu_base import cuda; import sys; sys.exit(0 if cuda.is_compiled() else 1)'; then
        echo "the installed aihwkit does not report CUDA compiled in" >&2
        exit 5
    fi
    echo "installed: aihwkit $AIHWKIT_VERSION with CUDA compiled in ($CUDA_ARCHS)"
fi
