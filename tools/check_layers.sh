#!/usr/bin/env bash
# Fails if any #include in src/ points up the layer order (STYLE.md 3.2).
cd "$(dirname "$0")/.."
declare -A allow=(
  [base]="base" [gguf]="base gguf" [kernels]="base kernels" [kv]="base kv"
  [jinja]="base jinja" [grammar]="base grammar" [tok]="base gguf jinja tok"
  [model]="base gguf kernels kv model"
  [engine]="base gguf kernels kv jinja grammar tok model engine" [net]="base net"
  [server]="base net jinja grammar tok engine server" [gateway]="base net gateway"
  [bench]="base net bench" [hub]="base gguf hub"
  [cli]="base gguf kernels kv jinja grammar tok model engine net server gateway bench hub cli"
)
rc=0
for f in $(find src -name '*.[ch]'); do
  layer=$(echo "$f" | cut -d/ -f2)
  for inc in $(grep -oE '^#include "[a-z_]+/' "$f" | sed -E 's/#include "([a-z_]+)\//\1/'); do
    case " ${allow[$layer]} " in
      *" $inc "*) ;;
      *) echo "$f: layer '$layer' includes '$inc'"; rc=1 ;;
    esac
  done
done
exit $rc
