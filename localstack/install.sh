#!/usr/bin/env bash
# Install LocalStack (S3 only, no Docker) into its own venv at localstack/.venv.
#
# Idempotent: a stamp in the venv holds a hash of the pinned requirements, the constraints, this
# script and the Python used; when it matches, nothing is done. Any mismatch rebuilds the venv from
# scratch so a half-finished or outdated venv never survives. Safe to run concurrently (flock).
#
# Uses `python3` from PATH (3.10 or 3.11; LocalStack 4.13.1 is the newest release that runs on 3.11),
# or $PYTHON if set. Needs network access to PyPI (or a warm pip cache), nothing else.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
stamp="$venv/.installed"
python="${PYTHON:-python3}"

# Two test runs starting at once must not build the same venv twice; lock on this script itself so
# no extra file is needed.
exec 9<"${BASH_SOURCE[0]}"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi

if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
    echo "localstack/install.sh: $python is missing or older than 3.10" >&2
    exit 1
fi

want="$(
    {
        cat "$here/requirements.txt" "$here/constraints.txt" "${BASH_SOURCE[0]}"
        "$python" -c 'import sys; print(sys.version, sys.executable)'
    } | sha256sum | cut -d' ' -f1
)"

if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "localstack: already installed in localstack/.venv (requirements unchanged)"
    exit 0
fi

started=$SECONDS
rm -rf "$venv"
"$python" -m venv "$venv"
log="$venv/install.log"
if ! "$venv/bin/python" -m pip install --disable-pip-version-check \
    -r "$here/requirements.txt" -c "$here/constraints.txt" >"$log" 2>&1; then
    echo "localstack/install.sh: pip install failed; last lines of $log:" >&2
    tail -n 30 "$log" >&2
    exit 1
fi

# LocalStack builds an index of every AWS service spec on each start when it finds none (about 3.5 s
# and 350 MB of extra RSS). Build it once here; the launcher links it into each instance's
# FILESYSTEM_ROOT/usr/lib/localstack, where LocalStack looks for a prebuilt one.
static="$venv/localstack-static"
mkdir -p "$static/usr/lib/localstack"
if ! (cd "$static" && FILESYSTEM_ROOT="$static" OVERRIDE_IN_DOCKER=0 DISABLE_EVENTS=1 \
    "$venv/bin/python" -m localstack.aws.spec >>"$log" 2>&1); then
    echo "localstack/install.sh: building the service catalog failed; last lines of $log:" >&2
    tail -n 30 "$log" >&2
    exit 1
fi

# Fail here, not in the first test, if the runtime or the S3 provider cannot be imported.
if ! (cd "$static" && "$venv/bin/python" -c 'import localstack.runtime.main, localstack.services.s3.provider' \
    >>"$log" 2>&1); then
    echo "localstack/install.sh: LocalStack does not import; last lines of $log:" >&2
    tail -n 30 "$log" >&2
    exit 1
fi

echo "$want" >"$stamp"
version="$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("localstack-core"))')"
echo "localstack: installed localstack-core $version into localstack/.venv in $((SECONDS - started)) s"
