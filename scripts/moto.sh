#!/usr/bin/env bash
# The local KMS server for tests and experiments, on 127.0.0.1.
#
#   source scripts/moto.sh && moto_start    # venv if needed, server up, env exported
#   moto_stop
#
# moto_start installs scripts/requirements-test.txt into .venv (once; again
# only when the file changes), starts moto_server on a free port, waits
# until it answers, and exports what the tests and the AWS SDKs read.

REKEY_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

moto_venv() {
  local venv=$REKEY_ROOT/.venv req=$REKEY_ROOT/scripts/requirements-test.txt
  local stamp=$venv/.requirements.sha256 want
  want=$(sha256sum "$req" | cut -d' ' -f1)
  if [[ ! -x $venv/bin/python || ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    echo "== installing the Python test tools into .venv (moto, boto3, pycryptodomex)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    echo "$want" >"$stamp"
  fi
}

moto_start() {
  moto_venv || return 1
  local port
  port=$("$REKEY_ROOT/.venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$REKEY_ROOT/.venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"${TMPDIR:-/tmp}/rekey-moto-$port.log" 2>&1 &
  MOTO_PID=$!
  local url=http://127.0.0.1:$port
  for _ in $(seq 1 150); do
    if curl -fsS "$url/moto-api/" >/dev/null 2>&1; then
      break
    fi
    if ! kill -0 "$MOTO_PID" 2>/dev/null; then
      echo "moto_server exited; its log:" >&2
      cat "${TMPDIR:-/tmp}/rekey-moto-$port.log" >&2
      return 1
    fi
    sleep 0.2
  done
  if ! curl -fsS "$url/moto-api/" >/dev/null 2>&1; then
    echo "moto_server did not answer on $url within 30 s" >&2
    return 1
  fi
  export MOTO_PID
  export REKEY_TEST_ENDPOINT=$url AWS_ENDPOINT_URL=$url
  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
  export AWS_EC2_METADATA_DISABLED=true
  export REKEY_TEST_PYTHON=$REKEY_ROOT/.venv/bin/python
  unset AWS_PROFILE AWS_SESSION_TOKEN
  echo "== moto_server on $url (pid $MOTO_PID)"
}

moto_stop() {
  if [[ -n ${MOTO_PID:-} ]]; then
    kill "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
    unset MOTO_PID
  fi
}
