# Sourced by the PyTorch comparison scripts: sets PYTHON to Debian's python3 and installs
# Debian's python3-torch into it when it is missing.
PYTHON=/usr/bin/python3  # Debian's python, where python3-torch installs
if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
  echo "$(basename "$0"): installing python3-torch" >&2
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >&2
  $SUDO apt-get install -y -qq --no-install-recommends python3-torch >&2
fi
